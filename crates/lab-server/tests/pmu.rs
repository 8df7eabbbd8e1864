//! TP3 part 2: the PMU over TCP, normal path and bad input, served in-process (`common::Server`)
//! on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Server, WAIT, connect, pmu, read_all, short_reply};
use labnet::wire::pmu::{Splitter, flood_text};

#[test]
fn short0_returns_exactly_n_messages_over_ipv6_and_ipv4() {
    let server = Server::start(&["--messages", "7"]);
    let port = server.port("PMU");
    assert_eq!(pmu("::1", port, b"CMD_short:0"), short_reply(7));
    assert_eq!(pmu("127.0.0.1", port, b"CMD_short:0"), short_reply(7));
    // The IPv4 client reached the dual-stack socket and is logged with its plain IPv4 address.
    let line = server
        .wait_line("PMU #2 127.0.0.1:", WAIT)
        .expect("v4 session logged");
    assert!(
        line.contains("CMD_short:0 served: 7 messages, 126 bytes"),
        "{line}"
    );
    assert!(server.wait_line("PMU #1 [::1]:", WAIT).is_some());
}

#[test]
fn random_n_is_between_5_and_15_and_seed_reproduces_it() {
    let counts = |seed: &str| -> Vec<usize> {
        let server = Server::start(&["--seed", seed]);
        let port = server.port("PMU");
        (0..6)
            .map(|_| {
                let reply = String::from_utf8(pmu("::1", port, b"CMD_short:0")).unwrap();
                let n = reply.matches("This is PMU data ").count();
                assert_eq!(reply.as_bytes(), short_reply(n as u32), "{reply}");
                n
            })
            .collect()
    };
    let a = counts("5");
    assert!(a.iter().all(|n| (5..=15).contains(n)), "{a:?}");
    assert_eq!(a, counts("5"));
}

#[test]
fn command_word_is_case_insensitive_and_newline_tolerated() {
    let server = Server::start(&["--messages", "3"]);
    let port = server.port("PMU");
    assert_eq!(pmu("::1", port, b"CMD_SHORT:0"), short_reply(3));
    assert_eq!(pmu("::1", port, b"cmd_short:0\n"), short_reply(3));
}

#[test]
fn short1_spaces_messages_one_second_apart() {
    let server = Server::start(&["--messages", "3"]);
    let port = server.port("PMU");
    let mut s = connect("::1", port);
    s.write_all(b"CMD_short:1").unwrap();
    let start = Instant::now();
    let mut splitter = Splitter::new();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for msg in splitter.push(&buf[..n]) {
            arrivals.push((msg, start.elapsed()));
        }
    }
    arrivals.extend(splitter.finish().map(|m| (m, start.elapsed())));
    let msgs: Vec<&str> = arrivals.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "This is PMU data 1",
            "This is PMU data 2",
            "This is PMU data 3"
        ]
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= Duration::from_millis(900) && gap <= Duration::from_millis(1600),
            "gap {gap:?} between {:?} and {:?}",
            pair[0].0,
            pair[1].0
        );
    }
}

#[test]
fn floodme_sends_exactly_the_flood_bytes() {
    let server = Server::start(&["--flood-bytes", "300000"]);
    let port = server.port("PMU");
    let got = pmu("127.0.0.1", port, b"CMD_floodme");
    assert_eq!(got.len(), 300_000);
    assert_eq!(got, flood_text(300_000));
    let line = server.wait_line("CMD_floodme served", WAIT).unwrap();
    assert!(line.contains("300000 bytes in one send"), "{line}");
}

/// Each bad command gets `ERROR: …` and a close, is logged, and the next client is served.
fn refused(server: &Server, port: u16, input: &[u8], why: &str) {
    let before = server.count("refused:");
    let reply = String::from_utf8(pmu("::1", port, input)).unwrap();
    assert!(
        reply.starts_with("ERROR: ") && reply.ends_with('\n'),
        "{reply:?}"
    );
    assert!(reply.contains(why), "{reply:?} should say {why:?}");
    assert!(
        server.wait_count("refused:", before + 1, WAIT).is_some(),
        "no log line for {:?}",
        &input[..input.len().min(20)]
    );
    assert_eq!(pmu("::1", port, b"CMD_short:0"), short_reply(2));
}

#[test]
fn unknown_command_gets_error_and_server_keeps_serving() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("PMU");
    refused(&server, port, b"HELLO PMU", "unknown command");
}

#[test]
fn non_numeric_delay_gets_error() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("PMU");
    refused(&server, port, b"CMD_short:abc", "bad delay");
}

#[test]
fn negative_or_huge_delay_gets_error() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("PMU");
    refused(&server, port, b"CMD_short:-1", "bad delay");
    refused(&server, port, b"CMD_short:99999", "out of range");
}

#[test]
fn ten_kib_of_garbage_gets_error_not_a_reset() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("PMU");
    // 0xFF is never UTF-8, so whichever part of it the server has read, the reason is the same.
    let garbage: Vec<u8> = (0..10_240u32)
        .map(|i| if i == 0 { 0xff } else { (i * 7 + 3) as u8 })
        .collect();
    refused(&server, port, &garbage, "command is not UTF-8");
    refused(&server, port, &[b'C'; 10_240], "longer than 64 bytes");
}

#[test]
fn silent_client_is_closed_after_the_command_timeout() {
    let server = Server::start(&["--messages", "2", "--command-timeout", "1"]);
    let port = server.port("PMU");
    let mut s = connect("::1", port);
    let start = Instant::now();
    let got = read_all(&mut s);
    let waited = start.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    assert!(
        server
            .wait_line("no command before the timeout", WAIT)
            .is_some(),
        "{}",
        server.log()
    );
    assert_eq!(pmu("::1", port, b"CMD_short:0"), short_reply(2));
}

#[test]
fn client_leaving_mid_flood_is_logged_and_server_keeps_serving() {
    // 32 MiB cannot sit in loopback socket buffers, so the server is still writing when the
    // client goes away.
    let server = Server::start(&["--messages", "2", "--flood-bytes", "33554432"]);
    let port = server.port("PMU");
    {
        let mut s = connect("::1", port);
        s.write_all(b"CMD_floodme").unwrap();
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &flood_text(1000)[..]);
    }
    let line = server
        .wait_line("went away during CMD_floodme", WAIT)
        .unwrap_or_else(|| panic!("{}", server.log()));
    assert!(line.contains("[WARN]"), "{line}");
    assert_eq!(pmu("127.0.0.1", port, b"CMD_short:0"), short_reply(2));
}

#[test]
fn serves_1000_concurrent_sessions() {
    let server = Server::start(&["--messages", "5"]);
    let port = server.port("PMU");
    // All 1,000 connections are open (each server thread waiting for its command) before any
    // command is sent.
    let mut conns: Vec<_> = (0..1000)
        .map(|_| {
            let s = std::net::TcpStream::connect(("::1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        })
        .collect();
    for s in &mut conns {
        s.write_all(b"CMD_short:0").unwrap();
    }
    for s in &mut conns {
        assert_eq!(read_all(s), short_reply(5));
    }
    assert!(
        server
            .wait_count("served: 5 messages", 1000, Duration::from_secs(10))
            .is_some()
    );
}

/// The PMU's command timeout is a deadline too: a PDC trickling `CMD_floodm` one byte every
/// 1.5 s (each read within the 2 s timeout) is closed about 2 s after it connected, not when the
/// 11th byte finally makes the command wrong, 16 s later.
#[test]
fn a_trickled_command_is_closed_at_the_deadline() {
    let server = Server::start(&["--command-timeout", "2"]);
    let closed = common::trickle_until_closed(
        server.port("PMU"),
        b"CMD_floodm",
        Duration::from_millis(1500),
        Duration::from_secs(12),
    );
    eprintln!("trickled PMU command closed after {closed:?}");
    let closed = closed.expect("still open 12 s after connecting");
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_millis(3500),
        "closed after {closed:?} with --command-timeout 2"
    );
}
