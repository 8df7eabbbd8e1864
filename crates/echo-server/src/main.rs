//! `echo-server`: sends every byte (or datagram) back to its sender. The exercise is described in
//! the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", echo_server::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "echo-server",
        echo_server::Config::from_args(args).and_then(|c| echo_server::run(&c)),
    )
}
