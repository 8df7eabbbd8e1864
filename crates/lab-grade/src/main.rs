//! `lab-grade`: grades students' submissions. Everything is in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", lab_grade::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "lab-grade",
        lab_grade::Config::from_args(args).and_then(|c| lab_grade::run(&c)),
    )
}
