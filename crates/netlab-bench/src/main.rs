//! `netlab-bench`: the kit's benchmarks, side by side with the tools users would pick instead.
//! What each benchmark measures is described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", netlab_bench::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report("netlab-bench", netlab_bench::run(args))
}
