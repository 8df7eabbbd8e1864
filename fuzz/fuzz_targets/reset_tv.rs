//! The reset request and reply parsers and the TV datagram decoder: no panic; a parsed reset is
//! in range and encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use labnet::wire::{reset, tv};

fuzz_target!(|data: &[u8]| {
    if let Ok(n) = reset::parse_reset(data) {
        assert!(n <= reset::MAX_RESET);
        assert_eq!(reset::parse_reset(reset::encode_reset(n).as_bytes()), Ok(n));
    }
    let _ = reset::parse_offset(data);
    let _ = tv::decode(data);
});
