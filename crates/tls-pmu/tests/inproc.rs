//! `tls_pmu::server::serve` on a thread of the test: a listener bound to port 0 here, a
//! certificate made here with rcgen, a capture sink and a stop handle. A rustls client in the
//! test talks to it; the tests assert the bytes and the events logged for the client's own
//! address, then stop the server and check that it returned `Ok` in bounded time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{TempDir, leaf, test_ca, text};
use labnet::log::Level;
use testkit::inproc::InProc;
use tls_pmu::server::{Session, serve, server_config};

const DAY: Duration = Duration::from_secs(86_400);

/// A server for `localhost` with `messages` per CMD_short; returns it, its port and the CA file.
fn start(dir: &TempDir, messages: u32) -> (InProc, u16, std::path::PathBuf) {
    let (ca_pem, issuer) = test_ca();
    let now = SystemTime::now();
    let (cert, key) = leaf(dir, "srv", &issuer, &["localhost"], now - DAY, now + DAY);
    let ca = dir.path("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let tls = server_config(&cert, &key).unwrap();
    let session = Session {
        messages: Some(messages),
        flood: Arc::new(labnet::wire::pmu::flood_text(1000)),
        timeout: Duration::from_secs(3),
        max_clients: 10,
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = InProc::start("tls-test", move |ctx| serve(listener, tls, session, &ctx));
    (server, port, ca)
}

/// One TLS session from the test: `payload` sent, the reply read to the end. Returns the reply
/// and the client's local address.
fn tls_session(port: u16, ca: &Path, payload: &[u8]) -> (Vec<u8>, String) {
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
    let me = tcp.local_addr().unwrap().to_string();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(payload).unwrap();
    tls.flush().unwrap();
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).unwrap();
    (reply, me)
}

#[test]
fn a_tls_session_gets_exactly_n_messages_and_is_logged_for_the_client_address() {
    let dir = TempDir::new("inproc-short");
    let (server, port, ca) = start(&dir, 3);
    let (reply, me) = tls_session(port, &ca, b"CMD_short:0");
    let want: String = (1..=3).map(labnet::wire::pmu::message).collect();
    assert_eq!(text(&reply), want);
    // read_to_end returned Ok: the server ended with close_notify, not a bare FIN.
    let connected = server.wait_msg(&format!("{me}: connected"));
    assert_eq!(connected.level(), Level::Info);
    let hs = server.wait_msg(&format!("{me}: TLS handshake done"));
    assert!(hs.is("peer", &me), "{hs:?}");
    assert!(hs.get("version").is_some(), "{hs:?}");
    let done = server
        .wait_event(|e| e.is("peer", &me) && e.msg().contains("served"))
        .unwrap_or_else(|| panic!("no outcome for {me}:\n{:#?}", server.lines()));
    assert_eq!(done.level(), Level::Info);
    assert!(done.msg().contains("3 messages"), "{}", done.msg());
    server.stop();
}

#[test]
fn a_plaintext_client_is_refused_with_an_event_naming_it() {
    let dir = TempDir::new("inproc-plain");
    let (server, port, ca) = start(&dir, 2);
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = tcp.local_addr().unwrap().to_string();
    tcp.write_all(b"CMD_short:0").unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply);
    assert!(!reply.windows(8).any(|w| w == b"PMU data"), "{reply:?}");
    let ev = server
        .wait_event(|e| e.is("event", "refused") && e.is("peer", &me))
        .unwrap_or_else(|| panic!("no refusal for {me}:\n{:#?}", server.lines()));
    assert_eq!(ev.level(), Level::Warn);
    let why = ev.get("why").unwrap().as_str().unwrap();
    assert!(
        why.starts_with("not TLS") && why.contains("'CMD_short:0'"),
        "{why}"
    );
    // And the next client is served.
    let (reply, _) = tls_session(port, &ca, b"CMD_short:0");
    assert_eq!(text(&reply).matches("This is PMU data").count(), 2);
    server.stop();
}

#[test]
fn a_stop_ends_serve_with_ok_and_closes_the_port() {
    let dir = TempDir::new("inproc-stop");
    let (server, port, _ca) = start(&dir, 2);
    let took = server.stop();
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
