//! The Docker backend of `lab` and `demo` (`--docker`): the compose files of [`files`] run by
//! `docker-compose`, one compose project per lab. [`cli`] is `lab … --docker`, [`image`] the
//! image build (`images --build`, and a demo's own image).
//!
//! A project without `--prefix` is the handout's lab: project `week3`, the committed
//! `docker/week3.yml`, containers `week3_client`, … With a prefix (tests, a second run on a shared
//! machine) the containers, networks and project carry the prefix and the compose file is written
//! to the temp directory; the addresses stay the handout's, so two labs of the same topology
//! cannot be up at once on one engine (Docker refuses overlapping subnets). Runs that bring a lab
//! up and down by themselves (demos, tests) therefore take a per-topology lock file first, and
//! every `up` names the network that holds a subnet it needs instead of failing obscurely.
//!
//! Inside a container, programs run with `docker exec` (the students' own way in). A program a
//! demo starts in the background writes its PID inside the container first, so Ctrl-C (SIGINT)
//! and SIGKILL reach it there: signalling the local `docker exec` client would not.

pub mod cli;
pub mod files;
pub mod image;

use std::fs::File;
use std::io::IsTerminal as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use labnet::error::Context as _;
use labnet::topo::Topology;
use labnet::{Error, Result};

use self::files::{READY_FILE, Variant};
use super::services::{Services, course_services};
use crate::opts::{Opts, workspace_root};

/// How long a run waits for another run's lab of the same topology to go down.
const LOCK_WAIT: Duration = Duration::from_secs(20 * 60);
/// How long a container may take to set up its network.
const READY_WAIT: Duration = Duration::from_secs(60);

/// Whether a Docker engine answers; the reason when not.
pub fn engine() -> Result<()> {
    match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => Err(Error::msg(format!(
            "the docker command is not installed ({e}): apt-get install docker.io docker-compose"
        ))),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no answer");
            Err(Error::msg(format!(
                "no Docker engine answers (`docker info`: {}); start it (dockerd, or systemctl start docker)",
                first.trim()
            )))
        }
    }
}

/// True when `docker compose` (the CLI plugin) works; otherwise `docker-compose` is used.
fn has_plugin() -> bool {
    static PLUGIN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PLUGIN.get_or_init(|| {
        Command::new("docker")
            .args(["compose", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The compose command: `docker compose` with the CLI plugin, else `docker-compose`.
pub fn compose_cmd() -> Command {
    if has_plugin() {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    }
}

/// True when some compose command runs.
pub fn compose_available() -> bool {
    has_plugin()
        || Command::new("docker-compose")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A name Docker accepts for a project or image (lowercase letters, digits, `_`, `-`).
pub fn docker_name(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// The image a run uses by default: `netlab:latest`, or `<prefix>netlab:latest` with a prefix
/// (a run with a prefix builds and removes its own).
pub fn default_image(prefix: &str) -> String {
    if prefix.is_empty() {
        files::IMAGE.to_owned()
    } else {
        format!("{}netlab:latest", docker_name(prefix))
    }
}

/// Runs a command to completion with a time limit; (success, stdout, stderr).
pub fn output(mut cmd: Command, limit: Duration) -> Result<(bool, String, String)> {
    let what = format!("{:?}", cmd.get_program());
    let (st, out, err) = crate::proc::run(
        {
            cmd.stdin(Stdio::null());
            cmd
        },
        limit,
    )?;
    match st {
        Some(s) => Ok((s.success(), out, err)),
        None => Err(Error::msg(format!(
            "{what} did not finish within {} s",
            limit.as_secs()
        ))),
    }
}

/// `docker ARGS…`.
pub fn docker(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// Whether an image exists in the engine.
pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `1m52s`, `3.4s`: an elapsed time for a progress line.
pub fn elapsed(since: Instant) -> String {
    let s = since.elapsed().as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// One lab as a compose project.
#[derive(Debug)]
pub struct Project {
    /// The topology.
    pub topo: &'static Topology,
    /// Container and network name prefix.
    pub prefix: String,
    /// Compose project name (`week3`, `nlt123_week3`).
    pub name: String,
    /// The compose file.
    pub file: PathBuf,
    /// The image its containers run.
    pub image: String,
    /// Whether `file` was written for this run (removed at `down`).
    written: bool,
}

impl Project {
    /// The project of `topo` for `prefix` and `image`, with `lab_dir` at `/lab`. The committed
    /// compose file when all are the handout's; otherwise a variant in the temp directory (with
    /// `scratch` mounted at the same path in every container, for a demo's captures and logs).
    pub fn new(
        topo: &'static Topology,
        prefix: &str,
        image: &str,
        lab_dir: &Path,
        scratch: Option<&Path>,
    ) -> Result<Project> {
        let root = workspace_root();
        std::fs::create_dir_all(lab_dir)
            .with_context(|| format!("create {}", lab_dir.display()))?;
        let lab_dir = std::path::absolute(lab_dir).unwrap_or_else(|_| lab_dir.to_path_buf());
        let name = docker_name(&format!("{prefix}{}", topo.name));
        if prefix.is_empty()
            && image == files::IMAGE
            && scratch.is_none()
            && lab_dir == root.join("lab")
        {
            return Ok(Project {
                topo,
                prefix: String::new(),
                name,
                file: root.join(format!("docker/{}.yml", topo.name)),
                image: image.to_owned(),
                written: false,
            });
        }
        let variant = Variant {
            prefix: prefix.to_owned(),
            image: image.to_owned(),
            lab_dir: lab_dir.display().to_string(),
            scratch: scratch.map(Path::to_path_buf),
            build: false,
        };
        let dir = std::env::temp_dir().join("netlab-docker");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let file = dir.join(format!("{name}.yml"));
        std::fs::write(&file, files::compose(topo, &variant))
            .with_context(|| format!("write {}", file.display()))?;
        Ok(Project {
            topo,
            prefix: prefix.to_owned(),
            name,
            file,
            image: image.to_owned(),
            written: true,
        })
    }

    /// The container name of a host or course service (`week3_client`, `nlt1_week3_tcp-tunnel`).
    pub fn container(&self, host: &str) -> String {
        format!("{}{}", self.prefix, self.topo.container(host))
    }

    /// The network names of the project.
    pub fn networks(&self) -> Vec<String> {
        self.topo
            .segments
            .iter()
            .map(|s| format!("{}{}", self.prefix, s.name))
            .collect()
    }

    /// `docker-compose -p NAME -f FILE` with every profile (so `down` and `rm` see them all).
    pub fn compose(&self, all_profiles: bool) -> Command {
        let mut c = compose_cmd();
        c.arg("-p").arg(&self.name).arg("-f").arg(&self.file);
        if all_profiles {
            c.args(["--profile", files::PROFILE_ALL]);
        }
        c
    }

    /// The compose services `up` starts for `services`.
    fn service_names(&self, services: Services) -> Vec<String> {
        let mut v: Vec<String> = self.topo.hosts.iter().map(|h| h.name.to_owned()).collect();
        for c in course_services(self.topo) {
            if services == Services::All || (services == Services::Default && c.default) {
                v.push(c.name.to_owned());
            }
        }
        v
    }

    /// Brings the project up: checks the image and the subnets, clears a leftover of the same
    /// project, starts the containers, waits until each host has set up its network and each
    /// started course service answers. Prints its phases when `verbose`.
    pub fn up(&self, services: Services, verbose: bool) -> Result<()> {
        let t0 = Instant::now();
        if !image_exists(&self.image) {
            return Err(Error::msg(format!(
                "the image {} is not built: cargo xtask images --build{}",
                self.image,
                if self.image == files::IMAGE {
                    String::new()
                } else {
                    format!(" --tag {}", self.image)
                }
            )));
        }
        self.down_quiet();
        conflicts(self)?;
        if let Err(why) = allow_bridged() {
            eprintln!("xtask: warning: {why}");
        }
        let names = self.service_names(services);
        if verbose {
            println!(
                "{}: docker-compose -p {} -f {} up -d {}",
                self.topo.name,
                self.name,
                self.file.display(),
                names.join(" ")
            );
        }
        let mut c = self.compose(true);
        c.args(["up", "-d", "--no-build"]).args(&names);
        let (ok, out, err) = output(c, Duration::from_secs(180))?;
        if !ok {
            let why = format!("{}{}", out.trim(), err.trim());
            self.down_quiet();
            return Err(Error::msg(format!("docker-compose up failed: {why}")));
        }
        let res = self.wait_ready(&names);
        if let Err(e) = res {
            self.down_quiet();
            return Err(e);
        }
        if verbose {
            println!("{}: up in {}", self.topo.name, elapsed(t0));
        }
        Ok(())
    }

    fn wait_ready(&self, names: &[String]) -> Result<()> {
        for h in self.topo.hosts {
            let c = self.container(h.name);
            let end = Instant::now() + READY_WAIT;
            loop {
                let ready = docker(&["exec", &c, "test", "-e", READY_FILE])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ready {
                    break;
                }
                let running = output(
                    docker(&["inspect", "--format", "{{.State.Running}}", &c]),
                    Duration::from_secs(20),
                )
                .is_ok_and(|(ok, out, _)| ok && out.trim() == "true");
                if !running || Instant::now() >= end {
                    let logs = output(
                        docker(&["logs", "--tail", "20", &c]),
                        Duration::from_secs(20),
                    )
                    .map(|(_, o, e)| format!("{o}{e}"))
                    .unwrap_or_default();
                    return Err(Error::msg(format!(
                        "{c} did not set up its network{}: {}",
                        if running { " in time" } else { " (it stopped)" },
                        logs.trim()
                    )));
                }
                if crate::proc::interrupted() {
                    return Err(crate::proc::interrupted_error());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        for s in course_services(self.topo) {
            if !names.iter().any(|n| n == s.name) {
                continue;
            }
            let Some(h) = self.topo.host(s.host) else {
                continue;
            };
            for p in &s.ports {
                let probe = helper(
                    &self.container(s.probe_from),
                    &[
                        "__probe".into(),
                        h.ipv4().to_string(),
                        p.to_string(),
                        "30".into(),
                    ],
                );
                let (ok, _, err) = output(probe, Duration::from_secs(40))?;
                if !ok {
                    return Err(Error::msg(format!(
                        "{} on {} does not answer on port {p}: {}",
                        s.name,
                        self.container(s.host),
                        err.trim()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Removes every container and network of the project (idempotent); the compose file if
    /// this run wrote it. Returns what compose said when it failed.
    pub fn down(&self) -> Result<()> {
        let mut c = self.compose(true);
        c.args(["down", "--remove-orphans", "-t", "2"]);
        let (ok, out, err) = output(c, Duration::from_secs(120))?;
        if ok {
            Ok(())
        } else {
            Err(Error::msg(format!("{}{}", out.trim(), err.trim())))
        }
    }

    fn down_quiet(&self) {
        let _ = self.down();
    }

    /// The containers of the project that exist, with their status.
    pub fn containers(&self) -> Vec<(String, String)> {
        let label = format!("label=com.docker.compose.project={}", self.name);
        output(
            docker(&[
                "ps",
                "-a",
                "--filter",
                &label,
                "--format",
                "{{.Names}}\t{{.Status}}",
            ]),
            Duration::from_secs(20),
        )
        .map(|(_, out, _)| {
            out.lines()
                .filter_map(|l| l.split_once('\t'))
                .map(|(n, s)| (n.to_owned(), s.to_owned()))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Removes the compose file this run wrote.
    pub fn forget_file(&self) {
        if self.written {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// The firewall rule that lets a lab segment's frames be bridged between its containers.
fn bridged_rule() -> Vec<String> {
    [
        "-i",
        &format!("{}+", files::BRIDGE_PREFIX),
        "-m",
        "physdev",
        "--physdev-is-bridged",
        "-m",
        "comment",
        "--comment",
        "netlab: frames bridged within a lab segment",
        "-j",
        "ACCEPT",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The command a person runs to let the labs' broadcast and multicast through by hand.
pub fn allow_bridged_by_hand() -> String {
    format!("sudo iptables -I DOCKER-USER {}", {
        let mut r = bridged_rule();
        // Quote the comment for a shell.
        if let Some(c) = r.iter_mut().find(|a| a.contains(' ')) {
            *c = format!("'{c}'");
        }
        r.join(" ")
    })
}

/// Lets the frames of every lab segment (bridges `nlb*`) be bridged between its containers.
///
/// For an internal network Docker drops every packet whose destination lies outside the subnet
/// (moby/libnetwork#2260), and with br_netfilter (bridge-nf-call-iptables=1, which dockerd
/// sets) that includes frames bridged between two containers of one segment: broadcast to
/// 255.255.255.255, multicast, and the packets the week-3 router forwards. One rule in
/// DOCKER-USER (the chain Docker leaves to its users, evaluated first; dockerd never flushes it)
/// accepts frames that are bridged, not routed (`--physdev-is-bridged`), on the lab bridges
/// only: nothing is routed through the host, so the networks stay internal. Idempotent; the rule
/// stays (it matches nothing while no lab is up).
pub fn allow_bridged() -> Result<()> {
    let rule = bridged_rule();
    let mut done = false;
    for tool in ["iptables", "ip6tables"] {
        let chain_exists = Command::new(tool)
            .args(["-S", "DOCKER-USER"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !chain_exists {
            continue;
        }
        let present = Command::new(tool)
            .args(["-C", "DOCKER-USER"])
            .args(&rule)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if present {
            done |= tool == "iptables";
            continue;
        }
        let out = Command::new(tool)
            .args(["-I", "DOCKER-USER"])
            .args(&rule)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {tool}"))?;
        if !out.status.success() {
            return Err(Error::msg(format!(
                "{tool} -I DOCKER-USER failed ({}): broadcast and multicast between the lab's containers need `{}`",
                String::from_utf8_lossy(&out.stderr).trim(),
                allow_bridged_by_hand()
            )));
        }
        done |= tool == "iptables";
    }
    if done {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "no DOCKER-USER chain in iptables (is dockerd running with its iptables rules?): if broadcast or multicast between containers fails, run `{}`",
            allow_bridged_by_hand()
        )))
    }
}

/// A network's name and subnets, as `docker network inspect` gives them.
fn networks() -> Result<Vec<(String, Vec<String>)>> {
    let (ok, out, err) = output(
        docker(&["network", "ls", "--format", "{{.Name}}"]),
        Duration::from_secs(20),
    )?;
    if !ok {
        return Err(Error::msg(format!("docker network ls: {}", err.trim())));
    }
    let names: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = docker(&[
        "network",
        "inspect",
        "--format",
        "{{.Name}}{{range .IPAM.Config}} {{.Subnet}}{{end}}",
    ]);
    c.args(&names);
    // A network removed between the two commands makes inspect fail for it only; keep the rest.
    let (_, out, _) = output(c, Duration::from_secs(20))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?.to_owned();
            Some((name, w.map(str::to_owned).collect()))
        })
        .collect())
}

/// `a.b.c.d/len` (or IPv6) as (address, prefix length).
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/')?;
    Some((a.parse().ok()?, l.parse().ok()?))
}

/// Whether two subnets share an address.
pub fn overlap(a: &str, b: &str) -> bool {
    let (Some((x, lx)), Some((y, ly))) = (parse_cidr(a), parse_cidr(b)) else {
        return false;
    };
    let len = lx.min(ly);
    match (x, y) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(x) & mask == u32::from(y) & mask
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(x) & mask == u128::from(y) & mask
        }
        _ => false,
    }
}

/// The subnets of a topology (IPv4 and IPv6) by network name.
fn subnets(p: &Project) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (seg, name) in p.topo.segments.iter().zip(p.networks()) {
        v.push((name.clone(), seg.cidr4()));
        if let Some((net, len)) = seg.subnet6 {
            v.push((name, format!("{net}/{len}")));
        }
    }
    v
}

/// Fails with the name of a Docker network of another lab that holds one of our subnets.
fn conflicts(p: &Project) -> Result<()> {
    let ours = p.networks();
    for (name, nets) in networks()? {
        if ours.contains(&name) {
            continue;
        }
        for (mine, sub) in subnets(p) {
            if let Some(n) = nets.iter().find(|n| overlap(n, &sub)) {
                return Err(Error::msg(format!(
                    "{sub} (for {mine}) is taken by the Docker network '{name}' ({n}): another lab is up \
                     (`cargo xtask lab down {} --docker`, with that lab's --prefix), or remove it: docker network rm {name}",
                    p.topo.name
                )));
            }
        }
    }
    Ok(())
}

/// A machine-wide lock: a file holding the owner's PID, created exclusively, removed when
/// dropped. A lock whose owner is gone (a crash, a kill) is taken over.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
}

impl PidLock {
    /// Takes the lock named `name` under /run/netlab (or the temp directory), waiting up to
    /// `wait` for its holder; `say` is told once that we wait.
    pub fn acquire(name: &str, wait: Duration, say: impl Fn(&str)) -> Result<PidLock> {
        let dir = Path::new("/run/netlab");
        let dir = if std::fs::create_dir_all(dir).is_ok() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("{name}.lock"));
        let me = std::process::id().to_string();
        let end = Instant::now() + wait;
        let mut said = false;
        loop {
            match File::options().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    use std::io::Write as _;
                    f.write_all(me.as_bytes())
                        .with_context(|| format!("write {}", path.display()))?;
                    return Ok(PidLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::msg(format!("create {}: {e}", path.display()))),
            }
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            // An empty file is a lock being written this instant, unless it has been empty for
            // a while (a process killed between creating and writing it).
            let stale_empty = holder.is_empty()
                && std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > Duration::from_secs(5)));
            let gone = !holder.is_empty() && !Path::new("/proc").join(holder).exists();
            if stale_empty || gone {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !said {
                say(&format!(
                    "(waiting for process {holder}, which holds {})",
                    path.display()
                ));
                said = true;
            }
            if crate::proc::interrupted() {
                return Err(crate::proc::interrupted_error());
            }
            if Instant::now() >= end {
                return Err(Error::msg(format!(
                    "process {holder} still holds {} after {} s",
                    path.display(),
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let mine = std::fs::read_to_string(&self.path)
            .is_ok_and(|s| s.trim() == std::process::id().to_string());
        if mine {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Takes the machine-wide lock of a topology's Docker lab (its subnets), waiting for another
/// run that holds it.
pub fn lock(topo: &Topology, say: impl Fn(&str)) -> Result<PidLock> {
    PidLock::acquire(&format!("docker-{}", topo.name), LOCK_WAIT, |m| {
        say(&format!(
            "(another run has a Docker {} lab up) {m}",
            topo.name
        ));
    })
}

/// A lab a demo brought up for itself: locked, up with no course service (the demo starts its
/// own), and removed with everything in it when dropped.
#[derive(Debug)]
pub struct Lab {
    /// The compose project.
    pub project: Project,
    _lock: PidLock,
}

impl Lab {
    /// Brings `topo` up for a demo (names prefixed with `opts.prefix`), with `scratch` mounted
    /// at the same path in every container.
    pub fn for_demo(
        topo: &'static Topology,
        opts: &Opts,
        image: &str,
        scratch: &Path,
        say: impl Fn(&str),
    ) -> Result<Lab> {
        let lock = lock(topo, say)?;
        let lab_dir = opts.shared_dir();
        let project = Project::new(topo, &opts.prefix, image, &lab_dir, Some(scratch))?;
        if let Err(e) = project.up(Services::None, false) {
            project.forget_file();
            return Err(e);
        }
        Ok(Lab {
            project,
            _lock: lock,
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.project.down() {
            eprintln!(
                "xtask: docker-compose down of {} failed: {e}",
                self.project.name
            );
        }
        self.project.forget_file();
    }
}

/// `docker exec -i CONTAINER PROG ARGS…`.
pub fn exec<S: AsRef<std::ffi::OsStr>>(container: &str, prog: &str, args: &[S]) -> Command {
    let mut c = Command::new("docker");
    c.args(["exec", "-i", container, prog]).args(args);
    c
}

/// `docker exec -it` for a person at a terminal, `-i` otherwise.
pub fn exec_interactive(container: &str, cmd: &[String]) -> Command {
    let mut c = Command::new("docker");
    c.arg("exec");
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        c.arg("-it");
    } else {
        c.arg("-i");
    }
    c.arg(container).args(cmd);
    c
}

static SPAWNED: AtomicU32 = AtomicU32::new(0);

/// Where a background program started by [`spawn_cmd`] keeps its PID inside the container.
const PID_DIR: &str = "/run/netlab-bg";

/// A background program in a container: `docker exec` running a shell that writes its PID and
/// then becomes the program. Returns the command and a function that signals the program inside
/// the container (`INT`, `KILL`).
pub fn spawn_cmd(
    container: &str,
    prog: &str,
    args: &[String],
) -> (Command, impl Fn(&str) + Send + 'static) {
    let id = format!(
        "{}-{}",
        std::process::id(),
        SPAWNED.fetch_add(1, Ordering::Relaxed)
    );
    let pidfile = format!("{PID_DIR}/{id}");
    let mut c = Command::new("docker");
    c.args(["exec", "-i", container, "sh", "-c"])
        .arg(format!(
            "mkdir -p {PID_DIR} && echo $$ > {pidfile} && exec \"$@\""
        ))
        .arg("netlab")
        .arg(prog)
        .args(args);
    let container = container.to_owned();
    let signal = move |sig: &str| {
        // The PID file appears a moment after `docker exec` started: wait for it (bounded).
        let script = format!(
            "for i in $(seq 50); do [ -s {pidfile} ] && break; sleep 0.1; done; \
             p=$(cat {pidfile} 2>/dev/null) && kill -{sig} \"$p\" 2>/dev/null; rm -f {pidfile}; true"
        );
        let _ = output(
            docker(&["exec", &container, "sh", "-c", &script]),
            Duration::from_secs(15),
        );
    };
    (c, signal)
}

/// xtask's helpers (`__probe ADDR PORT SECONDS`, `__nc HOST PORT MESSAGE`) inside a container,
/// done with the image's netcat: the container has no xtask binary.
pub fn helper(container: &str, args: &[String]) -> Command {
    let mut c = Command::new("docker");
    c.args(["exec", "-i", container, "sh", "-c"]);
    match args {
        [probe, addr, port, secs] if probe == "__probe" => {
            let secs = secs.parse::<f64>().map_or(10, |s| s.ceil().max(1.0) as u64);
            c.arg(
                "end=$(( $(date +%s) + $3 )); \
                 until nc -z -w 1 \"$1\" \"$2\" 2>/dev/null; do \
                   if [ \"$(date +%s)\" -ge \"$end\" ]; then echo \"connect to $1 port $2: no answer\" >&2; exit 1; fi; \
                   sleep 0.1; \
                 done",
            )
            .args(["netlab", addr, port, &secs.to_string()]);
        }
        [nc, host, port, msg] if nc == "__nc" => {
            // What `echo MESSAGE | nc -N HOST PORT` does: send the line, close the sending side,
            // print everything until the server closes.
            c.arg("printf '%s\\n' \"$3\" | nc -N -w 10 \"$1\" \"$2\"")
                .args(["netlab", host, port, msg]);
        }
        other => {
            c.arg("echo \"no such helper: $*\" >&2; exit 2")
                .arg("netlab")
                .args(other);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_compares_the_shorter_prefix() {
        assert!(overlap("172.20.0.0/24", "172.20.0.0/24"));
        assert!(overlap("172.20.0.0/16", "172.20.5.0/24"));
        assert!(overlap("172.20.5.0/24", "172.20.0.0/16"));
        assert!(!overlap("172.20.0.0/24", "172.21.0.0/24"));
        assert!(overlap("fd30::/64", "fd30::/48"));
        assert!(!overlap("fd30::/64", "fd00::/64"));
        assert!(!overlap("fd30::/64", "172.20.0.0/24"));
        assert!(!overlap("garbage", "172.20.0.0/24"));
    }

    #[test]
    fn names_docker_accepts() {
        assert_eq!(docker_name("NLT123x_Week3"), "nlt123x_week3");
        assert_eq!(docker_name("h1.:_"), "h1_");
        assert_eq!(default_image(""), "netlab:latest");
        assert_eq!(default_image("H1_"), "h1_netlab:latest");
    }

    #[test]
    fn helpers_become_netcat_in_the_container() {
        let c = helper(
            "week3_client",
            &["__nc".into(), "router".into(), "9090".into(), "hi".into()],
        );
        let a: Vec<String> = c
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&a[..3], ["exec", "-i", "week3_client"]);
        assert!(a[5].contains("nc -N"));
        assert_eq!(&a[6..], ["netlab", "router", "9090", "hi"]);
        let p = helper(
            "c",
            &[
                "__probe".into(),
                "1.2.3.4".into(),
                "80".into(),
                "2.5".into(),
            ],
        );
        let a: Vec<String> = p
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(a.last().map(String::as_str), Some("3"));
    }
}
