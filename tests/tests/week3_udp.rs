//! Week 3 exercise 2 as the handout runs it, across two binaries: `server` sends 5 multicast
//! datagrams with TTL 4 to 239.1.1.1:5008; `client` and `receiver` (joined with `udp-multicast`)
//! get all 5; `router`, listening on port 5008 with a plain socket (`udp-broadcast recv`) but
//! never joining, gets none; `remote`, joined but behind a router without a multicast route,
//! gets none either. Binaries come from `testkit::bin` (built on demand).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use labnet::netns::Testbed;
use testkit::bin;
use testkit::proc::Proc;

/// Starts `prog args…` in `host` and waits for its `ready` line (readiness is a line, not a
/// sleep).
fn start(bed: &Testbed, host: &str, prog: &str, args: &[&str], ready: &str) -> Proc {
    let p = Proc::from_child(bed.spawn(host, bin(prog), args).unwrap())
        .named(&format!("{prog} on {host}"));
    p.wait_for(ready);
    p
}

/// The quoted payloads of the RECV lines: `… [RECV] 14 bytes from 172.20.0.10:40000 'X #0'`.
fn received(lines: &[&str]) -> Vec<(String, String)> {
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
    let client = start(&bed, "client", "udp-multicast", &join, "joined");
    let receiver = start(&bed, "receiver", "udp-multicast", &join, "joined");
    // Not joined: a wildcard socket on the port. It ends on its first datagram, which must be
    // the unicast marker sent after the multicast ones.
    let router = start(
        &bed,
        "router",
        "udp-broadcast",
        &["recv", "--port", "5008", "--count", "1", "--timeout", "20"],
        "listening on",
    );
    // Joined, but the router has no multicast route in this test: nothing may arrive during the
    // whole (bounded) window, which covers the sending.
    let remote = start(
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
        let f = l.finish();
        let (success, lines) = (f.status.success(), f.lines());
        assert!(success, "{name}: {lines:?}");
        assert_eq!(received(&lines), want, "{name}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("[STAT] statistics: 5 packets, 70 bytes from 1 source")),
            "{name}: {lines:?}"
        );
    }
    let f = router.finish();
    let (success, lines) = (f.status.success(), f.lines());
    assert!(success, "router: {lines:?}");
    assert_eq!(
        received(&lines),
        [("172.20.0.10".to_owned(), "MARKER #0".to_owned())],
        "a host that did not join got multicast"
    );
    let f = remote.finish();
    let (success, lines) = (f.status.success(), f.lines());
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
