//! A grading lab: one topology in fresh network namespaces per submission (names of their own,
//! removed on drop, also after a panic), the course servers started in it, and the student's
//! programs run in its hosts through the [`sandbox`](crate::sandbox).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use labnet::netns::{self, Testbed};
use labnet::topo::Topology;
use labnet::{Context, Error, Result};
use serde_json::Value;

use crate::sandbox::{self, Lane, Limits, Running};

/// Prefix of the namespaces a grader makes (`nlg<pid>l<lane>x<n>_tp3_tcpip`).
pub const PREFIX: &str = "nlg";

static LABS: AtomicU32 = AtomicU32::new(0);

/// Checks what grading needs before anything starts: root (namespaces, other users), the
/// sandbox's tools, the course binaries. Sweeps the labs of grader processes that died.
pub fn preflight() -> Result<()> {
    netns::netns_available().map_err(|why| {
        Error::msg(format!(
            "{why}; lab-grade builds a lab per submission and runs students' code as other users: run it as root (sudo)"
        ))
    })?;
    sandbox::check_tools()?;
    for t in ["lab-server", "chat-server", "chat-client"] {
        tool(t)?;
    }
    netns::sweep_stale_namespaces(PREFIX);
    Ok(())
}

/// A course program: next to `lab-grade` (the kit's binaries are built and installed together),
/// else on the PATH.
pub fn tool(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        // Cargo's test binaries live in target/<profile>/deps, the programs one level up.
        for d in [
            Some(dir.as_path()),
            dir.parent().filter(|_| dir.ends_with("deps")),
        ]
        .into_iter()
        .flatten()
        {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(Error::msg(format!(
        "{name} not found next to lab-grade or on the PATH (cargo build --release --bins)"
    )))
}

/// The grader's scratch folder (lanes, records), removed at the end; traversable by the lanes'
/// users, whose own folders inside are private.
pub struct Work(PathBuf);

impl Work {
    /// Creates `<tmp>/lab-grade-<pid>`.
    pub fn new() -> Result<Work> {
        let p = std::env::temp_dir().join(format!("lab-grade-{}", std::process::id()));
        if p.exists() {
            let _ = fs::remove_dir_all(&p);
        }
        fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o711))
            .with_context(|| format!("chmod {}", p.display()))?;
        Ok(Work(p))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One submission's lab.
pub struct Lab {
    /// The namespaces.
    pub bed: Testbed,
    servers: Vec<(String, Running)>,
}

impl Lab {
    /// Builds `topo` with names no other lab uses.
    pub fn up(topo: &'static Topology, lane: &Lane) -> Result<Lab> {
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{}l{}x{n}_", std::process::id(), lane.index);
        let bed =
            Testbed::up(topo, &prefix).with_context(|| format!("build the {} lab", topo.name))?;
        Ok(Lab {
            bed,
            servers: Vec::new(),
        })
    }

    /// Starts a course program (ours, trusted) on `host` with `--json` output, and waits until
    /// it printed an event whose message contains `ready`.
    pub fn server(&mut self, host: &str, prog: &str, args: &[String], ready: &str) -> Result<()> {
        let mut cmd = self.bed.command(host, tool(prog)?);
        cmd.args(args);
        let run = Running::start(cmd, false, 64 * 1024 * 1024)?;
        if !run.wait_for(ready, Duration::from_secs(15)) {
            let mut run = run;
            let f = run.stop();
            return Err(Error::msg(format!(
                "{prog} did not start on {host}: {}{}",
                f.stdout.trim(),
                f.stderr.trim()
            )));
        }
        self.servers.push((prog.to_owned(), run));
        Ok(())
    }

    /// The JSON events a course program printed so far.
    pub fn events(&self, prog: &str) -> Vec<Value> {
        self.servers
            .iter()
            .filter(|(p, _)| p == prog)
            .flat_map(|(_, r)| {
                r.stdout()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits until a course program printed an event for which `f` holds.
    pub fn wait_event(&self, prog: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> bool {
        let Some((_, run)) = self.servers.iter().rev().find(|(p, _)| p == prog) else {
            return false;
        };
        run.wait_output(timeout, |out| {
            out.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| f(&v))
        })
    }

    /// Stops every course program (before the next part starts its own).
    pub fn stop_servers(&mut self) {
        for (_, mut r) in self.servers.drain(..) {
            r.stop();
        }
    }

    /// Stops every course program and returns the JSON events `prog` printed, all of them: a
    /// server logs an event before it answers, but the grader's reader may not have read the
    /// line yet when the student's program, answered, has already ended; stopping drains the
    /// pipe.
    pub fn stop_and_events(&mut self, prog: &str) -> Vec<Value> {
        let mut events = Vec::new();
        for (p, mut r) in self.servers.drain(..) {
            let f = r.stop();
            if p == prog {
                events.extend(
                    f.stdout
                        .lines()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
                );
            }
        }
        events
    }

    /// Starts a student's program on `host` as the lane's user (see [`sandbox`]).
    pub fn student(
        &self,
        lane: &Lane,
        host: &str,
        cwd: &Path,
        argv: &[OsString],
        stdin: bool,
        limits: &Limits,
    ) -> Result<Running> {
        let cmd = lane.wrap(self.bed.command(host, "setpriv"), cwd, argv, limits);
        Running::start(cmd, stdin, limits.output)
    }

    /// Runs `program args…` on `host` as root to completion (the grader's own probes: `ss`).
    pub fn probe(&self, host: &str, program: &str, args: &[&str]) -> String {
        self.bed
            .run(host, program, args)
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_servers();
    }
}

/// Runs `f` on a thread that joined the network namespace `ns` (the grader's own clients in a
/// lab host: sockets belong to the namespace of the thread that creates them).
pub fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = Path::new("/run/netns").join(ns);
    let file = fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::msg(format!("enter {ns}: {e}")))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(Error::msg(format!("the grader's client in {ns} panicked"))))
    })
}

/// The argument vector of a program from its `--invoke` template (or the default): `{prog}`
/// becomes how the program starts (python3 and the file, …), the other placeholders their values.
pub fn argv(template: &str, program: &Path, values: &[(&str, String)]) -> Vec<OsString> {
    let mut out = Vec::new();
    for word in template.split_whitespace() {
        if word == "{prog}" {
            out.extend(sandbox::argv_for(program));
            continue;
        }
        let mut w = word.to_owned();
        for (k, v) in values {
            w = w.replace(&format!("{{{k}}}"), v);
        }
        out.push(OsString::from(w));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_the_program_and_the_values() {
        let a = argv(
            "{prog} {host} {port} {cmd}",
            Path::new("/w/Part2_1_2.py"),
            &[
                ("host", "tcpip.epfl.ch".into()),
                ("port", "5003".into()),
                ("cmd", "CMD_short:0".into()),
            ],
        );
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            a,
            [
                "/usr/bin/python3",
                "/w/Part2_1_2.py",
                "tcpip.epfl.ch",
                "5003",
                "CMD_short:0"
            ]
        );
        let b = argv(
            "{prog} --listen=0.0.0.0:{port}",
            Path::new("/w/hw3"),
            &[("port", "9090".into())],
        );
        assert_eq!(
            b,
            [
                OsString::from("/w/hw3"),
                OsString::from("--listen=0.0.0.0:9090")
            ]
        );
    }
}
