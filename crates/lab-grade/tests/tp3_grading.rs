//! lab-grade on TP3 as graders are tested: the reference submission (the handout's programs
//! written as a student would, `tests/students/tp3/`) gets full marks, and each mutant — one
//! thing students typically get wrong — loses exactly the points of its part and nothing else.
//! A zip grades as its folder does, a batch gives the scores of one-by-one grading, and nothing
//! of a student's program outlives its grading or ever ran as root.
//!
//! The class is graded in one `lab-grade batch` (lanes in parallel, each with its own user and
//! labs), so the whole test costs about as much as its slowest submission (the infinite loop).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use labnet::testkit::proc::output;

const REFERENCE: &str = "Lab3_123456_654321";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lab_grade() -> Command {
    // The course programs must sit next to lab-grade, as they do in target/<profile>/.
    for b in ["lab-server", "chat-server", "chat-client", "tls-pmu"] {
        labnet::testkit::bin(b);
    }
    Command::new(env!("CARGO_BIN_EXE_lab-grade"))
}

/// Root and namespaces, or the reason to skip (a failure under NETLAB_REQUIRE_NETNS=1).
fn can_grade() -> bool {
    match labnet::testkit::netns_available() {
        Ok(()) => true,
        Err(why) if std::env::var(labnet::testkit::REQUIRE_NETNS).as_deref() == Ok("1") => {
            panic!("NETLAB_REQUIRE_NETNS=1 but: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A class: the reference (with a key and certificate signed by a fresh course CA, as the TAs
/// would), a zip of it, and one folder per mutant. Returns the class folder and the CA.
fn class(root: &Path) -> (PathBuf, PathBuf) {
    let ca_dir = root.join("ca");
    let tls = labnet::testkit::bin("tls-pmu");
    let run = |cmd: &mut Command| {
        let out = output(cmd, b"", Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new(&tls)
        .args(["ca", "init", "--out"])
        .arg(&ca_dir));
    let class = root.join("class");
    let reference = class.join(REFERENCE);
    copy_dir(
        &workspace().join("tests/students/tp3").join(REFERENCE),
        &reference,
    );
    // The handout's flow: the group makes its key and CSR with openssl, the CA signs the CSR.
    run(Command::new("openssl")
        .args(["genrsa", "-out", "123456_key.pem", "2048"])
        .current_dir(&reference));
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-key",
            "123456_key.pem",
            "-out",
            "123456.csr",
            "-subj",
            "/CN=pmu.group12.example",
        ])
        .current_dir(&reference));
    run(Command::new(&tls)
        .args(["ca", "sign", "--ca"])
        .arg(&ca_dir)
        .args(["--csr", "123456.csr", "--out", "123456_cert.pem"])
        .current_dir(&reference));
    let mutants = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mutants/tp3");
    for m in fs::read_dir(&mutants).unwrap().flatten() {
        let name = m.file_name().to_string_lossy().into_owned();
        let dir = class.join(format!("{REFERENCE}_{name}"));
        copy_dir(&reference, &dir);
        for f in fs::read_dir(m.path()).unwrap().flatten() {
            if f.file_name() == "REMOVE" {
                for gone in fs::read_to_string(f.path()).unwrap().lines() {
                    fs::remove_file(dir.join(gone.trim())).unwrap();
                }
            } else {
                fs::copy(f.path(), dir.join(f.file_name())).unwrap();
            }
        }
    }
    let zip = Command::new("python3")
        .args([
            "-c",
            "import shutil,sys; shutil.make_archive(sys.argv[1], 'zip', sys.argv[2], sys.argv[3])",
        ])
        .arg(class.join(format!("{REFERENCE}_zipped")))
        .arg(&class)
        .arg(REFERENCE)
        .status()
        .unwrap();
    assert!(zip.success());
    (class, ca_dir.join("cacert.pem"))
}

/// Part scores by submission, from the batch's CSV.
fn read_csv(path: &Path) -> BTreeMap<String, BTreeMap<String, u32>> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header,
        ["submission", "ids", "2", "3", "4", "5", "6", "score", "max"]
    );
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let scores = header[2..]
                .iter()
                .zip(&cells[2..])
                .map(|(h, c)| ((*h).to_owned(), c.parse().unwrap()))
                .collect();
            (cells[0].to_owned(), scores)
        })
        .collect()
}

#[test]
fn reference_full_marks_each_mutant_loses_only_its_part() {
    if !can_grade() {
        return;
    }
    let root = std::env::temp_dir().join(format!("lab-grade-tp3-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let (class, ca) = class(&root);
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
    let grades = read_csv(&csv);

    let full: BTreeMap<&str, u32> = [("2", 10), ("3", 10), ("4", 10), ("5", 10), ("6", 5)].into();
    let expect = |changes: &[(&'static str, u32)]| {
        let mut m = full.clone();
        for (p, s) in changes {
            m.insert(p, *s);
        }
        m
    };
    let cases: Vec<(String, BTreeMap<&str, u32>)> = vec![
        (REFERENCE.into(), full.clone()),
        (format!("{REFERENCE}_zipped"), full.clone()),
        // One recv: the burst arrives merged, d=1 stops after message 1, the flood is cut.
        (format!("{REFERENCE}_one_recv"), expect(&[("2", 1)])),
        (format!("{REFERENCE}_ipv4_only"), expect(&[("2", 0)])),
        (format!("{REFERENCE}_root_probe"), expect(&[("2", 0)])),
        (format!("{REFERENCE}_no_retransmit"), expect(&[("3", 0)])),
        (format!("{REFERENCE}_infinite_loop"), expect(&[("3", 0)])),
        (format!("{REFERENCE}_no_join"), expect(&[("4", 6)])),
        (format!("{REFERENCE}_fork_bomb"), expect(&[("4", 6)])),
        (format!("{REFERENCE}_no_id"), expect(&[("4", 4)])),
        (format!("{REFERENCE}_missing_part5"), expect(&[("5", 0)])),
        // Served in clear: the files are right (chain, key), the server is not.
        (format!("{REFERENCE}_plaintext"), expect(&[("6", 2)])),
    ];
    let mut wrong = Vec::new();
    for (name, want) in &cases {
        let got = grades
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from {grades:?}"));
        let got: BTreeMap<&str, u32> = got.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let total = want.values().sum::<u32>();
        if got
            .iter()
            .filter(|(k, _)| *k != &"score" && *k != &"max")
            .map(|(k, v)| (*k, *v))
            .collect::<BTreeMap<_, _>>()
            != *want
            || got["score"] != total
            || got["max"] != 40
        {
            let fb = fs::read_to_string(feedback.join(format!("{name}.txt"))).unwrap_or_default();
            wrong.push(format!(
                "{name}: want {want:?} (score {total}/40), got {got:?}\n{fb}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(grades.len(), cases.len());

    // Feedback says what was expected and what was seen.
    let fb = fs::read_to_string(feedback.join(format!("{REFERENCE}_one_recv.txt"))).unwrap();
    assert!(
        fb.contains("FAIL p2.short0") && fb.contains("expected"),
        "{fb}"
    );
    let fb = fs::read_to_string(feedback.join(format!("{REFERENCE}_no_retransmit.txt"))).unwrap();
    assert!(
        fb.contains("dropped the first 2 requests on purpose"),
        "{fb}"
    );

    // Nothing of the students' programs is left: no lab, no process of a lane's user, and the
    // root probe could not write where only root may.
    let left: Vec<String> = labnet::testkit::list_namespaces()
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
    if !can_grade() {
        return;
    }
    let root = std::env::temp_dir().join(format!("lab-grade-tp3-one-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    let (class, ca) = class(&root);
    let out = output(
        lab_grade()
            .args(["tp3"])
            .arg(class.join(format!("{REFERENCE}_one_recv")))
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
    assert_eq!(v["submission"], format!("{REFERENCE}_one_recv"));
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
