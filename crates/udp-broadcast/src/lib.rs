//! Week 3, exercise 1 (UDP broadcast) and homework 1 (a receiver with statistics and an
//! inactivity timeout).
//!
//! `udp-broadcast send` sends `"<message> #<seq>"` datagrams (seq counts from 0) to a broadcast
//! address; `udp-broadcast recv` prints every datagram it receives with the sender's address and
//! length, and statistics when it ends.
//!
//! What the student observes: two receivers on one segment print identical payloads; the source
//! they print is the sender's IP with an ephemeral port the kernel picked (a new one each run);
//! the limited broadcast 255.255.255.255 and the directed broadcast 172.20.0.255 both stay on
//! the segment (the router does not forward them); and without SO_BROADCAST the kernel refuses
//! the send with EACCES.
//!
//! The one socket idea: broadcast is a permission, SO_BROADCAST, that the sender must ask for;
//! receivers need nothing special but a socket bound to the wildcard address (a socket bound to
//! a unicast address does not get broadcasts on Linux), with SO_REUSEADDR so several receivers on
//! one host all get a copy.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime};

use labnet::log::{self, Event, Level};
use labnet::stats::{End, Next, Stats, Window};
use labnet::{Context, Error, Result};
use pico_args::Arguments;

/// Usage, every option with its default, and examples.
pub const HELP: &str = "\
udp-broadcast: UDP broadcast sender and receiver (week 3, exercise 1 and homework 1)

USAGE:
    udp-broadcast send [OPTIONS]
    udp-broadcast recv [OPTIONS]

SEND OPTIONS:
    --dst IP              broadcast (or any IPv4) destination    [default: 255.255.255.255]
    --port PORT           destination port                       [default: 5007]
    --count N             datagrams to send, 0 = until stopped   [default: 5]
    --interval SECONDS    pause between datagrams                [default: 1]
    --message TEXT        payload is \"TEXT #SEQ\", SEQ from 0     [default: HELLO_BCAST]
    --bind IP             local address to send from (the source port is always ephemeral)
                                                                 [default: 0.0.0.0]
    --no-broadcast-flag   leave SO_BROADCAST off: the kernel refuses the send with EACCES

RECV OPTIONS:
    --port PORT           port to listen on (0 = any free port)  [default: 5007]
    --count N             datagrams to accept, 0 = no limit      [default: 5]
    --bind-addr IP        local address; keep 0.0.0.0 (or the broadcast address itself):
                          a socket bound to a unicast address gets no broadcasts
                                                                 [default: 0.0.0.0]
    --prefix TEXT         accept only payloads starting with TEXT; others are not printed,
                          not counted in --count, and shown as \"ignored\" in the statistics
    --timeout SECONDS     end reception after this long in total  [default: none]
    --idle-timeout SECONDS
                          end reception after this long without an accepted datagram
                          (from the start, then from the last one) [default: none]

    Both timeouts end reception cleanly (exit 0) with the statistics: packets, bytes, per-source
    distribution, first and last arrival.

COMMON:
    --json                one JSON object per event (statistics: one STAT event)
    -h, --help            this help

EXAMPLES:
    udp-broadcast recv --port 5007 --count 5
    udp-broadcast send --dst 255.255.255.255 --port 5007 --count 5 --interval 1
    udp-broadcast recv --port 5007 --count 0 --idle-timeout 10 --prefix HELLO
    udp-broadcast send --dst 127.255.255.255 --count 3 --interval 0.2     (loopback, no lab)
    udp-broadcast send --dst 172.20.0.255 --no-broadcast-flag             (shows EACCES)
";

/// Default port of exercise 1.
pub const DEFAULT_PORT: u16 = labnet::topo::BROADCAST_PORT;
/// Default payload text.
pub const DEFAULT_MESSAGE: &str = "HELLO_BCAST";
/// Largest UDP payload over IPv4 (65535 − 20 IP − 8 UDP): the receive buffer never truncates.
pub const MAX_DATAGRAM: usize = 65_507;

/// What to do, from the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `--json`: one JSON object per event.
    pub json: bool,
    /// The subcommand.
    pub mode: Mode,
}

/// `send` or `recv`.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// `udp-broadcast send`.
    Send(SendConfig),
    /// `udp-broadcast recv`.
    Recv(RecvConfig),
}

/// Options of `send`.
#[derive(Clone, Debug, PartialEq)]
pub struct SendConfig {
    /// `--dst`.
    pub dst: Ipv4Addr,
    /// `--port`.
    pub port: u16,
    /// `--count` (0 = until stopped).
    pub count: u64,
    /// `--interval`.
    pub interval: Duration,
    /// `--message`.
    pub message: String,
    /// `--bind`.
    pub bind: Ipv4Addr,
    /// False with `--no-broadcast-flag`.
    pub broadcast_flag: bool,
}

/// Options of `recv`.
#[derive(Clone, Debug, PartialEq)]
pub struct RecvConfig {
    /// `--port` (0 = any free port).
    pub port: u16,
    /// `--count` (0 = no limit).
    pub count: u64,
    /// `--bind-addr`.
    pub bind_addr: Ipv4Addr,
    /// `--prefix`.
    pub prefix: Option<String>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
}

impl Config {
    /// Parses the arguments after the program name.
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut args = Arguments::from_vec(args);
        let sub: Option<String> = args.subcommand()?;
        let json = args.contains("--json");
        let mode = match sub.as_deref() {
            Some("send") => Mode::Send(send_config(&mut args)?),
            Some("recv") => Mode::Recv(recv_config(&mut args)?),
            Some(other) => {
                return Err(Error::usage(format!(
                    "unknown subcommand '{other}': expected send or recv"
                )));
            }
            None => return Err(Error::usage("missing subcommand: send or recv")),
        };
        labnet::args::finish(args)?;
        Ok(Config { json, mode })
    }
}

fn send_config(args: &mut Arguments) -> Result<SendConfig> {
    let no_flag = args.contains("--no-broadcast-flag");
    let dst = ipv4(args, "--dst", Ipv4Addr::BROADCAST)?;
    let port = labnet::args::opt_port(args, "--port", DEFAULT_PORT)?;
    if port == 0 {
        return Err(Error::usage("--port: cannot send to port 0"));
    }
    let count = labnet::args::opt_or(args, "--count", 5u64)?;
    let interval = labnet::args::opt_seconds(args, "--interval")?.unwrap_or(Duration::from_secs(1));
    let message = labnet::args::opt_or(args, "--message", DEFAULT_MESSAGE.to_owned())?;
    let bind = ipv4(args, "--bind", Ipv4Addr::UNSPECIFIED)?;
    Ok(SendConfig {
        dst,
        port,
        count,
        interval,
        message,
        bind,
        broadcast_flag: !no_flag,
    })
}

fn recv_config(args: &mut Arguments) -> Result<RecvConfig> {
    Ok(RecvConfig {
        port: labnet::args::opt_port(args, "--port", DEFAULT_PORT)?,
        count: labnet::args::opt_or(args, "--count", 5u64)?,
        bind_addr: ipv4(args, "--bind-addr", Ipv4Addr::UNSPECIFIED)?,
        prefix: labnet::args::opt(args, "--prefix")?,
        timeout: labnet::args::opt_seconds(args, "--timeout")?,
        idle_timeout: labnet::args::opt_seconds(args, "--idle-timeout")?,
    })
}

/// An IPv4 option: broadcast exists only in IPv4 (IPv6 replaced it with multicast, ff02::1).
fn ipv4(args: &mut Arguments, key: &'static str, default: Ipv4Addr) -> Result<Ipv4Addr> {
    let raw: Option<String> = args.opt_value_from_str(key)?;
    let Some(raw) = raw else {
        return Ok(default);
    };
    match labnet::args::ip(&raw).map_err(|e| Error::usage(format!("{key}: {e}")))? {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(Error::usage(format!(
            "{key}: '{raw}' is IPv6, which has no broadcast (use udp-multicast with ff02::1)"
        ))),
    }
}

/// Runs the subcommand.
pub fn run(config: &Config) -> Result<()> {
    log::set_json(config.json);
    match &config.mode {
        Mode::Send(c) => send(c),
        Mode::Recv(c) => {
            let addr = SocketAddr::from((c.bind_addr, c.port));
            let socket =
                labnet::sock::udp_receiver(addr).with_context(|| format!("bind UDP {addr}"))?;
            recv(&socket, c).map(|_| ())
        }
    }
}

/// Sends the datagrams of `send`.
pub fn send(c: &SendConfig) -> Result<()> {
    let bind = SocketAddr::from((c.bind, 0));
    let socket = labnet::sock::broadcast_sender(bind, c.broadcast_flag)
        .with_context(|| format!("bind UDP {bind}"))?;
    let local = socket.local_addr().context("read the local address")?;
    let dst = SocketAddr::from((c.dst, c.port));
    let how_many = match c.count {
        0 => "datagrams until stopped".to_owned(),
        1 => "1 datagram".to_owned(),
        n => format!("{n} datagrams"),
    };
    Event::new(
        Level::Info,
        format!(
            "sending {how_many} to {dst} from {local} (ephemeral source port {}), SO_BROADCAST {}",
            local.port(),
            if c.broadcast_flag { "on" } else { "off" }
        ),
    )
    .field("dst", dst.to_string())
    .field("local", local.to_string())
    .field("so_broadcast", c.broadcast_flag)
    .emit();
    let mut seq: u64 = 0;
    loop {
        let payload = format!("{} #{seq}", c.message);
        send_one(&socket, payload.as_bytes(), dst, c.broadcast_flag)?;
        Event::new(
            Level::Send,
            format!(
                "{} bytes to {dst} '{}'",
                payload.len(),
                log::printable(payload.as_bytes())
            ),
        )
        .field("dst", dst.to_string())
        .field("bytes", payload.len())
        .field("seq", seq)
        .field("payload", &payload)
        .emit();
        seq += 1;
        if (c.count != 0 && seq >= c.count) || log::stdout_closed() {
            break;
        }
        std::thread::sleep(c.interval);
    }
    log::info(format!(
        "sent {seq} datagram{}",
        if seq == 1 { "" } else { "s" }
    ));
    Ok(())
}

fn send_one(socket: &UdpSocket, payload: &[u8], dst: SocketAddr, flag: bool) -> Result<()> {
    match socket.send_to(payload, dst) {
        Ok(_) => Ok(()),
        // The kernel checks SO_BROADCAST in the route lookup of sendto (ip_route_output +
        // RTCF_BROADCAST): a broadcast destination without it is EACCES, and nothing is sent.
        Err(e) if e.raw_os_error() == Some(13) && !flag => Err(Error::msg(format!(
            "send to {dst}: permission denied (EACCES): SO_BROADCAST is off \
             (--no-broadcast-flag), and the kernel sends to a broadcast address only from a \
             socket that set SO_BROADCAST"
        ))),
        Err(e) => Err(e).with_context(|| format!("send to {dst}")),
    }
}

/// Receives on an already-bound socket until `--count`, `--timeout` or `--idle-timeout`, printing
/// each accepted datagram, then prints and returns the statistics.
pub fn recv(socket: &UdpSocket, c: &RecvConfig) -> Result<Stats> {
    let local = socket.local_addr().context("read the local address")?;
    let mut limits = Vec::new();
    if c.count != 0 {
        limits.push(format!("{} datagrams", c.count));
    }
    if let Some(t) = c.timeout {
        limits.push(format!("timeout {} s", t.as_secs_f64()));
    }
    if let Some(t) = c.idle_timeout {
        limits.push(format!("idle timeout {} s", t.as_secs_f64()));
    }
    if let Some(p) = &c.prefix {
        limits.push(format!("prefix '{}'", log::printable(p.as_bytes())));
    }
    let limits = if limits.is_empty() {
        "until stopped".to_owned()
    } else {
        limits.join(", ")
    };
    Event::new(
        Level::Info,
        format!("listening on {local} (SO_REUSEADDR), {limits}"),
    )
    .field("local", local.to_string())
    .emit();

    let mut stats = Stats::new();
    let mut window = Window::new(c.timeout, c.idle_timeout);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let ended = loop {
        if c.count != 0 && stats.packets() >= c.count {
            break End::Count;
        }
        let (n, from) = match window
            .next(socket, &mut buf)
            .with_context(|| format!("receive on {local}"))?
        {
            Next::Datagram(n, from) => (n, from),
            Next::Ended(why) => break why,
        };
        let payload = &buf[..n];
        if let Some(p) = &c.prefix {
            if !payload.starts_with(p.as_bytes()) {
                stats.ignore();
                continue;
            }
        }
        window.touch();
        stats.record(from, n, SystemTime::now());
        print_datagram(from, payload);
        if log::stdout_closed() {
            return Ok(stats);
        }
    };
    stats.emit(ended);
    Ok(stats)
}

fn print_datagram(from: SocketAddr, payload: &[u8]) {
    let from = labnet::sock::unmap(from);
    let text = log::printable(payload);
    Event::new(
        Level::Recv,
        format!("{} bytes from {from} '{text}'", payload.len()),
    )
    .field("src", from.to_string())
    .field("src_ip", from.ip().to_string())
    .field("src_port", from.port())
    .field("bytes", payload.len())
    .field("payload", &text)
    .emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Config> {
        Config::from_args(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn send_defaults_follow_the_handout() {
        let c = parse(&["send"]).unwrap();
        assert_eq!(
            c.mode,
            Mode::Send(SendConfig {
                dst: Ipv4Addr::BROADCAST,
                port: 5007,
                count: 5,
                interval: Duration::from_secs(1),
                message: "HELLO_BCAST".into(),
                bind: Ipv4Addr::UNSPECIFIED,
                broadcast_flag: true,
            })
        );
    }

    #[test]
    fn recv_options_are_typed() {
        let c = parse(&[
            "recv",
            "--json",
            "--port",
            "0",
            "--count",
            "0",
            "--prefix",
            "HELLO",
            "--timeout",
            "2.5",
            "--idle-timeout",
            "1",
        ])
        .unwrap();
        assert!(c.json);
        assert_eq!(
            c.mode,
            Mode::Recv(RecvConfig {
                port: 0,
                count: 0,
                bind_addr: Ipv4Addr::UNSPECIFIED,
                prefix: Some("HELLO".into()),
                timeout: Some(Duration::from_millis(2500)),
                idle_timeout: Some(Duration::from_secs(1)),
            })
        );
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for bad in [
            &["send", "--dst", "ff02::1"][..],
            &["send", "--dst", "300.0.0.1"],
            &["send", "--port", "0"],
            &["send", "--prot", "5007"],
            &["recv", "--count", "-1"],
            &["recv", "--timeout", "soon"],
            &["listen"],
            &[],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }
}
