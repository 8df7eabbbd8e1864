//! Week 3 exercise 3 and homework 3: a TCP tunnel (port forwarder)
//! with a log of every event.
//!
//! The tunnel accepts a connection on its listening port, opens a second TCP connection of its own
//! to the target, and copies bytes between the two in both directions at once. What the student
//! should observe:
//!
//! - Two separate TCP connections per client: `client → router:9090` and `router:<ephemeral> →
//!   server:8080` (`ss -tn` on the router, or a capture on its interface). The server sees the
//!   router as its client, never the real client: the proxy pattern behind reverse proxies, SSH
//!   port forwarding and NAT traversal.
//! - The log: one line per event, each with a timestamp and the connection id — accepted,
//!   connected (both connections' addresses), a half-close per direction (`c→s` / `s→c`, with the
//!   byte count so far), and a close line with the bytes each way, the duration and who closed
//!   first.
//! - A half-close is a real TCP state: when one side calls `shutdown(Write)` (sends FIN), the
//!   tunnel passes it on with its own `shutdown(Write)` towards the other side and keeps the other
//!   direction flowing for as long as it needs; there is no grace timer. Only when both directions
//!   have ended is the pair closed. A reset (RST) on one side resets the other.
//! - Target down: the outbound `connect` is refused (RST), unreachable (ICMP) or times out; the
//!   tunnel logs it and closes the client's connection at once, and keeps serving.
//!
//! # Where to read
//!
//! Start with `src/threaded.rs` (`tcp-tunnel --threads`): the handout's design, two threads per
//! connection, each copying one direction, in one short file. It is the clearest way to see
//! full-duplex forwarding and the half-close passed on.
//!
//! The default relay, `src/relay/`, does the same forwarding built for performance and scale,
//! many thousands of connections on one thread. Two threads per connection would
//! be 20,000 threads for 10,000 idle clients (over 160 MiB of stacks before any buffer), so it
//! runs one event loop (`mio`, a thin wrapper over Linux epoll, edge triggered) that moves
//! whatever is ready, small messages with `read`/`write` and bulk with `splice(2)` inside the
//! kernel; a buffer or pipe is held only while bytes are in flight. Both relays log the same
//! events in the same words. Only the event loop has an idle timeout, and notices a client that
//! resets while the connect to the target is still pending; it is also the other classic answer
//! to "how do I wait on many sockets at once" (`select`/`poll`/`epoll`).
//!
//! [`serve`] takes the bound listeners and a [`Serve`] (where events go, when to stop): the
//! binary passes stdout and never stops; `tests/inproc.rs` runs it in-process on port 0 with an
//! in-memory capture and stops it, and `tests/tunnel.rs` runs the binary.

mod relay;
pub mod threaded;

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use labnet::log::{Event, Level, Printer};
use labnet::sock::Serve;
use labnet::{Context, Error, Result};

pub use relay::Options;

/// `--help` text.
pub const HELP: &str = "\
tcp-tunnel: forwards TCP connections to a target and logs every event (week 3 ex. 3, homework 3)

USAGE:
    tcp-tunnel -L LISTEN_ADDR:PORT=HOST:PORT [-L ...] [--log FILE] [--idle-timeout S]
               [--connect-timeout S] [--threads] [--json]

OPTIONS:
    -L, --forward SPEC      LISTEN_ADDR:PORT=HOST:PORT: accept on LISTEN_ADDR:PORT and connect each
                            client to HOST:PORT; repeat for several tunnels in one process.
                            LISTEN_ADDR is an IP literal ([::] = IPv4 and IPv6); HOST may be a name
    --log FILE              also append every event to FILE (same format as stdout)
    --idle-timeout S        close a connection with no bytes either way for S seconds
                            (default 300; 0 = never)
    --connect-timeout S     give up connecting to the target after S seconds (default 5)
    --threads               forward with two threads per connection, the handout's design
                            (src/threaded.rs), instead of the event loop; no idle timeout
    --json                  one JSON object per event instead of text lines
    -h, --help              this text

EXAMPLES:
    tcp-tunnel -L 0.0.0.0:9090=server:8080 --log tunnel.log
    tcp-tunnel -L [::]:9090=[::1]:8080 -L 127.0.0.1:9091=127.0.0.1:5002
    tcp-tunnel -L 127.0.0.1:9090=127.0.0.1:8080 --threads
    echo 'TUNNEL TEST' | nc router 9090                 # from the week3 client
";

/// Default idle timeout.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// Default timeout of the outbound connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One `-L` tunnel: where to listen and where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The local address to accept on.
    pub listen: SocketAddr,
    /// The target host, a name or an IP literal (without brackets).
    pub host: String,
    /// The target port.
    pub port: u16,
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.listen, self.target())
    }
}

impl Forward {
    /// `host:port`, with brackets around an IPv6 literal.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Forward {
    type Err = Error;

    /// `LISTEN_ADDR:PORT=HOST:PORT`, e.g. `0.0.0.0:9090=server:8080` or `[::]:9090=[::1]:8080`.
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |why: &str| Error::usage(format!("invalid -L '{spec}': {why}"));
        let (listen, target) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected LISTEN_ADDR:PORT=HOST:PORT"))?;
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| bad("the listen side must be IP:PORT, e.g. 0.0.0.0:9090 or [::]:9090"))?;
        let (host, port) = target
            .rsplit_once(':')
            .ok_or_else(|| bad("the target must be HOST:PORT"))?;
        let port = labnet::args::port(port, false).map_err(|e| bad(&e.to_string()))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
                .ok_or_else(|| bad("an IPv6 target is written [ADDR]:PORT"))?,
            None if host.contains(':') => {
                return Err(bad("an IPv6 target is written [ADDR]:PORT"));
            }
            None => host,
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("empty or malformed target host"));
        }
        Ok(Forward {
            listen,
            host: host.to_owned(),
            port,
        })
    }
}

/// Command-line options.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Every `-L`.
    pub forwards: Vec<Forward>,
    /// `--log`.
    pub log: Option<PathBuf>,
    /// `--idle-timeout`; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// `--connect-timeout`.
    pub connect_timeout: Duration,
    /// `--threads`: the threaded relay (two threads per connection) instead of the event loop.
    pub threads: bool,
    /// `--json`.
    pub json: bool,
}

impl Config {
    /// Parses the arguments (without the program name).
    pub fn from_args(args: Vec<OsString>) -> Result<Self> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let threads = a.contains("--threads");
        let specs: Vec<String> = a.values_from_str(["-L", "--forward"])?;
        let log: Option<PathBuf> = a.opt_value_from_os_str("--log", |s| {
            Ok::<_, std::convert::Infallible>(PathBuf::from(s))
        })?;
        let idle = labnet::args::opt_seconds(&mut a, "--idle-timeout")?;
        let connect_timeout = labnet::args::opt_seconds(&mut a, "--connect-timeout")?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        labnet::args::finish(a)?;
        if specs.is_empty() {
            return Err(Error::usage(
                "nothing to forward: give at least one -L LISTEN_ADDR:PORT=HOST:PORT",
            ));
        }
        if threads && idle.is_some() {
            return Err(Error::usage(
                "--idle-timeout works with the event-loop relay only, not with --threads",
            ));
        }
        let idle = idle.unwrap_or(DEFAULT_IDLE);
        if connect_timeout.is_zero() {
            return Err(Error::usage("--connect-timeout must be more than 0"));
        }
        let forwards = specs
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Forward>>>()?;
        Ok(Config {
            forwards,
            log,
            idle_timeout: (!threads && !idle.is_zero()).then_some(idle),
            connect_timeout,
            threads,
            json,
        })
    }
}

/// Binds every `-L` listener, opens the log file, and forwards forever.
pub fn run(config: &Config) -> Result<()> {
    labnet::log::set_json(config.json);
    let ctx = Serve::stdout();
    let printer = match &config.log {
        Some(path) => Some(
            Printer::append(path, config.json)
                .with_context(|| format!("open log file {}", path.display()))?,
        ),
        None => None,
    };
    let mut tunnels: Vec<(TcpListener, Forward)> = Vec::new();
    for fwd in &config.forwards {
        // `[::]` listens dual stack (IPV6_V6ONLY off, explicitly); every other address binds that
        // address only. SO_REUSEADDR: a restarted tunnel binds at once despite TIME_WAIT.
        let listener = labnet::sock::listener_for(fwd.listen)
            .with_context(|| format!("bind {}", fwd.listen))?;
        tunnels.push((listener, fwd.clone()));
    }
    let opts = Options {
        idle_timeout: config.idle_timeout,
        connect_timeout: config.connect_timeout,
        printer,
    };
    for (listener, fwd) in &tunnels {
        let local = listener.local_addr().context("read local address")?;
        let ev = Event::new(
            Level::Info,
            format!("tunnel listening on {local} -> {}", fwd.target()),
        )
        .field("event", "listen")
        .field("addr", local.to_string())
        .field("target", fwd.target());
        if let Some(p) = &opts.printer {
            ev.clone().emit_to(p);
        }
        ctx.sink.emit(ev);
    }
    if config.threads {
        threaded::serve(tunnels, opts, &ctx)
    } else {
        serve(tunnels, &opts, &ctx)
    }
}

/// Forwards connections of every `(listener, forward)` pair until the poll itself fails or
/// `ctx.stop` (never, for the binary). Events go to `ctx.sink`, and to the `--log` printer of
/// `opts` when there is one.
///
/// The listeners are already bound (tests bind port 0); they are switched to nonblocking here.
/// One event loop owns every relayed connection, so a stop closes them too: `serve` returns
/// `Ok(())` within about [`labnet::sock::STOP_POLL`] and both sockets of every pair are closed.
pub fn serve(tunnels: Vec<(TcpListener, Forward)>, opts: &Options, ctx: &Serve) -> Result<()> {
    relay::serve(tunnels, opts, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: &[&str]) -> Result<Config> {
        Config::from_args(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn forward_specs_parse_v4_v6_and_names() {
        let f: Forward = "0.0.0.0:9090=server:8080".parse().unwrap();
        assert_eq!(f.listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!((f.host.as_str(), f.port), ("server", 8080));
        let f: Forward = "[::]:9090=[::1]:8080".parse().unwrap();
        assert_eq!(f.listen, "[::]:9090".parse().unwrap());
        assert_eq!((f.host.as_str(), f.port), ("::1", 8080));
        assert_eq!(f.target(), "[::1]:8080");
        assert_eq!(f.to_string(), "[::]:9090=[::1]:8080");
    }

    #[test]
    fn bad_forward_specs_are_usage_errors() {
        for bad in [
            "9090=server:8080",
            "0.0.0.0:9090",
            "0.0.0.0:9090=server",
            "0.0.0.0:9090=server:0",
            "0.0.0.0:9090=server:99999",
            "0.0.0.0:9090=:8080",
            "host:9090=server:8080",
            "0.0.0.0:9090=::1:8080",
            "0.0.0.0:9090=[nothost]:8080",
            "0.0.0.0:70000=server:8080",
        ] {
            let e = bad.parse::<Forward>().unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn several_forwards_and_options() {
        let c = cfg(&[
            "-L",
            "0.0.0.0:9090=server:8080",
            "--forward",
            "127.0.0.1:9091=127.0.0.1:22",
            "--idle-timeout",
            "0",
            "--connect-timeout",
            "0.5",
            "--log",
            "t.log",
        ])
        .unwrap();
        assert_eq!(c.forwards.len(), 2);
        assert_eq!(c.forwards[1].port, 22);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.log, Some(PathBuf::from("t.log")));
    }

    #[test]
    fn missing_forward_or_bad_flag_is_usage_error() {
        assert_eq!(cfg(&[]).unwrap_err().exit_code(), 2);
        assert_eq!(
            cfg(&["-L", "0.0.0.0:1=a:2", "--bogus"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            cfg(&["-L", "0.0.0.0:1=a:2", "--connect-timeout", "0"])
                .unwrap_err()
                .exit_code(),
            2
        );
    }
}
