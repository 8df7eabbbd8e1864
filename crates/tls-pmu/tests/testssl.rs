//! TLS configuration scan: testssl.sh (Debian package `testssl.sh`, binary `testssl`) against
//! `serve` on loopback must report nothing at LOW or above, and only TLS 1.2/1.3 with AEAD
//! suites, with the server's cipher order.
//!
//! Every finding is fixed in the code: the Authority Key Identifier (`certs`), the server's
//! cipher order (`ignore_client_order`), subjectAltName, key usage, ≤ 90-day validity, and a CRL
//! distribution point with a CRL the CA writes (without one, testssl rates
//! "neither CRL nor OCSP URI provided" HIGH).
//!
//! The scan runs with `--nodns=none`: testssl otherwise looks up CAA records of the target
//! (`host -t type257 127.0.0.1`, then `0.0.1.`, `0.1.`, `1.`) through the machine's resolver,
//! traffic that leaves loopback, and rates "no CAA record" LOW for an address that can have none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, TempDir, make_certs, text};
use testkit::proc::output;

const FAILING: &[&str] = &["LOW", "MEDIUM", "HIGH", "CRITICAL", "FATAL"];

fn testssl_path() -> std::path::PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v testssl"])
        .output()
        .unwrap();
    let path = text(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !path.is_empty(),
        "testssl not found: install the Debian package testssl.sh (apt-get install testssl.sh)"
    );
    path.into()
}

#[test]
fn testssl_scan_finds_nothing_at_low_or_above() {
    let testssl = testssl_path();
    let dir = TempDir::new("testssl");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "3", "--timeout", "10"]);
    let json = dir.path("scan.json");
    let started = Instant::now();
    // -p protocols, -P server preference, -S server defaults (certificate), -s cipher
    // categories, -f forward secrecy, -E every cipher per protocol, -U vulnerabilities.
    let out = output(
        Command::new(testssl)
            .args([
                "--quiet",
                "--color",
                "0",
                "--warnings",
                "off",
                "--nodns=none",
            ])
            .arg("--jsonfile")
            .arg(&json)
            .arg("--add-ca")
            .arg(&ca)
            .args(["-p", "-P", "-S", "-s", "-f", "-E", "-U"])
            .arg(format!("127.0.0.1:{}", server.port)),
        b"",
        Duration::from_secs(240),
    );
    let report = text(&out.stdout);
    eprintln!("testssl took {:?}", started.elapsed());
    let findings: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(&json).unwrap_or_else(|e| panic!("no JSON from testssl ({e}):\n{report}")),
    )
    .unwrap();
    let get = |id: &str| -> (String, String) {
        let f = findings
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("testssl reported no {id}:\n{report}"));
        (
            f["severity"].as_str().unwrap().to_owned(),
            f["finding"].as_str().unwrap().to_owned(),
        )
    };

    let bad: Vec<String> = findings
        .iter()
        .filter(|f| FAILING.contains(&f["severity"].as_str().unwrap_or("")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(
        bad.is_empty(),
        "testssl findings at LOW or above:\n{}\n\n{report}",
        bad.join("\n")
    );

    // The scan really ran and saw what we configured.
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(get(old).1, "not offered", "{old}");
    }
    assert_eq!(get("TLS1_2").1, "offered");
    assert!(get("TLS1_3").1.starts_with("offered"));
    assert_eq!(get("cipher_order"), ("OK".into(), "server".into()));
    assert_eq!(get("cert_chain_of_trust").0, "OK", "chain with --add-ca");
    assert_eq!(get("cert_trust").0, "OK", "name in subjectAltName");
    assert_eq!(
        get("cert_crlDistributionPoints").1,
        "http://tcpip.epfl.ch/netlab/ca.crl"
    );
    // The CRL the URL names exists, is signed by the CA and does not list the certificate.
    let verify = output(
        Command::new("openssl")
            .args(["verify", "-crl_check", "-CAfile"])
            .arg(&ca)
            .arg("-CRLfile")
            .arg(dir.path("ca.crl"))
            .arg(&cert),
        b"",
        Duration::from_secs(30),
    );
    assert!(
        verify.status.success(),
        "openssl verify -crl_check: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    let ciphers: Vec<&str> = findings
        .iter()
        .filter(|f| f["id"].as_str().unwrap_or("").starts_with("cipher-tls"))
        .map(|f| f["finding"].as_str().unwrap())
        .collect();
    assert!(ciphers.len() >= 4, "no per-cipher results:\n{report}");
    for c in &ciphers {
        assert!(
            c.contains("AESGCM") || c.contains("ChaCha20"),
            "non-AEAD cipher offered: {c}"
        );
        assert!(c.contains("TLS 1.2") || c.contains("TLS 1.3"), "{c}");
    }
}
