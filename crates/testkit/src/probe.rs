//! What `/proc` says about a program under test: its descriptors, threads, TCP sockets, CPU time
//! and memory, and the descriptor-limit check every server of the kit passes.
//!
//! A server must survive what a student's client does to it: thousands of connections, resets,
//! clients that never close. These probes show the cost from outside, the way `ls /proc/PID/fd`
//! and `ss -tanp` would: a leaked descriptor, a thread left behind, a socket stuck in
//! CLOSE-WAIT.

use std::collections::HashSet;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::proc::Proc;
use crate::tcp::connect;

/// Number of open descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Number of threads of `pid`.
pub fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Socket inodes held by `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let mut set = HashSet::new();
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(target) = fs::read_link(e.path()) {
                let t = target.to_string_lossy();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(n) = n.parse() {
                        set.insert(n);
                    }
                }
            }
        }
    }
    set
}

/// The states of the TCP sockets `pid` holds, as /proc/net/tcp{,6} writes them (`01`
/// ESTABLISHED, `08` CLOSE-WAIT, `0A` LISTEN …). A socket never bound or connected is in no
/// table.
fn tcp_states(pid: u32) -> Vec<String> {
    let inodes = socket_inodes(pid);
    let mut states = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[9].parse().is_ok_and(|inode| inodes.contains(&inode)) {
                states.push(cols[3].to_owned());
            }
        }
    }
    states
}

/// How many TCP sockets on this machine are in TIME-WAIT (state 06) with local port `port`.
/// TIME-WAIT belongs to the side that closed first and outlives its process (60 s on Linux);
/// such a socket keeps a bind to the port without SO_REUSEADDR from succeeding.
pub fn time_wait_count(port: u16) -> usize {
    // Columns: sl, local_address (hex IP:PORT), rem_address, st …
    let local_port = format!(":{port:04X}");
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 3 && cols[1].ends_with(&local_port) && cols[3] == "06" {
                n += 1;
            }
        }
    }
    n
}

/// How many TCP sockets of `pid` are in CLOSE-WAIT (state 08 in /proc/net/tcp{,6}): the peer
/// closed and the program never closed its side, the classic descriptor leak.
pub fn close_wait_count(pid: u32) -> usize {
    tcp_states(pid).iter().filter(|s| *s == "08").count()
}

/// How many TCP connections `pid` holds: its sockets in any state but LISTEN (`0A`).
pub fn connection_count(pid: u32) -> usize {
    tcp_states(pid).iter().filter(|s| *s != "0A").count()
}

/// User + system CPU time of `pid`, in clock ticks (1/100 s on Linux; `/proc/PID/stat` fields
/// 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Resident memory of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits until descriptors, threads and CLOSE-WAIT sockets of `pid` are back where they were.
pub fn assert_back_to(pid: u32, fds: usize, threads: usize, within: Duration) {
    let ok = crate::wait_until(within, || {
        (fd_count(pid) == fds && thread_count(pid) == threads && close_wait_count(pid) == 0)
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "after the abuse: {} fds (was {fds}), {} threads (was {threads}), {} in CLOSE-WAIT",
        fd_count(pid),
        thread_count(pid),
        close_wait_count(pid)
    );
}

/// The descriptor limit [`start_with_nofile`] gives a server in [`hold_at_descriptor_limit`].
pub const NOFILE: u32 = 64;

/// Starts `program args…` under `prlimit --nofile=N:N` (prlimit execs it: same PID). Check
/// `crate::tool_or_skip(&["prlimit"])` first.
pub fn start_with_nofile(program: &str, nofile: u32, args: &[&str]) -> Proc {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(program)
        .args(args);
    Proc::spawn(cmd)
}

/// A server at its descriptor limit must back off, not spin: opens `clients` connections to
/// `addr` (more than [`NOFILE`], so `accept` fails with EMFILE while the rest wait in the accept
/// queue), waits for the server `p` to log it, then checks that over 2 s it burns at most 20
/// CPU ticks (spinning on `accept` burns ~200) and prints at most 3 warnings. Returns the
/// connections, still open; the first one was accepted.
pub fn hold_at_descriptor_limit(p: &Proc, addr: SocketAddr, clients: usize) -> Vec<TcpStream> {
    let held: Vec<TcpStream> = (0..clients).map(|_| connect(addr)).collect();
    if p.wait_line("many open files", Duration::from_secs(5))
        .is_none()
    {
        panic!("EMFILE never logged; it printed:\n{}", p.log());
    }
    let warn_before = p.count("[WARN]");
    let cpu_before = cpu_ticks(p.pid());
    thread::sleep(Duration::from_secs(2));
    let cpu = cpu_ticks(p.pid()) - cpu_before;
    let warnings = p.count("[WARN]") - warn_before;
    eprintln!("at the descriptor limit: {warnings} warnings and {cpu} CPU ticks in 2 s");
    assert!(
        cpu <= 20,
        "{cpu} ticks of CPU in 2 s at the descriptor limit"
    );
    assert!(
        warnings <= 3,
        "{warnings} warning lines in 2 s:\n{}",
        p.log()
    );
    held
}

/// After the connections of [`hold_at_descriptor_limit`] closed: the server serves again
/// (`served` returns `Some` within 15 s) and says so (`accepting again`).
pub fn recovers_from_descriptor_limit(p: &Proc, served: impl FnMut() -> Option<()>) {
    assert!(
        crate::wait_until(Duration::from_secs(15), served).is_some(),
        "not served after the clients closed; it printed:\n{}",
        p.log()
    );
    if p.wait_line("accepting again", Duration::from_secs(5))
        .is_none()
    {
        panic!("recovery never logged; it printed:\n{}", p.log());
    }
}
