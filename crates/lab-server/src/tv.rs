//! TP3 part 4: the "Swisscom Internet TV" on multicast group 224.1.1.1, port 5005.
//!
//! The station sends Romeo and Juliet (public domain, shipped in `data/`), one line per
//! `--interval`, each datagram the 6-byte ID `swcmTV` followed by the UTF-8 line. It also joins
//! the group itself: it records every datagram seen there (`--record FILE`, JSON lines, for the
//! handout's "postmortem analysis"), and answers a subscriber whose text has at least 300
//! characters (Q18) with `swcmTV` + `Thank you <ID>, we received your <N>-character message`.
//!
//! The station hears its own datagrams too (IP_MULTICAST_LOOP is on, so receivers on this host get
//! the programme): they are recognised by ID and source port, recorded, and never answered.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use labnet::log::{Event, Level, Sink};
use labnet::sock::{Iface, MulticastOptions, MulticastReceiver, Serve, Stop, multicast_sender};
use labnet::wire::tv::{ANSWER_THRESHOLD, ID_LEN, Id, TV_ID, decode, encode};
use labnet::{Context, Result};
use serde_json::{Value, json};

use crate::{Config, clip};

/// The play, one line per datagram.
pub const PLAY: &str = include_str!("../data/romeo-and-juliet.txt");

/// Receive buffer: any UDP payload fits, so a long subscriber message is measured whole.
const RECV_BUF: usize = 65_536;

/// TV settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// IPv4 group.
    pub group: Ipv4Addr,
    /// Port (0 = pick).
    pub port: u16,
    /// Interface to send and join on.
    pub iface: Iface,
    /// Multicast TTL.
    pub ttl: u32,
    /// Time between lines.
    pub interval: Duration,
    /// JSON-lines record file.
    pub record: Option<PathBuf>,
}

impl Options {
    /// From the command line.
    pub fn from_config(c: &Config) -> Self {
        Options {
            group: c.group,
            port: c.tv_port,
            iface: c.iface.clone(),
            ttl: c.ttl,
            interval: c.interval,
            record: c.record.clone(),
        }
    }
}

/// The lines the station sends (blank lines skipped).
pub fn lines() -> Vec<&'static str> {
    PLAY.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The answer to a long subscriber message.
pub fn answer_text(id: &Id, chars: usize) -> String {
    format!(
        "Thank you {}, we received your {chars}-character message",
        id.display()
    )
}

/// A bound station: joined receiver, sender, record file.
pub struct Station {
    receiver: MulticastReceiver,
    sender: Arc<UdpSocket>,
    dest: SocketAddr,
    own_port: u16,
    record: Option<File>,
    interval: Duration,
    first: usize,
    sink: Sink,
}

impl Station {
    /// Joins the group, opens the sender and the record file, and logs `TV listening on
    /// GROUP:PORT` to `sink`. The programme starts at line `first` (0-based) of the play.
    pub fn open(opts: &Options, first: usize, sink: &Sink) -> Result<Station> {
        let group = IpAddr::V4(opts.group);
        let receiver = MulticastReceiver::join(group, opts.port, &opts.iface)
            .with_context(|| format!("TV: join {group} port {} on {}", opts.port, opts.iface))?;
        let port = receiver
            .socket()
            .local_addr()
            .context("TV: local address")?
            .port();
        let mopts = MulticastOptions {
            ttl: opts.ttl,
            // On: receivers on this host (and the station's own recorder) get the programme.
            loopback: true,
            iface: opts.iface.clone(),
        };
        let sender = multicast_sender(group, &mopts)
            .with_context(|| format!("TV: open a multicast sender on {}", opts.iface))?;
        let own_port = sender.local_addr().context("TV: sender address")?.port();
        let record = match &opts.record {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("TV: open record file {}", path.display()))?,
            ),
            None => None,
        };
        let dest = SocketAddr::from((opts.group, port));
        let listen = Event::new(
            Level::Info,
            format!(
                "TV listening on {dest} (UDP multicast, joined on {}, TTL {}, sending every {} s)",
                opts.iface,
                opts.ttl,
                opts.interval.as_secs_f64()
            ),
        )
        .field("event", "listen")
        .field("service", "TV")
        .field("addr", dest.to_string());
        sink.emit(listen);
        Ok(Station {
            receiver,
            sender: Arc::new(sender),
            dest,
            own_port,
            record,
            interval: opts.interval,
            first,
            sink: sink.clone(),
        })
    }

    /// Broadcasts the play on one thread and listens on this one until `ctx.stop` (forever for
    /// the binary), logging to the sink given to [`Station::open`]. After a stop both threads
    /// end within about [`labnet::sock::STOP_POLL`] and this returns `Ok(())`.
    pub fn run(mut self, ctx: &Serve) -> Result<()> {
        let sender = Arc::clone(&self.sender);
        let (dest, interval, first) = (self.dest, self.interval, self.first);
        let (sink, stop) = (self.sink.clone(), ctx.stop.clone());
        let broadcaster = std::thread::Builder::new()
            .name("tv-sender".into())
            .spawn(move || broadcast(&sender, dest, interval, first, &sink, &stop))
            .context("TV: start the sender thread")?;
        let listened = self.listen(&ctx.stop);
        if ctx.stop.is_stopped() {
            let _ = broadcaster.join();
        }
        listened
    }

    fn listen(&mut self, stop: &Stop) -> Result<()> {
        stop.watch_udp(self.receiver.socket())
            .context("TV: set the stop timeout")?;
        let mut buf = vec![0u8; RECV_BUF];
        let mut failures = 0u32;
        loop {
            if stop.is_stopped() {
                return Ok(());
            }
            let (len, src) = match self.receiver.socket().recv_from(&mut buf) {
                Ok(x) => {
                    failures = 0;
                    x
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The stop timeout came back with nothing: look at the flag again.
                Err(e)
                    if stop.can_stop()
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    if failures > 1000 {
                        return Err(e).context("TV: receive on the group");
                    }
                    self.sink.warn(format!("TV receive: {e}"));
                    continue;
                }
            };
            self.handle(&buf[..len], src);
        }
    }

    fn handle(&mut self, bytes: &[u8], src: SocketAddr) {
        let now = SystemTime::now();
        let mut entry = json!({
            "time": labnet::log::timestamp(now),
            "src": src.to_string(),
            "bytes": bytes.len(),
        });
        let mut answer = None;
        match decode(bytes) {
            Err(_) => {
                entry["kind"] = json!("short");
                entry["hex"] = json!(hex(bytes));
                self.sink.emit(
                    Event::new(
                        Level::Warn,
                        format!(
                            "TV {src}: {}-byte datagram, shorter than the {ID_LEN}-byte ID",
                            bytes.len()
                        ),
                    )
                    .field("service", "tv"),
                );
            }
            Ok(d) => {
                let own = d.id.0 == TV_ID && src.port() == self.own_port;
                entry["id"] = json!(d.id.display());
                entry["own"] = json!(own);
                match &d.text {
                    Ok(text) => {
                        let chars = text.chars().count();
                        entry["kind"] = json!("text");
                        entry["text"] = json!(text);
                        entry["chars"] = json!(chars);
                        if !own {
                            self.sink.emit(
                                Event::new(
                                    Level::Recv,
                                    format!(
                                        "TV {src} {}: {chars} chars '{}'",
                                        d.id.display(),
                                        clip(&text.escape_debug().to_string(), 80)
                                    ),
                                )
                                .field("service", "tv"),
                            );
                        }
                        // The station never answers itself, nor anything carrying its ID.
                        if d.id.0 != TV_ID && chars >= ANSWER_THRESHOLD {
                            answer = Some(answer_text(&d.id, chars));
                        }
                    }
                    Err(raw) => {
                        entry["kind"] = json!("invalid_utf8");
                        entry["hex"] = json!(hex(raw));
                        self.sink.emit(
                            Event::new(
                                Level::Warn,
                                format!(
                                    "TV {src} {}: {} bytes of text that is not UTF-8",
                                    d.id.display(),
                                    raw.len()
                                ),
                            )
                            .field("service", "tv"),
                        );
                    }
                }
            }
        }
        if let Some(text) = &answer {
            entry["answered"] = json!(text);
            match self.sender.send_to(&encode(&Id(TV_ID), text), self.dest) {
                Ok(_) => self.sink.emit(
                    Event::new(Level::Send, format!("TV answer to {src}: '{text}'"))
                        .field("service", "tv"),
                ),
                Err(e) => self.sink.warn(format!("TV answer to {src}: {e}")),
            }
        }
        self.record(&entry);
    }

    fn record(&mut self, entry: &Value) {
        if let Some(file) = &mut self.record {
            let mut line = entry.to_string();
            line.push('\n');
            // One write per line (O_APPEND): a reader never sees half a record.
            if let Err(e) = file.write_all(line.as_bytes()) {
                self.sink.warn(format!("TV record: {e}"));
            }
        }
    }
}

fn broadcast(
    sender: &UdpSocket,
    dest: SocketAddr,
    interval: Duration,
    first: usize,
    sink: &Sink,
    stop: &Stop,
) {
    let lines = lines();
    let id = Id(TV_ID);
    let mut next = Instant::now();
    let mut failures_logged = 0u32;
    for (i, line) in lines.iter().enumerate().cycle().skip(first % lines.len()) {
        match sender.send_to(&encode(&id, line), dest) {
            Ok(_) => sink.emit(
                Event::new(Level::Send, format!("TV line {}: {line}", i + 1))
                    .field("service", "tv")
                    .field("line", i + 1)
                    .field("text", line),
            ),
            Err(e) => {
                // No multicast route, interface down: say so, but not once a second forever.
                if failures_logged < 5 {
                    sink.warn(format!("TV send to {dest}: {e}"));
                    failures_logged += 1;
                }
            }
        }
        next += interval;
        if stop.sleep(next.saturating_duration_since(Instant::now())) {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn play_has_hundreds_of_lines_and_fits_a_datagram() {
        let l = lines();
        assert!(l.len() >= 200, "{}", l.len());
        assert!(l.iter().all(|x| x.len() < 1000));
        assert_eq!(l[0], "Two households, both alike in dignity,");
    }

    #[test]
    fn answer_names_id_and_length() {
        assert_eq!(
            answer_text(&Id(*b"123456"), 342),
            "Thank you 123456, we received your 342-character message"
        );
    }
}
