//! TP3 part 1 (the TP3 handout, codes A–D) and two socket-basics handouts (the "Socket
//! programming in Python" assignment and the network-programming lecture's examples): the first
//! client/server programs, one binary each, taking the handouts' positional arguments
//! `<host> <port> [message]`.
//!
//! | binary | handout | the one idea |
//! |---|---|---|
//! | `udp-hello` | codes A (client) and B (server) | UDP needs no connection: one `sendto`, one `recvfrom` that also says who sent it (Q1, Q2) |
//! | `tcp-echo-server` | code C | SO_REUSEADDR; reads in 16-byte `recv` calls; `recv` returns 0 only when the client closes (Q6–Q8) |
//! | `tcp-echo-client` | code D | reads the echo in 8-byte `recv` calls: the server's 3 lines become 6 here (Q6) |
//! | `udp-upper` | lecture: UDPServer / UDPClient | a datagram and its answer |
//! | `tcp-upper` | lecture: TCPServer / TCPClient | `accept` gives a new socket per connection |
//! | `tcp-server` | assignment: server_tcp.py | one thread per client, "I received N chars: …" |
//! | `tcp-client` | assignment: client_tcp.py | a conversation over one connection |
//!
//! Each module has the binary's `HELP`, `Config::from_args` and `run`; servers also have `serve`
//! over an already-bound socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use labnet::{Error, Result};

pub mod echo_client;
pub mod echo_server;
pub mod tcp_client;
pub mod tcp_server;
pub mod tcp_upper;
pub mod udp_hello;
pub mod udp_upper;

/// The handouts' positionals `[host] [port] [message…]`: `host` and `port` fall back to the
/// defaults, the rest of the words form the message (`None` when absent).
pub fn host_port_message(
    words: &[String],
    default_host: &str,
    default_port: u16,
) -> Result<(String, u16, Option<String>)> {
    let host = words
        .first()
        .cloned()
        .unwrap_or_else(|| default_host.to_owned());
    let port = match words.get(1) {
        Some(p) => labnet::args::port(p, true)?,
        None => default_port,
    };
    let message = (words.len() > 2).then(|| words[2..].join(" "));
    Ok((host, port, message))
}

/// A server's `[host] port` (one word: the port; two: host and port; the Python `''` is
/// written `''` or `0.0.0.0` and means every interface).
pub fn server_endpoint(
    words: &[String],
    default_host: &str,
    default_port: u16,
) -> Result<(String, u16)> {
    match words {
        [] => Ok((default_host.to_owned(), default_port)),
        [port] => Ok((default_host.to_owned(), labnet::args::port(port, true)?)),
        [host, port] => Ok((host.clone(), labnet::args::port(port, true)?)),
        [_, _, extra, ..] => Err(Error::usage(format!("unexpected argument '{extra}'"))),
    }
}

/// The address a server binds: `''`, `""` or empty is every IPv4 interface (Python's `''`).
pub fn bind_addr(host: &str, port: u16) -> Result<SocketAddr> {
    if host.is_empty() || host == "''" || host == "\"\"" {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    labnet::args::resolve(host, port, false)
}

/// All remaining positionals as strings.
pub fn words(args: &mut pico_args::Arguments) -> Result<Vec<String>> {
    let rest = std::mem::replace(args, pico_args::Arguments::from_vec(Vec::new())).finish();
    let mut out = Vec::new();
    for w in rest {
        let w = w
            .into_string()
            .map_err(|w| Error::usage(format!("argument is not UTF-8: {}", w.to_string_lossy())))?;
        if w.starts_with("--")
            || (w.starts_with('-')
                && w.len() > 1
                && !w[1..].starts_with(|c: char| c.is_ascii_digit()))
        {
            return Err(Error::usage(format!("unknown option '{w}'")));
        }
        out.push(w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn positionals_follow_the_handouts() {
        assert_eq!(
            host_port_message(&s(&[]), "localhost", 5002).unwrap(),
            ("localhost".into(), 5002, None)
        );
        assert_eq!(
            host_port_message(&s(&["h", "7", "a", "b"]), "x", 1).unwrap(),
            ("h".into(), 7, Some("a b".into()))
        );
        assert_eq!(server_endpoint(&s(&["9"]), "", 1).unwrap(), ("".into(), 9));
        assert!(server_endpoint(&s(&["a", "1", "b"]), "", 1).is_err());
        assert_eq!(bind_addr("", 5).unwrap(), "0.0.0.0:5".parse().unwrap());
        assert_eq!(
            bind_addr("127.0.0.1", 5).unwrap(),
            "127.0.0.1:5".parse().unwrap()
        );
    }
}
