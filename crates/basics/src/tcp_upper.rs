//! The TCP example of the network-programming lecture (TCPServer / TCPClient): the client connects,
//! sends a line, and prints the server's upper-case answer; the server answers and closes.
//!
//! What to observe: `accept` returns a *new* socket for each client while the listening socket
//! keeps waiting for the next (netstat shows both); the client reads until the server closes.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use labnet::log::{self, Event, Level};
use labnet::{Context, Error, Result};

pub use crate::udp_upper::Mode;

/// Usage, options and examples.
pub const HELP: &str = "\
tcp-upper: the TCP client/server example of the socket basics handout. The server answers each
connection's line in upper case and closes it.

USAGE:
    tcp-upper serve [HOST] [PORT] [--count N] [--json]
    tcp-upper send HOST PORT MESSAGE [--timeout S] [--json]

OPTIONS:
    --count <N>      serve: exit after N connections, 0 = never [default: 0]
    --timeout <S>    send: give up after S seconds without an answer [default: 2]
    --json           one JSON object per line
    -h, --help       this help

EXAMPLES:
    tcp-upper serve 12000                        # every interface, port 12000
    tcp-upper send 127.0.0.1 12000 'hello there'
";

/// Everything the program needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// What to do.
    pub mode: Mode,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments.
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        crate::udp_upper::parse(args, 12_000).map(|(mode, json)| Config { mode, json })
    }
}

/// Runs the client or the server.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    match &cfg.mode {
        Mode::Send {
            host,
            port,
            message,
            timeout,
        } => {
            let addr = labnet::args::resolve(host, *port, false)?;
            let mut s = TcpStream::connect_timeout(&addr, *timeout)
                .with_context(|| format!("connect to {addr}"))?;
            s.set_read_timeout(Some(*timeout))
                .context("set the read timeout")?;
            s.write_all(message.as_bytes())
                .with_context(|| format!("send to {addr}"))?;
            log::send(format!("{message} (to {addr})"));
            // The server closes after its answer: read to the end, however TCP cut it.
            let mut answer = Vec::new();
            s.read_to_end(&mut answer)
                .with_context(|| format!("recv from {addr}"))?;
            if answer.is_empty() {
                return Err(Error::msg(format!(
                    "{addr} closed the connection without an answer"
                )));
            }
            Event::new(
                Level::Recv,
                format!("From Server: {}", String::from_utf8_lossy(&answer)),
            )
            .emit();
            Ok(())
        }
        Mode::Serve { bind, count } => {
            let l =
                labnet::sock::reuse_listener(*bind).with_context(|| format!("listen on {bind}"))?;
            serve(&l, *count)
        }
    }
}

/// The server loop on a bound listener: one connection at a time, one line each.
pub fn serve(listener: &TcpListener, count: u64) -> Result<()> {
    let local = listener.local_addr().context("local address")?;
    Event::new(
        Level::Info,
        format!("The server is ready to receive on {local}"),
    )
    .field("event", "listen")
    .field("addr", local.to_string())
    .emit();
    let mut served = 0u64;
    while count == 0 || served < count {
        let (mut conn, peer) = listener.accept().context("accept a connection")?;
        served += 1;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 1024];
        let n = match conn.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                log::warn(format!("recv from {peer}: {e}"));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        log::recv(format!("{text} (from {peer})"));
        let upper = text.to_uppercase();
        match conn.write_all(upper.as_bytes()) {
            Ok(()) => log::send(format!("{upper} (to {peer})")),
            Err(e) => log::warn(format!("send to {peer}: {e}")),
        }
        // Dropping `conn` closes this connection only; the listener keeps listening.
    }
    Ok(())
}
