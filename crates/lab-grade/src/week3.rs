//! Week 3 homework (the week-3 handout's "Homework Assignments") in the week3 lab: server .10, router .254,
//! client .100, receiver .101 on 172.20.0.0/24, remote behind the router.
//!
//! The handout says only what the programs do, so the grader starts them with command lines in
//! the style of the kit's week-3 examples (`ex01_udp_broadcast.py recv --port 5007 --count 5`),
//! each one replaceable with `--invoke` (see the crate's README):
//!
//! - hw1, the broadcast receiver with statistics and an inactivity timeout, on receiver:
//!   `{prog} recv --port 5007 --timeout {timeout}`. The grader broadcasts datagrams to
//!   255.255.255.255:5007 from client and server (counts, texts, gaps and the timeout drawn per
//!   run), spread over longer than the timeout so that only an *inactivity* timeout lets all of
//!   them in, and reads the counts back from what the program printed after the last datagram.
//! - hw2, the multicast chat, on client, receiver and server at once:
//!   `{prog} --group 239.1.1.1 --port 5008 --name {name}`, lines typed on stdin. The grader's own
//!   socket on router (a host with no member, so IP_MULTICAST_ALL changes nothing) joins the
//!   group to see that the lines are multicast.
//! - hw3, the logging tunnel, on router: `{prog} --listen 0.0.0.0:9090 --target server:8080
//!   --log tunnel.log`, to our echo-server; the grader's clients on client move 1 MiB of random
//!   bytes each way on two connections at once, half-close, stop the target, and read the log;
//!   then a second run with two tunnels (`--listen … --target …` twice) to two targets.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use labnet::sock::{Iface, MulticastReceiver};
use labnet::topo::{self, WEEK3};
use labnet::{Error, Result};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::lab::{self, Lab};
use crate::report::{Grade, Marks};
use crate::sandbox::{Finished, Lane, Limits, Running, clip};
use crate::steps::{self, Proto, tokens};
use crate::submission::Submission;
use crate::tp3::Grader;
use crate::{Options, Progress};

/// Default command line of homework 1.
pub const HW1: &str = "{prog} recv --port {port} --timeout {timeout}";
/// Default command line of homework 2.
pub const HW2: &str = "{prog} --group {group} --port {port} --name {name}";
/// Default command line of homework 3.
pub const HW3: &str = "{prog} --listen {listen} --target {target} --log {log}";
/// Default command line of homework 3 with two tunnels (`--invoke hw3multi=…`).
pub const HW3_MULTI: &str =
    "{prog} --listen {listen} --target {target} --listen {listen2} --target {target2} --log {log}";

/// Longest wait for a program to bind its port or join its group.
const READY: Duration = Duration::from_secs(6);
/// Longest wait for what one step should cause.
const STEP: Duration = Duration::from_secs(3);
/// Bytes each way on each of the two connections of the tunnel's byte check.
const MIB: usize = 1024 * 1024;
/// Bytes sent before the half-close.
const HALF: usize = 256 * 1024;
/// Longest wait for the 1 MiB transfers (a Python tunnel needs well under a second).
const TRANSFER: Duration = Duration::from_secs(8);
/// Longest wait for the echo and the end after a half-close.
const HALF_CLOSE: Duration = Duration::from_secs(4);
/// How soon a tunnel must close its client when the target refuses.
const PROMPT: Duration = Duration::from_secs(2);

/// Grades the homework that `opts` asks for.
pub fn grade(sub: &Submission, lane: &Lane, opts: &Options, progress: &Progress) -> Result<Grade> {
    let mut marks = Marks::new(&opts.rubric, "week3", &opts.parts);
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let w = Week3 {
        g: Grader {
            sub,
            lane,
            opts,
            limits: Limits::default(),
        },
    };
    let mut lab = Lab::up(&WEEK3, lane)?;
    if marks.wants("hw1") {
        progress.say("hw1: broadcast receiver with statistics and an inactivity timeout");
        w.hw1(&lab, &mut marks, &mut rng)?;
        steps::empty_lane(lane);
    }
    if marks.wants("hw2") {
        progress.say("hw2: multicast chat on client, receiver and server");
        w.hw2(&lab, &mut marks, &mut rng)?;
        steps::empty_lane(lane);
    }
    if marks.wants("hw3") {
        progress.say("hw3: logging TCP tunnel on router to the echo server");
        w.hw3(&mut lab, &mut marks, &mut rng)?;
        steps::empty_lane(lane);
        lab.stop_servers();
    }
    Ok(marks.grade(&sub.name, &sub.ids))
}

/// The lab address of a week-3 host.
fn addr(host: &str) -> Ipv4Addr {
    WEEK3
        .host(host)
        .map_or(Ipv4Addr::UNSPECIFIED, labnet::topo::Host::ipv4)
}

struct Week3<'a> {
    g: Grader<'a>,
}

impl Week3<'_> {
    /// The staged program of homework `n`, or why it cannot run (the part then scores 0).
    fn program(&self, part: &str, marks: &mut Marks) -> Result<Option<PathBuf>> {
        Ok(match self.g.program(part, part)? {
            Ok(p) => Some(p),
            Err(why) => {
                marks.fail_rest(part, &why);
                None
            }
        })
    }

    /// Runs our socket code in the network namespace of `host`.
    fn on<T: Send>(&self, lab: &Lab, host: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        lab::in_namespace(&lab.bed.ns(host), f)
    }

    // ---------------------------------------------------------------- homework 1

    fn hw1(&self, lab: &Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let Some(program) = self.program("hw1", marks)? else {
            return Ok(());
        };
        let port = topo::BROADCAST_PORT;
        let timeout: u64 = rng.random_range(2..=3);
        let argv = self.g.argv(
            "hw1",
            HW1,
            &program,
            &[("port", port.to_string()), ("timeout", timeout.to_string())],
        );
        let cwd = program.parent().unwrap_or(Path::new("/"));
        let started = Instant::now();
        let mut run = lab.student(self.g.lane, "receiver", cwd, &argv, false, &self.g.limits)?;
        if !steps::wait_bound(lab, "receiver", Proto::Udp, port, &mut run, READY) {
            let f = steps::stop_all(self.g.lane, &mut [&mut run]);
            marks.fail_rest(
                "hw1",
                &format!(
                    "expected the receiver to bind UDP port {port} on receiver ({}); after {} s it had not{}",
                    argv_text(&argv),
                    READY.as_secs(),
                    note(&f[0])
                ),
            );
            return Ok(());
        }
        // Two sources with different counts; the order, the texts and the gaps drawn per run.
        let (k_client, k_server) = (rng.random_range(4..=6), rng.random_range(1..=3));
        let mut order: Vec<&str> = std::iter::repeat_n("client", k_client)
            .chain(std::iter::repeat_n("server", k_server))
            .collect();
        order.shuffle(rng);
        let payloads: Vec<(String, &str)> = order
            .iter()
            .enumerate()
            .map(|(i, host)| (format!("HW1 {} #{i}", steps::text(rng)), *host))
            .collect();
        let dst = SocketAddr::from((Ipv4Addr::BROADCAST, port));
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let client = self.on(lab, "client", || labnet::sock::broadcast_sender(any, true))?;
        let server = self.on(lab, "server", || labnet::sock::broadcast_sender(any, true))?;
        let (client, server) = match (client, server) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => return Err(Error::msg(format!("grader's sender: {e}"))),
        };
        // Spread over longer than the timeout: a receiver that stops after `timeout` seconds in
        // all (not of inactivity) misses the last ones.
        let gaps = u64::try_from(payloads.len().saturating_sub(1).max(1)).unwrap_or(1);
        let gap =
            Duration::from_millis((timeout * 1000 + 1000) / gaps).min(Duration::from_millis(900));
        for (i, (text, host)) in payloads.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(gap);
            }
            let sock: &UdpSocket = if *host == "client" { &client } else { &server };
            sock.send_to(text.as_bytes(), dst)
                .map_err(|e| Error::msg(format!("grader's broadcast from {host}: {e}")))?;
        }
        let last = Instant::now();
        let limit = started.elapsed() + Duration::from_secs(timeout) + Duration::from_secs(3);
        let f = run.finish(limit.min(started.elapsed() + self.g.opts.timeout));
        let ended_after = last.elapsed();
        steps::empty_lane(self.g.lane);
        let sources = [("client", k_client), ("server", k_server)];
        let (receive, stats, per_source) = hw1_checks(&f.stdout, &payloads, &sources);
        marks.check("hw1.receive", receive.map_err(|e| e + &note(&f)));
        marks.check("hw1.stats", stats);
        marks.check("hw1.sources", per_source);
        let t = timeout as f64;
        let after = ended_after.as_secs_f64();
        marks.check(
            "hw1.timeout",
            if f.exited && (t - 0.5..=t + 2.0).contains(&after) {
                Ok(format!(
                    "--timeout {timeout}: it ended by itself {after:.1} s after the last datagram"
                ))
            } else if f.exited {
                Err(format!(
                    "expected it to end about {timeout} s after the last datagram (--timeout {timeout}: seconds without a datagram); it ended {after:.1} s after it"
                ))
            } else {
                Err(format!(
                    "expected it to end by itself {timeout} s after the last datagram (--timeout {timeout}); it was still running {:.1} s after it and was stopped",
                    after
                ))
            },
        );
        Ok(())
    }

    // ---------------------------------------------------------------- homework 2

    fn hw2(&self, lab: &Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let Some(program) = self.program("hw2", marks)? else {
            return Ok(());
        };
        let hosts = ["client", "receiver", "server"];
        let names = steps::names(rng, 3);
        let texts: Vec<String> = (0..3).map(|_| steps::text(rng)).collect();
        let group = topo::WEEK3_GROUP;
        let port = topo::MULTICAST_PORT;
        let router = addr("router");
        let listener = self
            .on(lab, "router", move || {
                let r = MulticastReceiver::join(IpAddr::V4(group), port, &Iface::V4(router))?;
                r.socket()
                    .set_read_timeout(Some(Duration::from_millis(50)))?;
                Ok::<_, std::io::Error>(r)
            })?
            .map_err(|e| Error::msg(format!("grader's group listener on router: {e}")))?;
        let cwd = program.parent().unwrap_or(Path::new("/"));
        let mut members: Vec<Running> = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let argv = self.g.argv(
                "hw2",
                HW2,
                &program,
                &[
                    ("group", group.to_string()),
                    ("port", port.to_string()),
                    ("name", names[i].clone()),
                ],
            );
            members.push(lab.student(self.g.lane, host, cwd, &argv, true, &self.g.limits)?);
        }
        // Each member's host must show the group joined (the kernel's table, /proc/net/igmp).
        let joined = |host: &str| {
            lab.probe(host, "cat", &["/proc/net/igmp"])
                .contains(&igmp_hex(group))
        };
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline && !hosts.iter().all(|h| joined(h)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let missing: Vec<&str> = hosts.iter().copied().filter(|h| !joined(h)).collect();
        if !missing.is_empty() {
            let mut runs: Vec<&mut Running> = members.iter_mut().collect();
            let f = steps::stop_all(self.g.lane, &mut runs);
            marks.fail_rest(
                "hw2",
                &format!(
                    "expected every member to join {group} (an IGMP membership on its host); after {} s {} had not{}",
                    READY.as_secs(),
                    missing.join(", "),
                    note(&f[hosts.iter().position(|h| *h == missing[0]).unwrap_or(0)])
                ),
            );
            return Ok(());
        }
        // Joined is not yet bound on every program: give the slowest a moment more.
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline
            && !hosts.iter().all(|h| steps::bound(lab, h, Proto::Udp, port))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let ip = |i: usize| addr(hosts[i]).to_string();
        let shows = |out: &str, text: &str, i: usize| {
            out.lines()
                .any(|l| l.contains(text) && (l.contains(&names[i]) || l.contains(&ip(i))))
        };
        for (i, text) in texts.iter().enumerate() {
            let marks_now: Vec<usize> = members.iter().map(|m| m.stdout().len()).collect();
            members[i].send_line(text);
            let deadline = Instant::now() + STEP;
            for (j, m) in members.iter().enumerate() {
                if j != i {
                    let left = deadline.saturating_duration_since(Instant::now());
                    m.wait_output(left, |o| shows(o.get(marks_now[j]..).unwrap_or(o), text, i));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut seen: Vec<(IpAddr, String)> = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = listener.socket().recv_from(&mut buf) {
            seen.push((from.ip(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
        let mut runs: Vec<&mut Running> = members.iter_mut().collect();
        let done = steps::stop_all(self.g.lane, &mut runs);

        let mut missed = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            for (j, f) in done.iter().enumerate() {
                if j != i && !shows(&f.stdout, text, i) {
                    missed.push(match steps::line_with(&f.stdout, text) {
                        Some(l) => format!(
                            "{} showed {}'s line without its name or address: '{l}'",
                            names[j], names[i]
                        ),
                        None => format!("{} did not show {}'s '{text}'", names[j], names[i]),
                    });
                }
            }
        }
        marks.check(
            "hw2.others",
            if missed.is_empty() {
                Ok(format!(
                    "each of {} showed the two others' lines with the sender, e.g. '{}'",
                    names.join(", "),
                    steps::line_with(&done[1].stdout, &texts[0]).unwrap_or_default()
                ))
            } else {
                Err(format!(
                    "expected every member to show each line the others typed with the sender's name or address; {}{}",
                    missed.join("; "),
                    note(&done[0])
                ))
            },
        );
        let own: Vec<String> = texts
            .iter()
            .enumerate()
            .filter(|(i, text)| shows(&done[*i].stdout, text, *i))
            .map(|(i, text)| {
                format!(
                    "{} showed its own '{}'",
                    names[i],
                    steps::line_with(&done[i].stdout, text).unwrap_or_default()
                )
            })
            .collect();
        let heard = done
            .iter()
            .enumerate()
            .filter(|(i, f)| (0..3).any(|k| k != *i && shows(&f.stdout, &texts[k], k)))
            .count();
        marks.check(
            "hw2.own",
            if heard == 0 {
                Err("expected members that hear the others but not themselves; no member showed anyone's line, so there is nothing to tell".into())
            } else if own.is_empty() {
                Ok("no member showed its own line as a message received (the multicast loopback filtered)".into())
            } else {
                Err(format!(
                    "expected a member not to show its own messages (IP_MULTICAST_LOOP hands them back: filter them); {}",
                    own.join("; ")
                ))
            },
        );
        let not_sent: Vec<String> = texts
            .iter()
            .enumerate()
            .filter(|(i, text)| {
                !seen.iter().any(|(from, p)| {
                    *from == IpAddr::V4(addr(hosts[*i])) && p.contains(text.as_str())
                })
            })
            .map(|(i, _)| format!("{}'s line from {}", names[i], addr(hosts[i])))
            .collect();
        marks.check(
            "hw2.group",
            if not_sent.is_empty() {
                Ok(format!(
                    "a socket that joined {group}:{port} on router got every typed line from its member's address"
                ))
            } else {
                Err(format!(
                    "expected each typed line sent to the group {group}:{port}; the grader's socket on router (joined to the group) did not get {} ({} datagrams seen)",
                    not_sent.join(", "),
                    seen.len()
                ))
            },
        );
        Ok(())
    }

    // ---------------------------------------------------------------- homework 3

    fn hw3(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let Some(program) = self.program("hw3", marks)? else {
            return Ok(());
        };
        let echo = |lab: &mut Lab| -> Result<()> {
            for host in ["server", "remote"] {
                lab.server(
                    host,
                    "echo-server",
                    &strings(&["--port", "8080", "--quiet", "--json"]),
                    "listening",
                )?;
            }
            Ok(())
        };
        echo(lab)?;
        let cwd = program.parent().unwrap_or(Path::new("/")).to_path_buf();
        let log = "tunnel.log";
        let argv = self.g.argv(
            "hw3",
            HW3,
            &program,
            &[
                ("listen", "0.0.0.0:9090".into()),
                ("target", "server:8080".into()),
                ("log", log.into()),
            ],
        );
        let mut tunnel = lab.student(self.g.lane, "router", &cwd, &argv, false, &self.g.limits)?;
        let port = topo::TUNNEL_PORT;
        if !steps::wait_bound(lab, "router", Proto::Tcp, port, &mut tunnel, READY) {
            let f = steps::stop_all(self.g.lane, &mut [&mut tunnel]);
            let why = format!(
                "expected the tunnel to listen on TCP port {port} of router ({}); after {} s it did not{}",
                argv_text(&argv),
                READY.as_secs(),
                note(&f[0])
            );
            for id in ["hw3.bytes", "hw3.halfclose", "hw3.down", "hw3.log"] {
                marks.check(id, Err(why.clone()));
            }
        } else {
            let entry = SocketAddr::from((addr("router"), port));
            let seed: u64 = rng.random();
            marks.check("hw3.bytes", self.bytes(lab, entry, seed)?);
            marks.check("hw3.halfclose", self.half_close(lab, entry, seed)?);
            marks.check("hw3.down", self.target_down(lab, entry, &echo)?);
            // SIGINT first: a Python tunnel then flushes its log on the way out.
            let f = tunnel.stop();
            steps::empty_lane(self.g.lane);
            marks.check("hw3.log", tunnel_log(&cwd, log, &f));
        }
        steps::empty_lane(self.g.lane);
        marks.check("hw3.multi", self.multi(lab, &program, rng)?);
        Ok(())
    }

    /// Connects from client to `to` (through the tunnel).
    fn connect(&self, lab: &Lab, to: SocketAddr) -> Result<std::io::Result<TcpStream>> {
        self.on(lab, "client", move || {
            let s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            // Short, so that a writer notices its deadline (see write_until).
            s.set_write_timeout(Some(Duration::from_millis(200)))?;
            Ok(s)
        })
    }

    /// Two connections at once, 1 MiB of random bytes each way on each, compared byte for byte.
    fn bytes(
        &self,
        lab: &Lab,
        entry: SocketAddr,
        seed: u64,
    ) -> Result<std::result::Result<String, String>> {
        let mut streams = Vec::new();
        for _ in 0..2 {
            match self.connect(lab, entry)? {
                Ok(s) => streams.push(s),
                Err(e) => {
                    return Ok(Err(format!(
                        "could not connect to the tunnel at {entry}: {e}"
                    )));
                }
            }
        }
        let results: Vec<(usize, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = streams
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let data = payload(seed ^ (i as u64 + 1), MIB);
                    scope.spawn(move || {
                        let writer = s.try_clone();
                        let sent = data.clone();
                        let w = std::thread::spawn(move || {
                            if let Ok(w) = writer {
                                write_until(&w, &sent, Instant::now() + TRANSFER);
                            }
                        });
                        let got = read_n(s, MIB, TRANSFER);
                        let _ = w.join();
                        (got.len(), got == data)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or((0, false)))
                .collect()
        });
        drop(streams);
        Ok(if results.iter().all(|(_, same)| *same) {
            Ok(format!(
                "two connections at once, {MIB} random bytes each way on each, came back exactly through the echo server"
            ))
        } else {
            let what: Vec<String> = results
                .iter()
                .enumerate()
                .map(|(i, (n, same))| {
                    if *same {
                        format!("connection {}: all {MIB} bytes exact", i + 1)
                    } else if *n == MIB {
                        format!("connection {}: {MIB} bytes back but different ones", i + 1)
                    } else {
                        format!(
                            "connection {}: {n} of {MIB} bytes back within {} s",
                            i + 1,
                            TRANSFER.as_secs()
                        )
                    }
                })
                .collect();
            Err(format!(
                "expected {MIB} random bytes sent through the tunnel to the echo server to come back exactly, on two connections at once; {}",
                what.join("; ")
            ))
        })
    }

    /// Data, then the client's half-close: the echo must come back whole, then the end.
    fn half_close(
        &self,
        lab: &Lab,
        entry: SocketAddr,
        seed: u64,
    ) -> Result<std::result::Result<String, String>> {
        let s = match self.connect(lab, entry)? {
            Ok(s) => s,
            Err(e) => {
                return Ok(Err(format!(
                    "could not connect to the tunnel at {entry}: {e}"
                )));
            }
        };
        let data = payload(seed ^ 0x4841_4c46, HALF);
        let sent = write_until(&s, &data, Instant::now() + HALF_CLOSE);
        if sent < HALF {
            return Ok(Err(format!(
                "expected the tunnel to take the client's bytes; it took {sent} of {HALF} in {} s",
                HALF_CLOSE.as_secs()
            )));
        }
        let _ = s.shutdown(Shutdown::Write);
        let (got, eof) = read_to_end(&s, HALF_CLOSE);
        Ok(match (got == data, eof) {
            (true, true) => Ok(format!(
                "after {HALF} bytes and the client's FIN, the echo server saw the end, the {HALF} bytes came back whole and then the end"
            )),
            (true, false) => Err(format!(
                "expected the client's half-close (FIN) passed on to the target with shutdown(SHUT_WR): all {HALF} bytes came back, but the end never did within {} s, so the echo server never saw the client's FIN",
                HALF_CLOSE.as_secs()
            )),
            (false, _) => Err(format!(
                "expected the other direction to keep flowing after the client's half-close; {} of the {HALF} bytes came back{}",
                got.len(),
                if eof {
                    " before the tunnel closed the connection"
                } else {
                    ""
                }
            )),
        })
    }

    /// The target stopped: a client must be closed promptly, and the tunnel must keep serving.
    fn target_down(
        &self,
        lab: &mut Lab,
        entry: SocketAddr,
        echo: &dyn Fn(&mut Lab) -> Result<()>,
    ) -> Result<std::result::Result<String, String>> {
        lab.stop_servers();
        let closed = match self.connect(lab, entry)? {
            Err(e) => Err(format!(
                "with the echo server stopped the tunnel no longer accepted connections ({e})"
            )),
            Ok(s) => {
                let started = Instant::now();
                let (got, eof) = read_to_end(&s, PROMPT);
                if eof && got.is_empty() {
                    Ok(started.elapsed())
                } else {
                    Err(format!(
                        "expected the client closed at once when the target refuses (echo server stopped); the connection was still open after {} s",
                        PROMPT.as_secs()
                    ))
                }
            }
        };
        echo(lab)?;
        let serving = match self.connect(lab, entry)? {
            Err(e) => Err(format!(
                "after the echo server came back the tunnel refused connections ({e})"
            )),
            Ok(s) => {
                let msg = b"TUNNEL TEST after the target came back\n";
                let mut w = &s;
                let _ = w.write_all(msg);
                let got = read_n(&s, msg.len(), STEP);
                if got == msg {
                    Ok(())
                } else {
                    Err(format!(
                        "after the echo server came back, a new connection through the tunnel got {} of {} bytes echoed",
                        got.len(),
                        msg.len()
                    ))
                }
            }
        };
        Ok(match (closed, serving) {
            (Ok(t), Ok(())) => Ok(format!(
                "with the echo server stopped the client was closed after {:.2} s, and the tunnel served again once it was back",
                t.as_secs_f64()
            )),
            (Err(a), Err(b)) => Err(format!("{a}; {b}")),
            (Err(a), _) | (_, Err(a)) => Err(a),
        })
    }

    /// A second run with two tunnels to two targets.
    fn multi(
        &self,
        lab: &mut Lab,
        program: &Path,
        rng: &mut SmallRng,
    ) -> Result<std::result::Result<String, String>> {
        let cwd = program.parent().unwrap_or(Path::new("/"));
        let (p1, p2) = (9091u16, 9092u16);
        let argv = self.g.argv(
            "hw3multi",
            HW3_MULTI,
            program,
            &[
                ("listen", format!("0.0.0.0:{p1}")),
                ("target", "server:8080".into()),
                ("listen2", format!("0.0.0.0:{p2}")),
                ("target2", "remote:8080".into()),
                ("log", "tunnel-multi.log".into()),
            ],
        );
        let mut tunnel = lab.student(self.g.lane, "router", cwd, &argv, false, &self.g.limits)?;
        let both = steps::wait_bound(lab, "router", Proto::Tcp, p1, &mut tunnel, READY)
            && steps::wait_bound(
                lab,
                "router",
                Proto::Tcp,
                p2,
                &mut tunnel,
                Duration::from_secs(1),
            );
        if !both {
            let listening: Vec<String> = [p1, p2]
                .iter()
                .filter(|p| steps::bound(lab, "router", Proto::Tcp, **p))
                .map(u16::to_string)
                .collect();
            let f = steps::stop_all(self.g.lane, &mut [&mut tunnel]);
            return Ok(Err(format!(
                "expected two tunnels from one program ({}): ports {p1} and {p2} listening; after {} s: {}{}",
                argv_text(&argv),
                READY.as_secs(),
                if listening.is_empty() {
                    "none".to_owned()
                } else {
                    format!("only {}", listening.join(", "))
                },
                note(&f[0])
            )));
        }
        let mut fails = Vec::new();
        for (port, target) in [(p1, "server"), (p2, "remote")] {
            let entry = SocketAddr::from((addr("router"), port));
            let msg = format!("{}\n", steps::text(rng));
            match self.connect(lab, entry)? {
                Err(e) => fails.push(format!("port {port}: {e}")),
                Ok(s) => {
                    let mut w = &s;
                    let _ = w.write_all(msg.as_bytes());
                    if read_n(&s, msg.len(), STEP) != msg.as_bytes() {
                        fails.push(format!("port {port} → {target}:8080 did not echo"));
                    }
                }
            }
        }
        // The second target saw the router connect from its side (172.21.0.254): the echo
        // server's event line may reach the grader just after the echo itself.
        let from_router = lab.wait_event("echo-server", STEP, |e| {
            e["event"] == "connect"
                && e["peer"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&format!("{}:", remote_side())))
        });
        if !from_router {
            fails.push("remote's echo server never saw a connection from the router".into());
        }
        let _ = tunnel.stop();
        steps::empty_lane(self.g.lane);
        Ok(if fails.is_empty() {
            Ok(format!(
                "one program, two tunnels: :{p1} → server:8080 and :{p2} → remote:8080 both echoed"
            ))
        } else {
            Err(format!(
                "expected two tunnels at once to two targets ({}); {}",
                argv_text(&argv),
                fails.join("; ")
            ))
        })
    }
}

/// The router's address on remote's segment (what remote's echo server sees).
fn remote_side() -> Ipv4Addr {
    WEEK3
        .host("router")
        .and_then(|h| h.links.get(1))
        .map_or(Ipv4Addr::UNSPECIFIED, |l| l.ipv4)
}

/// The three checks of homework 1 over what the receiver printed.
type Check = std::result::Result<String, String>;

fn hw1_checks(
    out: &str,
    payloads: &[(String, &str)],
    sources: &[(&str, usize)],
) -> (Check, Check, Check) {
    let missing: Vec<&str> = payloads
        .iter()
        .filter(|(p, _)| !out.contains(p.as_str()))
        .map(|(p, _)| p.as_str())
        .collect();
    let receive = if missing.is_empty() {
        Ok(format!("printed all {} datagrams", payloads.len()))
    } else {
        Err(format!(
            "expected each of the {} datagrams broadcast to it printed; {} missing, e.g. '{}'",
            payloads.len(),
            missing.len(),
            missing[0]
        ))
    };
    // The statistics: what it printed after the last datagram it showed.
    let end = payloads
        .iter()
        .filter_map(|(p, _)| out.rfind(p.as_str()).map(|i| i + p.len()))
        .max()
        .unwrap_or(0);
    let tail = out.get(end..).unwrap_or("");
    let packets = payloads.len().to_string();
    let bytes: usize = payloads.iter().map(|(p, _)| p.len()).sum();
    let bytes = bytes.to_string();
    let count_words = [
        "packet", "datagram", "message", "pkt", "count", "received", "total",
    ];
    let has_packets = tail.lines().any(|l| {
        let low = l.to_ascii_lowercase();
        tokens(l).contains(&packets.as_str()) && count_words.iter().any(|w| low.contains(w))
    });
    let has_bytes = tail.lines().any(|l| tokens(l).contains(&bytes.as_str()));
    let stats = match (has_packets, has_bytes) {
        (true, true) => Ok(format!(
            "statistics: {packets} packets and {bytes} bytes, e.g. '{}'",
            steps::line_with(tail, &bytes).unwrap_or_default()
        )),
        _ => Err(format!(
            "expected statistics after the last datagram with {packets} packets and {bytes} bytes (payload bytes); {}{}",
            if !has_packets {
                format!("no line with the packet count {packets}; ")
            } else {
                String::new()
            },
            if has_bytes {
                "the bytes are right".to_owned()
            } else {
                format!(
                    "no line with {bytes} bytes; it printed {}",
                    steps::sample(tail)
                )
            }
        )),
    };
    let wrong: Vec<String> = sources
        .iter()
        .filter(|(host, k)| !source_line(tail, &addr(host).to_string(), *k))
        .map(|(host, k)| format!("{} sent {k}", addr(host)))
        .collect();
    let per_source = if wrong.is_empty() {
        Ok(format!(
            "per source: {}",
            sources
                .iter()
                .map(|(h, k)| format!("{} {k}", addr(h)))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(format!(
            "expected the per-source distribution (each source address with its packet count); not shown for: {}",
            wrong.join(", ")
        ))
    };
    (receive, stats, per_source)
}

/// True when a line of `tail` names `ip` and, among the few numbers after it (before another
/// address), the count `k`.
fn source_line(tail: &str, ip: &str, k: usize) -> bool {
    let k = k.to_string();
    tail.lines().any(|l| {
        let t = tokens(l);
        t.iter().enumerate().any(|(i, tok)| {
            *tok == ip
                && t[i + 1..]
                    .iter()
                    .take_while(|x| x.matches('.').count() != 3)
                    .take(3)
                    .any(|x| *x == k)
        })
    })
}

/// `239.1.1.1` as `/proc/net/igmp` writes it (the address in host byte order, hex).
fn igmp_hex(group: Ipv4Addr) -> String {
    let o = group.octets();
    format!("{:02X}{:02X}{:02X}{:02X}", o[3], o[2], o[1], o[0])
}

/// Writes `data` until it is all sent or `deadline` passes (a tunnel that stops reading must
/// not hold the grader); returns how much was sent. The socket's write timeout is short.
fn write_until(s: &TcpStream, data: &[u8], deadline: Instant) -> usize {
    let mut sent = 0;
    let mut w = s;
    while sent < data.len() && Instant::now() < deadline {
        match w.write(&data[sent..]) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    sent
}

/// Reads up to `n` bytes before `limit`.
fn read_n(s: &TcpStream, n: usize, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::with_capacity(n);
    let mut buf = vec![0u8; 64 * 1024];
    let mut r = s;
    while out.len() < n && Instant::now() < deadline {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    out
}

/// Reads until the end of stream (true) or `limit` (false); a reset counts as an end.
fn read_to_end(s: &TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut r = s;
    while Instant::now() < deadline {
        match r.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

/// The tunnel's log: found at the `--log` path, else the one `.log` file it wrote in its folder.
fn tunnel_log(cwd: &Path, log: &str, f: &Finished) -> Check {
    let mut path = cwd.join(log);
    if !path.is_file() {
        let logs: Vec<PathBuf> = std::fs::read_dir(cwd)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        match logs.as_slice() {
            [one] => path = one.clone(),
            _ => {
                return Err(format!(
                    "expected the log file given with --log ({log}) in the tunnel's folder; there is none{}",
                    note(f)
                ));
            }
        }
    }
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
    check_log(&text).map_err(|why| {
        format!(
            "{}; the log ({} lines) begins {}",
            why,
            text.lines().count(),
            clip(&text.lines().take(3).collect::<Vec<_>>().join(" | "), 240)
        )
    })
}

/// What the log must show: a time on every line, the connections told apart by an id, and the
/// bytes of the two 1 MiB transfers accounted for next to a direction.
fn check_log(text: &str) -> Check {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return Err("expected one line per event; the log is empty".into());
    }
    let untimed = lines.iter().filter(|l| !has_time(l)).count();
    if untimed > 0 {
        return Err(format!(
            "expected a timestamp on every line; {untimed} of {} have none (e.g. '{}')",
            lines.len(),
            clip(lines.iter().find(|l| !has_time(l)).unwrap_or(&""), 80)
        ));
    }
    let mut ids: Vec<String> = lines.iter().flat_map(|l| conn_ids(l)).collect();
    ids.sort();
    ids.dedup();
    if ids.len() < 4 {
        return Err(format!(
            "expected each connection named by an id ('#3', 'conn 3', 'id=3', '[3]'); the grader opened 5 connections and the log tells {} apart",
            ids.len()
        ));
    }
    let directed: Vec<&str> = lines.iter().copied().filter(|l| has_direction(l)).collect();
    if directed.is_empty() {
        return Err(
            "expected the direction of each transfer (client->server, c2s, →); no line shows one"
                .into(),
        );
    }
    let total = MIB.to_string();
    let totals = directed
        .iter()
        .filter(|l| tokens(l).contains(&total.as_str()))
        .count();
    // Chunk lines (one byte count each), added up per connection: each of the two 1 MiB
    // connections moved 2 MiB in all. Lines with two counts (a close with both totals) are not
    // chunks, and a log that has totals passed above.
    let mut per_conn: std::collections::BTreeMap<String, usize> = Default::default();
    for l in &directed {
        if let [n] = byte_counts(l).as_slice() {
            for id in conn_ids(l) {
                *per_conn.entry(id).or_default() += n;
            }
        }
    }
    let whole = per_conn.values().filter(|n| **n == 2 * MIB).count();
    let chunks: usize = per_conn.values().sum();
    if totals >= 2 || whole >= 2 {
        Ok(format!(
            "{} lines with times, {} connection ids, directions and byte counts ({})",
            lines.len(),
            ids.len(),
            if totals >= 2 {
                format!("the {MIB}-byte transfers on {totals} lines")
            } else {
                format!("chunk lines adding up to {MIB} each way on {whole} connections")
            }
        ))
    } else {
        Err(format!(
            "expected byte counts per connection and direction ('N bytes' or 'bytes=N'): the grader sent {MIB} bytes each way on two connections; no line with a direction gives {MIB}, and no connection's chunk lines add up to {MIB} each way (they add up to {chunks} in all)"
        ))
    }
}

/// A clock time (`13:20:31`) or a Unix time (`1764412831.5`) somewhere in the line.
fn has_time(line: &str) -> bool {
    let b = line.as_bytes();
    let clock = b.windows(8).any(|w| {
        w[0].is_ascii_digit()
            && w[1].is_ascii_digit()
            && w[2] == b':'
            && w[3].is_ascii_digit()
            && w[4].is_ascii_digit()
            && w[5] == b':'
            && w[6].is_ascii_digit()
            && w[7].is_ascii_digit()
    });
    clock
        || tokens(line).iter().any(|t| {
            t.len() >= 10
                && t.split('.')
                    .next()
                    .is_some_and(|s| s.len() == 10 && s.starts_with('1'))
        })
}

/// Connection ids a line names: what follows `#`, `conn`, `connection`, `id` or sits in `[…]`.
fn conn_ids(line: &str) -> Vec<String> {
    let low = line.to_ascii_lowercase();
    let mut out = Vec::new();
    for marker in ["connection", "conn", "cid", "id", "#", "["] {
        let mut from = 0;
        while let Some(i) = low[from..].find(marker) {
            let at = from + i + marker.len();
            from = at;
            // `conn` inside `connection`, `id` inside a word: only standalone markers count.
            if marker.chars().all(char::is_alphabetic) {
                let before = low[..from - marker.len()].chars().next_back();
                if before.is_some_and(char::is_alphanumeric) {
                    continue;
                }
                if marker == "conn" && low[at..].starts_with("ection") {
                    continue;
                }
            }
            let rest = low[at..].trim_start_matches([' ', '=', ':', '-', '_', '#']);
            let rest = rest.strip_prefix("id").map_or(rest, |r| {
                r.trim_start_matches([' ', '=', ':', '-', '_', '#'])
            });
            let id: String = rest
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            if !id.is_empty() && id.chars().any(|c| c.is_ascii_digit()) && id.len() <= 36 {
                // Not a time or a date that happens to follow a bracket.
                if !(marker == "["
                    && (rest[id.len()..].starts_with(':') || rest[id.len()..].starts_with('-')))
                {
                    out.push(id);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A transfer direction: arrows or the names of the two sides.
fn has_direction(line: &str) -> bool {
    let low = line.to_ascii_lowercase();
    [
        "->",
        "→",
        "<-",
        "←",
        "=>",
        ">>",
        "<<",
        "c2s",
        "s2c",
        "c>s",
        "s>c",
        "client",
        "server",
        "target",
        "upstream",
        "downstream",
        "direction",
    ]
    .iter()
    .any(|w| low.contains(w))
}

/// The numbers written next to the word "byte" in a line (`4096 bytes`, `bytes=4096`).
fn byte_counts(line: &str) -> Vec<usize> {
    let low = line.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = low[from..].find("byte") {
        let at = from + i;
        let head = low[..at].trim_end_matches([' ', '=', ':']);
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let before = &head[head.len() - digits..];
        let after_word = low[at..].trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let after: String = after_word
            .trim_start_matches([' ', '=', ':'])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = before.parse::<usize>() {
            out.push(n);
        } else if let Ok(n) = after.parse::<usize>() {
            out.push(n);
        }
        from = at + 4;
    }
    out
}

/// `len` pseudo-random bytes, the same for the same `seed`: what the grader pushes through a
/// tunnel and compares byte for byte on the other side.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill(v.as_mut_slice());
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn argv_text(argv: &[std::ffi::OsString]) -> String {
    argv.iter()
        .map(|a| {
            let s = a.to_string_lossy();
            Path::new(s.as_ref())
                .file_name()
                .filter(|_| s.starts_with('/'))
                .map_or_else(|| s.to_string(), |n| n.to_string_lossy().into_owned())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a program that should have run ended, for feedback.
fn note(f: &Finished) -> String {
    let mut s = String::new();
    if f.flooded {
        s.push_str("; it printed more than the output limit and was stopped");
    }
    if f.exited && f.status.is_some_and(|st| !st.success()) {
        s.push_str("; it exited with an error");
    }
    let tail = f.error_tail();
    if !tail.is_empty() {
        s.push_str(&format!("; its last error output: {tail}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homework1_statistics_are_read_whatever_the_format() {
        let payloads = vec![
            ("HW1 lark dawn 1234 tomb #0".to_owned(), "client"),
            ("HW1 river copper 5678 falcon #1".to_owned(), "server"),
            ("HW1 violet pebble 9012 meadow #2".to_owned(), "client"),
        ];
        let bytes: usize = payloads.iter().map(|(p, _)| p.len()).sum();
        let sources = [("client", 2), ("server", 1)];
        let mut out = String::new();
        for (p, h) in &payloads {
            out.push_str(&format!(
                "[RECV] {} bytes from {}:40000: {p}\n",
                p.len(),
                addr(h)
            ));
        }
        let good = format!(
            "{out}--- statistics ---\nTotal packets: 3\nTotal bytes: {bytes}\n  172.20.0.100: 2 packets\n  172.20.0.10: 1 packets\n"
        );
        let (r, s, p) = hw1_checks(&good, &payloads, &sources);
        assert!(r.is_ok() && s.is_ok() && p.is_ok(), "{r:?} {s:?} {p:?}");
        // A dict of sources with ports, and both counts on one line, also pass.
        let dict = format!(
            "{out}received 3 packets, {bytes} bytes\nsources: {{('172.20.0.100', 40000): 2, ('172.20.0.10', 40001): 1}}\n"
        );
        let (_, s, p) = hw1_checks(&dict, &payloads, &sources);
        assert!(s.is_ok() && p.is_ok(), "{s:?} {p:?}");
        // Bytes counted with a header, or the sources swapped: fail.
        let wrong = good.replace(
            &format!("bytes: {bytes}"),
            &format!("bytes: {}", bytes + 3 * 28),
        );
        assert!(hw1_checks(&wrong, &payloads, &sources).1.is_err());
        let swapped = good
            .replace("172.20.0.100: 2", "172.20.0.100: 1")
            .replace("172.20.0.10: 1", "172.20.0.10: 2");
        assert!(hw1_checks(&swapped, &payloads, &sources).2.is_err());
        let (r, _, _) = hw1_checks("nothing\n", &payloads, &sources);
        assert!(r.is_err());
    }

    #[test]
    fn tunnel_logs_in_several_styles_are_understood() {
        let totals = "\
2026-11-29 13:20:31.100 #1 accepted 172.20.0.100:40000
2026-11-29 13:20:31.101 #1 connected to server:8080
2026-11-29 13:20:31.900 #1 closed: client->server 1048576 bytes, server->client 1048576 bytes
2026-11-29 13:20:31.100 #2 accepted 172.20.0.100:40001
2026-11-29 13:20:31.900 #2 closed: client->server 1048576 bytes, server->client 1048576 bytes
2026-11-29 13:20:32.000 #3 closed: client->server 262144 bytes, server->client 262144 bytes
2026-11-29 13:20:32.500 #4 connect to server:8080 failed: refused
2026-11-29 13:20:33.000 #5 closed: client->server 40 bytes, server->client 40 bytes
";
        assert!(check_log(totals).is_ok(), "{:?}", check_log(totals));
        let mut chunks = String::new();
        for conn in 1..=5 {
            for _ in 0..(if conn <= 2 { 256 } else { 1 }) {
                chunks.push_str(&format!("1764422431.25 conn={conn} c2s 4096 bytes\n"));
                chunks.push_str(&format!("1764422431.26 conn={conn} s2c 4096 bytes\n"));
            }
        }
        assert!(check_log(&chunks).is_ok(), "{:?}", check_log(&chunks));
        let untimed = totals.replace("2026-11-29 13:20:31.100 ", "");
        assert!(check_log(&untimed).unwrap_err().contains("timestamp"));
        let no_ids: String = totals
            .lines()
            .map(|l| {
                format!(
                    "{}\n",
                    l.split_once(" #")
                        .map_or(l.to_owned(), |(a, b)| format!("{a} {}", &b[2..]))
                )
            })
            .collect();
        assert!(
            check_log(&no_ids).unwrap_err().contains("id"),
            "{:?}",
            check_log(&no_ids)
        );
        let no_bytes = totals.replace("1048576", "1000");
        assert!(check_log(&no_bytes).unwrap_err().contains("byte counts"));
        // A tunnel that lost bytes: a line per direction and a close line, none adding up.
        let mut lost = String::new();
        for conn in 1..=5 {
            lost.push_str(&format!(
                "13:20:31 conn {conn} client->server end after 598205 bytes\n"
            ));
            lost.push_str(&format!(
                "13:20:31 conn {conn} server->client end after 450371 bytes\n"
            ));
            lost.push_str(&format!("13:20:31 conn {conn} closed: client->server 598205 bytes, server->client 450371 bytes\n"));
        }
        assert!(check_log(&lost).is_err(), "{:?}", check_log(&lost));
        assert!(check_log("").is_err());
    }

    #[test]
    fn ids_are_found_after_their_markers_only() {
        assert_eq!(conn_ids("13:20:31 [conn 7] c->s 5 bytes"), ["7"]);
        assert_eq!(conn_ids("13:20:31 [7] c->s"), ["7"]);
        assert_eq!(conn_ids("[13:20:31] connection_id=12 closed"), ["12"]);
        assert!(conn_ids("[2026-11-29 13:20:31] valid idle 40 bytes").is_empty());
        assert_eq!(byte_counts("c2s 4096 bytes, s2c bytes=10"), [4096, 10]);
        assert_eq!(igmp_hex(Ipv4Addr::new(239, 1, 1, 1)), "010101EF");
    }
}
