//! End-to-end tests across netlab binaries live in `tests/tests/`.
//!
//! A cargo integration test only gets `CARGO_BIN_EXE_<name>` for its own package's binaries, and
//! this crate has none: the tests locate sibling binaries with `testkit::bin`, which looks next
//! to the test executable (`target/<profile>/`) and runs `cargo build --workspace --bin NAME`
//! once per test process, so a binary whose sources changed is rebuilt, not reused.
