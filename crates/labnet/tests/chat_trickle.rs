//! A user list that never closes, trickled one byte per read by a hostile server, costs the chat
//! client's reader linear work. Measured by what it allocates rather than by time (this machine
//! is shared and noisy): the pending list used to be copied whole on every read, which the
//! `chat_server_stream` fuzz target found (60 KiB in 1-byte reads allocated 5.7 GB, and 64 KiB
//! took 74 ms in a release build; now 132 KB and 1.3 ms).
//!
//! One test in this file: the allocator's counters are the process's, and nextest runs each test
//! in a process of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;

use labnet::wire::chat::{ServerMsg, ServerStream};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Feeds `stream` one byte per read; returns the messages and the bytes allocated meanwhile.
fn trickle(stream: &[u8]) -> (Vec<ServerMsg>, usize) {
    let mut s = ServerStream::new();
    let mut msgs = Vec::with_capacity(16);
    let region = Region::new(GLOBAL);
    for byte in stream.chunks(1) {
        msgs.extend(s.push(byte));
    }
    msgs.extend(s.flush());
    let stats = region.change();
    (
        msgs,
        stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize,
    )
}

#[test]
fn a_list_trickled_one_byte_a_read_costs_linear_work() {
    // A list at the start of the stream, and one glued after a room message: both are kept
    // while they may still close, up to the longest list a reader waits for (64 KiB).
    for prefix in [&b""[..], b"bob: nice weather"] {
        let mut hostile = prefix.to_vec();
        hostile.extend(b" !{\"alice\": \"127");
        hostile.extend(b" !{".iter().copied().cycle().take(60 * 1024));
        let (msgs, bytes) = trickle(&hostile);
        eprintln!(
            "{} bytes in 1-byte reads: {bytes} bytes allocated, {} messages",
            hostile.len(),
            msgs.len()
        );
        assert!(
            bytes < 32 * hostile.len(),
            "{bytes} bytes allocated for {} bytes",
            hostile.len()
        );
    }
    // The same trickle still reads a list that closes.
    let (msgs, _) = trickle(b"!{\"alice\": \"127.0.0.2\", \"bob\": \"127.0.0.3\"}");
    assert_eq!(
        msgs,
        vec![ServerMsg::Users(vec![
            ("alice".into(), "127.0.0.2".into()),
            ("bob".into(), "127.0.0.3".into()),
        ])]
    );
}
