//! `tcp-echo-server`: a thin binary over `basics::echo_server`, where the exercise is described.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", basics::echo_server::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "tcp-echo-server",
        basics::echo_server::Config::from_args(args).and_then(|c| basics::echo_server::run(&c)),
    )
}
