//! What `serve` refuses (each with one log line, and the next client is still served) and what
//! `client` refuses (one line naming the reason, exit 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use common::{
    Server, TempDir, client, leaf, make_certs, received, s_client, test_ca, test_ca_named, text,
};

const DAY: Duration = Duration::from_secs(86_400);

/// After a refusal the server must still serve a normal client.
fn still_serves(server: &Server, ca: &std::path::Path) {
    let out = client("127.0.0.1", server.port, "CMD_short:0", ca);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(received(&out).len(), 3);
}

#[test]
fn plaintext_client_is_refused_with_what_it_sent() {
    let dir = TempDir::new("plain");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "3"]);
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"CMD_short:0").unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    assert!(
        !reply.windows(8).any(|w| w == b"PMU data"),
        "plaintext got data: {reply:?}"
    );
    let line = server.wait_for("refused: not TLS");
    assert!(
        line.contains("'CMD_short:0'") && line.contains("[WARN]"),
        "{line}"
    );
    still_serves(&server, &ca);
}

#[test]
fn tls10_and_tls11_clients_are_refused() {
    let dir = TempDir::new("oldtls");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "3"]);
    for (flag, name) in [("-tls1", "TLS 1.0"), ("-tls1_1", "TLS 1.1")] {
        // SECLEVEL=0: openssl 3 would not even try TLS 1.0/1.1 otherwise.
        let out = s_client(
            server.port,
            &[flag, "-cipher", "DEFAULT:@SECLEVEL=0"],
            b"CMD_short:0",
        );
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(!out.status.success(), "{flag}: {all}");
        assert!(all.contains("alert"), "{flag} should get an alert: {all}");
        assert!(!all.contains("PMU data"), "{all}");
        let line = server.wait_for(&format!("refused: client offers at most {name}"));
        assert!(line.contains("requires TLS 1.2 or 1.3"), "{line}");
        still_serves(&server, &ca);
    }
}

#[test]
fn cbc_only_client_hello_is_refused() {
    let dir = TempDir::new("cbc");
    let (cert, key, ca) = make_certs(&dir);
    let mut server = Server::start(&cert, &key, &["--messages", "3"]);
    for cipher in ["AES128-SHA", "ECDHE-ECDSA-AES128-SHA"] {
        let out = s_client(server.port, &["-tls1_2", "-cipher", cipher], b"CMD_short:0");
        assert!(!out.status.success(), "{cipher}: {}", text(&out.stdout));
        let line = server.wait_for(&format!(
            "only TLS_{}",
            if cipher == "AES128-SHA" {
                "RSA_WITH_AES_128_CBC_SHA"
            } else {
                "ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
            }
        ));
        assert!(line.contains("no cipher suite in common"), "{line}");
        server.forget_seen();
        still_serves(&server, &ca);
    }
}

#[test]
fn silent_client_times_out_and_others_are_served_meanwhile() {
    let dir = TempDir::new("silent");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "3"]);
    let silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    still_serves(&server, &ca);
    server.wait_for("refused: no ClientHello within 3 s");
    drop(silent);
}

#[test]
fn client_refuses_a_certificate_from_another_ca() {
    let dir = TempDir::new("otherca");
    let (cert, key, _ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &[]);
    // Another CA, and an impostor with the same name as the lab CA but its own key.
    for (tag, cn) in [
        ("other", "some other CA"),
        ("impostor", "netlab TP3 lab CA"),
    ] {
        let (pem, _) = test_ca_named(cn);
        let other = dir.path(&format!("{tag}_ca.pem"));
        std::fs::write(&other, pem).unwrap();
        let out = client("127.0.0.1", server.port, "CMD_short:0", &other);
        assert_eq!(out.status.code(), Some(1), "{tag}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("not signed by the CA in"), "{tag}: {err}");
        assert!(!text(&out.stdout).contains("PMU data"));
    }
}

#[test]
fn client_refuses_a_certificate_for_another_name() {
    let dir = TempDir::new("name");
    let (ca_pem, issuer) = test_ca();
    let ca = dir.path("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let now = SystemTime::now();
    let (cert, key) = leaf(
        &dir,
        "elsewhere",
        &issuer,
        &["elsewhere.example"],
        now - DAY,
        now + DAY,
    );
    let server = Server::start(&cert, &key, &[]);
    for host in ["127.0.0.1", "localhost"] {
        let out = client(host, server.port, "CMD_short:0", &ca);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("does not list '{host}'")), "{err}");
    }
}

#[test]
fn client_refuses_an_expired_certificate() {
    let dir = TempDir::new("expired");
    let (ca_pem, issuer) = test_ca();
    let ca = dir.path("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let now = SystemTime::now();
    let (cert, key) = leaf(
        &dir,
        "old",
        &issuer,
        &["localhost", "127.0.0.1"],
        now - 30 * DAY,
        now - DAY,
    );
    let server = Server::start(&cert, &key, &[]);
    let out = client("127.0.0.1", server.port, "CMD_short:0", &ca);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("server certificate has expired"), "{err}");
    // The client's alert (certificate_expired) shows up in the server's log.
    server.wait_for("refused: client aborted the handshake with alert CertificateExpired");
}

/// The handshake deadline holds whatever the client sends. A ClientHello record
/// trickled one byte every 300 ms (each read succeeds long before the 2 s timeout) is closed
/// about 2 s after the client connected.
#[test]
fn a_trickled_client_hello_is_closed_at_the_deadline() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = TempDir::new("trickle");
    let (cert, key, _ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--timeout", "2"]);
    // A handshake record header announcing 512 bytes, then filler: rustls waits for all of it.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.resize(517, 0x42);
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = s.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let mut closed = None;
    let mut buf = [0u8; 1024];
    for &b in &hello {
        if started.elapsed() > Duration::from_secs(12) {
            break;
        }
        if s.write_all(&[b]).is_err() {
            closed = Some(started.elapsed());
            break;
        }
        match reader.read(&mut buf) {
            Ok(0) => {
                closed = Some(started.elapsed());
                break;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("trickled ClientHello closed after {closed:?}");
    let closed = closed.expect("still open 12 s after connecting");
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_millis(3500),
        "closed after {closed:?} with --timeout 2"
    );
    server.wait_for("handshake not finished within 2 s");
}

/// A server that accepts and never answers is reported as a timeout in words,
/// not as "Resource temporarily unavailable (os error 11)".
#[test]
fn client_reports_a_silent_server_as_timed_out() {
    let dir = TempDir::new("silent-server");
    let (_cert, _key, ca) = make_certs(&dir);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let held = listener.accept();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(held);
    });
    let out = testkit::proc::output(
        std::process::Command::new(common::BIN)
            .args([
                "client",
                "127.0.0.1",
                &port.to_string(),
                "CMD_short:0",
                "--ca",
            ])
            .arg(&ca)
            .args(["--timeout", "1"]),
        b"",
        std::time::Duration::from_secs(10),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timed out after 1 s"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
    holder.join().unwrap();
}

/// A connection cap. With `--max-clients 2`, two silent clients hold their slots
/// and a third is closed at once (not after the timeout); once they go, clients are served.
#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let dir = TempDir::new("cap");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--max-clients", "2", "--messages", "3"]);
    let a = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let b = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    server
        .wait_count("connected", 2, Duration::from_secs(5))
        .unwrap();
    let started = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    server.wait_for("server full (2 connections");
    drop((a, b));
    still_serves(&server, &ca);
}
