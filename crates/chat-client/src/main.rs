//! `chat-client`: the chat lab's client (room over TCP, peer-to-peer over UDP). The exercise is
//! described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", chat_client::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "chat-client",
        chat_client::Config::from_args(args).and_then(|c| chat_client::run(&c)),
    )
}
