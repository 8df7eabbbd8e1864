//! Helpers shared by the tls-pmu integration tests: temporary directories, a `serve` process
//! whose log lines the test can wait for, and commands run with a hard time limit.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

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
    let out = run(
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

/// Runs a command with `stdin` fed and a hard time limit (killed after it).
pub fn run(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let s = child.wait().unwrap();
            eprintln!("killed after {limit:?}: {cmd:?}");
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `tls-pmu client HOST PORT CMD --ca CA`.
pub fn client(host: &str, port: u16, cmd: &str, ca: &Path) -> Output {
    run(
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
    child: Child,
    lines: Receiver<String>,
    pub port: u16,
    pub log: Vec<String>,
}

impl Server {
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> Server {
        Self::try_start(cert, key, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the server; `Err` with its stderr when it exits instead of listening.
    pub fn try_start(cert: &Path, key: &Path, extra: &[&str]) -> Result<Server, String> {
        let mut child = Command::new(BIN)
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
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            lines: rx,
            port: 0,
            log: Vec::new(),
        };
        match server.wait_for("listening on", Duration::from_secs(10)) {
            Some(line) => {
                let port = line
                    .rsplit_once("127.0.0.1:")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {line:?}"));
                server.port = port;
                Ok(server)
            }
            None => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                let mut err = String::new();
                if let Some(mut e) = server.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                Err(err)
            }
        }
    }

    /// Waits for a log line containing `needle` (keeps every line seen in `log`).
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> Option<String> {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Like [`Server::wait_for`], failing the test with the log when the line never comes.
    pub fn expect(&mut self, needle: &str) -> String {
        match self.wait_for(needle, Duration::from_secs(10)) {
            Some(l) => l,
            None => panic!(
                "server never logged {needle:?}; log:\n{}",
                self.log.join("\n")
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl s_client` against 127.0.0.1:port with extra arguments; stdin is sent after the
/// handshake (`-ign_eof`: keep reading until the server closes).
pub fn s_client(port: u16, args: &[&str], stdin: &[u8]) -> Output {
    run(
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
