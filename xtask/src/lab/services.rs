//! The course services of each lab (what the course runs on its hosts: echo-server and the
//! tunnel in week 3, lab-server in TP3, chat-server on request) and which of them a `lab up
//! --services none|default|all` starts. The namespace lab's command lines are
//! [`super::netns::services`]; these are the compose files' (a unit test keeps the two lists
//! equal).

use labnet::Error;
use labnet::topo::{self, Topology};

/// Which services `lab up` starts (`--services`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Services {
    /// None: every port is free for the students' own servers.
    None,
    /// What the course provides (week3: echo server and tunnel; tp3: lab-server; chat: nothing,
    /// the student's own chatserver.py runs on webserver).
    Default,
    /// Also the optional ones (chat: our chat-server on webserver).
    All,
}

impl std::str::FromStr for Services {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Services::None),
            "default" => Ok(Services::Default),
            "all" => Ok(Services::All),
            other => Err(Error::usage(format!(
                "unknown --services '{other}': none, default or all"
            ))),
        }
    }
}

/// A course service: the program a lab provides on one of its hosts (not the students' servers,
/// which they start themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseService {
    /// Compose service name, also the program (`echo-server`).
    pub name: &'static str,
    /// The host whose network namespace it runs in.
    pub host: &'static str,
    /// Its command line.
    pub argv: Vec<String>,
    /// TCP ports that answer once it runs.
    pub ports: Vec<u16>,
    /// The host a readiness probe connects from.
    pub probe_from: &'static str,
    /// Started by a plain `up` (true), or only with the profile `all` (false).
    pub default: bool,
}

/// The course services of a topology, as the compose files run them.
pub fn course_services(t: &Topology) -> Vec<CourseService> {
    let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    match t.name {
        "week3" => vec![
            CourseService {
                name: "echo-server",
                host: "server",
                argv: argv(&["echo-server", "--port", &topo::ECHO_PORT.to_string()]),
                ports: vec![topo::ECHO_PORT],
                probe_from: "client",
                default: true,
            },
            CourseService {
                name: "tcp-tunnel",
                host: "router",
                argv: argv(&[
                    "tcp-tunnel",
                    "-L",
                    &format!("0.0.0.0:{}=server:{}", topo::TUNNEL_PORT, topo::ECHO_PORT),
                    "--log",
                    "/tmp/tunnel.log",
                ]),
                ports: vec![topo::TUNNEL_PORT],
                probe_from: "client",
                default: true,
            },
        ],
        "tp3" => {
            let iface = t
                .host("tcpip")
                .map_or(String::new(), |h| h.ipv4().to_string());
            vec![CourseService {
                name: "lab-server",
                host: "tcpip",
                // The handout's reset server answers "either in IPv4 or IPv6 depending on the
                // time of day": one family at a time, switching every 20 s (as `lab up`).
                argv: argv(&[
                    "lab-server",
                    "--family",
                    "alternate",
                    "--period",
                    "20",
                    "--iface",
                    &iface,
                    "--record",
                    "/tmp/tv.jsonl",
                ]),
                ports: vec![topo::PMU_PORT, topo::WS_PORT],
                probe_from: "student1",
                default: true,
            }]
        }
        // The student's own chatserver.py runs on webserver; ours only on request.
        "chat" => vec![CourseService {
            name: "chat-server",
            host: "webserver",
            argv: argv(&["chat-server", "--port", &topo::CHAT_PORT.to_string()]),
            ports: vec![topo::CHAT_PORT],
            probe_from: "client1",
            default: false,
        }],
        _ => Vec::new(),
    }
}

/// The error of `lab service` for a host without the service asked for: it names what the lab
/// offers, `(service, host)` each.
pub fn no_such_service<'a>(
    name: Option<&str>,
    host: &str,
    lab: &str,
    offered: impl Iterator<Item = (&'a str, &'a str)>,
) -> Error {
    let offered: Vec<String> = offered.map(|(s, h)| format!("{s} on {h}")).collect();
    Error::usage(format!(
        "no service {}on {host}: the {lab} lab has {}",
        name.map_or(String::new(), |n| format!("{n} ")),
        if offered.is_empty() {
            "none".to_owned()
        } else {
            offered.join(", ")
        }
    ))
}
