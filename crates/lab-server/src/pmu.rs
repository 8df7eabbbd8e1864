//! TP3 part 2: the PMU over TCP (port 5003, dual stack).
//!
//! One named thread per session, with a small stack (the session holds a 66-byte command buffer
//! and a reference to the shared flood text), so a thousand concurrent PDCs cost a few hundred
//! MiB of *reserved* address space and far less resident memory. The protocol itself is
//! [`labnet::pmu`]; this module adds what a server needs around it: timeouts, n, logging, and a
//! close that does not destroy the reply.

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labnet::log::{Event, Level, Sink};
use labnet::pmu::Outcome;
use labnet::sock::{AcceptLoop, Deadline, Serve};
use labnet::wire::pmu::flood_text;
use labnet::{Context, Result};
use rand::Rng;

use crate::{Config, SharedRng, with_rng};

/// Stack of a session thread: the session needs a few KiB; 128 KiB leaves a wide margin.
pub const SESSION_STACK: usize = 128 * 1024;
/// How long a write may block: a PDC that stops reading mid-flood is dropped after this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After replying, how long the server keeps reading (and discarding) what the client still sends.
pub const LINGER: Duration = Duration::from_secs(1);

/// What every PMU session needs.
#[derive(Debug)]
pub struct Options {
    /// Fixed n, or random 5–15 per session.
    pub messages: Option<u32>,
    /// The `CMD_floodme` reply.
    pub flood: Vec<u8>,
    /// Deadline for the command.
    pub command_timeout: Duration,
    /// Sessions served at once.
    pub max_clients: usize,
}

impl Options {
    /// From the command line.
    pub fn from_config(c: &Config) -> Self {
        Options {
            messages: c.messages,
            flood: flood_text(c.flood_bytes),
            command_timeout: c.command_timeout,
            max_clients: c.max_clients,
        }
    }
}

/// n for one session: `--messages`, or uniform in 5..=15 as the handout's PMU ("the PDC does not
/// know the value of n a priori").
pub fn pick_n(messages: Option<u32>, rng: &SharedRng) -> u32 {
    messages.unwrap_or_else(|| with_rng(rng, |r| r.random_range(5..=15)))
}

/// Accepts PDCs until `ctx.stop` (forever for the binary), one thread per session, through the
/// kit's accept loop ([`AcceptLoop`]: back-off at the descriptor limit, thread-start retries, the
/// connection cap). Sessions log to `ctx.sink`; a session running at the stop finishes.
pub fn serve(listener: TcpListener, opts: Arc<Options>, rng: SharedRng, ctx: &Serve) -> Result<()> {
    let sink = ctx.sink.clone();
    let why = format!("server busy ({} sessions)", opts.max_clients);
    AcceptLoop::new("PMU")
        .thread_prefix("pmu")
        .stack_size(SESSION_STACK)
        .max_clients(opts.max_clients)
        .refusal(format!("ERROR: {why}\n"))
        .sink(ctx.sink.clone())
        .stop(ctx.stop.clone())
        .run(&listener, move |c| {
            let n = pick_n(opts.messages, &rng);
            session(c.stream, c.peer, c.id, n, &opts, &sink);
        })
        .context("PMU: read the listening address")
}

/// One PDC: read the command (bounded by the timeout), reply, close, log.
fn session(mut stream: TcpStream, peer: SocketAddr, id: u64, n: u32, opts: &Options, sink: &Sink) {
    let started = Instant::now();
    let outcome = prepare(&stream, opts.command_timeout).and_then(|()| {
        // The command must be complete by the deadline however its bytes are spaced (a PDC
        // trickling one byte per read timeout would otherwise hold the thread 10 times longer).
        let mut timed = Deadline::new(&stream, opts.command_timeout);
        labnet::pmu::serve_corked(&mut timed, &stream, n, &opts.flood).context("PMU session")
    });
    let (level, what, bytes) = match &outcome {
        Ok(o @ (Outcome::Short { bytes, .. } | Outcome::Flood { bytes })) => {
            (Level::Info, o.describe(), *bytes)
        }
        Ok(o @ Outcome::ClientGone { sent, .. }) => (Level::Warn, o.describe(), *sent),
        Ok(o) => (Level::Warn, o.describe(), 0),
        Err(e) => (Level::Warn, e.to_string(), 0),
    };
    linger_close(&mut stream);
    sink.emit(
        Event::new(
            level,
            format!(
                "PMU #{id} {peer}: {what} ({:.3} s)",
                started.elapsed().as_secs_f64()
            ),
        )
        .field("service", "pmu")
        .field("session", id)
        .field("peer", peer.to_string())
        .field("bytes", bytes),
    );
}

fn prepare(stream: &TcpStream, command_timeout: Duration) -> Result<()> {
    // A silent client must not hold a thread forever: read() returns EAGAIN after the timeout and
    // labnet::pmu reports it as a silent session.
    stream
        .set_read_timeout(Some(command_timeout))
        .context("set the command timeout")?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .context("set the write timeout")?;
    // Nagle on, as the handout's PMU (a plain Python socket): with d = 1 each message still
    // leaves alone (the previous one was acknowledged long ago), with d = 0 the burst is corked
    // by labnet::pmu, which is what Nagle does across a real network (Q9, Q10).
    labnet::sock::nagle_on(stream).context("clear TCP_NODELAY (Nagle on)")?;
    Ok(())
}

/// Closes so that the reply survives: FIN first, then discard what the client still sends for a
/// moment. Closing a socket with unread input makes Linux send RST instead of FIN (RFC 1122
/// 4.2.2.13), and an RST can make the client lose the `ERROR:` line it has not read yet.
pub fn linger_close(stream: &mut TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let _ = stream.set_read_timeout(Some(LINGER));
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while Instant::now() < deadline && drained < 1 << 20 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(k) => drained += k,
        }
    }
}
