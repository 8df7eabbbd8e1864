//! `cargo xtask images`: writes the Docker files of the kit (`lab::docker::files`, generated from
//! `labnet::topo`) and validates the compose files with `docker-compose config -q`; `--check`
//! only compares. `--build` then builds the image (see `lab::docker::image`: the Dockerfile when
//! a registry answers, a debootstrap base plus the host-built binaries when none does).

use std::path::Path;

use labnet::error::Context as _;
use labnet::topo;
use labnet::{Error, Result};

use crate::lab::docker::files::{IMAGE, files};
use crate::lab::docker::{self, image};
use crate::opts::{Opts, workspace_root};

/// `cargo xtask images [--check] [--build [--offline] [--tag NAME]]`.
pub fn command(args: Vec<std::ffi::OsString>, opts: &Opts) -> Result<(), Error> {
    let mut a = pico_args::Arguments::from_vec(args);
    let check = a.contains("--check");
    let build = a.contains("--build");
    let offline = a.contains("--offline");
    let tag: Option<String> = a.opt_value_from_str("--tag")?;
    labnet::args::finish(a)?;
    if (offline || tag.is_some()) && !build {
        return Err(Error::usage("--offline and --tag go with --build"));
    }
    let root = workspace_root();
    let mut stale = Vec::new();
    for (rel, text) in files() {
        let path = root.join(&rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            println!("{} is up to date", rel.display());
            continue;
        }
        if check {
            stale.push(rel.display().to_string());
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        if rel.ends_with("nc") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        println!("wrote {}", rel.display());
    }
    if !stale.is_empty() {
        return Err(Error::msg(format!(
            "{} differ from labnet::topo: run `cargo xtask images`",
            stale.join(", ")
        )));
    }
    validate(&root)?;
    if build {
        let tag = tag.unwrap_or_else(|| IMAGE.to_owned());
        image::build(&tag, offline, opts)?;
        println!(
            "start a lab with: cargo xtask lab up week3 --docker   (or: docker-compose -p week3 -f docker/week3.yml up -d)"
        );
    } else if !check {
        println!("build the image with: cargo xtask images --build");
    }
    Ok(())
}

/// Validates every compose file with `docker-compose config -q` (no engine needed).
fn validate(root: &Path) -> Result<(), Error> {
    if !docker::compose_available() {
        println!(
            "docker-compose is not installed (apt-get install docker-compose): compose files not validated"
        );
        return Ok(());
    }
    for t in topo::ALL {
        let file = root.join(format!("docker/{}.yml", t.name));
        let out = docker::compose_cmd()
            .arg("-f")
            .arg(&file)
            .args(["config", "-q"])
            .output()
            .context("run docker-compose")?;
        if !out.status.success() {
            return Err(Error::msg(format!(
                "docker/{}.yml is not valid: {}",
                t.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        println!("docker/{}.yml is valid (docker-compose config -q)", t.name);
    }
    Ok(())
}
