//! TP3 Q9, Q10 and Q19 in the tp3 namespaces, counted the way the handout asks ("how many packets
//! with payload length more than 0 have you seen coming from the server"): tcpdump on `student1`,
//! lab-server (or `tls-pmu serve`) on `tcpip`.
//!
//! - PMU over TCP: with `CMD_short:0` the n messages (n `send()` calls) arrive in exactly one data
//!   segment; with `CMD_short:1` in exactly n.
//! - WebSocket PMU: the n binary frames of `CMD_short:0` arrive in exactly one segment.
//! - TLS PMU (part 6): the n records of `CMD_short:0` leave in one segment, of `CMD_short:1` in n.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod capture;

use std::path::PathBuf;
use std::time::Duration;

use capture::{Capture, data_from, occurrences, tcpdump_available};
use labnet::netns::Testbed;
use labnet::wire::pmu::message;
use testkit::bin;
use testkit::proc::{Finished, Proc};

const PREFIX: &[u8] = b"This is PMU data ";

/// Starts `prog args…` in `host` and waits (at most `limit`) for it to exit successfully.
fn run(bed: &Testbed, host: &str, prog: &str, args: &[&str], limit: Duration) -> Finished {
    let mut cmd = bed.command(host, bin(prog));
    cmd.args(args);
    let f = Proc::spawn(cmd).named(prog).finish_within(limit);
    assert_eq!(f.code, Some(0), "{prog} {args:?}: {f:?}");
    f
}

fn lab_server(bed: &Testbed, args: &[&str]) -> Proc {
    let mut cmd = bed.command("tcpip", bin("lab-server"));
    cmd.args(["--no-tv", "--no-reset"]).args(args);
    let p = Proc::spawn(cmd).named("lab-server");
    p.wait_for("PMU listening on");
    p.wait_for("WS listening on");
    p
}

/// The messages a client printed as `[RECV] This is PMU data i`, in order.
fn received(f: &Finished) -> Vec<String> {
    f.msgs("RECV")
        .into_iter()
        .filter(|m| m.starts_with("This is PMU data "))
        .collect()
}

fn expected(n: u32) -> Vec<String> {
    (1..=n).map(message).collect()
}

#[test]
fn pmu_d0_is_one_data_segment_and_d1_one_per_message() {
    if !tcpdump_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let _server = lab_server(&bed, &["--messages", "8"]);
    for (cmd, want_segments) in [("CMD_short:0", 1), ("CMD_short:1", 8)] {
        let cap = Capture::start(&bed, "student1", "tcp port 5003");
        let out = run(
            &bed,
            "student1",
            "pmu-pdc-client",
            &["tcpip", "5003", cmd],
            Duration::from_secs(30),
        );
        let segments = cap.stop();
        assert_eq!(received(&out), expected(8), "{cmd}: {out:?}");
        let data = data_from(&segments, 5003);
        assert_eq!(
            data.len(),
            want_segments,
            "{cmd}: data segments from the PMU: {data:#?}"
        );
        // Part 2 is over IPv6, and the segments carry exactly the n messages, nothing else.
        assert!(data.iter().all(|s| s.src.is_ipv6()), "{data:#?}");
        let bytes: Vec<u8> = data.iter().flat_map(|s| s.payload.clone()).collect();
        assert_eq!(bytes, expected(8).concat().into_bytes(), "{cmd}");
    }
}

#[test]
fn pmu_d0_burst_of_a_seeded_random_n_is_still_one_segment() {
    if !tcpdump_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let server = lab_server(&bed, &["--seed", "7"]);
    let cap = Capture::start(&bed, "student1", "tcp port 5003");
    let out = run(
        &bed,
        "student1",
        "pmu-pdc-client",
        &["tcpip", "5003", "CMD_short:0"],
        Duration::from_secs(30),
    );
    let segments = cap.stop();
    let n = received(&out).len();
    server.wait_for(&format!("CMD_short:0 served: {n} messages"));
    assert!((5..=15).contains(&n), "{out:?}");
    let data = data_from(&segments, 5003);
    assert_eq!(data.len(), 1, "{data:#?}");
    assert_eq!(occurrences(&data[0].payload, PREFIX), n);
}

#[test]
fn websocket_short_0_frames_arrive_in_one_segment() {
    if !tcpdump_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let _server = lab_server(&bed, &["--messages", "8"]);
    for (cmd, want_segments) in [("CMD_short:0", 1), ("CMD_short:1", 8)] {
        let cap = Capture::start(&bed, "student1", "tcp port 5006");
        let out = run(
            &bed,
            "student1",
            "ws-client",
            &["ws://tcpip:5006", cmd],
            Duration::from_secs(30),
        );
        let segments = cap.stop();
        assert_eq!(received(&out), expected(8), "{cmd}: {out:?}");
        // The segments carrying the PMU frames (the HTTP 101 answer and the close frame are
        // segments of their own).
        let carrying: Vec<_> = data_from(&segments, 5006)
            .into_iter()
            .filter(|s| occurrences(&s.payload, PREFIX) > 0)
            .collect();
        assert_eq!(carrying.len(), want_segments, "{cmd}: {carrying:#?}");
        let frames: usize = carrying
            .iter()
            .map(|s| occurrences(&s.payload, PREFIX))
            .sum();
        assert_eq!(frames, 8, "{cmd}");
        if want_segments == 1 {
            // Eight binary frames (FIN + opcode 2, 18-byte payload) back to back.
            let want: Vec<u8> = expected(8)
                .iter()
                .flat_map(|m| [&[0x82, m.len() as u8][..], m.as_bytes()].concat())
                .collect();
            assert_eq!(carrying[0].payload, want);
        }
    }
}

/// TLS 1.3 application-data records whose ciphertext is one PMU message (18 bytes, the inner
/// content type and the 16-byte AEAD tag), per segment: handshake, tickets and close_notify have
/// other lengths.
fn pmu_records(payload: &[u8]) -> usize {
    let (mut at, mut count) = (0, 0);
    while at + 5 <= payload.len() {
        let len = usize::from(u16::from_be_bytes([payload[at + 3], payload[at + 4]]));
        if payload[at] == 0x17 && len == 18 + 1 + 16 {
            count += 1;
        }
        at += 5 + len;
    }
    count
}

#[test]
fn tls_short_0_records_leave_in_one_segment_and_short_1_in_n() {
    if !tcpdump_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let dir = std::env::temp_dir().join(format!("netlab-e2e-tlsseg-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    run(
        &bed,
        "tcpip",
        "tls-pmu",
        &["certs", "--id", "123456", "--out", d],
        Duration::from_secs(30),
    );
    let file = |f: &str| PathBuf::from(&dir).join(f).display().to_string();
    let mut cmd = bed.command("tcpip", bin("tls-pmu"));
    cmd.args(["serve", "--messages", "8", "--cert"])
        .arg(file("123456_cert.pem"))
        .arg("--key")
        .arg(file("123456_key.pem"));
    let server = Proc::spawn(cmd).named("tls-pmu serve");
    server.wait_for("listening on");
    for (cmd, want_segments) in [("CMD_short:0", 1), ("CMD_short:1", 8)] {
        let cap = Capture::start(&bed, "student1", "tcp port 5443");
        let out = run(
            &bed,
            "student1",
            "tls-pmu",
            &["client", "tcpip", "5443", cmd, "--ca", &file("cacert.pem")],
            Duration::from_secs(30),
        );
        let segments = cap.stop();
        assert_eq!(received(&out), expected(8), "{cmd}: {out:?}");
        let carrying: Vec<usize> = data_from(&segments, 5443)
            .into_iter()
            .map(|s| pmu_records(&s.payload))
            .filter(|&n| n > 0)
            .collect();
        assert_eq!(carrying.len(), want_segments, "{cmd}: {carrying:?}");
        assert_eq!(carrying.iter().sum::<usize>(), 8, "{cmd}: {carrying:?}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
