//! `cargo xtask lab up|down|status|exec|service … --docker`: the labs as compose projects, the
//! same commands as the namespace lab.
//!
//! `up` starts the hosts and the course services (`--services none|default|all`; default: what
//! the course provides, as a plain `docker-compose up`), waits until every host has set up its
//! network and every service answers, and prints the containers. `down` removes every container
//! and network of the project (idempotent). `service start|stop HOST` starts or removes the
//! course services of one host, so a student's own server can take the port.

use std::time::Duration;

use labnet::error::Context as _;
use labnet::topo::Topology;
use labnet::{Error, Result};

use super::files::IMAGE;
use super::{Project, engine, exec_interactive, helper, output};
use crate::lab::services::{CourseService, Services, course_services, no_such_service};
use crate::lab::site::{resolve_host, topologies};
use crate::opts::Opts;

/// `lab SUB … --docker` (the `--docker` flag already removed).
pub fn command(sub: &str, rest: &[String], opts: &Opts) -> Result<(), Error> {
    // Everything after `--` belongs to `exec`'s command.
    let split = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    let (head, tail) = rest.split_at(split);
    let mut a = pico_args::Arguments::from_vec(head.iter().map(Into::into).collect());
    let image: Option<String> = a.opt_value_from_str("--image")?;
    let services: Option<String> = a.opt_value_from_str("--services")?;
    let pos: Vec<String> = a
        .finish()
        .into_iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if let Some(bad) = pos.iter().find(|p| p.starts_with('-')) {
        return Err(Error::usage(format!("unknown option '{bad}'")));
    }
    let image = image.unwrap_or_else(|| IMAGE.to_owned());
    let lab_dir = opts.shared_dir();
    let services = match services {
        Some(s) => s.parse::<Services>()?,
        None => Services::Default,
    };
    engine()
        .map_err(|why| Error::msg(format!("{why}; or drop --docker to use the namespace lab")))?;
    let one = |default: &str| -> Result<String, Error> {
        match pos.as_slice() {
            [] => Ok(default.to_owned()),
            [x] => Ok(x.clone()),
            [_, extra, ..] => Err(Error::usage(format!("unexpected argument '{extra}'"))),
        }
    };
    match sub {
        "up" => {
            for t in topologies(&one("all")?)? {
                let p = Project::new(t, &opts.prefix, &image, &lab_dir, None)?;
                p.up(services, true).context(t.name)?;
                print_containers(&p);
            }
            println!(
                "\nyour files: {} is /lab in every container",
                lab_dir.display()
            );
            let client = format!("{}week3_client", opts.prefix);
            println!(
                "\na shell in a host:  docker exec -it {client} bash   (or: cargo xtask lab exec client --docker -- bash)"
            );
            println!("tear it down:       cargo xtask lab down --docker");
            Ok(())
        }
        "down" => {
            for t in topologies(&one("all")?)? {
                let p = Project::new(t, &opts.prefix, &image, &lab_dir, None)?;
                let n = p.containers().len();
                p.down().context(t.name)?;
                p.forget_file();
                if n > 0 {
                    println!("{}: removed {n} containers and their networks", t.name);
                } else {
                    println!("{}: nothing to remove", t.name);
                }
            }
            Ok(())
        }
        "status" => {
            one("all")?;
            status(&opts.prefix, &image, &lab_dir);
            Ok(())
        }
        "exec" => {
            let (host, cmd) = match pos.split_first() {
                Some((h, more)) if tail.is_empty() => (h, more.to_vec()),
                Some((h, [])) => (h, tail[1..].to_vec()),
                _ => return Err(Error::usage("lab exec --docker needs HOST -- COMMAND…")),
            };
            if cmd.is_empty() {
                return Err(Error::usage(
                    "lab exec --docker needs a command after the host: lab exec client --docker -- bash",
                ));
            }
            let (t, h) = resolve_host(host)?;
            let p = Project::new(t, &opts.prefix, &image, &lab_dir, None)?;
            let c = p.container(h.name);
            if !running(&c) {
                return Err(Error::msg(format!(
                    "{c} is not running: cargo xtask lab up {} --docker",
                    t.name
                )));
            }
            let st = exec_interactive(&c, &cmd)
                .status()
                .context("run docker exec")?;
            if st.success() {
                Ok(())
            } else {
                Err(Error::msg(format!("{} exited with {st}", cmd[0])))
            }
        }
        "service" => {
            let (action, host, name) = match pos.as_slice() {
                [a, h] => (a, h, None),
                [a, h, n] => (a, h, Some(n.as_str())),
                _ => {
                    return Err(Error::usage(
                        "lab service start|stop HOST [SERVICE] --docker (e.g. lab service stop router --docker)",
                    ));
                }
            };
            let p = ProjectOf {
                prefix: &opts.prefix,
                image: &image,
                lab_dir: &lab_dir,
            };
            service(action, host, name, &p)
        }
        "" => Err(Error::usage("lab needs up, down, status, exec or service")),
        other => Err(Error::usage(format!(
            "unknown lab command '{other}': up, down, status, exec or service"
        ))),
    }
}

fn running(container: &str) -> bool {
    output(
        {
            let mut c = std::process::Command::new("docker");
            c.args(["inspect", "--format", "{{.State.Running}}", container]);
            c
        },
        Duration::from_secs(20),
    )
    .is_ok_and(|(ok, out, _)| ok && out.trim() == "true")
}

fn addresses(t: &Topology, host: &str) -> String {
    t.host(host).map_or(String::new(), |h| {
        h.links
            .iter()
            .map(|l| match l.ipv6 {
                Some(v6) => format!("{} {}", l.ipv4, v6),
                None => l.ipv4.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn print_containers(p: &Project) {
    let t = p.topo;
    println!("{} is up (compose project {}):", t.name, p.name);
    let up = p.containers();
    for h in t.hosts {
        let mut runs: Vec<String> = Vec::new();
        for s in course_services(t).iter().filter(|s| s.host == h.name) {
            let ports: Vec<String> = s.ports.iter().map(|p| format!(":{p}")).collect();
            if up.iter().any(|(n, _)| *n == p.container(s.name)) {
                runs.push(format!(
                    "{} {} (container {})",
                    s.name,
                    ports.join(" "),
                    p.container(s.name)
                ));
            } else {
                runs.push(format!(
                    "{} free (lab service start {} --docker)",
                    ports.join(" "),
                    h.name
                ));
            }
        }
        if h.forwards {
            runs.push("forwards, multicast route for 239.1.1.1".to_owned());
        }
        if runs.is_empty() {
            runs.push("interactive".to_owned());
        }
        println!(
            "  {:<22} {:<34} {}",
            p.container(h.name),
            addresses(t, h.name),
            runs.join(", ")
        );
    }
}

/// Whether each port of a course service answers, probed from its probe host.
fn answers(p: &Project, s: &CourseService, secs: u32) -> String {
    let Some(h) = p.topo.host(s.host) else {
        return String::new();
    };
    s.ports
        .iter()
        .map(|port| {
            let probe = helper(
                &p.container(s.probe_from),
                &[
                    "__probe".into(),
                    h.ipv4().to_string(),
                    port.to_string(),
                    secs.to_string(),
                ],
            );
            let ok =
                output(probe, Duration::from_secs(u64::from(secs) + 10)).is_ok_and(|(ok, _, _)| ok);
            format!(":{port} {}", if ok { "answers" } else { "does NOT answer" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn status(prefix: &str, image: &str, lab_dir: &std::path::Path) {
    for t in labnet::topo::ALL {
        let Ok(p) = Project::new(t, prefix, image, lab_dir, None) else {
            continue;
        };
        let cs = p.containers();
        p.forget_file();
        if cs.is_empty() {
            println!("{}: down", t.name);
            continue;
        }
        println!("{}: up (compose project {})", t.name, p.name);
        for h in t.hosts {
            let c = p.container(h.name);
            let st = cs
                .iter()
                .find(|(n, _)| *n == c)
                .map_or("missing", |(_, s)| s.as_str());
            println!("  {c:<22} {:<34} {st}", addresses(t, h.name));
        }
        for s in course_services(t) {
            let c = p.container(s.name);
            match cs.iter().find(|(n, _)| *n == c) {
                Some((_, st)) if st.starts_with("Up") => {
                    println!(
                        "  service {:<12} {c:<24} {st}, {}",
                        s.name,
                        answers(&p, &s, 2)
                    );
                }
                Some((_, st)) => println!("  service {:<12} {c:<24} {st}", s.name),
                None => println!(
                    "  service {:<12} not started{}",
                    s.name,
                    if s.default {
                        ""
                    } else {
                        " (optional: lab up --services all, or lab service start HOST)"
                    }
                ),
            }
        }
    }
}

/// What names a project besides its topology.
struct ProjectOf<'a> {
    prefix: &'a str,
    image: &'a str,
    lab_dir: &'a std::path::Path,
}

fn service(action: &str, host: &str, name: Option<&str>, of: &ProjectOf) -> Result<(), Error> {
    if action != "start" && action != "stop" {
        return Err(Error::usage(format!(
            "unknown lab service command '{action}': start or stop"
        )));
    }
    let (t, h) = resolve_host(host)?;
    let all = course_services(t);
    let svcs: Vec<&CourseService> = all
        .iter()
        .filter(|s| s.host == h.name && name.is_none_or(|n| n == s.name))
        .collect();
    if svcs.is_empty() {
        let offered = all.iter().map(|s| (s.name, s.host));
        return Err(no_such_service(name, h.name, t.name, offered));
    }
    let p = Project::new(t, of.prefix, of.image, of.lab_dir, None)?;
    if !running(&p.container(h.name)) {
        return Err(Error::msg(format!(
            "{} is not running: cargo xtask lab up {} --docker",
            p.container(h.name),
            t.name
        )));
    }
    let names: Vec<&str> = svcs.iter().map(|s| s.name).collect();
    let mut c = p.compose(true);
    if action == "start" {
        c.args(["up", "-d", "--no-build"]).args(&names);
    } else {
        c.args(["rm", "-s", "-f"]).args(&names);
    }
    let (ok, out, err) = output(c, Duration::from_secs(120))?;
    if !ok {
        return Err(Error::msg(format!(
            "docker-compose {action} {}: {}{}",
            names.join(" "),
            out.trim(),
            err.trim()
        )));
    }
    for s in &svcs {
        if action == "start" {
            let a = answers(&p, s, 30);
            println!(
                "started {} in {} (container {}): {a}",
                s.name,
                p.container(h.name),
                p.container(s.name)
            );
        } else {
            let ports: Vec<String> = s.ports.iter().map(|p| format!(":{p}")).collect();
            println!(
                "stopped {} on {}: {} free for your own server",
                s.name,
                p.container(h.name),
                ports.join(" ")
            );
        }
    }
    p.forget_file();
    Ok(())
}
