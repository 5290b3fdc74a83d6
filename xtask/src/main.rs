//! Project tasks: `cargo xtask setup | test | bench | ci`.
//!
//! - `setup` installs the servers the tests start (redis-server, memcached)
//!   with apt-get when they are missing on a Debian-like machine, and
//!   otherwise says what to install; and installs cargo-deny with
//!   `cargo install --locked cargo-deny` when `cargo deny` is missing.
//! - `test` runs setup, then every gate: rustfmt, cargo-deny (bans,
//!   licenses, sources, advisories), clippy with warnings as errors, the
//!   facade's feature matrix (clippy on `larder` with no features, each
//!   optional component feature alone, and the defaults), rustdoc with
//!   warnings as errors, every test of the workspace (unit, integration,
//!   doc) and every example.
//! - `deny` and `features` run only the cargo-deny and the feature-matrix
//!   gates of `test`.
//! - `bench` runs the criterion benchmarks.
//! - `fuzz [--seconds N] [target...]` runs every cargo-fuzz target of
//!   `fuzz/` for N seconds (default 60) and prints the executions of each
//!   (installs cargo-fuzz when it is missing). `test` replays the committed
//!   fuzz corpus and regressions as ordinary tests.
//! - `ci` is what `.ci/run` runs: `test`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// Programs the test suite starts, and the Debian package of each.
const SERVERS: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("memcached", "memcached"),
    ("openssl", "openssl"),
    // `larder monitor` is tested on a real terminal under tmux.
    ("tmux", "tmux"),
];

/// The facade crate, whose feature combinations are each built on their own.
const FACADE: &str = "larder";

/// Its manifest, relative to the workspace root.
const FACADE_MANIFEST: &str = "crates/larder/Cargo.toml";

/// Prefix of the optional crates a facade feature pulls in with `dep:`.
const COMPONENT_DEP_PREFIX: &str = "dep:larder-";

/// Examples that serve until stopped: run with `--demo` in the test suite.
const SERVER_EXAMPLES: [&str; 1] = ["axum_app"];

/// What cargo-deny says (lowercased) when it cannot clone the advisory
/// database, e.g. `[ERROR] failed to fetch advisory database
/// https://github.com/RustSec/advisory-db with cli: failed to clone`.
const ADVISORY_FETCH_FAILURES: &[&str] = &["failed to fetch advisory database"];

/// What its diagnostics for actual findings start with, e.g.
/// `error[unmaintained]`, `error[vulnerability]`, `error[yanked]`.
const ADVISORY_FINDINGS: &[&str] = &["error["];

/// Variables `cargo run` sets for the program it runs, besides `CARGO_PKG_*`.
const RUN_ENV: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
];

mod fuzz;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map_or("help", String::as_str);
    let result = match task {
        "setup" => setup(),
        "test" | "ci" => test(),
        "deny" => cargo_deny_installed().and_then(|()| deny(&cargo())),
        "features" => feature_matrix(&cargo()),
        "bench" => bench(&args[1..]),
        "fuzz" => fuzz::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | test | deny | features | bench [criterion args] | \
                 fuzz [--seconds N] [target...] | ci>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        || Path::new("/usr/sbin").join(program).is_file()
        || Path::new("/usr/bin").join(program).is_file()
}

/// Run `program args`, echoing it; fail with its name when it fails.
fn run(program: &str, args: &[&str]) -> Result {
    run_with(
        Command::new(program).args(args),
        &format!("{program} {}", args.join(" ")),
    )
}

fn run_with(command: &mut Command, shown: &str) -> Result {
    eprintln!("\n==> {shown}");
    let started = Instant::now();
    let status = without_run_env(command)
        .current_dir(root())
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    eprintln!("<== {shown} ({:.1}s)", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

/// Drop the variables `cargo run` set for this binary (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_*`, …). Left in, they reach the cargo commands run here, and
/// build scripts that watch them (ring's `rerun-if-env-changed`) see a
/// change whenever a cargo command run by hand and one run by xtask
/// alternate: ring, rustls, fred and larder-redis would then rebuild each time.
fn without_run_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_") || RUN_ENV.contains(&name) {
            command.env_remove(name);
        }
    }
    command
}

/// `cargo` from PATH: through rustup it honours rust-toolchain.toml.
fn cargo() -> String {
    "cargo".to_owned()
}

fn setup() -> Result {
    servers()?;
    cargo_deny_installed()
}

/// Install the servers the tests start, or say how.
fn servers() -> Result {
    let missing: Vec<(&str, &str)> = SERVERS
        .iter()
        .copied()
        .filter(|(program, _)| !on_path(program))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: redis-server, redis-cli, memcached, openssl and tmux are installed");
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    let programs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let debian = Path::new("/etc/debian_version").exists() && on_path("apt-get");
    if !debian {
        return Err(format!(
            "missing {}: install the packages {} with your system's package manager \
             (macOS: brew install redis memcached tmux), then run `cargo xtask test` again",
            programs.join(", "),
            packages.join(" ")
        ));
    }
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let sudo: &[&str] = if root_user { &[] } else { &["sudo", "-n"] };
    let apt = |args: &[&str]| -> Result {
        let mut full: Vec<&str> = sudo.to_vec();
        full.push("apt-get");
        full.extend_from_slice(args);
        let mut command = Command::new(full[0]);
        command
            .args(&full[1..])
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_with(&mut command, &full.join(" "))
    };
    eprintln!("setup: installing {} with apt-get", packages.join(" "));
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&packages);
    apt(&install).map_err(|e| {
        format!(
            "{e}; install {} by hand (as root: apt-get install {})",
            programs.join(", "),
            packages.join(" ")
        )
    })?;
    let still: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "apt-get finished but {} is still missing",
            still.join(", ")
        ))
    }
}

/// Install cargo-deny when `cargo deny --version` does not answer.
fn cargo_deny_installed() -> Result {
    let cargo = cargo();
    let answers = || {
        without_run_env(&mut Command::new(&cargo))
            .args(["deny", "--version"])
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if answers() {
        eprintln!("setup: cargo-deny is installed");
        return Ok(());
    }
    eprintln!(
        "setup: cargo-deny is missing; installing it with `cargo install --locked cargo-deny`. \
         This compiles it from source once: a few minutes (about two on two cores)"
    );
    run(&cargo, &["install", "--locked", "cargo-deny"]).map_err(|e| {
        format!("{e}; install cargo-deny by hand: cargo install --locked cargo-deny")
    })?;
    if answers() {
        Ok(())
    } else {
        Err(
            "`cargo install cargo-deny` finished but `cargo deny --version` still fails: \
             is cargo's bin directory (~/.cargo/bin) on PATH?"
                .to_owned(),
        )
    }
}

/// The facade's features that each pull in one optional larder crate with
/// `dep:larder-…` (every backend, and the attribute macros) or a metrics
/// exporter (`dep:metrics-exporter-…`), sorted. Codec features only forward
/// to `larder-core` and are not listed.
fn component_features() -> Result<Vec<String>> {
    let path = root().join(FACADE_MANIFEST);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let manifest: toml::Table = text
        .parse()
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    let table = manifest
        .get("features")
        .and_then(toml::Value::as_table)
        .ok_or_else(|| format!("{} has no [features] table", path.display()))?;
    let mut features = Vec::new();
    for (name, enables) in table {
        let enables = enables.as_array().ok_or_else(|| {
            format!(
                "{}: feature `{name}` is not an array of strings",
                path.display()
            )
        })?;
        let component = enables.iter().filter_map(toml::Value::as_str).any(|item| {
            item.starts_with(COMPONENT_DEP_PREFIX) || item.starts_with("dep:metrics-exporter-")
        });
        if component {
            features.push(name.clone());
        }
    }
    if features.is_empty() {
        return Err(format!(
            "no feature in {} enables a `{COMPONENT_DEP_PREFIX}…` crate: \
             the feature matrix would check nothing",
            path.display()
        ));
    }
    features.sort();
    Ok(features)
}

/// Clippy on the facade alone, warnings denied, with no features, with each
/// component feature on its own, and with the default features: a `cfg`
/// that only compiles (or only stays warning-free) with some other feature
/// on fails here.
fn feature_matrix(cargo: &str) -> Result {
    let features = component_features()?;
    eprintln!(
        "\nfeature matrix of `{FACADE}`: none, {}, default",
        features.join(", ")
    );
    run(
        cargo,
        &[
            "clippy",
            "-p",
            FACADE,
            "--no-default-features",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    for feature in &features {
        run(
            cargo,
            &[
                "clippy",
                "-p",
                FACADE,
                "--no-default-features",
                "--features",
                feature,
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    run(cargo, &["clippy", "-p", FACADE, "--", "-D", "warnings"])
}

/// cargo-deny: bans, licenses and sources must pass. Advisories must pass
/// too, unless the advisory database cannot be fetched (no route to
/// github.com): then a prominent notice says they were not checked.
fn deny(cargo: &str) -> Result {
    run(cargo, &["deny", "check", "bans", "licenses", "sources"])?;
    let shown = "cargo deny check advisories";
    eprintln!("\n==> {shown}");
    let started = Instant::now();
    let output = without_run_env(&mut Command::new(cargo))
        .args(["deny", "check", "advisories"])
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    let mut stderr = std::io::stderr().lock();
    // Echo what it said; a failed write to our own stderr is not worth failing over.
    let _ = stderr.write_all(&output.stdout);
    let _ = stderr.write_all(&output.stderr);
    drop(stderr);
    eprintln!("<== {shown} ({:.1}s)", started.elapsed().as_secs_f64());
    if output.status.success() {
        return Ok(());
    }
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if advisory_db_unreachable(&said) {
        let rule = "!".repeat(78);
        eprintln!(
            "\n{rule}\n\
             !! ADVISORIES NOT CHECKED: the RustSec advisory database could not be\n\
             !! fetched (cargo-deny clones it from github.com; its error is above).\n\
             !! Neither advisories nor yanked crates were checked; bans, licenses and\n\
             !! sources were. Where github.com is reachable: cargo deny check advisories\n\
             {rule}"
        );
        return Ok(());
    }
    Err(format!("`{shown}` failed ({})", output.status))
}

/// Whether cargo-deny's output says the advisory database could not be
/// fetched, and nothing else: no advisory diagnostic was reported.
fn advisory_db_unreachable(said: &str) -> bool {
    let said = said.to_lowercase();
    ADVISORY_FETCH_FAILURES.iter().any(|m| said.contains(m))
        && !ADVISORY_FINDINGS.iter().any(|m| said.contains(m))
}

fn examples() -> Result<Vec<String>> {
    let dir = root().join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs")
                .then(|| path.file_stem()?.to_str().map(str::to_owned))
                .flatten()
        })
        .collect();
    names.sort();
    Ok(names)
}

fn test() -> Result {
    let started = Instant::now();
    let cargo = cargo();
    setup()?;
    run(&cargo, &["fmt", "--all", "--check"])?;
    deny(&cargo)?;
    run(
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    feature_matrix(&cargo)?;
    let mut doc = Command::new(&cargo);
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run_with(
        &mut doc,
        "cargo doc --workspace --no-deps --all-features (RUSTDOCFLAGS=-D warnings)",
    )?;
    run(
        &cargo,
        &["test", "--workspace", "--all-features", "--all-targets"],
    )?;
    run(&cargo, &["test", "--workspace", "--all-features", "--doc"])?;
    // With every other backend compiled out: their schemes must name the
    // feature to enable.
    run(
        &cargo,
        &[
            "test",
            "-p",
            "larder",
            "--no-default-features",
            "--features",
            "memory",
            "--test",
            "open",
        ],
    )?;
    for example in examples()? {
        let mut args = vec!["run", "--quiet", "--all-features", "--example", &example];
        // A server example serves until stopped; `--demo` makes it serve on
        // a free loopback port, talk to itself, and exit.
        if SERVER_EXAMPLES.contains(&example.as_str()) {
            args.extend(["--", "--demo"]);
        }
        run(&cargo, &args)?;
    }
    eprintln!(
        "\nxtask test: every gate passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(extra: &[String]) -> Result {
    let cargo = cargo();
    let mut args = vec!["bench", "--workspace", "--all-features", "--"];
    args.extend(extra.iter().map(String::as_str));
    run(&cargo, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_database_is_recognised() {
        let said = "2026-11-24 06:09:57 [ERROR] failed to fetch advisory database \
                    https://github.com/RustSec/advisory-db with cli: failed to clone\n\
                    fatal: unable to access 'https://github.com/RustSec/advisory-db/': \
                    Could not resolve host: github.com";
        assert!(advisory_db_unreachable(said));
    }

    #[test]
    fn findings_are_never_taken_for_an_unreachable_database() {
        let said = "error[unmaintained]: bincode is unmaintained\n  ├ ID: RUSTSEC-2025-0141\n\
                    advisories FAILED";
        assert!(!advisory_db_unreachable(said));
        let both = format!("[ERROR] failed to fetch advisory database x\n{said}");
        assert!(!advisory_db_unreachable(&both));
    }

    #[test]
    fn other_failures_are_failures() {
        let said = "[ERROR] failed to get 'FETCH_HEAD' metadata: failed to get HEAD timestamp";
        assert!(!advisory_db_unreachable(said));
    }

    #[test]
    fn component_features_are_the_optional_larder_crates() -> Result {
        let features = component_features()?;
        for expected in ["macros", "memory", "redis"] {
            assert!(
                features.iter().any(|f| f == expected),
                "{expected} missing from {features:?}"
            );
        }
        for codec in ["msgpack", "postcard", "bincode", "default"] {
            assert!(
                !features.iter().any(|f| f == codec),
                "{codec} wrongly in {features:?}"
            );
        }
        Ok(())
    }
}
