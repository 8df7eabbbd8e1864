//! `cargo xtask` — the instructor's entry point (matklad's cargo-xtask pattern: tasks in plain
//! Rust, nothing to install beyond the Rust toolchain and `ip`).
//!
//! `demo` plays every handout exercise on the three lab topologies (network namespaces when root,
//! loopback variants otherwise) and checks each expected observation; `verify` runs the same
//! checks quietly; `lab` brings the topologies up and down; `capture` runs tcpdump in a lab host;
//! `images` writes and validates the Docker files and builds the image (with or without a
//! registry); `lab … --docker` and `demo --docker` run the same labs and demos in containers.
//! See `xtask/README.md` and `docker/README.md`.
//!
//! One module per task (`demo`, `verify`, `lab`, `capture`, `images`; `bench` is below), over
//! `lab` (the hosts: namespaces, containers, loopback) and the leaves `opts`, `proc`, `report`,
//! `packages` and `probe`. A module uses only modules below it: no two import each other.

mod capture;
mod demo;
mod images;
mod lab;
mod opts;
mod packages;
mod probe;
mod proc;
mod report;
mod verify;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use labnet::Error;
use labnet::error::Context as _;
use labnet::pcap;

const HELP: &str = "\
cargo xtask — netlab tasks for the instructor

USAGE:
    cargo xtask <TASK> [ARGS]

TASKS:
    demo [NAME|all]            narrated demos with a PASS/FAIL check per expected observation
                               NAME: broadcast multicast tunnel basics pmu reset tv ws tls chat
    demo --docker [--image IMG] [NAME|all]
                               the same demos in Docker containers (builds the image unless --image)
    verify [--exercise 1..4] [--part 1..6] [--chat]
                               the same checks, quietly; ends with `N passed, N failed`
    lab up [week3|chat|tp3|all] [--services none|default|all]
                               the topologies as hosts (network, hostname, /etc/hosts, /lab), with
                               the course's services (default: week3 echo-server and tunnel, tp3
                               lab-server, chat none: the students' chatserver.py takes :5000)
    lab down [week3|chat|tp3|all] stop everything and remove the namespaces (idempotent)
    lab status                 hosts, addresses, services and whether each answers
    lab exec HOST -- CMD…      run CMD inside a lab host (client or week3_client), lab binaries on PATH
    lab service start|stop HOST [SERVICE]
                               take or free a service's ports (stop router: your own tunnel on :9090)
    lab up|down|status|exec|service … --docker [--services none|default|all] [--image IMG]
                               the same labs as Docker compose projects (the handout's containers)
    capture HOST --out FILE.pcap [--iface IF] [--filter EXPR] [-- demo NAME]
                               tcpdump inside a lab host (Wireshark-ready)
    images [--check]           write/validate docker/Dockerfile and the compose files
    images [--check] --build [--offline] [--tag IMG]
                               build netlab:latest: the Dockerfile with a registry, else a debootstrap
                               base (cached) plus the host's release binaries
    bench [tunnel|chat|pmu|ws|startup|grade|all] [OPTIONS]
                               benchmarks side by side (runs the release netlab-bench; `bench --help`)

GLOBAL OPTIONS:
    --bin-dir DIR              use the lab binaries in DIR instead of building target/release
    --prefix P                 prefix of every namespace, container, network and compose project
    --loopback                 run the loopback variants even as root
    --lab-dir DIR              the folder lab hosts see at /lab (default: the repository's lab/)
    -h, --help                 this text

EXAMPLES:
    cargo xtask demo                      # every demo (root: namespaces; otherwise loopback)
    sudo -E cargo xtask demo multicast
    cargo xtask verify --exercise 2
    sudo -E cargo xtask lab up week3 && sudo -E cargo xtask lab exec client -- udp-broadcast recv
    sudo -E cargo xtask capture router --out tunnel.pcap -- demo tunnel
";

fn main() -> ExitCode {
    let all = labnet::args::from_env();
    // Everything after the first `--` belongs to the command being run (lab exec, capture).
    let split = all.iter().position(|a| a == "--").unwrap_or(all.len());
    let (head, tail) = all.split_at(split);
    // `bench --help` is the benchmark runner's own help.
    let is_bench = head.first().is_some_and(|t| t == "bench");
    if head.is_empty() || (!is_bench && labnet::args::wants_help(head)) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let result = parse_globals(head.to_vec()).and_then(|(opts, mut rest)| {
        rest.extend(tail.iter().cloned());
        dispatch(opts, rest)
    });
    labnet::report("xtask", result)
}

fn parse_globals(args: Vec<OsString>) -> Result<(opts::Opts, Vec<OsString>), Error> {
    let mut a = pico_args::Arguments::from_vec(args);
    let opts = opts::Opts {
        bin_dir: a.opt_value_from_str::<_, PathBuf>("--bin-dir")?,
        prefix: a.opt_value_from_str("--prefix")?.unwrap_or_default(),
        loopback: a.contains("--loopback"),
        lab_dir: a.opt_value_from_str::<_, PathBuf>("--lab-dir")?,
        quiet: false,
        docker: None,
    };
    Ok((opts, a.finish()))
}

fn dispatch(opts: opts::Opts, mut rest: Vec<OsString>) -> Result<(), Error> {
    let task = rest.remove(0).to_string_lossy().into_owned();
    let strings = || {
        rest.iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    match task.as_str() {
        "demo" => {
            proc::install_ctrlc();
            demo::command(rest, opts)
        }
        "verify" => {
            proc::install_ctrlc();
            verify::command(rest, opts)
        }
        "lab" => lab::command(rest, &opts),
        "capture" => {
            proc::install_ctrlc();
            let req = capture::Request::from_args(rest)?;
            // `-- demo NAME` is that demo's own run with one more capture (capture does not run
            // demos: demo uses capture).
            match &req.demo {
                Some(name) => demo::with_capture(name, &req),
                None => capture::live(&req),
            }
        }
        "images" => images::command(rest, &opts),
        "bench" => bench(&opts, rest),
        "__probe" => probe::probe(&strings()),
        "__nc" => probe::netcat(&strings()),
        "__bins" => {
            // The binaries `images --build` puts in the image (tests build exactly these).
            for n in lab::docker::image::binary_names()? {
                println!("{n}");
            }
            Ok(())
        }
        "__pcap" => {
            for f in strings() {
                for p in pcap::read(std::path::Path::new(&f)).map_err(Error::msg)? {
                    println!("{p:?}");
                }
            }
            Ok(())
        }
        other => Err(Error::usage(format!(
            "unknown task '{other}': demo, verify, lab, capture, images or bench"
        ))),
    }
}

/// `cargo xtask bench …`: the benchmark runner in release mode. `cargo xtask` itself is a dev
/// build, and load generators built that way would measure themselves instead of the programs.
fn bench(opts: &opts::Opts, args: Vec<OsString>) -> Result<(), Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "run",
        "--release",
        "--quiet",
        "--package",
        "netlab-bench",
        "--",
    ]);
    if let Some(dir) = &opts.bin_dir {
        cmd.arg("--bin-dir").arg(dir);
    }
    cmd.args(args);
    let status = cmd.status().context("run cargo run -p netlab-bench")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(2) => Err(Error::usage("bad benchmark arguments (see above)")),
        _ => Err(Error::msg("the benchmark run failed (see above)")),
    }
}
