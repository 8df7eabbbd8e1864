//! Helpers shared by the tls-pmu integration tests: temporary directories, certificates, and a
//! `serve` process on an OS-chosen port (a [`Proc`]: its log lines can be waited for). Commands
//! run with a hard time limit through [`output`].
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use testkit::proc::{Proc, output};

use rcgen::{CertificateParams, Issuer, KeyPair};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tls-pmu");

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tls-pmu-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `tls-pmu certs --id 123456 --out DIR` and returns (cert, key, ca).
pub fn make_certs(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let out = output(
        Command::new(BIN)
            .args(["certs", "--id", "123456", "--out"])
            .arg(&dir.0),
        b"",
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "certs failed: {}", text(&out.stderr));
    (
        dir.path("123456_cert.pem"),
        dir.path("123456_key.pem"),
        dir.path("cacert.pem"),
    )
}

/// A CA made in the test with rcgen, for certificates `certs` would never issue (expired, for
/// another name). Returns the CA's PEM and an issuer.
pub fn test_ca() -> (String, Issuer<'static, KeyPair>) {
    test_ca_named("test CA")
}

/// Like [`test_ca`] with a chosen common name.
pub fn test_ca_named(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = tls_pmu::certs::ca_params(SystemTime::now()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

/// Writes a leaf for `names` valid from `not_before` to `not_after`, signed by `issuer`;
/// returns (cert, key) paths.
pub fn leaf(
    dir: &TempDir,
    tag: &str,
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    not_before: SystemTime,
    not_after: SystemTime,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.not_before = not_before.into();
    p.not_after = not_after.into();
    p.use_authority_key_identifier_extension = true;
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.path(&format!("{tag}_cert.pem")),
        dir.path(&format!("{tag}_key.pem")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `tls-pmu client HOST PORT CMD --ca CA`.
pub fn client(host: &str, port: u16, cmd: &str, ca: &Path) -> Output {
    output(
        Command::new(BIN)
            .args(["client", host, &port.to_string(), cmd, "--ca"])
            .arg(ca)
            .args(["--timeout", "10"]),
        b"",
        Duration::from_secs(30),
    )
}

/// The messages of a text-mode client run: the text after `[RECV] ` on each line.
pub fn received(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("] [RECV] ").map(|(_, m)| m.to_owned()))
        .collect()
}

/// A running `tls-pmu serve` on 127.0.0.1 with an OS-chosen port; killed on drop.
pub struct Server {
    proc: Proc,
    pub port: u16,
}

impl Server {
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> Server {
        Self::try_start(cert, key, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the server; `Err` with its stderr when it exits instead of listening.
    pub fn try_start(cert: &Path, key: &Path, extra: &[&str]) -> Result<Server, String> {
        let proc = Proc::spawn(
            Command::new(BIN)
                .args(["serve", "--cert"])
                .arg(cert)
                .arg("--key")
                .arg(key)
                .args(["--bind", "127.0.0.1", "--port", "0"])
                .args(if extra.contains(&"--timeout") {
                    &[][..]
                } else {
                    &["--timeout", "3"][..]
                })
                .args(extra),
        );
        match proc.wait_line("listening on", Duration::from_secs(10)) {
            Some(line) => {
                let port = line
                    .rsplit_once("127.0.0.1:")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {line:?}"));
                Ok(Server { proc, port })
            }
            None => Err(proc.stop_after(Duration::ZERO).stderr),
        }
    }
}

/// The log and its waits are those of the process.
impl Deref for Server {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// `openssl s_client` against 127.0.0.1:port with extra arguments; stdin is sent after the
/// handshake (`-ign_eof`: keep reading until the server closes).
pub fn s_client(port: u16, args: &[&str], stdin: &[u8]) -> Output {
    output(
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-ign_eof",
            ])
            .args(args),
        stdin,
        Duration::from_secs(20),
    )
}
