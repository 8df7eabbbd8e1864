//! At the process's descriptor limit the PMU's accept loop backs off (bounded CPU, at most one
//! log line a second) and recovers by itself once clients close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};

use testkit::probe::{
    NOFILE, hold_at_descriptor_limit, recovers_from_descriptor_limit, start_with_nofile,
};
use testkit::tcp::connect;

const BIN: &str = env!("CARGO_BIN_EXE_lab-server");

#[test]
fn descriptor_limit_makes_accept_back_off_and_recover() {
    if !testkit::tool_or_skip(&["prlimit"]) {
        return;
    }
    let p = start_with_nofile(
        BIN,
        NOFILE,
        &[
            "--pmu-port",
            "0",
            "--reset-port",
            "0",
            "--ws-port",
            "0",
            "--no-tv",
            "--bind",
            "127.0.0.1",
            "--messages",
            "3",
        ],
    );
    let addr = p.addr_after("PMU listening on ");
    // 100 silent PDCs: about 55 are accepted, the rest wait in the accept queue while accept
    // fails with EMFILE.
    let held = hold_at_descriptor_limit(&p, addr, 100);
    drop(held);
    recovers_from_descriptor_limit(&p, || {
        let mut s = connect(addr);
        s.write_all(b"CMD_short:0").ok()?;
        let mut v = Vec::new();
        s.read_to_end(&mut v).ok()?;
        (v == b"This is PMU data 1This is PMU data 2This is PMU data 3").then_some(())
    });
}
