//! The chat lab: the student's `chatserver.py` and `chatclient.py` in the chat lab
//! (webserver, client1–3), reached as `chat.ttm4200.com:5000` as the handout says, and the
//! captures of Q13.
//!
//! - Part "server": the student's server on webserver; three handout-style clients (the handout's
//!   protocol, written by us in Python: [`PEER`]) join from client1–3 one after the other, talk in
//!   the room and one leaves; then our `chat-client` joins and chats through it. Every step waits
//!   for what the previous one caused (the list that follows a join, the relayed message), as a
//!   student at three terminals does: the handout's messages are unframed, and two sent too close
//!   together merge in one `recv`.
//! - Part "client": the student's client on client1 and client2 against our `chat-server`, with
//!   our `chat-client` on client3 as the third user: registration, `#ls`, the room both ways, a
//!   `@name:` message over UDP to the right peer (our client reports the datagram's source), and
//!   a peer-to-peer message received and shown with its sender's name.
//! - Part "auth" (extra credit, Q14): graded only when a `chatserver*` program mentions a password
//!   or authentication; an intruder with an unregistered name and a made-up password must not be
//!   admitted (no user list naming it), and the server must keep listening.
//! - Part "captures" (Q13): the pcap or pcapng files are read with [`labnet::pcap`].
//!
//! Names and texts are drawn from the seed, so a program that prints fixed text fails.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use labnet::pcap;
use labnet::topo::CHAT;
use labnet::wire::chat::{ServerMsg, ServerStream};
use labnet::{Context, Error, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::lab::{self, Lab};
use crate::report::{Grade, Marks};
use crate::sandbox::{self, Finished, Lane, Limits, Running, clip};
use crate::steps::{self, Proto};
use crate::submission::Submission;
use crate::tp3::Grader;
use crate::{Options, Progress};

/// The handout's name of the chat server.
pub const SERVER_NAME: &str = "chat.ttm4200.com";
/// The host the server runs on.
const SERVER_HOST: &str = "webserver";
/// The chat's port: TCP to the server, UDP between the clients.
const PORT: u16 = labnet::topo::CHAT_PORT;
/// The client hosts, in the order users join.
const CLIENTS: [&str; 3] = ["client1", "client2", "client3"];
/// Longest wait for what one step should cause (a list after a join, a relayed message).
const STEP: Duration = Duration::from_secs(3);
/// How long a message that must not arrive (an echo to its sender) is given to arrive anyway.
const QUIET: Duration = Duration::from_millis(500);
/// Longest wait for a program to listen on its port.
const LISTEN: Duration = Duration::from_secs(10);
/// The grader's handout-style client (see its docstring).
pub const PEER: &str = include_str!("../peers/handout_chatclient.py");
/// Words in a server's source that say it authenticates its users (Q14).
const AUTH_WORDS: &[&str] = &["password", "passwd", "authenticat", "credential"];

/// Grades the parts of the chat lab that `opts` asks for.
pub fn grade(sub: &Submission, lane: &Lane, opts: &Options, progress: &Progress) -> Result<Grade> {
    let mut marks = Marks::new(&opts.rubric, "chat", &opts.parts);
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let chat = Chat {
        g: Grader {
            sub,
            lane,
            opts,
            limits: Limits::default(),
        },
    };
    if ["server", "client", "auth"].iter().any(|p| marks.wants(p)) {
        let mut lab = Lab::up(&CHAT, lane)?;
        if marks.wants("server") {
            progress
                .say("server: chatserver.py on webserver, three handout-style clients and ours");
            chat.server(&mut lab, &mut marks, &mut rng)?;
            chat.clean(&mut lab);
        }
        if marks.wants("client") {
            progress.say("client: chatclient.py on client1 and client2 against our chat-server");
            chat.client(&mut lab, &mut marks, &mut rng)?;
            chat.clean(&mut lab);
        }
        if marks.wants("auth") {
            progress.say("auth: an unregistered user must not be admitted (extra credit)");
            chat.auth(&mut lab, &mut marks, &mut rng)?;
            chat.clean(&mut lab);
        }
    }
    if marks.wants("captures") {
        progress.say("captures: chatserver.pcap, client1.pcap, client2.pcap (Q13)");
        captures(sub, &mut marks);
    }
    Ok(marks.grade(&sub.name, &sub.ids))
}

/// The lab address of a host of the chat topology.
fn ip(host: &str) -> String {
    CHAT.host(host)
        .map(|h| h.ipv4().to_string())
        .unwrap_or_default()
}

struct Chat<'a> {
    g: Grader<'a>,
}

/// One of the grader's clients: the handout-style Python client, our `chat-client`, or a
/// student's client; all print what they receive.
struct Client {
    name: String,
    run: Running,
}

impl Client {
    fn out(&self) -> String {
        self.run.stdout()
    }

    /// How much it printed so far: waits look at what comes after.
    fn mark(&self) -> usize {
        self.run.stdout().len()
    }

    fn send(&mut self, line: &str) {
        self.run.send_line(line);
    }

    /// Waits until what it printed after `from` satisfies `f`.
    fn wait_after(&self, from: usize, timeout: Duration, f: impl Fn(&str) -> bool) -> bool {
        self.run
            .wait_output(timeout, |out| f(out.get(from..).unwrap_or(out)))
    }

    /// Waits until one of the JSON events it printed after `from` satisfies `f`.
    fn wait_event(&self, from: usize, timeout: Duration, f: impl Fn(&Value) -> bool) -> bool {
        self.wait_after(from, timeout, |out| steps::json_lines(out).iter().any(&f))
    }

    /// The last user list it printed after `from` (handout-style peer or our client).
    fn last_users(&self, from: usize) -> Option<BTreeMap<String, String>> {
        let out = self.out();
        last_users(out.get(from..).unwrap_or(&out))
    }

    /// True when it printed, after `from`, a room message containing `text`.
    fn got_room(&self, from: usize, text: &str) -> bool {
        let out = self.out();
        got_room(out.get(from..).unwrap_or(&out), text)
    }
}

/// The last user list among a client's JSON events.
fn last_users(out: &str) -> Option<BTreeMap<String, String>> {
    steps::json_lines(out)
        .iter()
        .filter_map(users_of)
        .next_back()
}

/// True when a client's JSON events hold a room message containing `text`.
fn got_room(out: &str, text: &str) -> bool {
    steps::json_lines(out).iter().any(|v| is_room(v, text))
}

/// The user list of a peer's `users` event (handout-style peer, or our client's registration),
/// IPv4-mapped addresses written plainly.
fn users_of(v: &Value) -> Option<BTreeMap<String, String>> {
    if v["event"] != "users" {
        return None;
    }
    let map = v["users"].as_object()?;
    Some(
        map.iter()
            .map(|(k, ip)| {
                let ip = ip.as_str().map_or_else(|| ip.to_string(), str::to_owned);
                (
                    k.clone(),
                    ip.strip_prefix("::ffff:").unwrap_or(&ip).to_owned(),
                )
            })
            .collect(),
    )
}

/// A room message (handout-style peer or our client) containing `text`.
fn is_room(v: &Value, text: &str) -> bool {
    v["event"] == "room" && v.to_string().contains(text)
}

/// `{alice: 10.20.30.11, bob: 10.20.30.12}` for feedback.
fn show(users: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = users.iter().map(|(n, ip)| format!("{n}: {ip}")).collect();
    format!("{{{}}}", v.join(", "))
}

/// Waits, all clients sharing one deadline, until what each of `clients` printed after its mark
/// satisfies `f`; returns those that never did.
fn wait_all<'c>(clients: &[(&'c Client, usize)], f: impl Fn(&str) -> bool) -> Vec<&'c Client> {
    let deadline = Instant::now() + STEP;
    let mut missing = Vec::new();
    for (c, from) in clients {
        let left = deadline.saturating_duration_since(Instant::now());
        if !c.wait_after(*from, left, &f) {
            missing.push(*c);
        }
    }
    missing
}

fn names_of(v: &[&Client]) -> String {
    v.iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(" and ")
}

impl Chat<'_> {
    /// Ends the lane's programs and the course servers between parts.
    fn clean(&self, lab: &mut Lab) {
        steps::empty_lane(self.g.lane);
        lab.stop_servers();
    }

    fn values(&self) -> Vec<(&'static str, String)> {
        vec![("host", SERVER_NAME.to_owned()), ("port", PORT.to_string())]
    }

    /// Writes the handout-style client into the lane, readable by the lane's user.
    fn peer_program(&self) -> Result<PathBuf> {
        let dir = self.g.lane.home.join("peers");
        std::fs::create_dir_all(dir.join(".tmp")).context("create the peers' folder")?;
        let file = dir.join("handout_chatclient.py");
        std::fs::write(&file, PEER).context("write the handout-style chat client")?;
        self.g.lane.own(&dir)?;
        Ok(file)
    }

    /// A handout-style client on `host`, registered (or not) as `name`.
    fn peer(&self, lab: &Lab, host: &str, name: &str, program: &Path) -> Result<Client> {
        let argv = sandbox::os_args(&[
            "/usr/bin/python3",
            &program.display().to_string(),
            SERVER_NAME,
            &PORT.to_string(),
        ]);
        let cwd = program.parent().unwrap_or(Path::new("/"));
        let mut run = lab.student(self.g.lane, host, cwd, &argv, true, &self.g.limits)?;
        run.send_line(name);
        Ok(Client {
            name: name.to_owned(),
            run,
        })
    }

    /// Our chat-client on `host` (trusted: run as the grader), with JSON events.
    fn ours(&self, lab: &Lab, host: &str, name: &str) -> Result<Client> {
        let mut cmd = lab.bed.command(host, lab::tool("chat-client")?);
        cmd.args(["--server", SERVER_NAME, "--name", name, "--json"]);
        Ok(Client {
            name: name.to_owned(),
            run: Running::start(cmd, true, 8 * 1024 * 1024)?,
        })
    }

    /// Part "server".
    fn server(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let program = match self.g.program("chatserver", "chatserver")? {
            Ok(p) => p,
            Err(why) => {
                marks.fail_rest("server", &why);
                return Ok(());
            }
        };
        let names = steps::names(rng, 4);
        let texts: Vec<String> = (0..4).map(|_| steps::text(rng)).collect();
        let argv = self.g.argv("server", "{prog}", &program, &self.values());
        let cwd = program.parent().unwrap_or(Path::new("/"));
        let mut server =
            lab.student(self.g.lane, SERVER_HOST, cwd, &argv, false, &self.g.limits)?;
        if !steps::wait_bound(lab, SERVER_HOST, Proto::Tcp, PORT, &mut server, LISTEN) {
            let f = steps::stop_all(self.g.lane, &mut [&mut server]);
            marks.fail_rest(
                "server",
                &format!(
                    "expected the server to listen on TCP port {PORT} of webserver ({}, the address of gethostbyname(gethostname())); after {} s it did not{}",
                    ip(SERVER_HOST),
                    LISTEN.as_secs(),
                    ended_note(&f[0])
                ),
            );
            return Ok(());
        }
        let peer = self.peer_program()?;

        // Three users join one after the other; after each join every client must get the list.
        let mut clients: Vec<Client> = Vec::new();
        let mut list_fails: Vec<String> = Vec::new();
        for (i, host) in CLIENTS.iter().enumerate() {
            if !server.alive() {
                list_fails.push(format!("the server ended before {} joined", names[i]));
                break;
            }
            let marks_before: Vec<usize> = clients.iter().map(Client::mark).collect();
            clients.push(self.peer(lab, host, &names[i], &peer)?);
            let want: BTreeMap<String, String> = (0..=i)
                .map(|k| (names[k].clone(), ip(CLIENTS[k])))
                .collect();
            let waits: Vec<(&Client, usize)> = clients
                .iter()
                .enumerate()
                .map(|(k, c)| (c, marks_before.get(k).copied().unwrap_or(0)))
                .collect();
            for c in wait_all(&waits, |o| last_users(o).as_ref() == Some(&want)) {
                let seen = match c.last_users(
                    marks_before
                        .get(index_of(&clients, c))
                        .copied()
                        .unwrap_or(0),
                ) {
                    Some(u) => format!("the list {}", show(&u)),
                    None => "no user list".into(),
                };
                list_fails.push(format!("after {} joined, {} got {seen}", names[i], c.name));
            }
        }
        marks.check(
            "chat.server.list",
            if list_fails.is_empty() {
                Ok(format!(
                    "after each of the 3 joins every client got the list, ending with {}",
                    show(&(0..3).map(|k| (names[k].clone(), ip(CLIENTS[k]))).collect())
                ))
            } else {
                Err(format!(
                    "expected '!' and the JSON of every name with its IP address, sent to every client after each join; {}",
                    list_fails.join("; ")
                ))
            },
        );

        if let Some(why) = self.gone(&mut server, &clients, "the room") {
            marks.fail_rest("server", &why);
            self.stop_room(&mut server, &mut clients);
            return Ok(());
        }
        // The room: two messages, each to the two others and not back to its sender.
        let mut room_fails = Vec::new();
        let from: Vec<usize> = clients.iter().map(Client::mark).collect();
        for (sender, text) in [(0usize, &texts[0]), (1, &texts[1])] {
            clients[sender].send(text);
            let others: Vec<(&Client, usize)> = (0..3)
                .filter(|k| *k != sender)
                .map(|k| (&clients[k], from[k]))
                .collect();
            let missing = wait_all(&others, |o| got_room(o, text));
            if !missing.is_empty() {
                room_fails.push(format!(
                    "{}'s message '{text}' did not reach {}",
                    clients[sender].name,
                    names_of(&missing)
                ));
            }
        }
        std::thread::sleep(QUIET);
        for (sender, text) in [(0usize, &texts[0]), (1, &texts[1])] {
            if clients[sender].got_room(from[sender], text) {
                room_fails.push(format!(
                    "{}'s message '{text}' came back to {} itself",
                    clients[sender].name, clients[sender].name
                ));
            }
        }
        marks.check(
            "chat.server.room",
            if room_fails.is_empty() {
                Ok(format!(
                    "{}'s and {}'s messages reached the two others, not their senders",
                    names[0], names[1]
                ))
            } else {
                Err(format!(
                    "expected a room message to reach every other client and not its sender; {}",
                    room_fails.join("; ")
                ))
            },
        );

        if let Some(why) = self.gone(&mut server, &clients, "the leave") {
            marks.fail_rest("server", &why);
            self.stop_room(&mut server, &mut clients);
            return Ok(());
        }
        // The third user leaves: the two others get the list without them.
        let from: Vec<usize> = clients.iter().map(Client::mark).collect();
        clients[2].run.close_stdin();
        let want: BTreeMap<String, String> =
            (0..2).map(|k| (names[k].clone(), ip(CLIENTS[k]))).collect();
        let stay = [(&clients[0], from[0]), (&clients[1], from[1])];
        let missing = wait_all(&stay, |o| last_users(o).as_ref() == Some(&want));
        marks.check(
            "chat.server.leave",
            if missing.is_empty() {
                Ok(format!(
                    "when {} left, {} and {} got {}",
                    names[2],
                    names[0],
                    names[1],
                    show(&want)
                ))
            } else {
                Err(format!(
                    "expected the list without {} ({}) at the others when {} closed its connection; {} got {}",
                    names[2],
                    show(&want),
                    names[2],
                    names_of(&missing),
                    missing
                        .first()
                        .and_then(|c| c.last_users(from[index_of(&clients, c)]))
                        .map_or("no new list".into(), |u| show(&u))
                ))
            },
        );

        if let Some(why) = self.gone(&mut server, &clients, "our client's join") {
            marks.fail_rest("server", &why);
            self.stop_room(&mut server, &mut clients);
            return Ok(());
        }
        // Our chat-client joins from client3 and chats through the student's server.
        let from: Vec<usize> = clients.iter().map(Client::mark).collect();
        let mut ours = self.ours(lab, "client3", &names[3])?;
        let mut fails = Vec::new();
        let registered = ours.wait_event(0, STEP, |v| {
            users_of(v).is_some_and(|u| u.contains_key(&names[3]))
        });
        if !registered {
            fails.push(format!(
                "our chat-client got no user list naming {} after sending its name (it printed {})",
                names[3],
                steps::sample(&ours.out())
            ));
        }
        let stay = [(&clients[0], from[0]), (&clients[1], from[1])];
        let missing = wait_all(&stay, |o| {
            last_users(o).is_some_and(|u| u.contains_key(&names[3]))
        });
        if !missing.is_empty() {
            fails.push(format!(
                "{} got no list naming {}",
                names_of(&missing),
                names[3]
            ));
        }
        let mark_ours = ours.mark();
        ours.send(&texts[2]);
        let missing = wait_all(&stay, |o| got_room(o, &texts[2]));
        if !missing.is_empty() {
            fails.push(format!(
                "our client's message '{}' did not reach {}",
                texts[2],
                names_of(&missing)
            ));
        }
        clients[0].send(&texts[3]);
        if !ours.wait_event(mark_ours, STEP, |v| is_room(v, &texts[3])) {
            fails.push(format!(
                "{}'s message '{}' did not reach our client",
                names[0], texts[3]
            ));
        }
        marks.check(
            "chat.server.ours",
            if fails.is_empty() {
                Ok(format!(
                    "our chat-client registered as {}, was listed to the others and chatted both ways",
                    names[3]
                ))
            } else {
                Err(format!(
                    "expected the kit's chat-client to work with the server as the handout's does; {}",
                    fails.join("; ")
                ))
            },
        );
        ours.run.close_stdin();
        self.stop_room(&mut server, &mut clients);
        ours.run.stop();
        Ok(())
    }

    /// Why the rest of part "server" cannot pass: the server ended, or it never sent anything
    /// to any client (every later step would only wait out its timeout).
    /// Stops the student's server and the clients of the server part, with their processes.
    fn stop_room(&self, server: &mut Running, clients: &mut [Client]) {
        let mut runs: Vec<&mut Running> = vec![server];
        runs.extend(clients.iter_mut().map(|c| &mut c.run));
        steps::stop_all(self.g.lane, &mut runs);
    }

    fn gone(&self, server: &mut Running, clients: &[Client], step: &str) -> Option<String> {
        if !server.alive() {
            let f = server.stop();
            return Some(format!(
                "expected the server to keep serving; it ended before {step}{}",
                ended_note(&f)
            ));
        }
        let heard = clients.iter().any(|c| {
            steps::json_lines(&c.out())
                .iter()
                .any(|v| v["event"] == "users" || v["event"] == "room")
        });
        (!heard).then(|| {
            format!(
                "expected the server to answer its clients; it accepted {} connections but sent none of them anything (no user list, no message), so {step} and what follows cannot work",
                clients.len()
            )
        })
    }

    /// Part "client".
    fn client(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let program = match self.g.program("chatclient", "chatclient")? {
            Ok(p) => p,
            Err(why) => {
                marks.fail_rest("client", &why);
                return Ok(());
            }
        };
        let names = steps::names(rng, 3);
        let texts: Vec<String> = (0..4).map(|_| steps::text(rng)).collect();
        lab.server(
            SERVER_HOST,
            "chat-server",
            &strings(&["--port", &PORT.to_string(), "--json", "--log-messages"]),
            "listening",
        )?;
        let argv = self.g.argv("client", "{prog}", &program, &self.values());
        let cwd = program.parent().unwrap_or(Path::new("/"));

        // The student's client on client1 and client2: the name is the first line typed.
        let mut students: Vec<Client> = Vec::new();
        for (i, host) in CLIENTS[..2].iter().enumerate() {
            let mut run = lab.student(self.g.lane, host, cwd, &argv, true, &self.g.limits)?;
            run.send_line(&names[i]);
            let name = names[i].clone();
            let want_ip = ip(host);
            let joined = lab.wait_event("chat-server", Duration::from_secs(5), |v| {
                v["event"] == "join" && v["name"] == name.as_str() && v["ip"] == want_ip.as_str()
            });
            if !joined {
                let mut runs: Vec<&mut Running> = students.iter_mut().map(|c| &mut c.run).collect();
                runs.push(&mut run);
                let finished = steps::stop_all(self.g.lane, &mut runs);
                let f = finished.last().cloned().unwrap_or_default();
                marks.fail_rest(
                    "client",
                    &format!(
                        "expected the client on {host} to connect to {SERVER_NAME}:{PORT} and register the name typed first ('{}'); our server saw no such user{}",
                        names[i],
                        ended_note(&f)
                    ),
                );
                return Ok(());
            }
            students.push(Client {
                name: names[i].clone(),
                run,
            });
            // Every client must have read the list that followed this join before the next
            // list is sent: two lists read at once make the handout's json.loads fail, and its
            // receiving thread dies ('#ls' shows when it has read it).
            for s in &mut students {
                let _ = ls_shows(s, &names[..=i]);
            }
        }
        let mut ours = self.ours(lab, "client3", &names[2])?;
        if !ours.wait_event(0, Duration::from_secs(10), |v| users_of(v).is_some()) {
            return Err(Error::msg(format!(
                "the grader's own chat-client did not register with the grader's chat-server: {}",
                steps::sample(&ours.out())
            )));
        }
        let mut ls = Vec::new();
        for s in &mut students {
            let (ok, seen) = ls_shows(s, &names);
            ls.push((s.name.clone(), ok, seen));
        }
        marks.check(
            "chat.client.register",
            if ls.iter().all(|(_, ok, _)| *ok) {
                Ok(format!(
                    "{} and {} registered, and '#ls' showed {}",
                    names[0],
                    names[1],
                    names.join(", ")
                ))
            } else {
                let bad: Vec<String> = ls
                    .iter()
                    .filter(|(_, ok, _)| !ok)
                    .map(|(n, _, seen)| format!("{n}'s client printed {seen}"))
                    .collect();
                Err(format!(
                    "both registered; expected '#ls' to list the active users {}; {}",
                    names.join(", "),
                    bad.join("; ")
                ))
            },
        );

        // The room: our client's message shown by both, and a typed line sent to the room.
        let mut fails = Vec::new();
        let from: Vec<usize> = students.iter().map(Client::mark).collect();
        ours.send(&texts[0]);
        let waits: Vec<(&Client, usize)> = students.iter().zip(from.iter().copied()).collect();
        for c in wait_all(&waits, |o| o.contains(&texts[0])) {
            fails.push(format!(
                "{}'s client did not show '{}' from {} (it printed {})",
                c.name,
                texts[0],
                names[2],
                steps::sample(c.out().get(from[index_of(&students, c)]..).unwrap_or(""))
            ));
        }
        let mark_ours = ours.mark();
        students[0].send(&texts[1]);
        let (name0, text1) = (names[0].clone(), texts[1].clone());
        let reached_server = lab.wait_event("chat-server", STEP, |v| {
            v["event"] == "room"
                && v["from"] == name0.as_str()
                && v["text"].as_str().is_some_and(|t| t.contains(&text1))
        });
        if !reached_server {
            fails.push(format!(
                "the line '{}' typed into {}'s client never reached the room",
                texts[1], names[0]
            ));
        } else if !ours.wait_event(mark_ours, STEP, |v| is_room(v, &texts[1])) {
            fails.push(format!(
                "'{}' reached the server but not our client",
                texts[1]
            ));
        }
        marks.check(
            "chat.client.room",
            if fails.is_empty() {
                Ok(format!(
                    "both showed {}'s room message, and {}'s typed line reached the room",
                    names[2], names[0]
                ))
            } else {
                Err(format!(
                    "expected room messages shown and typed lines sent to the room; {}",
                    fails.join("; ")
                ))
            },
        );

        // P2P out: '@ours: text' typed into the first client must reach our client by UDP from
        // client1's address.
        let mark_ours = ours.mark();
        students[0].send(&format!("@{}: {}", names[2], texts[2]));
        let text2 = texts[2].clone();
        let got = ours.wait_event(mark_ours, STEP, |v| {
            v["event"] == "p2p" && v["text"].as_str().is_some_and(|t| t.contains(&text2))
        });
        let p2p = steps::json_lines(ours.out().get(mark_ours..).unwrap_or(""))
            .into_iter()
            .find(|v| v["event"] == "p2p");
        marks.check(
            "chat.client.p2p_send",
            match (got, p2p) {
                (true, Some(v)) if v["ip"] == ip("client1").as_str() => Ok(format!(
                    "'@{}: {}' arrived at {} ({}:{PORT}) as one UDP datagram from {}",
                    names[2],
                    texts[2],
                    names[2],
                    ip("client3"),
                    ip("client1")
                )),
                (true, Some(v)) => Err(format!(
                    "expected the datagram from {}'s address {}; it came from {}",
                    names[0],
                    ip("client1"),
                    v["ip"]
                )),
                _ => Err(format!(
                    "expected '@{}: {}' typed into {}'s client to arrive as a UDP datagram at {} ({}:{PORT}, from the user list); nothing arrived there{}",
                    names[2],
                    texts[2],
                    names[0],
                    names[2],
                    ip("client3"),
                    match students[0].out().lines().last() {
                        Some(l) if !l.trim().is_empty() => format!(" (the client's last line: '{}')", clip(l.trim(), 80)),
                        _ => String::new(),
                    }
                )),
            },
        );

        // P2P in: our client sends to the first student client, which must show the text with
        // our client's name.
        let from0 = students[0].mark();
        ours.send(&format!("@{}: {}", names[0], texts[3]));
        let (text3, name2) = (texts[3].clone(), names[2].clone());
        let shown = students[0].wait_after(from0, STEP, |o| {
            o.lines().any(|l| l.contains(&text3) && l.contains(&name2))
        });
        let out0 = students[0].out();
        let after = out0.get(from0..).unwrap_or("");
        marks.check(
            "chat.client.p2p_recv",
            if shown {
                Ok(format!(
                    "showed '{}'",
                    steps::line_with(after, &texts[3]).unwrap_or_default()
                ))
            } else {
                Err(format!(
                    "expected the UDP message '{}' from {} ({}) shown with the sender's name {}; {}",
                    texts[3],
                    names[2],
                    ip("client3"),
                    names[2],
                    match steps::line_with(after, &texts[3]) {
                        Some(l) => format!("it showed '{l}', without the name"),
                        None => format!("it printed {}", steps::sample(after)),
                    }
                ))
            },
        );
        ours.run.close_stdin();
        let mut runs: Vec<&mut Running> = students.iter_mut().map(|c| &mut c.run).collect();
        steps::stop_all(self.g.lane, &mut runs);
        ours.run.stop();
        Ok(())
    }

    /// The server program that authenticates, if any: a `chatserver*` program whose source
    /// mentions a password or authentication (one with "auth" in its name first).
    fn auth_program(&self) -> Option<PathBuf> {
        let mut found: Vec<&PathBuf> = self
            .g
            .sub
            .files()
            .iter()
            .filter(|f| {
                let n = base_name(f);
                n.starts_with("chatserver") && !n.ends_with(".pcap") && !n.ends_with(".pcapng")
            })
            .filter(|f| {
                let src = std::fs::read(self.g.sub.root.join(f)).unwrap_or_default();
                let src = String::from_utf8_lossy(&src).to_ascii_lowercase();
                AUTH_WORDS.iter().any(|w| src.contains(w))
            })
            .collect();
        found.sort_by_key(|f| {
            (
                !base_name(f).contains("auth"),
                !base_name(f).ends_with(".py"),
            )
        });
        found.first().map(|f| (*f).clone())
    }

    /// Part "auth".
    fn auth(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let Some(rel) = self.auth_program() else {
            marks.check(
                "chat.auth.refuse",
                Err(format!(
                    "not attempted: no chatserver* program mentions a password or authentication (looked for {}); the optional exercise (Q14) earns extra credit",
                    AUTH_WORDS.join(", ")
                )),
            );
            return Ok(());
        };
        let dir = self
            .g
            .lane
            .stage("chatauth", &self.g.sub.root, self.g.sub.files())?;
        let program = dir.join(&rel);
        if let Err(why) = sandbox::prepare(self.g.lane, &program, &self.g.limits) {
            marks.check(
                "chat.auth.refuse",
                Err(format!("{} cannot run: {why}", rel.display())),
            );
            return Ok(());
        }
        let argv = self.g.argv("auth", "{prog}", &program, &self.values());
        let cwd = program.parent().unwrap_or(&dir);
        let mut server =
            lab.student(self.g.lane, SERVER_HOST, cwd, &argv, false, &self.g.limits)?;
        if !steps::wait_bound(lab, SERVER_HOST, Proto::Tcp, PORT, &mut server, LISTEN) {
            let f = steps::stop_all(self.g.lane, &mut [&mut server]);
            marks.check(
                "chat.auth.refuse",
                Err(format!(
                    "{} mentions authentication; expected it to listen on TCP port {PORT} of webserver; after {} s it did not{}",
                    rel.display(),
                    LISTEN.as_secs(),
                    ended_note(&f[0])
                )),
            );
            return Ok(());
        }
        let name = format!("{}x", steps::names(rng, 1).concat());
        let password: String = (0..12)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        let target = SocketAddr::from((
            CHAT.host(SERVER_HOST)
                .map_or([10, 20, 30, 3].into(), |h| h.ipv4()),
            PORT,
        ));
        let (n, p) = (name.clone(), password.clone());
        let seen = lab::in_namespace(&lab.bed.ns("client3"), move || intrude(target, &n, &p))?;
        let still = steps::bound(lab, SERVER_HOST, Proto::Tcp, PORT);
        steps::stop_all(self.g.lane, &mut [&mut server]);
        marks.check(
            "chat.auth.refuse",
            match seen {
                Err(why) => Err(format!(
                    "{} mentions authentication; the grader could not talk to it: {why}",
                    rel.display()
                )),
                Ok(i) if i.admitted => Err(format!(
                    "{} mentions authentication, but the unregistered user '{name}' (password '{password}') was admitted: the server sent it the user list {}",
                    rel.display(),
                    clip(&i.seen, 120)
                )),
                Ok(_) if !still => Err(format!(
                    "{} stopped listening after the unregistered user '{name}' tried to log in; a server must refuse it and keep serving",
                    rel.display()
                )),
                Ok(i) => Ok(format!(
                    "{}: the unregistered user '{name}' was not admitted ({}); the server kept listening",
                    rel.display(),
                    if i.closed {
                        format!("connection closed; it said '{}'", clip(i.seen.trim(), 80))
                    } else if i.seen.trim().is_empty() {
                        "no user list, nothing said".to_owned()
                    } else {
                        format!("no user list; it said '{}'", clip(i.seen.trim(), 80))
                    }
                )),
            },
        );
        Ok(())
    }
}

/// What an unregistered user saw.
struct Intrusion {
    seen: String,
    closed: bool,
    admitted: bool,
}

/// Connects as an unregistered user: the name first (as the handout's client sends it), then a
/// made-up password in a second message (as a server that asks for one gets it). Admitted means
/// a user list naming it came back.
fn intrude(
    target: SocketAddr,
    name: &str,
    password: &str,
) -> std::result::Result<Intrusion, String> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| format!("connect to {target}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut stream = ServerStream::new();
    let mut seen = Vec::new();
    let mut closed = false;
    let mut admitted = false;
    let _ = s.write_all(name.as_bytes());
    for (wait, then) in [
        (Duration::from_millis(700), Some(password)),
        (Duration::from_millis(2500), None),
    ] {
        let until = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        while !closed && Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    for m in stream.push(&buf[..n]) {
                        if let ServerMsg::Users(list) = m {
                            admitted |= list.iter().any(|(n, _)| n.contains(name));
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => closed = true,
            }
        }
        if let (Some(p), false) = (then, closed) {
            let _ = s.write_all(p.as_bytes());
        }
    }
    let _ = s.shutdown(Shutdown::Both);
    Ok(Intrusion {
        seen: String::from_utf8_lossy(&seen).into_owned(),
        closed,
        admitted,
    })
}

/// Types `#ls` until what the client prints after it names every one of `names`; returns whether
/// it did and a sample of what it printed.
fn ls_shows(c: &mut Client, names: &[String]) -> (bool, String) {
    let deadline = Instant::now() + STEP;
    let mut last = String::new();
    while Instant::now() < deadline {
        let from = c.mark();
        c.send("#ls");
        let ok = c.wait_after(from, Duration::from_millis(400), |o| {
            names.iter().all(|n| o.contains(n.as_str()))
        });
        let out = c.out();
        last = steps::sample(out.get(from..).unwrap_or(""));
        if ok {
            return (true, last);
        }
    }
    (false, last)
}

fn index_of(all: &[Client], c: &Client) -> usize {
    all.iter().position(|x| std::ptr::eq(x, c)).unwrap_or(0)
}

fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// What a program that should still run showed when it ended, for feedback.
fn ended_note(f: &Finished) -> String {
    let mut s = String::new();
    if f.exited {
        s.push_str("; it ended by itself");
    } else if f.stdout.trim().is_empty() && f.stderr.trim().is_empty() {
        s.push_str("; it was still running and had printed nothing");
    }
    let tail = f.error_tail();
    if !tail.is_empty() {
        s.push_str(&format!("; its last error output: {tail}"));
    } else if !f.stdout.trim().is_empty() {
        s.push_str(&format!("; it printed {}", steps::sample(&f.stdout)));
    }
    s
}

/// Part "captures": the files of Q13 read back, and what Q3–Q12 need found in them.
fn captures(sub: &Submission, marks: &mut Marks) {
    let mut files = sub.ending(".pcap");
    files.extend(sub.ending(".pcapng"));
    let name = |p: &PathBuf| base_name(p);
    let read: Vec<(PathBuf, std::result::Result<Vec<pcap::Packet>, String>)> =
        files.iter().map(|f| (f.clone(), pcap::read(f))).collect();
    let server: Vec<&(PathBuf, std::result::Result<Vec<pcap::Packet>, String>)> = read
        .iter()
        .filter(|(p, _)| name(p).contains("server"))
        .collect();
    let clients: Vec<&(PathBuf, std::result::Result<Vec<pcap::Packet>, String>)> = read
        .iter()
        .filter(|(p, _)| name(p).contains("client"))
        .collect();
    let shown = |v: &[&(PathBuf, std::result::Result<Vec<pcap::Packet>, String>)]| -> String {
        v.iter()
            .map(|(p, _)| name(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unreadable: Vec<String> = read
        .iter()
        .filter_map(|(p, r)| match r {
            Err(e) => Some(format!("{}: {e}", name(p))),
            Ok(v) if v.is_empty() => Some(format!("{}: no IP packets", name(p))),
            Ok(_) => None,
        })
        .collect();
    let all_names: Vec<String> = files.iter().map(name).collect();
    marks.check(
        "chat.cap.files",
        if !server.is_empty() && clients.len() >= 2 && unreadable.is_empty() {
            Ok(format!(
                "the server's capture ({}) and two clients' ({}) read back",
                shown(&server),
                shown(&clients)
            ))
        } else {
            let mut why = vec![];
            if server.is_empty() {
                why.push("no server capture (chatserver.pcap)".to_owned());
            }
            if clients.len() < 2 {
                why.push(format!(
                    "{} client capture(s) where two are asked for (client1.pcap, client2.pcap)",
                    clients.len()
                ));
            }
            why.extend(unreadable);
            Err(format!(
                "expected chatserver.pcap, client1.pcap and client2.pcap, readable captures (pcap or pcapng); found [{}]: {}",
                all_names.join(", "),
                why.join("; ")
            ))
        },
    );
    let mut handshake = None;
    for (p, r) in &server {
        if let Ok(pk) = r {
            if let Some(h) = pcap::tcp_handshakes(pk, PORT).first() {
                handshake = Some((name(p), *h));
                break;
            }
        }
    }
    marks.check(
        "chat.cap.handshake",
        match (&handshake, server.is_empty()) {
            (Some((f, h)), _) => Ok(format!(
                "{f} holds {} → {}: SYN, SYN-ACK, ACK",
                h.client, h.server
            )),
            (None, true) => Err("expected the server's capture (chatserver.pcap) with a client's SYN, SYN-ACK and ACK to port 5000; there is no server capture".into()),
            (None, false) => Err(format!(
                "expected a client's SYN, SYN-ACK and ACK to port {PORT} in {}; no complete three-way handshake to port {PORT} is in it (start the capture before the client connects)",
                shown(&server)
            )),
        },
    );
    let server_ip = handshake.map(|(_, h)| h.server.ip());
    let mut p2p = None;
    for (p, r) in &clients {
        if let Ok(pk) = r {
            let found = pcap::udp_to(pk, None, PORT).into_iter().find(|d| {
                d.src != d.dst
                    && Some(d.src) != server_ip
                    && Some(d.dst) != server_ip
                    && matches!(&d.transport, pcap::Transport::Udp { payload, .. } if !payload.is_empty())
            });
            if let Some(d) = found {
                p2p = Some((name(p), d.src, d.dst));
                break;
            }
        }
    }
    marks.check(
        "chat.cap.p2p",
        match p2p {
            Some((f, src, dst)) => Ok(format!(
                "{f} holds a P2P datagram {src} → {dst}:{PORT}"
            )),
            None if clients.is_empty() => Err("expected a client's capture (client1.pcap) with a P2P UDP datagram to port 5000; there is no client capture".into()),
            None => Err(format!(
                "expected a UDP datagram with a message from one client to another's port {PORT} in {}; none is there (send a '@name: msg' while capturing)",
                shown(&clients)
            )),
        },
    );
}
