//! `migrate`: copy entries with their TTLs and tags between backends, with
//! a progress bar on a terminal and progress lines elsewhere.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use larder::CacheConfig;
use larder::migrate::{MigrateOptions, MigrateProgress, migrate};

use crate::cli::MigrateArgs;
use crate::commands::keys::parse_ttl;
use crate::exit::{CliError, CliResult};
use crate::probe;
use crate::target::{self, Target};

/// Progress, as a bar or as lines on stderr.
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {pos}/{len} keys  {per_sec}  eta {eta}  {msg}",
            ) {
                bar.set_style(style);
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines
        }
    }

    fn update(&self, p: &MigrateProgress) {
        match self {
            Progress::Bar(bar) => {
                bar.set_length(p.total);
                bar.set_position(p.done);
                bar.set_message(format!(
                    "{} copied, {} expired, {} failed",
                    p.copied, p.skipped_expired, p.failed
                ));
            }
            Progress::Lines => eprintln!(
                "migrate: {}/{} keys, {} copied, {} skipped as expired, {} failed",
                p.done, p.total, p.copied, p.skipped_expired, p.failed
            ),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}

/// Open `url` and check that it answers, so an unreachable side is named.
async fn open_checked(config: &CacheConfig, url: &str) -> CliResult<Target> {
    let target = target::open_url(config, url).await?;
    let report = probe::report(&target.cache).await;
    if !report.is_healthy() {
        return Err(CliError::unreachable(
            &target.host,
            report.reasons.join("; "),
        ));
    }
    Ok(target)
}

/// `larder migrate`: exit 1 when an entry could not be copied.
pub(crate) async fn run(config: &CacheConfig, args: &MigrateArgs) -> CliResult {
    let ttl_when_unknown = match &args.ttl_when_unknown {
        Some(text) => Some(parse_ttl("--ttl-when-unknown", text)?),
        None => None,
    };
    let from = open_checked(config, &args.from).await?;
    let to = open_checked(config, &args.to).await?;
    // Stored keys are `{prefix}:{version}:{key}`; the pattern is over keys.
    let pattern = format!(
        "{}:{}:{}",
        larder::glob::escape(&config.prefix),
        larder::glob::escape(&config.version),
        args.pattern
    );
    let mut options = MigrateOptions::pattern(pattern);
    if let Some(ttl) = ttl_when_unknown {
        options = options.ttl_when_unknown(ttl);
    }
    let progress = Progress::new();
    let result = migrate(
        from.cache.backend().as_ref(),
        to.cache.backend().as_ref(),
        &options,
        |p| progress.update(p),
    )
    .await;
    progress.finish();
    let closed = (from.cache.close().await, to.cache.close().await);
    let summary = result.map_err(|e| {
        CliError::from_larder(&format!("{} or {}", from.host, to.host), "migrate", e)
    })?;
    closed.0.map_err(|e| from.error("closing the source", e))?;
    closed.1.map_err(|e| to.error("closing the target", e))?;
    println!("{summary}");
    for (key, error) in summary.failures.iter().skip(1).take(9) {
        eprintln!("failed: {key}: {error}");
    }
    if summary.progress.failed > 0 {
        return Err(CliError::failed(format!(
            "{} entries could not be copied",
            summary.progress.failed
        )));
    }
    Ok(())
}
