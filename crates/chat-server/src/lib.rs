//! Chat lab, milestone 1 and the extra credit: the chat room server.
//!
//! Clients connect over TCP (port 5000) and send their name as the first message; the server
//! answers every join and leave with the active users, `!` + JSON `{name: ip}`, and relays each
//! room message as `<name>: <msg> ` to everyone but the sender — the handout's wire format
//! ([`labnet::wire::chat`]), so its Python client works against this server. Beyond the handout,
//! every server message ends with `\n` and is written in one call: the handout's server writes
//! bare messages, and a client that reads two of them in one `recv` cannot tell where the first
//! ends (its `json.loads` then fails). A student sees this in Wireshark as one TCP segment
//! carrying two application messages.
//!
//! What a student should observe: one TCP connection per client (SYN, SYN-ACK, ACK in a capture),
//! the user list pushed after each join and leave, and room messages relayed as separate
//! segments; peer-to-peer messages never pass through here (they are UDP between clients).
//!
//! The socket idea: one blocking reader thread per client and one hub thread that owns the room
//! and every client's bounded outgoing queue ([`hub`]). The hub sends to an idle client directly
//! with one non-blocking `send`; only what the kernel cannot take at once is queued for that
//! client's writer thread, which sends all it has queued in one `write`. A client that stops
//! reading is disconnected (queue over its limit, or no write progress for `--stall-timeout`), so
//! it never delays the others.
//!
//! Framing of client messages: a `\n` ends a message once the client has sent one; a client that
//! never does (the handout's) has each read taken as one message. A message longer than
//! `--max-message` bytes without a `\n` gets `ERROR: message longer than N bytes` and the
//! connection is closed (not truncated: a cut message would be relayed as two). Bytes that are not
//! UTF-8 get `ERROR: message is not valid UTF-8` and a close.
//!
//! Authentication (`--users FILE`, the extra credit): the first message is `name:password`
//! (names never contain `:`, so the first `:` splits; the password may contain anything but a
//! newline). Without `--users` the first message is the bare name, as in the handout, and a `:`
//! in it is refused like any other bad name. The credentials cross the network in clear text
//! (anyone capturing port 5000 reads them) unless the lab adds TLS. Passwords are stored only as
//! salted argon2id hashes ([`auth`]); a failed login is logged, delayed 1 s, and answered
//! `ERROR: authentication failed` whether the name or the password was wrong.
//!
//! [`serve`] takes an already-bound listener and a [`Serve`] (where events go, when to stop):
//! the binary passes stdout and never stops; the tests (`tests/inproc.rs`) bind port 0 in the
//! test process, run `serve` on a thread with an in-memory capture, read the events it logged,
//! then stop it, which also ends the hub and disconnects the room. `tests/server.rs` runs the
//! binary for flags, exit codes and what only a whole process shows.

pub mod auth;
pub mod hub;

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use labnet::log::{Event, Level, Sink};
use labnet::sock::{AcceptLoop, Serve};
use labnet::wire::chat::{self, ClientFramer};
use labnet::{Context, Error, Result};

use crate::auth::Users;
use crate::hub::{Hub, Outbox, ToHub};

/// Usage text of `chat-server --help`.
pub const HELP: &str = "\
chat-server: the chat lab's room server (TCP), handout-compatible

USAGE:
    chat-server [OPTIONS]
    chat-server adduser FILE NAME

OPTIONS:
    --bind ADDR              address to listen on; `::` = IPv6 and IPv4 (dual stack)
                             [default: ::, or 0.0.0.0 when the host has no IPv6]
    --port PORT              TCP port [default: 5000]
    --users FILE             admit only users of FILE with their password (first message
                             `name:password`); make FILE with `chat-server adduser`
    --max-clients N          connections at once; one more gets `ERROR: server full` [default: 1000]
    --max-message B          longest message in bytes; longer = ERROR and close [default: 65536]
    --register-timeout S     seconds a new connection has to send its name [default: 10]
    --stall-timeout S        seconds a write to a client may make no progress before the client
                             is disconnected [default: 2]
    --queue-bytes B          bytes queued for one client before it is disconnected [default: 4194304]
    --log-messages           print every relayed room message (costs CPU under load)
    --json                   one JSON object per event
    -h, --help               this text

adduser FILE NAME: asks for NAME's password (no echo; one line of stdin when not a terminal) and
writes NAME with a salted argon2id hash into FILE.

EXAMPLES:
    chat-server
    chat-server --bind 10.20.30.3 --port 5000 --log-messages
    chat-server adduser users.txt alice && chat-server --users users.txt
";

/// Everything `chat-server` can be asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--bind`; `None` = dual stack `::`, falling back to `0.0.0.0`.
    pub bind: Option<IpAddr>,
    /// `--port`.
    pub port: u16,
    /// Server options.
    pub options: Options,
    /// `adduser FILE NAME`, when that is the command.
    pub adduser: Option<(PathBuf, String)>,
    /// `--json`.
    pub json: bool,
}

/// How the server treats its clients (what [`serve`] needs besides the listener).
#[derive(Debug, Clone)]
pub struct Options {
    /// `--users`.
    pub users: Option<PathBuf>,
    /// `--max-clients`.
    pub max_clients: usize,
    /// `--max-message`.
    pub max_message: usize,
    /// `--register-timeout`.
    pub register_timeout: Duration,
    /// `--stall-timeout`.
    pub stall_timeout: Duration,
    /// `--queue-bytes`.
    pub queue_bytes: usize,
    /// `--log-messages`.
    pub log_messages: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            users: None,
            max_clients: 1000,
            max_message: chat::MAX_MESSAGE,
            register_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(2),
            queue_bytes: 4 << 20,
            log_messages: false,
        }
    }
}

impl Config {
    /// Parses the command line (flags, options, then positionals; leftovers are exit 2).
    pub fn from_args(args: Vec<OsString>) -> Result<Self> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let log_messages = a.contains("--log-messages");
        let bind: Option<String> = a.opt_value_from_str("--bind")?;
        let bind = bind.map(|b| labnet::args::ip(&b)).transpose()?;
        let port = labnet::args::opt_port(&mut a, "--port", labnet::topo::CHAT_PORT)?;
        let users: Option<PathBuf> = a.opt_value_from_os_str("--users", |s| {
            Ok::<_, std::convert::Infallible>(PathBuf::from(s))
        })?;
        let d = Options::default();
        let max_clients = labnet::args::opt_or(&mut a, "--max-clients", d.max_clients)?;
        let max_message = labnet::args::opt_or(&mut a, "--max-message", d.max_message)?;
        let register_timeout =
            labnet::args::opt_seconds(&mut a, "--register-timeout")?.unwrap_or(d.register_timeout);
        let stall_timeout =
            labnet::args::opt_seconds(&mut a, "--stall-timeout")?.unwrap_or(d.stall_timeout);
        let queue_bytes = labnet::args::opt_or(&mut a, "--queue-bytes", d.queue_bytes)?;
        if max_clients == 0 || max_message == 0 || queue_bytes == 0 {
            return Err(Error::usage(
                "--max-clients, --max-message and --queue-bytes must be at least 1",
            ));
        }
        if register_timeout.is_zero() || stall_timeout.is_zero() {
            return Err(Error::usage(
                "--register-timeout and --stall-timeout must be more than 0",
            ));
        }
        let command: Option<String> = a.opt_free_from_str()?;
        let adduser = match command.as_deref() {
            None => None,
            Some("adduser") => {
                let file: OsString = a
                    .opt_free_from_os_str(|s| Ok::<_, std::convert::Infallible>(s.to_owned()))?
                    .ok_or_else(|| Error::usage("adduser needs FILE NAME"))?;
                let name: String = a
                    .opt_free_from_str()?
                    .ok_or_else(|| Error::usage("adduser needs FILE NAME"))?;
                Some((PathBuf::from(file), name))
            }
            Some(other) => {
                return Err(Error::usage(format!(
                    "unexpected argument '{other}' (the only command is adduser)"
                )));
            }
        };
        labnet::args::finish(a)?;
        Ok(Config {
            bind,
            port,
            options: Options {
                users,
                max_clients,
                max_message,
                register_timeout,
                stall_timeout,
                queue_bytes,
                log_messages,
            },
            adduser,
            json,
        })
    }
}

/// Runs the command: `adduser`, or binds and serves forever.
pub fn run(config: &Config) -> Result<()> {
    labnet::log::set_json(config.json);
    if let Some((file, name)) = &config.adduser {
        return auth::add_user(file, name);
    }
    let ctx = Serve::stdout();
    let listener = match config.bind {
        Some(ip) => {
            let addr = SocketAddr::new(ip, config.port);
            labnet::sock::listener_for(addr).with_context(|| format!("listen on {addr}"))?
        }
        None => {
            let dual = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), config.port);
            match labnet::sock::listener_for(dual) {
                Ok(l) => l,
                // A host (or container) without IPv6: serve IPv4 only, and say so.
                Err(e)
                    if e.raw_os_error() == Some(97) || e.kind() == ErrorKind::AddrNotAvailable =>
                {
                    ctx.sink
                        .warn("no IPv6 on this host: listening on IPv4 only");
                    let v4 = SocketAddr::from(([0, 0, 0, 0], config.port));
                    labnet::sock::listener_for(v4).with_context(|| format!("listen on {v4}"))?
                }
                Err(e) => return Err(e).context(format!("listen on {dual}")),
            }
        }
    };
    serve(listener, &config.options, &ctx)
}

/// Serves chat clients on an already-bound listener (tests bind port 0) until `ctx.stop` (for
/// the binary: forever). Events go to `ctx.sink`.
///
/// After a stop it stops accepting, tells the hub to disconnect every member (their sockets are
/// shut down, so their clients read EOF), waits for the hub thread to end and returns `Ok(())`.
/// A connection still registering ends on its own (its Join finds no hub).
pub fn serve(listener: TcpListener, options: &Options, ctx: &Serve) -> Result<()> {
    let sink = &ctx.sink;
    let local = listener
        .local_addr()
        .context("read the listening address")?;
    let users = match &options.users {
        Some(path) => Some(Arc::new(Users::open(path, sink)?)),
        None => None,
    };
    let (hub_tx, hub_rx) = mpsc::sync_channel::<ToHub>(4096);
    let hub = Hub::new(options.log_messages, sink.clone());
    let hub_thread = thread::Builder::new()
        .name("chat-hub".into())
        .spawn(move || hub.run(hub_rx))
        .context("start the hub thread")?;
    sink.emit(
        Event::new(
            Level::Info,
            format!("chat server listening on {local} (TCP)"),
        )
        .field("event", "listen")
        .field("addr", local.to_string())
        .field("port", local.port()),
    );

    let shared = Arc::new(Shared {
        options: options.clone(),
        users,
        hub: hub_tx.clone(),
        sink: sink.clone(),
    });
    // The kit's accept loop: back-off at the descriptor limit, thread-start retries, and
    // --max-clients (one more gets `ERROR: server full (N connections)` and the close).
    let full = format!("server full ({} connections)", options.max_clients);
    AcceptLoop::new("chat-server")
        .thread_prefix("chat-conn")
        .stack_size(256 * 1024)
        .max_clients(options.max_clients)
        .refusal(chat::encode_error(&full))
        .sink(sink.clone())
        .stop(ctx.stop.clone())
        .run(&listener, move |c| {
            connection(c.id, c.stream, c.peer, &shared)
        })
        .context("read the listening address")?;
    // Stopped: end the room. Connection threads may still hold senders, so the hub is told
    // rather than left to notice that every sender is gone.
    let _ = hub_tx.send(ToHub::Stop);
    hub_thread
        .join()
        .map_err(|_| Error::msg("the hub thread panicked"))
}

struct Shared {
    options: Options,
    users: Option<Arc<Users>>,
    hub: SyncSender<ToHub>,
    sink: Sink,
}

/// Why a connection ended before or while registering.
enum Refusal {
    /// Tell the client `ERROR: <why>` and close.
    Tell(String),
    /// It went away on its own.
    Gone,
}

/// The reader thread of one connection: registration, then its messages to the hub.
fn connection(id: u64, stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let opts = &shared.options;
    let stream = Arc::new(stream);
    let mut framer = ClientFramer::new(opts.max_message);
    // One byte more than the limit, so that a too-long read is seen as such.
    let mut buf = vec![0u8; opts.max_message.saturating_add(1).min(1 << 20)];

    let name = match register(&stream, peer, shared, &mut framer, &mut buf) {
        Ok(name) => name,
        Err(Refusal::Gone) => return,
        Err(Refusal::Tell(why)) => {
            refuse(&stream, peer, &why, &shared.sink);
            return;
        }
    };
    let outbox = Arc::new(Outbox::new(opts.queue_bytes));
    // Set before joining: the hub may send to this socket (the user list) as soon as it has it.
    let _ = stream.set_write_timeout(Some(opts.stall_timeout));
    let _ = stream.set_nodelay(true);
    let (reply_tx, reply_rx) = mpsc::channel();
    let join = ToHub::Join {
        id,
        name: name.clone(),
        ip: peer.ip().to_string(),
        stream: Arc::clone(&stream),
        outbox: Arc::clone(&outbox),
        reply: reply_tx,
    };
    if shared.hub.send(join).is_err() {
        return;
    }
    match reply_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            refuse(&stream, peer, &why, &shared.sink);
            return;
        }
        Err(_) => return,
    }
    let _ = stream.set_read_timeout(None);
    let writer = {
        let (stream, outbox, hub) = (Arc::clone(&stream), outbox, shared.hub.clone());
        let spawned = thread::Builder::new()
            .name(format!("chat-write-{id}"))
            .stack_size(128 * 1024)
            .spawn(move || hub::write_loop(id, stream, outbox, hub));
        match spawned {
            Ok(handle) => handle,
            Err(_) => {
                let _ = shared.hub.send(ToHub::Leave { id });
                return;
            }
        }
    };
    // Messages that arrived together with the name.
    let mut ending: Option<String> = None;
    'read: loop {
        while let Some(text) = framer.next_message() {
            if text.is_empty() {
                continue;
            }
            if shared.hub.send(ToHub::Say { id, text }).is_err() {
                break 'read;
            }
        }
        match (&*stream).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = framer.push(&buf[..n]) {
                    ending = Some(e.to_string());
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = shared.hub.send(ToHub::Leave { id });
    if let Some(why) = ending {
        // The hub closes the queue on Leave, which ends the writer; once it has, this thread is
        // the only one writing, and the error cannot land in the middle of a relayed message.
        let _ = writer.join();
        refuse(&stream, peer, &why, &shared.sink);
    }
}

/// Reads the first message and checks it: name rules, then the password when `--users` is on.
fn register(
    stream: &TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    framer: &mut ClientFramer,
    buf: &mut [u8],
) -> std::result::Result<String, Refusal> {
    let opts = &shared.options;
    let deadline = Instant::now() + opts.register_timeout;
    let first = loop {
        if let Some(m) = framer.next_message() {
            break m;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Refusal::Tell(
                "registration timeout: no name received".into(),
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        match (&*stream).read(buf) {
            Ok(0) => return Err(Refusal::Gone),
            Ok(n) => framer
                .push(&buf[..n])
                .map_err(|e| Refusal::Tell(e.to_string()))?,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Refusal::Tell(
                    "registration timeout: no name received".into(),
                ));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Refusal::Gone),
        }
    };
    match &shared.users {
        None => {
            chat::check_name(&first).map_err(Refusal::Tell)?;
            Ok(first)
        }
        Some(users) => {
            let (name, password) = chat::split_credentials(&first);
            chat::check_name(name).map_err(Refusal::Tell)?;
            if users.check(name, password) {
                Ok(name.to_owned())
            } else {
                shared.sink.emit(
                    Event::new(
                        Level::Warn,
                        format!("failed login as '{}' from {peer}", name.escape_debug()),
                    )
                    .field("event", "auth_failed")
                    .field("name", name)
                    .field("peer", peer.to_string()),
                );
                thread::sleep(auth::FAIL_DELAY);
                Err(Refusal::Tell(auth::AUTH_FAILED.into()))
            }
        }
    }
}

/// Sends `ERROR: <why>\n`, then closes without losing it: the write side is shut first (FIN after
/// the error), and what the client still sends is read and dropped for a moment, because closing
/// a socket with unread data makes the kernel send a RST that can destroy the error in flight.
fn refuse(stream: &TcpStream, peer: SocketAddr, why: &str, sink: &Sink) {
    sink.emit(
        Event::new(Level::Warn, format!("refused {peer}: {why}"))
            .field("event", "refused")
            .field("peer", peer.to_string())
            .field("why", why),
    );
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = (&*stream).write_all(chat::encode_error(why).as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 16 * 1024];
    while Instant::now() < until {
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
