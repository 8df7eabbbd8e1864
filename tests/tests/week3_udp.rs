//! Week 3 exercise 2 as the handout runs it, across two binaries: `server` sends 5 multicast
//! datagrams with TTL 4 to 239.1.1.1:5008; `client` and `receiver` (joined with `udp-multicast`)
//! get all 5; `router`, listening on port 5008 with a plain socket (`udp-broadcast recv`) but
//! never joining, gets none; `remote`, joined but behind a router without a multicast route,
//! gets none either. Binaries come from `labnet::testkit::bin` (built on demand).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Output};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use labnet::testkit::{Testbed, bin};

const STEP: Duration = Duration::from_secs(20);

/// A child whose stdout lines arrive on a channel, so readiness is a line, not a sleep.
struct Lines {
    child: Child,
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn start(bed: &Testbed, host: &str, prog: &str, args: &[&str], ready: &str) -> Lines {
        let mut child = bed.spawn(host, bin(prog), args).unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut l = Lines {
            child,
            rx,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = l
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("{prog} on {host}: no {ready:?} ({e}); {:?}", l.seen));
            l.seen.push(line.clone());
            if line.contains(ready) {
                return l;
            }
        }
    }

    /// Waits (bounded) for the exit; returns the exit success and every stdout line.
    fn finish(mut self) -> (bool, Vec<String>) {
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "no exit: {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.rx.recv_timeout(STEP) {
            self.seen.push(line);
        }
        (status.success(), std::mem::take(&mut self.seen))
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The quoted payloads of the RECV lines: `… [RECV] 14 bytes from 172.20.0.10:40000 'X #0'`.
fn received(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l.contains("[RECV]"))
        .map(|l| {
            let from = l.split(" from ").nth(1).unwrap();
            let (src, rest) = from.split_once(' ').unwrap();
            let ip = src.rsplit_once(':').unwrap().0.to_owned();
            (ip, rest.trim_matches('\'').to_owned())
        })
        .collect()
}

fn ok(out: &Output) -> bool {
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

#[test]
fn multicast_reaches_only_joined_hosts_of_the_segment() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::WEEK3);
    let join = [
        "recv",
        "--group",
        "239.1.1.1",
        "--port",
        "5008",
        "--count",
        "5",
        "--timeout",
        "20",
    ];
    let client = Lines::start(&bed, "client", "udp-multicast", &join, "joined");
    let receiver = Lines::start(&bed, "receiver", "udp-multicast", &join, "joined");
    // Not joined: a wildcard socket on the port. It ends on its first datagram, which must be
    // the unicast marker sent after the multicast ones.
    let router = Lines::start(
        &bed,
        "router",
        "udp-broadcast",
        &["recv", "--port", "5008", "--count", "1", "--timeout", "20"],
        "listening on",
    );
    // Joined, but the router has no multicast route in this test: nothing may arrive during the
    // whole (bounded) window, which covers the sending.
    let remote = Lines::start(
        &bed,
        "remote",
        "udp-multicast",
        &[
            "recv",
            "--group",
            "239.1.1.1",
            "--port",
            "5008",
            "--iface",
            "172.21.0.10",
            "--count",
            "5",
            "--timeout",
            "3",
        ],
        "joined",
    );

    let sent = bed
        .run(
            "server",
            bin("udp-multicast"),
            &[
                "send",
                "--group",
                "239.1.1.1",
                "--port",
                "5008",
                "--count",
                "5",
                "--ttl",
                "4",
                "--interval",
                "0.05",
            ],
        )
        .unwrap();
    assert!(ok(&sent));
    let marker = bed
        .run(
            "server",
            bin("udp-broadcast"),
            &[
                "send",
                "--dst",
                "172.20.0.254",
                "--port",
                "5008",
                "--count",
                "1",
                "--message",
                "MARKER",
            ],
        )
        .unwrap();
    assert!(ok(&marker));

    let want: Vec<(String, String)> = (0..5)
        .map(|i| ("172.20.0.10".to_owned(), format!("HELLO_MCAST #{i}")))
        .collect();
    for (name, l) in [("client", client), ("receiver", receiver)] {
        let (success, lines) = l.finish();
        assert!(success, "{name}: {lines:?}");
        assert_eq!(received(&lines), want, "{name}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("[STAT] statistics: 5 packets, 70 bytes from 1 source")),
            "{name}: {lines:?}"
        );
    }
    let (success, lines) = router.finish();
    assert!(success, "router: {lines:?}");
    assert_eq!(
        received(&lines),
        [("172.20.0.10".to_owned(), "MARKER #0".to_owned())],
        "a host that did not join got multicast"
    );
    let (success, lines) = remote.finish();
    assert!(success, "remote: {lines:?}");
    assert_eq!(
        received(&lines),
        [],
        "multicast crossed a router without a route"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("statistics: 0 packets") && l.contains("ended by timeout")),
        "{lines:?}"
    );
}
