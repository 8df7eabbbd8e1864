//! The PMU command parser and the PDC's splitter: no panic; a parsed command encodes to a
//! command that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use labnet::wire::pmu::{Splitter, parse_command};

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = parse_command(data) {
        assert_eq!(parse_command(cmd.encode().as_bytes()).ok(), Some(cmd));
    }
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let mut s = Splitter::new();
    for read in rest.chunks(usize::from(step).max(1)) {
        let _ = s.push(read);
    }
    let _ = s.finish();
});
