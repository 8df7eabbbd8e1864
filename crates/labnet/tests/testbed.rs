//! The namespace testbed builds the SPEC topologies for real and removes everything it made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use labnet::testbed_or_skip;
use labnet::testkit::{Testbed, list_namespaces};
use labnet::topo::{CHAT, TP3, WEEK3};

fn ping(bed: &Testbed, from: &str, to: &str) -> bool {
    bed.run(from, "ping", &["-c", "1", "-W", "2", to])
        .unwrap()
        .status
        .success()
}

#[test]
fn week3_hosts_reach_each_other_and_the_remote_segment_through_the_router() {
    let bed = testbed_or_skip!(&WEEK3);
    assert!(ping(&bed, "client", "172.20.0.10"), "client -> server");
    assert!(ping(&bed, "receiver", "172.20.0.100"), "receiver -> client");
    // Routed: client -> router -> remote, and the names of the lab resolve inside hosts.
    assert!(
        ping(&bed, "client", "172.21.0.10"),
        "client -> remote via router"
    );
    assert!(ping(&bed, "remote", "server"), "remote -> server by name");
    let routes = bed.run("client", "ip", &["route"]).unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(routes.contains("default via 172.20.0.1"), "{routes}");
    assert!(routes.contains("224.0.0.0/4 dev eth0"), "{routes}");
}

#[test]
fn chat_and_tp3_have_ipv6_on_every_host() {
    let chat = testbed_or_skip!(&CHAT);
    assert!(ping(&chat, "client1", "fd00::3"));
    assert!(ping(&chat, "client3", "webserver"));
    let tp3 = testbed_or_skip!(&TP3);
    assert!(ping(&tp3, "student1", "fd30::10"));
    assert!(ping(&tp3, "student2", "172.30.0.10"));
}

#[test]
fn multicast_route_is_installed_on_the_router() {
    let bed = testbed_or_skip!(&WEEK3);
    bed.enable_mroute(IpAddr::V4(Ipv4Addr::new(239, 1, 1, 1)))
        .unwrap();
    let out = bed
        .run(
            "router",
            "smcroutectl",
            &[
                "-p",
                "-i",
                &bed.ns("router"),
                "-u",
                &format!("/run/netlab/{}/smcroute.sock", bed.ns("router")),
                "show",
                "routes",
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("239.1.1.1"), "{text}");
}

#[test]
fn drop_removes_namespaces_processes_and_hosts_files_even_after_a_panic() {
    let names: Vec<String>;
    {
        let bed = testbed_or_skip!(&WEEK3);
        names = WEEK3.hosts.iter().map(|h| bed.ns(h.name)).collect();
        let child = bed.spawn("server", "sleep", &["30"]).unwrap();
        bed.track(child);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _moved = bed;
            panic!("a failing test");
        }));
        assert!(result.is_err());
    }
    let left = list_namespaces();
    for ns in &names {
        assert!(!left.contains(ns), "{ns} still present");
        assert!(
            !Path::new("/etc/netns").join(ns).exists(),
            "hosts file of {ns} left behind"
        );
    }
}
