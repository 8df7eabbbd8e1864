//! The Rust load generators and in-process end points of the tunnel and PMU benchmarks.
//!
//! - [`EchoServer`]: thread-per-connection echo with `TCP_NODELAY`, the far end of the
//!   ping-pong test.
//! - [`ping_pong`]: one connection, 1 byte out, 1 byte back, many times: the round-trip time.
//! - [`Holder`] and [`hold`]: accept and keep thousands of idle connections, then prove each
//!   one still carries a byte both ways.
//! - [`direct_transfer`]: one stream of N bytes over loopback between two threads, the
//!   reference for "as fast as TCP goes here".
//!
//! Every loop is bounded in count and time; every socket has timeouts.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use labnet::{Context, Error, Result};
use socket2::{Domain, Socket, Type};

/// A listener on 127.0.0.1 with a deep accept queue: 10,000 connects in a burst must not
/// overflow it (std's `TcpListener::bind` asks for 128).
pub fn listener(backlog: i32) -> Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).context("socket")?;
    s.set_reuse_address(true).context("SO_REUSEADDR")?;
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .context("bind 127.0.0.1:0")?;
    s.listen(backlog).context("listen")?;
    Ok(s.into())
}

/// Closes with a RST instead of a FIN (SO_LINGER 0): tens of thousands of benchmark connections
/// then leave no TIME_WAIT entries behind to exhaust the ephemeral ports of the next round.
pub fn abort(stream: TcpStream) {
    let s = Socket::from(stream);
    let _ = s.set_linger(Some(Duration::ZERO));
}

/// A thread-per-connection echo server on 127.0.0.1, stopped when dropped.
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    /// Starts it on a free port.
    pub fn start() -> Result<EchoServer> {
        let l = listener(1024)?;
        let addr = l.local_addr().context("local address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::Builder::new()
            .name("echo-accept".into())
            .spawn(move || {
                for conn in l.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut s) = conn else { continue };
                    let _ = thread::Builder::new()
                        .name("echo".into())
                        .stack_size(128 * 1024)
                        .spawn(move || {
                            let _ = s.set_nodelay(true);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                            let mut buf = vec![0u8; 64 * 1024];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 || s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                }
            })
            .context("start echo thread")?;
        Ok(EchoServer { addr, stop })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocked accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Round-trip times of a 1-byte ping-pong.
#[derive(Debug, Clone)]
pub struct Rtt {
    /// Median round trip, µs.
    pub median_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Round trips measured.
    pub count: usize,
}

/// Sends 1 byte and waits for it to come back, `TCP_NODELAY` on, for `duration` or `max`
/// round trips, after `warmup` unmeasured ones (the tunnel's first bytes also open its outbound
/// connection).
pub fn ping_pong(addr: SocketAddr, warmup: usize, max: usize, duration: Duration) -> Result<Rtt> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect {addr}"))?;
    s.set_nodelay(true).context("TCP_NODELAY")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .context("read timeout")?;
    let mut byte = [0u8; 1];
    let mut one = |s: &mut TcpStream, i: usize| -> Result<()> {
        s.write_all(&[i as u8]).context("ping write")?;
        s.read_exact(&mut byte).context("pong read")?;
        if byte[0] != i as u8 {
            return Err(Error::wire(format!(
                "pong {} for ping {}",
                byte[0], i as u8
            )));
        }
        Ok(())
    };
    for i in 0..warmup {
        one(&mut s, i)?;
    }
    let mut ns: Vec<u64> = Vec::with_capacity(max.min(1 << 20));
    let end = Instant::now() + duration;
    for i in 0..max {
        let t = Instant::now();
        one(&mut s, i)?;
        ns.push(t.elapsed().as_nanos() as u64);
        if Instant::now() >= end {
            break;
        }
    }
    let count = ns.len();
    let median = crate::stats::percentile(&mut ns, 50.0).unwrap_or(0);
    let p99 = crate::stats::percentile(&mut ns, 99.0).unwrap_or(0);
    Ok(Rtt {
        median_us: median as f64 / 1000.0,
        p99_us: p99 as f64 / 1000.0,
        count,
    })
}

/// Accepts connections and keeps them, idle, until told to check or drop them.
pub struct Holder {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Holder {
    /// Starts it on a free port.
    pub fn start() -> Result<Holder> {
        let l = listener(8192)?;
        let addr = l.local_addr().context("local address")?;
        let held = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, c, f) = (held.clone(), count.clone(), stop.clone());
        thread::Builder::new()
            .name("holder-accept".into())
            .spawn(move || {
                for conn in l.incoming() {
                    if f.load(Ordering::Relaxed) {
                        break;
                    }
                    match conn {
                        Ok(s) => {
                            lock(&h).push(s);
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        // EMFILE: wait a little rather than spin.
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
            .context("start holder thread")?;
        Ok(Holder {
            addr,
            held,
            count,
            stop,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for s in lock(&self.held).drain(..) {
            abort(s);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What [`hold`] found.
#[derive(Debug, Clone)]
pub struct Held {
    /// Connections that completed connect().
    pub connected: usize,
    /// Connections the holder accepted (through the proxy).
    pub accepted: usize,
    /// Connections that carried a byte both ways at the end.
    pub verified: usize,
    /// Seconds to open them all.
    pub open_seconds: f64,
    /// The first error met, if any.
    pub error: Option<String>,
}

/// Opens `n` connections to `proxy` (which forwards to `holder`), keeps them, and proves each
/// still works: a byte client → holder and back. `inspect` runs while all are held (to read the
/// proxy's memory). Connects in batches and waits for the holder to catch up, so the accept queue
/// of the proxy never overflows. Bounded by `budget` overall.
pub fn hold(
    proxy: SocketAddr,
    holder: &Holder,
    n: usize,
    budget: Duration,
    inspect: &mut dyn FnMut(),
) -> Held {
    let start = Instant::now();
    let deadline = start + budget;
    let mut clients: Vec<TcpStream> = Vec::with_capacity(n);
    let mut error = None;
    const BATCH: usize = 200;
    while clients.len() < n && Instant::now() < deadline {
        for _ in 0..BATCH.min(n - clients.len()) {
            match TcpStream::connect_timeout(&proxy, Duration::from_secs(2)) {
                Ok(s) => clients.push(s),
                Err(e) => {
                    error.get_or_insert_with(|| format!("connect #{}: {e}", clients.len()));
                    break;
                }
            }
        }
        if error.is_some() {
            break;
        }
        // Let the proxy accept and connect onward before the next batch.
        while holder.accepted() + BATCH < clients.len() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let connected = clients.len();
    while holder.accepted() < connected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let open_seconds = start.elapsed().as_secs_f64();
    let accepted = holder.accepted();
    inspect();
    let verified = verify(&mut clients, holder, deadline, &mut error);
    for s in clients {
        abort(s);
    }
    for s in lock(&holder.held).drain(..) {
        abort(s);
    }
    holder.count.store(0, Ordering::Relaxed);
    Held {
        connected,
        accepted,
        verified,
        open_seconds,
        error,
    }
}

/// One byte from every client to the holder, echoed back by the holder, read by every client.
/// Writes first, all of them, so the check costs three passes of cheap syscalls rather than
/// 10,000 sequential round trips through the proxy.
fn verify(
    clients: &mut [TcpStream],
    holder: &Holder,
    deadline: Instant,
    error: &mut Option<String>,
) -> usize {
    for c in clients.iter_mut() {
        let _ = c.write_all(b"h");
    }
    let mut held = lock(&holder.held);
    for s in held.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = s.set_read_timeout(Some(
            left.clamp(Duration::from_millis(1), Duration::from_secs(2)),
        ));
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_ok() {
            let _ = s.write_all(&b);
        }
    }
    drop(held);
    let mut ok = 0;
    for c in clients.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = c.set_read_timeout(Some(
            left.clamp(Duration::from_millis(1), Duration::from_secs(2)),
        ));
        let mut b = [0u8; 1];
        match c.read_exact(&mut b) {
            Ok(()) if &b == b"h" => ok += 1,
            Ok(()) => {
                error.get_or_insert_with(|| "wrong byte came back".into());
            }
            Err(e) => {
                error.get_or_insert_with(|| format!("byte did not come back: {e}"));
            }
        }
    }
    ok
}

/// Sends `bytes` over one loopback connection from one thread to another and returns the
/// receiver's rate in Gbit/s (first byte written → last byte read).
pub fn direct_transfer(bytes: u64, budget: Duration) -> Result<f64> {
    let l = listener(16)?;
    let addr = l.local_addr().context("local address")?;
    let sender = thread::Builder::new()
        .name("direct-send".into())
        .spawn(move || -> io::Result<()> {
            let (mut s, _) = l.accept()?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            let chunk = vec![b'x'; 256 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            s.shutdown(Shutdown::Write)
        })
        .context("start sender thread")?;
    let start = Instant::now();
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).context("connect")?;
    let got = read_to_end_counting(&mut c, start + budget)?;
    let secs = start.elapsed().as_secs_f64();
    let _ = sender.join();
    if got != bytes {
        return Err(Error::msg(format!(
            "direct transfer: got {got} of {bytes} bytes"
        )));
    }
    Ok(got as f64 * 8.0 / secs / 1e9)
}

/// Reads until the peer closes, counting bytes, within `deadline`.
pub fn read_to_end_counting(s: &mut TcpStream, deadline: Instant) -> Result<u64> {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .context("read timeout")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).context("read")?;
        if n == 0 {
            return Ok(got);
        }
        got += n as u64;
        if Instant::now() >= deadline {
            return Err(Error::msg(format!("time budget over after {got} bytes")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong_through_echo_counts_round_trips() {
        let echo = EchoServer::start().unwrap();
        let rtt = ping_pong(echo.addr(), 5, 50, Duration::from_secs(5)).unwrap();
        assert_eq!(rtt.count, 50);
        assert!(rtt.median_us > 0.0);
    }

    #[test]
    fn hold_direct_to_holder_verifies_every_connection() {
        let holder = Holder::start().unwrap();
        let mut inspected = false;
        let held = hold(
            holder.addr(),
            &holder,
            300,
            Duration::from_secs(20),
            &mut || inspected = true,
        );
        assert!(inspected);
        assert_eq!(held.connected, 300, "{:?}", held.error);
        assert_eq!(held.accepted, 300);
        assert_eq!(held.verified, 300);
        assert_eq!(holder.accepted(), 0, "holder emptied after the round");
    }

    #[test]
    fn direct_transfer_moves_every_byte() {
        let rate = direct_transfer(3 * 1024 * 1024 + 7, Duration::from_secs(20)).unwrap();
        assert!(rate > 0.0);
    }
}
