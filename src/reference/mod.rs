//! `higgs check-reference`: runs every case of a reference fixture folder (the format of
//! `tests/fixtures/reference`) and reports one line per case.

use std::fmt;

/// The outcome of one fixture case.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub part: &'static str,
    pub name: String,
    pub passed: bool,
    /// max abs / relative error, or the number of code mismatches, or why it failed.
    pub detail: String,
}

impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<7} {:<40} {}  {}",
            self.part,
            self.name,
            if self.passed { "PASS" } else { "FAIL" },
            self.detail
        )
    }
}

/// Max abs error and relative error (max abs error / max abs of the expected tensor).
pub fn compare(got: &[f32], want: &[f32]) -> (f32, f32) {
    let mut max_abs = 0f32;
    let mut scale = 0f32;
    for (g, w) in got.iter().zip(want) {
        let d = (g - w).abs();
        max_abs = if d.is_nan() {
            f32::INFINITY
        } else {
            max_abs.max(d)
        };
        scale = scale.max(w.abs());
    }
    if got.len() != want.len() {
        return (f32::INFINITY, f32::INFINITY);
    }
    (
        max_abs,
        if scale > 0.0 {
            max_abs / scale
        } else {
            max_abs
        },
    )
}

pub mod codec;
pub mod fixture;
pub mod llm;
pub mod prompts;
