//! `ws`: `ws-client` against the handout's Python `websocket-client`, both receiving one
//! `CMD_floodme` of `--ws-bytes` as one WebSocket message from `lab-server` (TP3 part 5).
//!
//! Each run is a whole process, timed from spawn to exit (what a student waits for), output to
//! `/dev/null`. The Python script (`peers/ws_flood.py`) reports the bytes it received, which are
//! checked; `ws-client` must exit 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labnet::{Error, Result};
use serde_json::Value;

use crate::Config;
use crate::report::{Bound, Case, Competitor, Metric, interleave};
use crate::sys::{Proc, free_port};

/// The Python competitor's script.
pub fn python_client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/ws_flood.py")
}

/// tungstenite's default `max_message_size`: a client that keeps it refuses larger messages.
const TUNGSTENITE_DEFAULT_MAX: u64 = 16 << 20;

/// Runs the WebSocket benchmark; when `ws-client` refuses the message size, measures again at
/// the largest size it accepts, so a ratio is still there (and the refusal noted).
pub fn run(config: &Config) -> Result<Vec<Case>> {
    let mut case = measure(config, config.sizes.ws_bytes)?;
    let refused = case.entry("ws-client").is_some_and(|e| {
        e.values("rate").is_empty() && e.errors.iter().any(|m| m.contains("too long"))
    });
    if refused && config.sizes.ws_bytes > TUNGSTENITE_DEFAULT_MAX {
        case.name = "ws-flood-refused".into();
        let mut smaller = measure(config, TUNGSTENITE_DEFAULT_MAX)?;
        smaller.notes.push(format!(
            "ws-client refused the {} byte message (tungstenite's default 16 MiB message limit): measured at 16 MiB",
            config.sizes.ws_bytes
        ));
        return Ok(vec![case, smaller]);
    }
    Ok(vec![case])
}

fn measure(config: &Config, bytes: u64) -> Result<Case> {
    let mut bytes = bytes;
    let mut case = Case::new("ws-flood", String::new(), "python-websocket-client")
        .metric(Metric::higher("rate", "MB/s"))
        .metric(Metric::lower("seconds", "s"))
        .target_ratio(
            "rate",
            "ws-client",
            "python-websocket-client",
            Bound::AtLeast(5.0),
            "≥ 5× Python websocket-client's throughput",
        );
    let server_bin = config.bins.get("lab-server", "lab-server");
    let client_bin = config.bins.get("ws-client", "ws-client");
    let server_bin = match server_bin {
        Ok(b) => b,
        Err(why) => {
            case.skip("ws-client", why.clone());
            case.skip("python-websocket-client", why);
            return Ok(case);
        }
    };
    let (server, port) = match start(&server_bin, bytes) {
        Ok(s) => s,
        Err(e) if bytes > 64 << 20 => {
            case.notes.push(format!(
                "lab-server refused --flood-bytes {bytes} ({e}); using 64 MiB"
            ));
            bytes = 64 << 20;
            start(&server_bin, bytes)?
        }
        Err(e) => return Err(e),
    };
    case.method = format!(
        "one CMD_floodme of {bytes} bytes = one WebSocket binary message from lab-server; whole client process timed spawn → exit, output to /dev/null"
    );
    let url = format!("ws://127.0.0.1:{port}");
    let mut comps = Vec::new();
    match crate::suite::chat::python() {
        Ok(py) => {
            let url = url.clone();
            comps.push(Competitor::new("python-websocket-client", move |_| {
                let t = Instant::now();
                let out = Command::new(&py)
                    .arg(python_client())
                    .arg(&url)
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                    .map_err(|e| Error::msg(format!("run python: {e}")))?;
                let secs = t.elapsed().as_secs_f64();
                let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
                    Error::msg(format!(
                        "ws_flood.py printed no JSON ({e}); exit {}",
                        out.status
                    ))
                })?;
                let got = v.get("bytes").and_then(Value::as_u64).unwrap_or(0);
                if got != bytes {
                    return Err(Error::msg(format!(
                        "python received {got} of {bytes} bytes"
                    )));
                }
                Ok(vec![("rate", bytes as f64 / secs / 1e6), ("seconds", secs)])
            }));
        }
        Err(why) => case.skip("python-websocket-client", why),
    }
    match client_bin {
        Ok(bin) => {
            comps.push(Competitor::new("ws-client", move |_| {
                let t = Instant::now();
                let out = Command::new(&bin)
                    .arg(&url)
                    .arg("CMD_floodme")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
                    .map_err(|e| Error::msg(format!("run ws-client: {e}")))?;
                let secs = t.elapsed().as_secs_f64();
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(Error::msg(format!(
                        "ws-client exited with {}: {}",
                        out.status,
                        err.trim()
                    )));
                }
                Ok(vec![("rate", bytes as f64 / secs / 1e6), ("seconds", secs)])
            }));
        }
        Err(why) => case.skip("ws-client", why),
    }
    interleave(&mut case, config.rounds, comps);
    drop(server);
    Ok(case)
}

fn start(bin: &Path, bytes: u64) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--no-pmu", "--no-reset", "--no-tv", "--bind", "127.0.0.1"])
        .args(["--ws-port", &port.to_string()])
        .args(["--flood-bytes", &bytes.to_string()]);
    let mut p = Proc::spawn("lab-server", cmd)?;
    p.wait_listening(port, Duration::from_secs(20))?;
    Ok((p, port))
}
