//! `tcp-echo-client`: a thin binary over `basics::echo_client`, where the exercise is described.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", basics::echo_client::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "tcp-echo-client",
        basics::echo_client::Config::from_args(args).and_then(|c| basics::echo_client::run(&c)),
    )
}
