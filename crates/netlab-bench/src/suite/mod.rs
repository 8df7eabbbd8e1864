//! One module per benchmark; each `run(config)` returns its cases, already measured.

pub mod chat;
pub mod grade;
pub mod pmu;
pub mod startup;
pub mod tunnel;
pub mod ws;
