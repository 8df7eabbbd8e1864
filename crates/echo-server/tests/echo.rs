//! Loopback tests of the `echo-server` binary (week 3 server, TP3 code C): flags and exit codes,
//! the stdout log of one echo, and what only a whole process shows (descriptors, threads and
//! the descriptor limit under abuse). Behaviour (exact echoes over TCP and UDP, half-close, the
//! idle timeout, stopping) is tested in-process in `tests/inproc.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::time::Duration;

use testkit::probe::*;
use testkit::proc::{Finished, Proc, run};
use testkit::tcp::*;

/// How long a run of the program may take before the test fails.
const LIMIT: Duration = Duration::from_secs(10);

const BIN: &str = env!("CARGO_BIN_EXE_echo-server");

fn server(extra: &[&str]) -> Proc {
    let mut args = vec!["--port", "0", "--bind", "127.0.0.1"];
    args.extend_from_slice(extra);
    Proc::start(BIN, &args)
}

#[test]
fn help_exits_0_with_examples() {
    let Finished {
        code, stdout: out, ..
    } = run(BIN, &["--help"], LIMIT);
    assert_eq!(code, Some(0));
    assert!(out.contains("EXAMPLES:"), "{out}");
    assert!(out.contains("echo-server --port 8080"), "{out}");
}

#[test]
fn bad_flag_or_value_exits_2_with_one_line() {
    for args in [
        &["--prot", "80"][..],
        &["--port", "99999"],
        &["--bind", "server"],
    ] {
        let Finished {
            code,
            stdout: out,
            stderr: err,
            ..
        } = run(BIN, args, LIMIT);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("echo-server: "), "{err}");
    }
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let Finished {
        code, stderr: err, ..
    } = run(BIN, &["--port", &port, "--bind", "127.0.0.1"], LIMIT);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim(),
        format!("echo-server: bind tcp 127.0.0.1:{port}: address already in use (EADDRINUSE)")
    );
}

#[test]
fn tcp_echo_returns_exact_bytes_and_logs_connect_and_close() {
    let p = server(&[]);
    let mut s = connect(p.addr());
    let romeo = b"O Romeo, Romeo! wherefore art thou Romeo?";
    s.write_all(romeo).unwrap();
    let mut back = vec![0u8; romeo.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, romeo);
    let me = s.local_addr().unwrap();
    drop(s);
    let close = p
        .wait_line("closed by client", Duration::from_secs(5))
        .unwrap();
    assert!(
        close.contains(&format!("#1 {me} closed by client after")),
        "{close}"
    );
    assert!(close.ends_with(&format!("{} bytes echoed", romeo.len())));
    let lines = p.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with(&format!("#1 connection from {me}")))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("[RECV] #1 ") && l.contains("wherefore art thou")),
        "{lines:?}"
    );
}

#[test]
fn udp_json_log_names_each_datagram_and_its_source() {
    // The binary's --udp and --json flags; the echo itself is tested in-process.
    let p = Proc::start(
        BIN,
        &["--udp", "--port", "0", "--bind", "127.0.0.1", "--json"],
    );
    let addr = p.addr();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for msg in [&b"HELLO"[..], b"", &[0u8, 255, 7]] {
        c.send_to(msg, addr).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg);
        assert_eq!(from, addr);
    }
    let line = p.wait_line("HELLO", Duration::from_secs(5)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "RECV");
    assert_eq!(v["event"], "datagram");
    assert_eq!(v["bytes"], 5);
    assert_eq!(v["src"], c.local_addr().unwrap().to_string());
}

#[test]
fn ten_thousand_bad_connections_leave_no_descriptor_thread_or_close_wait() {
    let p = server(&["--quiet"]);
    let addr = p.addr();
    // Warm up once so lazily created state (the stdout lock, thread-local buffers) is counted.
    let mut s = connect(addr);
    s.write_all(b"w").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"w");
    drop(s);
    p.wait_line("#1 ", Duration::from_secs(5)).unwrap();
    let pid = p.pid();
    testkit::wait_until(Duration::from_secs(5), || {
        (thread_count(pid) == 1).then_some(())
    })
    .expect("client thread ended");
    let (fds, threads) = (fd_count(pid), thread_count(pid));
    let counts = abuse(addr, 10_000);
    assert_eq!(counts, [2500, 2500, 2500, 2500]);
    assert_back_to(pid, fds, threads, Duration::from_secs(15));
    // Every connection was served and closed: 1 warm-up + 10,000.
    testkit::wait_until(Duration::from_secs(10), || {
        (p.count("] [INFO] #") == 2 * 10_001).then_some(())
    })
    .unwrap_or_else(|| {
        // Say what else the server printed: a connection it could not serve is logged as WARN.
        let other: Vec<String> = p
            .lines()
            .into_iter()
            .filter(|l| !l.contains("] [INFO] #"))
            .collect();
        panic!(
            "{} connect/close lines; other lines: {other:?}",
            p.count("] [INFO] #")
        )
    });
    // And it still echoes.
    let mut s = connect(addr);
    s.write_all(b"still here").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"still here");
}

#[test]
fn descriptor_limit_makes_accept_back_off_and_recover() {
    if !testkit::tool_or_skip(&["prlimit"]) {
        return;
    }
    let p = start_with_nofile(
        BIN,
        NOFILE,
        &["--port", "0", "--bind", "127.0.0.1", "--quiet"],
    );
    let addr = p.addr();
    let mut held = hold_at_descriptor_limit(&p, addr, 100);
    // The first client was accepted and is served at the limit.
    held[0].write_all(b"first").unwrap();
    let mut b = [0u8; 5];
    held[0].read_exact(&mut b).unwrap();
    assert_eq!(&b, b"first");
    drop(held);
    recovers_from_descriptor_limit(&p, || {
        let mut s = connect(addr);
        s.write_all(b"again").ok()?;
        s.shutdown(Shutdown::Write).ok()?;
        let mut v = Vec::new();
        s.read_to_end(&mut v).ok()?;
        (v == b"again").then_some(())
    });
}
