//! The tunnel's event loop: every listener and every connection on one `mio` poll (Linux epoll,
//! edge triggered), moved by one thread.
//!
//! A connection pair lives in a slot of `pairs`; its two sockets are registered with the tokens
//! `FIRST_PAIR + 2*slot` (client side) and `+1` (server side). Edge-triggered epoll reports a
//! socket once when it becomes ready, not while it stays ready, so the loop remembers what each
//! event said ([`Ready`], kept per direction in [`Half`]) and moves bytes until the kernel says
//! `WouldBlock`; a direction nobody reported ready costs no system call at all. The only early
//! stop is the fairness budget, and a pair stopped by it is queued to be driven again before the
//! loop sleeps.
//!
//! Each direction picks its path by the size of what it carries. It starts on the
//! **copy path**: `read` into a small buffer, `write` it out, two system calls for a chat line or
//! a 1-byte ping. A read that fills the buffer means bulk is flowing, and the direction switches
//! to the **splice path** (see [`Pipe`]): the bytes move between the sockets inside the kernel,
//! never copied through this process. A turn of the splice path that moves less than one buffer
//! switches back. docs/benchmarks.md measures both paths against other relays (round trip of a
//! 1-byte ping-pong, iperf3 throughput).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use labnet::error::describe;
use labnet::log::{Event, Level, Printer, RateLimit};
use labnet::sock::Serve;
use labnet::sock::is_fd_exhaustion;
use labnet::{Context, Result};
use mio::net::{TcpListener as MioListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::Forward;

/// Size of the copy buffer of one direction while bytes are in flight, and the threshold between
/// the two paths: a read that fills it switches the direction to splice, a splice turn that
/// moves less than this switches it back. Small messages (a line, a ping, a PMU record) fit with
/// room to spare; a loopback segment (up to 64 KiB) does not, so bulk reaches splice on its
/// first read. 10,000 idle connections hold none of these (see [`Half`]).
const BUF_SIZE: usize = 16 * 1024;

/// Drained buffers kept for reuse; beyond this they go back to the allocator.
const POOL_KEEP: usize = 64;

/// Reads per direction per turn before other connections get their turn.
const READS_PER_TURN: usize = 16;

/// Bytes per direction per turn, whichever path moves them (a `splice` can take a whole pipe).
const BYTES_PER_TURN: usize = 1024 * 1024;

/// Capacity asked of each pipe with F_SETPIPE_SZ (the default is 16 pages, 64 KiB): fewer,
/// larger `splice` calls per MiB. Measured with iperf3 on loopback, one stream: 64 KiB ≈ 1.6,
/// 256 KiB ≈ 1.9, 1 MiB ≈ 2.2 GB/s. 1 MiB is the default `/proc/sys/fs/pipe-max-size`; an
/// unprivileged process past `pipe-user-pages-soft` gets less, and the pipe keeps the size it
/// has. An empty pipe costs no buffer pages, only its slot array.
const PIPE_SIZE: usize = 1024 * 1024;

/// Drained pipes kept for reuse. Each holds two descriptors, so the pool stays small and is
/// emptied when the process runs out of descriptors.
const PIPES_KEEP: usize = 16;

/// Accepts per listener per turn.
const ACCEPTS_PER_TURN: usize = 64;

/// How long the listeners rest after EMFILE/ENFILE.
const FD_PAUSE: Duration = Duration::from_millis(100);

/// Tokens below this are listeners.
const FIRST_PAIR: usize = 1024;

/// At most this many `-L` tunnels in one process.
pub const MAX_TUNNELS: usize = FIRST_PAIR;

/// Runtime options of the loop.
pub struct Options {
    /// Close a pair with no bytes either way for this long; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Give up on the outbound `connect` after this long.
    pub connect_timeout: Duration,
    /// The `--log` file, written in addition to stdout.
    pub printer: Option<Printer>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            idle_timeout: Some(crate::DEFAULT_IDLE),
            connect_timeout: crate::DEFAULT_CONNECT_TIMEOUT,
            printer: None,
        }
    }
}

/// The event loop behind [`crate::serve`]: forwards until the poll itself fails or `ctx.stop`.
pub fn serve(tunnels: Vec<(TcpListener, Forward)>, opts: &Options, ctx: &Serve) -> Result<()> {
    if tunnels.len() > MAX_TUNNELS {
        return Err(labnet::Error::usage(format!(
            "at most {MAX_TUNNELS} -L tunnels in one process"
        )));
    }
    let mut lp = Loop::new(tunnels, opts, ctx)?;
    lp.run()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

struct Tunnel {
    listener: MioListener,
    local: SocketAddr,
    fwd: Forward,
    /// The target's address, resolved once and kept.
    target: Option<SocketAddr>,
    /// The name lookup of the target, done on a thread of its own (see [`Lookup`]).
    lookup: Lookup,
    /// Clients accepted while the lookup runs; connected when it ends, closed when it fails
    /// or takes longer than the connect timeout.
    waiting: Vec<Waiting>,
    /// The socket for the next client's outbound connection, made before `accept`: a client is
    /// accepted only when its second descriptor already exists, so at the descriptor limit
    /// connections wait in the kernel's queue instead of being accepted and dropped.
    spare: Option<Socket>,
}

/// Where a tunnel's name lookup stands. `getaddrinfo` blocks, for as long as the resolver
/// takes (minutes when it never answers), so it never runs on the loop thread: one lookup at a
/// time per tunnel runs on a thread of its own and reports back through [`WAKER`] (a
/// lookup on the loop once froze every other tunnel for 6 s, and failed ones were retried every
/// second).
enum Lookup {
    /// None running; `failed` is when the last one failed (a new one waits a second after it).
    Idle { failed: Option<Instant> },
    /// A lookup thread is running.
    Running,
}

/// A client accepted before its tunnel's target address is known.
struct Waiting {
    client: TcpStream,
    peer: SocketAddr,
    since: Instant,
}

/// Most clients that wait for one lookup; more are closed at once.
const MAX_WAITING: usize = 1024;

/// What a lookup thread reports: the tunnel's index and the address (or why there is none).
type LookupResult = (usize, io::Result<SocketAddr>);

/// The token of the waker the lookup threads wake the loop with.
const WAKER: Token = Token(usize::MAX);

/// What one epoll event said about one socket. Edge-triggered epoll says it once, so it is kept
/// in the two [`Half`]s the socket belongs to until a system call proves it stale.
#[derive(Clone, Copy, Debug, Default)]
struct Ready {
    /// Bytes, a FIN or an error may be waiting to be read.
    read: bool,
    /// Room in the send buffer (or an error to be reported by the next write).
    write: bool,
    /// The peer's FIN (or an error) was there: after the bytes, a `read` of 0 is due.
    closing: bool,
    /// TCP urgent data (`MSG_OOB`, EPOLLPRI) is pending: reads stop short at its mark.
    urgent: bool,
}

impl Ready {
    fn of(e: &mio::event::Event) -> Ready {
        let error = e.is_error();
        Ready {
            read: e.is_readable() || e.is_read_closed() || e.is_priority() || error,
            write: e.is_writable() || e.is_write_closed() || error,
            closing: e.is_read_closed() || error,
            urgent: e.is_priority(),
        }
    }
}

/// One direction of a pair. Bytes in flight sit either in `pipe` (the splice path) or in `buf`
/// (the copy path); never in both, so their order is kept. An idle direction holds neither.
struct Half {
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    pipe: Option<Pipe>,
    /// Bytes spliced into `pipe` and not yet out of it.
    piped: usize,
    /// The splice path is in use (see the module documentation).
    bulk: bool,
    /// The source may have something to read: set by its events, cleared when a read returns
    /// `WouldBlock` or comes back short.
    readable: bool,
    /// The source's FIN or an error was reported: a short read no longer proves it empty.
    closing: bool,
    /// Urgent data was reported and not read past yet (see [`pump`]).
    urgent: bool,
    /// The destination may take bytes: set by its events, cleared when a write returns
    /// `WouldBlock`.
    writable: bool,
    /// The source sent FIN (`read` returned 0).
    eof: bool,
    /// The FIN was passed on: `shutdown(Write)` on the destination.
    shut: bool,
    bytes: u64,
}

impl Half {
    /// A new direction: both sockets presumed ready (a wasted `WouldBlock` at worst; epoll also
    /// reports the state at registration).
    fn new() -> Half {
        Half {
            buf: None,
            start: 0,
            end: 0,
            pipe: None,
            piped: 0,
            bulk: false,
            readable: true,
            closing: false,
            urgent: false,
            writable: true,
            eof: false,
            shut: false,
            bytes: 0,
        }
    }

    /// An event of the source socket.
    fn source_event(&mut self, r: Ready) {
        self.readable |= r.read;
        self.closing |= r.closing;
        self.urgent |= r.urgent;
    }

    /// An event of the destination socket.
    fn destination_event(&mut self, r: Ready) {
        self.writable |= r.write;
    }

    fn release_if_empty(&mut self, pool: &mut Pool, pipes: &mut Pipes) {
        if self.start == self.end {
            if let Some(b) = self.buf.take() {
                pool.put(b);
            }
            self.start = 0;
            self.end = 0;
        }
        if self.piped == 0 {
            if let Some(p) = self.pipe.take() {
                pipes.put(p);
            }
        }
    }

    /// Hands the buffer and the pipe back when the pair goes away. A pipe still holding bytes
    /// is closed instead: its stale bytes must never reach another connection.
    fn release_all(&mut self, pool: &mut Pool, pipes: &mut Pipes) {
        if let Some(b) = self.buf.take() {
            pool.put(b);
        }
        if let Some(p) = self.pipe.take() {
            if self.piped == 0 {
                pipes.put(p);
            }
        }
    }
}

struct Pair {
    id: u64,
    tunnel: usize,
    client: TcpStream,
    server: TcpStream,
    peer: SocketAddr,
    target: SocketAddr,
    started: Instant,
    last: Instant,
    /// `Some` while the outbound connect is in progress.
    connect_deadline: Option<Instant>,
    /// client → server.
    up: Half,
    /// server → client.
    down: Half,
    first_close: Option<Side>,
}

impl Pair {
    fn totals(&self) -> String {
        format!(
            "c→s {} bytes, s→c {} bytes, {:.3} s",
            self.up.bytes,
            self.down.bytes,
            self.started.elapsed().as_secs_f64()
        )
    }

    fn event(&self, level: Level, kind: &str, msg: String) -> Event {
        Event::new(level, format!("#{} {msg}", self.id))
            .field("event", kind)
            .field("id", self.id)
            .field("peer", self.peer.to_string())
            .field("target", self.target.to_string())
            .field("c2s_bytes", self.up.bytes)
            .field("s2c_bytes", self.down.bytes)
            .field("duration_s", self.started.elapsed().as_secs_f64())
    }
}

struct Pool {
    free: Vec<Box<[u8]>>,
}

impl Pool {
    fn get(&mut self) -> Box<[u8]> {
        self.free
            .pop()
            .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
    }

    fn put(&mut self, b: Box<[u8]>) {
        if self.free.len() < POOL_KEEP {
            self.free.push(b);
        }
    }
}

/// A pipe between the two sockets of one direction, for `splice(2)`.
///
/// `splice` moves data between a descriptor and a pipe inside the kernel: from a TCP socket it
/// takes the received segments' pages (references to them, no copy into user memory), into a
/// socket it hands those pages to the send path. One end of every `splice` must be a pipe (the
/// kernel's page-reference buffer), so socket → socket is two calls through a pipe: source →
/// pipe, pipe → destination. Compared with `read` + `write`, each byte crosses the user/kernel
/// boundary zero times instead of twice.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// The pipe's capacity: the most one `splice` into it can take.
    cap: usize,
}

/// Empty pipes for reuse. A pipe belongs to a direction only while bytes are in flight: an idle
/// connection holds none (10,000 idle connections must not cost 20,000 descriptors and their
/// pipe buffers), and a busy one takes and returns one per burst at the cost of a `Vec` pop and
/// push instead of `pipe2` + `fcntl` + two `close`. The spares are closed when no connection is
/// left (the tunnel then holds the descriptors it started with), when the descriptors run out,
/// and when one stayed unused for a whole sweep interval.
#[derive(Default)]
struct Pipes {
    free: Vec<Pipe>,
    /// The fewest spares there were since the last sweep: that many were not needed.
    unused: usize,
}

impl Pipes {
    fn get(&mut self) -> io::Result<Pipe> {
        if let Some(p) = self.free.pop() {
            self.unused = self.unused.min(self.free.len());
            return Ok(p);
        }
        self.unused = 0;
        // Nonblocking: a `splice` that would wait on the pipe returns EAGAIN instead.
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = i32::try_from(PIPE_SIZE).unwrap_or(i32::MAX);
        let cap = fcntl(&w, FcntlArg::F_SETPIPE_SZ(size))
            .or_else(|_| fcntl(&w, FcntlArg::F_GETPIPE_SZ))
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(BUF_SIZE);
        Ok(Pipe { r, w, cap })
    }

    fn put(&mut self, p: Pipe) {
        if self.free.len() < PIPES_KEEP {
            self.free.push(p);
        }
    }

    /// Closes the spares that sat unused since the last call. `get` and `put` work at the end of
    /// the list, so those are the first `unused`.
    fn trim(&mut self) {
        self.free.drain(..self.unused.min(self.free.len()));
        self.unused = self.free.len();
    }

    fn clear(&mut self) {
        self.free.clear();
        self.unused = 0;
    }
}

/// Which socket broke, and how.
enum Fault {
    /// Reading the source failed (a reset from that side).
    Read(io::Error),
    /// Writing or shutting down the destination failed (that side is gone).
    Write(io::Error),
}

enum Flow {
    /// Everything possible was done; the kernel will wake us.
    Blocked,
    /// The fairness budget ran out with more to do.
    Again,
}

struct Loop<'a> {
    poll: Poll,
    /// Lookup threads report `(tunnel, result)` here and wake the loop.
    lookups: (Sender<LookupResult>, Receiver<LookupResult>),
    waker: Arc<Waker>,
    tunnels: Vec<Tunnel>,
    pairs: Vec<Option<Pair>>,
    free_slots: Vec<usize>,
    live: usize,
    connecting: usize,
    pool: Pool,
    pipes: Pipes,
    opts: &'a Options,
    ctx: &'a Serve,
    next_id: u64,
    /// Tokens to drive again before sleeping (the fairness budget ran out).
    again: Vec<Token>,
    /// This turn's work: the events' tokens with what they said, then `again`'s.
    ready: Vec<(Token, Ready)>,
    paused_until: Option<Instant>,
    pauses_unreported: bool,
    pause_log: RateLimit,
    misc_log: RateLimit,
    next_sweep: Instant,
}

impl<'a> Loop<'a> {
    fn new(
        tunnels: Vec<(TcpListener, Forward)>,
        opts: &'a Options,
        ctx: &'a Serve,
    ) -> Result<Self> {
        let poll = Poll::new().context("create epoll instance")?;
        let mut ts = Vec::with_capacity(tunnels.len());
        for (i, (listener, fwd)) in tunnels.into_iter().enumerate() {
            let local = listener.local_addr().context("read local address")?;
            listener
                .set_nonblocking(true)
                .with_context(|| format!("make {local} nonblocking"))?;
            let mut listener = MioListener::from_std(listener);
            poll.registry()
                .register(&mut listener, Token(i), Interest::READABLE)
                .with_context(|| format!("register {local} with epoll"))?;
            ts.push(Tunnel {
                listener,
                local,
                fwd,
                target: None,
                lookup: Lookup::Idle { failed: None },
                waiting: Vec::new(),
                spare: None,
            });
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("create epoll waker")?);
        let mut lp = Loop {
            poll,
            lookups: mpsc::channel(),
            waker,
            tunnels: ts,
            pairs: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            connecting: 0,
            pool: Pool { free: Vec::new() },
            pipes: Pipes::default(),
            opts,
            ctx,
            next_id: 0,
            again: Vec::new(),
            ready: Vec::new(),
            paused_until: None,
            pauses_unreported: false,
            pause_log: RateLimit::new(Duration::from_secs(1)),
            misc_log: RateLimit::new(Duration::from_secs(1)),
            next_sweep: Instant::now(),
        };
        // Look every target up now, in the background, so a name error shows at start; not
        // fatal (the target may come up later, in Docker its name may not exist yet).
        for i in 0..lp.tunnels.len() {
            let _ = lp.target_addr(i);
        }
        Ok(lp)
    }

    fn emit(&self, ev: Event) {
        if let Some(p) = &self.opts.printer {
            ev.clone().emit_to(p);
        }
        self.ctx.sink.emit(ev);
    }

    fn run(&mut self) -> Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.ctx.stop.is_stopped() {
                return Ok(());
            }
            let now = Instant::now();
            let timeout = if self.again.is_empty() {
                let mut wake = self.next_sweep;
                if let Some(t) = self.paused_until {
                    wake = wake.min(t);
                }
                wake.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            // A server that can be stopped wakes at least every STOP_POLL to look at its flag.
            let timeout = if self.ctx.stop.can_stop() {
                timeout.min(labnet::sock::STOP_POLL)
            } else {
                timeout
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("wait for events (epoll_wait)"),
            }
            let mut ready = std::mem::take(&mut self.ready);
            ready.extend(events.iter().map(|e| (e.token(), Ready::of(e))));
            // Driven again with nothing new: what their sockets said is still in their halves.
            ready.extend(self.again.drain(..).map(|t| (t, Ready::default())));
            for (token, r) in ready.drain(..) {
                self.dispatch(token, r);
            }
            self.ready = ready;
            let now = Instant::now();
            if self.paused_until.is_some_and(|t| now >= t) {
                self.resume();
            }
            if now >= self.next_sweep {
                self.sweep(now);
                self.next_sweep = now + self.sweep_interval();
            }
        }
    }

    fn sweep_interval(&self) -> Duration {
        // Connect deadlines need a fine tick; idle timeouts only a tenth of their length.
        let idle = self
            .opts
            .idle_timeout
            .map_or(Duration::from_secs(1), |t| t / 10);
        let waiting = self.tunnels.iter().any(|t| !t.waiting.is_empty());
        let tick = if self.connecting > 0 || waiting {
            Duration::from_millis(50)
        } else {
            idle.min(Duration::from_secs(1))
        };
        tick.max(Duration::from_millis(20))
    }

    fn dispatch(&mut self, token: Token, r: Ready) {
        if token == WAKER {
            self.lookups_done();
        } else if token.0 < FIRST_PAIR {
            if token.0 < self.tunnels.len() {
                self.accept(token.0);
            }
        } else {
            let side = if (token.0 - FIRST_PAIR) % 2 == 0 {
                Side::Client
            } else {
                Side::Server
            };
            self.drive((token.0 - FIRST_PAIR) / 2, side, r);
        }
    }

    /// The target address of tunnel `i`, once known. An address literal is known at once; a
    /// name is looked up on a thread of its own (started here when none runs, at most once a
    /// second after a failure), and until it answers this returns `None`.
    fn target_addr(&mut self, i: usize) -> Option<SocketAddr> {
        let t = &mut self.tunnels[i];
        if let Some(a) = t.target {
            return Some(a);
        }
        if let Ok(ip) = t.fwd.host.parse::<std::net::IpAddr>() {
            let a = SocketAddr::new(ip, t.fwd.port);
            t.target = Some(a);
            return Some(a);
        }
        match t.lookup {
            Lookup::Running => return None,
            Lookup::Idle { failed: Some(at) } if at.elapsed() < Duration::from_secs(1) => {
                return None;
            }
            Lookup::Idle { .. } => {}
        }
        let (host, port) = (t.fwd.host.clone(), t.fwd.port);
        let tx = self.lookups.0.clone();
        let waker = Arc::clone(&self.waker);
        let spawned = std::thread::Builder::new()
            .name(format!("lookup-{i}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                let result = labnet::args::resolve(&host, port, false)
                    .map_err(|e| io::Error::new(ErrorKind::NotFound, e.to_string()));
                let _ = tx.send((i, result));
                let _ = waker.wake();
            });
        match spawned {
            Ok(_) => self.tunnels[i].lookup = Lookup::Running,
            Err(e) => {
                self.tunnels[i].lookup = Lookup::Idle {
                    failed: Some(Instant::now()),
                };
                self.warn_limited(format!(
                    "cannot start a thread to look up {}: {e}",
                    self.tunnels[i].fwd.host
                ));
            }
        }
        None
    }

    /// Lookup threads have answered: keep the address and connect the clients that waited, or
    /// log the failure and close them.
    fn lookups_done(&mut self) {
        while let Ok((i, result)) = self.lookups.1.try_recv() {
            let waiting = std::mem::take(&mut self.tunnels[i].waiting);
            match result {
                Ok(addr) => {
                    self.tunnels[i].target = Some(addr);
                    self.tunnels[i].lookup = Lookup::Idle { failed: None };
                    for w in waiting {
                        self.open(i, w.client, w.peer, Some(addr), None);
                    }
                }
                Err(e) => {
                    self.tunnels[i].lookup = Lookup::Idle {
                        failed: Some(Instant::now()),
                    };
                    let msg = e.to_string();
                    self.emit(
                        Event::new(Level::Warn, msg.clone())
                            .field("event", "resolve_failed")
                            .field("target", self.tunnels[i].fwd.target()),
                    );
                    for w in waiting {
                        self.refuse(i, w.client, w.peer, &msg);
                    }
                }
            }
        }
    }

    /// Closes a client whose target could not be reached before any pair existed.
    fn refuse(&mut self, tunnel: usize, client: TcpStream, peer: SocketAddr, why: &str) {
        drop(client);
        self.next_id += 1;
        let id = self.next_id;
        let local = self.tunnels[tunnel].local;
        let target = self.tunnels[tunnel].fwd.target();
        self.emit(
            Event::new(
                Level::Error,
                format!(
                    "#{id} {peer} on {local}: connect to {target} failed: {why}; client closed"
                ),
            )
            .field("event", "connect_failed")
            .field("id", id)
            .field("peer", peer.to_string()),
        );
    }

    fn accept(&mut self, i: usize) {
        if self.paused_until.is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            // The outbound socket first (see `Tunnel::spare`).
            let target = self.target_addr(i);
            if let Some(addr) = target {
                if self.tunnels[i].spare.is_none() {
                    match outbound_socket(addr) {
                        Ok(s) => self.tunnels[i].spare = Some(s),
                        Err(e) if is_fd_exhaustion(&e) => return self.pause(i, &e),
                        Err(e) => self.warn_limited(format!("socket for {addr}: {e}")),
                    }
                }
            }
            match self.tunnels[i].listener.accept() {
                Ok((client, peer)) => {
                    if self.pauses_unreported {
                        self.pauses_unreported = false;
                        let skipped = self.pause_log.take_skipped();
                        self.emit(
                            Event::new(
                                Level::Info,
                                format!(
                                    "accepting again on {} ({} connections open; {skipped} \
                                     more descriptor-limit messages not logged)",
                                    self.tunnels[i].local, self.live
                                ),
                            )
                            .field("event", "accept_resumed"),
                        );
                    }
                    if target.is_none() {
                        self.wait_for_lookup(i, client, peer);
                        continue;
                    }
                    let spare = self.tunnels[i].spare.take();
                    self.open(i, client, peer, target, spare);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if is_fd_exhaustion(&e) => return self.pause(i, &e),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    let local = self.tunnels[i].local;
                    self.warn_limited(format!("accept on {local}: {}", describe(&e)));
                    return;
                }
            }
        }
        // More may be queued: come back after the others had their turn.
        self.again.push(Token(i));
    }

    /// A client of a tunnel whose target is not known yet: it waits for the lookup (started
    /// if none runs), or is closed at once when the last lookup failed less than a second ago.
    fn wait_for_lookup(&mut self, i: usize, client: TcpStream, peer: SocketAddr) {
        let peer = labnet::sock::unmap(peer);
        if matches!(self.tunnels[i].lookup, Lookup::Running)
            && self.tunnels[i].waiting.len() < MAX_WAITING
        {
            self.tunnels[i].waiting.push(Waiting {
                client,
                peer,
                since: Instant::now(),
            });
            return;
        }
        let why = format!(
            "cannot resolve {} (retrying at most once a second)",
            self.tunnels[i].fwd.host
        );
        self.refuse(i, client, peer, &why);
    }

    fn warn_limited(&mut self, msg: String) {
        if self.misc_log.allow() {
            let skipped = self.misc_log.take_skipped();
            let msg = if skipped > 0 {
                format!("{msg} ({skipped} more warnings not logged)")
            } else {
                msg
            };
            self.emit(Event::new(Level::Warn, msg).field("event", "warning"));
        }
    }

    /// Out of descriptors: take every listener out of epoll for [`FD_PAUSE`]. Accepting again at
    /// once would fail the same way and spin a CPU; the clients wait in the kernel's queue.
    fn pause(&mut self, i: usize, e: &io::Error) {
        self.paused_until = Some(Instant::now() + FD_PAUSE);
        self.pauses_unreported = true;
        // Spare pipes hold descriptors that connections need more.
        self.pipes.clear();
        for t in &mut self.tunnels {
            let _ = self.poll.registry().deregister(&mut t.listener);
        }
        if self.pause_log.allow() {
            let skipped = self.pause_log.take_skipped();
            let msg = format!(
                "accept on {}: {}: {} connections open, not accepting for {} ms \
                 ({skipped} more not logged)",
                self.tunnels[i].local,
                describe(e),
                self.live,
                FD_PAUSE.as_millis()
            );
            self.emit(Event::new(Level::Warn, msg).field("event", "accept_backoff"));
        }
    }

    fn resume(&mut self) {
        self.paused_until = None;
        for (i, t) in self.tunnels.iter_mut().enumerate() {
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut t.listener, Token(i), Interest::READABLE)
            {
                self.ctx
                    .sink
                    .error(format!("register {} with epoll: {e}", t.local));
            }
            // Connections queued while we rested raise no new edge: look now.
            self.again.push(Token(i));
        }
    }

    fn open(
        &mut self,
        tunnel: usize,
        client: TcpStream,
        peer: SocketAddr,
        target: Option<SocketAddr>,
        spare: Option<Socket>,
    ) {
        self.next_id += 1;
        let id = self.next_id;
        let peer = labnet::sock::unmap(peer);
        let local = self.tunnels[tunnel].local;
        let shown_target = self.tunnels[tunnel].fwd.target();
        // Interactive traffic (a typed line, an echo) goes out at once instead of waiting for
        // Nagle's algorithm (RFC 896) to fill a segment: the tunnel adds no delay of its own.
        let _ = client.set_nodelay(true);
        // Urgent data (MSG_OOB) is read in line, so the bytes are passed on exactly as sent;
        // out of line, `read` would skip the urgent byte.
        let _ = SockRef::from(&client).set_out_of_band_inline(true);
        let started = Instant::now();
        let connected = match (target, spare) {
            (Some(addr), Some(sock)) => start_connect(sock, addr).map(|s| (addr, s)),
            (Some(addr), None) => outbound_socket(addr)
                .and_then(|sock| start_connect(sock, addr))
                .map(|s| (addr, s)),
            (None, _) => Err(io::Error::new(
                ErrorKind::NotFound,
                format!("cannot resolve {}", self.tunnels[tunnel].fwd.host),
            )),
        };
        let (addr, server) = match connected {
            Ok(x) => x,
            Err(e) => {
                drop(client);
                let msg = format!(
                    "{peer} on {local}: connect to {shown_target} failed: {}; client closed",
                    describe(&e)
                );
                self.emit(
                    Event::new(Level::Error, format!("#{id} {msg}"))
                        .field("event", "connect_failed")
                        .field("id", id)
                        .field("peer", peer.to_string()),
                );
                return;
            }
        };
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.pairs.push(None);
                self.pairs.len() - 1
            }
        };
        let mut pair = Pair {
            id,
            tunnel,
            client,
            server,
            peer,
            target: addr,
            started,
            last: started,
            connect_deadline: Some(started + self.opts.connect_timeout),
            up: Half::new(),
            down: Half::new(),
            first_close: None,
        };
        // PRIORITY: urgent data must be seen (see `pump`).
        let both = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        let reg = self.poll.registry();
        let registered = reg
            .register(&mut pair.client, Token(FIRST_PAIR + 2 * slot), both)
            .and_then(|()| reg.register(&mut pair.server, Token(FIRST_PAIR + 2 * slot + 1), both));
        if let Err(e) = registered {
            self.free_slots.push(slot);
            self.warn_limited(format!("#{id} register with epoll: {e}; connection closed"));
            return;
        }
        self.emit(pair.event(
            Level::Info,
            "accept",
            format!("accepted {peer} on {local}, connecting to {shown_target} ({addr})"),
        ));
        self.pairs[slot] = Some(pair);
        self.live += 1;
        self.connecting += 1;
        // Loopback connects often complete before we look; the edge is already queued anyway.
    }

    fn pools(&mut self) -> (&mut Pool, &mut Pipes) {
        (&mut self.pool, &mut self.pipes)
    }

    /// Moves whatever can move in pair `slot`, after noting what the event of its `side`'s
    /// socket said.
    fn drive(&mut self, slot: usize, side: Side, r: Ready) {
        let Some(mut pair) = self.pairs.get_mut(slot).and_then(Option::take) else {
            return;
        };
        match side {
            Side::Client => {
                pair.up.source_event(r);
                pair.down.destination_event(r);
            }
            Side::Server => {
                pair.down.source_event(r);
                pair.up.destination_event(r);
            }
        }
        if pair.connect_deadline.is_some() {
            match connect_state(&pair.server) {
                Connect::Pending => {
                    // Take what the client already sent (up to one buffer), and notice a reset.
                    if let Err(e) = read_early(&pair.client, &mut pair.up, self.pools()) {
                        return self.reset(slot, pair, Side::Client, &e);
                    }
                    // With bytes already buffered `read_early` does not read, so a reset that
                    // arrived after them shows only in SO_ERROR.
                    if let Ok(Some(e)) = pair.client.take_error() {
                        return self.reset(slot, pair, Side::Client, &e);
                    }
                    if pair.up.eof && pair.first_close.is_none() {
                        pair.first_close = Some(Side::Client);
                    }
                    self.pairs[slot] = Some(pair);
                    return;
                }
                Connect::Failed(e) => return self.fail_connect(slot, pair, &e),
                Connect::Done => {
                    pair.connect_deadline = None;
                    self.connecting -= 1;
                    let _ = pair.server.set_nodelay(true);
                    let local = pair
                        .server
                        .local_addr()
                        .map_or_else(|_| "?".into(), |a| a.to_string());
                    let listen = self.tunnels[pair.tunnel].local;
                    let msg = format!(
                        "connected: {} → {listen} | {local} → {} ({:.3} ms)",
                        pair.peer,
                        pair.target,
                        pair.started.elapsed().as_secs_f64() * 1000.0
                    );
                    self.emit(pair.event(Level::Info, "connect", msg));
                }
            }
        }
        let before = (pair.up.bytes, pair.down.bytes, pair.up.shut, pair.down.shut);
        let flow_up = match pump(&pair.client, &pair.server, &mut pair.up, self.pools()) {
            Ok(f) => f,
            Err(Fault::Read(e)) => return self.reset(slot, pair, Side::Client, &e),
            Err(Fault::Write(e)) => return self.reset(slot, pair, Side::Server, &e),
        };
        let flow_down = match pump(&pair.server, &pair.client, &mut pair.down, self.pools()) {
            Ok(f) => f,
            Err(Fault::Read(e)) => return self.reset(slot, pair, Side::Server, &e),
            Err(Fault::Write(e)) => return self.reset(slot, pair, Side::Client, &e),
        };
        if (pair.up.bytes, pair.down.bytes) != (before.0, before.1) {
            pair.last = Instant::now();
        }
        if pair.up.shut && !before.2 {
            pair.first_close.get_or_insert(Side::Client);
            let msg = format!(
                "c→s half-close: client sent FIN after {} bytes, passed on with shutdown(Write) \
                 to the server",
                pair.up.bytes
            );
            self.emit(
                pair.event(Level::Info, "half_close", msg)
                    .field("dir", "c→s"),
            );
        }
        if pair.down.shut && !before.3 {
            pair.first_close.get_or_insert(Side::Server);
            let msg = format!(
                "s→c half-close: server sent FIN after {} bytes, passed on with shutdown(Write) \
                 to the client",
                pair.down.bytes
            );
            self.emit(
                pair.event(Level::Info, "half_close", msg)
                    .field("dir", "s→c"),
            );
        }
        if pair.up.shut && pair.down.shut {
            return self.finish(slot, pair);
        }
        if matches!(flow_up, Flow::Again) || matches!(flow_down, Flow::Again) {
            self.again.push(Token(FIRST_PAIR + 2 * slot));
        }
        self.pairs[slot] = Some(pair);
    }

    fn release(&mut self, slot: usize, mut pair: Pair) {
        if pair.connect_deadline.is_some() {
            self.connecting -= 1;
        }
        pair.up.release_all(&mut self.pool, &mut self.pipes);
        pair.down.release_all(&mut self.pool, &mut self.pipes);
        // Closing a descriptor removes it from epoll; explicit deregistration is one syscall
        // more for the same effect. Dropping `pair` closes both sockets.
        drop(pair);
        self.live -= 1;
        self.free_slots.push(slot);
        if self.live == 0 {
            self.pipes.clear();
        }
    }

    /// Both directions ended with FIN: the normal end of a pair.
    fn finish(&mut self, slot: usize, pair: Pair) {
        let who = pair.first_close.unwrap_or(Side::Client).name();
        let msg = format!("closed: {}, {who} closed first", pair.totals());
        self.emit(
            pair.event(Level::Info, "close", msg)
                .field("closed_by", who),
        );
        self.release(slot, pair);
    }

    /// One side reset (or vanished): reset the other side too, so its peer learns at once.
    fn reset(&mut self, slot: usize, pair: Pair, broken: Side, e: &io::Error) {
        let other = match broken {
            Side::Client => &pair.server,
            Side::Server => &pair.client,
        };
        // SO_LINGER with a zero timeout makes close() send RST instead of FIN (and drop unsent
        // data): the other peer gets ECONNRESET, as if it had talked to the broken side.
        let _ = SockRef::from(other).set_linger(Some(Duration::ZERO));
        let msg = format!(
            "reset by {} ({}): {} side reset too; {}",
            broken.name(),
            describe(e),
            match broken {
                Side::Client => "server",
                Side::Server => "client",
            },
            pair.totals()
        );
        self.emit(
            pair.event(Level::Warn, "reset", msg)
                .field("closed_by", broken.name()),
        );
        self.release(slot, pair);
    }

    fn fail_connect(&mut self, slot: usize, pair: Pair, e: &io::Error) {
        let msg = format!(
            "connect to {} ({}) failed after {:.3} s: {}; client {} closed",
            self.tunnels[pair.tunnel].fwd.target(),
            pair.target,
            pair.started.elapsed().as_secs_f64(),
            describe(e),
            pair.peer
        );
        self.emit(pair.event(Level::Error, "connect_failed", msg));
        self.release(slot, pair);
    }

    /// Connect deadlines (lookups included) and idle timeouts; spare pipes nobody took.
    fn sweep(&mut self, now: Instant) {
        self.pipes.trim();
        let limit = self.opts.connect_timeout;
        for i in 0..self.tunnels.len() {
            if self.tunnels[i].waiting.is_empty() {
                continue;
            }
            let (late, on_time): (Vec<Waiting>, Vec<Waiting>) =
                std::mem::take(&mut self.tunnels[i].waiting)
                    .into_iter()
                    .partition(|w| now.duration_since(w.since) >= limit);
            self.tunnels[i].waiting = on_time;
            let why = format!(
                "the lookup of {} did not finish within {} s",
                self.tunnels[i].fwd.host,
                limit.as_secs_f64()
            );
            for w in late {
                self.refuse(i, w.client, w.peer, &why);
            }
        }
        for slot in 0..self.pairs.len() {
            let Some(p) = &self.pairs[slot] else { continue };
            if let Some(deadline) = p.connect_deadline {
                if now >= deadline {
                    if let Some(pair) = self.pairs[slot].take() {
                        let e = io::Error::new(
                            ErrorKind::TimedOut,
                            format!(
                                "no answer within {} s",
                                self.opts.connect_timeout.as_secs_f64()
                            ),
                        );
                        self.fail_connect(slot, pair, &e);
                    }
                }
                continue;
            }
            let Some(idle) = self.opts.idle_timeout else {
                continue;
            };
            if now.duration_since(p.last) >= idle {
                if let Some(pair) = self.pairs[slot].take() {
                    // We close first, gracefully: both peers get a FIN.
                    let _ = pair.client.shutdown(Shutdown::Both);
                    let _ = pair.server.shutdown(Shutdown::Both);
                    let msg = format!(
                        "idle for {} s: closed both connections; {}",
                        idle.as_secs_f64(),
                        pair.totals()
                    );
                    self.emit(
                        pair.event(Level::Info, "idle_close", msg)
                            .field("closed_by", "tunnel"),
                    );
                    self.release(slot, pair);
                }
            }
        }
    }
}

/// Moves bytes `src → dst` until the kernel blocks either side (or the last event said it
/// would), the source ends, or the budget runs out.
///
/// Edge-triggered readiness demands reading until the source is proven empty, and there are two
/// proofs: a read that returns `WouldBlock`, and on the copy path a read that returns less than
/// the buffer. A TCP `read` returns less than asked only when the receive queue has nothing more
/// to give, and bytes that arrive after it raise a new edge; trusting it saves a system call
/// per message (the `read` that would only say `WouldBlock`). Three cases make a short
/// read stop early with more to come, and each is known from the socket's event: the FIN (a
/// `read` of 0 is due next; epoll reports it with EPOLLRDHUP, `closing`), an error (EPOLLERR,
/// `closing`), and TCP urgent data (the read stops at the urgent mark; EPOLLPRI, `urgent`).
///
/// Urgent data also keeps this turn on the copy path: `splice` never reads past the urgent mark
/// (`tcp_read_sock` stops there and reports `EAGAIN`), which would stall the direction for good.
fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    h: &mut Half,
    (pool, pipes): (&mut Pool, &mut Pipes),
) -> Result<Flow, Fault> {
    // SPLICE_F_NONBLOCK makes the pipe side nonblocking (the sockets already are); MOVE asks to
    // move pages rather than copy them (a hint).
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut reads = 0;
    let mut taken = 0;
    let flow = loop {
        // First flush what is in flight: a full buffer or a non-empty pipe is the backpressure
        // point, nothing more is read from `src` until `dst` took it.
        if h.start < h.end {
            let Some(buf) = h.buf.as_deref() else {
                break Flow::Blocked;
            };
            if !h.writable {
                break Flow::Blocked;
            }
            match (&*dst).write(&buf[h.start..h.end]) {
                Ok(0) => return Err(Fault::Write(ErrorKind::WriteZero.into())),
                Ok(n) => {
                    h.start += n;
                    h.bytes += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    h.writable = false;
                    break Flow::Blocked;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Write(e)),
            }
            continue;
        }
        if h.piped > 0 {
            let Some(p) = h.pipe.as_ref() else {
                break Flow::Blocked;
            };
            if !h.writable {
                break Flow::Blocked;
            }
            match splice(&p.r, None, dst, None, h.piped, flags) {
                Ok(0) => return Err(Fault::Write(ErrorKind::WriteZero.into())),
                Ok(n) => {
                    h.piped -= n;
                    h.bytes += n as u64;
                }
                Err(Errno::EAGAIN) => {
                    h.writable = false;
                    break Flow::Blocked;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Fault::Write(e.into())),
            }
            continue;
        }
        if h.eof {
            if !h.shut {
                // Pass the FIN on; the other direction keeps flowing (a half-close, RFC 9293
                // §3.6: a side that closed may still receive).
                dst.shutdown(Shutdown::Write).map_err(Fault::Write)?;
                h.shut = true;
            }
            break Flow::Blocked;
        }
        if !h.readable {
            break Flow::Blocked;
        }
        if reads == READS_PER_TURN || taken >= BYTES_PER_TURN {
            break Flow::Again;
        }
        reads += 1;
        if h.bulk && !h.urgent && h.pipe.is_none() {
            // Without a pipe (out of descriptors) the copy path does the job.
            h.pipe = pipes.get().ok();
        }
        match h.pipe.as_ref() {
            Some(p) if h.bulk && !h.urgent => {
                // The pipe is empty here, so this waits only on the socket: EAGAIN = no data.
                match splice(src, None, &p.w, None, p.cap, flags) {
                    Ok(0) => h.eof = true,
                    Ok(n) => {
                        h.piped = n;
                        taken += n;
                    }
                    Err(Errno::EAGAIN) => {
                        h.readable = false;
                        // A turn that moved less than the copy buffer holds: small messages
                        // again, back to the copy path.
                        if taken > 0 && taken < BUF_SIZE {
                            h.bulk = false;
                        }
                        break Flow::Blocked;
                    }
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(Fault::Read(e.into())),
                }
            }
            _ => {
                let buf = h.buf.get_or_insert_with(|| pool.get());
                match (&*src).read(buf) {
                    Ok(0) => h.eof = true,
                    Ok(n) => {
                        h.start = 0;
                        h.end = n;
                        taken += n;
                        if n == buf.len() {
                            // More is probably queued: bulk from the next read on.
                            h.bulk = true;
                        } else if !h.closing && !h.urgent {
                            // Short: the receive queue is empty (see above).
                            h.readable = false;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        h.readable = false;
                        h.urgent = false;
                        break Flow::Blocked;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(Fault::Read(e)),
                }
            }
        }
    };
    h.release_if_empty(pool, pipes);
    Ok(flow)
}

/// While the outbound connect is pending: fill the c→s buffer once, if it is empty. This stays
/// on the copy path: at most one buffer, once per connection.
fn read_early(
    src: &TcpStream,
    h: &mut Half,
    (pool, pipes): (&mut Pool, &mut Pipes),
) -> io::Result<()> {
    if h.start < h.end || h.piped > 0 || h.eof || !h.readable {
        return Ok(());
    }
    let buf = h.buf.get_or_insert_with(|| pool.get());
    let r = match (&*src).read(buf) {
        Ok(0) => {
            h.eof = true;
            Ok(())
        }
        Ok(n) => {
            h.start = 0;
            h.end = n;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            h.readable = false;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    };
    h.release_if_empty(pool, pipes);
    r
}

enum Connect {
    Pending,
    Done,
    Failed(io::Error),
}

/// The state of a nonblocking connect: SO_ERROR holds its failure; `getpeername` succeeds once
/// it is established.
fn connect_state(s: &TcpStream) -> Connect {
    match s.take_error() {
        Ok(Some(e)) | Err(e) => return Connect::Failed(e),
        Ok(None) => {}
    }
    match s.peer_addr() {
        Ok(_) => Connect::Done,
        // EINPROGRESS (115) or ENOTCONN: not yet.
        Err(e) if e.kind() == ErrorKind::NotConnected || e.raw_os_error() == Some(115) => {
            Connect::Pending
        }
        Err(e) => Connect::Failed(e),
    }
}

/// A nonblocking TCP socket for a connection to `addr`, not connected yet.
fn outbound_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    s.set_out_of_band_inline(true)?;
    Ok(s)
}

/// Starts a nonblocking connect; EINPROGRESS is the normal answer, the result comes as a
/// writable (or error) event.
fn start_connect(sock: Socket, addr: SocketAddr) -> io::Result<TcpStream> {
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) || e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_pool_reuses_bounds_and_trims_pipes() {
        let mut p = Pipes::default();
        let a = p.get().unwrap();
        // F_SETPIPE_SZ may be refused (pipe-user-pages-soft); the pipe then has its own size.
        assert!(a.cap >= 4096, "{}", a.cap);
        p.put(a);
        let again = p.get().unwrap();
        assert!(
            p.free.is_empty(),
            "the spare was reused, not a new pipe made"
        );
        p.put(again);
        let many: Vec<_> = (0..PIPES_KEEP + 3).map(|_| p.get().unwrap()).collect();
        for x in many {
            p.put(x);
        }
        assert_eq!(p.free.len(), PIPES_KEEP);
        p.trim();
        assert_eq!(p.unused, PIPES_KEEP, "a sweep starts counting from here");
        // Taken down to 2 spares since the last sweep: the next sweep closes those 2.
        let busy: Vec<_> = (0..PIPES_KEEP - 2).map(|_| p.get().unwrap()).collect();
        for x in busy {
            p.put(x);
        }
        p.trim();
        assert_eq!(p.free.len(), PIPES_KEEP - 2);
        // Untouched for a whole interval: all closed.
        p.trim();
        assert!(p.free.is_empty());
    }

    #[test]
    fn pool_reuses_and_bounds_buffers() {
        let mut p = Pool { free: Vec::new() };
        let b = p.get();
        assert_eq!(b.len(), BUF_SIZE);
        p.put(b);
        assert_eq!(p.free.len(), 1);
        let _again = p.get();
        assert!(p.free.is_empty());
        for _ in 0..POOL_KEEP + 5 {
            p.put(vec![0u8; 1].into_boxed_slice());
        }
        assert_eq!(p.free.len(), POOL_KEEP);
    }
}
