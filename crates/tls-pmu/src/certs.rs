//! `tls-pmu certs`: the handout's certificate flow, done with rcgen.
//!
//! The handout has the student make a private key and a certificate signing request (CSR) with
//! openssl, mail the CSR to the TA crew acting as a CA, and get back a certificate signed by the
//! course CA (`cacert.pem`). This does the same three steps, in the same roles:
//!
//! 1. the student: a key pair (`ID_key.pem`) and a CSR (`ID.csr`) naming the server, signed with
//!    that key to prove possession;
//! 2. the CA: made once (`cacert.pem`, `cakey.pem`) and reused when already in the directory;
//! 3. the CA signs **from the CSR**: it takes the subject, the requested names and the public key
//!    out of the request (after checking its signature) and adds its own policy — validity,
//!    key usage, serverAuth, the Authority Key Identifier — as a real CA does (`ID_cert.pem`).
//!
//! Keys are ECDSA P-256: ring, the one crypto backend of the kit, cannot generate RSA keys, and
//! P-256 is what modern servers use. The handout's `openssl genrsa … 1024` is refused by today's
//! TLS libraries (and by `serve`); an RSA key of 2048 bits made with openssl works with `serve`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use labnet::{Context, Error, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;

use crate::CertsConfig;

/// CA certificate file name, as the handout's.
pub const CA_CERT: &str = "cacert.pem";
/// CA private key file name.
pub const CA_KEY: &str = "cakey.pem";
/// How long a new CA is valid: a few years, so one CA serves many semesters of 90-day leaves.
pub const CA_DAYS: u64 = 5 * 365;
/// One day.
pub const DAY: Duration = Duration::from_secs(86_400);
/// Certificates start one hour in the past so that a client whose clock is slightly behind does
/// not see them as "not valid yet".
pub const BACKDATE: Duration = Duration::from_secs(3600);

/// The files one run wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Files {
    /// `cacert.pem`.
    pub ca_cert: PathBuf,
    /// `cakey.pem`.
    pub ca_key: PathBuf,
    /// `ID_key.pem`.
    pub key: PathBuf,
    /// `ID.csr`.
    pub csr: PathBuf,
    /// `ID_cert.pem`.
    pub cert: PathBuf,
    /// Whether the CA was already there and reused.
    pub ca_reused: bool,
}

/// The names every lab certificate carries: the tp3 course host by name (the handout's
/// `tcpip.epfl.ch` too) and address (so a student on `student1` can connect to `tcpip`), and
/// loopback (so everything works on one
/// machine).
pub fn default_names() -> Vec<String> {
    let mut names = vec!["tcpip".to_owned(), labnet::topo::TP3.container("tcpip")];
    if let Some(host) = labnet::topo::TP3.host("tcpip") {
        // The handout's name for the course server, `tcpip.epfl.ch`, resolves in the lab too.
        names.extend(host.aliases.iter().map(|a| (*a).to_owned()));
        names.push(host.ipv4().to_string());
        if let Some(v6) = host.ipv6() {
            names.push(v6.to_string());
        }
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    names
}

/// Runs the whole flow and logs each file.
pub fn run(c: &CertsConfig) -> Result<Files> {
    if c.rsa {
        return Err(Error::msg(
            "--rsa: the ring crypto backend cannot generate RSA keys; make one with \
             `openssl genrsa -out KEY.pem 2048` and a certificate with openssl (see README), \
             `tls-pmu serve` accepts it",
        ));
    }
    fs::create_dir_all(&c.out).with_context(|| format!("create directory {}", c.out.display()))?;
    let files = Files {
        ca_cert: c.out.join(CA_CERT),
        ca_key: c.out.join(CA_KEY),
        key: c.out.join(format!("{}_key.pem", c.id)),
        csr: c.out.join(format!("{}.csr", c.id)),
        cert: c.out.join(format!("{}_cert.pem", c.id)),
        ca_reused: c.out.join(CA_CERT).exists() && c.out.join(CA_KEY).exists(),
    };

    // The CA: reuse the one in the directory (several students, one course CA), or make one.
    let (ca_pem, ca_key) = if files.ca_reused {
        let pem = read(&files.ca_cert)?;
        let key = KeyPair::from_pem(&read(&files.ca_key)?)
            .map_err(|e| Error::other(format!("load CA key {}", files.ca_key.display()), e))?;
        labnet::log::info(format!(
            "using the existing CA {} (key {})",
            files.ca_cert.display(),
            files.ca_key.display()
        ));
        (pem, key)
    } else {
        let (pem, key) = make_ca(SystemTime::now())?;
        write_private(&files.ca_key, &key.serialize_pem())?;
        write_public(&files.ca_cert, &pem)?;
        labnet::log::info(format!(
            "made CA {} (ECDSA P-256, CA:true, keyCertSign, {CA_DAYS} days), key {} (mode 0600)",
            files.ca_cert.display(),
            files.ca_key.display()
        ));
        (pem, key)
    };

    // The student's side: key pair and CSR.
    let mut names = default_names();
    for h in &c.hosts {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let key = KeyPair::generate().map_err(|e| Error::other("generate server key", e))?;
    let csr = request_params(&c.id, &names)?
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| Error::other("make the certificate signing request", e))?;
    write_private(&files.key, &key.serialize_pem())?;
    write_public(&files.csr, &csr)?;
    labnet::log::info(format!(
        "made server key {} (ECDSA P-256, mode 0600) and CSR {} for {}",
        files.key.display(),
        files.csr.display(),
        names.join(", ")
    ));

    // The CA's side: sign from the CSR.
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| Error::other(format!("read CA {}", files.ca_cert.display()), e))?;
    let cert = sign_csr(&csr, &issuer, SystemTime::now(), c.days)?;
    write_public(&files.cert, &cert)?;
    write_crl(&c.out, &issuer, SystemTime::now())?;
    labnet::log::info(format!(
        "CA signed {} from {}: valid {} days, serverAuth, AKI = CA key id",
        files.cert.display(),
        files.csr.display(),
        c.days
    ));
    Ok(files)
}

/// A new course CA: its certificate (PEM) and key (ECDSA P-256).
pub fn make_ca(now: SystemTime) -> Result<(String, KeyPair)> {
    let key = KeyPair::generate().map_err(|e| Error::other("generate CA key", e))?;
    let cert = ca_params(now)?
        .self_signed(&key)
        .map_err(|e| Error::other("self-sign the CA certificate", e))?;
    Ok((cert.pem(), key))
}

/// The CA's certificate: CA:true with path length 0 (it signs servers, not other CAs).
pub fn ca_params(now: SystemTime) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "netlab TP3 lab CA");
    dn.push(DnType::OrganizationName, "netlab");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = (now - BACKDATE).into();
    p.not_after = (now + DAY * CA_DAYS as u32).into();
    p.serial_number = Some(random_serial());
    Ok(p)
}

/// What the student puts in the CSR: a subject and the names the server answers to.
pub fn request_params(id: &str, names: &[String]) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    dn.push(DnType::OrganizationName, format!("TP3 student {id}"));
    p.distinguished_name = dn;
    p.subject_alt_names = names
        .iter()
        .map(|n| san(n))
        .collect::<Result<Vec<SanType>>>()?;
    Ok(p)
}

fn san(name: &str) -> Result<SanType> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => name
            .to_owned()
            .try_into()
            .map(SanType::DnsName)
            .map_err(|e| Error::usage(format!("invalid host name '{name}' for --hosts: {e}"))),
    }
}

/// The CA's policy applied to a CSR (PEM): the subject, names and public key come from the
/// request (whose signature is checked); validity, usages and identifiers come from the CA. The
/// same policy as `tls-pmu ca sign` ([`crate::ca::issue`]).
pub fn sign_csr(
    csr_pem: &str,
    issuer: &Issuer<'_, KeyPair>,
    now: SystemTime,
    days: u32,
) -> Result<String> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| Error::other("read the certificate signing request", e))?;
    crate::ca::issue(der.as_ref(), &[], issuer, now, days)
        .map(|issued| issued.pem)
        .map_err(|why| Error::msg(format!("sign the certificate: {why}")))
}

/// Where every certificate the lab CA signs says its revocation list is published (the CRL
/// distribution point, RFC 5280 §4.2.1.13): on the course server's host, as a course publishing
/// `ca.crl` would serve it. A certificate that names no CRL and no OCSP responder cannot be
/// revoked at all, which testssl.sh rates HIGH. Nothing in the kit fetches the
/// URL: rustls and `openssl s_client` check revocation only when given a CRL, and
/// `openssl verify -crl_check -CRLfile ca.crl -CAfile cacert.pem X_cert.pem` checks offline.
pub const CRL_URL: &str = "http://tcpip.epfl.ch/netlab/ca.crl";

/// The CA's revocation list, next to `cacert.pem`.
pub const CA_CRL: &str = "ca.crl";

/// How long a CRL is current: the CA writes a fresh one at every signing.
pub const CRL_DAYS: u32 = 30;

/// Writes the CA's current revocation list (nothing revoked; PEM) to `dir/ca.crl`.
pub fn write_crl(dir: &Path, issuer: &Issuer<'_, KeyPair>, now: SystemTime) -> Result<PathBuf> {
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let params = CertificateRevocationListParams {
        this_update: (now - BACKDATE).into(),
        next_update: (now + DAY * CRL_DAYS).into(),
        // RFC 5280 §5.2.3: increases with every CRL the CA issues; seconds do.
        crl_number: SerialNumber::from(since_epoch.to_be_bytes().to_vec()),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(issuer)
        .and_then(|crl| crl.pem())
        .map_err(|e| Error::other("sign the CA's revocation list", e))?;
    let path = dir.join(CA_CRL);
    write_public(&path, &crl)?;
    Ok(path)
}

/// A positive 16-byte serial number from the OS's random source (RFC 5280 §4.1.2.2: unique per
/// CA; random serials are what CAs use since the MD5 collision attacks).
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    let filled = fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        // Fall back to the clock: unique enough for one lab CA.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = nanos.to_be_bytes();
    }
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("read {}", path.display()))
}

/// Writes a private key readable by its owner only (mode 0600), also when the file existed.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// Writes a public file (certificate, CSR).
pub fn write_public(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))
}
