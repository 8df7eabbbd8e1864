//! Exercise 1 on the week3 topology, built for real in network namespaces: broadcast reaches
//! every host of the segment and stops at the router. Skips (with a printed reason) where the
//! process may not create namespaces, fails instead under NETLAB_REQUIRE_NETNS=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use labnet::netns::Testbed;
use testkit::proc::{Proc, json};

const BIN: &str = env!("CARGO_BIN_EXE_udp-broadcast");

fn receiver(bed: &Testbed, host: &str, args: &[&str]) -> Proc {
    let child = bed
        .spawn(host, BIN, &[&["recv", "--json"][..], args].concat())
        .unwrap();
    let p = Proc::from_child(child);
    p.wait_for("listening on");
    p
}

/// Runs a sender on `host`; returns its ephemeral source port.
fn send(bed: &Testbed, host: &str, args: &[&str]) -> u16 {
    let child = bed
        .spawn(host, BIN, &[&["send", "--json"][..], args].concat())
        .unwrap();
    let f = Proc::from_child(child).finish();
    assert!(f.status.success(), "sender on {host}: {}", f.stderr);
    let info = json(f.lines()[0]);
    info["local"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn broadcast_from_client_reaches_server_and_receiver_but_not_the_remote_segment() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::WEEK3);
    let on_segment = ["--port", "5007", "--count", "6", "--timeout", "20"];
    let server = receiver(&bed, "server", &on_segment);
    let recv = receiver(&bed, "receiver", &on_segment);
    // `remote` listens too; it stops after one datagram, which must be the unicast marker sent
    // last, routed through the router: had a broadcast crossed, it would have come first.
    let remote = receiver(
        &bed,
        "remote",
        &["--port", "5007", "--count", "1", "--timeout", "20"],
    );

    let common = ["--port", "5007", "--count", "3", "--interval", "0.05"];
    let limited = send(
        &bed,
        "client",
        &[&["--dst", "255.255.255.255"][..], &common].concat(),
    );
    let directed = send(
        &bed,
        "client",
        &[
            &["--dst", "172.20.0.255", "--message", "DIRECTED"][..],
            &common,
        ]
        .concat(),
    );
    send(
        &bed,
        "client",
        &[
            "--dst",
            "172.21.0.10",
            "--port",
            "5007",
            "--count",
            "1",
            "--message",
            "MARKER",
        ],
    );

    let want: Vec<String> = (0..3)
        .map(|i| format!("HELLO_BCAST #{i}"))
        .chain((0..3).map(|i| format!("DIRECTED #{i}")))
        .collect();
    // Each sender run gets its own ephemeral port, and every copy names the client.
    let want_src: Vec<String> = [limited; 3]
        .into_iter()
        .chain([directed; 3])
        .map(|p| format!("172.20.0.100:{p}"))
        .collect();
    assert_ne!(limited, directed);
    for (name, p) in [("server", server), ("receiver", recv)] {
        let f = p.finish();
        assert!(f.status.success(), "{name}: {}", f.stderr);
        assert_eq!(f.field("RECV", "payload"), want, "{name}");
        assert_eq!(f.field("RECV", "src"), want_src, "{name}");
        let s = f.only("STAT");
        assert_eq!(s["packets"], 6, "{name}");
        assert_eq!(s["sources"][0]["ip"], "172.20.0.100", "{name}");
    }
    let f = remote.finish();
    assert!(f.status.success(), "remote: {}", f.stderr);
    assert_eq!(
        f.field("RECV", "payload"),
        ["MARKER #0"],
        "broadcast crossed the router"
    );
}

#[test]
fn broadcast_without_so_broadcast_is_refused_with_eacces_and_exit_1() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::WEEK3);
    for dst in ["255.255.255.255", "172.20.0.255"] {
        let out = bed
            .run(
                "client",
                BIN,
                &["send", "--dst", dst, "--count", "1", "--no-broadcast-flag"],
            )
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{dst}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!(
                "udp-broadcast: send to {dst}:5007: permission denied (EACCES): SO_BROADCAST is off"
            )),
            "{stderr}"
        );
    }
}
