//! The chat lab (seed 002).

use super::Ctx;

/// The chat demo.
pub fn chat(_ctx: &mut Ctx) -> Result<(), String> {
    Err("not yet".into())
}
