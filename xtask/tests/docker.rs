//! The Docker path for real: the image built without a registry, the
//! three labs up as compose projects, the handouts' literal commands run with `docker exec`, and
//! every demo in containers.
//!
//! These tests need a Docker engine. nextest's default profile leaves them out (they count as
//! skipped, never as passed); `NEXTEST_PROFILE=docker` runs them, and `.ci/run` chooses that
//! profile when `docker info` answers after `.ci/setup` (with NETLAB_REQUIRE_DOCKER=1, so a test
//! that finds no engine then fails instead of returning).
//!
//! Each test has a prefix of its own (`nlt<pid>x…_`) for its image, compose projects, containers
//! and networks, and removes all of them at the end, also on failure (a guard's Drop). The
//! debootstrap base image (`netlab-base:<hash>`) is a cache, like `target/`: built by the first
//! test that needs it, then reused. The handout's addresses are the same in every project, so
//! two labs of one topology cannot share an engine: a test holds the topology's lock file
//! (xtask's protocol: `/run/netlab/docker-<lab>.lock` holding the owner's PID) while its lab is
//! up, and `demo --docker` takes the same locks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const REQUIRE_DOCKER: &str = "NETLAB_REQUIRE_DOCKER";

/// True when an engine answers; otherwise prints why and returns false (or fails when
/// NETLAB_REQUIRE_DOCKER=1).
fn engine_or_skip() -> bool {
    let why = match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
    {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => format!("no docker command: {e}"),
    };
    if std::env::var(REQUIRE_DOCKER).as_deref() == Ok("1") {
        panic!("{REQUIRE_DOCKER}=1 but no Docker engine answers: {why}");
    }
    eprintln!("SKIPPED: no Docker engine answers: {why}");
    false
}

fn prefix(tag: &str) -> String {
    format!(
        "{}{}x{tag}_",
        labnet::netns::TEST_PREFIX,
        std::process::id()
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The debug binaries of every program the image carries (`xtask __bins`), next to this test
/// (`target/debug`); built once with `cargo build --workspace --bins` when one is missing (a
/// run of `-p xtask` alone builds only xtask's own).
fn bin_dir() -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("__bins")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    if names.iter().any(|n| !dir.join(n).is_file()) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .current_dir(root)
            .args([
                "build",
                "--quiet",
                "--workspace",
                "--bins",
                "--exclude",
                "xtask",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "cargo build --workspace --bins failed");
    }
    for n in &names {
        assert!(dir.join(n).is_file(), "{n} is not in {}", dir.display());
    }
    dir
}

/// Runs a command with a time limit; a command still running then is killed and fails the test.
fn run_limited(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still ran after {} s: {}",
                limit.as_secs(),
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything a test created: its compose projects, image and shared folder, removed on drop.
struct Created {
    prefix: String,
    image: String,
    lab_dir: PathBuf,
}

impl Created {
    fn new(tag: &str) -> Created {
        let prefix = prefix(tag);
        let lab_dir = std::env::temp_dir().join(format!("{prefix}lab"));
        std::fs::create_dir_all(&lab_dir).unwrap();
        Created {
            image: format!("{prefix}netlab:latest"),
            prefix,
            lab_dir,
        }
    }

    /// `xtask --prefix P --lab-dir D ARGS…`, killed after `limit`.
    fn xtask(&self, args: &[&str], limit: Duration) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(["--prefix", &self.prefix])
            .arg("--lab-dir")
            .arg(&self.lab_dir)
            .args(args);
        run_limited(c, limit)
    }

    /// Builds this test's image from the debug binaries; returns what it printed.
    fn build_image(&self) -> String {
        let dir = bin_dir();
        let t0 = Instant::now();
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.arg("--bin-dir").arg(&dir).args([
            "images",
            "--check",
            "--build",
            "--offline",
            "--tag",
            &self.image,
        ]);
        let out = run_limited(c, Duration::from_secs(900));
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("every binary and tool is there"), "{t}");
        eprintln!(
            "image {} built in {:.1} s:\n{}",
            self.image,
            t0.elapsed().as_secs_f64(),
            t.lines()
                .filter(|l| l.contains("built in") || l.contains("cached"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        t
    }

    fn container(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Our containers and networks that still exist.
    fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        for args in [
            vec!["ps", "-a", "--format", "{{.Names}}"],
            vec!["network", "ls", "--format", "{{.Name}}"],
        ] {
            let out = Command::new("docker").args(&args).output().unwrap();
            v.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|n| n.starts_with(&self.prefix))
                    .map(str::to_owned),
            );
        }
        v
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        let _ = self.xtask(
            &["lab", "down", "all", "--docker"],
            Duration::from_secs(180),
        );
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
        let _ = std::fs::remove_dir_all(&self.lab_dir);
    }
}

/// xtask's lock of a topology's Docker lab: a file created exclusively holding the owner's PID,
/// taken over when that process is gone.
struct LabLock(PathBuf);

fn lock_lab(lab: &str) -> LabLock {
    let path = Path::new("/run/netlab").join(format!("docker-{lab}.lock"));
    std::fs::create_dir_all("/run/netlab").unwrap();
    let me = std::process::id().to_string();
    let end = Instant::now() + Duration::from_secs(20 * 60);
    loop {
        match std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(me.as_bytes()).unwrap();
                return LabLock(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("create {}: {e}", path.display()),
        }
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let old = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > Duration::from_secs(5)));
        let h = holder.trim();
        if (h.is_empty() && old) || (!h.is_empty() && !Path::new("/proc").join(h).exists()) {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        assert!(Instant::now() < end, "{} still held by {h}", path.display());
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.0)
            .is_ok_and(|s| s.trim() == std::process::id().to_string())
        {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// `docker exec CONTAINER sh -c SCRIPT` to completion within `limit`.
fn sh(container: &str, script: &str, limit: Duration) -> Output {
    let mut c = Command::new("docker");
    c.args(["exec", container, "sh", "-c", script]);
    run_limited(c, limit)
}

/// A program started in a container in the background, its output collected at the end.
fn start(container: &str, args: &[&str]) -> Child {
    Command::new("docker")
        .args(["exec", container])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, limit: Duration) -> String {
    let end = Instant::now() + limit;
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    text(&child.wait_with_output().unwrap())
}

/// Waits until `script` succeeds in `container` (a socket bound, a group joined).
fn until(container: &str, script: &str, what: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if sh(container, script, Duration::from_secs(10))
            .status
            .success()
        {
            return;
        }
        assert!(Instant::now() < end, "{container}: {what} not after 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn recv_count(out: &str, from: &str) -> usize {
    out.lines()
        .filter(|l| l.contains("[RECV]") && l.contains(from))
        .count()
}

fn up(c: &Created, lab: &str) {
    let out = c.xtask(
        &["lab", "up", lab, "--docker", "--image", &c.image],
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{}", text(&out));
}

fn down(c: &Created, lab: &str) {
    let out = c.xtask(&["lab", "down", lab, "--docker"], Duration::from_secs(180));
    assert!(out.status.success(), "{}", text(&out));
    let left: Vec<String> = c
        .leftovers()
        .into_iter()
        .filter(|n| n.contains(&format!("{lab}_")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn docker_labs_come_up_and_the_handouts_commands_work() {
    if !engine_or_skip() {
        return;
    }
    let c = Created::new("dlab");
    c.build_image();

    // Week 3.
    {
        let _lock = lock_lab("week3");
        let t0 = Instant::now();
        up(&c, "week3");
        eprintln!("week3 up in {:.1} s", t0.elapsed().as_secs_f64());
        let client = c.container("week3_client");
        let router = c.container("week3_router");
        for net in ["week3_network", "week3_remote"] {
            let out = Command::new("docker")
                .args([
                    "network",
                    "inspect",
                    "--format",
                    "{{.Internal}}",
                    &c.container(net),
                ])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true", "{net}");
        }
        let out = sh(&client, "hostname; ls /lab", Duration::from_secs(20));
        assert!(text(&out).starts_with("client\n"), "{}", text(&out));
        // The router's interfaces carry the topology's names whatever order Docker chose.
        let out = sh(
            &router,
            "ip -o -4 addr show dev eth0; ip -o -4 addr show dev eth1",
            Duration::from_secs(20),
        );
        let t = text(&out);
        assert!(
            t.contains("eth0    inet 172.20.0.254/24")
                && t.contains("eth1    inet 172.21.0.254/24"),
            "{t}"
        );

        // The handout's literal command: prints the echo and returns.
        let t0 = Instant::now();
        let mut cmd = Command::new("docker");
        cmd.args([
            "exec",
            &client,
            "bash",
            "-c",
            "echo 'TUNNEL TEST' | nc router 9090",
        ]);
        let out = run_limited(cmd, Duration::from_secs(30));
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "TUNNEL TEST\n");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nc took {:?}",
            t0.elapsed()
        );

        // Broadcast from client to receiver.
        let receiver = c.container("week3_receiver");
        let rx = start(
            &receiver,
            &[
                "udp-broadcast",
                "recv",
                "--port",
                "5007",
                "--count",
                "5",
                "--timeout",
                "15",
            ],
        );
        until(
            &receiver,
            "ss -H -uln 'sport = :5007' | grep -q .",
            "UDP :5007 bound",
        );
        let out = sh(
            &client,
            "udp-broadcast send --dst 255.255.255.255 --port 5007 --count 5 --interval 0.1",
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}", text(&out));
        let got = finish(rx, Duration::from_secs(20));
        assert_eq!(recv_count(&got, "from 172.20.0.100:"), 5, "{got}");

        // Multicast with TTL 2 crosses the router to remote.
        let remote = c.container("week3_remote");
        let rx = start(
            &remote,
            &[
                "udp-multicast",
                "recv",
                "--group",
                "239.1.1.1",
                "--port",
                "5008",
                "--count",
                "5",
                "--timeout",
                "15",
            ],
        );
        until(
            &remote,
            "ip maddr show dev eth0 | grep -q 239.1.1.1",
            "join 239.1.1.1",
        );
        let out = sh(
            &client,
            "udp-multicast send --group 239.1.1.1 --port 5008 --count 5 --ttl 2 --interval 0.1",
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}", text(&out));
        let got = finish(rx, Duration::from_secs(20));
        assert_eq!(recv_count(&got, "from 172.20.0.100:"), 5, "{got}");

        // The course's tunnel leaves router:9090 to a student's own one, and comes back.
        let out = c.xtask(
            &["lab", "service", "stop", "router", "--docker"],
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{}", text(&out));
        let out = sh(&client, "nc -z -w 2 router 9090", Duration::from_secs(20));
        assert!(!out.status.success(), "router:9090 still answers");
        let out = c.xtask(
            &[
                "lab", "service", "start", "router", "--docker", "--image", &c.image,
            ],
            Duration::from_secs(120),
        );
        assert!(
            out.status.success() && text(&out).contains(":9090 answers"),
            "{}",
            text(&out)
        );
        down(&c, "week3");
    }

    // TP3: a student's PMU command to tcpip.epfl.ch:5003, with our client and with Python.
    {
        let _lock = lock_lab("tp3");
        up(&c, "tp3");
        let student = c.container("tp3_student1");
        let out = sh(
            &student,
            "pmu-pdc-client tcpip.epfl.ch 5003 CMD_short:0",
            Duration::from_secs(60),
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("This is PMU data 1"), "{t}");
        let py = "import socket\n\
                  s = socket.create_connection(('tcpip.epfl.ch', 5003), timeout=20)\n\
                  s.sendall(b'CMD_short:1')\n\
                  data = b''\n\
                  while True:\n    b = s.recv(4096)\n    if not b: break\n    data += b\n\
                  print(data.decode())\n\
                  import websocket\n";
        let mut cmd = Command::new("docker");
        cmd.args(["exec", &student, "python3", "-c", py]);
        let out = run_limited(cmd, Duration::from_secs(60));
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("This is PMU data 1"), "{t}");
        down(&c, "tp3");
    }

    // Chat: no chat server unless asked; the host's name and the handout's server name resolve.
    {
        let _lock = lock_lab("chat");
        up(&c, "chat");
        let names = Command::new("docker")
            .args(["ps", "--format", "{{.Names}}"])
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&names.stdout);
        assert!(names.contains(&c.container("chat_webserver")), "{names}");
        assert!(!names.contains(&c.container("chat_chat-server")), "{names}");
        let out = sh(
            &c.container("chat_webserver"),
            "ss -H -tln 'sport = :5000'",
            Duration::from_secs(20),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "port 5000 is taken"
        );
        let mut cmd = Command::new("docker");
        cmd.args([
            "exec",
            &c.container("chat_client1"),
            "python3",
            "-c",
            "import socket; h = socket.gethostname(); \
             print(h, socket.gethostbyname(h), socket.gethostbyname('chat.ttm4200.com'))",
        ]);
        let out = run_limited(cmd, Duration::from_secs(30));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "client1 10.20.30.11 10.20.30.3",
            "{}",
            text(&out)
        );
        down(&c, "chat");
    }
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}

#[test]
fn docker_demo_all_holds_every_observation() {
    if !engine_or_skip() {
        return;
    }
    let c = Created::new("ddemo");
    c.build_image();
    let t0 = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("--bin-dir")
        .arg(bin_dir())
        .args(["--prefix", &c.prefix])
        .arg("--lab-dir")
        .arg(&c.lab_dir)
        .args(["demo", "--docker", "--image", &c.image, "all"]);
    let out = run_limited(cmd, Duration::from_secs(1200));
    let t = text(&out);
    eprintln!("demo --docker all took {:.1} s", t0.elapsed().as_secs_f64());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(out.status.success(), "{t}");
    assert!(summary.ends_with(" held, 0 failed"), "{summary}");
    for demo in [
        "broadcast",
        "multicast",
        "tunnel",
        "basics",
        "pmu",
        "reset",
        "tv",
        "ws",
        "tls",
        "chat",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("  PASS  {demo} "))),
            "{demo} did not pass: {t}"
        );
    }
    assert!(!t.contains("NOT SHOWN"), "{t}");
    assert!(c.leftovers().is_empty(), "{:?}", c.leftovers());
}
