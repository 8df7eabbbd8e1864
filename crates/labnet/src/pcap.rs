//! Reading captures for the checks: `pcap-file` reads the file, `etherparse` slices each frame,
//! and the functions below answer the handouts' questions over the parsed packets ("is there an
//! IGMP membership report for 239.1.1.1?", "which TCP connections did a full three-way handshake
//! to port 9090?"). They are pure functions over [`Packet`]s, so the unit tests feed them
//! synthesized frames where the observation is present and where it is absent.
//!
//! Only IGMP is decoded by hand: etherparse stops at the IP payload for protocol 2, and the two
//! fields the lab needs (type and group, RFC 2236 §2) sit at fixed offsets.
//!
//! Both file formats a student hands in are read: pcap (tcpdump's `-w`) and pcapng (what
//! Wireshark saves by default), with Ethernet, raw IP or Linux cooked (v1 and v2, tcpdump's
//! `-i any`) frames. Shared by `cargo xtask` (the demos' captures) and `lab-grade` (the chat lab's
//! submitted captures) behind the `pcap` feature.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

/// The broadcast MAC address: every station on the segment accepts the frame.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// IGMP message types (RFC 2236 §2.1, RFC 3376 §4).
const IGMP_V1_REPORT: u8 = 0x12;
const IGMP_V2_REPORT: u8 = 0x16;
const IGMP_V2_LEAVE: u8 = 0x17;
const IGMP_V3_REPORT: u8 = 0x22;
/// IGMPv3 group record types that mean "I left" (RFC 3376 §4.2.12: CHANGE_TO_INCLUDE with no
/// sources) and "I am in" (MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE).
const V3_TO_INCLUDE: u8 = 3;
const V3_IS_EXCLUDE: u8 = 2;
const V3_TO_EXCLUDE: u8 = 4;

/// What an IGMP message says about a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IgmpKind {
    /// A membership report: a host joined (or still is in) the group.
    Report,
    /// A leave: the host left the group.
    Leave,
}

/// The transport part of a packet, as far as the checks need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A UDP datagram.
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Header length in bytes (always 8: ports, length, checksum; no sequence numbers).
        header_len: usize,
        /// The UDP length field (header + payload).
        length: u16,
        /// Payload bytes.
        payload: Vec<u8>,
    },
    /// A TCP segment.
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// SYN flag.
        syn: bool,
        /// ACK flag.
        ack_flag: bool,
        /// FIN flag.
        fin: bool,
        /// RST flag.
        rst: bool,
        /// Payload bytes.
        payload: Vec<u8>,
    },
    /// IGMP messages, one entry per group named (a v3 report may name several).
    Igmp(Vec<(IgmpKind, Ipv4Addr)>),
    /// Anything else, by IP protocol number.
    Other(u8),
}

/// One captured packet, reduced to what the checks look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture time since the epoch.
    pub time: Duration,
    /// Destination MAC, when the link layer has one (Ethernet).
    pub dst_mac: Option<[u8; 6]>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// The transport part.
    pub transport: Transport,
}

impl Packet {
    /// The TCP or UDP source socket address.
    pub fn src_sock(&self) -> Option<SocketAddr> {
        match &self.transport {
            Transport::Udp { src_port, .. } | Transport::Tcp { src_port, .. } => {
                Some(SocketAddr::new(self.src, *src_port))
            }
            _ => None,
        }
    }

    /// The TCP or UDP destination socket address.
    pub fn dst_sock(&self) -> Option<SocketAddr> {
        match &self.transport {
            Transport::Udp { dst_port, .. } | Transport::Tcp { dst_port, .. } => {
                Some(SocketAddr::new(self.dst, *dst_port))
            }
            _ => None,
        }
    }
}

/// The first four bytes of a pcapng file (its Section Header Block type).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Length of a Linux cooked v2 header (tcpdump 4.99's `-i any`): protocol, reserved, interface
/// index, ARPHRD type, packet type, address length, 8 address bytes.
const SLL2_HEADER: usize = 20;

/// Reads every IP packet of a pcap or pcapng file (Ethernet, Linux cooked v1/v2 or raw IP).
pub fn read(path: &Path) -> Result<Vec<Packet>, String> {
    let mut file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut magic = [0u8; 4];
    let is_ng = file.read_exact(&mut magic).is_ok() && magic == PCAPNG_MAGIC;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    if is_ng {
        return read_ng(file).map_err(|e| format!("read {}: {e}", path.display()));
    }
    let mut reader = PcapReader::new(BufReader::new(file))
        .map_err(|e| format!("read {}: {e}", path.display()))?;
    let link = reader.header().datalink;
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        // tcpdump killed mid-write can leave a truncated last record: keep what was complete.
        let Ok(pkt) = pkt else { break };
        if let Some(p) = parse(link, pkt.timestamp, &pkt.data) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The packets of a pcapng file: each enhanced packet is parsed with the link type of the
/// interface it names (a file may mix interfaces; a new section starts a new list).
fn read_ng(file: File) -> Result<Vec<Packet>, pcap_file::PcapError> {
    let mut reader = PcapNgReader::new(BufReader::new(file))?;
    let mut links: Vec<DataLink> = Vec::new();
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        let Ok(block) = block else { break };
        let (link, time, data) = match block {
            Block::SectionHeader(_) => {
                links.clear();
                continue;
            }
            Block::InterfaceDescription(i) => {
                links.push(i.linktype);
                continue;
            }
            Block::EnhancedPacket(p) => match links.get(p.interface_id as usize) {
                Some(link) => (*link, p.timestamp, p.data),
                None => continue,
            },
            // A simple packet belongs to the first interface and carries no time.
            Block::SimplePacket(p) => match links.first() {
                Some(link) => (*link, Duration::ZERO, p.data),
                None => continue,
            },
            _ => continue,
        };
        if let Some(p) = parse(link, time, &data) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Parses one frame of the given link type; `None` for frames without IP (ARP, …).
pub fn parse(link: DataLink, time: Duration, data: &[u8]) -> Option<Packet> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data).ok()?,
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data).ok()?,
        DataLink::LINUX_SLL2 => SlicedPacket::from_ip(data.get(SLL2_HEADER..)?).ok()?,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data).ok()?,
        _ => return None,
    };
    let dst_mac = match &sliced.link {
        Some(LinkSlice::Ethernet2(eth)) => Some(eth.destination()),
        _ => None,
    };
    let (src, dst, ttl, proto, ip_payload) = match sliced.net.as_ref()? {
        NetSlice::Ipv4(v4) => (
            IpAddr::V4(v4.header().source_addr()),
            IpAddr::V4(v4.header().destination_addr()),
            v4.header().ttl(),
            v4.payload().ip_number.0,
            v4.payload().payload,
        ),
        NetSlice::Ipv6(v6) => (
            IpAddr::V6(v6.header().source_addr()),
            IpAddr::V6(v6.header().destination_addr()),
            v6.header().hop_limit(),
            v6.payload().ip_number.0,
            v6.payload().payload,
        ),
    };
    let transport = match &sliced.transport {
        Some(TransportSlice::Udp(u)) => Transport::Udp {
            src_port: u.source_port(),
            dst_port: u.destination_port(),
            header_len: u.header_slice().len(),
            length: u.length(),
            payload: u.payload().to_vec(),
        },
        Some(TransportSlice::Tcp(t)) => Transport::Tcp {
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            syn: t.syn(),
            ack_flag: t.ack(),
            fin: t.fin(),
            rst: t.rst(),
            payload: t.payload().to_vec(),
        },
        _ if proto == 2 => Transport::Igmp(igmp(ip_payload)),
        _ => Transport::Other(proto),
    };
    Some(Packet {
        time,
        dst_mac,
        src,
        dst,
        ttl,
        transport,
    })
}

/// Decodes the group records of an IGMP message (v1/v2: type at 0, group at 4..8; v3 report:
/// record count at 6..8, records from 8, each type, aux length, source count, group, sources).
fn igmp(b: &[u8]) -> Vec<(IgmpKind, Ipv4Addr)> {
    let group_at = |i: usize| -> Option<Ipv4Addr> {
        let g: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(g))
    };
    match b.first() {
        Some(&IGMP_V1_REPORT | &IGMP_V2_REPORT) => group_at(4)
            .map(|g| vec![(IgmpKind::Report, g)])
            .unwrap_or_default(),
        Some(&IGMP_V2_LEAVE) => group_at(4)
            .map(|g| vec![(IgmpKind::Leave, g)])
            .unwrap_or_default(),
        Some(&IGMP_V3_REPORT) => {
            let mut out = Vec::new();
            let count = b.get(6..8).map_or(0, |n| u16::from_be_bytes([n[0], n[1]]));
            let mut at = 8;
            for _ in 0..count {
                let (Some(&kind), Some(&aux), Some(n)) =
                    (b.get(at), b.get(at + 1), b.get(at + 2..at + 4))
                else {
                    break;
                };
                let sources = usize::from(u16::from_be_bytes([n[0], n[1]]));
                let Some(group) = group_at(at + 4) else { break };
                match kind {
                    V3_TO_INCLUDE if sources == 0 => out.push((IgmpKind::Leave, group)),
                    V3_IS_EXCLUDE | V3_TO_EXCLUDE => out.push((IgmpKind::Report, group)),
                    _ => {}
                }
                at += 8 + 4 * sources + 4 * usize::from(aux);
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The packets carrying an IGMP message of `kind` for `group`, in capture order.
pub fn igmp_messages(packets: &[Packet], group: Ipv4Addr, kind: IgmpKind) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|p| matches!(&p.transport, Transport::Igmp(v) if v.contains(&(kind, group))))
        .collect()
}

/// The hosts that sent an IGMP membership report for `group` (the join of exercise 2).
pub fn igmp_reports(packets: &[Packet], group: Ipv4Addr) -> Vec<IpAddr> {
    senders(igmp_messages(packets, group, IgmpKind::Report))
}

/// The hosts that sent an IGMP leave for `group`.
pub fn igmp_leaves(packets: &[Packet], group: Ipv4Addr) -> Vec<IpAddr> {
    senders(igmp_messages(packets, group, IgmpKind::Leave))
}

fn senders(v: Vec<&Packet>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = v.iter().map(|p| p.src).collect();
    out.sort();
    out.dedup();
    out
}

/// A completed TCP three-way handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The side that sent the SYN.
    pub client: SocketAddr,
    /// The side that answered SYN-ACK.
    pub server: SocketAddr,
}

/// Every connection to `port` that shows SYN, then SYN-ACK acknowledging it, then the client's
/// ACK of the SYN-ACK (RFC 9293 §3.5).
pub fn tcp_handshakes(packets: &[Packet], port: u16) -> Vec<Handshake> {
    let mut out = Vec::new();
    for syn in packets.iter().filter(|p| {
        matches!(p.transport, Transport::Tcp { syn: true, ack_flag: false, dst_port, .. } if dst_port == port)
    }) {
        let (Some(client), Some(server)) = (syn.src_sock(), syn.dst_sock()) else {
            continue;
        };
        let Transport::Tcp { seq: isn, .. } = syn.transport else {
            continue;
        };
        let synack = packets.iter().find_map(|p| match p.transport {
            Transport::Tcp { syn: true, ack_flag: true, seq, ack, .. }
                if p.src_sock() == Some(server) && p.dst_sock() == Some(client) && ack == isn.wrapping_add(1) =>
            {
                Some(seq)
            }
            _ => None,
        });
        let Some(server_isn) = synack else { continue };
        let acked = packets.iter().any(|p| {
            matches!(p.transport, Transport::Tcp { syn: false, ack_flag: true, ack, .. }
                if p.src_sock() == Some(client) && p.dst_sock() == Some(server) && ack == server_isn.wrapping_add(1))
        });
        if acked && !out.contains(&Handshake { client, server }) {
            out.push(Handshake { client, server });
        }
    }
    out
}

/// True when both ends of the connection sent a FIN (an orderly close in both directions).
pub fn fins_both_ways(packets: &[Packet], conn: Handshake) -> bool {
    let fin_from = |from: SocketAddr, to: SocketAddr| {
        packets.iter().any(|p| {
            matches!(p.transport, Transport::Tcp { fin: true, .. })
                && p.src_sock() == Some(from)
                && p.dst_sock() == Some(to)
        })
    };
    fin_from(conn.client, conn.server) && fin_from(conn.server, conn.client)
}

/// TCP segments carrying data (payload length > 0) sent from `port` (the handout's Q9/Q12:
/// "packets with payload length more than 0 coming from the server").
pub fn data_segments_from(packets: &[Packet], port: u16) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|p| matches!(&p.transport, Transport::Tcp { src_port, payload, .. } if *src_port == port && !payload.is_empty()))
        .collect()
}

/// Total TCP payload bytes sent from `port`, counting each sequence range once (a retransmission
/// does not count twice).
pub fn data_bytes_from(packets: &[Packet], port: u16) -> usize {
    let mut seen = std::collections::HashSet::new();
    data_segments_from(packets, port)
        .into_iter()
        .filter_map(|p| match &p.transport {
            Transport::Tcp { seq, payload, .. } if seen.insert((p.src_sock(), *seq)) => {
                Some(payload.len())
            }
            _ => None,
        })
        .sum()
}

/// UDP datagrams to `port` (and to `dst`, when given).
pub fn udp_to(packets: &[Packet], dst: Option<IpAddr>, port: u16) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|p| matches!(p.transport, Transport::Udp { dst_port, .. } if dst_port == port))
        .filter(|p| dst.is_none_or(|d| p.dst == d))
        .collect()
}

/// UDP datagrams to `port` whose Ethernet destination is ff:ff:ff:ff:ff:ff.
pub fn broadcast_dst_mac(packets: &[Packet], port: u16) -> Vec<&Packet> {
    udp_to(packets, None, port)
        .into_iter()
        .filter(|p| p.dst_mac == Some(BROADCAST_MAC))
        .collect()
}

/// True when there is at least one UDP datagram to `port` and every one has the bare 8-byte UDP
/// header (ports, length, checksum: RFC 768), i.e. no sequence or acknowledgement number.
pub fn udp_has_no_seq(packets: &[Packet], port: u16) -> bool {
    let v = udp_to(packets, None, port);
    !v.is_empty()
        && v.iter().all(|p| {
            matches!(&p.transport, Transport::Udp { header_len: 8, length, payload, .. }
                if usize::from(*length) == 8 + payload.len())
        })
}

/// True when some TCP payload sent from `port` contains `needle` in clear text.
pub fn plaintext_from(packets: &[Packet], port: u16, needle: &[u8]) -> bool {
    data_segments_from(packets, port)
        .iter()
        .any(|p| match &p.transport {
            Transport::Tcp { payload, .. } => payload.windows(needle.len()).any(|w| w == needle),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use etherparse::{IpNumber, PacketBuilder};
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

    const CLIENT: [u8; 4] = [172, 20, 0, 100];
    const ROUTER: [u8; 4] = [172, 20, 0, 254];
    const SERVER: [u8; 4] = [172, 20, 0, 10];
    const GROUP: [u8; 4] = [239, 1, 1, 1];
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const MCAST_MAC: [u8; 6] = [1, 0, 0x5e, 1, 1, 1];

    /// Writes frames to a real pcap file and reads them back through [`read`], so the tests go
    /// through pcap-file and etherparse exactly as the checks do.
    fn roundtrip(frames: &[Vec<u8>]) -> Vec<Packet> {
        let dir = std::env::temp_dir().join(format!("labnet-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "t{}.pcap",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let file = File::create(&path).unwrap();
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(file, header).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ts = Duration::from_millis(i as u64);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
        drop(w);
        let out = read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        out
    }

    fn udp(
        src: [u8; 4],
        dst: [u8; 4],
        dst_mac: [u8; 6],
        sport: u16,
        dport: u16,
        body: &[u8],
    ) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, dst_mac)
            .ipv4(src, dst, 64)
            .udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, body).unwrap();
        v
    }

    fn igmp_frame(src: [u8; 4], dst: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MCAST_MAC)
            .ipv4(src, dst, 1)
            .write(&mut v, IpNumber::IGMP, body)
            .unwrap();
        v
    }

    #[derive(Clone, Copy)]
    struct Seg {
        from: ([u8; 4], u16),
        to: ([u8; 4], u16),
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        fin: bool,
    }

    fn tcp(s: Seg, body: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(s.from.0, s.to.0, 64)
            .tcp(s.from.1, s.to.1, s.seq, 64240);
        if s.syn {
            b = b.syn();
        }
        if s.fin {
            b = b.fin();
        }
        if let Some(a) = s.ack {
            b = b.ack(a);
        }
        let mut v = Vec::new();
        b.write(&mut v, body).unwrap();
        v
    }

    /// A full connection from `c` to `s`: handshake, one data segment each way, then (when
    /// `close`) FIN from both sides.
    fn connection(
        c: ([u8; 4], u16),
        s: ([u8; 4], u16),
        complete: bool,
        close: bool,
    ) -> Vec<Vec<u8>> {
        let seg = |from, to, seq, ack, syn, fin| Seg {
            from,
            to,
            seq,
            ack,
            syn,
            fin,
        };
        let mut v = vec![
            tcp(seg(c, s, 100, None, true, false), b""),
            tcp(seg(s, c, 500, Some(101), true, false), b""),
        ];
        if complete {
            v.push(tcp(seg(c, s, 101, Some(501), false, false), b""));
        }
        v.push(tcp(
            seg(c, s, 101, Some(501), false, false),
            b"TUNNEL TEST\n",
        ));
        v.push(tcp(
            seg(s, c, 501, Some(113), false, false),
            b"TUNNEL TEST\n",
        ));
        if close {
            v.push(tcp(seg(c, s, 113, Some(513), false, true), b""));
            v.push(tcp(seg(s, c, 513, Some(114), false, true), b""));
            v.push(tcp(seg(c, s, 114, Some(514), false, false), b""));
        }
        v
    }

    #[test]
    fn igmp_v2_report_and_leave_are_found_for_the_group() {
        let report = igmp_frame(CLIENT, GROUP, &[0x16, 0, 0, 0, 239, 1, 1, 1]);
        let leave = igmp_frame(CLIENT, [224, 0, 0, 2], &[0x17, 0, 0, 0, 239, 1, 1, 1]);
        let p = roundtrip(&[report, leave]);
        let group = Ipv4Addr::from(GROUP);
        assert_eq!(igmp_reports(&p, group), vec![IpAddr::from(CLIENT)]);
        assert_eq!(igmp_leaves(&p, group), vec![IpAddr::from(CLIENT)]);
        assert!(igmp_reports(&p, Ipv4Addr::new(239, 9, 9, 9)).is_empty());
    }

    #[test]
    fn igmp_v3_records_are_decoded() {
        // One record: CHANGE_TO_EXCLUDE (join) for 239.1.1.1; then CHANGE_TO_INCLUDE (leave).
        let join = igmp_frame(
            CLIENT,
            [224, 0, 0, 22],
            &[0x22, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 239, 1, 1, 1],
        );
        let leave = igmp_frame(
            CLIENT,
            [224, 0, 0, 22],
            &[0x22, 0, 0, 0, 0, 0, 0, 1, 3, 0, 0, 0, 239, 1, 1, 1],
        );
        let p = roundtrip(&[join, leave]);
        assert_eq!(igmp_reports(&p, Ipv4Addr::from(GROUP)).len(), 1);
        assert_eq!(igmp_leaves(&p, Ipv4Addr::from(GROUP)).len(), 1);
    }

    #[test]
    fn no_igmp_when_only_udp_was_captured() {
        let p = roundtrip(&[udp(SERVER, GROUP, MCAST_MAC, 40000, 5008, b"hi")]);
        assert!(igmp_reports(&p, Ipv4Addr::from(GROUP)).is_empty());
        assert!(igmp_leaves(&p, Ipv4Addr::from(GROUP)).is_empty());
    }

    #[test]
    fn complete_handshake_is_found_and_fins_both_ways() {
        let p = roundtrip(&connection((CLIENT, 40000), (ROUTER, 9090), true, true));
        let hs = tcp_handshakes(&p, 9090);
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].client, SocketAddr::from((CLIENT, 40000)));
        assert_eq!(hs[0].server, SocketAddr::from((ROUTER, 9090)));
        assert!(fins_both_ways(&p, hs[0]));
        assert!(tcp_handshakes(&p, 8080).is_empty());
    }

    #[test]
    fn handshake_without_final_ack_is_not_complete() {
        // Without the bare ACK of the SYN-ACK the only client segment acks 501 with data; build a
        // capture where even that is missing: SYN and SYN-ACK only.
        let frames = connection((CLIENT, 40000), (ROUTER, 9090), false, false);
        let p = roundtrip(&frames[..2]);
        assert!(tcp_handshakes(&p, 9090).is_empty());
    }

    #[test]
    fn one_sided_fin_is_not_a_clean_close() {
        let mut frames = connection((ROUTER, 41000), (SERVER, 8080), true, true);
        // Drop the server's FIN (second to last frame).
        frames.remove(frames.len() - 2);
        let p = roundtrip(&frames);
        let hs = tcp_handshakes(&p, 8080);
        assert_eq!(hs.len(), 1);
        assert!(!fins_both_ways(&p, hs[0]));
    }

    #[test]
    fn data_segments_from_server_port_are_counted() {
        let p = roundtrip(&connection((CLIENT, 40000), (SERVER, 5003), true, true));
        assert_eq!(data_segments_from(&p, 5003).len(), 1);
        assert_eq!(data_bytes_from(&p, 5003), 12);
        assert!(plaintext_from(&p, 5003, b"TUNNEL"));
        assert!(!plaintext_from(&p, 5003, b"PMU data"));
        let none = roundtrip(&connection((CLIENT, 40000), (SERVER, 5003), true, true)[..3]);
        assert!(data_segments_from(&none, 5003).is_empty());
    }

    #[test]
    fn broadcast_frames_are_told_from_unicast() {
        let b = roundtrip(&[udp(
            CLIENT,
            [255; 4],
            BROADCAST_MAC,
            40000,
            5007,
            b"HELLO_BCAST #0",
        )]);
        assert_eq!(broadcast_dst_mac(&b, 5007).len(), 1);
        assert!(udp_has_no_seq(&b, 5007));
        let u = roundtrip(&[udp(CLIENT, SERVER, MAC_B, 40000, 5007, b"HELLO")]);
        assert!(broadcast_dst_mac(&u, 5007).is_empty());
    }

    #[test]
    fn udp_check_fails_without_udp() {
        let p = roundtrip(&connection((CLIENT, 40000), (ROUTER, 5007), true, false));
        assert!(!udp_has_no_seq(&p, 5007));
        assert!(udp_to(&p, None, 5007).is_empty());
    }

    #[test]
    fn pcapng_files_and_cooked_v2_frames_are_read_too() {
        use pcap_file::pcapng::PcapNgWriter;
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        use std::borrow::Cow;

        let dir = std::env::temp_dir().join(format!("labnet-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("client1.pcapng");
        let eth = udp(CLIENT, SERVER, MAC_B, 5000, 5000, b"hi there");
        // The same datagram as tcpdump -i any writes it: a 20-byte cooked v2 header, then IP.
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(&eth[14..]);
        {
            let mut w = PcapNgWriter::new(File::create(&path).unwrap()).unwrap();
            for link in [DataLink::ETHERNET, DataLink::LINUX_SLL2] {
                w.write_pcapng_block(InterfaceDescriptionBlock::new(link, 0))
                    .unwrap();
            }
            for (iface, frame) in [(0u32, &eth), (1, &sll2)] {
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: iface,
                    timestamp: Duration::from_millis(5),
                    original_len: frame.len() as u32,
                    data: Cow::Borrowed(frame),
                    options: vec![],
                })
                .unwrap();
            }
        }
        let p = read(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(p.len(), 2);
        for pkt in &p {
            assert_eq!(pkt.src_sock(), Some(SocketAddr::from((CLIENT, 5000))));
            assert!(
                matches!(&pkt.transport, Transport::Udp { payload, .. } if payload == b"hi there")
            );
        }
        assert_eq!(udp_to(&p, Some(IpAddr::from(SERVER)), 5000).len(), 2);
    }

    #[test]
    fn a_file_that_is_no_capture_is_an_error() {
        let dir = std::env::temp_dir().join(format!("labnet-nocap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chatserver.pcap");
        std::fs::write(&path, b"this is a screenshot, not a capture").unwrap();
        let e = read(&path).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("chatserver.pcap"), "{e}");
    }

    #[test]
    fn multicast_destination_is_matched_exactly() {
        let p = roundtrip(&[udp(SERVER, GROUP, MCAST_MAC, 40000, 5008, b"x")]);
        assert_eq!(udp_to(&p, Some(IpAddr::from(GROUP)), 5008).len(), 1);
        assert!(udp_to(&p, Some(IpAddr::from([239, 1, 1, 2])), 5008).is_empty());
    }
}
