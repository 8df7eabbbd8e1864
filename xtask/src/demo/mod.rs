//! `cargo xtask demo [NAME|all]`: each handout exercise played in front of the class.
//!
//! A demo brings up the topology it needs, prints the exact command a student types on which
//! host, runs it, says what to observe, checks every observation (PASS/FAIL), and tears the lab
//! down, also on Ctrl-C. `verify` runs the same functions with the narration off.

mod chat;
mod tp3;
mod week3;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use labnet::Error;
use labnet::topo::Topology;

use crate::capture::Capture;
use crate::report::Report;
use crate::site::{Opts, Site};

/// Every demo, in the order `all` runs them, with the handout part it plays.
pub const DEMOS: &[(&str, &str)] = &[
    ("broadcast", "week 3 exercise 1 / demo 1: UDP broadcast"),
    ("multicast", "week 3 exercise 2 / demo 2: UDP multicast"),
    ("tunnel", "week 3 exercise 3 / demo 3: TCP tunnel"),
    (
        "basics",
        "TP3 part 1: TCP stream in 16- and 8-byte recv calls",
    ),
    ("pmu", "TP3 part 2: PMU/PDC packetization over TCP/IPv6"),
    (
        "reset",
        "TP3 part 3: UDP reset with retransmission, dual stack",
    ),
    ("tv", "TP3 part 4: multicast TV and subscriber answers"),
    ("ws", "TP3 part 5: WebSocket PMU"),
    ("tls", "TP3 part 6: PMU over TLS"),
    ("chat", "chat lab: room over TCP, peer-to-peer over UDP"),
];

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
    pub fn bring_up(&mut self, topo: &'static Topology) -> Result<Site, String> {
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
                    self.no_capture = crate::tools::ensure(&["tcpdump"], self.opts.quiet).err();
                    self.no_mroute = crate::tools::ensure(&["smcroute"], self.opts.quiet).err();
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
    pub fn capture(
        &self,
        site: &Site,
        host: &str,
        filter: &str,
        name: &str,
    ) -> Result<Capture, String> {
        if let Some(why) = &self.no_capture {
            return Err(why.clone());
        }
        Capture::start(site, host, "eth0", filter, name)
    }
}

/// Runs the named demos, then prints the summary. Ok(true) when no observation failed.
pub fn run(ctx: &mut Ctx, names: &[&str]) -> bool {
    for name in names {
        if crate::proc::interrupted() {
            break;
        }
        run_one(ctx, name);
    }
    let (_, failed, not_shown) = ctx.r.counts();
    let strict = labnet::netns::strict();
    failed == 0 && !(strict && not_shown > 0) && !crate::proc::interrupted()
}

fn run_one(ctx: &mut Ctx, name: &str) {
    let what = DEMOS.iter().find(|d| d.0 == name).map_or(name, |d| d.1);
    ctx.r.demo = name.to_owned();
    ctx.r.title(what);
    let res = match name {
        "broadcast" => week3::broadcast(ctx),
        "multicast" => week3::multicast(ctx),
        "tunnel" => week3::tunnel(ctx),
        "basics" => tp3::basics(ctx),
        "pmu" => tp3::pmu(ctx),
        "reset" => tp3::reset(ctx),
        "tv" => tp3::tv(ctx),
        "ws" => tp3::ws(ctx),
        "tls" => tp3::tls(ctx),
        "chat" => chat::chat(ctx),
        _ => Err(format!("unknown demo {name}")),
    };
    ctx.finish_extra();
    if let Err(e) = res {
        // A demo that could not run at all still leaves a FAIL line naming why.
        ctx.r.check(name, "the demo ran to the end", Err(e));
    }
    if !ctx.opts.quiet {
        println!("  (lab torn down)");
    }
}

/// The demo names of a `demo` argument.
pub fn select(name: &str) -> Result<Vec<&'static str>, Error> {
    if name == "all" {
        return Ok(DEMOS.iter().map(|d| d.0).collect());
    }
    DEMOS
        .iter()
        .find(|d| d.0 == name)
        .map(|d| vec![d.0])
        .ok_or_else(|| {
            Error::usage(format!(
                "unknown demo '{name}': one of {}, all",
                DEMOS.iter().map(|d| d.0).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// `cargo xtask demo [--docker [--image IMG]] [NAME]`.
pub fn command(args: Vec<OsString>, mut opts: Opts) -> Result<(), Error> {
    let mut a = pico_args::Arguments::from_vec(args);
    let docker = a.contains("--docker");
    let image: Option<String> = a.opt_value_from_str("--image")?;
    let rest: Vec<String> = a
        .finish()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(bad) = rest.iter().find(|a| a.starts_with('-')) {
        return Err(Error::usage(format!("unknown option '{bad}'")));
    }
    if image.is_some() && !docker {
        return Err(Error::usage("--image goes with --docker"));
    }
    let name = match rest.as_slice() {
        [] => "all".to_owned(),
        [one] => one.clone(),
        [_, extra, ..] => return Err(Error::usage(format!("unexpected argument '{extra}'"))),
    };
    let names = select(&name)?;
    let bins = crate::site::binaries(&opts).map_err(Error::msg)?;
    // Docker: the image of the binaries just built (a prefixed run's own, removed at the end).
    let _image = if docker {
        let img = crate::docker::DemoImage::prepare(image, &opts, &bins).map_err(Error::msg)?;
        opts.docker = Some(img.name.clone());
        Some(img)
    } else {
        None
    };
    let mut ctx = Ctx::new(opts, bins);
    let ok = run(&mut ctx, &names);
    print!("{}", ctx.r.summary());
    if crate::proc::interrupted() {
        return Err(Error::msg("interrupted (Ctrl-C): the lab was torn down"));
    }
    if ok {
        Ok(())
    } else {
        Err(Error::msg(
            "some observations did not hold (see FAIL above)",
        ))
    }
}

/// `capture HOST --out F -- demo NAME`: the demo with one more capture on HOST.
pub fn run_with_capture(
    name: &str,
    _ns: &str,
    host: &str,
    iface: &str,
    filter: &str,
    out: &Path,
) -> Result<(), Error> {
    let names = select(name)?;
    let opts = Opts::default();
    let bins = crate::site::binaries(&opts).map_err(Error::msg)?;
    let mut ctx = Ctx::new(opts, bins);
    ctx.extra = Some(Extra {
        host: host.to_owned(),
        iface: iface.to_owned(),
        filter: filter.to_owned(),
        out: out.to_path_buf(),
    });
    let ok = run(&mut ctx, &names);
    print!("{}", ctx.r.summary());
    if ok {
        Ok(())
    } else {
        Err(Error::msg("some observations did not hold"))
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

    #[test]
    fn unknown_demo_is_a_usage_error() {
        assert_eq!(select("nope").err().map(|e| e.exit_code()), Some(2));
        assert_eq!(select("all").map(|v| v.len()).ok(), Some(DEMOS.len()));
    }
}
