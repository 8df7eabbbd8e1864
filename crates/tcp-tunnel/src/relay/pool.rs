//! What a direction borrows while bytes are in flight: a copy buffer ([`Pool`]) or a pipe for
//! `splice(2)` ([`Pipes`]). An idle connection holds neither, so 10,000 idle connections cost
//! no buffers and no pipe descriptors.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Size of the copy buffer of one direction while bytes are in flight, and the threshold between
/// the two paths: a read that fills it switches the direction to splice, a splice turn that
/// moves less than this switches it back. Small messages (a line, a ping, a PMU record) fit with
/// room to spare; a loopback segment (up to 64 KiB) does not, so bulk reaches splice on its
/// first read. 10,000 idle connections hold none of these (see [`Half`](super::pump::Half)).
pub(super) const BUF_SIZE: usize = 16 * 1024;

/// Drained buffers kept for reuse; beyond this they go back to the allocator.
const POOL_KEEP: usize = 64;

/// Capacity asked of each pipe with F_SETPIPE_SZ (the default is 16 pages, 64 KiB): fewer,
/// larger `splice` calls per MiB. Measured with iperf3 on loopback, one stream: 64 KiB ≈ 1.6,
/// 256 KiB ≈ 1.9, 1 MiB ≈ 2.2 GB/s. 1 MiB is the default `/proc/sys/fs/pipe-max-size`; an
/// unprivileged process past `pipe-user-pages-soft` gets less, and the pipe keeps the size it
/// has. An empty pipe costs no buffer pages, only its slot array.
const PIPE_SIZE: usize = 1024 * 1024;

/// Drained pipes kept for reuse. Each holds two descriptors, so the pool stays small and is
/// emptied when the process runs out of descriptors.
const PIPES_KEEP: usize = 16;

/// Copy buffers for reuse: a direction on the copy path takes one while bytes are in flight and
/// gives it back once they are written out.
#[derive(Default)]
pub(super) struct Pool {
    free: Vec<Box<[u8]>>,
}

impl Pool {
    pub(super) fn get(&mut self) -> Box<[u8]> {
        self.free
            .pop()
            .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
    }

    pub(super) fn put(&mut self, b: Box<[u8]>) {
        if self.free.len() < POOL_KEEP {
            self.free.push(b);
        }
    }
}

/// A pipe between the two sockets of one direction, for `splice(2)`.
///
/// `splice` moves data between a descriptor and a pipe inside the kernel: from a TCP socket it
/// takes the received segments' pages (references to them, no copy into user memory), into a
/// socket it hands those pages to the send path. One end of every `splice` must be a pipe (the
/// kernel's page-reference buffer), so socket → socket is two calls through a pipe: source →
/// pipe, pipe → destination. Compared with `read` + `write`, each byte crosses the user/kernel
/// boundary zero times instead of twice.
pub(super) struct Pipe {
    pub(super) r: OwnedFd,
    pub(super) w: OwnedFd,
    /// The pipe's capacity: the most one `splice` into it can take.
    pub(super) cap: usize,
}

/// Empty pipes for reuse. A pipe belongs to a direction only while bytes are in flight: an idle
/// connection holds none (10,000 idle connections must not cost 20,000 descriptors and their
/// pipe buffers), and a busy one takes and returns one per burst at the cost of a `Vec` pop and
/// push instead of `pipe2` + `fcntl` + two `close`. The spares are closed when no connection is
/// left (the tunnel then holds the descriptors it started with), when the descriptors run out,
/// and when one stayed unused for a whole sweep interval.
#[derive(Default)]
pub(super) struct Pipes {
    free: Vec<Pipe>,
    /// The fewest spares there were since the last sweep: that many were not needed.
    unused: usize,
}

impl Pipes {
    pub(super) fn get(&mut self) -> io::Result<Pipe> {
        if let Some(p) = self.free.pop() {
            self.unused = self.unused.min(self.free.len());
            return Ok(p);
        }
        self.unused = 0;
        // Nonblocking: a `splice` that would wait on the pipe returns EAGAIN instead.
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = i32::try_from(PIPE_SIZE).unwrap_or(i32::MAX);
        let cap = fcntl(&w, FcntlArg::F_SETPIPE_SZ(size))
            .or_else(|_| fcntl(&w, FcntlArg::F_GETPIPE_SZ))
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(BUF_SIZE);
        Ok(Pipe { r, w, cap })
    }

    pub(super) fn put(&mut self, p: Pipe) {
        if self.free.len() < PIPES_KEEP {
            self.free.push(p);
        }
    }

    /// Closes the spares that sat unused since the last call. `get` and `put` work at the end of
    /// the list, so those are the first `unused`.
    pub(super) fn trim(&mut self) {
        self.free.drain(..self.unused.min(self.free.len()));
        self.unused = self.free.len();
    }

    pub(super) fn clear(&mut self) {
        self.free.clear();
        self.unused = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_pool_reuses_bounds_and_trims_pipes() {
        let mut p = Pipes::default();
        let a = p.get().unwrap();
        // F_SETPIPE_SZ may be refused (pipe-user-pages-soft); the pipe then has its own size.
        assert!(a.cap >= 4096, "{}", a.cap);
        p.put(a);
        let again = p.get().unwrap();
        assert!(
            p.free.is_empty(),
            "the spare was reused, not a new pipe made"
        );
        p.put(again);
        let many: Vec<_> = (0..PIPES_KEEP + 3).map(|_| p.get().unwrap()).collect();
        for x in many {
            p.put(x);
        }
        assert_eq!(p.free.len(), PIPES_KEEP);
        p.trim();
        assert_eq!(p.unused, PIPES_KEEP, "a sweep starts counting from here");
        // Taken down to 2 spares since the last sweep: the next sweep closes those 2.
        let busy: Vec<_> = (0..PIPES_KEEP - 2).map(|_| p.get().unwrap()).collect();
        for x in busy {
            p.put(x);
        }
        p.trim();
        assert_eq!(p.free.len(), PIPES_KEEP - 2);
        // Untouched for a whole interval: all closed.
        p.trim();
        assert!(p.free.is_empty());
    }

    #[test]
    fn pool_reuses_and_bounds_buffers() {
        let mut p = Pool { free: Vec::new() };
        let b = p.get();
        assert_eq!(b.len(), BUF_SIZE);
        p.put(b);
        assert_eq!(p.free.len(), 1);
        let _again = p.get();
        assert!(p.free.is_empty());
        for _ in 0..POOL_KEEP + 5 {
            p.put(vec![0u8; 1].into_boxed_slice());
        }
        assert_eq!(p.free.len(), POOL_KEEP);
    }
}
