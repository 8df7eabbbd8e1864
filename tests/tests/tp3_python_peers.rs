//! TP3 interop: handout-style Python student clients (`tests/peers/student_*.py`, stdlib plus the
//! `websocket-client` package for part 5) against our `lab-server` on loopback, with their
//! printed output asserted exactly. If these pass, a student following the handout in Python can
//! do parts 2–5 against the servers we ship.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use labnet::sock::{Iface, MulticastOptions, multicast_sender};
use labnet::wire::pmu::{flood_text, message};
use testkit::bin;
use testkit::proc::{Proc, output};

const WAIT: Duration = Duration::from_secs(5);

/// lab-server on port 0 with its log collected; killed on drop.
fn lab_server(args: &[&str]) -> Proc {
    Proc::spawn(
        Command::new(bin("lab-server"))
            .args(["--pmu-port", "0", "--reset-port", "0", "--ws-port", "0"])
            .args(args),
    )
}

/// The port a lab-server service logged (`PMU`, `RESET`, `TV`, `WS`).
fn service_port(server: &Proc, service: &str) -> u16 {
    server
        .addr_after(&format!("{service} listening on "))
        .port()
}

fn peer(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

/// Runs a peer script to completion (each script bounds its own waits; killed after a minute).
fn python(script: &str, args: &[&str]) -> Output {
    let out = output(
        Command::new("python3").arg(peer(script)).args(args),
        b"",
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn short_lines(n: u32) -> String {
    (1..=n).map(|i| format!("{}\n", message(i))).collect()
}

#[test]
fn python_pdc_prints_each_pmu_message_over_ipv6() {
    let server = lab_server(&["--no-tv", "--no-reset", "--no-ws", "--messages", "9"]);
    let port = service_port(&server, "PMU").to_string();
    let bytes: usize = (1..=9).map(|i| message(i).len()).sum();
    for cmd in ["CMD_short:0", "CMD_short:1"] {
        let out = python("student_pmu_client.py", &["::1", &port, cmd]);
        assert_eq!(
            stdout(&out),
            format!("{}Received {bytes} bytes\n", short_lines(9)),
            "{cmd}"
        );
    }
    server.wait_for("CMD_short:1 served: 9 messages");
}

#[test]
fn python_pdc_receives_the_whole_flood() {
    let server = lab_server(&[
        "--no-tv",
        "--no-reset",
        "--no-ws",
        "--flood-bytes",
        "100000",
    ]);
    let port = service_port(&server, "PMU").to_string();
    let out = python("student_pmu_client.py", &["::1", &port, "CMD_floodme"]);
    let mut want = String::from_utf8(flood_text(100_000)).unwrap();
    if !want.ends_with('\n') {
        want.push('\n');
    }
    want.push_str("Received 100000 bytes\n");
    assert_eq!(stdout(&out), want);
    let recv_line = String::from_utf8(out.stderr).unwrap();
    let calls: u32 = recv_line
        .strip_prefix("recv() was called ")
        .and_then(|r| r.strip_suffix(" times\n"))
        .unwrap_or_else(|| panic!("{recv_line}"))
        .parse()
        .unwrap();
    // 100,000 bytes in 4096-byte reads, plus the read that sees the close.
    assert!(calls >= 26, "{calls}");
}

/// The offset the seeded server gives first: a second server with the same seed, asked directly.
fn first_offset(seed: &str, family: &str) -> String {
    let server = lab_server(&[
        "--no-tv", "--no-pmu", "--no-ws", "--drop", "0", "--seed", seed, "--family", family,
    ]);
    let port = service_port(&server, "RESET");
    let (bind, host) = if family == "v6" {
        ("[::1]:0", "::1")
    } else {
        ("127.0.0.1:0", "127.0.0.1")
    };
    let s = UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.send_to(b"RESET:20", (host, port)).unwrap();
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn python_reset_client_finds_the_family_that_answers() {
    for (family, name) in [("v4", "IPv4"), ("v6", "IPv6")] {
        let want = first_offset("77", family);
        let server = lab_server(&[
            "--no-tv", "--no-pmu", "--no-ws", "--drop", "0", "--seed", "77", "--family", family,
        ]);
        let port = service_port(&server, "RESET").to_string();
        let out = python("student_reset_client.py", &["127.0.0.1", "::1", &port]);
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("Time: 20") && lines[0].len() == "Time: 2026-11-23 13:20:31".len(),
            "{text}"
        );
        // Both families are tried in one attempt: 2 packets.
        assert_eq!(
            lines[1],
            format!("Received {want} over {name} after 2 packets")
        );
    }
}

#[test]
fn python_reset_client_retransmits_until_answered() {
    // With drop 0.5 some attempts go unanswered; however many it takes, the client must end with
    // an answer.
    let server = lab_server(&[
        "--no-tv", "--no-pmu", "--no-ws", "--drop", "0.5", "--seed", "3",
    ]);
    let port = service_port(&server, "RESET").to_string();
    let out = python("student_reset_client.py", &["127.0.0.1", "::1", &port]);
    let text = stdout(&out);
    let last = text.lines().nth(1).unwrap_or_else(|| panic!("{text}"));
    assert!(last.starts_with("Received OFFSET="), "{text}");
    server.wait_for("→ OFFSET=");
}

#[test]
fn python_tv_receiver_prints_id_and_text_and_sees_the_answer() {
    // Loopback only, TTL 0; the play runs at one line per minute so that the only datagrams in
    // the test window are the ones sent here and the station's answer.
    let server = lab_server(&[
        "--no-pmu",
        "--no-reset",
        "--no-ws",
        "--tv-port",
        "0",
        "--iface",
        "127.0.0.1",
        "--ttl",
        "0",
        "--interval",
        "60",
    ]);
    let port = service_port(&server, "TV");
    let receiver = Proc::spawn(
        Command::new("python3")
            .arg(peer("student_tv_receiver.py"))
            .args(["224.1.1.1", &port.to_string(), "3", "127.0.0.1"]),
    );
    let joined = receiver.wait_for("");
    assert_eq!(joined, format!("joined 224.1.1.1:{port}"));

    let group = IpAddr::V4(Ipv4Addr::new(224, 1, 1, 1));
    let opts = MulticastOptions {
        ttl: 0,
        loopback: true,
        iface: Iface::V4(Ipv4Addr::LOCALHOST),
    };
    let tx = multicast_sender(group, &opts).unwrap();
    let long = "O Romeo! ".repeat(40); // 360 characters
    tx.send_to(b"123456Hello from a subscriber", (group, port))
        .unwrap();
    tx.send_to(format!("123456{long}").as_bytes(), (group, port))
        .unwrap();

    let f = receiver.stop_after(Duration::from_secs(15));
    assert!(!f.killed, "receiver did not get 3 datagrams: {f:?}");
    let rest = f.stdout.split_once('\n').map_or("", |(_, rest)| rest);
    assert_eq!(
        rest,
        format!(
            "123456: Hello from a subscriber\n123456: {long}\n\
             swcmTV: Thank you 123456, we received your 360-character message\n"
        )
    );
}

#[test]
fn python_websocket_client_gets_one_event_per_message() {
    let have = Command::new("python3")
        .args(["-c", "import websocket"])
        .status()
        .unwrap();
    assert!(
        have.success(),
        "the websocket-client Python package is needed (pip install websocket-client)"
    );
    for mode in [&[][..], &["--text"][..]] {
        let mut args = vec![
            "--no-tv",
            "--no-reset",
            "--no-pmu",
            "--messages",
            "8",
            "--flood-bytes",
            "70000",
        ];
        args.extend_from_slice(mode);
        let server = lab_server(&args);
        let url = format!("ws://127.0.0.1:{}/", service_port(&server, "WS"));
        let out = python("student_ws_client.py", &[&url, "CMD_short:0"]);
        assert_eq!(
            stdout(&out),
            format!("{}on_message was called 8 times\n", short_lines(8)),
            "{mode:?}"
        );
        let out = python("student_ws_client.py", &[&url, "CMD_floodme"]);
        let flood = String::from_utf8(flood_text(70_000)).unwrap();
        assert_eq!(
            stdout(&out),
            format!("{flood}\non_message was called 1 times\n"),
            "{mode:?}"
        );
    }
}

/// The whole TP3 as a class would run it: lab-server on `tcpip` with the handout's ports, the
/// Python students on `student1` and `student2`, over the lab's IPv4 and IPv6 addresses.
#[test]
fn python_students_on_the_tp3_topology_reach_every_service() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let tcpip = &bed.host("tcpip").links[0];
    let (v4, v6) = (tcpip.ipv4.to_string(), tcpip.ipv6.unwrap().to_string());
    let server = Proc::from_child(
        bed.spawn(
            "tcpip",
            bin("lab-server"),
            &["--messages", "5", "--drop", "0", "--interval", "0.2"],
        )
        .unwrap(),
    );
    for service in ["PMU", "RESET", "WS", "TV"] {
        server.wait_for(&format!("{service} listening on"));
    }
    let py = |host: &str, script: &str, args: &[&str]| -> String {
        let mut all = vec![peer(script).to_string_lossy().into_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let out = bed.run(host, "python3", &all).unwrap();
        assert!(
            out.status.success(),
            "{script} on {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let bytes: usize = (1..=5).map(|i| message(i).len()).sum();
    assert_eq!(
        py(
            "student1",
            "student_pmu_client.py",
            &[&v6, "5003", "CMD_short:0"]
        ),
        format!("{}Received {bytes} bytes\n", short_lines(5))
    );
    let reset = py("student1", "student_reset_client.py", &[&v4, &v6, "5004"]);
    assert!(
        reset
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("Received OFFSET=")),
        "{reset}"
    );
    assert_eq!(
        py(
            "student2",
            "student_ws_client.py",
            &[&format!("ws://{v4}:5006/"), "CMD_short:0"]
        ),
        format!("{}on_message was called 5 times\n", short_lines(5))
    );
    // A student host joins the group with the default interface and hears the play, sent with
    // TTL 1 across the lab segment.
    let tv = py(
        "student2",
        "student_tv_receiver.py",
        &["224.1.1.1", "5005", "3"],
    );
    let lines: Vec<&str> = tv.lines().collect();
    assert_eq!(lines[0], "joined 224.1.1.1:5005");
    let play = lab_server_lines();
    for line in &lines[1..] {
        let text = line
            .strip_prefix("swcmTV: ")
            .unwrap_or_else(|| panic!("{tv}"));
        assert!(play.contains(&text), "{text:?} is a line of the play");
    }
    assert_eq!(lines.len(), 4, "{tv}");
    server.wait_for(&format!(
        "PMU #1 [{}]:",
        bed.host("student1").links[0].ipv6.unwrap()
    ));
}

/// The play as lab-server ships it (read from its data file: this crate does not link lab-server).
fn lab_server_lines() -> Vec<&'static str> {
    include_str!("../../crates/lab-server/data/romeo-and-juliet.txt")
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect()
}
