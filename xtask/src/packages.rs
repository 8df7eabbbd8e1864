//! The system tools some observations need (tcpdump for captures, smcroute for the multicast
//! route): found on the PATH, installed with apt-get when we are root and it exists (saying so
//! first), or reported with the command that installs them.

use std::process::{Command, Stdio};

use labnet::{Error, Result};

use crate::proc::have;

/// The program that shows a Debian package is installed.
fn program_of(package: &str) -> &str {
    match package {
        "smcroute" => "smcrouted",
        "netcat-openbsd" => "nc.openbsd",
        other => other,
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes sure every package in `packages` is installed; fails with a one-line reason and the fix
/// when one is missing and cannot be installed here.
pub fn ensure(packages: &[&str], quiet: bool) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !have(program_of(p)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let fix = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() || !have("apt-get") {
        return Err(Error::msg(format!(
            "{} missing: install with `{fix}`",
            missing.join(" and ")
        )));
    }
    if !quiet {
        println!("{} missing; installing: {fix}", missing.join(" and "));
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine may have no package lists yet: update once and retry.
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdout(Stdio::null())
            .status();
        if !install() {
            return Err(Error::msg(format!(
                "could not install {}: run `{fix}`",
                missing.join(" ")
            )));
        }
    }
    match missing.iter().find(|p| !have(program_of(p))) {
        None => Ok(()),
        Some(p) => Err(Error::msg(format!("{p} still missing after `{fix}`"))),
    }
}
