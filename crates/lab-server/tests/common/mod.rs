//! Shared by the lab-server tests: start the binary on port 0 and read the ports it logs (the
//! process itself is a [`Proc`]: log collected, waits with deadlines, killed on drop), plus small
//! clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::TcpStream;
use std::ops::Deref;
use std::time::{Duration, Instant};

use testkit::proc::Proc;

/// Time any test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running lab-server.
pub struct Server(Proc);

impl Server {
    /// Starts lab-server with every port 0 and the given extra arguments; the TV is off unless
    /// the arguments mention `--tv` (tests that want it pass `--tv-on`, removed here).
    pub fn start(extra: &[&str]) -> Server {
        let mut args: Vec<&str> = vec!["--pmu-port", "0", "--reset-port", "0", "--ws-port", "0"];
        if extra.contains(&"--tv-on") {
            // Loopback only, TTL 0: the kit's network-safety rule for multicast from the host.
            args.extend(["--tv-port", "0", "--iface", "127.0.0.1", "--ttl", "0"]);
        } else {
            args.push("--no-tv");
        }
        args.extend(extra.iter().filter(|a| **a != "--tv-on"));
        Server(Proc::start(env!("CARGO_BIN_EXE_lab-server"), &args))
    }

    /// The port a service logged (`PMU`, `WS`, `TV`, `RESET`).
    pub fn port(&self, service: &str) -> u16 {
        self.addr_after(&format!("{service} listening on ")).port()
    }
}

/// The log, its waits and counts are those of the process.
impl Deref for Server {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.0
    }
}

/// A TCP connection with read and write timeouts.
pub fn connect(host: &str, port: u16) -> TcpStream {
    let s = TcpStream::connect((host, port)).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until the server closes (bounded by the read timeout and 64 MiB).
pub fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && out.len() < 64 << 20 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
    out
}

/// One PMU session: send `cmd`, read everything until the close.
pub fn pmu(host: &str, port: u16, cmd: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut s = connect(host, port);
    s.write_all(cmd).unwrap();
    read_all(&mut s)
}

/// `This is PMU data 1…n` glued together, as the PMU sends it.
pub fn short_reply(n: u32) -> Vec<u8> {
    (1..=n)
        .map(labnet::wire::pmu::message)
        .collect::<String>()
        .into_bytes()
}

/// Sends `bytes` one at a time, `every` apart, and returns how long after connecting the server
/// closed the connection (its read returned 0 or failed), or `None` if it was still open after
/// `limit`. The trickle never stops before the close: a deadline must hold whatever arrives.
pub fn trickle_until_closed(
    port: u16,
    bytes: &[u8],
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    use std::io::Write;
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(WAIT)).unwrap();
    let mut reader = s.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        reader.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match reader.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        let _ = tx.send(closed.then(|| started.elapsed()));
    });
    for &b in bytes.iter().cycle() {
        if let Ok(result) = rx.try_recv() {
            return result;
        }
        if started.elapsed() > limit || s.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(every);
    }
    rx.recv().unwrap_or(None)
}
