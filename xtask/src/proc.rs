//! Child processes of the demos: started with captured output, awaited with a time limit, ended
//! by PID, and the Ctrl-C flag every wait loop watches.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use labnet::error::Context as _;
use labnet::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler: it only sets a flag; the demo notices it at its next wait and
/// tears the lab down on the normal path (destructors run, nothing is left behind).
pub fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

/// True once Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The error a wait returns when Ctrl-C was pressed.
pub const INTERRUPTED_MSG: &str = "interrupted (Ctrl-C)";

/// [`INTERRUPTED_MSG`] as an error.
pub fn interrupted_error() -> Error {
    Error::msg(INTERRUPTED_MSG)
}

/// Sends a named signal (`INT`, `KILL`) to a program that is not our child itself.
type Signal = Box<dyn Fn(&str) + Send>;

/// A started process whose stdout and stderr are collected by two reader threads.
pub struct Bg {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// Sends a signal (`INT`, `KILL`) to the program where it really runs, when that is not
    /// the child itself (a program `docker exec` started inside a container).
    remote: Option<Signal>,
}

fn collect(mut src: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = src.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = into.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    })
}

impl Bg {
    /// Starts `cmd` with stdin closed (or piped when `stdin` is true) and output captured.
    pub fn start(mut cmd: Command, stdin: bool) -> Result<Bg> {
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {:?}", cmd.get_program()))?;
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(collect(o, out.clone()));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(collect(e, err.clone()));
        }
        Ok(Bg {
            child,
            out,
            err,
            readers,
            status: None,
            remote: None,
        })
    }

    /// Signals go through `via` (to the program inside a container) as well as to the child.
    pub fn signal_via(mut self, via: impl Fn(&str) + Send + 'static) -> Bg {
        self.remote = Some(Box::new(via));
        self
    }

    /// The child's stdin, when started with `stdin: true`.
    pub fn stdin(&mut self) -> Option<&mut std::process::ChildStdin> {
        self.child.stdin.as_mut()
    }

    /// Closes stdin (the program sees end of input).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// What the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.err.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until stdout contains `needle` (readiness from the program's own output).
    pub fn wait_output(&mut self, needle: &str, limit: Duration) -> Result<()> {
        let n = needle.to_owned();
        self.wait_for(limit, move |out, _| out.contains(&n))
    }

    /// Waits until `f(stdout, stderr)` holds, the process ends, or the limit passes.
    pub fn wait_for(&mut self, limit: Duration, f: impl Fn(&str, &str) -> bool) -> Result<()> {
        let end = Instant::now() + limit;
        loop {
            if f(&self.stdout(), &self.stderr()) {
                return Ok(());
            }
            if interrupted() {
                return Err(interrupted_error());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                self.join_readers();
                return if f(&self.stdout(), &self.stderr()) {
                    Ok(())
                } else {
                    Err(Error::msg(format!(
                        "the program ended ({st}) before it was ready"
                    )))
                };
            }
            if Instant::now() >= end {
                return Err(Error::msg(format!(
                    "not ready after {} s",
                    limit.as_secs_f32()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// Waits up to `limit` for the process to end; ends it (SIGKILL) after that. Returns the exit
    /// status, or `None` when it had to be killed.
    pub fn finish(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        if let Some(st) = self.status {
            return Ok(Some(st));
        }
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                self.join_readers();
                return Ok(Some(st));
            }
            if interrupted() {
                self.kill();
                return Err(interrupted_error());
            }
            if Instant::now() >= end {
                self.kill();
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the process (SIGKILL) and collects its output.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            if let (Some(via), Ok(None)) = (&self.remote, self.child.try_wait()) {
                via("KILL");
            }
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.join_readers();
    }

    /// Sends SIGINT (what Ctrl-C does to the student's program) and waits up to `limit`.
    pub fn interrupt(&mut self, limit: Duration) -> Result<Option<ExitStatus>> {
        if let Some(via) = &self.remote {
            via("INT");
        } else {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.finish(limit)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` to completion (killed after `limit`) and returns (status, stdout, stderr).
pub fn run(cmd: Command, limit: Duration) -> Result<(Option<ExitStatus>, String, String)> {
    let mut bg = Bg::start(cmd, false)?;
    let st = bg.finish(limit)?;
    Ok((st, bg.stdout(), bg.stderr()))
}

/// Sleeps for `d` in small steps, returning early with an error on Ctrl-C.
pub fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if interrupted() {
            return Err(interrupted_error());
        }
        std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
    }
    Ok(())
}

/// True when `program` is found on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}
