//! `reset-client`: TP3 part 3, RESET over UDP on both families with retransmission. The exercise is described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", reset_client::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "reset-client",
        reset_client::Config::from_args(args).and_then(|c| reset_client::run(&c)),
    )
}
