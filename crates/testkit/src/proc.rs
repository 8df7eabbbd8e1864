//! A program under test as a child process: readiness by what it prints, deadlines everywhere.
//!
//! Every netlab test that starts a binary needs the same plumbing, and doing it by hand is easy to
//! get subtly wrong (a full stderr pipe blocks the child, a read without deadline hangs the test, a
//! panicking test leaves its server running). This module does it once:
//!
//! - [`Proc`]: a running program. Reader threads drain stdout and stderr as they come (so a pipe
//!   never fills), stdout is kept line by line, and the waits ([`Proc::wait_for`],
//!   [`Proc::wait_line`], [`Proc::wait_msgs`], [`Proc::addr`] …) wake on each new line and give up
//!   at a deadline, or at once when stdout has closed and the line can no longer come. A failed
//!   wait panics with everything the program printed. The child is killed and reaped on drop, so
//!   a failing test never leaves it behind.
//! - [`Finished`]: what a program printed by the time it ended, with [`Proc::finish`] (bounded:
//!   the test fails if the program does not end), [`Proc::stop_after`] (killed at the limit) and
//!   [`run`] (start and finish in one call).
//! - Readers of the kit's output ([`labnet::log`]): [`events`] splits `[time] [LEVEL] message`
//!   text into `(level, message)` pairs, and [`json`] / [`Finished::level`] /
//!   [`Finished::field`] read the `--json` lines.
//!
//! ```no_run
//! use testkit::proc::{Proc, run};
//! use std::time::Duration;
//!
//! let server = Proc::start("echo-server", &["127.0.0.1", "0"]);
//! // From its `listening on tcp ADDR` line: readiness without a sleep.
//! let port = server.addr().port().to_string();
//! let client = run("tcp-client", &["127.0.0.1", port.as_str(), "hello"], Duration::from_secs(10));
//! assert_eq!(client.code, Some(0), "{client:?}");
//! assert_eq!(client.msgs("RECV").len(), 1);
//! ```

use std::borrow::BorrowMut;
use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a wait without an explicit limit ([`Proc::wait_for`], [`Proc::finish`] …) may take
/// before the test fails instead of hanging. Generous: it only matters when something is broken.
pub const STEP: Duration = Duration::from_secs(20);

/// How often [`Proc::wait_exit`] looks at the child (there is no portable way to wait with a
/// deadline on a `Child`).
const POLL: Duration = Duration::from_millis(10);

/// A running program whose output is collected as it comes; killed and reaped on drop.
pub struct Proc {
    child: Child,
    label: String,
    stdin: Option<ChildStdin>,
    out: Arc<Shared>,
    /// Waits look at stdout lines from this index on (see [`Proc::forget_seen`]).
    from: usize,
}

/// What the reader threads share with the test: the output so far, and a condition variable
/// signalled on every new line and at each end of stream.
#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    changed: Condvar,
}

#[derive(Default)]
struct Log {
    /// Every byte of stdout, as read.
    stdout: Vec<u8>,
    /// Complete stdout lines, without `\n` or `\r\n` (as `BufRead::lines` gives them), plus a
    /// last unterminated line once stdout has closed.
    lines: Vec<String>,
    /// Every byte of stderr.
    stderr: Vec<u8>,
    stdout_open: bool,
    stderr_open: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // A reader thread cannot panic while holding the lock; never turn poisoning into a
        // second panic that would hide the first.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f` with the output now and after every change until it returns `Some`, or until
    /// `deadline` (then `None`).
    fn wait<T>(&self, deadline: Instant, mut f: impl FnMut(&Log) -> Option<T>) -> Option<T> {
        let mut log = self.lock();
        loop {
            if let Some(v) = f(&log) {
                return Some(v);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            log = self
                .changed
                .wait_timeout(log, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Proc {
    /// Starts `program args…` with stdin closed (`/dev/null`).
    pub fn start<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> Proc {
        Proc::spawn(Command::new(program).args(args))
    }

    /// Starts `cmd` with stdin closed and stdout and stderr collected.
    pub fn spawn(mut cmd: impl BorrowMut<Command>) -> Proc {
        Proc::spawn_with(cmd.borrow_mut(), Stdio::null())
    }

    /// Starts `cmd` with a stdin pipe, for [`Proc::send`] (chat clients, `mcast-chat` …).
    pub fn spawn_with_stdin(mut cmd: impl BorrowMut<Command>) -> Proc {
        Proc::spawn_with(cmd.borrow_mut(), Stdio::piped())
    }

    fn spawn_with(cmd: &mut Command, stdin: Stdio) -> Proc {
        let child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc::from_child(child).named(&describe(cmd))
    }

    /// Takes over a child started elsewhere (say [`labnet::netns::Testbed::spawn`]): its piped
    /// stdout and stderr are collected, its piped stdin is kept for [`Proc::send`]. A stream
    /// that is not piped counts as closed.
    pub fn from_child(mut child: Child) -> Proc {
        let out = Arc::new(Shared::default());
        {
            let mut log = out.lock();
            log.stdout_open = child.stdout.is_some();
            log.stderr_open = child.stderr.is_some();
        }
        if let Some(stdout) = child.stdout.take() {
            let shared = Arc::clone(&out);
            std::thread::spawn(move || read_stdout(stdout, &shared));
        }
        if let Some(stderr) = child.stderr.take() {
            let shared = Arc::clone(&out);
            std::thread::spawn(move || read_stderr(stderr, &shared));
        }
        let label = format!("process {}", child.id());
        Proc {
            stdin: child.stdin.take(),
            child,
            label,
            out,
            from: 0,
        }
    }

    /// Names the program in panic messages (several clients of one binary in a test).
    pub fn named(mut self, label: &str) -> Proc {
        label.clone_into(&mut self.label);
        self
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.lock().lines.clone()
    }

    /// Everything written on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().stderr).into_owned()
    }

    /// Everything printed so far, for a failure message: the stdout lines, then each stderr line
    /// prefixed with `STDERR `.
    pub fn log(&self) -> String {
        let log = self.out.lock();
        let mut text = log.lines.join("\n");
        for line in String::from_utf8_lossy(&log.stderr).lines() {
            text.push_str("\nSTDERR ");
            text.push_str(line);
        }
        text
    }

    /// How many stdout lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.out
            .lock()
            .lines
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The stdout events so far as `(level, message)` (see [`events`]).
    pub fn events(&self) -> Vec<(String, String)> {
        events(&String::from_utf8_lossy(&self.out.lock().stdout))
    }

    /// Makes later waits look only at lines printed after this call (a second round of the same
    /// exchange must not be satisfied by the first round's line).
    pub fn forget_seen(&mut self) {
        self.from = self.out.lock().lines.len();
    }

    /// Calls `f` with the stdout lines (since [`Proc::forget_seen`]) now and after every new
    /// line, until it returns `Some`, `timeout` passes, or stdout closes without `f` agreeing
    /// (then no later line can change its mind). No polling and no fixed sleep.
    pub fn wait_lines<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let lines = |log: &Log| match f(log.lines.get(self.from..).unwrap_or_default()) {
            Some(v) => Some(Some(v)),
            None if !log.stdout_open => Some(None),
            None => None,
        };
        self.out.wait(Instant::now() + timeout, lines).flatten()
    }

    /// The first stdout line containing `needle`, already printed or printed within `timeout`.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_lines(timeout, |lines| {
            lines.iter().find(|l| l.contains(needle)).cloned()
        })
    }

    /// Waits until `count` stdout lines contain `needle`; returns them.
    pub fn wait_count(&self, needle: &str, count: usize, timeout: Duration) -> Option<Vec<String>> {
        self.wait_lines(timeout, |lines| {
            let found: Vec<String> = lines
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            (found.len() >= count).then_some(found)
        })
    }

    /// Like [`Proc::wait_line`] within [`STEP`], failing the test with what the program printed
    /// when the line never comes.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_line(needle, STEP)
            .unwrap_or_else(|| self.fail(&format!("no stdout line with {needle:?}")))
    }

    /// Waits (within [`STEP`]) until `n` events of `level` were printed in text mode; returns
    /// their messages.
    pub fn wait_msgs(&self, level: &str, n: usize) -> Vec<String> {
        self.wait_lines(STEP, |lines| {
            let m = messages(&events(&lines.join("\n")), level);
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| self.fail(&format!("fewer than {n} {level} events")))
    }

    /// The socket address in the first stdout line where `needle` is followed by one (an
    /// optional `tcp `/`udp ` word between them is skipped): `PMU listening on [::]:5003 (TCP)`.
    pub fn addr_after(&self, needle: &str) -> SocketAddr {
        self.wait_lines(STEP, |lines| {
            lines.iter().find_map(|l| addr_after(l, needle))
        })
        .unwrap_or_else(|| self.fail(&format!("no address after {needle:?}")))
    }

    /// The addresses of the first `n` `listening on ADDR` lines, in order.
    pub fn listening(&self, n: usize) -> Vec<SocketAddr> {
        self.wait_lines(STEP, |lines| {
            let addrs: Vec<SocketAddr> = lines
                .iter()
                .filter_map(|l| addr_after(l, "listening on "))
                .collect();
            (addrs.len() >= n).then_some(addrs)
        })
        .unwrap_or_else(|| self.fail(&format!("fewer than {n} \"listening on ADDR\" lines")))
    }

    /// The address of the first `listening on ADDR` line (a server started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.listening(1)[0]
    }

    /// The child's stdin, when it was started with one ([`Proc::spawn_with_stdin`]).
    pub fn stdin(&mut self) -> &mut ChildStdin {
        match self.stdin.as_mut() {
            Some(s) => s,
            None => panic!("{}: stdin is not a pipe or was closed", self.label),
        }
    }

    /// Writes `line` and a newline to the program's stdin.
    pub fn send(&mut self, line: &str) {
        let label = self.label.clone();
        let stdin = self.stdin();
        if let Err(e) = stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
        {
            panic!("{label}: writing {line:?} to stdin: {e}");
        }
    }

    /// Closes stdin: the program reads end of file (a chat client then leaves).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// True while the program runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the program (SIGKILL) and reaps it; its output stays readable.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `timeout` for the program to exit on its own; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => return None,
            }
        }
    }

    /// Waits (within [`STEP`]) for the program to exit on its own and returns what it printed.
    pub fn finish(self) -> Finished {
        self.finish_within(STEP)
    }

    /// Waits at most `limit` for the program to exit on its own and returns what it printed;
    /// a program still running then is killed and the test fails, showing its output.
    pub fn finish_within(self, limit: Duration) -> Finished {
        let label = self.label.clone();
        let f = self.stop_after(limit);
        if f.killed {
            panic!("{label} did not exit within {limit:?}; {f:?}");
        }
        f
    }

    /// Waits at most `limit` for the program to exit, kills it if it still runs then (see
    /// [`Finished::killed`]), and returns what it printed.
    pub fn stop_after(mut self, limit: Duration) -> Finished {
        let (status, killed) = self.end(limit);
        let log = self.out.lock();
        Finished {
            code: status.code(),
            status,
            killed,
            stdout: String::from_utf8_lossy(&log.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&log.stderr).into_owned(),
        }
    }

    /// Waits for the exit (killing at `limit`), then for the readers to reach end of file.
    fn end(&mut self, limit: Duration) -> (ExitStatus, bool) {
        let deadline = Instant::now() + limit;
        let (status, killed) = match self.wait_exit(limit) {
            Some(status) => (status, false),
            None => {
                let _ = self.child.kill();
                match self.child.wait() {
                    Ok(status) => (status, true),
                    Err(e) => panic!("{}: cannot reap: {e}", self.label),
                }
            }
        };
        // The pipes close at the exit, unless a grandchild inherited them: bounded either way,
        // with at least a moment left for the last lines of a program killed at the deadline.
        let deadline = deadline.max(Instant::now() + Duration::from_secs(1));
        self.out.wait(deadline, |log| {
            (!log.stdout_open && !log.stderr_open).then_some(())
        });
        (status, killed)
    }

    fn fail(&self, what: &str) -> ! {
        let state = if self.out.lock().stdout_open {
            format!("within {STEP:?}")
        } else {
            "before its stdout closed".to_owned()
        };
        panic!(
            "{}: {what} {state}; it printed:\n{}",
            self.label,
            self.log()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A failing test must not leave its servers and receivers running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proc")
            .field("label", &self.label)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

fn describe(cmd: &Command) -> String {
    let program = cmd.get_program().to_string_lossy();
    let name = program.rsplit('/').next().unwrap_or(&program).to_owned();
    // `ip netns exec NS PROGRAM …` is named by the program and the namespace.
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    match args.as_slice() {
        [netns, exec, ns, prog, ..] if name == "ip" && netns == "netns" && exec == "exec" => {
            format!("{} in {ns}", prog.rsplit('/').next().unwrap_or(prog))
        }
        // `nsenter --net=/run/netns/NS … PROGRAM …` (a lab host) likewise.
        _ if name == "nsenter" => {
            let ns = args
                .iter()
                .find_map(|a| a.strip_prefix("--net=/run/netns/"))
                .unwrap_or("?");
            let prog = args.iter().find(|a| !a.starts_with('-')).map_or("?", |p| p);
            format!("{} in {ns}", prog.rsplit('/').next().unwrap_or(prog))
        }
        _ => name,
    }
}

fn read_stdout(stdout: impl Read, shared: &Shared) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).unwrap_or(0);
        let mut log = shared.lock();
        if n == 0 {
            log.stdout_open = false;
            drop(log);
            shared.changed.notify_all();
            return;
        }
        log.stdout.extend_from_slice(&buf);
        let mut line = buf.as_slice();
        if let Some(l) = line.strip_suffix(b"\n") {
            line = l.strip_suffix(b"\r").unwrap_or(l);
        }
        log.lines.push(String::from_utf8_lossy(line).into_owned());
        drop(log);
        shared.changed.notify_all();
    }
}

fn read_stderr(mut stderr: impl Read, shared: &Shared) {
    let mut buf = [0u8; 4096];
    loop {
        let n = stderr.read(&mut buf).unwrap_or(0);
        let mut log = shared.lock();
        if n == 0 {
            log.stderr_open = false;
        } else {
            log.stderr.extend_from_slice(&buf[..n]);
        }
        drop(log);
        shared.changed.notify_all();
        if n == 0 {
            return;
        }
    }
}

/// The socket address that follows `needle` in `line`, skipping a `tcp `/`udp ` word.
fn addr_after(line: &str, needle: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(needle)? + needle.len()..];
    let rest = rest
        .strip_prefix("tcp ")
        .or_else(|| rest.strip_prefix("udp "))
        .unwrap_or(rest);
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || ":.[]".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What a program printed by the time it ended.
#[derive(Debug)]
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Its exit code (`None` when a signal ended it): `status.code()`, for terse assertions.
    pub code: Option<i32>,
    /// True when it was still running at the limit of [`Proc::stop_after`] and was killed.
    pub killed: bool,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl Finished {
    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The text events as `(level, message)` (see [`events`]).
    pub fn events(&self) -> Vec<(String, String)> {
        events(&self.stdout)
    }

    /// The messages of the text events of one level, in order.
    pub fn msgs(&self, level: &str) -> Vec<String> {
        messages(&self.events(), level)
    }

    /// Every stdout line parsed as a JSON event (the program ran with `--json`).
    pub fn json(&self) -> Vec<Value> {
        self.stdout.lines().map(json).collect()
    }

    /// The JSON events of one level.
    pub fn level(&self, level: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|e| e["level"] == level)
            .collect()
    }

    /// The string field `key` of every JSON event of `level` (`field("RECV", "payload")`).
    pub fn field(&self, level: &str, key: &str) -> Vec<String> {
        self.level(level)
            .iter()
            .map(|e| match e[key].as_str() {
                Some(s) => s.to_owned(),
                None => panic!("{level} event without a string {key:?}: {e}"),
            })
            .collect()
    }

    /// The one JSON event of `level` (a run's `STAT`), failing the test unless there is exactly
    /// one.
    pub fn only(&self, level: &str) -> Value {
        let mut found = self.level(level);
        assert_eq!(found.len(), 1, "one {level} event: {}", self.stdout);
        found.remove(0)
    }
}

/// Runs `program args…` with stdin closed and returns what it printed; the test fails if it has
/// not ended within `limit`.
pub fn run<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S], limit: Duration) -> Finished {
    Proc::start(program, args).finish_within(limit)
}

/// Runs `cmd` with `input` on its stdin (then closed), killing it at `limit` (said on stderr, not
/// a failure: the status then shows the signal), and returns its exact output bytes.
pub fn output(cmd: &mut Command, input: &[u8], limit: Duration) -> Output {
    let mut p = Proc::spawn_with_stdin(&mut *cmd);
    if let Some(mut stdin) = p.stdin.take() {
        let data = input.to_vec();
        // On a thread: a program that does not read its stdin must not block the test.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let (status, killed) = p.end(limit);
    if killed {
        eprintln!("killed after {limit:?}: {cmd:?}");
    }
    let mut log = p.out.lock();
    Output {
        status,
        stdout: std::mem::take(&mut log.stdout),
        stderr: std::mem::take(&mut log.stderr),
    }
}

/// The `(level, message)` of one `[2026-11-23 13:20:31.123] [LEVEL] message` line.
pub fn split_event(line: &str) -> Option<(&str, &str)> {
    if !line.starts_with('[') || line.get(24..27) != Some("] [") {
        return None;
    }
    let rest = &line[27..];
    let end = rest.find("] ")?;
    Some((&rest[..end], &rest[end + 2..]))
}

/// Splits the text output of the kit's printer into `(level, message)` events. A line without a
/// `[time] [LEVEL]` head continues the previous message (a multi-line flood is one event).
pub fn events(stdout: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in stdout.split_inclusive('\n') {
        match split_event(line) {
            Some((level, msg)) => out.push((level.to_owned(), msg.to_owned())),
            None => {
                if let Some(last) = out.last_mut() {
                    last.1.push_str(line);
                }
            }
        }
    }
    for e in &mut out {
        if e.1.ends_with('\n') {
            e.1.pop();
        }
    }
    out
}

fn messages(events: &[(String, String)], level: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(l, _)| l == level)
        .map(|(_, m)| m.clone())
        .collect()
}

/// Parses one JSON event line, failing the test with the line when it is not JSON.
pub fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[2026-11-23 13:20:31.123] ";

    #[test]
    fn events_join_continuation_lines_and_drop_the_last_newline() {
        let text =
            format!("{HEAD}[INFO] ready\n{HEAD}[RECV] line one\nline two\n\n{HEAD}[STAT] 2\n");
        assert_eq!(
            events(&text),
            [
                ("INFO".to_owned(), "ready".to_owned()),
                ("RECV".to_owned(), "line one\nline two\n".to_owned()),
                ("STAT".to_owned(), "2".to_owned()),
            ]
        );
    }

    #[test]
    fn split_event_wants_the_head_at_its_place() {
        assert_eq!(
            split_event(&format!("{HEAD}[WARN] late")),
            Some(("WARN", "late"))
        );
        assert_eq!(split_event("[WARN] late"), None);
        assert_eq!(split_event("plain text"), None);
    }

    #[test]
    fn addr_after_skips_the_protocol_word_and_stops_at_the_address() {
        let line = "echo-server listening on tcp [::1]:8080 (x)";
        assert_eq!(
            addr_after(line, "listening on "),
            Some("[::1]:8080".parse().unwrap())
        );
        assert_eq!(
            addr_after("PMU listening on 0.0.0.0:5003 (TCP)", "PMU listening on "),
            Some("0.0.0.0:5003".parse().unwrap())
        );
        assert_eq!(addr_after("listening on IPv4 only", "listening on "), None);
    }

    fn sh(script: &str) -> Proc {
        Proc::start("sh", &["-c", script])
    }

    #[test]
    fn wait_for_sees_lines_already_printed_and_finish_collects_both_streams() {
        let p = sh("echo one; echo two; echo oops >&2; exit 3");
        assert_eq!(p.wait_for("one"), "one");
        assert_eq!(p.wait_for("tw"), "two");
        let f = p.finish();
        assert_eq!(f.code, Some(3));
        assert!(!f.killed);
        assert_eq!(f.lines(), ["one", "two"]);
        assert_eq!(f.stderr, "oops\n");
    }

    #[test]
    fn a_wait_ends_when_stdout_closes_without_the_line() {
        let p = sh("echo only");
        let start = Instant::now();
        assert_eq!(p.wait_line("never", Duration::from_secs(10)), None);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    #[should_panic(expected = "no stdout line with \"never\"")]
    fn wait_for_fails_with_what_was_printed() {
        sh("echo something").wait_for("never");
    }

    #[test]
    fn stop_after_kills_a_program_that_keeps_running() {
        let p = sh("echo started; exec sleep 30");
        p.wait_for("started");
        let f = p.stop_after(Duration::from_millis(100));
        assert!(f.killed);
        assert_eq!(f.code, None);
        assert_eq!(f.stdout, "started\n");
    }

    #[test]
    fn forget_seen_makes_waits_look_only_at_new_lines() {
        let mut p = Proc::spawn_with_stdin(Command::new("cat"));
        p.send("round");
        p.wait_for("round");
        p.forget_seen();
        assert_eq!(p.wait_line("round", Duration::from_millis(50)), None);
        p.send("round 2");
        assert_eq!(p.wait_for("round"), "round 2");
        assert_eq!(p.count("round"), 2);
        p.close_stdin();
        assert_eq!(p.finish().code, Some(0));
    }

    #[test]
    fn output_feeds_stdin_and_keeps_exact_bytes() {
        let out = output(&mut Command::new("cat"), b"a\r\nb", STEP);
        assert!(out.status.success());
        assert_eq!(out.stdout, b"a\r\nb");
    }

    #[test]
    fn finished_reads_json_events() {
        let f = run(
            "printf",
            &[r#"{"level":"RECV","payload":"x"}\n{"level":"STAT","packets":1}\n"#],
            STEP,
        );
        assert_eq!(f.field("RECV", "payload"), ["x"]);
        assert_eq!(f.only("STAT")["packets"], 1);
    }
}
