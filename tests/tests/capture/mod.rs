//! tcpdump inside a testbed host, and the captured TCP segments read back with `pcap-file` and
//! `etherparse` (as `labnet::pcap` reads the demos' captures): what a student counts in
//! Wireshark for TP3 Q9, Q12 and Q19.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::BufReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use labnet::netns::Testbed;
use pcap_file::pcap::PcapReader;
use testkit::proc::Proc;
use testkit::wait_until;

/// One captured TCP segment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Source address.
    pub src: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// FIN flag.
    pub fin: bool,
    /// The TCP payload.
    pub payload: Vec<u8>,
}

/// A running tcpdump in one host of a testbed, writing a pcap file.
pub struct Capture {
    proc: Proc,
    path: PathBuf,
}

/// A unique pcap path under the temp dir.
fn pcap_path(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "netlab-e2e-{tag}-{}-{}.pcap",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// True when tcpdump can be run, under the kit's skip policy (`labnet::netns::or_skip`).
pub fn tcpdump_available() -> bool {
    testkit::tool_or_skip(&["tcpdump"])
}

impl Capture {
    /// Starts tcpdump on `host`'s eth0 with `filter` and waits until it captures.
    /// `--immediate-mode` hands each packet over at once and `-U` writes it at once, so a stop
    /// right after the traffic loses nothing; `-Z root` keeps the right to write the file.
    pub fn start(bed: &Testbed, host: &str, filter: &str) -> Capture {
        let path = pcap_path(host);
        let mut cmd = bed.command(host, "tcpdump");
        cmd.args([
            "-i",
            "eth0",
            "--immediate-mode",
            "-U",
            "-n",
            "-Z",
            "root",
            "-w",
        ])
        .arg(&path)
        .args(filter.split_whitespace());
        let proc = Proc::spawn(cmd).named("tcpdump");
        let listening = wait_until(Duration::from_secs(10), || {
            proc.stderr().contains("listening on").then_some(())
        });
        assert!(listening.is_some(), "tcpdump did not start: {}", proc.log());
        Capture { proc, path }
    }

    /// Stops tcpdump (SIGINT: it flushes and exits) and returns every TCP segment it saw.
    pub fn stop(mut self) -> Vec<Segment> {
        // Frames still on the veth reach tcpdump's socket within microseconds.
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.proc.pid().to_string()])
            .status();
        if self.proc.wait_exit(Duration::from_secs(5)).is_none() {
            self.proc.kill();
        }
        let segments = read(&self.path);
        let _ = std::fs::remove_file(&self.path);
        segments
    }
}

/// Every TCP segment of a pcap file (Ethernet link type, as on a veth).
pub fn read(path: &Path) -> Vec<Segment> {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = PcapReader::new(BufReader::new(file)).unwrap();
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { break };
        let Ok(sliced) = SlicedPacket::from_ethernet(&pkt.data) else {
            continue;
        };
        let src = match &sliced.net {
            Some(NetSlice::Ipv4(v4)) => IpAddr::V4(v4.header().source_addr()),
            Some(NetSlice::Ipv6(v6)) => IpAddr::V6(v6.header().source_addr()),
            None => continue,
        };
        if let Some(TransportSlice::Tcp(t)) = &sliced.transport {
            out.push(Segment {
                src,
                src_port: t.source_port(),
                dst_port: t.destination_port(),
                fin: t.fin(),
                payload: t.payload().to_vec(),
            });
        }
    }
    out
}

/// The segments with payload length more than 0 sent from `port` (the handout's words).
pub fn data_from(segments: &[Segment], port: u16) -> Vec<&Segment> {
    segments
        .iter()
        .filter(|s| s.src_port == port && !s.payload.is_empty())
        .collect()
}

/// How many times `needle` occurs in `hay`.
pub fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
