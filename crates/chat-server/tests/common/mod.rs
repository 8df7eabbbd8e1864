//! What the chat-server tests share: a raw client socket that reads lines with a timeout.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A raw client socket with a line reader; every read has a timeout.
pub struct Raw {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed while a line was expected");
        line
    }

    /// Reads lines until one satisfies `pred`; every `!` line must parse as a JSON object.
    pub fn until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..100_000 {
            let l = self.line();
            if let Some(json) = l.strip_prefix('!') {
                let v: serde_json::Value = serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("user list {l:?} does not parse: {e}"));
                assert!(v.is_object());
            }
            if pred(&l) {
                return l;
            }
        }
        panic!("line never came");
    }

    /// Registers (newline-framed) and returns the first user list.
    pub fn join(addr: SocketAddr, name: &str) -> (Raw, String) {
        let mut r = Raw::connect(addr);
        r.send(format!("{name}\n").as_bytes());
        let users = r.line();
        assert!(users.starts_with("!{"), "{users:?}");
        (r, users)
    }

    /// The whole rest of the stream up to the server's close.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = self.reader.read_to_end(&mut v);
        v
    }
}

pub fn users(line: &str) -> serde_json::Map<String, serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&line[1..]).unwrap();
    v.as_object().unwrap().clone()
}

/// What a refused first message gets: exactly one `ERROR:` line, then the close.
pub fn refused(addr: SocketAddr, first: &[u8]) -> String {
    let mut r = Raw::connect(addr);
    r.send(first);
    String::from_utf8_lossy(&r.rest()).into_owned()
}
