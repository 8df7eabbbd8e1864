//! The chat server's framer of a client's bytes, fed in reads cut where the first byte says:
//! no panic, and no message longer than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use labnet::wire::chat::ClientFramer;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let mut f = ClientFramer::new(256);
    for read in rest.chunks(usize::from(step).max(1)) {
        if f.push(read).is_err() {
            return;
        }
        while let Some(m) = f.next_message() {
            assert!(m.len() <= 256);
        }
    }
});
