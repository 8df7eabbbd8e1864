//! The narration of a demo and the verdict on every expected observation.
//!
//! A demo says what a student types on which host, shows what the program printed, says what to
//! observe, and then records one [`Check`] per observation: PASS, FAIL (with why), or NOT SHOWN
//! (with what it would take, e.g. "needs namespaces: run as root"). `verify` uses the same
//! checks with the narration switched off.

use std::fmt::Write as _;

/// What a check saw: `Ok(what held)` or `Err(what was seen instead)`. Not an error: a demo that
/// fails to run returns a `labnet::Error`; an observation that does not hold is a verdict.
pub type Verdict = Result<String, String>;

/// The verdict on one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The observation held; the text says what was seen.
    Pass(String),
    /// It did not; the text says what was seen instead.
    Fail(String),
    /// It could not be shown in this setting; the text says what it needs.
    NotShown(String),
}

/// One expected observation of a handout, checked.
#[derive(Clone, Debug)]
pub struct Check {
    /// Where it comes from: `E1` (week 3 exercise 1), `Q9` (TP3), `chat`.
    pub tag: String,
    /// The observation, as the handout words it.
    pub what: String,
    /// The verdict.
    pub outcome: Outcome,
    /// The demo it belongs to (`broadcast`, `pmu`, …), for the summary.
    pub demo: String,
}

/// The checks of a run plus the narration printer.
#[derive(Debug, Default)]
pub struct Report {
    /// No narration (verify).
    pub quiet: bool,
    /// Every check so far.
    pub checks: Vec<Check>,
    /// Only checks with one of these tags are recorded (empty: all).
    pub only: Vec<String>,
    /// The demo now running; every check recorded is filed under it.
    pub demo: String,
}

impl Report {
    /// A report printing narration unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Report {
            quiet,
            ..Default::default()
        }
    }

    /// A heading for a demo.
    pub fn title(&self, text: &str) {
        if !self.quiet {
            println!("\n=== {text} ===");
        }
    }

    /// A sentence of narration.
    pub fn say(&self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
    }

    /// The command a student types, and on which host.
    pub fn command(&self, host: &str, line: &str) {
        if !self.quiet {
            println!("\n  {host}$ {line}");
        }
    }

    /// What a program printed (indented, at most `max` lines).
    pub fn output(&self, text: &str, max: usize) {
        if self.quiet {
            return;
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut s = String::new();
        for l in lines.iter().take(max) {
            let _ = writeln!(s, "    | {l}");
        }
        if lines.len() > max {
            let _ = writeln!(s, "    | … ({} more lines)", lines.len() - max);
        }
        print!("{s}");
    }

    /// What to look at.
    pub fn observe(&self, text: &str) {
        if !self.quiet {
            println!("  Observe: {text}");
        }
    }

    fn wanted(&self, tag: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|t| t == tag)
    }

    /// Records a check from a result: `Ok(seen)` passes, `Err(why)` fails.
    pub fn check(&mut self, tag: &str, what: &str, result: Verdict) {
        let outcome = match result {
            Ok(seen) => Outcome::Pass(seen),
            Err(why) => Outcome::Fail(why),
        };
        self.record(tag, what, outcome);
    }

    /// Records an observation this setting cannot show, with what it needs (a reason, or the
    /// error that kept a capture from being made).
    pub fn not_shown(&mut self, tag: &str, what: &str, needs: impl std::fmt::Display) {
        self.record(tag, what, Outcome::NotShown(needs.to_string()));
    }

    fn record(&mut self, tag: &str, what: &str, outcome: Outcome) {
        if !self.wanted(tag) {
            return;
        }
        if !self.quiet {
            let line = match &outcome {
                Outcome::Pass(seen) => format!("  PASS [{tag}] {what}: {seen}"),
                Outcome::Fail(why) => format!("  FAIL [{tag}] {what}: {why}"),
                Outcome::NotShown(needs) => format!("  NOT SHOWN [{tag}] {what}: {needs}"),
            };
            println!("{line}");
        }
        self.checks.push(Check {
            tag: tag.to_owned(),
            what: what.to_owned(),
            outcome,
            demo: self.demo.clone(),
        });
    }

    /// Counts (passed, failed, not shown).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for k in &self.checks {
            match k.outcome {
                Outcome::Pass(_) => c.0 += 1,
                Outcome::Fail(_) => c.1 += 1,
                Outcome::NotShown(_) => c.2 += 1,
            }
        }
        c
    }

    /// The one-screen summary of a demo run: one line per demo with its counts and the tags it
    /// covered, then every observation that did not hold or could not be shown, in full (the
    /// passing ones were printed, with what was seen, as they happened).
    pub fn summary(&self) -> String {
        let mut s = String::from("\n=== summary ===\n");
        let mut demos: Vec<&str> = Vec::new();
        for k in &self.checks {
            if !demos.contains(&k.demo.as_str()) {
                demos.push(&k.demo);
            }
        }
        for demo in &demos {
            let mine: Vec<&Check> = self.checks.iter().filter(|k| k.demo == *demo).collect();
            let held = mine
                .iter()
                .filter(|k| matches!(k.outcome, Outcome::Pass(_)))
                .count();
            let failed = mine
                .iter()
                .filter(|k| matches!(k.outcome, Outcome::Fail(_)))
                .count();
            let shown = mine.len()
                - mine
                    .iter()
                    .filter(|k| matches!(k.outcome, Outcome::NotShown(_)))
                    .count();
            let mut tags: Vec<&str> = Vec::new();
            for k in &mine {
                if !tags.contains(&k.tag.as_str()) {
                    tags.push(&k.tag);
                }
            }
            let verdict = if failed > 0 { "FAIL" } else { "PASS" };
            let name = if demo.is_empty() { "checks" } else { demo };
            let _ = write!(s, "  {verdict}  {name:<10} {held:>2}/{shown:<2} held");
            if shown < mine.len() {
                let _ = write!(s, ", {} not shown", mine.len() - shown);
            }
            let _ = writeln!(s, "   ({})", tags.join(" "));
        }
        for k in &self.checks {
            match &k.outcome {
                Outcome::Pass(_) => {}
                Outcome::Fail(why) => {
                    let _ = writeln!(s, "       FAIL  [{}] {} — {why}", k.tag, k.what);
                }
                Outcome::NotShown(needs) => {
                    let _ = writeln!(s, "  NOT SHOWN  [{}] {} — {needs}", k.tag, k.what);
                }
            }
        }
        let (p, f, n) = self.counts();
        let _ = write!(s, "{p} observations held, {f} failed");
        if n > 0 {
            let _ = write!(s, ", {n} not shown here");
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_filter_by_tag() {
        let mut r = Report::new(true);
        r.only = vec!["E1".into()];
        r.check("E1", "a", Ok("x".into()));
        r.check("E2", "b", Err("y".into()));
        r.not_shown("E1", "c", "root");
        assert_eq!(r.counts(), (1, 0, 1));
        let summary = r.summary();
        assert!(summary.contains("NOT SHOWN  [E1] c — root"), "{summary}");
        assert!(
            summary.contains("PASS  checks      1/1  held, 1 not shown   (E1)"),
            "{summary}"
        );
        assert!(
            summary.ends_with("1 observations held, 0 failed, 1 not shown here\n"),
            "{summary}"
        );
    }
}
