//! TP3 part 4: the multicast TV on loopback (interface 127.0.0.1, TTL 0: nothing leaves the host),
//! served in-process (`common::Server`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Server, WAIT};
use labnet::sock::{Iface, MulticastOptions, MulticastReceiver, multicast_sender};
use serde_json::Value;

const GROUP: IpAddr = IpAddr::V4(Ipv4Addr::new(224, 1, 1, 1));
const LO: Iface = Iface::V4(Ipv4Addr::LOCALHOST);

fn record_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("lab-server-{name}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn sender() -> UdpSocket {
    let opts = MulticastOptions {
        ttl: 0,
        loopback: true,
        iface: LO,
    };
    multicast_sender(GROUP, &opts).unwrap()
}

fn subscriber(port: u16) -> MulticastReceiver {
    let rx = MulticastReceiver::join(GROUP, port, &LO).unwrap();
    rx.socket().set_read_timeout(Some(WAIT)).unwrap();
    rx
}

/// Receives datagrams until `pred` accepts one (bounded by count and time).
fn recv_until(rx: &MulticastReceiver, mut pred: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65_536];
    for _ in 0..1000 {
        assert!(Instant::now() < deadline, "nothing matching arrived");
        let (n, _) = rx.socket().recv_from(&mut buf).unwrap();
        if pred(&buf[..n]) {
            return buf[..n].to_vec();
        }
    }
    panic!("nothing matching in 1000 datagrams");
}

fn records(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn lines_of_the_play_arrive_with_id_swcmtv() {
    let server = Server::start(&["--tv-on", "--interval", "0.1"]);
    let port = server.port("TV");
    let rx = subscriber(port);
    let lines = lab_server::tv::lines();
    let mut seen = 0;
    recv_until(&rx, |d| {
        assert_eq!(&d[..6], b"swcmTV");
        let text = std::str::from_utf8(&d[6..]).unwrap();
        assert!(lines.contains(&text), "{text:?} is a line of the play");
        seen += 1;
        seen == 3
    });
}

/// Q18: "a text of at least 300 characters" is answered: exactly 300 characters gets the answer,
/// 299 does not. Characters, not bytes: the 300 are two-byte 'é's.
#[test]
fn exactly_300_characters_get_an_answer_and_299_do_not() {
    let record = record_path("answer");
    let server = Server::start(&[
        "--tv-on",
        "--interval",
        "5",
        "--record",
        record.to_str().unwrap(),
    ]);
    let port = server.port("TV");
    let rx = subscriber(port);
    let tx = sender();
    let just_short = format!("654321{}", "y".repeat(299));
    tx.send_to(just_short.as_bytes(), (GROUP, port)).unwrap();
    let exactly_300 = format!("123456{}", "é".repeat(300));
    tx.send_to(exactly_300.as_bytes(), (GROUP, port)).unwrap();
    let answer = recv_until(&rx, |d| d.starts_with(b"swcmTVThank you"));
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        "swcmTVThank you 123456, we received your 300-character message"
    );
    // The station records both messages and its own answer; only the 300-character one was
    // answered (the 299 one came first, on the same socket, and was handled before it).
    let recs = testkit::wait_until(WAIT, || {
        let r = records(&record);
        r.iter()
            .any(|e| {
                e["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Thank you"))
            })
            .then_some(r)
    })
    .expect("answer recorded");
    let by_id = |id: &str| recs.iter().find(|e| e["id"] == id).cloned().unwrap();
    assert_eq!(by_id("654321")["chars"], 299);
    assert!(by_id("654321").get("answered").is_none());
    assert_eq!(by_id("123456")["chars"], 300);
    assert_eq!(by_id("123456")["bytes"], 6 + 600);
    assert!(
        by_id("123456")["answered"]
            .as_str()
            .unwrap()
            .contains("300-character")
    );
    // The station logs its answer right after sending it; the log reaches us through a pipe.
    server.wait_line("TV answer to", WAIT);
    assert_eq!(server.count("TV answer to"), 1, "{}", server.log());
    let _ = std::fs::remove_file(record);
}

#[test]
fn short_and_invalid_utf8_datagrams_are_recorded_as_such() {
    let record = record_path("bad");
    let server = Server::start(&[
        "--tv-on",
        "--interval",
        "5",
        "--record",
        record.to_str().unwrap(),
    ]);
    let port = server.port("TV");
    let tx = sender();
    tx.send_to(b"abc", (GROUP, port)).unwrap();
    tx.send_to(b"", (GROUP, port)).unwrap();
    tx.send_to(b"123456\xff\xfe ok", (GROUP, port)).unwrap();
    tx.send_to(b"123456still here", (GROUP, port)).unwrap();
    let recs = testkit::wait_until(WAIT, || {
        let r = records(&record);
        r.iter().any(|e| e["text"] == "still here").then_some(r)
    })
    .unwrap_or_else(|| panic!("{}", server.log()));
    let short: Vec<&Value> = recs.iter().filter(|e| e["kind"] == "short").collect();
    assert_eq!(short.len(), 2, "{recs:?}");
    assert_eq!(short[0]["hex"], "616263");
    assert_eq!(short[0]["bytes"], 3);
    assert_eq!(short[1]["bytes"], 0);
    let bad = recs.iter().find(|e| e["kind"] == "invalid_utf8").unwrap();
    assert_eq!(bad["id"], "123456");
    assert_eq!(bad["hex"], "fffe206f6b");
    assert!(bad.get("text").is_none());
    // Each record names its time and source.
    assert!(
        recs.iter()
            .all(|e| e["time"].is_string() && e["src"].as_str().unwrap().starts_with("127.0.0.1:"))
    );
    // Its own first line is recorded too, flagged as its own.
    assert!(
        recs.iter().any(|e| e["own"] == true && e["id"] == "swcmTV"),
        "{recs:?}"
    );
    let _ = std::fs::remove_file(record);
}
