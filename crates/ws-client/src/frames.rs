//! Receiving: the server's frames read as they arrive (RFC 6455 §5), each message printed as its
//! bytes come.
//!
//! tungstenite's `read()` hands a message over once it is whole, and to build it reserves one
//! buffer the size of each frame: for the flood, tens of MiB that a fresh process must have the
//! kernel map and zero page by page, which profiling showed to be most of the client's time. So
//! after the handshake the client reads the frames itself, with tungstenite's own header parser
//! (`FrameHeader::parse`), through one buffer it reuses: a message larger than that buffer goes to
//! stdout piece by piece, still as one line and one message event. What the client sends (the
//! pong to a ping, the answer to the close) still goes through tungstenite, which masks it as a
//! client must (RFC 6455 §5.3).
//!
//! What a frame looks like (RFC 6455 §5.2): a FIN bit (the last frame of its message), three
//! reserved bits, an opcode (text, binary, continuation; close, ping, pong), a mask bit and key
//! (clients mask, servers must not), a 7-bit length or 126 + 16 bits or 127 + 64 bits, then the
//! payload. A message is one text or binary frame, or several: the first without FIN, then
//! continuation frames, the last with FIN. Control frames may come between them.

use std::io::{self, Read, StdoutLock, Write};
use std::net::TcpStream;
use std::time::SystemTime;

use labnet::log::{self, Event, Level};
use labnet::{Error, Result};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::{Message, WebSocket};

use crate::{Config, Summary, show};

/// Bytes asked of each `read()` on the socket, and the size of the one receive buffer: a 64 MiB
/// flood takes 256 reads, each of a size that stays in the CPU's cache until printed.
pub const READ_BUFFER: usize = 256 << 10;

/// Messages up to this size are printed whole once complete (and checked for `ERROR:`); larger
/// ones are printed as they arrive. With `--json` every message is whole (one JSON event).
pub const PRINT_WHOLE_UP_TO: usize = READ_BUFFER;

/// Control frames carry at most 125 bytes and are never fragmented (RFC 6455 §5.5).
const MAX_CONTROL: u64 = 125;

/// The frames of one connection: the socket, and the receive buffer with what was read and not
/// yet handed on (`buf[start..end]`).
pub struct Frames {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Frames {
    /// Reads from `stream`; `early` holds bytes already read from it (what came in behind the
    /// handshake's answer).
    pub fn new(stream: TcpStream, early: &[u8]) -> Frames {
        let mut buf = vec![0u8; READ_BUFFER.max(early.len())];
        buf[..early.len()].copy_from_slice(early);
        Frames {
            stream,
            buf,
            start: 0,
            end: early.len(),
        }
    }

    /// The next frame's header and payload length; `None` when the stream ends between frames.
    fn header(&mut self, cfg: &Config) -> Result<Option<(FrameHeader, u64)>> {
        loop {
            let mut cursor = io::Cursor::new(&self.buf[self.start..self.end]);
            let parsed = FrameHeader::parse(&mut cursor)
                .map_err(|e| Error::other("receive from the WebSocket server", e))?;
            if let Some(header) = parsed {
                self.start += cursor.position() as usize;
                return Ok(Some(header));
            }
            // A header is at most 14 bytes: move the start of it to the front and read more.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.read(cfg)? == 0 {
                return if self.end == 0 {
                    Ok(None)
                } else {
                    Err(Error::msg(
                        "the server closed the connection in the middle of a frame header",
                    ))
                };
            }
        }
    }

    /// Hands the next `len` bytes (a payload) to `each`, in pieces, in order.
    fn payload(
        &mut self,
        len: u64,
        cfg: &Config,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut left = len;
        while left > 0 {
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if self.read(cfg)? == 0 {
                    return Err(Error::msg(
                        "the server closed the connection in the middle of a frame",
                    ));
                }
            }
            let take = (self.end - self.start).min(usize::try_from(left).unwrap_or(usize::MAX));
            each(&self.buf[self.start..self.start + take])?;
            self.start += take;
            left -= take as u64;
        }
        Ok(())
    }

    /// After the close handshake: reads to the end of the stream, which the server closes next
    /// (RFC 6455 §7.1.1). Nothing can arrive that counts any more, so an error or the timeout
    /// ends it as well.
    fn drain(&mut self) {
        self.start = 0;
        self.end = 0;
        while matches!(self.stream.read(&mut self.buf), Ok(n) if n > 0) {}
    }

    /// One `read()` into the free end of the buffer.
    fn read(&mut self, cfg: &Config) -> Result<usize> {
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::is_timeout(&e) => {
                    return Err(Error::msg(format!(
                        "the server sent nothing for {} s; giving up",
                        cfg.timeout.as_secs_f64()
                    )));
                }
                Err(e) => return Err(Error::other("receive from the WebSocket server", e)),
            }
        }
    }
}

/// Reads frames until the server's close frame (answered through `ws`) and the end of the
/// stream, printing every message as one event.
pub fn receive<S: Read + Write>(
    ws: &mut WebSocket<S>,
    frames: &mut Frames,
    cfg: &Config,
) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut message: Option<Incoming> = None;
    loop {
        let Some((header, len)) = frames.header(cfg)? else {
            log::warn("the server closed the TCP connection without a WebSocket close frame");
            break;
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(protocol(
                "a frame with reserved bits set, and no extension was agreed (RFC 6455 §5.2)",
            ));
        }
        if header.mask.is_some() {
            return Err(protocol(
                "a masked frame: a client must close on that (RFC 6455 §5.1)",
            ));
        }
        match header.opcode {
            OpCode::Data(data) => {
                // Refused before anything is read or reserved for it.
                let total = message.as_ref().map_or(0, |m| m.len).saturating_add(len);
                if total > cfg.max_message as u64 {
                    return Err(Error::msg(format!(
                        "the server's message is too long: {total} bytes or more, --max-message \
                         is {}",
                        cfg.max_message
                    )));
                }
                let m = match (data, message.as_mut()) {
                    (Data::Text | Data::Binary, None) => {
                        message.insert(Incoming::new(data == Data::Text, len, cfg))
                    }
                    (Data::Continue, Some(m)) => m,
                    (Data::Text | Data::Binary, Some(_)) => {
                        return Err(protocol(
                            "a new message before the last one ended (RFC 6455 §5.4)",
                        ));
                    }
                    (Data::Continue, None) => {
                        return Err(protocol(
                            "a continuation frame with no message to continue (RFC 6455 §5.4)",
                        ));
                    }
                    (Data::Reserved(op), _) => {
                        return Err(protocol(&format!("unknown opcode {op} (RFC 6455 §5.2)")));
                    }
                };
                frames.payload(len, cfg, |piece| m.add(piece))?;
                if header.is_final {
                    if let Some(m) = message.take() {
                        m.finish(&mut summary)?;
                    }
                }
            }
            OpCode::Control(control) => {
                if len > MAX_CONTROL || !header.is_final {
                    return Err(protocol(
                        "a control frame over 125 bytes or in pieces (RFC 6455 §5.5)",
                    ));
                }
                let mut payload = Vec::new();
                frames.payload(len, cfg, |piece| {
                    payload.extend_from_slice(piece);
                    Ok(())
                })?;
                match control {
                    // RFC 6455 §5.5.2: answer with a pong carrying the same bytes.
                    Control::Ping => ws
                        .send(Message::Pong(payload.into()))
                        .map_err(|e| Error::other("answer the server's ping", e))?,
                    Control::Pong => {}
                    Control::Close => {
                        closed(ws, &payload)?;
                        frames.drain();
                        break;
                    }
                    Control::Reserved(op) => {
                        return Err(protocol(&format!("unknown opcode {op} (RFC 6455 §5.2)")));
                    }
                }
            }
        }
    }
    if summary.messages == 0 {
        return Err(Error::msg(
            "the server closed the WebSocket without sending any message",
        ));
    }
    Ok(summary)
}

fn protocol(what: &str) -> Error {
    Error::msg(format!("the server broke the WebSocket protocol: {what}"))
}

/// The server's close frame: log it and answer it (RFC 6455 §5.5.1: echo the status code).
fn closed<S: Read + Write>(ws: &mut WebSocket<S>, payload: &[u8]) -> Result<()> {
    let (what, answer) = match payload {
        [] => ("no status code".to_owned(), None),
        [_] => return Err(protocol("a close frame of 1 byte (RFC 6455 §5.5.1)")),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
            let reason = String::from_utf8_lossy(reason);
            let what = if reason.is_empty() {
                format!("code {code}")
            } else {
                format!("code {code}: {reason}")
            };
            // Codes that must never be sent (1005, 1006, 1015, unassigned ones) get "protocol
            // error" back instead of an echo.
            let code = if code.is_allowed() {
                code
            } else {
                CloseCode::Protocol
            };
            (
                what,
                Some(CloseFrame {
                    code,
                    reason: "".into(),
                }),
            )
        }
    };
    log::info(format!("server closed the WebSocket ({what})"));
    // The server may already have gone: its close was the last word either way.
    let _ = ws.close(answer);
    Ok(())
}

/// The message being received.
struct Incoming {
    /// A text message (must be UTF-8, RFC 6455 §8.1); else binary, decoded as the handout's
    /// Python `.decode()` would, with U+FFFD for what is not UTF-8.
    text: bool,
    /// Payload bytes so far.
    len: u64,
    /// The bytes so far, while the message is printed whole.
    whole: Vec<u8>,
    /// Once the message is printed as it arrives.
    printing: Option<Printing>,
    json: bool,
}

/// A message being printed as it arrives: `[time] [RECV] ` first, then the text piece by piece,
/// then the end of the line.
struct Printing {
    out: StdoutLock<'static>,
    utf8: Utf8Pieces,
    /// Bytes of text printed.
    printed: u64,
}

impl Incoming {
    fn new(text: bool, first_frame: u64, cfg: &Config) -> Incoming {
        let mut whole = Vec::new();
        if cfg.json || first_frame <= PRINT_WHOLE_UP_TO as u64 {
            whole.reserve(usize::try_from(first_frame).unwrap_or(0));
        }
        Incoming {
            text,
            len: 0,
            whole,
            printing: None,
            json: cfg.json,
        }
    }

    /// The next piece of the payload.
    fn add(&mut self, piece: &[u8]) -> Result<()> {
        self.len += piece.len() as u64;
        if self.printing.is_none() {
            if self.json || self.whole.len() + piece.len() <= PRINT_WHOLE_UP_TO {
                self.whole.extend_from_slice(piece);
                return Ok(());
            }
            // Too large to hold: print what came so far, and the rest as it comes.
            let mut p = Printing {
                out: io::stdout().lock(),
                utf8: Utf8Pieces::default(),
                printed: 0,
            };
            let head = Event::new(Level::Recv, "").format(false, SystemTime::now());
            let head = head.strip_suffix('\n').unwrap_or(&head);
            // A closed stdout is not a failure of the session (labnet::log ignores it too).
            let _ = p.out.write_all(head.as_bytes());
            let held = std::mem::take(&mut self.whole);
            p.print(&held, self.text)?;
            self.printing = Some(p);
        }
        match self.printing.as_mut() {
            Some(p) => p.print(piece, self.text),
            None => Ok(()),
        }
    }

    /// The last frame of the message arrived.
    fn finish(self, summary: &mut Summary) -> Result<()> {
        let kind = if self.text { "text" } else { "binary" };
        if self.text {
            summary.text += 1;
        } else {
            summary.binary += 1;
        }
        if let Some(mut p) = self.printing {
            p.end(self.text)?;
            summary.messages += 1;
            summary.bytes += p.printed;
            return Ok(());
        }
        // `from_utf8` first: it checks valid text (every PMU reply) many times faster than the
        // lossy scan.
        let text = match String::from_utf8(self.whole) {
            Ok(t) => t,
            Err(_) if self.text => return Err(not_utf8()),
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        show(summary, kind, &text)
    }
}

impl Printing {
    fn print(&mut self, bytes: &[u8], strict: bool) -> Result<()> {
        let (out, printed) = (&mut self.out, &mut self.printed);
        let ok = self.utf8.feed(bytes, !strict, &mut |s: &str| {
            *printed += s.len() as u64;
            let _ = out.write_all(s.as_bytes());
        });
        if ok { Ok(()) } else { Err(not_utf8()) }
    }

    fn end(&mut self, strict: bool) -> Result<()> {
        let (out, printed) = (&mut self.out, &mut self.printed);
        let ok = self.utf8.finish(!strict, &mut |s: &str| {
            *printed += s.len() as u64;
            let _ = out.write_all(s.as_bytes());
        });
        let _ = self.out.write_all(b"\n").and_then(|()| self.out.flush());
        if ok { Ok(()) } else { Err(not_utf8()) }
    }
}

fn not_utf8() -> Error {
    protocol("a text message that is not UTF-8 (RFC 6455 §8.1)")
}

/// Text out of bytes that arrive in pieces cut anywhere: a UTF-8 sequence cut between two pieces
/// is held back and joined to the next piece. What is not UTF-8 becomes U+FFFD when `lossy`
/// (as `String::from_utf8_lossy` on the whole would), else makes `feed` return false.
#[derive(Default)]
struct Utf8Pieces {
    held: [u8; 4],
    n: usize,
}

impl Utf8Pieces {
    /// Passes the text of `bytes` to `out`; false when it is not UTF-8 and not `lossy`.
    fn feed(&mut self, mut bytes: &[u8], lossy: bool, out: &mut dyn FnMut(&str)) -> bool {
        // First complete the sequence the last piece cut.
        while self.n > 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return true;
            };
            if b & 0xC0 != 0x80 {
                // Not a continuation byte: the held bytes are all the sequence will get.
                if !self.finish(lossy, out) {
                    return false;
                }
                break;
            }
            self.held[self.n] = b;
            self.n += 1;
            bytes = rest;
            if self.n == sequence_len(self.held[0]) && !self.finish(lossy, out) {
                return false;
            }
        }
        let cut = bytes.len() - cut_tail(bytes);
        let (whole, tail) = bytes.split_at(cut);
        if !emit(whole, lossy, out) {
            return false;
        }
        self.held[..tail.len()].copy_from_slice(tail);
        self.n = tail.len();
        true
    }

    /// The end of the text: a held, unfinished sequence is not UTF-8.
    fn finish(&mut self, lossy: bool, out: &mut dyn FnMut(&str)) -> bool {
        let n = std::mem::take(&mut self.n);
        emit(&self.held[..n], lossy, out)
    }
}

fn emit(bytes: &[u8], lossy: bool, out: &mut dyn FnMut(&str)) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => out(s),
        Err(_) if lossy => out(&String::from_utf8_lossy(bytes)),
        Err(_) => return false,
    }
    true
}

/// The length of the UTF-8 sequence a lead byte starts (1 for ASCII and for bytes that start
/// none).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// How many bytes at the end of `b` are the start of a sequence that the end cuts (0 to 3).
fn cut_tail(b: &[u8]) -> usize {
    for back in 1..=b.len().min(3) {
        let byte = b[b.len() - back];
        if byte & 0xC0 != 0x80 {
            return if sequence_len(byte) > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(bytes: &[u8], cuts: &[usize], lossy: bool) -> Option<String> {
        let mut u = Utf8Pieces::default();
        let mut s = String::new();
        let mut at = 0;
        for &c in cuts.iter().chain([bytes.len()].iter()) {
            if !u.feed(&bytes[at..c], lossy, &mut |t: &str| s.push_str(t)) {
                return None;
            }
            at = c;
        }
        u.finish(lossy, &mut |t: &str| s.push_str(t)).then_some(s)
    }

    #[test]
    fn text_cut_anywhere_comes_out_whole() {
        let text = "PMU é → 𝄞 data\n".repeat(3);
        let b = text.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len() {
                assert_eq!(
                    pieces(b, &[i, j], false).as_deref(),
                    Some(&*text),
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_become_what_from_utf8_lossy_makes() {
        let cases: [&[u8]; 6] = [
            b"ab\xffcd",
            b"ab\xe2\x82",
            b"\xe2\x82(x",
            b"\xf0\x80\x80A",
            b"x\xc3",
            b"\x80\x80\xe2\x82\xac\xf0\x9f",
        ];
        for b in cases {
            let want = String::from_utf8_lossy(b).into_owned();
            for i in 0..=b.len() {
                for j in i..=b.len() {
                    assert_eq!(
                        pieces(b, &[i, j], true),
                        Some(want.clone()),
                        "{b:?} {i} {j}"
                    );
                }
            }
            assert_eq!(pieces(b, &[], false), None, "{b:?} is not UTF-8");
        }
    }
}
