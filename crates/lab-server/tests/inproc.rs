//! `lab_server::serve` in the test process as a whole: each session is logged with the address
//! the test's own socket has, and a stop ends every service (PMU, WS, reset, TV) in bounded time
//! with `Ok`, closing their sockets, while a session already running finishes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use common::{Server, WAIT, connect, read_all, short_reply};
use labnet::log::Level;

#[test]
fn sessions_are_logged_with_the_peer_address_of_the_client_socket() {
    let server = Server::start(&["--messages", "4", "--seed", "1", "--drop", "0"]);
    // PMU over IPv4 on the dual-stack socket: logged with the plain IPv4 address.
    let mut s = connect("127.0.0.1", server.port("PMU"));
    let me = s.local_addr().unwrap().to_string();
    s.write_all(b"CMD_short:0").unwrap();
    assert_eq!(read_all(&mut s), short_reply(4));
    let ev = server
        .wait_event(|e| e.is("service", "pmu") && e.is("peer", &me))
        .unwrap_or_else(|| panic!("no PMU event for {me}:\n{}", server.log()));
    assert_eq!(ev.level(), Level::Info);
    assert!(ev.is("bytes", 72), "{ev:?}");
    assert!(
        ev.msg().contains("CMD_short:0 served: 4 messages"),
        "{ev:?}"
    );

    // RESET over IPv6: the reply, and the event naming our socket.
    let u = UdpSocket::bind("[::1]:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u.send_to(b"RESET:7", ("::1", server.port("RESET")))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"OFFSET="), "{:?}", &buf[..n]);
    let me = u.local_addr().unwrap().to_string();
    let ev = server
        .wait_event(|e| e.is("service", "reset") && e.is("peer", &me))
        .unwrap_or_else(|| panic!("no RESET event for {me}:\n{}", server.log()));
    assert!(ev.is("family", "IPv6") && ev.is("bytes", 7), "{ev:?}");
    server.stop();
}

#[test]
fn a_stop_ends_every_service_with_ok_and_a_running_session_finishes() {
    let server = Server::start(&["--tv-on", "--messages", "2"]);
    let (pmu, ws, reset) = (server.port("PMU"), server.port("WS"), server.port("RESET"));
    server.port("TV");
    // A PDC in the middle of its session (CMD_short:1: one message a second) when the stop
    // comes: it still gets every message.
    let mut early = connect("127.0.0.1", pmu);
    early.write_all(b"CMD_short:1").unwrap();
    let first = labnet::wire::pmu::message(1);
    let mut got = vec![0u8; first.len()];
    early.read_exact(&mut got).unwrap();
    assert_eq!(got, first.as_bytes());
    let took = server.stop();
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    got.extend(read_all(&mut early));
    assert_eq!(got, short_reply(2));
    // Every listening socket is closed: TCP connects are refused, and a datagram to the reset
    // port draws an ICMP port unreachable (ECONNREFUSED on a connected UDP socket).
    for port in [pmu, ws] {
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{port}");
    }
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u.connect(("127.0.0.1", reset)).unwrap();
    u.send(b"RESET:1").unwrap();
    let mut buf = [0u8; 16];
    let err = u.recv(&mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}
