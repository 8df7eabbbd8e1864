//! Running untrusted student code: never as root.
//!
//! Each grading lane has a numeric user and group of its own (no entry in `/etc/passwd` is
//! needed or made), and a private folder only that user can read. A student's program runs
//! inside a lab host as that user, through `setpriv` (no capabilities, no new privileges, no
//! supplementary groups) and `prlimit` (CPU time, address space, processes, open files, file
//! size, no core dumps), with a clean environment, from a private copy of its submission. It is
//! the leader of its own process group: at its deadline the group gets SIGINT (Python prints
//! its traceback and runs `finally`), then SIGTERM, then SIGKILL, and finally every process of the
//! lane's user is killed, so a program that forked and left its group ends too. Its output is
//! read as it comes and bounded: a program that floods is stopped and loses only its own points.
//!
//! Because the processes limit (RLIMIT_NPROC) counts per user, a fork bomb in one lane cannot
//! starve another lane, and the folder permissions keep one submission out of another's files.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use labnet::{Context, Error, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The first user ID lanes take (well above the IDs distributions hand out, below 2^31).
const UID_BASE: u32 = 1_610_000_000;

/// Limits on one run of a student's program.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// CPU seconds (RLIMIT_CPU): an infinite loop burns at most this.
    pub cpu_secs: u64,
    /// Address space in bytes (RLIMIT_AS).
    pub memory: u64,
    /// Processes and threads of the lane's user (RLIMIT_NPROC): a fork bomb stops here.
    pub processes: u64,
    /// Open descriptors (RLIMIT_NOFILE).
    pub files: u64,
    /// Largest file it may write (RLIMIT_FSIZE).
    pub file_size: u64,
    /// Bytes of stdout and of stderr kept; more stops the program.
    pub output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_secs: 60,
            // Python with a dozen threads reserves far more address space than it uses (8 MiB
            // stacks); MALLOC_ARENA_MAX below keeps glibc's per-thread arenas from adding more.
            memory: 2 * 1024 * 1024 * 1024,
            processes: 64,
            files: 256,
            file_size: 32 * 1024 * 1024,
            output: 8 * 1024 * 1024,
        }
    }
}

/// A grading lane: one unprivileged user and its private folder; one submission at a time.
#[derive(Debug)]
pub struct Lane {
    /// Lane number (0, 1, …).
    pub index: usize,
    /// The user (and group) its students' programs run as.
    pub uid: u32,
    /// Its private folder (mode 0700, owned by `uid`).
    pub home: PathBuf,
}

impl Lane {
    /// Lane `index` of this grader process, with a fresh private folder under `work`.
    pub fn new(index: usize, work: &Path) -> Result<Lane> {
        let uid = UID_BASE + (std::process::id() % 100_000) * 64 + index as u32;
        let home = work.join(format!("lane{index}"));
        if home.exists() {
            fs::remove_dir_all(&home).with_context(|| format!("clear {}", home.display()))?;
        }
        fs::create_dir_all(&home).with_context(|| format!("create {}", home.display()))?;
        let lane = Lane { index, uid, home };
        lane.own(&lane.home)?;
        fs::set_permissions(&lane.home, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod {}", lane.home.display()))?;
        Ok(lane)
    }

    /// A fresh private copy of `files` (paths under `root`) in `<home>/<name>/`, owned by the
    /// lane's user: the working folder of one program run.
    pub fn stage(&self, name: &str, root: &Path, files: &[PathBuf]) -> Result<PathBuf> {
        let dir = self.home.join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        for rel in files {
            let to = dir.join(rel);
            if let Some(p) = to.parent() {
                fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))?;
            }
            fs::copy(root.join(rel), &to).with_context(|| format!("copy {}", rel.display()))?;
        }
        fs::create_dir_all(dir.join(".tmp")).context("create the program's temp folder")?;
        self.own(&dir)?;
        Ok(dir)
    }

    /// Gives `path` (recursively) to the lane's user.
    pub fn own(&self, path: &Path) -> Result<()> {
        let mut stack = vec![path.to_path_buf()];
        while let Some(p) = stack.pop() {
            std::os::unix::fs::lchown(&p, Some(self.uid), Some(self.uid))
                .with_context(|| format!("chown {}", p.display()))?;
            if p.is_dir() && !p.is_symlink() {
                for e in fs::read_dir(&p).with_context(|| format!("read {}", p.display()))? {
                    stack.push(e.context("read a folder entry")?.path());
                }
            }
        }
        Ok(())
    }

    /// Kills every process of the lane's user (those that left their process group too), until
    /// none is left: a fork bomb's children forked while the first kill went round would
    /// otherwise live on, and count against the next program's process limit.
    pub fn kill_all(&self) {
        for _ in 0..200 {
            if processes_of(self.uid) == 0 {
                return;
            }
            // kill(-1) from the lane's own user reaches exactly that user's processes.
            let _ = Command::new("setpriv")
                .args(self.setpriv_args())
                .args(["kill", "-KILL", "-1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn setpriv_args(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.uid),
            "--clear-groups".into(),
            "--no-new-privs".into(),
            "--inh-caps=-all".into(),
            "--bounding-set=-all".into(),
            "--".into(),
        ]
    }

    /// Wraps `argv` so that it runs as the lane's user with `limits`, a clean environment and
    /// `cwd` as its home and working folder. `base` is the command that enters the lab host
    /// (`nsenter … setpriv`), or `setpriv` itself outside a lab.
    pub fn wrap(
        &self,
        mut base: Command,
        cwd: &Path,
        argv: &[OsString],
        limits: &Limits,
    ) -> Command {
        base.args(self.setpriv_args());
        base.arg("prlimit")
            .arg(format!("--cpu={}", limits.cpu_secs))
            .arg(format!("--as={}", limits.memory))
            .arg(format!("--nproc={}", limits.processes))
            .arg(format!("--nofile={}", limits.files))
            .arg(format!("--fsize={}", limits.file_size))
            .arg("--core=0")
            .arg("--");
        // `env --chdir`: enter the working folder by its path inside the host's mount namespace.
        // The folder nsenter opened before entering it lies outside that namespace's tree, and
        // there getcwd() fails (Python's os.getcwd, os.path.abspath, logging.FileHandler).
        base.arg("env")
            .arg("-i")
            .arg(format!("--chdir={}", cwd.display()));
        for (k, v) in [
            ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
            ("HOME", cwd.display().to_string()),
            ("TMPDIR", cwd.join(".tmp").display().to_string()),
            ("LANG", "C.UTF-8".to_owned()),
            // A pipe would block-buffer Python's prints: the grader reads them as they come.
            ("PYTHONUNBUFFERED", "1".to_owned()),
            ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
            ("MALLOC_ARENA_MAX", "2".to_owned()),
        ] {
            base.arg(format!("{k}={v}"));
        }
        base.args(argv).current_dir(cwd);
        base
    }
}

/// How many processes (threads count once, zombies too: they hold their slot of RLIMIT_NPROC
/// until reaped) run as `uid`, from `/proc`.
pub fn processes_of(uid: u32) -> usize {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .is_some_and(|u| u == uid.to_string())
            })
        })
        .count()
}

/// How a program is started: Python with Debian's interpreter (the one an unprivileged user can
/// run), C compiled first, anything else as an executable (its `#!` line decides).
pub fn argv_for(program: &Path) -> Vec<OsString> {
    let name = program.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".py") {
        vec!["/usr/bin/python3".into(), program.as_os_str().to_owned()]
    } else if let Some(stem) = name.strip_suffix(".c") {
        // Compiled by `compile` into the same folder, without the extension.
        let _ = stem;
        vec![program.with_extension("").into_os_string()]
    } else {
        vec![program.as_os_str().to_owned()]
    }
}

/// Prepares a staged program to run: marks it executable, and compiles a `.c` file with `cc`
/// (as the lane's user, with the same limits). Returns why it cannot run, for the feedback.
pub fn prepare(lane: &Lane, program: &Path, limits: &Limits) -> std::result::Result<(), String> {
    let name = program.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".py") {
        return Ok(());
    }
    if name.ends_with(".c") {
        let dir = program.parent().unwrap_or(Path::new("."));
        let out = program.with_extension("");
        let argv: Vec<OsString> = vec![
            "cc".into(),
            "-O2".into(),
            "-o".into(),
            out.into_os_string(),
            program.as_os_str().to_owned(),
        ];
        let cmd = lane.wrap(Command::new("setpriv"), dir, &argv, limits);
        let mut run = Running::start(cmd, false, limits.output).map_err(|e| e.to_string())?;
        let done = run.finish(Duration::from_secs(60));
        return if done.status.is_some_and(|s| s.success()) {
            Ok(())
        } else {
            Err(format!(
                "cc could not compile it: {}",
                clip(done.stderr.trim(), 400)
            ))
        };
    }
    fs::set_permissions(program, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make it executable: {e}"))
}

/// What one run ended with.
#[derive(Debug, Default, Clone)]
pub struct Finished {
    /// The exit status, when it exited (by itself or by a signal of ours).
    pub status: Option<ExitStatus>,
    /// True when it ended by itself before the deadline.
    pub exited: bool,
    /// True when the grader stopped it at its deadline.
    pub stopped: bool,
    /// Its standard output (lossy UTF-8), up to the output limit.
    pub stdout: String,
    /// Its standard error, up to the output limit.
    pub stderr: String,
    /// True when it wrote more than the output limit (and was stopped for it).
    pub flooded: bool,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Finished {
    /// The last lines of stderr, for feedback ("its last error output: …"). The traceback of
    /// the grader's own SIGINT at the deadline says nothing the feedback does not already say.
    pub fn error_tail(&self) -> String {
        let lines: Vec<&str> = self.stderr.trim_end().lines().collect();
        if self.stopped
            && lines
                .last()
                .is_some_and(|l| l.trim() == "KeyboardInterrupt")
        {
            return String::new();
        }
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        clip(&tail, 300)
    }

    /// Writes paths under `dir` (the program's private folder) relative to it, as the student
    /// knows them.
    pub fn relative_to(mut self, dir: &Path) -> Finished {
        let prefix = format!("{}/", dir.display());
        self.stderr = self.stderr.replace(&prefix, "");
        self.stdout = self.stdout.replace(&prefix, "");
        self
    }
}

/// Output collected from a running program.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    open: usize,
    flooded: bool,
}

struct Shared {
    data: Mutex<Collected>,
    changed: Condvar,
    cap: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Collected> {
        match self.data.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// A program running in its own process group, its output collected as it comes.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    started: Instant,
}

impl Running {
    /// Starts `cmd` as the leader of a new process group, stdout and stderr collected up to
    /// `cap` bytes each; stdin piped when `stdin`, else empty.
    pub fn start(mut cmd: Command, stdin: bool, cap: usize) -> Result<Running> {
        cmd.process_group(0)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().with_context(|| format!("start {program}"))?;
        let shared = Arc::new(Shared {
            data: Mutex::new(Collected {
                open: 2,
                ..Collected::default()
            }),
            changed: Condvar::new(),
            cap,
        });
        let out = child.stdout.take();
        let err = child.stderr.take();
        for (pipe, is_out) in [(out.map(Pipe::Out), true), (err.map(Pipe::Err), false)] {
            let shared = Arc::clone(&shared);
            let Some(mut pipe) = pipe else {
                shared.lock().open -= 1;
                continue;
            };
            thread::Builder::new()
                .name(if is_out { "stdout" } else { "stderr" }.into())
                .spawn(move || collect(&mut pipe, is_out, &shared))
                .context("start an output reader thread")?;
        }
        Ok(Running {
            stdin: child.stdin.take(),
            child,
            shared,
            started: Instant::now(),
        })
    }

    /// Its process ID (= its process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes `line` and a newline to its stdin; false when it no longer reads.
    pub fn send_line(&mut self, line: &str) -> bool {
        match &mut self.stdin {
            Some(s) => s
                .write_all(format!("{line}\n").as_bytes())
                .and_then(|()| s.flush())
                .is_ok(),
            None => false,
        }
    }

    /// Closes its stdin (end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Its stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.shared.lock().stdout).into_owned()
    }

    /// Waits until its stdout satisfies `f` (checked on every new output), or `timeout`.
    pub fn wait_output(&self, timeout: Duration, f: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.lock();
        loop {
            if f(&String::from_utf8_lossy(&g.stdout)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || g.open == 0 {
                // Nothing more will come once both pipes closed.
                return f(&String::from_utf8_lossy(&g.stdout));
            }
            g = match self.shared.changed.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Waits until its stdout contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_output(timeout, |s| s.contains(needle))
    }

    /// True while it runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to end by itself up to `limit` (stopped after that), then collects
    /// everything it printed.
    pub fn finish(&mut self, limit: Duration) -> Finished {
        let deadline = self.started + limit;
        let mut exited = false;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            if self.shared.lock().flooded || Instant::now() >= deadline {
                break;
            }
            let g = self.shared.lock();
            let _ = self
                .shared
                .changed
                .wait_timeout(g, Duration::from_millis(20));
        }
        self.end(exited)
    }

    /// Stops it now (SIGINT, then SIGTERM, then SIGKILL to its group) and collects its output.
    pub fn stop(&mut self) -> Finished {
        if let Ok(Some(_)) = self.child.try_wait() {
            return self.end(true);
        }
        self.end(false)
    }

    fn end(&mut self, exited: bool) -> Finished {
        let stopped = !exited;
        self.stdin = None;
        if stopped {
            let group = Pid::from_raw(self.child.id() as i32);
            for (signal, grace) in [
                (Signal::SIGINT, Duration::from_millis(1000)),
                (Signal::SIGTERM, Duration::from_millis(500)),
                (Signal::SIGKILL, Duration::from_millis(0)),
            ] {
                let _ = killpg(group, signal);
                let until = Instant::now() + grace;
                while Instant::now() < until {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
            }
            // Children of the group that outlive its leader still hold the pipes.
            let _ = killpg(group, Signal::SIGKILL);
        }
        let status = self.child.wait().ok();
        // Let the readers drain what is left (bounded: a process outside the group may keep a
        // pipe open; the lane's kill_all ends those).
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let g = self.shared.lock();
            if g.open == 0 || Instant::now() >= until {
                break;
            }
            let _ = self
                .shared
                .changed
                .wait_timeout(g, Duration::from_millis(20));
        }
        let g = self.shared.lock();
        Finished {
            status,
            exited,
            stopped,
            stdout: String::from_utf8_lossy(&g.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&g.stderr).into_owned(),
            flooded: g.flooded,
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

enum Pipe {
    Out(std::process::ChildStdout),
    Err(std::process::ChildStderr),
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Pipe::Out(p) => p.read(buf),
            Pipe::Err(p) => p.read(buf),
        }
    }
}

fn collect(pipe: &mut Pipe, is_out: bool, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut buf).unwrap_or(0);
        let mut g = shared.lock();
        if n == 0 {
            g.open -= 1;
            drop(g);
            shared.changed.notify_all();
            return;
        }
        let cap = shared.cap;
        let dest = if is_out { &mut g.stdout } else { &mut g.stderr };
        let room = cap.saturating_sub(dest.len());
        dest.extend_from_slice(&buf[..n.min(room)]);
        if n > room {
            // Keep draining so the writer never blocks, but the run is over.
            g.flooded = true;
        }
        drop(g);
        shared.changed.notify_all();
    }
}

/// `s` cut to at most `max` characters, with an ellipsis.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// Arguments as the OS strings a command takes.
pub fn os_args<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// Makes sure the tools the sandbox needs exist; the message says how to install them.
pub fn check_tools() -> Result<()> {
    for (tool, package) in [
        ("setpriv", "util-linux"),
        ("prlimit", "util-linux"),
        ("nsenter", "util-linux"),
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(Error::msg(format!(
                "{tool} not found: install it with `apt-get install {package}`"
            )));
        }
    }
    if !Path::new("/usr/bin/python3").is_file() {
        return Err(Error::msg(
            "/usr/bin/python3 not found: students' Python programs run with Debian's python3 (apt-get install python3 python3-websocket)",
        ));
    }
    Ok(())
}
