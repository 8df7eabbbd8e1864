//! `pmu-pdc-client`: TP3 part 2, the PDC over TCP/IPv6. The exercise is described in the library (`lib.rs`).
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = labnet::args::from_env();
    if labnet::args::wants_help(&args) {
        print!("{}", pmu_pdc_client::HELP);
        return ExitCode::SUCCESS;
    }
    labnet::report(
        "pmu-pdc-client",
        pmu_pdc_client::Config::from_args(args).and_then(|c| pmu_pdc_client::run(&c)),
    )
}
