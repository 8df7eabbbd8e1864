//! `pmu-pdc-client` against small PMU servers written here, on loopback (port 0): the real
//! session of `labnet::pmu`, and servers that misbehave (close early, send garbage, refuse).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use labnet::wire::pmu;
use testkit::proc::{Finished, run};

const BIN: &str = env!("CARGO_BIN_EXE_pmu-pdc-client");
const LIMIT: Duration = Duration::from_secs(20);

/// Serves one PMU session with `n` short messages and the given flood, on a dual-stack listener.
fn pmu_once(n: u32, flood: Vec<u8>) -> (u16, JoinHandle<labnet::pmu::Outcome>) {
    let l = labnet::sock::dual_stack_listener(0).unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        labnet::pmu::serve(&mut s, n, &flood).unwrap()
    });
    (port, h)
}

/// A server that reads the command and then does `reply` with the stream.
fn odd_server(
    reply: impl FnOnce(&mut std::net::TcpStream) + Send + 'static,
) -> (u16, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut cmd = [0u8; 64];
        let _ = s.read(&mut cmd);
        reply(&mut s);
    });
    (port, h)
}

fn pdc(args: &[&str]) -> Finished {
    run(BIN, args, LIMIT)
}

fn expected(n: u32) -> Vec<String> {
    (1..=n).map(pmu::message).collect()
}

#[test]
fn short_0_over_ipv6_prints_each_message_on_its_own_line() {
    let (port, server) = pmu_once(9, Vec::new());
    let r = pdc(&["::1", &port.to_string(), "CMD_short:0"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(r.msgs("RECV"), expected(9));
    assert!(r.msgs("INFO")[0].starts_with(&format!("connected to [::1]:{port} from [::1]:")));
    assert!(
        r.msgs("INFO")
            .contains(&"server closed the connection: all data received".to_owned())
    );
    let stat = &r.msgs("STAT")[0];
    let bytes: usize = expected(9).iter().map(String::len).sum();
    assert!(
        stat.starts_with(&format!("9 messages: {bytes} bytes in ")),
        "{stat}"
    );
    assert!(matches!(
        server.join().unwrap(),
        labnet::pmu::Outcome::Short { n: 9, .. }
    ));
}

#[test]
fn short_1_over_ipv4_prints_messages_one_second_apart() {
    let (port, server) = pmu_once(3, Vec::new());
    let start = std::time::Instant::now();
    let r = pdc(&["127.0.0.1", &port.to_string(), "CMD_short:1", "-4", "-v"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert_eq!(r.msgs("RECV"), expected(3));
    assert!(
        r.msgs("INFO")[0].starts_with(&format!("connected to 127.0.0.1:{port} from 127.0.0.1:"))
    );
    // One second apart, each message is its own segment and its own recv() (Q9, Q10).
    let calls = r.msgs("DEBUG");
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[0].starts_with("recv() #1 returned 18 bytes"));
    server.join().unwrap();
}

#[test]
fn ipv4_only_host_is_reached_through_a_v4_mapped_ipv6_socket() {
    let (port, server) = pmu_once(4, Vec::new());
    let r = pdc(&["127.0.0.1", &port.to_string(), "CMD_short:0"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.msgs("INFO")[0].starts_with(&format!("connected to [::ffff:127.0.0.1]:{port}")),
        "{}",
        r.stdout
    );
    assert_eq!(r.msgs("RECV"), expected(4));
    server.join().unwrap();
}

#[test]
fn flood_is_printed_whole_with_the_recv_count() {
    let flood = pmu::flood_text(200_000);
    let (port, server) = pmu_once(5, flood.clone());
    let r = pdc(&[
        "::1",
        &port.to_string(),
        "CMD_floodme",
        "-v",
        "--recv-size",
        "1024",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let recv = r.msgs("RECV");
    assert_eq!(recv.len(), 1);
    assert_eq!(recv[0].as_bytes(), &flood[..]);
    let calls = r.msgs("DEBUG");
    let sum: usize = calls
        .iter()
        .map(|c| c.split(' ').nth(3).unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(sum, flood.len());
    // 1024-byte reads cannot take fewer than 196 calls for 200,000 bytes.
    assert!(calls.len() >= 196, "{}", calls.len());
    assert_eq!(
        r.msgs("STAT")[0],
        format!(
            "the flood: 200000 bytes in {} recv() calls of up to 1024 bytes (plus the recv() that returned 0 at the close)",
            calls.len()
        )
    );
    assert_eq!(
        server.join().unwrap(),
        labnet::pmu::Outcome::Flood { bytes: 200_000 }
    );
}

#[test]
fn json_summary_counts_messages_bytes_and_recv_calls() {
    let (port, server) = pmu_once(6, Vec::new());
    let r = pdc(&["::1", &port.to_string(), "CMD_short:0", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let last = r.stdout.lines().last().unwrap();
    assert!(last.contains("\"level\":\"STAT\""), "{last}");
    assert!(last.contains("\"messages\":6"), "{last}");
    let bytes: usize = expected(6).iter().map(String::len).sum();
    assert!(last.contains(&format!("\"bytes\":{bytes}")), "{last}");
    assert!(last.contains("\"recv_calls\":"), "{last}");
    server.join().unwrap();
}

#[test]
fn error_reply_is_one_line_and_exit_1() {
    let (port, server) = odd_server(|s| {
        s.write_all(b"ERROR: unknown command\n").unwrap();
    });
    let r = pdc(&["127.0.0.1", &port.to_string(), "CMD_short:0", "-4"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "pmu-pdc-client: the PMU refused the command: ERROR: unknown command\n"
    );
    server.join().unwrap();
}

#[test]
fn server_that_closes_early_is_one_line_and_exit_1() {
    let (port, server) = odd_server(|_| {});
    let r = pdc(&["127.0.0.1", &port.to_string(), "CMD_floodme", "-4"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "pmu-pdc-client: the server closed the connection without sending anything\n"
    );
    server.join().unwrap();
}

#[test]
fn malformed_reply_is_one_line_and_exit_1() {
    let (port, server) = odd_server(|s| {
        s.write_all(b"This is PMU data 1This is PMU data 2, HELLO")
            .unwrap();
    });
    let r = pdc(&["127.0.0.1", &port.to_string(), "CMD_short:0", "-4"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.msgs("RECV"), vec!["This is PMU data 1".to_owned()]);
    assert_eq!(
        r.stderr,
        "pmu-pdc-client: protocol error: unexpected reply 'This is PMU data 2, HELLO' (expected 'This is PMU data <i>')\n"
    );
    server.join().unwrap();
}

#[test]
fn refused_port_is_one_line_and_exit_1() {
    let port = {
        let l = TcpListener::bind("[::1]:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = pdc(&["::1", &port.to_string(), "CMD_short:0"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        format!("pmu-pdc-client: connect to [::1]:{port}: connection refused (ECONNREFUSED)\n")
    );
}

#[test]
fn unreachable_host_is_one_line_and_exit_1() {
    // A fresh network namespace has only a down `lo`: every destination is unreachable, and
    // nothing can leave the machine.
    let probe = std::process::Command::new("unshare")
        .args(["-n", "true"])
        .status();
    if !labnet::netns::or_skip(match probe {
        Ok(s) if s.success() => Ok(()),
        _ => Err("cannot create a network namespace with unshare -n (run as root)".into()),
    }) {
        return;
    }
    let r = run(
        "unshare",
        &["-n", BIN, "192.0.2.1", "5003", "CMD_short:0"],
        LIMIT,
    );
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "pmu-pdc-client: connect to [::ffff:192.0.2.1]:5003: network is unreachable (ENETUNREACH)\n"
    );
}

#[test]
fn help_shows_examples_and_bad_input_exits_2() {
    let r = pdc(&["--help"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("EXAMPLES:") && r.stdout.contains("CMD_floodme"));
    for bad in [
        &["::1", "5003", "CMD_short:abc"][..],
        &["::1", "5003", "CMD_short:0", "--prot", "1"],
        &["::1", "70000", "CMD_short:0"],
        &["::1", "5003"],
    ] {
        let r = pdc(bad);
        assert_eq!(r.code, Some(2), "{bad:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains("try `pmu-pdc-client --help`"));
    }
}

/// An unknown flag is a usage error (exit 2, "unknown option"), wherever it
/// stands, never taken for a positional argument nor reported as a missing one.
#[test]
fn an_unknown_flag_is_a_usage_error_naming_it() {
    for args in [
        &["--bogus", "::1", "5003", "CMD_short:0"][..],
        &["::1", "--bogus", "5003", "CMD_short:0"],
        &["--bogus"],
    ] {
        let f = run(BIN, args, Duration::from_secs(10));
        assert_eq!(f.code, Some(2), "{args:?}: {f:?}");
        assert!(
            f.stderr.contains("unknown option '--bogus'"),
            "{args:?}: {}",
            f.stderr
        );
        assert_eq!(f.stderr.lines().count(), 1, "{args:?}: {}", f.stderr);
    }
}
