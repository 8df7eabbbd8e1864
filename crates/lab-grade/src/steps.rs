//! What the chat and week-3 graders share: waiting for a student's program to bind its port
//! (read from the host's socket table, not guessed with a sleep), a lane emptied for sure before
//! the next program runs, the JSON lines of the grader's own peers, and the names and texts drawn
//! from the seed so that hard-coded output cannot match.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::SmallRng;
use serde_json::Value;

use crate::lab::Lab;
use crate::sandbox::{Finished, Lane, Running, clip};

/// TCP or UDP, for the socket-table probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// A listening TCP socket.
    Tcp,
    /// A bound UDP socket.
    Udp,
}

/// True when some socket of `host` listens on (TCP) or is bound to (UDP) `port`.
pub fn bound(lab: &Lab, host: &str, proto: Proto, port: u16) -> bool {
    let flags = match proto {
        Proto::Tcp => "-Htln",
        Proto::Udp => "-Huln",
    };
    let table = lab.probe(host, "ss", &[flags]);
    let suffix = format!(":{port}");
    table.lines().any(|l| {
        l.split_whitespace()
            .nth(3)
            .is_some_and(|local| local.ends_with(&suffix))
    })
}

/// Waits until `host` has a socket on `port`, or `timeout`; false when it never came, or when
/// `program` ended first (no need to wait out the timeout for a program that crashed).
pub fn wait_bound(
    lab: &Lab,
    host: &str,
    proto: Proto,
    port: u16,
    program: &mut Running,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if bound(lab, host, proto, port) {
            return true;
        }
        if Instant::now() >= deadline || !program.alive() {
            return bound(lab, host, proto, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends every process of the lane's user (again until none is left: see
/// [`Lane::kill_all`]).
pub fn empty_lane(lane: &Lane) {
    lane.kill_all();
}

/// Stops the lane's programs and collects what each printed (the lane is emptied first, so
/// nothing waits for a graceful exit the grader does not need). A program that was still
/// running is reported as stopped, not as ended by itself.
pub fn stop_all(lane: &Lane, runs: &mut [&mut Running]) -> Vec<Finished> {
    let alive: Vec<bool> = runs.iter_mut().map(|r| r.alive()).collect();
    empty_lane(lane);
    runs.iter_mut()
        .zip(alive)
        .map(|(r, alive)| {
            let mut f = r.stop();
            if alive {
                f.exited = false;
                f.stopped = true;
            }
            f
        })
        .collect()
}

/// The JSON objects among a program's output lines (the grader's own peers print one per line).
pub fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

/// Names the chat and the multicast chat register: a first name and two digits, different
/// every run (`grace47`), all distinct.
pub fn names(rng: &mut SmallRng, n: usize) -> Vec<String> {
    const FIRST: &[&str] = &[
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
        "yara",
    ];
    let mut out: Vec<String> = Vec::new();
    while out.len() < n {
        let name = format!(
            "{}{}",
            FIRST[rng.random_range(0..FIRST.len())],
            rng.random_range(10..100)
        );
        if !out.iter().any(|o| o.starts_with(&name[..name.len() - 2])) {
            out.push(name);
        }
    }
    out
}

/// A line of text to type: a few words and a number drawn per run (`lark verona 4821 dawn`).
/// Digits never start it, so it cannot be taken for a count; no two draws share the number.
pub fn text(rng: &mut SmallRng) -> String {
    const WORDS: &[&str] = &[
        "verona",
        "lark",
        "balcony",
        "dawn",
        "nightingale",
        "masque",
        "dagger",
        "friar",
        "tomb",
        "fortune",
        "orchard",
        "lantern",
        "harbour",
        "meadow",
        "thistle",
        "copper",
        "violet",
        "pebble",
        "falcon",
        "river",
    ];
    let w = |rng: &mut SmallRng| WORDS[rng.random_range(0..WORDS.len())];
    format!(
        "{} {} {} {}",
        w(rng),
        w(rng),
        rng.random_range(1000..10000),
        w(rng)
    )
}

/// The first line of `out` holding `needle`, clipped for feedback.
pub fn line_with(out: &str, needle: &str) -> Option<String> {
    out.lines()
        .find(|l| l.contains(needle))
        .map(|l| clip(l.trim(), 100))
}

/// A short sample of what a program printed, for feedback on a failed check.
pub fn sample(out: &str) -> String {
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "nothing".into();
    }
    let tail = &lines[lines.len().saturating_sub(3)..];
    format!("'{}'", clip(&tail.join(" | "), 240))
}

/// Integer and dotted tokens of a line (`172.20.0.100: 5 packets (62.5%)` → `172.20.0.100`,
/// `5`, `62.5`): what the graders compare counts and addresses against, whatever the format.
pub fn tokens(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn drawn_names_are_distinct_and_texts_differ_per_seed() {
        let mut rng = SmallRng::seed_from_u64(7);
        let n = names(&mut rng, 4);
        assert_eq!(n.len(), 4);
        for (i, a) in n.iter().enumerate() {
            assert!(a.len() <= 20 && a.chars().all(|c| c.is_ascii_alphanumeric()));
            for b in &n[i + 1..] {
                assert!(!a.starts_with(&b[..b.len() - 2]), "{a} {b}");
            }
        }
        let t1 = text(&mut rng);
        let t2 = text(&mut SmallRng::seed_from_u64(8));
        assert_ne!(t1, t2);
        assert!(!t1.starts_with(|c: char| c.is_ascii_digit()));
    }

    #[test]
    fn tokens_split_counts_from_addresses() {
        assert_eq!(
            tokens("172.20.0.100: 5 packets (62.5%), 70 bytes."),
            ["172.20.0.100", "5", "62.5", "70"]
        );
        assert_eq!(
            tokens("('172.20.0.10', 41002): 3"),
            ["172.20.0.10", "41002", "3"]
        );
        assert!(tokens("no numbers").is_empty());
    }
}
