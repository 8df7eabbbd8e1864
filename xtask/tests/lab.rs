//! `cargo xtask lab up|status|exec|down` on the real namespace backend, with a test prefix so it
//! never touches a lab an instructor brought up: `up` starts the standing services and they
//! answer; `exec` runs inside the host with the lab binaries on the PATH; `down` leaves no
//! namespace, runtime directory, hosts file or process behind, and is idempotent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin_dir() -> PathBuf {
    for b in [
        "echo-server",
        "tcp-tunnel",
        "chat-server",
        "lab-server",
        "udp-broadcast",
    ] {
        labnet::testkit::bin(b);
    }
    labnet::testkit::bin("echo-server")
        .parent()
        .unwrap()
        .to_path_buf()
}

fn xtask(prefix: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(["--prefix", prefix])
        .args(args)
        .output()
        .expect("run xtask")
}

fn ours(prefix: &str) -> Vec<String> {
    labnet::testkit::list_namespaces()
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
    match labnet::testkit::netns_available() {
        Ok(()) => {}
        Err(why) if std::env::var(labnet::testkit::REQUIRE_NETNS).as_deref() == Ok("1") => {
            panic!("NETLAB_REQUIRE_NETNS=1 but: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    }
    let prefix = format!(
        "{}{}xlab_",
        labnet::testkit::TEST_PREFIX,
        std::process::id()
    );
    let out = xtask(&prefix, &["lab", "up", "all"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(ours(&prefix).len(), 6 + 5 + 4, "{:?}", ours(&prefix));

    let status = xtask(&prefix, &["lab", "status"]);
    let st = String::from_utf8_lossy(&status.stdout);
    for svc in ["echo-server", "tcp-tunnel", "chat-server", "lab-server"] {
        let line = st
            .lines()
            .find(|l| l.contains(&format!("service {svc}")))
            .unwrap_or_else(|| panic!("{st}"));
        assert!(
            line.contains("pid") && line.contains("answers") && !line.contains("NOT"),
            "{line}"
        );
    }
    assert!(st.contains("smcrouted pid"), "{st}");

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
}
