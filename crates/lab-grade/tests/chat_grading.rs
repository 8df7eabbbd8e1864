//! lab-grade on the chat lab as graders are tested: the reference submission (the handout's
//! skeletons completed as a student would, `tests/students/chat/`, with the captures of Q13) gets
//! full marks; the extra-credit reference (`tests/students/chat_auth/`) gets the auth bonus on
//! top; each mutant (`tests/mutants/chat/`) — one thing students get wrong — loses exactly the
//! points of its part and nothing else; and nothing of a student's program outlives the batch.
//!
//! The captures are written here as a student's tcpdump and Wireshark write them: Ethernet
//! frames in pcap files, and one file in pcapng (Wireshark's default) under a `.pcap` name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod grading;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::time::Duration;

use etherparse::PacketBuilder;
use labnet::netns::netns_or_skip;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

use grading::{Scratch, apply_mutant, batch, copy_files, differences, mutants};

/// The submissions' names start with the group's IDs.
const GROUP: &str = "Chat_228822_229911";
/// Points of the graded parts (auth is a bonus: in the score, not in the maximum).
const MAX: u32 = 50;

/// Each kind of submission and the part scores it must get.
fn variants() -> Vec<(&'static str, BTreeMap<&'static str, u32>)> {
    let full = [
        ("server", 20),
        ("client", 20),
        ("auth", 0),
        ("captures", 10),
    ];
    let v = |name: &'static str, change: &[(&'static str, u32)]| {
        let mut parts: BTreeMap<&'static str, u32> = full.into();
        for (p, s) in change {
            parts.insert(p, *s);
        }
        (name, parts)
    };
    vec![
        v("reference", &[]),
        // The extra credit: chatserver_auth.py refuses a user not in users.txt.
        v("auth", &[("auth", 5)]),
        v("auth_admits_everyone", &[]),
        v("server_echo", &[("server", 15)]),
        v("server_no_leave_list", &[("server", 15)]),
        v("client_p2p_to_server", &[("client", 15)]),
        v("client_p2p_silent", &[("client", 15)]),
        // The server's capture is missing: its file and its handshake (the P2P one is in a
        // client's capture).
        v("missing_pcap", &[("captures", 4)]),
        v("client_infinite_loop", &[("client", 0)]),
    ]
}

#[test]
fn chat_reference_full_marks_each_mutant_loses_only_its_part() {
    if !netns_or_skip() {
        return;
    }
    let scratch = Scratch::new("chat");
    let class = scratch.0.join("class");
    let mut want = Vec::new();
    for (name, parts) in variants() {
        let sub = format!("{GROUP}_{name}");
        let dir = class.join(&sub);
        copy_files(&grading::students().join("chat"), &dir);
        write_captures(&dir);
        if name.starts_with("auth") {
            copy_files(&grading::students().join("chat_auth"), &dir);
        }
        let mutant = mutants("chat").join(name);
        if mutant.is_dir() {
            apply_mutant(&dir, &mutant);
        }
        want.push((sub, parts));
    }
    let seed = grading::seed();
    let b = batch("chat", &class, &scratch.0, 8, seed);
    eprintln!(
        "graded {} chat submissions in {:.1} s",
        want.len(),
        b.took.as_secs_f64()
    );
    let wrong = differences(&b, &want, MAX);
    assert!(wrong.is_empty(), "seed {seed}:\n{}", wrong.join("\n"));
    grading::nothing_left(b.pid);

    // The feedback says what was expected and what was seen.
    let fb = |v: &str| b.feedback[&format!("{GROUP}_{v}")].clone();
    let echo = fb("server_echo");
    assert!(
        echo.contains("FAIL chat.server.room") && echo.contains("came back to"),
        "{echo}"
    );
    let to_server = fb("client_p2p_to_server");
    assert!(to_server.contains("nothing arrived there"), "{to_server}");
    let reference = fb("reference");
    assert!(reference.contains("not attempted"), "{reference}");
    let admits = fb("auth_admits_everyone");
    assert!(admits.contains("was admitted"), "{admits}");
    assert!(
        fb("missing_pcap").contains("no server capture"),
        "{}",
        fb("missing_pcap")
    );
}

/// A client's and the server's ends of the chat as the lab's tcpdump captures them.
const SERVER: ([u8; 4], u16) = ([10, 20, 30, 3], 5000);
const ALICE: ([u8; 4], u16) = ([10, 20, 30, 11], 41000);
const BOB: ([u8; 4], u16) = ([10, 20, 30, 12], 42000);

/// One TCP segment between `from` and `to`.
fn tcp(
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, from.0[3]], [2, 0, 0, 0, 0, to.0[3]])
        .ipv4(from.0, to.0, 64)
        .tcp(from.1, to.1, seq, 64240);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut v = Vec::new();
    b.write(&mut v, data).unwrap();
    v
}

/// SYN, SYN-ACK, ACK, then the name.
fn join(client: ([u8; 4], u16), name: &[u8]) -> Vec<Vec<u8>> {
    vec![
        tcp(client, SERVER, 1000, None, true, b""),
        tcp(SERVER, client, 7000, Some(1001), true, b""),
        tcp(client, SERVER, 1001, Some(7001), false, b""),
        tcp(client, SERVER, 1001, Some(7001), false, name),
    ]
}

/// alice's `@bob: hi bob` as one datagram from 10.20.30.11:5000 to 10.20.30.12:5000.
fn p2p() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 11], [2, 0, 0, 0, 0, 12])
        .ipv4(ALICE.0, BOB.0, 64)
        .udp(5000, 5000)
        .write(&mut v, b" hi bob")
        .unwrap();
    v
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_millis(i as u64),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

fn write_pcapng(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapNgWriter::new(File::create(path).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0))
        .unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_millis(i as u64),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        })
        .unwrap();
    }
}

/// chatserver.pcap (both joins), client1.pcap (alice's join and her P2P datagram) and
/// client2.pcap (bob's side of it, saved by Wireshark in its own format).
fn write_captures(dir: &Path) {
    let mut server = join(ALICE, b"alice");
    server.extend(join(BOB, b"bob"));
    write_pcap(&dir.join("chatserver.pcap"), &server);
    let mut c1 = join(ALICE, b"alice");
    c1.push(p2p());
    write_pcap(&dir.join("client1.pcap"), &c1);
    let mut c2 = join(BOB, b"bob");
    c2.push(p2p());
    write_pcapng(&dir.join("client2.pcap"), &c2);
    assert!(fs::metadata(dir.join("client2.pcap")).unwrap().len() > 0);
}
