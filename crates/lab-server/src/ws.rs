//! TP3 part 5: the PMU commands over WebSocket (port 5006), with `tungstenite` (blocking, one
//! thread per connection).
//!
//! Same commands as the TCP PMU; each PMU message is one WebSocket message (binary by default, as
//! the handout's Python clients call `.decode()` on it; `--text` for text frames), the flood is one
//! message, then the server sends a close frame. The student observes that the client's
//! `on_message` fires once per PMU message however TCP segmented the bytes (Q20, Q21): WebSocket
//! adds the message boundaries TCP lacks. As on the TCP PMU, Nagle is on and the `CMD_short:0`
//! frames are corked into one burst (Q19: as many segments as in part 2 with d = 0).
//!
//! Hostile input is bounded: the handshake must finish within `--command-timeout` (the read
//! timeout is set before the first byte is read), frames and messages are capped far below
//! tungstenite's 16/64 MiB defaults, a plain HTTP request or a bad upgrade gets an HTTP error
//! answer, and a malformed frame fails that connection only (RFC 6455 §7.1.7).

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labnet::log::{Event, Level, Sink};
use labnet::sock::{AcceptLoop, Corked, Deadline, Serve};
use labnet::wire::WireError;
use labnet::wire::pmu::{Command, flood_text, message, parse_command};
use labnet::{Context, Result};
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Bytes, Message, Utf8Bytes, WebSocket};

use crate::pmu::{WRITE_TIMEOUT, linger_close, pick_n};
use crate::{Config, SharedRng, clip};

/// Largest frame and message a client may send: a command is a few bytes, so 64 KiB is generous
/// and far below tungstenite's defaults (16 MiB frames, 64 MiB messages).
pub const MAX_INCOMING: usize = 64 * 1024;
/// Stack of a connection thread (tungstenite keeps its buffers on the heap).
pub const SESSION_STACK: usize = 256 * 1024;
/// Pings and pongs a client may send before its command.
const MAX_CONTROL_BEFORE_COMMAND: u32 = 32;

/// What every WebSocket session needs.
#[derive(Debug)]
pub struct Options {
    /// Fixed n, or random 5–15 per session.
    pub messages: Option<u32>,
    /// The `CMD_floodme` reply.
    pub flood: Bytes,
    /// Timeout for the handshake and then for the command.
    pub command_timeout: Duration,
    /// Text frames instead of binary.
    pub text: bool,
    /// Sessions served at once.
    pub max_clients: usize,
}

impl Options {
    /// From the command line.
    pub fn from_config(c: &Config) -> Self {
        Options {
            messages: c.messages,
            flood: Bytes::from(flood_text(c.flood_bytes)),
            command_timeout: c.command_timeout,
            text: c.text,
            max_clients: c.max_clients,
        }
    }
}

/// The tungstenite limits this server runs with.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_INCOMING))
        .max_frame_size(Some(MAX_INCOMING))
        // RFC 6455 §5.1: a server MUST close the connection on an unmasked client frame.
        .accept_unmasked_frames(false)
}

/// Accepts WebSocket clients until `ctx.stop` (forever for the binary), one thread each, through the kit's accept loop
/// ([`AcceptLoop`]: back-off at the descriptor limit, thread-start retries, the connection cap;
/// a client over the cap gets an HTTP 503 before the close, RFC 6455 §4.2.2).
/// Sessions log to `ctx.sink`; a session running at the stop finishes.
pub fn serve(listener: TcpListener, opts: Arc<Options>, rng: SharedRng, ctx: &Serve) -> Result<()> {
    let sink = ctx.sink.clone();
    let body = format!("server busy ({} sessions)\n", opts.max_clients);
    let busy = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    AcceptLoop::new("WS")
        .thread_prefix("ws")
        .stack_size(SESSION_STACK)
        .max_clients(opts.max_clients)
        .refusal(busy)
        .sink(ctx.sink.clone())
        .stop(ctx.stop.clone())
        .run(&listener, move |c| {
            let n = pick_n(opts.messages, &rng);
            session(c.stream, c.peer, c.id, n, &opts, &sink);
        })
        .context("WS: read the listening address")
}

/// How a WebSocket session ended.
#[derive(Debug)]
enum End {
    Served { what: String, bytes: u64 },
    Refused(String),
    Failed(String),
}

fn session(mut stream: TcpStream, peer: SocketAddr, id: u64, n: u32, opts: &Options, sink: &Sink) {
    let started = Instant::now();
    let end = match prepare(&stream, opts.command_timeout) {
        Ok(()) => converse(&stream, n, opts),
        Err(e) => End::Failed(e.to_string()),
    };
    linger_close(&mut stream);
    let (level, what, bytes) = match end {
        End::Served { what, bytes } => (Level::Info, what, bytes),
        End::Refused(why) => (Level::Warn, format!("refused: {why}"), 0),
        End::Failed(why) => (Level::Warn, format!("connection ended: {why}"), 0),
    };
    sink.emit(
        Event::new(
            level,
            format!(
                "WS #{id} {peer}: {what} ({:.3} s)",
                started.elapsed().as_secs_f64()
            ),
        )
        .field("service", "ws")
        .field("session", id)
        .field("peer", peer.to_string())
        .field("bytes", bytes),
    );
}

fn prepare(stream: &TcpStream, timeout: Duration) -> Result<()> {
    // Set before the handshake: a client that connects and never finishes its HTTP request must
    // not hold this thread (slowloris).
    stream
        .set_read_timeout(Some(timeout))
        .context("set the handshake timeout")?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .context("set the write timeout")?;
    // Nagle on, as for the TCP PMU; the CMD_short:0 burst is corked in converse() (Q19).
    labnet::sock::nagle_on(stream).context("clear TCP_NODELAY (Nagle on)")?;
    Ok(())
}

fn converse(stream: &TcpStream, n: u32, opts: &Options) -> End {
    let mut ws = match handshake(stream, opts.command_timeout) {
        Ok(ws) => ws,
        Err(end) => return end,
    };
    // The command gets its own deadline, as long as the handshake's.
    ws.get_mut().extend(opts.command_timeout);
    let cmd = match read_command(&mut ws) {
        Ok(cmd) => cmd,
        Err(end) => return end,
    };
    let cmd = match cmd {
        Ok(cmd) => cmd,
        Err(why) => {
            let _ = ws.send(frame(opts.text, Bytes::from(format!("ERROR: {why}"))));
            close(&mut ws, CloseCode::Policy, "unknown command");
            return End::Refused(why);
        }
    };
    let mut bytes = 0u64;
    let kind = if opts.text { "text" } else { "binary" };
    let sent = match &cmd {
        Command::Short { delay } => {
            // d = 0: the n frames leave together, as Nagle would send them across a real network
            // (see labnet::sock::Corked); each is still its own send(). Pulled after the loop.
            let cork = if delay.is_zero() {
                match Corked::hold(stream) {
                    Ok(c) => Some(c),
                    Err(e) => return End::Failed(format!("set TCP_CORK: {e}")),
                }
            } else {
                None
            };
            let mut result = Ok(());
            for i in 1..=n {
                let msg = Bytes::from(message(i));
                let len = msg.len() as u64;
                // send() = write + flush: one WebSocket message per PMU message, each on the wire
                // at once, as the handout's server calls send() once per message.
                result = ws.send(frame(opts.text, msg));
                if result.is_err() {
                    break;
                }
                bytes += len;
                if i < n && !delay.is_zero() {
                    std::thread::sleep(*delay);
                }
            }
            drop(cork);
            result.map(|()| format!("{} served: {n} {kind} messages", cmd.encode()))
        }
        Command::Flood => {
            let len = opts.flood.len() as u64;
            // Whatever tungstenite still holds (a pong answering a ping before the command)
            // goes first; then the flood frame, around tungstenite's write buffer.
            match ws.flush() {
                Ok(()) => send_large(ws.get_ref().stream(), opts.text, &opts.flood)
                    .map(|()| {
                        bytes = len;
                        format!("CMD_floodme served: one {kind} message")
                    })
                    .map_err(WsError::Io),
                Err(e) => Err(e),
            }
        }
    };
    match sent {
        Ok(what) => {
            close(&mut ws, CloseCode::Normal, "");
            End::Served {
                what: format!("{what}, {bytes} bytes"),
                bytes,
            }
        }
        Err(e) => End::Failed(format!(
            "client went away during {} after {bytes} bytes: {e}",
            cmd.encode()
        )),
    }
}

/// A WebSocket whose reads end by a deadline (see [`Deadline`]), moved on per phase.
type Ws<'a> = WebSocket<Deadline<'a>>;

/// The opening handshake, bounded by `timeout` in total: every read of the request ends by the
/// deadline, so a client trickling its request one byte at a time ends there too (with a
/// per-read timeout only, one byte a second kept it open indefinitely).
fn handshake(stream: &TcpStream, timeout: Duration) -> std::result::Result<Ws<'_>, End> {
    let deadline = Instant::now() + timeout;
    let timed = Deadline::until(stream, deadline);
    let mut attempt = tungstenite::accept_with_config(timed, Some(ws_config()));
    loop {
        match attempt {
            Ok(ws) => return Ok(ws),
            Err(HandshakeError::Interrupted(mid)) => {
                // A read timed out (EAGAIN, or the deadline) before the request was complete.
                if Instant::now() >= deadline {
                    return Err(End::Failed(format!(
                        "handshake not completed within {} s",
                        timeout.as_secs_f64()
                    )));
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => {
                let why = e.to_string();
                if let Some(answer) = http_error(&e) {
                    let mut s = stream;
                    let _ = s.write_all(answer.as_bytes()).and_then(|()| s.flush());
                }
                return Err(End::Refused(format!("bad handshake: {why}")));
            }
        }
    }
}

/// The HTTP answer to a request that is not a valid WebSocket upgrade (RFC 6455 §4.2.2: a server
/// that does not accept the request answers with an HTTP error, e.g. 400; 426 with the supported
/// version when the version is wrong, §4.4).
fn http_error(e: &WsError) -> Option<String> {
    let (status, extra) = match e {
        WsError::Protocol(ProtocolError::HandshakeIncomplete) | WsError::Io(_) => return None,
        WsError::Protocol(
            ProtocolError::MissingConnectionUpgradeHeader
            | ProtocolError::MissingUpgradeWebSocketHeader,
        ) => (
            "426 Upgrade Required",
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        ),
        WsError::Protocol(ProtocolError::MissingSecWebSocketVersionHeader) => {
            ("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n")
        }
        WsError::Protocol(ProtocolError::WrongHttpMethod) => {
            ("405 Method Not Allowed", "Allow: GET\r\n")
        }
        WsError::Protocol(ProtocolError::WrongHttpVersion) => {
            ("505 HTTP Version Not Supported", "")
        }
        WsError::Capacity(_) | WsError::AttackAttempt => {
            ("431 Request Header Fields Too Large", "")
        }
        _ => ("400 Bad Request", ""),
    };
    let body = format!(
        "This is the TP3 WebSocket PMU: connect with a WebSocket client (ws://HOST:PORT/).\n\
         Refused: {e}\n"
    );
    Some(format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// Reads the command message. The outer error ends the session; the inner one is a bad command
/// that gets an `ERROR:` message.
fn read_command(ws: &mut Ws<'_>) -> std::result::Result<std::result::Result<Command, String>, End> {
    let mut controls = 0;
    loop {
        let payload = match ws.read() {
            Ok(Message::Text(t)) => Bytes::from(t),
            Ok(Message::Binary(b)) => b,
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
                controls += 1;
                if controls > MAX_CONTROL_BEFORE_COMMAND {
                    close(ws, CloseCode::Policy, "too many control frames");
                    return Err(End::Refused(
                        "too many control frames before a command".into(),
                    ));
                }
                continue;
            }
            Ok(Message::Close(frame)) => {
                // tungstenite has queued the close reply; send it. An invalid close code was
                // already answered with 1002 (RFC 6455 §7.4).
                let _ = ws.flush();
                let why = match frame {
                    Some(f) => format!("client closed before a command (code {})", f.code),
                    None => "client closed before a command".into(),
                };
                return Err(End::Refused(why));
            }
            Err(e) => return Err(fail(ws, e)),
        };
        return Ok(match parse_command(&payload) {
            Ok(cmd) => Ok(cmd),
            // A WebSocket message arrives whole: a prefix of a command stays a prefix.
            Err(WireError::Incomplete) => Err(format!(
                "incomplete command '{}'",
                clip(&String::from_utf8_lossy(&payload), 64)
            )),
            Err(WireError::Malformed(why)) => Err(why),
        });
    }
}

/// Fails the connection after a read error: a close frame with the RFC 6455 §7.4.1 code that
/// names the problem (when the socket still works), then the TCP close.
fn fail(ws: &mut Ws<'_>, e: WsError) -> End {
    let code = match &e {
        WsError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return End::Refused("no command before the timeout".into());
        }
        WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed => {
            return End::Failed(e.to_string());
        }
        WsError::Capacity(_) => CloseCode::Size,
        WsError::Utf8(_) => CloseCode::Invalid,
        _ => CloseCode::Protocol,
    };
    close(ws, code, "");
    End::Failed(e.to_string())
}

/// Sends a close frame and waits briefly for the client's, as RFC 6455 §7.1.1 asks the server to
/// close the TCP connection only after the closing handshake when it can.
fn close(ws: &mut Ws<'_>, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    if ws.close(Some(frame)).is_err() || ws.flush().is_err() {
        return;
    }
    // At most one more second for the client's close frame, however it trickles.
    ws.get_mut().extend(Duration::from_secs(1));
    for _ in 0..16 {
        match ws.read() {
            Ok(_) => continue,
            Err(_) => break,
        }
    }
}

/// Sends `payload` as one unfragmented data frame written straight from the shared buffer.
///
/// tungstenite copies every frame into its own write buffer and then drains that buffer from the
/// front after each partial `write()`: for a 64 MiB flood that is a fresh 64 MiB copy per client
/// (page faults included) plus a memmove of the rest after every send, most of the server's time.
/// The frame is simple enough to write by hand (RFC 6455 §5.2: FIN + opcode, a 7-bit, 16-bit or
/// 64-bit length, no mask from a server), and nothing else is sent while it goes out, so the
/// bytes on the wire are exactly those `ws.send()` would have written. The caller flushes
/// tungstenite's buffer first.
fn send_large(mut stream: &TcpStream, text: bool, payload: &[u8]) -> io::Result<()> {
    let head = frame_header(text && std::str::from_utf8(payload).is_ok(), payload.len());
    // Header and the start of the payload in one write, so the header is not a segment alone.
    let first = payload.len().min(64 * 1024);
    let mut start = Vec::with_capacity(head.len() + first);
    start.extend_from_slice(&head);
    start.extend_from_slice(&payload[..first]);
    stream.write_all(&start)?;
    stream.write_all(&payload[first..])?;
    stream.flush()?;
    Ok(())
}

/// The header of a final, unmasked data frame of `len` bytes (RFC 6455 §5.2), text or binary.
fn frame_header(text: bool, len: usize) -> Vec<u8> {
    let mut head = Vec::with_capacity(10);
    // FIN bit + opcode 0x1 (text) or 0x2 (binary).
    head.push(if text { 0x81 } else { 0x82 });
    match len {
        0..=125 => head.push(len as u8),
        126..=0xFFFF => {
            head.push(126);
            head.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            head.push(127);
            head.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    head
}

fn frame(text: bool, payload: Bytes) -> Message {
    if text {
        match Utf8Bytes::try_from(payload.clone()) {
            Ok(t) => Message::Text(t),
            // Every PMU reply is ASCII; binary is the honest fallback for anything else.
            Err(_) => Message::Binary(payload),
        }
    } else {
        Message::Binary(payload)
    }
}

#[cfg(test)]
mod tests {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};

    use super::*;

    /// The hand-written header is byte for byte what tungstenite writes, at every length-field
    /// boundary (7-bit up to 125, 16-bit up to 65535, 64-bit beyond).
    #[test]
    fn frame_header_matches_tungstenite_at_every_length_boundary() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 200_000] {
            for (text, data) in [(false, Data::Binary), (true, Data::Text)] {
                let frame = Frame::message(vec![b'a'; len], OpCode::Data(data), true);
                let mut want = Vec::new();
                frame.format(&mut want).unwrap();
                let mut got = frame_header(text, len);
                got.extend(std::iter::repeat_n(b'a', len));
                assert_eq!(got, want, "len {len} text {text}");
            }
        }
    }
}
