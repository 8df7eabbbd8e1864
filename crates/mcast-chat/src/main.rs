//! `mcast-chat`: TP3 part 4.2, a multicast chat with a 6-byte sender ID. The exercise is described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", mcast_chat::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "mcast-chat",
        mcast_chat::Config::from_args(args).and_then(|c| mcast_chat::run(&c)),
    )
}
