//! One direction of a tunnelled pair: what the loop knows about its two sockets ([`Half`]), and
//! [`pump`], which moves its bytes from the source socket to the destination socket by the copy
//! path or the splice path (see the parent module) until the kernel says either would block.

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};

use super::pool::{BUF_SIZE, Pipe, Pipes, Pool};

/// Reads per direction per turn before other connections get their turn.
const READS_PER_TURN: usize = 16;

/// Bytes per direction per turn, whichever path moves them (a `splice` can take a whole pipe).
const BYTES_PER_TURN: usize = 1024 * 1024;

/// What one epoll event said about one socket. Edge-triggered epoll says it once, so it is kept
/// in the two [`Half`]s the socket belongs to until a system call proves it stale.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ready {
    /// Bytes, a FIN or an error may be waiting to be read.
    read: bool,
    /// Room in the send buffer (or an error to be reported by the next write).
    write: bool,
    /// The peer's FIN (or an error) was there: after the bytes, a `read` of 0 is due.
    closing: bool,
    /// TCP urgent data (`MSG_OOB`, EPOLLPRI) is pending: reads stop short at its mark.
    urgent: bool,
}

impl Ready {
    pub(super) fn of(e: &mio::event::Event) -> Ready {
        let error = e.is_error();
        Ready {
            read: e.is_readable() || e.is_read_closed() || e.is_priority() || error,
            write: e.is_writable() || e.is_write_closed() || error,
            closing: e.is_read_closed() || error,
            urgent: e.is_priority(),
        }
    }
}

/// One direction of a pair. Bytes in flight sit either in `pipe` (the splice path) or in `buf`
/// (the copy path); never in both, so their order is kept. An idle direction holds neither.
pub(super) struct Half {
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    pipe: Option<Pipe>,
    /// Bytes spliced into `pipe` and not yet out of it.
    piped: usize,
    /// The splice path is in use (see the module documentation).
    bulk: bool,
    /// The source may have something to read: set by its events, cleared when a read returns
    /// `WouldBlock` or comes back short.
    readable: bool,
    /// The source's FIN or an error was reported: a short read no longer proves it empty.
    closing: bool,
    /// Urgent data was reported and not read past yet (see [`pump`]).
    urgent: bool,
    /// The destination may take bytes: set by its events, cleared when a write returns
    /// `WouldBlock`.
    writable: bool,
    /// The source sent FIN (`read` returned 0).
    pub(super) eof: bool,
    /// The FIN was passed on: `shutdown(Write)` on the destination.
    pub(super) shut: bool,
    pub(super) bytes: u64,
}

impl Half {
    /// A new direction: both sockets presumed ready (a wasted `WouldBlock` at worst; epoll also
    /// reports the state at registration).
    pub(super) fn new() -> Half {
        Half {
            buf: None,
            start: 0,
            end: 0,
            pipe: None,
            piped: 0,
            bulk: false,
            readable: true,
            closing: false,
            urgent: false,
            writable: true,
            eof: false,
            shut: false,
            bytes: 0,
        }
    }

    /// An event of the source socket.
    pub(super) fn source_event(&mut self, r: Ready) {
        self.readable |= r.read;
        self.closing |= r.closing;
        self.urgent |= r.urgent;
    }

    /// An event of the destination socket.
    pub(super) fn destination_event(&mut self, r: Ready) {
        self.writable |= r.write;
    }

    fn release_if_empty(&mut self, pool: &mut Pool, pipes: &mut Pipes) {
        if self.start == self.end {
            if let Some(b) = self.buf.take() {
                pool.put(b);
            }
            self.start = 0;
            self.end = 0;
        }
        if self.piped == 0 {
            if let Some(p) = self.pipe.take() {
                pipes.put(p);
            }
        }
    }

    /// Hands the buffer and the pipe back when the pair goes away. A pipe still holding bytes
    /// is closed instead: its stale bytes must never reach another connection.
    pub(super) fn release_all(&mut self, pool: &mut Pool, pipes: &mut Pipes) {
        if let Some(b) = self.buf.take() {
            pool.put(b);
        }
        if let Some(p) = self.pipe.take() {
            if self.piped == 0 {
                pipes.put(p);
            }
        }
    }
}

/// Which socket broke, and how.
pub(super) enum Fault {
    /// Reading the source failed (a reset from that side).
    Read(io::Error),
    /// Writing or shutting down the destination failed (that side is gone).
    Write(io::Error),
}

pub(super) enum Flow {
    /// Everything possible was done; the kernel will wake us.
    Blocked,
    /// The fairness budget ran out with more to do.
    Again,
}

/// Moves bytes `src → dst` until the kernel blocks either side (or the last event said it
/// would), the source ends, or the budget runs out.
///
/// Edge-triggered readiness demands reading until the source is proven empty, and there are two
/// proofs: a read that returns `WouldBlock`, and on the copy path a read that returns less than
/// the buffer. A TCP `read` returns less than asked only when the receive queue has nothing more
/// to give, and bytes that arrive after it raise a new edge; trusting it saves a system call
/// per message (the `read` that would only say `WouldBlock`). Three cases make a short
/// read stop early with more to come, and each is known from the socket's event: the FIN (a
/// `read` of 0 is due next; epoll reports it with EPOLLRDHUP, `closing`), an error (EPOLLERR,
/// `closing`), and TCP urgent data (the read stops at the urgent mark; EPOLLPRI, `urgent`).
///
/// Urgent data also keeps this turn on the copy path: `splice` never reads past the urgent mark
/// (`tcp_read_sock` stops there and reports `EAGAIN`), which would stall the direction for good.
pub(super) fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    h: &mut Half,
    (pool, pipes): (&mut Pool, &mut Pipes),
) -> Result<Flow, Fault> {
    // SPLICE_F_NONBLOCK makes the pipe side nonblocking (the sockets already are); MOVE asks to
    // move pages rather than copy them (a hint).
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut reads = 0;
    let mut taken = 0;
    let flow = loop {
        // First flush what is in flight: a full buffer or a non-empty pipe is the backpressure
        // point, nothing more is read from `src` until `dst` took it.
        if h.start < h.end {
            let Some(buf) = h.buf.as_deref() else {
                break Flow::Blocked;
            };
            if !h.writable {
                break Flow::Blocked;
            }
            match (&*dst).write(&buf[h.start..h.end]) {
                Ok(0) => return Err(Fault::Write(ErrorKind::WriteZero.into())),
                Ok(n) => {
                    h.start += n;
                    h.bytes += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    h.writable = false;
                    break Flow::Blocked;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Write(e)),
            }
            continue;
        }
        if h.piped > 0 {
            let Some(p) = h.pipe.as_ref() else {
                break Flow::Blocked;
            };
            if !h.writable {
                break Flow::Blocked;
            }
            match splice(&p.r, None, dst, None, h.piped, flags) {
                Ok(0) => return Err(Fault::Write(ErrorKind::WriteZero.into())),
                Ok(n) => {
                    h.piped -= n;
                    h.bytes += n as u64;
                }
                Err(Errno::EAGAIN) => {
                    h.writable = false;
                    break Flow::Blocked;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(Fault::Write(e.into())),
            }
            continue;
        }
        if h.eof {
            if !h.shut {
                // Pass the FIN on; the other direction keeps flowing (a half-close, RFC 9293
                // §3.6: a side that closed may still receive).
                dst.shutdown(Shutdown::Write).map_err(Fault::Write)?;
                h.shut = true;
            }
            break Flow::Blocked;
        }
        if !h.readable {
            break Flow::Blocked;
        }
        if reads == READS_PER_TURN || taken >= BYTES_PER_TURN {
            break Flow::Again;
        }
        reads += 1;
        if h.bulk && !h.urgent && h.pipe.is_none() {
            // Without a pipe (out of descriptors) the copy path does the job.
            h.pipe = pipes.get().ok();
        }
        match h.pipe.as_ref() {
            Some(p) if h.bulk && !h.urgent => {
                // The pipe is empty here, so this waits only on the socket: EAGAIN = no data.
                match splice(src, None, &p.w, None, p.cap, flags) {
                    Ok(0) => h.eof = true,
                    Ok(n) => {
                        h.piped = n;
                        taken += n;
                    }
                    Err(Errno::EAGAIN) => {
                        h.readable = false;
                        // A turn that moved less than the copy buffer holds: small messages
                        // again, back to the copy path.
                        if taken > 0 && taken < BUF_SIZE {
                            h.bulk = false;
                        }
                        break Flow::Blocked;
                    }
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(Fault::Read(e.into())),
                }
            }
            _ => {
                let buf = h.buf.get_or_insert_with(|| pool.get());
                match (&*src).read(buf) {
                    Ok(0) => h.eof = true,
                    Ok(n) => {
                        h.start = 0;
                        h.end = n;
                        taken += n;
                        if n == buf.len() {
                            // More is probably queued: bulk from the next read on.
                            h.bulk = true;
                        } else if !h.closing && !h.urgent {
                            // Short: the receive queue is empty (see above).
                            h.readable = false;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        h.readable = false;
                        h.urgent = false;
                        break Flow::Blocked;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(Fault::Read(e)),
                }
            }
        }
    };
    h.release_if_empty(pool, pipes);
    Ok(flow)
}

/// While the outbound connect is pending: fill the c→s buffer once, if it is empty. This stays
/// on the copy path: at most one buffer, once per connection.
pub(super) fn read_early(
    src: &TcpStream,
    h: &mut Half,
    (pool, pipes): (&mut Pool, &mut Pipes),
) -> io::Result<()> {
    if h.start < h.end || h.piped > 0 || h.eof || !h.readable {
        return Ok(());
    }
    let buf = h.buf.get_or_insert_with(|| pool.get());
    let r = match (&*src).read(buf) {
        Ok(0) => {
            h.eof = true;
            Ok(())
        }
        Ok(n) => {
            h.start = 0;
            h.end = n;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            h.readable = false;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    };
    h.release_if_empty(pool, pipes);
    r
}
