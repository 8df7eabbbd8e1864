//! `udp-upper`: a thin binary over `basics::udp_upper`, where the exercise is described.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", basics::udp_upper::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "udp-upper",
        basics::udp_upper::Config::from_args(args).and_then(|c| basics::udp_upper::run(&c)),
    )
}
