//! TP3 part 2, "Packetization": the PDC, a TCP client that sends
//! one command to the PMU and shows every reply message on its own line.
//!
//! The one socket idea: **TCP is a byte stream**. The PMU answers `CMD_short:d` with n messages
//! `This is PMU data i`, each in its own `send()`, with no separator; the PDC's `recv()` calls see
//! them glued together (d = 0) or one by one (d = 1), never "one message per recv". So the client
//! cuts the stream itself ([`labnet::wire::pmu::Splitter`]), and it knows it has everything only
//! when the server closes the connection (Q11: `recv()` returns 0 bytes). For `CMD_floodme` it
//! counts how many `recv()` calls one large `send()` took (Q13) — that depends on the receive
//! buffer size, the MSS, the window and timing, not on the sender.
//!
//! The handout requires an IPv6 socket: the client connects over IPv6 by default, reaching a host
//! that only has an IPv4 address through the v4-mapped form `::ffff:a.b.c.d` (an IPv6 socket with
//! IPV6_V6ONLY off, RFC 4291 §2.5.5.2); `-4` forces a plain IPv4 socket.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use labnet::log::{self, Event, Level};
use labnet::wire::WireError;
use labnet::wire::pmu::{self, Command, PREFIX, Splitter};
use labnet::{Context, Error, Result};
use socket2::{Domain, Protocol, Socket, Type};

/// Usage, options and examples.
pub const HELP: &str = "\
pmu-pdc-client: TP3 part 2, the PDC. Sends one command to the PMU over TCP (IPv6 by default) and
prints every reply message on its own line, however TCP cut the stream.

USAGE:
    pmu-pdc-client HOST PORT CMD [options]

ARGUMENTS:
    HOST    the PMU (name or address); IPv6 preferred, v4-mapped ::ffff:a.b.c.d if it has only IPv4
    PORT    the PMU's port (the lab's is 5003)
    CMD     CMD_short:<d> (d = seconds between the PMU's sends, 0-10) or CMD_floodme

OPTIONS:
    -4                       use an IPv4 socket instead of IPv6
    --recv-size <B>          bytes asked for in each recv() call [default: 4096]
    --connect-timeout <S>    give up connecting after S seconds [default: 5]
    --timeout <S>            give up when the server sends nothing for S seconds [default: 30]
    -v, --verbose            print every recv() call and how many bytes it returned (Q13)
    --json                   one JSON object per line
    -h, --help               this help

EXAMPLES:
    pmu-pdc-client tcpip 5003 CMD_short:0          # the lab's PMU, IPv6
    pmu-pdc-client ::1 5003 CMD_short:1 -v         # one message per second, every recv() shown
    pmu-pdc-client 127.0.0.1 5003 CMD_floodme -4   # the flood, IPv4 socket
";

/// Everything the client needs, from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// The PMU's host name or address.
    pub host: String,
    /// The PMU's port.
    pub port: u16,
    /// The command, validated.
    pub command: Command,
    /// The command exactly as typed (sent as is, so a student sees their own spelling on the wire).
    pub raw_command: String,
    /// `-4`: a plain IPv4 socket.
    pub force_v4: bool,
    /// Size of the buffer given to each `recv()`.
    pub recv_size: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout while waiting for data.
    pub timeout: Duration,
    /// Print every `recv()` call.
    pub verbose: bool,
    /// `--json` output.
    pub json: bool,
}

impl Config {
    /// Parses the arguments (flags, options, positionals, then leftovers are an error).
    pub fn from_args(args: Vec<OsString>) -> Result<Config> {
        let mut a = pico_args::Arguments::from_vec(args);
        let force_v4 = a.contains("-4");
        let verbose = a.contains(["-v", "--verbose"]);
        let json = a.contains("--json");
        let recv_size: usize = labnet::args::opt_or(&mut a, "--recv-size", 4096)?;
        if recv_size == 0 || recv_size > 16 << 20 {
            return Err(Error::usage("--recv-size must be 1 to 16777216 bytes"));
        }
        let connect_timeout = labnet::args::opt_seconds(&mut a, "--connect-timeout")?
            .unwrap_or(Duration::from_secs(5));
        let timeout =
            labnet::args::opt_seconds(&mut a, "--timeout")?.unwrap_or(Duration::from_secs(30));
        if connect_timeout.is_zero() || timeout.is_zero() {
            return Err(Error::usage("timeouts must be more than 0 seconds"));
        }
        // Every option is taken: what starts with `-` now is no positional.
        labnet::args::no_unknown_options(&a)?;
        let host: String = a
            .free_from_str()
            .map_err(|_| Error::usage("missing HOST (usage: pmu-pdc-client HOST PORT CMD)"))?;
        let port: String = a
            .free_from_str()
            .map_err(|_| Error::usage("missing PORT (usage: pmu-pdc-client HOST PORT CMD)"))?;
        let port = labnet::args::port(&port, false)?;
        let raw_command: String = a
            .free_from_str()
            .map_err(|_| Error::usage("missing CMD: CMD_short:<d> or CMD_floodme"))?;
        labnet::args::finish(a)?;
        let command = validate_command(&raw_command)?;
        Ok(Config {
            host,
            port,
            command,
            raw_command,
            force_v4,
            recv_size,
            connect_timeout,
            timeout,
            verbose,
            json,
        })
    }
}

/// Checks a command locally, before anything is sent: a typo is a usage error (exit 2), not a
/// round trip to the server.
pub fn validate_command(raw: &str) -> Result<Command> {
    match pmu::parse_command(raw.as_bytes()) {
        Ok(cmd) => Ok(cmd),
        Err(WireError::Incomplete) => Err(Error::usage(format!(
            "incomplete command '{raw}': expected CMD_short:<d> (d = 0-10) or CMD_floodme"
        ))),
        Err(WireError::Malformed(why)) => Err(Error::usage(format!("invalid command: {why}"))),
    }
}

/// The address to connect to: IPv6 first; a host with only IPv4 addresses is reached through
/// its v4-mapped IPv6 address, unless `force_v4` asks for an IPv4 socket.
pub fn target(host: &str, port: u16, force_v4: bool) -> Result<SocketAddr> {
    let addrs = labnet::args::resolve_all(host, port)?;
    if force_v4 {
        return addrs
            .iter()
            .find(|a| a.is_ipv4())
            .copied()
            .ok_or_else(|| Error::msg(format!("{host} has no IPv4 address (drop -4)")));
    }
    if let Some(v6) = addrs.iter().find(|a| a.is_ipv6()) {
        return Ok(*v6);
    }
    match addrs.first().map(SocketAddr::ip) {
        Some(IpAddr::V4(v4)) => Ok(SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), port)),
        _ => Err(Error::msg(format!("resolve {host}: no address"))),
    }
}

/// Connects with a timeout. An IPv6 socket to a v4-mapped address needs IPV6_V6ONLY off (set
/// explicitly: the default comes from net.ipv6.bindv6only); the kernel then speaks IPv4 on the wire.
pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("create TCP socket")?;
    if let SocketAddr::V6(v6) = addr {
        let mapped = v6.ip().to_ipv4_mapped().is_some();
        socket
            .set_only_v6(!mapped)
            .context("set IPV6_V6ONLY on the IPv6 socket")?;
    }
    socket
        .connect_timeout(&addr.into(), timeout)
        .with_context(|| format!("connect to {addr}"))?;
    Ok(socket.into())
}

/// What a session received, for the summary and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages printed.
    pub messages: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// `recv()` calls that returned data (the final one that returned 0 is not counted).
    pub recv_calls: u64,
}

/// Runs the client: connect, send the command, print the replies until the server closes.
pub fn run(cfg: &Config) -> Result<()> {
    log::set_json(cfg.json);
    let addr = target(&cfg.host, cfg.port, cfg.force_v4)?;
    let mut stream = connect(addr, cfg.connect_timeout)?;
    let local = stream.local_addr().context("local address")?;
    let family = match addr {
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => {
            "IPv6 socket, v4-mapped: IPv4 on the wire"
        }
        SocketAddr::V6(_) => "IPv6",
        SocketAddr::V4(_) => "IPv4",
    };
    Event::new(
        Level::Info,
        format!("connected to {addr} from {local} ({family})"),
    )
    .field("peer", addr.to_string())
    .field("local", local.to_string())
    .emit();
    stream
        .set_read_timeout(Some(cfg.timeout))
        .context("set the read timeout")?;
    stream
        .set_write_timeout(Some(cfg.timeout))
        .context("set the write timeout")?;
    // The command goes without a terminator, as the handout's PMU expects.
    stream
        .write_all(cfg.raw_command.as_bytes())
        .with_context(|| format!("send the command to {addr}"))?;
    Event::new(
        Level::Send,
        format!("{} ({} bytes)", cfg.raw_command, cfg.raw_command.len()),
    )
    .field("command", &cfg.raw_command)
    .emit();
    let summary = receive(&mut stream, cfg)?;
    let what = match cfg.command {
        Command::Flood => "the flood".to_owned(),
        Command::Short { .. } => format!("{} messages", summary.messages),
    };
    Event::new(
        Level::Stat,
        format!(
            "{what}: {} bytes in {} recv() calls of up to {} bytes (plus the recv() that returned 0 at the close)",
            summary.bytes, summary.recv_calls, cfg.recv_size
        ),
    )
    .field("messages", summary.messages)
    .field("bytes", summary.bytes)
    .field("recv_calls", summary.recv_calls)
    .field("recv_size", cfg.recv_size)
    .emit();
    Ok(())
}

/// Reads until the server closes, printing each message as soon as it is complete.
pub fn receive<S: Read>(stream: &mut S, cfg: &Config) -> Result<Summary> {
    let mut buf = vec![0u8; cfg.recv_size];
    let mut summary = Summary::default();
    let mut splitter = Splitter::new();
    let mut flood: Vec<u8> = Vec::new();
    let is_flood = matches!(cfg.command, Command::Flood);
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::msg(format!(
                    "the server sent nothing for {} s after {} bytes; giving up",
                    cfg.timeout.as_secs_f64(),
                    summary.bytes
                )));
            }
            Err(e) => return Err(e).context("recv from the PMU"),
        };
        if n == 0 {
            break;
        }
        summary.recv_calls += 1;
        summary.bytes += n as u64;
        if cfg.verbose {
            Event::new(
                Level::Debug,
                format!("recv() #{} returned {n} bytes", summary.recv_calls),
            )
            .field("call", summary.recv_calls)
            .field("bytes", n)
            .emit();
        }
        if is_flood {
            flood.extend_from_slice(&buf[..n]);
        } else {
            for msg in splitter.push(&buf[..n]) {
                show_message(&msg, &mut summary)?;
            }
        }
    }
    // recv() returned 0: the PMU closed its side, so nothing more can come (Q11).
    if summary.bytes == 0 {
        return Err(Error::msg(
            "the server closed the connection without sending anything",
        ));
    }
    log::info("server closed the connection: all data received");
    if is_flood {
        if flood.starts_with(b"ERROR:") {
            return Err(server_error(&String::from_utf8_lossy(&flood)));
        }
        summary.messages = 1;
        // One event for the whole message: the flood is printed whole, not cut per recv().
        Event::new(Level::Recv, String::from_utf8_lossy(&flood).into_owned())
            .field("bytes", flood.len())
            .emit();
    } else if let Some(rest) = splitter.finish() {
        show_message(&rest, &mut summary)?;
    }
    Ok(summary)
}

fn server_error(text: &str) -> Error {
    Error::msg(format!("the PMU refused the command: {}", text.trim_end()))
}

/// Prints one short message, checking that it is one (`This is PMU data <i>`, in order).
fn show_message(msg: &str, summary: &mut Summary) -> Result<()> {
    if msg.starts_with("ERROR:") {
        return Err(server_error(msg));
    }
    let index = msg
        .strip_prefix(PREFIX)
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::wire(format!(
                "unexpected reply '{}' (expected '{PREFIX}<i>')",
                log::printable(msg.as_bytes())
            ))
        })?;
    summary.messages += 1;
    if index != summary.messages {
        log::warn(format!(
            "message {index} arrived where {} was expected",
            summary.messages
        ));
    }
    Event::new(Level::Recv, msg)
        .field("index", index)
        .field("bytes", msg.len())
        .emit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cmd: &str) -> Config {
        let args = ["::1", "5003", cmd].iter().map(OsString::from).collect();
        Config::from_args(args).unwrap()
    }

    #[test]
    fn bad_commands_are_usage_errors() {
        for bad in [
            "CMD_short:",
            "CMD_short:abc",
            "CMD_short:11",
            "hello",
            "CMD_flood",
        ] {
            let args = ["::1", "5003", bad].iter().map(OsString::from).collect();
            let e = Config::from_args(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        assert_eq!(cfg("CMD_SHORT:1").raw_command, "CMD_SHORT:1");
    }

    #[test]
    fn host_with_only_ipv4_is_reached_v4_mapped() {
        let a = target("127.0.0.1", 5003, false).unwrap();
        assert_eq!(a, "[::ffff:127.0.0.1]:5003".parse().unwrap());
        let a = target("127.0.0.1", 5003, true).unwrap();
        assert_eq!(a, "127.0.0.1:5003".parse().unwrap());
        assert!(target("::1", 5003, true).is_err());
    }

    #[test]
    fn a_stream_cut_anywhere_gives_the_same_messages() {
        let stream: Vec<u8> = (1..=5).flat_map(|i| pmu::message(i).into_bytes()).collect();
        let mut c = cfg("CMD_short:0");
        c.recv_size = 7;
        let s = receive(&mut io::Cursor::new(stream.clone()), &c).unwrap();
        assert_eq!(s.messages, 5);
        assert_eq!(s.bytes, stream.len() as u64);
        assert_eq!(s.recv_calls, stream.len().div_ceil(7) as u64);
    }

    #[test]
    fn error_reply_and_garbage_fail() {
        let c = cfg("CMD_short:0");
        let e = receive(&mut io::Cursor::new(b"ERROR: nope\n".to_vec()), &c).unwrap_err();
        assert_eq!(e.to_string(), "the PMU refused the command: ERROR: nope");
        let e = receive(&mut io::Cursor::new(b"hello".to_vec()), &c).unwrap_err();
        assert!(e.to_string().contains("unexpected reply 'hello'"), "{e}");
        let e = receive(&mut io::Cursor::new(Vec::new()), &c).unwrap_err();
        assert!(e.to_string().contains("without sending anything"), "{e}");
    }
}
