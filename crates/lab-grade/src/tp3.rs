//! TP3, parts 2–6: the student's programs on `student1` against lab-server on `tcpip`, reached
//! as `tcpip.epfl.ch` as the handout says.
//!
//! - Part 2: the PMU listens on IPv6 only (the handout requires IPv6 sockets); `CMD_short:0`,
//!   `CMD_short:1` and `CMD_floodme` with n and the flood's size drawn per run.
//! - Part 3: an IPv4-only, then an IPv6-only server ("for grading, we will test both"), each
//!   dropping the first requests of every client and more at random, so a program that never
//!   retransmits is never answered; the server's log shows every request and when it came.
//! - Part 4: the receiver on student1 with nobody else on that host in the group (Linux delivers
//!   a group to every socket bound to its port once any socket of the host joined it,
//!   IP_MULTICAST_ALL), the TV starting at a line drawn per run; the sender's datagrams are read
//!   from the TV's own record on `tcpip`.
//! - Part 5: the same commands over WebSocket.
//! - Part 6 (bonus): see [`crate::tls`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labnet::Result;
use labnet::topo::TP3;
use labnet::wire::pmu::flood_text;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::lab::{self, Lab};
use crate::report::{Grade, Marks};
use crate::sandbox::{self, Finished, Lane, Limits, clip};
use crate::submission::Submission;
use crate::{Options, Progress};

/// The name the handout's programs use for the course server.
pub const HOST: &str = "tcpip.epfl.ch";
/// The host the students' programs run on.
const STUDENT: &str = "student1";
/// The server's IPv6 address: part 2 is served on it alone.
const SERVER_V6: &str = "fd30::10";
/// The server's IPv4 address (the TV sends and joins on it).
const SERVER_V4: &str = "172.30.0.10";
/// The student host's IPv4 address, as the TV's record shows it.
const STUDENT_V4: &str = "172.30.0.101";
/// Requests part 3's server drops from every client before any random loss.
const DROP_FIRST: u32 = 2;

/// Grades the parts of TP3 that `opts` asks for.
pub fn grade(sub: &Submission, lane: &Lane, opts: &Options, progress: &Progress) -> Result<Grade> {
    let mut marks = Marks::new(&opts.rubric, "tp3", &opts.parts);
    let mut lab = Lab::up(&TP3, lane)?;
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let g = Grader {
        sub,
        lane,
        opts,
        limits: Limits::default(),
    };
    if marks.wants("2") {
        progress.say("part 2: PMU client over TCP and IPv6");
        g.part2(&mut lab, &mut marks, &mut rng)?;
        lab.stop_servers();
    }
    if marks.wants("3") {
        progress.say("part 3: UDP reset over IPv4 and IPv6, with loss");
        g.part3(&mut lab, &mut marks, &mut rng)?;
        lab.stop_servers();
    }
    if marks.wants("4") {
        progress.say("part 4: multicast TV receiver and sender");
        g.part4(&mut lab, &mut marks, &mut rng)?;
        lab.stop_servers();
    }
    if marks.wants("5") {
        progress.say("part 5: WebSocket client");
        g.part5(&mut lab, &mut marks, &mut rng)?;
        lab.stop_servers();
    }
    if marks.wants("6") {
        progress.say("part 6: the PMU server over TLS (bonus)");
        crate::tls::part6(&g, &lab, &mut marks, &mut rng)?;
        lab.stop_servers();
    }
    Ok(marks.grade(&sub.name, &sub.ids))
}

/// What every part needs to run a student's program.
pub struct Grader<'a> {
    /// The submission.
    pub sub: &'a Submission,
    /// Its lane.
    pub lane: &'a Lane,
    /// Options.
    pub opts: &'a Options,
    /// Limits of each run.
    pub limits: Limits,
}

impl Grader<'_> {
    /// A fresh private copy of the submission and the staged path of the file named `prefix`
    /// (ready to run), or why the part cannot be graded.
    pub fn program(
        &self,
        stage: &str,
        prefix: &str,
    ) -> Result<std::result::Result<PathBuf, String>> {
        let Some(found) = self.sub.find(prefix) else {
            return Ok(Err(format!(
                "no {prefix}* file in the submission (found: {})",
                listing(self.sub)
            )));
        };
        let rel = found
            .strip_prefix(&self.sub.root)
            .unwrap_or(&found)
            .to_path_buf();
        let dir = self.lane.stage(stage, &self.sub.root, self.sub.files())?;
        let program = dir.join(&rel);
        Ok(sandbox::prepare(self.lane, &program, &self.limits)
            .map(|()| program)
            .map_err(|why| format!("{} cannot run: {why}", rel.display())))
    }

    /// The argument vector of `program` for `part`: its `--invoke` template or `default`.
    pub fn argv(
        &self,
        part: &str,
        default: &str,
        program: &Path,
        values: &[(&str, String)],
    ) -> Vec<std::ffi::OsString> {
        let template = self.opts.invoke.get(part).map_or(default, String::as_str);
        lab::argv(template, program, values)
    }

    /// Runs a program to its end on `host` (stopped after `expected` + the `--timeout` slack),
    /// then ends whatever of the lane's user is left.
    pub fn run(
        &self,
        lab: &Lab,
        host: &str,
        program: &Path,
        argv: &[std::ffi::OsString],
        expected: Duration,
    ) -> Result<Finished> {
        let cwd = program.parent().unwrap_or(Path::new("/"));
        let mut r = lab.student(self.lane, host, cwd, argv, false, &self.limits)?;
        let f = r.finish(expected + self.opts.timeout);
        self.lane.kill_all();
        Ok(f.relative_to(cwd))
    }
}

fn listing(sub: &Submission) -> String {
    let names: Vec<String> = sub
        .files()
        .iter()
        .take(8)
        .map(|p| p.display().to_string())
        .collect();
    if names.is_empty() {
        "no files".into()
    } else {
        names.join(", ")
    }
}

impl Grader<'_> {
    fn part2(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let program = match self.program("part2", "Part2_")? {
            Ok(p) => p,
            Err(why) => {
                marks.fail_rest("2", &why);
                return Ok(());
            }
        };
        let mut ended = Vec::new();
        for (cmd, id, d) in [
            ("CMD_short:0", "p2.short0", 0u64),
            ("CMD_short:1", "p2.short1", 1),
        ] {
            let n: u32 = rng.random_range(3..=8);
            lab.server(
                "tcpip",
                "lab-server",
                &pmu_server(
                    &["--pmu-port", "5003", "--messages", &n.to_string()],
                    rng,
                    SERVER_V6,
                ),
                "PMU listening",
            )?;
            let argv = self.argv("2", "{prog} {cmd}", &program, &values(5003, cmd));
            let f = self.run(
                lab,
                STUDENT,
                &program,
                &argv,
                Duration::from_secs(d * u64::from(n) + 2),
            )?;
            marks.check(id, messages(&f, n, cmd));
            ended.push((cmd, ending(&f)));
            lab.stop_servers();
        }
        let bytes: usize = rng.random_range(256 * 1024..=1024 * 1024);
        lab.server(
            "tcpip",
            "lab-server",
            &pmu_server(
                &["--pmu-port", "5003", "--flood-bytes", &bytes.to_string()],
                rng,
                SERVER_V6,
            ),
            "PMU listening",
        )?;
        let argv = self.argv("2", "{prog} {cmd}", &program, &values(5003, "CMD_floodme"));
        let f = self.run(lab, STUDENT, &program, &argv, Duration::from_secs(3))?;
        marks.check("p2.flood", flood(&f, bytes));
        ended.push(("CMD_floodme", ending(&f)));
        marks.check("p2.exits", exits(&ended, self.opts.timeout));
        Ok(())
    }

    fn part3(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let program = match self.program("part3", "Part3_")? {
            Ok(p) => p,
            Err(why) => {
                marks.fail_rest("3", &why);
                return Ok(());
            }
        };
        let mut runs = Vec::new();
        for (family, id) in [("v4", "p3.v4"), ("v6", "p3.v6")] {
            let seed: u64 = rng.random();
            lab.server(
                "tcpip",
                "lab-server",
                &strings(&[
                    "--json",
                    "--no-pmu",
                    "--no-tv",
                    "--no-ws",
                    "--reset-port",
                    "5004",
                    "--family",
                    family,
                    "--drop",
                    "0.2",
                    "--drop-first",
                    &DROP_FIRST.to_string(),
                    "--seed",
                    &seed.to_string(),
                ]),
                "RESET listening",
            )?;
            let argv = self.argv("3", "{prog}", &program, &values(5004, ""));
            // Two forced losses and some random ones: about 3-6 s of one-second timeouts.
            let f = self.run(lab, STUDENT, &program, &argv, Duration::from_secs(8))?;
            let run = ResetRun::read(&lab.stop_and_events("lab-server"), family, f);
            marks.check(id, run.reached());
            runs.push(run);
        }
        marks.check("p3.retransmit", retransmits(&runs));
        marks.check("p3.timeout", timeouts(&runs));
        marks.check("p3.offset", offsets(&runs));
        Ok(())
    }

    fn part4(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let receiver = self.program("part4r", "Part4_Receiver_")?;
        let sender = self.program("part4s", "Part4_Sender_")?;
        let record = self.lane.home.join("tv-record.jsonl");
        let _ = std::fs::remove_file(&record);
        let seed: u64 = rng.random();
        lab.server(
            "tcpip",
            "lab-server",
            &strings(&[
                "--json",
                "--no-pmu",
                "--no-reset",
                "--no-ws",
                "--iface",
                SERVER_V4,
                "--interval",
                "0.25",
                "--seed",
                &seed.to_string(),
                "--record",
                &record.display().to_string(),
            ]),
            "TV listening",
        )?;
        match receiver {
            Err(why) => {
                marks.check("p4.receive", Err(why.clone()));
                marks.check("p4.id", Err(why));
            }
            Ok(program) => {
                let argv = self.argv("4r", "{prog}", &program, &values(5005, ""));
                let cwd = program.parent().unwrap_or(Path::new("/"));
                let before = lab.events("lab-server").len();
                let mut r = lab.student(self.lane, STUDENT, cwd, &argv, false, &self.limits)?;
                // A receiver never ends by itself: let it listen for 5 s of the programme.
                std::thread::sleep(Duration::from_secs(5));
                let mut f = r.stop().relative_to(cwd);
                // Stopping a receiver is how its run ends, not something to report.
                f.stopped = false;
                self.lane.kill_all();
                let sent: Vec<String> = lab.events("lab-server")[before..]
                    .iter()
                    .filter(|e| e["level"] == "SEND" && e["line"].is_number())
                    .filter_map(|e| e["text"].as_str().map(str::to_owned))
                    .collect();
                marks.check("p4.receive", tv_lines(&f, &sent));
                marks.check("p4.id", tv_ids(&f, &sent));
            }
        }
        match sender {
            Err(why) => {
                marks.check("p4.send", Err(why.clone()));
                marks.check("p4.answer", Err(why));
            }
            Ok(program) => {
                let (long_len, short_len) =
                    (rng.random_range(320..=400), rng.random_range(40..=80));
                let long = opinion(rng, long_len);
                let short = opinion(rng, short_len);
                let argv = self.argv("4s", "{prog}", &program, &values(5005, ""));
                let cwd = program.parent().unwrap_or(Path::new("/"));
                let mut r = lab.student(self.lane, STUDENT, cwd, &argv, true, &self.limits)?;
                // One line at a time, as typed, each given time to reach the group.
                let from_student = |v: &Value| {
                    v["src"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(&format!("{STUDENT_V4}:")))
                };
                for text in [&long, &short] {
                    r.send_line(text);
                    let want = count_records(&record, &from_student) + 1;
                    wait_until(Duration::from_secs(4), || {
                        count_records(&record, &from_student) >= want
                    });
                }
                // The TV's answer follows the long text within a moment.
                std::thread::sleep(Duration::from_millis(500));
                r.close_stdin();
                let f = r.finish(Duration::from_secs(3)).relative_to(cwd);
                self.lane.kill_all();
                let seen: Vec<Value> = read_records(&record)
                    .into_iter()
                    .filter(|v| from_student(v))
                    .collect();
                marks.check(
                    "p4.send",
                    tv_send(&seen, &self.sub.ids, &[&long, &short], &f),
                );
                marks.check("p4.answer", tv_answer(&seen, &self.sub.ids, &long));
            }
        }
        Ok(())
    }

    fn part5(&self, lab: &mut Lab, marks: &mut Marks, rng: &mut SmallRng) -> Result<()> {
        let program = match self.program("part5", "Part5_")? {
            Ok(p) => p,
            Err(why) => {
                marks.fail_rest("5", &why);
                return Ok(());
            }
        };
        let n: u32 = rng.random_range(3..=8);
        let bytes: usize = rng.random_range(256 * 1024..=1024 * 1024);
        lab.server(
            "tcpip",
            "lab-server",
            &pmu_server(
                &[
                    "--no-pmu",
                    "--ws-port",
                    "5006",
                    "--messages",
                    &n.to_string(),
                    "--flood-bytes",
                    &bytes.to_string(),
                ],
                rng,
                "::",
            ),
            "WS listening",
        )?;
        let argv = self.argv("5", "{prog} {cmd}", &program, &values(5006, "CMD_short:0"));
        let f = self.run(lab, STUDENT, &program, &argv, Duration::from_secs(3))?;
        let mut ended = vec![("CMD_short:0", ending(&f))];
        marks.check("p5.short0", messages(&f, n, "CMD_short:0"));
        let argv = self.argv("5", "{prog} {cmd}", &program, &values(5006, "CMD_floodme"));
        let f = self.run(lab, STUDENT, &program, &argv, Duration::from_secs(3))?;
        ended.push(("CMD_floodme", ending(&f)));
        marks.check("p5.flood", flood(&f, bytes));
        marks.check("p5.exits", exits(&ended, self.opts.timeout));
        Ok(())
    }
}

/// lab-server's arguments for a PMU service (TCP or WebSocket) on `bind`.
fn pmu_server(extra: &[&str], rng: &mut SmallRng, bind: &str) -> Vec<String> {
    let seed: u64 = rng.random();
    let mut v = strings(&[
        "--json",
        "--no-reset",
        "--no-tv",
        "--bind",
        bind,
        "--seed",
        &seed.to_string(),
    ]);
    if !extra.contains(&"--no-pmu") {
        v.push("--no-ws".into());
    }
    v.extend(strings(extra));
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// The template values of a TP3 program.
fn values(port: u16, cmd: &str) -> Vec<(&'static str, String)> {
    vec![
        ("host", HOST.to_owned()),
        ("port", port.to_string()),
        ("cmd", cmd.to_owned()),
        ("group", "224.1.1.1".to_owned()),
    ]
}

/// A random text of about `len` characters, as a subscriber's opinion.
fn opinion(rng: &mut SmallRng, len: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "play",
        "was",
        "moving",
        "and",
        "Juliet",
        "Romeo",
        "balcony",
        "Verona",
        "love",
        "feud",
        "nurse",
        "friar",
        "poison",
        "dagger",
        "dawn",
        "lark",
        "nightingale",
        "Mercutio",
        "Tybalt",
        "masque",
        "star-crossed",
        "fortune",
        "banished",
        "tomb",
        "sweet",
        "sorrow",
    ];
    let mut s = String::from("Opinion:");
    while s.chars().count() < len {
        s.push(' ');
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    s
}

/// Checks that stdout shows exactly the messages 1..n, each alone on its line (other text on
/// the line, such as `received:`, is fine; a second message or a fragment is not).
pub fn messages(f: &Finished, n: u32, cmd: &str) -> std::result::Result<String, String> {
    const MSG: &str = "This is PMU data";
    let mut seen: Vec<u32> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    for line in f.stdout.lines() {
        let count = line.matches(MSG).count();
        if count == 0 {
            continue;
        }
        let after = line
            .find(MSG)
            .map_or("", |i| line[i + MSG.len()..].trim_start());
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        let rest = &after[digits.len()..];
        match digits.parse::<u32>() {
            Ok(i) if count == 1 && !rest.chars().any(char::is_alphanumeric) => seen.push(i),
            _ => bad.push(clip(line, 80)),
        }
    }
    let want: Vec<u32> = (1..=n).collect();
    if seen == want && bad.is_empty() {
        return Ok(format!(
            "{cmd}: the server sent {n} messages and the program printed them on {n} lines, 'This is PMU data 1' … 'This is PMU data {n}'"
        ));
    }
    let mut why = format!(
        "{cmd}: the server sent {n} messages; expected {n} lines 'This is PMU data 1' … 'This is PMU data {n}', one message per line"
    );
    if !bad.is_empty() {
        why.push_str(&format!(
            "; saw {} line(s) holding more than one message or a cut one, e.g. '{}'",
            bad.len(),
            bad[0]
        ));
    }
    let missing: Vec<u32> = want.iter().copied().filter(|i| !seen.contains(i)).collect();
    if !missing.is_empty() && bad.is_empty() {
        why.push_str(&format!("; messages {missing:?} not on lines of their own"));
    }
    if seen.len() != seen.iter().collect::<BTreeSet<_>>().len() || seen.iter().any(|i| *i > n) {
        why.push_str(&format!("; printed numbers {seen:?}"));
    }
    Err(why + &silence_note(f))
}

/// Checks that the whole flood of `bytes` was printed, in order (line breaks the program added
/// between its reads do not matter).
pub fn flood(f: &Finished, bytes: usize) -> std::result::Result<String, String> {
    let want: String = String::from_utf8_lossy(&flood_text(bytes))
        .chars()
        .filter(|c| *c != '\n')
        .collect();
    let got: String = f
        .stdout
        .chars()
        .filter(|c| *c != '\n' && *c != '\r')
        .collect();
    let lines = flood_text(bytes).iter().filter(|b| **b == b'\n').count() + 1;
    if got.contains(&want) {
        return Ok(format!(
            "the server sent {bytes} bytes in one send() and the program printed all of them in order"
        ));
    }
    let seen = f.stdout.matches("PMU flood line").count();
    Err(format!(
        "expected the whole {bytes}-byte message ({lines} lines 'PMU flood line 0000001: …'), in order; saw {seen} of its lines{}",
        silence_note(f)
    ))
}

/// How a run ended, for [`exits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// It printed what the server sent and ended by itself.
    Ended,
    /// It was still running at its deadline.
    Stuck,
    /// It ended without printing anything the server sent (it crashed, or never got data).
    Empty,
}

fn ending(f: &Finished) -> Ending {
    let got = f.stdout.contains("This is PMU data") || f.stdout.contains("PMU flood line");
    match (f.exited, got) {
        (false, _) => Ending::Stuck,
        (true, false) => Ending::Empty,
        (true, true) => Ending::Ended,
    }
}

/// Every run printed the server's data and ended by itself when the server closed.
fn exits(ended: &[(&str, Ending)], slack: Duration) -> std::result::Result<String, String> {
    let with = |want: Ending| -> Vec<&str> {
        ended
            .iter()
            .filter(|(_, e)| *e == want)
            .map(|(c, _)| *c)
            .collect()
    };
    let (stuck, empty) = (with(Ending::Stuck), with(Ending::Empty));
    if stuck.is_empty() && empty.is_empty() {
        return Ok(format!(
            "it ended by itself after each of {} commands, once the server closed",
            ended.len()
        ));
    }
    let mut why = String::from(
        "expected the program to print what the server sent and end when the server closes the connection",
    );
    if !stuck.is_empty() {
        why.push_str(&format!(
            "; it was still running {} s after the server was done with {}",
            slack.as_secs(),
            stuck.join(", ")
        ));
    }
    if !empty.is_empty() {
        why.push_str(&format!(
            "; it ended without printing any of the server's data for {}",
            empty.join(", ")
        ));
    }
    Err(why)
}

/// A note on what a silent, stuck or crashed program did, appended to a failure.
fn silence_note(f: &Finished) -> String {
    let mut s = String::new();
    if f.stopped {
        s.push_str(&format!(
            "; it was still running after {:.0} s and was stopped",
            f.elapsed.as_secs_f64()
        ));
    }
    if f.flooded {
        s.push_str("; it printed more than the output limit and was stopped");
    }
    if f.stdout.trim().is_empty() {
        s.push_str("; it printed nothing");
    }
    let tail = f.error_tail();
    if !tail.is_empty() {
        s.push_str(&format!("; its last error output: {tail}"));
    }
    s
}

/// One run of part 3 as the server saw it.
#[derive(Debug)]
struct ResetRun {
    family: &'static str,
    /// Times (s) of the valid requests from the student.
    requests: Vec<f64>,
    /// The offset sent, if the server answered.
    offset: Option<u32>,
    finished: Finished,
}

impl ResetRun {
    fn read(events: &[Value], family: &'static str, finished: Finished) -> ResetRun {
        let mut requests = Vec::new();
        let mut offset = None;
        for e in events.iter().filter(|e| e["service"] == "reset") {
            let msg = e["msg"].as_str().unwrap_or("");
            let Some(t) = e["time"].as_str().and_then(seconds_of_day) else {
                continue;
            };
            if msg.contains("dropped on purpose") {
                requests.push(t);
            } else if let Some(x) = msg.split("OFFSET=").nth(1) {
                requests.push(t);
                if offset.is_none() {
                    offset = x.trim().parse().ok();
                }
            }
        }
        ResetRun {
            family,
            requests,
            offset,
            finished,
        }
    }

    fn name(&self) -> &'static str {
        if self.family == "v4" { "IPv4" } else { "IPv6" }
    }

    fn reached(&self) -> std::result::Result<String, String> {
        match (self.requests.len(), self.offset) {
            (0, _) => Err(format!(
                "expected requests RESET:n on the {} server; it received none{}",
                self.name(),
                silence_note(&self.finished)
            )),
            (k, Some(x)) => Ok(format!(
                "the {}-only server got {k} requests and answered OFFSET={x}",
                self.name()
            )),
            (k, None) => Err(format!(
                "the {}-only server dropped the first {DROP_FIRST} requests on purpose and got {k} in all; it never answered because the program stopped retransmitting{}",
                self.name(),
                silence_note(&self.finished)
            )),
        }
    }
}

fn retransmits(runs: &[ResetRun]) -> std::result::Result<String, String> {
    let counts: Vec<String> = runs
        .iter()
        .map(|r| format!("{} {}", r.name(), r.requests.len()))
        .collect();
    if runs
        .iter()
        .all(|r| r.requests.len() > DROP_FIRST as usize && r.offset.is_some())
    {
        Ok(format!(
            "requests until answered on each server ({}), the first {DROP_FIRST} lost on purpose",
            counts.join(", ")
        ))
    } else {
        Err(format!(
            "expected requests to be sent again until an OFFSET comes back (each server dropped the first {DROP_FIRST}); requests seen: {}",
            counts.join(", ")
        ))
    }
}

fn timeouts(runs: &[ResetRun]) -> std::result::Result<String, String> {
    let mut gaps: Vec<f64> = Vec::new();
    for r in runs {
        for w in r.requests.windows(2) {
            let mut g = w[1] - w[0];
            if g < 0.0 {
                g += 86_400.0;
            }
            gaps.push(g);
        }
    }
    if gaps.is_empty() {
        return Err("expected a retry about 1 s after each unanswered request; the servers never saw a second request".into());
    }
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    // 1 s per try; 2 s between two tries of one family when the program alternates families.
    if (0.7..=2.5).contains(&median) {
        Ok(format!(
            "{:.2} s between tries (median of {})",
            median,
            gaps.len()
        ))
    } else {
        Err(format!(
            "expected about 1 s between tries (the handout's timeout); the median gap was {median:.2} s over {} gaps",
            gaps.len()
        ))
    }
}

fn offsets(runs: &[ResetRun]) -> std::result::Result<String, String> {
    let mut notes = Vec::new();
    let mut ok = true;
    for r in runs {
        match r.offset {
            None => {
                ok = false;
                notes.push(format!("{}: no answer to print", r.name()));
            }
            Some(x) => {
                let printed = r
                    .finished
                    .stdout
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|t| t == x.to_string());
                if printed {
                    notes.push(format!("{}: printed {x}", r.name()));
                } else {
                    ok = false;
                    notes.push(format!(
                        "{}: the server sent OFFSET={x}, the output does not show {x}",
                        r.name()
                    ));
                }
            }
        }
    }
    if ok {
        Ok(notes.join("; "))
    } else {
        Err(format!(
            "expected the offset the server chose to be printed; {}",
            notes.join("; ")
        ))
    }
}

/// `2026-11-29 14:20:31.123` → seconds since midnight.
fn seconds_of_day(time: &str) -> Option<f64> {
    let clock = time.split_whitespace().nth(1)?;
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn tv_lines(f: &Finished, sent: &[String]) -> std::result::Result<String, String> {
    let shown: Vec<&String> = sent
        .iter()
        .filter(|l| f.stdout.contains(l.as_str()))
        .collect();
    if shown.len() >= 3 {
        Ok(format!(
            "printed {} of the {} lines the TV sent while it listened, e.g. '{}'",
            shown.len(),
            sent.len(),
            clip(shown[0], 60)
        ))
    } else {
        let first = f.stdout.lines().next().unwrap_or("");
        Err(format!(
            "expected the lines of the play the TV multicast to 224.1.1.1:5005 while it ran ({} lines, e.g. '{}'); it printed {} of them{}{}",
            sent.len(),
            sent.first().map_or("", |s| s.as_str()),
            shown.len(),
            if first.is_empty() {
                String::new()
            } else {
                format!(", its output began '{}'", clip(first, 60))
            },
            silence_note(f)
        ))
    }
}

fn tv_ids(f: &Finished, sent: &[String]) -> std::result::Result<String, String> {
    let with_id = f
        .stdout
        .lines()
        .filter(|l| l.contains("swcmTV") && sent.iter().any(|s| l.contains(s.as_str())))
        .count();
    if with_id > 0 {
        Ok(format!("{with_id} lines show the ID swcmTV with the text"))
    } else {
        Err("expected each line with its sender's 6-character ID (swcmTV, the first 6 bytes of the datagram)".into())
    }
}

fn tv_send(
    seen: &[Value],
    ids: &[String],
    typed: &[&String],
    f: &Finished,
) -> std::result::Result<String, String> {
    if seen.is_empty() {
        return Err(format!(
            "expected datagrams from student1 on 224.1.1.1:5005 carrying a 6-character ID and the typed text; the TV's record has none{}",
            silence_note(f)
        ));
    }
    for v in seen {
        let id = v["id"].as_str().unwrap_or("");
        let text = v["text"].as_str().unwrap_or("");
        let id_ok = if ids.is_empty() {
            id.len() == 6
        } else {
            ids.iter().any(|i| i == id)
        };
        let text_ok = typed
            .iter()
            .any(|t| text.trim_end_matches(['\r', '\n']) == t.as_str());
        if id_ok && text_ok {
            return Ok(format!(
                "{} datagrams; e.g. ID {id} then the typed text ({} characters)",
                seen.len(),
                text.trim_end().chars().count()
            ));
        }
    }
    let v = &seen[0];
    let want_ids = if ids.is_empty() {
        "any 6 characters (the submission's name gives no IDs)".to_owned()
    } else {
        ids.join(" or ")
    };
    Err(format!(
        "expected the ID ({want_ids}) in the first 6 bytes, then exactly the typed text; saw ID '{}' and text '{}'",
        v["id"].as_str().unwrap_or("?"),
        clip(v["text"].as_str().unwrap_or(""), 60)
    ))
}

fn tv_answer(seen: &[Value], ids: &[String], long: &str) -> std::result::Result<String, String> {
    let ours = |v: &&Value| {
        let id = v["id"].as_str().unwrap_or("");
        ids.is_empty() || ids.iter().any(|i| i == id)
    };
    if let Some(a) = seen
        .iter()
        .filter(ours)
        .find_map(|v| v["answered"].as_str())
    {
        return Ok(format!("the TV answered '{a}'"));
    }
    let other = seen.iter().find_map(|v| v["answered"].as_str());
    Err(format!(
        "expected the TV to thank one of the group's IDs for the {}-character text; {}",
        long.chars().count(),
        match other {
            Some(a) => format!("it answered '{a}', an ID that is not the group's"),
            None => format!(
                "it did not answer (its record shows {} datagram(s) from student1, none with 300 characters or more after the ID)",
                seen.len()
            ),
        }
    ))
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn count_records(path: &Path, f: &impl Fn(&Value) -> bool) -> usize {
    read_records(path).iter().filter(|v| f(v)).count()
}

/// Polls `f` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(s: &str) -> Finished {
        Finished {
            stdout: s.into(),
            exited: true,
            ..Finished::default()
        }
    }

    #[test]
    fn messages_on_their_own_lines_pass_and_merged_or_missing_ones_fail() {
        let good =
            "connected\nThis is PMU data 1\nreceived: This is PMU data 2\nThis is PMU data 3\n";
        assert!(messages(&out(good), 3, "CMD_short:0").is_ok());
        let merged = "This is PMU data 1This is PMU data 2\nThis is PMU data 3\n";
        let e = messages(&out(merged), 3, "CMD_short:0").unwrap_err();
        assert!(e.contains("more than one message"), "{e}");
        let cut = "This is PMU data 1\nThis is PMU data 2This is PMU\n data 3\n";
        assert!(messages(&out(cut), 3, "CMD_short:0").is_err());
        let missing = "This is PMU data 1\nThis is PMU data 3\n";
        let e = messages(&out(missing), 3, "CMD_short:0").unwrap_err();
        assert!(e.contains("[2]"), "{e}");
        let e = messages(&out(""), 3, "CMD_short:0").unwrap_err();
        assert!(e.contains("printed nothing"), "{e}");
        assert!(messages(&out("This is PMU data 1\nThis is PMU data 2\n"), 3, "x").is_err());
    }

    #[test]
    fn the_flood_must_be_whole_whatever_the_line_breaks() {
        let text = String::from_utf8(flood_text(5000)).unwrap();
        let chunked: String = text
            .as_bytes()
            .chunks(1024)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        assert!(flood(&out(&chunked), 5000).is_ok());
        let e = flood(&out(&text[..1024]), 5000).unwrap_err();
        assert!(e.contains("saw"), "{e}");
    }

    #[test]
    fn clock_times_are_seconds_of_the_day() {
        assert_eq!(seconds_of_day("2026-11-29 01:02:03.500"), Some(3723.5));
        assert_eq!(seconds_of_day("garbage"), None);
    }
}
