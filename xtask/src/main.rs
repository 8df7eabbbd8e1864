//! `cargo xtask` — the instructor's entry point (matklad's cargo-xtask pattern: tasks in plain
//! Rust, no extra tooling to install).

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask — netlab tasks

USAGE:
    cargo xtask <TASK> [ARGS]

TASKS:
    lab       bring the lab topologies up and down (network namespaces)
    demo      narrated demos of every exercise, with checks
    verify    the demos' checks, quietly
    capture   a packet capture inside a lab host
    images    Docker images and compose files
    bench     benchmarks
";

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if args.is_empty() || labnet::args::wants_help(&args) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let task = args[0].to_string_lossy().into_owned();
    labnet::report(
        "xtask",
        Err(labnet::Error::usage(format!(
            "task '{task}' is not available yet"
        ))),
    )
}
