//! The `netlab-bench` command line: help and usage errors (no benchmark is run here; the
//! benchmarks are measurements, never timed assertions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netlab-bench"))
}

#[test]
fn help_exits_0_and_shows_examples() {
    let out = bench().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("EXAMPLES:"), "{text}");
    assert!(
        text.contains("cargo run --release -p netlab-bench -- tunnel"),
        "{text}"
    );
}

#[test]
fn unknown_option_exits_2_with_one_line() {
    let out = bench().args(["--rouns", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--rouns"), "{err}");
}

#[test]
fn unknown_benchmark_exits_2() {
    let out = bench().arg("tunel").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown benchmark 'tunel'"), "{err}");
}
