//! `tcp_tunnel::serve` on a thread of the test: a listener bound to port 0 here, a capture sink
//! and a stop handle. The tests assert the bytes relayed and the events logged (with the address
//! the test's own client socket has), then stop the tunnel and check that it returned `Ok` in
//! bounded time. `tests/tunnel.rs` runs the binary (flags, exit codes, the log file, load).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use labnet::log::{Level, Printer};
use tcp_tunnel::{Forward, Options, serve};
use testkit::inproc::InProc;
use testkit::random_bytes;
use testkit::tcp::*;

const WAIT: Duration = Duration::from_secs(5);

/// A tunnel from an ephemeral loopback port to `target`, served in-process.
fn tunnel(target: SocketAddr, opts: Options) -> (InProc, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fwd: Forward = format!("{addr}={target}").parse().unwrap();
    let server = InProc::start("tunnel-test", move |ctx| {
        serve(vec![(listener, fwd)], &opts, &ctx)
    });
    (server, addr)
}

/// The same with the threaded relay (`--threads`).
fn threaded_tunnel(target: SocketAddr) -> (InProc, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fwd: Forward = format!("{addr}={target}").parse().unwrap();
    let server = InProc::start("tunnel-test", move |ctx| {
        tcp_tunnel::threaded::serve(vec![(listener, fwd)], Options::default(), &ctx)
    });
    (server, addr)
}

#[test]
fn bytes_come_back_exactly_and_every_event_names_the_client() {
    let target = echo_target();
    exact_bytes_and_events(target, tunnel(target, Options::default()));
}

#[test]
fn threaded_relay_bytes_come_back_exactly_and_every_event_names_the_client() {
    let target = echo_target();
    exact_bytes_and_events(target, threaded_tunnel(target));
}

fn exact_bytes_and_events(target: SocketAddr, (t, addr): (InProc, SocketAddr)) {
    let mut s = connect(addr);
    let me = s.local_addr().unwrap().to_string();
    let data = random_bytes(11, 256 * 1024);
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || read_to_eof(&mut r));
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let back = reader.join().unwrap();
    assert!(back == data, "echo differs ({} bytes back)", back.len());
    let close = t
        .wait_event(|e| e.is("event", "close"))
        .unwrap_or_else(|| panic!("no close:\n{}", t.log()));
    assert!(close.is("peer", &me) && close.is("target", target.to_string()));
    assert!(close.is("c2s_bytes", data.len()) && close.is("s2c_bytes", data.len()));
    assert!(close.is("closed_by", "client"), "{close:?}");
    // In order: accepted, connected, the client's FIN passed on, closed; all for our socket.
    let kinds: Vec<String> = t
        .capture
        .events()
        .iter()
        .filter(|e| e.is("peer", &me))
        .map(|e| e.get("event").unwrap().as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("accept"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.get(1).map(String::as_str),
        Some("connect"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("close"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "half_close"), "{kinds:?}");
    t.stop();
}

#[test]
fn target_down_is_logged_as_an_error_and_the_client_closed_at_once() {
    let target = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (t, addr) = tunnel(target, Options::default());
    let mut s = connect(addr);
    let me = s.local_addr().unwrap().to_string();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    assert!(matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let ev = t
        .wait_event(|e| e.is("event", "connect_failed") && e.is("peer", &me))
        .unwrap_or_else(|| panic!("no connect_failed for {me}:\n{}", t.log()));
    assert_eq!(ev.level(), Level::Error);
    assert!(
        ev.msg().contains("connection refused (ECONNREFUSED)"),
        "{}",
        ev.msg()
    );
    t.stop();
}

#[test]
fn the_log_file_gets_the_same_events_as_the_sink() {
    let path = std::env::temp_dir().join(format!("tunnel-inproc-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let opts = Options {
        printer: Some(Printer::append(&path, false).unwrap()),
        ..Options::default()
    };
    let (t, addr) = tunnel(echo_target(), opts);
    let mut s = connect(addr);
    s.write_all(b"ping").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"ping");
    t.wait_event(|e| e.is("event", "close")).unwrap();
    let capture = t.capture.clone();
    t.stop();
    let file = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    // The file lines are the sink's events, same text (the times are taken separately).
    let strip = |l: &str| l.split_once("] ").map(|(_, rest)| rest.to_owned()).unwrap();
    let from_file: Vec<String> = file.lines().map(strip).collect();
    let from_sink: Vec<String> = capture.lines().iter().map(|l| strip(l)).collect();
    assert_eq!(from_file, from_sink);
    assert!(from_file.len() >= 4, "{from_file:?}");
}

#[test]
fn a_stop_closes_every_relayed_connection_and_returns_ok() {
    let (t, addr) = tunnel(echo_target(), Options::default());
    let mut s = connect(addr);
    s.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    let took = t.stop();
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    // The event loop owned the pair: the client sees its connection end, and nothing listens.
    let r = s.read(&mut b);
    assert!(
        matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{r:?}"
    );
    assert!(std::net::TcpStream::connect_timeout(&addr, WAIT).is_err());
}
