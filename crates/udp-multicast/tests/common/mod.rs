//! Running the tool as a child process and reading its events line by line, with deadlines.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// A running program whose stdout is read by a thread into a channel.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

/// What a finished program printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// The stdout lines parsed as JSON events (the program ran with `--json`).
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect()
    }

    /// The JSON events of one level.
    pub fn level(&self, level: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["level"] == level)
            .collect()
    }
}

impl Proc {
    /// Starts `cmd` with piped stdout and stderr.
    pub fn spawn(mut cmd: Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        Proc::from_child(child)
    }

    /// Wraps a child whose stdout and stderr are piped.
    pub fn from_child(mut child: Child) -> Proc {
        let out = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `needle` (readiness, instead of a fixed sleep).
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line with {needle:?} within {STEP:?}; saw {:?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let mut err = String::new();
                    if let Some(e) = self.child.stderr.as_mut() {
                        let _ = e.read_to_string(&mut err);
                    }
                    panic!(
                        "exited before {needle:?}; saw {:?}; stderr {err}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Waits (bounded) for the program to exit on its own and collects everything it printed.
    pub fn finish(mut self) -> Finished {
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("did not exit within {STEP:?}; saw {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(STEP) {
            self.seen.push(line);
        }
        let mut stderr = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut stderr);
        }
        Finished {
            status,
            stdout: std::mem::take(&mut self.seen),
            stderr,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failing test must not leave its receivers running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses one JSON event line.
pub fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
}

/// The payloads of the RECV events.
pub fn payloads(f: &Finished) -> Vec<String> {
    f.level("RECV")
        .iter()
        .map(|e| e["payload"].as_str().unwrap().to_owned())
        .collect()
}

/// The sources (`ip:port`) of the RECV events.
pub fn sources(f: &Finished) -> Vec<String> {
    f.level("RECV")
        .iter()
        .map(|e| e["src"].as_str().unwrap().to_owned())
        .collect()
}

/// The one STAT event of a `--json` run.
pub fn stat(f: &Finished) -> Value {
    let stats = f.level("STAT");
    assert_eq!(stats.len(), 1, "one STAT event: {:?}", f.stdout);
    stats.into_iter().next().unwrap()
}
