//! `testkit`: what netlab's tests share, and nothing a program needs (a dev-dependency only).
//!
//! - [`proc`]: a program under test as a child process: output collected as it comes, waits that
//!   wake on a line and end at a deadline, the child killed on drop.
//! - [`bin`]: the path of a workspace binary, for a test of one crate that runs another crate's
//!   program, rebuilt when its sources changed.
//! - [`probe`]: what `/proc` says about a program under test (descriptors, threads, TCP states,
//!   CPU time, memory) and the descriptor-limit check every server passes.
//! - [`inproc`]: a server's `serve` on a thread of the test, with a capture sink and a stop
//!   handle: its events read back, its return checked.
//! - [`tcp`]: loopback clients and targets with timeouts, and the abuse a server must survive.
//! - [`random_bytes`], [`wait_until`], [`tool_or_skip`]: payloads, polling, prerequisites.
//!
//! The namespace testbed and the kit's skip policy are production code (`cargo xtask lab` and
//! the graders use them) and live in [`labnet::netns`]. A helper here fails the calling test by
//! panicking with what it saw, as an assertion does.

pub mod inproc;
pub mod probe;
pub mod proc;
pub mod tcp;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

pub use labnet::netns::wait_until;

/// Deterministic pseudo-random bytes (xorshift64*), the same for the same seed: payloads a test
/// sends through a program and compares byte for byte on the way back.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The path of a workspace binary, for tests of one crate that run another crate's program.
///
/// A cargo integration test only gets `CARGO_BIN_EXE_<name>` for its own package: this looks next
/// to the test executable (`target/<profile>/`). The first call for a name in a test process runs
/// `cargo build --workspace --bin NAME` in the same profile, so a binary whose sources changed
/// since it was built is rebuilt rather than reused; cargo does nothing when it is up to date
/// (about 0.1 s), and holds its build lock while parallel test processes ask at once.
/// (`--workspace`: run from a package's folder, as tests are, cargo looks only at that package.)
pub fn bin(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = profile_dir();
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--bin", name]);
        // `target/debug` is the `dev` profile; every other profile has a folder of its name.
        match dir.file_name().and_then(|p| p.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let status = cmd.status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "could not build binary {name} ({cmd:?}: {status:?})"
        );
        built.push(name.to_owned());
    }
    dir.join(name)
}

/// `target/<profile>`: the folder of the running test executable (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// Whether `program` is on the PATH (`Err` says it is not, and which package has it when known).
pub fn tool(program: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
    if found {
        return Ok(());
    }
    let package = match program {
        "prlimit" | "setpriv" | "unshare" => " (util-linux)",
        "tcpdump" => " (apt-get install tcpdump)",
        "python3" => " (apt-get install python3)",
        _ => "",
    };
    Err(format!("{program} not found{package}"))
}

/// The kit's skip policy ([`labnet::netns::or_skip`]) for a test that needs these programs.
pub fn tool_or_skip(programs: &[&str]) -> bool {
    let missing: Vec<String> = programs.iter().filter_map(|p| tool(p).err()).collect();
    labnet::netns::or_skip(if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_the_same_for_a_seed_and_differ_between_seeds() {
        assert_eq!(random_bytes(7, 1000), random_bytes(7, 1000));
        assert_eq!(random_bytes(7, 13).len(), 13);
        assert_ne!(random_bytes(7, 64), random_bytes(8, 64));
        assert_eq!(&random_bytes(7, 100)[..13], &random_bytes(7, 13)[..]);
    }

    #[test]
    fn tool_finds_sh_and_names_what_is_missing() {
        assert_eq!(tool("sh"), Ok(()));
        let err = tool("no-such-program-netlab").unwrap_err();
        assert!(err.contains("no-such-program-netlab not found"), "{err}");
    }
}
