//! `labnet` — what two or more netlab programs share.
//!
//! Every lab binary is a thin `main.rs` over its own library; whatever a second binary also needs
//! lives here:
//!
//! - [`error`]: one [`Error`] type, `.context(..)` on fallible calls, and [`report`], which turns a
//!   result into the exit code of the kit's convention (0 success, 1 runtime failure, 2 usage).
//! - [`log`]: the one printer of `[time] [LEVEL] message` lines (or JSON objects with `--json`),
//!   safe to call from any thread without interleaving lines.
//! - [`args`]: small helpers around `pico-args` so every program rejects bad input the same way.
//! - [`sock`]: one socket builder per teaching idea (broadcast, multicast, reuse-address and
//!   dual-stack listeners), each option commented with what the kernel does with it.
//! - [`wire`]: pure parsers and encoders of the labs' wire formats.
//! - [`pmu`]: one PMU session (TP3 parts 2 and 6) over any byte stream.
//! - `pcap` (feature `pcap`): captures read back (pcap and pcapng) and the handouts' questions
//!   over them (handshakes, UDP datagrams, IGMP), for xtask's demos and lab-grade.
//! - [`stats`]: a UDP receiver's statistics and its overall/idle timeouts (week 3 homework 1).
//! - [`topo`]: the addresses of the three lab topologies, shared by compose files, `cargo xtask
//!   lab` and the tests.
//! - [`netns`]: the network-namespace testbed that builds a topology for real and removes it on
//!   drop (`cargo xtask lab`, the graders, the namespace tests), and the kit's one skip policy.
//!
//! Helpers only tests need (programs under test, built binaries, payloads) are in the dev-only
//! `testkit` crate, never here.

pub mod args;
pub mod error;
pub mod log;
pub mod netns;
#[cfg(feature = "pcap")]
pub mod pcap;
pub mod pmu;
pub mod sock;
pub mod stats;
pub mod topo;
pub mod wire;

pub use error::{Context, Error, Result, report};
