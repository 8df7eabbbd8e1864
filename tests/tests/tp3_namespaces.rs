//! TP3 parts 3 and 4 on a real segment: the tp3 namespaces (lab-server on `tcpip`, students on
//! `student1`/`student2`), plus the multicast TV on loopback with TTL 0.
//!
//! - TV: a joined `udp-multicast recv --id-header` prints `swcmTV` lines; `mcast-chat` sends ID +
//!   text, never shows its own messages, and a > 300-character message gets the TV's answer; the
//!   TV's `--record` file holds every datagram.
//! - `--no-loop`: the sender's own host gets no copy, the other host does.
//! - Reset: `reset-client tcpip` sends over IPv4 and IPv6 (the name has both addresses) and reports
//!   the family the server answers on: `--family v4`, `v6`, and `alternate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use labnet::netns::Testbed;
use testkit::bin;
use testkit::proc::{Proc, split_event};

const TV_ID_LINE: &str = "swcmTV: ";

fn spawn(bed: Option<&Testbed>, host: &str, prog: &str, args: &[&str], stdin: bool) -> Proc {
    let mut cmd = match bed {
        Some(bed) => bed.command(host, bin(prog)),
        None => Command::new(bin(prog)),
    };
    cmd.args(args);
    if stdin {
        Proc::spawn_with_stdin(cmd)
    } else {
        Proc::spawn(cmd)
    }
}

/// Waits for the exit (killing it after `limit`) and returns the code and every line, stderr
/// lines last with a `STDERR ` tag.
fn finish(p: Proc, limit: Duration) -> (Option<i32>, Vec<String>) {
    let f = p.stop_after(limit);
    let err = f.stderr.lines().map(|l| format!("STDERR {l}"));
    (
        f.code,
        f.stdout.lines().map(String::from).chain(err).collect(),
    )
}

/// The message of a `[time] [LEVEL] message` line, if it has that level.
fn msg<'a>(line: &'a str, level: &str) -> Option<&'a str> {
    split_event(line)
        .filter(|(l, _)| *l == level)
        .map(|(_, m)| m)
}

fn record_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("netlab-tp3-{tag}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// One subscriber session against a running TV: a receiver with `--id-header` and a chat that
/// sends a short and a long line. Returns (receiver lines, chat lines).
fn subscribe(
    bed: Option<&Testbed>,
    hosts: (&str, &str),
    port: &str,
    ttl: &str,
    ifaces: (&str, &str),
) -> (Vec<String>, Vec<String>) {
    let receiver = spawn(
        bed,
        hosts.0,
        "udp-multicast",
        &[
            "recv",
            "--group",
            "224.1.1.1",
            "--port",
            port,
            "--iface",
            ifaces.0,
            "--id-header",
            "--count",
            "0",
            "--timeout",
            "4",
        ],
        false,
    );
    let mut chat = spawn(
        bed,
        hosts.1,
        "mcast-chat",
        &[
            "--id",
            "123456",
            "--group",
            "224.1.1.1",
            "--port",
            port,
            "--ttl",
            ttl,
            "--iface",
            ifaces.1,
            "--linger",
            "1.5",
        ],
        true,
    );
    chat.wait_for("joined 224.1.1.1:");
    std::thread::sleep(Duration::from_millis(300));
    chat.send("Hello TV");
    chat.send(&"O".repeat(350));
    chat.close_stdin();
    let (code, chat_lines) = finish(chat, Duration::from_secs(15));
    assert_eq!(code, Some(0), "{chat_lines:#?}");
    let (_, rx_lines) = finish(receiver, Duration::from_secs(15));
    (rx_lines, chat_lines)
}

fn check_subscription(rx: &[String], chat: &[String], record: &PathBuf) {
    let answer = "swcmTV: Thank you 123456, we received your 350-character message";
    // The receiver hears the play, the subscriber and the answer.
    let rx_msgs: Vec<&str> = rx.iter().filter_map(|l| msg(l, "RECV")).collect();
    let play = rx_msgs
        .iter()
        .filter(|m| m.contains(TV_ID_LINE) && !m.contains("Thank you"))
        .count();
    assert!(play >= 2, "{rx:#?}");
    assert!(
        rx_msgs.iter().any(|m| m.ends_with(" 123456: Hello TV")),
        "{rx:#?}"
    );
    assert!(rx_msgs.iter().any(|m| m.ends_with(answer)), "{rx:#?}");
    // The chat shows the TV, including its answer, and never its own messages.
    let chat_recv: Vec<&str> = chat.iter().filter_map(|l| msg(l, "RECV")).collect();
    assert!(chat_recv.contains(&answer), "{chat:#?}");
    assert!(
        chat_recv.iter().all(|m| m.starts_with(TV_ID_LINE)),
        "{chat:#?}"
    );
    assert!(chat_recv.len() >= 2, "{chat:#?}");
    let stat = chat.iter().filter_map(|l| msg(l, "STAT")).next().unwrap();
    assert!(
        stat.starts_with("sent 2 messages, ")
            && stat.contains("ignored 2 own (2 by source address, 0 by ID)"),
        "{stat}"
    );
    // The record holds every datagram the receiver saw: the subscriber's two, the answer, the play.
    let text = std::fs::read_to_string(record).unwrap();
    let entries: Vec<&str> = text.lines().collect();
    assert!(
        entries.len() >= rx_msgs.len(),
        "{} < {}",
        entries.len(),
        rx_msgs.len()
    );
    assert!(
        entries
            .iter()
            .any(|e| e.contains("\"id\":\"123456\"") && e.contains("\"text\":\"Hello TV\""))
    );
    assert!(
        entries
            .iter()
            .any(|e| e.contains("\"id\":\"123456\"") && e.contains("\"chars\":350"))
    );
    assert!(
        entries
            .iter()
            .any(|e| e.contains("Thank you 123456, we received your 350-character message"))
    );
    assert!(
        entries
            .iter()
            .filter(|e| e.contains("\"id\":\"swcmTV\""))
            .count()
            >= play
    );
}

#[test]
fn tv_and_chat_on_the_tp3_segment() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let record = record_path("ns");
    let record_s = record.to_string_lossy().into_owned();
    let tv = spawn(
        Some(&bed),
        "tcpip",
        "lab-server",
        &[
            "--no-pmu",
            "--no-reset",
            "--no-ws",
            "--iface",
            "172.30.0.10",
            "--ttl",
            "1",
            "--interval",
            "0.2",
            "--record",
            &record_s,
        ],
        false,
    );
    tv.wait_for("TV listening on 224.1.1.1:5005");
    let (rx, chat) = subscribe(
        Some(&bed),
        ("student1", "student2"),
        "5005",
        "1",
        ("172.30.0.101", "172.30.0.102"),
    );
    check_subscription(&rx, &chat, &record);
    // The receiver is on another host than the TV: the play crossed the segment.
    assert!(
        rx.iter()
            .filter_map(|l| msg(l, "RECV"))
            .any(|m| m.contains(" bytes from 172.30.0.10:") && m.contains(TV_ID_LINE)),
        "{rx:#?}"
    );
    drop(tv);
    let _ = std::fs::remove_file(record);
}

#[test]
fn tv_and_chat_on_loopback_with_ttl_0() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let record = record_path("lo");
    let record_s = record.to_string_lossy().into_owned();
    let tv = spawn(
        None,
        "",
        "lab-server",
        &[
            "--no-pmu",
            "--no-reset",
            "--no-ws",
            "--tv-port",
            &port,
            "--iface",
            "127.0.0.1",
            "--ttl",
            "0",
            "--interval",
            "0.2",
            "--record",
            &record_s,
        ],
        false,
    );
    tv.wait_for(&format!("TV listening on 224.1.1.1:{port}"));
    let (rx, chat) = subscribe(None, ("", ""), &port, "0", ("127.0.0.1", "127.0.0.1"));
    check_subscription(&rx, &chat, &record);
    drop(tv);
    let _ = std::fs::remove_file(record);
}

#[test]
fn no_loop_keeps_a_copy_from_the_senders_own_host() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let recv_args = |iface: &'static str| {
        vec![
            "recv",
            "--group",
            "224.1.1.1",
            "--port",
            "5005",
            "--iface",
            iface,
            "--id-header",
            "--count",
            "0",
            "--timeout",
            "3",
        ]
    };
    let same_host = spawn(
        Some(&bed),
        "student1",
        "udp-multicast",
        &recv_args("172.30.0.101"),
        false,
    );
    let other_host = spawn(
        Some(&bed),
        "student2",
        "udp-multicast",
        &recv_args("172.30.0.102"),
        false,
    );
    same_host.wait_for("");
    std::thread::sleep(Duration::from_millis(300));
    let mut chat = spawn(
        Some(&bed),
        "student1",
        "mcast-chat",
        &[
            "--id",
            "ABCDEF",
            "--iface",
            "172.30.0.101",
            "--ttl",
            "1",
            "--no-loop",
            "--linger",
            "0.3",
        ],
        true,
    );
    chat.send("no copy for my own host");
    chat.close_stdin();
    let (code, lines) = finish(chat, Duration::from_secs(10));
    assert_eq!(code, Some(0), "{lines:#?}");
    let (_, same) = finish(same_host, Duration::from_secs(10));
    let (_, other) = finish(other_host, Duration::from_secs(10));
    let heard = |lines: &[String]| {
        lines
            .iter()
            .filter_map(|l| msg(l, "RECV"))
            .any(|m| m.ends_with("ABCDEF: no copy for my own host"))
    };
    assert!(heard(&other), "{other:#?}");
    assert!(!heard(&same), "{same:#?}");
}

#[test]
fn reset_client_detects_the_family_in_the_tp3_lab() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    for (family, want) in [
        ("v4", "IPv4 from 172.30.0.10:5004"),
        ("v6", "IPv6 from [fd30::10]:5004"),
    ] {
        let server = spawn(
            Some(&bed),
            "tcpip",
            "lab-server",
            &[
                "--no-pmu", "--no-ws", "--no-tv", "--drop", "0", "--family", family,
            ],
            false,
        );
        server.wait_for("RESET listening on");
        let client = spawn(
            Some(&bed),
            "student1",
            "reset-client",
            &["tcpip", "--timeout", "0.3", "--runs", "3"],
            false,
        );
        let (code, lines) = finish(client, Duration::from_secs(20));
        assert_eq!(code, Some(0), "{lines:#?}");
        let recv: Vec<&str> = lines.iter().filter_map(|l| msg(l, "RECV")).collect();
        assert_eq!(recv.len(), 3, "{lines:#?}");
        assert!(
            recv.iter().all(|m| m.contains(&format!(" over {want} "))),
            "{recv:#?}"
        );
        // Both families were tried on every attempt.
        let send = lines.iter().filter_map(|l| msg(l, "SEND")).next().unwrap();
        assert!(
            send.contains("172.30.0.10:5004 and [fd30::10]:5004"),
            "{send}"
        );
        drop(server);
    }
    // Alternate: the server switches family every 0.5 s; clients started a period apart both
    // get an answer, over both families in turn.
    let server = spawn(
        Some(&bed),
        "tcpip",
        "lab-server",
        &[
            "--no-pmu",
            "--no-ws",
            "--no-tv",
            "--drop",
            "0",
            "--family",
            "alternate",
            "--period",
            "0.5",
        ],
        false,
    );
    server.wait_for("RESET listening on");
    let mut families = Vec::new();
    for _ in 0..6 {
        let client = spawn(
            Some(&bed),
            "student1",
            "reset-client",
            &["tcpip", "--timeout", "0.2"],
            false,
        );
        let (code, lines) = finish(client, Duration::from_secs(20));
        assert_eq!(code, Some(0), "{lines:#?}");
        let recv = lines
            .iter()
            .filter_map(|l| msg(l, "RECV"))
            .next()
            .unwrap()
            .to_owned();
        families.push(if recv.contains(" over IPv4 ") {
            "IPv4"
        } else {
            "IPv6"
        });
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        families.contains(&"IPv4") && families.contains(&"IPv6"),
        "{families:?}"
    );
}
