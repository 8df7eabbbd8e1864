//! `cargo xtask images --build`: the lab image `netlab:latest`, with or without a registry.
//!
//! With a registry (Docker Hub or the engine's mirror answers within a few seconds), the
//! multi-stage `docker/Dockerfile`. Without one (`--offline`, or no answer), from parts this
//! machine has: a Debian base made with `debootstrap --variant=minbase` from Debian's mirror and
//! `docker import`ed as `netlab-base:<hash>`, where the hash is taken over the suite and
//! [`files::PACKAGES`] (the base is built once and reused until that list changes), plus the
//! host's release binaries of every workspace binary (from `cargo metadata`, so a new crate's
//! binary is in the next image without a line changed here). A last step runs every binary's
//! `--help` and looks for every tool inside the new image, without a network.
//!
//! The long steps print their phase and elapsed time as they go (debootstrap: a line per phase,
//! and a line at least every 15 s).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use labnet::error::Context as _;
use labnet::{Error, Result};

use super::files::{self, NOT_IN_IMAGE};
use super::{default_image, docker, elapsed, engine, image_exists, output};
use crate::opts::{self, Opts, workspace_root};

/// The Debian release of the base (the release of the `debian:bookworm-slim` runtime stage).
const SUITE: &str = "bookworm";
/// Debian's mirror (override with NETLAB_DEBIAN_MIRROR).
const MIRROR: &str = "http://deb.debian.org/debian";
/// Bumped when the way the base is made changes (not its package list), to rebuild it.
const RECIPE: &str = "netlab-base recipe 1: minbase, apt caches emptied";
/// The repository name of the base image.
pub const BASE: &str = "netlab-base";
/// How long the registry probe may take.
const PROBE: Duration = Duration::from_secs(4);
/// The default PATH of a container of an imported image (an import has no ENV of its own).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `netlab-base:<12 hex digits>`, from the suite, the recipe and the package list.
pub fn base_tag() -> String {
    let mut recipe = format!("{SUITE}\n{RECIPE}\n");
    for p in files::package_names() {
        recipe.push_str(p);
        recipe.push('\n');
    }
    format!("{BASE}:{:012x}", files::fnv1a(recipe.as_bytes()) >> 16)
}

/// Builds `tag`: the Dockerfile when a registry answers and `offline` is false, else the
/// debootstrap base plus the host's binaries. Prints which path it takes and why.
pub fn build(tag: &str, offline: bool, opts: &Opts) -> Result<()> {
    let t0 = Instant::now();
    engine()?;
    let ok = tag
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-:/".contains(c))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(Error::msg(format!(
            "'{tag}' is not an image name Docker accepts (lowercase letters, digits, _ and -)"
        )));
    }
    let before = image_id(tag);
    let res = if offline {
        println!(
            "image {tag}: --offline: a Debian base from debootstrap plus this machine's release binaries"
        );
        offline_build(tag, opts, t0)
    } else {
        match registry() {
            Ok(host) => {
                println!(
                    "image {tag}: the registry {host} answers: docker build -f docker/Dockerfile (the Rust image compiles the workspace)"
                );
                dockerfile_build(tag, t0)
            }
            Err(why) => {
                println!(
                    "image {tag}: no registry ({why}): a Debian base from debootstrap plus this machine's release binaries"
                );
                offline_build(tag, opts, t0)
            }
        }
    };
    // The image the tag named before is now untagged: remove it unless a container uses it.
    if let (Ok(()), Some(old)) = (&res, before) {
        if image_id(tag).is_some_and(|new| new != old) {
            let _ = output(
                {
                    let mut c = Command::new("docker");
                    c.args(["rmi", &old]);
                    c
                },
                Duration::from_secs(60),
            );
        }
    }
    res
}

/// The ID of an image, if it exists.
fn image_id(image: &str) -> Option<String> {
    output(
        {
            let mut c = Command::new("docker");
            c.args(["image", "inspect", "--format", "{{.Id}}", image]);
            c
        },
        Duration::from_secs(20),
    )
    .ok()
    .filter(|(ok, _, _)| *ok)
    .map(|(_, out, _)| out.trim().to_owned())
}

/// The registry `docker pull` would use (the engine's first mirror, else Docker Hub), if it
/// accepts a TCP connection within [`PROBE`].
fn registry() -> Result<String> {
    let mirrors = output(
        {
            let mut c = Command::new("docker");
            c.args(["info", "--format", "{{json .RegistryConfig.Mirrors}}"]);
            c
        },
        Duration::from_secs(20),
    )
    .map(|(_, out, _)| out)
    .unwrap_or_default();
    let first: Option<String> = serde_json::from_str::<Vec<String>>(mirrors.trim())
        .ok()
        .and_then(|v| v.into_iter().next());
    let (host, port) = match first {
        Some(url) => {
            let https = !url.starts_with("http://");
            let hostport = url
                .split("://")
                .last()
                .unwrap_or(&url)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            match hostport.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() => {
                    (h.to_owned(), p.parse().unwrap_or(443))
                }
                _ => (hostport, if https { 443 } else { 80 }),
            }
        }
        None => ("registry-1.docker.io".to_owned(), 443),
    };
    let (tx, rx) = mpsc::channel();
    let target = format!("{host}:{port}");
    let t = target.clone();
    // Name resolution has no timeout of its own: the probe runs on a thread we stop waiting for.
    std::thread::spawn(move || {
        let res = t
            .to_socket_addrs()
            .map_err(|e| Error::msg(format!("{t} does not resolve: {e}")))
            .and_then(|mut a| {
                a.next()
                    .ok_or_else(|| Error::msg(format!("{t} has no address")))
            })
            .and_then(|a| {
                TcpStream::connect_timeout(&a, PROBE)
                    .map(|_| ())
                    .map_err(|e| Error::msg(format!("{t}: {e}")))
            });
        let _ = tx.send(res);
    });
    match rx.recv_timeout(PROBE + Duration::from_millis(500)) {
        Ok(Ok(())) => Ok(target),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::msg(format!(
            "{target}: no answer within {} s",
            PROBE.as_secs()
        ))),
    }
}

fn dockerfile_build(tag: &str, t0: Instant) -> Result<()> {
    let st = Command::new("docker")
        .current_dir(workspace_root())
        .args(["build", "-f", "docker/Dockerfile", "-t", tag, "."])
        .status()
        .context("run docker build")?;
    if !st.success() {
        return Err(Error::msg(
            "docker build failed (see above); `cargo xtask images --build --offline` needs no registry",
        ));
    }
    println!("image {tag}: built in {}", elapsed(t0));
    Ok(())
}

/// The binaries of the workspace that go into the image (every `bin` target of every package
/// but [`NOT_IN_IMAGE`]), from `cargo metadata`.
pub fn binary_names() -> Result<Vec<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .stderr(Stdio::piped())
        .output()
        .context("run cargo metadata")?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::other("cargo metadata printed no JSON", e))?;
    let mut names = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        if NOT_IN_IMAGE.contains(&p["name"].as_str().unwrap_or_default()) {
            continue;
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            let is_bin = t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"));
            if let (true, Some(n)) = (is_bin, t["name"].as_str()) {
                names.push(n.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn offline_build(tag: &str, opts: &Opts, t0: Instant) -> Result<()> {
    let t = Instant::now();
    println!("[1/4] the lab binaries");
    let bins = release_binaries(opts)?;
    let names = binary_names()?;
    let missing: Vec<&String> = names.iter().filter(|n| !bins.join(n).is_file()).collect();
    if !missing.is_empty() {
        return Err(Error::msg(format!(
            "not built in {}: {} (cargo build --release --bins)",
            bins.display(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    println!(
        "      {} binaries from {} ({})",
        names.len(),
        bins.display(),
        elapsed(t)
    );

    let t = Instant::now();
    println!("[2/4] the base image");
    let (base, built) = ensure_base()?;
    let base_time = elapsed(t);
    println!(
        "      {base}: {}",
        if built {
            format!("built in {base_time}")
        } else {
            "cached (its package list is unchanged)".to_owned()
        }
    );

    let t = Instant::now();
    println!("[3/4] {tag}: the base plus the binaries (docker build)");
    let ctx = std::env::temp_dir().join(format!("netlab-image-{}", std::process::id()));
    let res = image_from(&ctx, &base, tag, &bins, &names);
    let _ = std::fs::remove_dir_all(&ctx);
    res?;
    let image_time = elapsed(t);
    println!("      built in {image_time}");

    let t = Instant::now();
    println!("[4/4] checking the image: every binary's --help, every tool, no network");
    smoke(tag, &names)?;
    println!("      every binary and tool is there ({})", elapsed(t));
    println!(
        "image {tag}: built in {} (base: {}, image {image_time})",
        elapsed(t0),
        if built {
            format!("built in {base_time}")
        } else {
            "cached".to_owned()
        }
    );
    Ok(())
}

/// `--bin-dir` (or NETLAB_BIN_DIR) as given; else `cargo build --release` of the workspace's
/// binaries, with cargo's own progress on the terminal (a first build takes minutes).
fn release_binaries(opts: &Opts) -> Result<PathBuf> {
    if opts.bin_dir.is_some() || std::env::var_os("NETLAB_BIN_DIR").is_some() {
        return opts::binaries(opts);
    }
    let mut args = vec!["build", "--release", "--workspace", "--bins"];
    for p in NOT_IN_IMAGE {
        args.extend(["--exclude", p]);
    }
    println!(
        "      cargo {} (a first build takes minutes; cargo shows its progress)",
        args.join(" ")
    );
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(&root)
        .args(&args)
        .status()
        .context("run cargo")?;
    if !st.success() {
        return Err(Error::msg(
            "cargo build --release failed (see the errors above)",
        ));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release"))
}

fn image_from(ctx: &Path, base: &str, tag: &str, bins: &Path, names: &[String]) -> Result<()> {
    let bin = ctx.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("create {}", bin.display()))?;
    for n in names {
        std::fs::copy(bins.join(n), bin.join(n)).with_context(|| format!("copy {n}"))?;
    }
    let nc = bin.join("nc");
    std::fs::write(&nc, files::nc_wrapper()).with_context(|| format!("write {}", nc.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&nc, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", nc.display()))?;
    }
    let dockerfile = format!(
        "# Written by `cargo xtask images --build` (no registry): the debootstrap base and this\n\
         # machine's release binaries.\n\
         FROM {base}\n\
         COPY bin/ /usr/local/bin/\n\
         LABEL org.netlab.binaries=\"{}\"\n\
         WORKDIR /lab\n\
         CMD [\"sleep\", \"infinity\"]\n",
        names.join(" ")
    );
    std::fs::write(ctx.join("Dockerfile"), dockerfile).context("write Dockerfile")?;
    let out = Command::new("docker")
        .args(["build", "-t", tag])
        .arg(ctx)
        .stdin(Stdio::null())
        .output()
        .context("run docker build")?;
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if l.starts_with("Step ") || l.starts_with("Successfully") || l.starts_with("#") {
            println!("      {l}");
        }
    }
    if !out.status.success() {
        return Err(Error::msg(format!(
            "docker build of {tag} failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Runs every binary's `--help` and looks for every tool in a container of `tag` with no network.
fn smoke(tag: &str, names: &[String]) -> Result<()> {
    let script = format!(
        "m=''; \
         for b in {bins}; do \"$b\" --help >/dev/null 2>&1 || m=\"$m $b\"; done; \
         for t in {tools}; do command -v \"$t\" >/dev/null || m=\"$m $t\"; done; \
         python3 -c 'import websocket' 2>/dev/null || m=\"$m python3-websocket\"; \
         [ -z \"$m\" ] || {{ echo \"missing or broken:$m\"; exit 1; }}",
        bins = names.join(" "),
        tools = files::TOOLS.join(" ")
    );
    let (ok, out, err) = output(
        {
            let mut c = Command::new("docker");
            c.args(["run", "--rm", "--network", "none", tag, "sh", "-c", &script]);
            c
        },
        Duration::from_secs(120),
    )?;
    if ok {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "the image {tag} is incomplete: {}{} (a binary built against a newer C library than {SUITE}'s fails here)",
            out.trim(),
            err.trim()
        )))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The base image, built unless it exists; (tag, whether it was built now). One build at a time
/// on the machine (a lock file): a second run waits and then finds it cached.
fn ensure_base() -> Result<(String, bool)> {
    let tag = base_tag();
    let _lock = super::PidLock::acquire("docker-base", Duration::from_secs(30 * 60), |m| {
        println!("      another run is building the base image {m}");
    })?;
    if image_exists(&tag) {
        return Ok((tag, false));
    }
    if !is_root() {
        return Err(Error::msg(format!(
            "{tag} is not built and debootstrap needs root: sudo -E cargo xtask images --build"
        )));
    }
    crate::packages::ensure(&["debootstrap"], false)?;
    sweep_old_rootfs();
    let work = std::env::temp_dir().join(format!("netlab-base-{}", std::process::id()));
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let res = debootstrap(&rootfs, &work.join("debootstrap.log"))
        .and_then(|()| trim(&rootfs))
        .and_then(|()| import(&rootfs, &tag));
    match res {
        Ok(()) => {
            remove_rootfs(&work);
            Ok((tag, true))
        }
        Err(e) => {
            // Keep the log for the person reading the error; the root filesystem goes.
            remove_rootfs(&rootfs);
            Err(e)
        }
    }
}

fn debootstrap(rootfs: &Path, log: &Path) -> Result<()> {
    let mirror = std::env::var("NETLAB_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.to_owned());
    let include = format!("--include={}", files::package_names().join(","));
    println!(
        "      debootstrap --variant=minbase {include} {SUITE} {} {mirror}",
        rootfs.display()
    );
    println!(
        "      (about two minutes on a fast line; the full log is {})",
        log.display()
    );
    let mut child = Command::new("debootstrap")
        .args(["--variant=minbase", &include, SUITE])
        .arg(rootfs)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start debootstrap")?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(o) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(o).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        }));
    }
    if let Some(e) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(e).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        }));
    }
    drop(tx);
    let mut logf =
        std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    // debootstrap prints a line per package and step: show the first line of each kind of step
    // ("I: Retrieving", "I: Unpacking"), then one line every 10 s.
    let mut seen = std::collections::HashSet::new();
    let mut last_line = String::new();
    let mut tail: Vec<String> = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                let _ = writeln!(logf, "{line}");
                let key: String = line
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                if seen.insert(key) || last_print.elapsed() >= Duration::from_secs(10) {
                    println!("      [{:>6}] {line}", elapsed(t0));
                    last_print = Instant::now();
                }
                last_line = line.clone();
                tail.push(line);
                if tail.len() > 15 {
                    tail.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if last_print.elapsed() >= Duration::from_secs(15) {
                    println!("      [{:>6}] (still working: {last_line})", elapsed(t0));
                    last_print = Instant::now();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let st = child.wait().context("wait for debootstrap")?;
    if !st.success() {
        return Err(Error::msg(format!(
            "debootstrap failed ({st}); last lines:\n{}\n(full log: {})",
            tail.join("\n"),
            log.display()
        )));
    }
    println!("      [{:>6}] debootstrap done", elapsed(t0));
    Ok(())
}

/// Empties what an image does not need: downloaded packages, package lists (`apt-get update`
/// brings them back), the build machine's resolver and host name (Docker provides its own).
fn trim(rootfs: &Path) -> Result<()> {
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let d = rootfs.join(dir);
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_file() {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
    for f in ["etc/resolv.conf", "etc/hostname"] {
        let p = rootfs.join(f);
        // resolv.conf may be a symbolic link to the build machine's: replace it, never follow it.
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, "").with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

fn import(rootfs: &Path, tag: &str) -> Result<()> {
    let t0 = Instant::now();
    println!("      docker import of the root filesystem as {tag}");
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("start tar")?;
    let Some(stdout) = tar.stdout.take() else {
        return Err(Error::msg("tar has no stdout"));
    };
    let label = format!(
        "LABEL org.netlab.packages=\"{}\"",
        files::package_names().join(" ")
    );
    let out = Command::new("docker")
        .args([
            "import",
            "--change",
            &format!("ENV PATH={PATH}"),
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            &label,
            "--change",
            "CMD [\"sleep\", \"infinity\"]",
            "-",
            tag,
        ])
        .stdin(Stdio::from(stdout))
        .output()
        .context("run docker import")?;
    let tar_ok = tar.wait().is_ok_and(|s| s.success());
    if !out.status.success() || !tar_ok {
        return Err(Error::msg(format!(
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    println!("      imported in {}", elapsed(t0));
    Ok(())
}

/// Mount points at or under `dir` (debootstrap mounts /proc and /sys inside while it installs).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    // Deepest first.
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

/// Removes a root filesystem, after unmounting whatever is still mounted in it; refuses when a
/// mount stays (deleting through it would delete the mounted files).
fn remove_rootfs(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = Command::new("umount").arg("-l").arg(&m).status();
    }
    if !mounts_under(dir).is_empty() {
        eprintln!("xtask: {} still has mounts; not removing it", dir.display());
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes the work directories of base builds whose process is gone (a crash, Ctrl-C).
fn sweep_old_rootfs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("netlab-base-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            remove_rootfs(&e.path());
        }
    }
}

/// The image of a `demo --docker` run: the one given with `--image`, or built now from the
/// binaries just built (offline path: the demo shows these binaries, whatever a registry has).
/// A run with a prefix builds its own (`<prefix>netlab:latest`) and removes it when done.
#[derive(Debug)]
pub struct DemoImage {
    /// The image name.
    pub name: String,
    remove: bool,
}

impl DemoImage {
    /// Checks or builds the image.
    pub fn prepare(given: Option<String>, opts: &Opts, bins: &Path) -> Result<DemoImage> {
        engine()?;
        if let Some(name) = given {
            if !image_exists(&name) {
                return Err(Error::msg(format!("the image {name} does not exist")));
            }
            return Ok(DemoImage {
                name,
                remove: false,
            });
        }
        let name = default_image(&opts.prefix);
        let mut o = opts.clone();
        o.bin_dir = Some(bins.to_path_buf());
        o.quiet = true;
        build(&name, true, &o)?;
        Ok(DemoImage {
            name,
            remove: !opts.prefix.is_empty(),
        })
    }
}

impl Drop for DemoImage {
    fn drop(&mut self) {
        if self.remove {
            let _ = output(docker(&["rmi", "-f", &self.name]), Duration::from_secs(60));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::docker::files::fnv1a;

    #[test]
    fn base_tag_is_stable_and_follows_the_package_list() {
        let t = base_tag();
        assert!(t.starts_with("netlab-base:"));
        assert_eq!(t.len(), "netlab-base:".len() + 12);
        assert_eq!(t, base_tag());
        // FNV-1a test vector: the hash of "a".
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a(b"iproute2\n"), fnv1a(b"iproute2\ntcpdump\n"));
    }

    #[test]
    fn lab_binaries_come_from_the_workspace_without_tooling() {
        let names = binary_names().unwrap_or_default();
        for want in [
            "echo-server",
            "tcp-tunnel",
            "lab-server",
            "udp-hello",
            "ws-client",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n == "xtask" || n == "netlab-bench"));
    }

    #[test]
    fn mounts_under_a_fresh_directory_are_none() {
        let d = std::env::temp_dir().join(format!("netlab-mounts-{}", std::process::id()));
        assert!(mounts_under(&d).is_empty());
        assert!(!mounts_under(Path::new("/")).is_empty());
    }
}
