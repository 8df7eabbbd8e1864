//! TP3 part 4.2 and week 3 homework 2: a multicast chat in the TV's format, `ID (6 bytes) + text`.
//!
//! The socket ideas: **sending to a group needs no special option** (Q17): any UDP socket may send
//! to 224.1.1.1; the options only shape the sending — IP_MULTICAST_TTL (how many routers it may
//! cross: 1 = this segment, 0 = this host), IP_MULTICAST_IF (which interface), IP_MULTICAST_LOOP
//! (whether this host's own joined sockets get a copy). **Receiving needs a join**
//! (IP_ADD_MEMBERSHIP, which makes the kernel send an IGMP report). And the **loopback problem**:
//! with IP_MULTICAST_LOOP on (the default), our own messages come back to our receiver. They are
//! recognised twice over and not shown:
//! - by source address: the sending socket is `connect`ed to the group, so its source ip:port is
//!   known exactly, and a datagram from that ip:port is ours (another program on the same host has
//!   another port);
//! - by ID, as the handout's students do it: a datagram carrying our own 6-byte ID is ours even
//!   when its source differs (a second instance of ourselves, or an address rewritten on the way).
//!
//! A message of at least 300 characters makes the course TV answer on the group (Q18); the answer
//! is printed like any other message.

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use labnet::log::{self, Event, Level};
use labnet::sock::{Iface, MulticastOptions, MulticastReceiver};
use labnet::wire::tv::{self, Id};
use labnet::{Context, Error, Result};

/// Usage, options and examples.
pub const HELP: &str = "\
mcast-chat: TP3 part 4.2. Sends each line typed on stdin to a multicast group as
ID (6 bytes) + text, and prints everyone else's messages as '<ID>: text'.

USAGE:
    mcast-chat --id ID [options]

OPTIONS:
    --id <ID>          this sender's 6-character ID (a CAMIPRO number), required
    --group <G>        multicast group [default: 224.1.1.1]
    --port <P>         UDP port [default: 5005]
    --ttl <N>          IP_MULTICAST_TTL: 0 = this host only, 1 = this segment [default: 1]
    --iface <IP>       interface (its IPv4 address) to send and join on [default: by routing]
    --no-loop          IP_MULTICAST_LOOP off: this host's receivers get no copy of our messages
                       (not on lo: the loopback device hands every datagram back anyway)
    --linger <S>       after the end of stdin, keep listening S seconds for answers [default: 1]
    --json             one JSON object per line
    -h, --help         this help

Own messages are not echoed: recognised by source address (our sending socket's ip:port) and by ID.
A line of at least 300 characters gets an answer from the TV (Q18).

EXAMPLES:
    mcast-chat --id 123456                                    # in the tp3 lab, type lines
    echo 'Hello TV' | mcast-chat --id 123456 --linger 2
    mcast-chat --id 654321 --ttl 0 --iface 127.0.0.1          # on one machine only
";

/// Everything the chat needs, from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our ID.
    pub id: Id,
    /// The group.
    pub group: IpAddr,
    /// The port.
    pub port: u16,
    /// Multicast TTL.
    pub ttl: u32,
    /// Interface to send and join on.
    pub iface: Iface,
    /// IP_MULTICAST_LOOP.
    pub loopback: bool,
    /// How long to keep listening after stdin ends.
    pub linger: Duration,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments (flags, options, then leftovers are an error).
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let no_loop = a.contains("--no-loop");
        let id: String = a
            .opt_value_from_str("--id")?
            .ok_or_else(|| Error::usage("missing --id (6 characters, e.g. 123456)"))?;
        let id = Id::parse(&id).map_err(|e| Error::usage(format!("--id: {e}")))?;
        let group: IpAddr =
            labnet::args::opt_or(&mut a, "--group", IpAddr::V4(labnet::topo::TV_GROUP))?;
        if !group.is_multicast() || !group.is_ipv4() {
            return Err(Error::usage(format!(
                "--group {group} is not an IPv4 multicast address (224.0.0.0/4)"
            )));
        }
        let port = labnet::args::opt_port(&mut a, "--port", labnet::topo::TV_PORT)?;
        if port == 0 {
            return Err(Error::usage("--port must be 1-65535"));
        }
        let ttl: u32 = labnet::args::opt_or(&mut a, "--ttl", 1)?;
        if ttl > 255 {
            return Err(Error::usage("--ttl must be 0-255"));
        }
        let iface: Iface = labnet::args::opt_or(&mut a, "--iface", Iface::Any)?;
        let linger =
            labnet::args::opt_seconds(&mut a, "--linger")?.unwrap_or(Duration::from_secs(1));
        labnet::args::finish(a)?;
        Ok(Config {
            id,
            group,
            port,
            ttl,
            iface,
            loopback: !no_loop,
            linger,
            json,
        })
    }
}

/// Counters shared between the reading and the receiving thread.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    shown: AtomicU64,
    own_by_addr: AtomicU64,
    own_by_id: AtomicU64,
}

/// Runs the chat until stdin ends (plus the linger time).
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    let stdin = io::stdin();
    chat(cfg, stdin.lock())
}

/// The chat over any line source (stdin in `run`).
pub fn chat(cfg: &Config, input: impl BufRead) -> Result<()> {
    let receiver = MulticastReceiver::join(cfg.group, cfg.port, &cfg.iface)
        .with_context(|| format!("join {} port {} on {}", cfg.group, cfg.port, cfg.iface))?;
    receiver
        .socket()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .context("set the read timeout")?;
    let opts = MulticastOptions {
        ttl: cfg.ttl,
        loopback: cfg.loopback,
        iface: cfg.iface.clone(),
    };
    let sender = labnet::sock::multicast_sender(cfg.group, &opts)
        .with_context(|| format!("create the multicast sender on {}", cfg.iface))?;
    // Connecting a UDP socket sends nothing; it fixes the destination and makes the kernel pick
    // the source address now (honouring IP_MULTICAST_IF), so we know our own ip:port exactly.
    let dest = SocketAddr::new(cfg.group, cfg.port);
    sender
        .connect(dest)
        .with_context(|| format!("connect the sender to {dest}"))?;
    let own = sender.local_addr().context("local address of the sender")?;
    Event::new(
        Level::Info,
        format!(
            "joined {dest} on {}; sending as {} from {own} (TTL {}, loopback {})",
            cfg.iface,
            cfg.id.display(),
            cfg.ttl,
            if cfg.loopback { "on" } else { "off" }
        ),
    )
    .field("event", "join")
    .field("group", cfg.group.to_string())
    .field("iface", cfg.iface.to_string())
    .field("local", own.to_string())
    .field("id", cfg.id.display())
    .emit();

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let rx_thread = {
        let stop = Arc::clone(&stop);
        let counters = Arc::clone(&counters);
        let id = cfg.id;
        std::thread::Builder::new()
            .name("mcast-recv".into())
            .spawn(move || receive(&receiver, own, id, &stop, &counters))
            .context("start the receiving thread")?
    };
    let sent = send_lines(cfg, &sender, input, &counters);
    if sent.is_ok() {
        // The TV's answer to a long message comes a moment later: keep listening a little.
        std::thread::sleep(cfg.linger);
    }
    stop.store(true, Ordering::Relaxed);
    let received = rx_thread
        .join()
        .map_err(|_| Error::msg("the receiving thread panicked"))?;
    sent?;
    received?;
    let c = &counters;
    Event::new(
        Level::Stat,
        format!(
            "sent {} messages, shown {} from others, ignored {} own ({} by source address, {} by ID)",
            c.sent.load(Ordering::Relaxed),
            c.shown.load(Ordering::Relaxed),
            c.own_by_addr.load(Ordering::Relaxed) + c.own_by_id.load(Ordering::Relaxed),
            c.own_by_addr.load(Ordering::Relaxed),
            c.own_by_id.load(Ordering::Relaxed)
        ),
    )
    .field("sent", c.sent.load(Ordering::Relaxed))
    .field("shown", c.shown.load(Ordering::Relaxed))
    .field("own_by_addr", c.own_by_addr.load(Ordering::Relaxed))
    .field("own_by_id", c.own_by_id.load(Ordering::Relaxed))
    .emit();
    Ok(())
}

fn send_lines(
    cfg: &Config,
    sender: &UdpSocket,
    input: impl BufRead,
    counters: &Counters,
) -> Result<()> {
    for line in input.lines() {
        let line = line.context("read stdin")?;
        let text = line.trim_end_matches('\r');
        if text.is_empty() {
            continue;
        }
        let datagram = tv::encode(&cfg.id, text);
        sender
            .send(&datagram)
            .with_context(|| format!("send to {}:{}", cfg.group, cfg.port))?;
        counters.sent.fetch_add(1, Ordering::Relaxed);
        let chars = text.chars().count();
        Event::new(
            Level::Send,
            format!(
                "{}: {text} ({chars} characters, {} bytes){}",
                cfg.id.display(),
                datagram.len(),
                if chars >= tv::ANSWER_THRESHOLD {
                    " - at least 300 characters: the TV will answer"
                } else {
                    ""
                }
            ),
        )
        .field("chars", chars)
        .field("bytes", datagram.len())
        .emit();
    }
    Ok(())
}

fn receive(
    receiver: &MulticastReceiver,
    own: SocketAddr,
    id: Id,
    stop: &AtomicBool,
    counters: &Counters,
) -> Result<()> {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match receiver.socket().recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("receive from the group"),
        };
        if from == own {
            counters.own_by_addr.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let d = match tv::decode(&buf[..n]) {
            Ok(d) => d,
            Err(why) => {
                log::warn(format!("ignoring a datagram from {from}: {why}"));
                continue;
            }
        };
        if d.id == id {
            counters.own_by_id.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counters.shown.fetch_add(1, Ordering::Relaxed);
        let text = match &d.text {
            Ok(t) => t.clone(),
            Err(bytes) => log::printable(bytes),
        };
        Event::new(Level::Recv, format!("{}: {text}", d.id.display()))
            .field("id", d.id.display())
            .field("text", &text)
            .field("src", from.to_string())
            .emit();
    }
    Ok(())
}
