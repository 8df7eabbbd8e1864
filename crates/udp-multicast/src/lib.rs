//! Week 3, exercise 2 (UDP multicast), and TP3 part 4.1 (the
//! multicast TV receiver, `--id-header`).
//!
//! `udp-multicast send` sends `"<message> #<seq>"` datagrams (seq counts from 0) to a group with a
//! chosen TTL, interface and loopback; `udp-multicast recv` joins the group, prints every datagram
//! with its source and length, leaves, and prints statistics.
//!
//! What the student observes: only hosts that joined print the datagrams (the others' kernels
//! drop them, although the frames reach their interface); each join shows up in a capture as an
//! IGMP Membership Report and each leave as an IGMP Leave (MLD for IPv6); the TTL decides how far
//! a datagram goes (0: this host only, 1: this segment, 2: one router further); and after
//! `--leave-after N` nothing more arrives.
//!
//! The one socket idea: a receiver must *join* (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP) to get a
//! group's datagrams; a sender needs no membership at all, only IP_MULTICAST_TTL, IP_MULTICAST_IF
//! and IP_MULTICAST_LOOP to say how far, where, and whether its own host gets a copy (TP3 Q17).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use labnet::log::{self, Event, Level};
use labnet::sock::{Iface, MulticastOptions, MulticastReceiver};
use labnet::stats::{End, Next, Stats, Window};
use labnet::wire::tv;
use labnet::{Context, Error, Result};
use pico_args::Arguments;

/// Usage, every option with its default, and examples.
pub const HELP: &str = "\
udp-multicast: UDP multicast sender and receiver (week 3 exercise 2, TP3 part 4.1)

USAGE:
    udp-multicast send [OPTIONS]
    udp-multicast recv [OPTIONS]

SEND OPTIONS:
    --group ADDR          IPv4 (224.0.0.0/4) or IPv6 (ff00::/8) group [default: 239.1.1.1]
    --port PORT           destination port                       [default: 5008]
    --count N             datagrams to send, 0 = until stopped   [default: 5]
    --interval SECONDS    pause between datagrams                [default: 1]
    --ttl N               IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS, 0-255: 0 = this host only,
                          1 = this segment, 2 = one router further [default: 1]
    --iface IF            outgoing interface: an IPv4 address (IPv4 groups), or a name or
                          index (eth0, 2; required in practice for IPv6 groups)
                                                                 [default: chosen by the route]
    --loop / --no-loop    whether receivers on this host get a copy (IP_MULTICAST_LOOP)
                                                                 [default: --loop]
    --message TEXT        payload is \"TEXT #SEQ\", SEQ from 0     [default: HELLO_MCAST]
    --id ID               put a 6-character ID in front of each payload (TP3 part 4 format)

RECV OPTIONS:
    --group ADDR          group to join                          [default: 239.1.1.1]
    --port PORT           port to listen on (0 = any free port)  [default: 5008]
    --count N             datagrams to receive, 0 = no limit     [default: 5]
    --iface IF            interface to join on: IPv4 address, name or index
                                                                 [default: chosen by the route]
    --timeout SECONDS     end reception after this long in total  [default: none]
    --idle-timeout SECONDS
                          end reception after this long without a datagram [default: none]
    --leave-after N       leave the group (IGMP Leave) after N datagrams but keep the socket
                          open and keep listening until --timeout/--idle-timeout (one of them
                          is required), so a capture shows the Leave and that nothing more
                          arrives; late datagrams are still printed, marked \"after leave\".
                          N must be smaller than --count (unless --count 0).
    --id-header           decode TP3 part 4 datagrams: 6-byte sender ID, then UTF-8 text,
                          printed as \"ID: text\" (shorter or non-UTF-8 datagrams are shown raw)

    Reception ends at --count, --timeout or --idle-timeout; the receiver then leaves the group
    (if still joined) and prints statistics (exit 0).

COMMON:
    --json                one JSON object per event (statistics: one STAT event)
    -h, --help            this help

EXAMPLES:
    udp-multicast recv --group 239.1.1.1 --port 5008 --count 5
    udp-multicast send --group 239.1.1.1 --port 5008 --count 5 --ttl 4
    udp-multicast recv --group 224.1.1.1 --port 5005 --count 0 --id-header      (TP3 TV)
    udp-multicast recv --count 10 --leave-after 3 --timeout 15
    udp-multicast send --ttl 0 --iface 127.0.0.1 --count 3          (loopback, no lab)
    udp-multicast recv --group ff15::1234 --iface eth0              (IPv6, MLD)
";

/// Default group of exercise 2.
pub const DEFAULT_GROUP: IpAddr = IpAddr::V4(labnet::topo::WEEK3_GROUP);
/// Default port of exercise 2.
pub const DEFAULT_PORT: u16 = labnet::topo::MULTICAST_PORT;
/// Default payload text.
pub const DEFAULT_MESSAGE: &str = "HELLO_MCAST";
/// Largest UDP payload (IPv6 jumbograms aside): the receive buffer never truncates.
pub const MAX_DATAGRAM: usize = 65_535;

/// What to do, from the command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `--json`.
    pub json: bool,
    /// The subcommand.
    pub mode: Mode,
}

/// `send` or `recv`.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// `udp-multicast send`.
    Send(SendConfig),
    /// `udp-multicast recv`.
    Recv(RecvConfig),
}

/// Options of `send`.
#[derive(Clone, Debug, PartialEq)]
pub struct SendConfig {
    /// `--group`.
    pub group: IpAddr,
    /// `--port`.
    pub port: u16,
    /// `--count` (0 = until stopped).
    pub count: u64,
    /// `--interval`.
    pub interval: Duration,
    /// `--ttl` (0–255).
    pub ttl: u32,
    /// `--iface`.
    pub iface: Iface,
    /// `--loop` (default) / `--no-loop`.
    pub loopback: bool,
    /// `--message`.
    pub message: String,
    /// `--id`.
    pub id: Option<tv::Id>,
}

/// Options of `recv`.
#[derive(Clone, Debug, PartialEq)]
pub struct RecvConfig {
    /// `--group`.
    pub group: IpAddr,
    /// `--port` (0 = any free port).
    pub port: u16,
    /// `--count` (0 = no limit).
    pub count: u64,
    /// `--iface`.
    pub iface: Iface,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `--leave-after`.
    pub leave_after: Option<u64>,
    /// `--id-header`.
    pub id_header: bool,
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
    let loop_on = args.contains("--loop");
    let loop_off = args.contains("--no-loop");
    if loop_on && loop_off {
        return Err(Error::usage("--loop and --no-loop exclude each other"));
    }
    let group = group(args)?;
    let port = labnet::args::opt_port(args, "--port", DEFAULT_PORT)?;
    if port == 0 {
        return Err(Error::usage("--port: cannot send to port 0"));
    }
    let count = labnet::args::opt_or(args, "--count", 5u64)?;
    let interval = labnet::args::opt_seconds(args, "--interval")?.unwrap_or(Duration::from_secs(1));
    let ttl = labnet::args::opt_or(args, "--ttl", 1u32)?;
    if ttl > 255 {
        return Err(Error::usage(format!(
            "invalid value '{ttl}' for --ttl: expected 0-255"
        )));
    }
    let iface = iface(args, group)?;
    let message = labnet::args::opt_or(args, "--message", DEFAULT_MESSAGE.to_owned())?;
    let id: Option<String> = args.opt_value_from_str("--id")?;
    let id = id
        .map(|s| tv::Id::parse(&s).map_err(|e| Error::usage(format!("--id: {e}"))))
        .transpose()?;
    Ok(SendConfig {
        group,
        port,
        count,
        interval,
        ttl,
        iface,
        loopback: !loop_off,
        message,
        id,
    })
}

fn recv_config(args: &mut Arguments) -> Result<RecvConfig> {
    let id_header = args.contains("--id-header");
    let group = group(args)?;
    let port = labnet::args::opt_port(args, "--port", DEFAULT_PORT)?;
    let count = labnet::args::opt_or(args, "--count", 5u64)?;
    let iface = iface(args, group)?;
    let timeout = labnet::args::opt_seconds(args, "--timeout")?;
    let idle_timeout = labnet::args::opt_seconds(args, "--idle-timeout")?;
    let leave_after: Option<u64> = labnet::args::opt(args, "--leave-after")?;
    if let Some(n) = leave_after {
        if n == 0 {
            return Err(Error::usage("--leave-after: expected 1 or more datagrams"));
        }
        if timeout.is_none() && idle_timeout.is_none() {
            return Err(Error::usage(
                "--leave-after needs --timeout or --idle-timeout (after leaving, nothing \
                 more should arrive, so only a timeout can end reception)",
            ));
        }
        if count != 0 && n >= count {
            return Err(Error::usage(format!(
                "--leave-after {n} must be smaller than --count {count} (or use --count 0)"
            )));
        }
    }
    Ok(RecvConfig {
        group,
        port,
        count,
        iface,
        timeout,
        idle_timeout,
        leave_after,
        id_header,
    })
}

/// `--group`: an address in 224.0.0.0/4 or ff00::/8, else a usage error.
fn group(args: &mut Arguments) -> Result<IpAddr> {
    let raw: Option<String> = args.opt_value_from_str("--group")?;
    let Some(raw) = raw else {
        return Ok(DEFAULT_GROUP);
    };
    let ip = labnet::args::ip(&raw).map_err(|e| Error::usage(format!("--group: {e}")))?;
    if !ip.is_multicast() {
        return Err(Error::usage(format!(
            "--group: {ip} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)"
        )));
    }
    Ok(ip)
}

/// `--iface`: checked against the group's family (IPv6 names interfaces by index).
fn iface(args: &mut Arguments, group: IpAddr) -> Result<Iface> {
    let raw: Option<String> = args.opt_value_from_str("--iface")?;
    let Some(raw) = raw else {
        return Ok(Iface::Any);
    };
    let iface: Iface = raw
        .parse()
        .map_err(|e| Error::usage(format!("--iface: {e}")))?;
    if let (IpAddr::V6(_), Iface::V4(a)) = (group, &iface) {
        return Err(Error::usage(format!(
            "--iface: an IPv6 group needs an interface name or index (eth0), not {a}"
        )));
    }
    Ok(iface)
}

/// Runs the subcommand.
pub fn run(config: &Config) -> Result<()> {
    log::set_json(config.json);
    match &config.mode {
        Mode::Send(c) => send(c),
        Mode::Recv(c) => {
            let rx = join(c.group, c.port, &c.iface)?;
            recv(rx, c).map(|_| ())
        }
    }
}

/// What the kernel sends on the wire when a socket joins or leaves: IGMP for IPv4, MLD for IPv6.
fn membership_protocol(group: IpAddr) -> (&'static str, &'static str) {
    match group {
        IpAddr::V4(_) => ("IGMP Membership Report", "IGMP Leave"),
        IpAddr::V6(_) => ("MLD Report", "MLD Done"),
    }
}

/// Binds `port` and joins `group` on `iface`, logging the join.
pub fn join(group: IpAddr, port: u16, iface: &Iface) -> Result<MulticastReceiver> {
    let rx = MulticastReceiver::join(group, port, iface)
        .with_context(|| format!("bind UDP port {port} and join {group} on {iface}"))?;
    let local = rx.socket().local_addr().context("read the local address")?;
    let (report, _) = membership_protocol(group);
    Event::new(
        Level::Info,
        format!("joined {group} on {iface}, listening on {local} ({report} sent)"),
    )
    .field("event", "join")
    .field("group", group.to_string())
    .field("iface", iface.to_string())
    .field("local", local.to_string())
    .emit();
    Ok(rx)
}

fn leave(rx: &mut MulticastReceiver, iface: &Iface, why: &str) -> Result<()> {
    let group = rx.group();
    rx.leave()
        .with_context(|| format!("leave {group} on {iface}"))?;
    let (_, leave) = membership_protocol(group);
    Event::new(
        Level::Info,
        format!("left {group} on {iface} {why} ({leave} sent)"),
    )
    .field("event", "leave")
    .field("group", group.to_string())
    .field("iface", iface.to_string())
    .emit();
    Ok(())
}

/// Sends the datagrams of `send`.
pub fn send(c: &SendConfig) -> Result<()> {
    let opts = MulticastOptions {
        ttl: c.ttl,
        loopback: c.loopback,
        iface: c.iface.clone(),
    };
    let socket = labnet::sock::multicast_sender(c.group, &opts).with_context(|| {
        format!(
            "set up a sender for {} (TTL {}, interface {})",
            c.group, c.ttl, c.iface
        )
    })?;
    let local = socket.local_addr().context("read the local address")?;
    let dst = SocketAddr::new(c.group, c.port);
    let how_many = match c.count {
        0 => "datagrams until stopped".to_owned(),
        1 => "1 datagram".to_owned(),
        n => format!("{n} datagrams"),
    };
    Event::new(
        Level::Info,
        format!(
            "sending {how_many} to {dst} from {local}, TTL {}, interface {}, loopback {}",
            c.ttl,
            c.iface,
            if c.loopback { "on" } else { "off" }
        ),
    )
    .field("dst", dst.to_string())
    .field("local", local.to_string())
    .field("ttl", c.ttl)
    .field("loopback", c.loopback)
    .emit();
    let mut seq: u64 = 0;
    loop {
        let text = format!("{} #{seq}", c.message);
        let payload = match &c.id {
            Some(id) => tv::encode(id, &text),
            None => text.clone().into_bytes(),
        };
        socket
            .send_to(&payload, dst)
            .with_context(|| format!("send to {dst}"))?;
        Event::new(
            Level::Send,
            format!(
                "{} bytes to {dst} '{}'",
                payload.len(),
                log::printable(&payload)
            ),
        )
        .field("dst", dst.to_string())
        .field("bytes", payload.len())
        .field("seq", seq)
        .field("payload", log::printable(&payload))
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

/// Receives on a joined socket until `--count`, `--timeout` or `--idle-timeout`, leaving after
/// `--leave-after` datagrams and in any case before returning; prints and returns the statistics.
pub fn recv(mut rx: MulticastReceiver, c: &RecvConfig) -> Result<Stats> {
    let mut stats = Stats::new();
    let mut window = Window::new(c.timeout, c.idle_timeout);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut joined = true;
    let mut after_leave: u64 = 0;
    let ended = loop {
        if c.count != 0 && stats.packets() >= c.count {
            break End::Count;
        }
        let next = window
            .next(rx.socket(), &mut buf)
            .with_context(|| format!("receive on {}", c.group))?;
        let (n, from) = match next {
            Next::Datagram(n, from) => (n, from),
            Next::Ended(why) => break why,
        };
        window.touch();
        stats.record(from, n, SystemTime::now());
        if !joined {
            after_leave += 1;
        }
        print_datagram(labnet::sock::unmap(from), &buf[..n], c.id_header, !joined);
        if log::stdout_closed() {
            return Ok(stats);
        }
        if joined && c.leave_after == Some(stats.packets()) {
            leave(
                &mut rx,
                &c.iface,
                &format!(
                    "after {} datagrams; listening on until the timeout",
                    stats.packets()
                ),
            )?;
            joined = false;
        }
    };
    if joined {
        leave(
            &mut rx,
            &c.iface,
            &format!("at the end ({})", ended.as_str()),
        )?;
    } else {
        Event::new(
            Level::Info,
            format!("{after_leave} datagrams arrived after leaving"),
        )
        .field("after_leave", after_leave)
        .emit();
    }
    stats.emit(ended);
    Ok(stats)
}

/// How a datagram is shown: as text, or split into TP3 ID and text with `--id-header`.
pub fn describe(payload: &[u8], id_header: bool) -> String {
    if !id_header {
        return format!("'{}'", log::printable(payload));
    }
    match tv::decode(payload) {
        Ok(tv::Datagram { id, text: Ok(text) }) => {
            format!("{}: {}", id.display(), text.escape_debug())
        }
        Ok(tv::Datagram { id, text: Err(raw) }) => {
            format!("{}: (not UTF-8) {}", id.display(), log::printable(&raw))
        }
        Err(e) => format!("(no ID header: {e}) '{}'", log::printable(payload)),
    }
}

fn print_datagram(from: SocketAddr, payload: &[u8], id_header: bool, after_leave: bool) {
    let shown = describe(payload, id_header);
    let mark = if after_leave { " (after leave)" } else { "" };
    let mut event = Event::new(
        Level::Recv,
        format!("{} bytes from {from}{mark} {shown}", payload.len()),
    )
    .field("src", from.to_string())
    .field("src_ip", from.ip().to_string())
    .field("src_port", from.port())
    .field("bytes", payload.len())
    .field("payload", log::printable(payload))
    .field("after_leave", after_leave);
    if id_header {
        if let Ok(d) = tv::decode(payload) {
            event = event.field("id", d.id.display());
            event = match d.text {
                Ok(text) => event.field("text", text),
                Err(raw) => event
                    .field("text", Option::<String>::None)
                    .field("raw", log::printable(&raw)),
            };
        }
    }
    event.emit();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Config> {
        Config::from_args(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn send_defaults_and_options() {
        let c = parse(&[
            "send",
            "--no-loop",
            "--ttl",
            "0",
            "--iface",
            "127.0.0.1",
            "--id",
            "123456",
        ])
        .unwrap();
        let Mode::Send(s) = c.mode else {
            panic!("not send")
        };
        assert_eq!(s.group, DEFAULT_GROUP);
        assert_eq!(s.port, 5008);
        assert_eq!(s.ttl, 0);
        assert!(!s.loopback);
        assert_eq!(s.iface, Iface::V4("127.0.0.1".parse().unwrap()));
        assert_eq!(s.id, Some(tv::Id(*b"123456")));
    }

    #[test]
    fn ipv6_group_with_interface_index() {
        let c = parse(&["recv", "--group", "ff15::1234", "--iface", "1"]).unwrap();
        let Mode::Recv(r) = c.mode else {
            panic!("not recv")
        };
        assert_eq!(r.group, "ff15::1234".parse::<IpAddr>().unwrap());
        assert_eq!(r.iface, Iface::Index(1));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for bad in [
            &["send", "--group", "10.0.0.1"][..],
            &["send", "--group", "fe80::1"],
            &["send", "--group", "239.1.1"],
            &["send", "--ttl", "300"],
            &["send", "--ttl", "-1"],
            &["send", "--loop", "--no-loop"],
            &["send", "--id", "12345"],
            &["send", "--group", "ff15::1", "--iface", "127.0.0.1"],
            &["recv", "--iface", "no-such-if0"],
            &["recv", "--leave-after", "2"],
            &[
                "recv",
                "--leave-after",
                "5",
                "--count",
                "5",
                "--timeout",
                "1",
            ],
            &["recv", "--leave-after", "0", "--timeout", "1"],
            &["recv", "--ttl", "1"],
            &["join"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }

    #[test]
    fn id_header_display_never_fails() {
        assert_eq!(describe(b"swcmTVBut soft!", true), "swcmTV: But soft!");
        assert_eq!(
            describe(b"123456\xff\xfe", true),
            "123456: (not UTF-8) 0xfffe"
        );
        assert_eq!(
            describe(b"abc", true),
            "(no ID header: 3 bytes, shorter than the 6-byte ID) 'abc'"
        );
        assert_eq!(describe(b"line\n", false), "'line\\n'");
    }
}
