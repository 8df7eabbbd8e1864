//! lab-grade on the week-3 homework as graders are tested: the reference submission (hw1–hw3
//! written as a student would, `tests/students/week3/Week3_228822_229911/`) gets full marks, and
//! each mutant (`tests/mutants/week3/`) — one thing students get wrong — loses exactly the points
//! of its homework and nothing else; nothing of a student's program outlives the batch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod grading;

use std::collections::BTreeMap;

use labnet::netns::netns_or_skip;

use grading::{Scratch, apply_mutant, batch, copy_files, differences, mutants};

/// The reference's folder: the group's IDs are 228822 and 229911.
const GROUP: &str = "Week3_228822_229911";
/// Points of hw1, hw2 and hw3.
const MAX: u32 = 32;

/// Each kind of submission and the part scores it must get.
fn variants() -> Vec<(&'static str, BTreeMap<&'static str, u32>)> {
    let full = [("hw1", 10), ("hw2", 10), ("hw3", 12)];
    let v = |name: &'static str, change: &[(&'static str, u32)]| {
        let mut parts: BTreeMap<&'static str, u32> = full.into();
        for (p, s) in change {
            parts.insert(p, *s);
        }
        (name, parts)
    };
    vec![
        v("reference", &[]),
        // The byte count only (the packets, the sources and the timeout are right).
        v("hw1_miscounts_bytes", &[("hw1", 6)]),
        v("hw2_shows_own", &[("hw2", 6)]),
        v("hw2_fork_bomb", &[("hw2", 0)]),
        // Only the half-close: the bytes, the target down, the log and two tunnels are right.
        v("hw3_no_half_close", &[("hw3", 10)]),
        // Random bytes are not text: the transfers, the half-close's data and the log's byte
        // counts are wrong; the short ASCII echoes (target down, two tunnels) still pass.
        v("hw3_loses_bytes", &[("hw3", 4)]),
    ]
}

#[test]
fn week3_reference_full_marks_each_mutant_loses_only_its_part() {
    if !netns_or_skip() {
        return;
    }
    let scratch = Scratch::new("week3");
    let class = scratch.0.join("class");
    let mut want = Vec::new();
    for (name, parts) in variants() {
        let sub = format!("{GROUP}_{name}");
        let dir = class.join(&sub);
        copy_files(&grading::students().join("week3").join(GROUP), &dir);
        let mutant = mutants("week3").join(name);
        if mutant.is_dir() {
            apply_mutant(&dir, &mutant);
        }
        want.push((sub, parts));
    }
    let seed = grading::seed();
    let b = batch("week3", &class, &scratch.0, 8, seed);
    eprintln!(
        "graded {} week3 submissions in {:.1} s",
        want.len(),
        b.took.as_secs_f64()
    );
    let wrong = differences(&b, &want, MAX);
    assert!(wrong.is_empty(), "seed {seed}:\n{}", wrong.join("\n"));
    grading::nothing_left(b.pid);

    // The feedback says what was expected and what was seen.
    let fb = |v: &str| b.feedback[&format!("{GROUP}_{v}")].clone();
    let bytes = fb("hw1_miscounts_bytes");
    assert!(
        bytes.contains("FAIL hw1.stats") && bytes.contains("bytes"),
        "{bytes}"
    );
    let own = fb("hw2_shows_own");
    assert!(own.contains("showed its own"), "{own}");
    let half = fb("hw3_no_half_close");
    assert!(half.contains("never saw the client's FIN"), "{half}");
    let bomb = fb("hw2_fork_bomb");
    assert!(bomb.contains("FAIL hw2.others"), "{bomb}");
}
