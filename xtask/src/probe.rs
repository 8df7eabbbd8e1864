//! What xtask runs inside a lab host as itself (`xtask __probe …`, `xtask __nc …`, entered into
//! the host like any lab command), so the demos need nothing installed beyond `ip`: a readiness
//! probe and a tiny netcat. In a Docker container, which has no xtask, the image's netcat does
//! the same (`lab::docker::helper`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use labnet::Error;
use labnet::error::Context;

fn addr(host: &str, port: &str) -> Result<SocketAddr, Error> {
    let port: u16 = port
        .parse()
        .map_err(|_| Error::usage(format!("bad port '{port}'")))?;
    (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {host}"))?
        .next()
        .ok_or_else(|| Error::msg(format!("resolve {host}: no address")))
}

/// `__probe ADDR PORT SECONDS`: succeeds once a TCP connection to ADDR:PORT is accepted.
pub fn probe(a: &[String]) -> Result<(), Error> {
    let [host, port, secs] = a else {
        return Err(Error::usage("__probe ADDR PORT SECONDS"));
    };
    let to = addr(host, port)?;
    let limit = labnet::args::seconds(secs)?;
    let end = Instant::now() + limit;
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_millis(500)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= end => {
                return Err(e).with_context(|| format!("connect to {to}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(30)),
        }
    }
}

/// `__nc HOST PORT MESSAGE`: what `echo MESSAGE | nc -N HOST PORT` does: sends the line, closes
/// its sending side (FIN), prints everything until the server closes.
pub fn netcat(a: &[String]) -> Result<(), Error> {
    let [host, port, msg] = a else {
        return Err(Error::usage("__nc HOST PORT MESSAGE"));
    };
    let to = addr(host, port)?;
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .with_context(|| format!("connect to {to}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .context("set a read timeout")?;
    s.write_all(format!("{msg}\n").as_bytes())
        .with_context(|| format!("send to {to}"))?;
    s.shutdown(Shutdown::Write).context("shutdown(SHUT_WR)")?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .with_context(|| format!("read from {to}"))?;
    std::io::stdout().write_all(&got).context("write stdout")?;
    Ok(())
}
