//! `chat-server` over real loopback sockets, driven byte by byte: bad input of every kind, a
//! client that stops reading, the limits, and authentication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use testkit::proc::{Proc, output};

const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

/// A chat-server on 127.0.0.1 with an OS-chosen port; its log is in `proc`.
struct Server {
    proc: Proc,
    port: u16,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let proc = Proc::spawn(
            Command::new(BIN)
                .args(["--bind", "127.0.0.1", "--port", "0"])
                .args(args),
        );
        let port = proc.addr().port();
        Server { proc, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A raw client socket with a line reader; every read has a timeout.
struct Raw {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed while a line was expected");
        line
    }

    /// Reads lines until one satisfies `pred`; every `!` line must parse as a JSON object.
    fn until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..100_000 {
            let l = self.line();
            if let Some(json) = l.strip_prefix('!') {
                let v: serde_json::Value = serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("user list {l:?} does not parse: {e}"));
                assert!(v.is_object());
            }
            if pred(&l) {
                return l;
            }
        }
        panic!("line never came");
    }

    /// Registers (newline-framed) and returns the first user list.
    fn join(addr: SocketAddr, name: &str) -> (Raw, String) {
        let mut r = Raw::connect(addr);
        r.send(format!("{name}\n").as_bytes());
        let users = r.line();
        assert!(users.starts_with("!{"), "{users:?}");
        (r, users)
    }

    /// The whole rest of the stream up to the server's close.
    fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.reader.read_to_end(&mut v);
        v
    }
}

fn users(line: &str) -> serde_json::Map<String, serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&line[1..]).unwrap();
    v.as_object().unwrap().clone()
}

/// What a refused first message gets: exactly one `ERROR:` line, then the close.
fn refused(addr: SocketAddr, first: &[u8]) -> String {
    let mut r = Raw::connect(addr);
    r.send(first);
    String::from_utf8_lossy(&r.rest()).into_owned()
}

#[test]
fn help_exits_0_with_examples_and_a_bad_flag_exits_2() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXAMPLES"), "{text}");
    assert!(text.contains("adduser FILE NAME"));
    let out = Command::new(BIN).arg("--prot").arg("1").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prot"));
    let out = Command::new(BIN)
        .args(["adduser", "only-file"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn room_messages_go_to_everyone_but_the_sender_with_the_handout_trailing_space() {
    let server = Server::start(&[]);
    let (mut a, first) = Raw::join(server.addr(), "alice");
    assert_eq!(first, "!{\"alice\": \"127.0.0.1\"}\n");
    // A handout client: no newline, one read = one message.
    let mut b = Raw::connect(server.addr());
    b.send(b"bob");
    assert_eq!(
        b.line(),
        "!{\"alice\": \"127.0.0.1\", \"bob\": \"127.0.0.1\"}\n"
    );
    assert_eq!(
        a.line(),
        "!{\"alice\": \"127.0.0.1\", \"bob\": \"127.0.0.1\"}\n"
    );
    thread::sleep(Duration::from_millis(50));
    b.send("héllo wörld".as_bytes());
    assert_eq!(a.line(), "bob: héllo wörld \n");
    a.send(b"one\ntwo\n");
    assert_eq!(b.line(), "alice: one \n");
    assert_eq!(b.line(), "alice: two \n");
    drop(b);
    assert_eq!(a.line(), "!{\"alice\": \"127.0.0.1\"}\n");
    // The sender never got its own messages back.
    a.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(a.stream.read(&mut buf).is_err(), "nothing more for alice");
}

#[test]
fn bad_input_of_every_kind_never_stops_the_server() {
    let server = Server::start(&["--register-timeout", "1"]);
    let addr = server.addr();
    let (mut watcher, _) = Raw::join(addr, "watcher");

    assert_eq!(
        refused(addr, b"\xff\xfe\n"),
        "ERROR: message is not valid UTF-8\n"
    );
    assert_eq!(refused(addr, b"\n"), "ERROR: empty name\n");
    assert_eq!(
        refused(addr, b""),
        "ERROR: registration timeout: no name received\n"
    );
    assert_eq!(
        refused(addr, b"watcher\n"),
        "ERROR: name 'watcher' is already in use\n"
    );
    assert_eq!(refused(addr, b"a b\n"), "ERROR: name contains whitespace\n");
    assert_eq!(refused(addr, b"!x\n"), "ERROR: name starts with '!'\n");
    assert_eq!(refused(addr, b"a:b\n"), "ERROR: name contains ':'\n");
    assert_eq!(
        refused(addr, b"abcdefghijklmnopqrstu\n"),
        "ERROR: name longer than 20 characters (21)\n"
    );

    // Quotes and backslashes are allowed: the user list must escape them and still parse.
    let (mut quote, list) = Raw::join(addr, "q\"uo\\te");
    assert!(users(&list).contains_key("q\"uo\\te"), "{list}");
    let list = watcher.until(|l| l.contains("uo"));
    assert_eq!(users(&list).len(), 2);

    // A registered client that sends bytes that are not UTF-8, then 1 MiB in one line.
    let (mut bad, _) = Raw::join(addr, "bad");
    bad.send(b"caf\xe9\n");
    let rest = String::from_utf8_lossy(&bad.rest()).into_owned();
    assert!(
        rest.ends_with("ERROR: message is not valid UTF-8\n"),
        "{rest:?}"
    );
    let (mut big, _) = Raw::join(addr, "big");
    let mut mib = vec![b'x'; 1 << 20];
    mib.push(b'\n');
    let _ = big.stream.write_all(&mib);
    let rest = String::from_utf8_lossy(&big.rest()).into_owned();
    assert!(
        rest.ends_with("ERROR: message longer than 65536 bytes\n"),
        "{rest:?}"
    );

    // Killed mid-message: half a line, then the connection is gone.
    let (mut half, _) = Raw::join(addr, "half");
    half.send(b"this message never ends");
    drop(half);
    watcher.until(|l| l.starts_with('!') && !l.contains("half") && !l.contains("\"big\""));

    // 500 connections opened and dropped, some mid-name.
    for i in 0..500 {
        let mut s = TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            let _ = s.write_all(b"drop");
        }
    }

    // Still serving: a newcomer's message reaches the watcher, and nobody else was relayed.
    let (mut late, _) = Raw::join(addr, "late");
    late.send(b"still here\n");
    let line = watcher.until(|l| !l.starts_with('!'));
    assert_eq!(line, "late: still here \n");
    quote.send(b"me too\n");
    assert_eq!(
        watcher.until(|l| !l.starts_with('!')),
        "q\"uo\\te: me too \n"
    );
    drop(late);
    // The dropped connections that sent "drop" were registered for a moment; all leave again.
    let list = watcher.until(|l| l.starts_with('!') && users(l).len() == 2);
    assert!(users(&list).contains_key("watcher"), "{list}");
    assert!(server.proc.pid() > 0);
}

#[test]
fn a_client_that_stops_reading_is_dropped_when_its_queue_fills_and_the_others_get_everything() {
    slow_consumer(&["--stall-timeout", "1"], "its outgoing queue is full");
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_stall_timeout_and_the_others_get_everything() {
    // A queue big enough for everything: only the blocked write can give the client away.
    slow_consumer(
        &["--stall-timeout", "1", "--queue-bytes", "100000000"],
        "no progress within the stall timeout",
    );
}

fn slow_consumer(args: &[&str], why: &str) {
    const COUNT: usize = 10_000;
    let server = Server::start(args);
    let addr = server.addr();

    // The stalled client: a tiny receive buffer, registered, and never read again.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut stalled: TcpStream = sock.into();
    stalled.write_all(b"stalled\n").unwrap();
    server.proc.wait_for("stalled joined");

    let (mut receiver, _) = Raw::join(addr, "receiver");
    let (mut sender, _) = Raw::join(addr, "sender");
    receiver.until(|l| l.contains("sender"));

    // 10,000 messages of ~1 KiB each: 10 MiB, far more than any socket buffer holds.
    let pad = "p".repeat(1000);
    let writer = thread::spawn(move || {
        let mut batch = String::new();
        for i in 0..COUNT {
            batch.push_str(&format!("{i:05} {pad}\n"));
            if batch.len() > 64 * 1024 {
                sender.send(batch.as_bytes());
                batch.clear();
            }
        }
        sender.send(batch.as_bytes());
        sender
    });

    let started = Instant::now();
    let mut next = 0usize;
    let mut saw_stalled_leave = false;
    while next < COUNT {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {next} messages in 60 s"
        );
        let l = receiver.line();
        if let Some(json) = l.strip_prefix('!') {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            if !v.as_object().unwrap().contains_key("stalled") {
                saw_stalled_leave = true;
            }
            continue;
        }
        assert_eq!(l, format!("sender: {next:05} {} \n", "p".repeat(1000)));
        next += 1;
    }
    let _sender = writer.join().unwrap();
    if !saw_stalled_leave {
        let l = receiver.until(|l| l.starts_with('!'));
        assert!(!l.contains("stalled"), "{l}");
    }
    let line = server
        .proc
        .wait_for("stalled disconnected: stopped reading");
    assert!(line.contains(why), "{line}");
    drop(stalled);
}

#[test]
fn connections_beyond_the_cap_are_refused_clearly() {
    let server = Server::start(&["--max-clients", "2"]);
    let (_a, _) = Raw::join(server.addr(), "a");
    let (_b, _) = Raw::join(server.addr(), "b");
    assert_eq!(
        refused(server.addr(), b"c\n"),
        "ERROR: server full (2 connections)\n"
    );
}

#[test]
fn authentication_admits_the_right_password_and_refuses_the_rest_identically() {
    let dir = std::env::temp_dir().join(format!("chat-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users_file = dir.join("users.txt");
    let _ = std::fs::remove_file(&users_file);
    for (name, pw) in [("alice", "s3cret pass:word"), ("bob", "hunter2")] {
        let add = output(
            Command::new(BIN).arg("adduser").arg(&users_file).arg(name),
            format!("{pw}\n").as_bytes(),
            Duration::from_secs(20),
        );
        assert!(add.status.success(), "{add:?}");
    }
    let text = std::fs::read_to_string(&users_file).unwrap();
    assert!(
        !text.contains("s3cret") && !text.contains("hunter2"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.contains(":$argon2id$")), "{text}");

    let server = Server::start(&["--users", users_file.to_str().unwrap()]);
    let addr = server.addr();
    let (_alice, list) = Raw::join(addr, "alice:s3cret pass:word");
    assert_eq!(list, "!{\"alice\": \"127.0.0.1\"}\n");

    // Wrong password, unknown user, no password: same bytes, each after the delay.
    let attempts: Vec<_> = [&b"bob:wrong\n"[..], b"mallory:hunter2\n", b"bob\n"]
        .into_iter()
        .map(|first| {
            thread::spawn(move || {
                let t = Instant::now();
                let answer = refused(addr, first);
                (answer, t.elapsed())
            })
        })
        .collect();
    for a in attempts {
        let (answer, took) = a.join().unwrap();
        assert_eq!(answer, "ERROR: authentication failed\n");
        assert!(took >= Duration::from_millis(950), "{took:?}");
    }
    server.proc.wait_for("failed login as 'mallory'");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Names that pass for the server (`ERROR` in any case), the receivers'
/// word for strangers, names with bidi or invisible format characters, and names that differ
/// from a present user's only in case are refused; the room never sees them.
#[test]
fn reserved_bidi_and_case_twin_names_are_refused() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut alice, _) = Raw::join(addr, "alice");
    for (name, why) in [
        ("ERROR", "the name 'ERROR' is reserved"),
        ("error", "the name 'ERROR' is reserved"),
        ("Non-Registered", "the name 'Non-registered' is reserved"),
        (
            "ali\u{202e}ec",
            "name contains an invisible or bidi format character",
        ),
        (
            "b\u{200b}ob",
            "name contains an invisible or bidi format character",
        ),
        ("Alice", "name 'Alice' is already in use"),
        ("ALICE", "name 'ALICE' is already in use"),
    ] {
        assert_eq!(
            refused(addr, format!("{name}\n").as_bytes()),
            format!("ERROR: {why}\n"),
            "{name:?}"
        );
    }
    // Nobody else ever joined: the next list alice sees is bob's join.
    let (_bob, _) = Raw::join(addr, "bob");
    let list = alice.until(|l| l.starts_with('!'));
    assert_eq!(users(&list).len(), 2, "{list}");
}

/// `--log-messages` prints a room message holding ESC, CR, BEL and NUL escaped, on
/// one line, never raw (terminal and log injection).
#[test]
fn logged_messages_have_control_characters_escaped() {
    let server = Server::start(&["--log-messages"]);
    let (mut a, _) = Raw::join(server.addr(), "alice");
    let (_b, _) = Raw::join(server.addr(), "bob");
    a.until(|l| l.contains("bob"));
    a.send(b"hi \x1b[2J\x07\r\x00there\n");
    server.proc.wait_for(r"alice: hi \u{1b}[2J\u{7}\r\0there");
    let text = server.proc.lines().join("\n");
    for raw in ['\x1b', '\x07', '\r', '\0'] {
        assert!(!text.contains(raw), "raw {raw:?} in the log: {text:?}");
    }
}
