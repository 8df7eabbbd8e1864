//! `udp-hello`: a thin binary over `basics::udp_hello`, where the exercise is described.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", basics::udp_hello::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "udp-hello",
        basics::udp_hello::Config::from_args(args).and_then(|c| basics::udp_hello::run(&c)),
    )
}
