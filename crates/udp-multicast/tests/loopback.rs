//! Exercise 2 and TP3 part 4.1 on loopback, no root needed: multicast with TTL 0 on `lo`
//! (`--iface 127.0.0.1`), so no datagram ever leaves the host. Each test uses its own group and
//! a kernel-chosen port, so tests running in parallel never hear each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use labnet::sock::{Iface, MulticastOptions};
use testkit::proc::{Proc, json};

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_udp-multicast"))
}

/// A group of the organisation-local scope (RFC 2365) unique to this test process and test.
fn group(n: u8) -> String {
    let pid = std::process::id();
    format!("239.255.{}.{}", (pid % 250) as u8, n)
}

/// Starts a receiver joined on `lo` and waits for its join line; returns it and its port.
fn receiver(group: &str, args: &[&str]) -> (Proc, u16) {
    let mut cmd = tool();
    cmd.args([
        "recv",
        "--json",
        "--group",
        group,
        "--port",
        "0",
        "--iface",
        "127.0.0.1",
    ])
    .args(args);
    let p = Proc::spawn(cmd);
    let line = p.wait_for("joined");
    let local = json(&line)["local"].as_str().unwrap().to_owned();
    let port = local.rsplit(':').next().unwrap().parse().unwrap();
    (p, port)
}

/// Sends with TTL 0 on `lo`; returns the sender's ephemeral port.
fn send(group: &str, port: u16, args: &[&str]) -> u16 {
    let mut cmd = tool();
    cmd.args([
        "send",
        "--json",
        "--group",
        group,
        "--port",
        &port.to_string(),
    ])
    .args(["--ttl", "0", "--iface", "127.0.0.1", "--interval", "0.02"])
    .args(args);
    let f = Proc::spawn(cmd).finish();
    assert!(f.status.success(), "sender: {}", f.stderr);
    let local = f.level("INFO")[0]["local"].as_str().unwrap().to_owned();
    local.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn joined_receiver_gets_exactly_every_datagram_then_leaves_and_prints_statistics() {
    let g = group(1);
    let (r, port) = receiver(&g, &["--count", "5", "--timeout", "15"]);
    let src = send(&g, port, &["--count", "5"]);
    let f = r.finish();
    assert!(f.status.success(), "{}", f.stderr);
    let want: Vec<String> = (0..5).map(|i| format!("HELLO_MCAST #{i}")).collect();
    assert_eq!(f.field("RECV", "payload"), want);
    assert_eq!(f.field("RECV", "src"), vec![format!("127.0.0.1:{src}"); 5]);
    // Join first, leave last before the statistics: the order a capture shows IGMP in.
    let events = f.json();
    assert_eq!(events[0]["event"], "join");
    assert_eq!(events[0]["group"], g.as_str());
    assert!(
        events[0]["msg"]
            .as_str()
            .unwrap()
            .ends_with("(IGMP Membership Report sent)")
    );
    let leave = &events[events.len() - 2];
    assert_eq!(leave["event"], "leave");
    assert_eq!(
        leave["msg"],
        format!("left {g} on 127.0.0.1 at the end (count) (IGMP Leave sent)")
    );
    let s = f.only("STAT");
    assert_eq!(s["packets"], 5);
    assert_eq!(s["bytes"], 70);
    assert_eq!(s["ended"], "count");
    assert_eq!(
        s["sources"],
        serde_json::json!([{"ip": "127.0.0.1", "packets": 5, "bytes": 70, "ports": [src]}])
    );
}

#[test]
fn id_header_decodes_tv_datagrams_and_shows_short_or_binary_ones_raw() {
    let g = group(2);
    let (r, port) = receiver(&g, &["--id-header", "--count", "4", "--timeout", "15"]);
    let gip: IpAddr = g.parse().unwrap();
    let opts = MulticastOptions {
        ttl: 0,
        loopback: true,
        iface: Iface::V4(Ipv4Addr::LOCALHOST),
    };
    let tx = labnet::sock::multicast_sender(gip, &opts).unwrap();
    let datagrams: [&[u8]; 4] = [
        b"swcmTVBut soft! what light through yonder window breaks?",
        b"abc",
        b"123456\xff\xfe",
        "654321Ünïcødé".as_bytes(),
    ];
    for d in datagrams {
        tx.send_to(d, (gip, port)).unwrap();
    }
    let f = r.finish();
    assert!(f.status.success(), "{}", f.stderr);
    let recv = f.level("RECV");
    assert_eq!(recv.len(), 4, "{:?}", f.stdout);
    let src = format!("127.0.0.1:{}", tx.local_addr().unwrap().port());
    let msgs: Vec<&str> = recv.iter().map(|e| e["msg"].as_str().unwrap()).collect();
    assert_eq!(
        msgs,
        [
            format!(
                "56 bytes from {src} swcmTV: But soft! what light through yonder window breaks?"
            ),
            format!("3 bytes from {src} (no ID header: 3 bytes, shorter than the 6-byte ID) 'abc'"),
            format!("8 bytes from {src} 123456: (not UTF-8) 0xfffe"),
            format!("17 bytes from {src} 654321: Ünïcødé"),
        ]
    );
    assert_eq!(recv[0]["id"], "swcmTV");
    assert_eq!(
        recv[0]["text"],
        "But soft! what light through yonder window breaks?"
    );
    assert!(recv[1].get("id").is_none());
    assert_eq!(recv[2]["id"], "123456");
    assert_eq!(recv[2]["raw"], "0xfffe");
    assert_eq!(recv[3]["text"], "Ünïcødé");
    assert_eq!(f.only("STAT")["packets"], 4);
}

#[test]
fn sender_id_option_puts_the_tv_header_in_front() {
    let g = group(3);
    let (r, port) = receiver(&g, &["--id-header", "--count", "2", "--timeout", "15"]);
    send(
        &g,
        port,
        &["--count", "2", "--id", "123456", "--message", "hi"],
    );
    let f = r.finish();
    let texts: Vec<String> = f
        .level("RECV")
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["id"].as_str().unwrap(),
                e["text"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(texts, ["123456: hi #0", "123456: hi #1"]);
}

#[test]
fn leave_after_n_stops_delivery_and_keeps_listening_until_the_timeout() {
    let g = group(4);
    let (r, port) = receiver(
        &g,
        &["--count", "10", "--leave-after", "2", "--timeout", "3"],
    );
    send(&g, port, &["--count", "2", "--message", "BEFORE"]);
    r.wait_for("\"event\":\"leave\"");
    // Sent after the Leave: the kernel no longer delivers the group to this host.
    send(&g, port, &["--count", "3", "--message", "AFTER"]);
    let f = r.finish();
    assert!(f.status.success(), "{}", f.stderr);
    assert_eq!(f.field("RECV", "payload"), ["BEFORE #0", "BEFORE #1"]);
    let events = f.json();
    let leave = events.iter().find(|e| e["event"] == "leave").unwrap();
    assert_eq!(
        leave["msg"],
        format!(
            "left {g} on 127.0.0.1 after 2 datagrams; listening on until the timeout (IGMP Leave sent)"
        )
    );
    // One leave only: the end of reception does not leave a second time.
    assert_eq!(events.iter().filter(|e| e["event"] == "leave").count(), 1);
    assert!(
        events
            .iter()
            .any(|e| e["after_leave"] == 0 && e["level"] == "INFO")
    );
    let s = f.only("STAT");
    assert_eq!(s["ended"], "timeout");
    assert_eq!(s["packets"], 2);
}

#[test]
fn text_output_shows_source_length_and_payload() {
    let g = group(6);
    let mut cmd = tool();
    cmd.args(["recv", "--group", &g, "--port", "0", "--iface", "127.0.0.1"])
        .args(["--count", "1", "--timeout", "15"]);
    let r = Proc::spawn(cmd);
    let line = r.wait_for("joined");
    let port: u16 = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let src = send(&g, port, &["--count", "1"]);
    let f = r.finish();
    assert!(f.status.success());
    let recv: Vec<&str> = f.stdout.lines().filter(|l| l.contains("[RECV]")).collect();
    assert_eq!(recv.len(), 1);
    assert!(
        recv[0].ends_with(&format!(
            "[RECV] 14 bytes from 127.0.0.1:{src} 'HELLO_MCAST #0'"
        )),
        "{}",
        recv[0]
    );
    assert!(
        f.stdout
            .lines()
            .any(|l| l.contains("[STAT] statistics: 1 packets, 14 bytes from 1 source")),
        "{:?}",
        f.stdout
    );
}

#[test]
fn help_exits_0_with_examples() {
    let out = tool().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("EXAMPLES:"), "{help}");
    assert!(
        help.contains("udp-multicast send --group 239.1.1.1 --port 5008 --count 5 --ttl 4"),
        "{help}"
    );
}

#[test]
fn bad_flags_groups_and_ttls_exit_2_with_one_line() {
    for args in [
        &["send", "--grup", "239.1.1.1"][..],
        &["send", "--group", "10.1.1.1"],
        &["recv", "--group", "172.20.0.255"],
        &["send", "--group", "not-an-ip"],
        &["send", "--ttl", "300"],
        &["send", "--ttl", "-1"],
        &["send", "--port", "0"],
        &["recv", "--iface", "no-such-if0"],
        &["recv", "--leave-after", "3"],
        &["multicast"],
        &[],
    ] {
        let out = tool().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("udp-multicast: "), "{stderr}");
    }
}

#[test]
fn port_held_without_reuse_is_a_bind_error_naming_the_operation() {
    let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let g = group(7);
    let out = tool()
        .args([
            "recv",
            "--group",
            &g,
            "--port",
            &port,
            "--iface",
            "127.0.0.1",
        ])
        .args(["--timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "udp-multicast: bind UDP port {port} and join {g} on 127.0.0.1: address already in use (EADDRINUSE)"
        )
    );
}
