//! A group's submission: a folder, or the `.zip` Moodle hands out, found by the handouts' file
//! names, with the group's IDs taken from the folder or archive name (`Lab3_123456_654321`).
//!
//! An archive is untrusted input: it is unpacked into a fresh folder of our own, entry names that
//! would leave it (`../`, absolute paths) are refused, only regular files are written, and the
//! number of entries and the unpacked size are bounded (a zip bomb stops at the bound).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use labnet::{Context, Error, Result};

/// Most entries an archive may hold.
const MAX_ENTRIES: usize = 2000;
/// Most bytes an archive may unpack to.
const MAX_UNPACKED: u64 = 64 * 1024 * 1024;

/// One group's files, ready to be graded.
#[derive(Debug)]
pub struct Submission {
    /// The folder or archive name without `.zip` (`Lab3_123456_654321`).
    pub name: String,
    /// The group's IDs from that name (`["123456", "654321"]`), as strings.
    pub ids: Vec<String>,
    /// The folder holding the files (an unpacked archive lives in a temporary folder).
    pub root: PathBuf,
    /// Every regular file, relative to `root`.
    files: Vec<PathBuf>,
    _unpacked: Option<TempDir>,
}

impl Submission {
    /// Opens a folder or a `.zip`.
    pub fn open(path: &Path) -> Result<Submission> {
        let meta = fs::metadata(path).with_context(|| format!("open {}", path.display()))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if meta.is_dir() {
            let name = file_name;
            let files = list_files(path)?;
            return Ok(Submission {
                ids: ids_from_name(&name),
                name,
                root: path.to_path_buf(),
                files,
                _unpacked: None,
            });
        }
        if !file_name.to_ascii_lowercase().ends_with(".zip") {
            return Err(Error::usage(format!(
                "{}: a submission is a folder or a .zip archive",
                path.display()
            )));
        }
        let name = file_name[..file_name.len() - 4].to_owned();
        let dir = TempDir::new("lab-grade-zip")?;
        unzip(path, dir.path())
            .map_err(|e| Error::msg(format!("unpack {}: {e}", path.display())))?;
        let files = list_files(dir.path())?;
        Ok(Submission {
            ids: ids_from_name(&name),
            name,
            root: dir.path().to_path_buf(),
            files,
            _unpacked: Some(dir),
        })
    }

    /// Every file, relative to [`Submission::root`].
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The file named like the handout asks (`Part2_`…), case-insensitively, wherever it sits
    /// in the submission; among several, a `.py` before a `.c` before anything else.
    pub fn find(&self, prefix: &str) -> Option<PathBuf> {
        let prefix = prefix.to_ascii_lowercase();
        let mut found: Vec<&PathBuf> = self
            .files
            .iter()
            .filter(|f| {
                let n = base_name(f).to_ascii_lowercase();
                n.starts_with(&prefix) && is_program(&n)
            })
            .collect();
        found.sort_by_key(|f| (rank(&base_name(f)), f.components().count(), (*f).clone()));
        found.first().map(|f| self.root.join(f))
    }

    /// Every file whose name ends with `suffix` (`_key.pem`, `.pcap`), case-insensitively.
    pub fn ending(&self, suffix: &str) -> Vec<PathBuf> {
        let suffix = suffix.to_ascii_lowercase();
        let mut v: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|f| base_name(f).to_ascii_lowercase().ends_with(&suffix))
            .map(|f| self.root.join(f))
            .collect();
        v.sort();
        v
    }

    /// The file with exactly this name (case-insensitive), wherever it sits.
    pub fn named(&self, name: &str) -> Option<PathBuf> {
        let name = name.to_ascii_lowercase();
        let mut v: Vec<&PathBuf> = self
            .files
            .iter()
            .filter(|f| base_name(f).to_ascii_lowercase() == name)
            .collect();
        v.sort_by_key(|f| f.components().count());
        v.first().map(|f| self.root.join(f))
    }
}

fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Source or program files, not editor backups or byte code.
fn is_program(name: &str) -> bool {
    !(name.ends_with('~')
        || name.ends_with(".pyc")
        || name.ends_with(".pdf")
        || name.ends_with(".pem")
        || name.ends_with(".csr")
        || name.ends_with(".pcap")
        || name.ends_with(".txt")
        || name.ends_with(".md")
        || name.starts_with('.'))
}

fn rank(name: &str) -> u8 {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".py") {
        0
    } else if n.ends_with(".c") {
        1
    } else {
        2
    }
}

/// The group's IDs in a submission name: its all-digit parts (CAMIPRO or SCIPER numbers),
/// `Lab3_123456_654321` → `["123456", "654321"]`.
pub fn ids_from_name(name: &str) -> Vec<String> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| t.len() >= 4 && t.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

/// Every regular file under `root` (relative paths), skipping hidden folders such as the
/// `__MACOSX` metadata an archive made on a Mac carries.
fn list_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "__MACOSX" || name == "__pycache__" || name.starts_with('.') {
                continue;
            }
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(rel.join(&name));
            } else if kind.is_file() {
                out.push(rel.join(&name));
            }
        }
        if out.len() > MAX_ENTRIES {
            return Err(Error::msg(format!(
                "{}: more than {MAX_ENTRIES} files",
                root.display()
            )));
        }
    }
    out.sort();
    Ok(out)
}

fn unzip(archive: &Path, into: &Path) -> Result<()> {
    let file = fs::File::open(archive).context("open the archive")?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::other("read the archive", e))?;
    if zip.len() > MAX_ENTRIES {
        return Err(Error::msg(format!(
            "the archive has {} entries (at most {MAX_ENTRIES})",
            zip.len()
        )));
    }
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| Error::other("read an archive entry", e))?;
        if !entry.is_file() {
            continue;
        }
        // enclosed_name: None for names that are absolute or climb out with `..`.
        let Some(rel) = entry.enclosed_name() else {
            return Err(Error::msg(format!(
                "the archive entry '{}' points outside the archive",
                String::from_utf8_lossy(entry.name_raw())
            )));
        };
        let dest = into.join(&rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        let mut out =
            fs::File::create(&dest).with_context(|| format!("create {}", dest.display()))?;
        // Read at most what is left of the budget, plus one byte to notice going over.
        let budget = MAX_UNPACKED - total;
        let mut limited = (&mut entry).take(budget + 1);
        let n = std::io::copy(&mut limited, &mut out)
            .with_context(|| format!("unpack {}", rel.display()))?;
        total += n;
        if total > MAX_UNPACKED {
            return Err(Error::msg(format!(
                "the archive unpacks to more than {} MiB",
                MAX_UNPACKED / (1024 * 1024)
            )));
        }
        out.flush().context("write an unpacked file")?;
    }
    Ok(())
}

/// A folder of our own under the system's temp directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        if path.exists() {
            let _ = fs::remove_dir_all(&path);
        }
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(TempDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_come_from_the_all_digit_parts_of_the_name() {
        assert_eq!(ids_from_name("Lab3_123456_654321"), ["123456", "654321"]);
        assert_eq!(ids_from_name("chat-group7"), Vec::<String>::new());
        assert_eq!(ids_from_name("week3 228822"), ["228822"]);
    }

    #[test]
    fn files_are_found_by_the_handouts_names_python_first() {
        let dir = TempDir::new("lab-grade-test").unwrap();
        let sub = dir.path().join("Lab3_111111_222222");
        fs::create_dir_all(sub.join("nested")).unwrap();
        for f in [
            "Part2_111111_222222.py~",
            "nested/part2_111111_222222.c",
            "Part2_111111_222222.py",
            "Part4_Receiver_111111_222222.py",
            "Part4_Sender_111111_222222",
            "111111_key.pem",
            "__pycache__/Part5.cpython-311.pyc",
        ] {
            let p = sub.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, "x").unwrap();
        }
        let s = Submission::open(&sub).unwrap();
        assert_eq!(s.ids, ["111111", "222222"]);
        assert_eq!(
            s.find("Part2_").unwrap(),
            sub.join("Part2_111111_222222.py")
        );
        assert_eq!(
            s.find("part4_sender_").unwrap(),
            sub.join("Part4_Sender_111111_222222")
        );
        assert!(s.find("Part5_").is_none());
        assert_eq!(s.ending("_key.pem"), [sub.join("111111_key.pem")]);
    }

    #[test]
    fn an_archive_entry_leaving_the_folder_is_refused() {
        let dir = TempDir::new("lab-grade-test").unwrap();
        let zip_path = dir.path().join("Lab3_1234_5678.zip");
        {
            let f = fs::File::create(&zip_path).unwrap();
            let mut w = zip::ZipWriter::new(f);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            w.start_file("Lab3_1234_5678/Part2_1234_5678.py", opts)
                .unwrap();
            w.write_all(b"print('hi')\n").unwrap();
            w.finish().unwrap();
        }
        let s = Submission::open(&zip_path).unwrap();
        assert_eq!(s.ids, ["1234", "5678"]);
        let p2 = s.find("Part2_").unwrap();
        assert_eq!(fs::read_to_string(p2).unwrap(), "print('hi')\n");

        let evil = dir.path().join("evil.zip");
        {
            let f = fs::File::create(&evil).unwrap();
            let mut w = zip::ZipWriter::new(f);
            let opts = zip::write::SimpleFileOptions::default();
            w.start_file("../../outside.py", opts).unwrap();
            w.write_all(b"x").unwrap();
            w.finish().unwrap();
        }
        let err = Submission::open(&evil).unwrap_err().to_string();
        assert!(err.contains("points outside the archive"), "{err}");
    }
}
