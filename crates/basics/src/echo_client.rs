//! Code D of TP3 part 1.2: sends the Romeo line to the echo server and reads the echo back in
//! 8-byte `recv` calls, printing each.
//!
//! What to observe: the client prints the line in 6 pieces (5 × 8 + 1) where the server printed 3
//! (Q6) — `recv(8)` returns at most 8 bytes whatever the sender's writes were. Then, like the
//! handout's `while True: pass`, it keeps the connection open (until Ctrl-C or `--hold`), so the
//! server does not print "No more data from" (Q7) until the client ends (Q8).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use labnet::log::{self, Event, Level};
use labnet::{Context, Error, Result};

/// The handout's message.
pub const ROMEO: &str = "O Romeo, Romeo! wherefore art thou Romeo?";

/// Usage, options and examples.
pub const HELP: &str = "\
tcp-echo-client: TP3 code D. Sends the Romeo line to the echo server, reads the echo in 8-byte
recv() calls, prints each, then keeps the connection open like the handout's `while True: pass`.

USAGE:
    tcp-echo-client [HOST] [PORT] [MESSAGE] [options]

ARGUMENTS:
    HOST       the echo server [default: localhost]
    PORT       its port [default: 5002]
    MESSAGE    what to send [default: O Romeo, Romeo! wherefore art thou Romeo?]

OPTIONS:
    --chunk <B>    bytes per recv() call [default: 8]
    --hold <S>     keep the connection open S seconds after the echo, then close
                   [default: until Ctrl-C, as in the handout]
    --json         one JSON object per line
    -h, --help     this help

EXAMPLES:
    tcp-echo-client                       # code D against localhost 5002; Ctrl-C ends it (Q8)
    tcp-echo-client server 8080 --hold 5  # against the week 3 echo server, close after 5 s
";

/// Everything the client needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The message.
    pub message: String,
    /// Bytes per `recv`.
    pub chunk: usize,
    /// How long to keep the connection open afterwards (`None` = until killed).
    pub hold: Option<Duration>,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments.
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let chunk: usize = labnet::args::opt_or(&mut a, "--chunk", 8)?;
        if chunk == 0 || chunk > 65_536 {
            return Err(Error::usage("--chunk must be 1-65536"));
        }
        let hold = labnet::args::opt_seconds(&mut a, "--hold")?;
        let words = crate::words(&mut a)?;
        let (host, port, message) = crate::host_port_message(&words, "localhost", 5002)?;
        if port == 0 {
            return Err(Error::usage("port must be 1-65535"));
        }
        Ok(Config {
            host,
            port,
            message: message.unwrap_or_else(|| ROMEO.to_owned()),
            chunk,
            hold,
            json,
        })
    }
}

/// Connects, sends, reads the echo, holds the connection.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    if cfg.message.is_empty() {
        return Err(Error::usage("the message is empty"));
    }
    let addr = labnet::args::resolve(&cfg.host, cfg.port, false)?;
    let mut sock = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    log::info(format!(
        "connected to {addr} from {}",
        sock.local_addr().context("local address")?
    ));
    log::send(format!("sending: {}", cfg.message));
    sock.write_all(cfg.message.as_bytes())
        .with_context(|| format!("send to {addr}"))?;
    let expected = cfg.message.len();
    let mut received = 0;
    let mut buf = vec![0u8; cfg.chunk];
    while received < expected {
        let n = sock
            .read(&mut buf)
            .with_context(|| format!("recv from {addr}"))?;
        if n == 0 {
            return Err(Error::msg(format!(
                "the server closed the connection after {received} of {expected} bytes"
            )));
        }
        received += n;
        Event::new(
            Level::Recv,
            format!("received: {}", String::from_utf8_lossy(&buf[..n])),
        )
        .field("bytes", n)
        .emit();
    }
    match cfg.hold {
        Some(d) => {
            log::info(format!(
                "echo complete; holding the connection open {} s",
                d.as_secs_f64()
            ));
            std::thread::sleep(d);
        }
        None => {
            log::info("echo complete; holding the connection open (Ctrl-C closes it: Q7, Q8)");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
    log::info(format!("closing the connection to {addr}"));
    Ok(())
}
