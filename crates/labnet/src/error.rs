//! The kit's one error type and its exit-code convention.
//!
//! Every program ends through [`report`]: success is exit 0, a runtime failure (bind, connect,
//! a peer that broke the protocol) is exit 1 with one line on stderr, a usage error is exit 2 with
//! a hint to `--help`. A broken pipe on stdout counts as success: `udp-broadcast recv | head -3`
//! must not end in an error.

use std::fmt;
use std::io;
use std::process::ExitCode;

use crate::wire::WireError;

/// Result alias used across the kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can end a netlab program.
#[derive(Debug)]
pub enum Error {
    /// The command line was wrong: exit 2.
    Usage(String),
    /// A system call failed; `context` names the operation ("bind 0.0.0.0:5007").
    Io {
        /// What the program was doing.
        context: String,
        /// What the kernel answered.
        source: io::Error,
    },
    /// A peer sent bytes that do not follow the protocol: the parser's own error, so a caller
    /// can still tell a stream cut short ([`WireError::Incomplete`]) from malformed bytes.
    Wire(WireError),
    /// Anything else, with the operation that failed.
    Other {
        /// What the program was doing.
        context: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// A usage error (exit 2).
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// A protocol violation by the peer, described by one message (exit 1).
    pub fn wire(msg: impl Into<String>) -> Self {
        Error::Wire(WireError::Malformed(msg.into()))
    }

    /// A runtime failure that is not an `io::Error` (exit 1).
    pub fn other(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Other {
            context: context.into(),
            source: source.into(),
        }
    }

    /// A runtime failure described by one message (exit 1).
    pub fn msg(context: impl Into<String>) -> Self {
        let context = context.into();
        Error::Other {
            source: context.clone().into(),
            context,
        }
    }

    /// The exit code this error ends the program with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// True when the error is a broken pipe or a reset on a stream we were writing to: the
    /// reader went away, which for a command-line tool is a normal way to end.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// The same failure seen from the operation that called the one that failed:
    /// `build the week3 topology: create veth …: …`. A usage error stays a usage error (exit 2).
    pub fn within(self, context: impl Into<String>) -> Self {
        let context = context.into();
        match self {
            Error::Usage(msg) => Error::Usage(format!("{context}: {msg}")),
            other => Error::Other {
                context,
                source: Box::new(other),
            },
        }
    }

    /// The `io::ErrorKind` behind this error, if it came from a system call.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::Io { context, source } => write!(f, "{context}: {}", describe_io(source)),
            Error::Wire(e) => write!(f, "protocol error: {e}"),
            Error::Other { context, source } => {
                let why = source.to_string();
                if why == *context {
                    write!(f, "{context}")
                } else {
                    write!(f, "{context}: {why}")
                }
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Other { source, .. } => Some(source.as_ref()),
            Error::Wire(e) => Some(e),
            Error::Usage(_) => None,
        }
    }
}

impl From<pico_args::Error> for Error {
    fn from(e: pico_args::Error) -> Self {
        Error::Usage(e.to_string())
    }
}

/// `connection reset by peer (ECONNRESET)`: the kit's wording of an errno, without a context.
/// Rust prints `Connection reset by peer (os error 104)`; students look up the errno name, so we
/// say it instead.
pub fn describe(e: &io::Error) -> String {
    describe_io(e)
}

fn describe_io(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(1) => Some("EPERM"),
        Some(13) => Some("EACCES"),
        Some(24) => Some("EMFILE"),
        Some(32) => Some("EPIPE"),
        Some(90) => Some("EMSGSIZE"),
        Some(97) => Some("EAFNOSUPPORT"),
        Some(98) => Some("EADDRINUSE"),
        Some(99) => Some("EADDRNOTAVAIL"),
        Some(101) => Some("ENETUNREACH"),
        Some(104) => Some("ECONNRESET"),
        Some(110) => Some("ETIMEDOUT"),
        Some(111) => Some("ECONNREFUSED"),
        Some(113) => Some("EHOSTUNREACH"),
        _ => None,
    };
    let mut text = e.to_string();
    if let Some(pos) = text.find(" (os error") {
        text.truncate(pos);
    }
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
        None => text,
    };
    match name {
        Some(name) => format!("{text} ({name})"),
        None => text,
    }
}

/// Adds the name of the operation to a failed call: `.context("bind 0.0.0.0:5007")?`.
pub trait Context<T> {
    /// Wraps the error with a fixed description of the operation.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with a description built only on failure.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context.into(),
            source,
        })
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f().into(),
            source,
        })
    }
}

/// The kit's own results take a context the same way, when a failure crosses a layer:
/// `start_service(…).context("week3")?`.
impl<T> Context<T> for std::result::Result<T, Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.within(context))
    }
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.within(f()))
    }
}

/// Ends a program: prints the error once on stderr as `tool: what failed: why` and maps it to
/// the kit's exit code. `main` returns what this returns.
pub fn report(tool: &str, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let hint = match e {
                Error::Usage(_) => format!(" (try `{tool} --help`)"),
                _ => String::new(),
            };
            crate::log::flush();
            eprintln!("{tool}: {e}{hint}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_operation_and_errno() {
        let e: Result<()> =
            Err(io::Error::from_raw_os_error(13)).context("send to 255.255.255.255:5007");
        let text = e.unwrap_err().to_string();
        assert_eq!(
            text,
            "send to 255.255.255.255:5007: permission denied (EACCES)"
        );
    }

    #[test]
    fn context_on_a_kit_error_names_both_operations_and_keeps_usage() {
        let inner: Result<()> = Err(io::Error::from_raw_os_error(1)).context("create veth");
        let e = inner.context("build the week3 topology").unwrap_err();
        assert_eq!(
            e.to_string(),
            "build the week3 topology: create veth: operation not permitted (EPERM)"
        );
        assert_eq!(e.exit_code(), 1);
        let u: Result<()> = Err(Error::usage("unknown host 'x'"));
        let u = u.context("lab exec").unwrap_err();
        assert_eq!(u.to_string(), "lab exec: unknown host 'x'");
        assert_eq!(u.exit_code(), 2);
    }

    #[test]
    fn usage_errors_exit_2_others_exit_1() {
        assert_eq!(Error::usage("bad").exit_code(), 2);
        assert_eq!(Error::wire("bad").exit_code(), 1);
        assert_eq!(Error::msg("bad").to_string(), "bad");
    }

    #[test]
    fn wire_errors_keep_the_parsers_error() {
        let cut: Error = WireError::Incomplete.into();
        assert!(matches!(cut, Error::Wire(WireError::Incomplete)));
        assert_eq!(cut.to_string(), "protocol error: incomplete message");
        let bad = Error::wire("no colon");
        assert!(matches!(&bad, Error::Wire(WireError::Malformed(why)) if why == "no colon"));
        let source = std::error::Error::source(&bad).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("no colon"));
    }
}
