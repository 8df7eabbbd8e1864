//! What the benchmarks need from the system: starting and stopping the programs under test (only
//! ever by their own PID), waiting until they listen, reading their CPU time and memory from
//! `/proc`, raising the open-file limit, and finding or installing the tools.

use std::collections::HashSet;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use labnet::{Context, Error, Result};

/// A program under test. Dropping it kills it (SIGKILL to its own PID) and every descendant
/// still alive (socat forks one child per connection), then reaps it.
pub struct Proc {
    /// Name for messages.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with stdin, stdout and stderr on `/dev/null` (the programs under test log
    /// every connection; a terminal or a pipe nobody reads would slow them or stall them).
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("start {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
        })
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited (it could not bind, a bad flag…).
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::msg(format!("{} exited early: {status}", self.name))),
            _ => Ok(()),
        }
    }

    /// Waits until the process listens on `port` (seen in `/proc/net/tcp*`, so no probe
    /// connection disturbs the program: iperf3 would count a probe as a failed test).
    pub fn wait_listening(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if is_listening(port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::msg(format!(
                    "{} does not listen on port {port} after {timeout:?}",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id();
        let descendants = descendants(pid);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !descendants.is_empty() {
            kill_pids(&descendants);
        }
    }
}

/// Sends SIGKILL to each PID (descendants of a process this program started).
pub fn kill_pids(pids: &[u32]) {
    for chunk in pids.chunks(500) {
        let _ = Command::new("kill")
            .arg("-9")
            .args(chunk.iter().map(u32::to_string))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// True when some socket listens on TCP `port` (IPv4 or IPv6), from `/proc/net/tcp{,6}`.
pub fn is_listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        fs::read_to_string(f).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let mut cols = line.split_whitespace();
                let local = cols.nth(1).unwrap_or("");
                let state = cols.nth(1).unwrap_or("");
                state == "0A" && local.ends_with(&want)
            })
        })
    })
}

/// A loopback port free right now (bound to port 0, then released). Another program could take
/// it in between; on this machine nothing else binds 127.0.0.1 ports at random, so it is enough.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr().context("local address")?.port())
}

/// `127.0.0.1:port`.
pub fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The PIDs of every live descendant of `pid` (children, grandchildren…), from `/proc/*/stat`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse().ok())) {
            parent_of.push((p, ppid));
        }
    }
    let mut tree: HashSet<u32> = HashSet::from([pid]);
    let mut out = Vec::new();
    // Parents may appear after their children in /proc order: iterate to a fixed point.
    loop {
        let before = out.len();
        for &(p, ppid) in &parent_of {
            if tree.contains(&ppid) && tree.insert(p) {
                out.push(p);
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

/// The fields of `/proc/PID/stat` after the command name (field 3, the state, is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User plus system CPU time of a process (all its threads, dead ones included), in seconds,
/// from fields 14 and 15 of `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let f = stat_fields(pid).ok_or_else(|| Error::msg(format!("read /proc/{pid}/stat")))?;
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Ok((ticks(11) + ticks(12)) as f64 / clock_ticks() as f64)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` (100 on every Linux in practice).
fn clock_ticks() -> u64 {
    static TICKS: Mutex<Option<u64>> = Mutex::new(None);
    let mut guard = match TICKS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *guard.get_or_insert_with(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Proportional set size of a process in KiB (`Pss:` of `/proc/PID/smaps_rollup`): its private
/// pages plus its share of pages it shares, so summing over processes counts shared libraries once.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// PSS of a process and all its descendants, in MiB, and how many processes that is.
pub fn tree_pss_mib(pid: u32) -> (f64, usize) {
    let mut pids = descendants(pid);
    pids.push(pid);
    let kib: u64 = pids.iter().filter_map(|&p| pss_kib(p)).sum();
    (kib as f64 / 1024.0, pids.len())
}

/// The soft limit on open files of this process.
pub fn nofile_limit() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Raises this process's open-file limit to `want` with `prlimit --pid` (util-linux; root may
/// raise the hard limit too). Children started afterwards inherit it. Returns the limit now.
pub fn raise_nofile(want: u64) -> u64 {
    let now = nofile_limit().unwrap_or(1024);
    if now >= want {
        return now;
    }
    let _ = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={want}:{want}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    nofile_limit().unwrap_or(now)
}

/// The path of a program on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// True when running as root (uid 0 in `/proc/self/status`).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Finds a Debian tool, installing its package with apt-get when it is missing and we are root
/// (and installing is allowed). `Err` says why the competitor must be skipped.
pub fn ensure_tool(
    program: &str,
    package: &str,
    install: bool,
) -> std::result::Result<PathBuf, String> {
    if let Some(p) = which(program) {
        return Ok(p);
    }
    if !install {
        return Err(format!("{program} not installed (--no-install)"));
    }
    if !is_root() {
        return Err(format!(
            "{program} not installed and not root: apt-get install {package}"
        ));
    }
    static UPDATED: Mutex<bool> = Mutex::new(false);
    let mut updated = match UPDATED.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    labnet::log::info(format!("installing {package} with apt-get"));
    if !*updated {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdout(Stdio::null())
            .status();
        *updated = true;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match (ok, which(program)) {
        (true, Some(p)) => Ok(p),
        _ => Err(format!(
            "{program} missing and apt-get install {package} failed"
        )),
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where the workspace's binaries are found, and whether missing ones may be built.
#[derive(Debug, Clone)]
pub struct Bins {
    /// Directory of the release binaries.
    pub dir: PathBuf,
    /// Build a package with `cargo build --release` when its binary is wanted.
    pub build: bool,
}

impl Bins {
    /// The path of binary `name` of package `package`, building the package first (once per
    /// run) when allowed, so the benchmark measures the current source. `Err` says why the
    /// competitor is skipped.
    pub fn get(&self, package: &str, name: &str) -> std::result::Result<PathBuf, String> {
        static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let path = self.dir.join(name);
        if self.build {
            let mut built = match BUILT.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !built.iter().any(|p| p == package) {
                built.push(package.to_owned());
                if !workspace_root().join("crates").join(package).is_dir() {
                    return Err(format!("crate {package} does not exist yet"));
                }
                labnet::log::info(format!("cargo build --release -p {package}"));
                let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
                let ok = Command::new(cargo)
                    .args(["build", "--release", "--quiet", "-p", package])
                    .current_dir(workspace_root())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err(format!("cargo build --release -p {package} failed"));
                }
            }
        }
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} not found", path.display()))
        }
    }
}

/// One line about the machine's load, printed next to the figures.
pub fn load_note() -> String {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fields: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{cores} cores, load average {}", fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_pss() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(pss_kib(pid).unwrap() > 0);
    }

    #[test]
    fn a_bound_listener_is_seen_listening() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(is_listening(port));
        drop(l);
        assert!(!is_listening(port));
    }
}
