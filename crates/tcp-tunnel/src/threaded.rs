//! Week 3 exercise 3 as the handout builds it: the tunnel with two threads per connection.
//! `tcp-tunnel --threads` runs this file. Start reading here; the default relay (`relay/`) does
//! the same forwarding on one event loop, for speed and for thousands of connections at once.
//!
//! For each client accepted on the listening port:
//! 1. connect to the target: a second TCP connection, from an ephemeral port of the tunnel;
//! 2. copy both directions at once, each on its own thread: `read` from one socket, `write` all
//!    of it to the other. Full duplex needs the two: a thread blocked in `read` on one socket
//!    cannot see bytes arrive on the other;
//! 3. when `read` returns 0 the source sent its FIN: pass it on with `shutdown(Write)` on the
//!    other socket (a half-close) while the other direction goes on as long as it needs;
//! 4. when both directions have ended, close both sockets.
//!
//! A failed `read` or `write` means that side reset (or vanished): the other side is reset too
//! (see [`Conn::reset`]). Accepting goes through the kit's accept loop
//! (`labnet::sock::AcceptLoop`), which survives the descriptor limit and caps the clients.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use labnet::error::describe;
use labnet::log::{Event, Level, Sink};
use labnet::sock::{AcceptLoop, Client, Serve};
use labnet::{Context, Error, Result};
use socket2::SockRef;

use crate::{Forward, Options};

/// Each thread's stack: the copy buffer is on the heap, so a small stack is enough.
const STACK: usize = 64 * 1024;
/// Index 0 is the client side, 1 the server side; the copy from side `i` reads socket `i`.
const SIDE: [&str; 2] = ["client", "server"];
const DIR: [&str; 2] = ["c→s", "s→c"];

/// Where a connection's events go: the server's sink, and the `--log` file if there is one.
struct Out {
    opts: Options,
    sink: Sink,
}

/// Forwards the clients of every `(listener, forward)` pair, one accept thread each, until
/// `ctx.stop` (never, for the binary). A stop ends the accept loops; connections already being
/// forwarded finish on their own threads.
pub fn serve(tunnels: Vec<(TcpListener, Forward)>, opts: Options, ctx: &Serve) -> Result<()> {
    let opts = Arc::new(Out {
        opts,
        sink: ctx.sink.clone(),
    });
    let accept = AcceptLoop::new("tcp-tunnel")
        .thread_prefix("tunnel")
        .stack_size(STACK)
        .sink(ctx.sink.clone())
        .stop(ctx.stop.clone());
    thread::scope(|s| {
        let mut loops = Vec::new();
        for (listener, fwd) in &tunnels {
            let local = listener.local_addr().context("read local address")?;
            let (accept, fwd, opts) = (accept.clone(), fwd.clone(), Arc::clone(&opts));
            let run = move || accept.run(listener, move |c| forward(c, local, &fwd, &opts));
            let builder = thread::Builder::new().name(format!("accept-{}", local.port()));
            loops.push(
                builder
                    .spawn_scoped(s, run)
                    .context("start an accept thread")?,
            );
        }
        // The accept loops end only at a stop, or when one could not start.
        loops.into_iter().try_for_each(|l| match l.join() {
            Ok(ended) => ended.context("read local address"),
            Err(_) => Err(Error::msg("an accept thread panicked")),
        })
    })
}

/// One client's two connections, shared by its two copy threads.
struct Conn {
    id: u64,
    peer: SocketAddr,
    target: SocketAddr,
    started: Instant,
    sockets: [TcpStream; 2],
    bytes: [AtomicU64; 2],
    /// The side whose FIN came first.
    first_fin: OnceLock<usize>,
    /// The side that reset, and how we noticed.
    reset: OnceLock<(usize, io::Error)>,
}

/// Serves one client, on the thread the accept loop started for it.
fn forward(c: Client, local: SocketAddr, fwd: &Forward, opts: &Out) {
    let (id, peer, started) = (c.id, c.peer, Instant::now());
    let event = |level, kind, msg: String| {
        let ev = Event::new(level, format!("#{id} {msg}")).field("event", kind);
        emit(opts, ev.field("id", id).field("peer", peer.to_string()));
    };
    let failed = |why: String| {
        let (to, secs) = (fwd.target(), started.elapsed().as_secs_f64());
        let msg = format!("connect to {to} failed after {secs:.3} s: {why}; client {peer} closed");
        event(Level::Error, "connect_failed", msg);
    };
    // A name is looked up on this client's thread: a resolver that never answers stalls no one
    // else.
    let target = match labnet::args::resolve(&fwd.host, fwd.port, false) {
        Ok(t) => t,
        Err(e) => return failed(e.to_string()),
    };
    let msg = format!(
        "accepted {peer} on {local}, connecting to {} ({target})",
        fwd.target()
    );
    event(Level::Info, "accept", msg);
    let server = match TcpStream::connect_timeout(&target, opts.opts.connect_timeout) {
        Ok(s) => s,
        Err(e) => return failed(describe(&e)),
    };
    let conn = Conn {
        id,
        peer,
        target,
        started,
        sockets: [c.stream, server],
        bytes: Default::default(),
        first_fin: OnceLock::new(),
        reset: OnceLock::new(),
    };
    for s in &conn.sockets {
        // Small messages go out at once, not held back by Nagle's algorithm (RFC 896); urgent
        // data (MSG_OOB) is read in line, so every byte is passed on as it was sent.
        let _ = s.set_nodelay(true);
        let _ = SockRef::from(s).set_out_of_band_inline(true);
    }
    let mine = conn.sockets[1]
        .local_addr()
        .map_or("?".into(), |a| a.to_string());
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let msg = format!("connected: {peer} → {local} | {mine} → {target} ({ms:.3} ms)");
    emit(opts, conn.event(Level::Info, "connect", msg));
    let copied = thread::scope(|s| {
        let s2c = thread::Builder::new()
            .name(format!("tunnel-{id}-s2c"))
            .stack_size(STACK);
        s2c.spawn_scoped(s, || copy(&conn, 1, opts))?;
        copy(&conn, 0, opts);
        Ok::<_, io::Error>(())
    });
    let totals = conn.totals();
    let end = match (copied, conn.reset.get()) {
        (Err(e), _) => {
            let msg = format!("cannot start a thread: {}; connection closed", describe(&e));
            conn.event(Level::Warn, "spawn_failed", msg)
        }
        (Ok(()), None) => {
            let who = SIDE[conn.first_fin.get().copied().unwrap_or(0)];
            let msg = format!("closed: {totals}, {who} closed first");
            conn.event(Level::Info, "close", msg)
                .field("closed_by", who)
        }
        (Ok(()), Some((side, e))) => {
            let (who, other) = (SIDE[*side], SIDE[1 - side]);
            let msg = format!(
                "reset by {who} ({}): {other} side reset too; {totals}",
                describe(e)
            );
            conn.event(Level::Warn, "reset", msg)
                .field("closed_by", who)
        }
    };
    emit(opts, end);
    // Dropping `conn` closes both sockets.
}

/// Copies what side `from` sends to the other side until its FIN, then passes the FIN on.
fn copy(conn: &Conn, from: usize, opts: &Out) {
    let to = 1 - from;
    let (mut src, mut dst) = (&conn.sockets[from], &conn.sockets[to]);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return conn.reset(from, e),
        };
        // `write_all` blocks while the destination's buffers are full: a slow reader slows the
        // sender down (backpressure) instead of making the tunnel hold its bytes.
        if let Err(e) = dst.write_all(&buf[..n]) {
            return conn.reset(to, e);
        }
        conn.bytes[from].fetch_add(n as u64, Relaxed);
    }
    if conn.reset.get().is_some() {
        return; // This read of 0 was the other thread's shutdown (see `Conn::reset`).
    }
    // Pass the FIN on; the other direction keeps flowing (a half-close, RFC 9293 §3.6).
    if let Err(e) = dst.shutdown(Shutdown::Write) {
        return conn.reset(to, e);
    }
    let _ = conn.first_fin.set(from);
    let (dir, n) = (DIR[from], conn.bytes[from].load(Relaxed));
    let msg = format!(
        "{dir} half-close: {} sent FIN after {n} bytes, passed on with shutdown(Write) to the {}",
        SIDE[from], SIDE[to]
    );
    emit(
        opts,
        conn.event(Level::Info, "half_close", msg).field("dir", dir),
    );
}

impl Conn {
    /// Side `side` reset: reset the other side too, once. SO_LINGER 0 makes the close (when
    /// `conn` is dropped) send RST instead of FIN. The other thread may be blocked in `read`:
    /// `shutdown(Read)` wakes it (its `read` returns 0; it sees `reset` set) without sending
    /// anything, where shutting the sending side down would send a FIN before the RST. (A thread
    /// blocked in `write` to a peer that does not read stays blocked until that peer reads or
    /// goes: the limit of blocking I/O that the event loop does not have.)
    fn reset(&self, side: usize, e: io::Error) {
        if self.reset.set((side, e)).is_ok() {
            for s in &self.sockets {
                let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
                let _ = s.shutdown(Shutdown::Read);
            }
        }
    }

    fn totals(&self) -> String {
        let [up, down] = [0, 1].map(|i| self.bytes[i].load(Relaxed));
        let secs = self.started.elapsed().as_secs_f64();
        format!("c→s {up} bytes, s→c {down} bytes, {secs:.3} s")
    }

    /// An event with the fields of every line about this connection.
    fn event(&self, level: Level, kind: &str, msg: String) -> Event {
        Event::new(level, format!("#{} {msg}", self.id))
            .field("event", kind)
            .field("id", self.id)
            .field("peer", self.peer.to_string())
            .field("target", self.target.to_string())
            .field("c2s_bytes", self.bytes[0].load(Relaxed))
            .field("s2c_bytes", self.bytes[1].load(Relaxed))
            .field("duration_s", self.started.elapsed().as_secs_f64())
    }
}

/// To the server's sink, and to the `--log` file if there is one.
fn emit(out: &Out, ev: Event) {
    if let Some(p) = &out.opts.printer {
        ev.clone().emit_to(p);
    }
    out.sink.emit(ev);
}
