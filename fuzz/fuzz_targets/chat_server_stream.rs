//! The chat client's splitter of a server's byte stream (`ServerStream`), fed in reads cut where
//! the input's first byte says, with a flush at the end. Checks: no panic, and linear
//! work: a read never takes more than a few milliseconds per KiB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use labnet::wire::chat::ServerStream;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let started = std::time::Instant::now();
    let mut s = ServerStream::new();
    for read in rest.chunks(step) {
        let _ = s.push(read);
    }
    let _ = s.flush();
    let budget = std::time::Duration::from_millis(50 + rest.len() as u64 / 64);
    assert!(started.elapsed() < budget, "{} bytes took {:?}", rest.len(), started.elapsed());
});
