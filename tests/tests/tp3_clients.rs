//! TP3 student programs (`pmu-pdc-client`, `reset-client`, `ws-client`) against the course
//! servers of `lab-server` on loopback, and `pmu-pdc-client` against a handout-style Python PMU
//! (`tests/peers/pmu_server.py`). Every server listens on port 0 and says where it is bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use labnet::wire::pmu;
use testkit::bin;
use testkit::proc::{Finished, Proc, run};

const LIMIT: Duration = Duration::from_secs(60);

/// lab-server with the given services on port 0 (the TV off).
fn lab_server(args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("lab-server"));
    cmd.args([
        "--pmu-port",
        "0",
        "--reset-port",
        "0",
        "--ws-port",
        "0",
        "--no-tv",
    ])
    .args(args);
    Proc::spawn(cmd)
}

/// The handout-style Python PMU on port 0.
fn python_pmu(args: &[&str]) -> Proc {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/pmu_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg(script).args(["--port", "0"]).args(args);
    Proc::spawn(cmd)
}

fn client(name: &str, args: &[&str]) -> Finished {
    run(bin(name), args, LIMIT)
}

fn expected(n: u32) -> Vec<String> {
    (1..=n).map(pmu::message).collect()
}

/// The flood exactly as printed: the text, minus the newline the printer ends the event with.
fn flood(len: usize) -> String {
    let mut s = String::from_utf8(pmu::flood_text(len)).unwrap();
    if s.ends_with('\n') {
        s.pop();
    }
    s
}

fn recv_calls(out: &Finished) -> u64 {
    let stat = out.msgs("STAT").pop().unwrap();
    let i = stat.find(" bytes in ").unwrap() + " bytes in ".len();
    stat[i..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn pmu_short_and_flood_over_ipv6_and_ipv4_against_lab_server() {
    let server = lab_server(&[
        "--messages",
        "8",
        "--flood-bytes",
        "100000",
        "--no-ws",
        "--no-reset",
    ]);
    let port = server.addr_after("PMU listening on ").port().to_string();
    for (host, extra) in [("::1", None), ("127.0.0.1", Some("-4"))] {
        let mut args = vec![host, port.as_str(), "CMD_short:0"];
        args.extend(extra);
        let out = client("pmu-pdc-client", &args);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        assert_eq!(out.msgs("RECV"), expected(8), "{host}");
        assert!(recv_calls(&out) >= 1);

        let mut args = vec![host, port.as_str(), "CMD_floodme"];
        args.extend(extra);
        let out = client("pmu-pdc-client", &args);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let recv = out.msgs("RECV");
        assert_eq!(recv.len(), 1);
        assert!(recv[0] == flood(100_000), "{host}: flood differs");
        let stat = out.msgs("STAT").pop().unwrap();
        assert!(stat.starts_with("the flood: 100000 bytes in "), "{stat}");
        assert!(recv_calls(&out) >= 100_000 / 4096, "{stat}");
    }
}

#[test]
fn pmu_short_1_prints_messages_as_they_come_against_lab_server() {
    let server = lab_server(&["--messages", "3", "--no-ws", "--no-reset"]);
    let port = server.addr_after("PMU listening on ").port().to_string();
    let start = Instant::now();
    let out = client("pmu-pdc-client", &["::1", &port, "CMD_short:1", "-v"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert_eq!(out.msgs("RECV"), expected(3));
    // d = 1: one message per segment, one recv() each (Q9, Q10).
    assert_eq!(out.msgs("DEBUG").len(), 3);
    assert_eq!(recv_calls(&out), 3);
}

#[test]
fn pmu_client_against_the_python_pmu() {
    let server = python_pmu(&["--messages", "10"]);
    let port = server.addr_after("listening on ").port().to_string();
    for (host, extra) in [
        ("::1", None),
        ("127.0.0.1", Some("-4")),
        ("127.0.0.1", None),
    ] {
        let mut args = vec![host, port.as_str(), "CMD_short:0"];
        args.extend(extra);
        let out = client("pmu-pdc-client", &args);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        assert_eq!(out.msgs("RECV"), expected(10), "{host} {extra:?}");
        let out = client("pmu-pdc-client", &[host, &port, "CMD_floodme"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.msgs("RECV")[0] == flood(65_536), "flood differs");
        assert!(out.msgs("STAT")[0].starts_with("the flood: 65536 bytes in "));
    }
    let server = python_pmu(&["--messages", "3"]);
    let port = server.addr_after("listening on ").port().to_string();
    let out = client("pmu-pdc-client", &["::1", &port, "CMD_short:1"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.msgs("RECV"), expected(3));
}

#[test]
fn reset_reports_the_family_that_answers() {
    for (family, host, name) in [("v4", "127.0.0.1", "IPv4"), ("v6", "::1", "IPv6")] {
        let server = lab_server(&["--no-pmu", "--no-ws", "--drop", "0", "--family", family]);
        let port = server.addr_after("RESET listening on ").port().to_string();
        let out = client("reset-client", &[host, "--port", &port, "--n", "20"]);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        let recv = out.msgs("RECV");
        assert_eq!(recv.len(), 1);
        assert!(
            recv[0].contains(&format!(" over {name} from ")),
            "{}",
            recv[0]
        );
        let x: u32 = recv[0]
            .strip_prefix("OFFSET=")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(x <= 20);
        assert!(recv[0].contains("after 1 attempt "), "{}", recv[0]);
    }
}

#[test]
fn reset_loss_estimate_is_near_the_servers_drop_probability() {
    let server = lab_server(&[
        "--no-pmu", "--no-ws", "--drop", "0.5", "--seed", "42", "--family", "v4",
    ]);
    let port = server.addr_after("RESET listening on ").port().to_string();
    let out = client(
        "reset-client",
        &[
            "127.0.0.1",
            "--port",
            &port,
            "--runs",
            "200",
            "--timeout",
            "0.05",
            "--json",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("\"loss_estimate\""))
        .unwrap();
    let i = line.find("\"loss_estimate\":").unwrap() + "\"loss_estimate\":".len();
    let p: f64 = line[i..].split([',', '}']).next().unwrap().parse().unwrap();
    assert!((p - 0.5).abs() <= 0.1, "loss estimate {p}");
    assert_eq!(
        out.stdout.matches("\"level\":\"RECV\"").count(),
        200,
        "every run acknowledged"
    );
}

#[test]
fn ws_short_and_flood_in_binary_and_text_against_lab_server() {
    for text in [false, true] {
        let mut args = vec![
            "--no-pmu",
            "--no-reset",
            "--messages",
            "6",
            "--flood-bytes",
            "150000",
        ];
        if text {
            args.push("--text");
        }
        let server = lab_server(&args);
        let port = server.addr_after("WS listening on ").port();
        let url = format!("ws://127.0.0.1:{port}/");
        let out = client("ws-client", &[&url, "CMD_short:0"]);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        assert_eq!(out.msgs("RECV"), expected(6));
        let bytes: usize = expected(6).iter().map(String::len).sum();
        let kinds = if text {
            "0 binary, 6 text"
        } else {
            "6 binary, 0 text"
        };
        assert_eq!(
            out.msgs("STAT"),
            vec![format!(
                "6 message events (on_message), {bytes} bytes: {kinds}"
            )]
        );
        let url6 = format!("ws://[::1]:{port}/");
        let out = client("ws-client", &[&url6, "CMD_floodme"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(out.msgs("RECV").len(), 1);
        assert!(out.msgs("RECV")[0] == flood(150_000), "flood differs");
        let kinds = if text {
            "0 binary, 1 text"
        } else {
            "1 binary, 0 text"
        };
        assert_eq!(
            out.msgs("STAT"),
            vec![format!(
                "1 message events (on_message), 150000 bytes: {kinds}"
            )]
        );
    }
}
