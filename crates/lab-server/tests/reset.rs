//! TP3 part 3: the UDP reset server, normal path, loss, families and bad input, served
//! in-process (`common::Server`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Server, WAIT};

fn client(v6: bool, timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// Sends one datagram and returns the reply, or None after the timeout.
fn ask(s: &UdpSocket, port: u16, msg: &[u8]) -> Option<String> {
    let v6 = s.local_addr().unwrap().is_ipv6();
    let host = if v6 { "::1" } else { "127.0.0.1" };
    s.send_to(msg, (host, port)).unwrap();
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

/// A malformed request is refused with its reason when the reason fits in as many bytes as the
/// request had, with a bare `ERROR` when only that fits, and not at all under 5 bytes
/// (no reflection amplifier); the log always says why.
#[test]
fn malformed_requests_get_error_replies_on_both_families() {
    let server = Server::start(&["--drop", "0", "--seed", "1"]);
    let port = server.port("RESET");
    let huge = vec![b'R'; 65_000];
    // Trailing newlines are tolerated by the parser: the reason does not echo them.
    let pad = |s: &str| format!("{s}{}", "\n".repeat(64 - s.len())).into_bytes();
    for v6 in [false, true] {
        let s = client(v6, WAIT);
        for (bad, why) in [
            (&b"RESET:-1"[..], ""),
            (b"RESET:99999999999", ""),
            (b"RESET:3601", ""),
            (b"hello", ""),
            (&pad("RESET:-1"), "bad number '-1'"),
            (&pad("RESET:3601"), "3601 out of range"),
            (&pad("RESET:\u{7f}"), "bad number"),
            (&pad("hello"), "expected RESET:<n>"),
            (&huge, "65000-byte datagram"),
        ] {
            let reply = ask(&s, port, bad).expect("an ERROR reply");
            assert!(
                reply.len() <= bad.len(),
                "{reply:?} for {} bytes",
                bad.len()
            );
            if why.is_empty() {
                assert_eq!(reply, "ERROR");
            } else {
                assert!(
                    reply.starts_with("ERROR: ") && reply.contains(why),
                    "{reply:?} for {why}"
                );
            }
            assert!(
                reply.len() < 200,
                "error replies stay short: {}",
                reply.len()
            );
        }
        for tiny in [&b""[..], b"x", b"RES"] {
            assert_eq!(
                ask(&client(v6, Duration::from_millis(300)), port, tiny),
                None
            );
        }
        // Still serving.
        let ok = ask(&s, port, b"RESET:20").unwrap();
        let x: u32 = ok.strip_prefix("OFFSET=").expect(&ok).parse().unwrap();
        assert!(x <= 20);
    }
    // 12 malformed datagrams per address: the first 10 logged, then the per-source limit.
    assert!(
        server.wait_count("refused:", 20, WAIT).is_some(),
        "{}",
        server.log()
    );
}

#[test]
fn drop_zero_with_seed_is_deterministic() {
    let run = || -> Vec<String> {
        let server = Server::start(&["--drop", "0", "--seed", "42"]);
        let port = server.port("RESET");
        let s = client(false, WAIT);
        (0..20)
            .map(|_| ask(&s, port, b"RESET:20").expect("drop 0 answers all"))
            .collect()
    };
    let a = run();
    assert_eq!(a, run());
    let xs: Vec<u32> = a
        .iter()
        .map(|r| r.strip_prefix("OFFSET=").unwrap().parse().unwrap())
        .collect();
    assert!(xs.iter().all(|x| *x <= 20), "{xs:?}");
    assert!(xs.iter().any(|x| *x != xs[0]), "offsets vary: {xs:?}");
    // RESET:0 can only be OFFSET=0.
    let server = Server::start(&["--drop", "0"]);
    let s = client(true, WAIT);
    assert_eq!(
        ask(&s, server.port("RESET"), b"RESET:0").as_deref(),
        Some("OFFSET=0")
    );
}

#[test]
fn family_v4_answers_only_ipv4() {
    let server = Server::start(&["--drop", "0", "--family", "v4"]);
    let port = server.port("RESET");
    assert!(
        ask(&client(false, WAIT), port, b"RESET:5")
            .unwrap()
            .starts_with("OFFSET=")
    );
    assert_eq!(
        ask(&client(true, Duration::from_millis(500)), port, b"RESET:5"),
        None
    );
    assert!(!server.log().contains("(UDP, IPv6)"), "{}", server.log());
}

#[test]
fn family_v6_answers_only_ipv6() {
    let server = Server::start(&["--drop", "0", "--family", "v6"]);
    let port = server.port("RESET");
    assert!(
        ask(&client(true, WAIT), port, b"RESET:5")
            .unwrap()
            .starts_with("OFFSET=")
    );
    assert_eq!(
        ask(&client(false, Duration::from_millis(500)), port, b"RESET:5"),
        None
    );
}

#[test]
fn alternate_switches_family_every_period() {
    let server = Server::start(&["--drop", "0", "--family", "alternate", "--period", "1.5"]);
    let port = server.port("RESET");
    let short = Duration::from_millis(300);
    server
        .wait_line("RESET now answering on IPv4", WAIT)
        .unwrap();
    assert!(ask(&client(false, WAIT), port, b"RESET:5").is_some());
    assert_eq!(ask(&client(true, short), port, b"RESET:5"), None);
    server
        .wait_line("RESET now answering on IPv6", WAIT)
        .unwrap();
    assert!(ask(&client(true, WAIT), port, b"RESET:5").is_some());
    assert_eq!(ask(&client(false, short), port, b"RESET:5"), None);
    assert!(
        server
            .wait_line("ignored: the service is on the other family", WAIT)
            .is_some()
    );
}

#[test]
fn drop_half_loses_about_half_of_400_requests() {
    let server = Server::start(&["--drop", "0.5", "--seed", "2024"]);
    let port = server.port("RESET");
    let s = Arc::new(client(false, Duration::from_millis(1500)));
    // A reader thread counts replies while requests go out, so no reply waits in a full buffer.
    let answered = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (s, answered) = (Arc::clone(&s), Arc::clone(&answered));
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok(n) = s.recv(&mut buf) {
                assert!(buf[..n].starts_with(b"OFFSET="));
                answered.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    for _ in 0..400 {
        s.send_to(b"RESET:20", ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_micros(500));
    }
    reader.join().unwrap();
    let answered = answered.load(Ordering::Relaxed);
    let dropped = server.count("dropped on purpose");
    assert_eq!(
        answered + dropped,
        400,
        "every request answered or dropped on purpose"
    );
    let loss = dropped as f64 / 400.0;
    assert!((loss - 0.5).abs() <= 0.1, "loss {loss}");
}

/// The reset port is no reflection amplifier. A burst of 2,000 one-byte and 2,000
/// eight-byte malformed datagrams from one source gets fewer bytes back than it sent, no reply
/// longer than its request, and a handful of replies and log lines (rate-limited per source);
/// another source is still told what is wrong, and valid requests are still answered.
#[test]
fn malformed_datagrams_are_never_amplified_and_replies_and_logs_are_rate_limited() {
    let server = Server::start(&["--drop", "0"]);
    let port = server.port("RESET");
    let s = Arc::new(client(false, Duration::from_millis(1000)));
    let lines_before = server.lines().len();
    let replies = Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let reader = {
        let (s, replies) = (Arc::clone(&s), Arc::clone(&replies));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            // Ends after one second without a reply.
            while let Ok(n) = s.recv(&mut buf) {
                replies.lock().unwrap().push(n);
            }
        })
    };
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    for _ in 0..2000 {
        sent += s.send_to(b"x", ("127.0.0.1", port)).unwrap();
    }
    for _ in 0..2000 {
        sent += s.send_to(b"RESET:-1", ("127.0.0.1", port)).unwrap();
    }
    let burst = started.elapsed();
    reader.join().unwrap();
    let replies = replies.lock().unwrap().clone();
    let back: usize = replies.iter().sum();
    let lines = server.lines().len() - lines_before;
    eprintln!(
        "{sent} bytes in 4000 datagrams ({burst:?}): {} replies, {back} bytes back \
         (ratio {:.4}), {lines} log lines",
        replies.len(),
        back as f64 / sent as f64
    );
    assert!(back <= sent / 10, "{back} bytes back for {sent}");
    assert!(
        replies.iter().all(|&n| n <= 8),
        "a reply longer than its request: {replies:?}"
    );
    assert!(replies.len() <= 20, "{} replies", replies.len());
    assert!(lines <= 20, "{lines} log lines:\n{}", server.log());
    // Another source still gets the reason, and the flooding one its offsets.
    let other = client(true, WAIT);
    let long = format!("RESET:99999{}", "\n".repeat(53));
    let long = long.as_bytes();
    let reply = ask(&other, port, long).expect("an ERROR reply");
    assert!(
        reply.starts_with("ERROR: ") && reply.len() <= long.len(),
        "{reply:?}"
    );
    assert!(ask(&s, port, b"RESET:20").unwrap().starts_with("OFFSET="));
}
