//! Chat lab, milestone 2: the chat client — the room over TCP, private messages
//! peer-to-peer over UDP.
//!
//! The client connects to the chat server (TCP port 5000), sends its name as the first message
//! (`name:password` with `--password-file` or `--ask-password`, for a server run with `--users`),
//! and from then on:
//! - prints room messages (`alice: hi`), and who joined and who left (it diffs each new user list
//!   `!{name: ip}` against the previous one);
//! - reads commands from the terminal (or stdin when it is not one): `#ls` lists the users,
//!   `@name: msg` sends everything after the first `:` verbatim (` msg`, leading space and any
//!   later colons included, exactly what the handout's client sends) as one UDP datagram straight
//!   to that user's IP on `--udp-port` (5000), anything else goes to the room through the server;
//! - prints peer-to-peer datagrams, naming the sender by looking its source IP up in the user
//!   list (`Non-registered` when it is not there).
//!
//! What a student should observe: room messages travel client → server → clients over the TCP
//! connections, peer-to-peer messages go client → client in one UDP datagram that the server never
//! sees (compare the captures of the webserver and of a client in Wireshark).
//!
//! The socket idea: one TCP socket and one UDP socket bound to the same local address
//! (`--bind 127.0.0.3` lets several clients share one machine), each read by its own thread.
//!
//! Compatibility: the handout's server does not end its messages, so two of them may arrive in
//! one read; the client cuts a `!{…}` user list out of surrounding text by brace matching
//! ([`labnet::wire::chat::ServerStream`]). Our server ends every message with `\n`; once the
//! client has seen that, it ends its own messages with `\n` too (the handout's server would keep
//! the `\n` in the text, so the name and messages go without one until then).
//!
//! Leaving: end of input (Ctrl-D, or the end of a piped stdin) or Ctrl-C closes the connection
//! and exits 0. When the server closes the connection the client prints `server closed the
//! connection` and exits 1 (on a terminal after the next Enter, so the terminal is restored).

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use labnet::log::{Event, Level};
use labnet::wire::chat::{self, ServerMsg, ServerStream};
use labnet::{Context, Error, Result};
use rustyline::ExternalPrinter;
use socket2::{Domain, Protocol, Socket, Type};

/// Usage text of `chat-client --help`.
pub const HELP: &str = "\
chat-client: the chat lab's client (room over TCP, peer-to-peer over UDP)

USAGE:
    chat-client --server HOST [OPTIONS]

OPTIONS:
    --server HOST          chat server name or address (required)
    --port PORT            server TCP port [default: 5000]
    --bind IP              local address of both the TCP connection and the UDP socket
                           (several clients on one machine: 127.0.0.2, 127.0.0.3, ...)
    --udp-port PORT        peer-to-peer UDP port, ours and the peers' [default: 5000]
    --name NAME            name to register [default: asked]
    --password-file FILE   send `name:password` with the first line of FILE (server --users)
    --ask-password         ask for the password (no echo on a terminal; else the next stdin line)
    --json                 one JSON object per event
    -h, --help             this text

COMMANDS (typed, or piped on stdin):
    #ls               list the active users
    @NAME: MESSAGE    send MESSAGE to NAME peer-to-peer (UDP)
    anything else     send it to the room
    end of input (Ctrl-D) or Ctrl-C leaves the chat

EXAMPLES:
    chat-client --server webserver --name alice
    chat-client --server 127.0.0.1 --bind 127.0.0.2 --name alice
    printf 'hello room\\n@bob: psst\\n' | chat-client --server 127.0.0.1 --bind 127.0.0.3 --name carol
";

/// Everything `chat-client` can be asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--server`.
    pub server: String,
    /// `--port`.
    pub port: u16,
    /// `--bind`.
    pub bind: Option<IpAddr>,
    /// `--udp-port`.
    pub udp_port: u16,
    /// `--name`.
    pub name: Option<String>,
    /// `--password-file`.
    pub password_file: Option<PathBuf>,
    /// `--ask-password`.
    pub ask_password: bool,
    /// `--json`.
    pub json: bool,
}

impl Config {
    /// Parses the command line (flags, options, then positionals; leftovers are exit 2).
    pub fn from_args(args: Vec<OsString>) -> Result<Self> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let ask_password = a.contains("--ask-password");
        let server: Option<String> = a.opt_value_from_str("--server")?;
        let port = labnet::args::opt_port(&mut a, "--port", labnet::topo::CHAT_PORT)?;
        let bind: Option<String> = a.opt_value_from_str("--bind")?;
        let bind = bind.map(|b| labnet::args::ip(&b)).transpose()?;
        let udp_port = labnet::args::opt_port(&mut a, "--udp-port", labnet::topo::CHAT_PORT)?;
        let name: Option<String> = a.opt_value_from_str("--name")?;
        let password_file: Option<PathBuf> = a.opt_value_from_os_str("--password-file", |s| {
            Ok::<_, std::convert::Infallible>(PathBuf::from(s))
        })?;
        labnet::args::finish(a)?;
        let server = server.ok_or_else(|| Error::usage("--server HOST is required"))?;
        if port == 0 {
            return Err(Error::usage(
                "--port 0: expected the server's port, 1-65535",
            ));
        }
        if let Some(n) = &name {
            chat::check_name(n).map_err(|why| Error::usage(format!("--name: {why}")))?;
        }
        if password_file.is_some() && ask_password {
            return Err(Error::usage("--password-file and --ask-password: pick one"));
        }
        Ok(Config {
            server,
            port,
            bind,
            udp_port,
            name,
            password_file,
            ask_password,
            json,
        })
    }
}

/// What the reading threads tell the main thread.
enum Note {
    Line(String),
    InputEnd,
    Registered,
    Refused(String),
    ServerClosed,
}

/// Where events go: stdout, or through rustyline so a half-typed line is redrawn below them.
#[derive(Clone)]
struct Out(Arc<Option<Mutex<Box<dyn ExternalPrinter + Send>>>>);

impl Out {
    fn emit(&self, event: Event) {
        match &*self.0 {
            None => event.emit(),
            Some(printer) => {
                let line = event.format(labnet::log::is_json(), SystemTime::now());
                if let Ok(mut p) = printer.lock() {
                    let _ = p.print(line);
                }
            }
        }
    }
}

type Users = Arc<Mutex<Vec<(String, String)>>>;

/// Set when we close the connection ourselves, so its end is not reported as the server's.
static LEAVING: AtomicBool = AtomicBool::new(false);

fn users_text(users: &[(String, String)]) -> String {
    let list: Vec<String> = users.iter().map(|(n, ip)| format!("{n} ({ip})")).collect();
    format!("{} active users: {}", users.len(), list.join(", "))
}

fn users_json(users: &[(String, String)]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = users
        .iter()
        .map(|(n, ip)| (n.clone(), serde_json::Value::String(ip.clone())))
        .collect();
    serde_json::Value::Object(map)
}

/// Connects, registers, and runs the chat until input ends or the server goes away.
pub fn run(config: &Config) -> Result<()> {
    labnet::log::set_json(config.json);
    let prefer_v6 = config.bind.is_some_and(|ip| ip.is_ipv6());
    let server = labnet::args::resolve(&config.server, config.port, prefer_v6)?;
    let tcp = connect(server, config.bind)?;
    let local = tcp.local_addr().context("read the local TCP address")?;
    let udp = udp_socket(local.ip(), config.bind.is_some(), config.udp_port)?;
    let tcp = Arc::new(tcp);

    let terminal = io::stdin().is_terminal();
    let (notes_tx, notes) = mpsc::channel::<Note>();
    let mut editor = if terminal {
        Some(rustyline::DefaultEditor::new().map_err(|e| Error::other("start line editor", e))?)
    } else {
        let tx = notes_tx.clone();
        thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_stdin(&tx))
            .context("start the stdin thread")?;
        None
    };

    let name = match &config.name {
        Some(n) => n.clone(),
        None => ask_line(
            &mut editor,
            &notes,
            "First enter your name to register it in the server: ",
        )?,
    };
    chat::check_name(&name).map_err(|why| Error::usage(format!("name: {why}")))?;
    let password = match (&config.password_file, config.ask_password) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read password file {}", path.display()))?;
            Some(text.lines().next().unwrap_or("").to_owned())
        }
        (None, true) if terminal => Some(
            rpassword::prompt_password("password: ").context("read password from the terminal")?,
        ),
        (None, true) => Some(ask_line(&mut None, &notes, "")?),
        (None, false) => None,
    };

    let out = match editor.as_mut() {
        Some(ed) => {
            let printer = ed
                .create_external_printer()
                .map_err(|e| Error::other("start line editor", e))?;
            Out(Arc::new(Some(Mutex::new(Box::new(printer)))))
        }
        None => Out(Arc::new(None)),
    };

    // The first message: the name (or name:password), without a newline, as the handout sends it.
    let first = chat::encode_credentials(&name, password.as_deref());
    (&*tcp)
        .write_all(first.as_bytes())
        .with_context(|| format!("send name to {server}"))?;

    let users: Users = Arc::new(Mutex::new(Vec::new()));
    let framed = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicBool::new(false));
    {
        let (tcp, users, framed, closed) = (
            Arc::clone(&tcp),
            Arc::clone(&users),
            Arc::clone(&framed),
            Arc::clone(&closed),
        );
        let (out, tx, name) = (out.clone(), notes_tx.clone(), name.clone());
        thread::Builder::new()
            .name("tcp-recv".into())
            .spawn(move || {
                receive_tcp(&tcp, &name, &users, &framed, &out, &tx, terminal);
                closed.store(true, Ordering::SeqCst);
            })
            .context("start the TCP receive thread")?;
    }

    // Wait for the first user list: the server has taken our name (or refused it). Input that
    // arrives meanwhile is kept and handled afterwards, in order.
    let mut early: Vec<Note> = Vec::new();
    loop {
        match notes.recv_timeout(Duration::from_secs(15)) {
            Ok(Note::Registered) => break,
            Ok(Note::Refused(why)) => {
                return Err(Error::msg(format!("the server refused us: {why}")));
            }
            Ok(Note::ServerClosed) => {
                return Err(Error::msg(
                    "server closed the connection before accepting our name",
                ));
            }
            Ok(note @ (Note::Line(_) | Note::InputEnd)) => early.push(note),
            Err(_) => return Err(Error::msg("no user list from the server within 15 s")),
        }
    }
    {
        let udp = udp.try_clone().context("clone the UDP socket")?;
        let (users, out) = (Arc::clone(&users), out.clone());
        thread::Builder::new()
            .name("udp-recv".into())
            .spawn(move || receive_udp(&udp, &users, &out))
            .context("start the UDP receive thread")?;
    }
    let udp_local = udp.local_addr().context("read the local UDP address")?;
    out.emit(
        Event::new(
            Level::Info,
            format!(
                "connected to {server} from {local} as {name}; peer-to-peer on UDP {udp_local}. \
                 Commands: #ls, @name: msg, or a message for the room"
            ),
        )
        .field("event", "ready")
        .field("name", &name),
    );

    let session = Session {
        tcp: Arc::clone(&tcp),
        udp,
        udp_port: config.udp_port,
        users,
        framed,
        out: out.clone(),
    };
    let result = match editor.as_mut() {
        Some(ed) => terminal_loop(ed, &session, &closed),
        None => piped_loop(
            early.into_iter().map(Ok).chain(notes.iter().map(Ok)),
            &session,
        ),
    };
    let _ = tcp.shutdown(Shutdown::Both);
    result
}

fn connect(server: SocketAddr, bind: Option<IpAddr>) -> Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .context("create TCP socket")?;
    if let Some(ip) = bind {
        // Binding before connect picks the source address the server (and its user list) sees.
        let addr = SocketAddr::new(ip, 0);
        s.bind(&addr.into())
            .with_context(|| format!("bind {addr}"))?;
    }
    s.connect_timeout(&server.into(), Duration::from_secs(10))
        .with_context(|| format!("connect to chat server {server}"))?;
    let tcp: TcpStream = s.into();
    // Each message its own segment: the handout's server takes one read as one message.
    tcp.set_nodelay(true).context("set TCP_NODELAY")?;
    Ok(tcp)
}

/// The peer-to-peer socket: on `--bind`'s address, else on any address of the TCP family.
fn udp_socket(local: IpAddr, bound: bool, port: u16) -> Result<UdpSocket> {
    let ip = match (bound, local) {
        (true, ip) => ip,
        (false, IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (false, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let addr = SocketAddr::new(ip, port);
    let socket = if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        labnet::sock::dual_stack_udp(port)
    } else {
        // SO_REUSEADDR as in the handout, so a restarted client gets its port back at once.
        labnet::sock::udp_receiver(addr)
    };
    socket.with_context(|| format!("bind UDP {addr}"))
}

fn read_stdin(tx: &Sender<Note>) {
    let stdin = io::stdin();
    let mut lock = stdin.lock();
    let mut line = String::new();
    loop {
        line.clear();
        match lock.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = line.trim_end_matches(['\r', '\n']).to_owned();
                if tx.send(Note::Line(text)).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Note::InputEnd);
}

/// One line of input before the chat starts (the name, a piped password).
fn ask_line(
    editor: &mut Option<rustyline::DefaultEditor>,
    notes: &Receiver<Note>,
    prompt: &str,
) -> Result<String> {
    if let Some(ed) = editor {
        return ed
            .readline(prompt)
            .map(|l| l.trim().to_owned())
            .map_err(|e| Error::other("read from the terminal", e));
    }
    match notes.recv() {
        Ok(Note::Line(l)) => Ok(l.trim().to_owned()),
        _ => Err(Error::msg(
            "input ended before the name (or password) was given",
        )),
    }
}

fn receive_tcp(
    tcp: &TcpStream,
    own_name: &str,
    users: &Users,
    framed: &AtomicBool,
    out: &Out,
    tx: &Sender<Note>,
    terminal: bool,
) {
    let mut stream = ServerStream::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut registered = false;
    // Our address as the server's first user list gave it: every later list must hold us there.
    let mut own_ip: Option<String> = None;
    loop {
        // A read that ended with a user list is held by the splitter until the next read says
        // whether a peer's text went on after it; a quiet moment means it was the server's.
        let holding = stream.is_holding();
        let _ = tcp.set_read_timeout(holding.then_some(HOLD));
        let (msgs, end) = match (&*tcp).read(&mut buf) {
            Ok(0) => (stream.flush(), true),
            Ok(n) => (stream.push(&buf[..n]), false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if holding && is_timeout(&e) => (stream.flush(), false),
            Err(_) => (stream.flush(), true),
        };
        for msg in msgs {
            match msg {
                ServerMsg::Users(list) => {
                    if let Err(why) = check_own_entry(&list, own_name, own_ip.as_deref()) {
                        out.emit(
                            Event::new(
                                Level::Warn,
                                format!(
                                    "ignored a user list that is not from the server ({why}): {}",
                                    escaped(&users_text(&list))
                                ),
                            )
                            .field("event", "forged_users")
                            .field("users", users_json(&list)),
                        );
                        continue;
                    }
                    if own_ip.is_none() {
                        own_ip = list
                            .iter()
                            .find(|(n, _)| n == own_name)
                            .map(|(_, ip)| ip.clone());
                    }
                    let old = {
                        let mut guard = match users.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        std::mem::replace(&mut *guard, list.clone())
                    };
                    if !registered {
                        registered = true;
                        out.emit(
                            Event::new(
                                Level::Info,
                                format!("registered; {}", escaped(&users_text(&list))),
                            )
                            .field("event", "users")
                            .field("users", users_json(&list)),
                        );
                        let _ = tx.send(Note::Registered);
                        continue;
                    }
                    report_changes(&old, &list, own_name, out);
                }
                ServerMsg::Room { from, text } => {
                    let shown = match &from {
                        Some(f) => format!("{f}: {text}"),
                        None => text.clone(),
                    };
                    // Another user's bytes: ESC, CR, BEL and friends are shown, not obeyed.
                    let shown = escaped(&shown);
                    out.emit(
                        Event::new(Level::Recv, shown)
                            .field("event", "room")
                            .field("from", from)
                            .field("text", text),
                    );
                }
                ServerMsg::Error(why) => {
                    out.emit(
                        Event::new(Level::Error, format!("server: {}", escaped(&why)))
                            .field("event", "server_error")
                            .field("why", &why),
                    );
                    if !registered {
                        let _ = tx.send(Note::Refused(why));
                    }
                }
                ServerMsg::BadUsers(line) => out.emit(
                    Event::new(
                        Level::Warn,
                        format!(
                            "unreadable user list: {}",
                            labnet::log::printable(line.as_bytes())
                        ),
                    )
                    .field("event", "bad_users"),
                ),
            }
        }
        framed.store(stream.is_framed(), Ordering::Relaxed);
        if end {
            break;
        }
    }
    if LEAVING.load(Ordering::SeqCst) {
        return;
    }
    let hint = if terminal {
        " (press Enter to quit)"
    } else {
        ""
    };
    out.emit(
        Event::new(Level::Info, format!("server closed the connection{hint}"))
            .field("event", "close")
            .field("closed_by", "server"),
    );
    let _ = tx.send(Note::ServerClosed);
}

/// How long a held user list waits for more bytes before it counts as the server's.
const HOLD: Duration = Duration::from_millis(100);

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Text from the network made safe for one line of a terminal (see
/// [`labnet::log::escape_controls`]).
fn escaped(text: &str) -> String {
    labnet::log::escape_controls(text).into_owned()
}

/// Every user list from the server holds us: after a join the server lists everyone, us
/// included, at the address it sees for us. A list without our name, or with us at another
/// address than the first list gave, was written by someone else (a user list typed into
/// a room message, cut out by TCP at just the right place).
fn check_own_entry(
    list: &[(String, String)],
    own_name: &str,
    own_ip: Option<&str>,
) -> std::result::Result<(), String> {
    match (list.iter().find(|(n, _)| n == own_name), own_ip) {
        (None, _) => Err(format!("it does not list us, {own_name}")),
        (Some((_, ip)), Some(own)) if ip != own => Err(format!(
            "it lists us, {own_name}, at {} instead of {own}",
            escaped(ip)
        )),
        _ => Ok(()),
    }
}

/// Prints who joined and who left between two user lists.
fn report_changes(old: &[(String, String)], new: &[(String, String)], own: &str, out: &Out) {
    for (name, ip) in new {
        if name != own && !old.iter().any(|(n, _)| n == name) {
            out.emit(
                Event::new(
                    Level::Info,
                    format!("{} joined ({})", escaped(name), escaped(ip)),
                )
                .field("event", "join")
                .field("name", name)
                .field("ip", ip),
            );
        }
    }
    for (name, ip) in old {
        if !new.iter().any(|(n, _)| n == name) {
            out.emit(
                Event::new(Level::Info, format!("{} left", escaped(name)))
                    .field("event", "leave")
                    .field("name", name)
                    .field("ip", ip),
            );
        }
    }
}

fn name_of(users: &Users, ip: IpAddr) -> String {
    let ip = labnet::sock::unmap(SocketAddr::new(ip, 0)).ip();
    let guard = match users.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    guard
        .iter()
        .find(|(_, a)| a.parse::<IpAddr>().ok() == Some(ip))
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| chat::NON_REGISTERED.to_owned())
}

fn receive_udp(udp: &UdpSocket, users: &Users, out: &Out) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = match udp.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let from = labnet::sock::unmap(from);
        let name = name_of(users, from.ip());
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        out.emit(
            Event::new(
                Level::Recv,
                // The handout's client sends the space after `@name:` too; not worth showing.
                format!(
                    "P2P from {} ({}): {}",
                    escaped(&name),
                    from.ip(),
                    escaped(text.trim_start())
                ),
            )
            .field("event", "p2p")
            .field("from", &name)
            .field("ip", from.ip().to_string())
            .field("text", &text),
        );
    }
}

struct Session {
    tcp: Arc<TcpStream>,
    udp: UdpSocket,
    udp_port: u16,
    users: Users,
    framed: Arc<AtomicBool>,
    out: Out,
}

impl Session {
    /// One command line: `#ls`, `@name: msg`, or a room message.
    fn command(&self, line: &str) -> Result<()> {
        if line.trim().is_empty() {
            return Ok(());
        }
        if line.trim() == "#ls" {
            let list = match self.users.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            };
            self.out.emit(
                Event::new(Level::Info, escaped(&users_text(&list)))
                    .field("event", "list")
                    .field("users", users_json(&list)),
            );
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix('@') {
            return self.private(rest);
        }
        // One write per message; `\n` only for a server that frames its own messages with it.
        let mut bytes = line.as_bytes().to_vec();
        if self.framed.load(Ordering::Relaxed) {
            bytes.push(b'\n');
        }
        (&*self.tcp)
            .write_all(&bytes)
            .context("send a message to the server")?;
        self.out.emit(
            Event::new(Level::Send, format!("to the room: {line}"))
                .field("event", "sent")
                .field("text", line),
        );
        Ok(())
    }

    /// `@name: msg` → one UDP datagram to name's IP, carrying what the handout's client sends:
    /// `temp = usr_input.split(':'); receiving_client = temp[0][1:].strip(); msg =
    /// ':'.join(temp[1:])`, i.e. everything after the first colon, untouched (` msg`), so that a
    /// handout peer prints `from alice: msg` as it would for a classmate's client.
    fn private(&self, rest: &str) -> Result<()> {
        let Some((to, text)) = rest.split_once(':') else {
            self.warn("usage: @name: message");
            return Ok(());
        };
        let to = to.trim();
        let ip = {
            let guard = match self.users.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            guard
                .iter()
                .find(|(n, _)| n == to)
                .map(|(_, ip)| ip.clone())
        };
        let Some(ip) = ip else {
            self.warn(&format!("{to} is not registered"));
            return Ok(());
        };
        let Ok(ip) = ip.parse::<IpAddr>() else {
            self.warn(&format!("{to} has no usable address ({ip})"));
            return Ok(());
        };
        let local_v6 = self.udp.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
        let dest = match (ip, local_v6) {
            // A dual-stack socket reaches an IPv4 peer at its v4-mapped address.
            (IpAddr::V4(v4), true) => {
                SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), self.udp_port)
            }
            _ => SocketAddr::new(ip, self.udp_port),
        };
        match self.udp.send_to(text.as_bytes(), dest) {
            Ok(_) => self.out.emit(
                // The datagram keeps the space after the colon; the line shows one, not two.
                Event::new(
                    Level::Send,
                    format!("P2P to {to} ({ip}): {}", text.trim_start()),
                )
                .field("event", "p2p_sent")
                .field("to", to)
                .field("ip", ip.to_string())
                .field("text", text),
            ),
            Err(e) => self.warn(&format!("send to {to} at {dest}: {e}")),
        }
        Ok(())
    }

    fn warn(&self, msg: &str) {
        self.out
            .emit(Event::new(Level::Warn, msg).field("event", "warning"));
    }

    fn leave(&self) {
        self.out.emit(
            Event::new(Level::Info, "leaving the chat")
                .field("event", "close")
                .field("closed_by", "client"),
        );
        LEAVING.store(true, Ordering::SeqCst);
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

fn piped_loop(
    mut notes: impl Iterator<Item = std::result::Result<Note, ()>>,
    session: &Session,
) -> Result<()> {
    loop {
        match notes.next().unwrap_or(Err(())) {
            Ok(Note::Line(line)) => session.command(&line)?,
            Ok(Note::InputEnd) | Err(_) => {
                session.leave();
                return Ok(());
            }
            Ok(Note::ServerClosed) => return Err(Error::msg("server closed the connection")),
            Ok(Note::Registered) | Ok(Note::Refused(_)) => {}
        }
    }
}

fn terminal_loop(
    editor: &mut rustyline::DefaultEditor,
    session: &Session,
    closed: &AtomicBool,
) -> Result<()> {
    loop {
        let line = editor.readline("> ");
        if closed.load(Ordering::SeqCst) {
            return Err(Error::msg("server closed the connection"));
        }
        match line {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                session.command(&line)?;
            }
            Err(rustyline::error::ReadlineError::Eof)
            | Err(rustyline::error::ReadlineError::Interrupted) => {
                session.leave();
                return Ok(());
            }
            Err(e) => return Err(Error::other("read from the terminal", e)),
        }
    }
}
