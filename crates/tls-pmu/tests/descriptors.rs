//! Issue 12, F9: at the process's descriptor limit the accept loop backs off (bounded CPU, at
//! most one log line a second) and recovers by itself once clients close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{BIN, TempDir, make_certs};
use testkit::proc::Proc;

#[test]
fn descriptor_limit_makes_accept_back_off_and_recover() {
    if !have_prlimit() {
        eprintln!("SKIPPED: prlimit (util-linux) not installed");
        return;
    }
    let dir = TempDir::new("nofile");
    let (cert, key, ca) = make_certs(&dir);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let p = start_with_nofile(
        BIN,
        64,
        &[
            "serve",
            "--cert",
            cert,
            "--key",
            key,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--messages",
            "3",
        ],
    );
    let addr = p.addr_after("listening on ");
    let pid = p.pid();
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(connect(addr));
    }
    p.wait_line("many open files", Duration::from_secs(5))
        .expect("EMFILE logged");
    let warn_before = p.count("many open files");
    let cpu_before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(2));
    let cpu = cpu_ticks(pid) - cpu_before;
    let warnings = p.count("many open files") - warn_before;
    eprintln!("at the descriptor limit: {warnings} lines and {cpu} CPU ticks in 2 s");
    assert!(
        cpu <= 20,
        "{cpu} ticks of CPU in 2 s at the descriptor limit"
    );
    assert!(
        warnings <= 3,
        "{warnings} warning lines in 2 s:\n{}",
        p.log()
    );
    drop(held);
    let served = testkit::wait_until(Duration::from_secs(15), || {
        let out = testkit::proc::output(
            Command::new(BIN)
                .args([
                    "client",
                    "127.0.0.1",
                    &addr.port().to_string(),
                    "CMD_short:0",
                ])
                .arg("--ca")
                .arg(&ca)
                .args(["--timeout", "3"]),
            b"",
            Duration::from_secs(10),
        );
        out.status.success().then_some(())
    });
    assert!(served.is_some(), "not served after the clients closed");
    p.wait_line("accepting again", Duration::from_secs(5))
        .expect("recovery logged");
}

/// Starts `program args…` under `prlimit --nofile=N:N` (prlimit execs it: same PID).
fn start_with_nofile(program: &str, nofile: u32, args: &[&str]) -> Proc {
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(program)
        .args(args);
    Proc::spawn(cmd)
}

fn have_prlimit() -> bool {
    std::path::Path::new("/usr/bin/prlimit").exists()
        || std::path::Path::new("/bin/prlimit").exists()
}

/// A connection with read and write timeouts.
fn connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// User plus system CPU time of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}
