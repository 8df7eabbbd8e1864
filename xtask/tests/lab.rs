//! `cargo xtask lab up|status|exec|down` on the real namespace backend, with a test prefix so it
//! never touches a lab an instructor brought up: `up` starts the standing services and they
//! answer; `exec` runs inside the host with the lab binaries on the PATH; `down` leaves no
//! namespace, runtime directory, hosts file or process behind, and is idempotent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use labnet::netns::netns_or_skip;

fn bin_dir() -> PathBuf {
    for b in [
        "echo-server",
        "tcp-tunnel",
        "chat-server",
        "lab-server",
        "udp-broadcast",
    ] {
        testkit::bin(b);
    }
    testkit::bin("echo-server").parent().unwrap().to_path_buf()
}

/// The folder the test's lab shares at /lab (not the repository's lab/).
fn lab_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}lab"))
}

fn xtask(prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--prefix", prefix])
        .arg("--lab-dir")
        .arg(lab_dir(prefix))
        .args(args)
        .output()
        .expect("run xtask")
}

/// Stdout of `lab exec HOST -- sh -c SCRIPT`, checked for success.
fn exec_sh(prefix: &str, host: &str, script: &str) -> String {
    let out = xtask(prefix, &["lab", "exec", host, "--", "sh", "-c", script]);
    assert!(
        out.status.success(),
        "{host}$ {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_line(prefix: &str, svc: &str) -> String {
    let status = xtask(prefix, &["lab", "status"]);
    let st = String::from_utf8_lossy(&status.stdout).into_owned();
    st.lines()
        .find(|l| l.contains(&format!("service {svc} ")))
        .unwrap_or_else(|| panic!("no line for {svc}: {st}"))
        .to_owned()
}

fn ours(prefix: &str) -> Vec<String> {
    labnet::netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn pids_in(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lab_up_runs_services_and_down_leaves_nothing_behind() {
    if !netns_or_skip() {
        return;
    }
    let prefix = format!("{}{}xlab_", labnet::netns::TEST_PREFIX, std::process::id());
    let out = xtask(&prefix, &["lab", "up", "all"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(ours(&prefix).len(), 6 + 5 + 4, "{:?}", ours(&prefix));

    // The course's services run; webserver:5000 is left to the student's chatserver.py.
    for svc in ["echo-server", "tcp-tunnel", "lab-server"] {
        let line = status_line(&prefix, svc);
        assert!(
            line.contains("pid") && line.contains("answers") && !line.contains("NOT"),
            "{line}"
        );
    }
    let chat = status_line(&prefix, "chat-server");
    assert!(chat.contains("not running"), "{chat}");
    let status = xtask(&prefix, &["lab", "status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("smcrouted pid"));

    // A host is a container: its own name, the handouts' names, the shared folder at /lab.
    assert_eq!(exec_sh(&prefix, "webserver", "hostname"), "webserver\n");
    let resolved = exec_sh(
        &prefix,
        "student2",
        "getent ahostsv4 tcpip.epfl.ch | head -n 1; getent ahostsv4 tcpip.epfl.ch >/dev/null",
    );
    assert!(resolved.starts_with("172.30.0.10 "), "{resolved}");
    std::fs::write(lab_dir(&prefix).join("Part2.py"), "print('hi')\n").unwrap();
    assert_eq!(
        exec_sh(
            &prefix,
            "client1",
            "python3 /lab/Part2.py > /lab/out.txt && cat /lab/out.txt"
        ),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(lab_dir(&prefix).join("out.txt")).unwrap(),
        "hi\n"
    );
    // The handout's verbatim step returns as soon as the echo is back.
    let t0 = std::time::Instant::now();
    assert_eq!(
        exec_sh(&prefix, "client", "echo 'DIRECT TEST' | nc server 8080"),
        "DIRECT TEST\n"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t0.elapsed()
    );

    // Services are started and stopped per host: the student's own chat server or tunnel can
    // take the port.
    let started = xtask(&prefix, &["lab", "service", "start", "webserver"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let chat = status_line(&prefix, "chat-server");
    assert!(chat.contains("pid") && chat.contains("answers"), "{chat}");
    let stopped = xtask(&prefix, &["lab", "service", "stop", "router"]);
    assert!(stopped.status.success());
    assert!(status_line(&prefix, "tcp-tunnel").contains("not running"));
    let bind = "python3 -c \"import socket; s = socket.socket(); s.bind(('', 9090)); print('bound 9090')\"";
    assert_eq!(exec_sh(&prefix, "router", bind), "bound 9090\n");
    let again = xtask(
        &prefix,
        &["lab", "service", "start", "router", "tcp-tunnel"],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let unknown = xtask(&prefix, &["lab", "service", "start", "client"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no service on client"));

    let exec = xtask(
        &prefix,
        &[
            "lab",
            "exec",
            "week3_client",
            "--",
            "sh",
            "-c",
            "ip -4 addr show eth0; command -v udp-broadcast",
        ],
    );
    let ex = String::from_utf8_lossy(&exec.stdout);
    assert!(
        exec.status.success() && ex.contains("172.20.0.100/24") && ex.contains("udp-broadcast"),
        "{ex}"
    );
    let tunnel = xtask(
        &prefix,
        &[
            "lab",
            "exec",
            "client",
            "--",
            env!("CARGO_BIN_EXE_xtask"),
            "__nc",
            "router",
            "9090",
            "TUNNEL TEST",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&tunnel.stdout), "TUNNEL TEST\n");

    let mut pids = Vec::new();
    for ns in ours(&prefix) {
        pids.extend(pids_in(&Path::new("/run/netlab").join(&ns)));
    }
    assert!(pids.len() >= 5, "pid files: {pids:?}");

    let down = xtask(&prefix, &["lab", "down"]);
    assert!(down.status.success());
    assert!(ours(&prefix).is_empty(), "{:?}", ours(&prefix));
    for pid in pids {
        assert!(
            !Path::new("/proc").join(pid.to_string()).exists(),
            "process {pid} still runs"
        );
    }
    for dir in ["/run/netlab", "/etc/netns"] {
        let left: Vec<_> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    // Idempotent: a second down has nothing to do and succeeds.
    let again = xtask(&prefix, &["lab", "down"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to remove"));
    // The students' files outlive the lab.
    assert!(lab_dir(&prefix).join("out.txt").exists());
    let _ = std::fs::remove_dir_all(lab_dir(&prefix));
}

#[test]
fn lab_up_with_no_services_leaves_every_port_free() {
    if !netns_or_skip() {
        return;
    }
    let prefix = format!("{}{}xnone_", labnet::netns::TEST_PREFIX, std::process::id());
    let out = xtask(&prefix, &["lab", "up", "week3", "--services", "none"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for svc in ["echo-server", "tcp-tunnel"] {
        assert!(status_line(&prefix, svc).contains("not running"));
    }
    let bad = xtask(&prefix, &["lab", "up", "week3", "--services", "some"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("none, default or all"));
    assert!(xtask(&prefix, &["lab", "down"]).status.success());
    assert!(ours(&prefix).is_empty());
    let _ = std::fs::remove_dir_all(lab_dir(&prefix));
}
