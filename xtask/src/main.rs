//! Project tasks: `cargo xtask setup | test | bench | ci`.
//!
//! - `setup` installs the servers the tests start (redis-server, memcached)
//!   with apt-get when they are missing on a Debian-like machine, and
//!   otherwise says what to install.
//! - `test` runs setup, then every gate: rustfmt, clippy with warnings as
//!   errors, rustdoc with warnings as errors, every test of the workspace
//!   (unit, integration, doc) and every example.
//! - `bench` runs the criterion benchmarks.
//! - `ci` is what `.ci/run` runs: `test`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Programs the test suite starts, and the Debian package of each.
const SERVERS: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("memcached", "memcached"),
    ("openssl", "openssl"),
];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map_or("help", String::as_str);
    let result = match task {
        "setup" => setup(),
        "test" | "ci" => test(),
        "bench" => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <setup | test | bench [criterion args] | ci>");
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
    let status = command
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

/// `cargo` from PATH: through rustup it honours rust-toolchain.toml.
fn cargo() -> String {
    "cargo".to_owned()
}

fn setup() -> Result {
    let missing: Vec<(&str, &str)> = SERVERS
        .iter()
        .copied()
        .filter(|(program, _)| !on_path(program))
        .collect();
    if missing.is_empty() {
        eprintln!("setup: redis-server, redis-cli, memcached and openssl are installed");
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    let programs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let debian = Path::new("/etc/debian_version").exists() && on_path("apt-get");
    if !debian {
        return Err(format!(
            "missing {}: install the packages {} with your system's package manager \
             (macOS: brew install redis memcached), then run `cargo xtask test` again",
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
    for example in examples()? {
        run(
            &cargo,
            &["run", "--quiet", "--all-features", "--example", &example],
        )?;
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
