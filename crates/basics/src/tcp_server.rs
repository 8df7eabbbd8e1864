//! `server_tcp.py` of the "Socket programming in Python" assignment: a threaded TCP server. Each client gets a
//! number and a thread of its own; every message is answered "I received N chars: …".
//!
//! What to observe: several clients are served at once (one thread each, "Thread Number: N"), and
//! netstat shows one ESTABLISHED socket per client next to the LISTEN socket.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;

use labnet::log::{self, Event, Level};
use labnet::{Context, Error, Result};

/// Usage, options and examples.
pub const HELP: &str = "\
tcp-server: the threaded TCP server of the socket basics handout. Each client gets a thread and
every message is answered 'I received N chars: <message>'.

USAGE:
    tcp-server [HOST] [PORT] [options]

ARGUMENTS:
    HOST    address to listen on [default: 127.0.0.1]
    PORT    port [default: 5000]; 0 picks a free one (printed)

OPTIONS:
    --clients <N>    stop accepting after N clients and exit when they are done, 0 = never [default: 0]
    --json           one JSON object per line
    -h, --help       this help

EXAMPLES:
    tcp-server 127.0.0.1 5000
    tcp-client 127.0.0.1 5000 hello       # in another terminal
";

/// Everything the server needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind.
    pub bind: SocketAddr,
    /// Clients before exiting (0 = forever).
    pub clients: u64,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments.
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let clients: u64 = labnet::args::opt_or(&mut a, "--clients", 0)?;
        let words = crate::words(&mut a)?;
        let (host, port) = crate::server_endpoint(&words, "127.0.0.1", 5000)?;
        Ok(Config {
            bind: crate::bind_addr(&host, port)?,
            clients,
            json,
        })
    }
}

/// Binds and serves.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    let l = labnet::sock::reuse_listener(cfg.bind)
        .with_context(|| format!("listen on {}", cfg.bind))?;
    serve(&l, cfg.clients)
}

/// Accepts clients, one named thread each.
pub fn serve(listener: &TcpListener, clients: u64) -> Result<()> {
    let local = listener.local_addr().context("local address")?;
    Event::new(
        Level::Info,
        format!(
            "Socket is listening in address {} and port {} ...",
            local.ip(),
            local.port()
        ),
    )
    .field("event", "listen")
    .field("addr", local.to_string())
    .emit();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut number = 0u64;
    while clients == 0 || number < clients {
        let (conn, peer) = listener.accept().context("accept a connection")?;
        number += 1;
        Event::new(
            Level::Info,
            format!("Connected to Client {number}, calling from: {peer}"),
        )
        .field("event", "connect")
        .field("id", number)
        .field("peer", peer.to_string())
        .emit();
        let handle = std::thread::Builder::new()
            .name(format!("client-{number}"))
            .spawn(move || {
                log::info(format!("Thread Number: {number}"));
                if let Err(e) = converse(conn, number, peer) {
                    log::warn(format!("Client {number}: {e}"));
                }
            })
            .map_err(|e| Error::other("start a client thread", e))?;
        threads.push(handle);
        threads.retain(|t| !t.is_finished());
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn converse(mut conn: TcpStream, number: u64, peer: SocketAddr) -> Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        let n = conn
            .read(&mut buf)
            .with_context(|| format!("recv from {peer}"))?;
        if n == 0 {
            log::info(format!("Client {number} ({peer}) disconnected"));
            return Ok(());
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        Event::new(Level::Recv, format!("Client {number}: {text}"))
            .field("id", number)
            .emit();
        let reply = format!("I received {} chars: {text}", text.chars().count());
        conn.write_all(reply.as_bytes())
            .with_context(|| format!("send to {peer}"))?;
        Event::new(Level::Send, format!("Client {number}: {reply}"))
            .field("id", number)
            .emit();
    }
}
