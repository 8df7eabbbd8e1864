//! Running competitors interleaved and reporting them.
//!
//! Every benchmark hands [`interleave`] its competitors; round r runs competitor A, then B, then
//! C, then round r+1 starts with A again (A B C A B C …). A disturbance from another process on
//! the shared machine then hits every competitor about equally, and the ratio of medians taken
//! from the same run stays meaningful even when the absolute figures move between runs.
//!
//! One round of one competitor yields a [`Sample`]: several named metrics at once (the idle test
//! gives the connections held and the memory they took). A [`Case`] collects them; its
//! [`Metric`]s say which is better, higher or lower, and which competitor is the reference;
//! its [`Target`]s are the kit's design targets, evaluated on the medians.

use std::fmt::Write as _;
use std::time::Instant;

use labnet::log::{self, Event, Level};
use serde_json::{Value, json};

use crate::stats::{Summary, ratio};

/// The metrics measured in one round of one competitor: `(metric, value)`.
pub type Sample = Vec<(&'static str, f64)>;

/// One round of one competitor.
pub type RoundFn<'a> = Box<dyn FnMut(usize) -> labnet::Result<Sample> + 'a>;

/// A program (or a direct connection) measured in a benchmark.
pub struct Competitor<'a> {
    /// Its name in the tables (`tcp-tunnel`, `socat`, `direct`).
    pub name: String,
    /// Runs round `r` and returns the metrics.
    pub round: RoundFn<'a>,
}

impl<'a> Competitor<'a> {
    /// A competitor from a name and a round function.
    pub fn new(
        name: impl Into<String>,
        round: impl FnMut(usize) -> labnet::Result<Sample> + 'a,
    ) -> Self {
        Competitor {
            name: name.into(),
            round: Box::new(round),
        }
    }
}

/// What a metric means.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Key used in [`Sample`]s and the JSON.
    pub key: &'static str,
    /// Unit shown after the figures (`Gbit/s`, `µs`, `MiB`).
    pub unit: &'static str,
    /// True when a larger value is better (throughput); false for times and memory.
    pub higher_is_better: bool,
}

impl Metric {
    /// A metric where more is better.
    pub fn higher(key: &'static str, unit: &'static str) -> Self {
        Metric {
            key,
            unit,
            higher_is_better: true,
        }
    }

    /// A metric where less is better.
    pub fn lower(key: &'static str, unit: &'static str) -> Self {
        Metric {
            key,
            unit,
            higher_is_better: false,
        }
    }
}

/// The results of one competitor in one case.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Competitor name.
    pub name: String,
    /// Samples per metric, in round order.
    pub samples: Vec<(&'static str, Vec<f64>)>,
    /// Rounds that failed, with why.
    pub errors: Vec<String>,
    /// Set when the competitor could not run at all (tool missing).
    pub skipped: Option<String>,
}

impl Entry {
    /// The samples of one metric.
    pub fn values(&self, key: &str) -> &[f64] {
        self.samples
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// The summary of one metric.
    pub fn summary(&self, key: &str) -> Option<Summary> {
        Summary::of(self.values(key))
    }

    fn push(&mut self, key: &'static str, value: f64) {
        match self.samples.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(value),
            None => self.samples.push((key, vec![value])),
        }
    }
}

/// How a target compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// The measured figure must be at least this.
    AtLeast(f64),
    /// The measured figure must be at most this.
    AtMost(f64),
    /// No bound: the figure is shown for comparison (socat's added latency).
    Info,
}

impl Bound {
    fn holds(self, x: f64) -> Option<bool> {
        match self {
            Bound::AtLeast(b) => Some(x >= b),
            Bound::AtMost(b) => Some(x <= b),
            Bound::Info => None,
        }
    }
}

/// What figure a target is about.
#[derive(Debug, Clone)]
pub enum Figure {
    /// The median of a competitor's metric.
    Value {
        /// Competitor.
        of: String,
    },
    /// Median of `of` divided by the median of `against`.
    Ratio {
        /// Competitor.
        of: String,
        /// Reference competitor.
        against: String,
    },
    /// Median of `of` minus the median of `against` (added latency).
    Added {
        /// Competitor.
        of: String,
        /// Reference competitor.
        against: String,
    },
    /// `of`'s added time (its median minus `against`'s) minus the lowest added time among
    /// `others`: at most 0 when `of` adds the least of them all. Competitors that were not
    /// measured are left out; with none of `others` measured there is no figure.
    LeastAdded {
        /// Competitor.
        of: String,
        /// Reference competitor.
        against: String,
        /// The competitors `of` must beat.
        others: Vec<String>,
    },
}

/// One of the kit's design targets (docs/benchmarks.md).
#[derive(Debug, Clone)]
pub struct Target {
    /// Which metric.
    pub metric: &'static str,
    /// Which figure of it.
    pub figure: Figure,
    /// The bound the figure must respect.
    pub bound: Bound,
    /// The target in words (`≥ 0.6× direct on 1 stream`).
    pub text: String,
}

/// A target evaluated on a case.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The target's text.
    pub text: String,
    /// The measured figure, `None` when a competitor was missing.
    pub measured: Option<f64>,
    /// How the figure prints (`0.72×`, `12.3 µs`).
    pub shown: String,
    /// Met, missed, or neither (not measurable, or shown for comparison only).
    pub met: Option<bool>,
    /// True for a figure shown for comparison, not a target.
    pub info: bool,
}

/// One benchmark case: a table of competitors × metrics, and its targets.
#[derive(Debug, Clone)]
pub struct Case {
    /// Case name (`throughput-1-stream`).
    pub name: String,
    /// What was measured and how, one sentence for the table.
    pub method: String,
    /// The metrics, in print order.
    pub metrics: Vec<Metric>,
    /// The competitor the ratios are taken against.
    pub reference: String,
    /// The competitors' results.
    pub entries: Vec<Entry>,
    /// The design targets of this case.
    pub targets: Vec<Target>,
    /// Notes (sizes, skips, machine load).
    pub notes: Vec<String>,
    /// Wall time the case took, seconds.
    pub seconds: f64,
}

impl Case {
    /// An empty case.
    pub fn new(name: impl Into<String>, method: impl Into<String>, reference: &str) -> Self {
        Case {
            name: name.into(),
            method: method.into(),
            metrics: Vec::new(),
            reference: reference.to_owned(),
            entries: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
            seconds: 0.0,
        }
    }

    /// Adds a metric.
    pub fn metric(mut self, m: Metric) -> Self {
        self.metrics.push(m);
        self
    }

    /// Adds a target on the median of `of`'s metric.
    pub fn target_value(
        mut self,
        metric: &'static str,
        of: &str,
        bound: Bound,
        text: &str,
    ) -> Self {
        self.targets.push(Target {
            metric,
            figure: Figure::Value { of: of.to_owned() },
            bound,
            text: text.to_owned(),
        });
        self
    }

    /// Adds a target on the ratio of medians `of / against`.
    pub fn target_ratio(
        mut self,
        metric: &'static str,
        of: &str,
        against: &str,
        bound: Bound,
        text: &str,
    ) -> Self {
        self.targets.push(Target {
            metric,
            figure: Figure::Ratio {
                of: of.to_owned(),
                against: against.to_owned(),
            },
            bound,
            text: text.to_owned(),
        });
        self
    }

    /// Adds a target on the difference of medians `of − against`.
    pub fn target_added(
        mut self,
        metric: &'static str,
        of: &str,
        against: &str,
        bound: Bound,
        text: &str,
    ) -> Self {
        self.targets.push(Target {
            metric,
            figure: Figure::Added {
                of: of.to_owned(),
                against: against.to_owned(),
            },
            bound,
            text: text.to_owned(),
        });
        self
    }

    /// Adds a target on `of`'s added time against the lowest added time of `others`
    /// ([`Figure::LeastAdded`]).
    pub fn target_least_added(
        mut self,
        metric: &'static str,
        of: &str,
        against: &str,
        others: &[&str],
        text: &str,
    ) -> Self {
        self.targets.push(Target {
            metric,
            figure: Figure::LeastAdded {
                of: of.to_owned(),
                against: against.to_owned(),
                others: others.iter().map(|&o| o.to_owned()).collect(),
            },
            bound: Bound::AtMost(0.0),
            text: text.to_owned(),
        });
        self
    }

    /// Records a competitor that could not run.
    pub fn skip(&mut self, name: &str, why: impl Into<String>) {
        let why = why.into();
        log::warn(format!("{}: {name} skipped: {why}", self.name));
        self.entries.push(Entry {
            name: name.to_owned(),
            skipped: Some(why),
            ..Entry::default()
        });
    }

    /// The entry of a competitor.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    fn median(&self, name: &str, metric: &str) -> Option<f64> {
        self.entry(name)?.summary(metric).map(|s| s.median)
    }

    fn unit(&self, metric: &str) -> &'static str {
        self.metrics
            .iter()
            .find(|m| m.key == metric)
            .map(|m| m.unit)
            .unwrap_or("")
    }

    /// Evaluates every target on the medians.
    pub fn verdicts(&self) -> Vec<Verdict> {
        self.targets
            .iter()
            .map(|t| {
                let unit = self.unit(t.metric);
                let (measured, shown) = match &t.figure {
                    Figure::Value { of } => {
                        let v = self.median(of, t.metric);
                        (v, v.map(|v| format!("{} {unit}", fmt_num(v))))
                    }
                    Figure::Ratio { of, against } => {
                        let v = self
                            .median(of, t.metric)
                            .zip(self.median(against, t.metric))
                            .and_then(|(a, b)| ratio(a, b));
                        (v, v.map(|v| format!("{v:.2}×")))
                    }
                    Figure::Added { of, against } => {
                        let v = self
                            .median(of, t.metric)
                            .zip(self.median(against, t.metric))
                            .map(|(a, b)| a - b);
                        (v, v.map(|v| format!("{} {unit} added", fmt_num(v))))
                    }
                    Figure::LeastAdded {
                        of,
                        against,
                        others,
                    } => {
                        let added = |name: &str| {
                            self.median(name, t.metric)
                                .zip(self.median(against, t.metric))
                                .map(|(a, b)| a - b)
                        };
                        let best = others
                            .iter()
                            .filter_map(|o| added(o).map(|v| (o, v)))
                            .min_by(|a, b| a.1.total_cmp(&b.1));
                        match (added(of), best) {
                            (Some(mine), Some((name, theirs))) => (
                                Some(mine - theirs),
                                Some(format!(
                                    "{} {unit} added; lowest of the others: {name} {} {unit}",
                                    fmt_num(mine),
                                    fmt_num(theirs)
                                )),
                            ),
                            _ => (None, None),
                        }
                    }
                };
                Verdict {
                    text: t.text.clone(),
                    measured,
                    shown: shown.unwrap_or_else(|| "not measured".to_owned()),
                    met: measured.and_then(|v| t.bound.holds(v)),
                    info: t.bound == Bound::Info,
                }
            })
            .collect()
    }

    /// Prints the case as STAT lines and the verdicts.
    pub fn print(&self) {
        log::stat(format!(
            "== {} ({:.0} s): {}",
            self.name, self.seconds, self.method
        ));
        for m in &self.metrics {
            let reference = self.median(&self.reference, m.key);
            for e in &self.entries {
                if let Some(why) = &e.skipped {
                    log::stat(format!("  {:<14} {:<20} skipped: {why}", m.key, e.name));
                    continue;
                }
                let Some(s) = e.summary(m.key) else {
                    log::stat(format!("  {:<14} {:<20} no sample", m.key, e.name));
                    continue;
                };
                let r = reference
                    .and_then(|r| ratio(s.median, r))
                    .map(|r| format!("{r:.2}× {}", self.reference))
                    .unwrap_or_default();
                Event::new(
                    Level::Stat,
                    format!(
                        "  {:<14} {:<20} min {:>9} median {:>9} max {:>9} {:<7} {r}",
                        m.key,
                        e.name,
                        fmt_num(s.min),
                        fmt_num(s.median),
                        fmt_num(s.max),
                        m.unit
                    ),
                )
                .field("case", &self.name)
                .field("metric", m.key)
                .field("competitor", &e.name)
                .field("median", s.median)
                .emit();
            }
        }
        for e in &self.entries {
            for err in &e.errors {
                log::warn(format!("  {}: {err}", e.name));
            }
        }
        for n in &self.notes {
            log::stat(format!("  note: {n}"));
        }
        for v in self.verdicts() {
            let word = match v.met {
                Some(true) => "MET",
                Some(false) => "MISSED",
                None if v.info => "for comparison",
                None => "NOT MEASURED",
            };
            log::stat(format!("  target {}: {} — {word}", v.text, v.shown));
        }
    }

    /// The case as JSON: every raw sample, the summaries, ratios and verdicts.
    pub fn to_json(&self) -> Value {
        let competitors: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let metrics: serde_json::Map<String, Value> = e
                    .samples
                    .iter()
                    .map(|(k, v)| {
                        let s = Summary::of(v);
                        let r = s.and_then(|s| {
                            self.median(&self.reference, k)
                                .and_then(|r| ratio(s.median, r))
                        });
                        (
                            (*k).to_owned(),
                            json!({
                                "samples": v,
                                "min": s.map(|s| s.min),
                                "median": s.map(|s| s.median),
                                "max": s.map(|s| s.max),
                                "ratio_to_reference": r,
                            }),
                        )
                    })
                    .collect();
                json!({
                    "name": e.name,
                    "skipped": e.skipped,
                    "errors": e.errors,
                    "metrics": metrics,
                })
            })
            .collect();
        let verdicts: Vec<Value> = self
            .verdicts()
            .into_iter()
            .map(|v| json!({"target": v.text, "measured": v.measured, "shown": v.shown, "met": v.met, "info": v.info}))
            .collect();
        let metrics: Vec<Value> = self
            .metrics
            .iter()
            .map(|m| json!({"key": m.key, "unit": m.unit, "higher_is_better": m.higher_is_better}))
            .collect();
        json!({
            "case": self.name,
            "method": self.method,
            "reference": self.reference,
            "seconds": self.seconds,
            "metrics": metrics,
            "competitors": competitors,
            "targets": verdicts,
            "notes": self.notes,
        })
    }

    /// The case as a Markdown table (one row per competitor, one column per metric, each cell
    /// `median (min–max)`, and the ratio to the reference).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "#### {}\n\n{}\n", self.name, self.method);
        let mut header = String::from("| competitor |");
        let mut rule = String::from("|---|");
        for m in &self.metrics {
            let _ = write!(
                header,
                " {} [{}] median (min–max) | × {} |",
                m.key, m.unit, self.reference
            );
            rule.push_str("---|---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for e in &self.entries {
            let mut row = format!("| {} |", e.name);
            if let Some(why) = &e.skipped {
                for _ in &self.metrics {
                    let _ = write!(row, " skipped: {why} | |");
                }
                let _ = writeln!(out, "{row}");
                continue;
            }
            for m in &self.metrics {
                match e.summary(m.key) {
                    Some(s) => {
                        let r = self
                            .median(&self.reference, m.key)
                            .and_then(|r| ratio(s.median, r))
                            .map(|r| format!("{r:.2}×"))
                            .unwrap_or_else(|| "–".into());
                        let _ = write!(
                            row,
                            " {} ({}–{}) | {r} |",
                            fmt_num(s.median),
                            fmt_num(s.min),
                            fmt_num(s.max)
                        );
                    }
                    None => row.push_str(" – | – |"),
                }
            }
            let _ = writeln!(out, "{row}");
        }
        out.push('\n');
        for v in self.verdicts() {
            let (kind, word) = match v.met {
                Some(true) => ("target", "**met**"),
                Some(false) => ("target", "**missed**"),
                None if v.info => ("comparison", "for reference"),
                None => ("target", "not measured"),
            };
            let _ = writeln!(out, "- {kind} {}: {} — {word}", v.text, v.shown);
        }
        for n in &self.notes {
            let _ = writeln!(out, "- note: {n}");
        }
        out.push('\n');
        out
    }
}

/// Runs `rounds` rounds of every competitor, interleaved (A B C, A B C, …), into `case`.
///
/// A failing round is recorded and the others go on; a competitor that fails twice in a row is
/// dropped from the remaining rounds (a broken tool should not eat the time budget).
pub fn interleave(case: &mut Case, rounds: usize, mut competitors: Vec<Competitor<'_>>) {
    let started = Instant::now();
    let base = case.entries.len();
    for c in &competitors {
        case.entries.push(Entry {
            name: c.name.clone(),
            ..Entry::default()
        });
    }
    let mut failures = vec![0usize; competitors.len()];
    for r in 0..rounds {
        for (i, c) in competitors.iter_mut().enumerate() {
            if failures[i] >= 2 {
                continue;
            }
            let t = Instant::now();
            let result = (c.round)(r);
            let entry = &mut case.entries[base + i];
            match result {
                Ok(sample) => {
                    failures[i] = 0;
                    let shown: Vec<String> = sample
                        .iter()
                        .map(|(k, v)| format!("{k}={}", fmt_num(*v)))
                        .collect();
                    log::info(format!(
                        "{} round {}/{rounds} {}: {} ({:.1} s)",
                        case.name,
                        r + 1,
                        c.name,
                        shown.join(" "),
                        t.elapsed().as_secs_f64()
                    ));
                    for (k, v) in sample {
                        entry.push(k, v);
                    }
                }
                Err(e) => {
                    failures[i] += 1;
                    log::warn(format!("{} round {} {}: {e}", case.name, r + 1, c.name));
                    entry.errors.push(format!("round {}: {e}", r + 1));
                }
            }
        }
    }
    case.seconds += started.elapsed().as_secs_f64();
}

/// Four significant digits without exponent noise: `1234`, `12.35`, `0.0123`.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a >= 1000.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case_with(values: &[(&str, &[f64])]) -> Case {
        let mut case = Case::new("t", "test", "ref").metric(Metric::higher("rate", "x/s"));
        for (name, v) in values {
            case.entries.push(Entry {
                name: (*name).to_owned(),
                samples: vec![("rate", v.to_vec())],
                ..Entry::default()
            });
        }
        case
    }

    #[test]
    fn interleave_runs_competitors_alternately() {
        let order = std::cell::RefCell::new(Vec::new());
        let mut case = Case::new("t", "test", "a").metric(Metric::higher("v", ""));
        let comps = vec![
            Competitor::new("a", |r| {
                order.borrow_mut().push(format!("a{r}"));
                Ok(vec![("v", 1.0)])
            }),
            Competitor::new("b", |r| {
                order.borrow_mut().push(format!("b{r}"));
                Ok(vec![("v", 2.0)])
            }),
        ];
        interleave(&mut case, 3, comps);
        assert_eq!(*order.borrow(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
        assert_eq!(case.entry("b").unwrap().values("v"), [2.0, 2.0, 2.0]);
    }

    #[test]
    fn a_competitor_failing_twice_is_dropped_and_errors_kept() {
        let mut case = Case::new("t", "test", "a").metric(Metric::higher("v", ""));
        let comps = vec![Competitor::new("a", |_| Err(labnet::Error::msg("boom")))];
        interleave(&mut case, 5, comps);
        assert_eq!(case.entry("a").unwrap().errors.len(), 2);
    }

    #[test]
    fn ratio_target_uses_medians_of_the_same_run() {
        let case = case_with(&[("ref", &[10.0, 10.0, 1.0]), ("x", &[7.0, 6.0, 100.0])])
            .target_ratio("rate", "x", "ref", Bound::AtLeast(0.6), "≥ 0.6× ref");
        let v = &case.verdicts()[0];
        assert_eq!(v.measured, Some(0.7));
        assert_eq!(v.met, Some(true));
        assert_eq!(v.shown, "0.70×");
    }

    #[test]
    fn added_target_subtracts_medians_and_missing_competitor_is_not_measured() {
        let case = case_with(&[("ref", &[20.0]), ("x", &[50.0])])
            .target_added("rate", "x", "ref", Bound::AtMost(15.0), "≤ 15 added")
            .target_value("rate", "nobody", Bound::AtMost(1.0), "absent");
        let v = case.verdicts();
        assert_eq!(v[0].measured, Some(30.0));
        assert_eq!(v[0].met, Some(false));
        assert_eq!(v[1].met, None);
    }

    #[test]
    fn markdown_row_shows_median_range_and_ratio() {
        let case = case_with(&[("ref", &[2.0, 4.0, 3.0]), ("x", &[6.0])]);
        let md = case.to_markdown();
        assert!(md.contains("| ref | 3.000 (2.000–4.000) | 1.00× |"), "{md}");
        assert!(md.contains("| x | 6.000 (6.000–6.000) | 2.00× |"), "{md}");
    }

    #[test]
    fn numbers_print_with_about_four_digits() {
        assert_eq!(fmt_num(1234.56), "1235");
        assert_eq!(fmt_num(12.3456), "12.35");
        assert_eq!(fmt_num(0.012345), "0.0123");
    }
}
