//! `mcast-chat` on loopback only (interface 127.0.0.1, TTL 0: the datagrams never leave this
//! host), two instances on a free port of their own group: each sees the other's messages, never
//! its own — recognised by source address, and by ID when a second instance shares our ID.
//! (`--no-loop` cannot be shown on `lo`: the loopback device itself hands every datagram back, so
//! it is checked between two hosts in `tests/tests/tp3_namespaces.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use testkit::proc::{Finished, Proc, run};

const BIN: &str = env!("CARGO_BIN_EXE_mcast-chat");
const LIMIT: Duration = Duration::from_secs(20);

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a chat on loopback; its stdin stays open until `end`.
fn chat(id: &str, group: &str, port: u16, extra: &[&str]) -> Proc {
    Proc::spawn_with_stdin(
        Command::new(BIN)
            .args(["--id", id, "--group", group, "--port", &port.to_string()])
            .args(["--ttl", "0", "--iface", "127.0.0.1", "--linger", "0.5"])
            .args(extra),
    )
}

fn end(mut c: Proc) -> Finished {
    c.close_stdin();
    c.finish_within(LIMIT)
}

#[test]
fn each_sees_the_other_and_never_itself() {
    let port = free_udp_port();
    let group = "239.255.42.1";
    let mut a = chat("AAAAAA", group, port, &[]);
    let mut b = chat("BBBBBB", group, port, &[]);
    std::thread::sleep(Duration::from_millis(400));
    a.send("hello from A");
    std::thread::sleep(Duration::from_millis(100));
    b.send("hello from B");
    std::thread::sleep(Duration::from_millis(100));
    let ra = end(a);
    let rb = end(b);
    assert_eq!(ra.code, Some(0), "{}", ra.stderr);
    assert_eq!(rb.code, Some(0), "{}", rb.stderr);
    assert_eq!(ra.msgs("RECV"), vec!["BBBBBB: hello from B".to_owned()]);
    assert_eq!(rb.msgs("RECV"), vec!["AAAAAA: hello from A".to_owned()]);
    assert_eq!(
        ra.msgs("SEND"),
        vec!["AAAAAA: hello from A (12 characters, 18 bytes)".to_owned()]
    );
    assert_eq!(
        ra.msgs("STAT"),
        vec![
            "sent 1 messages, shown 1 from others, ignored 1 own (1 by source address, 0 by ID)"
                .to_owned()
        ]
    );
}

#[test]
fn same_id_from_another_socket_is_recognised_by_id() {
    let port = free_udp_port();
    let group = "239.255.42.2";
    let a = chat("123456", group, port, &[]);
    let mut b = chat("123456", group, port, &[]);
    std::thread::sleep(Duration::from_millis(400));
    b.send("same ID, other socket");
    std::thread::sleep(Duration::from_millis(100));
    let ra = end(a);
    let rb = end(b);
    assert!(ra.msgs("RECV").is_empty(), "{}", ra.stdout);
    assert_eq!(
        ra.msgs("STAT"),
        vec![
            "sent 0 messages, shown 0 from others, ignored 1 own (0 by source address, 1 by ID)"
                .to_owned()
        ]
    );
    assert_eq!(
        rb.msgs("STAT"),
        vec![
            "sent 1 messages, shown 0 from others, ignored 1 own (1 by source address, 0 by ID)"
                .to_owned()
        ]
    );
}

#[test]
fn short_datagrams_are_warned_about() {
    let port = free_udp_port();
    let group = "239.255.42.4";
    let a = chat("AAAAAA", group, port, &[]);
    std::thread::sleep(Duration::from_millis(400));
    let opts = labnet::sock::MulticastOptions {
        ttl: 0,
        loopback: true,
        iface: labnet::sock::Iface::V4(std::net::Ipv4Addr::LOCALHOST),
    };
    let tx = labnet::sock::multicast_sender(group.parse().unwrap(), &opts).unwrap();
    tx.send_to(b"abc", (group, port)).unwrap();
    tx.send_to(b"swcmTVBut soft", (group, port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let ra = end(a);
    assert_eq!(ra.msgs("RECV"), vec!["swcmTV: But soft".to_owned()]);
    let from = tx.local_addr().unwrap().port();
    assert_eq!(
        ra.msgs("WARN"),
        vec![format!(
            "ignoring a datagram from 127.0.0.1:{from}: 3 bytes, shorter than the 6-byte ID"
        )]
    );
}

#[test]
fn help_shows_examples_and_bad_input_exits_2() {
    let r = run(BIN, &["--help"], LIMIT);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("EXAMPLES:"));
    for bad in [
        &["--id", "12345"][..],
        &[],
        &["--id", "123456", "--group", "10.0.0.1"],
        &["--id", "123456", "--ttl", "300"],
        &["--id", "123456", "--bogus"],
    ] {
        let r = run(BIN, bad, LIMIT);
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1);
    }
}
