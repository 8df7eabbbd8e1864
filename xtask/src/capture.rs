//! Captures inside a lab host with tcpdump: the captures the demos read for their checks
//! ([`Capture`], read back with `labnet::pcap`), and `cargo xtask capture HOST --out FILE.pcap`
//! on a standing lab (`-- demo NAME` is the demo's own run with one more capture: `demo`).
//!
//! tcpdump runs inside the host (`tcpdump -i eth0 -U -w FILE`, entered with `nsenter` like
//! every lab command), so it sees exactly what that container's interface sees. The demo starts it and waits
//! for its "listening on" line before any traffic, so the first packet is never missed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labnet::error::Context as _;
use labnet::pcap::{self, Packet};
use labnet::topo::Topology;
use labnet::{Error, Result};

use crate::lab::netns::is_up;
use crate::lab::site::{Site, resolve_host};
use crate::proc::Bg;

/// How to get tcpdump when it is missing.
pub const INSTALL_TCPDUMP: &str = "apt-get install tcpdump";

/// A running tcpdump.
pub struct Capture {
    bg: Bg,
    /// The pcap file being written.
    pub path: PathBuf,
}

/// The tcpdump arguments: `--immediate-mode` hands each packet to tcpdump at once (with the
/// default TPACKET_V3 ring, a burst shorter than the ring's block timeout would still be in the
/// kernel when tcpdump is stopped, and lost), `-U` writes each packet as it arrives (Wireshark can
/// follow the file), `-Z root` keeps root so the file can be written where we ask, `-n` no name
/// lookups.
pub fn tcpdump_args(iface: &str, out: &Path, filter: &str) -> Vec<String> {
    let mut v = vec![
        "-i".to_owned(),
        iface.to_owned(),
        "--immediate-mode".to_owned(),
        "-U".to_owned(),
        "-n".to_owned(),
        "-Z".to_owned(),
        "root".to_owned(),
        "-w".to_owned(),
        out.display().to_string(),
    ];
    v.extend(filter.split_whitespace().map(str::to_owned));
    v
}

impl Capture {
    /// Starts tcpdump on `host` (interface `iface`) and waits until it is capturing.
    pub fn start(
        site: &Site,
        host: &str,
        iface: &str,
        filter: &str,
        name: &str,
    ) -> Result<Capture> {
        Capture::start_at(site, host, iface, filter, site.dir.join(name))
    }

    /// Like [`Capture::start`], writing to `path` (outside the demo's scratch directory, so the
    /// file outlives the lab).
    pub fn start_at(
        site: &Site,
        host: &str,
        iface: &str,
        filter: &str,
        path: PathBuf,
    ) -> Result<Capture> {
        let args = tcpdump_args(iface, &path, filter);
        let mut bg = site.spawn(host, "tcpdump", &args)?;
        bg.wait_for(Duration::from_secs(10), |_, err| {
            err.contains("listening on")
        })
        .map_err(|e| {
            Error::msg(format!(
                "tcpdump on {}: {e}: {}",
                site.display(host),
                bg.stderr().trim()
            ))
        })?;
        Ok(Capture { bg, path })
    }

    /// Stops tcpdump (SIGINT flushes the file) and reads the packets.
    pub fn stop(mut self) -> Result<Vec<Packet>> {
        // Frames still in flight on the veth reach tcpdump's socket within microseconds; a short
        // grace keeps the last FIN or IGMP leave in the file.
        crate::proc::pause(Duration::from_millis(300))?;
        let _ = self.bg.interrupt(Duration::from_secs(5))?;
        pcap::read(&self.path).map_err(Error::msg)
    }
}

/// `cargo xtask capture HOST [--iface IF] [--filter EXPR] --out FILE.pcap [-- demo NAME]`, read.
pub struct Request {
    /// The topology of the host.
    pub topo: &'static Topology,
    /// The host (short name).
    pub host: &'static str,
    /// The interface (`any` unless `--iface`).
    pub iface: String,
    /// The tcpdump filter (empty: everything).
    pub filter: String,
    /// The pcap file to write.
    pub out: PathBuf,
    /// The demo to capture from its start to its end (`-- demo NAME`), instead of a standing lab.
    pub demo: Option<String>,
}

impl Request {
    /// Reads the arguments, checks that tcpdump is there and that the host exists.
    pub fn from_args(args: Vec<OsString>) -> Result<Request, Error> {
        let mut a = pico_args::Arguments::from_vec(args);
        let filter: Option<String> = a.opt_value_from_str("--filter")?;
        let iface: String = a
            .opt_value_from_str("--iface")?
            .unwrap_or_else(|| "any".into());
        let out: Option<PathBuf> = a.opt_value_from_str("--out")?;
        let rest = a.finish();
        let mut it = rest.into_iter().map(|s| s.to_string_lossy().into_owned());
        let host = it
            .next()
            .ok_or_else(|| Error::usage("capture needs a HOST (e.g. router or week3_router)"))?;
        let tail: Vec<String> = it.collect();
        let out = out.ok_or_else(|| Error::usage("capture needs --out FILE.pcap"))?;
        let demo = match tail.split_first() {
            None => None,
            Some((dash, more)) if dash == "--" && more.first().is_some_and(|w| w == "demo") => {
                Some(more.get(1).cloned().unwrap_or_else(|| "all".into()))
            }
            Some((w, _)) => return Err(Error::usage(format!("unexpected argument '{w}'"))),
        };
        if !crate::proc::have("tcpdump") {
            return Err(Error::msg(format!(
                "tcpdump is not installed: {INSTALL_TCPDUMP}"
            )));
        }
        let (topo, h) = resolve_host(&host)?;
        Ok(Request {
            topo,
            host: h.name,
            iface,
            filter: filter.unwrap_or_default(),
            out: std::path::absolute(&out).unwrap_or(out),
            demo,
        })
    }
}

/// tcpdump in a host of a standing `lab up`, until Ctrl-C.
pub fn live(req: &Request) -> Result<(), Error> {
    let ns = req.topo.container(req.host);
    let (iface, filter, out) = (&req.iface, &req.filter, &req.out);
    if !is_up(&ns) {
        return Err(Error::msg(format!(
            "{ns} is not up: run `cargo xtask lab up {}` first",
            req.topo.name
        )));
    }
    println!(
        "capturing on {ns} ({iface}) into {}; Ctrl-C to stop",
        out.display()
    );
    println!(
        "  {ns}$ tcpdump {}",
        tcpdump_args(iface, out, filter).join(" ")
    );
    let mut child = labnet::netns::host_command(&ns, "tcpdump")
        .args(tcpdump_args(iface, out, filter))
        .spawn()
        .context("start tcpdump")?;
    // Ctrl-C reaches tcpdump too (same terminal process group); it flushes and ends. Our
    // handler only notes it, and we wait for tcpdump to finish writing.
    let status = child.wait().context("wait for tcpdump")?;
    if !status.success() && !crate::proc::interrupted() {
        return Err(Error::msg(format!("tcpdump ended with {status}")));
    }
    println!("wrote {} (open it in Wireshark)", out.display());
    Ok(())
}
