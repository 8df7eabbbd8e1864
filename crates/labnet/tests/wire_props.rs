//! Property tests of every `labnet::wire` parser: round trips, every cut point a
//! TCP stream can make, and arbitrary bytes never panic. The example tests next to each parser
//! say what the format is; these say it holds for inputs nobody thought of.
//!
//! The fuzz targets in `fuzz/` (not a workspace member; cargo-fuzz needs a nightly toolchain)
//! drive the same parsers with coverage guidance, from the inputs that found the hostile-peer bugs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use labnet::wire::WireError;
use labnet::wire::chat::{
    self, ClientFramer, ServerMsg, ServerStream, check_name, encode_room, encode_users,
    json_object_end, parse_users,
};
use labnet::wire::pmu::{self, Command, Splitter, parse_command};
use labnet::wire::reset::{MAX_RESET, encode_offset, encode_reset, parse_offset, parse_reset};
use labnet::wire::tv::{self, ID_LEN, Id};
use proptest::collection::vec;
use proptest::prelude::*;

/// Feeds `stream` in pieces cut at `cuts` (positions, any order, out-of-range ones ignored).
fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

/// A name our server accepts.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_\\-\"\\\\é]{1,20}".prop_filter("valid name", |n| check_name(n).is_ok())
}

fn users() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((name(), "[0-9a-f:.]{1,39}"), 0..8).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|(n, _)| {
            let fresh = !seen.iter().any(|s: &String| chat::same_name(s, n));
            seen.push(n.clone());
            fresh
        });
        v
    })
}

/// Room text a client can send: no newline (the server's framer splits at it).
fn text() -> impl Strategy<Value = String> {
    "[^\n]{1,60}".prop_filter("not blank", |t| !t.trim().is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // ---- chat ---------------------------------------------------------------------------

    #[test]
    fn chat_users_round_trip(list in users()) {
        let line = encode_users(list.iter().map(|(n, ip)| (n.as_str(), ip.as_str())));
        prop_assert_eq!(json_object_end(&line.as_bytes()[1..]), Ok(line.len() - 2));
        prop_assert_eq!(parse_users(&line[1..]).unwrap(), list);
    }

    #[test]
    fn chat_parsers_never_panic_on_arbitrary_bytes(
        bytes in vec(any::<u8>(), 0..512),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = check_name(&text);
        let _ = parse_users(&text);
        let _ = json_object_end(&bytes);
        let mut s = ServerStream::new();
        for p in pieces(&bytes, &cuts) {
            let _ = s.push(p);
        }
        let _ = s.flush();
        let mut f = ClientFramer::new(64);
        for p in pieces(&bytes, &cuts) {
            if f.push(p).is_err() {
                break;
            }
            while f.next_message().is_some() {}
        }
    }

    /// Our server's framed stream gives the same messages however TCP cuts it.
    #[test]
    fn chat_framed_stream_survives_every_cut(
        first in users(),
        room in vec((name(), text()), 0..6),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let mut wire = encode_users(first.iter().map(|(n, ip)| (n.as_str(), ip.as_str())));
        for (from, t) in &room {
            wire.push_str(&encode_room(from, t));
        }
        let mut s = ServerStream::new();
        let mut got = Vec::new();
        for p in pieces(wire.as_bytes(), &cuts) {
            got.extend(s.push(p));
        }
        got.extend(s.flush());
        let mut want = vec![ServerMsg::Users(first.clone())];
        for (from, t) in &room {
            // The handout's trailing space is removed, the text is the client's, exactly.
            want.push(ServerMsg::Room { from: Some(from.clone()), text: t.clone() });
        }
        prop_assert_eq!(got, want);
    }

    /// As a property: against the handout's unframed server, whatever a user types (user
    /// lists included) and however TCP cuts it, no room message ever yields a user list.
    #[test]
    fn chat_unframed_room_text_never_becomes_a_user_list(
        first in users(),
        from in name(),
        typed in vec(prop_oneof![
            text(),
            users().prop_map(|l| {
                let line = encode_users(l.iter().map(|(n, ip)| (n.as_str(), ip.as_str())));
                line.trim_end().to_owned()
            }),
            Just("!{".to_owned()),
            Just("}".to_owned()),
        ], 1..5),
        cuts in vec(any::<usize>(), 0..4),
    ) {
        let mut s = ServerStream::new();
        let list = encode_users(first.iter().map(|(n, ip)| (n.as_str(), ip.as_str())));
        // The handout's server: no newline after the list.
        prop_assert_eq!(s.push(list.trim_end().as_bytes()), vec![ServerMsg::Users(first.clone())]);
        let message = format!("{from}: {} ", typed.join(" "));
        let mut got = Vec::new();
        for p in pieces(message.as_bytes(), &cuts) {
            got.extend(s.push(p));
        }
        got.extend(s.flush());
        prop_assert!(
            !got.iter().any(|m| matches!(m, ServerMsg::Users(_))),
            "{:?} became {:?}", message, got
        );
    }

    /// The server's framer: lines come out as sent, however TCP cuts them.
    #[test]
    fn chat_client_framer_lines_survive_every_cut(
        lines in vec("[^\n\r]{0,40}", 1..8),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let mut wire = lines.join("\n");
        wire.push('\n');
        let mut f = ClientFramer::new(1024);
        let mut got = Vec::new();
        for p in pieces(wire.as_bytes(), &cuts) {
            f.push(p).unwrap();
            while let Some(m) = f.next_message() {
                got.push(m);
            }
        }
        // Until the first newline the framer takes each read whole (the handout's client):
        // only the stream after the first line is framed by lines for sure.
        let joined = got.concat();
        prop_assert_eq!(joined, lines.concat());
    }

    // ---- pmu ----------------------------------------------------------------------------

    #[test]
    fn pmu_command_round_trip_and_every_prefix_is_incomplete(
        millis in 0u64..=10_000,
        flood in any::<bool>(),
    ) {
        let cmd = if flood {
            Command::Flood
        } else {
            Command::Short { delay: Duration::from_millis(millis) }
        };
        let text = cmd.encode();
        let parsed = parse_command(text.as_bytes()).unwrap();
        prop_assert_eq!(parsed.encode(), text.clone());
        for cut in 0..text.len() {
            let r = parse_command(&text.as_bytes()[..cut]);
            prop_assert!(
                matches!(r, Err(WireError::Incomplete) | Ok(_)),
                "prefix {:?}: {:?}", &text[..cut], r
            );
        }
    }

    #[test]
    fn pmu_parsers_never_panic_on_arbitrary_bytes(
        bytes in vec(any::<u8>(), 0..256),
        cuts in vec(any::<usize>(), 0..6),
    ) {
        let _ = parse_command(&bytes);
        let mut s = Splitter::new();
        for p in pieces(&bytes, &cuts) {
            let _ = s.push(p);
        }
        let _ = s.finish();
    }

    /// The PDC's splitter puts n unframed messages back on separate lines however TCP cuts them.
    #[test]
    fn pmu_splitter_survives_every_cut(n in 1u32..60, cuts in vec(any::<usize>(), 0..8)) {
        let stream: String = (1..=n).map(pmu::message).collect();
        let mut s = Splitter::new();
        let mut got = Vec::new();
        for p in pieces(stream.as_bytes(), &cuts) {
            got.extend(s.push(p));
        }
        got.extend(s.finish());
        let want: Vec<String> = (1..=n).map(pmu::message).collect();
        prop_assert_eq!(got, want);
    }

    // ---- reset --------------------------------------------------------------------------

    #[test]
    fn reset_round_trips(n in 0..=MAX_RESET, x in any::<u32>()) {
        prop_assert_eq!(parse_reset(encode_reset(n).as_bytes()), Ok(n));
        prop_assert_eq!(parse_offset(encode_offset(x).as_bytes()), Ok(x));
        prop_assert!(parse_reset(encode_reset(MAX_RESET + 1 + n).as_bytes()).is_err());
    }

    #[test]
    fn reset_parsers_never_panic_and_never_say_incomplete(bytes in vec(any::<u8>(), 0..128)) {
        // A datagram is whole: malformed or valid, never "incomplete".
        prop_assert!(!matches!(parse_reset(&bytes), Err(WireError::Incomplete)));
        prop_assert!(!matches!(parse_offset(&bytes), Err(WireError::Incomplete)));
    }

    // ---- tv -----------------------------------------------------------------------------

    #[test]
    fn tv_round_trip(id in "[!-~]{6}", text in ".{0,200}") {
        let id = Id::parse(&id).unwrap();
        let d = tv::decode(&tv::encode(&id, &text)).unwrap();
        prop_assert_eq!(d.id, id);
        prop_assert_eq!(d.text, Ok(text));
    }

    #[test]
    fn tv_decode_never_panics(bytes in vec(any::<u8>(), 0..128)) {
        match tv::decode(&bytes) {
            Ok(d) => prop_assert_eq!(&d.id.0[..], &bytes[..ID_LEN]),
            Err(_) => prop_assert!(bytes.len() < ID_LEN),
        }
    }
}
