//! The global options of `cargo xtask` (`--bin-dir`, `--prefix`, `--loopback`, `--lab-dir`) and
//! the places they name: the workspace, the lab binaries, the folder every lab host shares.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use labnet::error::Context as _;
use labnet::{Error, Result};

/// Options shared by `lab`, `demo` and `verify`.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Directory holding the lab binaries (`target/release` unless `--bin-dir`).
    pub bin_dir: Option<PathBuf>,
    /// Namespace name prefix (empty: the labs' own names; tests use a unique one).
    pub prefix: String,
    /// Force the loopback variants even where namespaces are possible.
    pub loopback: bool,
    /// Quiet output (verify).
    pub quiet: bool,
    /// The folder lab hosts see at `/lab` (`--lab-dir`; default the repository's `lab/`).
    pub lab_dir: Option<PathBuf>,
    /// Run in Docker containers of this image instead (`demo --docker`).
    pub docker: Option<String>,
}

impl Opts {
    /// The folder every lab host sees at `/lab`: the repository's `lab/` unless `--lab-dir`
    /// (students drop their code there and take their captures out).
    pub fn shared_dir(&self) -> PathBuf {
        self.lab_dir
            .clone()
            .unwrap_or_else(|| workspace_root().join("lab"))
    }
}

/// `PATH` with the lab binaries first.
pub fn path_with(bins: &Path) -> OsString {
    let mut p = bins.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("PATH") {
        p.push(":");
        p.push(old);
    }
    p
}

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The lab binaries: `--bin-dir` (or `NETLAB_BIN_DIR`) as given, else built once in release mode.
pub fn binaries(opts: &Opts) -> Result<PathBuf> {
    if let Some(d) = &opts.bin_dir {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os("NETLAB_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if !opts.quiet {
        println!("building the lab binaries: cargo build --release --bins");
    }
    let st = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--quiet",
            "--workspace",
            "--bins",
            "--exclude",
            "xtask",
        ])
        .status()
        .context("run cargo")?;
    if !st.success() {
        return Err(Error::msg(
            "cargo build --release --bins failed (see the errors above)",
        ));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release"))
}
