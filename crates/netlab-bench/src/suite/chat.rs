//! `chat`: `chat-server` against the handout's threaded Python server
//! (`tests/peers/chat_server.py`, the one copy the interop tests use too).
//!
//! Both servers run at once, each with its own session of N clients connected and registered
//! before any measurement (the joins alone move O(N²) bytes of user lists; their time is noted,
//! not compared). Then for each mode the two sessions take turns, round by round:
//!
//! - burst: every client sends K messages as fast as the generator writes them;
//! - lockstep: one message at a time, the next once all N − 1 receivers have it;
//! - paced: a fixed aggregate delivery rate (`--rate`), the latency of every delivery recorded.
//!
//! Server CPU is user + system time from `/proc/PID/stat` around each phase, divided by the
//! deliveries found. A delivery is one message received by one client; "intact" means received
//! exactly as sent, once, under the right name (see [`crate::chat`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use labnet::{Error, Result, log};

use crate::Config;
use crate::chat::{ChatSession, PhaseResult};
use crate::report::{Bound, Case, Competitor, Metric, Sample, interleave};
use crate::stats::percentile;
use crate::sys::{self, Proc, free_port};

/// The reference server: the handout's, as the workspace's interop tests run it.
pub fn python_server() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/chat_server.py")
}

/// The real interpreter behind `python3` (pyenv's shim is a shell script; the benchmark wants the
/// PID of Python itself for its CPU time).
pub fn python() -> std::result::Result<PathBuf, String> {
    let py = sys::which("python3").ok_or("python3 not found")?;
    let out = Command::new(&py)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| format!("run python3: {e}"))?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if exe.is_empty() {
        Ok(py)
    } else {
        Ok(PathBuf::from(exe))
    }
}

/// One server with its session of clients.
struct Server {
    name: &'static str,
    proc: Proc,
    session: ChatSession,
}

fn start_server(name: &'static str, mut cmd: Command, port: u16, clients: usize) -> Result<Server> {
    cmd.current_dir(std::env::temp_dir());
    let mut proc = Proc::spawn(name, cmd)?;
    proc.wait_listening(port, Duration::from_secs(10))?;
    log::info(format!("{name}: joining {clients} clients"));
    let session = ChatSession::join(
        name,
        sys::lo(port),
        proc.pid(),
        clients,
        Duration::from_secs(300),
    )?;
    log::info(format!(
        "{name}: {clients} clients registered in {:.1} s",
        session.join_seconds
    ));
    Ok(Server {
        name,
        proc,
        session,
    })
}

/// Runs the chat benchmark.
pub fn run(config: &Config) -> Result<Vec<Case>> {
    let n = config.sizes.clients;
    // Each client: one socket here, one in the server; two sessions at once.
    sys::raise_nofile((n as u64) * 4 + 1024);
    let mut burst = Case::new(
        "chat-burst",
        format!(
            "{n} clients, each sends {k} message(s) as fast as the generator writes (one thread, round-robin); wait for all (N−1)·N·K deliveries; server CPU from /proc/PID/stat; latency = receive time − send time of every intact delivery",
            k = config.sizes.burst
        ),
        "python-threaded",
    )
    .metric(Metric::lower("cpu_per_delivery", "µs"))
    .metric(Metric::higher("rate", "deliveries/s"))
    .metric(Metric::higher("intact", "%"))
    .metric(Metric::higher("received", "%"))
    .metric(Metric::lower("p99", "ms"))
    .target_value("intact", "chat-server", Bound::AtLeast(100.0), "100% intact in burst")
    .target_ratio(
        "rate",
        "chat-server",
        "python-threaded",
        Bound::Info,
        "burst deliveries/s against Python's",
    )
    .target_ratio(
        "p99",
        "chat-server",
        "python-threaded",
        Bound::Info,
        "burst p99 latency against Python's",
    )
    .target_ratio(
        "cpu_per_delivery",
        "chat-server",
        "python-threaded",
        Bound::AtMost(0.25),
        "server CPU per delivery ≤ 0.25× Python's (burst)",
    );
    let mut lockstep = Case::new(
        "chat-lockstep",
        format!(
            "{n} clients, {m} messages one at a time from rotating senders, each waiting until all N−1 receivers have it",
            m = config.sizes.lockstep
        ),
        "python-threaded",
    )
    .metric(Metric::lower("cpu_per_delivery", "µs"))
    .metric(Metric::higher("rate", "deliveries/s"))
    .metric(Metric::lower("fanout", "ms"))
    .target_ratio(
        "cpu_per_delivery",
        "chat-server",
        "python-threaded",
        Bound::AtMost(0.25),
        "server CPU per delivery ≤ 0.25× Python's (lockstep)",
    );
    let mut paced = Case::new(
        "chat-paced",
        format!(
            "{n} clients, messages from rotating senders paced to {rate} deliveries/s for {s} s; latency = receive time − send time of every intact delivery",
            rate = config.sizes.rate,
            s = config.sizes.paced_seconds
        ),
        "python-threaded",
    )
    .metric(Metric::lower("p50", "ms"))
    .metric(Metric::lower("p99", "ms"))
    .metric(Metric::lower("max", "ms"))
    .metric(Metric::lower("cpu_per_delivery", "µs"))
    .metric(Metric::higher("intact", "%"))
    .target_value(
        "p99",
        "chat-server",
        Bound::AtMost(10.0),
        &format!("p99 ≤ 10 ms at {} deliveries/s", config.sizes.rate),
    )
    .target_ratio(
        "cpu_per_delivery",
        "chat-server",
        "python-threaded",
        Bound::AtMost(0.25),
        "server CPU per delivery ≤ 0.25× Python's (paced)",
    );

    let mut servers: Vec<Server> = Vec::new();
    let skip = |name: &str, why: String, cases: [&mut Case; 3]| {
        for c in cases {
            c.skip(name, why.clone());
        }
    };
    // Python first: the reference.
    match python() {
        Ok(py) => {
            let port = free_port()?;
            let mut cmd = Command::new(py);
            cmd.arg(python_server())
                .arg("127.0.0.1")
                .arg(port.to_string());
            match start_server("python-threaded", cmd, port, n) {
                Ok(s) => servers.push(s),
                Err(e) => skip(
                    "python-threaded",
                    e.to_string(),
                    [&mut burst, &mut lockstep, &mut paced],
                ),
            }
        }
        Err(why) => skip(
            "python-threaded",
            why,
            [&mut burst, &mut lockstep, &mut paced],
        ),
    }
    match config.bins.get("chat-server", "chat-server") {
        Ok(bin) => {
            let port = free_port()?;
            let mut cmd = Command::new(bin);
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--max-clients", &(n + 16).to_string()]);
            match start_server("chat-server", cmd, port, n) {
                Ok(s) => servers.push(s),
                Err(e) => skip(
                    "chat-server",
                    e.to_string(),
                    [&mut burst, &mut lockstep, &mut paced],
                ),
            }
        }
        Err(why) => skip("chat-server", why, [&mut burst, &mut lockstep, &mut paced]),
    }
    for s in &servers {
        let note = format!("{}: {n} joins took {:.1} s", s.name, s.session.join_seconds);
        burst.notes.push(note);
    }

    let k = config.sizes.burst;
    run_mode(&mut burst, config.rounds, &mut servers, |s| {
        let mut r = s.burst(k, Duration::from_secs(180))?;
        let p99 = percentile(&mut r.latency_ns, 99.0).map_or(f64::NAN, |ns| ns as f64 / 1e6);
        Ok(vec![
            ("cpu_per_delivery", r.cpu_us_per_delivery()),
            ("rate", r.rate()),
            ("intact", r.intact_pct()),
            ("received", r.received_pct()),
            ("p99", p99),
        ])
    });
    let m = config.sizes.lockstep;
    run_mode(&mut lockstep, config.rounds, &mut servers, |s| {
        let mut r = s.lockstep(m, Duration::from_secs(60))?;
        let fanout = percentile(&mut r.fanout_ns, 50.0).map_or(f64::NAN, |ns| ns as f64 / 1e6);
        check_closed(&r)?;
        Ok(vec![
            ("cpu_per_delivery", r.cpu_us_per_delivery()),
            ("rate", r.rate()),
            ("fanout", fanout),
        ])
    });
    let (rate, secs) = (config.sizes.rate, config.sizes.paced_seconds);
    run_mode(&mut paced, config.rounds, &mut servers, |s| {
        let mut r = s.paced(rate, secs, Duration::from_secs_f64(secs + 60.0))?;
        check_closed(&r)?;
        let ms = |p: f64, v: &mut [u64]| percentile(v, p).map_or(f64::NAN, |ns| ns as f64 / 1e6);
        Ok(vec![
            ("p50", ms(50.0, &mut r.latency_ns)),
            ("p99", ms(99.0, &mut r.latency_ns)),
            ("max", ms(100.0, &mut r.latency_ns)),
            ("cpu_per_delivery", r.cpu_us_per_delivery()),
            ("intact", r.intact_pct()),
        ])
    });
    for s in &mut servers {
        if let Err(e) = s.proc.check_alive() {
            burst.notes.push(e.to_string());
        }
    }
    // Stop the servers before the clients leave: 1,000 leaves would make each server send
    // 1,000 shrinking user lists to everyone left, which is not what is measured.
    for s in servers {
        drop(s.proc);
        drop(s.session);
    }
    Ok(vec![burst, lockstep, paced])
}

fn check_closed(r: &PhaseResult) -> Result<()> {
    if r.closed > 0 {
        return Err(Error::msg(format!(
            "the server closed {} clients",
            r.closed
        )));
    }
    Ok(())
}

fn run_mode(
    case: &mut Case,
    rounds: usize,
    servers: &mut [Server],
    phase: impl Fn(&mut ChatSession) -> Result<Sample> + Copy,
) {
    let comps: Vec<Competitor<'_>> = servers
        .iter_mut()
        .map(|s| {
            let name = s.name;
            let session = &mut s.session;
            Competitor::new(name, move |_| phase(session))
        })
        .collect();
    interleave(case, rounds, comps);
}
