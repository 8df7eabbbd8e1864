//! Shared by the lab-server tests: start the binary on port 0, read the ports it logs, watch its
//! log, and kill it by PID on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Time any test waits for something that should happen at once.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running lab-server.
pub struct Server {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts lab-server with every port 0 and the given extra arguments; the TV is off unless
    /// the arguments mention `--tv` (tests that want it pass `--tv-on`, removed here).
    pub fn start(extra: &[&str]) -> Server {
        let mut args: Vec<&str> = vec!["--pmu-port", "0", "--reset-port", "0", "--ws-port", "0"];
        if extra.contains(&"--tv-on") {
            // Loopback only, TTL 0: the SPEC's safety rule for multicast from the host.
            args.extend(["--tv-port", "0", "--iface", "127.0.0.1", "--ttl", "0"]);
        } else {
            args.push("--no-tv");
        }
        args.extend(extra.iter().filter(|a| **a != "--tv-on"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_lab-server"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lab-server");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let err = child.stderr.take().unwrap();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(format!("STDERR {line}"));
            }
        });
        Server { child, lines }
    }

    /// The port a service logged (`PMU`, `WS`, `TV`, `RESET`).
    pub fn port(&self, service: &str) -> u16 {
        let needle = format!("{service} listening on ");
        let line = self
            .wait_log(&needle, WAIT)
            .unwrap_or_else(|| panic!("no '{needle}' line; log:\n{}", self.log()));
        let rest = &line[line.find(&needle).unwrap() + needle.len()..];
        let addr = rest.split_whitespace().next().unwrap();
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_count(needle, 1, timeout).map(|mut v| v.remove(0))
    }

    /// Waits until `count` log lines contain `needle`.
    pub fn wait_count(&self, needle: &str, count: usize, timeout: Duration) -> Option<Vec<String>> {
        labnet::testkit::wait_until(timeout, || {
            let found: Vec<String> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            (found.len() >= count).then_some(found)
        })
    }

    /// How many log lines contain `needle` now.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
