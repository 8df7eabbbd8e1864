//! The chat load generator against the handout's Python server (`tests/peers/chat_server.py`):
//! the generator must count every delivery of a small room exactly (no timing is asserted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netlab_bench::chat::ChatSession;
use netlab_bench::suite::chat::{python, python_server};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python_room(clients: usize) -> Option<(Kill, ChatSession)> {
    let Ok(py) = python() else {
        eprintln!("SKIPPED: python3 not found");
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(py)
        .arg(python_server())
        .arg("127.0.0.1")
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let server = Kill(child);
    let ok = testkit::wait_until(Duration::from_secs(10), || {
        netlab_bench::sys::is_listening(port).then_some(())
    });
    assert!(ok.is_some(), "python chat server did not listen");
    let session = ChatSession::join(
        "python",
        netlab_bench::sys::lo(port),
        pid,
        clients,
        Duration::from_secs(30),
    )
    .unwrap();
    Some((server, session))
}

#[test]
fn lockstep_through_python_server_delivers_every_message_intact_once() {
    let Some((_server, mut room)) = python_room(6) else {
        return;
    };
    let r = room.lockstep(12, Duration::from_secs(30)).unwrap();
    assert_eq!(r.expected, 12 * 5);
    assert_eq!(r.intact, 60, "{r:?}");
    assert_eq!(r.received, 60);
    assert_eq!((r.mangled, r.duplicate, r.timeouts, r.closed), (0, 0, 0, 0));
    assert_eq!(r.fanout_ns.len(), 12);
}

#[test]
fn burst_and_paced_through_python_server_find_every_delivery() {
    let Some((_server, mut room)) = python_room(5) else {
        return;
    };
    // Glued relays (the handout's recv(1024) = one message) still count as received.
    let r = room.burst(3, Duration::from_secs(30)).unwrap();
    assert_eq!(r.expected, 5 * 3 * 4);
    assert_eq!(r.received, 60, "{r:?}");
    assert_eq!(r.duplicate, 0);
    let r = room.paced(400.0, 0.5, Duration::from_secs(30)).unwrap();
    assert_eq!(r.received, r.expected, "{r:?}");
    assert_eq!(r.intact, r.expected);
    assert_eq!(r.latency_ns.len() as u64, r.expected);
}
