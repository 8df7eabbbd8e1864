//! `pmu`: `lab-server`'s PMU service (TP3 part 2) under load.
//!
//! - sessions: `--sessions` connections opened at once, each sends `CMD_short:0`, then every
//!   reply is read to the server's close and checked (`This is PMU data 1` … `n`, nothing else).
//! - flood: one `CMD_floodme` of `--flood-bytes`, read to the close, against the same number of
//!   bytes sent over a direct loopback connection between two threads of this process. When
//!   lab-server caps the flood size, a round is several floods of its maximum back to back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use labnet::wire::pmu::PREFIX;
use labnet::{Context, Error, Result};

use crate::Config;
use crate::load;
use crate::report::{Bound, Case, Competitor, Metric, interleave};
use crate::sys::{self, Proc, free_port};

/// Messages per `CMD_short` session (fixed so every reply can be checked exactly).
const MESSAGES: u32 = 10;

/// Runs the PMU benchmark.
pub fn run(config: &Config) -> Result<Vec<Case>> {
    let n = config.sizes.sessions;
    sys::raise_nofile((n as u64) * 2 + 1024);
    let mut sessions = Case::new(
        "pmu-sessions",
        format!(
            "{n} connections opened at once, each sends CMD_short:0 (server --messages {MESSAGES}), every reply read to the close and checked"
        ),
        "lab-server",
    )
    .metric(Metric::higher("served", "sessions"))
    .metric(Metric::lower("seconds", "s"))
    .target_value("served", "lab-server", Bound::AtLeast(n as f64), &format!("all {n} served"));
    let mut bytes = config.sizes.flood_bytes;
    let mut repeats = 1u64;
    let mut flood = Case::new("pmu-flood", String::new(), "direct")
        .metric(Metric::higher("rate", "Gbit/s"))
        .target_ratio(
            "rate",
            "lab-server",
            "direct",
            Bound::AtLeast(0.5),
            "flood ≥ 0.5× direct",
        );

    let bin = match config.bins.get("lab-server", "lab-server") {
        Ok(b) => b,
        Err(why) => {
            sessions.skip("lab-server", why.clone());
            flood.skip("lab-server", why);
            flood.method = format!("CMD_floodme of {bytes} bytes");
            return Ok(vec![sessions, flood]);
        }
    };
    let (server, port) = match start(&bin, bytes) {
        Ok(s) => s,
        Err(e) => {
            // lab-server caps --flood-bytes; measure the largest it accepts and say so.
            let cap = 64 << 20;
            if bytes <= cap {
                return Err(e);
            }
            repeats = bytes.div_ceil(cap);
            flood.notes.push(format!(
                "lab-server refused --flood-bytes {bytes} ({e}): its maximum is {cap}, so each round moves {repeats} floods of {cap} bytes back to back (and direct {repeats} transfers of {cap})"
            ));
            bytes = cap;
            start(&bin, bytes)?
        }
    };
    let addr = sys::lo(port);
    flood.method = format!(
        "{repeats} × CMD_floodme of {bytes} bytes, each read to the close (connect → last byte); direct = the same transfers between two threads over loopback; rate over the whole round"
    );
    interleave(
        &mut sessions,
        config.rounds,
        vec![Competitor::new("lab-server", |_| {
            let t = Instant::now();
            let served = short_sessions(addr, n, Duration::from_secs(60))?;
            Ok(vec![
                ("served", served as f64),
                ("seconds", t.elapsed().as_secs_f64()),
            ])
        })],
    );
    interleave(
        &mut flood,
        config.rounds,
        vec![
            Competitor::new("direct", |_| {
                repeat_rate(repeats, bytes, || {
                    load::direct_transfer(bytes, Duration::from_secs(60))
                })
            }),
            Competitor::new("lab-server", |_| {
                repeat_rate(repeats, bytes, || {
                    flood_once(addr, bytes, Duration::from_secs(60))
                })
            }),
        ],
    );
    drop(server);
    Ok(vec![sessions, flood])
}

/// Runs `once` `repeats` times; the rate over all of them (Gbit/s), from each run's own rate.
fn repeat_rate(
    repeats: u64,
    bytes: u64,
    mut once: impl FnMut() -> Result<f64>,
) -> Result<Vec<(&'static str, f64)>> {
    let mut seconds = 0.0;
    for _ in 0..repeats {
        let gbps = once()?;
        seconds += bytes as f64 * 8.0 / (gbps * 1e9);
    }
    Ok(vec![(
        "rate",
        (repeats * bytes) as f64 * 8.0 / seconds / 1e9,
    )])
}

fn start(bin: &std::path::Path, flood_bytes: u64) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--no-reset", "--no-tv", "--no-ws", "--bind", "127.0.0.1"])
        .args(["--pmu-port", &port.to_string()])
        .args(["--messages", &MESSAGES.to_string()])
        .args(["--flood-bytes", &flood_bytes.to_string()]);
    let mut p = Proc::spawn("lab-server", cmd)?;
    p.wait_listening(port, Duration::from_secs(20))?;
    Ok((p, port))
}

/// Opens `n` sessions at once, sends `CMD_short:0` on each, reads every reply to the close.
/// Returns how many were served completely and correctly.
pub fn short_sessions(addr: SocketAddr, n: usize, budget: Duration) -> Result<usize> {
    let deadline = Instant::now() + budget;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .with_context(|| format!("connect session {i} to {addr}"))?;
        conns.push(s);
    }
    for s in &mut conns {
        s.write_all(b"CMD_short:0").context("send CMD_short:0")?;
    }
    let mut served = 0;
    let mut first_bad = None;
    for (i, s) in conns.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .context("read timeout")?;
        let mut reply = Vec::new();
        match s.read_to_end(&mut reply) {
            Ok(_) if reply_ok(&reply, MESSAGES) => served += 1,
            Ok(_) => {
                first_bad.get_or_insert_with(|| {
                    format!(
                        "session {i}: {:?}",
                        String::from_utf8_lossy(&reply[..reply.len().min(80)])
                    )
                });
            }
            Err(e) => {
                first_bad.get_or_insert_with(|| format!("session {i}: {e}"));
            }
        }
    }
    if let Some(bad) = first_bad {
        labnet::log::warn(format!(
            "pmu sessions: {} of {n} served; first failure {bad}",
            served
        ));
    }
    Ok(served)
}

/// True when `reply` is exactly `This is PMU data 1` … `This is PMU data n`, unseparated.
pub fn reply_ok(reply: &[u8], n: u32) -> bool {
    let Ok(text) = std::str::from_utf8(reply) else {
        return false;
    };
    let mut parts = text.split(PREFIX);
    if parts.next() != Some("") {
        return false;
    }
    let mut count = 0;
    for (i, p) in parts.enumerate() {
        if p != (i + 1).to_string() {
            return false;
        }
        count += 1;
    }
    count == n
}

/// One `CMD_floodme`; the rate in Gbit/s from connect to the last byte.
fn flood_once(addr: SocketAddr, bytes: u64, budget: Duration) -> Result<f64> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect {addr}"))?;
    s.write_all(b"CMD_floodme").context("send CMD_floodme")?;
    let got = load::read_to_end_counting(&mut s, t + budget)?;
    let secs = t.elapsed().as_secs_f64();
    if got != bytes {
        return Err(Error::msg(format!("flood: got {got} of {bytes} bytes")));
    }
    Ok(got as f64 * 8.0 / secs / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_check_accepts_exact_sequence_only() {
        let good: String = (1..=3).map(|i| format!("{PREFIX}{i}")).collect();
        assert!(reply_ok(good.as_bytes(), 3));
        assert!(!reply_ok(good.as_bytes(), 4));
        let skipped = format!("{PREFIX}1{PREFIX}3");
        assert!(!reply_ok(skipped.as_bytes(), 2));
        assert!(!reply_ok(b"ERROR: bad command\n", 1));
        assert!(!reply_ok(b"", 1));
    }
}
