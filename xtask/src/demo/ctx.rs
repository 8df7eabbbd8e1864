//! What every demo shares: the context a demo runs in ([`Ctx`]: options, the report, the
//! captures it may make) and the small readers and writers of command lines and program output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use labnet::topo::Topology;
use labnet::{Error, Result};

use crate::capture::Capture;
use crate::lab::Site;
use crate::opts::Opts;
use crate::report::{Report, Verdict};

/// A capture requested with `cargo xtask capture HOST --out F -- demo NAME`.
pub struct Extra {
    /// Namespace host name (short).
    pub host: String,
    /// Interface.
    pub iface: String,
    /// tcpdump filter.
    pub filter: String,
    /// Where to copy the pcap.
    pub out: PathBuf,
}

/// What every demo gets: options, binaries, the report.
pub struct Ctx {
    /// Options.
    pub opts: Opts,
    /// The lab binaries.
    pub bins: PathBuf,
    /// Checks and narration.
    pub r: Report,
    /// Why captures cannot be made here (tcpdump missing, no root), once known.
    pub no_capture: Option<String>,
    /// Why the multicast route cannot be set (smcroute missing).
    pub no_mroute: Option<String>,
    /// An extra capture for `capture … -- demo`.
    pub extra: Option<Extra>,
    extra_running: Option<Capture>,
    tools_checked: bool,
}

/// What the loopback variants cannot show.
pub const NEEDS_NETNS: &str = "needs namespaces (run as root: sudo -E cargo xtask demo)";

impl Ctx {
    /// A context for `demo` (narrated) or `verify` (quiet).
    pub fn new(opts: Opts, bins: PathBuf) -> Ctx {
        Ctx {
            r: Report::new(opts.quiet),
            opts,
            bins,
            no_capture: None,
            no_mroute: None,
            extra: None,
            extra_running: None,
            tools_checked: false,
        }
    }

    /// Brings up `topo` (namespaces, or loopback with a printed reason).
    pub fn bring_up(&mut self, topo: &'static Topology) -> Result<Site> {
        let (site, why) = Site::up(topo, &self.opts, &self.bins)?;
        match why {
            None if self.opts.docker.is_some() => {
                // The image has tcpdump and smcroute: every observation can be shown.
                self.r.say(&format!(
                    "({} topology up in Docker containers of {}: {})",
                    topo.name,
                    self.opts.docker.as_deref().unwrap_or_default(),
                    topo.hosts
                        .iter()
                        .map(|h| format!("{} {}", topo.container(h.name), h.ipv4()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Some(why) => {
                self.r.say(&format!(
                    "(no namespaces: {why}; running the loopback variant on 127.0.0.0/8)"
                ));
                self.no_capture = Some(NEEDS_NETNS.into());
                self.no_mroute = Some(NEEDS_NETNS.into());
            }
            None => {
                if !self.tools_checked {
                    self.tools_checked = true;
                    self.no_capture = crate::packages::ensure(&["tcpdump"], self.opts.quiet)
                        .err()
                        .map(|e| e.to_string());
                    self.no_mroute = crate::packages::ensure(&["smcroute"], self.opts.quiet)
                        .err()
                        .map(|e| e.to_string());
                }
                self.r.say(&format!(
                    "({} topology up in network namespaces: {})",
                    topo.name,
                    topo.hosts
                        .iter()
                        .map(|h| format!("{} {}", topo.container(h.name), h.ipv4()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if let Some(x) = &self.extra {
            if site.topo.host(&x.host).is_some() && site.netns() && self.extra_running.is_none() {
                let c = Capture::start_at(&site, &x.host, &x.iface, &x.filter, x.out.clone())?;
                self.extra_running = Some(c);
            }
        }
        Ok(site)
    }

    /// Stops the extra capture (tcpdump wrote every packet as it came, `-U`) and says where it is.
    pub fn finish_extra(&mut self) {
        if let (Some(c), Some(x)) = (self.extra_running.take(), &self.extra) {
            let n = c.stop().map(|p| p.len()).unwrap_or(0);
            println!(
                "\ncapture: {n} packets in {} (open it in Wireshark)",
                x.out.display()
            );
        }
    }

    /// Starts a capture for a check, or returns why it cannot be made here.
    pub fn capture(&self, site: &Site, host: &str, filter: &str, name: &str) -> Result<Capture> {
        if let Some(why) = &self.no_capture {
            return Err(Error::msg(why.clone()));
        }
        Capture::start(site, host, "eth0", filter, name)
    }
}

/// One received datagram as a program printed it: `[RECV] … from IP:PORT … 'payload'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recv {
    /// The source address, when the line names one.
    pub src: Option<SocketAddr>,
    /// The payload (between quotes when quoted, else the whole message).
    pub text: String,
}

/// The RECV events of a program's output.
pub fn recv_lines(out: &str) -> Vec<Recv> {
    out.lines()
        .filter_map(|l| l.split_once("[RECV]").map(|(_, m)| m.trim()))
        .map(|m| {
            let src = m
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| c == ',' || c == ':' || c == '(' || c == ')'))
                .find_map(|w| w.parse::<SocketAddr>().ok());
            let text = match (m.find('\''), m.rfind('\'')) {
                (Some(a), Some(b)) if b > a => m[a + 1..b].to_owned(),
                _ => m.to_owned(),
            };
            Recv { src, text }
        })
        .collect()
}

/// A verdict from a condition: `yes` (what held) when it holds, else `no` (what was seen).
pub fn ok_if(cond: bool, yes: String, no: String) -> Verdict {
    if cond { Ok(yes) } else { Err(no) }
}

/// Seconds as a command-line value.
pub fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// A shell-like rendering of a command for the narration.
pub fn line(prog: &str, args: &[String]) -> String {
    let mut s = prog.to_owned();
    for a in args {
        s.push(' ');
        if a.is_empty()
            || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '!')
        {
            s.push('\'');
            s.push_str(&a.replace('\'', "'\\''"));
            s.push('\'');
        } else {
            s.push_str(a);
        }
    }
    s
}

/// `vec!["a".to_owned(), …]` from string slices.
pub fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_lines_find_source_and_payload() {
        let out = "[2026-01-01 00:00:00.000] [INFO] listening\n\
                   [2026-01-01 00:00:00.001] [RECV] 14 bytes from 172.20.0.100:50123 'HELLO_BCAST #0'\n";
        let v = recv_lines(out);
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].src,
            Some(
                "172.20.0.100:50123"
                    .parse()
                    .unwrap_or_else(|_| unreachable!())
            )
        );
        assert_eq!(v[0].text, "HELLO_BCAST #0");
    }
}
