//! lab-grade on TP3 as graders are tested: the reference submission (the handout's programs
//! written as a student would, `tests/students/tp3/`) gets full marks, and each mutant — one
//! thing students typically get wrong — loses exactly the points of its part and nothing else.
//! A zip grades as its folder does, a batch gives the scores of one-by-one grading, and nothing
//! of a student's program outlives its grading or ever ran as root.
//!
//! The class is graded in one `lab-grade batch` (lanes in parallel, each with its own user and
//! labs), so the whole test costs about as much as its slowest submission (the infinite loop).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lab_grade::sample;
use labnet::netns::netns_or_skip;
use testkit::proc::output;

fn lab_grade() -> Command {
    // The course programs must sit next to lab-grade, as they do in target/<profile>/.
    for b in ["lab-server", "chat-server", "chat-client", "tls-pmu"] {
        testkit::bin(b);
    }
    Command::new(env!("CARGO_BIN_EXE_lab-grade"))
}

#[test]
fn reference_full_marks_each_mutant_loses_only_its_part() {
    if !netns_or_skip() {
        return;
    }
    let root = std::env::temp_dir().join(format!("lab-grade-tp3-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let sample::Class {
        dir: class,
        ca,
        subs,
    } = sample::class(&root, sample::variants().len(), &testkit::bin("tls-pmu")).unwrap();
    let csv = root.join("grades.csv");
    let feedback = root.join("feedback");
    let mut cmd = lab_grade();
    cmd.args(["batch", "tp3"])
        .arg(&class)
        .arg("--csv")
        .arg(&csv)
        .arg("--feedback")
        .arg(&feedback)
        .arg("--ca")
        .arg(&ca)
        .args(["--jobs", "8", "--timeout", "5", "--seed", "11"]);
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "lab-grade batch failed");
    let grades = sample::read_csv(&fs::read_to_string(&csv).unwrap());
    assert_eq!(grades.len(), subs.len());
    let mut wrong = Vec::new();
    for (name, variant) in &subs {
        let got = &grades[name];
        if !sample::matches(variant, got) {
            let fb = fs::read_to_string(feedback.join(format!("{name}.txt"))).unwrap_or_default();
            wrong.push(format!(
                "{name}: want {:?}, got {got:?}\n{fb}",
                variant.parts
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Feedback says what was expected and what was seen.
    let fb = |v: &str| {
        let (name, _) = subs.iter().find(|(_, x)| x.name == v).unwrap();
        fs::read_to_string(feedback.join(format!("{name}.txt"))).unwrap()
    };
    let one_recv = fb("one_recv");
    assert!(
        one_recv.contains("FAIL p2.short0") && one_recv.contains("expected"),
        "{one_recv}"
    );
    assert!(fb("no_retransmit").contains("dropped the first 2 requests on purpose"));

    // Nothing of the students' programs is left: no lab, no process of a lane's user, and the
    // root probe could not write where only root may.
    let left: Vec<String> = labnet::netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&format!("nlg{pid}l")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let base = 1_610_000_000 + (pid % 100_000) * 64;
    let ps = Command::new("ps").args(["-eo", "uid="]).output().unwrap();
    let lane_procs = String::from_utf8_lossy(&ps.stdout)
        .split_whitespace()
        .filter_map(|u| u.parse::<u32>().ok())
        .filter(|u| (base..base + 64).contains(u))
        .count();
    assert_eq!(
        lane_procs, 0,
        "processes of the grader's lane users are still running"
    );
    assert!(!Path::new("/root/.lab-grade-probe").exists());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn one_submission_in_json_has_the_contract_schema_and_the_batch_scores() {
    if !netns_or_skip() {
        return;
    }
    let root = std::env::temp_dir().join(format!("lab-grade-tp3-one-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let sample::Class {
        dir: class,
        ca,
        subs,
    } = sample::class(&root, 3, &testkit::bin("tls-pmu")).unwrap();
    let (one_recv, _) = &subs[2];
    let out = output(
        lab_grade()
            .args(["tp3"])
            .arg(class.join(one_recv))
            .args([
                "--part",
                "2",
                "--part",
                "6",
                "--json",
                "--seed",
                "3",
                "--timeout",
                "5",
                "--ca",
            ])
            .arg(&ca),
        b"",
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    // --json: one document on stdout, nothing else (progress went to stderr).
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["lab"], "tp3");
    assert_eq!(v["submission"], one_recv.as_str());
    assert_eq!(v["ids"], serde_json::json!(["123456", "654321"]));
    assert_eq!(
        (v["score"].as_u64(), v["max"].as_u64()),
        (Some(6), Some(10))
    );
    let parts = v["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["part"], "2");
    assert_eq!(parts[0]["score"], 1);
    let c = &parts[0]["checks"][0];
    assert_eq!(c["id"], "p2.short0");
    assert_eq!(c["passed"], false);
    assert_eq!(
        (c["points"].as_u64(), c["max"].as_u64()),
        (Some(0), Some(3))
    );
    assert!(c["detail"].as_str().unwrap().contains("expected"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("part 2"));
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn usage_errors_exit_2_and_a_missing_submission_exits_1() {
    for (args, code, says) in [
        (&["tp3"][..], 2, "SUBMISSION"),
        (&["physics", "x"], 2, "unknown lab"),
        (&["tp3", "x", "--part", "9"], 2, "--part 9"),
        (&["tp3", "x", "--invoke", "2={host}"], 2, "{prog}"),
        (&["tp3", "x", "--prat", "2"], 2, "unknown option"),
        (&["tp3", "x", "--csv", "a.csv"], 2, "batch"),
    ] {
        let out = output(
            Command::new(env!("CARGO_BIN_EXE_lab-grade")).args(args),
            b"",
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
