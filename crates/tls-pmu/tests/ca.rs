//! `tls-pmu ca init|sign`, the course CA of TP3 part 6: a student's own openssl key and CSR (the
//! handout's commands) signed by `ca sign`, then served by `tls-pmu serve` and verified by
//! `tls-pmu client` and by a Python client written from the handout (`ssl` module). What cannot
//! work is refused with one line naming why and the openssl command that makes a good one: a
//! 1024-bit key (the handout's `openssl genrsa … 1024`), a v1 certificate and one without a
//! subjectAltName (a TA's plain `openssl x509 -req`), in `ca sign`, `serve` and `client` alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, Server, TempDir, client, received, text};
use testkit::proc::{Proc, output};

fn openssl(dir: &Path, args: &[&str]) -> String {
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
    text(&out.stdout)
}

fn tls_pmu(dir: &Path, args: &[&str]) -> Output {
    output(
        Command::new(BIN).current_dir(dir).args(args),
        b"",
        Duration::from_secs(30),
    )
}

/// The handout's two commands, with the bits given and a subject instead of the prompts.
fn student_key_and_csr(dir: &Path, bits: &str, subject: &str) {
    openssl(dir, &["genrsa", "-out", "123456_key.pem", bits]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "123456_key.pem",
            "-out",
            "123456.csr",
            "-subj",
            subject,
        ],
    );
}

fn ca_init(dir: &Path) {
    let out = tls_pmu(dir, &["ca", "init", "--out", "ca"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Asserts a refusal: exit 1, exactly one line on stderr, containing every `want`.
fn refused(out: &Output, want: &[&str]) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}{}", text(&out.stdout));
    assert_eq!(err.lines().count(), 1, "{err}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in {err}");
    }
    err
}

/// The handout's Python PDC for part 6 (Python documentation 18.2.5, client side): one-way
/// verification against the course CA, the host name checked.
const PYTHON_PDC: &str = r#"
import socket, ssl, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(ca)
with socket.create_connection((host, port), timeout=10) as sock:
    with context.wrap_socket(sock, server_hostname=host) as conn:
        conn.sendall(b"CMD_short:0")
        data = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
print(data.decode())
"#;

#[test]
fn a_students_openssl_csr_signed_by_ca_sign_is_served_and_verified() {
    let dir = TempDir::new("casign");
    let d = &dir.0;
    ca_init(d);
    // The handout's flow with a 2048-bit key; the CN is the name the server is reached by.
    student_key_and_csr(d, "2048", "/C=CH/O=EPFL/CN=localhost");
    let out = tls_pmu(
        d,
        &[
            "ca",
            "sign",
            "--ca",
            "ca",
            "--csr",
            "123456.csr",
            "--out",
            "123456_cert.pem",
            "--name",
            "127.0.0.1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("X.509 v3, RSA 2048, serverAuth, subjectAltName localhost, 127.0.0.1"),
        "{}",
        text(&out.stdout)
    );
    let cert = openssl(d, &["x509", "-in", "123456_cert.pem", "-noout", "-text"]);
    for want in [
        "Version: 3 (0x2)",
        "DNS:localhost, IP Address:127.0.0.1",
        "TLS Web Server Authentication",
        "Digital Signature, Key Encipherment",
        "CA:FALSE",
        "Subject: C = CH, O = EPFL, CN = localhost",
        "Public-Key: (2048 bit)",
    ] {
        assert!(cert.contains(want), "{want:?} not in {cert}");
    }
    // The certificate carries the student's key (the CSR's), signed by the course CA.
    let verify = openssl(
        d,
        &["verify", "-CAfile", "ca/cacert.pem", "123456_cert.pem"],
    );
    assert!(verify.trim_end().ends_with(": OK"), "{verify}");
    let cert_pub = openssl(d, &["x509", "-in", "123456_cert.pem", "-noout", "-pubkey"]);
    let key_pub = openssl(d, &["pkey", "-in", "123456_key.pem", "-pubout"]);
    assert_eq!(cert_pub, key_pub);

    let server = Server::start(
        &dir.path("123456_cert.pem"),
        &dir.path("123456_key.pem"),
        &["--messages", "6"],
    );
    let want: Vec<String> = (1..=6).map(|i| format!("This is PMU data {i}")).collect();
    for host in ["localhost", "127.0.0.1"] {
        let out = client(host, server.port, "CMD_short:0", &dir.path("ca/cacert.pem"));
        assert!(out.status.success(), "{host}: {}", text(&out.stderr));
        assert_eq!(received(&out), want, "{host}");
    }
    let py = output(
        Command::new("python3").args([
            "-c",
            PYTHON_PDC,
            "localhost",
            &server.port.to_string(),
            dir.path("ca/cacert.pem").to_str().unwrap(),
        ]),
        b"",
        Duration::from_secs(30),
    );
    assert!(py.status.success(), "{}", text(&py.stderr));
    assert_eq!(text(&py.stdout), format!("{}\n", want.concat()));
    server.wait_for("CMD_short:0 served: 6 messages");
}

#[test]
fn ca_sign_adds_the_names_a_csr_requests_and_skips_a_cn_that_is_no_host_name() {
    let dir = TempDir::new("canames");
    let d = &dir.0;
    ca_init(d);
    openssl(d, &["genrsa", "-out", "k.pem", "2048"]);
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
            "/CN=Jane Doe",
            "-addext",
            "subjectAltName=DNS:tcpip.epfl.ch,IP:172.30.0.10",
        ],
    );
    let out = tls_pmu(
        d,
        &[
            "ca", "sign", "--ca", "ca", "--csr", "r.csr", "--out", "c.pem", "--name", "tcpip",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(log.contains("'Jane Doe' is not a host name"), "{log}");
    let cert = openssl(d, &["x509", "-in", "c.pem", "-noout", "-text"]);
    assert!(
        cert.contains("DNS:tcpip.epfl.ch, IP Address:172.30.0.10, DNS:tcpip\n"),
        "{cert}"
    );
    // Without a usable name there is nothing for a client to match: refused, with the fix.
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "k.pem",
            "-out",
            "anon.csr",
            "-subj",
            "/CN=Jane Doe",
        ],
    );
    let out = tls_pmu(
        d,
        &[
            "ca", "sign", "--ca", "ca", "--csr", "anon.csr", "--out", "a.pem",
        ],
    );
    refused(&out, &["name no host", "--name HOST", "-subj /CN=HOST"]);
    assert!(!dir.path("a.pem").exists());
}

#[test]
fn the_handouts_1024_bit_key_is_refused_by_ca_sign_with_the_openssl_fix() {
    let dir = TempDir::new("ca1024");
    let d = &dir.0;
    ca_init(d);
    student_key_and_csr(d, "1024", "/CN=tcpip.epfl.ch");
    let out = tls_pmu(
        d,
        &[
            "ca",
            "sign",
            "--ca",
            "ca",
            "--csr",
            "123456.csr",
            "--out",
            "123456_cert.pem",
        ],
    );
    refused(
        &out,
        &[
            "RSA key has 1024 bits",
            "under 2048 bits",
            "openssl genrsa -out X_key.pem 2048",
            "openssl req -new -key X_key.pem -out X.csr",
        ],
    );
    assert!(!dir.path("123456_cert.pem").exists());
}

#[test]
fn ca_init_and_sign_refuse_what_cannot_work_in_one_line() {
    let dir = TempDir::new("carefuse");
    let d = &dir.0;
    // No CA yet.
    student_key_and_csr(d, "2048", "/CN=tcpip.epfl.ch");
    let out = tls_pmu(
        d,
        &[
            "ca",
            "sign",
            "--ca",
            "ca",
            "--csr",
            "123456.csr",
            "--out",
            "c.pem",
        ],
    );
    refused(&out, &["no CA in ca", "tls-pmu ca init --out ca"]);
    ca_init(d);
    // A second init would orphan every certificate the first CA signed.
    refused(
        &tls_pmu(d, &["ca", "init", "--out", "ca"]),
        &["already holds a CA"],
    );
    // A key or a certificate given instead of the CSR.
    for (file, what) in [
        ("123456_key.pem", "is a private key"),
        ("ca/cacert.pem", "is a certificate"),
    ] {
        let out = tls_pmu(
            d,
            &["ca", "sign", "--ca", "ca", "--csr", file, "--out", "c.pem"],
        );
        refused(&out, &[what, "openssl req -new"]);
    }
    // Usage errors exit 2.
    for args in [
        &["ca"][..],
        &["ca", "sign", "--ca", "ca"],
        &["ca", "frobnicate"],
        &[
            "ca", "sign", "--ca", "ca", "--csr", "x", "--out", "y", "--days", "400",
        ],
    ] {
        assert_eq!(tls_pmu(d, args).status.code(), Some(2), "{args:?}");
    }
}

/// A TA's plain `openssl x509 -req` (v1, no extensions), and the same with extensions but no
/// subjectAltName. Returns the CA certificate's path.
fn ta_signed(dir: &TempDir, ext: Option<&str>, out: &str) -> PathBuf {
    let d = &dir.0;
    if !dir.path("ta_ca.pem").exists() {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ta_ca.key",
                "-out",
                "ta_ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=TA CA",
            ],
        );
    }
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        "123456.csr",
        "-CA",
        "ta_ca.pem",
        "-CAkey",
        "ta_ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        out,
    ];
    if let Some(ext) = ext {
        std::fs::write(dir.path("ext.cnf"), ext).unwrap();
        args.extend(["-extfile", "ext.cnf"]);
    }
    openssl(d, &args);
    dir.path("ta_ca.pem")
}

/// A handout-style Python TLS server (one connection) with `cert` and `key`; its port.
fn python_server(cert: &Path, key: &Path) -> (Proc, u16) {
    const SERVER: &str = r#"
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
conn, addr = s.accept()
try:
    c = context.wrap_socket(conn, server_side=True)
    c.recv(64)
    c.sendall(b"This is PMU data 1")
    c.close()
except (ssl.SSLError, OSError) as e:
    print("handshake failed:", e, flush=True)
"#;
    let p = Proc::spawn(
        Command::new("python3")
            .args(["-c", SERVER])
            .arg(cert)
            .arg(key),
    );
    let port = p
        .wait_lines(Duration::from_secs(10), |l| l.first()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("python server: {}", p.log()));
    (p, port)
}

#[test]
fn a_v1_certificate_and_one_without_san_are_refused_by_serve_and_client_with_the_fix() {
    for (tag, ext, want) in [
        ("v1", None, "X.509 v1 certificate"),
        (
            "nosan",
            Some("extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"),
            "no subjectAltName",
        ),
    ] {
        let dir = TempDir::new(tag);
        student_key_and_csr(&dir.0, "2048", "/CN=localhost");
        let ca = ta_signed(&dir, ext, "123456_cert.pem");
        let (cert, key) = (dir.path("123456_cert.pem"), dir.path("123456_key.pem"));
        let version = openssl(
            &dir.0,
            &["x509", "-in", "123456_cert.pem", "-noout", "-text"],
        );
        assert_eq!(
            version.contains("Version: 1 (0x0)"),
            ext.is_none(),
            "{version}"
        );

        // serve: refused at startup, one line, with the fix.
        let err = Server::try_start(&cert, &key, &[])
            .err()
            .expect("the certificate must be refused");
        assert_eq!(err.lines().count(), 1, "{err}");
        for w in [
            want,
            "tls-pmu ca sign --ca DIR --csr X.csr",
            "subjectAltName=DNS:HOST",
        ] {
            assert!(err.contains(w), "{tag}: {w:?} not in {err}");
        }

        // client: against a Python server that does use it.
        let (py, port) = python_server(&cert, &key);
        let out = client("localhost", port, "CMD_short:0", &ca);
        let err = refused(
            &out,
            &[
                "server certificate refused",
                want,
                "tls-pmu ca sign --ca DIR --csr X.csr",
            ],
        );
        assert!(!err.contains("UnsupportedCertVersion"), "{err}");
        assert!(!text(&out.stdout).contains("PMU data"));
        drop(py);
    }
}
