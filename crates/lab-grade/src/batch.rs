//! `lab-grade batch`: a class at once (a Moodle export: one folder or `.zip` per group), graded
//! in parallel lanes — each lane its own unprivileged user and its own fresh lab per
//! submission, so lanes share nothing — then one CSV row and one feedback file per submission,
//! and a class summary: for every check, how many submissions passed it.

use std::collections::VecDeque;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use labnet::log::{Event, Level};
use labnet::{Context, Error, Result};

use crate::report::{self, Grade, Marks};
use crate::sandbox::Lane;
use crate::submission::Submission;
use crate::{LabKind, Options, Progress, lab};

/// Grades every submission in `dir`.
pub fn run(
    kind: LabKind,
    dir: &Path,
    csv: Option<&Path>,
    feedback: Option<&Path>,
    jobs: usize,
    opts: &Options,
) -> Result<()> {
    let subs = submissions(dir)?;
    if subs.is_empty() {
        return Err(Error::usage(format!(
            "{}: no submissions (folders or .zip files) in it",
            dir.display()
        )));
    }
    let progress = Progress::new(opts.json);
    let lanes = jobs.min(subs.len());
    progress.say(&format!(
        "grading {} {} submissions from {} in {lanes} lanes (seed {})",
        subs.len(),
        kind.name(),
        dir.display(),
        opts.seed
    ));
    let work = lab::Work::new()?;
    let queue: Mutex<VecDeque<(usize, PathBuf)>> =
        Mutex::new(subs.iter().cloned().enumerate().collect());
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; subs.len()]);
    let done = Mutex::new(0usize);
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let mut handles = Vec::new();
        for index in 0..lanes {
            let lane = Lane::new(index, work.path())?;
            let (queue, results, done, progress) = (&queue, &results, &done, &progress);
            let total = subs.len();
            handles.push(s.spawn(move || {
                loop {
                    let next = lock(queue).pop_front();
                    let Some((i, path)) = next else { break };
                    let t0 = Instant::now();
                    let outcome = grade_one(kind, &path, &lane, opts, progress);
                    let line = match &outcome {
                        Outcome::Graded(g) => format!("{}: {}", g.submission, g.score_text()),
                        Outcome::Failed { name, why } => format!("{name}: NOT GRADED: {why}"),
                    };
                    let n = {
                        let mut d = lock(done);
                        *d += 1;
                        *d
                    };
                    progress.say(&format!(
                        "[{n}/{total}] {line} (lane {}, {:.0} s)",
                        lane.index,
                        t0.elapsed().as_secs_f64()
                    ));
                    lock(results)[i] = Some(outcome);
                }
            }));
        }
        for h in handles {
            if h.join().is_err() {
                return Err(Error::msg("a grading lane panicked"));
            }
        }
        Ok(())
    })?;
    let outcomes: Vec<Outcome> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let grades: Vec<Grade> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Graded(g) => Some(g.clone()),
            Outcome::Failed { .. } => None,
        })
        .collect();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed { name, why } => Some(format!("{name} ({why})")),
            Outcome::Graded(_) => None,
        })
        .collect();

    let parts = opts.rubric.parts(kind.name());
    let parts: Vec<&str> = if opts.parts.is_empty() {
        parts
    } else {
        parts
            .into_iter()
            .filter(|p| opts.parts.iter().any(|q| q == p))
            .collect()
    };
    if let Some(csv) = csv {
        let mut text = format!("submission,ids,{},score,max\n", parts.join(","));
        for g in &grades {
            text.push_str(&g.csv_row(&parts));
            text.push('\n');
        }
        fs::write(csv, text).with_context(|| format!("write {}", csv.display()))?;
    }
    if let Some(dir) = feedback {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for g in &grades {
            let f = dir.join(format!("{}.txt", safe_name(&g.submission)));
            fs::write(&f, g.feedback()).with_context(|| format!("write {}", f.display()))?;
        }
    }
    if opts.json {
        for g in &grades {
            g.print(true);
        }
    } else {
        for (id, passed, of) in report::class_summary(&grades) {
            let what = opts.rubric.get(&id).map_or("", |i| i.what);
            Event::new(
                Level::Stat,
                format!("{id:<22} passed by {passed:>3} of {of}  {what}"),
            )
            .emit();
        }
        let mean = if grades.is_empty() {
            0.0
        } else {
            grades.iter().map(|g| f64::from(g.score)).sum::<f64>() / grades.len() as f64
        };
        Event::new(
            Level::Stat,
            format!(
                "{} graded in {:.0} s, mean score {mean:.1}/{}{}",
                grades.len(),
                started.elapsed().as_secs_f64(),
                grades.first().map_or(0, |g| g.max),
                csv.map_or(String::new(), |c| format!("; grades in {}", c.display()))
            ),
        )
        .emit();
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "{} submission(s) could not be graded: {}",
            failed.len(),
            failed.join("; ")
        )))
    }
}

#[derive(Clone, Debug)]
enum Outcome {
    Graded(Grade),
    Failed { name: String, why: String },
}

fn grade_one(
    kind: LabKind,
    path: &Path,
    lane: &Lane,
    opts: &Options,
    progress: &Progress,
) -> Outcome {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sub = match Submission::open(path) {
        Ok(s) => s,
        Err(e) => {
            // An unreadable archive is the group's problem: graded zero, with the reason.
            let marks = Marks::new(&opts.rubric, kind.name(), &opts.parts);
            let mut m = marks;
            for part in opts.rubric.parts(kind.name()) {
                m.fail_rest(part, &format!("the submission could not be opened: {e}"));
            }
            return Outcome::Graded(m.grade(&name, &crate::submission::ids_from_name(&name)));
        }
    };
    // Each submission its own seed, derived from the run's: reproducible, and not shared.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (opts.seed, &sub.name).hash(&mut h);
    let mut own = opts.clone();
    own.seed = h.finish();
    let p = progress.with_prefix(&format!("  lane {} {}: ", lane.index, sub.name));
    match crate::grade(kind, &sub, lane, &own, &p) {
        Ok(g) => Outcome::Graded(g),
        Err(e) => Outcome::Failed {
            name: sub.name.clone(),
            why: e.to_string(),
        },
    }
}

/// The submissions in `dir`: its folders and `.zip` files, by name.
fn submissions(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            !hidden && (p.is_dir() || p.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")))
        })
        .collect();
    v.sort();
    Ok(v)
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
