//! `cargo xtask verify [--exercise 1..4] [--part 1..6] [--chat]`: the demos' checks without the
//! narration, ending with the plain line `N passed, N failed` and a non-zero exit on any failure.

use std::ffi::OsString;

use labnet::Error;

use crate::demo::{self, Ctx};
use crate::opts::{self, Opts};
use crate::report::Outcome;

/// The demos and tags of one selector.
fn selection(kind: &str, n: u8) -> Result<(Vec<&'static str>, Vec<&'static str>), Error> {
    let bad = || {
        Error::usage(format!(
            "--{kind} {n}: week 3 has exercises 1-4, TP3 parts 1-6"
        ))
    };
    Ok(match (kind, n) {
        ("exercise", 1) => (vec!["broadcast"], vec!["E1"]),
        ("exercise", 2) => (vec!["multicast"], vec!["E2"]),
        ("exercise", 3) => (vec!["tunnel"], vec!["E3"]),
        ("exercise", 4) => (vec!["broadcast", "multicast", "tunnel"], vec!["E4"]),
        ("part", 1) => (vec!["basics"], vec![]),
        ("part", 2) => (vec!["pmu"], vec![]),
        ("part", 3) => (vec!["reset"], vec![]),
        ("part", 4) => (vec!["tv"], vec![]),
        ("part", 5) => (vec!["ws"], vec![]),
        ("part", 6) => (vec!["tls"], vec![]),
        _ => return Err(bad()),
    })
}

/// `cargo xtask verify …`.
pub fn command(args: Vec<OsString>, mut opts: Opts) -> Result<(), Error> {
    let mut a = pico_args::Arguments::from_vec(args);
    let chat = a.contains("--chat");
    let exercises: Vec<u8> = a.values_from_str("--exercise")?;
    let parts: Vec<u8> = a.values_from_str("--part")?;
    labnet::args::finish(a)?;
    let mut names: Vec<&'static str> = Vec::new();
    let mut tags: Vec<&'static str> = Vec::new();
    let mut untagged = false;
    for (kind, list) in [("exercise", &exercises), ("part", &parts)] {
        for n in list {
            let (d, t) = selection(kind, *n)?;
            untagged |= t.is_empty();
            names.extend(d);
            tags.extend(t);
        }
    }
    if chat {
        names.push("chat");
        untagged = true;
    }
    if names.is_empty() {
        names = demo::DEMOS.iter().map(|d| d.0).collect();
        untagged = true;
    }
    let mut seen = Vec::new();
    names.retain(|n| {
        let new = !seen.contains(n);
        seen.push(*n);
        new
    });
    opts.quiet = true;
    let bins = opts::binaries(&opts)?;
    let mut ctx = Ctx::new(opts, bins);
    if !untagged {
        ctx.r.only = tags.iter().map(|t| (*t).to_owned()).collect();
        // A demo that cannot run at all reports under its own name: keep those too.
        ctx.r.only.extend(names.iter().map(|n| (*n).to_owned()));
    }
    let ok = demo::run(&mut ctx, &names);
    let strict = labnet::netns::strict();
    let (mut passed, mut failed, mut not_shown) = (0, 0, 0);
    for c in &ctx.r.checks {
        match &c.outcome {
            Outcome::Pass(seen) => {
                passed += 1;
                println!("PASS [{}] {}: {seen}", c.tag, c.what);
            }
            Outcome::Fail(why) => {
                failed += 1;
                println!("FAIL [{}] {}: {why}", c.tag, c.what);
            }
            Outcome::NotShown(needs) if strict => {
                failed += 1;
                println!("FAIL [{}] {}: not shown: {needs}", c.tag, c.what);
            }
            Outcome::NotShown(needs) => {
                not_shown += 1;
                println!("NOT SHOWN [{}] {}: {needs}", c.tag, c.what);
            }
        }
    }
    if not_shown > 0 {
        println!(
            "{not_shown} observations not shown here (they need namespaces or a missing tool)"
        );
    }
    println!("{passed} passed, {failed} failed");
    if ok && failed == 0 {
        Ok(())
    } else {
        Err(Error::msg(format!("{failed} checks failed")))
    }
}
