//! TP3 part 5, "WebSockets": the PDC of part 2 again, over a
//! WebSocket (RFC 6455) instead of a bare TCP stream.
//!
//! The one socket idea: **WebSocket frames messages; TCP does not.** In part 2 the client had to
//! cut the PMU's byte stream into messages itself and `CMD_floodme` took many `recv()` calls. Here
//! the server sends each PMU message as one WebSocket message (binary by default, as the handout's
//! Python server does; text with the server's `--text`), the library reassembles frames, and the
//! client gets exactly one message event — the handout's `on_message` — per message the server
//! sent: n events for `CMD_short:0`, one single event for the whole flood (Q20, Q21), however many
//! TCP segments carried them (Q19). The session ends with the close handshake (RFC 6455 §7).
//!
//! tungstenite does the handshake and sends; the frames are read in [`frames`], as they arrive,
//! so that a flood of any size goes to stdout without first being held whole in memory.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

use labnet::log::{self, Event, Level};
use labnet::{Context, Error, Result};
use tungstenite::Message;
use tungstenite::handshake::HandshakeError;

pub mod frames;

/// Usage, options and examples.
pub const HELP: &str = "\
ws-client: TP3 part 5. Sends one PMU command over a WebSocket and prints every message the
server sends on its own line, counting message events (the handout's on_message).

USAGE:
    ws-client URL CMD [options]

ARGUMENTS:
    URL     ws://HOST:PORT[/path] (the lab's server is ws://tcpip:5006)
    CMD     CMD_short:<d> (d = seconds between the server's sends, 0-10) or CMD_floodme

OPTIONS:
    --connect-timeout <S>    give up connecting after S seconds [default: 5]
    --timeout <S>            give up when the server sends nothing for S seconds [default: 30]
    --max-message <BYTES>    largest message (and frame) accepted           [default: 268435456]
    --json                   one JSON object per line, with a summary (messages, bytes)
    -h, --help               this help

EXAMPLES:
    ws-client ws://tcpip:5006 CMD_short:0         # Q19, Q20: n messages = n events
    ws-client ws://tcpip:5006 CMD_floodme         # Q21: the whole flood in one event
    ws-client ws://[::1]:5006 CMD_short:1 --json
";

/// Everything the client needs, from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `ws://` URL as given.
    pub url: String,
    /// Host part of the URL (brackets removed).
    pub host: String,
    /// Port of the URL (80 when absent, RFC 6455 §3).
    pub port: u16,
    /// The command as typed.
    pub command: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout, also bounding the handshake.
    pub timeout: Duration,
    /// Largest message and frame accepted (`--max-message`).
    pub max_message: usize,
    /// `--json` output.
    pub json: bool,
}

/// Default `--max-message`: 256 MiB, far above any `CMD_floodme` the lab server sends (as one
/// frame); a lab client trusts its lab server. A larger message is refused before its payload
/// is read.
pub const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

impl Config {
    /// Parses the arguments (flags, options, positionals, then leftovers are an error).
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let connect_timeout = labnet::args::opt_seconds(&mut a, "--connect-timeout")?
            .unwrap_or(Duration::from_secs(5));
        let timeout =
            labnet::args::opt_seconds(&mut a, "--timeout")?.unwrap_or(Duration::from_secs(30));
        let max_message = labnet::args::opt_or(&mut a, "--max-message", DEFAULT_MAX_MESSAGE)?;
        if max_message == 0 {
            return Err(Error::usage("--max-message must be more than 0 bytes"));
        }
        if connect_timeout.is_zero() || timeout.is_zero() {
            return Err(Error::usage("timeouts must be more than 0 seconds"));
        }
        // Every option is taken: what starts with `-` now is no positional.
        labnet::args::no_unknown_options(&a)?;
        let url: String = a
            .free_from_str()
            .map_err(|_| Error::usage("missing URL (usage: ws-client ws://HOST:PORT CMD)"))?;
        let command: String = a
            .free_from_str()
            .map_err(|_| Error::usage("missing CMD: CMD_short:<d> or CMD_floodme"))?;
        labnet::args::finish(a)?;
        let (host, port) = parse_url(&url)?;
        match labnet::wire::pmu::parse_command(command.as_bytes()) {
            Ok(_) => {}
            Err(labnet::wire::WireError::Incomplete) => {
                return Err(Error::usage(format!(
                    "incomplete command '{command}': expected CMD_short:<d> (d = 0-10) or CMD_floodme"
                )));
            }
            Err(labnet::wire::WireError::Malformed(why)) => {
                return Err(Error::usage(format!("invalid command: {why}")));
            }
        }
        Ok(Config {
            url,
            host,
            port,
            command,
            connect_timeout,
            timeout,
            max_message,
            json,
        })
    }
}

/// Host and port of a `ws://` URL. `wss://` is refused: this part of the TP is plain text.
pub fn parse_url(url: &str) -> Result<(String, u16)> {
    let rest = if let Some(rest) = url.strip_prefix("ws://") {
        rest
    } else if url.starts_with("wss://") {
        return Err(Error::usage(
            "wss:// is not supported: TP3 part 5 uses plain ws:// (TLS is part 6)",
        ));
    } else {
        return Err(Error::usage(format!(
            "invalid URL '{url}': expected ws://HOST:PORT"
        )));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| Error::usage(format!("invalid URL '{url}': unclosed '['")))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(Error::usage(format!("invalid URL '{url}': no host")));
    }
    let port = match port {
        Some(p) => labnet::args::port(p, false)?,
        None => 80,
    };
    Ok((host.to_owned(), port))
}

/// What a session received.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Message events (text + binary).
    pub messages: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    /// Text messages.
    pub text: u64,
    /// Binary messages.
    pub binary: u64,
}

/// Connects to the first address of the host that accepts.
fn connect(cfg: &Config) -> Result<TcpStream> {
    let addrs = labnet::args::resolve_all(&cfg.host, cfg.port)?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((addr, e)),
        }
    }
    match last {
        Some((addr, e)) => Err(e).with_context(|| format!("connect to {addr}")),
        None => Err(Error::msg(format!("resolve {}: no address", cfg.host))),
    }
}

/// The socket as tungstenite sees it. Every byte tungstenite reads (only during the handshake:
/// the frames are read in [`frames`]) is also kept here, so that whatever the server sent right
/// behind its HTTP answer is not lost.
struct Tap {
    stream: TcpStream,
    seen: Vec<u8>,
}

impl Tap {
    /// The bytes read behind the handshake's answer (its head ends with an empty line).
    fn after_answer(&mut self) -> Vec<u8> {
        let seen = std::mem::take(&mut self.seen);
        match seen.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => seen[end + 4..].to_vec(),
            None => Vec::new(),
        }
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Runs the client: connect, handshake, send the command, print messages until the close.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    let stream = connect(cfg)?;
    let peer: SocketAddr = stream.peer_addr().context("peer address")?;
    // Set before the handshake, so a server that never answers it cannot hold the client.
    stream
        .set_read_timeout(Some(cfg.timeout))
        .context("set the read timeout")?;
    stream
        .set_write_timeout(Some(cfg.timeout))
        .context("set the write timeout")?;
    log::info(format!("connected to {peer}"));
    // The same socket, for reading the frames.
    let reader = stream.try_clone().context("duplicate the socket")?;
    let tap = Tap {
        stream,
        seen: Vec::new(),
    };
    let (mut ws, response) =
        match tungstenite::client::client_with_config(cfg.url.as_str(), tap, None) {
            Ok(pair) => pair,
            Err(HandshakeError::Interrupted(_)) => {
                return Err(Error::msg(format!(
                    "the server at {peer} did not answer the WebSocket handshake within {} s",
                    cfg.timeout.as_secs_f64()
                )));
            }
            Err(HandshakeError::Failure(e)) => return Err(handshake_error(peer, e)),
        };
    Event::new(
        Level::Info,
        format!(
            "WebSocket handshake done: HTTP {} from {peer}",
            response.status()
        ),
    )
    .emit();
    ws.send(Message::text(cfg.command.clone()))
        .map_err(|e| Error::other(format!("send the command to {peer}"), e))?;
    Event::new(
        Level::Send,
        format!(
            "{} ({} bytes, one text message)",
            cfg.command,
            cfg.command.len()
        ),
    )
    .field("command", &cfg.command)
    .emit();
    let mut frames = frames::Frames::new(reader, &ws.get_mut().after_answer());
    let summary = frames::receive(&mut ws, &mut frames, cfg)?;
    Event::new(
        Level::Stat,
        format!(
            "{} message events (on_message), {} bytes: {} binary, {} text",
            summary.messages, summary.bytes, summary.binary, summary.text
        ),
    )
    .field("messages", summary.messages)
    .field("bytes", summary.bytes)
    .field("binary", summary.binary)
    .field("text", summary.text)
    .emit();
    Ok(())
}

fn handshake_error(peer: SocketAddr, e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Http(resp) => Error::msg(format!(
            "the server at {peer} refused the WebSocket handshake: HTTP {}",
            resp.status()
        )),
        tungstenite::Error::Io(io) if is_timeout(&io) => Error::msg(format!(
            "the server at {peer} did not answer the WebSocket handshake in time"
        )),
        other => Error::msg(format!(
            "bad WebSocket handshake answer from {peer}: {other}"
        )),
    }
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One whole message: counted, refused when it is the server's `ERROR:`, printed as one event.
pub(crate) fn show(summary: &mut Summary, kind: &str, text: &str) -> Result<()> {
    summary.messages += 1;
    summary.bytes += text.len() as u64;
    if text.starts_with("ERROR:") {
        return Err(Error::msg(format!(
            "the server refused the command: {}",
            text.trim_end()
        )));
    }
    if log::is_json() {
        Event::new(Level::Recv, text)
            .field("kind", kind)
            .field("index", summary.messages)
            .field("bytes", text.len())
            .emit();
    } else {
        print_recv(text);
    }
    Ok(())
}

/// Prints `[time] [RECV] <text>` exactly as `labnet::log` would, but writes the message from where
/// it already is: a 64 MiB flood is not copied into an event and then into a formatted line.
fn print_recv(text: &str) {
    let head = Event::new(Level::Recv, "").format(false, SystemTime::now());
    let head = head.strip_suffix('\n').unwrap_or(&head);
    let mut out = io::stdout().lock();
    // A closed stdout is not a failure of the session (labnet::log ignores it the same way).
    let _ = out
        .write_all(head.as_bytes())
        .and_then(|()| out.write_all(text.as_bytes()))
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            parse_url("ws://tcpip:5006").unwrap(),
            ("tcpip".into(), 5006)
        );
        assert_eq!(
            parse_url("ws://[::1]:5006/pmu").unwrap(),
            ("::1".into(), 5006)
        );
        assert_eq!(parse_url("ws://example").unwrap(), ("example".into(), 80));
        for bad in [
            "http://x:1",
            "wss://x:1",
            "ws://:1",
            "ws://x:0",
            "ws://[::1:5",
        ] {
            assert_eq!(parse_url(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
