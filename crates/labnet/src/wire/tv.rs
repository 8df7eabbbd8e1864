//! TP3 part 4: the multicast TV datagram. The first 6 bytes are the sender's ID (`swcmTV` for the
//! TV, a 6-digit CAMIPRO number for a student), the rest is UTF-8 text.

use super::WireError;

/// Length of the ID header.
pub const ID_LEN: usize = 6;
/// The TV station's ID.
pub const TV_ID: [u8; ID_LEN] = *b"swcmTV";
/// A subscriber message of at least this many characters gets an answer from the TV (Q18: the
/// handout asks for "a text of at least 300 characters"; exactly 300 is answered, 299 is not).
pub const ANSWER_THRESHOLD: usize = 300;

/// A 6-byte sender ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Id(pub [u8; ID_LEN]);

impl Id {
    /// Parses an ID given on a command line: exactly 6 printable ASCII bytes.
    pub fn parse(s: &str) -> Result<Id, String> {
        let bytes = s.as_bytes();
        if bytes.len() != ID_LEN || !bytes.iter().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "ID must be exactly {ID_LEN} printable ASCII characters, got '{s}'"
            ));
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(bytes);
        Ok(Id(id))
    }

    /// The ID shown as text (bytes that are not printable are escaped).
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    (b as char).to_string()
                } else {
                    format!("\\x{b:02x}")
                }
            })
            .collect()
    }
}

/// A received TV datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's ID.
    pub id: Id,
    /// The text, or the raw bytes when they are not UTF-8.
    pub text: Result<String, Vec<u8>>,
}

/// ID followed by text.
pub fn encode(id: &Id, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_LEN + text.len());
    out.extend_from_slice(&id.0);
    out.extend_from_slice(text.as_bytes());
    out
}

/// Splits a datagram into ID and text. Fewer than 6 bytes is malformed (a datagram cannot be
/// "incomplete": UDP delivers it whole or not at all).
pub fn decode(bytes: &[u8]) -> Result<Datagram, WireError> {
    if bytes.len() < ID_LEN {
        return Err(WireError::Malformed(format!(
            "{} bytes, shorter than the {ID_LEN}-byte ID",
            bytes.len()
        )));
    }
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&bytes[..ID_LEN]);
    let body = &bytes[ID_LEN..];
    let text = std::str::from_utf8(body)
        .map(str::to_owned)
        .map_err(|_| body.to_vec());
    Ok(Datagram { id: Id(id), text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_or_binary_input() {
        let id = Id::parse("123456").unwrap();
        let d = decode(&encode(&id, "Hello, TV")).unwrap();
        assert_eq!(
            d,
            Datagram {
                id,
                text: Ok("Hello, TV".into())
            }
        );
        assert!(matches!(decode(b"swcm"), Err(WireError::Malformed(_))));
        let d = decode(b"swcmTV\xff\xfe").unwrap();
        assert_eq!(d.text, Err(vec![0xff, 0xfe]));
        assert!(Id::parse("12345").is_err());
        assert!(Id::parse("12 456").is_err());
        assert_eq!(Id(TV_ID).display(), "swcmTV");
    }
}
