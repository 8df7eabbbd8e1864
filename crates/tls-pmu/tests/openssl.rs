//! Interop with openssl: `s_client` against `serve`, and keys and certificates made with the
//! handout's openssl commands (2048-bit RSA, PKCS#8 and PKCS#1 forms; EC keys in SEC1 form).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, TempDir, client, make_certs, received, s_client, text};
use testkit::proc::output;

fn openssl(dir: &Path, args: &[&str]) {
    let out = output(
        Command::new("openssl").current_dir(dir).args(args),
        b"",
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
}

/// The handout's flow with openssl, plus a subjectAltName (browsers and rustls ignore the CN):
/// a CA, then `genrsa` → `req -new` → `x509 -req -extfile`. `key_args` picks the key command.
fn openssl_pki(dir: &TempDir, key_cmd: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let d = &dir.0;
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "cacert.pem",
            "-days",
            "30",
            "-subj",
            "/CN=openssl lab CA",
        ],
    );
    openssl(d, key_cmd);
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "k.pem",
            "-out",
            "r.csr",
            "-subj",
            "/C=CH/O=TP3/CN=localhost",
        ],
    );
    std::fs::write(
        dir.path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
         basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         authorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "r.csr",
            "-CA",
            "cacert.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
        ],
    );
    (
        dir.path("cert.pem"),
        dir.path("k.pem"),
        dir.path("cacert.pem"),
    )
}

#[test]
fn s_client_verifies_with_the_ca_and_sees_tls13_and_tls12() {
    let dir = TempDir::new("sclient");
    let (cert, key, ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &["--messages", "5"]);
    let ca = ca.to_str().unwrap();
    let out = s_client(
        server.port,
        &["-CAfile", ca, "-verify_return_error"],
        b"CMD_short:0",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}");
    assert!(stdout.contains("TLSv1.3"), "{stdout}");
    let data: String = (1..=5).map(|i| format!("This is PMU data {i}")).collect();
    assert!(stdout.contains(&data), "{stdout}");

    let out = s_client(
        server.port,
        &["-CAfile", ca, "-verify_return_error", "-tls1_2"],
        b"CMD_short:0",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Protocol  : TLSv1.2"), "{stdout}");
    assert!(
        stdout.contains("ECDHE-ECDSA-AES256-GCM-SHA384"),
        "server order: {stdout}"
    );
    assert!(stdout.contains(&data));
    server.wait_for("TLSv1_2");
}

#[test]
fn s_client_without_the_ca_fails_verification() {
    let dir = TempDir::new("noca");
    let (cert, key, _ca) = make_certs(&dir);
    let server = Server::start(&cert, &key, &[]);
    // The system store does not know the lab CA.
    let out = s_client(server.port, &["-verify_return_error"], b"CMD_short:0");
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("unable to get local issuer certificate") || all.contains("verify error"),
        "{all}"
    );
    assert!(!all.contains("This is PMU data"), "{all}");
    server.wait_for("refused: client aborted the handshake with alert");
}

#[test]
fn openssl_made_rsa_2048_keys_work_in_pkcs8_and_pkcs1_form() {
    for (tag, cmd) in [
        ("pkcs8", vec!["genrsa", "-out", "k.pem", "2048"]),
        (
            "pkcs1",
            vec!["genrsa", "-traditional", "-out", "k.pem", "2048"],
        ),
    ] {
        let dir = TempDir::new(tag);
        let (cert, key, ca) = openssl_pki(&dir, &cmd);
        let label = std::fs::read_to_string(&key).unwrap();
        let want = if tag == "pkcs1" {
            "BEGIN RSA PRIVATE KEY"
        } else {
            "BEGIN PRIVATE KEY"
        };
        assert!(label.contains(want), "{tag}: {label}");
        let server = Server::start(&cert, &key, &["--messages", "3"]);
        let out = client("localhost", server.port, "CMD_short:0", &ca);
        assert!(out.status.success(), "{tag}: {}", text(&out.stderr));
        assert_eq!(received(&out).len(), 3, "{tag}");
        let out = s_client(
            server.port,
            &[
                "-CAfile",
                ca.to_str().unwrap(),
                "-verify_return_error",
                "-tls1_2",
            ],
            b"CMD_short:0",
        );
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("ECDHE-RSA-AES256-GCM-SHA384"),
            "{tag}: {stdout}"
        );
        server.wait_for("CMD_short:0 served: 3 messages");
    }
}

#[test]
fn openssl_made_ec_key_in_sec1_form_works() {
    let dir = TempDir::new("sec1");
    let (cert, key, ca) = openssl_pki(
        &dir,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "k.pem",
        ],
    );
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let server = Server::start(&cert, &key, &["--messages", "2"]);
    let out = client("127.0.0.1", server.port, "CMD_short:0", &ca);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(received(&out).len(), 2);
}

#[test]
fn the_handouts_1024_bit_key_is_refused_at_startup() {
    let dir = TempDir::new("rsa1024");
    openssl(&dir.0, &["genrsa", "-out", "weak.pem", "1024"]);
    openssl(
        &dir.0,
        &[
            "req",
            "-x509",
            "-key",
            "weak.pem",
            "-out",
            "weak_cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
    );
    let err = Server::try_start(&dir.path("weak_cert.pem"), &dir.path("weak.pem"), &[])
        .err()
        .expect("a 1024-bit key must be refused");
    assert!(err.contains("RSA key of 1024 bits is too weak"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
