//! The hub: one thread that owns the room (who is in it, in join order) and every client's
//! outgoing queue, fed over a channel by the per-connection reader threads.
//!
//! Routing and blocking I/O are kept apart. A message for a client whose queue is empty and whose
//! writer is idle is sent by the hub itself with one non-blocking `send` (`MSG_DONTWAIT`): it never
//! waits, it either hands the bytes to the kernel or says EAGAIN. Only what that send could not
//! take goes into the client's bounded queue ([`Outbox`]), and the client's writer thread is woken
//! to send it with a blocking `write` bounded by the stall timeout. Why: waking a writer thread
//! for every delivery costs a futex wake and a context switch each, and with many clients that
//! was most of the fan-out's cost; a send the kernel takes at once needs neither. The writer
//! threads stay for what a direct send cannot do: wait, without holding up the hub, while a
//! slow reader's socket buffer is full. (docs/benchmarks.md has the measured fan-out cost.)
//!
//! So a client that stops reading fills only its own queue: when the queue goes over its byte
//! limit, or the writer makes no progress for the stall timeout, that client is disconnected and
//! the others see it leave in the next user list. Nobody else waits for it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use labnet::log::{Event, Level, Sink};
use labnet::wire::chat;
use socket2::SockRef;

/// What reader and writer threads tell the hub.
pub enum ToHub {
    /// A registered name asks to enter the room; the hub answers on `reply` (`Err(why)` when the
    /// name is taken).
    Join {
        /// Connection id.
        id: u64,
        /// The checked name.
        name: String,
        /// The client's address as the user list shows it.
        ip: String,
        /// The connection: the hub sends to it directly (non-blocking) when the client is idle,
        /// and shuts it down when the client is dropped.
        stream: Arc<TcpStream>,
        /// The client's outgoing queue.
        outbox: Arc<Outbox>,
        /// Where the verdict goes.
        reply: Sender<Result<(), String>>,
    },
    /// A room message from a member.
    Say {
        /// Connection id of the sender.
        id: u64,
        /// The text.
        text: String,
    },
    /// The connection closed (or broke).
    Leave {
        /// Connection id.
        id: u64,
    },
    /// The writer gave up on a client that stopped reading.
    Stalled {
        /// Connection id.
        id: u64,
        /// What happened.
        why: String,
    },
    /// The server stops: every member is disconnected and the hub returns.
    Stop,
}

/// A client's bounded outgoing queue: the hub pushes (or sends directly when the client is idle),
/// the client's writer thread takes.
pub struct Outbox {
    pending: Mutex<Pending>,
    ready: Condvar,
    limit: usize,
}

struct Pending {
    msgs: VecDeque<Arc<[u8]>>,
    bytes: usize,
    closed: bool,
    /// The writer sleeps in [`Outbox::take`] and needs a wake-up.
    waiting: bool,
    /// The writer holds a batch it has not finished writing (or gave up on after an error).
    /// Together with `msgs` being empty this is what makes a direct send from the hub safe: both
    /// are guarded by this one mutex, so the hub can never send ahead of bytes that are queued or
    /// in flight in the writer, and message order on the wire stays the order of routing.
    busy: bool,
}

impl Outbox {
    /// A queue holding at most `limit` bytes not yet handed to the kernel.
    pub fn new(limit: usize) -> Self {
        Outbox {
            pending: Mutex::new(Pending {
                msgs: VecDeque::new(),
                bytes: 0,
                closed: false,
                waiting: false,
                busy: false,
            }),
            ready: Condvar::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        match self.pending.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Hands a message to `stream` or queues it; false when the queue is over its limit (the
    /// client stopped reading).
    ///
    /// When nothing is queued and the writer is idle, the message is sent right here with one
    /// non-blocking send; only the part the kernel did not take (all of it on EAGAIN) is queued and
    /// the writer woken. The mutex is held during that send, which does not break "no lock held
    /// across blocking I/O": `MSG_DONTWAIT` makes the send return at once (copy into the socket
    /// buffer, or EAGAIN), whatever SO_SNDTIMEO says, so the writer waits on this lock for at most
    /// one memcpy. Any send error other than EAGAIN also just queues the message: the writer's
    /// blocking write then meets the same error and reports the client as before.
    pub fn push(&self, msg: &Arc<[u8]>, stream: &TcpStream) -> bool {
        let mut p = self.lock();
        if p.closed {
            return true;
        }
        if p.bytes + msg.len() > self.limit {
            return false;
        }
        let mut rest: Option<Arc<[u8]>> = Some(Arc::clone(msg));
        if p.msgs.is_empty() && !p.busy {
            // MSG_NOSIGNAL: a peer that reset the connection gives EPIPE, not a SIGPIPE.
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            match SockRef::from(stream).send_with_flags(msg, flags) {
                Ok(n) if n >= msg.len() => rest = None,
                // A partial send: the rest goes out through the writer, after nothing else.
                Ok(n) if n > 0 => rest = Some(Arc::from(&msg[n..])),
                _ => {}
            }
        }
        let Some(rest) = rest else {
            return true;
        };
        p.bytes += rest.len();
        p.msgs.push_back(rest);
        // Wake the writer only when it sleeps: under load it finds the messages itself.
        if p.waiting {
            p.waiting = false;
            self.ready.notify_one();
        }
        true
    }

    /// Ends the queue: the writer stops (what is still queued is dropped).
    pub fn close(&self) {
        let mut p = self.lock();
        p.closed = true;
        p.msgs.clear();
        p.bytes = 0;
        self.ready.notify_all();
    }

    /// Waits for messages and moves all of them into `batch`; false once the queue is closed.
    ///
    /// Calling it again means the previous batch is fully written: only then may the hub send
    /// directly again. A writer that stops after a failed write never calls it again, so the
    /// client stays `busy` and the hub only queues for it until it is removed.
    pub fn take(&self, batch: &mut VecDeque<Arc<[u8]>>) -> bool {
        let mut p = self.lock();
        p.busy = false;
        while p.msgs.is_empty() && !p.closed {
            p.waiting = true;
            p = match self.ready.wait(p) {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        if p.closed {
            return false;
        }
        // Swap, not copy: the hub is held up only for the swap, never for the copying or the write.
        std::mem::swap(&mut p.msgs, batch);
        p.bytes = 0;
        p.busy = true;
        true
    }
}

/// The writer thread of one client: drains its queue and sends everything pending in one call
/// (only what the hub's direct sends could not hand to the kernel at once ends up here).
///
/// The socket's send timeout (SO_SNDTIMEO, the stall timeout) bounds how long one write may wait
/// for a client that does not read; when it expires the client is reported and shut down.
pub fn write_loop(id: u64, stream: Arc<TcpStream>, outbox: Arc<Outbox>, hub: SyncSender<ToHub>) {
    let mut batch = VecDeque::new();
    let mut buf: Vec<u8> = Vec::new();
    while outbox.take(&mut batch) {
        let result = if batch.len() == 1 {
            (&*stream).write_all(&batch[0])
        } else {
            buf.clear();
            for m in &batch {
                buf.extend_from_slice(m);
            }
            (&*stream).write_all(&buf)
        };
        batch.clear();
        if buf.capacity() > (1 << 20) {
            // A burst made the buffer big; do not keep that much per idle client.
            buf = Vec::new();
        }
        if let Err(e) = result {
            let why = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    "stopped reading: a write made no progress within the stall timeout".to_owned()
                }
                _ => format!("write failed: {e}"),
            };
            // The hub shuts the socket down when it drops the client; doing it here first would
            // wake the reader, whose plain Leave could reach the hub before this verdict.
            if hub.send(ToHub::Stalled { id, why }).is_err() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            return;
        }
    }
}

struct Member {
    id: u64,
    name: String,
    ip: String,
    stream: Arc<TcpStream>,
    outbox: Arc<Outbox>,
}

/// The room: members in join order.
pub struct Hub {
    members: Vec<Member>,
    drop_queue: Vec<(u64, String)>,
    log_messages: bool,
    sink: Sink,
}

impl Hub {
    /// An empty room logging to `sink`; `log_messages` logs every relayed message (costly under
    /// load).
    pub fn new(log_messages: bool, sink: Sink) -> Self {
        Hub {
            members: Vec::new(),
            drop_queue: Vec::new(),
            log_messages,
            sink,
        }
    }

    /// Runs until [`ToHub::Stop`] or until every sender of `rx` is gone.
    pub fn run(mut self, rx: Receiver<ToHub>) {
        while let Ok(msg) = rx.recv() {
            if let ToHub::Stop = msg {
                self.stop();
                return;
            }
            self.handle(msg);
        }
    }

    /// Disconnects every member: their queues close (their writers end) and their sockets are
    /// shut down, so each reader's `read` returns 0 and its thread ends; the Leave it then sends
    /// finds no hub, which is fine.
    fn stop(&mut self) {
        for m in self.members.drain(..) {
            m.outbox.close();
            let _ = m.stream.shutdown(Shutdown::Both);
        }
    }

    fn handle(&mut self, msg: ToHub) {
        match msg {
            ToHub::Join {
                id,
                name,
                ip,
                stream,
                outbox,
                reply,
            } => {
                // Unique whatever the case: `Alice` next to `alice` could pass for her.
                if self.members.iter().any(|m| chat::same_name(&m.name, &name)) {
                    let _ = reply.send(Err(format!("name '{name}' is already in use")));
                    return;
                }
                self.members.push(Member {
                    id,
                    name: name.clone(),
                    ip: ip.clone(),
                    stream,
                    outbox,
                });
                self.sink.emit(
                    Event::new(
                        Level::Info,
                        format!("{name} joined from {ip} ({} users)", self.members.len()),
                    )
                    .field("event", "join")
                    .field("name", &name)
                    .field("ip", &ip)
                    .field("users", self.members.len()),
                );
                let _ = reply.send(Ok(()));
                self.send_users();
            }
            ToHub::Say { id, text } => {
                let Some(sender) = self.members.iter().find(|m| m.id == id) else {
                    return;
                };
                let line = chat::encode_room(&sender.name, &text);
                if self.log_messages {
                    // The text is the client's: ESC, CR or a newline must not reach the terminal
                    // or the log file raw. The JSON field is escaped by JSON itself.
                    self.sink.emit(
                        Event::new(Level::Recv, labnet::log::escape_controls(line.trim_end()))
                            .field("event", "room")
                            .field("from", &sender.name)
                            .field("text", &text),
                    );
                }
                let bytes: Arc<[u8]> = Arc::from(line.into_bytes());
                self.deliver(&bytes, Some(id));
            }
            // The reader saw the end: it closes the socket itself (maybe after an ERROR line).
            ToHub::Leave { id } => self.remove(id, None),
            ToHub::Stalled { id, why } => self.remove(id, Some(why)),
            ToHub::Stop => self.stop(),
        }
        self.drain_drops();
    }

    fn deliver(&mut self, bytes: &Arc<[u8]>, except: Option<u64>) {
        for m in &self.members {
            if Some(m.id) != except && !m.outbox.push(bytes, &m.stream) {
                self.drop_queue.push((
                    m.id,
                    "stopped reading: its outgoing queue is full".to_owned(),
                ));
            }
        }
    }

    fn send_users(&mut self) {
        let line = chat::encode_users(
            self.members
                .iter()
                .map(|m| (m.name.as_str(), m.ip.as_str())),
        );
        let bytes: Arc<[u8]> = Arc::from(line.into_bytes());
        self.deliver(&bytes, None);
    }

    fn drain_drops(&mut self) {
        // Bounded: each round removes a member, so this ends after at most `members` rounds.
        while let Some((id, why)) = self.drop_queue.pop() {
            self.remove(id, Some(why));
        }
    }

    fn remove(&mut self, id: u64, why: Option<String>) {
        let Some(pos) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let m = self.members.remove(pos);
        m.outbox.close();
        if why.is_some() {
            // We drop this client: wake its reader (and a writer blocked in send).
            let _ = m.stream.shutdown(Shutdown::Both);
        }
        let users = self.members.len();
        let event = match &why {
            None => Event::new(Level::Info, format!("{} left ({users} users)", m.name)),
            Some(why) => Event::new(
                Level::Warn,
                format!("{} disconnected: {why} ({users} users)", m.name),
            )
            .field("why", why),
        };
        self.sink.emit(
            event
                .field("event", "leave")
                .field("name", &m.name)
                .field("ip", &m.ip)
                .field("users", users),
        );
        self.send_users();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A connected loopback pair: (server side the outbox writes to, client side that reads).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        (server, client)
    }

    fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        s.read_exact(&mut got).unwrap();
        got
    }

    #[test]
    fn outbox_refuses_past_its_limit_and_hands_over_everything_at_once() {
        let (server, _client) = pair();
        let o = Outbox::new(10);
        let m: Arc<[u8]> = Arc::from(&b"12345"[..]);
        // A writer holding a batch: nothing may be sent directly, everything queues.
        o.lock().busy = true;
        assert!(o.push(&m, &server));
        assert!(o.push(&m, &server));
        assert!(!o.push(&m, &server));
        assert_eq!(o.lock().msgs.len(), 2, "sent directly past a busy writer");
        let mut batch = VecDeque::new();
        assert!(o.take(&mut batch));
        assert_eq!(batch.len(), 2);
        assert!(o.push(&m, &server));
        o.close();
        assert!(!o.take(&mut batch));
    }

    #[test]
    fn an_idle_client_gets_the_message_directly_without_queueing() {
        let (server, mut client) = pair();
        let o = Outbox::new(100);
        let m: Arc<[u8]> = Arc::from(&b"ann: hi \n"[..]);
        assert!(o.push(&m, &server));
        assert!(
            o.lock().msgs.is_empty(),
            "an idle client's message was queued"
        );
        assert_eq!(read_exactly(&mut client, m.len()), b"ann: hi \n");
    }

    #[test]
    fn nothing_is_sent_directly_ahead_of_a_queued_or_in_flight_batch() {
        let (server, mut client) = pair();
        let o = Outbox::new(100);
        let first: Arc<[u8]> = Arc::from(&b"first\n"[..]);
        let second: Arc<[u8]> = Arc::from(&b"second\n"[..]);
        let third: Arc<[u8]> = Arc::from(&b"third\n"[..]);
        o.lock().busy = true;
        assert!(o.push(&first, &server));
        // Checked before `take`, which would wait forever on an empty queue.
        assert_eq!(o.lock().msgs.len(), 1, "sent directly past a busy writer");
        let mut batch = VecDeque::new();
        assert!(o.take(&mut batch));
        // The writer now holds `first` and has not written it: `second` must wait behind it.
        assert!(o.push(&second, &server));
        assert_eq!(o.lock().msgs.len(), 1);
        (&server).write_all(&batch[0]).unwrap();
        batch.clear();
        // The writer comes back for more and takes `second`; queued work keeps order too.
        assert!(o.take(&mut batch));
        assert!(o.push(&third, &server));
        assert_eq!(o.lock().msgs.len(), 1, "sent directly past a busy writer");
        (&server).write_all(&batch[0]).unwrap();
        batch.clear();
        assert!(o.take(&mut batch));
        (&server).write_all(&batch[0]).unwrap();
        assert_eq!(read_exactly(&mut client, 19), b"first\nsecond\nthird\n");
    }

    #[test]
    fn what_the_kernel_cannot_take_now_is_queued_in_order() {
        let (server, mut client) = pair();
        // A small send buffer and a client that does not read: the socket fills up quickly.
        SockRef::from(&server).set_send_buffer_size(4096).unwrap();
        let o = Outbox::new(64 << 20);
        let chunk: Arc<[u8]> = Arc::from(vec![b'x'; 1000]);
        let mut sent = 0usize;
        // Bounded: the kernel buffers far less than 64 MiB on loopback.
        for _ in 0..10_000 {
            assert!(o.push(&chunk, &server));
            sent += chunk.len();
            if !o.lock().msgs.is_empty() {
                break;
            }
        }
        assert!(!o.lock().msgs.is_empty(), "the send buffer never filled");
        let tail: Arc<[u8]> = Arc::from(&b"end\n"[..]);
        assert!(o.push(&tail, &server));
        let queued = o.lock().msgs.len();
        assert!(queued >= 2, "the tail went out ahead of queued bytes");
        // Drain as the writer would: read everything and check nothing was lost or reordered.
        let mut batch = VecDeque::new();
        assert!(o.take(&mut batch));
        let mut out = Vec::new();
        for m in &batch {
            out.extend_from_slice(m);
        }
        let writer = std::thread::spawn(move || (&server).write_all(&out).unwrap());
        let got = read_exactly(&mut client, sent + tail.len());
        writer.join().unwrap();
        assert!(got[..sent].iter().all(|&b| b == b'x'));
        assert_eq!(&got[sent..], b"end\n");
    }
}
