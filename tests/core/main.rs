//! The pure core, tested in one binary without I/O but the repo's own files: sticky assignment
//! (`assign`), property tests of the judge (`judge_props`) and of the rollout machine
//! (`rollout_props`), the statistics against SciPy's reference vectors (`stats_reference`), and
//! every input the fuzz targets found wrong (`fuzz_regressions`).
//!
//! One binary per kind of test instead of one per file: each binary links the whole crate, so
//! fewer of them build faster and take less disk. Run one part with
//! `cargo test --test core judge_props`.

mod assign;
mod calibration_reference;
mod fuzz_regressions;
mod judge_props;
mod layering;
mod paired_dispersion_reference;
mod rollout_props;
mod sequential;
mod sequential_reference;
mod stats_reference;

use std::path::{Path, PathBuf};

/// Proptest reads a test's saved failing cases from `tests/proptest-regressions/FILE.txt` when
/// the test is a module of a binary with a `main.rs` (its default, `SourceParallel`), from
/// `tests/FILE.proptest-regressions` when the test file is a binary of its own, and silently
/// runs without them when they are anywhere else. So every saved file must be where its test
/// file's proptest reads it.
#[test]
fn saved_proptest_failures_are_where_proptest_reads_them() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let entries = |dir: &Path| -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|read| read.map(|e| e.expect("a directory entry").path()).collect())
            .unwrap_or_default();
        paths.sort();
        paths
    };
    let binaries: Vec<PathBuf> = entries(&tests)
        .into_iter()
        .filter(|dir| dir.join("main.rs").is_file())
        .collect();
    let stem = |file: &Path| {
        file.file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
    };
    let mut misplaced = Vec::new();
    for file in entries(&tests) {
        let single_file_test = stem(&file).is_some_and(|s| tests.join(format!("{s}.rs")).is_file());
        if file
            .extension()
            .is_some_and(|x| x == "proptest-regressions")
            && !single_file_test
        {
            misplaced.push(file);
        }
    }
    for dir in &binaries {
        misplaced.extend(
            entries(dir)
                .into_iter()
                .filter(|p| p.extension().is_some_and(|x| x == "proptest-regressions")),
        );
    }
    for file in entries(&tests.join("proptest-regressions")) {
        let owners = binaries
            .iter()
            .filter(|dir| stem(&file).is_some_and(|s| dir.join(format!("{s}.rs")).is_file()))
            .count();
        if owners != 1 {
            misplaced.push(file);
        }
    }
    assert_eq!(
        misplaced,
        Vec::<PathBuf>::new(),
        "saved proptest failures that proptest does not read: a test file `BINARY/NAME.rs` \
         reads tests/proptest-regressions/NAME.txt"
    );
}
