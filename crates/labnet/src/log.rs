//! The one printer of the kit's events.
//!
//! Every program prints what a student observes as one line per event,
//! `[2026-11-23 13:20:31.123] [RECV] 12 bytes from 172.20.0.100:50123 'HELLO_BCAST #0'`,
//! or with `--json` one JSON object per line (`{"time": …, "level": "RECV", "msg": …, "src": …}`)
//! for scripts and graders. Each line is formatted completely first and then written with a single
//! call under the stdout lock, so lines from different threads never interleave mid-line.
//!
//! Servers write through a [`Sink`] handed to their `serve` instead of straight to stdout: the
//! binaries pass [`Sink::stdout`] (the same bytes as [`Event::emit`]), a tunnel's `--log` a file
//! [`Printer`], and a test [`Sink::capture`], whose [`Capture`] lets it wait for an event
//! (`e.is("event", "connect")`) and read every event logged so far. Clients keep printing to
//! stdout with [`Event::emit`] and the free functions ([`info`], [`warn`] …).
//!
//! Times are UTC: lab containers and namespaces rarely agree on a time zone, and a capture in
//! Wireshark can be set to UTC to line up with these logs.
//!
//! The JSON keys are one vocabulary across the kit: `event` names what happened in snake_case
//! (`listen`, `connect`, `close`, `join`, `<step>_failed` …) and fields keep one name per thing
//! (`addr` a server's listening address, `peer` the other end of a connection, `src`/`dst` a
//! datagram's ends, `local` our own end, `bytes`, `duration_s`, `closed_by`). The list is
//! `docs/events.md`; a new event or field takes its name from there.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

/// What kind of event a line reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Progress: bound, connected, joined, closed.
    Info,
    /// Something this program sent.
    Send,
    /// Something this program received.
    Recv,
    /// Statistics and summaries.
    Stat,
    /// A problem the program survives (a bad client, a dropped datagram).
    Warn,
    /// A failure the program reports as an event (servers keep running after it).
    Error,
    /// Detail useful when something goes wrong.
    Debug,
}

impl Level {
    /// The upper-case name printed between brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Send => "SEND",
            Level::Recv => "RECV",
            Level::Stat => "STAT",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Debug => "DEBUG",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

static JSON: AtomicBool = AtomicBool::new(false);
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Switches the process-wide printer to JSON lines (`--json`).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// True when `--json` is in force.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// True once a write to stdout failed (the reader of a pipe went away). Long-running loops may
/// check it and end quietly.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Flushes stdout (before an error line goes to stderr, so the order on a terminal is right).
pub fn flush() {
    let _ = io::stdout().lock().flush();
}

/// One event: a level, a human message, and optional named fields for `--json`.
#[derive(Debug, Clone)]
pub struct Event {
    level: Level,
    msg: String,
    fields: Map<String, Value>,
}

impl Event {
    /// An event with its human-readable message.
    pub fn new(level: Level, msg: impl Into<String>) -> Self {
        Event {
            level,
            msg: msg.into(),
            fields: Map::new(),
        }
    }

    /// Adds a field shown only in JSON output (the text line already says it in words).
    pub fn field(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.fields.insert(key.to_owned(), value);
        self
    }

    /// Its level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Its human-readable message (the text after `[LEVEL] `).
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// One of its named fields (`event`, `peer`, `bytes` …), as JSON output would show it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// True when field `key` holds `value` (`e.is("event", "connect")`,
    /// `e.is("peer", addr.to_string())`).
    pub fn is(&self, key: &str, value: impl Serialize) -> bool {
        match serde_json::to_value(value) {
            Ok(v) => self.fields.get(key) == Some(&v),
            Err(_) => false,
        }
    }

    /// Prints the event on stdout in the process-wide format.
    pub fn emit(self) {
        let line = self.format(is_json(), SystemTime::now());
        let mut out = io::stdout().lock();
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the event to another printer (a log file).
    pub fn emit_to(self, printer: &Printer) {
        printer.write(self);
    }

    /// The complete line, newline included.
    pub fn format(&self, json: bool, at: SystemTime) -> String {
        let time = timestamp(at);
        if json {
            let mut obj = Map::new();
            obj.insert("time".into(), Value::String(time));
            obj.insert("level".into(), Value::String(self.level.as_str().into()));
            obj.insert("msg".into(), Value::String(self.msg.clone()));
            for (k, v) in &self.fields {
                obj.insert(k.clone(), v.clone());
            }
            let mut line = Value::Object(obj).to_string();
            line.push('\n');
            line
        } else {
            format!("[{time}] [{}] {}\n", self.level, self.msg)
        }
    }
}

/// A printer writing to a file of its own (the tunnel's `--log`), same format as stdout.
#[derive(Debug)]
pub struct Printer {
    sink: Mutex<File>,
    json: bool,
}

impl Printer {
    /// Opens (appends to) `path`.
    pub fn append(path: &Path, json: bool) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Printer {
            sink: Mutex::new(file),
            json,
        })
    }

    /// Writes one event as one `write` call: with `O_APPEND` the kernel never splits it.
    pub fn write(&self, event: Event) {
        let line = event.format(self.json, SystemTime::now());
        let mut file = match self.sink.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = file.write_all(line.as_bytes());
    }
}

/// Where a server's events go: stdout (what the binaries use), a file [`Printer`], or an
/// in-memory [`Capture`] a test reads back. Cloning is cheap and every clone writes to the same
/// place, so a server hands one to each of its threads.
///
/// Every target keeps the printer's promise: one event is formatted completely and then written
/// in one call under one lock, so lines never interleave mid-line. Stdout follows the
/// process-wide `--json` switch ([`set_json`]), exactly as [`Event::emit`] does (a binary's output
/// does not change when its server code writes through a `Sink`); a file keeps the mode it was
/// opened with; a capture keeps the events themselves.
#[derive(Clone, Debug, Default)]
pub struct Sink {
    target: Target,
}

#[derive(Clone, Debug, Default)]
enum Target {
    #[default]
    Stdout,
    File(Arc<Printer>),
    Capture(Capture),
}

impl Sink {
    /// Stdout in the process-wide format: the sink of every binary.
    pub fn stdout() -> Sink {
        Sink {
            target: Target::Stdout,
        }
    }

    /// A log file of its own (its JSON mode was chosen when it was opened).
    pub fn file(printer: Arc<Printer>) -> Sink {
        Sink {
            target: Target::File(printer),
        }
    }

    /// A new in-memory capture and the sink that feeds it (for tests).
    pub fn capture() -> (Sink, Capture) {
        let capture = Capture::default();
        let sink = Sink {
            target: Target::Capture(capture.clone()),
        };
        (sink, capture)
    }

    /// Writes one event.
    pub fn emit(&self, event: Event) {
        match &self.target {
            Target::Stdout => event.emit(),
            Target::File(p) => p.write(event),
            Target::Capture(c) => c.push(event),
        }
    }

    /// Writes an INFO event.
    pub fn info(&self, msg: impl Into<String>) {
        self.emit(Event::new(Level::Info, msg));
    }
    /// Writes a WARN event.
    pub fn warn(&self, msg: impl Into<String>) {
        self.emit(Event::new(Level::Warn, msg));
    }
    /// Writes an ERROR event.
    pub fn error(&self, msg: impl Into<String>) {
        self.emit(Event::new(Level::Error, msg));
    }
}

/// The events a [`Sink::capture`] received, in order, for a test to wait on and read.
///
/// Waiting sleeps on a condition variable that every new event wakes, so a test waits exactly
/// as long as the server takes, bounded by the timeout it gives.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    inner: Arc<(Mutex<Vec<Captured>>, Condvar)>,
}

/// One captured event with the time it was written.
type Captured = (SystemTime, Event);

impl Capture {
    fn push(&self, event: Event) {
        let (events, changed) = &*self.inner;
        lock(events).push((SystemTime::now(), event));
        changed.notify_all();
    }

    /// Every event so far, in the order they were written.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.inner.0).iter().map(|(_, e)| e.clone()).collect()
    }

    /// Every event so far as the text lines stdout would have shown, without the newline.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.inner.0)
            .iter()
            .map(|(at, e)| e.format(false, *at).trim_end().to_owned())
            .collect()
    }

    /// Waits until `n` events match `pred` (counting those already captured), at most `timeout`,
    /// and returns the matching events: `n` or more on success, fewer when the time ran out.
    pub fn wait_n(&self, n: usize, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + timeout;
        let (events, changed) = &*self.inner;
        let mut guard = lock(events);
        loop {
            let matching: Vec<Event> = guard
                .iter()
                .map(|(_, e)| e)
                .filter(|e| pred(e))
                .cloned()
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            if matching.len() >= n || left.is_zero() {
                return matching;
            }
            guard = match changed.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Waits for the first event matching `pred` (perhaps one already captured), at most
    /// `timeout`; `None` when none came.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        self.wait_n(1, timeout, pred).into_iter().next()
    }
}

/// A lock whose holder panicked is taken over: the data behind it is a list of whole events.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Prints an INFO event.
pub fn info(msg: impl Into<String>) {
    Event::new(Level::Info, msg).emit();
}
/// Prints a SEND event.
pub fn send(msg: impl Into<String>) {
    Event::new(Level::Send, msg).emit();
}
/// Prints a RECV event.
pub fn recv(msg: impl Into<String>) {
    Event::new(Level::Recv, msg).emit();
}
/// Prints a STAT event.
pub fn stat(msg: impl Into<String>) {
    Event::new(Level::Stat, msg).emit();
}
/// Prints a WARN event.
pub fn warn(msg: impl Into<String>) {
    Event::new(Level::Warn, msg).emit();
}
/// Prints an ERROR event (for servers that go on after it; fatal errors go through `report`).
pub fn error(msg: impl Into<String>) {
    Event::new(Level::Error, msg).emit();
}

/// Lets a repeated message through at most once per period and counts the ones it held back, so
/// a server under abuse (a descriptor limit hit thousands of times a second) logs a bounded
/// number of lines.
#[derive(Debug)]
pub struct RateLimit {
    period: std::time::Duration,
    last: Option<std::time::Instant>,
    skipped: u64,
}

impl RateLimit {
    /// At most one message per `period`.
    pub fn new(period: std::time::Duration) -> Self {
        RateLimit {
            period,
            last: None,
            skipped: 0,
        }
    }

    /// True when a message may be printed now; otherwise counts it as held back.
    pub fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.period => {
                self.skipped += 1;
                false
            }
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    /// How many messages were held back since the last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
pub fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Text from a peer made safe to print on one line of a terminal or a log: control characters
/// (C0 such as ESC, CR, BEL, NUL; DEL; C1) and invisible format characters (bidi overrides such as
/// U+202E, zero-width spaces) are written as Rust escapes (`\u{1b}`, `\r`, `\0`, `\u{202e}`);
/// everything else, quotes and non-ASCII letters included, is kept as it is. Without it a chat
/// message holding `ESC [2J` clears the reader's screen, a CR rewrites the start of the line, and
/// a newline forges a second log line.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || crate::wire::chat::is_format_char(c);
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Shows a payload the way the labs print it: as text when it is UTF-8, with control characters
/// escaped so one datagram stays on one line; otherwise as hex.
pub fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.escape_debug().to_string(),
        Err(_) => {
            let mut hex = String::from("0x");
            for b in bytes {
                hex.push_str(&format!("{b:02x}"));
            }
            hex
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn text_line_has_time_level_message() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_440_031_123);
        let line = Event::new(Level::Recv, "12 bytes").format(false, at);
        assert_eq!(line, "[2026-11-23 13:20:31.123] [RECV] 12 bytes\n");
    }

    #[test]
    fn json_line_is_one_object_with_fields() {
        let at = UNIX_EPOCH;
        let line = Event::new(Level::Send, "x")
            .field("bytes", 5)
            .format(true, at);
        assert!(line.ends_with('\n'));
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["time"], "1970-01-01 00:00:00.000");
        assert_eq!(v["level"], "SEND");
        assert_eq!(v["msg"], "x");
        assert_eq!(v["bytes"], 5);
    }

    #[test]
    fn leap_day_and_year_end_dates() {
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_088), (2024, 12, 31));
    }

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let mut r = RateLimit::new(Duration::from_secs(60));
        assert!(r.allow());
        assert!(!r.allow());
        assert!(!r.allow());
        assert_eq!(r.take_skipped(), 2);
        assert_eq!(r.take_skipped(), 0);
    }

    #[test]
    fn escape_controls_keeps_text_and_escapes_what_a_terminal_obeys() {
        assert_eq!(escape_controls("don't \"quote\" é"), "don't \"quote\" é");
        assert_eq!(
            escape_controls("a\u{1b}[2J\r\u{7}\0\n\u{7f}\u{9b}b"),
            "a\\u{1b}[2J\\r\\u{7}\\0\\n\\u{7f}\\u{9b}b"
        );
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn printable_escapes_and_hexes() {
        assert_eq!(printable(b"a\nb"), "a\\nb");
        assert_eq!(printable(&[0xff, 0x00]), "0xff00");
    }

    #[test]
    fn capture_wakes_a_waiter_on_a_matching_event_and_keeps_every_event() {
        let (sink, capture) = Sink::capture();
        let writer = {
            let sink = sink.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                sink.info("first");
                sink.emit(
                    Event::new(Level::Info, "#1 connection from 127.0.0.1:5")
                        .field("event", "connect")
                        .field("peer", "127.0.0.1:5"),
                );
            })
        };
        let ev = capture
            .wait_for(Duration::from_secs(5), |e| e.is("event", "connect"))
            .expect("connect event");
        assert_eq!(ev.level(), Level::Info);
        assert!(ev.is("peer", "127.0.0.1:5"));
        assert!(!ev.is("peer", "127.0.0.1:6"));
        assert_eq!(ev.get("event"), Some(&Value::from("connect")));
        writer.join().unwrap();
        let events = capture.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].msg(), "first");
        let lines = capture.lines();
        assert!(
            lines[1].ends_with("] [INFO] #1 connection from 127.0.0.1:5"),
            "{lines:?}"
        );
    }

    #[test]
    fn capture_wait_ends_at_its_timeout_with_what_matched() {
        let (sink, capture) = Sink::capture();
        sink.warn("one");
        let started = Instant::now();
        let got = capture.wait_n(2, Duration::from_millis(200), |e| e.level() == Level::Warn);
        assert_eq!(got.len(), 1);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2));
        assert!(
            capture
                .wait_for(Duration::ZERO, |e| e.msg() == "two")
                .is_none()
        );
    }

    #[test]
    fn a_file_sink_writes_whole_lines_in_its_own_mode() {
        let path = std::env::temp_dir().join(format!("labnet-sink-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let sink = Sink::file(Arc::new(Printer::append(&path, true).unwrap()));
        sink.emit(Event::new(Level::Recv, "x").field("bytes", 3));
        sink.info("y");
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["bytes"], 3);
        assert_eq!(lines[1]["msg"], "y");
    }
}
