//! `cargo xtask lab up|down|status|exec|service`: the three lab topologies as named network
//! namespaces (visible to `ip netns`), with the standing services of each lab.
//!
//! `up` builds the namespaces with [`labnet::netns::Testbed`] (kept after xtask exits), builds
//! the lab binaries once in release mode, and starts the services detached, each with a PID file
//! and a log under `/run/netlab/<ns>/`, waiting until each one answers. `down` ends exactly those
//! PIDs, then removes the namespaces (which ends anything else still inside them), their hosts
//! files and runtime directories; it is idempotent and also sweeps what a crashed run left.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use labnet::error::Context as _;
use labnet::netns::{self, Testbed};
use labnet::topo::{self, Topology};
use labnet::{Error, Result};

use super::services::{Services, no_such_service};
use super::site::{Mode, Site, resolve_host};
use crate::opts::{self, Opts};

/// Where the runtime files of a namespace live.
pub fn run_dir(ns: &str) -> PathBuf {
    Path::new("/run/netlab").join(ns)
}

/// True when the namespace exists.
pub fn is_up(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

/// A standing service of a lab.
pub struct Service {
    /// Host it runs on.
    pub host: &'static str,
    /// Short name for its PID and log files.
    pub name: &'static str,
    /// Program.
    pub prog: &'static str,
    /// Arguments.
    pub args: Vec<String>,
    /// TCP ports that answer once it is ready (probed from `probe_from`).
    pub ports: Vec<u16>,
    /// Host the readiness probe connects from.
    pub probe_from: &'static str,
    /// Started by `lab up` unless `--services none` (a course service); otherwise only with
    /// `--services all` or `lab service start HOST`.
    pub default: bool,
}

impl Service {
    /// Whether `lab up --services which` starts it.
    pub fn wanted(&self, which: Services) -> bool {
        match which {
            Services::None => false,
            Services::Default => self.default,
            Services::All => true,
        }
    }
}

/// The standing services of a topology (the course servers each lab runs). `dir` holds logs such as the
/// tunnel's log file and the TV recording.
pub fn services(site: &Site, dir_of: impl Fn(&str) -> PathBuf) -> Vec<Service> {
    match site.topo.name {
        "week3" => vec![
            Service {
                host: "server",
                name: "echo-server",
                prog: "echo-server",
                args: vec!["--port".into(), topo::ECHO_PORT.to_string()],
                ports: vec![topo::ECHO_PORT],
                probe_from: "client",
                default: true,
            },
            Service {
                host: "router",
                name: "tcp-tunnel",
                prog: "tcp-tunnel",
                args: vec![
                    "-L".into(),
                    format!(
                        "0.0.0.0:{}={}:{}",
                        topo::TUNNEL_PORT,
                        site.name("server"),
                        topo::ECHO_PORT
                    ),
                    "--log".into(),
                    dir_of("router").join("tunnel.log").display().to_string(),
                ],
                ports: vec![topo::TUNNEL_PORT],
                probe_from: "client",
                default: true,
            },
        ],
        "chat" => vec![Service {
            host: "webserver",
            name: "chat-server",
            prog: "chat-server",
            args: vec!["--port".into(), topo::CHAT_PORT.to_string()],
            ports: vec![topo::CHAT_PORT],
            probe_from: "client1",
            // The chat lab is about the student's own server: webserver:5000 stays free.
            default: false,
        }],
        "tp3" => vec![Service {
            host: "tcpip",
            name: "lab-server",
            prog: "lab-server",
            args: vec![
                // The handout's server answers resets "either in IPv4 or IPv6 depending on the
                // time of day": one family at a time, switching every 20 s.
                "--family".into(),
                "alternate".into(),
                "--period".into(),
                "20".into(),
                "--iface".into(),
                site.addr("tcpip").to_string(),
                "--record".into(),
                dir_of("tcpip").join("tv.jsonl").display().to_string(),
            ],
            ports: vec![topo::PMU_PORT, topo::WS_PORT],
            probe_from: "student1",
            default: true,
        }],
        _ => Vec::new(),
    }
}

fn root_needed() -> Result<(), Error> {
    netns::netns_available().map_err(|why| {
        Error::msg(format!(
            "{why}; `lab` needs root (sudo -E cargo xtask lab …), or use `cargo xtask demo`, which falls back to loopback"
        ))
    })
}

/// Where the shared folder appears inside every host, as in the compose files.
pub const SHARED_AT: &str = "/lab";

/// Brings the topologies up with the services `which` selects.
pub fn up(topos: &[&'static Topology], which: Services, opts: &Opts) -> Result<(), Error> {
    root_needed()?;
    let bins = opts::binaries(opts)?;
    for t in topos {
        // Idempotent: a previous `up` (or a crash) is cleared first.
        down(&[*t], &opts.prefix, false);
        let bed = Testbed::up(t, &opts.prefix)
            .with_context(|| format!("build the {} topology", t.name))?
            .keep();
        let site = Site::standing(t, bed, &bins);
        let res = start_standing(&site, which, &opts.shared_dir());
        if let Err(e) = res {
            drop(site);
            down(&[*t], &opts.prefix, false);
            return Err(e.within(t.name));
        }
        println!("{} is up:", t.name);
        print_hosts(&site, &opts.prefix, which);
    }
    println!(
        "\nyour files: {} is {SHARED_AT} in every host",
        opts.shared_dir().display()
    );
    println!(
        "run a program on a host: cargo xtask lab exec client -- udp-broadcast recv --port 5007"
    );
    println!("start or stop a service: cargo xtask lab service start|stop HOST");
    println!("tear it down:            cargo xtask lab down");
    Ok(())
}

fn start_standing(site: &Site, which: Services, shared: &Path) -> Result<()> {
    let Mode::Netns(bed) = &site.mode else {
        return Err(Error::msg("not a namespace lab"));
    };
    bed.share_dir(shared, Path::new(SHARED_AT))
        .with_context(|| format!("share {} at {SHARED_AT}", shared.display()))?;
    if site.topo.name == "week3" {
        crate::packages::ensure(&["smcroute"], false)?;
        bed.enable_mroute(IpAddr::V4(topo::WEEK3_GROUP))
            .context("multicast route on the router")?;
    }
    for s in services(site, |host| run_dir(&bed.ns(host))) {
        if s.wanted(which) {
            start_service(site, &s)?;
        }
    }
    Ok(())
}

/// Starts one service detached (its own process group, PID file and log under the host's run
/// directory) and waits until it answers.
fn start_service(site: &Site, s: &Service) -> Result<()> {
    let Mode::Netns(bed) = &site.mode else {
        return Err(Error::msg("not a namespace lab"));
    };
    {
        let ns = bed.ns(s.host);
        let dir = run_dir(&ns);
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let log = fs::File::create(dir.join(format!("{}.log", s.name)))
            .with_context(|| format!("create the log of {}", s.name))?;
        let log2 = log.try_clone().context("duplicate the log file")?;
        site.bin(s.prog)?;
        let mut cmd = site.cmd(s.host, s.prog, &s.args);
        // Its own process group: Ctrl-C in this terminal later must not end the lab's services.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .with_context(|| format!("start {}", s.prog))?;
        fs::write(
            dir.join(format!("{}.pid", s.name)),
            format!("{}\n", child.id()),
        )
        .with_context(|| format!("write the PID file of {}", s.name))?;
        for port in &s.ports {
            site.await_tcp(
                s.probe_from,
                IpAddr::V4(site.addr(s.host)),
                *port,
                Duration::from_secs(15),
            )
            .with_context(|| format!("{} on {}", s.prog, site.display(s.host)))?;
        }
    }
    Ok(())
}

/// `lab service start|stop HOST [SERVICE]`: takes or frees the ports of a host's services, so a
/// student's own server (a homework tunnel on router:9090, chatserver.py on webserver:5000) can
/// run where the course's would.
pub fn service(rest: &[String], opts: &Opts) -> Result<(), Error> {
    let (verb, host, name) = match rest {
        [v, h] => (v.as_str(), h.as_str(), None),
        [v, h, n] => (v.as_str(), h.as_str(), Some(n.as_str())),
        _ => {
            return Err(Error::usage(
                "lab service needs start|stop HOST [SERVICE]: lab service stop router",
            ));
        }
    };
    if verb != "start" && verb != "stop" {
        return Err(Error::usage(format!(
            "unknown lab service command '{verb}': start or stop"
        )));
    }
    let (t, h) = resolve_host(host)?;
    let ns = format!("{}{}", opts.prefix, t.container(h.name));
    if !is_up(&ns) {
        return Err(Error::msg(format!(
            "{ns} is not up: run `cargo xtask lab up {}` first",
            t.name
        )));
    }
    let names = Site::names_only(t);
    let all = services(&names, |_| PathBuf::new());
    let mine: Vec<&Service> = all
        .iter()
        .filter(|s| s.host == h.name && name.is_none_or(|n| n == s.name || n == s.prog))
        .collect();
    if mine.is_empty() {
        let offered = all.iter().map(|s| (s.name, s.host));
        return Err(no_such_service(name, h.name, t.name, offered));
    }
    let dir = run_dir(&ns);
    if verb == "stop" {
        for s in mine {
            let pidfile = dir.join(format!("{}.pid", s.name));
            match pid_alive(&ns, s.name) {
                Some(pid) => {
                    kill_pidfile(&pidfile);
                    let _ = fs::remove_file(&pidfile);
                    println!("stopped {} on {ns} (pid {pid}): its ports are free", s.name);
                }
                None => println!("{} on {ns} was not running", s.name),
            }
        }
        return Ok(());
    }
    root_needed()?;
    let bins = opts::binaries(opts)?;
    let bed = Testbed::attach(t, &opts.prefix);
    let site = Site::standing(t, bed, &bins);
    let host_dir = |host: &str| run_dir(&format!("{}{}", opts.prefix, t.container(host)));
    for s in services(&site, host_dir)
        .iter()
        .filter(|s| mine.iter().any(|m| m.name == s.name))
    {
        if let Some(pid) = pid_alive(&ns, s.name) {
            println!("{} on {ns} already runs (pid {pid})", s.name);
            continue;
        }
        start_service(&site, s)?;
        println!(
            "started {} on {ns} (pid {}): {}",
            s.name,
            pid_alive(&ns, s.name).map_or("?".to_owned(), |p| p.to_string()),
            s.ports
                .iter()
                .map(|p| format!(":{p}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

fn print_hosts(site: &Site, prefix: &str, which: Services) {
    let all = services(site, |_| PathBuf::new());
    for h in site.topo.hosts {
        let mut runs: Vec<String> = Vec::new();
        for s in all.iter().filter(|s| s.host == h.name) {
            let ports: Vec<String> = s.ports.iter().map(|p| format!(":{p}")).collect();
            if s.wanted(which) {
                runs.push(format!("{} {}", s.name, ports.join(" ")));
            } else {
                runs.push(format!(
                    "{} free (lab service start {})",
                    ports.join(" "),
                    h.name
                ));
            }
        }
        if h.forwards {
            runs.push("forwards, multicast route for 239.1.1.1".to_owned());
        }
        if runs.is_empty() {
            runs.push("interactive".to_owned());
        }
        let addrs: Vec<String> = h
            .links
            .iter()
            .map(|l| match l.ipv6 {
                Some(v6) => format!("{} {}", l.ipv4, v6),
                None => l.ipv4.to_string(),
            })
            .collect();
        println!(
            "  {prefix}{:<16} {:<34} {}",
            site.topo.container(h.name),
            addrs.join(", "),
            runs.join(", ")
        );
    }
}

/// Every namespace name a topology uses (hosts and the switch).
pub fn namespaces(t: &Topology, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = t
        .hosts
        .iter()
        .map(|h| format!("{prefix}{}", t.container(h.name)))
        .collect();
    v.push(format!("{prefix}{}_sw", t.name));
    v
}

/// Ends the services by their PID files, then removes every namespace of the topologies with
/// whatever still runs inside, the hosts files and runtime directories. Idempotent.
pub fn down(topos: &[&'static Topology], prefix: &str, verbose: bool) {
    for t in topos {
        let mut removed = 0;
        for ns in namespaces(t, prefix) {
            let dir = run_dir(&ns);
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "pid") {
                        kill_pidfile(&p);
                    }
                }
            }
            let existed = is_up(&ns) || dir.exists() || Path::new("/etc/netns").join(&ns).exists();
            netns::delete_ns(&ns);
            if existed {
                removed += 1;
            }
        }
        if verbose {
            if removed > 0 {
                println!(
                    "{}: removed {removed} namespaces and their processes",
                    t.name
                );
            } else {
                println!("{}: nothing to remove", t.name);
            }
        }
    }
}

fn kill_pidfile(p: &Path) {
    let Some(pid) = fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return;
    };
    if Path::new("/proc").join(pid.to_string()).exists() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let gone = netns::wait_until(Duration::from_secs(2), || {
            (!Path::new("/proc").join(pid.to_string()).exists()).then_some(())
        });
        if gone.is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn pid_alive(ns: &str, name: &str) -> Option<u32> {
    let pid: u32 = fs::read_to_string(run_dir(ns).join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new("/proc")
        .join(pid.to_string())
        .exists()
        .then_some(pid)
}

/// Prints every lab that is up: hosts, addresses, services and whether each answers.
pub fn status(prefix: &str) {
    let mut any = false;
    for t in topo::ALL {
        let sw = format!("{prefix}{}_sw", t.name);
        if !is_up(&sw) {
            println!("{}: down", t.name);
            continue;
        }
        any = true;
        println!("{}: up", t.name);
        for h in t.hosts {
            let ns = format!("{prefix}{}", t.container(h.name));
            let state = if is_up(&ns) {
                ""
            } else {
                "  (namespace missing)"
            };
            let addrs: Vec<String> = h
                .links
                .iter()
                .map(|l| match l.ipv6 {
                    Some(v6) => format!("{} {}", l.ipv4, v6),
                    None => l.ipv4.to_string(),
                })
                .collect();
            println!("  {ns:<18} {}{state}", addrs.join(", "));
        }
        // Probing needs a Site only for its helper command; build a light one around names.
        let probe = |from: &str, addr: IpAddr, port: u16| -> bool {
            let ns = format!("{prefix}{}", t.container(from));
            let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
            netns::host_command(&ns, me)
                .args(["__probe", &addr.to_string(), &port.to_string(), "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let fake = Site::names_only(t);
        for s in services(&fake, |_| PathBuf::from("/")) {
            let ns = format!("{prefix}{}", t.container(s.host));
            let pid = pid_alive(&ns, s.name);
            let h = t
                .host(s.host)
                .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |h| {
                    IpAddr::V4(h.ipv4())
                });
            // A port answering while our service is stopped is a student's own server.
            let answers: Vec<String> = s
                .ports
                .iter()
                .map(|p| {
                    let up = probe(s.probe_from, h, *p);
                    let what = match (pid.is_some(), up) {
                        (true, true) => "answers".to_owned(),
                        (true, false) => "does NOT answer".to_owned(),
                        (false, true) => "answers (not ours: a program of yours)".to_owned(),
                        (false, false) => format!("free (lab service start {})", s.host),
                    };
                    format!(":{p} {what}")
                })
                .collect();
            println!(
                "  service {:<12} on {ns:<16} {} {}",
                s.name,
                pid.map_or("not running".to_owned(), |p| format!("pid {p}")),
                answers.join(", ")
            );
        }
        if t.name == "week3" {
            let ns = format!("{prefix}week3_router");
            let mroute = fs::read_to_string(run_dir(&ns).join("smcroute.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|p| Path::new("/proc").join(p.to_string()).exists());
            println!(
                "  multicast route 239.1.1.1 eth0→eth1 on {ns}: {}",
                mroute.map_or("smcrouted not running".to_owned(), |p| format!(
                    "smcrouted pid {p}"
                ))
            );
        }
    }
    if !any {
        println!("no lab is up: cargo xtask lab up [week3|chat|tp3|all]");
    }
}

/// `lab exec HOST -- CMD…`: runs CMD inside the host with the lab binaries on the PATH.
pub fn exec(rest: &[String], opts: &Opts) -> Result<(), Error> {
    let (host, cmd) = match rest.split_first() {
        Some((h, tail)) => (h, tail.strip_prefix(&["--".to_owned()]).unwrap_or(tail)),
        None => return Err(Error::usage("lab exec needs HOST -- COMMAND…")),
    };
    if cmd.is_empty() {
        return Err(Error::usage(
            "lab exec needs a command after the host: lab exec client -- bash",
        ));
    }
    let (t, h) = resolve_host(host)?;
    let ns = format!("{}{}", opts.prefix, t.container(h.name));
    if !is_up(&ns) {
        return Err(Error::msg(format!(
            "{ns} is not up: run `cargo xtask lab up {}` first",
            t.name
        )));
    }
    // The same binaries `lab up` uses, without building them again.
    let bins = opts
        .bin_dir
        .clone()
        .or_else(|| std::env::var_os("NETLAB_BIN_DIR").map(PathBuf::from))
        .unwrap_or_else(|| opts::workspace_root().join("target").join("release"));
    let status = netns::host_command(&ns, &cmd[0])
        .env("PATH", netns::lab_path(&[&bins]))
        .args(&cmd[1..])
        .status()
        .with_context(|| format!("enter {ns}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::msg(format!("{} exited with {status}", cmd[0])))
    }
}
