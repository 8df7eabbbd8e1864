//! `startup`: every workspace binary run with `--help`, against `/bin/true` and
//! `python3 -c 'import socket'` (what a handout program pays before its first line).
//!
//! One round of one competitor spawns it [`RUNS`] times in a row (stdout to `/dev/null`) and
//! records the mean wall time per run, spawn to exit.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use labnet::{Error, Result};

use crate::Config;
use crate::report::{Bound, Case, Competitor, Metric, interleave};
use crate::sys;

/// Spawns per round.
pub const RUNS: u32 = 20;

/// Packages that are not lab programs.
const NOT_LAB: [&str; 3] = ["netlab-bench", "xtask", "labnet"];

/// `(package, binary)` of every binary in `crates/`: `src/main.rs` is the package's own
/// binary, `src/bin/NAME.rs` another one.
pub fn workspace_binaries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir(sys::workspace_root().join("crates")) else {
        return out;
    };
    let mut crates: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
    crates.sort();
    for c in crates {
        let Some(pkg) = c.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if NOT_LAB.contains(&pkg.as_str()) || !c.join("Cargo.toml").is_file() {
            continue;
        }
        if c.join("src/main.rs").is_file() {
            out.push((pkg.clone(), pkg.clone()));
        }
        if let Ok(bins) = fs::read_dir(c.join("src/bin")) {
            let mut names: Vec<String> = bins
                .flatten()
                .filter_map(|e| {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "rs") {
                        p.file_stem().and_then(|s| s.to_str()).map(str::to_owned)
                    } else if p.join("main.rs").is_file() {
                        p.file_name().and_then(|s| s.to_str()).map(str::to_owned)
                    } else {
                        None
                    }
                })
                .collect();
            names.sort();
            out.extend(names.into_iter().map(|b| (pkg.clone(), b)));
        }
    }
    out
}

/// Mean milliseconds per run of `program args…`, over `runs` runs.
fn mean_ms(program: &PathBuf, args: &[&str], runs: u32) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..runs {
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::msg(format!("run {}: {e}", program.display())))?;
        if !status.success() {
            return Err(Error::msg(format!(
                "{} {args:?} exited with {status}",
                program.display()
            )));
        }
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0 / f64::from(runs))
}

/// Runs the start-up benchmark.
pub fn run(config: &Config) -> Result<Vec<Case>> {
    let mut case = Case::new(
        "startup",
        format!("{RUNS} runs in a row per round, spawn → exit, stdout to /dev/null; mean per run"),
        "/bin/true",
    )
    .metric(Metric::lower("time", "ms"));
    let mut comps = Vec::new();
    let truth = sys::which("true").unwrap_or_else(|| PathBuf::from("/bin/true"));
    comps.push(Competitor::new("/bin/true", move |_| {
        mean_ms(&truth, &[], RUNS).map(|v| vec![("time", v)])
    }));
    match crate::suite::chat::python() {
        Ok(py) => comps.push(Competitor::new("python3 -c 'import socket'", move |_| {
            mean_ms(&py, &["-c", "import socket"], RUNS).map(|v| vec![("time", v)])
        })),
        Err(why) => case.skip("python3 -c 'import socket'", why),
    }
    for (pkg, bin) in workspace_binaries() {
        match config.bins.get(&pkg, &bin) {
            Ok(path) => {
                case = case.target_ratio(
                    "time",
                    &bin,
                    "/bin/true",
                    Bound::AtMost(2.0),
                    &format!("{bin} --help ≤ 2× /bin/true"),
                );
                comps.push(Competitor::new(bin, move |_| {
                    mean_ms(&path, &["--help"], RUNS).map(|v| vec![("time", v)])
                }));
            }
            Err(why) => case.skip(&bin, why),
        }
    }
    interleave(&mut case, config.rounds, comps);
    Ok(vec![case])
}
