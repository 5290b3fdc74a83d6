//! Running the built `larder` binary in a clean environment.

#![allow(dead_code)] // each test file uses part of it
#![allow(clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary with no `LARDER_*` / `CACHE_*` / `REDIS_URL` from the
/// environment, run in `dir` (so no stray `larder.toml` is read).
pub(crate) fn larder(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_larder"));
    for (name, _) in std::env::vars() {
        if name.starts_with("LARDER_") || name.starts_with("CACHE_") || name == "REDIS_URL" {
            command.env_remove(name);
        }
    }
    command.current_dir(dir).stdin(Stdio::null());
    command
}

/// Run `larder --url url args…` and return what it did.
pub(crate) fn run(dir: &Path, url: &str, args: &[&str]) -> Output {
    let mut command = larder(dir);
    command.arg("--url").arg(url).args(args);
    command.output().expect("the larder binary runs")
}

/// Standard output as text.
pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Assert the exit code, showing both streams when it differs.
pub(crate) fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// The JSON document on standard output.
pub(crate) fn json(output: &Output) -> serde_json::Value {
    assert_code(output, 0);
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}
