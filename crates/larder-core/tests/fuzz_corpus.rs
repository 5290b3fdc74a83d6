//! The fuzz corpus as a regression test: every committed input of
//! `fuzz/corpus/<target>/` and every crash ever found
//! (`fuzz/regressions/<target>/`) goes through the same entry point the
//! cargo-fuzz target calls (`larder_core::fuzzing`), without libFuzzer, so
//! `cargo test` catches a regression. `cargo xtask fuzz` explores further.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_and_regression_passes() {
    for (target, run) in larder_core::fuzzing::TARGETS {
        let corpus = inputs(&root().join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{target} has no seed inputs; the corpus is committed with the fuzz crate"
        );
        let regressions = inputs(&root().join("regressions").join(target));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
        }
    }
}

/// Rewrite the seed inputs of `fuzz/corpus/envelope/` (sealed values change
/// with every run: fresh nonces). Run by hand:
/// `cargo test -p larder-core --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes files; run by hand to refresh the envelope seeds"]
fn write_envelope_seeds() {
    let dir = root().join("corpus/envelope");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in larder_core::fuzzing::envelope_seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
