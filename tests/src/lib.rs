//! End-to-end tests across netlab binaries live in `tests/tests/`.
//!
//! A cargo integration test only gets `CARGO_BIN_EXE_<name>` for its own package's binaries, and
//! this crate has none: the tests locate sibling binaries with [`labnet::testkit::bin`], which
//! looks next to the test executable (`target/<profile>/`) and builds a missing one with
//! `cargo build --bin NAME`. `cargo nextest run --workspace` builds every binary first anyway.
