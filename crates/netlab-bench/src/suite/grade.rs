//! `grade`: `lab-grade batch` on a class of `--class` TP3 submissions (the reference, its zip
//! and its mutants, cycled), in `--jobs` lanes; the target is the whole class within
//! 10 minutes on this 2-core machine, with the scores of grading each submission alone.
//!
//! Each kind of submission is first graded alone (`lab-grade tp3 SUB --json`); then the class is
//! graded in one batch, timed from start to exit. A submission matches when its batch scores
//! equal both what its kind got alone and what the kind must get (`lab_grade::sample`): lanes
//! that leaked into each other (a fork bomb starving a neighbour, a shared port) would show as
//! mismatches. Needs root (namespaces, other users), like the grader itself.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Instant;

use labnet::{Context, Error, Result};
use serde_json::Value;

use crate::Config;
use crate::report::{Bound, Case, Competitor, Metric, interleave};

/// Runs the grading benchmark.
pub fn run(config: &Config) -> Result<Vec<Case>> {
    let n = config.sizes.class;
    let jobs = config.sizes.jobs;
    let mut case = Case::new(
        "grade-class",
        format!(
            "a class of {n} TP3 submissions (reference, its zip and 10 mutants, cycled) graded by `lab-grade batch --jobs {jobs}`, parts 2-6; each kind first graded alone"
        ),
        "lab-grade batch",
    )
    .metric(Metric::lower("seconds", "s"))
    .metric(Metric::lower("per_submission", "s"))
    .metric(Metric::higher("matching", "%"))
    .target_value(
        "seconds",
        "lab-grade batch",
        Bound::AtMost(600.0),
        "the whole class ≤ 10 minutes",
    )
    .target_value(
        "matching",
        "lab-grade batch",
        Bound::AtLeast(100.0),
        "every score as graded alone",
    );
    if let Err(why) = labnet::netns::netns_available() {
        case.skip("lab-grade batch", format!("needs root: {why}"));
        return Ok(vec![case]);
    }
    let mut bins = Vec::new();
    for (pkg, bin) in [
        ("lab-grade", "lab-grade"),
        ("lab-server", "lab-server"),
        ("chat-server", "chat-server"),
        ("chat-client", "chat-client"),
        ("tls-pmu", "tls-pmu"),
    ] {
        match config.bins.get(pkg, bin) {
            Ok(p) => bins.push(p),
            Err(why) => {
                case.skip("lab-grade batch", why);
                return Ok(vec![case]);
            }
        }
    }
    let grader = bins[0].clone();
    let root = std::env::temp_dir().join(format!("netlab-bench-grade-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let class = lab_grade::sample::class(&root, n, &bins[4])?;
    labnet::log::info(format!(
        "grade: a class of {n} in {}; grading each of the {} kinds alone first",
        class.dir.display(),
        lab_grade::sample::variants().len()
    ));

    let mut alone: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    for (name, variant) in &class.subs {
        if alone.contains_key(variant.name) {
            continue;
        }
        let t = Instant::now();
        let sub = class.dir.join(if variant.name == "zipped" {
            format!("{name}.zip")
        } else {
            name.clone()
        });
        let out = Command::new(&grader)
            .args(["tp3"])
            .arg(&sub)
            .args(["--json", "--timeout", "5", "--ca"])
            .arg(&class.ca)
            .output()
            .context("run lab-grade tp3")?;
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::msg(format!(
                "lab-grade tp3 {name}: no JSON grade ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        })?;
        let mut scores: BTreeMap<String, u32> = BTreeMap::new();
        for p in v["parts"].as_array().into_iter().flatten() {
            if let (Some(part), Some(s)) = (p["part"].as_str(), p["score"].as_u64()) {
                scores.insert(part.to_owned(), s as u32);
            }
        }
        scores.insert("score".into(), v["score"].as_u64().unwrap_or(0) as u32);
        scores.insert("max".into(), v["max"].as_u64().unwrap_or(0) as u32);
        labnet::log::info(format!(
            "grade: {} alone: {scores:?} ({:.1} s)",
            variant.name,
            t.elapsed().as_secs_f64()
        ));
        alone.insert(variant.name, scores);
    }

    let csv = root.join("grades.csv");
    let feedback = root.join("feedback");
    let mismatches = std::cell::RefCell::new(Vec::new());
    let batch = Competitor::new("lab-grade batch", |_round| {
        let t = Instant::now();
        let status = Command::new(&grader)
            .args(["batch", "tp3"])
            .arg(&class.dir)
            .arg("--csv")
            .arg(&csv)
            .arg("--feedback")
            .arg(&feedback)
            .args(["--jobs", &jobs.to_string(), "--timeout", "5", "--ca"])
            .arg(&class.ca)
            .stdout(std::process::Stdio::null())
            .status()
            .context("run lab-grade batch")?;
        let seconds = t.elapsed().as_secs_f64();
        if !status.success() {
            return Err(Error::msg(format!("lab-grade batch exited with {status}")));
        }
        let grades = lab_grade::sample::read_csv(
            &fs::read_to_string(&csv).with_context(|| format!("read {}", csv.display()))?,
        );
        let mut matching = 0;
        for (name, variant) in &class.subs {
            let got = grades.get(name);
            if got.is_some_and(|g| {
                lab_grade::sample::matches(variant, g) && alone.get(variant.name) == Some(g)
            }) {
                matching += 1;
            } else {
                mismatches.borrow_mut().push(format!(
                    "{name}: batch {got:?}, alone {:?}, expected {:?} (feedback: {})",
                    alone.get(variant.name),
                    variant.parts,
                    feedback.join(format!("{name}.txt")).display()
                ));
            }
        }
        Ok(vec![
            ("seconds", seconds),
            ("per_submission", seconds / n as f64),
            ("matching", 100.0 * matching as f64 / n as f64),
        ])
    });
    // One round: a class takes minutes, and its lanes already run side by side.
    interleave(&mut case, 1, vec![batch]);
    case.notes.push(format!(
        "{n} submissions, {jobs} lanes; the {} kinds graded alone first",
        alone.len()
    ));
    let mismatches = mismatches.into_inner();
    for m in &mismatches {
        case.notes.push(format!("mismatch: {m}"));
    }
    // Kept when something differs, so the feedback files say why.
    if mismatches.is_empty() {
        let _ = fs::remove_dir_all(&root);
    }
    Ok(vec![case])
}
