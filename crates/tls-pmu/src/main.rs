//! `tls-pmu`: the PMU protocol over TLS. The exercise is described in the library (`lib.rs`).
use std::process::ExitCode;
fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", tls_pmu::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "tls-pmu",
        tls_pmu::Config::from_args(args).and_then(|c| tls_pmu::run(&c)),
    )
}
