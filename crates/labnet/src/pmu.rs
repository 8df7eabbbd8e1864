//! TP3 parts 2, 5 and 6: one PMU session, over any byte stream.
//!
//! `lab-server` runs it on plain TCP (part 2), `tls-pmu serve` on a TLS stream (part 6); the
//! WebSocket service (part 5) reuses [`read_command`]'s parser through [`crate::wire::pmu`]. The
//! caller sets the read timeout on the socket (a silent client must not hold a thread forever) and
//! chooses n, so randomness and seeding stay in the server.
//!
//! Servers use [`serve_corked`]: Nagle on, and the d = 0 burst corked (see
//! [`crate::sock::Corked`] for why that is what a real round-trip time does), so the student
//! counts fewer data segments than messages with d = 0 and one per message with d = 1 (Q9, Q10).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::sock::Corked;

use crate::wire::WireError;
use crate::wire::pmu::{self, Command, MAX_COMMAND};

/// How a session ended, for the server's log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `CMD_short:d` served: n messages, `bytes` in all.
    Short {
        /// Messages sent.
        n: u32,
        /// Delay between sends.
        delay: Duration,
        /// Bytes sent.
        bytes: u64,
    },
    /// `CMD_floodme` served.
    Flood {
        /// Bytes sent.
        bytes: u64,
    },
    /// The client sent something that is not a command; it got `ERROR: <why>`.
    Refused {
        /// What was wrong.
        why: String,
    },
    /// The client said nothing before the read timeout.
    Silent,
    /// The client went away before the reply was complete.
    ClientGone {
        /// What the client asked for.
        command: String,
        /// Bytes sent before the write failed.
        sent: u64,
    },
}

impl Outcome {
    /// One line for the server log.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Short { n, delay, bytes } => {
                format!(
                    "CMD_short:{} served: {n} messages, {bytes} bytes",
                    delay.as_secs_f64()
                )
            }
            Outcome::Flood { bytes } => format!("CMD_floodme served: {bytes} bytes in one send"),
            Outcome::Refused { why } => format!("refused: {why}"),
            Outcome::Silent => "client sent no command before the timeout; closed".to_owned(),
            Outcome::ClientGone { command, sent } => {
                format!("client went away during {command} after {sent} bytes")
            }
        }
    }
}

/// What [`read_command`] found.
#[derive(Debug)]
pub enum Request {
    /// A valid command.
    Command(Command),
    /// Bytes that are not a command (the reason is sent back after `ERROR: `).
    Invalid(String),
    /// Nothing arrived before the timeout.
    Silent,
    /// The client closed before a complete command.
    Closed,
}

/// Reads one command. The PDC sends no terminator, so this keeps reading while the bytes so far are
/// a prefix of a valid command, and stops at the first complete one.
pub fn read_command<S: Read>(stream: &mut S) -> io::Result<Request> {
    let mut buf = [0u8; MAX_COMMAND + 2];
    let mut len = 0;
    loop {
        let n = match stream.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(if len == 0 {
                    Request::Silent
                } else {
                    Request::Invalid("incomplete command before the timeout".into())
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(if len == 0 {
                Request::Closed
            } else {
                Request::Invalid("closed before a complete command".into())
            });
        }
        len += n;
        match pmu::parse_command(&buf[..len]) {
            Ok(cmd) => return Ok(Request::Command(cmd)),
            Err(WireError::Incomplete) if len < buf.len() => continue,
            Err(WireError::Incomplete) => return Ok(Request::Invalid("command too long".into())),
            Err(WireError::Malformed(why)) => return Ok(Request::Invalid(why)),
        }
    }
}

/// Serves one session: reads the command and sends the reply. `n` is the number of short messages
/// to send, `flood` the `CMD_floodme` text. The caller closes the stream afterwards (the close is
/// how the PDC knows it has everything). Nothing is corked: for a stream that is not a TCP
/// socket, or a test.
pub fn serve<S: Read + Write>(stream: &mut S, n: u32, flood: &[u8]) -> io::Result<Outcome> {
    session(stream, None, n, flood)
}

/// Like [`serve`], for a `stream` carried by the TCP connection `socket` (the socket itself, or
/// TLS over it): the `CMD_short:0` burst is corked on `socket`, so its messages leave together.
pub fn serve_corked<S: Read + Write>(
    stream: &mut S,
    socket: &TcpStream,
    n: u32,
    flood: &[u8],
) -> io::Result<Outcome> {
    session(stream, Some(socket), n, flood)
}

fn session<S: Read + Write>(
    stream: &mut S,
    socket: Option<&TcpStream>,
    n: u32,
    flood: &[u8],
) -> io::Result<Outcome> {
    match read_command(stream)? {
        Request::Command(cmd) => reply(stream, socket, &cmd, n, flood),
        Request::Invalid(why) => {
            let _ = stream.write_all(format!("ERROR: {why}\n").as_bytes());
            let _ = stream.flush();
            Ok(Outcome::Refused { why })
        }
        Request::Silent => Ok(Outcome::Silent),
        Request::Closed => Ok(Outcome::Refused {
            why: "closed without a command".into(),
        }),
    }
}

/// Sends the reply to a parsed command. With `socket`, a `CMD_short:0` burst is corked on it.
pub fn reply<S: Write>(
    stream: &mut S,
    socket: Option<&TcpStream>,
    cmd: &Command,
    n: u32,
    flood: &[u8],
) -> io::Result<Outcome> {
    let mut sent = 0u64;
    let gone = |sent| Outcome::ClientGone {
        command: cmd.encode(),
        sent,
    };
    match cmd {
        Command::Short { delay } => {
            // d = 0: cork the burst, as a real round trip would let Nagle coalesce it (Q9, Q10).
            // Pulled when the guard drops, right after the last message (or a failed write).
            let _cork = match socket {
                Some(s) if delay.is_zero() => Some(Corked::hold(s)?),
                _ => None,
            };
            for i in 1..=n {
                // One write (one send() on the socket) per message, as the handout's PMU.
                let msg = pmu::message(i);
                if stream
                    .write_all(msg.as_bytes())
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return Ok(gone(sent));
                }
                sent += msg.len() as u64;
                if i < n && !delay.is_zero() {
                    std::thread::sleep(*delay);
                }
            }
            Ok(Outcome::Short {
                n,
                delay: *delay,
                bytes: sent,
            })
        }
        Command::Flood => {
            if stream
                .write_all(flood)
                .and_then(|()| stream.flush())
                .is_err()
            {
                return Ok(gone(0));
            }
            Ok(Outcome::Flood {
                bytes: flood.len() as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    struct Duplex {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }
    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn session(input: &[u8], n: u32) -> (Outcome, Vec<u8>) {
        let mut d = Duplex {
            input: Cursor::new(input.to_vec()),
            output: Vec::new(),
        };
        let outcome = serve(&mut d, n, b"FLOOD").unwrap();
        (outcome, d.output)
    }

    #[test]
    fn short_sends_n_unseparated_messages() {
        let (o, out) = session(b"CMD_short:0", 3);
        assert_eq!(
            out,
            b"This is PMU data 1This is PMU data 2This is PMU data 3"
        );
        assert_eq!(
            o,
            Outcome::Short {
                n: 3,
                delay: Duration::ZERO,
                bytes: out.len() as u64
            }
        );
    }

    /// On a real socket the d = 0 burst is corked and the cork is pulled before `serve_corked`
    /// returns (a cork left in would hold the end of the reply for 200 ms).
    #[test]
    fn corked_burst_arrives_whole_and_the_cork_is_pulled() {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"CMD_short:0").unwrap();
        let outcome = serve_corked(&mut &server, &server, 5, b"").unwrap();
        assert!(
            matches!(outcome, Outcome::Short { n: 5, .. }),
            "{outcome:?}"
        );
        assert!(!socket2::SockRef::from(&server).tcp_cork().unwrap());
        let want: String = (1..=5).map(pmu::message).collect();
        let mut got = vec![0u8; want.len()];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
    }

    #[test]
    fn flood_and_errors() {
        assert_eq!(
            session(b"CMD_floodme", 3),
            (Outcome::Flood { bytes: 5 }, b"FLOOD".to_vec())
        );
        let (o, out) = session(b"CMD_short:abc", 3);
        assert!(matches!(o, Outcome::Refused { .. }));
        assert!(out.starts_with(b"ERROR: "), "{out:?}");
        let (o, _) = session(b"CMD_sho", 3);
        assert!(matches!(o, Outcome::Refused { .. }));
        let (o, out) = session(b"", 3);
        assert!(matches!(o, Outcome::Refused { .. }) && out.is_empty());
    }
}
