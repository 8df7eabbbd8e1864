//! TP3 part 6 (bonus): the student's PMU server over TLS, with the student's key and
//! certificate ("we will grade only the server (PMU) part").
//!
//! The certificate is checked on its own first: it must chain to the course CA (`--ca`) and be
//! one TLS clients accept (X.509 v3 with a subjectAltName, no 1024-bit RSA), and the key must be
//! its key. Then the server runs on student1 from a private copy of the submission (it opens its
//! key and certificate by relative name), its port is found in the host's socket table, and a
//! TLS client sends `CMD_short:0` to it; a plaintext client must get no PMU data. The grader
//! reports the certificate's names instead of requiring one to match the lab host: students name
//! their certificate after their own machine.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use labnet::Result;
use rand::rngs::SmallRng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::lab::Lab;
use crate::report::Marks;
use crate::sandbox::clip;
use crate::tp3::{Grader, wait_until};

/// Grades part 6.
pub fn part6(g: &Grader, lab: &Lab, marks: &mut Marks, _rng: &mut SmallRng) -> Result<()> {
    let certs = g.sub.ending("_cert.pem");
    let keys = g.sub.ending("_key.pem");
    let provider = tls_pmu::provider();

    let cert = certs.first().cloned();
    match (&cert, &g.opts.ca) {
        (None, _) => marks.check(
            "p6.chain",
            Err(format!(
                "expected the certificate the course CA signed (CAMIPRO1_cert.pem) in the submission; no *_cert.pem file (found: {})",
                files_note(g)
            )),
        ),
        (Some(_), None) => marks.check(
            "p6.chain",
            Err("the grader was run without --ca: the course CA certificate is needed to check the chain".into()),
        ),
        (Some(c), Some(ca)) => marks.check("p6.chain", chain(c, ca, &provider)),
    }
    match (&cert, keys.is_empty()) {
        (None, _) => marks.check("p6.key", Err("no *_cert.pem to match the key against".into())),
        (_, true) => marks.check(
            "p6.key",
            Err(format!(
                "expected the private key (CAMIPRO1_key.pem) in the submission; no *_key.pem file (found: {})",
                files_note(g)
            )),
        ),
        (Some(c), false) => marks.check("p6.key", key_matches(c, &keys, &provider)),
    }

    let program = match g.program("part6", "Part6_PMU_")? {
        Ok(p) => p,
        Err(why) => {
            marks.check("p6.served", Err(why.clone()));
            marks.check("p6.plaintext", Err(why));
            return Ok(());
        }
    };
    let argv = g.argv("6", "{prog}", &program, &[]);
    // Each client meets a server of its own, on a host of its own (a restarted server without
    // SO_REUSEADDR could not bind its port again while the first one's connection sits in
    // TIME_WAIT): a server that a bad handshake or a client's early close makes crash must not
    // decide the next check.
    let served = with_server(
        g,
        lab,
        &program,
        &argv,
        ("student1", "student2"),
        |ns, local, target| {
            let p = Arc::clone(&provider);
            match crate::lab::in_namespace(ns, move || tls_command(target, p))
                .unwrap_or_else(|e| Err(e.to_string()))
            {
                Ok(text) => pmu_data(&text, local),
                Err(why) => Err(format!(
                    "expected a TLS handshake on {local} and PMU data for CMD_short:0; {why}"
                )),
            }
        },
    )?;
    marks.check("p6.served", served);
    let refused = with_server(
        g,
        lab,
        &program,
        &argv,
        ("student2", "student1"),
        |ns, _, target| {
            crate::lab::in_namespace(ns, move || plaintext(target))
                .unwrap_or_else(|e| Err(e.to_string()))
        },
    )?;
    marks.check("p6.plaintext", refused);
    Ok(())
}

/// Starts the student's server on `hosts.0`, finds its port in that host's socket table, runs
/// `client` from `hosts.1` (or from the server's host when it listens on loopback) with
/// `(namespace, listening address, address to connect)`, then stops the server.
fn with_server(
    g: &Grader,
    lab: &Lab,
    program: &Path,
    argv: &[std::ffi::OsString],
    (host, other): (&str, &str),
    client: impl FnOnce(&str, SocketAddr, SocketAddr) -> std::result::Result<String, String>,
) -> Result<std::result::Result<String, String>> {
    let cwd = program.parent().unwrap_or(Path::new("/"));
    let mut server = lab.student(g.lane, host, cwd, argv, false, &g.limits)?;
    // Its port: the only TCP listener of its host.
    let mut listening: Option<SocketAddr> = None;
    wait_until(Duration::from_secs(10), || {
        listening = listener(&lab.probe(host, "ss", &["-Htln"]));
        listening.is_some()
    });
    let Some(local) = listening else {
        let f = server.stop().relative_to(cwd);
        g.lane.kill_all();
        return Ok(Err(format!(
            "expected the server to listen on a TCP port; after 10 s it listened on none{}",
            if f.error_tail().is_empty() {
                String::new()
            } else {
                format!("; its last error output: {}", f.error_tail())
            }
        )));
    };
    // A server bound to loopback is reached from its own host, any other from the other host.
    let address = IpAddr::V4(lab.bed.host(host).ipv4());
    let (from, target) = if local.ip().is_loopback() {
        (host, local)
    } else if local.ip().is_unspecified() {
        (other, SocketAddr::new(address, local.port()))
    } else {
        (other, local)
    };
    let result = client(&lab.bed.ns(from), local, target);
    server.stop();
    g.lane.kill_all();
    Ok(result)
}

fn files_note(g: &Grader) -> String {
    let v: Vec<String> = g
        .sub
        .files()
        .iter()
        .take(8)
        .map(|p| p.display().to_string())
        .collect();
    v.join(", ")
}

/// The certificate chains to the CA and is one a TLS client accepts.
fn chain(
    cert: &Path,
    ca: &Path,
    provider: &Arc<CryptoProvider>,
) -> std::result::Result<String, String> {
    let der = tls_pmu::ca::first_cert(cert).map_err(|e| e.to_string())?;
    let names = names(&der);
    if let Err(why) = tls_pmu::ca::check_leaf(&der) {
        return Err(format!("{}: {why}", file_name(cert)));
    }
    let roots = tls_pmu::client::load_roots(ca).map_err(|e| e.to_string())?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(provider),
    )
    .build()
    .map_err(|e| format!("the CA file {}: {e}", ca.display()))?;
    let Some(name) = names
        .iter()
        .find_map(|n| ServerName::try_from(n.clone()).ok())
    else {
        return Err(format!(
            "{} names no host (no subjectAltName)",
            file_name(cert)
        ));
    };
    verifier
        .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
        .map(|_| {
            format!(
                "{} is signed by the course CA, for {}",
                file_name(cert),
                names.join(", ")
            )
        })
        .map_err(|e| {
            format!(
                "expected a certificate signed by the course CA ({}); {} does not verify: {e}",
                ca.display(),
                file_name(cert)
            )
        })
}

/// The names a certificate is for (subjectAltName DNS names and addresses), for the feedback.
fn names(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut v = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => v.push((*d).to_owned()),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    v.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or([0; 4])).to_string());
                }
                _ => {}
            }
        }
    }
    v
}

/// The key (one of `keys`) belongs to the certificate.
fn key_matches(
    cert: &Path,
    keys: &[PathBuf],
    provider: &Arc<CryptoProvider>,
) -> std::result::Result<String, String> {
    let der = tls_pmu::ca::first_cert(cert).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    for k in keys {
        let key = match PrivateKeyDer::from_pem_file(k) {
            Ok(k) => k,
            Err(e) => {
                notes.push(format!("{}: not a PEM private key ({e})", file_name(k)));
                continue;
            }
        };
        let signing = match provider.key_provider.load_private_key(key) {
            Ok(s) => s,
            Err(e) => {
                notes.push(format!(
                    "{}: unusable ({e}); keys under 2048-bit RSA are refused by TLS libraries (openssl genrsa -out KEY 2048)",
                    file_name(k)
                ));
                continue;
            }
        };
        match CertifiedKey::new(vec![der.clone()], signing).keys_match() {
            Ok(()) => {
                return Ok(format!(
                    "{} is the key of {}",
                    file_name(k),
                    file_name(cert)
                ));
            }
            Err(e) => notes.push(format!("{}: {e}", file_name(k))),
        }
    }
    Err(format!(
        "expected the private key of {}; {}",
        file_name(cert),
        notes.join("; ")
    ))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The first listening TCP socket in `ss -Htln` output.
fn listener(ss: &str) -> Option<SocketAddr> {
    ss.lines().find_map(|l| {
        let local = l.split_whitespace().nth(3)?;
        let (host, port) = local.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host == "*" { "0.0.0.0" } else { host };
        let host = host.split('%').next().unwrap_or(host);
        Some(SocketAddr::new(host.parse().ok()?, port.parse().ok()?))
    })
}

/// Sends `CMD_short:0` over TLS and returns everything the server sent until it closed.
fn tls_command(
    target: SocketAddr,
    provider: Arc<CryptoProvider>,
) -> std::result::Result<String, String> {
    let tcp = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Inspect(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("student1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"CMD_short:0")
        .and_then(|()| tls.flush())
        .map_err(|e| format!("the TLS handshake failed: {e}"))?;
    let mut data = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            // Python's ssl closes without close_notify unless the program unwraps: the end.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) if data.is_empty() => return Err(format!("nothing came back: {e}")),
            Err(_) => break,
        }
    }
    if data.is_empty() {
        return Err("the server sent no data after the handshake".into());
    }
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// The server's reply must be the messages 1..n of part 2, in order (however TLS records cut
/// them: the protocol has no separator).
fn pmu_data(text: &str, local: SocketAddr) -> std::result::Result<String, String> {
    const MSG: &str = "This is PMU data ";
    let mut numbers = Vec::new();
    let mut rest_ok = true;
    for piece in text.split(MSG).skip(1) {
        let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<u32>() {
            Ok(i) if piece.len() == digits.len() => numbers.push(i),
            _ => rest_ok = false,
        }
    }
    let n = numbers.len() as u32;
    if n > 0 && rest_ok && text.starts_with(MSG) && numbers == (1..=n).collect::<Vec<u32>>() {
        Ok(format!(
            "the server on {local} answered CMD_short:0 over TLS with {n} messages 'This is PMU data 1' … 'This is PMU data {n}'"
        ))
    } else {
        Err(format!(
            "expected the messages 'This is PMU data 1' … 'This is PMU data n' of part 2 over TLS; the server on {local} sent '{}'",
            clip(text, 80)
        ))
    }
}

/// A plaintext client must get no PMU data.
fn plaintext(target: SocketAddr) -> std::result::Result<String, String> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(|e| {
        format!("connecting to {target} again: {e} (did the server stop after one client?)")
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(b"CMD_short:0");
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        if data.len() > 64 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&data);
    if text.contains("This is PMU data") {
        Err(format!(
            "expected the server to refuse a client that does not speak TLS; it answered in clear text: '{}'",
            clip(&text, 60)
        ))
    } else {
        Ok(format!(
            "a plaintext CMD_short:0 got {} (no PMU data)",
            if data.is_empty() {
                "nothing back".to_owned()
            } else {
                format!("{} bytes that are not PMU data", data.len())
            }
        ))
    }
}

/// Accepts whatever certificate the student's server presents, still checking the handshake
/// signatures: `p6.served` asks only whether the PMU is served over TLS; the certificate itself is
/// judged by `p6.chain`, from the file, against the course CA.
#[derive(Debug)]
struct Inspect(Arc<CryptoProvider>);

impl ServerCertVerifier for Inspect {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_listener_is_read_from_the_socket_table() {
        let ss = "LISTEN 0      5            0.0.0.0:4433      0.0.0.0:*\n";
        assert_eq!(listener(ss), Some("0.0.0.0:4433".parse().unwrap()));
        let ss6 = "LISTEN 0 128 [::1]:5003 [::]:*\n";
        assert_eq!(listener(ss6).map(|a| a.port()), Some(5003));
        assert_eq!(listener(""), None);
    }
}
