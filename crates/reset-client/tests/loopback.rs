//! `reset-client` against scripted UDP reset servers written here, on loopback (port 0).
//!
//! Both families at once need a host name with an IPv4 and an IPv6 address, which this machine's
//! `localhost` may not have: those cases run against `lab-server` in the tp3 namespaces
//! (`tests/tests/tp3_namespaces.rs`). Here each family is checked on its own, plus loss,
//! stale replies and the failure modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testkit::proc::{Finished, run};

const BIN: &str = env!("CARGO_BIN_EXE_reset-client");
const LIMIT: Duration = Duration::from_secs(30);

/// A scripted server: for request number i (from 0) it sends back `script(i, request)`.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Vec<u8>>>>,
}

impl Server {
    fn start(bind: &str, script: impl Fn(usize, &[u8]) -> Vec<Vec<u8>> + Send + 'static) -> Server {
        let s = UdpSocket::bind(bind).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let port = s.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            let end = Instant::now() + Duration::from_secs(25);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                for reply in script(seen.len(), &buf[..n]) {
                    s.send_to(&reply, from).unwrap();
                }
                seen.push(buf[..n].to_vec());
            }
            seen
        });
        Server {
            port,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the server and returns every request it got.
    fn requests(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

fn client(host: &str, port: u16, extra: &[&str]) -> Finished {
    let port = port.to_string();
    let mut args = vec![host, "--port", &port];
    args.extend_from_slice(extra);
    run(BIN, &args, LIMIT)
}

fn answer_all(_: usize, _: &[u8]) -> Vec<Vec<u8>> {
    vec![b"OFFSET=7".to_vec()]
}

#[test]
fn ipv4_server_answers_and_the_family_is_reported() {
    let server = Server::start("127.0.0.1:0", answer_all);
    let r = client("127.0.0.1", server.port, &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.msgs("INFO"),
        vec!["127.0.0.1 has no IPv6 address: sending over IPv4 only".to_owned()]
    );
    assert_eq!(
        r.msgs("SEND"),
        vec![format!("RESET:20 attempt 1 to 127.0.0.1:{}", server.port)]
    );
    let recv = r.msgs("RECV");
    assert_eq!(recv.len(), 1);
    assert!(
        recv[0].starts_with(&format!(
            "OFFSET=7 over IPv4 from 127.0.0.1:{} after 1 attempt (",
            server.port
        )),
        "{}",
        recv[0]
    );
    assert_eq!(server.requests(), vec![b"RESET:20".to_vec()]);
}

#[test]
fn ipv6_server_answers_and_the_family_is_reported() {
    let server = Server::start("[::1]:0", answer_all);
    let r = client("::1", server.port, &["--n", "3600", "--json"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let recv = r
        .stdout
        .lines()
        .find(|l| l.contains("\"level\":\"RECV\""))
        .unwrap();
    assert!(recv.contains("\"family\":\"IPv6\""), "{recv}");
    assert!(recv.contains("\"offset\":7"), "{recv}");
    assert_eq!(server.requests(), vec![b"RESET:3600".to_vec()]);
}

#[test]
fn dropped_requests_are_retransmitted_until_answered() {
    // The first two requests are "lost" (no answer), the third is acknowledged.
    let server = Server::start("127.0.0.1:0", |i, _| {
        if i < 2 {
            vec![]
        } else {
            vec![b"OFFSET=3".to_vec()]
        }
    });
    let r = client("127.0.0.1", server.port, &["--timeout", "0.1"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(r.msgs("SEND").len(), 3);
    assert_eq!(
        r.msgs("WARN"),
        vec!["no answer within 0.1 s: retransmitting".to_owned(); 2]
    );
    assert!(r.msgs("RECV")[0].contains("after 3 attempts"));
    assert!(
        r.msgs("STAT")[0]
            .starts_with("1 reset acknowledged (IPv4 1): 3 attempts, 3 datagrams sent, mean 3.000")
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn stale_duplicate_is_drained_before_the_next_request() {
    // Run 1 gets OFFSET=1 twice (a duplicate); run 2 is answered OFFSET=2. Without the drain,
    // run 2 would take the queued duplicate for its answer.
    let server = Server::start("127.0.0.1:0", |i, _| match i {
        0 => vec![b"OFFSET=1".to_vec(), b"OFFSET=1".to_vec()],
        _ => {
            std::thread::sleep(Duration::from_millis(30));
            vec![b"OFFSET=2".to_vec()]
        }
    });
    let r = client(
        "127.0.0.1",
        server.port,
        &["--runs", "2", "--timeout", "0.5"],
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let recv = r.msgs("RECV");
    assert!(recv[0].starts_with("OFFSET=1 "), "{recv:?}");
    assert!(recv[1].starts_with("OFFSET=2 "), "{recv:?}");
    assert!(
        r.msgs("DEBUG")[0].starts_with("discarded a late IPv4 reply 'OFFSET=1'"),
        "{}",
        r.stdout
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn runs_give_mean_loss_estimate_and_histogram() {
    // Every second request is dropped: 2 attempts per reset, p = 0.5 exactly.
    let server = Server::start("[::1]:0", |i, _| {
        if i % 2 == 0 {
            vec![]
        } else {
            vec![b"OFFSET=0".to_vec()]
        }
    });
    let r = client("::1", server.port, &["--runs", "10", "--timeout", "0.05"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let stat = r.msgs("STAT");
    assert_eq!(
        stat[0],
        "10 resets acknowledged (IPv6 10): 20 attempts, 20 datagrams sent, mean 2.000 attempts per reset"
    );
    assert_eq!(stat[1], "estimated loss probability p = 1 - 1/mean = 0.500");
    assert_eq!(stat[2], format!("  2 attempts | {} 10", "#".repeat(50)));
    assert_eq!(stat.len(), 3);
    assert_eq!(server.requests().len(), 20);
}

#[test]
fn malformed_reply_is_a_warning_and_the_wait_goes_on() {
    let server = Server::start("127.0.0.1:0", |_, _| {
        vec![b"OFFSET=abc".to_vec(), b"OFFSET=5".to_vec()]
    });
    let r = client("127.0.0.1", server.port, &[]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.msgs("WARN"),
        vec!["ignoring a malformed reply over IPv4: bad offset 'abc'".to_owned()]
    );
    assert!(r.msgs("RECV")[0].starts_with("OFFSET=5 over IPv4"));
    server.requests();
}

#[test]
fn error_reply_is_one_line_and_exit_1() {
    let server = Server::start("127.0.0.1:0", |_, _| vec![b"ERROR: bad number\n".to_vec()]);
    let r = client("127.0.0.1", server.port, &[]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "reset-client: the PMU answered 'ERROR: bad number' over IPv4\n"
    );
    server.requests();
}

#[test]
fn refused_port_is_one_line_and_exit_1() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = client("127.0.0.1", port, &["--timeout", "0.1"]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_eq!(
        r.stderr,
        format!(
            "reset-client: no reset server at 127.0.0.1 port {port}: every family answered ICMP port unreachable 3 times\n"
        )
    );
}

#[test]
fn silent_server_gives_up_after_max_attempts() {
    let server = Server::start("127.0.0.1:0", |_, _| vec![]);
    let r = client(
        "127.0.0.1",
        server.port,
        &["--timeout", "0.05", "--max-attempts", "4"],
    );
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr,
        "reset-client: no answer from 127.0.0.1 after 4 attempts\n"
    );
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn help_shows_examples_and_bad_input_exits_2() {
    let r = run(BIN, &["--help"], LIMIT);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("EXAMPLES:") && r.stdout.contains("--runs 100"));
    for bad in [
        &["localhost", "--nn", "3"][..],
        &["localhost", "--n", "-1"],
        &[],
    ] {
        let r = run(BIN, bad, LIMIT);
        assert_eq!(r.code, Some(2), "{bad:?}");
        assert_eq!(r.stderr.lines().count(), 1);
    }
}

/// An unknown flag is a usage error (exit 2, "unknown option"), wherever it
/// stands, never taken for a positional argument nor reported as a missing one.
#[test]
fn an_unknown_flag_is_a_usage_error_naming_it() {
    for args in [
        &["--bogus", "127.0.0.1"][..],
        &["127.0.0.1", "--bogus"],
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
