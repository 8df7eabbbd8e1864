//! Every basics program against its counterpart on loopback (port 0), exact output lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::probe::time_wait_count;
use testkit::proc::{Proc, run};
use testkit::tcp::{bind_without_reuseaddr, connect, read_to_eof};

const LIMIT: Duration = Duration::from_secs(20);
const UDP_HELLO: &str = env!("CARGO_BIN_EXE_udp-hello");
const ECHO_SERVER: &str = env!("CARGO_BIN_EXE_tcp-echo-server");
const ECHO_CLIENT: &str = env!("CARGO_BIN_EXE_tcp-echo-client");
const UDP_UPPER: &str = env!("CARGO_BIN_EXE_udp-upper");
const TCP_UPPER: &str = env!("CARGO_BIN_EXE_tcp-upper");
const TCP_SERVER: &str = env!("CARGO_BIN_EXE_tcp-server");
const TCP_CLIENT: &str = env!("CARGO_BIN_EXE_tcp-client");

/// The port a server announced in its first line, in the handout's words (`… and port PORT …`)
/// or as `IP:PORT`.
fn announced_port(server: &Proc) -> u16 {
    let first = server.wait_msgs("INFO", 1).remove(0);
    let after = match first.find(" and port ") {
        Some(i) => &first[i + " and port ".len()..],
        None => {
            let i = first
                .find(|c: char| c.is_ascii_digit())
                .expect("an address");
            let rest = &first[i..];
            &rest[rest.find(':').expect("ip:port") + 1..]
        }
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("port number")
}

#[test]
fn udp_hello_server_prints_data_and_address() {
    let server = Proc::start(UDP_HELLO, &["serve", "127.0.0.1", "0", "--count", "1"]);
    let port = announced_port(&server).to_string();
    assert_eq!(
        server.wait_msgs("INFO", 1)[0],
        format!("Socket is listening in address 127.0.0.1 and port {port} ...")
    );
    let r = run(UDP_HELLO, &["send", "127.0.0.1", &port], LIMIT);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.msgs("SEND"),
        vec![format!("13 bytes to 127.0.0.1:{port}: 'Hello, Romeo '")]
    );
    assert_eq!(r.msgs("INFO"), vec!["Message sent".to_owned()]);
    assert_eq!(
        server.wait_msgs("RECV", 1),
        vec!["Received data: Hello, Romeo ".to_owned()]
    );
    let from = &server.wait_msgs("INFO", 2)[1];
    assert!(from.starts_with("From Address: 127.0.0.1:"), "{from}");
}

#[test]
fn echo_server_reads_16_bytes_and_client_8_bytes_per_recv() {
    let server = Proc::start(ECHO_SERVER, &["127.0.0.1", "0", "--clients", "1"]);
    let port = announced_port(&server).to_string();
    let start = Instant::now();
    let client = Proc::start(ECHO_CLIENT, &["127.0.0.1", &port, "--hold", "1"]);
    // Q6: three reads on the server, 16 + 16 + 9 bytes.
    assert_eq!(
        server.wait_msgs("RECV", 3),
        vec![
            "received: O Romeo, Romeo! ".to_owned(),
            "received: wherefore art th".to_owned(),
            "received: ou Romeo?".to_owned(),
        ]
    );
    // Q7: while the client holds the connection open, no "No more data".
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !server
            .events()
            .iter()
            .any(|(_, m)| m.starts_with("No more data from")),
        "printed before the client closed"
    );
    let r = client.finish_within(LIMIT);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.msgs("SEND"),
        vec!["sending: O Romeo, Romeo! wherefore art thou Romeo?".to_owned()]
    );
    // Six reads on the client: 5 × 8 + 1.
    assert_eq!(
        r.msgs("RECV"),
        [
            "received: O Romeo,",
            "received:  Romeo! ",
            "received: wherefor",
            "received: e art th",
            "received: ou Romeo",
            "received: ?"
        ]
        .map(String::from)
    );
    // Q8: the client closed, recv() returned 0 on the server.
    let info = server.wait_msgs("INFO", 3);
    let local = r.msgs("INFO")[0].rsplit(' ').next().unwrap().to_owned();
    assert_eq!(info[2], format!("No more data from {local}"));
}

#[test]
fn echo_server_restarts_on_its_port_at_once_thanks_to_so_reuseaddr() {
    let first = Proc::start(ECHO_SERVER, &["127.0.0.1", "0"]);
    let port = announced_port(&first);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = connect(addr);
    c.write_all(b"hi").unwrap();
    let mut echo = [0u8; 2];
    c.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"hi");
    // The server closes first: killed with nothing left unread, its kernel sends FIN (the active
    // close), we answer with ours, and its side of the connection sits in TIME_WAIT on the
    // server's port (60 s), with no process left to own it.
    drop(first);
    assert!(read_to_eof(&mut c).is_empty());
    drop(c);
    assert!(
        testkit::wait_until(Duration::from_secs(5), || (time_wait_count(port) > 0)
            .then_some(()))
        .is_some(),
        "no TIME_WAIT on port {port}: the server did not close first"
    );
    // Without SO_REUSEADDR that TIME_WAIT keeps the port: a restart would fail to bind...
    let err = bind_without_reuseaddr(addr).expect_err("bind without SO_REUSEADDR");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    // ...with it (the server's listener), the restart binds the same port at once.
    let second = Proc::start(
        ECHO_SERVER,
        &["127.0.0.1", &port.to_string(), "--clients", "1"],
    );
    assert_eq!(announced_port(&second), port);
}

#[test]
fn udp_upper_answers_in_upper_case() {
    let server = Proc::start(UDP_UPPER, &["serve", "127.0.0.1", "0", "--count", "1"]);
    let port = announced_port(&server).to_string();
    let r = run(
        UDP_UPPER,
        &["send", "127.0.0.1", &port, "hello there"],
        LIMIT,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.msgs("RECV"), vec!["From Server: HELLO THERE".to_owned()]);
    assert!(server.wait_msgs("SEND", 1)[0].starts_with("HELLO THERE (to 127.0.0.1:"));
}

#[test]
fn udp_upper_client_without_server_times_out_with_one_line() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let r = run(
        UDP_UPPER,
        &["send", "127.0.0.1", &port, "x", "--timeout", "0.2"],
        LIMIT,
    );
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn tcp_upper_answers_in_upper_case_and_closes() {
    let server = Proc::start(TCP_UPPER, &["serve", "127.0.0.1", "0", "--count", "2"]);
    let port = announced_port(&server).to_string();
    for word in ["abc", "Romeo"] {
        let r = run(TCP_UPPER, &["send", "127.0.0.1", &port, word], LIMIT);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_eq!(
            r.msgs("RECV"),
            vec![format!("From Server: {}", word.to_uppercase())]
        );
    }
}

#[test]
fn threaded_server_numbers_clients_and_counts_chars() {
    let server = Proc::start(TCP_SERVER, &["127.0.0.1", "0", "--clients", "2"]);
    let port = announced_port(&server).to_string();
    assert_eq!(
        server.wait_msgs("INFO", 1)[0],
        format!("Socket is listening in address 127.0.0.1 and port {port} ...")
    );
    // The first client stays connected while the second is served: one thread each.
    let mut first =
        Proc::spawn_with_stdin(std::process::Command::new(TCP_CLIENT).args(["127.0.0.1", &port]));
    server.wait_msgs("INFO", 3);
    let r = run(TCP_CLIENT, &["127.0.0.1", &port, "hello"], LIMIT);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.msgs("RECV"),
        vec!["Server message: I received 5 chars: hello".to_owned()]
    );
    first.send("héllo wörld");
    first.send("second");
    first.close_stdin();
    let r1 = first.finish_within(LIMIT);
    assert_eq!(r1.code, Some(0), "{}", r1.stderr);
    assert_eq!(
        r1.msgs("RECV"),
        vec![
            "Server message: I received 11 chars: héllo wörld".to_owned(),
            "Server message: I received 6 chars: second".to_owned()
        ]
    );
    let info: Vec<String> = server.wait_msgs("INFO", 7);
    assert!(
        info[1].starts_with("Connected to Client 1, calling from: 127.0.0.1:"),
        "{info:?}"
    );
    assert!(info.contains(&"Thread Number: 1".to_owned()), "{info:?}");
    assert!(info.contains(&"Thread Number: 2".to_owned()), "{info:?}");
    assert!(
        info.iter()
            .any(|m| m.starts_with("Connected to Client 2, calling from: 127.0.0.1:"))
    );
}

#[test]
fn clients_against_nothing_fail_with_one_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    for (bin, args) in [
        (ECHO_CLIENT, vec!["127.0.0.1", port.as_str(), "--hold", "0"]),
        (TCP_UPPER, vec!["send", "127.0.0.1", port.as_str(), "x"]),
        (TCP_CLIENT, vec!["127.0.0.1", port.as_str(), "x"]),
    ] {
        let r = run(bin, &args, LIMIT);
        assert_eq!(r.code, Some(1), "{bin}");
        assert!(
            r.stderr.ends_with(&format!(
                "connect to 127.0.0.1:{port}: connection refused (ECONNREFUSED)\n"
            )),
            "{}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1);
    }
}

#[test]
fn every_binary_has_help_with_examples_and_rejects_bad_flags() {
    for bin in [
        UDP_HELLO,
        ECHO_SERVER,
        ECHO_CLIENT,
        UDP_UPPER,
        TCP_UPPER,
        TCP_SERVER,
        TCP_CLIENT,
    ] {
        let r = run(bin, &["--help"], LIMIT);
        assert_eq!(r.code, Some(0), "{bin}");
        assert!(r.stdout.contains("EXAMPLES:"), "{bin}");
        let r = run(bin, &["--prot", "80"], LIMIT);
        assert_eq!(r.code, Some(2), "{bin}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{bin}");
    }
    for bad in [&["nope"][..], &["send", "h", "99999"], &[]] {
        let r = run(UDP_HELLO, bad, LIMIT);
        assert_eq!(r.code, Some(2), "{bad:?}");
    }
}
