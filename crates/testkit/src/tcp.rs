//! Loopback TCP for tests: clients with timeouts, small targets in the test process, and the
//! abuse every server and the tunnel must survive.
//!
//! Every socket here has [`IO_TIMEOUT`] for reads and writes: a failing test ends, it never
//! hangs.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Every socket in a test has this read/write timeout: a failing test ends, it never hangs.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected stream with the test timeouts set.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    with_timeouts(&s);
    s
}

fn with_timeouts(s: &TcpStream) {
    if let Err(e) = s
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
    {
        panic!("socket timeouts: {e}");
    }
}

/// Binds a TCP socket to `addr` without SO_REUSEADDR, as a server that forgot the option does
/// (std's `TcpListener::bind` sets it on Unix, so a test cannot use that to show the difference).
pub fn bind_without_reuseaddr(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(false)?;
    s.bind(&addr.into())
}

/// Reads until EOF (bounded by the socket's read timeout).
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    if let Err(e) = s.read_to_end(&mut v) {
        panic!("read until the peer closes (after {} bytes): {e}", v.len());
    }
    v
}

/// Writes `msg`, reads exactly as many bytes back and checks they are `msg` (an echo).
fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    let mut back = vec![0u8; msg.len()];
    if let Err(e) = s.write_all(msg).and_then(|()| s.read_exact(&mut back)) {
        panic!("echo of {:?}: {e}", String::from_utf8_lossy(msg));
    }
    assert_eq!(back, msg);
}

/// Opens and closes `total` connections to `addr`, from 4 threads, cycling through the four ways
/// a client can end: clean close after an echo, reset (SO_LINGER 0) with bytes in flight,
/// half-close then read the echo to EOF, and close right after connecting (before any answer).
/// Returns how many of each ran.
///
/// Every one of them is a connection the server is certain to accept, so a test may count them
/// all in the server's log. `connect()` returns once the client got the SYN-ACK, but when the
/// server's accept queue is full the kernel drops the handshake's last ACK and the server side
/// stays in SYN-RECV; a client that then resets would end a connection the server never had
/// (TCP promises nothing else). So the resetting client first reads an echo (the server has the
/// connection), then sends more and resets. The other kinds end with a FIN or wait for data,
/// which the client's kernel retransmits until the server's side completes the handshake.
pub fn abuse(addr: SocketAddr, total: usize) -> [usize; 4] {
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let threads = 4;
    let deadline = Instant::now() + Duration::from_secs(45);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let counts = Arc::clone(&counts);
            thread::spawn(move || {
                for i in (t..total).step_by(threads) {
                    assert!(Instant::now() < deadline, "abuse loop took over 45 s");
                    let kind = i % 4;
                    let mut s = connect(addr);
                    match kind {
                        0 => {
                            echo_once(&mut s, b"ping");
                            if let Err(e) = s.shutdown(Shutdown::Write) {
                                panic!("half-close: {e}");
                            }
                            assert!(read_to_eof(&mut s).is_empty());
                        }
                        1 => {
                            echo_once(&mut s, b"ping");
                            // SO_LINGER 0: close() sends RST instead of FIN.
                            if let Err(e) = s.write_all(b"gone").and_then(|()| {
                                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))
                            }) {
                                panic!("send, then SO_LINGER 0: {e}");
                            }
                        }
                        2 => {
                            if let Err(e) = s
                                .write_all(b"half")
                                .and_then(|()| s.shutdown(Shutdown::Write))
                            {
                                panic!("send, then half-close: {e}");
                            }
                            assert_eq!(read_to_eof(&mut s), b"half");
                        }
                        _ => {}
                    }
                    drop(s);
                    counts[kind].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        if let Err(panic) = h.join() {
            std::panic::resume_unwind(panic);
        }
    }
    [0, 1, 2, 3].map(|k| counts[k].load(Ordering::Relaxed) as usize)
}

/// A target that echoes, one thread per connection, in the test process.
pub fn echo_target() -> SocketAddr {
    serve_target(|mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// A target on 127.0.0.1 running `handle` for each connection in its own thread.
pub fn serve_target(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    // The kit's backlog (somaxconn), not std's 128: the abuse tests open connections faster than
    // this accept loop spawns threads, and an overflowing accept queue drops the handshake's last
    // ACK, which the tunnel saw as the target resetting a connection a second later.
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let l = labnet::sock::reuse_listener(bind)
        .unwrap_or_else(|e| panic!("listen on {bind} for a target: {e}"));
    let addr = l
        .local_addr()
        .unwrap_or_else(|e| panic!("the target's address: {e}"));
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            with_timeouts(&s);
            let h = Arc::clone(&handle);
            thread::spawn(move || h(s));
        }
    });
    addr
}
