//! Where a demo runs: the lab topology in network namespaces (root), in Docker containers
//! (`--docker`), or the loopback variant (no permission to create namespaces). The demos are
//! written once against [`Site`]: it says how to run a program "on host X", which address X has,
//! and ends everything it started. Also the lookups every lab command shares: a host by name, the
//! topologies a `week3|chat|tp3|all` argument names.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use labnet::error::Context as _;
use labnet::netns::{self, Testbed};
use labnet::topo::{self, Host, Topology};
use labnet::{Error, Result};

use super::docker;
use crate::opts::{Opts, path_with};
use crate::proc::Bg;

/// How the hosts of a site exist.
pub enum Mode {
    /// One network namespace per host.
    Netns(Testbed),
    /// Every host is this machine, on a loopback address of its own.
    Loopback,
    /// One Docker container per host (a compose project of its own).
    Docker(docker::Lab),
}

/// A topology brought up for a demo.
pub struct Site {
    /// The topology.
    pub topo: &'static Topology,
    /// Namespaces or loopback.
    pub mode: Mode,
    /// Directory of the lab binaries.
    pub bins: PathBuf,
    /// Scratch directory for captures, logs and certificates (removed at teardown).
    pub dir: PathBuf,
    services: Vec<Bg>,
    own_dir: bool,
}

impl Site {
    /// Brings `topo` up in namespaces when this process may create them, else the loopback
    /// variant. Returns the reason namespaces are not used, if they are not.
    pub fn up(topo: &'static Topology, opts: &Opts, bins: &Path) -> Result<(Site, Option<String>)> {
        let why_not = if opts.loopback {
            Some("--loopback was given".to_owned())
        } else {
            netns::netns_available().err()
        };
        let dir = std::env::temp_dir().join(format!(
            "netlab-{}{}-{}",
            opts.prefix,
            topo.name,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        if let Some(image) = &opts.docker {
            let say = |m: &str| println!("{m}");
            let lab = docker::Lab::for_demo(topo, opts, image, &dir, say).inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&dir);
            })?;
            let site = Site {
                topo,
                mode: Mode::Docker(lab),
                bins: bins.to_path_buf(),
                dir,
                services: Vec::new(),
                own_dir: true,
            };
            return Ok((site, None));
        }
        let mode = match why_not {
            None => {
                // A leftover of a crashed run (or a standing `lab up`) with the same names would be
                // swept by Testbed::up; the namespaces are ours from here on.
                let bed = Testbed::up(topo, &opts.prefix)
                    .with_context(|| format!("build the {} topology", topo.name))?;
                Mode::Netns(bed)
            }
            Some(_) => Mode::Loopback,
        };
        Ok((
            Site {
                topo,
                mode,
                bins: bins.to_path_buf(),
                dir,
                services: Vec::new(),
                own_dir: true,
            },
            why_not,
        ))
    }

    /// A standing lab (`lab up`): the kept testbed, nothing removed when this value drops.
    pub fn standing(topo: &'static Topology, bed: Testbed, bins: &Path) -> Site {
        Site {
            topo,
            mode: Mode::Netns(bed),
            bins: bins.to_path_buf(),
            dir: PathBuf::new(),
            services: Vec::new(),
            own_dir: false,
        }
    }

    /// Names and addresses only (for `lab status`): starts and removes nothing.
    pub fn names_only(topo: &'static Topology) -> Site {
        Site {
            topo,
            mode: Mode::Loopback,
            bins: PathBuf::new(),
            dir: PathBuf::new(),
            services: Vec::new(),
            own_dir: false,
        }
    }

    /// True on a real multi-host topology: namespaces or Docker containers.
    pub fn netns(&self) -> bool {
        matches!(self.mode, Mode::Netns(_) | Mode::Docker(_))
    }

    /// The testbed, in the namespace backend.
    pub fn bed(&self) -> Option<&Testbed> {
        match &self.mode {
            Mode::Netns(b) => Some(b),
            Mode::Loopback | Mode::Docker(_) => None,
        }
    }

    /// The name printed before a command: `week3_client` (or `local` on loopback).
    pub fn display(&self, host: &str) -> String {
        match self.mode {
            Mode::Netns(_) | Mode::Docker(_) => self.topo.container(host),
            Mode::Loopback => "local".to_owned(),
        }
    }

    /// The IPv4 address of a host: the lab's, or `127.0.0.<last octet>` on loopback.
    pub fn addr(&self, host: &str) -> Ipv4Addr {
        let a = self
            .topo
            .host(host)
            .map_or(Ipv4Addr::LOCALHOST, |h| h.ipv4());
        match self.mode {
            Mode::Netns(_) | Mode::Docker(_) => a,
            Mode::Loopback => Ipv4Addr::new(127, 0, 0, a.octets()[3]),
        }
    }

    /// The name a student types for a host (`server`), or its loopback address.
    pub fn name(&self, host: &str) -> String {
        match self.mode {
            Mode::Netns(_) | Mode::Docker(_) => host.to_owned(),
            Mode::Loopback => self.addr(host).to_string(),
        }
    }

    /// The path of a lab binary, or why it is missing.
    pub fn bin(&self, prog: &str) -> Result<PathBuf> {
        if let Mode::Docker(_) = self.mode {
            // The image carries every lab binary (`images --build` checked each one).
            return Ok(Path::new("/usr/local/bin").join(prog));
        }
        let p = self.bins.join(prog);
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::msg(format!(
                "binary {prog} is not built in {} (cargo build --release --bins)",
                self.bins.display()
            )))
        }
    }

    /// A command running `prog args…` on `host` with the lab binaries on the PATH.
    pub fn cmd<S: AsRef<std::ffi::OsStr>>(&self, host: &str, prog: &str, args: &[S]) -> Command {
        match &self.mode {
            Mode::Netns(bed) => {
                let mut c = bed.command(host, prog);
                c.env("PATH", netns::lab_path(&[&self.bins])).args(args);
                c
            }
            Mode::Loopback => {
                let mut c = Command::new(prog);
                c.env("PATH", path_with(&self.bins)).args(args);
                c
            }
            Mode::Docker(lab) => docker::exec(&lab.project.container(host), prog, args),
        }
    }

    /// In Docker, a background program that signals reach inside its container.
    fn docker_bg(
        &self,
        host: &str,
        prog: &str,
        args: &[String],
        stdin: bool,
    ) -> Option<Result<Bg>> {
        let Mode::Docker(lab) = &self.mode else {
            return None;
        };
        let (cmd, signal) = docker::spawn_cmd(&lab.project.container(host), prog, args);
        Some(Bg::start(cmd, stdin).map(|bg| bg.signal_via(signal)))
    }

    /// Starts `prog args…` on `host` with captured output.
    pub fn spawn(&self, host: &str, prog: &str, args: &[String]) -> Result<Bg> {
        if let Some(bg) = self.docker_bg(host, prog, args, false) {
            return bg;
        }
        self.bin(prog).or_else(|e| {
            if crate::proc::have(prog) {
                Ok(PathBuf::new())
            } else {
                Err(e)
            }
        })?;
        Bg::start(self.cmd(host, prog, args), false)
    }

    /// Like [`Site::spawn`] with a writable stdin.
    pub fn spawn_stdin(&self, host: &str, prog: &str, args: &[String]) -> Result<Bg> {
        if let Some(bg) = self.docker_bg(host, prog, args, true) {
            return bg;
        }
        self.bin(prog)?;
        Bg::start(self.cmd(host, prog, args), true)
    }

    /// Runs `prog args…` on `host` to completion (ended after `limit`).
    pub fn run(
        &self,
        host: &str,
        prog: &str,
        args: &[String],
        limit: Duration,
    ) -> Result<(Option<std::process::ExitStatus>, String, String)> {
        let mut bg = self.spawn(host, prog, args)?;
        let st = bg.finish(limit)?;
        Ok((st, bg.stdout(), bg.stderr()))
    }

    /// Keeps a background service until teardown.
    pub fn keep(&mut self, bg: Bg) {
        self.services.push(bg);
    }

    /// Runs xtask's own helper (`__probe`, `__nc`) on `host`.
    pub fn helper(&self, host: &str, args: &[String]) -> Command {
        let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
        let mut full = vec![me.into_os_string()];
        full.extend(args.iter().map(OsString::from));
        match &self.mode {
            Mode::Netns(bed) => {
                let mut c = bed.command(host, &full[0]);
                c.args(&full[1..]);
                c
            }
            Mode::Loopback => {
                let mut c = Command::new(&full[0]);
                c.args(&full[1..]);
                c
            }
            // The container has no xtask: the image's netcat does the same.
            Mode::Docker(lab) => docker::helper(&lab.project.container(host), args),
        }
    }

    /// Waits until `n` UDP sockets are bound to `port` on `host` (`ss -uln`): a receiver is ready
    /// once its socket exists, whatever it prints.
    pub fn await_udp(&self, host: &str, port: u16, n: usize, limit: Duration) -> Result<()> {
        let filter = format!("sport = :{port}");
        self.poll(limit, || {
            let (_, out, _) = crate::proc::run(
                self.cmd(host, "ss", &["-H", "-u", "-l", "-n", filter.as_str()]),
                Duration::from_secs(5),
            )
            .ok()?;
            (out.lines().filter(|l| !l.trim().is_empty()).count() >= n).then_some(())
        })
        .with_context(|| format!("no UDP receiver on {} port {port}", self.display(host)))
    }

    /// Waits until a TCP socket listens on `port` on `host` (`ss -tln`), without connecting to
    /// it: for servers that print every connection, a probe would show up in their output.
    pub fn await_listen(&self, host: &str, port: u16, limit: Duration) -> Result<()> {
        let filter = format!("sport = :{port}");
        self.poll(limit, || {
            let (_, out, _) = crate::proc::run(
                self.cmd(host, "ss", &["-H", "-t", "-l", "-n", filter.as_str()]),
                Duration::from_secs(5),
            )
            .ok()?;
            out.lines().any(|l| !l.trim().is_empty()).then_some(())
        })
        .with_context(|| format!("nothing listens on {} port {port}", self.display(host)))
    }

    /// Waits until `host` has joined `group` on `dev` (`ip maddr`): the IGMP report has gone out.
    pub fn await_group(&self, host: &str, dev: &str, group: IpAddr, limit: Duration) -> Result<()> {
        let want = group.to_string();
        self.poll(limit, || {
            let (_, out, _) = crate::proc::run(
                self.cmd(host, "ip", &["maddr", "show", "dev", dev]),
                Duration::from_secs(5),
            )
            .ok()?;
            out.split_whitespace().any(|w| w == want).then_some(())
        })
        .with_context(|| format!("{} did not join {group}", self.display(host)))
    }

    fn poll(&self, limit: Duration, mut f: impl FnMut() -> Option<()>) -> Result<()> {
        let end = std::time::Instant::now() + limit;
        loop {
            if f().is_some() {
                return Ok(());
            }
            if crate::proc::interrupted() {
                return Err(crate::proc::interrupted_error());
            }
            if std::time::Instant::now() >= end {
                return Err(Error::msg(format!("not after {} s", limit.as_secs_f32())));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Waits until a TCP service on `host` accepts a connection from `from` (readiness by asking
    /// the service, never a fixed sleep).
    pub fn await_tcp(&self, from: &str, to_addr: IpAddr, port: u16, limit: Duration) -> Result<()> {
        let args = vec![
            "__probe".to_owned(),
            to_addr.to_string(),
            port.to_string(),
            format!("{}", limit.as_secs_f64()),
        ];
        let (st, _, err) =
            crate::proc::run(self.helper(from, &args), limit + Duration::from_secs(2))?;
        match st {
            Some(s) if s.success() => Ok(()),
            _ => Err(Error::msg(format!(
                "{to_addr}:{port} does not answer: {}",
                err.trim()
            ))),
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for mut s in self.services.drain(..) {
            s.kill();
        }
        // The testbed's own Drop ends every process in its namespaces and removes them.
        if self.own_dir && std::env::var_os("NETLAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A host by short (`client`) or container (`week3_client`) name.
pub fn resolve_host(name: &str) -> Result<(&'static Topology, &'static Host)> {
    topo::find_host(name).ok_or_else(|| {
        let all: Vec<&str> = topo::ALL
            .iter()
            .flat_map(|t| t.hosts.iter().map(|h| h.name))
            .collect();
        Error::usage(format!("unknown host '{name}': one of {}", all.join(", ")))
    })
}

/// The topologies named by `week3|chat|tp3|all`.
pub fn topologies(which: &str) -> Result<Vec<&'static Topology>> {
    if which == "all" {
        return Ok(topo::ALL.to_vec());
    }
    Topology::by_name(which)
        .map(|t| vec![t])
        .ok_or_else(|| Error::usage(format!("unknown lab '{which}': week3, chat, tp3 or all")))
}
