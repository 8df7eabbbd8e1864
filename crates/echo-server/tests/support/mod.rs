//! Test support shared by the echo-server and tcp-tunnel tests (the tunnel's tests include this
//! file with `#[path]`): the program under test is a [`Proc`] (from `labnet::testkit::proc`,
//! re-exported here); `/proc` probes of its descriptors, threads, sockets, CPU time and memory,
//! the abuse client, and small targets.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use labnet::testkit::proc::Proc;
use labnet::testkit::proc::run;
pub use labnet::testkit::random_bytes;

/// Every socket in a test has this read/write timeout: a failing test ends, it never hangs.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `program args…` under `prlimit --nofile=N:N` (prlimit execs it: same PID).
pub fn start_with_nofile(program: &str, nofile: u32, args: &[&str]) -> Proc {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(program)
        .args(args);
    Proc::spawn(cmd)
}

/// Runs a program to completion (bounded) and returns (exit code, stdout, stderr).
pub fn run_to_end(program: &str, args: &[&str]) -> (i32, String, String) {
    let f = run(program, args, Duration::from_secs(10));
    (f.code.unwrap_or(-1), f.stdout, f.stderr)
}

/// A connected stream with the test timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads until EOF (bounded by the socket's read timeout).
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read until the peer closes");
    v
}

/// Number of open descriptors of `pid`.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Number of threads of `pid`.
pub fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
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

/// How many TCP sockets of `pid` are in CLOSE-WAIT (state 08 in /proc/net/tcp{,6}): the peer
/// closed and the program never closed its side, the classic descriptor leak.
pub fn close_wait_count(pid: u32) -> usize {
    tcp_states(pid).iter().filter(|s| *s == "08").count()
}

/// How many TCP connections `pid` holds: its sockets in any state but LISTEN (`0A`).
pub fn connection_count(pid: u32) -> usize {
    tcp_states(pid).iter().filter(|s| *s != "0A").count()
}

/// User + system CPU time of `pid`, in clock ticks (1/100 s on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces: count fields after its closing ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15.
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
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
    let ok = labnet::testkit::wait_until(within, || {
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

/// Opens and closes `total` connections to `addr`, from 4 threads, cycling through the four ways
/// a client can end: clean close after an echo, reset (SO_LINGER 0) with bytes in flight,
/// half-close then read the echo to EOF, and close right after connecting (before any answer).
/// Returns how many of each ran.
///
/// Every one of them is a connection the server is certain to accept, so a test may count them
/// all in the server's log. `connect()` returns once the client got the SYN-ACK, but when the
/// server's accept queue is full the kernel drops the handshake's last ACK and the server side
/// stays in SYN-RECV; a client that then resets would end a connection the server never had
/// (TCP promises nothing else). So the resetting client first reads an echo (the server has the
/// connection), then sends more and resets. The other kinds end with a FIN or wait for data,
/// which the client's kernel retransmits until the server's side completes the handshake.
pub fn abuse(addr: SocketAddr, total: usize) -> [usize; 4] {
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let threads = 4;
    let deadline = Instant::now() + Duration::from_secs(45);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let counts = Arc::clone(&counts);
            thread::spawn(move || {
                for i in (t..total).step_by(threads) {
                    assert!(Instant::now() < deadline, "abuse loop took over 45 s");
                    let kind = i % 4;
                    let mut s = connect(addr);
                    match kind {
                        0 => {
                            s.write_all(b"ping").unwrap();
                            let mut b = [0u8; 4];
                            s.read_exact(&mut b).unwrap();
                            assert_eq!(&b, b"ping");
                            s.shutdown(Shutdown::Write).unwrap();
                            assert!(read_to_eof(&mut s).is_empty());
                        }
                        1 => {
                            s.write_all(b"ping").unwrap();
                            let mut b = [0u8; 4];
                            s.read_exact(&mut b).unwrap();
                            assert_eq!(&b, b"ping");
                            s.write_all(b"gone").unwrap();
                            // SO_LINGER 0: close() sends RST instead of FIN.
                            socket2::SockRef::from(&s)
                                .set_linger(Some(Duration::ZERO))
                                .unwrap();
                        }
                        2 => {
                            s.write_all(b"half").unwrap();
                            s.shutdown(Shutdown::Write).unwrap();
                            assert_eq!(read_to_eof(&mut s), b"half");
                        }
                        _ => {}
                    }
                    drop(s);
                    counts[kind].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("abuse thread");
    }
    [0, 1, 2, 3].map(|k| counts[k].load(Ordering::Relaxed) as usize)
}

/// A target that echoes, one thread per connection, in the test process.
pub fn echo_target() -> SocketAddr {
    serve_target(|mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// A target on 127.0.0.1 running `handle` for each connection in its own thread.
pub fn serve_target(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    // The kit's backlog (somaxconn), not std's 128: the abuse tests open connections faster than this
    // accept loop spawns threads, and an overflowing accept queue drops the handshake's last ACK,
    // which the tunnel saw as the target resetting a connection a second later.
    let l = labnet::sock::reuse_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            let h = Arc::clone(&handle);
            thread::spawn(move || h(s));
        }
    });
    addr
}

/// A flag set from another thread.
pub fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// True when `prlimit` (util-linux) is there.
pub fn have_prlimit() -> bool {
    Path::new("/usr/bin/prlimit").exists() || Path::new("/bin/prlimit").exists()
}
