//! `netlab-bench`: the kit's benchmarks, side by side with what users would pick
//! instead — direct loopback, socat, haproxy, and the handouts' Python programs.
//!
//! Not a lab exercise but the measurement behind the kit's design claims: a Rust tunnel on one
//! event loop forwards nearly at loopback speed and holds 10,000 idle connections in little
//! memory; a hub-based chat server fans out with a fraction of the CPU of the handout's
//! thread-per-client Python server; the binaries start as fast as `/bin/true`.
//!
//! Each benchmark runs its competitors **interleaved** (A B C, A B C, … for `--rounds` rounds,
//! at least 5), prints min / median / max and the **ratio of medians to the reference measured
//! in the same run**, checks the kit's performance targets, and writes every raw sample as JSON to
//! `target/bench/<bench>-<time>.json` (plus `<bench>-latest.json` and a Markdown table
//! `<bench>-latest.md`). Load generators are Rust ([`load`], [`chat`]) so that the generator is
//! never the bottleneck; Debian tools (iperf3, socat, haproxy) are installed with apt-get when
//! missing and root, otherwise reported as skipped. All traffic is on 127.0.0.1; every load loop
//! is bounded in count and time. The method of each benchmark is in `docs/benchmarks.md`.
//!
//! `cargo xtask bench …` calls [`run`] with the same arguments.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use labnet::log;
use labnet::{Context, Error, Result};
use serde_json::json;

pub mod chat;
pub mod load;
pub mod report;
pub mod stats;
pub mod suite;
pub mod sys;

use report::Case;

/// Usage text.
pub const HELP: &str = "\
netlab-bench: benchmarks of the netlab binaries, side by side with direct loopback, socat,
haproxy and the handouts' Python programs (competitors interleaved, ratios from the same run)

USAGE:
    netlab-bench [OPTIONS] [BENCH...]
    cargo run --release -p netlab-bench -- [OPTIONS] [BENCH...]
    cargo xtask bench [OPTIONS] [BENCH...]

BENCH (default: all):
    tunnel    tcp-tunnel: iperf3 throughput 1 and 8 streams, 1-byte round trip, 10,000 idle
              connections (PSS); against direct loopback, socat, haproxy (defaults and tuned)
              and the handout's Python tunnel (peers/tunnel.py)
    chat      chat-server fan-out with N clients, burst / lockstep / paced; against the
              handout's threaded Python server (tests/peers/chat_server.py)
    pmu       lab-server: N concurrent CMD_short:0 sessions, a CMD_floodme of --flood-bytes;
              against a direct loopback TCP transfer
    ws        ws-client receiving a --ws-bytes WebSocket message from lab-server; against
              Python websocket-client (peers/ws_flood.py)
    startup   every workspace binary with --help; against /bin/true and python3 -c 'import socket'
    all       all of the above (about 20 minutes on 2 cores)
    grade     lab-grade batch on a class of --class TP3 submissions (reference and mutants) in
              --jobs lanes, each kind also graded alone (root; about 8 minutes; not in `all`)

OPTIONS:
    --rounds N         rounds per benchmark, competitors interleaved (default 5)
    --quick            small sizes for a smoke test (1 s per throughput round, 1,000 idle
                       connections, 100 chat clients, 64 MiB flood); not for published figures
    --seconds S        seconds of each iperf3 run (default 3)
    --conns N          idle connections held through each proxy (default 10000)
    --clients N        chat clients (default 1000)
    --burst K          messages per client in burst mode (default 2)
    --lockstep M       messages in lockstep mode (default 200)
    --rate R           paced mode: deliveries per second (default 100000)
    --paced-seconds S  paced mode: seconds of sending (default 2)
    --sessions N       concurrent CMD_short:0 sessions (default 1000)
    --flood-bytes B    CMD_floodme size in bytes (default 1073741824 = 1 GiB)
    --ws-bytes B       WebSocket flood size in bytes (default 67108864 = 64 MiB)
    --class N          grade: submissions in the class (default 100)
    --jobs J           grade: lanes of lab-grade batch (default 8)
    --only TEXT        run only the cases whose name contains TEXT (tunnel: tunnel-throughput-1,
                       tunnel-throughput-8, tunnel-rtt, tunnel-rtt-one-cpu, tunnel-idle); the
                       other benchmarks run whole
    --out DIR          where the JSON and Markdown results go (default target/bench)
    --bin-dir DIR      where the netlab binaries are (default target/release)
    --no-build         do not run `cargo build --release -p <crate>` before using a binary
    --no-install       do not apt-get install missing tools (skip those competitors)
    --json             print events as JSON lines
    -h, --help         this text

EXAMPLES:
    cargo run --release -p netlab-bench -- tunnel
    cargo run --release -p netlab-bench -- --quick --rounds 2 chat
    cargo run --release -p netlab-bench -- all          # then read target/bench/all-latest.md
";

/// Which benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bench {
    /// tcp-tunnel vs direct, socat, haproxy.
    Tunnel,
    /// chat-server vs the handout's Python server.
    Chat,
    /// lab-server PMU sessions and flood vs direct TCP.
    Pmu,
    /// ws-client vs Python websocket-client.
    Ws,
    /// `--help` start-up vs /bin/true.
    Startup,
    /// lab-grade batch on a class (not in `all`).
    Grade,
}

impl Bench {
    /// Every benchmark, in the order `all` runs them.
    pub const ALL: [Bench; 5] = [
        Bench::Startup,
        Bench::Pmu,
        Bench::Ws,
        Bench::Tunnel,
        Bench::Chat,
    ];

    /// Its name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Bench::Tunnel => "tunnel",
            Bench::Chat => "chat",
            Bench::Pmu => "pmu",
            Bench::Ws => "ws",
            Bench::Startup => "startup",
            Bench::Grade => "grade",
        }
    }
}

/// Sizes of the workloads.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// iperf3 seconds per round.
    pub seconds: f64,
    /// Idle connections.
    pub conns: usize,
    /// Chat clients.
    pub clients: usize,
    /// Burst messages per client.
    pub burst: u32,
    /// Lockstep messages.
    pub lockstep: u32,
    /// Paced deliveries per second.
    pub rate: f64,
    /// Paced seconds.
    pub paced_seconds: f64,
    /// PMU sessions.
    pub sessions: usize,
    /// PMU flood bytes.
    pub flood_bytes: u64,
    /// WebSocket flood bytes.
    pub ws_bytes: u64,
    /// Submissions in the graded class.
    pub class: usize,
    /// Lanes of the grader.
    pub jobs: usize,
}

impl Sizes {
    /// The sizes the targets are stated for.
    pub fn full() -> Sizes {
        Sizes {
            seconds: 3.0,
            conns: 10_000,
            clients: 1_000,
            burst: 2,
            lockstep: 200,
            rate: 100_000.0,
            paced_seconds: 2.0,
            sessions: 1_000,
            flood_bytes: 1 << 30,
            ws_bytes: 64 << 20,
            class: 100,
            jobs: 8,
        }
    }

    /// Small sizes for a smoke test.
    pub fn quick() -> Sizes {
        Sizes {
            seconds: 1.0,
            conns: 1_000,
            clients: 100,
            burst: 2,
            lockstep: 50,
            rate: 20_000.0,
            paced_seconds: 1.0,
            sessions: 200,
            flood_bytes: 64 << 20,
            ws_bytes: 8 << 20,
            class: 24,
            jobs: 8,
        }
    }
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Benchmarks to run, in order.
    pub benches: Vec<Bench>,
    /// Rounds per benchmark.
    pub rounds: usize,
    /// Workload sizes.
    pub sizes: Sizes,
    /// Output directory.
    pub out: PathBuf,
    /// Binaries.
    pub bins: sys::Bins,
    /// apt-get install missing tools.
    pub install: bool,
    /// `--only`: run only the cases whose name contains this (the tunnel benchmark's cases).
    pub only: Option<String>,
}

impl Config {
    /// Whether case `name` is to run (`--only`).
    pub fn wants(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| name.contains(o))
    }

    /// Parses the arguments (without the program name).
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let quick = a.contains("--quick");
        let no_build = a.contains("--no-build");
        let no_install = a.contains("--no-install");
        log::set_json(a.contains("--json"));
        let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
        let rounds: usize = labnet::args::opt_or(&mut a, "--rounds", 5)?;
        if rounds == 0 {
            return Err(Error::usage("--rounds must be at least 1"));
        }
        if let Some(s) = labnet::args::opt_seconds(&mut a, "--seconds")? {
            sizes.seconds = s.as_secs_f64().max(1.0);
        }
        sizes.conns = labnet::args::opt_or(&mut a, "--conns", sizes.conns)?;
        sizes.clients = labnet::args::opt_or(&mut a, "--clients", sizes.clients)?;
        sizes.burst = labnet::args::opt_or(&mut a, "--burst", sizes.burst)?;
        sizes.lockstep = labnet::args::opt_or(&mut a, "--lockstep", sizes.lockstep)?;
        sizes.rate = labnet::args::opt_or(&mut a, "--rate", sizes.rate)?;
        if let Some(s) = labnet::args::opt_seconds(&mut a, "--paced-seconds")? {
            sizes.paced_seconds = s.as_secs_f64();
        }
        sizes.sessions = labnet::args::opt_or(&mut a, "--sessions", sizes.sessions)?;
        sizes.flood_bytes = labnet::args::opt_or(&mut a, "--flood-bytes", sizes.flood_bytes)?;
        sizes.ws_bytes = labnet::args::opt_or(&mut a, "--ws-bytes", sizes.ws_bytes)?;
        sizes.class = labnet::args::opt_or(&mut a, "--class", sizes.class)?;
        sizes.jobs = labnet::args::opt_or(&mut a, "--jobs", sizes.jobs)?;
        if sizes.class == 0 || !(1..=64).contains(&sizes.jobs) {
            return Err(Error::usage("--class must be at least 1, --jobs 1-64"));
        }
        if sizes.clients < 2 || sizes.conns == 0 || sizes.sessions == 0 || sizes.burst == 0 {
            return Err(Error::usage(
                "--clients must be at least 2; --conns, --sessions, --burst at least 1",
            ));
        }
        if !(sizes.rate.is_finite() && sizes.rate > 0.0) {
            return Err(Error::usage("--rate must be a positive number"));
        }
        let out: Option<String> = a.opt_value_from_str("--out")?;
        let bin_dir: Option<String> = a.opt_value_from_str("--bin-dir")?;
        let only: Option<String> = a.opt_value_from_str("--only")?;
        let mut benches = Vec::new();
        while let Some(word) = a.opt_free_from_str::<String>()? {
            match word.as_str() {
                "all" => benches.extend(Bench::ALL),
                "grade" => benches.push(Bench::Grade),
                w => match Bench::ALL.iter().find(|b| b.name() == w) {
                    Some(b) => benches.push(*b),
                    None => {
                        return Err(Error::usage(format!(
                            "unknown benchmark '{w}': expected tunnel, chat, pmu, ws, startup, grade or all"
                        )));
                    }
                },
            }
        }
        labnet::args::finish(a)?;
        if benches.is_empty() {
            benches.extend(Bench::ALL);
        }
        benches.dedup();
        Ok(Config {
            benches,
            rounds,
            sizes,
            out: out
                .map(PathBuf::from)
                .unwrap_or_else(|| sys::target_dir().join("bench")),
            bins: sys::Bins {
                dir: bin_dir
                    .map(PathBuf::from)
                    .unwrap_or_else(|| sys::target_dir().join("release")),
                build: !no_build,
            },
            install: !no_install,
            only,
        })
    }
}

/// The entry point for `main` and for `cargo xtask bench`: parses `args` (without the program
/// name; `--help` is the caller's business) and runs the benchmarks.
pub fn run(args: Vec<OsString>) -> Result<()> {
    let config = Config::from_args(args)?;
    run_config(&config)
}

/// Runs the configured benchmarks and writes their results.
pub fn run_config(config: &Config) -> Result<()> {
    if cfg!(debug_assertions) {
        log::warn(
            "netlab-bench is a debug build: the load generators may become the bottleneck; use --release",
        );
    }
    if config.rounds < 5 {
        log::warn(format!(
            "{} rounds: the method asks for at least 5 (docs/benchmarks.md)",
            config.rounds
        ));
    }
    fs::create_dir_all(&config.out).with_context(|| format!("create {}", config.out.display()))?;
    let started = Instant::now();
    let stamp = file_stamp();
    let mut all: Vec<(Bench, Vec<Case>)> = Vec::new();
    for &bench in &config.benches {
        log::info(format!(
            "benchmark {} ({}), {}",
            bench.name(),
            config.rounds,
            sys::load_note()
        ));
        let t = Instant::now();
        let load_before = sys::load_note();
        let mut cases = match bench {
            Bench::Tunnel => suite::tunnel::run(config),
            Bench::Chat => suite::chat::run(config),
            Bench::Pmu => suite::pmu::run(config),
            Bench::Ws => suite::ws::run(config),
            Bench::Startup => suite::startup::run(config),
            Bench::Grade => suite::grade::run(config),
        }?;
        let load_after = sys::load_note();
        for c in &mut cases {
            c.notes
                .push(format!("machine: {load_before} before, {load_after} after"));
            c.print();
        }
        write_results(
            config,
            bench.name(),
            &stamp,
            &cases,
            t.elapsed().as_secs_f64(),
        )?;
        all.push((bench, cases));
    }
    if all.len() > 1 {
        let cases: Vec<Case> = all.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
        write_results(
            config,
            "all",
            &stamp,
            &cases,
            started.elapsed().as_secs_f64(),
        )?;
    }
    print_verdicts(&all);
    log::info(format!(
        "done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        config.out.display()
    ));
    Ok(())
}

fn print_verdicts(all: &[(Bench, Vec<Case>)]) {
    let (mut met, mut missed, mut unmeasured) = (0, 0, 0);
    for (_, cases) in all {
        for c in cases {
            for v in c.verdicts() {
                match v.met {
                    Some(true) => met += 1,
                    Some(false) => missed += 1,
                    None if v.info => {}
                    None => unmeasured += 1,
                }
            }
        }
    }
    log::stat(format!(
        "targets: {met} met, {missed} missed, {unmeasured} not measured"
    ));
}

/// `20261123-142031` for file names.
fn file_stamp() -> String {
    let t = log::timestamp(SystemTime::now());
    t.chars()
        .take(19)
        .filter_map(|c| match c {
            '-' | ':' => None,
            ' ' => Some('-'),
            c => Some(c),
        })
        .collect()
}

fn write_results(
    config: &Config,
    name: &str,
    stamp: &str,
    cases: &[Case],
    seconds: f64,
) -> Result<()> {
    let doc = json!({
        "bench": name,
        "date": log::timestamp(SystemTime::now()),
        "rounds": config.rounds,
        "seconds": seconds,
        "machine": sys::load_note(),
        "sizes": format!("{:?}", config.sizes),
        "cases": cases.iter().map(Case::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    for file in [
        format!("{name}-{stamp}.json"),
        format!("{name}-latest.json"),
    ] {
        let path = config.out.join(file);
        fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
    }
    let mut md = format!(
        "### {name}: {} UTC, {} rounds interleaved, {:.0} s\n\n",
        log::timestamp(SystemTime::now()),
        config.rounds,
        seconds
    );
    md.push_str("| case | target | measured | verdict |\n|---|---|---|---|\n");
    for c in cases {
        for v in c.verdicts() {
            let word = match v.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None if v.info => "for comparison",
                None => "not measured",
            };
            md.push_str(&format!(
                "| {} | {} | {} | {word} |\n",
                c.name, v.text, v.shown
            ));
        }
    }
    md.push('\n');
    for c in cases {
        md.push_str(&c.to_markdown());
    }
    let path = config.out.join(format!("{name}-latest.md"));
    fs::write(&path, md).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Config> {
        Config::from_args(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn default_is_all_benchmarks_five_rounds() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.benches, Bench::ALL);
        assert_eq!(c.rounds, 5);
        assert_eq!(c.sizes.conns, 10_000);
    }

    #[test]
    fn named_benchmarks_and_options_parse() {
        let c = parse(&["--quick", "--rounds", "2", "tunnel", "chat"]).unwrap();
        assert_eq!(c.benches, [Bench::Tunnel, Bench::Chat]);
        assert_eq!(c.rounds, 2);
        assert_eq!(c.sizes.clients, 100);
    }

    #[test]
    fn unknown_benchmark_and_option_are_usage_errors() {
        assert_eq!(parse(&["tunel"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["--round", "3"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["--rounds", "0"]).unwrap_err().exit_code(), 2);
    }
}
