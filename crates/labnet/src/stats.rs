//! Week 3 homework 1: what a UDP receiver counts, and when it stops listening.
//!
//! [`Stats`] tallies the datagrams a receiver accepted (packets, bytes, per-source distribution,
//! first and last arrival) and prints them once at the end, as STAT lines or as one JSON event.
//! [`Window`] ends reception after an overall `--timeout` or after an `--idle-timeout` without a
//! datagram, with nothing but socket read timeouts: a blocking `recv_from` waits at most until the
//! nearer of the two deadlines, so no thread or timer is needed. Shared by `udp-broadcast recv`
//! and `udp-multicast recv`.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::log::{self, Event, Level};

/// At most this many source ports are remembered per source address: a sender restarted in a
/// loop must not grow the receiver's memory.
pub const MAX_PORTS_PER_SOURCE: usize = 16;

/// Why reception ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `--count` datagrams were received.
    Count,
    /// The overall `--timeout` passed.
    Timeout,
    /// No datagram for `--idle-timeout`.
    Idle,
}

impl End {
    /// The word printed in the statistics (`ended by count`).
    pub fn as_str(self) -> &'static str {
        match self {
            End::Count => "count",
            End::Timeout => "timeout",
            End::Idle => "idle timeout",
        }
    }
}

/// What one source sent.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Source {
    /// The sender's address.
    pub ip: IpAddr,
    /// Datagrams accepted from it.
    pub packets: u64,
    /// Payload bytes accepted from it.
    pub bytes: u64,
    /// The source ports seen (each sender run picks a new ephemeral port), at most
    /// [`MAX_PORTS_PER_SOURCE`].
    pub ports: Vec<u16>,
}

/// Counters of one reception.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    packets: u64,
    bytes: u64,
    ignored: u64,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    sources: Vec<Source>,
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one accepted datagram of `len` payload bytes from `from`, arrived `at`.
    pub fn record(&mut self, from: SocketAddr, len: usize, at: SystemTime) {
        self.packets += 1;
        self.bytes += len as u64;
        self.first.get_or_insert(at);
        self.last = Some(at);
        let ip = crate::sock::unmap(from).ip();
        let source = match self.sources.iter().position(|s| s.ip == ip) {
            Some(i) => &mut self.sources[i],
            None => {
                self.sources.push(Source {
                    ip,
                    packets: 0,
                    bytes: 0,
                    ports: Vec::new(),
                });
                let last = self.sources.len() - 1;
                &mut self.sources[last]
            }
        };
        source.packets += 1;
        source.bytes += len as u64;
        if !source.ports.contains(&from.port()) && source.ports.len() < MAX_PORTS_PER_SOURCE {
            source.ports.push(from.port());
        }
    }

    /// Counts a datagram that was received but filtered out (`--prefix`).
    pub fn ignore(&mut self) {
        self.ignored += 1;
    }

    /// Datagrams accepted.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Payload bytes accepted.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Datagrams filtered out.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Per-source distribution, in order of first arrival.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Prints the statistics: one STAT line for the totals and one per source, or with `--json`
    /// a single STAT event holding everything (`packets`, `bytes`, `ignored`, `first`, `last`,
    /// `duration_s`, `ended`, `sources`).
    pub fn emit(&self, ended: End) {
        let first = self.first.map(log::timestamp);
        let last = self.last.map(log::timestamp);
        let span = match (self.first, self.last) {
            (Some(f), Some(l)) => l.duration_since(f).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let mut msg = format!(
            "statistics: {} packets, {} bytes from {} source{}, ended by {}",
            self.packets,
            self.bytes,
            self.sources.len(),
            if self.sources.len() == 1 { "" } else { "s" },
            ended.as_str()
        );
        if self.ignored > 0 {
            msg.push_str(&format!(", {} ignored", self.ignored));
        }
        if let (Some(f), Some(l)) = (&first, &last) {
            msg.push_str(&format!(
                "; first {f}, last {l} ({:.3} s)",
                span.as_secs_f64()
            ));
        }
        let event = Event::new(Level::Stat, msg)
            .field("packets", self.packets)
            .field("bytes", self.bytes)
            .field("ignored", self.ignored)
            .field("first", &first)
            .field("last", &last)
            .field("duration_s", span.as_secs_f64())
            .field("ended", ended.as_str())
            .field("sources", &self.sources);
        event.emit();
        if log::is_json() {
            return;
        }
        for s in &self.sources {
            let share = 100.0 * s.packets as f64 / self.packets.max(1) as f64;
            let ports: Vec<String> = s.ports.iter().map(u16::to_string).collect();
            log::stat(format!(
                "  {}: {} packets ({share:.1}%), {} bytes, source port{} {}",
                s.ip,
                s.packets,
                s.bytes,
                if s.ports.len() == 1 { "" } else { "s" },
                ports.join(", ")
            ));
        }
    }
}

/// What [`Window::next`] got.
#[derive(Debug)]
pub enum Next {
    /// A datagram of this many bytes from this address.
    Datagram(usize, SocketAddr),
    /// A deadline passed first.
    Ended(End),
}

/// The overall and idle deadlines of one reception.
#[derive(Debug)]
pub struct Window {
    deadline: Option<Instant>,
    idle: Option<Duration>,
    last: Instant,
}

impl Window {
    /// Starts the clock now. `timeout` bounds the whole reception; `idle` ends it after that long
    /// without an accepted datagram (counted from now, then from each [`touch`](Self::touch)).
    pub fn new(timeout: Option<Duration>, idle: Option<Duration>) -> Self {
        let now = Instant::now();
        Window {
            deadline: timeout.map(|t| now + t),
            idle,
            last: now,
        }
    }

    /// Restarts the idle clock (call it for every datagram the program accepts).
    pub fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Waits for the next datagram, or for the nearer deadline.
    ///
    /// The socket's read timeout is set to the time left before each `recv_from`, so the call
    /// returns with EAGAIN exactly when a deadline passes; an interrupted call is retried.
    pub fn next(&self, socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Next> {
        loop {
            let now = Instant::now();
            let overall = self
                .deadline
                .map(|d| (d.saturating_duration_since(now), End::Timeout));
            let idle = self
                .idle
                .map(|i| ((self.last + i).saturating_duration_since(now), End::Idle));
            let nearest = match (overall, idle) {
                (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
                (a, b) => a.or(b),
            };
            match nearest {
                // A zero read timeout means "block forever" to the kernel, so a passed deadline
                // must end here, before the call.
                Some((left, why)) if left.is_zero() => return Ok(Next::Ended(why)),
                Some((left, _)) => socket.set_read_timeout(Some(left))?,
                None => socket.set_read_timeout(None)?,
            }
            match socket.recv_from(buf) {
                Ok((n, from)) => return Ok(Next::Datagram(n, from)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn stats_group_by_source_ip_and_keep_ports() {
        let mut s = Stats::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(10);
        s.record("172.20.0.100:50000".parse().unwrap(), 14, t0);
        s.record("172.20.0.100:50001".parse().unwrap(), 14, t0);
        s.record("172.20.0.10:40000".parse().unwrap(), 3, t0);
        s.record("[::ffff:172.20.0.10]:40000".parse().unwrap(), 3, t0);
        s.ignore();
        assert_eq!(s.packets(), 4);
        assert_eq!(s.bytes(), 34);
        assert_eq!(s.ignored(), 1);
        assert_eq!(s.sources().len(), 2);
        assert_eq!(s.sources()[0].ports, vec![50000, 50001]);
        assert_eq!(s.sources()[1].packets, 2);
        assert_eq!(s.sources()[1].ports, vec![40000]);
    }

    #[test]
    fn ports_per_source_are_bounded() {
        let mut s = Stats::new();
        for port in 1..=100u16 {
            s.record(SocketAddr::from(([127, 0, 0, 1], port)), 1, UNIX_EPOCH);
        }
        assert_eq!(s.sources()[0].ports.len(), MAX_PORTS_PER_SOURCE);
        assert_eq!(s.sources()[0].packets, 100);
    }

    #[test]
    fn window_ends_on_idle_before_overall_timeout() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let w = Window::new(
            Some(Duration::from_secs(5)),
            Some(Duration::from_millis(100)),
        );
        let started = Instant::now();
        let mut buf = [0u8; 16];
        assert!(matches!(
            w.next(&sock, &mut buf).unwrap(),
            Next::Ended(End::Idle)
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn window_returns_a_waiting_datagram() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"hi", sock.local_addr().unwrap()).unwrap();
        let w = Window::new(Some(Duration::from_secs(2)), None);
        let mut buf = [0u8; 16];
        match w.next(&sock, &mut buf).unwrap() {
            Next::Datagram(n, from) => {
                assert_eq!(&buf[..n], b"hi");
                assert_eq!(from, tx.local_addr().unwrap());
            }
            other => panic!("{other:?}"),
        }
        let w = Window::new(Some(Duration::from_millis(50)), None);
        assert!(matches!(
            w.next(&sock, &mut buf).unwrap(),
            Next::Ended(End::Timeout)
        ));
    }
}
