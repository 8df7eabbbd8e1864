//! A server's `serve` run on a thread of the test process, the way mini-redis tests
//! `server::run`: the test binds port 0 itself, hands `serve` a capture sink and a stop handle,
//! talks to it through real sockets, reads the events it logged, then stops it and checks that
//! it returned `Ok` within a bounded time.

use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use labnet::log::{Capture, Event, Sink};
use labnet::sock::{Serve, Stop};

/// How long a wait for an event may take before the test fails (generous: it only matters when
/// something is broken).
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// How long a stopped server may take to return before the test fails.
pub const STOP_LIMIT: Duration = Duration::from_secs(5);

/// A `serve` running on a thread of the test; stopped (and its result checked) by [`InProc::stop`],
/// stopped without a check when dropped (a failing test leaves no server behind).
#[derive(Debug)]
pub struct InProc {
    /// Every event the server logged.
    pub capture: Capture,
    stop: Stop,
    done: Receiver<labnet::Result<()>>,
    thread: Option<JoinHandle<()>>,
}

impl InProc {
    /// Runs `serve(ctx)` on a thread named `name`, with a fresh capture sink and stop handle.
    pub fn start(
        name: &str,
        serve: impl FnOnce(Serve) -> labnet::Result<()> + Send + 'static,
    ) -> InProc {
        let (sink, capture) = Sink::capture();
        let stop = Stop::new();
        let ctx = Serve::new(sink, stop.clone());
        let (tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _ = tx.send(serve(ctx));
            })
            .unwrap_or_else(|e| panic!("start the server thread: {e}"));
        InProc {
            capture,
            stop,
            done,
            thread: Some(thread),
        }
    }

    /// Waits (at most [`WAIT_LIMIT`]) for an event whose message contains `needle`; panics with
    /// every event logged when none comes.
    pub fn wait_msg(&self, needle: &str) -> Event {
        self.wait_event(|e| e.msg().contains(needle))
            .unwrap_or_else(|| panic!("no event with {needle:?}; events: {:#?}", self.lines()))
    }

    /// Waits (at most [`WAIT_LIMIT`]) for an event matching `pred`.
    pub fn wait_event(&self, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        self.capture.wait_for(WAIT_LIMIT, pred)
    }

    /// The events logged so far, as text lines.
    pub fn lines(&self) -> Vec<String> {
        self.capture.lines()
    }

    /// Everything logged so far, one line per event (for a failure message).
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// How many events so far have `needle` in their line (`[LEVEL] message`).
    pub fn count(&self, needle: &str) -> usize {
        self.capture
            .events()
            .iter()
            .filter(|e| line(e).contains(needle))
            .count()
    }

    /// The first event whose line contains `needle`, as `[LEVEL] message`, logged already or
    /// within `timeout` (what [`crate::proc::Proc::wait_line`] is for a process).
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.capture
            .wait_for(timeout, |e| line(e).contains(needle))
            .map(|e| line(&e))
    }

    /// Waits until `count` events contain `needle`; returns their lines.
    pub fn wait_count(&self, needle: &str, count: usize, timeout: Duration) -> Option<Vec<String>> {
        let found = self
            .capture
            .wait_n(count, timeout, |e| line(e).contains(needle));
        (found.len() >= count).then(|| found.iter().map(line).collect())
    }

    /// Like [`InProc::wait_line`] within [`WAIT_LIMIT`], failing the test with every event
    /// logged when the line never comes.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_line(needle, WAIT_LIMIT)
            .unwrap_or_else(|| panic!("no event with {needle:?}; events:\n{}", self.log()))
    }

    /// Stops the server and waits for `serve` to return; panics unless it returned `Ok` within
    /// [`STOP_LIMIT`]. Returns how long it took.
    pub fn stop(mut self) -> Duration {
        let asked = Instant::now();
        self.stop.stop();
        match self.done.recv_timeout(STOP_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("serve returned an error after the stop: {e}"),
            Err(_) => panic!(
                "serve did not return within {STOP_LIMIT:?} of the stop; events: {:#?}",
                self.capture.lines()
            ),
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                panic!("the server thread panicked");
            }
        }
        asked.elapsed()
    }

    /// True while `serve` has not returned.
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

/// `[LEVEL] message`: the text line without its time.
fn line(e: &Event) -> String {
    format!("[{}] {}", e.level(), e.msg())
}

impl Drop for InProc {
    fn drop(&mut self) {
        self.stop.stop();
    }
}
