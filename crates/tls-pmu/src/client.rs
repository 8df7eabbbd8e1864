//! `tls-pmu client`: the PDC of TP3 part 2 over TLS, with one-way authentication.
//!
//! The client trusts exactly one CA, the file given with `--ca` (the handout's `cacert.pem`),
//! not the system's store, and checks that the server's certificate names the host it dialled
//! (a DNS name or an IP address in the subjectAltName). A certificate from another CA, for
//! another name, or out of its validity period ends the program with one line naming the reason,
//! exit 1. After the handshake it is the part 2 client: send the command, read until the server
//! closes, and split the unframed messages with `labnet::wire::pmu::Splitter`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use labnet::log::{Event, Level};
use labnet::wire::pmu::Splitter;
use labnet::{Context, Error, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConnection, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme, StreamOwned,
};

use crate::{ClientConfig, provider, tls_err};

/// What one session received.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The messages, split as printed.
    pub messages: Vec<String>,
    /// Plaintext bytes received.
    pub bytes: u64,
    /// `read()` calls on the TLS stream that returned data.
    pub reads: u64,
    /// Whether the server ended with `close_notify` (else the reply may have been cut).
    pub clean_close: bool,
}

/// Runs one session and prints it.
pub fn run(c: &ClientConfig) -> Result<Summary> {
    let roots = load_roots(&c.ca)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| Error::msg(format!("use CA certificate {}: {e}", c.ca.display())))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err("configure TLS versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(LabVerifier { webpki }))
        .with_no_client_auth();
    // With SSLKEYLOGFILE set (as for curl and browsers), the session secrets are appended to that
    // file so Wireshark can decrypt the capture (Preferences → Protocols → TLS → (Pre)-Master-
    // Secret log filename). Without the variable this does nothing.
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    let tls = Arc::new(config);
    let name = ServerName::try_from(c.host.clone())
        .map_err(|e| Error::usage(format!("invalid server name '{}': {e}", c.host)))?;
    let tcp = connect(&c.host, c.port, c.timeout)?;
    let peer = tcp
        .peer_addr()
        .map(labnet::sock::unmap)
        .context("read peer address")?;
    tcp.set_read_timeout(Some(c.timeout))
        .context("set read timeout")?;
    tcp.set_write_timeout(Some(c.timeout))
        .context("set write timeout")?;
    let mut conn = ClientConnection::new(tls, name)
        .map_err(|e| tls_err(format!("start TLS with {}", c.host), e))?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| {
            if is_timeout(&e) {
                timed_out(format!("TLS handshake with {peer}"), c.timeout)
            } else {
                handshake_error(&e, &c.host, peer, &c.ca)
            }
        })?;
    }
    Event::new(
        Level::Info,
        format!(
            "TLS with {peer}: {}; certificate for '{}' verified against {}",
            crate::server::negotiated(&conn),
            c.host,
            c.ca.display()
        ),
    )
    .field("peer", peer.to_string())
    .field("version", format!("{:?}", conn.protocol_version()))
    .emit();

    let mut stream = StreamOwned::new(conn, tcp);
    stream
        .write_all(c.command.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| {
            let context = format!("send {} to {peer}", c.command);
            if is_timeout(&e) {
                timed_out(context, c.timeout)
            } else {
                Error::Io { context, source: e }
            }
        })?;
    Event::new(Level::Send, c.command.clone()).emit();

    let mut splitter = Splitter::new();
    let mut summary = Summary {
        messages: Vec::new(),
        bytes: 0,
        reads: 0,
        clean_close: true,
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                // A FIN without close_notify: RFC 8446 §6.1 calls this a truncation; the
                // handout's Python servers close that way, so warn instead of failing.
                summary.clean_close = false;
                break;
            }
            Err(e) if is_timeout(&e) => {
                return Err(timed_out(format!("read from {peer}: no data"), c.timeout));
            }
            Err(e) => return Err(Error::other(format!("read from {peer}"), e)),
        };
        summary.reads += 1;
        summary.bytes += n as u64;
        for msg in splitter.push(&buf[..n]) {
            print_message(&msg);
            summary.messages.push(msg);
        }
    }
    if let Some(msg) = splitter.finish() {
        print_message(&msg);
        summary.messages.push(msg);
    }
    if !summary.clean_close {
        labnet::log::warn(format!(
            "{peer} closed TCP without TLS close_notify: the reply may have been cut"
        ));
    }
    Event::new(
        Level::Stat,
        format!(
            "{} messages, {} bytes in {} reads; server closed the connection{}",
            summary.messages.len(),
            summary.bytes,
            summary.reads,
            if summary.clean_close {
                " (close_notify)"
            } else {
                ""
            }
        ),
    )
    .field("messages", summary.messages.len())
    .field("bytes", summary.bytes)
    .field("reads", summary.reads)
    .field("close_notify", summary.clean_close)
    .emit();
    Ok(summary)
}

/// SO_RCVTIMEO / SO_SNDTIMEO expiry: EAGAIN on Linux, which Rust shows as "Resource temporarily
/// unavailable (os error 11)", words that say nothing about time.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `<context>: timed out after S s`.
fn timed_out(context: String, timeout: std::time::Duration) -> Error {
    Error::msg(format!(
        "{context}: timed out after {} s",
        timeout.as_secs_f64()
    ))
}

fn print_message(msg: &str) {
    Event::new(Level::Recv, msg)
        .field("bytes", msg.len())
        .emit();
}

/// The standard verification (webpki: chain to the `--ca` anchor, name, dates, serverAuth), with
/// the certificates no TLS library accepts named first: an X.509 v1 certificate would otherwise
/// end as `invalid peer certificate: Other(OtherError(UnsupportedCertVersion))`.
#[derive(Debug)]
struct LabVerifier {
    webpki: Arc<WebPkiServerVerifier>,
}

/// Why [`LabVerifier`] refused a certificate before webpki looked at it ([`crate::ca::check_leaf`]).
#[derive(Debug)]
struct Unusable(String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unusable {}

impl ServerCertVerifier for LabVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Err(why) = crate::ca::check_leaf(end_entity.as_ref()) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Unusable(why))),
            )));
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The CA certificates in `path`, and nothing else, become the trust anchors.
pub fn load_roots(path: &Path) -> Result<RootCertStore> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::other(format!("read CA certificate {}", path.display()), e))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::msg(format!(
            "read CA certificate {}: no usable CERTIFICATE in the file",
            path.display()
        )));
    }
    Ok(roots)
}

fn connect(host: &str, port: u16, timeout: std::time::Duration) -> Result<TcpStream> {
    let addrs = labnet::args::resolve_all(host, port)?;
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((addr, e)),
        }
    }
    match last {
        Some((addr, e)) if is_timeout(&e) => Err(timed_out(format!("connect to {addr}"), timeout)),
        Some((addr, e)) => Err(e).with_context(|| format!("connect to {addr}")),
        None => Err(Error::msg(format!("resolve {host}: no address"))),
    }
}

/// One line that names why the server was not trusted.
fn handshake_error(e: &io::Error, host: &str, peer: SocketAddr, ca: &Path) -> Error {
    let context = format!("TLS handshake with {peer}");
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Error::other(context, io::Error::new(e.kind(), e.to_string()));
    };
    let why = match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "server certificate not trusted: it is not signed by the CA in {}",
                ca.display()
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("server certificate is for another name: it does not list '{host}'")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "server certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "server certificate is not valid yet (check the clocks)".to_owned()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "server certificate is not for TLS servers (no serverAuth usage)".to_owned()
            }
            // webpki picks the trust anchor by name: a different CA that happens to have the
            // same name as the real issuer shows up as a signature that does not verify.
            CertificateError::BadSignature => format!(
                "server certificate not trusted: it is not signed by the CA in {} (the \
                 signature does not verify with that CA's key; another CA with the same name?)",
                ca.display()
            ),
            CertificateError::Other(OtherError(e)) => match e.downcast_ref::<Unusable>() {
                // Our own reason says everything; rustls's rendering of it would repeat it.
                Some(why) => {
                    return Error::msg(format!("{context}: server certificate refused: {why}"));
                }
                None => format!("server certificate rejected: {e}"),
            },
            _ => "server certificate rejected".to_owned(),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("server refused the handshake with alert {alert:?}")
        }
        rustls::Error::InvalidMessage(_) => {
            "the server did not answer with TLS (a plaintext server?)".to_owned()
        }
        _ => "TLS handshake failed".to_owned(),
    };
    Error::msg(format!("{context}: {why} (rustls: {tls})"))
}
