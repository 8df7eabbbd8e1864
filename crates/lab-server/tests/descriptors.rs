//! Issue 12, F9: at the process's descriptor limit the PMU's accept loop backs off (bounded CPU,
//! at most one log line a second) and recovers by itself once clients close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::thread;
use std::time::Duration;

use testkit::proc::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_lab-server");

#[test]
fn descriptor_limit_makes_accept_back_off_and_recover() {
    if !have_prlimit() {
        eprintln!("SKIPPED: prlimit (util-linux) not installed");
        return;
    }
    let p = start_with_nofile(
        BIN,
        64,
        &[
            "--pmu-port",
            "0",
            "--reset-port",
            "0",
            "--ws-port",
            "0",
            "--no-tv",
            "--bind",
            "127.0.0.1",
            "--messages",
            "3",
        ],
    );
    let addr = p.addr_after("PMU listening on ");
    let pid = p.pid();
    // 100 silent PDCs: about 55 are accepted, the rest wait in the accept queue while accept
    // fails with EMFILE.
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
    let served = testkit::wait_until(Duration::from_secs(10), || {
        let mut s = connect(addr);
        std::io::Write::write_all(&mut s, b"CMD_short:0").ok()?;
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut v).ok()?;
        (v == b"This is PMU data 1This is PMU data 2This is PMU data 3").then_some(())
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
