//! `tcp-server`: a thin binary over `basics::tcp_server`, where the exercise is described.
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", basics::tcp_server::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "tcp-server",
        basics::tcp_server::Config::from_args(args).and_then(|c| basics::tcp_server::run(&c)),
    )
}
