//! `cargo xtask demo [NAME|all]`: each handout exercise played in front of the class.
//!
//! A demo brings up the topology it needs, prints the exact command a student types on which
//! host, runs it, says what to observe, checks every observation (PASS/FAIL), and tears the lab
//! down, also on Ctrl-C. `verify` runs the same functions with the narration off.

mod chat;
mod ctx;
mod tp3;
mod week3;

pub use ctx::Ctx;

use std::ffi::OsString;

use labnet::{Error, Result};

use crate::capture;
use crate::lab::docker::image::DemoImage;
use crate::opts::{self, Opts};

/// Every demo, in the order `all` runs them, with the handout part it plays.
pub const DEMOS: &[(&str, &str)] = &[
    ("broadcast", "week 3 exercise 1 / demo 1: UDP broadcast"),
    ("multicast", "week 3 exercise 2 / demo 2: UDP multicast"),
    ("tunnel", "week 3 exercise 3 / demo 3: TCP tunnel"),
    (
        "basics",
        "TP3 part 1: TCP stream in 16- and 8-byte recv calls",
    ),
    ("pmu", "TP3 part 2: PMU/PDC packetization over TCP/IPv6"),
    (
        "reset",
        "TP3 part 3: UDP reset with retransmission, dual stack",
    ),
    ("tv", "TP3 part 4: multicast TV and subscriber answers"),
    ("ws", "TP3 part 5: WebSocket PMU"),
    ("tls", "TP3 part 6: PMU over TLS"),
    ("chat", "chat lab: room over TCP, peer-to-peer over UDP"),
];

/// Runs the named demos, then prints the summary. Ok(true) when no observation failed.
pub fn run(ctx: &mut Ctx, names: &[&str]) -> bool {
    for name in names {
        if crate::proc::interrupted() {
            break;
        }
        run_one(ctx, name);
    }
    let (_, failed, not_shown) = ctx.r.counts();
    let strict = labnet::netns::strict();
    failed == 0 && !(strict && not_shown > 0) && !crate::proc::interrupted()
}

fn run_one(ctx: &mut Ctx, name: &str) {
    let what = DEMOS.iter().find(|d| d.0 == name).map_or(name, |d| d.1);
    ctx.r.demo = name.to_owned();
    ctx.r.title(what);
    let res = match name {
        "broadcast" => week3::broadcast(ctx),
        "multicast" => week3::multicast(ctx),
        "tunnel" => week3::tunnel(ctx),
        "basics" => tp3::basics(ctx),
        "pmu" => tp3::pmu(ctx),
        "reset" => tp3::reset(ctx),
        "tv" => tp3::tv(ctx),
        "ws" => tp3::ws(ctx),
        "tls" => tp3::tls(ctx),
        "chat" => chat::chat(ctx),
        _ => Err(Error::msg(format!("unknown demo {name}"))),
    };
    ctx.finish_extra();
    if let Err(e) = res {
        // A demo that could not run at all still leaves a FAIL line naming why.
        ctx.r
            .check(name, "the demo ran to the end", Err(e.to_string()));
    }
    if !ctx.opts.quiet {
        println!("  (lab torn down)");
    }
}

/// The demo names of a `demo` argument.
pub fn select(name: &str) -> Result<Vec<&'static str>, Error> {
    if name == "all" {
        return Ok(DEMOS.iter().map(|d| d.0).collect());
    }
    DEMOS
        .iter()
        .find(|d| d.0 == name)
        .map(|d| vec![d.0])
        .ok_or_else(|| {
            Error::usage(format!(
                "unknown demo '{name}': one of {}, all",
                DEMOS.iter().map(|d| d.0).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// `cargo xtask demo [--docker [--image IMG]] [NAME]`.
pub fn command(args: Vec<OsString>, mut opts: Opts) -> Result<(), Error> {
    let mut a = pico_args::Arguments::from_vec(args);
    let docker = a.contains("--docker");
    let image: Option<String> = a.opt_value_from_str("--image")?;
    let rest: Vec<String> = a
        .finish()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(bad) = rest.iter().find(|a| a.starts_with('-')) {
        return Err(Error::usage(format!("unknown option '{bad}'")));
    }
    if image.is_some() && !docker {
        return Err(Error::usage("--image goes with --docker"));
    }
    let name = match rest.as_slice() {
        [] => "all".to_owned(),
        [one] => one.clone(),
        [_, extra, ..] => return Err(Error::usage(format!("unexpected argument '{extra}'"))),
    };
    let names = select(&name)?;
    let bins = opts::binaries(&opts)?;
    // Docker: the image of the binaries just built (a prefixed run's own, removed at the end).
    let _image = if docker {
        let img = DemoImage::prepare(image, &opts, &bins)?;
        opts.docker = Some(img.name.clone());
        Some(img)
    } else {
        None
    };
    let mut ctx = Ctx::new(opts, bins);
    let ok = run(&mut ctx, &names);
    print!("{}", ctx.r.summary());
    if crate::proc::interrupted() {
        return Err(Error::msg("interrupted (Ctrl-C): the lab was torn down"));
    }
    if ok {
        Ok(())
    } else {
        Err(Error::msg(
            "some observations did not hold (see FAIL above)",
        ))
    }
}

/// `capture HOST --out F -- demo NAME`: the demo with one more capture on HOST.
pub fn with_capture(name: &str, req: &capture::Request) -> Result<(), Error> {
    let names = select(name)?;
    let opts = Opts::default();
    let bins = opts::binaries(&opts)?;
    let mut ctx = Ctx::new(opts, bins);
    ctx.extra = Some(ctx::Extra {
        host: req.host.to_owned(),
        iface: req.iface.clone(),
        filter: req.filter.clone(),
        out: req.out.clone(),
    });
    let ok = run(&mut ctx, &names);
    print!("{}", ctx.r.summary());
    if ok {
        Ok(())
    } else {
        Err(Error::msg("some observations did not hold"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_demo_is_a_usage_error() {
        assert_eq!(select("nope").err().map(|e| e.exit_code()), Some(2));
        assert_eq!(select("all").map(|v| v.len()).ok(), Some(DEMOS.len()));
    }
}
