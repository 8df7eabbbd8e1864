//! At the process's descriptor limit the accept loop backs off (bounded CPU, at most one log
//! line a second) and recovers by itself once clients close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{BIN, TempDir, make_certs};
use testkit::probe::{
    NOFILE, hold_at_descriptor_limit, recovers_from_descriptor_limit, start_with_nofile,
};
use testkit::proc::output;

#[test]
fn descriptor_limit_makes_accept_back_off_and_recover() {
    if !testkit::tool_or_skip(&["prlimit"]) {
        return;
    }
    let dir = TempDir::new("nofile");
    let (cert, key, ca) = make_certs(&dir);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let p = start_with_nofile(
        BIN,
        NOFILE,
        &[
            "serve",
            "--cert",
            cert,
            "--key",
            key,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--messages",
            "3",
        ],
    );
    let addr = p.addr_after("listening on ");
    let held = hold_at_descriptor_limit(&p, addr, 100);
    drop(held);
    recovers_from_descriptor_limit(&p, || {
        let out = output(
            Command::new(BIN)
                .args([
                    "client",
                    "127.0.0.1",
                    &addr.port().to_string(),
                    "CMD_short:0",
                ])
                .arg("--ca")
                .arg(&ca)
                .args(["--timeout", "3"]),
            b"",
            Duration::from_secs(10),
        );
        out.status.success().then_some(())
    });
}
