//! A flood far beyond tungstenite's default frame limit still arrives as one message event: the
//! server sends `CMD_floodme` as one frame, and the client's limits are set for that.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use tungstenite::Message;

const FLOOD: usize = 64 << 20;

#[test]
fn a_64_mib_single_frame_flood_is_one_message_event() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        let cmd = ws.read().unwrap();
        assert_eq!(cmd.into_text().unwrap().as_str(), "CMD_floodme");
        ws.send(Message::binary(vec![b'x'; FLOOD])).unwrap();
        ws.close(None).unwrap();
        // Let the close handshake finish before the socket drops.
        while ws.read().is_ok() {}
    });
    let out = Command::new(env!("CARGO_BIN_EXE_ws-client"))
        .args([
            &format!("ws://127.0.0.1:{port}"),
            "CMD_floodme",
            "--json",
            "--timeout",
            "20",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ws-client failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stat: serde_json::Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["level"] == "STAT")
        .expect("a STAT event");
    assert_eq!(stat["messages"], 1, "{stat}");
    assert_eq!(stat["bytes"], FLOOD as u64, "{stat}");
}

#[test]
fn a_message_over_max_message_is_refused_with_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut ws = tungstenite::accept(stream).unwrap();
        let _ = ws.read();
        let _ = ws.send(Message::binary(vec![b'x'; 2048]));
        while ws.read().is_ok() {}
    });
    let out = Command::new(env!("CARGO_BIN_EXE_ws-client"))
        .args([
            &format!("ws://127.0.0.1:{port}"),
            "CMD_floodme",
            "--max-message",
            "1024",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ws-client: "), "{stderr}");
}
