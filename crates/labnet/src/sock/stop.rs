//! How a test stops a server it runs in its own process, and what a server's `serve` is handed.
//!
//! The binaries serve until they are killed; a test that runs `serve` on a thread of its own
//! needs it to return, so that the thread can be joined and the next test starts clean (the
//! approach of mini-redis, whose tests call `server::run` with a shutdown signal).
//!
//! A [`Stop`] is a shared flag. A blocking `accept` or `recv_from` does not look at flags, so a
//! server that can be stopped gives its listening socket a receive timeout of [`STOP_POLL`]
//! (`SO_RCVTIMEO`: on Linux `accept` honours it like `recv` does and fails with EAGAIN when it
//! expires) and checks the flag each time the call comes back. That is the simplest correct way
//! with blocking sockets and without `unsafe`: `poll(2)` is not in `std`, and closing or shutting
//! down the listener from another thread does not reliably wake a thread blocked in `accept`.
//! A stop is therefore noticed within about [`STOP_POLL`]. [`Stop::never`], what the binaries
//! pass, sets no timeout at all: their sockets behave exactly as before.

use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::log::Sink;

/// How long a stoppable server blocks in `accept` or `recv_from` before it looks at its
/// [`Stop`] again: the longest a stop waits to be noticed.
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// A stop handle: clones share one flag; [`Stop::stop`] asks every server holding a clone to
/// stop accepting and return.
///
/// What stops is the accepting (or, for a UDP server, the receiving) loop: `serve` returns
/// `Ok(())` within about [`STOP_POLL`] and drops its listener, so a connection still waiting in
/// the kernel's accept queue is reset and later ones are refused. Connections already accepted
/// are not cut: their threads finish on their own (the client closes, or the server's idle
/// timeout), and a handler that loops may look at the same flag ([`crate::sock::Client::stop`])
/// to end early. A server
/// with a hub (chat-server) ends the hub, and with it its clients, when it stops.
#[derive(Clone, Debug, Default)]
pub struct Stop(Option<Arc<AtomicBool>>);

impl Stop {
    /// A handle that can be stopped (tests).
    pub fn new() -> Stop {
        Stop(Some(Arc::new(AtomicBool::new(false))))
    }

    /// A handle nobody can stop: the binaries' (serve until killed), with no socket timeouts.
    pub fn never() -> Stop {
        Stop(None)
    }

    /// Asks every holder of a clone to stop.
    pub fn stop(&self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// True once [`Stop::stop`] was called on any clone.
    pub fn is_stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// True unless this is [`Stop::never`].
    pub fn can_stop(&self) -> bool {
        self.0.is_some()
    }

    /// Sleeps `d`, or less when stopped meanwhile (it looks every [`STOP_POLL`]); true when
    /// stopped. [`Stop::never`] sleeps `d` in one go.
    pub fn sleep(&self, d: Duration) -> bool {
        if !self.can_stop() {
            std::thread::sleep(d);
            return false;
        }
        let until = Instant::now() + d;
        loop {
            if self.is_stopped() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }

    /// When this handle can stop: gives `listener` the [`STOP_POLL`] receive timeout, so that
    /// `accept` comes back (EAGAIN, `ErrorKind::WouldBlock`) often enough to see a stop.
    pub fn watch_listener(&self, listener: &TcpListener) -> std::io::Result<()> {
        if self.can_stop() {
            socket2::SockRef::from(listener).set_read_timeout(Some(STOP_POLL))?;
        }
        Ok(())
    }

    /// When this handle can stop: gives `socket` the [`STOP_POLL`] receive timeout, so that
    /// `recv_from` comes back (`ErrorKind::WouldBlock`) often enough to see a stop.
    pub fn watch_udp(&self, socket: &UdpSocket) -> std::io::Result<()> {
        if self.can_stop() {
            socket.set_read_timeout(Some(STOP_POLL))?;
        }
        Ok(())
    }
}

/// What every server's `serve` takes besides its sockets and options: where its events go and
/// when to stop. The binaries' `run` passes [`Serve::stdout`]; tests pass a capture sink and a
/// stop handle they keep.
#[derive(Clone, Debug, Default)]
pub struct Serve {
    /// Where the server's events go.
    pub sink: Sink,
    /// When the server stops accepting and returns.
    pub stop: Stop,
}

impl Serve {
    /// Stdout, never stopped: what a binary passes (output byte-identical to `Event::emit`).
    pub fn stdout() -> Serve {
        Serve {
            sink: Sink::stdout(),
            stop: Stop::never(),
        }
    }

    /// A server writing to `sink` and stopped by `stop`.
    pub fn new(sink: Sink, stop: Stop) -> Serve {
        Serve { sink, stop }
    }
}
