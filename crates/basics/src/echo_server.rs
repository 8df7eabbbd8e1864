//! Code C of TP3 part 1.2: a TCP echo server with SO_REUSEADDR that reads in 16-byte `recv`
//! calls and prints each one.
//!
//! What to observe: the 41-character Romeo line arrives as **3 reads** (16 + 16 + 9) because the
//! server asks for at most 16 bytes at a time, while the client prints it in 6 (Q6); "No more data
//! from" is printed only when `recv` returns 0, i.e. when the client closes its side — not when it
//! merely stops sending (Q7, Q8). SO_REUSEADDR lets the server restart at once while old
//! connections sit in TIME_WAIT (part 1.2). Clients are served one after the other, as in the
//! handout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use labnet::log::{self, Event, Level};
use labnet::{Context, Result};

/// Usage, options and examples.
pub const HELP: &str = "\
tcp-echo-server: TP3 code C. A TCP echo server (SO_REUSEADDR) that reads in 16-byte recv() calls
and prints each one, then 'No more data from ADDR' when the client closes.

USAGE:
    tcp-echo-server [HOST] [PORT] [options]

ARGUMENTS:
    HOST    address to listen on [default: localhost]
    PORT    port [default: 5002]; 0 picks a free one (printed)

OPTIONS:
    --chunk <B>      bytes per recv() call [default: 16]
    --clients <N>    exit after serving N clients, 0 = never [default: 0]
    --json           one JSON object per line
    -h, --help       this help

EXAMPLES:
    tcp-echo-server                        # code C: localhost 5002
    tcp-echo-server 0.0.0.0 5002           # reachable from the other lab hosts
    netstat -an | grep 5002                # Q4, Q5 in another terminal
";

/// Everything the server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Bytes per `recv`.
    pub chunk: usize,
    /// Clients to serve before exiting (0 = forever).
    pub clients: u64,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments.
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let chunk: usize = labnet::args::opt_or(&mut a, "--chunk", 16)?;
        if chunk == 0 || chunk > 65_536 {
            return Err(labnet::Error::usage("--chunk must be 1-65536"));
        }
        let clients: u64 = labnet::args::opt_or(&mut a, "--clients", 0)?;
        let words = crate::words(&mut a)?;
        let (host, port) = crate::server_endpoint(&words, "localhost", 5002)?;
        Ok(Config {
            bind: crate::bind_addr(&host, port)?,
            chunk,
            clients,
            json,
        })
    }
}

/// Binds (SO_REUSEADDR) and serves.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    let listener = labnet::sock::reuse_listener(cfg.bind)
        .with_context(|| format!("listen on {}", cfg.bind))?;
    serve(&listener, cfg)
}

/// Serves clients one after the other on a bound listener.
pub fn serve(listener: &TcpListener, cfg: &Config) -> Result<()> {
    let local = listener.local_addr().context("local address")?;
    Event::new(
        Level::Info,
        format!(
            "listening on {local} (SO_REUSEADDR on), reading {} bytes per recv()",
            cfg.chunk
        ),
    )
    .field("event", "listen")
    .field("addr", local.to_string())
    .emit();
    let mut served = 0u64;
    while cfg.clients == 0 || served < cfg.clients {
        let (stream, peer) = listener.accept().context("accept a connection")?;
        served += 1;
        log::info(format!("connection from {peer}"));
        if let Err(e) = echo(stream, peer, cfg.chunk) {
            // One client's failure (a reset) must not end the server.
            log::warn(format!("client {peer}: {e}"));
        }
    }
    Ok(())
}

fn echo(mut stream: TcpStream, peer: SocketAddr, chunk: usize) -> Result<()> {
    let mut buf = vec![0u8; chunk];
    loop {
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("recv from {peer}"))?;
        if n == 0 {
            // recv() returned 0: the client closed its side (FIN), not just went quiet (Q7, Q8).
            log::info(format!("No more data from {peer}"));
            return Ok(());
        }
        Event::new(
            Level::Recv,
            format!("received: {}", String::from_utf8_lossy(&buf[..n])),
        )
        .field("bytes", n)
        .emit();
        stream
            .write_all(&buf[..n])
            .with_context(|| format!("send to {peer}"))?;
    }
}
