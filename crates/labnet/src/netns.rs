//! The network-namespace testbed: a lab topology built for real, removed on drop.
//!
//! [`Testbed::up`] builds a [`Topology`] with `ip netns`, veth pairs and Linux bridges: one
//! namespace per host, plus one "switch" namespace holding a bridge per segment (with the gateway
//! address on it, as Docker puts it on its bridge). Nothing is created in the machine's own
//! namespace, so lab traffic, broadcast included, never reaches a real network. `cargo xtask lab`
//! and `demo`, lab-grade's graders and the namespace tests all build their labs here.
//!
//! Every host gets `lo` up, its addresses (IPv6 without duplicate-address detection, so they are
//! usable at once), a default route via the gateway, a route for 224.0.0.0/4 so multicast and
//! 255.255.255.255 leave through `eth0` as in Docker, and IGMP forced to version 2 (RFC 2236, the
//! handout's reference: reports go to the group address, leaves to 224.0.0.2). Bridges have
//! multicast snooping turned off on purpose: the segment floods multicast like a hub, so a host
//! that did not join sees the frames and its kernel drops them, which is what the lab shows.
//!
//! A host is more than a network namespace, as a container is: each one also gets its own UTS
//! namespace (its hostname, so the chat handout's `gethostbyname(gethostname())` gives its lab
//! address) and mount namespace (the lab's names in `/etc/hosts`, including the handouts' server
//! names, `/sys` showing its own interfaces, and optionally a shared folder at `/lab`). Both are
//! pinned under [`HOST_NS_DIR`], and [`host_command`] enters all three, as `docker exec` does.
//! In every host `nc` shuts its sending side down at the end of its input (netcat-openbsd's
//! `-N`), so the handout's `echo 'DIRECT TEST' | nc server 8080` prints the echo and returns.
//!
//! Dropping the testbed ends every process inside its namespaces and removes the namespaces (and
//! with them every veth and bridge), also when a test panics. Test namespaces carry a per-process
//! prefix (`nlt<pid>x<n>_`), so parallel tests never collide, and a new testbed first sweeps the
//! namespaces of test processes that no longer exist (a test killed by a timeout cannot run its
//! destructors).
//!
//! The kit's one skip policy lives here too: a test that cannot get what it needs (namespaces,
//! root, a tool) calls [`or_skip`] (or [`netns_or_skip`], [`testbed_or_skip!`]), which prints
//! `SKIPPED: <why>` and lets the test return, or fails it when [`REQUIRE_NETNS`] is set (CI).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::topo::{Host, Topology};

/// Environment variable: when `1`, a test that lacks what it needs (namespaces, root, a tool)
/// fails instead of skipping, and `cargo xtask verify` fails a check it could not show (set by
/// `.ci/run`). See [`or_skip`].
pub const REQUIRE_NETNS: &str = "NETLAB_REQUIRE_NETNS";

/// Prefix of every namespace a test process creates.
pub const TEST_PREFIX: &str = "nlt";

/// Where each host's UTS and mount namespaces are pinned (`<ns>.uts`, `<ns>.mnt`). The directory is
/// a private bind mount of itself: the kernel refuses to pin a mount namespace on a shared mount,
/// where the pin would propagate into the namespace it pins.
pub const HOST_NS_DIR: &str = "/run/netlab/hostns";

/// Tools the lab hosts find before the machine's own (first on the PATH of [`host_command`]).
pub const LAB_TOOLS_DIR: &str = "/run/netlab/tools";

/// netcat-openbsd waits for the server to close after the end of its input; the handout's
/// `echo 'DIRECT TEST' | nc server 8080` expects it to pass the end on (`-N`: shutdown(SHUT_WR)
/// after EOF on stdin), so the echo server sees EOF, closes, and nc returns. Listening and UDP
/// modes, and a command line that already says what to do at EOF, are left as they are.
const NC_WRAPPER: &str = r#"#!/bin/sh
# netlab lab host: nc passes the end of its input on (-N), as the handouts' commands expect.
real=/bin/nc.openbsd
[ -x "$real" ] || real=/bin/nc
for a in "$@"; do
  case "$a" in
    -*[luNq]*) exec "$real" "$@" ;;
  esac
done
exec "$real" -N "$@"
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A topology built in network namespaces.
pub struct Testbed {
    topo: &'static Topology,
    prefix: String,
    namespaces: Vec<String>,
    children: Mutex<Vec<Child>>,
    keep: bool,
}

impl Testbed {
    /// Builds `topo` with namespace names `<prefix><topology>_<host>`; an empty prefix gives the
    /// lab's own names (`week3_client`) that `cargo xtask lab` uses.
    pub fn up(topo: &'static Topology, prefix: &str) -> io::Result<Testbed> {
        let mut bed = Testbed {
            topo,
            prefix: prefix.to_owned(),
            namespaces: Vec::new(),
            children: Mutex::new(Vec::new()),
            keep: false,
        };
        bed.build()?;
        Ok(bed)
    }

    /// A testbed for a test: unique prefix, stale test namespaces swept first. `Err` says why
    /// there is none (this process may not create namespaces, or building failed); tests get
    /// their testbed through [`testbed_or_skip!`], which applies [`or_skip`] to it.
    pub fn for_test(topo: &'static Topology) -> Result<Testbed, String> {
        netns_available()?;
        sweep_stale_test_namespaces();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{TEST_PREFIX}{}x{n}_", std::process::id());
        Testbed::up(topo, &prefix).map_err(|e| format!("building the {} testbed: {e}", topo.name))
    }

    /// The testbed of a lab that is already up (`cargo xtask lab up` in an earlier run), to run
    /// commands in its hosts; it builds nothing and removes nothing when dropped.
    pub fn attach(topo: &'static Topology, prefix: &str) -> Testbed {
        Testbed {
            topo,
            prefix: prefix.to_owned(),
            namespaces: Vec::new(),
            children: Mutex::new(Vec::new()),
            keep: true,
        }
    }

    /// Leaves the namespaces in place when dropped (`cargo xtask lab up`).
    pub fn keep(mut self) -> Self {
        self.keep = true;
        self
    }

    /// The topology.
    pub fn topology(&self) -> &'static Topology {
        self.topo
    }

    /// The namespace name of a host.
    pub fn ns(&self, host: &str) -> String {
        format!("{}{}_{}", self.prefix, self.topo.name, host)
    }

    fn switch_ns(&self) -> String {
        format!("{}{}_sw", self.prefix, self.topo.name)
    }

    /// A host of the topology, panicking on a name that is not in it (a bug in the test).
    pub fn host(&self, name: &str) -> &'static Host {
        match self.topo.hosts.iter().find(|h| h.name == name) {
            Some(h) => h,
            None => panic!("no host {name} in topology {}", self.topo.name),
        }
    }

    /// A command that runs `program` inside `host` (see [`host_command`]).
    pub fn command(&self, host: &str, program: impl AsRef<OsStr>) -> Command {
        host_command(&self.ns(host), program)
    }

    /// Makes `src` (a directory of the machine) appear at `at` in every host, as a compose
    /// file's bind mount does (`cargo xtask lab` shares the repository's `lab/` at `/lab`).
    /// `at` is created on the machine if missing: a mount needs a directory to cover.
    pub fn share_dir(&self, src: &Path, at: &Path) -> io::Result<()> {
        fs::create_dir_all(src)?;
        fs::create_dir_all(at)?;
        for host in self.topo.hosts {
            let (_, mnt) = host_ns_files(&self.ns(host.name));
            run_ok(
                Command::new("nsenter")
                    .arg(format!("--mount={}", mnt.display()))
                    .args(["mount", "--bind"])
                    .arg(src)
                    .arg(at),
            )?;
        }
        Ok(())
    }

    /// Runs `program args…` inside `host` to completion and returns its output.
    pub fn run<S: AsRef<OsStr>>(
        &self,
        host: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> io::Result<Output> {
        self.command(host, program)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Starts `program args…` inside `host` with piped stdout and stderr; the process is ended when
    /// the testbed drops. Returns its PID; use [`Testbed::take`] to get the `Child` itself.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        host: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> io::Result<Child> {
        self.command(host, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Hands a child to the testbed, which kills it on drop if it is still running.
    pub fn track(&self, child: Child) {
        if let Ok(mut v) = self.children.lock() {
            v.push(child);
        }
    }

    /// Starts `smcrouted` in the `router` host with a static route forwarding `group` from `eth0`
    /// to `eth1`, each instance with its own config, control socket and PID file, and waits until
    /// the route is installed.
    pub fn enable_mroute(&self, group: IpAddr) -> io::Result<()> {
        let ns = self.ns("router");
        let dir = runtime_dir(&ns);
        fs::create_dir_all(&dir)?;
        let conf = dir.join("smcroute.conf");
        let sock = dir.join("smcroute.sock");
        let pid = dir.join("smcroute.pid");
        fs::write(
            &conf,
            format!(
                "phyint eth0 enable\nphyint eth1 enable\nmroute from eth0 group {group} to eth1\n"
            ),
        )?;
        let which = Command::new("sh")
            .arg("-c")
            .arg("command -v smcrouted")
            .output()?;
        if !which.status.success() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "smcrouted not found: install it with `apt-get install smcroute`",
            ));
        }
        let child = self
            .command("router", "smcrouted")
            .arg("-n")
            .arg("-N")
            .args(["-i", &ns, "-l", "notice"])
            .arg("-f")
            .arg(&conf)
            .arg("-u")
            .arg(&sock)
            .arg("-P")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.track(child);
        // smcroute keeps a group-only route as a (*,G) template and installs kernel (S,G) routes
        // when traffic arrives, so readiness is the daemon answering with the template.
        let want = group.to_string();
        wait_until(Duration::from_secs(10), || {
            let out = self
                .command("router", "smcroutectl")
                .args(["-p", "-i", &ns, "-u"])
                .arg(&sock)
                .args(["show", "routes"])
                .stdin(Stdio::null())
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains(&want)
                .then_some(())
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "smcrouted did not install the multicast route",
            )
        })
    }

    fn build(&mut self) -> io::Result<()> {
        let sw = self.switch_ns();
        self.add_ns(&sw)?;
        let mut script = String::from("set -e\nip link set lo up\n");
        for seg in self.topo.segments {
            // Snooping off, explicitly: the bridge floods multicast like the hub of a lab bench.
            let _ = writeln!(
                script,
                "ip link add {} type bridge mcast_snooping 0 stp_state 0",
                seg.bridge
            );
            let _ = writeln!(
                script,
                "ip addr add {}/{} dev {}",
                seg.gateway4, seg.prefix4, seg.bridge
            );
            if let (Some(gw6), Some((_, len))) = (seg.gateway6, seg.subnet6) {
                let _ = writeln!(
                    script,
                    "ip -6 addr add {gw6}/{len} dev {} nodad",
                    seg.bridge
                );
            }
            let _ = writeln!(script, "ip link set {} up", seg.bridge);
        }
        sh_in(&sw, &script)?;

        for host in self.topo.hosts {
            let ns = self.ns(host.name);
            self.add_ns(&ns)?;
            // Created from inside the switch namespace with the peer placed straight into the
            // host: no interface ever appears in the machine's own namespace.
            for link in host.links {
                let port = port_name(host.name, link.ifname);
                run_ok(Command::new("ip").args([
                    "-n",
                    &sw,
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link.ifname,
                    "netns",
                    &ns,
                ]))?;
                let bridge = self.topo.segments[link.segment].bridge;
                run_ok(
                    Command::new("ip")
                        .args(["-n", &sw, "link", "set", &port, "master", bridge, "up"]),
                )?;
            }
            sh_in(&ns, &host_script(self.topo, host))?;
            self.write_hosts_file(&ns)?;
            pin_host_namespaces(&ns, host.name)?;
        }
        install_lab_tools()
    }

    fn add_ns(&mut self, ns: &str) -> io::Result<()> {
        // A leftover of a crashed run with the same name would make `add` fail: clear it first.
        if Path::new("/run/netns").join(ns).exists() {
            delete_ns(ns);
        }
        run_ok(Command::new("ip").args(["netns", "add", ns]))?;
        self.namespaces.push(ns.to_owned());
        Ok(())
    }

    fn write_hosts_file(&self, ns: &str) -> io::Result<()> {
        let dir = Path::new("/etc/netns").join(ns);
        fs::create_dir_all(&dir)?;
        let mut text =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (addr, names) in self.topo.name_entries() {
            let _ = writeln!(text, "{addr}\t{}", names.join(" "));
        }
        fs::write(dir.join("hosts"), text)
    }

    /// Ends every process and removes every namespace (idempotent).
    pub fn teardown(&mut self) {
        if let Ok(mut children) = self.children.lock() {
            for c in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            children.clear();
        }
        for ns in self.namespaces.drain(..).rev() {
            delete_ns(&ns);
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.teardown();
    }
}

fn host_script(topo: &Topology, host: &Host) -> String {
    let mut s = String::from("set -e\n");
    // Skip IPv6 duplicate-address detection so addresses are usable the moment the link is up.
    s.push_str("echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad\necho 0 > /proc/sys/net/ipv6/conf/default/accept_dad\n");
    s.push_str("echo 2 > /proc/sys/net/ipv4/conf/all/force_igmp_version\n");
    s.push_str("echo 2 > /proc/sys/net/ipv4/conf/default/force_igmp_version\n");
    // Answer pings to broadcast addresses, as the handout's troubleshooting section expects.
    s.push_str("echo 0 > /proc/sys/net/ipv4/icmp_echo_ignore_broadcasts\n");
    s.push_str("ip link set lo up\n");
    for link in host.links {
        let seg = &topo.segments[link.segment];
        let _ = writeln!(
            s,
            "ip addr add {}/{} brd + dev {}",
            link.ipv4, seg.prefix4, link.ifname
        );
        if let (Some(v6), Some((_, len))) = (link.ipv6, seg.subnet6) {
            let _ = writeln!(s, "ip -6 addr add {v6}/{len} dev {} nodad", link.ifname);
        }
        // The veth existed before `default/accept_dad` was cleared, so clear it on the interface
        // too, before it comes up: otherwise its link-local address stays tentative for 1-2 s.
        let _ = writeln!(
            s,
            "echo 0 > /proc/sys/net/ipv6/conf/{}/accept_dad",
            link.ifname
        );
        let _ = writeln!(s, "ip link set {} up", link.ifname);
    }
    let first = &host.links[0];
    let _ = writeln!(
        s,
        "ip route add default via {} dev {}",
        host.gateway4, first.ifname
    );
    let _ = writeln!(s, "ip route add 224.0.0.0/4 dev {}", first.ifname);
    if let Some(gw6) = topo.segments[first.segment].gateway6 {
        let _ = writeln!(s, "ip -6 route add default via {gw6} dev {}", first.ifname);
    }
    for r in host.routes {
        let _ = writeln!(s, "ip route add {} via {}", r.to, r.via);
    }
    if host.forwards {
        s.push_str("echo 1 > /proc/sys/net/ipv4/ip_forward\n");
        s.push_str("echo 1 > /proc/sys/net/ipv6/conf/all/forwarding\n");
        // Reverse-path filtering would drop forwarded multicast whose source is on the other side.
        s.push_str("echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter\n");
    }
    s
}

fn port_name(host: &str, ifname: &str) -> String {
    let mut name = format!("{host}-{ifname}");
    name.truncate(15);
    name
}

/// The files pinning the UTS and mount namespaces of the host whose network namespace is `ns`.
pub fn host_ns_files(ns: &str) -> (PathBuf, PathBuf) {
    let dir = Path::new(HOST_NS_DIR);
    (dir.join(format!("{ns}.uts")), dir.join(format!("{ns}.mnt")))
}

/// The command that runs `program` inside the host whose network namespace is `ns`: its network,
/// UTS and mount namespaces (entered with `nsenter`, as `docker exec` enters a container), with
/// the lab tools first on the PATH. The working directory is the one the command is given
/// (`--wd=.` opens it before entering).
pub fn host_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let (uts, mnt) = host_ns_files(ns);
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .arg(format!("--uts={}", uts.display()))
        .arg(format!("--mount={}", mnt.display()))
        .arg("--wd=.")
        .arg(program)
        .env("PATH", lab_path(&[]));
    c
}

/// A PATH for lab hosts: `first` directories, then [`LAB_TOOLS_DIR`], then this process's PATH.
pub fn lab_path(first: &[&Path]) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = first.iter().map(|p| p.to_path_buf()).collect();
    dirs.push(PathBuf::from(LAB_TOOLS_DIR));
    if let Some(old) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Gives the host `ns` its own UTS namespace (hostname `name`) and mount namespace (the lab's
/// hosts file over `/etc/hosts`, a sysfs showing its own interfaces), pinned under
/// [`HOST_NS_DIR`] so that they outlive this call.
fn pin_host_namespaces(ns: &str, name: &str) -> io::Result<()> {
    let dir = Path::new(HOST_NS_DIR);
    fs::create_dir_all(dir)?;
    // Parallel tests build testbeds at once: one of them makes the directory private.
    let lock = Path::new("/run/netlab/.hostns.lock");
    run_ok(
        Command::new("flock")
            .arg(lock)
            .args(["sh", "-c"])
            .arg(format!(
                "mountpoint -q {d} || mount --bind {d} {d}; mount --make-private {d}",
                d = dir.display()
            )),
    )?;
    let (uts, mnt) = host_ns_files(ns);
    fs::File::create(&uts)?;
    fs::File::create(&mnt)?;
    let hosts = Path::new("/etc/netns").join(ns).join("hosts");
    // Runs in the new namespaces; `--propagation slave`: mounts made here stay here. sysfs shows
    // the interfaces of the network namespace of whoever mounts it, hence the nsenter.
    let script = format!(
        "set -e
hostname {name}
mount --bind {hosts} /etc/hosts
         nsenter --net=/run/netns/{ns} sh -c 'umount -l /sys 2>/dev/null || true; mount -t sysfs {ns} /sys'
",
        hosts = hosts.display()
    );
    run_ok(
        Command::new("unshare")
            .arg(format!("--uts={}", uts.display()))
            .arg(format!("--mount={}", mnt.display()))
            .args(["--propagation", "slave", "sh", "-c"])
            .arg(script),
    )
}

/// Unpins the UTS and mount namespaces of `ns` (they end with their last process).
fn unpin_host_namespaces(ns: &str) {
    let (uts, mnt) = host_ns_files(ns);
    for f in [uts, mnt] {
        if f.exists() {
            let _ = Command::new("umount")
                .arg(&f)
                .stderr(Stdio::null())
                .status();
            let _ = fs::remove_file(&f);
        }
    }
}

/// Writes the lab tools (the `nc` wrapper) into [`LAB_TOOLS_DIR`]; a rename makes the update
/// atomic for hosts of other labs that may be running it.
fn install_lab_tools() -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(LAB_TOOLS_DIR);
    fs::create_dir_all(dir)?;
    // A name of its own per call: lanes of one grader build labs at once in one process.
    let tmp = dir.join(format!(
        ".nc.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&tmp, NC_WRAPPER)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, dir.join("nc"))
}

fn runtime_dir(ns: &str) -> PathBuf {
    Path::new("/run/netlab").join(ns)
}

fn sh_in(ns: &str, script: &str) -> io::Result<()> {
    run_ok(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]))
}

fn run_ok(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Ends every process inside `ns`, then removes it with its links, hosts file and runtime files.
pub fn delete_ns(ns: &str) {
    for _ in 0..50 {
        let pids = ns_pids(ns);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unpin_host_namespaces(ns);
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
    let _ = fs::remove_dir_all(Path::new("/etc/netns").join(ns));
    let _ = fs::remove_dir_all(runtime_dir(ns));
}

/// PIDs of the processes living in namespace `ns`.
pub fn ns_pids(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Names of every namespace on the machine.
pub fn list_namespaces() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes namespaces left by test processes that no longer exist.
pub fn sweep_stale_test_namespaces() {
    sweep_stale_namespaces(TEST_PREFIX);
}

/// Removes the namespaces named `<prefix><pid>…` whose process no longer exists (a run killed
/// before its destructors: a test's timeout, a grader's Ctrl-C).
pub fn sweep_stale_namespaces(prefix: &str) {
    for ns in list_namespaces() {
        let Some(rest) = ns.strip_prefix(prefix) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            delete_ns(&ns);
        }
    }
}

/// Checks that this process may create namespaces (root, `ip` present), by creating one.
pub fn netns_available() -> Result<(), String> {
    let probe = format!(
        "{TEST_PREFIX}{}probe{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    match Command::new("ip")
        .args(["netns", "add", &probe])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => Err(format!("cannot run `ip` (install iproute2): {e}")),
        Ok(out) if !out.status.success() => Err(format!(
            "cannot create network namespaces (run as root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            Ok(())
        }
    }
}

/// True when [`REQUIRE_NETNS`] is `1`: nothing may be skipped (CI).
pub fn strict() -> bool {
    std::env::var(REQUIRE_NETNS).as_deref() == Ok("1")
}

/// The kit's one skip policy. `needs` says whether what a test needs is there (`Err(why)` when
/// it is not: no namespaces, not root, a tool missing). True when it is; otherwise prints
/// `SKIPPED: <why>` and returns false, so the test returns, or panics when [`strict`], so CI
/// cannot pass by skipping.
pub fn or_skip(needs: Result<(), String>) -> bool {
    match needs {
        Ok(()) => true,
        Err(why) if strict() => panic!("{REQUIRE_NETNS}=1, so this test may not skip: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// [`or_skip`] for a test that needs namespaces (root) without a [`Testbed`].
pub fn netns_or_skip() -> bool {
    or_skip(netns_available())
}

/// Gets a testbed ([`Testbed::for_test`]) or returns from the calling test under [`or_skip`].
#[macro_export]
macro_rules! testbed_or_skip {
    ($topo:expr) => {
        match $crate::netns::Testbed::for_test($topo) {
            Ok(bed) => bed,
            Err(why) => {
                $crate::netns::or_skip(Err(why));
                return;
            }
        }
    };
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes (readiness without fixed
/// sleeps): a lab's daemons here, xtask's lab processes, and the tests (re-exported by the
/// dev-only `testkit` crate).
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
