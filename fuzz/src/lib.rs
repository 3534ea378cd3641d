//! canaryd's fuzz targets' library: the invariants they check ([`invariants`], shared with
//! `tests/core/fuzz_regressions.rs`) and how they build inputs from bytes ([`inputs`]).

pub mod inputs;
mod invariants;

pub use invariants::*;
