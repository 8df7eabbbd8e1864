//! The `chat-server` binary: flags and exit codes, `adduser` and `--users`, and one room served
//! by the process itself. Behaviour (bad input of every kind, a client that stops reading, the
//! limits, names, the log, stopping) is tested in-process in `tests/inproc.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use testkit::proc::{Proc, output};

mod common;

use common::{Raw, refused};

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
