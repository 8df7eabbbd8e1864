//! A peek at the start of a TLS ClientHello, to name why a client is refused.
//!
//! rustls refuses old and weak clients on its own; what it reports ("peer is incompatible:
//! SignatureAlgorithmsExtensionRequired") is accurate but says nothing to a student. The first
//! bytes of the connection say it better: the version the client asks for, and the cipher suites
//! it offers (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2):
//!
//! ```text
//! record:    type(1)=0x16  version(2)  length(2)
//! handshake: type(1)=0x01  length(3)
//! hello:     client_version(2)  random(32)  session_id(1+n)  cipher_suites(2+2k) …
//! ```
//! A TLS 1.3 client still writes 0x0303 (TLS 1.2) in `client_version` and lists 1.3 in an
//! extension, so a `client_version` below 0x0303 means the client cannot do TLS 1.2 or later.

/// TLS record type of handshake messages: the first byte of every TLS connection.
pub const HANDSHAKE_RECORD: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;

/// What the first bytes of a ClientHello say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `client_version`: 0x0301 = TLS 1.0, 0x0302 = TLS 1.1, 0x0303 = TLS 1.2 (and 1.3).
    pub version: u16,
    /// Cipher suites offered, in the client's order (empty when the peek was too short).
    pub suites: Vec<u16>,
}

/// Parses as much of a ClientHello as `bytes` holds; `None` when it is not one.
pub fn parse(bytes: &[u8]) -> Option<Hello> {
    if bytes.len() < 11 || bytes[0] != HANDSHAKE_RECORD || bytes[5] != CLIENT_HELLO {
        return None;
    }
    let version = u16::from_be_bytes([bytes[9], bytes[10]]);
    let mut suites = Vec::new();
    // client_version(2) + random(32) after the 9 header bytes.
    let sid_at = 9 + 2 + 32;
    if let Some(&sid_len) = bytes.get(sid_at) {
        let cs_at = sid_at + 1 + usize::from(sid_len);
        if let Some(len) = bytes.get(cs_at..cs_at + 2) {
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            if let Some(list) = bytes.get(cs_at + 2..cs_at + 2 + len) {
                suites = list
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
            }
        }
    }
    Some(Hello { version, suites })
}

/// "TLS 1.0" for 0x0301.
pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        other => format!("version 0x{other:04x}"),
    }
}

/// `TLS_EMPTY_RENEGOTIATION_INFO_SCSV` (RFC 5746): a signal, not a real suite.
pub const RENEGOTIATION_SCSV: u16 = 0x00ff;

/// The IANA name of a cipher suite. rustls knows the modern ones; the old RSA key-transport
/// suites that `openssl -cipher AES128-SHA` offers are named here.
pub fn suite_name(s: u16) -> String {
    match s {
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA".into(),
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA".into(),
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256".into(),
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256".into(),
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256".into(),
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384".into(),
        other => format!("{:?}", rustls::CipherSuite::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u16, sid: &[u8], suites: &[u16]) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend([7u8; 32]);
        body.push(sid.len() as u8);
        body.extend(sid);
        body.extend(((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            body.extend(s.to_be_bytes());
        }
        let mut hs = vec![CLIENT_HELLO, 0, 0, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![HANDSHAKE_RECORD, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn reads_version_and_suites_after_a_session_id() {
        let bytes = hello(0x0301, &[1, 2, 3], &[0x002f, 0x0035]);
        assert_eq!(
            parse(&bytes),
            Some(Hello {
                version: 0x0301,
                suites: vec![0x002f, 0x0035]
            })
        );
        assert_eq!(version_name(0x0302), "TLS 1.1");
        assert_eq!(suite_name(0x002f), "TLS_RSA_WITH_AES_128_CBC_SHA");
        assert_eq!(suite_name(0x1301), "TLS13_AES_128_GCM_SHA256");
    }

    #[test]
    fn short_peeks_keep_the_version_and_plaintext_is_not_a_hello() {
        let bytes = hello(0x0303, &[], &[0x1301, 0x1302]);
        assert_eq!(
            parse(&bytes[..20]),
            Some(Hello {
                version: 0x0303,
                suites: vec![]
            })
        );
        assert_eq!(parse(b"CMD_short:0"), None);
        assert_eq!(parse(&bytes[..10]), None);
    }
}
