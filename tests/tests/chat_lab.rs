//! Chat lab end to end: `chat-server` and three `chat-client`s driven through stdin pipes, on
//! loopback (clients on 127.0.0.2, .3, .4) and in the chat namespace topology; and interop with
//! handout-style Python peers (`tests/peers/chat_client.py`, `tests/peers/chat_server.py`), which
//! send bare messages without `\n`, both ways, room and peer-to-peer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use testkit::proc::{Proc, split_event};

const WAIT: Duration = Duration::from_secs(10);

fn server(bind: &str) -> (Proc, u16) {
    let mut cmd = Command::new(testkit::bin("chat-server"));
    cmd.args(["--bind", bind, "--port", "0"]);
    let s = Proc::spawn_with_stdin(cmd).named("chat-server");
    let line = s.wait_for("listening on");
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (s, port)
}

fn client(port: u16, bind: &str, udp_port: u16, name: &str) -> Proc {
    let mut cmd = Command::new(testkit::bin("chat-client"));
    cmd.args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--bind", bind, "--udp-port", &udp_port.to_string()])
        .args(["--name", name]);
    let c = Proc::spawn_with_stdin(cmd).named(name);
    c.wait_for("registered;");
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
    a.wait_for(&format!("bob joined ({ip_b})"));
    a.wait_for(&format!("carol joined ({ip_c})"));
    b.wait_for(&format!("carol joined ({ip_c})"));
    let list = format!("3 active users: alice ({ip_a}), bob ({ip_b}), carol ({ip_c})");
    c.wait_for(&format!("registered; {list}"));

    // A room message reaches the two others exactly once, named.
    a.send("hello room");
    b.wait_for("[RECV] alice: hello room");
    c.wait_for("[RECV] alice: hello room");

    // Peer-to-peer reaches only its target, named by the sender's IP.
    b.send("@carol: just for you");
    c.wait_for(&format!("P2P from bob ({ip_b}): just for you"));
    c.send("bye all");
    a.wait_for("[RECV] carol: bye all");
    b.wait_for("[RECV] carol: bye all");
    // Time for a duplicate to show up (the readers collect for all three meanwhile).
    thread::sleep(Duration::from_millis(900));
    assert_eq!(b.count("alice: hello room"), 1, "{:?}", b.lines());
    assert_eq!(c.count("alice: hello room"), 1, "{:?}", c.lines());
    assert_eq!(
        a.count("hello room"),
        1,
        "the sender sees only its own SEND: {:?}",
        a.lines()
    );
    assert_eq!(a.count("just for you"), 0, "{:?}", a.lines());
    assert_eq!(c.count("P2P from bob"), 1);

    // #ls prints the list.
    a.send("#ls");
    let line = a.wait_for("] 3 active users: alice");
    assert_eq!(split_event(&line).unwrap().1, list);

    // A client leaving updates the others' lists.
    b.close_stdin();
    a.wait_for("bob left");
    c.wait_for("bob left");
    assert_eq!(
        b.wait_exit(WAIT).and_then(|s| s.code()),
        Some(0),
        "{:?}",
        b.lines()
    );
    a.send("#ls");
    a.wait_for(&format!("] 2 active users: alice ({ip_a}), carol ({ip_c})"));
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
    srv.kill();
    assert_eq!(a.wait_exit(WAIT).and_then(|s| s.code()), Some(1));
    thread::sleep(Duration::from_millis(200));
    assert!(
        a.lines()
            .iter()
            .any(|l| l.contains("server closed the connection")),
        "{:?}",
        a.lines()
    );
}

#[test]
fn three_clients_in_the_chat_namespace_topology() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::CHAT);
    let server_bin = testkit::bin("chat-server");
    let client_bin = testkit::bin("chat-client");
    let mut cmd = bed.command("webserver", &server_bin);
    cmd.args(["--port", "5000"]);
    let srv = Proc::spawn_with_stdin(cmd).named("chat-server");
    srv.wait_for("listening on");
    let start = |host: &str, name: &str| {
        let mut cmd = bed.command(host, &client_bin);
        cmd.args(["--server", "webserver", "--name", name]);
        let c = Proc::spawn_with_stdin(cmd).named(name);
        c.wait_for("registered;");
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
    srv.wait_for("carol joined from 10.20.30.13");
}

/// python3 for the interop tests, under the kit's skip policy (`labnet::netns::or_skip`).
fn python() -> Option<PathBuf> {
    testkit::tool_or_skip(&["python3"]).then(|| PathBuf::from("python3"))
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
    let mut pyc = Proc::spawn_with_stdin(cmd).named("python client");
    pyc.send("pyuser");
    ours.wait_for("pyuser joined (127.0.0.3)");
    pyc.wait_for("'rusty': '127.0.0.2'");

    // Room: Python → ours (a bare message without newline) and ours → Python.
    pyc.send("hello from python");
    ours.wait_for("[RECV] pyuser: hello from python");
    ours.send("hello from rust");
    // Our server's `\n` ends the message; the handout's print shows it as a line break.
    pyc.wait_for("incoming msg from chatserver (rusty: hello from rust ");

    // Peer-to-peer both ways, named by IP lookup on each side.
    pyc.send("@rusty: psst rust");
    ours.wait_for("P2P from pyuser (127.0.0.3): psst rust");
    ours.send("@pyuser: psst python");
    pyc.wait_for("Incoming msg (P2P) from rusty: psst python");

    pyc.close_stdin();
    ours.wait_for("pyuser left");
}

/// The line a handout client printed: its `input(">")` prompt shares stdout with its prints and
/// may land before a line or between the text and its newline (print writes them separately).
fn printed(p: &Proc, needle: &str) -> String {
    p.wait_for(needle).trim_matches('>').to_owned()
}

/// Our client sends a P2P message exactly as the handout's client does (everything after the
/// first colon, verbatim), so a handout peer prints what it prints for a classmate.
#[test]
fn a_handout_peer_prints_our_p2p_messages_as_from_a_handout_client() {
    let Some(py) = python() else { return };
    let (_server, port) = server("127.0.0.1");
    let udp = free_udp_port();
    let mut alice = client(port, "127.0.0.2", udp, "alice");
    let mut cmd = Command::new(py);
    cmd.arg("-u").arg(peer("chat_client.py")).args([
        "127.0.0.1",
        &port.to_string(),
        "127.0.0.3",
        &udp.to_string(),
    ]);
    let mut bob = Proc::spawn_with_stdin(cmd).named("python client");
    bob.send("bob");
    alice.wait_for("bob joined (127.0.0.3)");
    bob.wait_for("'alice': '127.0.0.2'");
    alice.send("@bob: hi");
    assert_eq!(
        printed(&bob, "Incoming msg (P2P) from alice:"),
        "Incoming msg (P2P) from alice: hi"
    );
    bob.forget_seen();
    alice.send("@ bob :at 10:30: lunch?");
    assert_eq!(
        printed(&bob, "Incoming msg (P2P) from alice:"),
        "Incoming msg (P2P) from alice:at 10:30: lunch?"
    );
    // Our own display stays readable: one space after the colon, whatever was sent.
    alice.wait_for("P2P to bob (127.0.0.3): hi");
    bob.close_stdin();
    alice.wait_for("bob left");
}

#[test]
fn our_client_works_with_the_handout_python_server_room_and_p2p_both_ways() {
    let Some(py) = python() else { return };
    let mut cmd = Command::new(&py);
    cmd.arg("-u")
        .arg(peer("chat_server.py"))
        .args(["127.0.0.1", "0"]);
    let srv = Proc::spawn_with_stdin(cmd).named("python server");
    let line = srv.wait_for("Waiting for connection on port");
    let port: u16 = line
        .split_whitespace()
        .find_map(|w| w.trim_end_matches('.').parse().ok())
        .unwrap();
    let udp = free_udp_port();
    let mut a = client(port, "127.0.0.2", udp, "alice");
    let mut b = client(port, "127.0.0.3", udp, "bob");
    a.wait_for("bob joined (127.0.0.3)");

    // A Python client too, so the server's bare user lists and messages meet a third reader.
    let mut cmd = Command::new(&py);
    cmd.arg("-u").arg(peer("chat_client.py")).args([
        "127.0.0.1",
        &port.to_string(),
        "127.0.0.4",
        &udp.to_string(),
    ]);
    let mut pyc = Proc::spawn_with_stdin(cmd).named("python client");
    pyc.send("pyuser");
    a.wait_for("pyuser joined (127.0.0.4)");
    b.wait_for("pyuser joined (127.0.0.4)");
    // The handout's pair is fragile on its own: a user list and a message glued in one recv make
    // its client's json.loads fail. Let the Python client take its list first.
    pyc.wait_for("'pyuser': '127.0.0.4'");

    // Room both ways through the unframed server (its lines carry no newline).
    a.send("hi from alice");
    b.wait_for("[RECV] alice: hi from alice");
    pyc.wait_for("incoming msg from chatserver (alice: hi from alice )");
    b.send("hi from bob");
    a.wait_for("[RECV] bob: hi from bob");
    pyc.send("hi from python");
    a.wait_for("[RECV] pyuser: hi from python");
    b.wait_for("[RECV] pyuser: hi from python");

    // Peer-to-peer both ways.
    a.send("@bob: private to bob");
    b.wait_for("P2P from alice (127.0.0.2): private to bob");
    b.send("@alice: private to alice");
    a.wait_for("P2P from bob (127.0.0.3): private to alice");
    pyc.send("@alice: private from python");
    a.wait_for("P2P from pyuser (127.0.0.4): private from python");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        a.count("private to bob"),
        1,
        "only the SEND line: {:?}",
        a.lines()
    );

    // A leave on the unframed server reaches our clients as a user-list change.
    b.close_stdin();
    a.wait_for("bob left");
}
