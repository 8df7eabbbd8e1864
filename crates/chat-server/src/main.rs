//! `chat-server`: the chat lab's TCP room server. The exercise is described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", chat_server::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "chat-server",
        chat_server::Config::from_args(args).and_then(|c| chat_server::run(&c)),
    )
}
