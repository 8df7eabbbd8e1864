//! Name checks and the user-list parser: no panic; a name that passes is printable on one line
//! and is no reserved word.
#![no_main]

use libfuzzer_sys::fuzz_target;
use labnet::wire::chat::{RESERVED_NAMES, check_name, encode_users, is_format_char, parse_users, same_name};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if check_name(&text).is_ok() {
        assert!(!text.chars().any(|c| c.is_control() || c.is_whitespace() || is_format_char(c)));
        assert!(!RESERVED_NAMES.iter().any(|w| same_name(&text, w)));
        let line = encode_users([(text.as_ref(), "10.0.0.1")]);
        assert_eq!(parse_users(&line[1..]).unwrap(), vec![(text.to_string(), "10.0.0.1".to_string())]);
    }
    let _ = parse_users(&text);
});
