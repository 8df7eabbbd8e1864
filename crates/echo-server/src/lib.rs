//! The week 3 lab's course server (`server:8080`): an echo server, the target of the week 3
//! tunnel exercise ("verify the echo server is running"). TP3 part 1's code C is another program,
//! `tcp-echo-server` in the `basics` crate, which follows that handout line by line.
//!
//! TCP: every accepted connection gets its own named thread that reads and writes back whatever
//! arrives until the client closes. What the student should observe:
//!
//! - `ss -tan` / `netstat -an` shows one LISTEN socket and one ESTABLISHED socket per client; the
//!   listening socket was made with SO_REUSEADDR, so a restarted server binds at once even while
//!   connections of the previous run sit in TIME_WAIT.
//! - TCP is a byte stream: the server logs each `read` as one RECV line, and how the client's
//!   bytes were cut into reads has nothing to do with how the client wrote them.
//! - `read` returns 0 only when the client closes its side (FIN): the close line says who closed
//!   first and after how long (killing the client closes its socket, the kernel sends the FIN).
//!
//! `--udp` echoes datagrams instead: one `recv_from`, one `send_to` back to the source address,
//! message boundaries kept.
//!
//! The server survives every bad client: a reset, a half-close, a client that never reads or
//! never sends (closed after the idle timeout). Accepting goes through the kit's accept loop,
//! [`labnet::sock::AcceptLoop`], which handles the hostile cases at the door (the descriptor
//! limit, failed thread starts, a crowd of clients).
//!
//! [`serve`] and [`serve_udp`] take an already-bound socket and a [`Serve`] (where events go,
//! when to stop): the binary passes stdout and never stops; the tests (`tests/inproc.rs`) bind
//! port 0 in the test process, run `serve` on a thread with an in-memory capture, read the
//! events it logged, stop it and join it. `tests/echo.rs` runs the binary for what only a
//! process shows (flags, exit codes, descriptor limits).

use std::ffi::OsString;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use labnet::error::describe;
use labnet::log::Sink;
use labnet::log::{Event, Level};
use labnet::sock::{AcceptLoop, Serve};
use labnet::{Context, Result};

/// `--help` text.
pub const HELP: &str = "\
echo-server: sends back every byte it receives (the week 3 lab's server:8080)

USAGE:
    echo-server [--port PORT] [--bind ADDR] [--udp] [--idle-timeout S] [--quiet] [--json]

OPTIONS:
    --port PORT          port to listen on (default 8080; 0 = any free port)
    --bind ADDR          local address (default :: = every IPv4 and IPv6 address, dual stack)
    --udp                echo UDP datagrams instead of TCP connections
    --idle-timeout S     close a TCP connection silent for S seconds (default 300; 0 = never)
    --max-clients N      TCP clients served at once; one more is closed at once (default 10000)
    --quiet              log connections and closes only, not every read
    --json               one JSON object per event instead of text lines
    -h, --help           this text

EXAMPLES:
    echo-server --port 8080
    echo-server --port 8080 --bind 127.0.0.1          # on loopback only
    echo-server --port 8080 --udp
    echo 'DIRECT TEST' | nc server 8080               # from the week3 client

TP3 part 1 (code C) is tcp-echo-server, in the basics crate.
";

/// Default TCP/UDP port (the week 3 lab's echo server).
pub const DEFAULT_PORT: u16 = labnet::topo::ECHO_PORT;

/// Default cap on clients served at once (each costs a thread and a descriptor).
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// Default idle timeout of a TCP connection.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);

/// Stack size of each client thread: the handler keeps its buffer on the heap and calls a few
/// small functions, so 64 KiB is plenty, and 1,000 clients reserve 64 MiB of address space, not
/// the 8 GiB that the default 8 MiB stacks would.
pub const THREAD_STACK: usize = 64 * 1024;

/// Size of the buffer each client thread reads into.
const BUF_SIZE: usize = 16 * 1024;

/// Command-line options.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `--port`.
    pub port: u16,
    /// `--bind`.
    pub bind: IpAddr,
    /// `--udp`.
    pub udp: bool,
    /// `--idle-timeout`; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// `--quiet`.
    pub quiet: bool,
    /// `--max-clients`.
    pub max_clients: usize,
    /// `--json`.
    pub json: bool,
}

impl Config {
    /// Parses the arguments (without the program name).
    pub fn from_args(args: Vec<OsString>) -> Result<Self> {
        let mut a = pico_args::Arguments::from_vec(args);
        let udp = a.contains("--udp");
        let quiet = a.contains("--quiet");
        let json = a.contains("--json");
        let port = labnet::args::opt_port(&mut a, "--port", DEFAULT_PORT)?;
        let bind: Option<String> = a.opt_value_from_str("--bind")?;
        let bind = match bind {
            Some(s) => labnet::args::ip(&s)?,
            None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let idle = labnet::args::opt_seconds(&mut a, "--idle-timeout")?.unwrap_or(DEFAULT_IDLE);
        let max_clients: usize =
            labnet::args::opt_or(&mut a, "--max-clients", DEFAULT_MAX_CLIENTS)?;
        if max_clients == 0 {
            return Err(labnet::Error::usage("--max-clients: expected at least 1"));
        }
        labnet::args::finish(a)?;
        Ok(Config {
            port,
            bind,
            udp,
            idle_timeout: (!idle.is_zero()).then_some(idle),
            quiet,
            max_clients,
            json,
        })
    }

    /// The options of a TCP server made from this configuration.
    pub fn options(&self) -> Options {
        Options {
            idle_timeout: self.idle_timeout,
            quiet: self.quiet,
            max_clients: self.max_clients,
        }
    }
}

/// How a TCP server treats its clients.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Close a connection silent for this long (reads) or not reading for this long (writes).
    pub idle_timeout: Option<Duration>,
    /// Log connect and close only.
    pub quiet: bool,
    /// Clients served at once; one more is closed at once.
    pub max_clients: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_timeout: Some(DEFAULT_IDLE),
            quiet: false,
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// Binds the configured socket and serves forever.
pub fn run(config: &Config) -> Result<()> {
    labnet::log::set_json(config.json);
    let ctx = Serve::stdout();
    let addr = SocketAddr::new(config.bind, config.port);
    if config.udp {
        let socket = match addr.ip() {
            IpAddr::V6(ip) if ip.is_unspecified() => labnet::sock::dual_stack_udp(addr.port()),
            _ => UdpSocket::bind(addr),
        }
        .with_context(|| format!("bind udp {addr}"))?;
        let local = socket.local_addr().context("read local address")?;
        let ev = Event::new(Level::Info, format!("echo-server listening on udp {local}"))
            .field("event", "listen")
            .field("proto", "udp")
            .field("addr", local.to_string());
        ctx.sink.emit(ev);
        serve_udp(&socket, &ctx)
    } else {
        let listener =
            labnet::sock::listener_for(addr).with_context(|| format!("bind tcp {addr}"))?;
        let local = listener.local_addr().context("read local address")?;
        let ev = Event::new(Level::Info, format!("echo-server listening on tcp {local}"))
            .field("event", "listen")
            .field("proto", "tcp")
            .field("addr", local.to_string());
        ctx.sink.emit(ev);
        serve(listener, &config.options(), &ctx)
    }
}

/// Echoes UDP datagrams until stopped (forever for the binary): each one goes back, whole, to
/// the address it came from. Events go to `ctx.sink`.
pub fn serve_udp(socket: &UdpSocket, ctx: &Serve) -> Result<()> {
    let sink = &ctx.sink;
    ctx.stop
        .watch_udp(socket)
        .context("set the stop timeout on the socket")?;
    let mut buf = vec![0u8; 65_536];
    loop {
        if ctx.stop.is_stopped() {
            return Ok(());
        }
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // The stop timeout came back with nothing: look at the flag again.
            Err(e) if ctx.stop.can_stop() && is_timeout(&e) => continue,
            // An ICMP error for an earlier reply can surface here (ECONNREFUSED): one client's
            // problem, not the server's.
            Err(e) => {
                sink.warn(format!("recv_from: {e}"));
                continue;
            }
        };
        let from_shown = labnet::sock::unmap(from);
        let data = &buf[..n];
        sink.emit(
            Event::new(
                Level::Recv,
                format!(
                    "{n} bytes from {from_shown} '{}'",
                    preview(data, PREVIEW_CHARS)
                ),
            )
            .field("event", "datagram")
            .field("src", from_shown.to_string())
            .field("bytes", n),
        );
        if let Err(e) = socket.send_to(data, from) {
            sink.warn(format!("send_to {from_shown}: {e}"));
        }
    }
}

/// Accepts TCP clients until stopped (forever for the binary), one named thread per client,
/// through the kit's accept loop ([`AcceptLoop`]: back-off at the descriptor limit, thread-start
/// retries, the connection cap). Events go to `ctx.sink`.
///
/// Only an error of the listening socket itself ends it with an error; failures of one client,
/// of thread creation or of file-descriptor exhaustion are logged and survived. After a stop it
/// returns `Ok(())` at once; clients being served finish on their own (they close, or the idle
/// timeout closes them).
pub fn serve(listener: TcpListener, opts: &Options, ctx: &Serve) -> Result<()> {
    let opts = opts.clone();
    let sink = ctx.sink.clone();
    AcceptLoop::new("echo-server")
        .thread_prefix("echo")
        .stack_size(THREAD_STACK)
        .max_clients(opts.max_clients)
        .sink(ctx.sink.clone())
        .stop(ctx.stop.clone())
        .run(&listener, move |c| {
            handle(c.id, c.stream, c.peer, &opts, &sink)
        })
        .context("read local address")
}

/// How a client connection ended.
enum End {
    ClientClosed,
    Idle,
    NotReading,
    Reset(io::Error),
}

/// Serves one client: read, write back, until the client closes or goes quiet.
fn handle(id: u64, mut stream: TcpStream, peer: SocketAddr, opts: &Options, sink: &Sink) {
    let peer = labnet::sock::unmap(peer);
    let started = Instant::now();
    // Small replies go out at once instead of waiting for Nagle's algorithm (RFC 896) to gather
    // more: an echo server answers interactive typing.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(opts.idle_timeout);
    let _ = stream.set_write_timeout(opts.idle_timeout);
    sink.emit(
        Event::new(Level::Info, format!("#{id} connection from {peer}"))
            .field("event", "connect")
            .field("id", id)
            .field("peer", peer.to_string()),
    );
    let mut buf = vec![0u8; BUF_SIZE];
    let mut total: u64 = 0;
    let end = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break End::ClientClosed,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => break End::Idle,
            Err(e) => break End::Reset(e),
        };
        let data = &buf[..n];
        if !opts.quiet {
            sink.emit(
                Event::new(
                    Level::Recv,
                    format!(
                        "#{id} {n} bytes from {peer} '{}'",
                        preview(data, PREVIEW_CHARS)
                    ),
                )
                .field("event", "data")
                .field("id", id)
                .field("bytes", n),
            );
        }
        match stream.write_all(data) {
            Ok(()) => total += n as u64,
            Err(e) if is_timeout(&e) => break End::NotReading,
            Err(e) => break End::Reset(e),
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let (how, who) = match &end {
        End::ClientClosed => ("closed by client".to_owned(), "client"),
        End::Idle => (
            format!("closed by server: idle for {}", shown(opts.idle_timeout)),
            "server",
        ),
        End::NotReading => (
            format!(
                "closed by server: client did not read for {}",
                shown(opts.idle_timeout)
            ),
            "server",
        ),
        End::Reset(e) => (format!("reset by client: {}", describe(e)), "client"),
    };
    if !matches!(end, End::ClientClosed | End::Reset(_)) {
        // We close first: the FIN goes out now, the client's read returns 0.
        let _ = stream.shutdown(Shutdown::Both);
    }
    drop(stream);
    sink.emit(
        Event::new(
            Level::Info,
            format!("#{id} {peer} {how} after {secs:.3} s, {total} bytes echoed"),
        )
        .field("event", "close")
        .field("id", id)
        .field("peer", peer.to_string())
        .field("closed_by", who)
        .field("bytes", total)
        .field("duration_s", secs),
    );
}

fn shown(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{} s", d.as_secs_f64()),
        None => "ever".into(),
    }
}

/// How many characters of a payload a RECV line shows.
const PREVIEW_CHARS: usize = 60;

/// The start of a payload, printable and on one line.
fn preview(data: &[u8], max: usize) -> String {
    // Only the start is shown: no need to format 16 KiB of hex for 60 characters.
    let text = labnet::log::printable(&data[..data.len().min(4 * max)]);
    if text.chars().count() <= max {
        text
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

fn is_timeout(e: &io::Error) -> bool {
    // SO_RCVTIMEO / SO_SNDTIMEO expiry is EAGAIN on Linux.
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: &[&str]) -> Result<Config> {
        Config::from_args(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn defaults_are_the_lab_server() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.bind, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(300)));
        assert!(!c.udp);
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for bad in [
            &["--port", "70000"][..],
            &["--bind", "nowhere"],
            &["--idle-timeout", "-1"],
            &["--prot", "80"],
            &["extra"],
        ] {
            assert_eq!(cfg(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        assert_eq!(cfg(&["--idle-timeout", "0"]).unwrap().idle_timeout, None);
    }

    #[test]
    fn preview_cuts_long_payloads() {
        assert_eq!(preview(b"hi\n", 10), "hi\\n");
        assert_eq!(preview(b"abcdef", 3), "abc…");
    }
}
