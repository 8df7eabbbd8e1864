//! `client_tcp.py` of the "Socket programming in Python" assignment: one connection, many messages. Each line
//! (or the message given on the command line) is sent and the server's answer printed.
//!
//! What to observe: the connection stays open between messages (one ESTABLISHED socket in
//! netstat for the whole conversation), unlike UDP where each datagram stands alone.

use std::ffi::OsString;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use labnet::log::{self, Event, Level};
use labnet::{Context, Error, Result};

/// Usage, options and examples.
pub const HELP: &str = "\
tcp-client: the TCP client of the socket basics handout. Sends MESSAGE (or every line typed on
stdin) over one connection and prints each answer of the server.

USAGE:
    tcp-client [HOST] [PORT] [MESSAGE] [options]

ARGUMENTS:
    HOST       the server [default: 127.0.0.1]
    PORT       its port [default: 5000]
    MESSAGE    one message to send; without it, one message per stdin line until EOF

OPTIONS:
    --timeout <S>    give up waiting for an answer after S seconds [default: 5]
    --json           one JSON object per line
    -h, --help       this help

EXAMPLES:
    tcp-client 127.0.0.1 5000 hello
    tcp-client 127.0.0.1 5000          # then type lines; Ctrl-D ends
";

/// Everything the client needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// One message, or `None` for stdin lines.
    pub message: Option<String>,
    /// Answer timeout.
    pub timeout: Duration,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments.
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let timeout =
            labnet::args::opt_seconds(&mut a, "--timeout")?.unwrap_or(Duration::from_secs(5));
        if timeout.is_zero() {
            return Err(Error::usage("--timeout must be more than 0"));
        }
        let words = crate::words(&mut a)?;
        let (host, port, message) = crate::host_port_message(&words, "127.0.0.1", 5000)?;
        if port == 0 {
            return Err(Error::usage("port must be 1-65535"));
        }
        Ok(Config {
            host,
            port,
            message,
            timeout,
            json,
        })
    }
}

/// Connects and converses.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    let stdin = io::stdin();
    match &cfg.message {
        Some(m) => converse(cfg, io::Cursor::new(m.clone().into_bytes())),
        None => converse(cfg, stdin.lock()),
    }
}

/// Sends each line of `input` and prints each answer.
pub fn converse(cfg: &Config, input: impl BufRead) -> Result<()> {
    let addr = labnet::args::resolve(&cfg.host, cfg.port, false)?;
    log::info("Waiting for connection response");
    let mut s = TcpStream::connect_timeout(&addr, cfg.timeout)
        .with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(cfg.timeout))
        .context("set the read timeout")?;
    log::info(format!("connected to {addr}"));
    let mut buf = [0u8; 1024];
    for line in input.lines() {
        let line = line.context("read stdin")?;
        if line.is_empty() {
            continue;
        }
        s.write_all(line.as_bytes())
            .with_context(|| format!("send to {addr}"))?;
        log::send(line.clone());
        let n = s
            .read(&mut buf)
            .with_context(|| format!("recv from {addr}"))?;
        if n == 0 {
            return Err(Error::msg(format!("{addr} closed the connection")));
        }
        Event::new(
            Level::Recv,
            format!("Server message: {}", String::from_utf8_lossy(&buf[..n])),
        )
        .emit();
    }
    Ok(())
}
