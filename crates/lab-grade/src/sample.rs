//! A sample TP3 class, for the grader's tests and its benchmark (`cargo xtask bench grade`): the
//! reference submission (the handout's programs written as a student would,
//! `tests/students/tp3/`) and its mutants (`crates/lab-grade/tests/mutants/tp3/`, each one
//! thing students get wrong), with a key and certificate signed by a fresh course CA, and the
//! part scores each one must get. It reads those folders from the source tree, so it works from
//! a checkout of the repository only.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use labnet::{Context, Error, Result};

/// The reference submission's folder name (the group's IDs are 123456 and 654321).
pub const REFERENCE: &str = "Lab3_123456_654321";

/// One kind of submission in the class, and the scores it must get.
#[derive(Clone, Debug)]
pub struct Variant {
    /// `reference`, `zipped` or the mutant's name.
    pub name: &'static str,
    /// Part scores (parts 2-6) the grader must give it.
    pub parts: BTreeMap<&'static str, u32>,
}

/// Every variant: the reference, its zip, and the mutants with the part each one breaks.
pub fn variants() -> Vec<Variant> {
    let full = [("2", 10), ("3", 10), ("4", 10), ("5", 10), ("6", 5)];
    let v = |name: &'static str, change: &[(&'static str, u32)]| {
        let mut parts: BTreeMap<&'static str, u32> = full.into();
        for (p, s) in change {
            parts.insert(p, *s);
        }
        Variant { name, parts }
    };
    vec![
        v("reference", &[]),
        v("zipped", &[]),
        // One recv: the burst arrives merged, d=1 stops after message 1, the flood is cut.
        v("one_recv", &[("2", 1)]),
        v("ipv4_only", &[("2", 0)]),
        // Behaves only as root: it never is.
        v("root_probe", &[("2", 0)]),
        v("no_retransmit", &[("3", 0)]),
        v("infinite_loop", &[("3", 0)]),
        v("no_join", &[("4", 6)]),
        v("fork_bomb", &[("4", 6)]),
        v("no_id", &[("4", 4)]),
        v("missing_part5", &[("5", 0)]),
        // Served in clear: the files are right (chain, key), the server is not.
        v("plaintext", &[("6", 2)]),
    ]
}

/// A class made by [`class`].
#[derive(Debug)]
pub struct Class {
    /// The folder of submissions.
    pub dir: PathBuf,
    /// The course CA's certificate (`--ca`).
    pub ca: PathBuf,
    /// Each submission's name with its variant.
    pub subs: Vec<(String, Variant)>,
}

/// A class in `root/class`, `copies` submissions cycling through [`variants`], and the course
/// CA in `root/ca`, made and used with the `tls-pmu` program at `tls`.
pub fn class(root: &Path, copies: usize, tls: &Path) -> Result<Class> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference_src = source.join("../../tests/students/tp3").join(REFERENCE);
    let mutants = source.join("tests/mutants/tp3");
    let ca_dir = root.join("ca");
    run(Command::new(tls).args(["ca", "init", "--out"]).arg(&ca_dir))?;
    // The handout's flow: the group makes its key and CSR with openssl, the CA signs the CSR.
    let signed = root.join("signed");
    fs::create_dir_all(&signed).with_context(|| format!("create {}", signed.display()))?;
    run(Command::new("openssl")
        .args(["genrsa", "-out", "123456_key.pem", "2048"])
        .current_dir(&signed))?;
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-key",
            "123456_key.pem",
            "-out",
            "123456.csr",
            "-subj",
            "/CN=pmu.group12.example",
        ])
        .current_dir(&signed))?;
    run(Command::new(tls)
        .args(["ca", "sign", "--ca"])
        .arg(&ca_dir)
        .args(["--csr", "123456.csr", "--out", "123456_cert.pem"])
        .current_dir(&signed))?;

    let class = root.join("class");
    let staging = root.join("staging");
    let all = variants();
    let mut out = Vec::new();
    for i in 0..copies {
        let variant = all[i % all.len()].clone();
        // The programs carry the group's ID 123456 (part 4's sender): every copy keeps the
        // reference's IDs; the suffix (under 4 digits) is not taken for one.
        let name = format!("{REFERENCE}_{}_{i}", variant.name);
        let dir = if variant.name == "zipped" {
            staging.join(&name)
        } else {
            class.join(&name)
        };
        copy_dir(&reference_src, &dir)?;
        for f in ["123456_key.pem", "123456_cert.pem"] {
            fs::copy(signed.join(f), dir.join(f)).with_context(|| format!("copy {f}"))?;
        }
        let mutant = mutants.join(variant.name);
        if mutant.is_dir() {
            for f in fs::read_dir(&mutant).with_context(|| format!("read {}", mutant.display()))? {
                let f = f.context("read a mutant file")?.path();
                if f.file_name().is_some_and(|n| n == "REMOVE") {
                    let gone = fs::read_to_string(&f).context("read REMOVE")?;
                    for g in gone.lines().filter(|l| !l.trim().is_empty()) {
                        fs::remove_file(dir.join(g.trim()))
                            .with_context(|| format!("remove {g}"))?;
                    }
                } else if let Some(n) = f.file_name() {
                    fs::copy(&f, dir.join(n)).with_context(|| format!("copy {}", f.display()))?;
                }
            }
        }
        if variant.name == "zipped" {
            fs::create_dir_all(&class).with_context(|| format!("create {}", class.display()))?;
            run(Command::new("python3")
                .args([
                    "-c",
                    "import shutil,sys; shutil.make_archive(sys.argv[1], 'zip', sys.argv[2], sys.argv[3])",
                ])
                .arg(class.join(&name))
                .arg(&staging)
                .arg(&name))?;
        }
        out.push((name, variant));
    }
    let _ = fs::remove_dir_all(&staging);
    Ok(Class {
        dir: class,
        ca: ca_dir.join("cacert.pem"),
        subs: out,
    })
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {:?}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for e in fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let p = e.context("read a folder entry")?.path();
        let Some(name) = p.file_name() else { continue };
        if p.is_dir() {
            copy_dir(&p, &to.join(name))?;
        } else {
            fs::copy(&p, to.join(name)).with_context(|| format!("copy {}", p.display()))?;
        }
    }
    Ok(())
}

/// Part scores by submission, from a batch's CSV (`submission,ids,2,…,score,max`).
pub fn read_csv(text: &str) -> BTreeMap<String, BTreeMap<String, u32>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let scores = header
                .iter()
                .zip(&cells)
                .skip(2)
                .filter_map(|(h, c)| Some(((*h).to_owned(), c.parse().ok()?)))
                .collect();
            (cells.first().copied().unwrap_or("").to_owned(), scores)
        })
        .collect()
}

/// Whether `got` (a CSV row) holds exactly the variant's part scores, the total and max 40.
pub fn matches(variant: &Variant, got: &BTreeMap<String, u32>) -> bool {
    let total: u32 = variant.parts.values().sum();
    variant.parts.iter().all(|(p, s)| got.get(*p) == Some(s))
        && got.get("score") == Some(&total)
        && got.get("max") == Some(&40)
}
