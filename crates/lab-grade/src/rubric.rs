//! The rubric: every check, the part it belongs to and its points, in one table (documented in
//! the crate's README). `--rubric FILE` replaces points with a JSON object `{"p2.short0": 4, …}`.

use std::collections::BTreeMap;
use std::path::Path;

use labnet::{Context, Error, Result};

/// One check of the rubric.
#[derive(Clone, Debug)]
pub struct Item {
    /// `tp3`, `chat` or `week3`.
    pub lab: &'static str,
    /// The part it counts in (`"2"`, `"server"`, `"hw1"`).
    pub part: &'static str,
    /// Stable ID (`p2.short0`).
    pub id: &'static str,
    /// Points when it passes.
    pub points: u32,
    /// What it checks, in the words of the feedback.
    pub what: &'static str,
}

const fn item(
    lab: &'static str,
    part: &'static str,
    id: &'static str,
    points: u32,
    what: &'static str,
) -> Item {
    Item {
        lab,
        part,
        id,
        points,
        what,
    }
}

/// Parts that count in the score but not in the maximum (the handouts' bonus and extra credit).
pub const BONUS_PARTS: &[(&str, &str)] = &[("tp3", "6"), ("chat", "auth")];

/// The default rubric.
pub const DEFAULT: &[Item] = &[
    // TP3 part 2: PMU/PDC over TCP, IPv6.
    item(
        "tp3",
        "2",
        "p2.short0",
        3,
        "CMD_short:0: each of the n messages on its own line, none missing or merged",
    ),
    item(
        "tp3",
        "2",
        "p2.short1",
        3,
        "CMD_short:1: each of the n messages on its own line, none missing or merged",
    ),
    item(
        "tp3",
        "2",
        "p2.flood",
        3,
        "CMD_floodme: the whole flood printed, in order",
    ),
    item(
        "tp3",
        "2",
        "p2.exits",
        1,
        "the program ends by itself when the server closes (IPv6 only)",
    ),
    // Part 3: UDP reset with retransmission, IPv4 and IPv6.
    item(
        "tp3",
        "3",
        "p3.v4",
        3,
        "an IPv4-only server (with loss) answers it",
    ),
    item(
        "tp3",
        "3",
        "p3.v6",
        3,
        "an IPv6-only server (with loss) answers it",
    ),
    item(
        "tp3",
        "3",
        "p3.retransmit",
        2,
        "it retransmits until answered (the server dropped the first requests)",
    ),
    item(
        "tp3",
        "3",
        "p3.timeout",
        1,
        "it waits about 1 s between tries",
    ),
    item(
        "tp3",
        "3",
        "p3.offset",
        1,
        "it prints the OFFSET the server sent",
    ),
    // Part 4: multicast receiver and sender.
    item(
        "tp3",
        "4",
        "p4.receive",
        3,
        "the receiver joins 224.1.1.1:5005 and prints the TV's lines",
    ),
    item(
        "tp3",
        "4",
        "p4.id",
        1,
        "the receiver prints each line's 6-character ID (swcmTV)",
    ),
    item(
        "tp3",
        "4",
        "p4.send",
        3,
        "the sender's datagrams carry one of the group's IDs, then the text read from stdin",
    ),
    item(
        "tp3",
        "4",
        "p4.answer",
        3,
        "a text of at least 300 characters gets the TV's answer",
    ),
    // Part 5: WebSockets.
    item(
        "tp3",
        "5",
        "p5.short0",
        4,
        "CMD_short:0: one printed line per WebSocket message",
    ),
    item(
        "tp3",
        "5",
        "p5.flood",
        4,
        "CMD_floodme: the whole flood printed, in order",
    ),
    item(
        "tp3",
        "5",
        "p5.exits",
        2,
        "the program ends by itself when the server closes",
    ),
    // Part 6 (bonus): the student's PMU server over TLS.
    item(
        "tp3",
        "6",
        "p6.chain",
        1,
        "the certificate verifies against the course CA",
    ),
    item(
        "tp3",
        "6",
        "p6.key",
        1,
        "the private key matches the certificate",
    ),
    item(
        "tp3",
        "6",
        "p6.served",
        2,
        "CMD_short:0 is served over TLS, each message whole",
    ),
    item(
        "tp3",
        "6",
        "p6.plaintext",
        1,
        "a plaintext client gets no PMU data",
    ),
    // Chat lab: the student's server with handout-style clients and ours.
    item(
        "chat",
        "server",
        "chat.server.list",
        5,
        "every client gets the '!' user list (names and addresses) after every join",
    ),
    item(
        "chat",
        "server",
        "chat.server.room",
        5,
        "a room message reaches every other client, and not its sender",
    ),
    item(
        "chat",
        "server",
        "chat.server.leave",
        5,
        "a client that leaves disappears from the list the others get",
    ),
    item(
        "chat",
        "server",
        "chat.server.ours",
        5,
        "our chat-client registers, is listed to the others and chats both ways through it",
    ),
    // The student's client against our server.
    item(
        "chat",
        "client",
        "chat.client.register",
        5,
        "registers the name typed first and lists the users (#ls)",
    ),
    item(
        "chat",
        "client",
        "chat.client.room",
        5,
        "shows room messages and sends what is typed to the room",
    ),
    item(
        "chat",
        "client",
        "chat.client.p2p_send",
        5,
        "'@name: msg' goes over UDP to that user's address",
    ),
    item(
        "chat",
        "client",
        "chat.client.p2p_recv",
        5,
        "a P2P message is shown with the sender's name from the list",
    ),
    // Extra credit.
    item(
        "chat",
        "auth",
        "chat.auth.refuse",
        5,
        "with authentication (a chatserver* program mentioning a password), an unregistered user is not admitted",
    ),
    // The submitted captures (Q13).
    item(
        "chat",
        "captures",
        "chat.cap.files",
        2,
        "chatserver.pcap, client1.pcap and client2.pcap are there and readable",
    ),
    item(
        "chat",
        "captures",
        "chat.cap.handshake",
        4,
        "chatserver.pcap holds a client's SYN, SYN-ACK, ACK to port 5000",
    ),
    item(
        "chat",
        "captures",
        "chat.cap.p2p",
        4,
        "a client capture holds a P2P UDP datagram between two clients on port 5000",
    ),
    // Week 3 homework.
    item(
        "week3",
        "hw1",
        "hw1.receive",
        3,
        "the receiver prints every datagram broadcast to it from two hosts",
    ),
    item(
        "week3",
        "hw1",
        "hw1.stats",
        4,
        "its statistics give the right packet and (payload) byte counts",
    ),
    item(
        "week3",
        "hw1",
        "hw1.sources",
        1,
        "its statistics give the per-source distribution",
    ),
    item(
        "week3",
        "hw1",
        "hw1.timeout",
        2,
        "it ends by itself the inactivity timeout after the last datagram",
    ),
    item(
        "week3",
        "hw2",
        "hw2.others",
        4,
        "each member shows the others' messages with their sender (name or address)",
    ),
    item(
        "week3",
        "hw2",
        "hw2.own",
        4,
        "a member does not show its own messages",
    ),
    item(
        "week3",
        "hw2",
        "hw2.group",
        2,
        "the messages are multicast to the group",
    ),
    item(
        "week3",
        "hw3",
        "hw3.bytes",
        3,
        "1 MiB of random bytes passes each way exactly, on two connections at once",
    ),
    item(
        "week3",
        "hw3",
        "hw3.halfclose",
        2,
        "a half-close is passed on and the other direction keeps flowing",
    ),
    item(
        "week3",
        "hw3",
        "hw3.down",
        2,
        "with the target down the client is closed promptly and the tunnel keeps serving",
    ),
    item(
        "week3",
        "hw3",
        "hw3.log",
        3,
        "the log file has a timestamped line per event with connection id, direction and byte counts",
    ),
    item(
        "week3",
        "hw3",
        "hw3.multi",
        2,
        "one program runs two tunnels at once to different targets",
    ),
];

/// The rubric in use.
#[derive(Clone, Debug)]
pub struct Rubric {
    items: Vec<Item>,
}

impl Default for Rubric {
    fn default() -> Self {
        Rubric {
            items: DEFAULT.to_vec(),
        }
    }
}

impl Rubric {
    /// The default rubric with the points of `file` (a JSON object of check ID → points).
    pub fn load(file: &Path) -> Result<Rubric> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("read the rubric {}", file.display()))?;
        let points: BTreeMap<String, u32> = serde_json::from_str(&text).map_err(|e| {
            Error::usage(format!(
                "{}: a rubric is a JSON object of check ID to points ({{\"p2.short0\": 4}}): {e}",
                file.display()
            ))
        })?;
        let mut r = Rubric::default();
        for (id, p) in points {
            match r.items.iter_mut().find(|i| i.id == id) {
                Some(i) => i.points = p,
                None => {
                    return Err(Error::usage(format!(
                        "{}: unknown check '{id}' (see lab-grade --help for the IDs)",
                        file.display()
                    )));
                }
            }
        }
        Ok(r)
    }

    /// The check `id` (a bug in the grader when missing).
    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The parts of `lab`, in rubric order.
    pub fn parts(&self, lab: &str) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = Vec::new();
        for i in self.items.iter().filter(|i| i.lab == lab) {
            if !v.contains(&i.part) {
                v.push(i.part);
            }
        }
        v
    }

    /// The checks of one part.
    pub fn checks(&self, lab: &str, part: &str) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| i.lab == lab && i.part == part)
            .collect()
    }

    /// Points a part is worth.
    pub fn part_max(&self, lab: &str, part: &str) -> u32 {
        self.checks(lab, part).iter().map(|i| i.points).sum()
    }
}

/// True for a bonus part (counted in the score, not in the maximum).
pub fn is_bonus(lab: &str, part: &str) -> bool {
    BONUS_PARTS.iter().any(|(l, p)| *l == lab && *p == part)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_unique_and_every_part_is_worth_something() {
        let mut ids: Vec<&str> = DEFAULT.iter().map(|i| i.id).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
        let r = Rubric::default();
        assert_eq!(r.parts("tp3"), ["2", "3", "4", "5", "6"]);
        assert_eq!(r.parts("chat"), ["server", "client", "auth", "captures"]);
        assert_eq!(r.parts("week3"), ["hw1", "hw2", "hw3"]);
        for lab in ["tp3", "chat", "week3"] {
            for p in r.parts(lab) {
                assert!(r.part_max(lab, p) > 0, "{lab} {p}");
            }
        }
    }

    #[test]
    fn a_rubric_file_changes_points_and_refuses_unknown_checks() {
        let dir = std::env::temp_dir().join(format!("lab-grade-rubric-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("r.json");
        std::fs::write(&f, r#"{"p2.short0": 7}"#).unwrap();
        let r = Rubric::load(&f).unwrap();
        assert_eq!(r.get("p2.short0").unwrap().points, 7);
        assert_eq!(r.part_max("tp3", "2"), 14);
        std::fs::write(&f, r#"{"p9.nothing": 1}"#).unwrap();
        let e = Rubric::load(&f).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("unknown check 'p9.nothing'"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
