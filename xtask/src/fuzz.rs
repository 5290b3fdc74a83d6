//! `cargo xtask fuzz [--seconds N] [target...]`: run every cargo-fuzz target
//! of `fuzz/` for N seconds each (default 60) on the pinned stable
//! toolchain, without a sanitizer (`-s none`), and print the executions of
//! each. New inputs go to `fuzz/target/corpus/<target>` (not committed);
//! the committed seeds in `fuzz/corpus/<target>` are read too. A crash is
//! copied into `fuzz/regressions/<target>/`, where the corpus regression
//! test of `cargo xtask test` replays it until it is fixed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, cargo, root, without_run_env};

/// The fuzz crate, relative to the workspace root.
const FUZZ_DIR: &str = "fuzz";

/// One target's run.
struct Outcome {
    target: String,
    executions: Option<u64>,
    per_second: Option<u64>,
    corpus: usize,
    crashes: Vec<String>,
}

pub(crate) fn run(args: &[String]) -> Result {
    let mut seconds: u64 = 60;
    let mut only = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" | "-s" => {
                seconds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--seconds takes a positive whole number of seconds")?;
            }
            target => only.push(target.to_owned()),
        }
    }
    cargo_fuzz_installed()?;
    let targets = targets()?;
    for t in &only {
        if !targets.contains(t) {
            return Err(format!(
                "no fuzz target {t:?}; the targets are {}",
                targets.join(", ")
            ));
        }
    }
    let chosen: Vec<&String> = targets
        .iter()
        .filter(|t| only.is_empty() || only.contains(t))
        .collect();
    let mut outcomes = Vec::new();
    for target in chosen {
        outcomes.push(run_target(target, seconds)?);
    }
    println!("\n| target | executions | per second | corpus | crashes |");
    println!("|---|---|---|---|---|");
    for o in &outcomes {
        let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        println!(
            "| {} | {} | {} | {} | {} |",
            o.target,
            shown(o.executions),
            shown(o.per_second),
            o.corpus,
            o.crashes.len()
        );
    }
    let crashed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.crashes.is_empty()).collect();
    if crashed.is_empty() {
        eprintln!("\nxtask fuzz: {seconds}s per target, no crash");
        Ok(())
    } else {
        let list: Vec<String> = crashed
            .iter()
            .flat_map(|o| o.crashes.iter().map(move |c| format!("{}: {c}", o.target)))
            .collect();
        Err(format!(
            "crashes found, copied into fuzz/regressions/<target>/ (commit them with the fix; \
             `cargo test -p larder-core --test fuzz_corpus` replays them): {}",
            list.join(", ")
        ))
    }
}

/// The `[[bin]]` names of `fuzz/Cargo.toml`.
fn targets() -> Result<Vec<String>> {
    let path = root().join(FUZZ_DIR).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let manifest: toml::Table = text
        .parse()
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    let bins = manifest
        .get("bin")
        .and_then(toml::Value::as_array)
        .ok_or_else(|| format!("{} has no [[bin]] targets", path.display()))?;
    Ok(bins
        .iter()
        .filter_map(|b| b.get("name").and_then(toml::Value::as_str))
        .map(str::to_owned)
        .collect())
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn run_target(target: &str, seconds: u64) -> Result<Outcome> {
    let fuzz = root().join(FUZZ_DIR);
    let work = fuzz.join("target").join("corpus").join(target);
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let seeds = fuzz.join("corpus").join(target);
    let artifacts = fuzz.join("artifacts").join(target);
    let before = files(&artifacts);
    let max_time = format!("-max_total_time={seconds}");
    let work_arg = work.display().to_string();
    let seeds_arg = seeds.display().to_string();
    let args = [
        "fuzz",
        "run",
        "-s",
        "none",
        target,
        work_arg.as_str(),
        seeds_arg.as_str(),
        "--",
        max_time.as_str(),
        "-print_final_stats=1",
        "-max_len=65536",
    ];
    eprintln!("\n==> cargo {} ", args.join(" "));
    let started = Instant::now();
    let mut command = Command::new(cargo());
    // The fuzz crate builds into its own target directory: its
    // instrumented builds would otherwise evict the workspace's.
    let output = without_run_env(&mut command)
        .args(args)
        .current_dir(&fuzz)
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start cargo fuzz: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stat = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let executions = stat("stat::number_of_executed_units:");
    let per_second = stat("stat::average_exec_per_sec:");
    eprintln!(
        "<== {target}: {} executions in {:.0}s",
        executions.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        started.elapsed().as_secs_f64()
    );
    let mut crashes = Vec::new();
    for name in files(&artifacts) {
        if before.contains(&name) {
            continue;
        }
        let regressions = fuzz.join("regressions").join(target);
        std::fs::create_dir_all(&regressions)
            .map_err(|e| format!("cannot create {}: {e}", regressions.display()))?;
        std::fs::copy(artifacts.join(&name), regressions.join(&name))
            .map_err(|e| format!("cannot copy {name} into {}: {e}", regressions.display()))?;
        crashes.push(name);
    }
    if !output.status.success() && crashes.is_empty() {
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`cargo fuzz run {target}` failed ({}) without a crash file:\n{}",
            output.status,
            tail.join("\n")
        ));
    }
    Ok(Outcome {
        target: target.to_owned(),
        executions,
        per_second,
        corpus: files(&work).len() + files(&seeds).len(),
        crashes,
    })
}

/// Install cargo-fuzz when `cargo fuzz --version` does not answer.
fn cargo_fuzz_installed() -> Result {
    let answers = || {
        without_run_env(&mut Command::new(cargo()))
            .args(["fuzz", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if answers() {
        return Ok(());
    }
    eprintln!(
        "xtask fuzz: cargo-fuzz is missing; installing it with `cargo install --locked \
         cargo-fuzz` (compiles from source once, a few minutes)"
    );
    crate::run(&cargo(), &["install", "--locked", "cargo-fuzz"])
        .map_err(|e| format!("{e}; install it by hand: cargo install --locked cargo-fuzz"))?;
    if answers() {
        Ok(())
    } else {
        Err(
            "cargo-fuzz installed but `cargo fuzz --version` fails: is ~/.cargo/bin on PATH?"
                .to_owned(),
        )
    }
}
