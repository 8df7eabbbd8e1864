//! Codes A and B of TP3 part 1.1: one UDP datagram from a client to a server.
//!
//! What to observe: the client sends without any connection and is done (Q2a: "Message sent");
//! the server's `recvfrom` returns the data *and the sender's address* (Q2b), and its endless loop
//! prints only once because `recvfrom` blocks until the next datagram.

use std::ffi::OsString;
use std::net::{SocketAddr, UdpSocket};

use labnet::log::{self, Event, Level};
use labnet::{Context, Error, Result};

/// The handout's message (trailing space included).
pub const HELLO: &str = "Hello, Romeo ";

/// Usage, options and examples.
pub const HELP: &str = "\
udp-hello: TP3 codes A (client) and B (server). One UDP datagram; the server prints the data and
the sender's address.

USAGE:
    udp-hello send [HOST] [PORT] [MESSAGE] [--json]
    udp-hello serve [HOST] [PORT] [--count N] [--json]

ARGUMENTS:
    HOST       send: the server [default: localhost]; serve: address to bind [default: all, Python's '']
    PORT       [default: 5001]; serve: 0 picks a free one (printed)
    MESSAGE    send: the text [default: 'Hello, Romeo ']

OPTIONS:
    --count <N>    serve: exit after N datagrams, 0 = never [default: 0]
    --json         one JSON object per line
    -h, --help     this help

EXAMPLES:
    udp-hello serve                     # code B on port 5001
    udp-hello send                      # code A: 'Hello, Romeo ' to localhost 5001
    udp-hello send 127.0.0.1 5001 'Hi there'
";

/// Client or server.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Code A.
    Send {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// Text to send.
        message: String,
    },
    /// Code B.
    Serve {
        /// Address to bind.
        bind: SocketAddr,
        /// Datagrams to receive before exiting (0 = forever).
        count: u64,
    },
}

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
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let count: Option<u64> = labnet::args::opt(&mut a, "--count")?;
        let words = crate::words(&mut a)?;
        let (sub, rest) = words
            .split_first()
            .ok_or_else(|| Error::usage("missing subcommand: send or serve"))?;
        let mode = match sub.as_str() {
            "send" => {
                if count.is_some() {
                    return Err(Error::usage("--count is for serve"));
                }
                let (host, port, message) = crate::host_port_message(rest, "localhost", 5001)?;
                if port == 0 {
                    return Err(Error::usage("port must be 1-65535"));
                }
                Mode::Send {
                    host,
                    port,
                    message: message.unwrap_or_else(|| HELLO.to_owned()),
                }
            }
            "serve" => {
                let (host, port) = crate::server_endpoint(rest, "", 5001)?;
                Mode::Serve {
                    bind: crate::bind_addr(&host, port)?,
                    count: count.unwrap_or(0),
                }
            }
            other => {
                return Err(Error::usage(format!(
                    "unknown subcommand '{other}': expected send or serve"
                )));
            }
        };
        Ok(Config { mode, json })
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
        } => {
            let addr = labnet::args::resolve(host, *port, false)?;
            let local: SocketAddr = if addr.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let s = UdpSocket::bind(local).context("create the UDP socket")?;
            s.send_to(message.as_bytes(), addr)
                .with_context(|| format!("send to {addr}"))?;
            Event::new(
                Level::Send,
                format!(
                    "{} bytes to {addr}: '{}'",
                    message.len(),
                    log::printable(message.as_bytes())
                ),
            )
            .field("bytes", message.len())
            .emit();
            log::info("Message sent");
            Ok(())
        }
        Mode::Serve { bind, count } => {
            let s = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
            serve(&s, *count)
        }
    }
}

/// Code B's loop on a bound socket.
pub fn serve(socket: &UdpSocket, count: u64) -> Result<()> {
    let local = socket.local_addr().context("local address")?;
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
    let mut buf = [0u8; 1024];
    let mut seen = 0u64;
    while count == 0 || seen < count {
        let (n, from) = socket.recv_from(&mut buf).context("recvfrom")?;
        seen += 1;
        Event::new(
            Level::Recv,
            format!("Received data: {}", String::from_utf8_lossy(&buf[..n])),
        )
        .field("bytes", n)
        .field("src", from.to_string())
        .emit();
        log::info(format!("From Address: {from}"));
    }
    Ok(())
}
