//! The chat fan-out load generator and its intactness checker.
//!
//! A [`ChatSession`] connects N clients to a chat server (ours or the handout's Python one),
//! registers them as `c0 … c{N-1}` and gives each a reader thread. The controller thread then
//! runs phases: **burst** (every client sends K messages as fast as one thread can write them),
//! **lockstep** (one message at a time, the next only once all N−1 receivers have it) and
//! **paced** (a fixed aggregate delivery rate; the latency of every delivery is recorded).
//!
//! Wire format (the chat-lab handout's): after each join or leave the server sends `!{json users}`; it relays a
//! room message as `<name>: <msg> `. Ours ends each with `\n`, the handout's server ends nothing
//! and takes one `recv(1024)` as one message, so under load it may glue two of a client's messages
//! into one relay, or cut one in two. [`StreamParser`] splits both streams into units; [`Checker`]
//! decides for each unit whether it is exactly one expected message, unmangled, seen once.
//!
//! Each message body carries its phase, sender, sequence number and send time, a padding that
//! depends on the sequence number, and an FNV-1a hash of all that, so any cut, glue or corruption
//! is detected: `3.17.0.123456789.aaaaaaaaaaaaaaaa.1f2e3d4c`. Bodies have no spaces, so the
//! handout's trailing space ends a relayed message unambiguously.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use labnet::{Context, Error, Result};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token, Waker};

/// Length of the padding in each body.
pub const PAD: usize = 16;
/// Longest name the parser accepts before a `: ` (the lab's limit is 20 characters).
const NAME_MAX: usize = 24;
/// A relayed message longer than this without its closing space is garbage.
const UNIT_MAX: usize = 64 * 1024;

/// FNV-1a, 32 bits: enough to notice a cut or a glued message.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// What a message body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    /// Phase the message belongs to.
    pub phase: u32,
    /// Index of the sending client.
    pub sender: u32,
    /// Sequence number within the phase, per sender.
    pub seq: u32,
    /// Send time, ns since the session's epoch.
    pub t_ns: u64,
}

impl Body {
    /// The body as sent (without the `\n` that ends it on the wire).
    pub fn encode(&self) -> String {
        let pad = char::from(b'a' + (self.seq % 26) as u8)
            .to_string()
            .repeat(PAD);
        let head = format!(
            "{}.{}.{}.{}.{pad}",
            self.phase, self.sender, self.seq, self.t_ns
        );
        let hash = fnv1a(head.as_bytes());
        format!("{head}.{hash:08x}")
    }

    /// Parses a body; `None` unless it is exactly one well-formed body with a matching hash.
    pub fn decode(bytes: &[u8]) -> Option<Body> {
        let s = std::str::from_utf8(bytes).ok()?;
        let (head, hash) = s.rsplit_once('.')?;
        if hash.len() != 8 || u32::from_str_radix(hash, 16).ok()? != fnv1a(head.as_bytes()) {
            return None;
        }
        let mut f = head.split('.');
        let body = Body {
            phase: f.next()?.parse().ok()?,
            sender: f.next()?.parse().ok()?,
            seq: f.next()?.parse().ok()?,
            t_ns: f.next()?.parse().ok()?,
        };
        let pad = f.next()?;
        let want = b'a' + (body.seq % 26) as u8;
        if f.next().is_some() || pad.len() != PAD || pad.bytes().any(|b| b != want) {
            return None;
        }
        Some(body)
    }
}

/// The name of client `i`.
pub fn client_name(i: usize) -> String {
    format!("c{i}")
}

/// One unit of the server → client stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Unit<'a> {
    /// A user list with this many entries.
    Users(usize),
    /// A relayed room message: `<name>: <content> `.
    Chat {
        /// The sender's name as the server wrote it.
        name: &'a [u8],
        /// What follows `: ` up to the closing space.
        content: &'a [u8],
    },
    /// Bytes that are neither (up to and including the next space).
    Garbage(&'a [u8]),
}

/// Splits the server's stream into [`Unit`]s, whether each ends with `\n` (ours) or not (the
/// handout's), however TCP segmented it.
#[derive(Debug, Default)]
pub struct StreamParser {
    buf: Vec<u8>,
}

impl StreamParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds received bytes, calling `on` for every complete unit.
    pub fn push(&mut self, data: &[u8], on: &mut dyn FnMut(Unit<'_>)) {
        self.buf.extend_from_slice(data);
        let buf = &self.buf;
        let mut p = 0;
        loop {
            while p < buf.len() && buf[p] == b'\n' {
                p += 1;
            }
            if p >= buf.len() {
                break;
            }
            if buf[p] == b'!' {
                // Names and addresses hold no braces: the list ends at the first `}`.
                let Some(end) = buf[p..].iter().position(|&b| b == b'}') else {
                    break;
                };
                let list = &buf[p..p + end];
                // Each entry is `"name": "ip"`: four quotes.
                let quotes = list.iter().filter(|&&b| b == b'"').count();
                on(Unit::Users(quotes / 4));
                p += end + 1;
                continue;
            }
            let window = &buf[p..buf.len().min(p + NAME_MAX + 2)];
            let colon = window.windows(2).position(|w| w == b": ");
            let space = window.iter().position(|&b| b == b' ');
            match colon {
                Some(c) if space.is_none_or(|s| s > c) => {
                    let start = p + c + 2;
                    match buf[start..].iter().position(|&b| b == b' ') {
                        Some(len) => {
                            on(Unit::Chat {
                                name: &buf[p..p + c],
                                content: &buf[start..start + len],
                            });
                            p = start + len + 1;
                        }
                        None if buf.len() - start > UNIT_MAX => {
                            on(Unit::Garbage(&buf[p..]));
                            p = buf.len();
                        }
                        None => break,
                    }
                }
                _ => {
                    // No `name: ` here: garbage up to the next space (the end of whatever this
                    // was), unless the window is still too short to tell.
                    if let Some(s) = space {
                        on(Unit::Garbage(&buf[p..=p + s]));
                        p += s + 1;
                    } else if window.len() < NAME_MAX + 2 {
                        break;
                    } else {
                        match buf[p..].iter().position(|&b| b == b' ') {
                            Some(s) => {
                                on(Unit::Garbage(&buf[p..=p + s]));
                                p += s + 1;
                            }
                            None if buf.len() - p > UNIT_MAX => {
                                on(Unit::Garbage(&buf[p..]));
                                p = buf.len();
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        self.buf.drain(..p);
    }
}

/// Counts what one client received in the current phase and judges it.
#[derive(Debug, Clone)]
pub struct Checker {
    me: u32,
    clients: u32,
    phase: u32,
    next: Vec<u32>,
    /// Entries of the last user list seen.
    pub users: usize,
    /// Messages of this phase received exactly as sent, once, from the right name.
    pub intact: u64,
    /// Messages of this phase found at all (intact or inside a glued unit).
    pub received: u64,
    /// Units that were not exactly one expected message (glued, cut, wrong name, garbage).
    pub mangled: u64,
    /// Messages seen a second time (or out of order).
    pub duplicate: u64,
    /// Messages of an earlier phase that arrived late.
    pub stale: u64,
    /// Latency of every intact delivery, ns.
    pub latency_ns: Vec<u64>,
}

impl Checker {
    /// The checker of client `me` of `clients`.
    pub fn new(me: u32, clients: u32) -> Self {
        Checker {
            me,
            clients,
            phase: 0,
            next: vec![0; clients as usize],
            users: 0,
            intact: 0,
            received: 0,
            mangled: 0,
            duplicate: 0,
            stale: 0,
            latency_ns: Vec::new(),
        }
    }

    /// Starts counting phase `phase` from zero.
    pub fn reset(&mut self, phase: u32) {
        self.phase = phase;
        self.next.iter_mut().for_each(|n| *n = 0);
        self.intact = 0;
        self.received = 0;
        self.mangled = 0;
        self.duplicate = 0;
        self.stale = 0;
        self.latency_ns.clear();
    }

    /// Judges one unit received at `now_ns`.
    pub fn on_unit(&mut self, unit: Unit<'_>, now_ns: u64) {
        match unit {
            Unit::Users(n) => self.users = n,
            Unit::Garbage(_) => self.mangled += 1,
            Unit::Chat { name, content } => {
                // Ours ends the relay with ` \n`, the handout's relays the client's `\n` inside.
                let trimmed = trim_newlines(content);
                if trimmed.contains(&b'\n') {
                    // Several messages glued into one relay: found, but not intact.
                    self.mangled += 1;
                    for piece in trimmed.split(|&b| b == b'\n') {
                        if let Some(b) = Body::decode(piece) {
                            if b.phase == self.phase && self.fresh(&b) {
                                self.received += 1;
                            }
                        }
                    }
                    return;
                }
                let Some(b) = Body::decode(trimmed) else {
                    self.mangled += 1;
                    return;
                };
                if b.phase != self.phase {
                    self.stale += 1;
                } else if b.sender >= self.clients
                    || b.sender == self.me
                    || name != client_name(b.sender as usize).as_bytes()
                {
                    self.mangled += 1;
                } else if !self.fresh(&b) {
                    self.duplicate += 1;
                } else {
                    self.intact += 1;
                    self.received += 1;
                    self.latency_ns.push(now_ns.saturating_sub(b.t_ns));
                }
            }
        }
    }

    /// True (and remembered) when `b` is the first time its sender's sequence number is seen.
    fn fresh(&mut self, b: &Body) -> bool {
        match self.next.get_mut(b.sender as usize) {
            Some(n) if b.seq >= *n => {
                *n = b.seq + 1;
                true
            }
            _ => false,
        }
    }
}

fn trim_newlines(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n'] = s {
        s = rest;
    }
    s
}

/// State shared by the controller and the reader thread of one session.
struct Shared {
    epoch: Instant,
    received: AtomicU64,
    last_ns: AtomicU64,
    target: AtomicU64,
    wake: Mutex<()>,
    cv: Condvar,
    stop: AtomicBool,
    closed: AtomicUsize,
    /// One checker per client, locked by the reader once per batch of events.
    checkers: Mutex<Vec<Checker>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What one phase measured.
#[derive(Debug, Clone, Default)]
pub struct PhaseResult {
    /// Deliveries expected (messages sent × (N − 1)).
    pub expected: u64,
    /// Deliveries intact.
    pub intact: u64,
    /// Deliveries found at all.
    pub received: u64,
    /// Mangled units.
    pub mangled: u64,
    /// Duplicates.
    pub duplicate: u64,
    /// Seconds from the first send to the last delivery.
    pub seconds: f64,
    /// Server CPU seconds (user + system) during the phase.
    pub cpu_seconds: f64,
    /// Latencies of intact deliveries, ns (paced mode).
    pub latency_ns: Vec<u64>,
    /// Per-message fan-out times, ns (lockstep mode).
    pub fanout_ns: Vec<u64>,
    /// Messages whose fan-out did not complete in time (lockstep).
    pub timeouts: u32,
    /// Clients whose connection the server closed.
    pub closed: usize,
}

impl PhaseResult {
    /// Intact deliveries as a percentage of the expected ones.
    pub fn intact_pct(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        100.0 * self.intact as f64 / self.expected as f64
    }

    /// Deliveries found (intact or glued) as a percentage of the expected ones.
    pub fn received_pct(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        100.0 * self.received as f64 / self.expected as f64
    }

    /// Server CPU per delivery found, µs.
    pub fn cpu_us_per_delivery(&self) -> f64 {
        if self.received == 0 {
            return f64::NAN;
        }
        self.cpu_seconds * 1e6 / self.received as f64
    }

    /// Deliveries found per second.
    pub fn rate(&self) -> f64 {
        if self.seconds <= 0.0 {
            return f64::NAN;
        }
        self.received as f64 / self.seconds
    }
}

/// The poll token of the reader's waker.
const WAKE: Token = Token(usize::MAX);

/// N clients connected to one chat server.
///
/// All clients are read by one thread on one epoll set (mio): a thread per client would make
/// the generator pay a context switch per delivery and become the bottleneck on two cores.
pub struct ChatSession {
    label: String,
    server_pid: u32,
    writers: Vec<TcpStream>,
    reader: Option<JoinHandle<()>>,
    add: mpsc::Sender<(usize, MioStream)>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    phase: u32,
    /// Seconds the joins took (every join sends the whole user list to everyone: O(N²) bytes).
    pub join_seconds: f64,
}

impl ChatSession {
    /// Connects and registers `n` clients one after the other (each waits for its own first
    /// user list, so the server has registered it), then waits until every client has seen the
    /// full list of `n`. Bounded by `budget`.
    pub fn join(
        label: &str,
        server: SocketAddr,
        server_pid: u32,
        n: usize,
        budget: Duration,
    ) -> Result<ChatSession> {
        let start = Instant::now();
        let deadline = start + budget;
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            received: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            wake: Mutex::new(()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            closed: AtomicUsize::new(0),
            checkers: Mutex::new((0..n).map(|i| Checker::new(i as u32, n as u32)).collect()),
        });
        let poll = Poll::new().context("epoll_create")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).context("eventfd waker")?);
        let (add, added) = mpsc::channel();
        let sh = shared.clone();
        let reader = thread::Builder::new()
            .name(format!("{label}-reader"))
            .spawn(move || reader(poll, added, n, sh))
            .context("start reader thread")?;
        let mut session = ChatSession {
            label: label.to_owned(),
            server_pid,
            writers: Vec::with_capacity(n),
            reader: Some(reader),
            add,
            waker,
            shared,
            phase: 0,
            join_seconds: 0.0,
        };
        for i in 0..n {
            let mut s = connect_retry(server, deadline)?;
            s.set_nodelay(true).context("TCP_NODELAY")?;
            s.write_all(client_name(i).as_bytes())
                .with_context(|| format!("{label}: send name of client {i}"))?;
            // The clone shares the open file: both are non-blocking from here on.
            let r = s.try_clone().context("clone client socket")?;
            r.set_nonblocking(true).context("O_NONBLOCK")?;
            session
                .add
                .send((i, MioStream::from_std(r)))
                .map_err(|_| Error::msg(format!("{label}: reader thread ended")))?;
            session.waker.wake().context("wake reader")?;
            session.writers.push(s);
            // Registered once its first user list arrives.
            while lock(&session.shared.checkers)[i].users == 0 {
                if Instant::now() >= deadline {
                    return Err(Error::msg(format!(
                        "{label}: client {i} not registered in time"
                    )));
                }
                if session.shared.closed.load(Ordering::Relaxed) > 0 {
                    return Err(Error::msg(format!(
                        "{label}: server closed a client during the joins"
                    )));
                }
                thread::sleep(Duration::from_micros(100));
            }
        }
        while lock(&session.shared.checkers).iter().any(|c| c.users < n) {
            if Instant::now() >= deadline {
                return Err(Error::msg(format!(
                    "{label}: user lists of {n} not seen by all in time"
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
        session.join_seconds = start.elapsed().as_secs_f64();
        Ok(session)
    }

    /// Clients in the session.
    pub fn len(&self) -> usize {
        self.writers.len()
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }

    fn now_ns(&self) -> u64 {
        self.shared.epoch.elapsed().as_nanos() as u64
    }

    fn begin(&mut self, target: u64) -> Result<(u32, f64, u64)> {
        self.phase += 1;
        let phase = self.phase;
        for c in lock(&self.shared.checkers).iter_mut() {
            c.reset(phase);
        }
        self.shared.received.store(0, Ordering::Relaxed);
        self.shared.last_ns.store(0, Ordering::Relaxed);
        self.shared.target.store(target, Ordering::Relaxed);
        let cpu = crate::sys::cpu_seconds(self.server_pid)?;
        Ok((phase, cpu, self.now_ns()))
    }

    fn send(&mut self, phase: u32, sender: usize, seq: u32, deadline: Instant) -> Result<()> {
        let body = Body {
            phase,
            sender: sender as u32,
            seq,
            t_ns: self.now_ns(),
        };
        let mut line = body.encode();
        line.push('\n');
        write_all_nonblocking(&mut self.writers[sender], line.as_bytes(), deadline)
            .with_context(|| format!("{}: client {sender} send", self.label))
    }

    /// Waits until `target` deliveries arrived, nothing arrived for `quiet`, or `deadline`.
    fn wait(&self, target: u64, quiet: Duration, deadline: Instant) -> bool {
        let mut guard = lock(&self.shared.wake);
        let mut last = self.shared.received.load(Ordering::Relaxed);
        let mut last_change = Instant::now();
        loop {
            let now_received = self.shared.received.load(Ordering::Relaxed);
            if now_received >= target {
                return true;
            }
            if now_received != last {
                last = now_received;
                last_change = Instant::now();
            }
            let now = Instant::now();
            if now >= deadline || now.duration_since(last_change) >= quiet {
                return false;
            }
            guard = match self
                .shared
                .cv
                .wait_timeout(guard, Duration::from_millis(20))
            {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn finish(&self, expected: u64, cpu0: f64, t0: u64) -> Result<PhaseResult> {
        let cpu1 = crate::sys::cpu_seconds(self.server_pid)?;
        let last = self.shared.last_ns.load(Ordering::Relaxed);
        let mut r = PhaseResult {
            expected,
            seconds: last.saturating_sub(t0) as f64 / 1e9,
            cpu_seconds: cpu1 - cpu0,
            closed: self.shared.closed.load(Ordering::Relaxed),
            ..PhaseResult::default()
        };
        for c in lock(&self.shared.checkers).iter_mut() {
            r.intact += c.intact;
            r.received += c.received;
            r.mangled += c.mangled;
            r.duplicate += c.duplicate;
            r.latency_ns.append(&mut c.latency_ns);
        }
        Ok(r)
    }

    /// Every client sends `k` messages as fast as one thread writes them (round-robin over the
    /// clients), then waits for all deliveries (bounded by `budget`).
    pub fn burst(&mut self, k: u32, budget: Duration) -> Result<PhaseResult> {
        let n = self.len() as u64;
        let expected = n * u64::from(k) * (n - 1);
        let deadline = Instant::now() + budget;
        let (phase, cpu0, t0) = self.begin(expected)?;
        for seq in 0..k {
            for s in 0..self.len() {
                self.send(phase, s, seq, deadline)?;
            }
        }
        // A thread-per-client server under a burst can go seconds without a delivery (1,000
        // threads queue for Python's GIL): only a long silence ends the phase early.
        self.wait(expected, Duration::from_secs(15), deadline);
        self.finish(expected, cpu0, t0)
    }

    /// `m` messages, one at a time from rotating senders; each waits until all N − 1 receivers
    /// have it (at most 2 s; three such timeouts end the phase).
    pub fn lockstep(&mut self, m: u32, budget: Duration) -> Result<PhaseResult> {
        let n = self.len() as u64;
        let expected = u64::from(m) * (n - 1);
        let deadline = Instant::now() + budget;
        let (phase, cpu0, t0) = self.begin(expected)?;
        let mut fanout = Vec::with_capacity(m as usize);
        let mut timeouts = 0;
        let mut sent = 0u64;
        for i in 0..m {
            let sender = i as usize % self.len();
            let t = Instant::now();
            self.send(phase, sender, i, deadline)?;
            sent += 1;
            let target = sent * (n - 1);
            self.shared.target.store(target, Ordering::Relaxed);
            let per_message = (Instant::now() + Duration::from_secs(2)).min(deadline);
            if self.wait(target, Duration::from_secs(2), per_message) {
                fanout.push(t.elapsed().as_nanos() as u64);
            } else {
                timeouts += 1;
                if timeouts >= 3 || Instant::now() >= deadline {
                    break;
                }
                // Count the lost deliveries as done so the next message has a reachable target.
                let got = self.shared.received.load(Ordering::Relaxed);
                sent = got.div_ceil(n - 1);
            }
        }
        let mut r = self.finish(expected, cpu0, t0)?;
        r.fanout_ns = fanout;
        r.timeouts = timeouts;
        Ok(r)
    }

    /// Messages from rotating senders at a fixed rate so that the deliveries add up to
    /// `deliveries_per_s`, for `seconds`; every delivery's latency is recorded.
    pub fn paced(
        &mut self,
        deliveries_per_s: f64,
        seconds: f64,
        budget: Duration,
    ) -> Result<PhaseResult> {
        let n = self.len() as u64;
        let per_s = (deliveries_per_s / (n - 1) as f64).max(1.0);
        let m = (per_s * seconds).round().max(1.0) as u32;
        let interval = Duration::from_secs_f64(1.0 / per_s);
        let expected = u64::from(m) * (n - 1);
        let deadline = Instant::now() + budget;
        let (phase, cpu0, t0) = self.begin(expected)?;
        let start = Instant::now();
        for i in 0..m {
            let at = start + interval * i;
            let now = Instant::now();
            if at > now {
                thread::sleep(at - now);
            }
            if Instant::now() >= deadline {
                break;
            }
            self.send(phase, i as usize % self.len(), i, deadline)?;
        }
        self.wait(expected, Duration::from_secs(3), deadline);
        self.finish(expected, cpu0, t0)
    }
}

impl Drop for ChatSession {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
        for w in self.writers.drain(..) {
            let _ = w.shutdown(Shutdown::Both);
            crate::load::abort(w);
        }
    }
}

/// `write_all` on a non-blocking socket: a full send buffer is waited out (50 µs naps) until
/// `deadline`.
fn write_all_nonblocking(
    s: &mut TcpStream,
    mut buf: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(ErrorKind::TimedOut.into());
                }
                thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn connect_retry(addr: SocketAddr, deadline: Instant) -> Result<TcpStream> {
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline && e.kind() == ErrorKind::ConnectionRefused => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).with_context(|| format!("connect {addr}")),
        }
    }
}

/// The reader: one epoll set over every client; each readable socket is drained, parsed and
/// judged; the controller is woken when the delivery target is reached.
fn reader(
    mut poll: Poll,
    added: mpsc::Receiver<(usize, MioStream)>,
    n: usize,
    shared: Arc<Shared>,
) {
    let mut events = Events::with_capacity(1024);
    let mut streams: Vec<Option<MioStream>> = (0..n).map(|_| None).collect();
    let mut parsers: Vec<StreamParser> = (0..n).map(|_| StreamParser::new()).collect();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        match poll.poll(&mut events, Some(Duration::from_millis(200))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        // New clients: registering reports a socket that is already readable (epoll checks the
        // current state on EPOLL_CTL_ADD), so no byte that came early is missed.
        while let Ok((i, mut s)) = added.try_recv() {
            if i < n
                && poll
                    .registry()
                    .register(&mut s, Token(i), Interest::READABLE)
                    .is_ok()
            {
                streams[i] = Some(s);
            }
        }
        let mut delta = 0u64;
        let mut checkers = lock(&shared.checkers);
        for ev in events.iter() {
            let i = ev.token().0;
            if ev.token() == WAKE || i >= n {
                continue;
            }
            let Some(s) = streams[i].as_mut() else {
                continue;
            };
            let ck = &mut checkers[i];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        if !shared.stop.load(Ordering::Relaxed) {
                            shared.closed.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = poll.registry().deregister(s);
                        streams[i] = None;
                        break;
                    }
                    Ok(len) => {
                        let now = shared.epoch.elapsed().as_nanos() as u64;
                        let before = ck.received;
                        parsers[i].push(&buf[..len], &mut |u| ck.on_unit(u, now));
                        delta += ck.received - before;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        if !shared.stop.load(Ordering::Relaxed) {
                            shared.closed.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = poll.registry().deregister(s);
                        streams[i] = None;
                        break;
                    }
                }
            }
        }
        drop(checkers);
        if delta > 0 {
            let now = shared.epoch.elapsed().as_nanos() as u64;
            let total = shared.received.fetch_add(delta, Ordering::Relaxed) + delta;
            shared.last_ns.fetch_max(now, Ordering::Relaxed);
            if total >= shared.target.load(Ordering::Relaxed) {
                let _g = lock(&shared.wake);
                shared.cv.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(sender: u32, seq: u32) -> Body {
        Body {
            phase: 1,
            sender,
            seq,
            t_ns: 1_000 + u64::from(seq),
        }
    }

    /// Feeds `stream` to a fresh parser and checker of client 0 of 3 in every possible split
    /// into two reads, and checks each split gives the same verdict.
    fn judge(stream: &[u8]) -> Checker {
        let mut first: Option<Checker> = None;
        for cut in 0..=stream.len() {
            let mut p = StreamParser::new();
            let mut c = Checker::new(0, 3);
            c.reset(1);
            p.push(&stream[..cut], &mut |u| c.on_unit(u, 5_000));
            p.push(&stream[cut..], &mut |u| c.on_unit(u, 5_000));
            if let Some(f) = &first {
                assert_eq!(
                    (f.intact, f.received, f.mangled, f.duplicate, f.users),
                    (c.intact, c.received, c.mangled, c.duplicate, c.users),
                    "split at {cut} of {:?}",
                    String::from_utf8_lossy(stream)
                );
            } else {
                first = Some(c);
            }
        }
        first.unwrap()
    }

    #[test]
    fn body_round_trips_and_rejects_any_change() {
        let b = body(7, 42);
        let text = b.encode();
        assert!(!text.contains(' '));
        assert_eq!(Body::decode(text.as_bytes()), Some(b));
        assert_eq!(Body::decode(&text.as_bytes()[..text.len() - 1]), None);
        assert_eq!(Body::decode(&text.as_bytes()[1..]), None);
        let mut flipped = text.clone().into_bytes();
        flipped[text.len() / 2] ^= 1;
        assert_eq!(Body::decode(&flipped), None);
        let twice = format!("{text}{text}");
        assert_eq!(Body::decode(twice.as_bytes()), None);
    }

    #[test]
    fn our_servers_newline_stream_is_intact() {
        let stream = format!(
            "!{{\"c0\": \"127.0.0.1\", \"c1\": \"127.0.0.1\", \"c2\": \"127.0.0.1\"}}\nc1: {} \nc2: {} \nc1: {} \n",
            body(1, 0).encode(),
            body(2, 0).encode(),
            body(1, 1).encode()
        );
        let c = judge(stream.as_bytes());
        assert_eq!(c.users, 3);
        assert_eq!((c.intact, c.received, c.mangled, c.duplicate), (3, 3, 0, 0));
        assert_eq!(c.latency_ns, vec![4_000, 4_000, 3_999]);
    }

    #[test]
    fn handout_stream_without_newlines_is_intact() {
        // The handout's server relays the client's `body\n` inside `name: … ` and glues the user
        // list to whatever follows.
        let stream = format!(
            "!{{\"c0\": \"127.0.0.1\", \"c1\": \"127.0.0.1\"}}!{{\"c0\": \"127.0.0.1\", \"c1\": \"127.0.0.1\", \"c2\": \"127.0.0.1\"}}c1: {}\n c2: {}\n ",
            body(1, 0).encode(),
            body(2, 0).encode()
        );
        let c = judge(stream.as_bytes());
        assert_eq!(c.users, 3);
        assert_eq!((c.intact, c.received, c.mangled), (2, 2, 0));
    }

    #[test]
    fn glued_messages_are_received_but_not_intact() {
        // One recv(1024) took two of c1's messages: one relay holds both.
        let stream = format!(
            "c1: {}\n{}\n c2: {}\n ",
            body(1, 0).encode(),
            body(1, 1).encode(),
            body(2, 0).encode()
        );
        let c = judge(stream.as_bytes());
        assert_eq!((c.intact, c.received, c.mangled), (1, 3, 1));
    }

    #[test]
    fn cut_message_is_mangled_and_parser_resynchronises() {
        // One message cut in two relays, then a good one.
        let whole = body(1, 0).encode();
        let (a, b) = whole.split_at(10);
        let stream = format!("c1: {a} c1: {b}\n c2: {}\n ", body(2, 0).encode());
        let c = judge(stream.as_bytes());
        assert_eq!((c.intact, c.received, c.mangled), (1, 1, 2));
    }

    #[test]
    fn wrong_name_own_echo_duplicate_and_stale_are_not_intact() {
        let mut stale = body(2, 5);
        stale.phase = 0;
        let stream = format!(
            "c2: {} c0: {} c1: {} c1: {} c2: {} garbage-without-colon c2: {} ",
            body(1, 0).encode(),
            body(0, 0).encode(),
            body(1, 3).encode(),
            body(1, 3).encode(),
            stale.encode(),
            body(2, 1).encode(),
        );
        let c = judge(stream.as_bytes());
        assert_eq!(c.intact, 2, "c1#3 once and c2#1");
        assert_eq!(c.mangled, 3, "wrong name, own echo, garbage");
        assert_eq!(c.duplicate, 1);
        assert_eq!(c.stale, 1);
    }

    #[test]
    fn incomplete_unit_waits_for_more_bytes() {
        let mut p = StreamParser::new();
        let mut units = 0;
        p.push(b"c1: abc", &mut |_| units += 1);
        assert_eq!(units, 0);
        p.push(b" ", &mut |_| units += 1);
        assert_eq!(units, 1);
        p.push(b"!{\"c0\": \"1", &mut |_| units += 1);
        assert_eq!(units, 1);
        p.push(b"27.0.0.1\"}", &mut |_| units += 1);
        assert_eq!(units, 2);
        p.push(b"c1", &mut |_| units += 1);
        assert_eq!(units, 2, "a short name may still get its `: `");
    }
}
