//! What the chat and week-3 grading tests share: a class made of a reference submission and its
//! mutants, graded in one `lab-grade batch`, and each submission's part scores compared with the
//! ones it must get.
//!
//! A mutant is a folder under `tests/mutants/<lab>/<name>/`: files that replace the reference's
//! (a program rewritten whole, e.g. an infinite loop), an `EDIT` (one change to one file of the
//! reference, so the mutant stays a few lines and follows the reference when it changes), and a
//! `REMOVE` (files to delete). `EDIT` holds `# why` lines, then `--- FILE`, the reference's lines,
//! `+++`, and the lines that replace them (every occurrence; the test fails if there is none).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::proc::Proc;

/// The workspace's `tests/students/` folder.
pub fn students() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/students")
}

/// This crate's `tests/mutants/<lab>/` folder.
pub fn mutants(lab: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mutants")
        .join(lab)
}

/// A scratch folder of the test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("lab-grade-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies the regular files of `from` (not its hidden files or byte code) into `to`.
pub fn copy_files(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_file() && !name.starts_with('.') && !name.ends_with(".pyc") {
            fs::copy(&p, to.join(&name)).unwrap();
        }
    }
}

/// Makes `dir` (a copy of the reference) into the mutant `mutant`.
pub fn apply_mutant(dir: &Path, mutant: &Path) {
    for e in fs::read_dir(mutant).unwrap() {
        let f = e.unwrap().path();
        match f.file_name().unwrap().to_str().unwrap() {
            "REMOVE" => {
                for g in fs::read_to_string(&f).unwrap().lines() {
                    if !g.trim().is_empty() {
                        fs::remove_file(dir.join(g.trim()))
                            .unwrap_or_else(|e| panic!("{}: remove {g}: {e}", mutant.display()));
                    }
                }
            }
            "EDIT" => edit(dir, &fs::read_to_string(&f).unwrap(), mutant),
            name => {
                fs::copy(&f, dir.join(name)).unwrap();
            }
        }
    }
}

fn edit(dir: &Path, spec: &str, mutant: &Path) {
    let mut lines = spec.lines().skip_while(|l| l.starts_with('#'));
    let file = lines
        .next()
        .and_then(|l| l.strip_prefix("--- "))
        .unwrap_or_else(|| {
            panic!(
                "{}: EDIT must name its file with '--- FILE'",
                mutant.display()
            )
        })
        .trim()
        .to_owned();
    let rest: Vec<&str> = lines.collect();
    let split = rest
        .iter()
        .position(|l| *l == "+++")
        .unwrap_or_else(|| panic!("{}: EDIT has no '+++' line", mutant.display()));
    let join = |v: &[&str]| v.iter().map(|l| format!("{l}\n")).collect::<String>();
    let (old, new) = (join(&rest[..split]), join(&rest[split + 1..]));
    let path = dir.join(&file);
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(&old),
        "{}: the reference's {file} no longer holds the lines the mutant changes:\n{old}",
        mutant.display()
    );
    fs::write(&path, text.replace(&old, &new)).unwrap();
}

/// A seed for this run (printed, so a failure can be repeated with `--seed`).
pub fn seed() -> u64 {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000;
    eprintln!("seed {s}");
    s
}

/// What a batch run gave.
pub struct Batch {
    /// Part scores (and `score`, `max`) by submission.
    pub grades: BTreeMap<String, BTreeMap<String, u32>>,
    /// Feedback files by submission.
    pub feedback: BTreeMap<String, String>,
    /// The lab-grade process's ID (its lanes' users and labs are named after it).
    pub pid: u32,
    /// How long the batch took.
    pub took: Duration,
    /// What it printed.
    pub stdout: String,
}

/// `lab-grade batch LAB DIR --jobs N --seed S` with CSV and feedback.
pub fn batch(lab: &str, class: &Path, out: &Path, jobs: usize, seed: u64) -> Batch {
    for b in ["lab-server", "chat-server", "chat-client", "echo-server"] {
        testkit::bin(b);
    }
    let csv = out.join("grades.csv");
    let feedback = out.join("feedback");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lab-grade"));
    cmd.args(["batch", lab])
        .arg(class)
        .arg("--csv")
        .arg(&csv)
        .arg("--feedback")
        .arg(&feedback)
        .args(["--jobs", &jobs.to_string(), "--seed", &seed.to_string()]);
    let started = Instant::now();
    let run = Proc::spawn(cmd).named(&format!("lab-grade batch {lab}"));
    let pid = run.pid();
    let done = run.finish_within(Duration::from_secs(900));
    let took = started.elapsed();
    assert!(
        done.code == Some(0),
        "lab-grade batch {lab} failed (seed {seed}): {}\n{}",
        done.stderr,
        done.stdout
    );
    let grades = lab_grade::sample::read_csv(&fs::read_to_string(&csv).unwrap());
    let feedback = fs::read_dir(&feedback)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&p).unwrap())
        })
        .collect();
    Batch {
        grades,
        feedback,
        pid,
        took,
        stdout: done.stdout,
    }
}

/// Compares every submission's part scores with what it must get; one message per difference,
/// with the submission's feedback.
pub fn differences(
    b: &Batch,
    want: &[(String, BTreeMap<&'static str, u32>)],
    max: u32,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, parts) in want {
        let Some(got) = b.grades.get(name) else {
            wrong.push(format!("{name}: not graded"));
            continue;
        };
        let total: u32 = parts.values().sum();
        let ok = parts.iter().all(|(p, s)| got.get(*p) == Some(s))
            && got.get("score") == Some(&total)
            && got.get("max") == Some(&max);
        if !ok {
            wrong.push(format!(
                "{name}: want {parts:?} (score {total}/{max}), got {got:?}\n{}",
                b.feedback.get(name).map_or("", String::as_str)
            ));
        }
    }
    wrong
}

/// Nothing of the students' programs is left after the batch `pid`: no lab of it, and no
/// process of its lanes' users.
pub fn nothing_left(pid: u32) {
    let labs: Vec<String> = labnet::netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("nlg{pid}l")))
        .collect();
    assert!(labs.is_empty(), "labs left behind: {labs:?}");
    let base = 1_610_000_000 + (pid % 100_000) * 64;
    let ps = Command::new("ps")
        .args(["-eo", "uid=,args="])
        .output()
        .unwrap();
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|u| u.parse::<u32>().ok())
                .is_some_and(|u| (base..base + 64).contains(&u))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        left.is_empty(),
        "processes of the lanes' users left: {left:?}"
    );
}
