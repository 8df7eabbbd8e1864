//! Running a binary under test with a deadline, and reading its `[time] [LEVEL] message` lines.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished run printed.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Events as (level, message); lines without a `[time] [LEVEL]` head continue the previous
    /// message (a multi-line flood is one event).
    pub fn events(&self) -> Vec<(String, String)> {
        events(&self.stdout)
    }

    /// Messages of one level, in order.
    pub fn msgs(&self, level: &str) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|(l, _)| l == level)
            .map(|(_, m)| m)
            .collect()
    }
}

/// Splits text output into (level, message) events.
pub fn events(stdout: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in stdout.split_inclusive('\n') {
        let head = line.starts_with('[')
            && line.get(24..27) == Some("] [")
            && line[27..].find("] ").is_some();
        if head {
            let rest = &line[27..];
            let end = rest.find("] ").unwrap_or(0);
            out.push((rest[..end].to_owned(), rest[end + 2..].to_owned()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(line);
        }
    }
    for e in &mut out {
        if e.1.ends_with('\n') {
            e.1.pop();
        }
    }
    out
}

/// Runs `program args` with stdin closed, killing it after `limit`.
pub fn run(program: &str, args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    finish(&mut child, limit)
}

/// Waits for a spawned child (stdout/stderr piped) at most `limit`, then kills it.
pub fn finish(child: &mut std::process::Child, limit: Duration) -> Run {
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code,
        stdout: t_out.join().expect("stdout reader"),
        stderr: t_err.join().expect("stderr reader"),
    }
}

/// A running server whose stdout is collected line by line (it is killed on drop).
pub struct Server {
    pub child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(program: &str, args: &[&str]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let out = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lock").push(line);
            }
        });
        Server { child, lines }
    }

    /// Events printed so far.
    pub fn events(&self) -> Vec<(String, String)> {
        let text: String = self
            .lines
            .lock()
            .expect("lock")
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        events(&text)
    }

    /// Waits until `n` events of `level` were printed; returns their messages.
    pub fn wait_msgs(&self, level: &str, n: usize) -> Vec<String> {
        labnet::testkit::wait_until(Duration::from_secs(10), || {
            let m: Vec<String> = self
                .events()
                .into_iter()
                .filter(|(l, _)| l == level)
                .map(|(_, m)| m)
                .collect();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| panic!("fewer than {n} {level} events: {:?}", self.events()))
    }

    /// The port the server announced in its first line: `…IP:PORT…` or `… and port PORT …`.
    pub fn port(&self) -> u16 {
        let first = self.wait_msgs("INFO", 1).remove(0);
        let after = match first.find(" and port ") {
            Some(i) => &first[i + " and port ".len()..],
            None => {
                let i = first
                    .find(|c: char| c.is_ascii_digit())
                    .expect("an address");
                let rest = &first[i..];
                &rest[rest.find(':').expect("ip:port") + 1..]
            }
        };
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("port number")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
