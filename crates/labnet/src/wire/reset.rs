//! TP3 part 3: the UDP reset exchange. The PDC sends `RESET:<n>` (0 ≤ n ≤ 3600 seconds); the PMU
//! picks X uniformly in [0, n] and answers `OFFSET=<X>`, or drops the request on purpose. The reply
//! carries no request id, so a client must drain stale replies before each new request.

use super::WireError;

/// Largest n a reset may ask for.
pub const MAX_RESET: u32 = 3600;

/// `RESET:<n>`.
pub fn encode_reset(n: u32) -> String {
    format!("RESET:{n}")
}

/// Parses `RESET:<n>` (a trailing newline is tolerated).
pub fn parse_reset(bytes: &[u8]) -> Result<u32, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::Malformed("not UTF-8".into()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    let n = text
        .strip_prefix("RESET:")
        .ok_or_else(|| WireError::Malformed("expected RESET:<n>".into()))?;
    if n.is_empty() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WireError::Malformed(format!(
            "bad number '{}': expected 0-{MAX_RESET}",
            n.escape_debug()
        )));
    }
    let n: u64 = n
        .parse()
        .map_err(|_| WireError::Malformed("bad number".into()))?;
    if n > u64::from(MAX_RESET) {
        return Err(WireError::Malformed(format!(
            "{n} out of range: expected 0-{MAX_RESET}"
        )));
    }
    Ok(n as u32)
}

/// `OFFSET=<x>`.
pub fn encode_offset(x: u32) -> String {
    format!("OFFSET={x}")
}

/// Parses `OFFSET=<x>`.
pub fn parse_offset(bytes: &[u8]) -> Result<u32, WireError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| WireError::Malformed("reply is not UTF-8".into()))?;
    let x = text
        .trim_end_matches(['\r', '\n'])
        .strip_prefix("OFFSET=")
        .ok_or_else(|| {
            WireError::Malformed(format!(
                "expected OFFSET=<x>, got '{}'",
                text.escape_debug()
            ))
        })?;
    x.parse()
        .map_err(|_| WireError::Malformed(format!("bad offset '{}'", x.escape_debug())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(parse_reset(encode_reset(20).as_bytes()), Ok(20));
        assert_eq!(parse_offset(encode_offset(7).as_bytes()), Ok(7));
        assert_eq!(parse_reset(b"RESET:3600\n"), Ok(3600));
    }

    #[test]
    fn bad_resets_are_malformed() {
        for bad in [
            &b""[..],
            b"RESET:",
            b"RESET:-1",
            b"RESET:99999999999",
            b"RESET:3601",
            b"reset:1",
            b"RESET: 1",
            b"\xff",
        ] {
            assert!(
                matches!(parse_reset(bad), Err(WireError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(parse_offset(b"OFFSET=").is_err());
        assert!(parse_offset(b"ERROR: x").is_err());
    }
}
