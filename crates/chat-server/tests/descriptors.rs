//! At the process's descriptor limit the accept loop backs off (bounded CPU, at most one log
//! line a second) and recovers by itself once clients close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};

use testkit::probe::{
    NOFILE, hold_at_descriptor_limit, recovers_from_descriptor_limit, start_with_nofile,
};
use testkit::tcp::connect;

const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

#[test]
fn descriptor_limit_makes_accept_back_off_and_recover() {
    if !testkit::tool_or_skip(&["prlimit"]) {
        return;
    }
    let p = start_with_nofile(BIN, NOFILE, &["--bind", "127.0.0.1", "--port", "0"]);
    let addr = p.addr();
    let held = hold_at_descriptor_limit(&p, addr, 100);
    drop(held);
    recovers_from_descriptor_limit(&p, || {
        let mut s = connect(addr);
        s.write_all(b"zed\n").ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        line.contains("\"zed\"").then_some(())
    });
}
