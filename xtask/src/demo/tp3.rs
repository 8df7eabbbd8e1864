//! TP3 (seed 001): parts 1–6.

use super::Ctx;

/// Part 1.
pub fn basics(_ctx: &mut Ctx) -> Result<(), String> {
    Err("not yet".into())
}
/// Part 2.
pub fn pmu(_ctx: &mut Ctx) -> Result<(), String> {
    Err("not yet".into())
}
/// Part 3.
pub fn reset(_ctx: &mut Ctx) -> Result<(), String> {
    Err("not yet".into())
}
/// Part 4.
pub fn tv(_ctx: &mut Ctx) -> Result<(), String> {
    Err("not yet".into())
}
/// Part 5.
pub fn ws(_ctx: &mut Ctx) -> Result<(), String> {
    Err("not yet".into())
}
/// Part 6.
pub fn tls(_ctx: &mut Ctx) -> Result<(), String> {
    Err("not yet".into())
}
