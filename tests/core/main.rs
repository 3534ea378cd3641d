//! The pure core, tested in one binary without I/O but the repo's own files: sticky assignment
//! (`assign`), property tests of the judge (`judge_props`) and of the rollout machine
//! (`rollout_props`), the statistics against SciPy's reference vectors (`stats_reference`), and
//! every input the fuzz targets found wrong (`fuzz_regressions`).
//!
//! One binary per kind of test instead of one per file: each binary links the whole crate, so
//! fewer of them build faster and take less disk. Run one part with
//! `cargo test --test core judge_props`.

mod assign;
mod fuzz_regressions;
mod judge_props;
mod rollout_props;
mod stats_reference;
