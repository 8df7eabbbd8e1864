//! `ws-client` against WebSocket servers written here with tungstenite, on loopback (port 0),
//! and against servers that answer the handshake wrongly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use labnet::wire::pmu;
use testkit::proc::{Finished, run};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

const BIN: &str = env!("CARGO_BIN_EXE_ws-client");
const LIMIT: Duration = Duration::from_secs(20);

/// Accepts one WebSocket client, reads its command, sends `replies`, closes; returns the command.
fn ws_server(replies: Vec<Message>) -> (u16, JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut ws: WebSocket<TcpStream> = tungstenite::accept(s).unwrap();
        let cmd = match ws.read().unwrap() {
            Message::Text(t) => t.as_str().to_owned(),
            other => panic!("command should be a text message, got {other:?}"),
        };
        for m in replies {
            ws.send(m).unwrap();
        }
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .unwrap();
        // Until the client's close reply: then tungstenite reports the close as done.
        while ws.read().is_ok() {}
        cmd
    });
    (port, h)
}

/// Reads the HTTP request and answers `answer` as raw bytes.
fn raw_server(answer: &'static [u8]) -> (u16, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            req.extend_from_slice(&buf[..n]);
        }
        assert!(req.starts_with(b"GET / HTTP/1.1\r\n"));
        s.write_all(answer).unwrap();
        // Hold the connection a moment so the client reads the answer, not a reset.
        std::thread::sleep(Duration::from_millis(300));
    });
    (port, h)
}

fn client(port: u16, cmd: &str, extra: &[&str]) -> Finished {
    let url = format!("ws://127.0.0.1:{port}/");
    let mut args = vec![url.as_str(), cmd];
    args.extend_from_slice(extra);
    run(BIN, &args, LIMIT)
}

fn short(n: u32, text: bool) -> Vec<Message> {
    (1..=n)
        .map(|i| {
            if text {
                Message::text(pmu::message(i))
            } else {
                Message::binary(pmu::message(i).into_bytes())
            }
        })
        .collect()
}

fn expected(n: u32) -> Vec<String> {
    (1..=n).map(pmu::message).collect()
}

#[test]
fn short_binary_messages_are_one_event_each() {
    let (port, server) = ws_server(short(7, false));
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(r.msgs("RECV"), expected(7));
    let bytes: usize = expected(7).iter().map(String::len).sum();
    assert_eq!(
        r.msgs("STAT"),
        vec![format!(
            "7 message events (on_message), {bytes} bytes: 7 binary, 0 text"
        )]
    );
    assert!(
        r.msgs("INFO")
            .contains(&"server closed the WebSocket (code 1000)".to_owned())
    );
    assert_eq!(server.join().unwrap(), "CMD_short:0");
}

#[test]
fn short_text_messages_are_one_event_each() {
    let (port, server) = ws_server(short(3, true));
    let r = client(port, "CMD_short:1", &["--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let recv: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("\"level\":\"RECV\""))
        .collect();
    assert_eq!(recv.len(), 3);
    assert!(recv[2].contains("\"msg\":\"This is PMU data 3\""));
    assert!(recv[2].contains("\"kind\":\"text\""));
    let stat = r.stdout.lines().last().unwrap();
    assert!(
        stat.contains("\"messages\":3") && stat.contains("\"text\":3"),
        "{stat}"
    );
    assert_eq!(server.join().unwrap(), "CMD_short:1");
}

#[test]
fn flood_is_one_event_in_binary_and_in_text() {
    let flood = pmu::flood_text(300_000);
    for text in [false, true] {
        let m = if text {
            Message::text(String::from_utf8(flood.clone()).unwrap())
        } else {
            Message::binary(flood.clone())
        };
        let (port, server) = ws_server(vec![m]);
        let r = client(port, "CMD_floodme", &[]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let recv = r.msgs("RECV");
        assert_eq!(recv.len(), 1);
        assert_eq!(recv[0].as_bytes(), &flood[..]);
        let kind = if text {
            "0 binary, 1 text"
        } else {
            "1 binary, 0 text"
        };
        assert_eq!(
            r.msgs("STAT"),
            vec![format!(
                "1 message events (on_message), 300000 bytes: {kind}"
            )]
        );
        assert_eq!(server.join().unwrap(), "CMD_floodme");
    }
}

#[test]
fn garbage_handshake_answer_is_one_line_and_exit_1() {
    let (port, server) = raw_server(b"HELLO I AM NOT HTTP\r\n\r\n");
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "ws-client: bad WebSocket handshake answer from 127.0.0.1:{port}: "
        )),
        "{}",
        r.stderr
    );
    server.join().unwrap();
}

#[test]
fn handshake_without_upgrade_is_refused() {
    // 101 without the Sec-WebSocket-Accept header (RFC 6455 §4.1: the client must fail).
    let (port, server) = raw_server(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("bad WebSocket handshake answer"),
        "{}",
        r.stderr
    );
    server.join().unwrap();
    let (port, server) = raw_server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!(
            "ws-client: the server at 127.0.0.1:{port} refused the WebSocket handshake: HTTP 404 Not Found\n"
        )
    );
    server.join().unwrap();
}

#[test]
fn silent_server_times_out_the_handshake() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let r = client(port, "CMD_short:0", &["--timeout", "0.3"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("did not answer the WebSocket handshake"),
        "{}",
        r.stderr
    );
    drop(l);
}

#[test]
fn server_that_closes_without_messages_is_exit_1() {
    let (port, server) = ws_server(vec![]);
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "ws-client: the server closed the WebSocket without sending any message\n"
    );
    server.join().unwrap();
}

#[test]
fn refused_port_is_one_line_and_exit_1() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!("ws-client: connect to 127.0.0.1:{port}: connection refused (ECONNREFUSED)\n")
    );
}

#[test]
fn help_shows_examples_and_bad_input_exits_2() {
    let r = run(BIN, &["--help"], LIMIT);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("EXAMPLES:") && r.stdout.contains("ws://tcpip:5006"));
    for bad in [
        &["ws://127.0.0.1:5006", "CMD_nope"][..],
        &["http://127.0.0.1:5006", "CMD_short:0"],
        &["ws://127.0.0.1:5006", "CMD_short:0", "--bogus"],
        &["ws://127.0.0.1:5006"],
    ] {
        let r = run(BIN, bad, LIMIT);
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1);
    }
}

/// An unknown flag is a usage error (exit 2, "unknown option"), wherever it
/// stands, never taken for a positional argument nor reported as a missing one.
#[test]
fn an_unknown_flag_is_a_usage_error_naming_it() {
    for args in [
        &["--bogus", "ws://127.0.0.1:5006", "CMD_short:0"][..],
        &["ws://127.0.0.1:5006", "--bogus", "CMD_short:0"],
        &["--bogus"],
    ] {
        let f = run(BIN, args, Duration::from_secs(10));
        assert_eq!(f.code, Some(2), "{args:?}: {f:?}");
        assert!(
            f.stderr.contains("unknown option '--bogus'"),
            "{args:?}: {}",
            f.stderr
        );
        assert_eq!(f.stderr.lines().count(), 1, "{args:?}: {}", f.stderr);
    }
}

/// Accepts one WebSocket client, reads its command, sends `replies` as they are (frames of one
/// message, pings), closes, and returns everything the client sent after its command.
fn frame_server(replies: Vec<Message>) -> (u16, JoinHandle<Vec<Message>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut ws: WebSocket<TcpStream> = tungstenite::accept(s).unwrap();
        ws.read().unwrap();
        for m in replies {
            ws.write(m).unwrap();
        }
        ws.close(None).unwrap();
        let mut got = Vec::new();
        while let Ok(m) = ws.read() {
            got.push(m);
        }
        got
    });
    (port, h)
}

/// `n` bytes of text whose multi-byte characters fall across every read boundary somewhere.
fn wide_text(n: usize) -> String {
    let mut s = String::with_capacity(n + 8);
    let mut i = 0u32;
    while s.len() < n {
        s.push_str(&format!("PMU {i} é → 𝄞 "));
        i += 1;
    }
    s
}

#[test]
fn a_message_larger_than_the_read_buffer_is_printed_as_it_arrives_exactly() {
    let text = wide_text(3 * ws_client::frames::READ_BUFFER + 77);
    // Binary with bytes that are not UTF-8: printed as Python's .decode(errors="replace") would.
    let mut binary = text.clone().into_bytes();
    binary[1000] = 0xff;
    binary[ws_client::frames::READ_BUFFER] = 0xe2;
    for (m, want) in [
        (Message::text(text.clone()), text.clone()),
        (
            Message::binary(binary.clone()),
            String::from_utf8_lossy(&binary).into_owned(),
        ),
    ] {
        let kind = if m.is_text() {
            "0 binary, 1 text"
        } else {
            "1 binary, 0 text"
        };
        let (port, server) = ws_server(vec![m]);
        let r = client(port, "CMD_floodme", &[]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let recv = r.msgs("RECV");
        assert_eq!(recv.len(), 1);
        assert!(
            recv[0] == want,
            "{} bytes printed, {} sent",
            recv[0].len(),
            want.len()
        );
        assert_eq!(
            r.msgs("STAT"),
            vec![format!(
                "1 message events (on_message), {} bytes: {kind}",
                want.len()
            )]
        );
        server.join().unwrap();
    }
}

#[test]
fn a_message_in_frames_with_a_ping_between_is_one_event_and_the_ping_is_answered() {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let big = wide_text(ws_client::frames::READ_BUFFER + 10);
    let part = |s: &str, op: Data, fin: bool| {
        Message::Frame(Frame::message(s.as_bytes().to_vec(), OpCode::Data(op), fin))
    };
    let (first, rest) = big.as_bytes().split_at(big.len() / 2 + 1);
    let replies = vec![
        // Small, in three frames, a ping between the first two.
        part("This is ", Data::Binary, false),
        Message::Ping(b"are you there".to_vec().into()),
        part("PMU ", Data::Continue, false),
        part("data 1", Data::Continue, true),
        // Large (printed as it arrives), in two frames cut inside a character.
        Message::Frame(Frame::message(
            first.to_vec(),
            OpCode::Data(Data::Text),
            false,
        )),
        Message::Frame(Frame::message(
            rest.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )),
        Message::binary(b"This is PMU data 2".to_vec()),
    ];
    let (port, server) = frame_server(replies);
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let recv = r.msgs("RECV");
    assert_eq!(recv.len(), 3, "{recv:?}");
    assert_eq!(recv[0], "This is PMU data 1");
    assert!(recv[1] == big, "the large message differs");
    assert_eq!(recv[2], "This is PMU data 2");
    let got = server.join().unwrap();
    assert_eq!(
        got.first(),
        Some(&Message::Pong(b"are you there".to_vec().into())),
        "{got:?}"
    );
    assert!(
        got.iter().any(|m| matches!(m, Message::Close(_))),
        "the close was answered: {got:?}"
    );
}

/// Reads the HTTP request and answers it properly, with `then` in the same write: the frames
/// arrive with the answer, before the client has sent anything.
fn eager_server(then: Vec<u8>) -> (u16, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            req.extend_from_slice(&buf[..n]);
        }
        let req = String::from_utf8(req).unwrap();
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        answer.extend_from_slice(&then);
        s.write_all(&answer).unwrap();
        // Nothing more from here: the client sees the end of the stream after `then`.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Read the command and the close answer until the client is done.
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    (port, h)
}

/// A server frame: FIN + `opcode`, no mask, a 7-bit length.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

#[test]
fn frames_that_arrive_with_the_handshake_answer_are_not_lost() {
    let mut then = frame(0x2, b"This is PMU data 1");
    then.extend(frame(0x2, b"This is PMU data 2"));
    then.extend(frame(0x8, &1000u16.to_be_bytes()));
    let (port, server) = eager_server(then);
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.msgs("RECV"), expected(2));
    server.join().unwrap();
}

#[test]
fn a_masked_frame_from_the_server_is_refused_with_one_line() {
    // RFC 6455 §5.1: a client must close the connection on a masked frame.
    let mut then = vec![0x82, 0x80 | 4, 1, 2, 3, 4];
    then.extend(b"data".iter().zip([1u8, 2, 3, 4]).map(|(b, m)| b ^ m));
    let (port, server) = eager_server(then);
    let r = client(port, "CMD_short:0", &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("masked frame"), "{}", r.stderr);
    server.join().unwrap();
}
