//! TP3 part 2: the PMU command and reply format.
//!
//! The PDC sends one command with no terminator (a trailing `\n` or `\r\n` is tolerated):
//! `CMD_short:<d>` (d = seconds between the PMU's sends, 0 ≤ d ≤ 10, decimal, the word
//! case-insensitive) or `CMD_floodme`. The PMU answers `CMD_short` with n messages
//! `This is PMU data <i>`, i = 1..n, each in its own send() call and with **no separator**, then
//! closes; it answers `CMD_floodme` with one large text in one sendall, then closes. TCP is a byte
//! stream, so the PDC sees those messages glued together or split anywhere: [`Splitter`] puts them
//! back on separate lines (TP3 Q11: the client knows it has everything when the server closes).

use std::time::Duration;

use super::WireError;

/// The text every short message starts with.
pub const PREFIX: &str = "This is PMU data ";
/// Longest command a server reads before calling the input garbage.
pub const MAX_COMMAND: usize = 64;
/// Largest delay a `CMD_short:d` may ask for.
pub const MAX_DELAY_SECS: f64 = 10.0;

/// A parsed PDC command.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `CMD_short:d`: n short messages, `delay` apart.
    Short {
        /// Time between two sends.
        delay: Duration,
    },
    /// `CMD_floodme`: one large message.
    Flood,
}

impl Command {
    /// The command as the handout's client sends it.
    pub fn encode(&self) -> String {
        match self {
            Command::Short { delay } => format!("CMD_short:{}", fmt_secs(*delay)),
            Command::Flood => "CMD_floodme".to_owned(),
        }
    }
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

/// Parses a command. `Incomplete` means the bytes are a prefix of a valid command (keep reading);
/// `Malformed` carries the reason the server sends back after `ERROR: `.
pub fn parse_command(bytes: &[u8]) -> Result<Command, WireError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| WireError::Malformed("command is not UTF-8".into()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.len() > MAX_COMMAND {
        return Err(WireError::Malformed(format!(
            "command longer than {MAX_COMMAND} bytes"
        )));
    }
    let lower = text.to_ascii_lowercase();
    if lower == "cmd_floodme" {
        return Ok(Command::Flood);
    }
    if let Some(d) = lower.strip_prefix("cmd_short:") {
        return parse_delay(d).map(|delay| Command::Short { delay });
    }
    if "cmd_floodme".starts_with(&lower) || "cmd_short:".starts_with(&lower) {
        return Err(WireError::Incomplete);
    }
    Err(WireError::Malformed(format!(
        "unknown command '{}': expected CMD_short:<d> or CMD_floodme",
        text.escape_debug()
    )))
}

fn parse_delay(d: &str) -> Result<Duration, WireError> {
    if d.is_empty() {
        return Err(WireError::Incomplete);
    }
    let digits_ok = d.chars().all(|c| c.is_ascii_digit() || c == '.')
        && d.chars().filter(|&c| c == '.').count() <= 1;
    let value: f64 = if digits_ok {
        d.parse().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    if !value.is_finite() {
        return Err(WireError::Malformed(format!(
            "bad delay '{}': expected seconds 0-10",
            d.escape_debug()
        )));
    }
    if value > MAX_DELAY_SECS {
        return Err(WireError::Malformed(format!(
            "delay {d} out of range: expected 0-10 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Short message number `i`.
pub fn message(i: u32) -> String {
    format!("{PREFIX}{i}")
}

/// The `CMD_floodme` reply: `len` bytes of numbered ASCII lines, the same for every run, so a test
/// can compare what arrived with what was sent.
pub fn flood_text(len: usize) -> Vec<u8> {
    const HEAD: &[u8] = b"PMU flood line ";
    const TAIL: &[u8] = b": the quick brown fox jumps over the lazy dog\n";
    let mut out = Vec::with_capacity(len + 80);
    let mut line = 1u64;
    while out.len() < len {
        if line < 10_000_000 {
            // The 7 zero-padded digits written by hand: a `format!` per line made a 64 MiB flood
            // (~1 million lines) take tens of milliseconds to build.
            let mut digits = [b'0'; 7];
            let mut n = line;
            for d in digits.iter_mut().rev() {
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
            out.extend_from_slice(HEAD);
            out.extend_from_slice(&digits);
            out.extend_from_slice(TAIL);
        } else {
            // Beyond 7 digits `{:07}` simply prints them all.
            out.extend_from_slice(
                format!("PMU flood line {line:07}: the quick brown fox jumps over the lazy dog\n")
                    .as_bytes(),
            );
        }
        line += 1;
    }
    out.truncate(len);
    out
}

/// Reassembles the unframed short messages of a PMU reply, however TCP cut them.
///
/// A message ends where the next [`PREFIX`] starts, or at the end of the stream. Because the
/// messages are numbered 1, 2, 3…, a message that exactly equals the next expected one is complete
/// as soon as it arrives (so `CMD_short:1` prints each message the moment it lands, not one
/// second later); anything else waits for the next prefix or the close.
#[derive(Debug)]
pub struct Splitter {
    buf: String,
    pending_bytes: Vec<u8>,
    next: u32,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter {
            buf: String::new(),
            pending_bytes: Vec::new(),
            next: 1,
        }
    }
}

impl Splitter {
    /// A splitter expecting message 1 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds received bytes; returns the messages now complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending_bytes.extend_from_slice(bytes);
        // Keep an incomplete UTF-8 sequence at the end for the next read.
        let valid = match std::str::from_utf8(&self.pending_bytes) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending_bytes.len(),
        };
        let chunk: Vec<u8> = self.pending_bytes.drain(..valid).collect();
        self.buf.push_str(&String::from_utf8_lossy(&chunk));
        let mut out = Vec::new();
        loop {
            let search_from = if self.buf.starts_with(PREFIX) {
                PREFIX.len()
            } else {
                0
            };
            if let Some(pos) = self.buf[search_from..]
                .find(PREFIX)
                .map(|p| p + search_from)
            {
                if pos == 0 {
                    break;
                }
                let msg: String = self.buf.drain(..pos).collect();
                self.note(&msg);
                out.push(msg);
                continue;
            }
            let expected = message(self.next);
            if self.buf == expected {
                self.next += 1;
                out.push(std::mem::take(&mut self.buf));
            }
            break;
        }
        out
    }

    /// The stream closed: whatever is left is the last message.
    pub fn finish(&mut self) -> Option<String> {
        if !self.pending_bytes.is_empty() {
            let rest = std::mem::take(&mut self.pending_bytes);
            self.buf.push_str(&String::from_utf8_lossy(&rest));
        }
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }

    fn note(&mut self, msg: &str) {
        if let Some(n) = msg.strip_prefix(PREFIX).and_then(|n| n.parse::<u32>().ok()) {
            self.next = n + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively_with_optional_newline() {
        assert_eq!(
            parse_command(b"CMD_short:0"),
            Ok(Command::Short {
                delay: Duration::ZERO
            })
        );
        assert_eq!(
            parse_command(b"CMD_SHORT:1\n"),
            Ok(Command::Short {
                delay: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_command(b"cmd_short:0.5\r\n"),
            Ok(Command::Short {
                delay: Duration::from_millis(500)
            })
        );
        assert_eq!(parse_command(b"CMD_floodme"), Ok(Command::Flood));
        assert_eq!(
            Command::Short {
                delay: Duration::from_secs(1)
            }
            .encode(),
            "CMD_short:1"
        );
    }

    #[test]
    fn prefixes_are_incomplete_and_garbage_is_malformed() {
        assert_eq!(parse_command(b"CMD_sh"), Err(WireError::Incomplete));
        assert_eq!(parse_command(b"CMD_short:"), Err(WireError::Incomplete));
        for bad in [
            &b"CMD_short:abc"[..],
            b"CMD_short:-1",
            b"CMD_short:11",
            b"CMD_short:1e3",
            b"HELLO",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_command(bad), Err(WireError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_command(&[b'A'; 100]),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn splitter_recovers_messages_from_any_segmentation() {
        let stream: String = (1..=12).map(message).collect();
        for cut in 1..stream.len() {
            let mut s = Splitter::new();
            let mut got = s.push(&stream.as_bytes()[..cut]);
            got.extend(s.push(&stream.as_bytes()[cut..]));
            got.extend(s.finish());
            let want: Vec<String> = (1..=12).map(message).collect();
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn splitter_emits_the_expected_message_without_waiting() {
        let mut s = Splitter::new();
        assert_eq!(
            s.push(b"This is PMU data 1"),
            vec!["This is PMU data 1".to_owned()]
        );
        assert_eq!(s.push(b"This is PMU da"), Vec::<String>::new());
        assert_eq!(s.push(b"ta 2"), vec!["This is PMU data 2".to_owned()]);
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn flood_text_has_exact_length() {
        assert_eq!(flood_text(65_536).len(), 65_536);
        assert!(flood_text(1000).is_ascii());
    }

    #[test]
    fn flood_text_is_the_numbered_lines_cut_at_len() {
        let mut want = String::new();
        for line in 1..=20_000u64 {
            want.push_str(&format!(
                "PMU flood line {line:07}: the quick brown fox jumps over the lazy dog\n"
            ));
        }
        for len in [1, 15, 68, 69, 1000, 65_536, want.len()] {
            assert_eq!(flood_text(len), want.as_bytes()[..len], "len {len}");
        }
        assert!(flood_text(100).starts_with(b"PMU flood line 0000001: the quick"));
    }
}
