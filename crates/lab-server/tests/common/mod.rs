//! Shared by the lab-server tests: `lab_server::serve` run in the test process on port 0 (an
//! [`InProc`]: events captured, waits with deadlines, stopped on drop), the ports it logs, plus
//! small clients. `cli.rs` and `descriptors.rs` run the binary itself.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::ops::Deref;
use std::time::{Duration, Instant};

use testkit::inproc::InProc;

/// Time any test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(5);

/// A lab-server running on a thread of the test.
pub struct Server(InProc);

impl Server {
    /// Serves with every port 0 and the given extra arguments (parsed as the binary parses
    /// them); the TV is off unless the arguments mention `--tv` (tests that want it pass
    /// `--tv-on`, removed here).
    pub fn start(extra: &[&str]) -> Server {
        let mut args: Vec<&str> = vec!["--pmu-port", "0", "--reset-port", "0", "--ws-port", "0"];
        if extra.contains(&"--tv-on") {
            // Loopback only, TTL 0: the kit's network-safety rule for multicast from the host.
            args.extend(["--tv-port", "0", "--iface", "127.0.0.1", "--ttl", "0"]);
        } else {
            args.push("--no-tv");
        }
        args.extend(extra.iter().filter(|a| **a != "--tv-on"));
        let config = lab_server::Config::from_args(args.iter().map(OsString::from).collect())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        Server(InProc::start("lab-server-test", move |ctx| {
            lab_server::serve(&config, &ctx)
        }))
    }

    /// The address a service logged (`PMU`, `WS`, `TV`, `RESET`) in its `listen` event.
    pub fn addr(&self, service: &str) -> SocketAddr {
        let ev = self
            .0
            .wait_event(|e| e.is("event", "listen") && e.is("service", service))
            .unwrap_or_else(|| panic!("{service} never listened:\n{}", self.0.log()));
        ev.get("addr")
            .and_then(|a| a.as_str())
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The port a service logged.
    pub fn port(&self, service: &str) -> u16 {
        self.addr(service).port()
    }

    /// Stops every service; panics unless `serve` returned `Ok` in time. How long it took.
    pub fn stop(self) -> Duration {
        self.0.stop()
    }
}

/// The log, its waits and counts are those of the server's capture.
impl Deref for Server {
    type Target = InProc;
    fn deref(&self) -> &InProc {
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
