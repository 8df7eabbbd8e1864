//! Exercise 2 on the week3 topology, built for real in network namespaces: the TTL decides
//! whether a datagram crosses the router (static multicast route by smcroute), IP_MULTICAST_LOOP
//! decides whether the sender's own host gets a copy, and IPv6 groups work with MLD on `eth0`.
//! Skips (with a printed reason) where the process may not create namespaces, fails instead under
//! NETLAB_REQUIRE_NETNS=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use labnet::netns::Testbed;
use testkit::proc::{Finished, Proc, json};

const BIN: &str = env!("CARGO_BIN_EXE_udp-multicast");

/// Starts a joined receiver on `host` and waits for its join line.
fn receiver(bed: &Testbed, host: &str, args: &[&str]) -> Proc {
    let child = bed
        .spawn(host, BIN, &[&["recv", "--json"][..], args].concat())
        .unwrap();
    let p = Proc::from_child(child);
    p.wait_for("joined");
    p
}

/// Runs a sender on `host` to completion; returns its ephemeral source port.
fn send(bed: &Testbed, host: &str, args: &[&str]) -> u16 {
    let child = bed
        .spawn(
            host,
            BIN,
            &[&["send", "--json", "--interval", "0.05"][..], args].concat(),
        )
        .unwrap();
    let f = Proc::from_child(child).finish();
    assert!(f.status.success(), "sender on {host}: {}", f.stderr);
    let local = json(f.lines()[0])["local"].as_str().unwrap().to_owned();
    local.rsplit(':').next().unwrap().parse().unwrap()
}

fn seq(message: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{message} #{i}")).collect()
}

fn finished(p: Proc, name: &str) -> Finished {
    let f = p.finish();
    assert!(f.status.success(), "{name}: {}", f.stderr);
    f
}

#[test]
fn ttl_1_stops_at_the_router_and_ttl_2_crosses_it() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::WEEK3);
    bed.enable_mroute(IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)))
        .unwrap();
    let base = ["--group", "239.1.1.1", "--port", "5008", "--timeout", "20"];
    // `client` proves the TTL 1 datagrams were really sent on the first segment.
    let client = receiver(&bed, "client", &[&base[..], &["--count", "10"]].concat());
    let remote = receiver(
        &bed,
        "remote",
        &[&base[..], &["--count", "5", "--iface", "172.21.0.10"]].concat(),
    );
    let send_base = ["--group", "239.1.1.1", "--port", "5008", "--count", "5"];
    let p1 = send(
        &bed,
        "server",
        &[&send_base[..], &["--ttl", "1", "--message", "TTL1"]].concat(),
    );
    let p2 = send(
        &bed,
        "server",
        &[&send_base[..], &["--ttl", "2", "--message", "TTL2"]].concat(),
    );

    let c = finished(client, "client");
    let want: Vec<String> = seq("TTL1", 5).into_iter().chain(seq("TTL2", 5)).collect();
    assert_eq!(c.field("RECV", "payload"), want);
    // remote stops after 5: had a TTL 1 datagram crossed, it would be among them, first.
    let r = finished(remote, "remote");
    assert_eq!(r.field("RECV", "payload"), seq("TTL2", 5));
    // Forwarded multicast keeps its source address: the router is no proxy.
    assert_eq!(r.field("RECV", "src"), vec![format!("172.20.0.10:{p2}"); 5]);
    assert_ne!(p1, p2);
}

#[test]
fn no_loop_keeps_the_senders_own_host_from_getting_a_copy() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::WEEK3);
    let base = ["--group", "239.1.1.1", "--port", "5008", "--timeout", "20"];
    // On the sender's own host: ends at the first datagram, which must be the marker sent last.
    let own = receiver(&bed, "client", &[&base[..], &["--count", "1"]].concat());
    let other = receiver(&bed, "receiver", &[&base[..], &["--count", "4"]].concat());
    let send_base = ["--group", "239.1.1.1", "--port", "5008", "--ttl", "1"];
    send(
        &bed,
        "client",
        &[
            &send_base[..],
            &["--count", "3", "--no-loop", "--message", "NOLOOP"],
        ]
        .concat(),
    );
    send(
        &bed,
        "client",
        &[
            &send_base[..],
            &["--count", "1", "--loop", "--message", "MARKER"],
        ]
        .concat(),
    );
    assert_eq!(
        finished(own, "client").field("RECV", "payload"),
        ["MARKER #0"]
    );
    let want: Vec<String> = seq("NOLOOP", 3)
        .into_iter()
        .chain(seq("MARKER", 1))
        .collect();
    assert_eq!(finished(other, "receiver").field("RECV", "payload"), want);
}

#[test]
fn ipv6_group_on_eth0_reaches_a_joined_host_over_link_local_addresses() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::WEEK3);
    // week3 has no global IPv6 addresses: the kernel's link-local fe80:: address on eth0 is the
    // source, and IPV6_MULTICAST_IF picks eth0 (no route for ff15::/16 is needed then).
    // The kernel runs duplicate-address detection on the link-local address for about a
    // second after eth0 comes up; until it ends, the address is "tentative" and cannot be a
    // source (sendto fails with EADDRNOTAVAIL). Wait for it instead of sleeping.
    for host in ["client", "receiver"] {
        let ready = testkit::wait_until(Duration::from_secs(10), || {
            let out = bed
                .run(
                    host,
                    "ip",
                    &["-6", "addr", "show", "dev", "eth0", "scope", "link"],
                )
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (text.contains("inet6 fe80::") && !text.contains("tentative")).then_some(())
        });
        assert!(ready.is_some(), "no usable link-local address on {host}");
    }
    let rx = receiver(
        &bed,
        "receiver",
        &[
            "--group",
            "ff15::1234",
            "--port",
            "5008",
            "--iface",
            "eth0",
            "--count",
            "5",
            "--timeout",
            "20",
        ],
    );
    let first = json(&rx.wait_for("joined"));
    assert!(
        first["msg"]
            .as_str()
            .unwrap()
            .ends_with("(MLD Report sent)"),
        "{first}"
    );
    let port = send(
        &bed,
        "client",
        &[
            "--group",
            "ff15::1234",
            "--port",
            "5008",
            "--iface",
            "eth0",
            "--ttl",
            "1",
            "--count",
            "5",
        ],
    );
    let f = finished(rx, "receiver");
    assert_eq!(f.field("RECV", "payload"), seq("HELLO_MCAST", 5));
    for src in f.field("RECV", "src") {
        assert!(src.starts_with("[fe80::"), "{src}");
        assert!(src.ends_with(&format!("]:{port}")), "{src}");
    }
    let s = f.only("STAT");
    assert_eq!(s["packets"], 5);
    let leave = f
        .json()
        .into_iter()
        .find(|e| e["event"] == "leave")
        .unwrap();
    assert!(leave["msg"].as_str().unwrap().ends_with("(MLD Done sent)"));
}
