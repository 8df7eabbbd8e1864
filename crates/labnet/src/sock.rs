//! Socket builders, one per teaching idea, on `socket2` for the options `std` lacks.
//!
//! Each builder is named for its effect and sets every option explicitly, with a comment saying
//! what the kernel does with it: a student reading this file should be able to answer "which
//! option made that work?" for every exercise.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

pub mod accept;
pub mod stop;

pub use accept::{AcceptLoop, Client};
pub use stop::{STOP_POLL, Serve, Stop};

/// Listen backlog for every TCP server in the kit: the system's maximum, `net.core.somaxconn`
/// (4096 on current kernels), so that a burst of connections (a class of 40 students, or the
/// abuse tests) waits in the kernel's accept queue.
///
/// When that queue is full the kernel drops the last ACK of a handshake: the client believes it
/// is connected while the server side stays in SYN-RECV until a retransmission gets through.
/// The kernel silently caps any larger backlog at somaxconn; reading it says which cap applies
/// (Go's net package does the same), and 4096 is the kernel's default when it cannot be read.
pub fn backlog() -> i32 {
    fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4096)
}

/// The interface a multicast socket sends on or joins on.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Iface {
    /// Let the kernel pick by routing (the 224.0.0.0/4 or default route).
    #[default]
    Any,
    /// An IPv4 interface address (`--iface 172.20.0.100`), as `ip_mreq` takes it.
    V4(Ipv4Addr),
    /// An interface index, the form IPv6 needs (`--iface eth0` is turned into one).
    Index(u32),
}

impl Iface {
    /// The interface index for IPv6 (0 = any). An IPv4 address cannot name an IPv6 interface.
    pub fn index_v6(&self) -> io::Result<u32> {
        match self {
            Iface::Any => Ok(0),
            Iface::Index(i) => Ok(*i),
            Iface::V4(a) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("IPv6 groups need an interface name, index or IPv6 address, not {a}"),
            )),
        }
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Iface::Any => f.write_str("any interface"),
            Iface::V4(a) => write!(f, "{a}"),
            Iface::Index(i) => match iface_name(*i) {
                Some(name) => write!(f, "{name}"),
                None => write!(f, "interface #{i}"),
            },
        }
    }
}

impl FromStr for Iface {
    type Err = String;

    /// Accepts an IPv4 address, an IPv6 address of a local interface, an index or a name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s == "any" || s == "0.0.0.0" {
            return Ok(Iface::Any);
        }
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(Iface::V4(a));
        }
        if let Ok(a) = s.parse::<Ipv6Addr>() {
            return index_of_v6_addr(a)
                .map(Iface::Index)
                .ok_or_else(|| format!("no local interface has address {a}"));
        }
        if let Ok(i) = s.parse::<u32>() {
            return Ok(Iface::Index(i));
        }
        iface_index(s)
            .map(Iface::Index)
            .map_err(|_| format!("no interface named '{s}'"))
    }
}

/// The index of a named interface, from sysfs (no `unsafe` `if_nametoindex` needed).
pub fn iface_index(name: &str) -> io::Result<u32> {
    if name.contains('/') || name.contains("..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let raw = fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))?;
    raw.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad ifindex"))
}

/// The name of an interface index, if sysfs knows it.
pub fn iface_name(index: u32) -> Option<String> {
    let entries = fs::read_dir("/sys/class/net").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if iface_index(&name).ok() == Some(index) {
            return Some(name);
        }
    }
    None
}

/// The index of the interface holding an IPv6 address, from `/proc/net/if_inet6`.
fn index_of_v6_addr(addr: Ipv6Addr) -> Option<u32> {
    let table = fs::read_to_string("/proc/net/if_inet6").ok()?;
    let want: String = addr.octets().iter().map(|b| format!("{b:02x}")).collect();
    table.lines().find_map(|line| {
        let mut cols = line.split_whitespace();
        let hex = cols.next()?;
        let index = cols.next()?;
        (hex == want)
            .then(|| u32::from_str_radix(index, 16).ok())
            .flatten()
    })
}

fn udp(domain: Domain) -> io::Result<Socket> {
    Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
}

/// A UDP socket allowed to send to broadcast addresses.
///
/// SO_BROADCAST: without it the kernel refuses `sendto(255.255.255.255)` or a subnet broadcast
/// with EACCES ("permission denied"), a guard against flooding a segment by mistake. `allow =
/// false` leaves it off on purpose so the exercise can show that error.
pub fn broadcast_sender(bind: SocketAddr, allow: bool) -> io::Result<UdpSocket> {
    let s = udp(Domain::for_address(bind))?;
    s.set_broadcast(allow)?;
    s.bind(&bind.into())?;
    Ok(s.into())
}

/// A UDP socket bound to `addr` that several programs on one host may bind at once.
///
/// SO_REUSEADDR on UDP lets two receivers share the port; the kernel then hands every broadcast or
/// multicast datagram to each of them (a unicast datagram goes to one only).
pub fn udp_receiver(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = udp(Domain::for_address(addr))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Never trust the OS default (net.ipv6.bindv6only): a v6 receiver hears v6 only.
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// How a multicast sender behaves.
#[derive(Clone, Debug)]
pub struct MulticastOptions {
    /// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS: routers decrement it and drop the datagram at 0,
    /// so 1 keeps it on the local segment and 0 keeps it inside this host.
    pub ttl: u32,
    /// IP_MULTICAST_LOOP: whether this host's own joined sockets get a copy.
    pub loopback: bool,
    /// IP_MULTICAST_IF / IPV6_MULTICAST_IF: the outgoing interface.
    pub iface: Iface,
}

impl Default for MulticastOptions {
    fn default() -> Self {
        MulticastOptions {
            ttl: 1,
            loopback: true,
            iface: Iface::Any,
        }
    }
}

/// A UDP socket that sends to a multicast group. Sending needs no membership: any socket may
/// send to a group (TP3 Q17); only the options below change how far and where it goes.
pub fn multicast_sender(group: IpAddr, opts: &MulticastOptions) -> io::Result<UdpSocket> {
    match group {
        IpAddr::V4(_) => {
            let s = udp(Domain::IPV4)?;
            s.set_multicast_ttl_v4(opts.ttl)?;
            s.set_multicast_loop_v4(opts.loopback)?;
            match &opts.iface {
                Iface::Any => {}
                Iface::V4(a) => s.set_multicast_if_v4(a)?,
                Iface::Index(i) => {
                    // IP_MULTICAST_IF by address only in socket2; bind the device instead.
                    s.bind_device_by_index_v4(std::num::NonZeroU32::new(*i))?;
                }
            }
            s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)).into())?;
            Ok(s.into())
        }
        IpAddr::V6(_) => {
            let s = udp(Domain::IPV6)?;
            s.set_only_v6(true)?;
            s.set_multicast_hops_v6(opts.ttl)?;
            s.set_multicast_loop_v6(opts.loopback)?;
            let index = opts.iface.index_v6()?;
            if index != 0 {
                s.set_multicast_if_v6(index)?;
            }
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
            Ok(s.into())
        }
    }
}

/// A socket that has joined a multicast group; leaving happens on [`leave`](Self::leave) or drop.
pub struct MulticastReceiver {
    socket: UdpSocket,
    group: IpAddr,
    iface: Iface,
    joined: bool,
}

impl MulticastReceiver {
    /// Binds `port` and joins `group` on `iface`.
    ///
    /// The join (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP) makes the kernel send an IGMP Membership
    /// Report (MLD for IPv6) and accept the group's datagrams on that interface. IPv4 receivers
    /// bind the group address itself, and IP_MULTICAST_ALL is turned off, so the socket gets this
    /// group only, not every group some other program on the host joined on the same port.
    pub fn join(group: IpAddr, port: u16, iface: &Iface) -> io::Result<Self> {
        if !group.is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{group} is not a multicast address"),
            ));
        }
        let socket = match group {
            IpAddr::V4(g) => {
                let s = udp(Domain::IPV4)?;
                s.set_reuse_address(true)?;
                s.set_multicast_all_v4(false)?;
                s.bind(&SocketAddr::from((g, port)).into())?;
                match iface {
                    Iface::Any => s.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)?,
                    Iface::V4(a) => s.join_multicast_v4(&g, a)?,
                    Iface::Index(i) => {
                        s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(*i))?
                    }
                }
                s
            }
            IpAddr::V6(g) => {
                let s = udp(Domain::IPV6)?;
                s.set_reuse_address(true)?;
                s.set_only_v6(true)?;
                s.set_multicast_all_v6(false)?;
                s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
                s.join_multicast_v6(&g, iface.index_v6()?)?;
                s
            }
        };
        Ok(MulticastReceiver {
            socket: socket.into(),
            group,
            iface: iface.clone(),
            joined: true,
        })
    }

    /// The joined socket, to `recv_from` on.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// The group joined.
    pub fn group(&self) -> IpAddr {
        self.group
    }

    /// Leaves the group (IP_DROP_MEMBERSHIP): the kernel sends an IGMPv2/v3 Leave (MLD Done).
    pub fn leave(&mut self) -> io::Result<()> {
        if !self.joined {
            return Ok(());
        }
        self.joined = false;
        let s = socket2::SockRef::from(&self.socket);
        match self.group {
            IpAddr::V4(g) => match &self.iface {
                Iface::Any => s.leave_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED),
                Iface::V4(a) => s.leave_multicast_v4(&g, a),
                Iface::Index(i) => s.leave_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(*i)),
            },
            IpAddr::V6(g) => s.leave_multicast_v6(&g, self.iface.index_v6()?),
        }
    }
}

impl Drop for MulticastReceiver {
    fn drop(&mut self) {
        // Closing the socket would leave too; leaving explicitly keeps the IGMP Leave visible in
        // a capture at the moment the program says it left.
        let _ = self.leave();
    }
}

/// A TCP listener with SO_REUSEADDR.
///
/// SO_REUSEADDR lets a restarted server bind its port while connections of the previous run
/// still sit in TIME_WAIT (TP3 part 1.2); without it `bind` fails with EADDRINUSE for a minute.
pub fn reuse_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Explicit, whatever net.ipv6.bindv6only says: this listener is IPv6 only.
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(backlog())?;
    Ok(s.into())
}

/// A TCP listener on `[::]:port` that also accepts IPv4 clients (as `::ffff:a.b.c.d`).
///
/// IPV6_V6ONLY is set to false explicitly: the default comes from net.ipv6.bindv6only and differs
/// between systems, and the lab servers must answer both families on one port.
pub fn dual_stack_listener(port: u16) -> io::Result<TcpListener> {
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_only_v6(false)?;
    s.bind(&addr.into())?;
    s.listen(backlog())?;
    Ok(s.into())
}

/// A TCP listener for a `--bind` address: `::` means dual stack, anything else that address only.
pub fn listener_for(addr: SocketAddr) -> io::Result<TcpListener> {
    match addr.ip() {
        IpAddr::V6(ip) if ip.is_unspecified() => dual_stack_listener(addr.port()),
        _ => reuse_listener(addr),
    }
}

/// A UDP socket on `[::]:port` that also receives IPv4 datagrams (IPV6_V6ONLY false, explicitly).
pub fn dual_stack_udp(port: u16) -> io::Result<UdpSocket> {
    let s = udp(Domain::IPV6)?;
    s.set_reuse_address(true)?;
    s.set_only_v6(false)?;
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(s.into())
}

/// A server's side of a PMU connection (TP3 parts 2, 5 and 6), with Nagle's algorithm on.
///
/// TCP_NODELAY is set to false explicitly (it is the kernel's default, but a reader should not
/// have to know that): Nagle's algorithm (RFC 896, RFC 1122 §4.2.3.4) keeps a small segment back
/// while earlier data is unacknowledged and sends what accumulated when the ACK comes. That is
/// how the handout's PMU coalesces its d = 0 messages across a real network (Q9, Q10); between
/// namespaces see [`Corked`] for the rest of the story.
pub fn nagle_on(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(false)
}

/// TCP_CORK held on a connection until this guard drops: the writes made meanwhile leave in
/// full-sized segments, and whatever is left goes out when the cork is pulled (Linux, tcp(7)).
///
/// Why the PMU needs it: across a real network the d = 0 messages of TP3 part 2 are coalesced by
/// Nagle's algorithm, which holds each small segment until the previous one is acknowledged,
/// one round-trip time later; the student sees fewer data segments than messages (Q9, Q10).
/// Between two namespaces of one machine the round trip is a few microseconds: the ACK is back
/// before the next `send()`, Nagle has nothing to hold, and every message leaves alone (this
/// kernel has no netem to add delay). Corking the burst stands in for that round-trip time:
/// each message is still its own `send()` call, and the kernel glues them as Nagle would have.
/// With d > 0 nothing is corked and each message leaves in its own segment, as it does across a
/// real network. If the cork cannot be pulled the kernel sends the data anyway after 200 ms.
pub struct Corked<'a> {
    stream: &'a TcpStream,
}

impl<'a> Corked<'a> {
    /// Sets TCP_CORK on `stream` until the guard drops.
    pub fn hold(stream: &'a TcpStream) -> io::Result<Corked<'a>> {
        socket2::SockRef::from(stream).set_tcp_cork(true)?;
        Ok(Corked { stream })
    }
}

impl Drop for Corked<'_> {
    fn drop(&mut self) {
        // Pulling the cork pushes the held data at once.
        let _ = socket2::SockRef::from(self.stream).set_tcp_cork(false);
    }
}

/// A TCP stream whose reads all end by one deadline, however the peer spaces its bytes.
///
/// SO_RCVTIMEO bounds one `read`: a client that sends one byte just before each read would time
/// out keeps its connection, and a server thread, for as long as it likes (slowloris: a
/// WebSocket upgrade and a TLS ClientHello trickled one byte a second were still
/// open after 25 s with a 3 s timeout). Before every read this sets the read timeout to the time
/// left, and once the deadline has passed the read fails with `WouldBlock`, which is what an
/// expired SO_RCVTIMEO gives on Linux, so callers (tungstenite, rustls, `labnet::pmu`) see the
/// deadline as the timeout they already handle. Writes pass through with their own SO_SNDTIMEO.
#[derive(Debug)]
pub struct Deadline<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> Deadline<'a> {
    /// Reads on `stream` must end within `timeout` from now.
    pub fn new(stream: &'a TcpStream, timeout: Duration) -> Self {
        Deadline::until(stream, Instant::now() + timeout)
    }

    /// Reads on `stream` must end by `deadline`.
    pub fn until(stream: &'a TcpStream, deadline: Instant) -> Self {
        Deadline { stream, deadline }
    }

    /// A new deadline, `timeout` from now (the next phase of a session).
    pub fn extend(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
    }

    /// The socket underneath.
    pub fn stream(&self) -> &'a TcpStream {
        self.stream
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "read deadline passed",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut s = self.stream;
        s.flush()
    }
}

/// EMFILE (this process's descriptor limit) or ENFILE (the system's), and the memory errors
/// (ENOBUFS, ENOMEM) `accept` gives when the kernel cannot allocate the new socket: a server
/// should back off and retry, not spin and not die.
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// `::ffff:a.b.c.d` shown as `a.b.c.d`: what a dual-stack socket reports for an IPv4 peer.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_multicast_ttl0_reaches_joined_socket() {
        let group: IpAddr = "239.255.77.1".parse().unwrap();
        let lo = Iface::V4(Ipv4Addr::LOCALHOST);
        let rx = MulticastReceiver::join(group, 0, &lo).unwrap();
        let port = rx.socket().local_addr().unwrap().port();
        rx.socket()
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // TTL 0: the datagram never leaves this host (the kit's network-safety rule).
        let opts = MulticastOptions {
            ttl: 0,
            loopback: true,
            iface: lo,
        };
        let tx = multicast_sender(group, &opts).unwrap();
        tx.send_to(b"hello group", (group, port)).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = rx.socket().recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello group");
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn joining_a_unicast_address_is_refused() {
        let e = MulticastReceiver::join("10.0.0.1".parse().unwrap(), 0, &Iface::Any)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn broadcast_without_so_broadcast_is_eacces() {
        let s = broadcast_sender("127.0.0.1:0".parse().unwrap(), false).unwrap();
        // The kernel refuses before anything is sent, so this sends nothing anywhere.
        let e = s.send_to(b"x", "127.255.255.255:9").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(13));
    }

    #[test]
    fn dual_stack_listener_accepts_v4_and_v6() {
        let l = dual_stack_listener(0).unwrap();
        let port = l.local_addr().unwrap().port();
        let _a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(unmap(peer).ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let _b = std::net::TcpStream::connect(("::1", port)).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn a_deadline_ends_reads_however_the_bytes_are_spaced() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let writer = std::thread::spawn(move || {
            // One byte every 50 ms for 2 s: every single read succeeds quickly.
            for _ in 0..40 {
                if client.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let mut timed = Deadline::new(&server, Duration::from_millis(400));
        let mut buf = [0u8; 16];
        let e = loop {
            match timed.read(&mut buf) {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(900),
            "{took:?}"
        );
        drop(server);
        writer.join().unwrap();
    }

    #[test]
    fn iface_parses_addresses_names_and_indexes() {
        assert_eq!(
            "172.20.0.100".parse::<Iface>().unwrap(),
            Iface::V4("172.20.0.100".parse().unwrap())
        );
        assert_eq!("lo".parse::<Iface>().unwrap(), Iface::Index(1));
        assert_eq!("::1".parse::<Iface>().unwrap(), Iface::Index(1));
        assert_eq!("7".parse::<Iface>().unwrap(), Iface::Index(7));
        assert!("no-such-if0".parse::<Iface>().is_err());
    }
}
