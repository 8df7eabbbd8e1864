//! In-process tests of `chat-server`: `serve` runs on a thread of the test, on a listener bound
//! to port 0 here, with a capture sink and a stop handle; clients drive it byte by byte over
//! loopback (bad input of every kind, a client that stops reading, the limits, names), and the
//! events it logged are read back from the capture. Stopping it ends the hub and disconnects
//! the room. The binary's flags, exit codes and `adduser` are in `tests/server.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use chat_server::{Config, serve};
use common::{Raw, refused, users};
use labnet::log::{Event, Level};
use testkit::inproc::InProc;

/// `chat_server::serve` on 127.0.0.1, port 0, with the options these arguments give.
struct Server {
    inproc: InProc,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let args = args.iter().map(Into::into).collect();
        let options = Config::from_args(args).unwrap().options;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inproc = InProc::start("chat-test", move |ctx| serve(listener, &options, &ctx));
        Server { inproc, addr }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The text of the first event whose message contains `needle` (waits for it).
    fn wait_for(&self, needle: &str) -> String {
        self.inproc.wait_msg(needle).msg().to_owned()
    }

    fn wait_event(&self, pred: impl Fn(&Event) -> bool) -> Event {
        self.inproc
            .wait_event(pred)
            .unwrap_or_else(|| panic!("no such event in {:#?}", self.inproc.lines()))
    }

    /// Stops the server; panics unless `serve` returned `Ok` in time.
    fn stop(self) -> Duration {
        self.inproc.stop()
    }
}

#[test]
fn stopping_the_server_disconnects_the_room_ends_the_hub_and_returns_ok() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let (mut alice, _) = Raw::join(addr, "alice");
    let (mut bob, _) = Raw::join(addr, "bob");
    alice.until(|l| l.contains("bob"));
    let took = server.stop();
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    // The hub shut both members' sockets down: each reads the end of the stream (after the
    // user list it may not have read yet), not a timeout.
    for member in [&mut alice, &mut bob] {
        let rest = String::from_utf8_lossy(&member.rest()).into_owned();
        assert!(rest.lines().all(|l| l.starts_with("!{")), "{rest:?}");
        let mut buf = [0u8; 1];
        assert_eq!(member.stream.read(&mut buf).unwrap(), 0);
    }
    // Nothing listens any more.
    assert!(TcpStream::connect(addr).is_err());
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
    // The log: bob's join and leave, with the address his socket has.
    let join = server.wait_event(|e| e.is("event", "join") && e.is("name", "bob"));
    assert!(
        join.is("ip", "127.0.0.1") && join.is("users", 2),
        "{join:?}"
    );
    assert_eq!(join.msg(), "bob joined from 127.0.0.1 (2 users)");
    let leave = server.wait_event(|e| e.is("event", "leave") && e.is("name", "bob"));
    assert!(leave.is("users", 1), "{leave:?}");
    assert_eq!(leave.level(), Level::Info);
    server.stop();
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
    assert!(server.inproc.running());
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
    server.wait_for("stalled joined");

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
    let line = server.wait_for("stalled disconnected: stopped reading");
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
    server.wait_for(r"alice: hi \u{1b}[2J\u{7}\r\0there");
    let text = server.inproc.lines().join("\n");
    for raw in ['\x1b', '\x07', '\r', '\0'] {
        assert!(!text.contains(raw), "raw {raw:?} in the log: {text:?}");
    }
}
