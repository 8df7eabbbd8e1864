//! The hub: one thread that owns the room (who is in it, in join order) and every client's
//! outgoing queue, fed over a channel by the per-connection reader threads.
//!
//! Routing and I/O are kept apart. The hub only appends shared message buffers to bounded
//! per-client queues ([`Outbox`]) and never touches a socket except to `shutdown` one; a writer
//! thread per client drains its queue and sends everything pending in one `write` call. So a
//! client that stops reading fills only its own queue: when the queue goes over its byte limit,
//! or the writer makes no progress for the stall timeout, that client is disconnected and the
//! others see it leave in the next user list. Nobody else waits for it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use labnet::log::{Event, Level};
use labnet::wire::chat;

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
        /// The connection, kept only to `shutdown` it when the client is dropped.
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
}

/// A client's bounded outgoing queue: the hub pushes, the client's writer thread takes.
pub struct Outbox {
    pending: Mutex<Pending>,
    ready: Condvar,
    limit: usize,
}

struct Pending {
    msgs: VecDeque<Arc<[u8]>>,
    bytes: usize,
    closed: bool,
    waiting: bool,
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

    /// Queues a message; false when the queue is over its limit (the client stopped reading).
    pub fn push(&self, msg: &Arc<[u8]>) -> bool {
        let mut p = self.lock();
        if p.closed {
            return true;
        }
        if p.bytes + msg.len() > self.limit {
            return false;
        }
        p.bytes += msg.len();
        p.msgs.push_back(Arc::clone(msg));
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
    pub fn take(&self, batch: &mut VecDeque<Arc<[u8]>>) -> bool {
        let mut p = self.lock();
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
        true
    }
}

/// The writer thread of one client: drains its queue and sends everything pending in one call.
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
}

impl Hub {
    /// An empty room; `log_messages` prints every relayed message (costly under load).
    pub fn new(log_messages: bool) -> Self {
        Hub {
            members: Vec::new(),
            drop_queue: Vec::new(),
            log_messages,
        }
    }

    /// Runs until every sender of `rx` is gone.
    pub fn run(mut self, rx: Receiver<ToHub>) {
        while let Ok(msg) = rx.recv() {
            self.handle(msg);
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
                if self.members.iter().any(|m| m.name == name) {
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
                Event::new(
                    Level::Info,
                    format!("{name} joined from {ip} ({} users)", self.members.len()),
                )
                .field("event", "join")
                .field("name", &name)
                .field("ip", &ip)
                .field("users", self.members.len())
                .emit();
                let _ = reply.send(Ok(()));
                self.send_users();
            }
            ToHub::Say { id, text } => {
                let Some(sender) = self.members.iter().find(|m| m.id == id) else {
                    return;
                };
                let line = chat::encode_room(&sender.name, &text);
                if self.log_messages {
                    Event::new(Level::Recv, line.trim_end())
                        .field("event", "room")
                        .field("from", &sender.name)
                        .field("text", &text)
                        .emit();
                }
                let bytes: Arc<[u8]> = Arc::from(line.into_bytes());
                self.deliver(&bytes, Some(id));
            }
            // The reader saw the end: it closes the socket itself (maybe after an ERROR line).
            ToHub::Leave { id } => self.remove(id, None),
            ToHub::Stalled { id, why } => self.remove(id, Some(why)),
        }
        self.drain_drops();
    }

    fn deliver(&mut self, bytes: &Arc<[u8]>, except: Option<u64>) {
        for m in &self.members {
            if Some(m.id) != except && !m.outbox.push(bytes) {
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
        event
            .field("event", "leave")
            .field("name", &m.name)
            .field("ip", &m.ip)
            .field("users", users)
            .emit();
        self.send_users();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_refuses_past_its_limit_and_hands_over_everything_at_once() {
        let o = Outbox::new(10);
        let m: Arc<[u8]> = Arc::from(&b"12345"[..]);
        assert!(o.push(&m));
        assert!(o.push(&m));
        assert!(!o.push(&m));
        let mut batch = VecDeque::new();
        assert!(o.take(&mut batch));
        assert_eq!(batch.len(), 2);
        assert!(o.push(&m));
        o.close();
        assert!(!o.take(&mut batch));
    }
}
