//! TP3, on the `tp3` topology: the course servers (`lab-server`) on `tcpip`, the
//! students on `student1` and `student2`. Parts 1–6 and the report questions a program can show.
//!
//! Each part is a short list of steps (bring the lab up with its servers, run the student's
//! command, show what it printed, check what the handout asks); the steps print exactly what a
//! student would see, in that order.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labnet::error::Context as _;
use labnet::pcap;
use labnet::topo::{self, TP3};
use labnet::{Error, Result};

use super::ctx::{Ctx, NEEDS_NETNS, args, line, ok_if, recv_lines};
use crate::capture::Capture;
use crate::lab::Site;
use crate::proc::Bg;

const LIMIT: Duration = Duration::from_secs(30);

/// The tp3 site with lab-server running on `tcpip` and answering. The server is returned, not
/// kept by the site, so the checks can read its log (the n it chose); drop it before the site.
fn site_with_server(ctx: &mut Ctx) -> Result<(Site, Bg)> {
    let site = ctx.bring_up(&TP3)?;
    let dir = site.dir.clone();
    let svc = crate::lab::netns::services(&site, |_| dir.clone())
        .into_iter()
        .next()
        .ok_or_else(|| Error::msg("no lab-server service"))?;
    let mut a = svc.args.clone();
    if !site.netns() {
        // Loopback: IPv4 only on 127.0.0.10, the TV on this host only (TTL 0 on lo).
        a = args(&[
            "--bind",
            &site.addr("tcpip").to_string(),
            "--family",
            "v4",
            "--iface",
            "127.0.0.1",
            "--ttl",
            "0",
        ]);
        a.extend(args(&[
            "--record",
            &dir.join("tv.jsonl").display().to_string(),
        ]));
    }
    a.extend(args(&["--interval", "0.5"]));
    ctx.r.say(&format!(
        "  ({} runs the course servers: {})",
        site.display("tcpip"),
        line("lab-server", &a)
    ));
    let server = site.spawn("tcpip", "lab-server", &a)?;
    for p in &svc.ports {
        site.await_tcp("student1", IpAddr::V4(site.addr("tcpip")), *p, LIMIT)?;
    }
    Ok((site, server))
}

/// The n a server logged for `cmd` (`PMU #3 …: CMD_short:0 served: 8 messages`), waiting for the
/// line: `service` is the log's prefix (`PMU #`, `WS #`, or `` for tls-pmu).
fn served_n(server: &mut Bg, service: &str, cmd: &str) -> Result<usize> {
    let needle = format!("{cmd} served: ");
    let found = |out: &str| {
        out.lines()
            .rfind(|l| l.contains(service) && l.contains(&needle))
            .and_then(|l| l.split(&needle).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<usize>().ok())
    };
    server
        .wait_for(LIMIT, |out, _| found(out).is_some())
        .with_context(|| format!("the server did not log '{needle}N messages'"))?;
    found(&server.stdout()).ok_or_else(|| Error::msg(format!("no '{needle}' in the server's log")))
}

/// The PMU messages a client printed, in order.
fn pmu_messages(out: &str) -> Vec<String> {
    recv_lines(out)
        .into_iter()
        .map(|r| r.text.trim().to_owned())
        .filter(|t| t.starts_with("This is PMU data "))
        .collect()
}

/// `This is PMU data 1` … `This is PMU data n`.
fn expected(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("This is PMU data {i}")).collect()
}

fn recv_count(out: &str, needle: &str) -> usize {
    recv_lines(out)
        .iter()
        .filter(|r| r.text.contains(needle))
        .count()
}

/// The `[STAT]` lines of a program's output.
fn stat_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.contains("[STAT]")).collect()
}

/// Part 1.2 (codes C and D): the server prints 16-byte chunks, the client 8-byte ones; "No more
/// data" only once the client closes.
pub fn basics(ctx: &mut Ctx) -> Result<()> {
    let site = ctx.bring_up(&TP3)?;
    let (mut srv, mut cli) = start_codes_c_and_d(ctx, &site)?;
    check_chunks(ctx, &site, &srv, &cli);
    interrupt_code_d(ctx, &site, &mut srv, &mut cli)?;
    drop(srv);
    drop(site);
    Ok(())
}

/// The message code D sends.
const ROMEO: &str = "O Romeo, Romeo! wherefore art thou Romeo?";

/// Code C (the server) and code D (the client, which holds its connection) on student1, until
/// the server has printed the whole message.
fn start_codes_c_and_d(ctx: &mut Ctx, site: &Site) -> Result<(Bg, Bg)> {
    let host = "student1";
    let srv_args = args(&["localhost", "5002"]);
    ctx.r
        .command(&site.display(host), &line("tcp-echo-server", &srv_args));
    let mut srv = site.spawn(host, "tcp-echo-server", &srv_args)?;
    site.await_listen(host, 5002, LIMIT)?;
    let cli_args = args(&["localhost", "5002"]);
    ctx.r
        .command(&site.display(host), &line("tcp-echo-client", &cli_args));
    let mut cli = site.spawn(host, "tcp-echo-client", &cli_args)?;
    cli.wait_output("holding the connection", LIMIT)?;
    // Q6 needs the server's chunks: wait until it printed all 41 bytes.
    srv.wait_for(LIMIT, |out, _| {
        recv_lines(out)
            .iter()
            .map(|r| r.text.trim_start_matches("received: ").len())
            .sum::<usize>()
            >= ROMEO.len()
            || out.matches("received:").count() >= 3
    })?;
    Ok((srv, cli))
}

fn check_chunks(ctx: &mut Ctx, site: &Site, srv: &Bg, cli: &Bg) {
    let host = "student1";
    ctx.r
        .say(&format!("  {} (client) printed:", site.display(host)));
    ctx.r.output(&cli.stdout(), 10);
    ctx.r
        .say(&format!("  {} (server) printed:", site.display(host)));
    ctx.r.output(&srv.stdout(), 6);
    let c_lines = recv_count(&cli.stdout(), "received:");
    let s_lines = recv_count(&srv.stdout(), "received:");
    ctx.r.observe("the server prints the 41-byte line in 16-byte pieces (3 lines), the client in 8-byte pieces (6 lines): TCP is a byte stream, recv() returns what the buffer size allows");
    ctx.r.check(
        "Q6",
        "the server and the client print the message in a different number of lines (16- vs 8-byte recv)",
        ok_if(s_lines == 3 && c_lines == 6, format!("server {s_lines} lines, client {c_lines} lines"), format!("server {s_lines} lines, client {c_lines} lines (want 3 and 6)")),
    );
    ctx.r.check(
        "Q7",
        "'No more data from' is not printed while code D keeps the connection open",
        ok_if(
            !srv.stdout().contains("No more data"),
            "not printed: the client has not closed".into(),
            "printed although the client is still connected".into(),
        ),
    );
}

/// Ctrl-C on code D: its kernel closes the connection, the server reads end of stream.
fn interrupt_code_d(ctx: &mut Ctx, site: &Site, srv: &mut Bg, cli: &mut Bg) -> Result<()> {
    ctx.r
        .command(&site.display("student1"), "^C    # Ctrl-C ends code D");
    cli.interrupt(Duration::from_secs(5))?;
    let seen = srv.wait_output("No more data from", Duration::from_secs(10));
    ctx.r.output(
        &srv.stdout()
            .lines()
            .filter(|l| l.contains("No more data"))
            .collect::<Vec<_>>()
            .join("\n"),
        2,
    );
    ctx.r.observe("after Ctrl-C the client's kernel closes the socket (FIN): the server's recv() returns 0 bytes and it prints 'No more data from'");
    ctx.r.check(
        "Q8",
        "after Ctrl-C on code D, the server prints 'No more data from'",
        seen.map(|()| "printed once the client's FIN arrived (recv returned 0)".to_owned())
            .map_err(|e| e.to_string()),
    );
    Ok(())
}

/// Part 2 (Q9–Q13): one PMU message per segment with d=1, the whole burst in one segment with
/// d=0, the flood in many segments and recv() calls.
pub fn pmu(ctx: &mut Ctx) -> Result<()> {
    let (site, mut server) = site_with_server(ctx)?;
    let filter = format!("tcp port {}", topo::PMU_PORT);
    // What d=1 showed in its capture, quoted when d=0 is checked.
    let mut d1_packets = String::new();
    for d in ["1", "0"] {
        let cap = ctx.capture(&site, "student1", &filter, &format!("pmu{d}.pcap"));
        let (out, n) = short_burst(ctx, &site, &mut server, d)?;
        check_short_lines(ctx, d, &out, n);
        check_short_packets(ctx, &site, d, n, cap, &mut d1_packets);
    }
    let cap = ctx.capture(&site, "student1", &filter, "flood.pcap");
    let out = flood(ctx, &site)?;
    let (bytes, calls) = check_flood(ctx, &out);
    check_flood_packets(ctx, cap, bytes, calls);
    drop(server);
    drop(site);
    Ok(())
}

/// `pmu-pdc-client tcpip 5003 CMD_short:d`; returns what it printed and the n the PMU sent.
fn short_burst(ctx: &mut Ctx, site: &Site, server: &mut Bg, d: &str) -> Result<(String, usize)> {
    let cmd = format!("CMD_short:{d}");
    let a = args(&[&site.name("tcpip"), &topo::PMU_PORT.to_string(), &cmd]);
    ctx.r
        .command(&site.display("student1"), &line("pmu-pdc-client", &a));
    let (st, out, err) = site.run("student1", "pmu-pdc-client", &a, Duration::from_secs(40))?;
    ctx.r.output(&out, 5);
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!("pmu-pdc-client failed: {}", err.trim())));
    }
    let n = served_n(server, "PMU #", &cmd)?;
    Ok((out, n))
}

fn check_short_lines(ctx: &mut Ctx, d: &str, out: &str, n: usize) {
    let got = pmu_messages(out);
    ctx.r.check(
        "Q9",
        &format!("d={d}: the n messages the PMU sent, each on its own line, 1..n in order"),
        ok_if(
            n >= 1 && got == expected(n),
            format!("{n} lines 'This is PMU data 1..{n}', n = {n} as the server logged"),
            format!(
                "{} lines {:?}, the server sent {n}",
                got.len(),
                got.iter().take(3).collect::<Vec<_>>()
            ),
        ),
    );
    if d == "1" {
        ctx.r.check(
            "Q11",
            "the client knows it has everything when the server closes",
            ok_if(
                out.contains("server closed the connection"),
                "logged 'server closed the connection: all data received'".into(),
                "no close logged".into(),
            ),
        );
    }
}

/// The PMU's data packets for one burst: n of them with d=1, one with d=0.
fn check_short_packets(
    ctx: &mut Ctx,
    site: &Site,
    d: &str,
    n: usize,
    cap: Result<Capture>,
    d1_packets: &mut String,
) {
    let p = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown(
                "Q9",
                &format!("d={d}: data packets from the PMU counted in a capture"),
                &why,
            );
            return;
        }
    };
    let data = pcap::data_segments_from(&p, topo::PMU_PORT);
    let segs = data.len();
    let all_v6 = data.iter().all(|x| x.src.is_ipv6());
    if d == "1" {
        *d1_packets = format!(" (d=1: {segs} packets for {n} messages)");
        ctx.r.observe(
            "with d=1 every send() of the PMU leaves in its own segment: data packets = messages",
        );
        ctx.r.check(
            "Q9",
            "d=1: packets with payload from the PMU = number of messages",
            ok_if(
                segs == n,
                format!("{segs} data packets for {n} messages"),
                format!("{segs} data packets for {n} messages (want {n})"),
            ),
        );
        ctx.r.check(
            "Q9",
            "part 2 runs over IPv6",
            ok_if(
                (segs > 0 && all_v6) || !site.netns(),
                "every data packet is IPv6 (fd30::10 → fd30::101)".into(),
                "a data packet over IPv4 (or none) in the capture".into(),
            ),
        );
    } else {
        ctx.r.observe("with d=0 the PMU's n send() calls follow each other faster than an ACK can return: Nagle's algorithm holds the small segments and sends them together (Q10). Between namespaces the ACK would be back at once, so lab-server corks the burst in the place of a real round trip: one segment");
        ctx.r.check(
            "Q9",
            "d=0: the n messages arrive in exactly one packet with payload",
            ok_if(
                segs == 1,
                format!("1 data packet for {n} messages{d1_packets}"),
                format!("{segs} data packets for {n} messages (want 1)"),
            ),
        );
    }
}

/// `pmu-pdc-client tcpip 5003 CMD_floodme -v`; returns what it printed.
fn flood(ctx: &mut Ctx, site: &Site) -> Result<String> {
    let port = topo::PMU_PORT.to_string();
    let a = args(&[&site.name("tcpip"), &port, "CMD_floodme", "-v"]);
    ctx.r
        .command(&site.display("student1"), &line("pmu-pdc-client", &a));
    let (st, out, err) = site.run("student1", "pmu-pdc-client", &a, LIMIT)?;
    ctx.r.output(&stat_lines(&out).join("\n"), 3);
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!(
            "pmu-pdc-client CMD_floodme failed: {}",
            err.trim()
        )));
    }
    Ok(out)
}

/// The flood as the client counted it; returns (bytes, recv() calls).
fn check_flood(ctx: &mut Ctx, out: &str) -> (usize, usize) {
    // "the flood: 65536 bytes in 16 recv() calls …"
    let nums: Vec<usize> = stat_lines(out)
        .iter()
        .find(|l| l.contains("flood"))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let (bytes, calls) = (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    );
    // -v: one line per recv() that returned data, "recv() #3 returned 4096 bytes".
    let returned: Vec<usize> = out
        .lines()
        .filter_map(|l| l.split_once("] recv() #"))
        .filter_map(|(_, r)| r.split(" returned ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .collect();
    ctx.r.check(
        "Q12",
        "the whole flood is received and displayed",
        ok_if(
            bytes == 65536,
            format!("{bytes} bytes"),
            format!("{bytes} bytes (want 65536)"),
        ),
    );
    ctx.r.check(
        "Q13",
        "recv() calls: the count the client reports is the number of calls that returned data",
        ok_if(
            calls >= 1 && returned.len() == calls && returned.iter().sum::<usize>() == bytes,
            format!("{calls} recv() calls returned the {bytes} bytes (each shown with -v)"),
            format!(
                "reported {calls} calls, -v showed {} calls with {} bytes",
                returned.len(),
                returned.iter().sum::<usize>()
            ),
        ),
    );
    (bytes, calls)
}

fn check_flood_packets(ctx: &mut Ctx, cap: Result<Capture>, bytes: usize, calls: usize) {
    let p = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown(
                "Q12",
                "packets with payload from the PMU for the flood",
                &why,
            );
            return;
        }
    };
    let segs = pcap::data_segments_from(&p, topo::PMU_PORT).len();
    let wire = pcap::data_bytes_from(&p, topo::PMU_PORT);
    ctx.r.observe("one send() of 64 KiB leaves as many segments; recv() returns whatever has arrived, so the counts differ (Q13)");
    ctx.r.check(
        "Q12",
        "packets with payload from the PMU for the flood carry exactly the flood",
        ok_if(
            segs > 1 && wire == bytes,
            format!(
                "{segs} data packets carrying {wire} bytes; {calls} recv() calls: {}",
                if calls == segs {
                    "equal this time"
                } else {
                    "a different number (Q13)"
                }
            ),
            format!("{segs} data packets, {wire} bytes on the wire vs {bytes} received"),
        ),
    );
}

/// Part 3 (Q14–Q15): retransmission until OFFSET=X, over whichever family answers; the loss
/// estimate over 100 resets is close to the server's drop probability.
pub fn reset(ctx: &mut Ctx) -> Result<()> {
    let (site, server) = site_with_server(ctx)?;
    let out = one_reset(ctx, &site)?;
    check_acknowledged(ctx, &out);
    let out = hundred_resets(ctx, &site)?;
    check_loss_estimate(ctx, &out);
    drop(server);
    drop(site);
    Ok(())
}

/// `reset-client tcpip`; returns what it printed.
fn one_reset(ctx: &mut Ctx, site: &Site) -> Result<String> {
    let a = args(&[&site.name("tcpip")]);
    ctx.r
        .command(&site.display("student1"), &line("reset-client", &a));
    let (st, out, err) = site.run("student1", "reset-client", &a, LIMIT)?;
    ctx.r.output(&out, 6);
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!("reset-client failed: {}", err.trim())));
    }
    Ok(out)
}

fn check_acknowledged(ctx: &mut Ctx, out: &str) {
    let answer = recv_lines(out)
        .into_iter()
        .find(|r| r.text.contains("OFFSET="));
    ctx.r.check(
        "Q14",
        "the time of the acknowledgement and the family (IPv4 or IPv6) that answered",
        match answer {
            Some(r) if r.text.contains("IPv4") || r.text.contains("IPv6") => Ok(r.text),
            Some(r) => Err(format!("answer without a family: {}", r.text)),
            None => Err("no OFFSET=X answer".into()),
        },
    );
}

/// `reset-client tcpip --runs 100 --timeout 0.2`; returns what it printed.
fn hundred_resets(ctx: &mut Ctx, site: &Site) -> Result<String> {
    let a = args(&[&site.name("tcpip"), "--runs", "100", "--timeout", "0.2"]);
    ctx.r
        .command(&site.display("student1"), &line("reset-client", &a));
    let (st, out, err) = site.run("student1", "reset-client", &a, Duration::from_secs(120))?;
    ctx.r.output(&stat_lines(&out).join("\n"), 12);
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!(
            "reset-client --runs 100 failed: {}",
            err.trim()
        )));
    }
    Ok(out)
}

fn check_loss_estimate(ctx: &mut Ctx, out: &str) {
    ctx.r.observe(
        "the server drops 30% of requests: about 1/(1-0.3) = 1.43 datagrams per acknowledged reset",
    );
    let est = stat_lines(out)
        .iter()
        .find(|l| l.contains("loss probability"))
        .and_then(|l| l.rsplit('=').next())
        .and_then(|v| v.trim().parse::<f64>().ok());
    ctx.r.check(
        "Q15",
        "the estimated loss probability is close to the server's drop probability (0.3)",
        match est {
            Some(p) if (p - 0.3).abs() <= 0.15 => Ok(format!("estimated p = {p:.3}")),
            Some(p) => Err(format!("estimated p = {p:.3}, configured 0.3")),
            None => Err("no loss estimate printed".into()),
        },
    );
}

/// The play's lines and answers the station recorded (`--record`), as the receiver shows them.
fn station_lines(record: &str) -> Vec<String> {
    record
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["id"] == "swcmTV")
        .filter_map(|e| e["text"].as_str().map(|t| t.escape_debug().to_string()))
        .collect()
}

/// Part 4 (Q16–Q18): the TV's lines with ID swcmTV, and its answer to a text of at least 300
/// characters.
pub fn tv(ctx: &mut Ctx) -> Result<()> {
    let (site, server) = site_with_server(ctx)?;
    let mut rx = watch_tv(ctx, &site)?;
    let record = site.dir.join("tv.jsonl");
    check_station_lines(ctx, &rx, &record);
    let long = text_of_300()?;
    for id in ["123456", "654321"] {
        answer_a_long_text(ctx, &site, id, &long)?;
    }
    rx.kill();
    check_group_saw_answers(ctx, &rx);
    check_station_record(ctx, &record);
    drop(server);
    drop(site);
    Ok(())
}

/// On loopback the TV and its viewers stay on this host: TTL 0 on 127.0.0.1.
fn loopback_group_args(site: &Site) -> Vec<String> {
    if site.netns() {
        Vec::new()
    } else {
        args(&["--ttl", "0", "--iface", "127.0.0.1"])
    }
}

/// A receiver on student1 that joins the TV's group, until it has shown two of the play's lines.
fn watch_tv(ctx: &mut Ctx, site: &Site) -> Result<Bg> {
    let group = topo::TV_GROUP.to_string();
    let port = topo::TV_PORT.to_string();
    let mut ra = args(&[
        "recv",
        "--group",
        &group,
        "--port",
        &port,
        "--id-header",
        "--count",
        "0",
        "--timeout",
        "12",
    ]);
    if !site.netns() {
        ra.extend(args(&["--iface", "127.0.0.1"]));
    }
    ctx.r
        .command(&site.display("student1"), &line("udp-multicast", &ra));
    let mut rx = site.spawn("student1", "udp-multicast", &ra)?;
    rx.wait_for(LIMIT, |out, _| recv_count(out, "swcmTV:") >= 2)?;
    ctx.r.output(&rx.stdout(), 4);
    Ok(rx)
}

fn check_station_lines(ctx: &mut Ctx, rx: &Bg, record: &Path) {
    let shown: Vec<String> = rx
        .stdout()
        .lines()
        .filter_map(|l| l.split_once(" swcmTV: ").map(|(_, t)| t.to_owned()))
        .collect();
    let sent = station_lines(&std::fs::read_to_string(record).unwrap_or_default());
    let strangers: Vec<&String> = shown.iter().filter(|t| !sent.contains(t)).collect();
    ctx.r.check(
        "Q16",
        "the receiver shows the play's lines with ID swcmTV, each exactly as the station sent it",
        ok_if(
            shown.len() >= 2 && strangers.is_empty(),
            format!(
                "{} lines from swcmTV, every one in the station's record",
                shown.len()
            ),
            format!(
                "{} lines from swcmTV; not sent by the station: {strangers:?}",
                shown.len()
            ),
        ),
    );
}

/// "a text of at least 300 characters": exactly 300, the least that gets an answer.
fn text_of_300() -> Result<String> {
    let long: String = "O Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy \
                name; Or, if thou wilt not, be but sworn my love, And I'll no longer be a Capulet. \
                'Tis but thy name that is my enemy; Thou art thyself, though not a Montague. \
                What's Montague? It is nor hand, nor foot, Nor arm, nor face, nor any other part \
                belonging to a man."
        .chars()
        .take(300)
        .collect();
    if long.chars().count() != 300 {
        return Err(Error::msg(format!(
            "the demo's text has {} characters, not 300",
            long.chars().count()
        )));
    }
    Ok(long)
}

/// A subscriber on student2 sends the long text with its ID; the TV answers it once, on the group.
fn answer_a_long_text(ctx: &mut Ctx, site: &Site, id: &str, long: &str) -> Result<()> {
    let host = "student2";
    let mut a = args(&["--id", id, "--linger", "3"]);
    a.extend(loopback_group_args(site));
    ctx.r.command(
        &site.display(host),
        &format!(
            "echo '<{} characters>' | {}",
            long.chars().count(),
            line("mcast-chat", &a)
        ),
    );
    let mut chat = site.spawn_stdin(host, "mcast-chat", &a)?;
    if let Some(w) = chat.stdin() {
        use std::io::Write as _;
        writeln!(w, "{long}").context("write to mcast-chat")?;
    }
    chat.close_stdin();
    chat.finish(LIMIT)?;
    let want = format!("swcmTV: Thank you {id}, we received your 300-character message");
    let answers: Vec<String> = recv_lines(&chat.stdout())
        .into_iter()
        .map(|r| r.text)
        .filter(|t| t.contains("swcmTV") && t.contains(id))
        .collect();
    ctx.r.output(&answers.join("\n"), 1);
    ctx.r.check(
        "Q18",
        &format!("the TV answers the 300-character text of {id} once, on the group"),
        ok_if(
            answers.len() == 1 && answers[0].ends_with(&want),
            want.clone(),
            format!("answers naming {id}: {answers:?}"),
        ),
    );
    Ok(())
}

fn check_group_saw_answers(ctx: &mut Ctx, rx: &Bg) {
    ctx.r
        .observe("the receiver on student1 saw both answers too: they go to the whole group");
    let seen = rx.stdout();
    let answered = |id: &str| {
        seen.lines()
            .filter(|l| {
                l.ends_with(&format!(
                    "swcmTV: Thank you {id}, we received your 300-character message"
                ))
            })
            .count()
    };
    ctx.r.check(
        "Q18",
        "every member of the group sees each answer once",
        ok_if(
            answered("123456") == 1 && answered("654321") == 1,
            "student1's receiver printed each answer once".into(),
            format!(
                "student1's receiver printed {} and {} answers",
                answered("123456"),
                answered("654321")
            ),
        ),
    );
}

fn check_station_record(ctx: &mut Ctx, record: &Path) {
    let record = std::fs::read_to_string(record).unwrap_or_default();
    let entries: Vec<serde_json::Value> = record
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let theirs = |id: &str| {
        entries
            .iter()
            .filter(|e| e["id"] == id && e["chars"] == 300 && e["answered"].is_string())
            .count()
    };
    ctx.r.check(
        "Q18",
        "the station records every datagram on the group (postmortem analysis)",
        ok_if(
            theirs("123456") == 1 && theirs("654321") == 1,
            format!(
                "{} records; each subscriber's 300-character text once, marked answered",
                entries.len()
            ),
            format!(
                "records of 123456: {}, of 654321: {} (want 1 each)",
                theirs("123456"),
                theirs("654321")
            ),
        ),
    );
}

/// Part 5 (Q19–Q21): n message events for CMD_short:0 in one segment, one event for the flood.
pub fn ws(ctx: &mut Ctx) -> Result<()> {
    let (site, mut server) = site_with_server(ctx)?;
    let filter = format!("tcp port {}", topo::WS_PORT);
    let cap = ctx.capture(&site, "student1", &filter, "ws.pcap");
    let out = ws_client(ctx, &site, "CMD_short:0")?;
    let packets = cap.and_then(Capture::stop);
    check_ws_messages(ctx, &mut server, &out, packets)?;
    let cap = ctx.capture(&site, "student1", &filter, "ws.pcap");
    let out = ws_client(ctx, &site, "CMD_floodme")?;
    let packets = cap.and_then(Capture::stop);
    check_ws_flood(ctx, &out, packets);
    drop(server);
    drop(site);
    Ok(())
}

/// `ws-client ws://tcpip:5006 CMD`; returns what it printed.
fn ws_client(ctx: &mut Ctx, site: &Site, cmd: &str) -> Result<String> {
    let url = format!("ws://{}:{}", site.name("tcpip"), topo::WS_PORT);
    let a = args(&[&url, cmd]);
    ctx.r
        .command(&site.display("student1"), &line("ws-client", &a));
    let (st, out, err) = site.run("student1", "ws-client", &a, LIMIT)?;
    ctx.r.output(
        &out.lines()
            .filter(|l| !l.contains("PMU flood line"))
            .collect::<Vec<_>>()
            .join("\n"),
        6,
    );
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!("ws-client failed: {}", err.trim())));
    }
    Ok(out)
}

/// The number of on_message events the client counted (`[STAT] N message events`).
fn message_events(out: &str) -> Option<usize> {
    out.lines()
        .find(|l| l.contains("message events"))
        .and_then(|l| l.split("[STAT]").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|w| w.parse().ok())
}

/// CMD_short:0: one event per message (Q20), the n frames in one packet (Q19).
fn check_ws_messages(
    ctx: &mut Ctx,
    server: &mut Bg,
    out: &str,
    packets: Result<Vec<pcap::Packet>>,
) -> Result<()> {
    let events = message_events(out);
    let got = pmu_messages(out);
    let n = served_n(server, "WS #", "CMD_short:0")?;
    ctx.r.observe("one on_message event per PMU message: WebSocket keeps message boundaries that TCP does not (Q20)");
    ctx.r.check(
        "Q20",
        "CMD_short:0: one message event per PMU message, 1..n in order",
        ok_if(
            events == Some(n) && got == expected(n),
            format!("{n} messages, {n} events, n = {n} as the server logged"),
            format!(
                "{} messages, events {events:?}, the server sent {n}",
                got.len()
            ),
        ),
    );
    let carrying_what = "packets from the WebSocket server carrying the messages";
    let p = match packets {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown("Q19", carrying_what, &why);
            return Ok(());
        }
    };
    // The HTTP 101 answer and the close frame are packets of their own.
    let carrying = pcap::data_segments_from(&p, topo::WS_PORT)
        .into_iter()
        .filter(|x| match &x.transport {
            pcap::Transport::Tcp { payload, .. } => {
                payload.windows(17).any(|w| w == b"This is PMU data ")
            }
            _ => false,
        })
        .count();
    ctx.r.observe("the n frames leave together, as part 2's d=0 messages do: the same number of packets, each message a few bytes longer (its 2-byte frame header)");
    ctx.r.check(
        "Q19",
        "packets from the WebSocket server carrying the messages: exactly one, as part 2 with d=0",
        ok_if(
            carrying == 1,
            format!("1 data packet carries the {n} frames (part 2, d=0: 1 packet)"),
            format!("{carrying} data packets carry the {n} frames (want 1)"),
        ),
    );
    Ok(())
}

/// CMD_floodme: many packets, one event (Q21).
fn check_ws_flood(ctx: &mut Ctx, out: &str, packets: Result<Vec<pcap::Packet>>) {
    let events = message_events(out);
    ctx.r
        .observe("the 64 KiB flood arrives in many TCP packets but as ONE message event (Q21)");
    ctx.r.check(
        "Q21",
        "CMD_floodme: the whole flood in one message event",
        ok_if(
            events == Some(1),
            "1 event".into(),
            format!("events {events:?}"),
        ),
    );
    let several = "the flood crosses the network in several packets";
    match packets {
        Ok(p) => {
            let s = pcap::data_segments_from(&p, topo::WS_PORT).len();
            ctx.r.check(
                "Q21",
                several,
                ok_if(
                    s > 1,
                    format!("{s} data packets for 1 event"),
                    format!("{s} data packets"),
                ),
            );
        }
        Err(why) => ctx.r.not_shown("Q21", several, &why),
    }
}

/// Part 6: the handout's certificate flow with the course CA (`tls-pmu ca`), the PMU over TLS,
/// and ciphertext on the wire.
pub fn tls(ctx: &mut Ctx) -> Result<()> {
    crate::packages::ensure(&["openssl"], ctx.opts.quiet)?;
    let mut site = ctx.bring_up(&TP3)?;
    let certs = Certs::new(&site)?;
    let signed = sign_the_students_csr(ctx, &site, &certs)?;
    check_signed(ctx, &certs, &signed);
    refuse_a_v1_certificate(ctx, &site, &certs)?;
    let mut server = serve_pmu_over_tls(ctx, &site, &certs)?;
    let cap = ctx.capture(&site, "student1", "tcp port 5443", "tls.pcap");
    pdc_over_tls(ctx, &site, &certs, &mut server)?;
    plaintext_gets_nothing(ctx, &site)?;
    site.keep(server);
    check_ciphertext(ctx, cap);
    if !site.netns() {
        ctx.r.say(&format!(
            "  (loopback: {NEEDS_NETNS} for the two-host version)"
        ));
    }
    drop(site);
    Ok(())
}

/// The TLS server's port in part 6.
const TLS_PORT: &str = "5443";

/// Where part 6's keys and certificates go, and the name the PDC dials.
struct Certs {
    dir: PathBuf,
    /// The name the PDC dials: the handout's in the namespaces, the address on loopback.
    server_name: String,
    /// The name the certificate carries besides the CSR's CN.
    extra: String,
}

impl Certs {
    fn new(site: &Site) -> Result<Certs> {
        let dir = site.dir.join("certs");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let (server_name, extra) = if site.netns() {
            ("tcpip.epfl.ch".to_owned(), "tcpip".to_owned())
        } else {
            let ip = site.addr("tcpip").to_string();
            (ip.clone(), ip)
        };
        Ok(Certs {
            dir,
            server_name,
            extra,
        })
    }

    /// A file in the certificates' directory.
    fn file(&self, f: &str) -> String {
        format!("{}/{f}", self.dir.display())
    }
}

/// The handout's four steps: the course CA, the student's key and CSR, the CA's signature.
/// Returns what `ca sign` printed.
fn sign_the_students_csr(ctx: &mut Ctx, site: &Site, c: &Certs) -> Result<String> {
    let steps: [(&str, &str, Vec<String>); 4] = [
        (
            "the TAs make the course CA once",
            "tls-pmu",
            args(&["ca", "init", "--out", &c.file("ca")]),
        ),
        (
            "the student makes a key (2048 bits: the handout's 1024 is refused today)",
            "openssl",
            args(&["genrsa", "-out", &c.file("123456_key.pem"), "2048"]),
        ),
        (
            "the student makes the CSR (the handout's command; -subj answers the prompts)",
            "openssl",
            args(&[
                "req",
                "-new",
                "-key",
                &c.file("123456_key.pem"),
                "-out",
                &c.file("123456.csr"),
                "-subj",
                "/C=CH/O=EPFL/CN=tcpip.epfl.ch",
            ]),
        ),
        (
            "the TAs sign the CSR: X.509 v3, serverAuth, subjectAltName",
            "tls-pmu",
            args(&[
                "ca",
                "sign",
                "--ca",
                &c.file("ca"),
                "--csr",
                &c.file("123456.csr"),
                "--out",
                &c.file("123456_cert.pem"),
                "--name",
                &c.extra,
            ]),
        ),
    ];
    let mut signed = String::new();
    for (what, prog, a) in &steps {
        ctx.r.say(&format!("  ({what})"));
        ctx.r.command(&site.display("tcpip"), &line(prog, a));
        let (st, out, err) = site.run("tcpip", prog, a, LIMIT)?;
        ctx.r.output(&out, 2);
        if !st.is_some_and(|s| s.success()) {
            return Err(Error::msg(format!("{prog} failed: {}", err.trim())));
        }
        signed = out;
    }
    Ok(signed)
}

fn check_signed(ctx: &mut Ctx, c: &Certs, signed: &str) {
    ctx.r.check(
        "P6",
        "the course CA signs the student's own CSR as X.509 v3 with serverAuth and a subjectAltName",
        ok_if(
            signed.contains("X.509 v3, RSA 2048, serverAuth, subjectAltName tcpip.epfl.ch, ")
                && c.dir.join("123456_cert.pem").is_file(),
            format!("{} signed", c.file("123456_cert.pem")),
            format!("ca sign said: {}", signed.trim()),
        ),
    );
}

/// A TA's plain `openssl x509 -req` makes an X.509 v1 certificate: refused, with the fix.
fn refuse_a_v1_certificate(ctx: &mut Ctx, site: &Site, c: &Certs) -> Result<()> {
    let v1 = args(&[
        "x509",
        "-req",
        "-in",
        &c.file("123456.csr"),
        "-CA",
        &c.file("ca/cacert.pem"),
        "-CAkey",
        &c.file("ca/cakey.pem"),
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        &c.file("v1_cert.pem"),
    ]);
    ctx.r.command(&site.display("tcpip"), &line("openssl", &v1));
    let (st, _, err) = site.run("tcpip", "openssl", &v1, LIMIT)?;
    if !st.is_some_and(|s| s.success()) {
        return Err(Error::msg(format!(
            "openssl x509 -req failed: {}",
            err.trim()
        )));
    }
    let bad = args(&[
        "serve",
        "--cert",
        &c.file("v1_cert.pem"),
        "--key",
        &c.file("123456_key.pem"),
        "--port",
        "0",
    ]);
    ctx.r
        .command(&site.display("tcpip"), &line("tls-pmu", &bad));
    let (st, _, err) = site.run("tcpip", "tls-pmu", &bad, LIMIT)?;
    ctx.r.output(err.trim(), 1);
    ctx.r.check(
        "P6",
        "a v1 certificate (plain openssl x509 -req) is refused in one line with the fix",
        ok_if(
            st.and_then(|s| s.code()) == Some(1)
                && err.lines().count() == 1
                && err.contains("X.509 v1")
                && err.contains("tls-pmu ca sign"),
            "refused at startup: X.509 v1, no subjectAltName; use tls-pmu ca sign".into(),
            format!("exit {st:?}: {}", err.trim()),
        ),
    );
    Ok(())
}

/// The PMU over TLS on tcpip with the signed certificate, once it accepts connections.
fn serve_pmu_over_tls(ctx: &mut Ctx, site: &Site, c: &Certs) -> Result<Bg> {
    let mut sa = args(&[
        "serve",
        "--cert",
        &c.file("123456_cert.pem"),
        "--key",
        &c.file("123456_key.pem"),
        "--port",
        TLS_PORT,
    ]);
    if !site.netns() {
        sa.extend(args(&["--bind", &site.addr("tcpip").to_string()]));
    }
    ctx.r.command(&site.display("tcpip"), &line("tls-pmu", &sa));
    let server = site.spawn("tcpip", "tls-pmu", &sa)?;
    site.await_tcp("student1", IpAddr::V4(site.addr("tcpip")), 5443, LIMIT)?;
    Ok(server)
}

/// The PDC on student1 verifies the server against the course CA and gets the n messages.
fn pdc_over_tls(ctx: &mut Ctx, site: &Site, c: &Certs, server: &mut Bg) -> Result<()> {
    let ca = args(&[
        "client",
        &c.server_name,
        TLS_PORT,
        "CMD_short:0",
        "--ca",
        &c.file("ca/cacert.pem"),
    ]);
    ctx.r
        .command(&site.display("student1"), &line("tls-pmu", &ca));
    let (st, out, err) = site.run("student1", "tls-pmu", &ca, LIMIT)?;
    ctx.r.output(&out, 5);
    let got = pmu_messages(&out);
    let n = served_n(server, "", "CMD_short:0")?;
    ctx.r.check(
        "P6",
        "the PDC verifies the PMU's certificate against cacert.pem and gets the n PMU messages",
        ok_if(
            st.is_some_and(|s| s.success()) && got == expected(n),
            format!(
                "{n} PMU messages over TLS from {}, n as the server logged",
                c.server_name
            ),
            format!(
                "{} messages, the server sent {n}; {}",
                got.len(),
                err.trim()
            ),
        ),
    );
    Ok(())
}

/// A plaintext client on the TLS port gets no PMU data.
fn plaintext_gets_nothing(ctx: &mut Ctx, site: &Site) -> Result<()> {
    let plain = vec![
        "__nc".to_owned(),
        site.name("tcpip"),
        TLS_PORT.to_owned(),
        "CMD_short:0".to_owned(),
    ];
    ctx.r.command(
        &site.display("student1"),
        &format!(
            "echo CMD_short:0 | nc -N {} {TLS_PORT}    # plaintext",
            site.name("tcpip")
        ),
    );
    let (_, pout, _) = crate::proc::run(site.helper("student1", &plain), LIMIT)?;
    ctx.r.check(
        "P6",
        "a plaintext client gets no PMU data",
        ok_if(
            !pout.contains("PMU data"),
            "refused: no data in clear".into(),
            "the server answered in plaintext".into(),
        ),
    );
    Ok(())
}

fn check_ciphertext(ctx: &mut Ctx, cap: Result<Capture>) {
    let encrypted = "the PMU data is encrypted on the wire";
    let p = match cap.and_then(Capture::stop) {
        Ok(p) => p,
        Err(why) => {
            ctx.r.not_shown("P6", encrypted, &why);
            return;
        }
    };
    ctx.r.observe("in the capture the PMU's replies are ciphertext: 'This is PMU data' never appears on the wire");
    let sent = pcap::data_segments_from(&p, 5443).len();
    ctx.r.check(
        "P6",
        encrypted,
        ok_if(
            sent > 0 && !pcap::plaintext_from(&p, 5443, b"This is PMU data"),
            format!("{sent} data packets from :5443, no plaintext PMU data"),
            "plaintext PMU data seen in the capture".into(),
        ),
    );
}
