//! TP3 parts 2–6 as students hand them in: the handout's programs completed in Python 3
//! (`tests/students/tp3/Lab3_123456_654321/`, hard-coding `tcpip.epfl.ch` as the handout does),
//! run in the tp3 namespace lab from `student1` against our course servers on `tcpip`.
//!
//! Student code is untrusted: it runs as `nobody` (`setpriv --reuid=nobody --regid=nogroup
//! --clear-groups`) with Debian's `/usr/bin/python3` (`python3-websocket` installed for it),
//! `PYTHONUNBUFFERED=1` (its output is piped), from a private copy of the folder owned by
//! `nobody` (part 6 opens its key and certificate by relative name). The assertions are the real
//! outputs: every message the server logged sending, the offset it logged answering, the TV's
//! answer in its record, the PMU messages a verifying TLS client received.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use labnet::netns::Testbed;
use labnet::wire::pmu::{flood_text, message};
use testkit::bin;
use testkit::proc::{Finished, Proc};

const FOLDER: &str = "Lab3_123456_654321";
const PYTHON: &str = "/usr/bin/python3";
const LIMIT: Duration = Duration::from_secs(60);

/// True when the unprivileged runner can work here (`/usr/bin/python3`, setpriv), under the
/// kit's skip policy (`labnet::netns::or_skip`).
fn student_runner_available() -> bool {
    testkit::tool_or_skip(&["setpriv"])
        && labnet::netns::or_skip(if Path::new(PYTHON).is_file() {
            Ok(())
        } else {
            Err(format!("{PYTHON} not found (apt-get install python3)"))
        })
}

/// `id -u nobody` and `id -g nobody`.
fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// A private copy of the submission folder, owned by `nobody`; removed on drop.
struct Submission {
    root: PathBuf,
    dir: PathBuf,
}

impl Submission {
    fn copy() -> Submission {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "netlab-e2e-students-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let dir = root.join(FOLDER);
        std::fs::create_dir_all(&dir).unwrap();
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("students")
            .join("tp3")
            .join(FOLDER);
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "py") {
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
        }
        let s = Submission { root, dir };
        s.give_to_nobody();
        s
    }

    /// Hands the folder and everything in it to `nobody`, private (0700 / 0600).
    fn give_to_nobody(&self) {
        use std::os::unix::fs::PermissionsExt;
        let (uid, gid) = nobody();
        std::os::unix::fs::chown(&self.dir, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let path = entry.unwrap().path();
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    /// `python3 SCRIPT args…` as `nobody` in `host`, from the folder.
    fn command(&self, bed: &Testbed, host: &str, script: &str, args: &[&str]) -> Command {
        let mut cmd = bed.command(host, "setpriv");
        cmd.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            PYTHON,
            script,
        ])
        .args(args)
        .current_dir(&self.dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("PYTHONUNBUFFERED", "1");
        cmd
    }

    /// Runs a student program to its end (at most `limit`); it must exit 0.
    fn run(&self, bed: &Testbed, script: &str, args: &[&str], limit: Duration) -> Finished {
        let f = Proc::spawn(self.command(bed, "student1", script, args))
            .named(script)
            .finish_within(limit);
        assert_eq!(f.code, Some(0), "{script} {args:?}: {f:?}");
        f
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn lab_server(bed: &Testbed, args: &[&str], ready: &str) -> Proc {
    let mut cmd = bed.command("tcpip", bin("lab-server"));
    cmd.args(args);
    let p = Proc::spawn(cmd).named("lab-server");
    p.wait_for(ready);
    p
}

/// The n a server logged for `cmd`: `… CMD_short:0 served: 8 messages …`.
fn served(server: &Proc, service: &str, cmd: &str) -> usize {
    let needle = format!("{cmd} served: ");
    let line = server
        .wait_lines(LIMIT, |lines| {
            lines
                .iter()
                .find(|l| l.contains(service) && l.contains(&needle))
                .cloned()
        })
        .unwrap_or_else(|| panic!("no {needle:?} in {}", server.log()));
    line.split(&needle)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no n in {line:?}"))
}

fn expected(n: usize) -> String {
    (1..=n as u32)
        .map(|i| format!("{}\n", message(i)))
        .collect()
}

fn flood() -> String {
    String::from_utf8(flood_text(65_536)).unwrap()
}

/// Sends SIGINT (the student's Ctrl-C), then waits; a program that ignores it is killed.
fn interrupt(p: Proc) -> Finished {
    let _ = Command::new("kill")
        .args(["-INT", &p.pid().to_string()])
        .status();
    p.stop_after(Duration::from_secs(5))
}

#[test]
fn part2_prints_every_pmu_message_for_the_three_commands_over_ipv6() {
    if !student_runner_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let sub = Submission::copy();
    let server = lab_server(
        &bed,
        &["--no-tv", "--no-reset", "--no-ws", "--seed", "11"],
        "PMU listening on",
    );
    let script = "Part2_123456_654321.py";
    for cmd in ["CMD_short:0", "CMD_short:1"] {
        let out = sub.run(&bed, script, &[cmd], LIMIT);
        let n = served(&server, "PMU #", cmd);
        assert_eq!(out.stdout, expected(n), "{cmd}: {out:?}");
        // The PDC came over IPv6, as the handout requires.
        let line = server.wait_for(&format!("{cmd} served: {n} messages"));
        assert!(line.contains("[fd30::101]:"), "{line}");
    }
    let out = sub.run(&bed, script, &["CMD_floodme"], LIMIT);
    assert_eq!(out.stdout.trim_end(), flood().trim_end());
    server.wait_for("CMD_floodme served: 65536 bytes");
}

#[test]
fn part3_retransmits_until_an_ipv4_only_or_ipv6_only_server_answers() {
    if !student_runner_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let sub = Submission::copy();
    // With these seeds the server drops the first request (two for seed 7): the student must
    // retransmit, and must try the family the server runs on.
    for (family, seed, fam, from) in [
        ("v4", "7", "IPv4", "172.30.0.10"),
        ("v6", "3", "IPv6", "fd30::10"),
    ] {
        let server = lab_server(
            &bed,
            &[
                "--no-pmu", "--no-ws", "--no-tv", "--family", family, "--drop", "0.5", "--seed",
                seed,
            ],
            "RESET listening on",
        );
        let out = sub.run(&bed, "Part3_123456_654321.py", &[], LIMIT);
        let answer = server.wait_for("→ OFFSET=");
        let x = answer.rsplit("OFFSET=").next().unwrap().trim().to_owned();
        let dropped = server.count("dropped on purpose");
        assert!(dropped >= 1, "{}", server.log());
        assert_eq!(server.count("→ OFFSET="), 1, "{}", server.log());
        assert!(answer.contains(&format!("({fam}, 8 bytes)")), "{answer}");
        let lines = out.lines();
        let attempts = lines.iter().filter(|l| l.starts_with("attempt ")).count();
        assert_eq!(attempts, dropped + 1, "{out:?}");
        assert!(
            lines
                .iter()
                .all(|l| !l.starts_with("attempt ") || l.ends_with("over IPv4 and IPv6")),
            "{out:?}"
        );
        let ack: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("acknowledged at "))
            .collect();
        assert_eq!(ack.len(), 1, "{out:?}");
        assert!(
            ack[0].ends_with(&format!(" over {fam} by {from}: OFFSET={x}")),
            "{} vs OFFSET={x}",
            ack[0]
        );
        drop(server);
    }
}

#[test]
fn part4_receiver_prints_the_tv_and_the_senders_300_characters_get_the_answer() {
    if !student_runner_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let sub = Submission::copy();
    let record = sub.root.join("tv.jsonl");
    let server = lab_server(
        &bed,
        &[
            "--no-pmu",
            "--no-reset",
            "--no-ws",
            "--iface",
            "172.30.0.10",
            "--interval",
            "0.2",
            "--record",
            record.to_str().unwrap(),
        ],
        "TV listening on",
    );
    let receiver =
        Proc::spawn(sub.command(&bed, "student1", "Part4_Receiver_123456_654321.py", &[]))
            .named("receiver");
    receiver
        .wait_count("swcmTV: ", 3, LIMIT)
        .unwrap_or_else(|| panic!("no TV lines: {}", receiver.log()));

    // The sender on the other student host, 300 characters: the handout's "at least 300".
    let text: String = "Romeo and Juliet, act two, the balcony. "
        .repeat(8)
        .chars()
        .take(300)
        .collect();
    let mut sender =
        Proc::spawn_with_stdin(sub.command(&bed, "student2", "Part4_Sender_123456_654321.py", &[]))
            .named("sender");
    sender.send(&text);
    sender.close_stdin();
    let sent = sender.finish_within(LIMIT);
    assert_eq!(sent.code, Some(0), "{sent:?}");
    assert!(
        sent.stdout
            .contains("sent 300 characters to 224.1.1.1:5005"),
        "{sent:?}"
    );

    let answer = "swcmTV: Thank you 123456, we received your 300-character message";
    receiver
        .wait_line(answer, LIMIT)
        .unwrap_or_else(|| panic!("no answer: {}", receiver.log()));
    let out = interrupt(receiver);
    let lines = out.lines();
    assert_eq!(lines[0], "listening to 224.1.1.1:5005");
    assert_eq!(lines.iter().filter(|l| **l == answer).count(), 1, "{out:?}");
    assert!(
        lines.contains(&format!("123456: {text}").as_str()),
        "{out:?}"
    );
    // Every line the receiver printed was on the group: the station recorded each datagram.
    let recorded: Vec<Recorded> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(Recorded::parse)
        .collect();
    for l in lines.iter().skip(1) {
        let (id, text) = l.split_once(": ").unwrap_or_else(|| panic!("{l:?}"));
        assert!(
            recorded.iter().any(|e| e.id == id && e.text == text),
            "{l:?} is not in the record"
        );
    }
    // The record, for the postmortem analysis: the subscriber's 300 characters, answered.
    assert!(
        recorded
            .iter()
            .any(|e| e.id == "123456" && e.chars == 300 && e.answered),
        "{recorded:?}"
    );
    drop(server);
}

/// One line of the TV's record, as far as these checks need it.
#[derive(Debug)]
struct Recorded {
    id: String,
    text: String,
    chars: u64,
    answered: bool,
}

impl Recorded {
    fn parse(line: &str) -> Recorded {
        let v = testkit::proc::json(line);
        Recorded {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            text: v["text"].as_str().unwrap_or_default().to_owned(),
            chars: v["chars"].as_u64().unwrap_or(0),
            answered: v["answered"].is_string(),
        }
    }
}

#[test]
fn part5_prints_each_websocket_message_and_the_flood() {
    if !student_runner_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let sub = Submission::copy();
    let server = lab_server(
        &bed,
        &["--no-tv", "--no-reset", "--no-pmu", "--seed", "5"],
        "WS listening on",
    );
    // The runner really drops root: the student's Python is nobody, in no group but nogroup.
    let who = sub.run(
        &bed,
        "-c",
        &["import os; print(os.getuid(), os.getgid(), os.getgroups())"],
        LIMIT,
    );
    let (uid, gid) = nobody();
    assert_eq!(who.stdout, format!("{uid} {gid} []\n"));
    let script = "Part5_123456_654321.py";
    let out = sub.run(&bed, script, &["CMD_short:0"], LIMIT);
    let n = served(&server, "WS #", "CMD_short:0");
    assert_eq!(out.stdout, expected(n), "{out:?}");
    let out = sub.run(&bed, script, &["CMD_floodme"], LIMIT);
    assert_eq!(out.stdout.trim_end(), flood().trim_end());
    server.wait_for("CMD_floodme served: one binary message");
}

#[test]
fn part6_serves_the_pmu_over_tls_with_a_csr_signed_by_ca_sign() {
    if !student_runner_available() {
        return;
    }
    let bed = labnet::testbed_or_skip!(&labnet::topo::TP3);
    let sub = Submission::copy();
    let ca = sub.root.join("ca");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&sub.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    // The student: the handout's two commands, with a 2048-bit key.
    openssl(&["genrsa", "-out", "123456_key.pem", "2048"]);
    openssl(&[
        "req",
        "-new",
        "-key",
        "123456_key.pem",
        "-out",
        "123456.csr",
        "-subj",
        "/C=CH/O=EPFL/CN=tcpip.epfl.ch",
    ]);
    // The TAs: the course CA signs the CSR for the host the server runs on.
    let tls_pmu = |args: &[&str]| {
        let out = Command::new(bin("tls-pmu"))
            .args(args)
            .current_dir(&sub.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "tls-pmu {args:?}: {out:?}");
    };
    tls_pmu(&["ca", "init", "--out", ca.to_str().unwrap()]);
    tls_pmu(&[
        "ca",
        "sign",
        "--ca",
        ca.to_str().unwrap(),
        "--csr",
        "123456.csr",
        "--out",
        "123456_cert.pem",
        "--name",
        "student1",
    ]);
    sub.give_to_nobody();

    let server = Proc::spawn(sub.command(&bed, "student1", "Part6_PMU_123456_654321.py", &[]))
        .named("Part6 PMU");
    server.wait_for("PMU (TLS) listening on port 5443");
    let cacert = ca.join("cacert.pem");
    for (k, host) in ["student2", "tcpip"].into_iter().enumerate() {
        let mut cmd = bed.command(host, bin("tls-pmu"));
        cmd.args(["client", "student1", "5443", "CMD_short:0", "--ca"])
            .arg(&cacert);
        let out = Proc::spawn(cmd)
            .named("tls-pmu client")
            .finish_within(LIMIT);
        assert_eq!(out.code, Some(0), "{out:?}\n{}", server.log());
        let got: Vec<String> = out.msgs("RECV");
        let served = server
            .wait_count("CMD_short:0 -> sent ", k + 1, LIMIT)
            .and_then(|v| v.last().cloned())
            .unwrap_or_else(|| panic!("{}", server.log()));
        let n: usize = served
            .rsplit("sent ")
            .next()
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let want: Vec<String> = (1..=n as u32).map(message).collect();
        assert_eq!(got, want, "{out:?}");
    }
    let out = interrupt(server);
    assert!(!out.stdout.contains("handshake failed"), "{out:?}");
}
