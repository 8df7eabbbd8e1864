//! The three lab topologies of the handouts: the same names and addresses in the Docker compose files,
//! the network-namespace backend of `cargo xtask lab`, and the tests (a test checks that the
//! compose files agree with these constants).
//!
//! ```text
//!  week3_network 172.20.0.0/24                      week3_remote 172.21.0.0/24
//!  server .10  router .254  client .100  receiver .101 | router .254  remote .10
//!                    └──── forwards IPv4 and 239.1.1.1 ────┘
//! ```
//! Beyond the handout, the second segment behind the router shows for real that broadcast stops
//! at a router and that the multicast TTL decides how far a datagram goes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One L2 segment: a Docker network, or a bridge in the namespace backend.
#[derive(Debug)]
pub struct Segment {
    /// Network name (`week3_network`).
    pub name: &'static str,
    /// Bridge device name inside the switch namespace.
    pub bridge: &'static str,
    /// IPv4 subnet address.
    pub subnet4: Ipv4Addr,
    /// IPv4 prefix length.
    pub prefix4: u8,
    /// The gateway address (Docker's bridge address).
    pub gateway4: Ipv4Addr,
    /// IPv6 subnet, where the segment has one.
    pub subnet6: Option<(Ipv6Addr, u8)>,
    /// IPv6 gateway, where the segment has one.
    pub gateway6: Option<Ipv6Addr>,
}

impl Segment {
    /// The directed broadcast address of the IPv4 subnet (`172.20.0.255`).
    pub fn broadcast4(&self) -> Ipv4Addr {
        let host_bits = 32 - u32::from(self.prefix4);
        Ipv4Addr::from(u32::from(self.subnet4) | ((1u32 << host_bits) - 1))
    }

    /// `172.20.0.0/24`.
    pub fn cidr4(&self) -> String {
        format!("{}/{}", self.subnet4, self.prefix4)
    }
}

/// One interface of a host.
#[derive(Debug)]
pub struct Link {
    /// Index into [`Topology::segments`].
    pub segment: usize,
    /// Interface name inside the host (`eth0`).
    pub ifname: &'static str,
    /// IPv4 address.
    pub ipv4: Ipv4Addr,
    /// IPv6 address, where the segment has IPv6.
    pub ipv6: Option<Ipv6Addr>,
}

/// A static route beyond the default one.
#[derive(Debug)]
pub struct Route {
    /// Destination in CIDR form.
    pub to: &'static str,
    /// Next hop.
    pub via: IpAddr,
}

/// A lab host: a container in compose, a namespace in the namespace backend.
#[derive(Debug)]
pub struct Host {
    /// Short name (`server`); also its DNS name inside the lab.
    pub name: &'static str,
    /// Its interfaces.
    pub links: &'static [Link],
    /// Default IPv4 gateway.
    pub gateway4: Ipv4Addr,
    /// Extra routes (to the other segment through the router).
    pub routes: &'static [Route],
    /// Whether the host forwards packets between its interfaces (the router).
    pub forwards: bool,
    /// Further names the host answers to in its lab: the handouts' server names
    /// (`tcpip.epfl.ch`, `chat.ttm4200.com`), so a student's program resolves them unchanged.
    pub aliases: &'static [&'static str],
}

impl Host {
    /// Address of the first interface.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.links[0].ipv4
    }

    /// IPv6 address of the first interface, if any.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.links[0].ipv6
    }
}

/// A named topology.
#[derive(Debug)]
pub struct Topology {
    /// `week3`, `chat` or `tp3`; also the prefix of container and namespace names.
    pub name: &'static str,
    /// Its segments.
    pub segments: &'static [Segment],
    /// Its hosts.
    pub hosts: &'static [Host],
}

impl Topology {
    /// A host by short name.
    pub fn host(&self, name: &str) -> Option<&'static Host>
    where
        Self: 'static,
    {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The container (and namespace) name of a host: `week3_client`.
    pub fn container(&self, host: &str) -> String {
        format!("{}_{}", self.name, host)
    }

    /// A topology by name.
    pub fn by_name(name: &str) -> Option<&'static Topology> {
        ALL.iter().copied().find(|t| t.name == name)
    }

    /// Every address of the lab with the names it answers to (host name, container name, the
    /// handout's aliases), IPv4 lines before IPv6 ones for each host: the lines of every host's
    /// `/etc/hosts`, and the `extra_hosts` of the compose files. IPv4 first because
    /// `gethostbyname` returns the first match, and the chat handout's
    /// `gethostbyname(gethostname())` must give the host's IPv4 address.
    pub fn name_entries(&self) -> Vec<(IpAddr, Vec<String>)> {
        let mut v = Vec::new();
        for h in self.hosts {
            let mut names = vec![h.name.to_owned(), self.container(h.name)];
            names.extend(h.aliases.iter().map(|a| (*a).to_owned()));
            for link in h.links {
                v.push((IpAddr::V4(link.ipv4), names.clone()));
            }
            for link in h.links {
                if let Some(v6) = link.ipv6 {
                    v.push((IpAddr::V6(v6), names.clone()));
                }
            }
        }
        v
    }
}

/// A host of any topology by its short name (`client`: the first topology that has one) or its
/// container name (`week3_client`, `chat_client1`).
pub fn find_host(name: &str) -> Option<(&'static Topology, &'static Host)> {
    ALL.iter().copied().find_map(|t| {
        let short = name.strip_prefix(&format!("{}_", t.name)).unwrap_or(name);
        t.host(short).map(|h| (t, h))
    })
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}
const fn v6(prefix: u16, sub: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(prefix, sub, 0, 0, 0, 0, 0, host)
}

/// The multicast group of week 3, exercise 2.
pub const WEEK3_GROUP: Ipv4Addr = v4(239, 1, 1, 1);
/// Broadcast port of week 3, exercise 1.
pub const BROADCAST_PORT: u16 = 5007;
/// Multicast port of week 3, exercise 2.
pub const MULTICAST_PORT: u16 = 5008;
/// Echo server port of week 3.
pub const ECHO_PORT: u16 = 8080;
/// Tunnel listen port of week 3.
pub const TUNNEL_PORT: u16 = 9090;
/// Chat server port (TCP) and peer-to-peer port (UDP).
pub const CHAT_PORT: u16 = 5000;
/// TP3 PMU over TCP.
pub const PMU_PORT: u16 = 5003;
/// TP3 UDP reset.
pub const RESET_PORT: u16 = 5004;
/// TP3 multicast TV port.
pub const TV_PORT: u16 = 5005;
/// TP3 multicast TV group.
pub const TV_GROUP: Ipv4Addr = v4(224, 1, 1, 1);
/// TP3 WebSocket PMU.
pub const WS_PORT: u16 = 5006;

const W3_NET: usize = 0;
const W3_REMOTE: usize = 1;
const VIA_ROUTER: &[Route] = &[Route {
    to: "172.21.0.0/24",
    via: IpAddr::V4(v4(172, 20, 0, 254)),
}];

/// Week 3: four hosts on 172.20.0.0/24 and `remote` behind the router on 172.21.0.0/24.
pub static WEEK3: Topology = Topology {
    name: "week3",
    segments: &[
        Segment {
            name: "week3_network",
            bridge: "br0",
            subnet4: v4(172, 20, 0, 0),
            prefix4: 24,
            gateway4: v4(172, 20, 0, 1),
            subnet6: None,
            gateway6: None,
        },
        Segment {
            name: "week3_remote",
            bridge: "br1",
            subnet4: v4(172, 21, 0, 0),
            prefix4: 24,
            gateway4: v4(172, 21, 0, 1),
            subnet6: None,
            gateway6: None,
        },
    ],
    hosts: &[
        Host {
            name: "server",
            links: &[Link {
                segment: W3_NET,
                ifname: "eth0",
                ipv4: v4(172, 20, 0, 10),
                ipv6: None,
            }],
            gateway4: v4(172, 20, 0, 1),
            routes: VIA_ROUTER,
            forwards: false,
            aliases: &[],
        },
        Host {
            name: "router",
            links: &[
                Link {
                    segment: W3_NET,
                    ifname: "eth0",
                    ipv4: v4(172, 20, 0, 254),
                    ipv6: None,
                },
                Link {
                    segment: W3_REMOTE,
                    ifname: "eth1",
                    ipv4: v4(172, 21, 0, 254),
                    ipv6: None,
                },
            ],
            gateway4: v4(172, 20, 0, 1),
            routes: &[],
            forwards: true,
            aliases: &[],
        },
        Host {
            name: "client",
            links: &[Link {
                segment: W3_NET,
                ifname: "eth0",
                ipv4: v4(172, 20, 0, 100),
                ipv6: None,
            }],
            gateway4: v4(172, 20, 0, 1),
            routes: VIA_ROUTER,
            forwards: false,
            aliases: &[],
        },
        Host {
            name: "receiver",
            links: &[Link {
                segment: W3_NET,
                ifname: "eth0",
                ipv4: v4(172, 20, 0, 101),
                ipv6: None,
            }],
            gateway4: v4(172, 20, 0, 1),
            routes: VIA_ROUTER,
            forwards: false,
            aliases: &[],
        },
        Host {
            name: "remote",
            links: &[Link {
                segment: W3_REMOTE,
                ifname: "eth0",
                ipv4: v4(172, 21, 0, 10),
                ipv6: None,
            }],
            gateway4: v4(172, 21, 0, 1),
            routes: &[Route {
                to: "172.20.0.0/24",
                via: IpAddr::V4(v4(172, 21, 0, 254)),
            }],
            forwards: false,
            aliases: &[],
        },
    ],
};

/// The chat lab: the server on `webserver`, three clients, IPv4 and IPv6.
pub static CHAT: Topology = Topology {
    name: "chat",
    segments: &[Segment {
        name: "chat_network",
        bridge: "br0",
        subnet4: v4(10, 20, 30, 0),
        prefix4: 24,
        gateway4: v4(10, 20, 30, 1),
        subnet6: Some((v6(0xfd00, 0, 0), 64)),
        gateway6: Some(v6(0xfd00, 0, 1)),
    }],
    hosts: &[
        Host {
            name: "webserver",
            links: &[Link {
                segment: 0,
                ifname: "eth0",
                ipv4: v4(10, 20, 30, 3),
                ipv6: Some(v6(0xfd00, 0, 3)),
            }],
            gateway4: v4(10, 20, 30, 1),
            routes: &[],
            forwards: false,
            aliases: &["chat.ttm4200.com"],
        },
        Host {
            name: "client1",
            links: &[Link {
                segment: 0,
                ifname: "eth0",
                ipv4: v4(10, 20, 30, 11),
                ipv6: Some(v6(0xfd00, 0, 0x11)),
            }],
            gateway4: v4(10, 20, 30, 1),
            routes: &[],
            forwards: false,
            aliases: &[],
        },
        Host {
            name: "client2",
            links: &[Link {
                segment: 0,
                ifname: "eth0",
                ipv4: v4(10, 20, 30, 12),
                ipv6: Some(v6(0xfd00, 0, 0x12)),
            }],
            gateway4: v4(10, 20, 30, 1),
            routes: &[],
            forwards: false,
            aliases: &[],
        },
        Host {
            name: "client3",
            links: &[Link {
                segment: 0,
                ifname: "eth0",
                ipv4: v4(10, 20, 30, 13),
                ipv6: Some(v6(0xfd00, 0, 0x13)),
            }],
            gateway4: v4(10, 20, 30, 1),
            routes: &[],
            forwards: false,
            aliases: &[],
        },
    ],
};

/// TP3: the course servers on `tcpip` and two student hosts, dual-stack.
pub static TP3: Topology = Topology {
    name: "tp3",
    segments: &[Segment {
        name: "tp3_network",
        bridge: "br0",
        subnet4: v4(172, 30, 0, 0),
        prefix4: 24,
        gateway4: v4(172, 30, 0, 1),
        subnet6: Some((v6(0xfd30, 0, 0), 64)),
        gateway6: Some(v6(0xfd30, 0, 1)),
    }],
    hosts: &[
        Host {
            name: "tcpip",
            links: &[Link {
                segment: 0,
                ifname: "eth0",
                ipv4: v4(172, 30, 0, 10),
                ipv6: Some(v6(0xfd30, 0, 0x10)),
            }],
            gateway4: v4(172, 30, 0, 1),
            routes: &[],
            forwards: false,
            aliases: &["tcpip.epfl.ch"],
        },
        Host {
            name: "student1",
            links: &[Link {
                segment: 0,
                ifname: "eth0",
                ipv4: v4(172, 30, 0, 101),
                ipv6: Some(v6(0xfd30, 0, 0x101)),
            }],
            gateway4: v4(172, 30, 0, 1),
            routes: &[],
            forwards: false,
            aliases: &[],
        },
        Host {
            name: "student2",
            links: &[Link {
                segment: 0,
                ifname: "eth0",
                ipv4: v4(172, 30, 0, 102),
                ipv6: Some(v6(0xfd30, 0, 0x102)),
            }],
            gateway4: v4(172, 30, 0, 1),
            routes: &[],
            forwards: false,
            aliases: &[],
        },
    ],
};

/// Every topology, in the order `lab up all` brings them up.
pub static ALL: [&Topology; 3] = [&WEEK3, &CHAT, &TP3];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn week3_addresses_match_the_handout() {
        assert_eq!(WEEK3.host("server").unwrap().ipv4(), v4(172, 20, 0, 10));
        assert_eq!(
            WEEK3.host("router").unwrap().links[1].ipv4,
            v4(172, 21, 0, 254)
        );
        assert_eq!(WEEK3.segments[0].broadcast4(), v4(172, 20, 0, 255));
        assert_eq!(WEEK3.container("client"), "week3_client");
        assert_eq!(
            CHAT.host("client3").unwrap().ipv6().unwrap().to_string(),
            "fd00::13"
        );
    }

    #[test]
    fn hosts_are_found_by_short_or_container_name() {
        let name = |n: &str| find_host(n).map(|(t, h)| (t.name, h.name));
        assert_eq!(name("client"), Some(("week3", "client")));
        assert_eq!(name("week3_router"), Some(("week3", "router")));
        assert_eq!(name("chat_client1"), Some(("chat", "client1")));
        assert_eq!(name("tcpip"), Some(("tp3", "tcpip")));
        assert_eq!(name("tp3_client"), None);
        assert_eq!(name("nohost"), None);
    }

    #[test]
    fn handout_server_names_resolve_to_their_hosts_ipv4_first() {
        let tp3 = TP3.name_entries();
        let epfl: Vec<String> = tp3
            .iter()
            .filter(|(_, names)| names.iter().any(|n| n == "tcpip.epfl.ch"))
            .map(|(a, _)| a.to_string())
            .collect();
        assert_eq!(epfl, ["172.30.0.10", "fd30::10"]);
        let chat = CHAT.name_entries();
        let (first, names) = chat
            .iter()
            .find(|(_, names)| names.iter().any(|n| n == "webserver"))
            .unwrap();
        assert_eq!(first.to_string(), "10.20.30.3");
        assert!(names.iter().any(|n| n == "chat.ttm4200.com"));
    }

    #[test]
    fn every_address_is_inside_its_segment() {
        for topo in ALL {
            for host in topo.hosts {
                for link in host.links {
                    let seg = &topo.segments[link.segment];
                    let mask = u32::MAX << (32 - seg.prefix4);
                    assert_eq!(
                        u32::from(link.ipv4) & mask,
                        u32::from(seg.subnet4),
                        "{}",
                        host.name
                    );
                }
            }
        }
    }
}
