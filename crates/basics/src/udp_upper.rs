//! The UDP example of the network-programming lecture (UDPServer / UDPClient): the client sends a
//! line, the server answers it in upper case to the address `recvfrom` gave it.
//!
//! What to observe: the server needs no `listen`/`accept` and answers whoever sent the datagram;
//! the client must give up by itself if no answer comes (UDP may lose either datagram).

use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use labnet::log::{self, Event, Level};
use labnet::{Context, Error, Result};

/// Usage, options and examples.
pub const HELP: &str = "\
udp-upper: the UDP client/server example of the socket basics handout. The server answers each
datagram in upper case.

USAGE:
    udp-upper serve [HOST] [PORT] [--count N] [--json]
    udp-upper send HOST PORT MESSAGE [--timeout S] [--json]

OPTIONS:
    --count <N>      serve: exit after N datagrams, 0 = never [default: 0]
    --timeout <S>    send: give up after S seconds without an answer [default: 2]
    --json           one JSON object per line
    -h, --help       this help

EXAMPLES:
    udp-upper serve 12000                       # every interface, port 12000
    udp-upper send 127.0.0.1 12000 'hello there'
";

/// Client or server.
#[derive(Clone, Debug)]
pub enum Mode {
    /// The client.
    Send {
        /// Server address.
        host: String,
        /// Server port.
        port: u16,
        /// The line.
        message: String,
        /// How long to wait for the answer.
        timeout: Duration,
    },
    /// The server.
    Serve {
        /// Address to bind.
        bind: SocketAddr,
        /// Datagrams before exiting (0 = forever).
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
        parse(args, 12_000).map(|(mode, json)| Config { mode, json })
    }
}

/// Shared by `udp-upper` and `tcp-upper`: `serve [HOST] [PORT]` or `send HOST PORT MESSAGE`.
pub(crate) fn parse(args: Vec<OsString>, default_port: u16) -> Result<(Mode, bool)> {
    let mut a = pico_args::Arguments::from_vec(args);
    let json = a.contains("--json");
    let count: Option<u64> = labnet::args::opt(&mut a, "--count")?;
    let timeout = labnet::args::opt_seconds(&mut a, "--timeout")?;
    let words = crate::words(&mut a)?;
    let (sub, rest) = words
        .split_first()
        .ok_or_else(|| Error::usage("missing subcommand: send or serve"))?;
    let mode = match sub.as_str() {
        "send" => {
            if rest.len() < 3 {
                return Err(Error::usage("usage: send HOST PORT MESSAGE"));
            }
            let (host, port, message) = crate::host_port_message(rest, "", default_port)?;
            if port == 0 {
                return Err(Error::usage("port must be 1-65535"));
            }
            let timeout = timeout.unwrap_or(Duration::from_secs(2));
            if timeout.is_zero() {
                return Err(Error::usage("--timeout must be more than 0"));
            }
            Mode::Send {
                host,
                port,
                message: message.unwrap_or_default(),
                timeout,
            }
        }
        "serve" => {
            let (host, port) = crate::server_endpoint(rest, "", default_port)?;
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
    Ok((mode, json))
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
            let local: SocketAddr = if addr.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let s = UdpSocket::bind(local).context("create the UDP socket")?;
            s.set_read_timeout(Some(*timeout))
                .context("set the read timeout")?;
            s.send_to(message.as_bytes(), addr)
                .with_context(|| format!("send to {addr}"))?;
            log::send(format!("{message} (to {addr})"));
            let mut buf = [0u8; 2048];
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) if from == addr => {
                        Event::new(
                            Level::Recv,
                            format!("From Server: {}", String::from_utf8_lossy(&buf[..n])),
                        )
                        .field("src", from.to_string())
                        .emit();
                        return Ok(());
                    }
                    Ok((_, from)) => log::warn(format!("ignoring a datagram from {from}")),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(Error::msg(format!(
                            "no answer from {addr} within {} s",
                            timeout.as_secs_f64()
                        )));
                    }
                    Err(e) => return Err(e).with_context(|| format!("recvfrom {addr}")),
                }
            }
        }
        Mode::Serve { bind, count } => {
            let s = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
            serve(&s, *count)
        }
    }
}

/// The server loop on a bound socket.
pub fn serve(socket: &UdpSocket, count: u64) -> Result<()> {
    let local = socket.local_addr().context("local address")?;
    Event::new(
        Level::Info,
        format!("The server is ready to receive on {local}"),
    )
    .field("event", "listen")
    .field("addr", local.to_string())
    .emit();
    let mut buf = [0u8; 2048];
    let mut seen = 0u64;
    while count == 0 || seen < count {
        let (n, from) = socket.recv_from(&mut buf).context("recvfrom")?;
        seen += 1;
        let text = String::from_utf8_lossy(&buf[..n]);
        log::recv(format!("{text} (from {from})"));
        let upper = text.to_uppercase();
        if let Err(e) = socket.send_to(upper.as_bytes(), from) {
            log::warn(format!("send to {from}: {e}"));
            continue;
        }
        log::send(format!("{upper} (to {from})"));
    }
    Ok(())
}
