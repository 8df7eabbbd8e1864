//! TP3 part 6: the PMU of part 2 behind TLS.
//!
//! The protocol does not change — the PDC sends `CMD_short:d` or `CMD_floodme` with no
//! terminator, the PMU answers and closes — but every byte now travels inside TLS records. What the
//! student should observe in Wireshark: a handshake in clear (ClientHello, ServerHello, and with
//! TLS 1.2 the server's certificate too), then only `Application Data` records whose contents
//! cannot be read; the command and the `This is PMU data i` messages are gone from the capture.
//!
//! The one idea it teaches: a TLS connection is a TCP connection wrapped in a state machine
//! ([`rustls::ServerConnection`] / [`rustls::ClientConnection`]) that turns plaintext into records
//! and back. The PMU session code of part 2 (`labnet::pmu::serve`) runs unchanged over the
//! wrapped stream; only the socket setup differs. Authentication is one-way, as in the handout:
//! the server shows a certificate signed by the course CA and the client checks it against
//! `cacert.pem` and the host name it dialled.
//!
//! Four subcommands, each in its module: [`ca`] (`ca init|sign`: the course CA that signs the
//! students' own openssl CSRs, as the handout's TAs do), [`certs`] (the whole key / CSR /
//! CA-signed certificate flow done with rcgen), [`server`] (`serve`) and [`client`].
//!
//! One crypto provider, `ring`, serves both rustls and rcgen: the binary compiles one backend.
//!
//! [`server::serve`] takes a bound listener and a [`labnet::sock::Serve`] (sink and stop handle):
//! `tests/inproc.rs` drives it in-process on port 0 and reads its events back; the other tests
//! run the binary's subcommands.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use labnet::{Error, Result};
use pico_args::Arguments;

pub mod ca;
pub mod certs;
pub mod client;
pub mod hello;
pub mod server;

/// Port of `tls-pmu serve` (HTTPS-like 443 plus the PMU's 5000s: unprivileged).
pub const DEFAULT_PORT: u16 = 5443;
/// Longest leaf validity `certs` issues (the CA/Browser Forum is moving public certificates to
/// short lifetimes; a lab certificate needs no more than a semester).
pub const MAX_LEAF_DAYS: u32 = 90;
/// Default size of the `CMD_floodme` reply, as lab-server's.
pub const DEFAULT_FLOOD_BYTES: usize = 64 * 1024;

/// Usage text of `tls-pmu --help`.
pub const HELP: &str = "\
tls-pmu — TP3 part 6: the PMU protocol of part 2 over TLS 1.2/1.3

USAGE:
  tls-pmu ca init --out DIR [--json]
  tls-pmu ca sign --ca DIR --csr X.csr --out X_cert.pem [--name HOST]... [--days N] [--json]
  tls-pmu certs  --id ID [--out DIR] [--hosts NAME,IP,...] [--days N] [--rsa] [--json]
  tls-pmu serve  --cert FILE --key FILE [--port 5443] [--bind ADDR] [--messages N]
                 [--timeout S] [--max-clients N] [--json]
  tls-pmu client HOST PORT CMD --ca FILE [--timeout S] [--json]

ca: the course CA ('we will act as a CA'): the TAs sign the students' own CSRs
  init --out DIR   make the CA: DIR/cacert.pem (give it to the students) and DIR/cakey.pem (0600);
                   refuses to overwrite an existing CA
  sign --ca DIR    sign a CSR made with `openssl req -new -key X_key.pem -out X.csr` as an X.509 v3
                   certificate with serverAuth and a subjectAltName: the CSR's CN, the names it
                   requests, and every --name (repeatable: a host name or an IP address)
       --csr FILE  the student's CSR (PEM or DER)
       --out FILE  the certificate to write (X_cert.pem)
       --days N    validity in days, 1-90 (default 90)
  Refused with one line saying why and the openssl command that makes a good one: an RSA key under
  2048 bits (the handout's `openssl genrsa ... 1024`), a CSR whose signature does not verify, a
  certificate or key given instead of a CSR, a CSR that names no host and no --name.

certs: the handout's certificate flow, done with rcgen
  --id ID          your SCIPER/CAMIPRO number; names the files ID_key.pem, ID.csr, ID_cert.pem
  --out DIR        where to write them (default .); a CA already there (cacert.pem + cakey.pem)
                   is reused, otherwise a new one is made
  --hosts LIST     extra names/IPs for the certificate's subjectAltName (comma-separated,
                   repeatable); always included: tcpip, tp3_tcpip, tcpip.epfl.ch,
                   172.30.0.10, fd30::10, localhost, 127.0.0.1, ::1
  --days N         leaf validity in days, 1-90 (default 90)
  --rsa            RSA 2048 instead of ECDSA P-256: not available with the ring backend, which
                   cannot generate RSA keys; make an RSA key with openssl instead (see README)
  Files: cacert.pem, cakey.pem (0600), ID_key.pem (0600), ID.csr, ID_cert.pem, ca.crl
  Certificates name http://tcpip.epfl.ch/netlab/ca.crl as their CRL distribution point; `ca sign`
  and `certs` write the CA's current CRL (nothing revoked, 30 days) as ca.crl beside cacert.pem

serve: the PMU server (what the handout grades)
  --cert FILE      certificate chain, PEM (leaf first)
  --key FILE       private key, PEM: PKCS#8, PKCS#1 (openssl genrsa) or SEC1 (EC); RSA >= 2048 bits
  Refused at startup with the fix: an RSA key under 2048 bits, an X.509 v1 certificate (a plain
  `openssl x509 -req`), a certificate without a subjectAltName.
  --port P         TCP port (default 5443; 0 = any, the log says which)
  --bind ADDR      listen address (default ::, dual stack: IPv6 and IPv4)
  --messages N     messages per CMD_short (default random 5-15)
  --flood-bytes B  size of the CMD_floodme reply (default 65536)
  --timeout S      seconds a client has to finish the handshake, then as many to send its command,
                   however it spaces its bytes (default 10)
  --max-clients N  connections served at once; one more is closed at once (default 1000)
  Refused with a log line, server keeps serving: plaintext clients, TLS 1.0/1.1, clients
  without an AEAD cipher suite (CBC only), handshakes that do not finish in time.

client: the PDC (for testing the server)
  HOST PORT        server; HOST is checked against the certificate (DNS name or IP)
  CMD              CMD_short:<d> (0 <= d <= 10) or CMD_floodme
  --ca FILE        CA certificate to trust (the course's cacert.pem); nothing else is trusted.
                   A v1 certificate, one without a subjectAltName or with an RSA key under 2048
                   bits is refused with the reason and the fix
  --timeout S      connect and read timeout in seconds (default 15)
  SSLKEYLOGFILE    environment variable: append the TLS secrets to this file, for Wireshark

  --json           one JSON object per event instead of text lines
  -h, --help       this text

EXAMPLES:
  tls-pmu ca init --out ca/                                     # the TAs, once
  openssl genrsa -out 123456_key.pem 2048                       # the student
  openssl req -new -key 123456_key.pem -out 123456.csr -subj /CN=tcpip.epfl.ch
  tls-pmu ca sign --ca ca/ --csr 123456.csr --out 123456_cert.pem --name tcpip   # the TAs
  tls-pmu certs --id 123456 --out tls/
  tls-pmu serve --cert tls/123456_cert.pem --key tls/123456_key.pem --port 5443
  tls-pmu client localhost 5443 CMD_short:0 --ca tls/cacert.pem
  openssl s_client -connect localhost:5443 -CAfile tls/cacert.pem -verify_return_error
";

/// What `tls-pmu certs` makes.
#[derive(Debug, Clone, PartialEq)]
pub struct CertsConfig {
    /// The student's number: names the files.
    pub id: String,
    /// Output directory.
    pub out: PathBuf,
    /// Extra subjectAltName entries beyond the tp3 host and loopback.
    pub hosts: Vec<String>,
    /// Leaf validity in days (1–90).
    pub days: u32,
    /// RSA instead of ECDSA (refused with the ring backend, see HELP).
    pub rsa: bool,
}

/// How `tls-pmu serve` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Listen address.
    pub bind: IpAddr,
    /// Listen port.
    pub port: u16,
    /// Messages per `CMD_short` (`None` = random 5–15 per session).
    pub messages: Option<u32>,
    /// Size of the flood reply.
    pub flood_bytes: usize,
    /// Handshake and command timeout.
    pub timeout: Duration,
    /// Connections served at once.
    pub max_clients: usize,
}

/// What `tls-pmu client` asks.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Server host name or IP; also the name checked in the certificate.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The command, as typed (validated).
    pub command: String,
    /// The CA certificate to trust.
    pub ca: PathBuf,
    /// Connect and read timeout.
    pub timeout: Duration,
}

/// The subcommand and its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// `ca init`.
    CaInit(ca::InitConfig),
    /// `ca sign`.
    CaSign(ca::SignConfig),
    /// `certs`.
    Certs(CertsConfig),
    /// `serve`.
    Serve(ServeConfig),
    /// `client`.
    Client(ClientConfig),
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--json`.
    pub json: bool,
    /// Which subcommand.
    pub mode: Mode,
}

impl Config {
    /// Parses the arguments (without the program name). Bad input is a usage error (exit 2).
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut args = Arguments::from_vec(args);
        let sub = args.subcommand()?;
        let json = args.contains("--json");
        let mode = match sub.as_deref() {
            Some("ca") => ca_args(&mut args)?,
            Some("certs") => Mode::Certs(certs_args(&mut args)?),
            Some("serve") => Mode::Serve(serve_args(&mut args)?),
            Some("client") => Mode::Client(client_args(&mut args)?),
            Some(other) => {
                return Err(Error::usage(format!(
                    "unknown subcommand '{other}': expected ca, certs, serve or client"
                )));
            }
            None => {
                return Err(Error::usage(
                    "missing subcommand: ca, certs, serve or client",
                ));
            }
        };
        labnet::args::finish(args)?;
        Ok(Config { json, mode })
    }
}

fn ca_args(args: &mut Arguments) -> Result<Mode> {
    match args.subcommand()?.as_deref() {
        Some("init") => {
            let out = labnet::args::opt::<PathBuf>(args, "--out")?
                .ok_or_else(|| Error::usage("ca init needs --out DIR"))?;
            Ok(Mode::CaInit(ca::InitConfig { out }))
        }
        Some("sign") => {
            let names: Vec<String> = args.values_from_str("--name")?;
            let ca = labnet::args::opt::<PathBuf>(args, "--ca")?
                .ok_or_else(|| Error::usage("ca sign needs --ca DIR (made by `ca init`)"))?;
            let csr = labnet::args::opt::<PathBuf>(args, "--csr")?
                .ok_or_else(|| Error::usage("ca sign needs --csr FILE (the student's CSR)"))?;
            let out = labnet::args::opt::<PathBuf>(args, "--out")?
                .ok_or_else(|| Error::usage("ca sign needs --out FILE (the certificate)"))?;
            let days: u32 = labnet::args::opt_or(args, "--days", MAX_LEAF_DAYS)?;
            if !(1..=MAX_LEAF_DAYS).contains(&days) {
                return Err(Error::usage(format!(
                    "invalid --days {days}: a lab certificate is valid 1-{MAX_LEAF_DAYS} days"
                )));
            }
            if let Some(bad) = names.iter().find(|n| n.trim().is_empty()) {
                return Err(Error::usage(format!("invalid --name '{bad}': empty")));
            }
            Ok(Mode::CaSign(ca::SignConfig {
                ca,
                csr,
                out,
                names,
                days,
            }))
        }
        Some(other) => Err(Error::usage(format!(
            "unknown ca subcommand '{other}': expected init or sign"
        ))),
        None => Err(Error::usage("ca needs a subcommand: init or sign")),
    }
}

fn certs_args(args: &mut Arguments) -> Result<CertsConfig> {
    let rsa = args.contains("--rsa");
    let id: String = args
        .opt_value_from_str("--id")?
        .ok_or_else(|| Error::usage("certs needs --id ID (your SCIPER number)"))?;
    if id.is_empty()
        || id.len() > 32
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::usage(format!(
            "invalid --id '{id}': expected letters, digits, '-' or '_' (it names files)"
        )));
    }
    let out: PathBuf = labnet::args::opt_or(args, "--out", PathBuf::from("."))?;
    let mut hosts = Vec::new();
    for list in args.values_from_str::<_, String>("--hosts")? {
        for h in list.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            hosts.push(h.to_owned());
        }
    }
    let days: u32 = labnet::args::opt_or(args, "--days", MAX_LEAF_DAYS)?;
    if !(1..=MAX_LEAF_DAYS).contains(&days) {
        return Err(Error::usage(format!(
            "invalid --days {days}: a lab certificate is valid 1-{MAX_LEAF_DAYS} days"
        )));
    }
    Ok(CertsConfig {
        id,
        out,
        hosts,
        days,
        rsa,
    })
}

fn serve_args(args: &mut Arguments) -> Result<ServeConfig> {
    let cert = labnet::args::opt::<PathBuf>(args, "--cert")?
        .ok_or_else(|| Error::usage("serve needs --cert FILE"))?;
    let key = labnet::args::opt::<PathBuf>(args, "--key")?
        .ok_or_else(|| Error::usage("serve needs --key FILE"))?;
    let port = labnet::args::opt_port(args, "--port", DEFAULT_PORT)?;
    let bind = match labnet::args::opt::<String>(args, "--bind")? {
        Some(s) => labnet::args::ip(&s)?,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let messages: Option<u32> = labnet::args::opt(args, "--messages")?;
    if messages == Some(0) {
        return Err(Error::usage("invalid --messages 0: expected 1 or more"));
    }
    let flood_bytes = labnet::args::opt_or(args, "--flood-bytes", DEFAULT_FLOOD_BYTES)?;
    if flood_bytes == 0 || flood_bytes > 256 * 1024 * 1024 {
        return Err(Error::usage(format!(
            "invalid --flood-bytes {flood_bytes}: expected 1 to 268435456"
        )));
    }
    let timeout = positive(
        labnet::args::opt_seconds(args, "--timeout")?,
        "--timeout",
        10,
    )?;
    let max_clients: usize = labnet::args::opt_or(args, "--max-clients", 1000)?;
    if max_clients == 0 {
        return Err(Error::usage("invalid --max-clients 0: expected 1 or more"));
    }
    Ok(ServeConfig {
        cert,
        key,
        bind,
        port,
        messages,
        flood_bytes,
        timeout,
        max_clients,
    })
}

fn client_args(args: &mut Arguments) -> Result<ClientConfig> {
    let ca = labnet::args::opt::<PathBuf>(args, "--ca")?.ok_or_else(|| {
        Error::usage("client needs --ca FILE (the CA certificate that signed the server's)")
    })?;
    let timeout = positive(
        labnet::args::opt_seconds(args, "--timeout")?,
        "--timeout",
        15,
    )?;
    labnet::args::no_unknown_options(args)?;
    let host: String = args
        .free_from_str()
        .map_err(|_| Error::usage("client needs HOST PORT CMD"))?;
    let port: String = args
        .free_from_str()
        .map_err(|_| Error::usage("client needs HOST PORT CMD"))?;
    let port = labnet::args::port(&port, false)?;
    let command: String = args
        .free_from_str()
        .map_err(|_| Error::usage("client needs HOST PORT CMD"))?;
    if let Err(e) = labnet::wire::pmu::parse_command(command.as_bytes()) {
        return Err(Error::usage(format!(
            "invalid command '{command}': {e}; expected CMD_short:<d> or CMD_floodme"
        )));
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(ClientConfig {
        host,
        port,
        command,
        ca,
        timeout,
    })
}

fn positive(value: Option<Duration>, key: &str, default_secs: u64) -> Result<Duration> {
    match value {
        None => Ok(Duration::from_secs(default_secs)),
        Some(d) if d.is_zero() => Err(Error::usage(format!(
            "invalid {key} 0: expected more than 0 seconds"
        ))),
        Some(d) => Ok(d),
    }
}

/// Runs the chosen subcommand.
pub fn run(config: &Config) -> Result<()> {
    labnet::log::set_json(config.json);
    match &config.mode {
        Mode::CaInit(c) => ca::init(c).map(|_| ()),
        Mode::CaSign(c) => ca::sign(c).map(|_| ()),
        Mode::Certs(c) => certs::run(c).map(|_| ()),
        Mode::Serve(c) => server::run(c),
        Mode::Client(c) => client::run(c).map(|_| ()),
    }
}

/// The one crypto provider of the kit: ring, for rustls here and for rcgen in [`certs`].
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Wraps a rustls configuration error with the operation that failed.
fn tls_err(context: impl Into<String>, e: rustls::Error) -> Error {
    Error::other(context, e)
}
