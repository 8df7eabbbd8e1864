//! Week 3 exercise 3 and homework 3 in the week3 namespaces: `echo-server` on `server:8080`,
//! `tcp-tunnel` on `router` (`-L 0.0.0.0:9090=server:8080` plus two more tunnels in the same
//! process), clients in `client`.
//!
//! The clients and the special targets are this test binary itself, started inside a namespace
//! with `ip netns exec <ns> <this test binary> --exact role --ignored` and the role in an
//! environment variable: the client logic stays in Rust with exact byte comparisons, and this
//! crate needs no extra dependency or helper program. `role` is `#[ignore]`d, so a normal run
//! never executes it on its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use labnet::netns::Testbed;
use testkit::{bin, random_bytes, wait_until};

/// Environment variable naming the role a re-executed test binary plays.
const ROLE: &str = "NETLAB_WEEK3_TUNNEL_ROLE";
const IO_TIMEOUT: Duration = Duration::from_secs(20);
const MIB8: usize = 8 * 1024 * 1024;

/// The router's address on the client segment (what `router` resolves to).
fn router(port: u16) -> SocketAddr {
    SocketAddr::from((labnet::topo::WEEK3.host("router").unwrap().ipv4(), port))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).unwrap();
    v
}

/// The roles, run inside a namespace by the tests below. Prints `RESULT …` lines; a failed
/// assertion makes the process exit non-zero.
#[test]
#[ignore = "helper role, started inside a namespace by the week3 tunnel tests"]
fn role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        // 8 concurrent clients, 8 MiB each, through router:9090; each reads concurrently with
        // writing, shuts its write side after the last byte, and must get every byte back.
        "clients8" => {
            let addr = router(labnet::topo::TUNNEL_PORT);
            let handles: Vec<_> = (0..8u64)
                .map(|i| {
                    thread::spawn(move || {
                        let data = random_bytes(0x5eed + i, MIB8);
                        let mut s = connect(addr);
                        let mut r = s.try_clone().unwrap();
                        let reader = thread::spawn(move || read_to_eof(&mut r));
                        s.write_all(&data).unwrap();
                        s.shutdown(Shutdown::Write).unwrap();
                        let back = reader.join().unwrap();
                        assert_eq!(back.len(), data.len(), "client {i}");
                        assert!(back == data, "client {i}: echo differs");
                        println!("RESULT client {i} ok {}", back.len());
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
        // Send, shut down the write side, and only then read: the full echo must still come.
        "halfclose-echo" => {
            let mut s = connect(router(labnet::topo::TUNNEL_PORT));
            s.write_all(b"HALF CLOSE TEST\n").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_to_eof(&mut s), b"HALF CLOSE TEST\n");
            println!("RESULT halfclose-echo ok");
        }
        // A target that greets, half-closes first, then reads until the client's FIN.
        "halfclose-target" => {
            let l = TcpListener::bind("0.0.0.0:8081").unwrap();
            println!("RESULT ready");
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            s.write_all(b"HELLO").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let got = read_to_eof(&mut s);
            println!("RESULT got {}", String::from_utf8_lossy(&got));
        }
        "halfclose-client" => {
            let mut s = connect(router(9091));
            assert_eq!(read_to_eof(&mut s), b"HELLO");
            thread::sleep(Duration::from_secs(2));
            s.write_all(b"AFTER THE PAUSE").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_to_eof(&mut s), b"");
            println!("RESULT halfclose-client ok");
        }
        // Target down: time from connect to the tunnel closing us.
        "down-client" => {
            let mut s = connect(router(9092));
            let start = Instant::now();
            let mut b = [0u8; 8];
            let r = s.read(&mut b);
            let ms = start.elapsed().as_millis();
            assert!(
                matches!(r, Ok(0))
                    || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
                "{r:?}"
            );
            println!("RESULT closed_ms {ms}");
        }
        "next-client" => {
            let mut s = connect(router(9092));
            s.write_all(b"NEXT").unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_to_eof(&mut s), b"NEXT");
            println!("RESULT next-client ok");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs this test binary as `role` inside `host`.
fn play(bed: &Testbed, host: &str, role: &str) -> Command {
    let mut c = bed.command(host, std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "role",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .stdin(Stdio::null());
    c
}

fn results(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // libtest prints "test role ... " without a newline before the role's own output.
        .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_owned()))
        .collect()
}

fn run_role(bed: &Testbed, host: &str, role: &str) -> Vec<String> {
    let out = play(bed, host, role).output().unwrap();
    assert!(
        out.status.success(),
        "role {role} in {host} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    results(&out)
}

/// Starts `prog args…` in `host` with stdout into `log`, waits for `ready` in it.
fn start(bed: &Testbed, host: &str, prog: &Path, args: &[&str], log: &Path, ready: &str) {
    let child = bed
        .command(host, prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    bed.track(child);
    let seen = wait_until(Duration::from_secs(10), || {
        let text = fs::read_to_string(log).ok()?;
        (text.matches(ready).count() >= 1).then_some(())
    });
    assert!(seen.is_some(), "{} never printed {ready:?}", prog.display());
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("week3-tunnel-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tunnel_through_the_router_forwards_half_closes_and_survives_a_down_target() {
    let bed = labnet::testbed_or_skip!(&labnet::topo::WEEK3);
    let dir = scratch("main");
    let echo = bin("echo-server");
    let tunnel = bin("tcp-tunnel");
    start(
        &bed,
        "server",
        &echo,
        &["--port", "8080", "--quiet"],
        &dir.join("echo.out"),
        "listening on tcp",
    );
    let log = dir.join("tunnel.log");
    let log_s = log.to_str().unwrap();
    // Three tunnels in one process: the echo server, the half-closing target, a target that is
    // down (nothing on server:8082 yet).
    start(
        &bed,
        "router",
        &tunnel,
        &[
            "-L",
            "0.0.0.0:9090=server:8080",
            "-L",
            "0.0.0.0:9091=server:8081",
            "-L",
            "0.0.0.0:9092=server:8082",
            "--log",
            log_s,
        ],
        &dir.join("tunnel.out"),
        "listening on 0.0.0.0:9092",
    );

    // 8 × 8 MiB, concurrently, byte-exact.
    let r = run_role(&bed, "client", "clients8");
    let mut ok: Vec<_> = r.iter().filter(|l| l.ends_with(" ok 8388608")).collect();
    ok.sort();
    assert_eq!(ok.len(), 8, "{r:?}");

    // A client that shuts down its write side first still gets the full echo.
    assert_eq!(
        run_role(&bed, "client", "halfclose-echo"),
        ["halfclose-echo ok"]
    );

    // The target half-closes first; the client sends 2 s later and the target gets it.
    let target = play(&bed, "server", "halfclose-target")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The target prints "ready" once bound; the client connects through the tunnel after that.
    let ready = wait_until(Duration::from_secs(10), || {
        let out = bed.run("server", "ss", &["-Hltn", "sport = :8081"]).ok()?;
        (!out.stdout.is_empty()).then_some(())
    });
    assert!(ready.is_some(), "half-closing target did not listen");
    assert_eq!(
        run_role(&bed, "client", "halfclose-client"),
        ["halfclose-client ok"]
    );
    let out = target.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(results(&out), ["ready", "got AFTER THE PAUSE"]);

    // Target down: the client is closed within 1 s ...
    let r = run_role(&bed, "client", "down-client");
    let ms: u128 = r[0].strip_prefix("closed_ms ").unwrap().parse().unwrap();
    assert!(ms < 1000, "closed after {ms} ms");
    // ... and once the target is up, the next client on the same tunnel is served.
    start(
        &bed,
        "server",
        &echo,
        &["--port", "8082", "--quiet"],
        &dir.join("echo2.out"),
        "listening on tcp",
    );
    assert_eq!(run_role(&bed, "client", "next-client"), ["next-client ok"]);

    // The log: one line per event. 3 listening lines; 5 per forwarded connection (accepted,
    // connected, one half-close per direction, closed); 2 for the refused one.
    let ok_log = wait_until(Duration::from_secs(5), || {
        let text = fs::read_to_string(&log).ok()?;
        (text.lines().count() == 3 + 11 * 5 + 2).then_some(text)
    });
    let text = ok_log.unwrap_or_else(|| fs::read_to_string(&log).unwrap());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 + 11 * 5 + 2, "{text}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("tunnel listening on"))
            .count(),
        3
    );
    for id in 1..=12 {
        let tag = format!("] #{id} ");
        let mine: Vec<&&str> = lines.iter().filter(|l| l.contains(&tag)).collect();
        if mine.iter().any(|l| l.contains("connect to server:8082")) {
            assert_eq!(mine.len(), 2, "{mine:?}");
            assert!(mine[0].contains("accepted 172.20.0.100:"));
            assert!(
                mine[1].contains("[ERROR]")
                    && mine[1].contains("connection refused (ECONNREFUSED)")
            );
            continue;
        }
        assert_eq!(mine.len(), 5, "connection #{id}: {mine:?}");
        assert!(mine[0].contains("[INFO] #") && mine[0].contains(" accepted 172.20.0.100:"));
        assert!(
            mine[1].contains(" connected: 172.20.0.100:") && mine[1].contains("| 172.20.0.254:")
        );
        assert_eq!(
            mine.iter().filter(|l| l.contains("c→s half-close")).count(),
            1
        );
        assert_eq!(
            mine.iter().filter(|l| l.contains("s→c half-close")).count(),
            1
        );
        assert!(mine[4].contains(" closed: c→s "), "{}", mine[4]);
    }
    // The 8 big ones, and who closed first in the half-closing target's pair.
    assert_eq!(
        text.matches("closed: c→s 8388608 bytes, s→c 8388608 bytes")
            .count(),
        8
    );
    assert_eq!(
        text.matches("closed: c→s 15 bytes, s→c 5 bytes").count(),
        1,
        "{text}"
    );
    assert!(text.contains("s→c 5 bytes") && text.contains("server closed first"));
}
