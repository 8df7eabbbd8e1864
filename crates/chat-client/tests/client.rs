//! `chat-client` against scripted servers on loopback: the command line, a handout-style server
//! whose messages arrive glued together, credentials, refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use testkit::proc::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_chat-client");

#[test]
fn help_exits_0_with_examples_and_bad_flags_exit_2() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("EXAMPLES"));
    for bad in [
        &["--server", "x", "--prot", "1"][..],
        &[],
        &["--server", "x", "--name", "a:b"],
        &["--server", "x", "--bind", "300.1.1.1"],
    ] {
        let out = Command::new(BIN).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
}

fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the client against a one-connection scripted server; returns what the server read
/// first and the client's stdout lines.
fn against(
    script: &'static [&'static [u8]],
    args: &[&str],
    input: &str,
) -> (String, Vec<String>, Option<i32>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        tx.send(String::from_utf8_lossy(&buf[..n]).into_owned())
            .unwrap();
        for part in script {
            s.write_all(part).unwrap();
            thread::sleep(Duration::from_millis(100));
        }
        // Keep the connection until the client has read everything, then close it.
        thread::sleep(Duration::from_millis(300));
    });
    let mut client = Proc::spawn_with_stdin(
        Command::new(BIN)
            .args(["--server", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bind", "127.0.0.2", "--udp-port", &udp_port().to_string()])
            .args(args),
    );
    client.stdin().write_all(input.as_bytes()).unwrap();
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // Stdin stays open until the client has exited on its own (the server closed).
    let f = client.finish();
    let lines = f.lines().into_iter().map(String::from).collect();
    (first, lines, f.code)
}

#[test]
fn glued_unframed_messages_of_a_handout_server_are_split() {
    let script: &[&[u8]] = &[
        b"!{\"alice\": \"127.0.0.2\"}",
        // Two messages in one read, as the handout's server produces under load.
        b"!{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.3\"}bob: hi there ",
        b"bob: {not json} !{\"alice\": \"127.0.0.2\"}",
    ];
    let (first, lines, code) = against(script, &["--name", "alice"], "");
    assert_eq!(
        first, "alice",
        "the name goes bare, as the handout's client sends it"
    );
    let text = lines.join("\n");
    assert!(
        text.contains("registered; 1 active users: alice (127.0.0.2)"),
        "{text}"
    );
    assert!(text.contains("bob joined (127.0.0.3)"), "{text}");
    assert!(text.contains("[RECV] bob: hi there\n"), "{text}");
    assert!(text.contains("[RECV] bob: {not json}\n"), "{text}");
    assert!(text.contains("bob left"), "{text}");
    assert_eq!(code, Some(1), "the server closed the connection: {text}");
    assert!(text.contains("server closed the connection"), "{text}");
}

#[test]
fn credentials_go_as_name_colon_password_and_a_refusal_exits_1() {
    let dir = std::env::temp_dir().join(format!("chat-client-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "open: sesame\n").unwrap();
    let script: &[&[u8]] = &[b"ERROR: authentication failed\n"];
    let (first, lines, code) = against(
        script,
        &["--name", "alice", "--password-file", pw.to_str().unwrap()],
        "",
    );
    assert_eq!(first, "alice:open: sesame");
    assert_eq!(code, Some(1));
    assert!(lines.join("\n").contains("server: authentication failed"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_name_is_read_from_stdin_when_not_given() {
    let script: &[&[u8]] = &[b"!{\"zoe\": \"127.0.0.2\"}\n"];
    let (first, lines, _) = against(script, &[], "zoe\n");
    assert_eq!(first, "zoe");
    assert!(lines.join("\n").contains("registered; 1 active users: zoe"));
}

/// `@bob: hi: there` sends what the handout's client sends, everything after the first colon
/// untouched (` hi: there`), as one datagram to bob's IP on the UDP port.
#[test]
fn p2p_payload_is_the_text_after_the_first_colon_verbatim() {
    let port = udp_port();
    let bob = UdpSocket::bind(("127.0.0.5", port)).unwrap();
    bob.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        s.write_all(b"!{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.5\"}\n")
            .unwrap();
        thread::sleep(Duration::from_secs(5));
    });
    let mut client = Proc::spawn_with_stdin(
        Command::new(BIN)
            .args(["--server", "127.0.0.1", "--port", &tcp_port.to_string()])
            .args(["--bind", "127.0.0.2", "--udp-port", &port.to_string()]),
    );
    client.send("alice");
    client.wait_for("registered; 2 active users");
    client.send("@bob: hi: there");
    let mut buf = [0u8; 256];
    let (n, from) = bob.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b" hi: there");
    assert_eq!(from.ip().to_string(), "127.0.0.2");
    client.wait_for("P2P to bob (127.0.0.5): hi: there");
}

/// A handout-style (unframed) server on loopback that sends `script` after the name, one part
/// per write, then keeps the connection for `keep`.
fn handout_server(script: Vec<Vec<u8>>, keep: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        for part in script {
            s.write_all(&part).unwrap();
            thread::sleep(Duration::from_millis(150));
        }
        thread::sleep(keep);
    });
    port
}

/// Against the handout's unframed server, eve's room message
/// `nice weather !{"alice": …, "bob": "<eve's IP>"}` is text, and a list that does not hold
/// us is not the server's: alice's `@bob:` still goes to bob's real address, not to eve.
#[test]
fn a_user_list_in_a_room_message_does_not_redirect_peer_to_peer() {
    let port = udp_port();
    let bob = UdpSocket::bind(("127.0.0.5", port)).unwrap();
    let eve = UdpSocket::bind(("127.0.0.6", port)).unwrap();
    bob.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    eve.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let tcp_port = handout_server(
        vec![
            b"!{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.5\", \"eve\": \"127.0.0.6\"}".to_vec(),
            b"eve: nice weather !{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.6\"} ".to_vec(),
            // A list at a message boundary that does not hold alice is not the server's either.
            b"!{\"bob\": \"127.0.0.6\", \"eve\": \"127.0.0.6\"}".to_vec(),
        ],
        Duration::from_secs(8),
    );
    let mut client = Proc::spawn_with_stdin(
        Command::new(BIN)
            .args(["--server", "127.0.0.1", "--port", &tcp_port.to_string()])
            .args(["--bind", "127.0.0.2", "--udp-port", &port.to_string()])
            .args(["--name", "alice"]),
    );
    client.wait_for("registered; 3 active users");
    client.wait_for("nice weather");
    client.wait_for("not from the server");
    client.send("@bob: the secret");
    let mut buf = [0u8; 256];
    let (n, _) = bob.recv_from(&mut buf).expect("bob got nothing");
    assert_eq!(&buf[..n], b" the secret");
    assert!(eve.recv_from(&mut buf).is_err(), "eve got bob's message");
    client.wait_for("P2P to bob (127.0.0.5)");
}

/// ESC, CR, BEL and NUL in a room message and in a peer-to-peer datagram are
/// printed escaped, never raw (a raw `ESC [2J` clears the reader's terminal).
#[test]
fn control_characters_from_peers_are_printed_escaped() {
    let port = udp_port();
    let tcp_port = handout_server(
        vec![
            b"!{\"alice\": \"127.0.0.2\", \"eve\": \"127.0.0.7\"}\n".to_vec(),
            b"eve: hi \x1b[2J\x07\r\x00there \n".to_vec(),
        ],
        Duration::from_secs(3),
    );
    let client = Proc::spawn_with_stdin(
        Command::new(BIN)
            .args(["--server", "127.0.0.1", "--port", &tcp_port.to_string()])
            .args(["--bind", "127.0.0.2", "--udp-port", &port.to_string()])
            .args(["--name", "alice"]),
    );
    client.wait_for("registered; 2 active users");
    let eve = UdpSocket::bind(("127.0.0.7", 0)).unwrap();
    eve.send_to(b"psst\x1b]0;owned\x07\r", ("127.0.0.2", port))
        .unwrap();
    client.wait_for("P2P from eve");
    let f = client.finish();
    assert!(
        f.stdout.contains(r"eve: hi \u{1b}[2J\u{7}\r\0there"),
        "{}",
        f.stdout
    );
    assert!(
        f.stdout.contains(r"psst\u{1b}]0;owned\u{7}\r"),
        "{}",
        f.stdout
    );
    for raw in ['\x1b', '\x07', '\r', '\0'] {
        assert!(
            !f.stdout.contains(raw),
            "raw {raw:?} printed: {:?}",
            f.stdout
        );
    }
}
