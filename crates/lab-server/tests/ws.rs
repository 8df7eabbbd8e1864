//! TP3 part 5: the WebSocket PMU, normal path and hostile clients (raw bytes over TcpStream),
//! served in-process (`common::Server`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, WAIT, connect, read_all};
use labnet::wire::pmu::{flood_text, message};
use tungstenite::{Message, WebSocket};

fn ws_connect(port: u16, host: &str) -> WebSocket<TcpStream> {
    let stream = connect(host, port);
    let url = if host.contains(':') {
        format!("ws://[{host}]:{port}/")
    } else {
        format!("ws://{host}:{port}/")
    };
    let (ws, resp) = tungstenite::client(url, stream).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends a command and collects every message up to the server's close frame.
fn session(port: u16, host: &str, cmd: &str) -> Vec<Message> {
    let mut ws = ws_connect(port, host);
    ws.send(Message::text(cmd)).unwrap();
    let mut got = Vec::new();
    for _ in 0..10_000 {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                assert_eq!(u16::from(frame.unwrap().code), 1000);
                break;
            }
            Ok(m) => got.push(m),
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

#[test]
fn short_sends_one_binary_message_per_pmu_message_then_close() {
    let server = Server::start(&["--messages", "6"]);
    let port = server.port("WS");
    for host in ["::1", "127.0.0.1"] {
        let got = session(port, host, "CMD_short:0");
        let want: Vec<Message> = (1..=6)
            .map(|i| Message::binary(message(i).into_bytes()))
            .collect();
        assert_eq!(got, want);
    }
    assert!(
        server
            .wait_line("CMD_short:0 served: 6 binary messages", WAIT)
            .is_some()
    );
}

#[test]
fn text_mode_sends_text_messages() {
    let server = Server::start(&["--messages", "4", "--text", "--flood-bytes", "5000"]);
    let port = server.port("WS");
    let got = session(port, "::1", "CMD_short:0");
    let want: Vec<Message> = (1..=4).map(|i| Message::text(message(i))).collect();
    assert_eq!(got, want);
    let got = session(port, "::1", "CMD_floodme");
    assert_eq!(
        got,
        vec![Message::text(String::from_utf8(flood_text(5000)).unwrap())]
    );
}

#[test]
fn floodme_is_one_message_of_flood_bytes() {
    let server = Server::start(&["--flood-bytes", "200000"]);
    let port = server.port("WS");
    let got = session(port, "127.0.0.1", "CMD_floodme");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], Message::binary(flood_text(200_000)));
}

#[test]
fn unknown_command_gets_error_message() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("WS");
    let mut ws = ws_connect(port, "::1");
    ws.send(Message::text("HELLO")).unwrap();
    let m = ws.read().unwrap();
    assert!(
        m.to_text().unwrap().starts_with("ERROR: unknown command"),
        "{m:?}"
    );
    assert!(matches!(ws.read().unwrap(), Message::Close(Some(_))));
    assert!(server.wait_line("refused: unknown command", WAIT).is_some());
}

/// The server must still serve a normal client.
fn still_serving(port: u16) {
    let got = session(port, "::1", "CMD_short:0");
    assert_eq!(got.len(), 2);
}

fn http(port: u16, request: &[u8]) -> String {
    let mut s = connect("::1", port);
    s.write_all(request).unwrap();
    String::from_utf8_lossy(&read_all(&mut s)).into_owned()
}

#[test]
fn plain_http_request_gets_426_and_close() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("WS");
    let answer = http(port, b"GET / HTTP/1.1\r\nHost: tcpip\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("Upgrade: websocket\r\n"), "{answer}");
    assert!(server.wait_line("bad handshake", WAIT).is_some());
    still_serving(port);
}

#[test]
fn bad_upgrade_gets_an_http_error() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("WS");
    // No Sec-WebSocket-Key.
    let answer = http(
        port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    // Wrong method.
    let answer = http(port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    // Not HTTP at all.
    let answer = http(port, b"\x16\x03\x01\x00\x05hello\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    still_serving(port);
}

#[test]
fn never_completed_handshake_is_closed_after_the_timeout() {
    let server = Server::start(&["--messages", "2", "--command-timeout", "1"]);
    let port = server.port("WS");
    let mut s = connect("::1", port);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let start = Instant::now();
    let got = read_all(&mut s);
    let waited = start.elapsed();
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(
        server
            .wait_line("handshake not completed within 1 s", WAIT)
            .is_some(),
        "{}",
        server.log()
    );
    still_serving(port);
}

/// A valid handshake over a raw TcpStream.
fn raw_upgraded(port: u16) -> TcpStream {
    let mut s = connect("::1", port);
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    s
}

/// A client frame: first byte (FIN, RSV, opcode), masked payload.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![first, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Sends a bad frame after a good handshake; the server must end the connection, with a close
/// frame carrying `code` when one is expected.
fn rejected(port: u16, bytes: &[u8], code: u16) {
    let mut s = raw_upgraded(port);
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "server kept the connection open");
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // An RST also ends it (the server may close with our unread bytes pending).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server kept the connection open: {e}"),
        }
    }
    assert!(got.len() >= 4, "close frame expected, got {got:?}");
    assert_eq!(got[0], 0x88, "a close frame: {got:?}");
    assert_eq!(u16::from_be_bytes([got[2], got[3]]), code, "{got:?}");
}

#[test]
fn malformed_frames_end_the_connection_and_the_server_keeps_serving() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("WS");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "reserved bits",
            frame(0x80 | 0x40 | 0x1, b"CMD_short:0"),
            1002,
        ),
        ("unknown data opcode", frame(0x83, b"CMD_short:0"), 1002),
        ("unknown control opcode", frame(0x8b, b""), 1002),
        (
            "unmasked client frame",
            [&[0x81u8, 11][..], b"CMD_short:0"].concat(),
            1002,
        ),
        ("fragmented control frame", frame(0x09, b"ping"), 1002),
        ("invalid UTF-8 text", frame(0x81, b"CMD_\xff\xfe"), 1007),
        (
            "invalid close code",
            frame(0x88, &999u16.to_be_bytes()),
            1002,
        ),
        (
            "close code 1005 on the wire",
            frame(0x88, &1005u16.to_be_bytes()),
            1002,
        ),
        ("continuation without start", frame(0x80, b"x"), 1002),
    ];
    for (what, bytes, code) in &cases {
        eprintln!("case: {what}");
        rejected(port, bytes, *code);
        still_serving(port);
    }
    assert!(server.wait_count("WS #", cases.len() * 2, WAIT).is_some());
}

#[test]
fn oversized_frame_is_refused_with_1009() {
    let server = Server::start(&["--messages", "2"]);
    let port = server.port("WS");
    // A binary frame announcing 1 MiB (limit 64 KiB): refused from the header alone.
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 20).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    f.extend_from_slice(&[0u8; 1000]);
    rejected(port, &f, 1009);
    still_serving(port);
    assert!(server.wait_line("connection ended", WAIT).is_some());
}

#[test]
fn silent_after_handshake_is_closed_after_the_timeout() {
    let server = Server::start(&["--messages", "2", "--command-timeout", "1"]);
    let port = server.port("WS");
    let mut ws = ws_connect(port, "::1");
    let start = Instant::now();
    let m = ws.read();
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(matches!(m, Ok(Message::Close(_)) | Err(_)), "{m:?}");
    assert!(
        server
            .wait_line("no command before the timeout", WAIT)
            .is_some()
    );
}

/// The handshake deadline holds whatever the client sends. A client trickling
/// its upgrade request one byte every 300 ms (each read succeeds long before the 2 s timeout)
/// is closed about 2 s after it connected, not when it stops.
#[test]
fn a_trickled_handshake_is_closed_at_the_deadline() {
    let server = Server::start(&["--command-timeout", "2"]);
    let port = server.port("WS");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let closed = common::trickle_until_closed(
        port,
        request.as_bytes(),
        Duration::from_millis(300),
        Duration::from_secs(12),
    );
    eprintln!("trickled WebSocket handshake closed after {closed:?}");
    let closed = closed.expect("still open 12 s after connecting");
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_millis(3500),
        "closed after {closed:?} with --command-timeout 2"
    );
    server.wait_for("handshake not completed within 2 s");
}
