//! `cargo xtask verify` for every week-3 exercise, every TP3 part and the chat lab, on the real
//! namespace topologies (CI sets NETLAB_REQUIRE_NETNS=1: these must run there, never skip), plus
//! the bad-input cases of the command line.
//!
//! Each test runs the xtask binary with `--bin-dir` pointing at the debug binaries next to this
//! test (built by `cargo nextest run --workspace`, and rebuilt here by `testkit::bin` when
//! stale) and a namespace prefix of its own (`nlt<pid>x…_`), so tests run in parallel without
//! sharing a namespace or a port, and a killed test's namespaces are swept by the next testbed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use labnet::netns::netns_or_skip;

const BINARIES: &[&str] = &[
    "udp-broadcast",
    "udp-multicast",
    "echo-server",
    "tcp-tunnel",
    "tcp-echo-server",
    "tcp-echo-client",
    "lab-server",
    "pmu-pdc-client",
    "reset-client",
    "mcast-chat",
    "ws-client",
    "tls-pmu",
    "chat-server",
    "chat-client",
];

fn bin_dir() -> PathBuf {
    let mut dir = None;
    for b in BINARIES {
        let p = testkit::bin(b);
        dir = p.parent().map(PathBuf::from);
    }
    dir.expect("a binary directory")
}

fn prefix(tag: &str) -> String {
    format!(
        "{}{}x{tag}_",
        labnet::netns::TEST_PREFIX,
        std::process::id()
    )
}

fn xtask(tag: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--prefix")
        .arg(prefix(tag))
        .args(args)
        .output()
        .expect("run xtask")
}

fn verify(tag: &str, selector: &[&str]) {
    if !netns_or_skip() {
        return;
    }
    let mut args = vec!["verify"];
    args.extend_from_slice(selector);
    let out = xtask(tag, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success(),
        "verify {selector:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(
        last.ends_with(" passed, 0 failed"),
        "closing line: {last}\n{stdout}"
    );
    let passed: usize = last.split_whitespace().next().unwrap().parse().unwrap();
    assert!(passed >= 1, "{stdout}");
    assert!(!stdout.contains("NOT SHOWN"), "{stdout}");
    // Nothing of this run is left behind.
    let p = prefix(tag);
    let left: Vec<String> = labnet::netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&p))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn verify_exercise_1_broadcast() {
    verify("e1", &["--exercise", "1"]);
}

#[test]
fn verify_exercise_2_multicast() {
    verify("e2", &["--exercise", "2"]);
}

#[test]
fn verify_exercise_3_tunnel() {
    verify("e3", &["--exercise", "3"]);
}

#[test]
fn verify_exercise_4_protocol_analysis() {
    verify("e4", &["--exercise", "4"]);
}

#[test]
fn verify_tp3_part_1_basics() {
    verify("p1", &["--part", "1"]);
}

#[test]
fn verify_tp3_part_2_pmu() {
    verify("p2", &["--part", "2"]);
}

#[test]
fn verify_tp3_part_3_reset() {
    verify("p3", &["--part", "3"]);
}

#[test]
fn verify_tp3_part_4_tv() {
    verify("p4", &["--part", "4"]);
}

#[test]
fn verify_tp3_part_5_websocket() {
    verify("p5", &["--part", "5"]);
}

#[test]
fn verify_tp3_part_6_tls() {
    verify("p6", &["--part", "6"]);
}

#[test]
fn verify_chat() {
    verify("chat", &["--chat"]);
}

fn plain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask")
}

#[test]
fn help_exits_0_with_examples() {
    let out = plain(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EXAMPLES") && text.contains("cargo xtask demo"),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    for args in [
        &["demo", "nope"][..],
        &["verify", "--exercise", "9"],
        &["lab", "exec", "nohost", "--", "true"],
        &["lab", "sideways"],
        &["frobnicate"],
        &["verify", "--prot", "1"],
    ] {
        let out = plain(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("xtask: "), "{err}");
    }
}

#[test]
fn lab_exec_on_a_host_that_is_not_up_says_how_to_fix_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "--prefix",
            &prefix("notup"),
            "lab",
            "exec",
            "client",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not up") && err.contains("cargo xtask lab up week3"),
        "{err}"
    );
}
