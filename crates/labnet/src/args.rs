//! Command-line helpers shared by every program, around `pico-args`.
//!
//! `pico-args` consumes in call order: flags first, then options, then positionals, then
//! [`finish`] rejects whatever is left, so a typo like `--prot 80` is an error (exit 2) and never
//! silently ignored.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use pico_args::Arguments;

use crate::error::{Error, Result};

/// True when `-h` or `--help` is among the arguments (checked before anything else is parsed).
pub fn wants_help(args: &[OsString]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

/// The process arguments without the program name.
pub fn from_env() -> Vec<OsString> {
    std::env::args_os().skip(1).collect()
}

/// Rejects leftover arguments: an unknown flag or an extra positional is a usage error.
pub fn finish(args: Arguments) -> Result<()> {
    let rest = args.finish();
    match rest.first() {
        None => Ok(()),
        Some(first) => {
            let first = first.to_string_lossy();
            if first.starts_with('-') {
                Err(Error::usage(format!("unknown option '{first}'")))
            } else {
                Err(Error::usage(format!("unexpected argument '{first}'")))
            }
        }
    }
}

/// Rejects an unknown option before the positionals are read: called after every known flag
/// and option was taken, it fails with "unknown option '--x'" (exit 2) when an argument left
/// starts with `-` (a lone `-` and negative numbers excepted). Without it, `reset-client --bogus`
/// took `--bogus` for the host, and `pmu-pdc-client --bogus ::1 5003 CMD` called `::1` a bad
/// port.
pub fn no_unknown_options(args: &Arguments) -> Result<()> {
    for arg in args.clone().finish() {
        let arg = arg.to_string_lossy();
        if arg.len() > 1 && arg.starts_with('-') && arg.parse::<f64>().is_err() {
            return Err(Error::usage(format!("unknown option '{arg}'")));
        }
    }
    Ok(())
}

/// An optional value parsed with `FromStr`, with a message naming the option on failure.
pub fn opt<T: FromStr>(args: &mut Arguments, key: &'static str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    let raw: Option<String> = args.opt_value_from_str(key)?;
    match raw {
        None => Ok(None),
        Some(s) => s
            .parse::<T>()
            .map(Some)
            .map_err(|e| Error::usage(format!("invalid value '{s}' for {key}: {e}"))),
    }
}

/// Like [`opt`] with a default.
pub fn opt_or<T: FromStr>(args: &mut Arguments, key: &'static str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    Ok(opt(args, key)?.unwrap_or(default))
}

/// A port number 1–65535 (0 only where `allow_zero`, for "pick one").
pub fn port(value: &str, allow_zero: bool) -> Result<u16> {
    let p: u16 = value
        .parse()
        .map_err(|_| Error::usage(format!("invalid port '{value}': expected a number 0-65535")))?;
    if p == 0 && !allow_zero {
        return Err(Error::usage("invalid port '0': expected 1-65535"));
    }
    Ok(p)
}

/// An optional `--port`.
pub fn opt_port(args: &mut Arguments, key: &'static str, default: u16) -> Result<u16> {
    let raw: Option<String> = args.opt_value_from_str(key)?;
    match raw {
        None => Ok(default),
        Some(s) => port(&s, true),
    }
}

/// A number of seconds, fractions allowed (`0.2`), non-negative and finite.
pub fn seconds(value: &str) -> Result<Duration> {
    let s: f64 = value.parse().map_err(|_| {
        Error::usage(format!(
            "invalid duration '{value}': expected seconds, e.g. 1 or 0.5"
        ))
    })?;
    if !s.is_finite() || !(0.0..=1e9).contains(&s) {
        return Err(Error::usage(format!(
            "invalid duration '{value}': expected 0 or more seconds"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

/// An optional duration in seconds.
pub fn opt_seconds(args: &mut Arguments, key: &'static str) -> Result<Option<Duration>> {
    let raw: Option<String> = args.opt_value_from_str(key)?;
    raw.map(|s| seconds(&s).map_err(|e| Error::usage(format!("{key}: {e}"))))
        .transpose()
}

/// An IP address literal.
pub fn ip(value: &str) -> Result<IpAddr> {
    value
        .parse()
        .map_err(|_| Error::usage(format!("invalid IP address '{value}'")))
}

/// `host:port`, `[v6]:port` or `ip:port`; host names are resolved (first address wins, IPv4
/// preferred unless `prefer_v6`).
pub fn socket_addr(value: &str, prefer_v6: bool) -> Result<SocketAddr> {
    if let Ok(sa) = value.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let (host, port_str) = value
        .rsplit_once(':')
        .ok_or_else(|| Error::usage(format!("invalid address '{value}': expected HOST:PORT")))?;
    let port = port(port_str, true)?;
    resolve(
        host.trim_start_matches('[').trim_end_matches(']'),
        port,
        prefer_v6,
    )
}

/// Resolves a host name (or literal) to one socket address.
pub fn resolve(host: &str, port: u16, prefer_v6: bool) -> Result<SocketAddr> {
    let addrs = resolve_all(host, port)?;
    let pick = addrs
        .iter()
        .find(|a| a.is_ipv6() == prefer_v6)
        .or_else(|| addrs.first())
        .copied();
    pick.ok_or_else(|| Error::msg(format!("resolve {host}: no address")))
}

/// Every address of a host name (or the literal itself).
pub fn resolve_all(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.is_empty() {
        return Err(Error::usage("empty host name"));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::Io {
            context: format!("resolve {host}"),
            source: e,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::msg(format!("resolve {host}: no address")));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Arguments {
        Arguments::from_vec(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn leftover_option_is_usage_error() {
        let mut a = args(&["--port", "80", "--prot", "81"]);
        let p = opt_port(&mut a, "--port", 1).unwrap();
        assert_eq!(p, 80);
        let e = finish(a).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--prot"), "{e}");
    }

    #[test]
    fn unknown_options_are_caught_before_positionals() {
        let a = args(&["host", "--bogus", "5"]);
        let e = no_unknown_options(&a).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.to_string(), "unknown option '--bogus'");
        assert!(no_unknown_options(&args(&["host", "-", "-1.5"])).is_ok());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert_eq!(port("70000", false).unwrap_err().exit_code(), 2);
        assert_eq!(port("0", false).unwrap_err().exit_code(), 2);
        assert!(port("0", true).is_ok());
        assert_eq!(seconds("-1").unwrap_err().exit_code(), 2);
        assert_eq!(seconds("nan").unwrap_err().exit_code(), 2);
        assert_eq!(seconds("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(ip("300.1.1.1").unwrap_err().exit_code(), 2);
        let mut a = args(&["--count", "x"]);
        assert_eq!(opt::<u64>(&mut a, "--count").unwrap_err().exit_code(), 2);
        let mut a = args(&["--count"]);
        assert_eq!(opt::<u64>(&mut a, "--count").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn socket_addrs_accept_v6_brackets() {
        assert_eq!(
            socket_addr("[::1]:80", false).unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            socket_addr("127.0.0.1:80", false).unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert!(socket_addr("nocolon", false).is_err());
    }
}
