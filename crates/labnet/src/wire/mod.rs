//! Pure parsers and encoders of the labs' wire formats: no sockets here, so every format is
//! tested from byte arrays (round trips, truncated and malformed input).
//!
//! Parsers return [`WireError`], which keeps "not enough bytes yet" apart from "these bytes are
//! wrong": a stream reader waits for more on the first and rejects the peer on the second.

use std::fmt;

/// Why bytes could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// More bytes are needed before anything can be said.
    Incomplete,
    /// The bytes break the format; the text says how.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Incomplete => f.write_str("incomplete message"),
            WireError::Malformed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for WireError {}

impl From<WireError> for crate::Error {
    fn from(e: WireError) -> Self {
        crate::Error::Wire(e)
    }
}

pub mod chat;
pub mod pmu;
pub mod reset;
pub mod tv;
