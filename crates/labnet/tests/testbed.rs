//! The namespace testbed builds the three lab topologies for real and removes everything it made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use labnet::netns::{Testbed, host_ns_files, list_namespaces};
use labnet::testbed_or_skip;
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
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for ns in &names {
        assert!(!left.contains(ns), "{ns} still present");
        assert!(
            !Path::new("/etc/netns").join(ns).exists(),
            "hosts file of {ns} left behind"
        );
        let (uts, mnt) = host_ns_files(ns);
        assert!(!uts.exists() && !mnt.exists(), "pins of {ns} left behind");
        assert!(!mounts.contains(&format!("{ns}.")), "{ns} still mounted");
    }
}

/// Output of a shell command run inside `host`, checked for success.
fn sh(bed: &Testbed, host: &str, script: &str) -> String {
    let out = bed.run(host, "sh", &["-c", script]).unwrap();
    assert!(
        out.status.success(),
        "{host}$ {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_host_has_its_own_name_and_its_lab_address_as_in_a_container() {
    let chat = testbed_or_skip!(&CHAT);
    // The chat handout's server: SERVER_IP = socket.gethostbyname(socket.gethostname()).
    let who = "import socket; n = socket.gethostname(); print(n, socket.gethostbyname(n))";
    for (host, want) in [
        ("webserver", "webserver 10.20.30.3"),
        ("client2", "client2 10.20.30.12"),
    ] {
        let out = chat.run(host, "/usr/bin/python3", &["-c", who]).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
        assert_eq!(sh(&chat, host, "hostname").trim(), host);
    }
    // The client handout looks the server up by the course's name.
    assert_eq!(
        sh(
            &chat,
            "client1",
            "getent ahostsv4 chat.ttm4200.com | head -n 1"
        )
        .split_whitespace()
        .next(),
        Some("10.20.30.3")
    );
    let tp3 = testbed_or_skip!(&TP3);
    let both = sh(&tp3, "student1", "getent ahosts tcpip.epfl.ch");
    assert!(
        both.contains("172.30.0.10 ") && both.contains("fd30::10 "),
        "{both}"
    );
    // The host's /sys shows its own interfaces (as `ip netns exec` arranges), and the machine
    // keeps its own name.
    assert_eq!(
        sh(&tp3, "student1", "ls /sys/class/net")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["eth0", "lo"]
    );
    let mine = std::process::Command::new("hostname").output().unwrap();
    assert_ne!(String::from_utf8_lossy(&mine.stdout).trim(), "student1");
}

#[test]
fn the_handouts_nc_line_prints_the_echo_and_returns() {
    let bed = testbed_or_skip!(&WEEK3);
    // A plain echo server, as the handout's: it closes when the client has sent everything.
    let server = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('', 8080))
s.listen(5)
while True:
    c, _ = s.accept()
    while (d := c.recv(1024)):
        c.sendall(d)
    c.close()
"#;
    let child = bed
        .spawn("server", "/usr/bin/python3", &["-c", server])
        .unwrap();
    bed.track(child);
    let ready = labnet::netns::wait_until(std::time::Duration::from_secs(10), || {
        bed.run("client", "nc", &["-z", "server", "8080"])
            .ok()?
            .status
            .success()
            .then_some(())
    });
    assert!(ready.is_some(), "echo server did not start");
    let started = std::time::Instant::now();
    let out = sh(
        &bed,
        "client",
        "timeout 20 sh -c \"echo 'DIRECT TEST' | nc server 8080\"",
    );
    assert_eq!(out, "DIRECT TEST\n");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "nc took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_shared_folder_appears_at_the_same_place_in_every_host() {
    let bed = testbed_or_skip!(&WEEK3);
    let src = std::env::temp_dir().join(format!("netlab-share-{}", std::process::id()));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("from-machine.txt"), "hello").unwrap();
    // A folder inside the shared one stands in for /lab: the test must not create /lab itself.
    let outside = std::env::temp_dir().join(format!("netlab-at-{}", std::process::id()));
    bed.share_dir(&src, &outside).unwrap();
    let seen = sh(
        &bed,
        "client",
        &format!("cat {}/from-machine.txt", outside.display()),
    );
    assert_eq!(seen, "hello");
    sh(
        &bed,
        "remote",
        &format!("echo capture > {}/from-remote.txt", outside.display()),
    );
    assert_eq!(
        std::fs::read_to_string(src.join("from-remote.txt")).unwrap(),
        "capture\n"
    );
    // Outside the hosts the folder stays empty: the mount lives in their namespaces only.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    drop(bed);
    let _ = std::fs::remove_dir_all(&src);
    let _ = std::fs::remove_dir(&outside);
}

/// The handouts' tools, as a student types them in a host: traceroute shows the router as the
/// first hop to the remote segment, netstat lists a listening socket, openssl and Python's
/// websocket-client (TP3 part 5) are there.
#[test]
fn the_handouts_tools_work_in_a_host() {
    let bed = testbed_or_skip!(&WEEK3);
    // The router's address on the client's segment (the hosts' route to 172.21.0.0/24 goes there).
    let router = WEEK3.host("router").unwrap().links[0].ipv4;
    assert!(router.to_string().starts_with("172.20.0."), "{router}");
    let hops = sh(&bed, "client", "traceroute -n -q 1 -w 2 -m 3 172.21.0.10");
    let lines: Vec<&str> = hops.lines().skip(1).collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.contains(&format!(" {router} "))),
        "first hop is the router: {hops}"
    );
    assert!(
        lines.get(1).is_some_and(|l| l.contains("172.21.0.10 ")),
        "second hop is remote: {hops}"
    );
    let listening = sh(
        &bed,
        "server",
        "python3 -c \"import socket,subprocess; s=socket.socket(); s.bind(('', 8099)); s.listen(); print(subprocess.run(['netstat', '-tln'], capture_output=True, text=True).stdout)\"",
    );
    assert!(
        listening
            .lines()
            .any(|l| l.contains(":8099") && l.contains("LISTEN")),
        "netstat -tln: {listening}"
    );
    assert!(sh(&bed, "client", "openssl version").starts_with("OpenSSL "));
    assert_eq!(
        sh(
            &bed,
            "client",
            "python3 -c 'import websocket; print(websocket.WebSocket.__name__)'"
        ),
        "WebSocket\n"
    );
}
