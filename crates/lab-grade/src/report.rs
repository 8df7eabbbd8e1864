//! Grades: the checks' results per part, printed as event lines, as the JSON document of
//! `--json`, as a feedback file for the students, and as CSV rows for the class.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use labnet::log::{Event, Level};
use serde::Serialize;

use crate::rubric::{self, Rubric};

/// One check's result.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    /// Rubric ID.
    pub id: String,
    /// Whether it passed.
    pub passed: bool,
    /// Points earned.
    pub points: u32,
    /// Points it is worth.
    pub max: u32,
    /// What was expected and what was seen.
    pub detail: String,
}

/// One part's result.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PartGrade {
    /// `"2"` … `"6"`, `"server"` …, `"hw1"` ….
    pub part: String,
    /// Points earned.
    pub score: u32,
    /// Points the part is worth.
    pub max: u32,
    /// Its checks, in rubric order.
    pub checks: Vec<CheckResult>,
}

/// A submission's grade.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Grade {
    /// `tp3`, `chat` or `week3`.
    pub lab: String,
    /// Folder or archive name.
    pub submission: String,
    /// The group's IDs (strings: leading zeros matter).
    pub ids: Vec<String>,
    /// Points earned, bonus parts included.
    pub score: u32,
    /// Points possible, bonus parts excluded.
    pub max: u32,
    /// Every graded part.
    pub parts: Vec<PartGrade>,
}

/// Collects check results while a lab is graded.
pub struct Marks<'r> {
    rubric: &'r Rubric,
    lab: &'static str,
    parts: Vec<&'static str>,
    results: BTreeMap<&'static str, (bool, String)>,
}

impl<'r> Marks<'r> {
    /// Marks for `parts` of `lab` (every part when empty).
    pub fn new(rubric: &'r Rubric, lab: &'static str, parts: &[String]) -> Marks<'r> {
        let all = rubric.parts(lab);
        let parts = if parts.is_empty() {
            all
        } else {
            all.into_iter()
                .filter(|p| parts.iter().any(|q| q == p))
                .collect()
        };
        Marks {
            rubric,
            lab,
            parts,
            results: BTreeMap::new(),
        }
    }

    /// True when `part` is being graded.
    pub fn wants(&self, part: &str) -> bool {
        self.parts.contains(&part)
    }

    /// Records a check: `Ok(seen)` passes, `Err(why)` fails; the detail says what was seen.
    pub fn check(&mut self, id: &'static str, outcome: std::result::Result<String, String>) {
        let (passed, detail) = match outcome {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.results.insert(id, (passed, detail));
    }

    /// Fails every check of `part` not yet recorded with the same reason (a missing file, a
    /// program that cannot start).
    pub fn fail_rest(&mut self, part: &str, why: &str) {
        for item in self.rubric.checks(self.lab, part) {
            self.results
                .entry(item.id)
                .or_insert_with(|| (false, why.to_owned()));
        }
    }

    /// The grade of `submission`.
    pub fn grade(mut self, submission: &str, ids: &[String]) -> Grade {
        let mut parts = Vec::new();
        let (mut score, mut max) = (0, 0);
        for part in self.parts.clone() {
            self.fail_rest(part, "not checked: the grader stopped before this check");
            let mut checks = Vec::new();
            for item in self.rubric.checks(self.lab, part) {
                let (passed, detail) = self.results.remove(item.id).unwrap_or_default();
                checks.push(CheckResult {
                    id: item.id.to_owned(),
                    passed,
                    points: if passed { item.points } else { 0 },
                    max: item.points,
                    detail: format!("{}: {detail}", item.what),
                });
            }
            let p_score: u32 = checks.iter().map(|c| c.points).sum();
            let p_max: u32 = checks.iter().map(|c| c.max).sum();
            score += p_score;
            if !rubric::is_bonus(self.lab, part) {
                max += p_max;
            }
            parts.push(PartGrade {
                part: part.to_owned(),
                score: p_score,
                max: p_max,
                checks,
            });
        }
        Grade {
            lab: self.lab.to_owned(),
            submission: submission.to_owned(),
            ids: ids.to_vec(),
            score,
            max,
            parts,
        }
    }
}

impl Grade {
    /// The grade as event lines on stdout (or the one JSON document with `--json`).
    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
            );
            return;
        }
        Event::new(
            Level::Info,
            format!("{} {}{}", self.lab, self.submission, ids_note(&self.ids)),
        )
        .emit();
        for p in &self.parts {
            let bonus = if rubric::is_bonus(&self.lab, &p.part) {
                " (bonus)"
            } else {
                ""
            };
            Event::new(
                Level::Stat,
                format!("part {}{bonus}: {}/{}", p.part, p.score, p.max),
            )
            .emit();
            for c in &p.checks {
                let (level, word) = if c.passed {
                    (Level::Info, "PASS")
                } else {
                    (Level::Warn, "FAIL")
                };
                Event::new(
                    level,
                    format!("  {word} {} {}/{} {}", c.id, c.points, c.max, c.detail),
                )
                .emit();
            }
        }
        Event::new(Level::Stat, format!("score {}", self.score_text())).emit();
    }

    /// `37/40`, with the bonus named when there is one.
    pub fn score_text(&self) -> String {
        let bonus: u32 = self
            .parts
            .iter()
            .filter(|p| rubric::is_bonus(&self.lab, &p.part))
            .map(|p| p.score)
            .sum();
        if bonus > 0 {
            format!("{}/{} (bonus included: {bonus})", self.score, self.max)
        } else {
            format!("{}/{}", self.score, self.max)
        }
    }

    /// The feedback file a group gets: every check with what was expected and what was seen.
    pub fn feedback(&self) -> String {
        let mut s = format!(
            "{} — {}{}\nscore: {}\n",
            self.lab,
            self.submission,
            ids_note(&self.ids),
            self.score_text()
        );
        for p in &self.parts {
            let bonus = if rubric::is_bonus(&self.lab, &p.part) {
                " (bonus)"
            } else {
                ""
            };
            let _ = writeln!(s, "\npart {}{bonus}: {}/{}", p.part, p.score, p.max);
            for c in &p.checks {
                let word = if c.passed { "PASS" } else { "FAIL" };
                let _ = writeln!(
                    s,
                    "  {word} {:<22} {}/{}  {}",
                    c.id, c.points, c.max, c.detail
                );
            }
        }
        s
    }

    /// The CSV row: `submission,ids,<part scores>,score,max` (ids joined with `;`).
    pub fn csv_row(&self, parts: &[&str]) -> String {
        let mut cells = vec![csv_cell(&self.submission), csv_cell(&self.ids.join(";"))];
        for part in parts {
            cells.push(
                self.parts
                    .iter()
                    .find(|p| p.part == *part)
                    .map_or(String::new(), |p| p.score.to_string()),
            );
        }
        cells.push(self.score.to_string());
        cells.push(self.max.to_string());
        cells.join(",")
    }
}

fn ids_note(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" (ids {})", ids.join(", "))
    }
}

/// A CSV cell, quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The class at a glance: for every check, how many submissions passed it.
pub fn class_summary(grades: &[Grade]) -> Vec<(String, usize, usize)> {
    let mut order: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for g in grades {
        for p in &g.parts {
            for c in &p.checks {
                if !counts.contains_key(&c.id) {
                    order.push(c.id.clone());
                }
                let e = counts.entry(c.id.clone()).or_default();
                e.1 += 1;
                if c.passed {
                    e.0 += 1;
                }
            }
        }
    }
    order
        .into_iter()
        .map(|id| {
            let (passed, of) = counts.get(&id).copied().unwrap_or_default();
            (id, passed, of)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_bonus_part_counts_in_the_score_but_not_in_the_maximum() {
        let r = Rubric::default();
        let mut m = Marks::new(&r, "tp3", &["2".into(), "6".into()]);
        m.check("p2.short0", Ok("7 lines".into()));
        m.check("p6.chain", Ok("signed by the course CA".into()));
        m.fail_rest("2", "Part2 file missing");
        let g = m.grade("Lab3_1_2", &["123456".into()]);
        assert_eq!(g.parts.len(), 2);
        assert_eq!((g.parts[0].score, g.parts[0].max), (3, 10));
        assert_eq!((g.parts[1].score, g.parts[1].max), (1, 5));
        assert_eq!((g.score, g.max), (4, 10));
        assert!(g.parts[0].checks[2].detail.ends_with("Part2 file missing"));
        assert!(g.parts[1].checks[2].detail.contains("not checked"));
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["ids"][0], "123456");
        assert_eq!(v["parts"][0]["checks"][0]["id"], "p2.short0");
        assert_eq!(g.csv_row(&["2", "3", "6"]), "Lab3_1_2,123456,3,,1,4,10");
        assert!(g.feedback().contains("FAIL p2.flood"));
    }

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell("Lab3_1_2"), "Lab3_1_2");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
