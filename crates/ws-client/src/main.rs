//! `ws-client`: TP3 part 5, the PDC over a WebSocket. The exercise is described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", ws_client::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "ws-client",
        ws_client::Config::from_args(args).and_then(|c| ws_client::run(&c)),
    )
}
