//! `monitor`: a full-screen live view of every route's backend (health,
//! probe round trips, hit rate and ops/s from server counters, failed
//! probes, sparklines of the last minutes), optionally served as Prometheus
//! metrics. A sampler task probes; the screen is drawn on a blocking
//! thread that also reads the keyboard.

mod prometheus;
mod state;
mod ui;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use larder::CacheConfig;

use crate::cli::MonitorArgs;
use crate::commands::keys::parse_ttl;
use crate::exit::{CliError, CliResult};
use crate::probe;
use crate::target::{self, Target};
use state::{Board, RouteState};

/// The routes to watch: the default URL, then each configured route.
fn routes(config: &CacheConfig) -> Vec<(String, String)> {
    let default = config
        .url
        .clone()
        .unwrap_or_else(|| larder::DEFAULT_URL.to_owned());
    let mut out = vec![("default".to_owned(), default)];
    out.extend(
        config
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.url.clone())),
    );
    out
}

/// Probe every route forever, every `interval`.
async fn sample(targets: Vec<(String, Target)>, board: Arc<Mutex<Board>>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (i, (_, target)) in targets.iter().enumerate() {
            let report = probe::report(&target.cache).await;
            let errors = probe::counters(&target.cache).errors;
            let snapshot = {
                let Ok(mut board) = board.lock() else { return };
                let Some(route) = board.routes.get_mut(i) else {
                    continue;
                };
                route.record(&report, errors);
                route.clone()
            };
            prometheus::publish(&snapshot);
        }
    }
}

/// `larder monitor`: returns when `q` is pressed, the terminal restored.
pub(crate) async fn run(config: &CacheConfig, args: &MonitorArgs) -> CliResult {
    let interval = parse_ttl("--interval", &args.interval)?;
    if interval < Duration::from_millis(100) {
        return Err(CliError::usage("--interval must be at least 100ms"));
    }
    let mut targets = Vec::new();
    for (name, url) in routes(config) {
        targets.push((name, target::open_url(config, &url).await?));
    }
    if let Some(addr) = args.prometheus {
        prometheus::install(addr)?;
    }
    let board = Arc::new(Mutex::new(Board {
        routes: targets
            .iter()
            .map(|(name, t)| RouteState::new(name, &t.host))
            .collect(),
        interval,
        prometheus: args.prometheus,
    }));
    let caches: Vec<larder::Cache> = targets.iter().map(|(_, t)| t.cache.clone()).collect();
    let sampler = tokio::spawn(sample(targets, Arc::clone(&board), interval));
    let shown = Arc::clone(&board);
    let screen = tokio::task::spawn_blocking(move || ui::run(&shown)).await;
    sampler.abort();
    for cache in caches {
        // Closing is best effort: the view is gone already.
        let _ = cache.close().await;
    }
    screen
        .map_err(|e| CliError::failed(format!("the screen thread failed: {e}")))?
        .map_err(|e| CliError::failed(format!("terminal error: {e}")))
}
