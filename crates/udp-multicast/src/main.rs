//! `udp-multicast`: UDP multicast sender and receiver. The exercise is described in the library
//! (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", udp_multicast::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "udp-multicast",
        udp_multicast::Config::from_args(args).and_then(|c| udp_multicast::run(&c)),
    )
}
