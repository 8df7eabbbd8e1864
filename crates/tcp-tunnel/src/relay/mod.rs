//! The tunnel's event loop: every listener and every connection on one `mio` poll (Linux epoll,
//! edge triggered), moved by one thread. This is the default relay, built for many connections
//! and speed; `threaded.rs` shows the same forwarding with two threads per connection.
//!
//! The relay is in three parts:
//! - this file: the loop, the listeners, each pair's life (accept, nonblocking connect,
//!   half-closes, reset, idle sweep) and every log line;
//! - [`pump`](mod@pump): how one direction's bytes move, and when a direction has nothing more to do;
//! - [`pool`]: the buffers and pipes a direction borrows while bytes are in flight.
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
//! to the **splice path** (see [`pool::Pipe`]): the bytes move between the sockets inside the
//! kernel, never copied through this process. A turn of the splice path that moves less than one
//! buffer switches back. docs/benchmarks.md measures both paths against other relays (round trip
//! of a 1-byte ping-pong, iperf3 throughput).
//!
//! Details that matter for correctness, each commented where it happens: readiness is edge
//! triggered, so every read and write loops until `WouldBlock`; a direction whose pipe or buffer
//! still holds bytes stops reading its source (backpressure: a slow target makes the client's sends
//! block in the client's kernel, never our memory grow); `connect` is nonblocking with its own
//! timeout; a target given by name is looked up on a thread of its own, never on the loop (a
//! resolver that does not answer would freeze every tunnel), and the clients that arrive meanwhile
//! wait for it within the connect timeout; TCP_NODELAY on both sides so small messages are not
//! held back by Nagle's algorithm; idle connections are swept; and when `accept` runs out of file
//! descriptors (EMFILE) the listeners are taken out of the loop for a moment instead of spinning
//! on the error.

mod pool;
mod pump;

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener};
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
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::Forward;

use pool::{Pipes, Pool};
use pump::{Fault, Flow, Half, Ready, pump, read_early};

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
            pool: Pool::default(),
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
