//! A name lookup must never stall the event loop. With a resolver that never
//! answers, a client of a tunnel whose target is a name froze an unrelated tunnel's traffic for
//! 6 s (the lookup ran on the loop thread).
//!
//! The resolver that never answers lives in a network namespace this test creates, with only
//! `lo`: its `/etc/resolv.conf` (bind-mounted by `ip netns exec` from
//! `/etc/netns/<ns>/resolv.conf`) names 127.0.0.53, where the role holds a UDP socket on port 53
//! that never reads, so queries get neither an answer nor an ICMP error. No query leaves the
//! namespace. The tunnel, its echo target and the clients run inside it: this test binary
//! re-executed as `role` (as in `tests/tests/week3_tunnel.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use labnet::netns::{TEST_PREFIX, delete_ns};
use testkit::proc::{Proc, output};

const BIN: &str = env!("CARGO_BIN_EXE_tcp-tunnel");
const ROLE: &str = "NETLAB_TUNNEL_RESOLVER_ROLE";
/// Not in any hosts file; only DNS could answer, and DNS never does here.
const NAME: &str = "blackhole.netlab.test";
/// How long the role measures round trips.
const MEASURE: Duration = Duration::from_secs(8);

/// Removes the namespace (and its /etc/netns files) when the test ends, also on failure.
struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        delete_ns(&self.0);
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_hanging_lookup_does_not_stall_an_unrelated_tunnel() {
    if !labnet::netns::netns_or_skip() {
        return;
    }
    labnet::netns::sweep_stale_test_namespaces();
    let ns = Ns(format!("{TEST_PREFIX}{}dns", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    let etc = Path::new("/etc/netns").join(&ns.0);
    fs::create_dir_all(&etc).unwrap();
    // A lookup waits 3 s per try, two tries: 6 s, as in the probe.
    fs::write(
        etc.join("resolv.conf"),
        "nameserver 127.0.0.53\noptions timeout:3 attempts:2\n",
    )
    .unwrap();
    let me = std::env::current_exe().unwrap();
    let out = output(
        Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(me)
            .args(["--exact", "role", "--ignored", "--nocapture"])
            .env(ROLE, "stall"),
        b"",
        Duration::from_secs(90),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "role failed:\n{stdout}\n{stderr}");
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}\n{stderr}"));
    eprintln!("{result}");
    let max_ms: f64 = result
        .split_whitespace()
        .find_map(|w| w.strip_prefix("max_rtt_ms="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        max_ms < 500.0,
        "an unrelated tunnel stalled {max_ms} ms during the lookup: {result}"
    );
}

/// Runs inside the namespace: an echo target, the tunnel with a name target and an address
/// target, a client of the name tunnel, and round trips through the other tunnel meanwhile.
#[test]
#[ignore = "helper role, started inside a namespace by a_hanging_lookup_does_not_stall_an_unrelated_tunnel"]
fn role() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    // The resolver that never answers: it holds the port, so no ICMP error comes back either.
    let _dns = std::net::UdpSocket::bind("127.0.0.53:53").unwrap();
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    thread::spawn(move || {
        for s in echo.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let named = format!("127.0.0.1:0={NAME}:80");
    let direct = format!("127.0.0.1:0={echo_addr}");
    let t = Proc::start(
        BIN,
        &["-L", &named, "-L", &direct, "--connect-timeout", "10"],
    );
    let addrs = t.listening(2);
    let started = Instant::now();
    let mut rtts: Vec<Duration> = Vec::new();
    let mut s = TcpStream::connect(addrs[1]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut round_trip = |s: &mut TcpStream| {
        let at = Instant::now();
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        rtts.push(at.elapsed());
    };
    round_trip(&mut s);
    // A client of the name tunnel: the tunnel must look the name up now.
    let mut victim = TcpStream::connect(addrs[0]).unwrap();
    victim
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    while started.elapsed() < MEASURE {
        round_trip(&mut s);
        thread::sleep(Duration::from_millis(50));
    }
    s.shutdown(Shutdown::Write).unwrap();
    // The name tunnel's client is closed once the lookup fails (6 s), not served.
    let mut rest = Vec::new();
    let closed_after = match victim.read_to_end(&mut rest) {
        Ok(_) => format!("{:.1}", started.elapsed().as_secs_f64()),
        Err(e) => format!("error:{}", e.kind()),
    };
    let max = rtts.iter().max().copied().unwrap_or_default();
    let resolve_lines = t.count("resolve");
    println!(
        "RESULT max_rtt_ms={:.1} round_trips={} name_client_closed_after_s={closed_after} \
         resolve_log_lines={resolve_lines}",
        max.as_secs_f64() * 1000.0,
        rtts.len()
    );
    assert!(rest.is_empty(), "the name tunnel's client got bytes");
}
