//! Chat lab end to end: `chat-server` and three `chat-client`s driven through stdin pipes, on
//! loopback (clients on 127.0.0.2, .3, .4) and in the chat namespace topology; and interop with
//! handout-style Python peers (`tests/peers/chat_client.py`, `tests/peers/chat_server.py`), which
//! send bare messages without `\n`, both ways, room and peer-to-peer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// A running program whose stdout lines are collected by a thread.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    label: String,
}

impl Proc {
    fn start(label: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {label}: {e}"));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            label: label.to_owned(),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin: our client then leaves the chat.
    fn close_input(&mut self) {
        self.stdin = None;
    }

    fn pump(&mut self, for_at_most: Duration) {
        let deadline = Instant::now() + for_at_most;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => break,
            }
        }
    }

    /// Waits for a line (seen before or arriving within `WAIT`) that contains `needle`.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no line with {needle:?} within {WAIT:?}; saw:\n{}",
                        self.label,
                        self.seen.join("\n")
                    )
                });
            if let Ok(l) = self.lines.recv_timeout(left) {
                self.seen.push(l);
            }
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The message of a log line, after `[time] [LEVEL] `.
fn msg(line: &str) -> &str {
    line.splitn(2, "] [")
        .nth(1)
        .and_then(|rest| rest.split_once("] "))
        .map(|(_, m)| m)
        .unwrap_or(line)
}

fn server(bind: &str) -> (Proc, u16) {
    let mut cmd = Command::new(labnet::testkit::bin("chat-server"));
    cmd.args(["--bind", bind, "--port", "0"]);
    let mut s = Proc::start("chat-server", cmd);
    let line = s.expect("listening on");
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (s, port)
}

fn client(port: u16, bind: &str, udp_port: u16, name: &str) -> Proc {
    let mut cmd = Command::new(labnet::testkit::bin("chat-client"));
    cmd.args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--bind", bind, "--udp-port", &udp_port.to_string()])
        .args(["--name", name]);
    let mut c = Proc::start(name, cmd);
    c.expect("registered;");
    c
}

/// A UDP port free on 127.0.0.2 (the other loopback addresses are as free).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.2:0").unwrap();
    s.local_addr().unwrap().port()
}

fn peer(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

/// The three-client scenario, for any way of starting clients (loopback or namespaces).
fn three_clients(a: &mut Proc, b: &mut Proc, c: &mut Proc, ips: [&str; 3]) {
    let [ip_a, ip_b, ip_c] = ips;
    // The user list reaches everyone with the right addresses.
    a.expect(&format!("bob joined ({ip_b})"));
    a.expect(&format!("carol joined ({ip_c})"));
    b.expect(&format!("carol joined ({ip_c})"));
    let list = format!("3 active users: alice ({ip_a}), bob ({ip_b}), carol ({ip_c})");
    c.expect(&format!("registered; {list}"));

    // A room message reaches the two others exactly once, named.
    a.send("hello room");
    b.expect("[RECV] alice: hello room");
    c.expect("[RECV] alice: hello room");

    // Peer-to-peer reaches only its target, named by the sender's IP.
    b.send("@carol: just for you");
    c.expect(&format!("P2P from bob ({ip_b}): just for you"));
    c.send("bye all");
    a.expect("[RECV] carol: bye all");
    b.expect("[RECV] carol: bye all");
    a.pump(Duration::from_millis(300));
    b.pump(Duration::from_millis(300));
    c.pump(Duration::from_millis(300));
    assert_eq!(b.count("alice: hello room"), 1, "{:?}", b.seen);
    assert_eq!(c.count("alice: hello room"), 1, "{:?}", c.seen);
    assert_eq!(
        a.count("hello room"),
        1,
        "the sender sees only its own SEND: {:?}",
        a.seen
    );
    assert_eq!(a.count("just for you"), 0, "{:?}", a.seen);
    assert_eq!(c.count("P2P from bob"), 1);

    // #ls prints the list.
    a.send("#ls");
    let line = a.expect("] 3 active users: alice");
    assert_eq!(msg(&line), list);

    // A client leaving updates the others' lists.
    b.close_input();
    a.expect("bob left");
    c.expect("bob left");
    assert_eq!(b.wait_exit(), Some(0), "{:?}", b.seen);
    a.send("#ls");
    a.expect(&format!("] 2 active users: alice ({ip_a}), carol ({ip_c})"));
}

#[test]
fn three_loopback_clients_chat_in_the_room_and_peer_to_peer() {
    let (_server, port) = server("127.0.0.1");
    let udp = free_udp_port();
    let mut a = client(port, "127.0.0.2", udp, "alice");
    let mut b = client(port, "127.0.0.3", udp, "bob");
    let mut c = client(port, "127.0.0.4", udp, "carol");
    three_clients(
        &mut a,
        &mut b,
        &mut c,
        ["127.0.0.2", "127.0.0.3", "127.0.0.4"],
    );
}

#[test]
fn client_exits_1_with_a_clear_line_when_the_server_goes_away() {
    let (mut srv, port) = server("127.0.0.1");
    let mut a = client(port, "127.0.0.2", free_udp_port(), "alice");
    let _ = srv.child.kill();
    assert_eq!(a.wait_exit(), Some(1));
    a.pump(Duration::from_millis(200));
    assert!(
        a.seen
            .iter()
            .any(|l| l.contains("server closed the connection")),
        "{:?}",
        a.seen
    );
}

#[test]
fn three_clients_in_the_chat_namespace_topology() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::CHAT);
    let server_bin = labnet::testkit::bin("chat-server");
    let client_bin = labnet::testkit::bin("chat-client");
    let mut cmd = bed.command("webserver", &server_bin);
    cmd.args(["--port", "5000"]);
    let mut srv = Proc::start("chat-server", cmd);
    srv.expect("listening on");
    let start = |host: &str, name: &str| {
        let mut cmd = bed.command(host, &client_bin);
        cmd.args(["--server", "webserver", "--name", name]);
        let mut c = Proc::start(name, cmd);
        c.expect("registered;");
        c
    };
    let mut a = start("client1", "alice");
    let mut b = start("client2", "bob");
    let mut c = start("client3", "carol");
    three_clients(
        &mut a,
        &mut b,
        &mut c,
        ["10.20.30.11", "10.20.30.12", "10.20.30.13"],
    );
    srv.expect("carol joined from 10.20.30.13");
}

fn python() -> Option<PathBuf> {
    let ok = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(PathBuf::from("python3"))
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "python3 is needed for the interop tests"
        );
        eprintln!("SKIPPED: no python3");
        None
    }
}

#[test]
fn handout_python_client_works_with_our_server_room_and_p2p_both_ways() {
    let Some(py) = python() else { return };
    let (_server, port) = server("127.0.0.1");
    let udp = free_udp_port();
    let mut ours = client(port, "127.0.0.2", udp, "rusty");
    let mut cmd = Command::new(py);
    cmd.arg("-u").arg(peer("chat_client.py")).args([
        "127.0.0.1",
        &port.to_string(),
        "127.0.0.3",
        &udp.to_string(),
    ]);
    let mut pyc = Proc::start("python client", cmd);
    pyc.send("pyuser");
    ours.expect("pyuser joined (127.0.0.3)");
    pyc.expect("'rusty': '127.0.0.2'");

    // Room: Python → ours (a bare message without newline) and ours → Python.
    pyc.send("hello from python");
    ours.expect("[RECV] pyuser: hello from python");
    ours.send("hello from rust");
    // Our server's `\n` ends the message; the handout's print shows it as a line break.
    pyc.expect("incoming msg from chatserver (rusty: hello from rust ");

    // Peer-to-peer both ways, named by IP lookup on each side.
    pyc.send("@rusty: psst rust");
    ours.expect("P2P from pyuser (127.0.0.3): psst rust");
    ours.send("@pyuser: psst python");
    pyc.expect("Incoming msg (P2P) from rusty:psst python");

    pyc.close_input();
    ours.expect("pyuser left");
}

#[test]
fn our_client_works_with_the_handout_python_server_room_and_p2p_both_ways() {
    let Some(py) = python() else { return };
    let mut cmd = Command::new(&py);
    cmd.arg("-u")
        .arg(peer("chat_server.py"))
        .args(["127.0.0.1", "0"]);
    let mut srv = Proc::start("python server", cmd);
    let line = srv.expect("Waiting for connection on port");
    let port: u16 = line
        .split_whitespace()
        .find_map(|w| w.trim_end_matches('.').parse().ok())
        .unwrap();
    let udp = free_udp_port();
    let mut a = client(port, "127.0.0.2", udp, "alice");
    let mut b = client(port, "127.0.0.3", udp, "bob");
    a.expect("bob joined (127.0.0.3)");

    // A Python client too, so the server's bare user lists and messages meet a third reader.
    let mut cmd = Command::new(&py);
    cmd.arg("-u").arg(peer("chat_client.py")).args([
        "127.0.0.1",
        &port.to_string(),
        "127.0.0.4",
        &udp.to_string(),
    ]);
    let mut pyc = Proc::start("python client", cmd);
    pyc.send("pyuser");
    a.expect("pyuser joined (127.0.0.4)");
    b.expect("pyuser joined (127.0.0.4)");
    // The handout's pair is fragile on its own: a user list and a message glued in one recv make
    // its client's json.loads fail. Let the Python client take its list first.
    pyc.expect("'pyuser': '127.0.0.4'");

    // Room both ways through the unframed server (its lines carry no newline).
    a.send("hi from alice");
    b.expect("[RECV] alice: hi from alice");
    pyc.expect("incoming msg from chatserver (alice: hi from alice )");
    b.send("hi from bob");
    a.expect("[RECV] bob: hi from bob");
    pyc.send("hi from python");
    a.expect("[RECV] pyuser: hi from python");
    b.expect("[RECV] pyuser: hi from python");

    // Peer-to-peer both ways.
    a.send("@bob: private to bob");
    b.expect("P2P from alice (127.0.0.2): private to bob");
    b.send("@alice: private to alice");
    a.expect("P2P from bob (127.0.0.3): private to alice");
    pyc.send("@alice: private from python");
    a.expect("P2P from pyuser (127.0.0.4): private from python");
    a.pump(Duration::from_millis(200));
    assert_eq!(
        a.count("private to bob"),
        1,
        "only the SEND line: {:?}",
        a.seen
    );

    // A leave on the unframed server reaches our clients as a user-list change.
    b.close_input();
    a.expect("bob left");
    let mut rest = String::new();
    if let Some(mut e) = srv.child.stderr.take() {
        let _ = e.read_to_string(&mut rest);
    }
}
