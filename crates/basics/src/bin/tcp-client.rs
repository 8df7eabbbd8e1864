//! `tcp-client`: a thin binary over `basics::tcp_client`, where the exercise is described.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", basics::tcp_client::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "tcp-client",
        basics::tcp_client::Config::from_args(args).and_then(|c| basics::tcp_client::run(&c)),
    )
}
