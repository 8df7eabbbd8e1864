//! TP3 part 3: the UDP reset server (port 5004).
//!
//! `RESET:n` → X uniform in [0, n] and the reply `OFFSET=X`, sent with probability 1 − p: the
//! handout's PMU drops requests on purpose, so the student's PDC must retransmit after a timeout
//! (Q15: the number of datagrams per acknowledged reset estimates p). The handout's server also
//! runs "either in IPv4 or IPv6 depending on the time of day": `--family` chooses IPv4, IPv6, both,
//! or alternating every `--period`, so the PDC must try both families.
//!
//! The two families use two sockets on the same port, an IPv4 one and an IPv6 one with
//! IPV6_V6ONLY set, so that each family can be answered or ignored on its own. Nothing a client
//! sends can end the service.
//!
//! Malformed requests: UDP source addresses can be forged, so a server that answers a small
//! datagram with a bigger one lets anyone aim its replies at a victim (a reflection amplifier:
//! 2,000 one-byte datagrams once got 28,725 bytes back). So a malformed datagram gets
//! `ERROR: <why>` only when that is no longer than the datagram, else just `ERROR` (5 bytes), and
//! nothing under 5 bytes; the log line always says why. Replies and log lines to malformed
//! datagrams are also rate-limited per source address ([`Complaints`]: 10 at once, then one a
//! second), with a count of what was held back.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labnet::log::{Event, Level, Sink};
use labnet::sock::{Serve, unmap};
use labnet::wire::reset::{encode_offset, parse_reset};
use labnet::{Context, Error, Result};
use rand::Rng;
use socket2::{Domain, Protocol, Socket, Type};

use crate::{Family, SharedRng, clip, with_rng};

/// Receive buffer: any UDP payload fits (65,507 bytes over IPv4, 65,527 over IPv6), so even a
/// 65 KB datagram is read whole and answered, not silently truncated.
pub const RECV_BUF: usize = 65_536;
/// A reset request is at most `RESET:3600\r\n`; anything much longer is refused unread.
const MAX_REQUEST: usize = 64;

/// Behaviour of the service.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Probability of dropping a valid request.
    pub drop: f64,
    /// Valid requests dropped first from every client address, before any random loss: a
    /// client that sends once and gives up is never answered (what a grader needs to see).
    pub drop_first: u32,
    /// Which families answer.
    pub family: Family,
    /// Switch period for [`Family::Alternate`].
    pub period: Duration,
}

/// The bound sockets: one per family in use.
#[derive(Debug)]
pub struct Sockets {
    /// IPv4 socket.
    pub v4: Option<UdpSocket>,
    /// IPv6-only socket.
    pub v6: Option<UdpSocket>,
}

/// Binds the sockets the family needs. `bind` `::` or `0.0.0.0` means every address of that
/// family; a specific address limits the service to its family. With port 0 both sockets get the
/// same (kernel-picked) port.
/// The `listen` lines go to `sink`.
pub fn bind(bind: IpAddr, port: u16, family: Family, sink: &Sink) -> Result<Sockets> {
    let any = bind.is_unspecified();
    let v4_addr = match bind {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) if any => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => None,
    };
    let v6_addr = match bind {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) if any => Some(Ipv6Addr::UNSPECIFIED),
        IpAddr::V4(_) => None,
    };
    let want_v4 = family != Family::V6;
    let want_v6 = family != Family::V4;
    let v4_addr = v4_addr.filter(|_| want_v4);
    let v6_addr = v6_addr.filter(|_| want_v6);
    let missing = match family {
        Family::V4 => v4_addr.is_none(),
        Family::V6 => v6_addr.is_none(),
        Family::Both => v4_addr.is_none() && v6_addr.is_none(),
        Family::Alternate => v4_addr.is_none() || v6_addr.is_none(),
    };
    if missing {
        return Err(Error::usage(format!(
            "RESET: --family {family} cannot be served on --bind {bind}; use --bind ::"
        )));
    }
    // With port 0 the kernel picks the IPv6 port; the IPv4 socket then needs that same port,
    // which another program may hold: try a few picks.
    let attempts = if port == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match bind_pair(v4_addr, v6_addr, port) {
            Ok(s) => {
                for sock in [&s.v4, &s.v6].into_iter().flatten() {
                    let local = sock.local_addr().context("RESET: local address")?;
                    let fam = if local.is_ipv4() { "IPv4" } else { "IPv6" };
                    sink.emit(
                        Event::new(
                            Level::Info,
                            format!("RESET listening on {local} (UDP, {fam})"),
                        )
                        .field("event", "listen")
                        .field("service", "RESET")
                        .field("addr", local.to_string()),
                    );
                }
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::msg("RESET: bind failed")))
}

fn bind_pair(v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>, port: u16) -> Result<Sockets> {
    let mut port = port;
    let v6 = match v6 {
        Some(a) => {
            let s = udp_socket(SocketAddr::from((a, port)))?;
            port = s.local_addr().context("RESET: local address")?.port();
            Some(s)
        }
        None => None,
    };
    let v4 = match v4 {
        Some(a) => Some(udp_socket(SocketAddr::from((a, port)))?),
        None => None,
    };
    Ok(Sockets { v4, v6 })
}

/// A UDP socket for one family. No SO_REUSEADDR: a second server on the same port must fail
/// (EADDRINUSE) instead of silently sharing the requests.
fn udp_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let what = || format!("RESET: bind UDP {addr}");
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .with_context(what)?;
    if addr.is_ipv6() {
        // Explicitly IPv6 only (never trust net.ipv6.bindv6only): the IPv4 socket owns IPv4.
        s.set_only_v6(true).with_context(what)?;
    }
    s.bind(&addr.into()).with_context(what)?;
    Ok(s.into())
}

/// Which family answers at `elapsed` since the start.
pub fn active(family: Family, period: Duration, elapsed: Duration) -> Family {
    match family {
        Family::Alternate => {
            let turn = elapsed.as_nanos() / period.as_nanos().max(1);
            if turn % 2 == 0 {
                Family::V4
            } else {
                Family::V6
            }
        }
        f => f,
    }
}

fn answers(active: Family, v6: bool) -> bool {
    match active {
        Family::V4 => !v6,
        Family::V6 => v6,
        Family::Both | Family::Alternate => true,
    }
}

/// Serves both sockets (one thread each) until a socket fails for good or `ctx.stop` (never for
/// the binary); events go to `ctx.sink`. After a stop every thread ends within about
/// [`labnet::sock::STOP_POLL`] and this returns `Ok(())`.
pub fn serve(sockets: Sockets, opts: Options, rng: SharedRng, ctx: &Serve) -> Result<()> {
    let start = Instant::now();
    let mut handles = Vec::new();
    if opts.family == Family::Alternate {
        let (period, ctx) = (opts.period, ctx.clone());
        let h = std::thread::Builder::new()
            .name("reset-clock".into())
            .spawn(move || {
                announce_switches(start, period, &ctx);
                Ok(())
            })
            .context("RESET: start the clock thread")?;
        handles.push(h);
    }
    let rng = Arc::new(rng);
    for sock in [sockets.v4, sockets.v6].into_iter().flatten() {
        let (rng, ctx) = (Arc::clone(&rng), ctx.clone());
        let h = std::thread::Builder::new()
            .name("reset".into())
            .spawn(move || serve_socket(&sock, opts, start, &rng, &ctx))
            .context("RESET: start a socket thread")?;
        handles.push(h);
    }
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => return Err(Error::msg("RESET: a socket thread panicked")),
        }
    }
    Ok(())
}

fn announce_switches(start: Instant, period: Duration, ctx: &Serve) {
    ctx.sink.info("RESET now answering on IPv4 (alternate)");
    let mut turn: u32 = 1;
    loop {
        let next = start + period * turn;
        if ctx
            .stop
            .sleep(next.saturating_duration_since(Instant::now()))
        {
            return;
        }
        let fam = if turn % 2 == 0 { "IPv4" } else { "IPv6" };
        ctx.sink
            .info(format!("RESET now answering on {fam} (alternate)"));
        turn = turn.wrapping_add(1);
    }
}

fn serve_socket(
    sock: &UdpSocket,
    opts: Options,
    start: Instant,
    rng: &SharedRng,
    ctx: &Serve,
) -> Result<()> {
    let sink = &ctx.sink;
    let local = sock.local_addr().context("RESET: local address")?;
    ctx.stop
        .watch_udp(sock)
        .context("RESET: set the stop timeout")?;
    let mut buf = vec![0u8; RECV_BUF];
    let mut seen = FirstRequests::new(opts.drop_first);
    let mut complaints = Complaints::new();
    let mut failures = 0u32;
    loop {
        if ctx.stop.is_stopped() {
            return Ok(());
        }
        let (len, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => {
                failures = 0;
                x
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The stop timeout came back with nothing: look at the flag again.
            Err(e)
                if ctx.stop.can_stop()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                continue;
            }
            Err(e) => {
                // Linux may report an earlier ICMP error on a UDP socket; that is not fatal.
                failures += 1;
                if failures > 1000 {
                    return Err(e).with_context(|| format!("RESET: receive on {local}"));
                }
                sink.warn(format!("RESET receive on {local}: {e}"));
                continue;
            }
        };
        let peer = unmap(peer);
        let fam = if local.is_ipv6() { "IPv6" } else { "IPv4" };
        let now = active(opts.family, opts.period, start.elapsed());
        if !answers(now, local.is_ipv6()) {
            sink.emit(event(
                Level::Info,
                peer,
                fam,
                len,
                "ignored: the service is on the other family now",
            ));
            continue;
        }
        let forced = parse_reset(&buf[..len]).is_ok() && seen.drop(peer.ip());
        let reply = if forced {
            match parse_reset(&buf[..len]) {
                Ok(n) => Reply::Dropped { n },
                Err(_) => handle(&buf[..len], opts.drop, rng),
            }
        } else {
            handle(&buf[..len], opts.drop, rng)
        };
        let mut held_back = 0;
        if matches!(reply, Reply::Error(_)) {
            match complaints.allow(peer.ip(), Instant::now()) {
                Some(held) => held_back = held,
                // Over this source's budget: no reply, no log line (counted for the next one).
                None => continue,
            }
        }
        let (level, what) = match &reply {
            Reply::Offset { n, x } => (Level::Info, format!("RESET:{n} → OFFSET={x}")),
            Reply::Dropped { n } if forced => (
                Level::Info,
                format!(
                    "RESET:{n} dropped on purpose (one of the first {} of this client)",
                    opts.drop_first
                ),
            ),
            Reply::Dropped { n } => (
                Level::Info,
                format!("RESET:{n} dropped on purpose (p = {})", opts.drop),
            ),
            Reply::Error(why) if held_back > 0 => (
                Level::Warn,
                format!(
                    "refused: {why} ({held_back} more malformed datagrams from {} since the \
                     last one logged were neither answered nor logged)",
                    peer.ip()
                ),
            ),
            Reply::Error(why) => (Level::Warn, format!("refused: {why}")),
        };
        let text = match &reply {
            Reply::Offset { x, .. } => Some(encode_offset(*x)),
            Reply::Dropped { .. } => None,
            Reply::Error(why) => error_reply(why, len),
        };
        sink.emit(event(level, peer, fam, len, &what));
        if let Some(text) = text {
            // Each socket holds one family only (the IPv6 one is V6ONLY), so `peer` is already in
            // that socket's family.
            if let Err(e) = sock.send_to(text.as_bytes(), peer) {
                sink.warn(format!("RESET reply to {peer}: {e}"));
            }
        }
    }
}

/// The reply to a malformed datagram of `len` bytes: never longer than the datagram (a forged
/// source must not get more bytes than the forger sent): `ERROR: <why>` when it fits, `ERROR`
/// when that fits, else nothing.
pub fn error_reply(why: &str, len: usize) -> Option<String> {
    let full = format!("ERROR: {why}");
    if full.len() <= len {
        Some(full)
    } else if len >= "ERROR".len() {
        Some("ERROR".to_owned())
    } else {
        None
    }
}

/// How many malformed datagrams of one source are answered and logged at once, and then how
/// many per second.
const COMPLAINT_BURST: f64 = 10.0;
const COMPLAINTS_PER_SECOND: f64 = 1.0;

/// A token bucket per source address for the replies and log lines of malformed datagrams: a
/// student's occasional typo is always answered; a flood (forged or not) costs one log line and
/// at most one 5-byte-or-shorter reply a second per address.
struct Complaints {
    buckets: HashMap<IpAddr, Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    held: u64,
}

impl Complaints {
    /// Most addresses remembered: spoofed sources cannot grow the map without bound (it is
    /// cleared, and every source starts again with a full bucket).
    const MAX: usize = 10_000;

    fn new() -> Self {
        Complaints {
            buckets: HashMap::new(),
        }
    }

    /// `Some(held)` when a malformed datagram from `ip` may be answered and logged now, with the
    /// number held back since the last one that was; `None` when it must be dropped silently.
    fn allow(&mut self, ip: IpAddr, now: Instant) -> Option<u64> {
        if self.buckets.len() >= Self::MAX && !self.buckets.contains_key(&ip) {
            self.buckets.clear();
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: COMPLAINT_BURST,
            last: now,
            held: 0,
        });
        let refill = now.duration_since(b.last).as_secs_f64() * COMPLAINTS_PER_SECOND;
        b.tokens = (b.tokens + refill).min(COMPLAINT_BURST);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(std::mem::take(&mut b.held))
        } else {
            b.held += 1;
            None
        }
    }
}

/// Counts the valid requests of each client address, to drop the first `n` of each.
struct FirstRequests {
    n: u32,
    counts: HashMap<IpAddr, u32>,
}

impl FirstRequests {
    /// Most addresses remembered: a flood of spoofed sources cannot grow the map without
    /// bound (it is cleared, and those clients start counting again).
    const MAX: usize = 10_000;

    fn new(n: u32) -> Self {
        FirstRequests {
            n,
            counts: HashMap::new(),
        }
    }

    /// True when this request from `ip` is one of its first `n`.
    fn drop(&mut self, ip: IpAddr) -> bool {
        if self.n == 0 {
            return false;
        }
        if self.counts.len() >= Self::MAX && !self.counts.contains_key(&ip) {
            self.counts.clear();
        }
        let c = self.counts.entry(ip).or_insert(0);
        *c = c.saturating_add(1);
        *c <= self.n
    }
}

fn event(level: Level, peer: SocketAddr, fam: &str, len: usize, what: &str) -> Event {
    Event::new(level, format!("RESET {peer} ({fam}, {len} bytes): {what}"))
        .field("service", "reset")
        .field("peer", peer.to_string())
        .field("family", fam)
        .field("bytes", len)
}

/// What the server does with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answered `OFFSET=x`.
    Offset {
        /// Requested n.
        n: u32,
        /// Chosen offset.
        x: u32,
    },
    /// Dropped on purpose.
    Dropped {
        /// Requested n.
        n: u32,
    },
    /// Malformed request: answered `ERROR: <why>`.
    Error(String),
}

/// Decides the reply to one datagram. Loss is drawn first and the offset only for an answered
/// request, in one lock, so a `--seed` run gives the same sequence every time.
pub fn handle(datagram: &[u8], drop: f64, rng: &SharedRng) -> Reply {
    if datagram.len() > MAX_REQUEST {
        return Reply::Error(format!(
            "{}-byte datagram is not a reset request: expected RESET:<n>, 0 <= n <= 3600",
            datagram.len()
        ));
    }
    let n = match parse_reset(datagram) {
        Ok(n) => n,
        Err(e) => return Reply::Error(clip(&e.to_string(), 120)),
    };
    with_rng(rng, |r| {
        if r.random::<f64>() < drop {
            Reply::Dropped { n }
        } else {
            Reply::Offset {
                n,
                x: r.random_range(0..=n),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_starts_on_v4_and_switches_each_period() {
        let p = Duration::from_secs(10);
        assert_eq!(active(Family::Alternate, p, Duration::ZERO), Family::V4);
        assert_eq!(
            active(Family::Alternate, p, Duration::from_secs(11)),
            Family::V6
        );
        assert_eq!(
            active(Family::Alternate, p, Duration::from_secs(25)),
            Family::V4
        );
        assert_eq!(
            active(Family::Both, p, Duration::from_secs(11)),
            Family::Both
        );
    }

    #[test]
    fn same_seed_same_replies_and_offsets_stay_in_range() {
        let a = crate::rng(Some(9));
        let b = crate::rng(Some(9));
        for _ in 0..100 {
            let ra = handle(b"RESET:20", 0.3, &a);
            assert_eq!(ra, handle(b"RESET:20", 0.3, &b));
            if let Reply::Offset { x, .. } = ra {
                assert!(x <= 20);
            }
        }
    }

    #[test]
    fn the_first_requests_of_each_address_are_dropped() {
        let mut f = FirstRequests::new(2);
        let a: IpAddr = "172.30.0.101"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let b: IpAddr = "fd30::101"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(f.drop(a) && f.drop(a) && !f.drop(a) && !f.drop(a));
        assert!(f.drop(b) && f.drop(b) && !f.drop(b));
        assert!(!FirstRequests::new(0).drop(a));
    }

    #[test]
    fn error_replies_are_never_longer_than_the_request() {
        let why = "bad number '-1': expected 0-3600";
        assert_eq!(error_reply(why, 0), None);
        assert_eq!(error_reply(why, 4), None);
        assert_eq!(error_reply(why, 8).as_deref(), Some("ERROR"));
        assert_eq!(
            error_reply(why, 100).as_deref(),
            Some("ERROR: bad number '-1': expected 0-3600")
        );
        for len in 0..100 {
            assert!(
                error_reply(why, len).is_none_or(|r| r.len() <= len),
                "{len}"
            );
        }
    }

    #[test]
    fn complaints_are_limited_per_source_and_refill() {
        let mut c = Complaints::new();
        let t0 = Instant::now();
        let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let b = IpAddr::V6(Ipv6Addr::LOCALHOST);
        for _ in 0..10 {
            assert_eq!(c.allow(a, t0), Some(0));
        }
        assert_eq!(c.allow(a, t0), None);
        assert_eq!(c.allow(a, t0), None);
        assert_eq!(c.allow(b, t0), Some(0), "another source has its own budget");
        assert_eq!(c.allow(a, t0 + Duration::from_millis(1100)), Some(2));
        assert_eq!(c.allow(a, t0 + Duration::from_millis(1200)), None);
    }

    #[test]
    fn malformed_requests_get_errors() {
        let r = crate::rng(Some(1));
        for bad in [
            &b""[..],
            b"RESET:-1",
            b"RESET:99999999999",
            b"hello",
            &[b'A'; 65_000],
        ] {
            assert!(
                matches!(handle(bad, 0.0, &r), Reply::Error(_)),
                "{:?}",
                &bad[..bad.len().min(10)]
            );
        }
    }
}
