//! In-process tests of `echo-server`: `serve` and `serve_udp` run on a thread of the test on a
//! socket bound to port 0 here, with a capture sink and a stop handle. They assert the bytes
//! echoed and the events logged (with the peer address the test's own socket has), then stop the
//! server and check that it returned `Ok` in bounded time. What only a process shows (flags,
//! exit codes, descriptor limits, the stdout format) stays in `tests/echo.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use echo_server::{Options, serve, serve_udp};
use labnet::log::Level;
use testkit::inproc::InProc;
use testkit::random_bytes;
use testkit::tcp::*;

const WAIT: Duration = Duration::from_secs(5);

fn tcp_server(opts: Options) -> (InProc, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = InProc::start("echo-test", move |ctx| serve(listener, &opts, &ctx));
    (server, addr)
}

#[test]
fn tcp_echo_returns_exact_bytes_and_logs_connect_data_and_close_for_the_peer() {
    let (server, addr) = tcp_server(Options::default());
    let mut s = connect(addr);
    let me = s.local_addr().unwrap().to_string();
    let romeo = b"O Romeo, Romeo! wherefore art thou Romeo?";
    s.write_all(romeo).unwrap();
    let mut back = vec![0u8; romeo.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, romeo);
    drop(s);
    let log = &server.capture;
    let close = log
        .wait_for(WAIT, |e| e.is("event", "close"))
        .expect("close event");
    assert!(close.is("peer", &me) && close.is("id", 1), "{close:?}");
    assert!(close.is("closed_by", "client"));
    assert!(close.is("bytes", romeo.len()));
    assert!(
        close
            .msg()
            .starts_with(&format!("#1 {me} closed by client after")),
        "{}",
        close.msg()
    );
    let events = log.events();
    let connect = events.iter().find(|e| e.is("event", "connect")).unwrap();
    assert!(connect.is("peer", &me) && connect.is("id", 1));
    assert_eq!(connect.msg(), format!("#1 connection from {me}"));
    let data = events.iter().find(|e| e.is("event", "data")).unwrap();
    assert_eq!(data.level(), Level::Recv);
    assert!(data.is("bytes", romeo.len()));
    assert!(data.msg().contains("wherefore art thou"), "{}", data.msg());
    server.stop();
}

#[test]
fn stop_ends_serve_within_bounded_time_and_no_new_client_is_accepted() {
    let (server, addr) = tcp_server(Options::default());
    // A client being served when the stop comes still gets its echo: stopping ends the
    // accepting, not the connections.
    let mut s = connect(addr);
    s.write_all(b"before").unwrap();
    let mut b = [0u8; 6];
    s.read_exact(&mut b).unwrap();
    assert!(server.running());
    let took = server.stop();
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    s.write_all(b"after").unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"after");
    // The listener was closed when serve returned: nothing listens on the port any more.
    assert!(TcpStream::connect_timeout(&addr, WAIT).is_err());
}

#[test]
fn half_close_still_echoes_everything() {
    let (server, addr) = tcp_server(Options {
        quiet: true,
        ..Options::default()
    });
    let mut s = connect(addr);
    let data = random_bytes(7, 2 * 1024 * 1024);
    let mut r = s.try_clone().unwrap();
    let reader = thread::spawn(move || read_to_eof(&mut r));
    s.write_all(&data).unwrap();
    // FIN: "I have nothing more to send"; the server's read returns 0 after the last byte, it
    // has echoed everything by then and closes, so our read ends with EOF.
    s.shutdown(Shutdown::Write).unwrap();
    let back = reader.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echo differs");
    let close = server
        .capture
        .wait_for(WAIT, |e| e.is("event", "close"))
        .unwrap();
    assert!(close.is("bytes", data.len()));
    // --quiet: connect and close only, no RECV per read.
    assert!(
        server
            .capture
            .events()
            .iter()
            .all(|e| e.level() != Level::Recv)
    );
    server.stop();
}

#[test]
fn udp_echo_returns_each_datagram_to_its_sender_and_logs_its_source() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let server = InProc::start("echo-udp-test", move |ctx| serve_udp(&socket, &ctx));
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for msg in [&b"HELLO"[..], b"", &[0u8, 255, 7]] {
        c.send_to(msg, addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg);
        assert_eq!(from, addr);
    }
    let got = server
        .capture
        .wait_n(3, WAIT, |e| e.is("event", "datagram"));
    assert_eq!(got.len(), 3, "{:?}", server.lines());
    let me = c.local_addr().unwrap().to_string();
    assert!(
        got.iter()
            .all(|e| e.level() == Level::Recv && e.is("src", &me))
    );
    assert_eq!(
        got.iter()
            .map(|e| e.get("bytes").unwrap().as_u64().unwrap())
            .collect::<Vec<_>>(),
        [5, 0, 3]
    );
    assert!(got[0].msg().contains("'HELLO'"), "{}", got[0].msg());
    server.stop();
}

#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let (server, addr) = tcp_server(Options {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Options::default()
    });
    let mut s = connect(addr);
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let quiet_since = Instant::now();
    // The server closes first: our read returns 0 (FIN), not a timeout.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let waited = quiet_since.elapsed();
    assert!(rest.is_empty());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    let close = server
        .capture
        .wait_for(Duration::from_secs(2), |e| e.is("event", "close"))
        .unwrap();
    assert!(close.is("closed_by", "server"));
    assert!(
        close.msg().contains("closed by server: idle for 1 s"),
        "{}",
        close.msg()
    );
    assert!(close.msg().contains("1 bytes echoed"), "{}", close.msg());
    server.stop();
}
