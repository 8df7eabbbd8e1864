//! Week 3: exercise 1 / demo 1 (broadcast), exercise 2 / demo 2 (multicast),
//! exercise 3 / demo 3 (tunnel), and the exercise 4 observations read from their captures.
//!
//! Each demo is a short list of steps (bring the lab up, start the receivers or servers, run the
//! student's command, show what it printed, check what the handout asks to observe); the steps
//! below it print exactly what a student would see, in that order.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use labnet::error::Context as _;
use labnet::pcap;
use labnet::topo::{self, WEEK3};
use labnet::{Error, Result};

use super::ctx::{Ctx, NEEDS_NETNS, args, line, recv_lines, secs};
use crate::capture::Capture;
use crate::lab::Site;
use crate::proc::Bg;

/// Pause between two datagrams of a sender: quick, but slow enough to watch.
const INTERVAL: Duration = Duration::from_millis(200);
const LIMIT: Duration = Duration::from_secs(20);

fn payloads(out: &str) -> Vec<String> {
    recv_lines(out).into_iter().map(|r| r.text).collect()
}

/// Demo 1 / exercise 1: two receivers get the same broadcasts; the router keeps them in.
pub fn broadcast(ctx: &mut Ctx) -> Result<()> {
    let site = ctx.bring_up(&WEEK3)?;
    let filter = format!("udp port {}", topo::BROADCAST_PORT);
    let cap = ctx.capture(&site, "receiver", &filter, "broadcast.pcap");
    let receivers = start_broadcast_receivers(ctx, &site)?;
    send_broadcasts(ctx, &site)?;
    let heard = collect_broadcasts(ctx, &site, receivers)?;
    check_broadcasts(ctx, &site, &heard);
    check_router_keeps_broadcast(ctx, heard.remote.as_deref());
    send_without_so_broadcast(ctx, &site)?;
    check_broadcast_capture(ctx, cap);
    Ok(())
}

/// Where a broadcast goes: the limited broadcast address, or loopback's directed one.
fn broadcast_dst(site: &Site) -> &'static str {
    if site.netns() {
        "255.255.255.255"
    } else {
        "127.255.255.255"
    }
}

/// The receivers of demo 1: client and receiver on the segment, remote behind the router.
struct Receivers {
    local: Vec<Bg>,
    remote: Option<Bg>,
}

fn start_broadcast_receivers(ctx: &mut Ctx, site: &Site) -> Result<Receivers> {
    let port = topo::BROADCAST_PORT.to_string();
    let recv_args = args(&["recv", "--port", &port, "--count", "10", "--timeout", "15"]);
    let mut local = Vec::new();
    for host in ["client", "receiver"] {
        ctx.r
            .command(&site.display(host), &line("udp-broadcast", &recv_args));
        local.push(site.spawn(host, "udp-broadcast", &recv_args)?);
    }
    site.await_udp(
        "client",
        topo::BROADCAST_PORT,
        if site.netns() { 1 } else { 2 },
        LIMIT,
    )?;
    site.await_udp("receiver", topo::BROADCAST_PORT, 1, LIMIT)?;
    let mut remote = None;
    if site.netns() {
        let a = args(&["recv", "--port", &port, "--count", "10", "--timeout", "4"]);
        ctx.r.command(
            &site.display("remote"),
            &format!("{}    # behind the router", line("udp-broadcast", &a)),
        );
        remote = Some(site.spawn("remote", "udp-broadcast", &a)?);
        site.await_udp("remote", topo::BROADCAST_PORT, 1, LIMIT)?;
    }
    Ok(Receivers { local, remote })
}

/// The sender, run twice from the client (a new socket, so a new source port, each time).
fn send_broadcasts(ctx: &mut Ctx, site: &Site) -> Result<()> {
    let port = topo::BROADCAST_PORT.to_string();
    let mut send_args = args(&[
        "send",
        "--dst",
        broadcast_dst(site),
        "--port",
        &port,
        "--count",
        "5",
        "--interval",
        &secs(INTERVAL),
    ]);
    if !site.netns() {
        send_args.extend(args(&["--bind", "127.0.0.100"]));
    }
    for run in 1..=2 {
        ctx.r.command(
            &site.display("client"),
            &format!("{}    # run {run} of 2", line("udp-broadcast", &send_args)),
        );
        let (st, out, err) = site.run("client", "udp-broadcast", &send_args, LIMIT)?;
        ctx.r.output(&out, 3);
        if !st.is_some_and(|s| s.success()) {
            return Err(Error::msg(format!("the sender failed: {}", err.trim())));
        }
    }
    Ok(())
}

/// What the receivers printed: client and receiver, and remote (in namespaces).
struct Heard {
    client: String,
    receiver: String,
    remote: Option<String>,
}

fn collect_broadcasts(ctx: &mut Ctx, site: &Site, rx: Receivers) -> Result<Heard> {
    let mut outs = Vec::new();
    for (host, mut bg) in ["client", "receiver"].into_iter().zip(rx.local) {
        bg.finish(LIMIT)?;
        ctx.r.say(&format!("  {} printed:", site.display(host)));
        ctx.r.output(&bg.stdout(), 4);
        outs.push(bg.stdout());
    }
    let remote = match rx.remote {
        Some(mut bg) => {
            bg.finish(LIMIT)?;
            Some(bg.stdout())
        }
        None => None,
    };
    let mut outs = outs.into_iter();
    Ok(Heard {
        client: outs.next().unwrap_or_default(),
        receiver: outs.next().unwrap_or_default(),
        remote,
    })
}

fn check_broadcasts(ctx: &mut Ctx, site: &Site, heard: &Heard) {
    ctx.r.observe("both receivers print the same ten datagrams; the source port is ephemeral and new for each sender run; the source address is the client's");
    let a = payloads(&heard.client);
    let b = payloads(&heard.receiver);
    ctx.r.check(
        "E1",
        "both receivers display datagrams with identical content",
        if a.len() == 10 && a == b {
            Ok(format!(
                "{} identical datagrams on each ('{}' … '{}')",
                a.len(),
                a[0],
                a[9]
            ))
        } else {
            Err(format!(
                "client got {} datagrams, receiver {}; identical: {}",
                a.len(),
                b.len(),
                a == b
            ))
        },
    );
    let srcs: Vec<_> = recv_lines(&heard.receiver)
        .into_iter()
        .filter_map(|r| r.src)
        .collect();
    let ports: BTreeSet<u16> = srcs.iter().map(|s| s.port()).collect();
    ctx.r.check(
        "E1",
        "the source port is ephemeral (>= 1024) and new for each of the 2 sender runs",
        // One socket per run: exactly two ports, each in the ephemeral range.
        if ports.len() == 2 && ports.iter().all(|p| *p >= 1024) {
            Ok(format!("source ports {ports:?}"))
        } else {
            Err(format!("source ports {ports:?} (want 2 ports >= 1024)"))
        },
    );
    let want_ip = IpAddr::V4(if site.netns() {
        site.addr("client")
    } else {
        Ipv4Addr::new(127, 0, 0, 100)
    });
    ctx.r.check(
        "E1",
        "the receiver output shows the sender's IP",
        if srcs.len() == 10 && srcs.iter().all(|s| s.ip() == want_ip) {
            Ok(format!("all {} datagrams from {want_ip}", srcs.len()))
        } else {
            Err(format!("sources {srcs:?}, expected {want_ip}"))
        },
    );
}

/// Broadcast stays on its segment: week3_remote, behind the router, hears nothing.
fn check_router_keeps_broadcast(ctx: &mut Ctx, remote: Option<&str>) {
    let stops = "the router does not forward broadcast to the other segment";
    match remote {
        Some(out) => {
            let got = payloads(out).len();
            ctx.r.check(
                "E1",
                stops,
                if got == 0 {
                    Ok("week3_remote (172.21.0.10) received nothing".into())
                } else {
                    Err(format!("week3_remote received {got} datagrams"))
                },
            );
        }
        None => ctx.r.not_shown("E1", stops, NEEDS_NETNS),
    }
}

/// The same send without SO_BROADCAST: the kernel refuses it.
fn send_without_so_broadcast(ctx: &mut Ctx, site: &Site) -> Result<()> {
    let port = topo::BROADCAST_PORT.to_string();
    let no_flag = args(&[
        "send",
        "--dst",
        broadcast_dst(site),
        "--port",
        &port,
        "--count",
        "1",
        "--no-broadcast-flag",
    ]);
    ctx.r
        .command(&site.display("client"), &line("udp-broadcast", &no_flag));
    let (st, out, err) = site.run("client", "udp-broadcast", &no_flag, LIMIT)?;
    ctx.r.output(&format!("{out}{err}"), 3);
    ctx.r
        .observe("without SO_BROADCAST the kernel refuses the send: EACCES (permission denied)");
    ctx.r.check(
        "E1",
        "SO_BROADCAST not set: the send fails with EACCES",
        if !st.is_some_and(|s| s.success())
            && (err.contains("EACCES") || err.to_lowercase().contains("permission denied"))
        {
            Ok(err.trim().to_owned())
        } else {
            Err(format!("exit {st:?}, stderr '{}'", err.trim()))
        },
    );
    Ok(())
}

/// Exercise 4 on the receiver's capture: broadcast MAC, bare UDP header.
fn check_broadcast_capture(ctx: &mut Ctx, cap: Result<Capture>) {
    let to_all = "broadcast frames have destination ff:ff:ff:ff:ff:ff";
    let bare = "UDP datagrams lack sequence numbers or acknowledgements";
    let packets = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown("E4", to_all, &why);
            ctx.r.not_shown("E4", bare, &why);
            return;
        }
    };
    ctx.r.observe("in the capture: destination MAC ff:ff:ff:ff:ff:ff, an 8-byte UDP header with no sequence or acknowledgement numbers");
    // 2 runs of 5; the send without SO_BROADCAST never leaves the host.
    let n = pcap::broadcast_dst_mac(&packets, topo::BROADCAST_PORT).len();
    ctx.r.check(
        "E4",
        to_all,
        if n == 10 {
            Ok(format!("{n} frames to ff:ff:ff:ff:ff:ff, port 5007"))
        } else {
            Err(format!("{n} broadcast frames captured, want 10"))
        },
    );
    ctx.r.check(
        "E4",
        bare,
        if pcap::udp_has_no_seq(&packets, topo::BROADCAST_PORT) {
            Ok("every datagram has the bare 8-byte UDP header (ports, length, checksum)".into())
        } else {
            Err("no UDP datagram to port 5007 with a plain 8-byte header in the capture".into())
        },
    );
}

/// Demo 2 / exercise 2: IGMP join and leave, only members receive, TTL decides how far it goes.
pub fn multicast(ctx: &mut Ctx) -> Result<()> {
    let site = ctx.bring_up(&WEEK3)?;
    let route_ok = route_group(ctx, &site)?;
    let filter = format!("igmp or udp port {}", topo::MULTICAST_PORT);
    let cap = ctx.capture(&site, "router", &filter, "multicast.pcap");
    let plan = Group::new(&site);
    let got = members_receive(ctx, &site, &plan)?;
    check_members_receive(ctx, &got, route_ok);
    if site.netns() {
        let n = ttl1_and_a_nonmember(ctx, &site, &plan)?;
        check_ttl1_and_a_nonmember(ctx, &n, route_ok);
    } else {
        ctx.r.not_shown(
            "E2",
            "only hosts that joined the group receive the datagrams",
            NEEDS_NETNS,
        );
        ctx.r
            .not_shown("E2", "TTL 1 stops at the router", NEEDS_NETNS);
    }
    check_multicast_capture(ctx, &site, cap);
    Ok(())
}

/// The router's static multicast route (smcroute), when this setting can have one.
fn route_group(ctx: &mut Ctx, site: &Site) -> Result<bool> {
    let route_ok = site.netns() && ctx.no_mroute.is_none();
    if route_ok {
        ctx.r.say(
            "  (router: static multicast route for 239.1.1.1 from eth0 to eth1 with smcroute)",
        );
        if let Some(bed) = site.bed() {
            bed.enable_mroute(IpAddr::V4(topo::WEEK3_GROUP))
                .context("multicast route")?;
        }
    }
    Ok(route_ok)
}

/// The handout's receiver and sender command lines for demo 2, and where membership shows.
struct Group {
    recv_args: Vec<String>,
    send_args: Vec<String>,
    /// The interface a join shows on (`ip maddr`).
    dev: &'static str,
}

impl Group {
    fn new(site: &Site) -> Group {
        let g = topo::WEEK3_GROUP.to_string();
        let port = topo::MULTICAST_PORT.to_string();
        let interval = secs(INTERVAL);
        let recv = [
            "recv",
            "--group",
            &g,
            "--port",
            &port,
            "--count",
            "5",
            "--timeout",
            "15",
        ];
        let send = [
            "send",
            "--group",
            &g,
            "--port",
            &port,
            "--count",
            "5",
            "--interval",
            &interval,
        ];
        if site.netns() {
            Group {
                recv_args: args(&recv),
                send_args: [args(&send), args(&["--ttl", "4"])].concat(),
                dev: "eth0",
            }
        } else {
            // Loopback: TTL 0 keeps the datagrams on this host, IP_MULTICAST_LOOP delivers them.
            Group {
                recv_args: [args(&recv), args(&["--iface", "127.0.0.1"])].concat(),
                send_args: [
                    args(&send),
                    args(&["--ttl", "0", "--iface", "127.0.0.1", "--loop"]),
                ]
                .concat(),
                dev: "lo",
            }
        }
    }
}

/// Phase 1, the handout's steps with TTL 4: every member joins (remote too, behind the router),
/// the server sends five datagrams. Returns how many each member printed.
fn members_receive(ctx: &mut Ctx, site: &Site, plan: &Group) -> Result<Vec<usize>> {
    let group = IpAddr::V4(topo::WEEK3_GROUP);
    let members: &[&str] = if site.netns() {
        &["client", "receiver", "remote"]
    } else {
        &["client", "receiver"]
    };
    let mut bgs = Vec::new();
    for h in members {
        let note = if *h == "remote" {
            "    # behind the router"
        } else {
            ""
        };
        ctx.r.command(
            &site.display(h),
            &format!("{}{note}", line("udp-multicast", &plan.recv_args)),
        );
        bgs.push(site.spawn(h, "udp-multicast", &plan.recv_args)?);
        // One join at a time: an IGMPv2 host that hears another member's report while its own
        // is pending suppresses it (RFC 2236 §3), and the capture would show only one report.
        site.await_group(h, plan.dev, group, LIMIT)?;
    }
    ctx.r.command(
        &site.display("server"),
        &line("udp-multicast", &plan.send_args),
    );
    let (st, out, err) = site.run("server", "udp-multicast", &plan.send_args, LIMIT)?;
    ctx.r.output(&out, 2);
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!(
            "the multicast sender failed: {}",
            err.trim()
        )));
    }
    let mut got = Vec::new();
    for (h, mut bg) in members.iter().zip(bgs) {
        bg.finish(LIMIT)?;
        ctx.r.say(&format!("  {} printed:", site.display(h)));
        ctx.r.output(&bg.stdout(), 3);
        got.push(payloads(&bg.stdout()).len());
    }
    Ok(got)
}

fn check_members_receive(ctx: &mut Ctx, got: &[usize], route_ok: bool) {
    ctx.r.observe("the members print the five datagrams; with TTL 4 they also cross the router to week3_remote");
    ctx.r.check(
        "E2",
        "the receivers that joined 239.1.1.1 receive the datagrams",
        if got[0] == 5 && got[1] == 5 {
            Ok("client 5, receiver 5".into())
        } else {
            Err(format!("client {}, receiver {}", got[0], got[1]))
        },
    );
    let ttl_pass = "TTL >= 2 crosses the router to the second segment";
    if route_ok {
        ctx.r.check(
            "E2",
            ttl_pass,
            if got[2] == 5 {
                Ok("week3_remote received 5 with TTL 4".into())
            } else {
                Err(format!("week3_remote received {} with TTL 4", got[2]))
            },
        );
    } else {
        ctx.r.not_shown(
            "E2",
            ttl_pass,
            ctx.no_mroute.as_deref().unwrap_or(NEEDS_NETNS),
        );
    }
}

/// Phase 2 (namespaces only): TTL 1, a member, a host listening on the port without joining,
/// and remote behind the router. Returns how many each of the three printed.
fn ttl1_and_a_nonmember(ctx: &mut Ctx, site: &Site, plan: &Group) -> Result<Vec<usize>> {
    let group = IpAddr::V4(topo::WEEK3_GROUP);
    let g = group.to_string();
    let port = topo::MULTICAST_PORT.to_string();
    ctx.r
        .say("\n  Now TTL 1, and week3_receiver listens on the port WITHOUT joining the group:");
    let m = args(&[
        "recv",
        "--group",
        &g,
        "--port",
        &port,
        "--count",
        "5",
        "--timeout",
        "15",
    ]);
    let nonmember = args(&["recv", "--port", &port, "--count", "5", "--timeout", "4"]);
    let r = args(&[
        "recv",
        "--group",
        &g,
        "--port",
        &port,
        "--count",
        "5",
        "--timeout",
        "4",
    ]);
    let mut listeners = Vec::new();
    ctx.r
        .command(&site.display("client"), &line("udp-multicast", &m));
    listeners.push(site.spawn("client", "udp-multicast", &m)?);
    ctx.r.command(
        &site.display("receiver"),
        &format!("{}    # not a member", line("udp-broadcast", &nonmember)),
    );
    listeners.push(site.spawn("receiver", "udp-broadcast", &nonmember)?);
    ctx.r
        .command(&site.display("remote"), &line("udp-multicast", &r));
    listeners.push(site.spawn("remote", "udp-multicast", &r)?);
    site.await_group("client", plan.dev, group, LIMIT)?;
    site.await_udp("receiver", topo::MULTICAST_PORT, 1, LIMIT)?;
    site.await_group("remote", plan.dev, group, LIMIT)?;
    let mut send1 = plan.send_args.clone();
    if let Some(i) = send1.iter().position(|a| a == "--ttl") {
        send1[i + 1] = "1".into();
    }
    ctx.r
        .command(&site.display("server"), &line("udp-multicast", &send1));
    let (st, _, err) = site.run("server", "udp-multicast", &send1, LIMIT)?;
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!(
            "the multicast sender failed: {}",
            err.trim()
        )));
    }
    let mut n = Vec::new();
    for mut bg in listeners {
        bg.finish(LIMIT)?;
        n.push(payloads(&bg.stdout()).len());
    }
    Ok(n)
}

fn check_ttl1_and_a_nonmember(ctx: &mut Ctx, n: &[usize], route_ok: bool) {
    ctx.r.observe("the member gets all five; the non-member gets nothing; TTL 1 dies at the router, week3_remote gets nothing");
    ctx.r.check(
        "E2",
        "only hosts that joined the group receive the datagrams",
        if n[0] == 5 && n[1] == 0 {
            Ok("member client 5, non-member receiver 0".into())
        } else {
            Err(format!("member {}, non-member {}", n[0], n[1]))
        },
    );
    let ttl1 = "TTL 1 stops at the router";
    if route_ok {
        ctx.r.check(
            "E2",
            ttl1,
            if n[2] == 0 {
                Ok("week3_remote received 0 with TTL 1".into())
            } else {
                Err(format!("week3_remote received {} with TTL 1", n[2]))
            },
        );
    } else {
        ctx.r
            .not_shown("E2", ttl1, ctx.no_mroute.as_deref().unwrap_or(NEEDS_NETNS));
    }
}

/// The router's capture: IGMP reports and leave, and exercise 4's group destination.
fn check_multicast_capture(ctx: &mut Ctx, site: &Site, cap: Result<Capture>) {
    let group = topo::WEEK3_GROUP;
    let reports_seen = "IGMP membership reports when the receivers join";
    let leave_seen = "IGMP leave when a receiver exits";
    let to_group = "multicast destination addresses begin with 239.x.x.x";
    let p = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            for w in [reports_seen, leave_seen] {
                ctx.r.not_shown("E2", w, &why);
            }
            ctx.r.not_shown("E4", to_group, &why);
            return;
        }
    };
    ctx.r.observe("in the capture: IGMP membership reports when the receivers join, a leave when they exit; destination 239.1.1.1");
    let reports = pcap::igmp_reports(&p, group);
    let want: Vec<IpAddr> = ["client", "receiver"]
        .iter()
        .map(|h| IpAddr::V4(site.addr(h)))
        .collect();
    ctx.r.check(
        "E2",
        reports_seen,
        if want.iter().all(|w| reports.contains(w)) {
            Ok(format!("reports for 239.1.1.1 from {reports:?}"))
        } else {
            Err(format!("reports from {reports:?}, expected {want:?}"))
        },
    );
    let leaves = pcap::igmp_leaves(&p, group);
    ctx.r.check(
        "E2",
        leave_seen,
        // IGMPv2 (RFC 2236 §3): only the host that sent the last report for the group sends
        // the leave, so one leave per group on the segment is the expected sight.
        if leaves.iter().any(|l| want.contains(l)) {
            Ok(format!("leave for 239.1.1.1 from {leaves:?}"))
        } else {
            Err(format!("leaves from {leaves:?}"))
        },
    );
    // Captures exist only in namespaces, where the router's eth0 sees both phases: 5
    // datagrams sent with TTL 4, then 5 with TTL 1.
    let sent = pcap::udp_to(&p, Some(IpAddr::V4(group)), topo::MULTICAST_PORT);
    let ttls: Vec<u8> = sent.iter().map(|d| d.ttl).collect();
    let want: Vec<u8> = [[4u8; 5], [1u8; 5]].concat();
    ctx.r.check(
        "E4",
        to_group,
        if ttls == want {
            Ok(format!(
                "{} datagrams to 239.1.1.1:5008 (TTL {:?})",
                ttls.len(),
                ttls
            ))
        } else {
            Err(format!(
                "{} datagrams to 239.1.1.1:5008 with TTLs {ttls:?}, want {want:?}",
                ttls.len()
            ))
        },
    );
}

/// Demo 3 / exercise 3: the tunnel relays each client over a second, separate connection.
pub fn tunnel(ctx: &mut Ctx) -> Result<()> {
    let mut site = ctx.bring_up(&WEEK3)?;
    start_echo_and_tunnel(ctx, &mut site)?;
    let filter = "tcp port 8080 or tcp port 9090";
    let cap = ctx.capture(&site, "router", filter, "tunnel.pcap");
    let echoes = echo_through_the_tunnel(ctx, &site)?;
    check_echoes(ctx, &echoes);
    check_tunnel_log(ctx, &site.dir);
    check_tunnel_capture(ctx, &site, cap);
    Ok(())
}

/// The lab's echo server and tunnel, as `lab up` runs them (on loopback, each bound to its
/// host's 127.0.0.x address).
fn start_echo_and_tunnel(ctx: &mut Ctx, site: &mut Site) -> Result<()> {
    let dir = site.dir.clone();
    for s in &crate::lab::netns::services(site, |_| dir.clone()) {
        let mut a = s.args.clone();
        if !site.netns() {
            // Loopback: each host is a 127.0.0.x address of this machine.
            if s.prog == "echo-server" {
                a.extend(args(&["--bind", &site.addr("server").to_string()]));
            } else {
                a[1] = format!(
                    "{}:{}={}:{}",
                    site.addr("router"),
                    topo::TUNNEL_PORT,
                    site.addr("server"),
                    topo::ECHO_PORT
                );
            }
        }
        ctx.r.command(&site.display(s.host), &line(s.prog, &a));
        let bg = site.spawn(s.host, s.prog, &a)?;
        site.keep(bg);
        for p in &s.ports {
            site.await_tcp(s.probe_from, IpAddr::V4(site.addr(s.host)), *p, LIMIT)?;
        }
    }
    Ok(())
}

/// What came back: the direct test, and each tunnelled message with its echo.
struct Echoes {
    direct: String,
    through: Vec<(String, String)>,
}

/// The handout's `echo '…' | nc` lines: once straight to the server, five times through the
/// tunnel.
fn echo_through_the_tunnel(ctx: &mut Ctx, site: &Site) -> Result<Echoes> {
    // In the lab the handout's literal line runs in the client host (its nc passes the end of
    // the input on, so each line returns with its echo); on loopback, or without netcat-openbsd,
    // xtask's built-in netcat does the same.
    let real_nc =
        site.netns() && crate::packages::ensure(&["netcat-openbsd"], ctx.opts.quiet).is_ok();
    let nc = |to: &str, port: u16, msg: &str| -> Result<String> {
        let (st, out, err) = if real_nc {
            let script = format!("echo '{msg}' | nc {} {port}", site.name(to));
            site.run("client", "sh", &["-c".to_owned(), script], LIMIT)?
        } else {
            let a = vec![
                "__nc".to_owned(),
                site.name(to),
                port.to_string(),
                msg.to_owned(),
            ];
            crate::proc::run(site.helper("client", &a), LIMIT)?
        };
        if st.is_some_and(|s| s.success()) {
            Ok(out)
        } else {
            Err(Error::msg(err.trim()))
        }
    };
    ctx.r.command(
        &site.display("client"),
        &format!("echo 'DIRECT TEST' | nc {} 8080", site.name("server")),
    );
    let direct = nc("server", topo::ECHO_PORT, "DIRECT TEST")?;
    ctx.r.output(&direct, 2);
    let mut through = Vec::new();
    for i in 1..=5 {
        let msg = format!("Message {i}");
        ctx.r.command(
            &site.display("client"),
            &format!("echo '{msg}' | nc {} 9090", site.name("router")),
        );
        let got = nc("router", topo::TUNNEL_PORT, &msg)?;
        ctx.r.output(&got, 2);
        through.push((msg, got));
    }
    if !real_nc {
        ctx.r
            .say("  (the nc lines are run by xtask's built-in netcat)");
    }
    Ok(Echoes { direct, through })
}

fn check_echoes(ctx: &mut Ctx, echoes: &Echoes) {
    ctx.r
        .observe("each line comes back: client → router:9090 → server:8080 and back the same path");
    let ok = echoes
        .through
        .iter()
        .filter(|(m, g)| g.trim_end() == m)
        .count();
    let direct = echoes.direct.trim_end();
    ctx.r.check(
        "E3",
        "echo responses return through the same path",
        if ok == 5 && direct == "DIRECT TEST" {
            Ok("5 of 5 messages echoed through the tunnel, and the direct test".into())
        } else {
            Err(format!("{ok} of 5 echoed; direct '{direct}'"))
        },
    );
}

/// The tunnel's log (its `--log` file in the demo's directory).
fn check_tunnel_log(ctx: &mut Ctx, dir: &Path) {
    let log = std::fs::read_to_string(dir.join("tunnel.log")).unwrap_or_default();
    ctx.r.say("  week3_router (tcp-tunnel) logged:");
    ctx.r.output(&log, 6);
    ctx.r.observe("the tunnel logs the accepted connection, its own outbound connection, and bytes in both directions");
    // Each 'Message i' line is 10 bytes ("Message 1\n"), echoed back: exactly 10 each way for
    // the 5 clients. The readiness probe's connection carried nothing.
    let closed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("closed") && l.contains("c→s"))
        .collect();
    let both = closed
        .iter()
        .filter(|l| l.contains("c→s 10 bytes") && l.contains("s→c 10 bytes"))
        .count();
    ctx.r.check(
        "E3",
        "the tunnel log shows bidirectional data for each client connection",
        if both == 5 {
            Ok(format!(
                "{both} connections with 10 bytes c→s and 10 bytes s→c"
            ))
        } else {
            Err(format!(
                "{both} connections logged with 10 bytes both ways (want 5)"
            ))
        },
    );
    let acc = log.lines().filter(|l| l.contains("accepted")).count();
    let con = log.lines().filter(|l| l.contains("connected")).count();
    ctx.r.check(
        "E3",
        "connection acceptance on the listen port and the outbound connection to the target are logged",
        // The 5 clients and the one readiness probe: every accepted connection got its outbound
        // connection and was closed.
        if acc == 6 && con == 6 && closed.len() == 6 {
            Ok(format!("{acc} accepted, {con} connected, {} closed (5 clients and the readiness probe)", closed.len()))
        } else {
            Err(format!("{acc} accepted, {con} connected, {} closed lines (want 6 each)", closed.len()))
        },
    );
}

/// The router's capture: two connections per client, handshakes and FINs.
fn check_tunnel_capture(ctx: &mut Ctx, site: &Site, cap: Result<Capture>) {
    let two = "two separate TCP connections: client→router:9090 and router→server:8080";
    let handshake = "TCP shows SYN, SYN-ACK, ACK before data";
    let teardown = "clean connection teardown in both directions (FIN each way)";
    let p = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown("E3", two, &why);
            ctx.r.not_shown("E4", handshake, &why);
            ctx.r.not_shown("E3", teardown, &why);
            return;
        }
    };
    ctx.r.observe("in the capture on the router: two separate TCP connections per client, each with SYN, SYN-ACK, ACK, and FINs both ways at the end");
    let client_ip = IpAddr::V4(site.addr("client"));
    let router_ip = IpAddr::V4(site.addr("router"));
    let outer: Vec<_> = pcap::tcp_handshakes(&p, topo::TUNNEL_PORT)
        .into_iter()
        .filter(|h| h.client.ip() == client_ip)
        .collect();
    let inner: Vec<_> = pcap::tcp_handshakes(&p, topo::ECHO_PORT)
        .into_iter()
        .filter(|h| h.client.ip() == router_ip)
        .collect();
    ctx.r.check(
        "E3",
        two,
        if outer.len() == 5 && inner.len() == 5 {
            Ok(format!("5 × {} → {}, 5 × {} → {}", client_ip, outer[0].server, router_ip, inner[0].server))
        } else {
            Err(format!("{} client→router:9090 and {} router→server:8080 handshakes ({} TCP packets captured)", outer.len(), inner.len(), p.len()))
        },
    );
    let all = outer.len() + inner.len();
    ctx.r.check(
        "E4",
        handshake,
        if all == 10 {
            Ok(format!("{all} complete three-way handshakes"))
        } else {
            Err(format!("{all} complete handshakes, want 10"))
        },
    );
    let clean = outer
        .iter()
        .chain(&inner)
        .filter(|h| pcap::fins_both_ways(&p, **h))
        .count();
    ctx.r.check(
        "E3",
        teardown,
        if clean == 10 && all == 10 {
            Ok(format!(
                "{clean} of {clean} connections closed with a FIN from each side"
            ))
        } else {
            Err(format!("{clean} of {all} connections with FINs both ways"))
        },
    );
}
