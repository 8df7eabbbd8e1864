//! TP3 part 3, "UDP packet transmission": the PDC tells the PMU
//! to reset its clock with `RESET:n` over UDP and retransmits until the PMU acknowledges with
//! `OFFSET=X`.
//!
//! Two socket ideas. **UDP gives no delivery guarantee**: the PMU drops requests on purpose, so the
//! client must time out and retransmit (the handout's 1 s timeout), and because `OFFSET=X` carries
//! no request id, a late answer to an earlier request could be taken for the answer to the current
//! one: stale replies are drained before every new request. **Dual stack**: the handout's server
//! runs on IPv4 *or* IPv6 depending on the time of day, so every attempt sends the request on both
//! families (one IPv4 and one IPv6 socket, each `connect`ed to the server so the kernel filters
//! replies by source and reports ICMP port unreachable as ECONNREFUSED) and waits for the first
//! answer on either. Each socket has a reader thread feeding one channel, so the main thread waits
//! on both sockets at once with blocking calls only.
//!
//! Q15 counting: an **attempt** (a round) is one `RESET:n` sent on every family the host has — a
//! v4 + v6 pair counts once, because only one family's server is up at a time and the other
//! datagram is lost "due to the wrong protocol", not to the PMU's dropping. With `--runs N` the
//! client reports the mean number of attempts per acknowledged reset; with a loss probability p
//! per request the attempts are geometric with mean 1/(1 − p), so p ≈ 1 − 1/mean.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labnet::log::{self, Event, Level};
use labnet::wire::reset::{MAX_RESET, encode_reset, parse_offset};
use labnet::{Context, Error, Result};
use socket2::{Domain, Protocol, Socket, Type};

/// Usage, options and examples.
pub const HELP: &str = "\
reset-client: TP3 part 3. Sends RESET:n to the PMU over UDP on IPv4 and IPv6 at once and
retransmits until one of them answers OFFSET=X.

USAGE:
    reset-client HOST [options]

ARGUMENTS:
    HOST    the PMU; every attempt goes to its IPv4 and its IPv6 address (a family it lacks is skipped)

OPTIONS:
    --port <P>            the PMU's UDP port [default: 5004]
    --n <N>               seconds the PMU advances its clock, 0-3600 [default: 20]
    --timeout <S>         wait S seconds for OFFSET=X before retransmitting [default: 1]
    --runs <R>            acknowledged resets to collect, for the Q15 statistics [default: 1]
    --max-attempts <A>    give up a reset after A attempts [default: 100]
    --json                one JSON object per line
    -h, --help            this help

An attempt (a round) is RESET:n sent once on each family; the statistics count attempts per
acknowledged reset and estimate the loss probability as p = 1 - 1/mean.

EXAMPLES:
    reset-client tcpip                          # the lab's PMU, Q14
    reset-client localhost --runs 100           # Q15: mean attempts, loss estimate, histogram
    reset-client ::1 --port 5004 --timeout 0.2
";

/// Everything the client needs, from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// The PMU's host name or address.
    pub host: String,
    /// Its UDP port.
    pub port: u16,
    /// The n of `RESET:n`.
    pub n: u32,
    /// How long to wait for an answer before retransmitting.
    pub timeout: Duration,
    /// Acknowledged resets to collect.
    pub runs: u32,
    /// Attempts before one reset is given up.
    pub max_attempts: u32,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments (flags, options, positionals, then leftovers are an error).
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let port = labnet::args::opt_port(&mut a, "--port", labnet::topo::RESET_PORT)?;
        if port == 0 {
            return Err(Error::usage("--port must be 1-65535"));
        }
        let n: u32 = labnet::args::opt_or(&mut a, "--n", 20)?;
        if n > MAX_RESET {
            return Err(Error::usage(format!("--n must be 0-{MAX_RESET}")));
        }
        let timeout =
            labnet::args::opt_seconds(&mut a, "--timeout")?.unwrap_or(Duration::from_secs(1));
        if timeout < Duration::from_millis(1) {
            return Err(Error::usage("--timeout must be at least 0.001 seconds"));
        }
        let runs: u32 = labnet::args::opt_or(&mut a, "--runs", 1)?;
        let max_attempts: u32 = labnet::args::opt_or(&mut a, "--max-attempts", 100)?;
        if runs == 0 || max_attempts == 0 {
            return Err(Error::usage("--runs and --max-attempts must be at least 1"));
        }
        // Every option is taken: what starts with `-` now is no positional.
        labnet::args::no_unknown_options(&a)?;
        let host: String = a
            .free_from_str()
            .map_err(|_| Error::usage("missing HOST (usage: reset-client HOST)"))?;
        labnet::args::finish(a)?;
        Ok(Config {
            host,
            port,
            n,
            timeout,
            runs,
            max_attempts,
            json,
        })
    }
}

/// An address family, as the output names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// `IPv4` / `IPv6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// What a reader thread saw on its socket.
#[derive(Debug)]
enum Seen {
    /// A datagram from the server.
    Datagram(Family, Vec<u8>),
    /// ICMP port unreachable came back: nothing listens on that family right now.
    Refused(Family),
    /// The socket failed for good.
    Failed(Family, io::Error),
}

/// One socket per family, `connect`ed to the server, with its reader thread.
struct Path {
    family: Family,
    server: SocketAddr,
    socket: UdpSocket,
}

/// The sockets and the channel their readers feed.
struct Paths {
    paths: Vec<Path>,
    rx: Receiver<Seen>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
}

impl Paths {
    fn open(servers: &[SocketAddr]) -> Result<Paths> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut paths = Vec::new();
        let mut readers = Vec::new();
        for &server in servers {
            let (family, domain, local) = match server {
                SocketAddr::V4(_) => (
                    Family::V4,
                    Domain::IPV4,
                    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                ),
                SocketAddr::V6(_) => (
                    Family::V6,
                    Domain::IPV6,
                    SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
                ),
            };
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
                .with_context(|| format!("create the {} UDP socket", family.name()))?;
            if family == Family::V6 {
                // Explicitly IPv6 only: the IPv4 path has its own socket.
                s.set_only_v6(true).context("set IPV6_V6ONLY")?;
            }
            s.bind(&local.into())
                .with_context(|| format!("bind {local}"))?;
            // A connected UDP socket only accepts datagrams from the server and gets the ICMP
            // port-unreachable error of its requests as ECONNREFUSED.
            s.connect(&server.into())
                .with_context(|| format!("connect the {} socket to {server}", family.name()))?;
            let socket: UdpSocket = s.into();
            // Short timeout so the reader notices `stop`; the waiting itself is on the channel.
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .context("set the read timeout")?;
            let reader = socket.try_clone().context("clone the socket")?;
            let tx = tx.clone();
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("reset-{}", family.name()))
                .spawn(move || read_loop(family, &reader, &tx, &stop))
                .context("start a reader thread")?;
            readers.push(handle);
            paths.push(Path {
                family,
                server,
                socket,
            });
        }
        Ok(Paths {
            paths,
            rx,
            stop,
            readers,
        })
    }

    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        for r in self.readers {
            let _ = r.join();
        }
    }
}

fn read_loop(family: Family, socket: &UdpSocket, tx: &Sender<Seen>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let seen = match socket.recv(&mut buf) {
            Ok(n) => Seen::Datagram(family, buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Seen::Refused(family),
            Err(e) => {
                let _ = tx.send(Seen::Failed(family, e));
                return;
            }
        };
        if tx.send(seen).is_err() {
            return;
        }
    }
}

/// One acknowledged reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Attempts (rounds) it took, the answered one included.
    pub attempts: u32,
    /// The family that answered.
    pub family: Family,
    /// The offset X.
    pub offset: u32,
}

/// Statistics over all runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Attempts per reset, one entry per run.
    pub attempts: Vec<u32>,
    /// Answers per family.
    pub by_family: BTreeMap<Family, u32>,
    /// Rounds in which a second answer, from the other family, arrived after the first.
    pub both_answered: u32,
}

impl Stats {
    /// Mean attempts per acknowledged reset.
    pub fn mean(&self) -> f64 {
        let total: u64 = self.attempts.iter().map(|&a| u64::from(a)).sum();
        total as f64 / self.attempts.len().max(1) as f64
    }

    /// p ≈ 1 − 1/mean: the attempts until the first success are geometric with mean 1/(1 − p).
    pub fn loss_estimate(&self) -> f64 {
        1.0 - 1.0 / self.mean()
    }

    /// Text histogram lines: attempts, bar, count.
    pub fn histogram(&self) -> Vec<String> {
        let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
        for &a in &self.attempts {
            *counts.entry(a).or_default() += 1;
        }
        let max = counts.values().copied().max().unwrap_or(1);
        counts
            .iter()
            .map(|(a, c)| {
                // At most 50 characters wide, at least one mark for a non-empty bar.
                let width = ((u64::from(*c) * 50).div_ceil(u64::from(max))) as usize;
                format!("{a:>3} attempts | {:<50} {c}", "#".repeat(width))
            })
            .collect()
    }
}

/// Runs the client: `--runs` acknowledged resets, then the statistics.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    let addrs = labnet::args::resolve_all(&cfg.host, cfg.port)?;
    let v4 = addrs.iter().find(|a| a.is_ipv4()).copied();
    let v6 = addrs.iter().find(|a| a.is_ipv6()).copied();
    let mut servers = Vec::new();
    for (found, fam) in [(v4, Family::V4), (v6, Family::V6)] {
        match found {
            Some(a) => servers.push(a),
            None => log::info(format!(
                "{} has no {} address: sending over {} only",
                cfg.host,
                fam.name(),
                if fam == Family::V4 { "IPv6" } else { "IPv4" }
            )),
        }
    }
    let paths = Paths::open(&servers)?;
    let result = run_on(cfg, &paths);
    paths.close();
    let stats = result?;
    report(cfg, &stats, servers.len());
    Ok(())
}

fn run_on(cfg: &Config, paths: &Paths) -> Result<Stats> {
    let mut stats = Stats::default();
    let mut last_family = None;
    let quiet = (cfg.timeout / 10).min(Duration::from_millis(20));
    for run in 1..=cfg.runs {
        if run > 1 {
            drain(paths, last_family, quiet, &mut stats);
        }
        let answer = reset_once(cfg, paths, run)?;
        stats.attempts.push(answer.attempts);
        *stats.by_family.entry(answer.family).or_default() += 1;
        last_family = Some(answer.family);
    }
    // A short grace to see whether the other family answers the last round too.
    drain(paths, last_family, quiet, &mut stats);
    Ok(stats)
}

/// Empties the channel before a new request: `OFFSET=X` has no request id, so an answer still
/// queued from an earlier round must not be taken for the answer to the next one. A duplicate is
/// usually right behind the answer, so the drain also waits for a short quiet spell (a tenth of
/// the timeout, at most 20 ms); a reply delayed longer than that cannot be told apart.
fn drain(paths: &Paths, answered: Option<Family>, quiet: Duration, stats: &mut Stats) {
    let mut other = false;
    while let Ok(seen) = paths.rx.recv_timeout(quiet) {
        if let Seen::Datagram(f, bytes) = seen {
            Event::new(
                Level::Debug,
                format!(
                    "discarded a late {} reply '{}' (stale: it answers an earlier request)",
                    f.name(),
                    log::printable(&bytes)
                ),
            )
            .emit();
            other |= Some(f) != answered;
        }
    }
    if other && answered.is_some() {
        stats.both_answered += 1;
    }
}

/// Sends the request until it is answered; returns the answer.
fn reset_once(cfg: &Config, paths: &Paths, run: u32) -> Result<Answer> {
    let request = encode_reset(cfg.n);
    let first = Instant::now();
    let mut refused_rounds = 0u32;
    for attempt in 1..=cfg.max_attempts {
        let mut refused: Vec<Family> = Vec::new();
        let mut sent_to = Vec::new();
        for p in &paths.paths {
            match send(p, request.as_bytes()) {
                Ok(()) => sent_to.push(p.server.to_string()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => refused.push(p.family),
                Err(e) => {
                    return Err(e).with_context(|| format!("send {request} to {}", p.server));
                }
            }
        }
        Event::new(
            Level::Send,
            format!(
                "{request} attempt {attempt} to {}",
                if sent_to.is_empty() {
                    "nobody (every family refused)".to_owned()
                } else {
                    sent_to.join(" and ")
                }
            ),
        )
        .field("run", run)
        .field("attempt", attempt)
        .emit();
        let deadline = Instant::now() + cfg.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match paths.rx.recv_timeout(left) {
                Ok(Seen::Datagram(family, bytes)) => {
                    if bytes.starts_with(b"ERROR:") {
                        return Err(Error::msg(format!(
                            "the PMU answered '{}' over {}",
                            log::printable(bytes.trim_ascii_end()),
                            family.name()
                        )));
                    }
                    match parse_offset(&bytes) {
                        Ok(offset) => {
                            let from = paths
                                .paths
                                .iter()
                                .find(|p| p.family == family)
                                .map(|p| p.server.to_string())
                                .unwrap_or_default();
                            Event::new(
                                Level::Recv,
                                format!(
                                    "OFFSET={offset} over {} from {from} after {attempt} attempt{} ({:.3} s after the first request)",
                                    family.name(),
                                    if attempt == 1 { "" } else { "s" },
                                    first.elapsed().as_secs_f64()
                                ),
                            )
                            .field("run", run)
                            .field("family", family.name())
                            .field("offset", offset)
                            .field("attempts", attempt)
                            .emit();
                            return Ok(Answer {
                                attempts: attempt,
                                family,
                                offset,
                            });
                        }
                        Err(why) => log::warn(format!(
                            "ignoring a malformed reply over {}: {why}",
                            family.name()
                        )),
                    }
                }
                Ok(Seen::Refused(family)) => {
                    if !refused.contains(&family) {
                        refused.push(family);
                    }
                }
                Ok(Seen::Failed(family, e)) => {
                    return Err(e)
                        .with_context(|| format!("receive on the {} socket", family.name()));
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::msg("every reader thread stopped"));
                }
            }
        }
        for f in &refused {
            Event::new(
                Level::Info,
                format!(
                    "{}: ICMP port unreachable, no server on this family right now",
                    f.name()
                ),
            )
            .field("family", f.name())
            .emit();
        }
        if refused.len() == paths.paths.len() {
            refused_rounds += 1;
            if refused_rounds >= 3 {
                return Err(Error::msg(format!(
                    "no reset server at {} port {}: every family answered ICMP port unreachable 3 times",
                    cfg.host, cfg.port
                )));
            }
        } else {
            refused_rounds = 0;
        }
        log::warn(format!(
            "no answer within {} s: retransmitting",
            cfg.timeout.as_secs_f64()
        ));
    }
    Err(Error::msg(format!(
        "no answer from {} after {} attempts",
        cfg.host, cfg.max_attempts
    )))
}

/// One send; a pending ICMP error from an earlier request is reported by the kernel on the next
/// call, so a refused send is tried once more before it counts.
fn send(p: &Path, bytes: &[u8]) -> io::Result<()> {
    match p.socket.send(bytes) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => p.socket.send(bytes).map(drop),
        other => other.map(drop),
    }
}

fn report(cfg: &Config, stats: &Stats, families: usize) {
    let rounds: u64 = stats.attempts.iter().map(|&a| u64::from(a)).sum();
    let by: Vec<String> = stats
        .by_family
        .iter()
        .map(|(f, c)| format!("{} {c}", f.name()))
        .collect();
    Event::new(
        Level::Stat,
        format!(
            "{} reset{} acknowledged ({}): {rounds} attempts, {} datagrams sent, mean {:.3} attempts per reset",
            stats.attempts.len(),
            if stats.attempts.len() == 1 { "" } else { "s" },
            by.join(", "),
            rounds * families as u64,
            stats.mean()
        ),
    )
    .field("resets", stats.attempts.len())
    .field("attempts", rounds)
    .field("datagrams", rounds * families as u64)
    .field("mean_attempts", stats.mean())
    .emit();
    if cfg.runs < 2 {
        return;
    }
    Event::new(
        Level::Stat,
        format!(
            "estimated loss probability p = 1 - 1/mean = {:.3}",
            stats.loss_estimate()
        ),
    )
    .field("loss_estimate", stats.loss_estimate())
    .emit();
    if stats.both_answered > 0 {
        // Both servers up: a round fails only when both requests are lost, with probability p².
        Event::new(
            Level::Stat,
            format!(
                "both families answered in {} rounds: a round is lost only when both requests are, so p = sqrt(1 - 1/mean) = {:.3}",
                stats.both_answered,
                stats.loss_estimate().max(0.0).sqrt()
            ),
        )
        .field("both_answered", stats.both_answered)
        .emit();
    }
    for line in stats.histogram() {
        log::stat(line);
    }
}

/// The family of an address, for tests and callers.
pub fn family_of(ip: IpAddr) -> Family {
    match ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config> {
        Config::from_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn options_are_checked() {
        let c = cfg(&["localhost"]).unwrap();
        assert_eq!((c.port, c.n, c.runs, c.max_attempts), (5004, 20, 1, 100));
        assert_eq!(c.timeout, Duration::from_secs(1));
        for bad in [
            &["localhost", "--n", "3601"][..],
            &["localhost", "--runs", "0"],
            &["localhost", "--timeout", "0"],
            &["localhost", "--port", "0"],
            &[],
            &["a", "b"],
        ] {
            assert_eq!(cfg(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn statistics_mean_loss_and_histogram() {
        let s = Stats {
            attempts: vec![1, 1, 2, 4],
            ..Stats::default()
        };
        assert_eq!(s.mean(), 2.0);
        assert_eq!(s.loss_estimate(), 0.5);
        let h = s.histogram();
        assert_eq!(h.len(), 3);
        assert!(
            h[0].starts_with("  1 attempts | ##################################################")
        );
        assert!(h[0].ends_with(" 2"));
        assert!(h[2].starts_with("  4 attempts | #########################"));
        assert_eq!(family_of("::ffff:1.2.3.4".parse().unwrap()), Family::V4);
    }
}
