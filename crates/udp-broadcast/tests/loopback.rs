//! Exercise 1 and homework 1 on loopback, no root needed: broadcast to 127.255.255.255 (the
//! broadcast address of `lo`'s 127.0.0.0/8, which never leaves the host).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use testkit::proc::{Proc, json};

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_udp-broadcast"))
}

/// Starts a receiver and waits until it is bound; returns it and its port.
fn receiver(args: &[&str]) -> (Proc, u16) {
    let mut cmd = tool();
    cmd.arg("recv").args(args);
    let json_mode = args.contains(&"--json");
    let p = Proc::spawn(cmd);
    let line = p.wait_for("listening on");
    let local = if json_mode {
        json(&line)["local"].as_str().unwrap().to_owned()
    } else {
        let at = line.find("listening on ").unwrap() + "listening on ".len();
        line[at..].split_whitespace().next().unwrap().to_owned()
    };
    let port = local.rsplit(':').next().unwrap().parse().unwrap();
    (p, port)
}

/// Runs a sender to completion; returns its ephemeral source port.
fn send(args: &[&str]) -> u16 {
    let mut cmd = tool();
    cmd.arg("send").arg("--json").args(args);
    let f = Proc::spawn(cmd).finish();
    assert!(f.status.success(), "sender failed: {}", f.stderr);
    let info = &f.level("INFO")[0];
    let local = info["local"].as_str().unwrap();
    local.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn two_receivers_on_one_port_get_identical_broadcasts_with_the_senders_address() {
    let (r1, port) = receiver(&["--port", "0", "--count", "3", "--timeout", "15"]);
    let port_s = port.to_string();
    // SO_REUSEADDR on both: the second bind of the same port succeeds, and the kernel gives
    // each socket its own copy of every broadcast.
    let (r2, port2) = receiver(&[
        "--port",
        &port_s,
        "--count",
        "3",
        "--timeout",
        "15",
        "--json",
    ]);
    assert_eq!(port, port2);

    let src_port = send(&[
        "--dst",
        "127.255.255.255",
        "--port",
        &port_s,
        "--count",
        "3",
        "--interval",
        "0.05",
    ]);

    let text = r1.finish();
    let json = r2.finish();
    assert!(text.status.success(), "{}", text.stderr);
    assert!(json.status.success(), "{}", json.stderr);

    let want: Vec<String> = (0..3).map(|i| format!("HELLO_BCAST #{i}")).collect();
    assert_eq!(json.field("RECV", "payload"), want);
    assert_eq!(
        json.field("RECV", "src"),
        vec![format!("127.0.0.1:{src_port}"); 3]
    );
    // The text receiver printed the same datagrams, in the documented line format.
    let recv_lines: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.contains("[RECV]"))
        .collect();
    assert_eq!(recv_lines.len(), 3, "{:?}", text.stdout);
    for (line, payload) in recv_lines.iter().zip(&want) {
        assert!(
            line.ends_with(&format!(
                "[RECV] 14 bytes from 127.0.0.1:{src_port} '{payload}'"
            )),
            "{line}"
        );
    }
    let s = json.only("STAT");
    assert_eq!(s["packets"], 3);
    assert_eq!(s["bytes"], 42);
    assert_eq!(s["ended"], "count");
    assert_eq!(s["sources"][0]["ip"], "127.0.0.1");
    assert_eq!(s["sources"][0]["ports"][0], src_port);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.contains("[STAT] statistics: 3 packets, 42 bytes from 1 source")),
        "{:?}",
        text.stdout
    );
}

#[test]
fn without_so_broadcast_the_send_fails_with_eacces_and_exit_1() {
    let out = tool()
        .args([
            "send",
            "--dst",
            "127.255.255.255",
            "--port",
            "9",
            "--count",
            "1",
            "--no-broadcast-flag",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "udp-broadcast: send to 127.255.255.255:9: permission denied (EACCES): SO_BROADCAST is off"
        ),
        "{stderr}"
    );
    // Nothing was reported as sent.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("[SEND]"));
}

#[test]
fn statistics_count_packets_bytes_and_each_source_and_prefix_filters() {
    let (r, port) = receiver(&[
        "--port",
        "0",
        "--count",
        "4",
        "--prefix",
        "HELLO",
        "--timeout",
        "15",
        "--json",
    ]);
    let port = port.to_string();
    let base = [
        "--dst",
        "127.255.255.255",
        "--port",
        &port,
        "--interval",
        "0",
    ];
    let p1 = send(&[&base[..], &["--count", "3", "--bind", "127.0.0.1"]].concat());
    let _ = send(&[&base[..], &["--count", "2", "--message", "NOISE"]].concat());
    let p2 = send(&[&base[..], &["--count", "1", "--bind", "127.0.0.2"]].concat());
    let f = r.finish();
    assert!(f.status.success(), "{}", f.stderr);
    assert_eq!(
        f.field("RECV", "payload"),
        [
            "HELLO_BCAST #0",
            "HELLO_BCAST #1",
            "HELLO_BCAST #2",
            "HELLO_BCAST #0"
        ]
    );
    let s = f.only("STAT");
    assert_eq!(s["packets"], 4);
    assert_eq!(s["bytes"], 56);
    assert_eq!(s["ignored"], 2);
    assert_eq!(s["ended"], "count");
    assert_eq!(
        s["sources"],
        serde_json::json!([
            {"ip": "127.0.0.1", "packets": 3, "bytes": 42, "ports": [p1]},
            {"ip": "127.0.0.2", "packets": 1, "bytes": 14, "ports": [p2]},
        ])
    );
    assert!(s["first"].as_str().unwrap() <= s["last"].as_str().unwrap());
}

#[test]
fn idle_timeout_ends_reception_cleanly_with_statistics() {
    let started = std::time::Instant::now();
    let (r, port) = receiver(&[
        "--port",
        "0",
        "--count",
        "0",
        "--idle-timeout",
        "0.5",
        "--timeout",
        "15",
        "--json",
    ]);
    send(&[
        "--dst",
        "127.255.255.255",
        "--port",
        &port.to_string(),
        "--count",
        "2",
        "--interval",
        "0",
    ]);
    let f = r.finish();
    assert_eq!(f.status.code(), Some(0), "{}", f.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let s = f.only("STAT");
    assert_eq!(s["ended"], "idle timeout");
    assert_eq!(s["packets"], 2);
}

#[test]
fn overall_timeout_ends_an_empty_reception_with_zero_statistics() {
    let out = tool()
        .args(["recv", "--port", "0", "--timeout", "0.3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("[STAT] statistics: 0 packets, 0 bytes from 0 sources, ended by timeout"),
        "{stdout}"
    );
}

#[test]
fn help_exits_0_with_examples() {
    let out = tool().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("EXAMPLES:"), "{help}");
    assert!(
        help.contains("udp-broadcast send --dst 255.255.255.255"),
        "{help}"
    );
}

#[test]
fn bad_flags_and_values_exit_2_with_one_line() {
    for args in [
        &["send", "--prot", "5007"][..],
        &["send", "--dst", "255.255.255"],
        &["send", "--dst", "::1"],
        &["recv", "--count", "many"],
        &["recv", "--idle-timeout", "-1"],
        &["recv", "--port", "70000"],
        &["shout"],
        &[],
    ] {
        let out = tool().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("udp-broadcast: "), "{stderr}");
    }
}

#[test]
fn port_in_use_without_reuse_is_a_bind_error_exit_1() {
    // A socket without SO_REUSEADDR holds the port: the receiver's bind must fail and say so.
    let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let out = tool()
        .args([
            "recv",
            "--bind-addr",
            "127.0.0.1",
            "--port",
            &port,
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        format!("udp-broadcast: bind UDP 127.0.0.1:{port}: address already in use (EADDRINUSE)")
    );
}
