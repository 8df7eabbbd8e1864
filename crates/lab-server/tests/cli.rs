//! The command line: help, usage errors (exit 2), runtime failures (exit 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lab-server"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_exits_0_and_shows_every_flag_and_examples() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("EXAMPLES:"), "{help}");
    for flag in [
        "--pmu-port",
        "--reset-port",
        "--tv-port",
        "--ws-port",
        "--no-pmu",
        "--no-reset",
        "--no-tv",
        "--no-ws",
        "--bind",
        "--messages",
        "--flood-bytes",
        "--drop",
        "--family",
        "--period",
        "--seed",
        "--group",
        "--iface",
        "--ttl",
        "--interval",
        "--record",
        "--text",
        "--json",
        "--command-timeout",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn bad_flags_and_values_exit_2_with_one_line() {
    for args in [
        &["--prot", "80"][..],
        &["--drop", "1.5"],
        &["--family", "v5"],
        &["--group", "10.0.0.1"],
        &["--messages", "0"],
        &["--pmu-port", "70000"],
        &["--ttl", "300"],
        &["--no-pmu", "--no-reset", "--no-tv", "--no-ws"],
        &["extra"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("lab-server: ") && err.contains("--help"),
            "{err}"
        );
    }
}

#[test]
fn busy_port_exits_1() {
    let taken = std::net::TcpListener::bind("[::]:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&["--no-reset", "--no-tv", "--no-ws", "--pmu-port", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("PMU: listen on [::]:") && err.contains("EADDRINUSE"),
        "{err}"
    );
}

#[test]
fn json_log_lines_are_objects() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lab-server"))
        .args([
            "--json",
            "--no-tv",
            "--no-reset",
            "--no-ws",
            "--pmu-port",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .starts_with("PMU listening on [::]:"),
        "{v}"
    );
}
