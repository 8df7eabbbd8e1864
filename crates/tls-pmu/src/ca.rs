//! `tls-pmu ca init|sign`: the course CA of TP3 part 6 ("we will act as a CA").
//!
//! The handout's students make their own key and certificate signing request with openssl
//! (`openssl genrsa -out CAMIPRO1_key.pem …`, `openssl req -new -key CAMIPRO1_key.pem -out
//! CAMIPRO1.csr`) and send the CSR to the TAs, who return `CAMIPRO1_cert.pem` signed by the
//! course CA (`cacert.pem`). `ca init` makes that CA once; `ca sign` is what the TAs run on each
//! CSR. It issues what today's TLS libraries require and what a TA's plain `openssl x509 -req`
//! does not give: an X.509 **v3** certificate with the extensions serverAuth and
//! **subjectAltName** (RFC 6125 §6.4.4: a client matches the server's name against the SAN and
//! ignores the CN once a SAN is present; rustls and webpki refuse v1 certificates outright).
//!
//! What cannot work is refused with one line saying why and the openssl command that makes a
//! good one: a CSR (or key, or certificate) with an RSA key under 2048 bits — the handout's
//! `openssl genrsa … 1024` — and, in `serve` and `client`, a v1 certificate or one without a
//! subjectAltName ([`check_leaf`]).
//!
//! CSRs are read with `x509-parser` (the parser rcgen itself uses): it checks the request's
//! signature (the student proves they hold the key) and exposes the key's size and the
//! requested names; rcgen then writes and signs the certificate.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use labnet::{Context, Error, Result};
use rcgen::{
    CertificateParams, CrlDistributionPoint, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, DnsName};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{SubjectPublicKeyInfo as Spki, X509Name};

use crate::certs::{self, BACKDATE, CA_CERT, CA_KEY, DAY};
use crate::server::MIN_RSA_BITS;

/// The openssl commands that make a good key and CSR, for the refusal lines.
pub const GOOD_KEY_HINT: &str = "make a 2048-bit key and a new CSR: `openssl genrsa -out X_key.pem \
     2048` then `openssl req -new -key X_key.pem -out X.csr`";
/// How to get a v3 certificate with a subjectAltName, for the refusal lines.
pub const GOOD_CERT_HINT: &str = "have the CSR signed as X.509 v3 with a subjectAltName: `tls-pmu \
     ca sign --ca DIR --csr X.csr --out X_cert.pem --name HOST` (with openssl: add `-extfile` \
     with `subjectAltName=DNS:HOST` to `openssl x509 -req`)";

/// `tls-pmu ca init`.
#[derive(Debug, Clone, PartialEq)]
pub struct InitConfig {
    /// Where `cacert.pem` and `cakey.pem` go.
    pub out: PathBuf,
}

/// `tls-pmu ca sign`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignConfig {
    /// The CA's directory (or its `cacert.pem`).
    pub ca: PathBuf,
    /// The student's CSR (PEM or DER).
    pub csr: PathBuf,
    /// The certificate to write.
    pub out: PathBuf,
    /// Names added to the subjectAltName besides the CSR's CN.
    pub names: Vec<String>,
    /// Validity in days.
    pub days: u32,
}

/// Makes the course CA in `c.out`; refuses to overwrite one (every certificate it signed
/// depends on its key).
pub fn init(c: &InitConfig) -> Result<(PathBuf, PathBuf)> {
    let cert = c.out.join(CA_CERT);
    let key = c.out.join(CA_KEY);
    if cert.exists() || key.exists() {
        return Err(Error::msg(format!(
            "{} already holds a CA ({CA_CERT}/{CA_KEY}): keep it (the certificates it signed \
             depend on its key) or remove both files first",
            c.out.display()
        )));
    }
    std::fs::create_dir_all(&c.out)
        .with_context(|| format!("create directory {}", c.out.display()))?;
    let (pem, ca_key) = certs::make_ca(SystemTime::now())?;
    certs::write_private(&key, &ca_key.serialize_pem())?;
    certs::write_public(&cert, &pem)?;
    labnet::log::info(format!(
        "made the course CA {} (ECDSA P-256, CA:true, keyCertSign, {} days) and its key {} \
         (mode 0600): give cacert.pem to the students, keep cakey.pem",
        cert.display(),
        certs::CA_DAYS,
        key.display()
    ));
    Ok((cert, key))
}

/// Signs the student's CSR with the CA in `c.ca` and writes the certificate.
pub fn sign(c: &SignConfig) -> Result<PathBuf> {
    let dir = if c.ca.is_file() {
        c.ca.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        c.ca.clone()
    };
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if !ca_cert.is_file() || !ca_key.is_file() {
        return Err(Error::msg(format!(
            "no CA in {}: it needs {CA_CERT} and {CA_KEY} (make them with `tls-pmu ca init --out \
             {}`)",
            dir.display(),
            dir.display()
        )));
    }
    let key = KeyPair::from_pem(&read_text(&ca_key)?)
        .map_err(|e| Error::other(format!("load CA key {}", ca_key.display()), e))?;
    let issuer = Issuer::from_ca_cert_pem(&read_text(&ca_cert)?, key)
        .map_err(|e| Error::other(format!("read CA {}", ca_cert.display()), e))?;
    let der = read_csr(&c.csr)?;
    let issued = issue(&der, &c.names, &issuer, SystemTime::now(), c.days)
        .map_err(|why| Error::msg(format!("refused {}: {why}", c.csr.display())))?;
    certs::write_crl(&dir, &issuer, SystemTime::now())?;
    for skipped in &issued.skipped {
        labnet::log::warn(format!(
            "not in the subjectAltName: '{skipped}' is not a host name or an IP address"
        ));
    }
    certs::write_public(&c.out, &issued.pem)?;
    labnet::log::info(format!(
        "signed {} from {} with {}: X.509 v3, {}, serverAuth, subjectAltName {}, valid {} days",
        c.out.display(),
        c.csr.display(),
        ca_cert.display(),
        issued.key,
        issued.names.join(", "),
        c.days
    ));
    Ok(c.out.clone())
}

/// A CSR file in PEM (`BEGIN CERTIFICATE REQUEST`) or DER form. A certificate or a key given by
/// mistake is named as such.
fn read_csr(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if let Ok(der) = CertificateSigningRequestDer::from_pem_slice(&bytes) {
        return Ok(der.as_ref().to_vec());
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("-----BEGIN") {
        let what = if text.contains("CERTIFICATE-----") {
            "a certificate"
        } else if text.contains("PRIVATE KEY-----") {
            "a private key (never send it to anyone)"
        } else {
            "not a CSR"
        };
        return Err(Error::msg(format!(
            "{} is {what}, not a certificate signing request: make the CSR with `openssl req \
             -new -key X_key.pem -out X.csr`",
            path.display()
        )));
    }
    Ok(bytes)
}

/// A certificate issued from a CSR.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub pem: String,
    /// The subjectAltName entries, as written.
    pub names: Vec<String>,
    /// Names left out because they are neither a host name nor an IP address.
    pub skipped: Vec<String>,
    /// The key, "RSA 2048" or "EC 256".
    pub key: String,
}

/// The CA's policy applied to a CSR (DER): check the request's signature and its key, take the
/// subject and public key from it, name the CSR's CN, its requested names and `extra` in the
/// subjectAltName, and add validity, key usage, serverAuth and the identifiers. `Err` is the
/// reason for refusing, one line with the command that makes a good CSR.
pub fn issue(
    csr_der: &[u8],
    extra: &[String],
    issuer: &Issuer<'_, KeyPair>,
    now: SystemTime,
    days: u32,
) -> std::result::Result<Issued, String> {
    let csr = match X509CertificationRequest::from_der(csr_der) {
        Ok((_, csr)) => csr,
        Err(e) => {
            return Err(format!(
                "not a certificate signing request ({e}): make one with `openssl req -new -key \
                 X_key.pem -out X.csr`"
            ));
        }
    };
    let info = &csr.certification_request_info;
    let key = key_strength(&info.subject_pki)?;
    csr.verify_signature().map_err(|e| {
        format!(
            "the CSR's signature does not verify with its own key ({e}): it was altered, or \
             not made with `openssl req -new -key X_key.pem -out X.csr`"
        )
    })?;

    let cn = common_name(&info.subject);
    let mut wanted: Vec<String> = cn.iter().cloned().collect();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for g in &san.general_names {
                    match g {
                        GeneralName::DNSName(d) => wanted.push((*d).to_owned()),
                        GeneralName::IPAddress(b) => {
                            if let Some(ip) = ip_from(b) {
                                wanted.push(ip.to_string());
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    wanted.extend(extra.iter().cloned());
    let (mut sans, mut names, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for name in wanted {
        if names.contains(&name) || skipped.contains(&name) {
            continue;
        }
        match san(&name) {
            Some(s) => {
                sans.push(s);
                names.push(name);
            }
            None => skipped.push(name),
        }
    }
    if sans.is_empty() {
        let cn = cn.as_deref().unwrap_or("");
        return Err(format!(
            "the certificate would name no host: the CSR's CN '{cn}' is not a host name and no \
             --name was given, and without a subjectAltName no client can match the server's \
             name; add --name HOST (e.g. --name tcpip.epfl.ch), or make the CSR with `openssl \
             req -new -key X_key.pem -out X.csr -subj /CN=HOST`"
        ));
    }

    let mut p = CertificateParams::default();
    p.distinguished_name = subject(&info.subject);
    p.subject_alt_names = sans;
    p.is_ca = IsCa::ExplicitNoCa;
    p.not_before = (now - BACKDATE).into();
    // Counted from not_before, so the whole validity is `days`, never more.
    p.not_after = (now - BACKDATE + DAY * days).into();
    // An RSA key may also be used for RSA key transport (TLS 1.2 RSA suites, which an OpenSSL
    // server still offers), which needs keyEncipherment; an EC key only signs (ECDHE).
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key.starts_with("RSA") {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // RFC 5280 §4.2.1.1: the AKI lets a client pick the right CA certificate.
    p.use_authority_key_identifier_extension = true;
    // RFC 5280 §4.2.1.13: where the CA's revocation list is published (see certs::CRL_URL).
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![certs::CRL_URL.to_owned()],
    }];
    p.serial_number = Some(certs::random_serial());
    let public = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
        .map_err(|e| format!("the CSR's public key is of a kind this CA cannot sign ({e})"))?;
    let cert = p
        .signed_by(&public, issuer)
        .map_err(|e| format!("signing failed: {e}"))?;
    Ok(Issued {
        pem: cert.pem(),
        names,
        skipped,
        key,
    })
}

/// "RSA 2048" or "EC 256" for a key that works with today's TLS libraries; the reason and the
/// openssl fix for one that does not.
fn key_strength(spki: &Spki<'_>) -> std::result::Result<String, String> {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = significant_bits(rsa.modulus);
            if bits < MIN_RSA_BITS {
                Err(format!(
                    "its RSA key has {bits} bits (the handout's `openssl genrsa … 1024`), and TLS \
                     libraries refuse RSA keys under {MIN_RSA_BITS} bits: {GOOD_KEY_HINT}"
                ))
            } else {
                Ok(format!("RSA {bits}"))
            }
        }
        Ok(PublicKey::EC(ec)) => Ok(format!("EC {}", ec.key_size())),
        Ok(PublicKey::Unknown(_)) if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Ok("Ed25519".to_owned())
        }
        Ok(_) | Err(_) => Err(format!(
            "its key is not RSA, EC or Ed25519 (algorithm {}): {GOOD_KEY_HINT}",
            spki.algorithm.algorithm.to_id_string()
        )),
    }
}

/// The size of a big-endian unsigned integer in bits (a DER INTEGER may carry a leading 0).
fn significant_bits(n: &[u8]) -> usize {
    let n: Vec<u8> = n.iter().copied().skip_while(|&b| b == 0).collect();
    match n.first() {
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The CSR's subject, attribute by attribute (CN, O, C, …), as the certificate's subject.
fn subject(name: &X509Name<'_>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let (Some(oid), Ok(value)) = (attr.attr_type().iter(), attr.as_str()) else {
            continue;
        };
        dn.push(DnType::from_oid(&oid.collect::<Vec<u64>>()), value);
    }
    dn
}

fn ip_from(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A subjectAltName entry for a host name or an IP address; `None` for anything else (a CN such
/// as "Jane Doe").
fn san(name: &str) -> Option<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(SanType::IpAddress(ip));
    }
    DnsName::try_from(name).ok()?;
    name.to_owned().try_into().ok().map(SanType::DnsName)
}

/// Refuses a server certificate (DER) that TLS clients cannot accept, with the reason and the
/// fix in one line: X.509 v1, no subjectAltName, or an RSA key under 2048 bits.
pub fn check_leaf(der: &[u8]) -> std::result::Result<(), String> {
    let cert = match X509Certificate::from_der(der) {
        Ok((_, c)) => c,
        Err(e) => return Err(format!("not a valid X.509 certificate ({e})")),
    };
    if cert.version() != X509Version::V3 {
        return Err(format!(
            "it is an X.509 v{} certificate (what a plain `openssl x509 -req` makes): no \
             extensions, so no subjectAltName, and TLS libraries such as rustls accept only v3; \
             {GOOD_CERT_HINT}",
            cert.version().0 + 1
        ));
    }
    let has_san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|s| !s.value.general_names.is_empty());
    if !has_san {
        return Err(format!(
            "it has no subjectAltName, the only place clients look for the server's name (RFC \
             6125; the CN is ignored); {GOOD_CERT_HINT}"
        ));
    }
    if let Ok(PublicKey::RSA(rsa)) = cert.public_key().parsed() {
        let bits = significant_bits(rsa.modulus);
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "its RSA key has {bits} bits, and TLS libraries refuse RSA keys under \
                 {MIN_RSA_BITS} bits: {GOOD_KEY_HINT}, and have it signed again"
            ));
        }
    }
    Ok(())
}

/// The first certificate of a PEM file, for [`check_leaf`] on files.
pub fn first_cert(path: &Path) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path)
        .map_err(|e| Error::other(format!("read certificate {}", path.display()), e))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_bits_ignores_the_der_sign_byte() {
        assert_eq!(significant_bits(&[0x00, 0x80, 0, 0]), 24);
        assert_eq!(significant_bits(&[0x01, 0xff]), 9);
        assert_eq!(significant_bits(&[]), 0);
    }

    #[test]
    fn only_host_names_and_addresses_become_san_entries() {
        assert!(matches!(san("tcpip.epfl.ch"), Some(SanType::DnsName(_))));
        assert!(matches!(san("fd30::10"), Some(SanType::IpAddress(_))));
        assert!(san("Jane Doe").is_none());
        assert!(san("").is_none());
    }
}
