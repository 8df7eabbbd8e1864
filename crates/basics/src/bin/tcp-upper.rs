//! `tcp-upper`: a thin binary over `basics::tcp_upper`, where the exercise is described.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", basics::tcp_upper::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "tcp-upper",
        basics::tcp_upper::Config::from_args(args).and_then(|c| basics::tcp_upper::run(&c)),
    )
}
