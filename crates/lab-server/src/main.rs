//! `lab-server`: the TP3 course servers in one process. The services are described in the library
//! (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", lab_server::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "lab-server",
        lab_server::Config::from_args(args).and_then(|c| lab_server::run(&c)),
    )
}
