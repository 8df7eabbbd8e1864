//! `cargo xtask lab up|down|status|exec|service [--docker]`: the three topologies as hosts a
//! student can enter, and the one handle the demos run programs through.
//!
//! ```text
//! lab                           the `lab` command: reads its arguments, then netns or docker::cli
//! netns        docker::cli      the same commands on namespaces, and on compose projects
//! site         docker::image    a topology's hosts wherever they are; the image build
//! docker                        compose projects and containers, a demo's own lab
//! docker::files                 the Dockerfile and compose files, generated from labnet::topo
//! services                      which course services each lab has, which --services starts
//! ```
//! Each line uses only the lines below it: `site` runs programs in containers through `docker`,
//! `netns` and `docker::cli` look hosts up through `site`, nothing below imports what is above.

pub mod docker;
pub mod netns;
pub mod services;
pub mod site;

pub use services::Services;
pub use site::Site;

use std::ffi::OsString;

use labnet::Error;

use crate::opts::Opts;

/// `cargo xtask lab …`.
pub fn command(args: Vec<OsString>, opts: &Opts) -> Result<(), Error> {
    let mut it = args.into_iter().map(|a| a.to_string_lossy().into_owned());
    let sub = it.next().unwrap_or_default();
    let rest: Vec<String> = it.collect();
    let docker = rest.iter().any(|a| a == "--docker");
    let rest: Vec<String> = rest.into_iter().filter(|a| a != "--docker").collect();
    if docker {
        return docker::cli::command(&sub, &rest, opts);
    }
    match sub.as_str() {
        "up" => {
            let mut a = pico_args::Arguments::from_vec(rest.iter().map(OsString::from).collect());
            let which: Services = a
                .opt_value_from_fn("--services", |v| v.parse::<Services>())?
                .unwrap_or(Services::Default);
            let rest: Vec<String> = a
                .finish()
                .into_iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let lab = one_arg(&rest, "all")?;
            netns::up(&site::topologies(&lab)?, which, opts)
        }
        "service" => netns::service(&rest, opts),
        "down" => {
            let which = one_arg(&rest, "all")?;
            netns::down(&site::topologies(&which)?, &opts.prefix, true);
            Ok(())
        }
        "status" => {
            one_arg(&rest, "all")?;
            netns::status(&opts.prefix);
            Ok(())
        }
        "exec" => netns::exec(&rest, opts),
        "" => Err(Error::usage("lab needs up, down, status, exec or service")),
        other => Err(Error::usage(format!(
            "unknown lab command '{other}': up, down, status, exec or service"
        ))),
    }
}

fn one_arg(rest: &[String], default: &str) -> Result<String, Error> {
    match rest {
        [] => Ok(default.to_owned()),
        [one] => Ok(one.clone()),
        [_, extra, ..] => Err(Error::usage(format!("unexpected argument '{extra}'"))),
    }
}
