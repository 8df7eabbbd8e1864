//! Loopback tests of `tcp-tunnel` (week 3 exercise 3, homework 3): exact forwarding both ways,
//! half-close in each direction, target down, the log, several tunnels, and the abuse the tunnel
//! must survive. Targets are small servers in the test process.
//!
//! Every behaviour test runs against both relays: `NAME::event_loop` (the default, `relay/`) and
//! `NAME::threads` (`--threads`, `threaded.rs`); see [`both_relays`]. The tests of what only the
//! event loop does (a pending connect noticing its client's reset, accept backing off at the
//! descriptor limit, the idle timeout) run once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use testkit::probe::*;
use testkit::proc::{Finished, Proc, run};
use testkit::random_bytes;
use testkit::tcp::*;

/// How long a run of the program may take before the test fails.
const LIMIT: Duration = Duration::from_secs(10);

const BIN: &str = env!("CARGO_BIN_EXE_tcp-tunnel");

/// Which relay a test runs: the arguments that select it.
type Relay = &'static [&'static str];

/// The default relay: the event loop.
const EVENT_LOOP: Relay = &[];

/// Two threads per connection.
const THREADS: Relay = &["--threads"];

/// For each `fn NAME(relay: Relay)`, two tests: `NAME::event_loop` and `NAME::threads`.
macro_rules! both_relays {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn event_loop() {
                    super::$name(super::EVENT_LOOP);
                }

                #[test]
                fn threads() {
                    super::$name(super::THREADS);
                }
            }
        )*
    };
}

both_relays!(
    eight_concurrent_clients_get_their_8_mib_back_exactly,
    client_half_close_still_gets_the_full_echo,
    small_messages_bulk_and_small_again_come_back_exactly,
    urgent_data_is_passed_on_in_line_and_does_not_stall_the_stream,
    target_that_half_closes_first_still_receives_after_a_pause,
    target_down_closes_the_client_within_1s_and_the_next_client_is_served,
    log_file_holds_one_line_per_event_in_order,
    json_log_lines_carry_id_direction_and_bytes,
    two_tunnels_in_one_process_both_work_v4_and_v6,
    reset_by_the_client_resets_the_target_side,
    reset_by_the_target_resets_the_client_side,
    ten_thousand_bad_connections_leave_no_descriptor_thread_or_close_wait,
    slow_target_does_not_make_the_tunnel_grow,
);

/// A tunnel from an ephemeral loopback port to `target`, on `relay`.
fn tunnel(target: SocketAddr, relay: Relay, extra: &[&str]) -> Proc {
    let spec = format!("127.0.0.1:0={target}");
    let mut args = vec!["-L", spec.as_str()];
    args.extend_from_slice(relay);
    args.extend_from_slice(extra);
    Proc::start(BIN, &args)
}

#[test]
fn help_exits_0_with_examples() {
    let Finished {
        code, stdout: out, ..
    } = run(BIN, &["--help"], LIMIT);
    assert_eq!(code, Some(0));
    assert!(out.contains("EXAMPLES:"), "{out}");
    assert!(
        out.contains("tcp-tunnel -L 0.0.0.0:9090=server:8080"),
        "{out}"
    );
}

#[test]
fn bad_forward_or_flag_exits_2_with_one_line() {
    for args in [
        &["-L", "9090=server:8080"][..],
        &["-L", "0.0.0.0:9090=server"],
        &["-L", "0.0.0.0:9090=::1:8080"],
        &["-L"],
        &[],
        &["-L", "127.0.0.1:0=127.0.0.1:1", "--prot", "80"],
        &["-L", "127.0.0.1:0=127.0.0.1:1", "--idle-timeout", "soon"],
        &[
            "-L",
            "127.0.0.1:0=127.0.0.1:1",
            "--threads",
            "--idle-timeout",
            "5",
        ],
    ] {
        let Finished {
            code,
            stdout: out,
            stderr: err,
            ..
        } = run(BIN, args, LIMIT);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("tcp-tunnel: "), "{err}");
    }
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let spec = format!("{addr}=127.0.0.1:1");
    let Finished {
        code, stderr: err, ..
    } = run(BIN, &["-L", &spec], LIMIT);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim(),
        format!("tcp-tunnel: bind {addr}: address already in use (EADDRINUSE)")
    );
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn eight_concurrent_clients_get_their_8_mib_back_exactly(relay: Relay) {
    let target = echo_target();
    let t = tunnel(target, relay, &[]);
    let addr = t.addr();
    let clients: Vec<_> = (0..8u64)
        .map(|i| {
            thread::spawn(move || {
                let data = random_bytes(0x5eed + i, 8 * 1024 * 1024);
                let want = sha(&data);
                let mut s = connect(addr);
                let mut r = s.try_clone().unwrap();
                let reader = thread::spawn(move || read_to_eof(&mut r));
                s.write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let back = reader.join().unwrap();
                assert_eq!(back.len(), data.len(), "client {i}");
                assert_eq!(sha(&back), want, "client {i}: digest differs");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // Eight pairs, each closed with 8 MiB both ways.
    let closed = testkit::wait_until(Duration::from_secs(5), || {
        (t.count("c→s 8388608 bytes, s→c 8388608 bytes") == 8).then_some(())
    });
    assert!(closed.is_some(), "{:?}", t.lines());
}

fn client_half_close_still_gets_the_full_echo(relay: Relay) {
    let target = echo_target();
    let t = tunnel(target, relay, &[]);
    let mut s = connect(t.addr());
    let data = random_bytes(3, 1024 * 1024);
    s.write_all(&data).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let back = read_to_eof(&mut s);
    assert!(back == data, "echo differs ({} bytes back)", back.len());
    t.wait_line(
        "#1 c→s half-close: client sent FIN after 1048576 bytes",
        Duration::from_secs(5),
    )
    .unwrap();
}

/// Small messages take the copy path and bulk the splice path, and one connection switches
/// between them as its traffic changes: every byte must come back exactly, in order, at each
/// switch (a ping after a bulk transfer is the first read of the copy path again).
fn small_messages_bulk_and_small_again_come_back_exactly(relay: Relay) {
    let target = echo_target();
    let t = tunnel(target, relay, &[]);
    let mut s = connect(t.addr());
    let mut total = 0usize;
    for round in 0..3u64 {
        // Pings from 1 byte up to past the copy buffer (16 KiB), one at a time.
        for size in [1, 2, 100, 1500, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 3] {
            let msg = random_bytes(round * 100 + size as u64, size);
            s.write_all(&msg).unwrap();
            let mut back = vec![0u8; size];
            s.read_exact(&mut back).unwrap();
            assert!(
                back == msg,
                "round {round}: a {size}-byte ping came back different"
            );
            total += size;
        }
        // Bulk both ways at once: a writer thread, this thread reading the echo.
        let data = random_bytes(0xb01c + round, 4 * 1024 * 1024);
        let mut w = s.try_clone().unwrap();
        let sent = data.clone();
        let writer = thread::spawn(move || w.write_all(&sent).unwrap());
        let mut back = vec![0u8; data.len()];
        s.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        assert_eq!(
            sha(&back),
            sha(&data),
            "round {round}: the bulk echo differs"
        );
        total += data.len();
    }
    s.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut s).is_empty());
    let line = t.wait_line("#1 closed:", Duration::from_secs(5)).unwrap();
    assert!(
        line.contains(&format!("c→s {total} bytes, s→c {total} bytes")),
        "{line}"
    );
}

/// TCP urgent data (`send(MSG_OOB)`) in the middle of a stream: the tunnel passes the urgent byte
/// on in line and keeps going. Reading through a pipe (`splice`) stops for good at the urgent mark,
/// so the tunnel must notice it (EPOLLPRI) and read past it with `read`, in bulk as in small.
fn urgent_data_is_passed_on_in_line_and_does_not_stall_the_stream(relay: Relay) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let target = serve_target(move |mut s| {
        let _ = tx.lock().unwrap().send(read_to_eof(&mut s));
    });
    let t = tunnel(target, relay, &[]);
    for bulk in [0usize, 4 * 1024 * 1024] {
        let s = connect(t.addr());
        let head = random_bytes(0x0b + bulk as u64, bulk + 5);
        (&s).write_all(&head).unwrap();
        socket2::SockRef::from(&s).send_out_of_band(b"!").unwrap();
        (&s).write_all(b"and the rest").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut want = head;
        want.extend_from_slice(b"!and the rest");
        assert_eq!(got.len(), want.len(), "after {bulk} bytes of bulk");
        assert!(got == want, "after {bulk} bytes of bulk: the bytes differ");
    }
}

/// A target that greets, half-closes at once, then reads until the client's FIN.
fn half_closing_target() -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let addr = serve_target(move |mut s| {
        s.write_all(b"HELLO").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let got = read_to_eof(&mut s);
        let _ = tx.lock().unwrap().send(got);
    });
    (addr, rx)
}

fn target_that_half_closes_first_still_receives_after_a_pause(relay: Relay) {
    let (target, got) = half_closing_target();
    let t = tunnel(target, relay, &[]);
    let mut s = connect(t.addr());
    // The target's FIN reaches us through the tunnel: HELLO, then EOF.
    assert_eq!(read_to_eof(&mut s), b"HELLO");
    t.wait_line("#1 s→c half-close", Duration::from_secs(5))
        .unwrap();
    // No grace timer: the c→s direction still works long after.
    thread::sleep(Duration::from_secs(2));
    s.write_all(b"AFTER THE PAUSE").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let received = got.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(received, b"AFTER THE PAUSE");
    let close = t.wait_line("#1 closed:", Duration::from_secs(5)).unwrap();
    assert!(
        close.contains("c→s 15 bytes, s→c 5 bytes") && close.ends_with("server closed first"),
        "{close}"
    );
}

/// A loopback port with nobody listening.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn target_down_closes_the_client_within_1s_and_the_next_client_is_served(relay: Relay) {
    let target = closed_port();
    let t = tunnel(target, relay, &[]);
    let addr = t.addr();
    let mut s = connect(addr);
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    let took = start.elapsed();
    assert!(matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    let line = t
        .wait_line("#1 connect to", Duration::from_secs(2))
        .unwrap();
    assert!(
        line.contains("[ERROR]") && line.contains("connection refused (ECONNREFUSED)"),
        "{line}"
    );
    // The target comes up on the same port: the tunnel kept serving.
    let l = labnet::sock::reuse_listener(target).unwrap();
    thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        c.write_all(&b).unwrap();
    });
    let mut s = connect(addr);
    s.write_all(b"next").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"next");
}

fn log_file_holds_one_line_per_event_in_order(relay: Relay) {
    let target = echo_target();
    let dir = std::env::temp_dir().join(format!("tunnel-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("tunnel.log");
    let _ = std::fs::remove_file(&log);
    let t = tunnel(target, relay, &["--log", log.to_str().unwrap()]);
    let addr = t.addr();
    let mut s = connect(addr);
    let me = s.local_addr().unwrap();
    s.write_all(b"TUNNEL TEST\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"TUNNEL TEST\n");
    t.wait_line("#1 closed", Duration::from_secs(5)).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for l in &lines {
        // [YYYY-MM-DD HH:MM:SS.mmm] [LEVEL] ...
        let b = l.as_bytes();
        assert!(b[0] == b'[' && b[5] == b'-' && b[11] == b' ' && b[20] == b'.' && b[24] == b']');
    }
    assert!(lines[0].ends_with(&format!("[INFO] tunnel listening on {addr} -> {target}")));
    assert!(lines[1].ends_with(&format!(
        "[INFO] #1 accepted {me} on {addr}, connecting to {target} ({target})"
    )));
    assert!(lines[2].contains(&format!("[INFO] #1 connected: {me} → {addr} | 127.0.0.1:")));
    assert!(lines[2].contains(&format!(" → {target} (")));
    assert!(lines[3].ends_with(
        "[INFO] #1 c→s half-close: client sent FIN after 12 bytes, passed on with shutdown(Write) to the server"
    ));
    assert!(lines[4].ends_with(
        "[INFO] #1 s→c half-close: server sent FIN after 12 bytes, passed on with shutdown(Write) to the client"
    ));
    assert!(lines[5].contains("[INFO] #1 closed: c→s 12 bytes, s→c 12 bytes, "));
    assert!(lines[5].ends_with(" s, client closed first"));
    // stdout got the same events.
    assert_eq!(t.lines().len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

fn json_log_lines_carry_id_direction_and_bytes(relay: Relay) {
    let target = echo_target();
    let t = tunnel(target, relay, &["--json"]);
    let mut s = connect(t.addr());
    s.write_all(b"abc").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"abc");
    let line = t.wait_line("\"close\"", Duration::from_secs(5)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "close");
    assert_eq!(v["id"], 1);
    assert_eq!(v["c2s_bytes"], 3);
    assert_eq!(v["s2c_bytes"], 3);
    assert_eq!(v["closed_by"], "client");
    assert_eq!(v["peer"], s.local_addr().unwrap().to_string());
    let half = t
        .wait_line("\"half_close\"", Duration::from_secs(1))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&half).unwrap();
    assert_eq!(v["dir"], "c→s");
}

fn two_tunnels_in_one_process_both_work_v4_and_v6(relay: Relay) {
    let upper = serve_target(|mut s| {
        let v = read_to_eof(&mut s);
        s.write_all(&v.to_ascii_uppercase()).unwrap();
    });
    let echo = echo_target();
    let a = format!("127.0.0.1:0={echo}");
    let b = format!("[::1]:0=127.0.0.1:{}", upper.port());
    let mut args = vec!["-L", &a, "-L", &b];
    args.extend_from_slice(relay);
    let t = Proc::start(BIN, &args);
    let addrs = t.listening(2);
    assert!(addrs[1].is_ipv6());
    for (addr, want) in [(addrs[0], &b"tunnel one"[..]), (addrs[1], b"TUNNEL TWO")] {
        let mut s = connect(addr);
        s.write_all(if addr == addrs[0] {
            b"tunnel one"
        } else {
            b"tunnel two"
        })
        .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut s), want);
    }
}

fn reset_by_the_client_resets_the_target_side(relay: Relay) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let target = serve_target(move |mut s| {
        let mut buf = [0u8; 16];
        let first = s.read(&mut buf).map(|n| buf[..n].to_vec());
        let second = s.read(&mut buf).map_err(|e| e.kind());
        let _ = tx.lock().unwrap().send((first.unwrap(), second));
    });
    let t = tunnel(target, relay, &[]);
    let s = connect(t.addr());
    (&s).write_all(b"bye").unwrap();
    t.wait_line("#1 connected", Duration::from_secs(5)).unwrap();
    thread::sleep(Duration::from_millis(100));
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let (first, second) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(first, b"bye");
    assert_eq!(second, Err(ErrorKind::ConnectionReset));
    let line = t
        .wait_line("#1 reset by client", Duration::from_secs(2))
        .unwrap();
    assert!(line.contains("server side reset too"), "{line}");
}

fn reset_by_the_target_resets_the_client_side(relay: Relay) {
    let target = serve_target(|mut s| {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        // SO_LINGER 0: the close sends RST.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let t = tunnel(target, relay, &[]);
    let mut s = connect(t.addr());
    s.write_all(b"hi").unwrap();
    let mut b = [0u8; 16];
    let r = s.read(&mut b).map_err(|e| e.kind());
    assert_eq!(r, Err(ErrorKind::ConnectionReset));
    let line = t
        .wait_line("#1 reset by server", Duration::from_secs(2))
        .unwrap();
    assert!(
        line.contains("client side reset too; c→s 2 bytes, s→c 0 bytes"),
        "{line}"
    );
}

fn ten_thousand_bad_connections_leave_no_descriptor_thread_or_close_wait(relay: Relay) {
    let target = echo_target();
    let t = tunnel(target, relay, &[]);
    let addr = t.addr();
    let mut s = connect(addr);
    s.write_all(b"w").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"w");
    t.wait_line("#1 closed", Duration::from_secs(5)).unwrap();
    let pid = t.pid();
    // The tunnel logs the close just before it closes the pair's two sockets: count its
    // descriptors once it holds no connection.
    testkit::wait_until(Duration::from_secs(5), || {
        (connection_count(pid) == 0).then_some(())
    })
    .expect("pair #1 released");
    let (fds, threads) = (fd_count(pid), thread_count(pid));
    assert_eq!(threads, idle_threads(relay), "{relay:?}");
    let counts = abuse(addr, 10_000);
    assert_eq!(counts, [2500, 2500, 2500, 2500]);
    assert_back_to(pid, fds, threads, Duration::from_secs(15));
    let mut s = connect(addr);
    s.write_all(b"still here").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"still here");
}

/// Threads of a tunnel with one `-L` and no connection: the event loop's one, or the threaded
/// relay's main thread and its accept thread.
fn idle_threads(relay: Relay) -> usize {
    if relay == THREADS { 2 } else { 1 }
}

/// The flag selects the relay: the threaded one runs two threads per open connection (its
/// client's thread and the server → client copy), the event loop none.
#[test]
fn threads_flag_runs_two_threads_per_connection_the_event_loop_none() {
    let target = echo_target();
    for (relay, per_connection) in [(EVENT_LOOP, 0), (THREADS, 2)] {
        let t = tunnel(target, relay, &[]);
        let held: Vec<_> = (1..=3)
            .map(|i| {
                let mut s = connect(t.addr());
                s.write_all(b"x").unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                t.wait_line(&format!("#{i} connected"), Duration::from_secs(5))
                    .unwrap();
                s
            })
            .collect();
        let want = idle_threads(relay) + per_connection * held.len();
        assert_eq!(thread_count(t.pid()), want, "{relay:?}");
    }
}

#[test]
fn client_gone_before_the_target_answered_is_cleaned_up() {
    // A target whose accept queue is full drops further SYNs: the tunnel's connects stay pending.
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let target = l.local_addr().unwrap().as_socket().unwrap();
    let _fill: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).ok()
        })
        .collect();
    let t = tunnel(target, EVENT_LOOP, &["--connect-timeout", "30"]);
    let addr = t.addr();
    let pid = t.pid();
    let give_up = || {
        let s = connect(addr);
        s.set_nodelay(true).unwrap();
        (&s).write_all(b"hello?").unwrap();
        // The client gives up before any answer: a reset, as a browser's cancel does.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    };
    // One first, so the count starts from a running event loop (the tunnel prints its listening
    // line before it makes its epoll and waker descriptors) that has made its spare socket.
    give_up();
    t.wait_line("#1 reset by client", Duration::from_secs(5))
        .unwrap();
    testkit::wait_until(Duration::from_secs(5), || {
        (connection_count(pid) == 0).then_some(())
    })
    .expect("pair #1 released");
    let (fds, threads) = (fd_count(pid), thread_count(pid));
    for _ in 0..20 {
        give_up();
    }
    // Cleaned at once, not after the 30 s connect timeout.
    assert_back_to(pid, fds, threads, Duration::from_secs(5));
    assert_eq!(t.count("reset by client"), 21, "{:?}", t.lines());
}

#[test]
fn descriptor_limit_makes_accept_back_off_and_recover() {
    if !testkit::tool_or_skip(&["prlimit"]) {
        return;
    }
    let target = echo_target();
    let spec = format!("127.0.0.1:0={target}");
    let t = start_with_nofile(BIN, NOFILE, &["-L", &spec]);
    let addr = t.addr();
    let mut held = hold_at_descriptor_limit(&t, addr, 60);
    // No client was accepted only to be dropped: every accepted one is connected.
    assert_eq!(t.count("connect_failed") + t.count("failed after"), 0);
    held[0].write_all(b"first").unwrap();
    let mut b = [0u8; 5];
    held[0].read_exact(&mut b).unwrap();
    assert_eq!(&b, b"first");
    drop(held);
    recovers_from_descriptor_limit(&t, || {
        let mut s = connect(addr);
        s.write_all(b"again").ok()?;
        s.shutdown(Shutdown::Write).ok()?;
        let mut v = Vec::new();
        s.read_to_end(&mut v).ok()?;
        (v == b"again").then_some(())
    });
}

fn slow_target_does_not_make_the_tunnel_grow(relay: Relay) {
    // The target reads 64 KiB every 10 ms (6.4 MB/s) and checks every byte.
    let received = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(Mutex::new(true));
    let (r2, ok2) = (Arc::clone(&received), Arc::clone(&ok));
    let pattern = Arc::new(random_bytes(11, 1024 * 1024));
    let p2 = Arc::clone(&pattern);
    let target = serve_target(move |mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0usize;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for &b in &buf[..n] {
                        if b != p2[at % p2.len()] {
                            *ok2.lock().unwrap() = false;
                        }
                        at += 1;
                    }
                    r2.fetch_add(n as u64, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
    });
    let t = tunnel(target, relay, &[]);
    let pid = t.pid();
    let mut s = connect(t.addr());
    s.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let base = rss_kib(pid);
    let mut max = base;
    let mut sent: u64 = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    let limit: u64 = 200 * 1024 * 1024;
    let chunk = 64 * 1024;
    while Instant::now() < deadline && sent < limit {
        let off = (sent as usize) % pattern.len();
        let end = (off + chunk).min(pattern.len());
        match s.write(&pattern[off..end]) {
            Ok(n) => sent += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                max = max.max(rss_kib(pid));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    max = max.max(rss_kib(pid));
    // Sent far more than the target took: the rest waits in kernel buffers, not in the tunnel.
    let took = received.load(Ordering::Relaxed);
    assert!(
        sent > took + 4 * 1024 * 1024,
        "sent {sent}, target took {took}"
    );
    assert!(took > 1024 * 1024, "target took only {took} bytes");
    assert!(*ok.lock().unwrap(), "target saw corrupted bytes");
    assert!(
        max - base < 2 * 1024,
        "tunnel RSS grew from {base} KiB to {max} KiB"
    );
}

#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let target = echo_target();
    let t = tunnel(target, EVENT_LOOP, &["--idle-timeout", "1"]);
    let mut s = connect(t.addr());
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let quiet_since = Instant::now();
    let rest = read_to_eof(&mut s);
    let waited = quiet_since.elapsed();
    assert!(rest.is_empty());
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    let line = t
        .wait_line(
            "#1 idle for 1 s: closed both connections",
            Duration::from_secs(2),
        )
        .unwrap();
    assert!(line.contains("c→s 1 bytes, s→c 1 bytes"), "{line}");
}
