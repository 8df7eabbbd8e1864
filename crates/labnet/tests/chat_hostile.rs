//! The chat wire format against hostile peers: what another user can
//! put in a room message or a name must not become a user list, a server error, a lookalike
//! name, or minutes of CPU in every client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use labnet::wire::chat::{ClientFramer, ServerMsg, ServerStream, check_name, same_name};

fn users(list: &[(&str, &str)]) -> ServerMsg {
    ServerMsg::Users(
        list.iter()
            .map(|(n, ip)| (n.to_string(), ip.to_string()))
            .collect(),
    )
}

fn room(from: &str, text: &str) -> ServerMsg {
    ServerMsg::Room {
        from: Some(from.into()),
        text: text.into(),
    }
}

/// The handout's server relays `eve: <text> ` unframed; a `!{…}` inside eve's text is her
/// text, not a user list, wherever TCP cuts the reads.
#[test]
fn a_user_list_inside_a_room_message_stays_text() {
    let first = b"!{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.3\", \"eve\": \"127.0.0.4\"}";
    let attack = b"eve: nice weather !{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.4\"} ";
    let mut s = ServerStream::new();
    assert_eq!(
        s.push(first),
        vec![users(&[
            ("alice", "127.0.0.2"),
            ("bob", "127.0.0.3"),
            ("eve", "127.0.0.4")
        ])]
    );
    assert_eq!(
        s.push(attack),
        vec![room(
            "eve",
            "nice weather !{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.4\"}"
        )]
    );
    // Cut anywhere by TCP, once or twice: never a user list, at most text.
    for cut in 1..attack.len() {
        for cut2 in cut..attack.len() {
            let mut s = ServerStream::new();
            s.push(first);
            let mut got = s.push(&attack[..cut]);
            got.extend(s.push(&attack[cut..cut2]));
            got.extend(s.push(&attack[cut2..]));
            got.extend(s.flush());
            assert!(
                !got.iter().any(|m| matches!(m, ServerMsg::Users(_))),
                "cut at {cut} and {cut2}: {got:?}"
            );
        }
    }
    // The same list glued after a room message at the end of a read is the server's (the
    // handout's server writes a room message and a user list back to back under load), once the
    // next read does not start with the server's space, or nothing more comes for a moment.
    let glued = b"bob: hi !{\"alice\": \"127.0.0.2\"}";
    let mut s = ServerStream::new();
    assert_eq!(s.push(glued), vec![]);
    assert!(s.is_holding());
    assert_eq!(
        s.flush(),
        vec![room("bob", "hi"), users(&[("alice", "127.0.0.2")])]
    );
    let mut s = ServerStream::new();
    s.push(glued);
    assert_eq!(
        s.push(b"carol: yo "),
        vec![
            room("bob", "hi"),
            users(&[("alice", "127.0.0.2")]),
            room("carol", "yo")
        ]
    );
}

/// The unframed splitter must be linear: 256 KiB of `a!{` (or ` !{`, or newlines once
/// framed) in client-sized reads takes well under a second.
#[test]
fn hostile_input_is_split_in_linear_time() {
    for (what, unit, framed) in [
        ("a!{", &b"a!{"[..], false),
        (" !{", b" !{", false),
        ("!{", b"!{", false),
        ("a\\n framed", b"a\n", true),
    ] {
        let hostile: Vec<u8> = unit.iter().copied().cycle().take(256 * 1024).collect();
        let started = Instant::now();
        let mut s = ServerStream::new();
        if framed {
            s.push(b"!{\"alice\": \"127.0.0.2\"}\n");
        }
        let mut n = 0;
        for chunk in hostile.chunks(64 * 1024) {
            n += s.push(chunk).len();
        }
        let mut s = ServerStream::new();
        n += s.push(&hostile).len();
        let took = started.elapsed();
        eprintln!("{what}: {took:?} for 2 x 256 KiB ({n} messages)");
        assert!(
            took < Duration::from_secs(1),
            "{what}: {took:?} for 2 x 256 KiB"
        );
    }
    // The server's framer, one 64 KiB read full of newlines, 4 times.
    let started = Instant::now();
    let mut f = ClientFramer::new(64 * 1024);
    f.push(b"\n").unwrap();
    let lines = vec![b'\n'; 64 * 1024];
    for _ in 0..4 {
        f.push(&lines).unwrap();
        while f.next_message().is_some() {}
    }
    let took = started.elapsed();
    eprintln!("client framer: {took:?} for 256 KiB of newlines");
    assert!(took < Duration::from_secs(1), "client framer: {took:?}");
}

/// Names that would pass for the server (`ERROR`, in any case), for the receiver's
/// word for strangers, or that hide bidi and invisible format characters are refused; names
/// equal but for case are the same name.
#[test]
fn reserved_lookalike_and_bidi_names_are_refused() {
    for bad in [
        "ERROR",
        "error",
        "Error",
        "Non-registered",
        "non-REGISTERED",
        "ali\u{202e}ec",
        "\u{202d}bob",
        "b\u{200b}ob",
        "bob\u{2066}",
        "\u{feff}bob",
        "bob\u{61c}",
    ] {
        assert!(check_name(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["alice", "Errorist", "ERRORS", "Ærøskøbing", "q\"uo\\te"] {
        assert_eq!(check_name(good), Ok(()), "{good:?}");
    }
    assert!(same_name("Alice", "alice"));
    assert!(same_name("STRASSE", "straße"));
    assert!(!same_name("alice", "alicia"));
}
