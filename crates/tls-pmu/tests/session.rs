//! `serve` and `client` end to end on loopback: the PMU protocol of part 2 inside TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BIN, Server, TempDir, client, make_certs, received, text};
use testkit::proc::{Proc, json, output};

fn expected(n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("This is PMU data {i}")).collect()
}

#[test]
fn short_0_prints_exactly_the_n_messages_over_ipv4_and_by_name() {
    let dir = TempDir::new("short0");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "7"]);
    for host in ["127.0.0.1", "localhost"] {
        let out = client(host, server.port, "CMD_short:0", &ca);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(received(&out), expected(7), "{}", text(&out.stdout));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("7 messages, 126 bytes"), "{stdout}");
        assert!(stdout.contains("(close_notify)"), "{stdout}");
        assert!(stdout.contains("TLSv1_3"), "{stdout}");
    }
    server.wait_for("CMD_short:0 served: 7 messages, 126 bytes");
}

#[test]
fn short_1_spaces_the_messages_one_second_apart() {
    let dir = TempDir::new("short1");
    let (cert, key, ca) = make_certs(&dir);
    let _server = Server::start(&cert, &key, &["--messages", "3"]);
    let started = Instant::now();
    let out = client("127.0.0.1", _server.port, "CMD_SHORT:1", &ca);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(received(&out), expected(3));
    assert!(
        took >= Duration::from_secs(2),
        "3 messages 1 s apart took {took:?}"
    );
}

#[test]
fn floodme_arrives_whole_with_the_byte_count_the_server_sent() {
    let dir = TempDir::new("flood");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--flood-bytes", "300000"]);
    let out = client("127.0.0.1", server.port, "CMD_floodme", &ca);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 messages, 300000 bytes in "),
        "{}",
        &stdout[stdout.len() - 300..]
    );
    // The text itself: the numbered lines of labnet's flood, the last one cut at 300000 bytes.
    let flood = String::from_utf8(labnet::wire::pmu::flood_text(300_000)).unwrap();
    assert!(stdout.contains(&flood), "flood text differs");
    server.wait_for("CMD_floodme served: 300000 bytes");
}

#[test]
fn ipv6_loopback_and_json_output() {
    let dir = TempDir::new("v6");
    let (cert, key, ca) = make_certs(&dir);
    // The client dials ::1, which the certificate lists as an IP subjectAltName.
    let server = Proc::spawn(
        Command::new(BIN)
            .args([
                "serve",
                "--bind",
                "::1",
                "--port",
                "0",
                "--messages",
                "4",
                "--json",
                "--cert",
            ])
            .arg(&cert)
            .arg("--key")
            .arg(&key),
    );
    let v = json(&server.wait_for(""));
    let port = v["port"].as_u64().unwrap().to_string();
    let out = output(
        Command::new(BIN)
            .args(["client", "::1", &port, "CMD_short:0", "--json", "--ca"])
            .arg(&ca),
        b"",
        Duration::from_secs(20),
    );
    drop(server);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let msgs: Vec<&str> = events
        .iter()
        .filter(|e| e["level"] == "RECV")
        .map(|e| e["msg"].as_str().unwrap())
        .collect();
    assert_eq!(msgs, expected(4));
    let stat = events.iter().find(|e| e["level"] == "STAT").unwrap();
    assert_eq!(stat["bytes"], 72);
    assert_eq!(stat["close_notify"], true);
}

/// A rustls client written in the test, to send what our client refuses to send.
fn raw_tls(port: u16, ca: &std::path::Path, payload: &[u8]) -> Vec<u8> {
    let roots = tls_pmu::client::load_roots(ca).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(tls_pmu::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(payload).unwrap();
    tls.flush().unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply);
    reply
}

#[test]
fn a_bad_command_inside_tls_gets_an_error_reply_and_the_server_goes_on() {
    let dir = TempDir::new("badcmd");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "2"]);
    let reply = raw_tls(server.port, &ca, b"CMD_short:abc");
    assert!(reply.starts_with(b"ERROR: "), "{:?}", text(&reply));
    server.wait_for("refused: bad delay");
    let out = client("127.0.0.1", server.port, "CMD_short:0", &ca);
    assert_eq!(received(&out), expected(2));
}

#[test]
fn sslkeylogfile_records_the_secrets_wireshark_needs() {
    let dir = TempDir::new("keylog");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "2"]);
    let log = dir.path("keys.log");
    let out = output(
        Command::new(BIN)
            .env("SSLKEYLOGFILE", &log)
            .args([
                "client",
                "127.0.0.1",
                &server.port.to_string(),
                "CMD_short:0",
                "--ca",
            ])
            .arg(&ca),
        b"",
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let keys = std::fs::read_to_string(&log).unwrap();
    assert!(keys.contains("CLIENT_TRAFFIC_SECRET_0 "), "{keys}");
    assert!(keys.contains("SERVER_HANDSHAKE_TRAFFIC_SECRET "), "{keys}");
}
