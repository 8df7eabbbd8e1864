//! TP3 (seed 001), on the `tp3` topology: the course servers (`lab-server`) on `tcpip`, the
//! students on `student1` and `student2`. Parts 1–6 and the report questions a program can show.

use std::net::IpAddr;
use std::time::Duration;

use labnet::topo::{self, TP3};

use super::{Ctx, NEEDS_NETNS, args, line, recv_lines};
use crate::pcap;
use crate::site::Site;

const LIMIT: Duration = Duration::from_secs(30);

/// The tp3 site with lab-server running on `tcpip` and answering.
fn site_with_server(ctx: &mut Ctx) -> Result<Site, String> {
    let mut site = ctx.bring_up(&TP3)?;
    let dir = site.dir.clone();
    let svc = crate::lab::services(&site, |_| dir.clone())
        .into_iter()
        .next()
        .ok_or("no lab-server service")?;
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
    let bg = site.spawn("tcpip", "lab-server", &a)?;
    site.keep(bg);
    for p in &svc.ports {
        site.await_tcp("student1", IpAddr::V4(site.addr("tcpip")), *p, LIMIT)?;
    }
    Ok(site)
}

fn ok_if(cond: bool, yes: String, no: String) -> Result<String, String> {
    if cond { Ok(yes) } else { Err(no) }
}

fn recv_count(out: &str, needle: &str) -> usize {
    recv_lines(out)
        .iter()
        .filter(|r| r.text.contains(needle))
        .count()
}

/// Part 1.2 (codes C and D): the server prints 16-byte chunks, the client 8-byte ones; "No more
/// data" only once the client closes.
pub fn basics(ctx: &mut Ctx) -> Result<(), String> {
    let site = ctx.bring_up(&TP3)?;
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
    let message = "O Romeo, Romeo! wherefore art thou Romeo?";
    // Q6 needs the server's chunks: wait until it printed all 41 bytes.
    srv.wait_for(LIMIT, |out, _| {
        recv_lines(out)
            .iter()
            .map(|r| r.text.trim_start_matches("received: ").len())
            .sum::<usize>()
            >= message.len()
            || out.matches("received:").count() >= 3
    })?;
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
    ctx.r
        .command(&site.display(host), "^C    # Ctrl-C ends code D");
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
        seen.map(|()| "printed once the client's FIN arrived (recv returned 0)".to_owned()),
    );
    drop(srv);
    drop(site);
    Ok(())
}

/// Part 2 (Q9–Q13): one PMU message per segment with d=1, fewer segments with d=0, the flood in
/// many segments and recv() calls.
pub fn pmu(ctx: &mut Ctx) -> Result<(), String> {
    let site = site_with_server(ctx)?;
    let tcpip = site.name("tcpip");
    let port = topo::PMU_PORT.to_string();
    let mut segments = Vec::new();
    for d in ["1", "0"] {
        let cap = ctx.capture(
            &site,
            "student1",
            &format!("tcp port {port}"),
            &format!("pmu{d}.pcap"),
        );
        let a = args(&[&tcpip, &port, &format!("CMD_short:{d}")]);
        ctx.r
            .command(&site.display("student1"), &line("pmu-pdc-client", &a));
        let (st, out, err) = site.run("student1", "pmu-pdc-client", &a, Duration::from_secs(40))?;
        ctx.r.output(&out, 5);
        if !st.is_some_and(|s| s.success()) {
            return Err(format!("pmu-pdc-client failed: {}", err.trim()));
        }
        let n = recv_count(&out, "This is PMU data");
        let in_order = (1..=n).all(|i| {
            recv_lines(&out)
                .iter()
                .any(|r| r.text.trim() == format!("This is PMU data {i}"))
        });
        ctx.r.check(
            "Q9",
            &format!("d={d}: every PMU message on its own line, 1..n"),
            ok_if(
                n >= 1 && in_order,
                format!("{n} lines 'This is PMU data 1..{n}'"),
                format!("{n} lines, in order: {in_order}"),
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
        match cap.and_then(|c| c.stop()) {
            Ok(p) => {
                let segs = pcap::data_segments_from(&p, topo::PMU_PORT).len();
                let v6 = p.iter().any(|x| x.src.is_ipv6());
                segments.push((d, n, segs));
                if d == "1" {
                    ctx.r.observe("with d=1 every send() of the PMU leaves in its own segment: data packets = messages");
                    ctx.r.check(
                        "Q9",
                        "d=1: packets with payload from the PMU = number of messages",
                        ok_if(
                            segs == n,
                            format!("{segs} data packets for {n} messages"),
                            format!("{segs} data packets for {n} messages"),
                        ),
                    );
                    ctx.r.check(
                        "Q9",
                        "part 2 runs over IPv6",
                        ok_if(
                            v6 || !site.netns(),
                            "the capture shows IPv6 (fd30::)".into(),
                            "no IPv6 packet in the capture".into(),
                        ),
                    );
                } else {
                    ctx.r.observe("with d=0 the sends follow each other faster than the ACKs: Nagle's algorithm coalesces them into fewer segments (Q10)");
                    ctx.r.check(
                        "Q9",
                        "d=0: how many packets with payload came from the PMU",
                        ok_if(
                            segs >= 1,
                            format!("{segs} data packets for {n} messages"),
                            "no data packet captured".into(),
                        ),
                    );
                }
            }
            Err(why) => ctx.r.not_shown(
                "Q9",
                &format!("d={d}: data packets from the PMU counted in a capture"),
                &why,
            ),
        }
    }

    let cap = ctx.capture(&site, "student1", &format!("tcp port {port}"), "flood.pcap");
    let a = args(&[&tcpip, &port, "CMD_floodme"]);
    ctx.r
        .command(&site.display("student1"), &line("pmu-pdc-client", &a));
    let (st, out, err) = site.run("student1", "pmu-pdc-client", &a, LIMIT)?;
    let stat: Vec<&str> = out.lines().filter(|l| l.contains("[STAT]")).collect();
    ctx.r.output(&stat.join("\n"), 3);
    if !st.is_some_and(|s| s.success()) {
        return Err(format!("pmu-pdc-client CMD_floodme failed: {}", err.trim()));
    }
    // "the flood: 65536 bytes in 16 recv() calls …"
    let nums: Vec<usize> = stat
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
    ctx.r.check(
        "Q12",
        "the whole flood is received and displayed",
        ok_if(
            bytes == 65536,
            format!("{bytes} bytes"),
            format!("{bytes} bytes (want 65536)"),
        ),
    );
    match cap.and_then(|c| c.stop()) {
        Ok(p) => {
            let segs = pcap::data_segments_from(&p, topo::PMU_PORT).len();
            let wire = pcap::data_bytes_from(&p, topo::PMU_PORT);
            ctx.r.observe("one send() of 64 KiB leaves as many segments; recv() returns whatever has arrived, so the counts differ (Q13)");
            ctx.r.check(
                "Q12",
                "packets with payload from the PMU for the flood",
                ok_if(
                    segs > 1 && wire == bytes,
                    format!("{segs} data packets carrying {wire} bytes"),
                    format!("{segs} data packets, {wire} bytes on the wire vs {bytes} received"),
                ),
            );
            ctx.r.check(
                "Q13",
                "recv() calls vs packets",
                ok_if(
                    calls >= 1 && segs >= 1,
                    format!(
                        "{calls} recv() calls for {segs} packets: {}",
                        if calls == segs {
                            "equal this time"
                        } else {
                            "different"
                        }
                    ),
                    format!("{calls} recv() calls, {segs} packets"),
                ),
            );
        }
        Err(why) => {
            ctx.r.not_shown(
                "Q12",
                "packets with payload from the PMU for the flood",
                &why,
            );
            ctx.r.check(
                "Q13",
                "recv() calls counted by the client",
                ok_if(
                    calls >= 1,
                    format!("{calls} recv() calls"),
                    "no recv() count printed".into(),
                ),
            );
        }
    }
    let _ = segments;
    drop(site);
    Ok(())
}

/// Part 3 (Q14–Q15): retransmission until OFFSET=X, over whichever family answers; the loss
/// estimate over 100 resets is close to the server's drop probability.
pub fn reset(ctx: &mut Ctx) -> Result<(), String> {
    let site = site_with_server(ctx)?;
    let tcpip = site.name("tcpip");
    let a = args(&[&tcpip]);
    ctx.r
        .command(&site.display("student1"), &line("reset-client", &a));
    let (st, out, err) = site.run("student1", "reset-client", &a, LIMIT)?;
    ctx.r.output(&out, 6);
    if !st.is_some_and(|s| s.success()) {
        return Err(format!("reset-client failed: {}", err.trim()));
    }
    let answer = recv_lines(&out)
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
    let a = args(&[&tcpip, "--runs", "100", "--timeout", "0.2"]);
    ctx.r
        .command(&site.display("student1"), &line("reset-client", &a));
    let (st, out, err) = site.run("student1", "reset-client", &a, Duration::from_secs(120))?;
    let stat: Vec<&str> = out.lines().filter(|l| l.contains("[STAT]")).collect();
    ctx.r.output(&stat.join("\n"), 12);
    if !st.is_some_and(|s| s.success()) {
        return Err(format!("reset-client --runs 100 failed: {}", err.trim()));
    }
    ctx.r.observe(
        "the server drops 30% of requests: about 1/(1-0.3) = 1.43 datagrams per acknowledged reset",
    );
    let est = stat
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
    drop(site);
    Ok(())
}

/// Part 4 (Q16–Q18): the TV's lines with ID swcmTV, and its answer to a long message.
pub fn tv(ctx: &mut Ctx) -> Result<(), String> {
    let site = site_with_server(ctx)?;
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
    let mut ca_extra = Vec::new();
    if !site.netns() {
        ra.extend(args(&["--iface", "127.0.0.1"]));
        ca_extra = args(&["--ttl", "0", "--iface", "127.0.0.1"]);
    }
    ctx.r
        .command(&site.display("student1"), &line("udp-multicast", &ra));
    let mut rx = site.spawn("student1", "udp-multicast", &ra)?;
    rx.wait_for(LIMIT, |out, _| recv_count(out, "swcmTV:") >= 2)?;
    ctx.r.output(&rx.stdout(), 4);
    ctx.r.check(
        "Q16",
        "the receiver shows the play's lines with ID swcmTV",
        ok_if(
            recv_count(&rx.stdout(), "swcmTV:") >= 2,
            format!("{} lines from swcmTV", recv_count(&rx.stdout(), "swcmTV:")),
            "no TV line".into(),
        ),
    );

    let long = "O Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy name; \
                Or, if thou wilt not, be but sworn my love, And I'll no longer be a Capulet. \
                'Tis but thy name that is my enemy; Thou art thyself, though not a Montague. \
                What's Montague? It is nor hand, nor foot, Nor arm, nor face, nor any other part.";
    for (id, host) in [("123456", "student2"), ("654321", "student2")] {
        let mut a = args(&["--id", id, "--linger", "3"]);
        a.extend(ca_extra.clone());
        ctx.r.command(
            &site.display(host),
            &format!(
                "echo '<{} characters>' | {}",
                long.len(),
                line("mcast-chat", &a)
            ),
        );
        let mut chat = site.spawn_stdin(host, "mcast-chat", &a)?;
        if let Some(w) = chat.stdin() {
            use std::io::Write as _;
            writeln!(w, "{long}").map_err(|e| format!("write to mcast-chat: {e}"))?;
        }
        chat.close_stdin();
        chat.finish(LIMIT)?;
        let answer = recv_lines(&chat.stdout())
            .into_iter()
            .find(|r| r.text.contains("swcmTV") && r.text.contains(id));
        ctx.r.output(
            &answer.as_ref().map(|r| r.text.clone()).unwrap_or_default(),
            1,
        );
        ctx.r.check(
            "Q18",
            &format!("the TV answers the >300-character message of {id} on the group"),
            answer
                .map(|r| r.text)
                .ok_or_else(|| format!("no answer naming {id}")),
        );
    }
    rx.kill();
    ctx.r
        .observe("the receiver on student1 saw both answers too: they go to the whole group");
    let seen = rx.stdout();
    ctx.r.check(
        "Q18",
        "every member of the group sees the answers",
        ok_if(
            seen.contains("123456") && seen.contains("654321"),
            "student1's receiver printed both answers".into(),
            "the receiver missed an answer".into(),
        ),
    );
    let record = std::fs::read_to_string(site.dir.join("tv.jsonl")).unwrap_or_default();
    ctx.r.check(
        "Q18",
        "the station records every datagram on the group (postmortem analysis)",
        ok_if(
            record.contains("123456") && record.contains("654321"),
            format!(
                "{} records, both subscribers' messages among them",
                record.lines().count()
            ),
            "the record misses a subscriber's message".into(),
        ),
    );
    drop(site);
    Ok(())
}

/// Part 5 (Q19–Q21): n message events for CMD_short:0, one for the flood.
pub fn ws(ctx: &mut Ctx) -> Result<(), String> {
    let site = site_with_server(ctx)?;
    let url = format!("ws://{}:{}", site.name("tcpip"), topo::WS_PORT);
    let filter = format!("tcp port {}", topo::WS_PORT);
    for cmd in ["CMD_short:0", "CMD_floodme"] {
        let cap = ctx.capture(&site, "student1", &filter, "ws.pcap");
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
            return Err(format!("ws-client failed: {}", err.trim()));
        }
        let events: Option<usize> = out
            .lines()
            .find(|l| l.contains("message events"))
            .and_then(|l| l.split("[STAT]").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|w| w.parse().ok());
        let n = recv_count(&out, "This is PMU data");
        let segs = cap
            .and_then(|c| c.stop())
            .map(|p| pcap::data_segments_from(&p, topo::WS_PORT).len());
        if cmd == "CMD_short:0" {
            ctx.r.observe("one on_message event per PMU message: WebSocket keeps message boundaries that TCP does not (Q20)");
            ctx.r.check(
                "Q20",
                "CMD_short:0: one message event per PMU message",
                ok_if(
                    events == Some(n) && n >= 1,
                    format!("{n} messages, {n} events"),
                    format!("{n} messages, events {events:?}"),
                ),
            );
            match segs {
                Ok(s) => ctx.r.check(
                    "Q19",
                    "packets from the WebSocket server carrying the messages",
                    ok_if(
                        s >= 1,
                        format!("{s} data packets (compare with part 2, d=0)"),
                        "none captured".into(),
                    ),
                ),
                Err(why) => ctx.r.not_shown(
                    "Q19",
                    "packets from the WebSocket server carrying the messages",
                    &why,
                ),
            }
        } else {
            ctx.r.observe(
                "the 64 KiB flood arrives in many TCP packets but as ONE message event (Q21)",
            );
            ctx.r.check(
                "Q21",
                "CMD_floodme: the whole flood in one message event",
                ok_if(
                    events == Some(1),
                    "1 event".into(),
                    format!("events {events:?}"),
                ),
            );
            match segs {
                Ok(s) => ctx.r.check(
                    "Q21",
                    "the flood crosses the network in several packets",
                    ok_if(
                        s > 1,
                        format!("{s} data packets for 1 event"),
                        format!("{s} data packets"),
                    ),
                ),
                Err(why) => ctx.r.not_shown(
                    "Q21",
                    "the flood crosses the network in several packets",
                    &why,
                ),
            }
        }
    }
    drop(site);
    Ok(())
}

/// Part 6: the PMU over TLS, the certificate flow, and ciphertext on the wire.
pub fn tls(ctx: &mut Ctx) -> Result<(), String> {
    let mut site = ctx.bring_up(&TP3)?;
    let dir = site.dir.join("certs");
    let d = dir.display().to_string();
    let mut a = args(&["certs", "--id", "123456", "--out", &d]);
    if !site.netns() {
        // Loopback: the server is 127.0.0.10, which the certificate must name.
        a.extend(args(&["--hosts", &site.addr("tcpip").to_string()]));
    }
    ctx.r.command(&site.display("tcpip"), &line("tls-pmu", &a));
    let (st, out, err) = site.run("tcpip", "tls-pmu", &a, LIMIT)?;
    ctx.r.output(&out, 3);
    if !st.is_some_and(|s| s.success()) {
        return Err(format!("tls-pmu certs failed: {}", err.trim()));
    }
    let files = [
        "cacert.pem",
        "123456_key.pem",
        "123456.csr",
        "123456_cert.pem",
    ];
    let have: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| dir.join(f).is_file())
        .collect();
    ctx.r.check(
        "P6",
        "key, CSR and CA-signed certificate are made (the handout's flow)",
        ok_if(
            have.len() == files.len(),
            have.join(", "),
            format!("only {}", have.join(", ")),
        ),
    );
    let port = "5443";
    let mut sa = args(&[
        "serve",
        "--cert",
        &format!("{d}/123456_cert.pem"),
        "--key",
        &format!("{d}/123456_key.pem"),
        "--port",
        port,
    ]);
    if !site.netns() {
        sa.extend(args(&["--bind", &site.addr("tcpip").to_string()]));
    }
    ctx.r.command(&site.display("tcpip"), &line("tls-pmu", &sa));
    let bg = site.spawn("tcpip", "tls-pmu", &sa)?;
    site.keep(bg);
    site.await_tcp("student1", IpAddr::V4(site.addr("tcpip")), 5443, LIMIT)?;
    let cap = ctx.capture(&site, "student1", "tcp port 5443", "tls.pcap");
    let ca = args(&[
        "client",
        &site.name("tcpip"),
        port,
        "CMD_short:0",
        "--ca",
        &format!("{d}/cacert.pem"),
    ]);
    ctx.r
        .command(&site.display("student1"), &line("tls-pmu", &ca));
    let (st, out, err) = site.run("student1", "tls-pmu", &ca, LIMIT)?;
    ctx.r.output(&out, 5);
    let n = recv_count(&out, "This is PMU data");
    ctx.r.check(
        "P6",
        "the PDC verifies the PMU's certificate and gets the PMU data over TLS",
        ok_if(
            st.is_some_and(|s| s.success()) && n >= 1,
            format!("{n} PMU messages over TLS"),
            format!("{n} messages; {}", err.trim()),
        ),
    );
    let plain = vec![
        "__nc".to_owned(),
        site.name("tcpip"),
        port.to_owned(),
        "CMD_short:0".to_owned(),
    ];
    ctx.r.command(
        &site.display("student1"),
        &format!(
            "echo CMD_short:0 | nc -N {} {port}    # plaintext",
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
    match cap.and_then(|c| c.stop()) {
        Ok(p) => {
            ctx.r.observe("in the capture the PMU's replies are ciphertext: 'This is PMU data' never appears on the wire");
            let sent = pcap::data_segments_from(&p, 5443).len();
            ctx.r.check(
                "P6",
                "the PMU data is encrypted on the wire",
                ok_if(
                    sent > 0 && !pcap::plaintext_from(&p, 5443, b"This is PMU data"),
                    format!("{sent} data packets from :5443, no plaintext PMU data"),
                    "plaintext PMU data seen in the capture".into(),
                ),
            );
        }
        Err(why) => ctx
            .r
            .not_shown("P6", "the PMU data is encrypted on the wire", &why),
    }
    if !site.netns() {
        ctx.r.say(&format!(
            "  (loopback: {NEEDS_NETNS} for the two-host version)"
        ));
    }
    drop(site);
    Ok(())
}
