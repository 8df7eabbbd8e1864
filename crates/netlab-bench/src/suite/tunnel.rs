//! `tunnel`: `tcp-tunnel` against a direct loopback connection, socat, haproxy (twice: Debian's
//! defaults, and tuned for throughput with `option splice-auto`, 64 KiB buffers and 1 MiB
//! pipes, so the comparison is with haproxy at its best too) and the handout's Python
//! thread-per-connection tunnel (`peers/tunnel.py`).
//!
//! - throughput, 1 and 8 streams: `iperf3 -c` to the proxy's port, which forwards to one
//!   `iperf3 -s`; the figure is iperf3's `sum_received` rate.
//! - round trip: 1 byte out and back over one connection with `TCP_NODELAY` to an in-process
//!   echo server; the median of every round trip of a 1-second run.
//! - idle capacity: `--conns` connections opened through a fresh proxy process each round to an
//!   in-process holder, each proven to carry a byte both ways while all are open; the proxy's
//!   memory is the PSS of its process tree (socat forks one process per connection). The Python
//!   tunnel is not in this one: two threads per connection would be 20,000 threads.
//!
//! Every proxy listens on 127.0.0.1 only and forwards to 127.0.0.1.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use labnet::{Error, Result};
use serde_json::Value;

use crate::Config;
use crate::load::{self, EchoServer, Holder};
use crate::report::{Bound, Case, Competitor, Metric, interleave};
use crate::sys::{self, Proc, free_port};

/// The proxies under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tunnel,
    Socat,
    /// haproxy as Debian ships it: TCP mode, no splice, 16 KiB buffers.
    Haproxy,
    /// haproxy tuned for throughput (see [`haproxy_config`]).
    HaproxyTuned,
    /// The handout's design in Python, `peers/tunnel.py`.
    Python,
}

impl Kind {
    /// Every relay, in the order they run in a round.
    const ALL: [Kind; 5] = [
        Kind::Tunnel,
        Kind::Socat,
        Kind::Haproxy,
        Kind::HaproxyTuned,
        Kind::Python,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Tunnel => "tcp-tunnel",
            Kind::Socat => "socat",
            Kind::Haproxy => "haproxy",
            Kind::HaproxyTuned => "haproxy-tuned",
            Kind::Python => "python-tunnel",
        }
    }
}

/// The Python competitor's script.
pub fn python_tunnel() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/tunnel.py")
}

/// The programs found (or why not).
struct Tools {
    tunnel: std::result::Result<PathBuf, String>,
    socat: std::result::Result<PathBuf, String>,
    haproxy: std::result::Result<PathBuf, String>,
    python: std::result::Result<PathBuf, String>,
    iperf3: std::result::Result<PathBuf, String>,
}

impl Tools {
    fn find(config: &Config) -> Tools {
        Tools {
            tunnel: config.bins.get("tcp-tunnel", "tcp-tunnel"),
            socat: sys::ensure_tool("socat", "socat", config.install),
            haproxy: sys::ensure_tool("haproxy", "haproxy", config.install),
            python: crate::suite::chat::python(),
            iperf3: sys::ensure_tool("iperf3", "iperf3", config.install),
        }
    }

    fn path(&self, kind: Kind) -> std::result::Result<PathBuf, String> {
        match kind {
            Kind::Tunnel => self.tunnel.clone(),
            Kind::Socat => self.socat.clone(),
            Kind::Haproxy | Kind::HaproxyTuned => self.haproxy.clone(),
            Kind::Python => self.python.clone(),
        }
    }
}

/// A running proxy: 127.0.0.1:`port` → 127.0.0.1:`target`.
struct Proxy {
    proc: Proc,
    port: u16,
    _config: Option<tempfile::Dir>,
}

/// Starts a proxy of `kind` forwarding a free port to `target`, and waits until it listens.
fn start(kind: Kind, program: &PathBuf, target: u16, conns: usize) -> Result<Proxy> {
    let port = free_port()?;
    let mut dir = None;
    let cmd = match kind {
        Kind::Tunnel => {
            let mut c = Command::new(program);
            c.arg("-L")
                .arg(format!("127.0.0.1:{port}=127.0.0.1:{target}"))
                .args(["--idle-timeout", "0"]);
            c
        }
        Kind::Socat => {
            let mut c = Command::new(program);
            // fork: one child process per connection (socat's way to serve many clients).
            c.arg(format!(
                "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=4096"
            ))
            .arg(format!("TCP:127.0.0.1:{target}"));
            c
        }
        Kind::Haproxy | Kind::HaproxyTuned => {
            let d = tempfile::Dir::new("haproxy")?;
            let cfg = d.path.join("haproxy.cfg");
            let text = haproxy_config(kind == Kind::HaproxyTuned, port, target, conns);
            fs::write(&cfg, text)
                .map_err(|e| Error::msg(format!("write {}: {e}", cfg.display())))?;
            let mut c = Command::new(program);
            c.arg("-db").arg("-f").arg(&cfg);
            dir = Some(d);
            c
        }
        Kind::Python => {
            let mut c = Command::new(program);
            c.arg(python_tunnel())
                .arg(port.to_string())
                .arg(target.to_string());
            c
        }
    };
    let mut proc = Proc::spawn(kind.name(), cmd)?;
    proc.wait_listening(port, Duration::from_secs(10))?;
    Ok(Proxy {
        proc,
        port,
        _config: dir,
    })
}

/// haproxy's configuration: TCP mode, `maxconn` above the idle test's count so haproxy itself is
/// never the limit, otherwise Debian's defaults (threads = CPUs, 16 KiB buffers, no splice).
/// `tuned` adds what haproxy's manual offers for bulk TCP: `option splice-auto` (splice(2)
/// through pipes when haproxy's heuristics judge it worth it, the way tcp-tunnel moves bulk),
/// `tune.pipesize` 1 MiB (tcp-tunnel's pipe size) and `tune.bufsize` 64 KiB (tcp-tunnel's
/// copy buffer) for what still goes through buffers.
fn haproxy_config(tuned: bool, port: u16, target: u16, conns: usize) -> String {
    let max = conns + 10;
    let (global, defaults) = if tuned {
        (
            "    tune.bufsize 65536\n    tune.pipesize 1048576\n",
            "    option splice-auto\n",
        )
    } else {
        ("", "")
    };
    format!(
        "global\n    maxconn {max}\n{global}\ndefaults\n    mode tcp\n{defaults}    timeout connect 5s\n    timeout client 300s\n    timeout server 300s\n\nlisten bench\n    bind 127.0.0.1:{port}\n    maxconn {max}\n    server target 127.0.0.1:{target}\n"
    )
}

/// A temporary directory removed on drop (for haproxy's configuration file).
mod tempfile {
    use std::path::PathBuf;

    /// The directory.
    pub struct Dir {
        /// Its path.
        pub path: PathBuf,
    }

    impl Dir {
        /// Creates `/tmp/netlab-bench-<tag>-<pid>-<n>`.
        pub fn new(tag: &str) -> labnet::Result<Dir> {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "netlab-bench-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path)
                .map_err(|e| labnet::Error::msg(format!("create {}: {e}", path.display())))?;
            Ok(Dir { path })
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs the tunnel benchmark (the cases `--only` selects, all by default).
pub fn run(config: &Config) -> Result<Vec<Case>> {
    // 10,000 connections through a proxy to a holder in this process: two descriptors each here,
    // two in the proxy. Children inherit the raised limit.
    let want = (config.sizes.conns as u64) * 2 + 1024;
    let limit = sys::raise_nofile(want);
    let tools = Tools::find(config);
    let mut cases = Vec::new();
    for streams in [1, 8] {
        if config.wants(&format!("tunnel-throughput-{streams}")) {
            cases.push(throughput(config, &tools, streams)?);
        }
    }
    for pinned in [false, true] {
        if config.wants(if pinned {
            "tunnel-rtt-one-cpu"
        } else {
            "tunnel-rtt"
        }) {
            cases.push(round_trip(config, &tools, pinned)?);
        }
    }
    if config.wants("tunnel-idle") {
        cases.push(idle(config, &tools, limit)?);
    }
    Ok(cases)
}

fn proxies_for(case: &mut Case, tools: &Tools, target: u16, conns: usize) -> Vec<(Kind, Proxy)> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        match tools.path(kind) {
            Ok(p) => match start(kind, &p, target, conns) {
                Ok(proxy) => out.push((kind, proxy)),
                Err(e) => case.skip(kind.name(), e.to_string()),
            },
            Err(why) => case.skip(kind.name(), why),
        }
    }
    out
}

fn throughput(config: &Config, tools: &Tools, streams: u32) -> Result<Case> {
    let secs = config.sizes.seconds;
    let mut case = Case::new(
        format!("tunnel-throughput-{streams}"),
        format!(
            "iperf3 -c 127.0.0.1 -t {secs} -P {streams} to the proxy's port, forwarded to iperf3 -s; received rate"
        ),
        "direct",
    )
    .metric(Metric::higher("rate", "Gbit/s"));
    // The small-message path must not cost the bulk path.
    let (floor, words) = if streams == 1 {
        (0.7, "1 stream")
    } else {
        (0.9, "8 streams")
    };
    case = case.target_ratio(
        "rate",
        "tcp-tunnel",
        "direct",
        Bound::AtLeast(floor),
        &format!("≥ {floor}× direct on {words}"),
    );
    // haproxy itself moves 0.6–0.7× direct here, so 2× haproxy is beyond loopback; kept as set.
    case = case.target_ratio(
        "rate",
        "tcp-tunnel",
        "haproxy",
        Bound::AtLeast(2.0),
        &format!("≥ 2× haproxy ({words})"),
    );
    for other in ["haproxy-tuned", "socat", "python-tunnel"] {
        case = case.target_ratio(
            "rate",
            "tcp-tunnel",
            other,
            Bound::Info,
            &format!("tcp-tunnel / {other}"),
        );
    }
    let iperf = match &tools.iperf3 {
        Ok(p) => p.clone(),
        Err(why) => {
            case.skip("direct", why.clone());
            for kind in Kind::ALL {
                case.skip(kind.name(), why.clone());
            }
            return Ok(case);
        }
    };
    let server_port = free_port()?;
    let mut cmd = Command::new(&iperf);
    cmd.args(["-s", "-B", "127.0.0.1", "-p", &server_port.to_string()]);
    let mut server = Proc::spawn("iperf3 -s", cmd)?;
    server.wait_listening(server_port, Duration::from_secs(10))?;
    let proxies = proxies_for(&mut case, tools, server_port, 64);
    let mut comps = vec![Competitor::new("direct", |_| {
        iperf_client(&iperf, server_port, secs, streams).map(|r| vec![("rate", r)])
    })];
    for (kind, proxy) in &proxies {
        let port = proxy.port;
        let iperf = &iperf;
        comps.push(Competitor::new(kind.name(), move |_| {
            iperf_client(iperf, port, secs, streams).map(|r| vec![("rate", r)])
        }));
    }
    interleave(&mut case, config.rounds, comps);
    drop(proxies);
    drop(server);
    Ok(case)
}

/// One iperf3 client run; the received rate in Gbit/s.
fn iperf_client(iperf: &PathBuf, port: u16, secs: f64, streams: u32) -> Result<f64> {
    let out = Command::new(iperf)
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-J"])
        .args(["-t", &format!("{secs}"), "-P", &streams.to_string()])
        .output()
        .map_err(|e| Error::msg(format!("run iperf3: {e}")))?;
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::msg(format!("iperf3 output is not JSON: {e}")))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(Error::msg(format!("iperf3: {err}")));
    }
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(Value::as_f64)
        .map(|bps| bps / 1e9)
        .ok_or_else(|| Error::msg("iperf3 JSON has no end.sum_received"))
}

fn round_trip(config: &Config, tools: &Tools, pinned: bool) -> Result<Case> {
    let secs = Duration::from_secs(1);
    let (name, how) = if pinned {
        (
            "tunnel-rtt-one-cpu",
            "; this process, the echo and every proxy pinned to CPU 0 (taskset), so no wake-up crosses CPUs: the software cost of the path without the virtual CPUs' wake-up latency",
        )
    } else {
        ("tunnel-rtt", "; processes scheduled freely over both CPUs")
    };
    let mut case = Case::new(
        name,
        format!("1-byte ping-pong, TCP_NODELAY, one connection, 1 s per round (after 200 warm-up round trips) to an in-process echo; median round trip{how}"),
        "direct",
    )
    .metric(Metric::lower("rtt", "µs"))
    .metric(Metric::lower("rtt_p99", "µs"))
    // The least added time of every relay measured, pinned and freely scheduled.
    .target_least_added(
        "rtt",
        "tcp-tunnel",
        "direct",
        &["socat", "haproxy", "haproxy-tuned", "python-tunnel"],
        "tcp-tunnel adds the least of all relays",
    );
    if pinned {
        // Freely scheduled, a round trip is dominated by cross-CPU wake-ups whose cost
        // differs from path to path; this bound is judged on the pinned case only.
        case = case.target_added(
            "rtt",
            "tcp-tunnel",
            "direct",
            Bound::AtMost(15.0),
            "≤ 15 µs added",
        );
    }
    for kind in &Kind::ALL[1..] {
        let name = kind.name();
        case = case.target_added(
            "rtt",
            name,
            "direct",
            Bound::Info,
            &format!("{name}'s added time"),
        );
    }
    let me = std::process::id();
    // Every CPU, counted before pinning (available_parallelism follows the affinity mask).
    let all = format!(
        "0-{}",
        std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
    );
    if pinned && !taskset(me, "0") {
        case.notes.push("taskset failed: not pinned".into());
    }
    let echo = EchoServer::start()?;
    let target = echo.addr().port();
    let proxies = proxies_for(&mut case, tools, target, 64);
    if pinned {
        for (_, p) in &proxies {
            taskset(p.proc.pid(), "0");
        }
    }
    let sample = |port: u16| -> Result<Vec<(&'static str, f64)>> {
        let r = load::ping_pong(sys::lo(port), 200, 2_000_000, secs)?;
        Ok(vec![("rtt", r.median_us), ("rtt_p99", r.p99_us)])
    };
    let mut comps = vec![Competitor::new("direct", move |_| sample(target))];
    for (kind, proxy) in &proxies {
        let port = proxy.port;
        comps.push(Competitor::new(kind.name(), move |_| sample(port)));
    }
    interleave(&mut case, config.rounds, comps);
    if pinned && !taskset(me, &all) {
        labnet::log::warn("could not restore the CPU affinity of this process");
    }
    Ok(case)
}

/// Sets the CPU affinity of every thread of `pid` (`taskset -a -p -c CPUS PID`, util-linux).
fn taskset(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn idle(config: &Config, tools: &Tools, limit: u64) -> Result<Case> {
    let mut n = config.sizes.conns;
    let mut case = Case::new(
        "tunnel-idle",
        format!(
            "{n} connections opened through a fresh proxy process per round (batches of 200) to an in-process holder, all held open, each proven to carry 1 byte both ways; proxy memory = PSS of its process tree (smaps_rollup)"
        ),
        "haproxy",
    )
    .metric(Metric::higher("held", "conns"))
    .metric(Metric::lower("pss", "MiB"))
    .metric(Metric::lower("open", "s"))
    .target_value("held", "tcp-tunnel", Bound::AtLeast(n as f64), &format!("all {n} held"))
    .target_value("pss", "tcp-tunnel", Bound::AtMost(64.0), "≤ 64 MiB PSS");
    // A proxy needs two descriptors per connection, and so does this process (client side and
    // holder side). Without CAP_SYS_RESOURCE the hard limit cannot be raised: then the test holds
    // as many as fit under it, and says so.
    let fit = (limit.saturating_sub(100) / 2) as usize;
    if fit < n {
        case.notes.push(format!(
            "open-file hard limit {limit} here (prlimit may not raise it without CAP_SYS_RESOURCE): a proxy needs 2 descriptors per connection plus its listener, so {n} cannot fit in one process; measured with {fit}"
        ));
        case.method = case.method.replacen(
            &format!("{n} connections"),
            &format!("{fit} connections"),
            1,
        );
        n = fit;
        case.targets[0].text = format!("all {n} held (the most that fit under the limit)");
        case.targets[0].bound = Bound::AtLeast(n as f64);
    }
    case.notes.push(format!(
        "python-tunnel not measured here: its two threads per connection would be {} threads",
        2 * n
    ));
    let holder = Holder::start()?;
    let target = holder.addr().port();
    let mut comps = Vec::new();
    for kind in [Kind::Tunnel, Kind::Socat, Kind::Haproxy, Kind::HaproxyTuned] {
        let program = match tools.path(kind) {
            Ok(p) => p,
            Err(why) => {
                case.skip(kind.name(), why);
                continue;
            }
        };
        let holder = &holder;
        comps.push(Competitor::new(kind.name(), move |_| {
            let mut proxy = start(kind, &program, target, n)?;
            let pid = proxy.proc.pid();
            let mut pss = (0.0, 0);
            let held = load::hold(
                sys::lo(proxy.port),
                holder,
                n,
                Duration::from_secs(120),
                &mut || pss = sys::tree_pss_mib(pid),
            );
            proxy.proc.check_alive()?;
            if let Some(e) = &held.error {
                labnet::log::warn(format!(
                    "{}: {} connected, {} accepted, {} verified: {e}",
                    kind.name(),
                    held.connected,
                    held.accepted,
                    held.verified
                ));
            }
            drop(proxy);
            Ok(vec![
                ("held", held.verified as f64),
                ("pss", pss.0),
                ("open", held.open_seconds),
            ])
        }));
    }
    interleave(&mut case, config.rounds, comps);
    Ok(case)
}
