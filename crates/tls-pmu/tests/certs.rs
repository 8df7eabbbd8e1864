//! `tls-pmu certs`: the handout's key / CSR / CA-signed certificate flow, checked with openssl.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::{BIN, TempDir, make_certs, text};
use testkit::proc::output;

fn openssl(args: &[&str]) -> String {
    let out = output(
        Command::new("openssl").args(args),
        b"",
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn certs_makes_ca_key_csr_and_a_ca_signed_certificate_with_the_lab_names() {
    let dir = TempDir::new("certs");
    let (cert, key, ca) = make_certs(&dir);
    let csr = dir.path("123456.csr");
    let ca_key = dir.path("cakey.pem");
    for f in [&cert, &key, &ca, &csr, &ca_key] {
        assert!(f.exists(), "{} missing", f.display());
    }
    // Private keys are readable by their owner only.
    for k in [&key, &ca_key] {
        let mode = std::fs::metadata(k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", k.display());
    }
    // The chain verifies, for the purpose of a TLS server.
    let v = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        s(&ca),
        s(&cert),
    ]);
    assert!(v.trim_end().ends_with(": OK"), "{v}");

    // The CSR is signed by the server key, and the certificate carries the CSR's public key.
    openssl(&["req", "-in", s(&csr), "-noout", "-verify"]);
    let csr_pub = openssl(&["req", "-in", s(&csr), "-noout", "-pubkey"]);
    let cert_pub = openssl(&["x509", "-in", s(&cert), "-noout", "-pubkey"]);
    let key_pub = openssl(&["pkey", "-in", s(&key), "-pubout"]);
    assert_eq!(csr_pub, cert_pub);
    assert_eq!(key_pub, cert_pub);

    let leaf = openssl(&["x509", "-in", s(&cert), "-noout", "-text"]);
    for want in [
        "DNS:tcpip",
        "DNS:tp3_tcpip",
        "DNS:tcpip.epfl.ch",
        "IP Address:172.30.0.10",
        "IP Address:FD30:0:0:0:0:0:0:10",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "X509v3 Authority Key Identifier",
        "TLS Web Server Authentication",
        "Digital Signature",
        "CA:FALSE",
        "NIST CURVE: P-256",
        "Issuer: CN = netlab TP3 lab CA",
    ] {
        assert!(leaf.contains(want), "leaf lacks {want:?}:\n{leaf}");
    }
    // The AKI of the leaf is the CA's subject key identifier.
    let ca_text = openssl(&["x509", "-in", s(&ca), "-noout", "-text"]);
    let ski = ca_text
        .split("X509v3 Subject Key Identifier:")
        .nth(1)
        .and_then(|r| r.lines().nth(1))
        .unwrap()
        .trim()
        .to_owned();
    let aki = leaf
        .split("X509v3 Authority Key Identifier:")
        .nth(1)
        .and_then(|r| r.lines().nth(1))
        .unwrap()
        .trim()
        .trim_start_matches("keyid:")
        .to_owned();
    assert_eq!(aki, ski);
    for want in ["CA:TRUE", "Certificate Sign"] {
        assert!(ca_text.contains(want), "CA lacks {want:?}:\n{ca_text}");
    }

    // Validity: at most 90 days (openssl -checkend: still valid in 89 days, expired in 91).
    let out = output(
        Command::new("openssl").args(["x509", "-in", s(&cert), "-noout", "-checkend", "7689600"]),
        b"",
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "leaf should be valid 89 days from now"
    );
    let out = output(
        Command::new("openssl").args(["x509", "-in", s(&cert), "-noout", "-checkend", "7776000"]),
        b"",
        Duration::from_secs(10),
    );
    assert!(
        !out.status.success(),
        "leaf must not be valid 90 days from now"
    );
}

#[test]
fn a_second_run_reuses_the_ca_and_adds_extra_hosts() {
    let dir = TempDir::new("reuse");
    make_certs(&dir);
    let ca_before = std::fs::read(dir.path("cacert.pem")).unwrap();
    let out = output(
        Command::new(BIN)
            .args([
                "certs",
                "--id",
                "654321",
                "--hosts",
                "pmu.example,10.9.8.7",
                "--days",
                "7",
            ])
            .arg("--out")
            .arg(&dir.0),
        b"",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("using the existing CA"));
    assert_eq!(std::fs::read(dir.path("cacert.pem")).unwrap(), ca_before);
    let cert = dir.path("654321_cert.pem");
    openssl(&["verify", "-CAfile", s(&dir.path("cacert.pem")), s(&cert)]);
    let leaf = openssl(&["x509", "-in", s(&cert), "-noout", "-text"]);
    assert!(
        leaf.contains("DNS:pmu.example") && leaf.contains("IP Address:10.9.8.7"),
        "{leaf}"
    );
    let out = output(
        Command::new("openssl").args(["x509", "-in", s(&cert), "-noout", "-checkend", "691200"]),
        b"",
        Duration::from_secs(10),
    );
    assert!(
        !out.status.success(),
        "a 7-day leaf must be expired 8 days from now"
    );
}

#[test]
fn certs_refuses_long_validity_bad_ids_and_explains_rsa() {
    let dir = TempDir::new("bad");
    for args in [
        vec!["certs", "--id", "1", "--days", "91"],
        vec!["certs", "--id", "1", "--days", "0"],
        vec!["certs", "--id", "../etc"],
        vec!["certs"],
    ] {
        let out = output(
            Command::new(BIN).args(&args).arg("--out").arg(&dir.0),
            b"",
            Duration::from_secs(10),
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr).lines().count(), 1);
    }
    let out = output(
        Command::new(BIN)
            .args(["certs", "--id", "1", "--rsa", "--out"])
            .arg(&dir.0),
        b"",
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot generate RSA keys") && err.contains("openssl genrsa"),
        "{err}"
    );
}

#[test]
fn help_shows_examples_and_bad_flags_exit_2() {
    let out = output(
        Command::new(BIN).arg("--help"),
        b"",
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("EXAMPLES") && help.contains("tls-pmu certs --id 123456"),
        "{help}"
    );
    for args in [
        vec!["serve", "--cert", "c", "--key", "k", "--prot", "1"],
        vec!["client", "localhost", "5443", "CMD_short:0"],
        vec!["client", "localhost", "5443", "CMD_bogus", "--ca", "x"],
        vec!["client", "localhost", "0", "CMD_short:0", "--ca", "x"],
        vec!["frobnicate"],
        vec![],
    ] {
        let out = output(Command::new(BIN).args(&args), b"", Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("tls-pmu: ") && err.contains("--help"),
            "{err}"
        );
    }
}
