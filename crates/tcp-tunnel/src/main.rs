//! `tcp-tunnel`: forwards TCP connections to a target and logs every event. The exercise is
//! described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", tcp_tunnel::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "tcp-tunnel",
        tcp_tunnel::Config::from_args(args).and_then(|c| tcp_tunnel::run(&c)),
    )
}
