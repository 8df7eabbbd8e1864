//! The accept loop of every threaded server of the kit (echo-server, chat-server, lab-server's
//! PMU and WebSocket services, tls-pmu): one named thread per client, and everything a server
//! must survive at the door. `basics` keeps the handouts' plain `while True: accept()` loop,
//! which is what its lesson is about; `tcp-tunnel` accepts inside its own event loop.
//!
//! What the loop does that a plain loop does not (at the descriptor limit, lab-server, tls-pmu
//! and chat-server once logged 10 to 20 lines a second, each with its own loop):
//! - **Descriptor exhaustion** (EMFILE, ENFILE, ENOBUFS, ENOMEM): the pending connection stays
//!   in the kernel's accept queue, and accepting again at once would fail the same way and burn
//!   a CPU, so the loop rests [`FD_BACKOFF`] before the next `accept`, logs at most one line a
//!   second with the number of failures it did not log, and says when it accepts again.
//! - **Thread start failures** (the system short of threads or memory for a moment): the
//!   accepted socket waits in a slot the new thread takes it from, so a failed spawn leaves it
//!   with the loop (no descriptor is duplicated, which at the limit would fail too), and the spawn
//!   is retried with a doubling pause, about 1.3 s in all, before the client is given up.
//! - **A connection cap**: beyond `max_clients` open connections a new client gets the
//!   server's refusal bytes (if any) and is closed at once, so a crowd of idle connections
//!   cannot take every thread and descriptor; refusals are logged at most once a second.
//! - Every other `accept` error is logged (at most once a second) and retried after a pause;
//!   a client that reset before it was accepted, or a signal, is nothing to report.
//!
//! Its events go to the server's [`Sink`] ([`AcceptLoop::sink`], stdout by default), and a
//! [`Stop`] ([`AcceptLoop::stop`]) ends it: see [`super::stop`] for how (a receive timeout on the
//! listener) and what happens to clients being served (they finish on their own).

use std::io::{self, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::error::describe;
use crate::log::{Event, Level, RateLimit, Sink};

use super::{Stop, is_fd_exhaustion, unmap};

/// How long `accept` rests after a descriptor-exhaustion error before trying again.
pub const FD_BACKOFF: Duration = Duration::from_millis(100);

/// Attempts at starting a client's thread before the client is given up.
const SPAWN_ATTEMPTS: u32 = 8;

/// One accepted client, handed to the server's handler on its own thread.
#[derive(Debug)]
pub struct Client {
    /// Connection number, from 1, in accept order.
    pub id: u64,
    /// The connection.
    pub stream: TcpStream,
    /// The client's address (`::ffff:a.b.c.d` shown as `a.b.c.d`).
    pub peer: SocketAddr,
    /// The loop's stop handle: a handler that loops may end early once it is stopped.
    pub stop: Stop,
}

/// How a server accepts: its name in log lines, its threads, its cap.
#[derive(Debug, Clone)]
pub struct AcceptLoop {
    name: String,
    thread_prefix: String,
    stack_size: usize,
    max_clients: usize,
    refusal: Option<Vec<u8>>,
    ids: Arc<AtomicU64>,
    live: Arc<AtomicUsize>,
    sink: Sink,
    stop: Stop,
}

impl AcceptLoop {
    /// A loop whose log lines start with `name` (`PMU`, `chat-server`), with threads named
    /// `<name>-<id>` (lower case), 256 KiB stacks and at most 1,000 clients at once.
    pub fn new(name: &str) -> Self {
        AcceptLoop {
            name: name.to_owned(),
            thread_prefix: name.to_lowercase(),
            stack_size: 256 * 1024,
            max_clients: 1000,
            refusal: None,
            ids: Arc::new(AtomicU64::new(0)),
            live: Arc::new(AtomicUsize::new(0)),
            sink: Sink::stdout(),
            stop: Stop::never(),
        }
    }

    /// Where the loop's own events (back-off, refusals, thread failures) go (default stdout).
    pub fn sink(mut self, sink: Sink) -> Self {
        self.sink = sink;
        self
    }

    /// What ends [`AcceptLoop::run`] (default: nothing does).
    pub fn stop(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    /// Client threads are named `<prefix>-<id>` (what `top -H` and a debugger show).
    pub fn thread_prefix(mut self, prefix: &str) -> Self {
        self.thread_prefix = prefix.to_owned();
        self
    }

    /// The stack reserved for each client thread: what the handler needs, not the 8 MiB
    /// default, so a thousand clients reserve little address space.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Most clients served at once; one more is refused (at least 1).
    pub fn max_clients(mut self, n: usize) -> Self {
        self.max_clients = n.max(1);
        self
    }

    /// What a client refused at the cap is sent before the close (`ERROR: server full\n`).
    pub fn refusal(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.refusal = Some(bytes.into());
        self
    }

    /// Clients being served now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Accepts until stopped (forever with the default [`Stop::never`]), running `handler` on
    /// a new thread for each client. Returns `Ok(())` within about [`super::STOP_POLL`] of a
    /// stop, without waiting for the clients' threads; returns an error only when the
    /// listener's own address cannot be read, or its stop timeout set, at the start. Every
    /// later failure is logged and survived.
    pub fn run<F>(&self, listener: &TcpListener, handler: F) -> io::Result<()>
    where
        F: Fn(Client) + Send + Sync + 'static,
    {
        let local = listener.local_addr()?;
        self.stop.watch_listener(listener)?;
        let handler = Arc::new(handler);
        let mut fd_log = RateLimit::new(Duration::from_secs(1));
        let mut misc_log = RateLimit::new(Duration::from_secs(1));
        let mut full_log = RateLimit::new(Duration::from_secs(1));
        let mut exhausted = false;
        loop {
            if self.stop.is_stopped() {
                return Ok(());
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.stop.can_stop() {
                        // The accepted socket inherits the listener's SO_RCVTIMEO (the kernel
                        // clones the listening socket's settings): give the handler a socket
                        // without it, as a loop that cannot stop would.
                        let _ = stream.set_read_timeout(None);
                    }
                    if exhausted {
                        exhausted = false;
                        let skipped = fd_log.take_skipped();
                        let ev = Event::new(
                            Level::Info,
                            format!(
                                "{}: accepting again on {local} ({skipped} more accept failures \
                                 not logged)",
                                self.name
                            ),
                        )
                        .field("event", "accept_resumed");
                        self.sink.emit(ev);
                    }
                    let peer = unmap(peer);
                    if self.live() >= self.max_clients {
                        self.refuse(stream, peer, &mut full_log);
                        continue;
                    }
                    let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
                    let stop = self.stop.clone();
                    let client = Client {
                        id,
                        stream,
                        peer,
                        stop,
                    };
                    self.spawn(client, &handler, &mut misc_log);
                }
                Err(e) if is_fd_exhaustion(&e) => {
                    exhausted = true;
                    if fd_log.allow() {
                        let skipped = fd_log.take_skipped();
                        let ev = Event::new(
                            Level::Warn,
                            format!(
                                "{}: accept on {local}: {}: {} clients open, retrying every {} ms \
                                 ({skipped} more failures not logged)",
                                self.name,
                                describe(&e),
                                self.live(),
                                FD_BACKOFF.as_millis()
                            ),
                        )
                        .field("event", "accept_backoff");
                        self.sink.emit(ev);
                    }
                    thread::sleep(FD_BACKOFF);
                }
                // The client reset before we accepted it, a signal, or the stop timeout (the flag is
                // checked at the top of the loop): nothing to do.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted
                            | ErrorKind::Interrupted
                            | ErrorKind::WouldBlock
                    ) => {}
                Err(e) => {
                    if misc_log.allow() {
                        let skipped = misc_log.take_skipped();
                        let ev = Event::new(
                            Level::Warn,
                            format!(
                                "{}: accept on {local}: {} ({skipped} more warnings not logged)",
                                self.name,
                                describe(&e)
                            ),
                        )
                        .field("event", "accept_failed");
                        self.sink.emit(ev);
                    }
                    thread::sleep(FD_BACKOFF);
                }
            }
        }
    }

    /// At the cap: the refusal, written without blocking (a fresh socket's send buffer is
    /// empty), then the close.
    fn refuse(&self, stream: TcpStream, peer: SocketAddr, log: &mut RateLimit) {
        if let Some(bytes) = &self.refusal {
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write_all(bytes);
        }
        drop(stream);
        if log.allow() {
            let skipped = log.take_skipped();
            let ev = Event::new(
                Level::Warn,
                format!(
                    "{}: refused {peer}: server full ({} connections; {skipped} more refusals \
                     not logged)",
                    self.name, self.max_clients
                ),
            )
            .field("event", "refused")
            .field("peer", peer.to_string());
            self.sink.emit(ev);
        }
    }

    fn spawn<F>(&self, client: Client, handler: &Arc<F>, log: &mut RateLimit)
    where
        F: Fn(Client) + Send + Sync + 'static,
    {
        let (id, peer) = (client.id, client.peer);
        let slot = Arc::new(Mutex::new(Some(client)));
        let mut pause = Duration::from_millis(10);
        let mut last_error = None;
        for _ in 0..SPAWN_ATTEMPTS {
            let mine = Arc::clone(&slot);
            let handler = Arc::clone(handler);
            let live = Live::enter(&self.live);
            let spawned = thread::Builder::new()
                .name(format!("{}-{id}", self.thread_prefix))
                .stack_size(self.stack_size)
                .spawn(move || {
                    // Released when the handler returns or panics.
                    let _live = live;
                    let client = mine.lock().ok().and_then(|mut s| s.take());
                    if let Some(client) = client {
                        handler(client);
                    }
                });
            match spawned {
                Ok(_) => return,
                Err(e) => {
                    // The closure, and with it `live`, was dropped: the count is back.
                    last_error = Some(e);
                    thread::sleep(pause);
                    pause *= 2;
                }
            }
        }
        if log.allow() {
            let why = last_error.map_or_else(|| "unknown error".to_owned(), |e| describe(&e));
            let ev = Event::new(
                Level::Warn,
                format!(
                    "{}: #{id} {peer}: cannot start a thread after {SPAWN_ATTEMPTS} attempts: \
                     {why}; connection closed",
                    self.name
                ),
            )
            .field("event", "spawn_failed");
            self.sink.emit(ev);
        }
    }
}

/// One client counted in `live` until dropped.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn enter(live: &Arc<AtomicUsize>) -> Live {
        live.fetch_add(1, Ordering::Relaxed);
        Live(Arc::clone(live))
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::mpsc;

    #[test]
    fn clients_get_threads_and_the_cap_refuses_the_one_too_many() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = AcceptLoop::new("test")
            .max_clients(2)
            .refusal(&b"ERROR: full\n"[..]);
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let seen = accept.clone();
        thread::spawn(move || {
            let _ = accept.run(&listener, move |mut c| {
                let name = thread::current().name().map(str::to_owned);
                let _ = tx.lock().unwrap().send((c.id, c.peer, name));
                // Hold the client until it closes.
                let mut buf = [0u8; 8];
                while matches!(c.stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        });
        let a = TcpStream::connect(addr).unwrap();
        let b = TcpStream::connect(addr).unwrap();
        let (id_a, peer, name) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let (id_b, _, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((id_a.min(id_b), id_a.max(id_b)), (1, 2));
        assert_eq!(peer.ip(), a.local_addr().unwrap().ip());
        assert!(name.unwrap().starts_with("test-"));
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut refused = Vec::new();
        let _ = c.read_to_end(&mut refused);
        assert_eq!(refused, b"ERROR: full\n");
        assert_eq!(seen.live(), 2);
        drop((a, b));
        // Slots free again once the handlers return.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.live() > 0 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(seen.live(), 0);
        let _d = TcpStream::connect(addr).unwrap();
        let (id_d, _, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(id_d, 3);
    }

    #[test]
    fn a_stop_ends_the_loop_with_ok_and_clients_finish_on_their_own() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Stop::new();
        let (sink, capture) = crate::log::Sink::capture();
        let accept = AcceptLoop::new("test")
            .max_clients(1)
            .refusal(&b"FULL\n"[..])
            .sink(sink)
            .stop(stop.clone());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let server = thread::spawn(move || {
            accept.run(&listener, move |mut c| {
                // What the handler's socket says about timeouts, and whether it sees the stop.
                let timeout = c.stream.read_timeout().unwrap();
                let _ = tx.lock().unwrap().send((timeout, c.stop.is_stopped()));
                let mut buf = [0u8; 8];
                while let Ok(n) = c.stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = c.stream.write_all(&buf[..n]);
                }
                let _ = tx.lock().unwrap().send((None, c.stop.is_stopped()));
            })
        });
        let mut a = TcpStream::connect(addr).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (timeout, stopped) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        // The listener's SO_RCVTIMEO is not left on the client's socket.
        assert_eq!(timeout, None);
        assert!(!stopped);
        // The loop's own events go to its sink: the refusal at the cap.
        let mut b = TcpStream::connect(addr).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut refused = Vec::new();
        let _ = b.read_to_end(&mut refused);
        assert_eq!(refused, b"FULL\n");
        let ev = capture
            .wait_for(Duration::from_secs(5), |e| e.is("event", "refused"))
            .expect("refusal logged to the capture");
        assert!(ev.is("peer", b.local_addr().unwrap().to_string()));

        let asked = std::time::Instant::now();
        stop.stop();
        let result = server.join().unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
        // No longer accepting: a connection attempt is refused once the listener is gone, and
        // the client being served still is.
        assert!(TcpStream::connect(addr).is_err());
        a.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        a.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        drop(a);
        let (_, stopped) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(stopped, "the handler sees the stop");
    }
}
