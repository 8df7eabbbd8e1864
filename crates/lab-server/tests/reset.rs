//! TP3 part 3: the UDP reset server, normal path, loss, families and bad input.
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

#[test]
fn malformed_requests_get_error_replies_on_both_families() {
    let server = Server::start(&["--drop", "0", "--seed", "1"]);
    let port = server.port("RESET");
    let huge = vec![b'R'; 65_000];
    for v6 in [false, true] {
        let s = client(v6, WAIT);
        for (bad, why) in [
            (&b"RESET:-1"[..], "bad number '-1'"),
            (b"RESET:99999999999", "bad number '99999999999'"),
            (b"RESET:3601", "out of range"),
            (b"", "expected RESET:<n>"),
            (b"hello", "expected RESET:<n>"),
            (b"RESET:\xff", "not UTF-8"),
            (&huge, "65000-byte datagram"),
        ] {
            let reply = ask(&s, port, bad).expect("an ERROR reply");
            assert!(
                reply.starts_with("ERROR: ") && reply.contains(why),
                "{reply:?} for {why}"
            );
            assert!(
                reply.len() < 200,
                "error replies stay short: {}",
                reply.len()
            );
        }
        // Still serving.
        let ok = ask(&s, port, b"RESET:20").unwrap();
        let x: u32 = ok.strip_prefix("OFFSET=").expect(&ok).parse().unwrap();
        assert!(x <= 20);
    }
    assert!(
        server.wait_count("refused:", 14, WAIT).is_some(),
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
