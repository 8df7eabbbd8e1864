//! The handout's extra credit: only registered users may enter.
//!
//! The users file holds one `name:<PHC string>` line per user, e.g.
//! `alice:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`: a salted argon2id hash, never the
//! password. Names never contain `:`, so the first `:` splits the line. `#` starts a comment.
//! The file is read again at every login, so `chat-server adduser` takes effect at once.
//!
//! A login is checked with `argon2`'s verify, which compares in constant time. An unknown name
//! is verified against a dummy hash made at start-up, so it costs the same time as a wrong
//! password; every failure then waits [`FAIL_DELAY`] and gets the same `ERROR` bytes, so a client
//! cannot tell which of the two was wrong. Verifications run one at a time: each takes about
//! 19 MiB of memory, and a crowd of logins must not take the server's memory.

use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use labnet::log::Sink;
use labnet::wire::chat;
use labnet::{Context, Error, Result};

/// How long a failed login waits before its refusal.
pub const FAIL_DELAY: Duration = Duration::from_secs(1);

/// The one refusal text of a failed login, whatever was wrong.
pub const AUTH_FAILED: &str = "authentication failed";

/// The registered users, checked against the file at each login.
pub struct Users {
    path: PathBuf,
    sink: Sink,
    dummy: String,
    one_at_a_time: Mutex<()>,
}

impl Users {
    /// Checks that `path` is readable and prepares the dummy hash for unknown names; what it
    /// says (and a users file that cannot be read at a login) goes to `sink`.
    pub fn open(path: &Path, sink: &Sink) -> Result<Self> {
        let entries = read_entries(path)?;
        sink.info(format!(
            "authentication on: {} registered users in {}",
            entries.len(),
            path.display()
        ));
        let dummy = hash("not a password of anyone")?;
        Ok(Users {
            path: path.to_owned(),
            sink: sink.clone(),
            dummy,
            one_at_a_time: Mutex::new(()),
        })
    }

    /// True when `name` is registered with `password`. Costs one argon2 verification whether
    /// the name is known or not.
    pub fn check(&self, name: &str, password: Option<&str>) -> bool {
        let entry = match read_entries(&self.path) {
            Ok(entries) => entries.into_iter().find(|(n, _)| n == name).map(|e| e.1),
            Err(e) => {
                self.sink.error(format!("reading the users file: {e}"));
                None
            }
        };
        let known = entry.is_some();
        let phc = entry.unwrap_or_else(|| self.dummy.clone());
        let _turn = self.one_at_a_time.lock();
        let verified = match PasswordHash::new(&phc) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.unwrap_or("").as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        known && password.is_some() && verified
    }
}

/// A salted argon2id hash of `password`, as a PHC string.
pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::msg(format!("hashing the password: {e}")))
}

fn read_entries(path: &Path) -> Result<Vec<(String, String)>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("read users file {}", path.display()))?;
    Ok(parse_entries(&text))
}

fn parse_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(n, h)| (n.to_owned(), h.to_owned()))
        .collect()
}

/// `chat-server adduser FILE NAME`: reads the password (from the terminal without echo, asked
/// twice, or one line of stdin when it is not a terminal) and writes `NAME:<hash>` into FILE,
/// replacing an older entry for NAME. The file is written beside and renamed into place.
pub fn add_user(path: &Path, name: &str) -> Result<()> {
    chat::check_name(name).map_err(|why| Error::usage(format!("invalid name: {why}")))?;
    let password = read_password(name)?;
    if password.is_empty() {
        return Err(Error::msg("empty password: nothing written"));
    }
    let existing = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context(format!("read users file {}", path.display())),
    };
    let mut out = String::new();
    let mut replaced = false;
    for line in existing.lines() {
        if line.split_once(':').map(|(n, _)| n.trim()) == Some(name) {
            replaced = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("{name}:{}\n", hash(&password)?));
    let tmp = path.with_extension("tmp");
    write_private(&tmp, &out).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("replace {}", path.display()))?;
    labnet::log::info(format!(
        "{} {name} in {}",
        if replaced { "updated" } else { "added" },
        path.display()
    ));
    Ok(())
}

fn write_private(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn read_password(name: &str) -> Result<String> {
    if io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))
            .context("read password from the terminal")?;
        let again =
            rpassword::prompt_password("again: ").context("read password from the terminal")?;
        if first != again {
            return Err(Error::msg("the two passwords differ: nothing written"));
        }
        Ok(first)
    } else {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("read password from stdin")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_at_the_first_colon_and_skip_comments() {
        let e = parse_entries("# users\nalice:$argon2id$v=19$x\n\nbob:$a:b\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0], ("alice".into(), "$argon2id$v=19$x".into()));
        assert_eq!(e[1], ("bob".into(), "$a:b".into()));
    }

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("pw").unwrap();
        let b = hash("pw").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"px", &parsed).is_err());
    }
}
