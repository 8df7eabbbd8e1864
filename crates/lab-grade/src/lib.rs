//! `lab-grade`: grades students' own programs for TP3 (parts 2–6), the chat lab and the week-3
//! homework — the handouts' "some parts of the lab are graded automatically", whose test bench
//! was never published.
//!
//! Each submission (a folder, or the `.zip` Moodle hands out per group) is graded in a lab of its
//! own: fresh network namespaces built like `cargo xtask lab` builds them (unique names, removed
//! afterwards), the course servers started there (lab-server, chat-server), and the student's
//! programs run in the hosts the handout puts them on, reaching the servers by the handout's names
//! (`tcpip.epfl.ch`, `chat.ttm4200.com`). Student code never runs as root: see [`sandbox`].
//! Every check has its points in one rubric table ([`rubric`]) and feedback that says what was
//! expected and what was seen ([`report`]). Values the programs must not be able to guess (n, the
//! offsets, the loss, the TV's lines, the texts typed) are drawn from `--seed`, printed with the
//! grade so a run can be repeated.
//!
//! The socket idea a grader teaches is the one the handouts leave implicit: a program is only
//! right when it is right against every behaviour the protocol allows — messages merged or cut by
//! TCP, datagrams lost, the other address family, a server on another host.

pub mod batch;
pub mod chat;
pub mod lab;
pub mod report;
pub mod rubric;
pub mod sample;
pub mod sandbox;
pub mod steps;
pub mod submission;
pub mod tls;
pub mod tp3;
pub mod week3;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use labnet::{Error, Result};

use crate::rubric::Rubric;
use crate::submission::Submission;

/// `--help` text.
pub const HELP: &str = "\
lab-grade — grade students' submissions in fresh namespace labs (root; student code runs unprivileged)

USAGE:
    lab-grade tp3   SUBMISSION [--part 2|3|4|5|6]... [--ca cacert.pem] [OPTIONS]
    lab-grade chat  SUBMISSION [OPTIONS]
    lab-grade week3 SUBMISSION [OPTIONS]                       # homework 1-3
    lab-grade batch tp3|chat|week3 DIR [--csv grades.csv] [--feedback DIR] [--jobs N] [OPTIONS]

    SUBMISSION is a folder or a .zip (one Moodle archive per group); the group's IDs come from its
    name (Lab3_123456_654321). Files are found by the handouts' names: Part2_*, Part3_*,
    Part4_Receiver_*, Part4_Sender_*, Part5_*, Part6_PMU_* with *_key.pem and *_cert.pem (TP3);
    chatserver.py, chatclient.py, *.pcap (chat); hw1*, hw2*, hw3* (week 3). A .py runs with
    python3, a .c is compiled with cc, anything else runs as an executable.

OPTIONS:
    --part P               grade only these parts (repeatable; TP3 2-6, chat server|client|auth|
                           captures, week3 hw1|hw2|hw3)                   [default: all]
    --ca FILE              TP3 part 6: the course CA certificate the student's must chain to
    --seed N               seed of everything drawn at random (printed with the grade)
                                                                          [default: random]
    --invoke PART=TEMPLATE how to start a program, e.g. 2='{prog} {host} {port} {cmd}'
                           (placeholders: {prog} {host} {port} {cmd} {group} {id} {name}
                           {timeout} {log} {listen} {target} {listen2} {target2}; parts 2 3
                           4r 4s 5 6 server client auth hw1 hw2 hw3 hw3multi)
    --timeout S            longest a single run of a student's program may take [default: 30]
    --rubric FILE          points per check as JSON ({\"p2.short0\": 4}); default in the README
    --json                 one JSON document per grade (batch: per line), nothing else on stdout
    -h, --help             this text

BATCH:
    --csv FILE             one row per submission: submission,ids,<part scores>,score,max
    --feedback DIR         one feedback file per submission (<submission>.txt)
    --jobs N               submissions graded at once, each in its own lab and user [default: 8]

EXIT STATUS:
    0 grading ran (whatever the score), 1 it could not run, 2 usage error.

EXAMPLES:
    sudo lab-grade tp3 Lab3_123456_654321.zip --ca course-ca/cacert.pem
    sudo lab-grade tp3 Lab3_123456_654321/ --part 2 --part 3 --seed 7
    sudo lab-grade chat group12/ --json
    sudo lab-grade batch tp3 moodle-export/ --csv grades.csv --feedback feedback/ --ca cacert.pem
";

/// Which lab a submission is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabKind {
    /// TP3, parts 2–6.
    Tp3,
    /// The chat lab.
    Chat,
    /// Week 3 homework 1–3.
    Week3,
}

impl LabKind {
    /// The rubric's name.
    pub fn name(self) -> &'static str {
        match self {
            LabKind::Tp3 => "tp3",
            LabKind::Chat => "chat",
            LabKind::Week3 => "week3",
        }
    }

    fn parse(s: &str) -> Result<LabKind> {
        match s {
            "tp3" => Ok(LabKind::Tp3),
            "chat" => Ok(LabKind::Chat),
            "week3" => Ok(LabKind::Week3),
            other => Err(Error::usage(format!(
                "unknown lab '{other}': tp3, chat, week3 or batch"
            ))),
        }
    }
}

/// Options shared by every way of grading.
#[derive(Clone, Debug)]
pub struct Options {
    /// Parts to grade (all when empty).
    pub parts: Vec<String>,
    /// TP3 part 6: the course CA.
    pub ca: Option<PathBuf>,
    /// Seed of everything random.
    pub seed: u64,
    /// `--invoke` templates by part.
    pub invoke: BTreeMap<String, String>,
    /// Longest single run.
    pub timeout: Duration,
    /// Points per check.
    pub rubric: Rubric,
    /// JSON output.
    pub json: bool,
}

/// What to do.
#[derive(Clone, Debug)]
pub enum Task {
    /// Grade one submission.
    One {
        /// Lab.
        lab: LabKind,
        /// Folder or archive.
        submission: PathBuf,
    },
    /// Grade every submission in a folder.
    Batch {
        /// Lab.
        lab: LabKind,
        /// Folder of submissions (folders and archives).
        dir: PathBuf,
        /// CSV output.
        csv: Option<PathBuf>,
        /// Feedback folder.
        feedback: Option<PathBuf>,
        /// Parallel lanes.
        jobs: usize,
    },
}

/// The parsed command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// What to do.
    pub task: Task,
    /// How.
    pub options: Options,
}

impl Config {
    /// Parses the command line.
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let json = a.contains("--json");
        let parts: Vec<String> = a.values_from_str("--part")?;
        let ca: Option<PathBuf> = a.opt_value_from_str("--ca")?;
        let seed: Option<u64> = labnet::args::opt(&mut a, "--seed")?;
        let invokes: Vec<String> = a.values_from_str("--invoke")?;
        let timeout =
            labnet::args::opt_seconds(&mut a, "--timeout")?.unwrap_or(Duration::from_secs(30));
        if timeout < Duration::from_secs(1) {
            return Err(Error::usage("--timeout: expected at least 1 second"));
        }
        let rubric = match a.opt_value_from_str::<_, PathBuf>("--rubric")? {
            Some(f) => Rubric::load(&f)?,
            None => Rubric::default(),
        };
        let csv: Option<PathBuf> = a.opt_value_from_str("--csv")?;
        let feedback: Option<PathBuf> = a.opt_value_from_str("--feedback")?;
        let jobs: usize = labnet::args::opt_or(&mut a, "--jobs", 8)?;
        if !(1..=64).contains(&jobs) {
            return Err(Error::usage("--jobs: expected 1-64"));
        }
        let first: String = a
            .free_from_str()
            .map_err(|_| Error::usage("which lab? tp3, chat, week3 or batch"))?;
        let task = if first == "batch" {
            let lab: String = a
                .free_from_str()
                .map_err(|_| Error::usage("batch needs a lab: batch tp3|chat|week3 DIR"))?;
            let lab = LabKind::parse(&lab)?;
            let dir: PathBuf = a
                .free_from_str()
                .map_err(|_| Error::usage("batch needs a folder of submissions"))?;
            Task::Batch {
                lab,
                dir,
                csv,
                feedback,
                jobs,
            }
        } else {
            let lab = LabKind::parse(&first)?;
            let submission: PathBuf = a.free_from_str().map_err(|_| {
                Error::usage(format!("{first} needs a SUBMISSION (a folder or a .zip)"))
            })?;
            if csv.is_some() || feedback.is_some() {
                return Err(Error::usage("--csv and --feedback are options of batch"));
            }
            Task::One { lab, submission }
        };
        labnet::args::finish(a)?;
        let lab = match &task {
            Task::One { lab, .. } | Task::Batch { lab, .. } => *lab,
        };
        let known = Rubric::default().parts(lab.name());
        for p in &parts {
            if !known.contains(&p.as_str()) {
                return Err(Error::usage(format!(
                    "--part {p}: {} has parts {}",
                    lab.name(),
                    known.join(", ")
                )));
            }
        }
        let mut invoke = BTreeMap::new();
        for i in invokes {
            let Some((part, template)) = i.split_once('=') else {
                return Err(Error::usage(format!(
                    "--invoke {i}: expected PART=TEMPLATE, e.g. 2='{{prog}} {{cmd}}'"
                )));
            };
            if !template.contains("{prog}") {
                return Err(Error::usage(format!(
                    "--invoke {part}: the template must contain {{prog}}"
                )));
            }
            invoke.insert(part.to_owned(), template.to_owned());
        }
        if let Some(ca) = &ca {
            if !ca.is_file() {
                return Err(Error::usage(format!("--ca {}: no such file", ca.display())));
            }
        }
        Ok(Config {
            task,
            options: Options {
                parts,
                ca,
                seed: seed.unwrap_or_else(|| {
                    use rand::{Rng, SeedableRng};
                    rand::rngs::SmallRng::from_os_rng().random()
                }),
                invoke,
                timeout,
                rubric,
                json,
            },
        })
    }
}

/// Grades as the command line says.
pub fn run(config: &Config) -> Result<()> {
    labnet::log::set_json(false);
    lab::preflight()?;
    match &config.task {
        Task::One { lab, submission } => {
            let sub = Submission::open(submission)?;
            let work = lab::Work::new()?;
            let lane = sandbox::Lane::new(0, work.path())?;
            let progress = Progress::new(config.options.json);
            progress.say(&format!(
                "grading {} {} (seed {})",
                lab.name(),
                sub.name,
                config.options.seed
            ));
            let grade = grade(*lab, &sub, &lane, &config.options, &progress)?;
            grade.print(config.options.json);
            Ok(())
        }
        Task::Batch {
            lab,
            dir,
            csv,
            feedback,
            jobs,
        } => batch::run(
            *lab,
            dir,
            csv.as_deref(),
            feedback.as_deref(),
            *jobs,
            &config.options,
        ),
    }
}

/// Grades one submission in a lane.
pub fn grade(
    lab: LabKind,
    sub: &Submission,
    lane: &sandbox::Lane,
    opts: &Options,
    progress: &Progress,
) -> Result<report::Grade> {
    let g = match lab {
        LabKind::Tp3 => tp3::grade(sub, lane, opts, progress),
        LabKind::Chat => chat::grade(sub, lane, opts, progress),
        LabKind::Week3 => week3::grade(sub, lane, opts, progress),
    };
    lane.kill_all();
    g
}

/// Progress lines for a person at the terminal: stdout in text mode, stderr with `--json` (whose
/// stdout holds only the grades).
#[derive(Clone, Debug)]
pub struct Progress {
    json: bool,
    prefix: String,
}

impl Progress {
    /// A progress printer.
    pub fn new(json: bool) -> Progress {
        Progress {
            json,
            prefix: String::new(),
        }
    }

    /// The same printer, each line prefixed (a batch lane names its submission).
    pub fn with_prefix(&self, prefix: &str) -> Progress {
        Progress {
            json: self.json,
            prefix: prefix.to_owned(),
        }
    }

    /// Prints one progress line.
    pub fn say(&self, msg: &str) {
        let line =
            labnet::log::Event::new(labnet::log::Level::Info, format!("{}{msg}", self.prefix))
                .format(false, std::time::SystemTime::now());
        if self.json {
            eprint!("{line}");
        } else {
            print!("{line}");
        }
    }
}
