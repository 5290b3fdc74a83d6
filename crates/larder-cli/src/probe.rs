//! The only place that reads [`Cache::health_report`] and [`Cache::stats`], so an
//! API change of either is met here alone.

use larder::{Cache, HealthReport, Stats};

/// The backend's health report (never fails: an unreachable backend is an
/// unhealthy report with the error among its reasons).
pub(crate) async fn report(cache: &Cache) -> HealthReport {
    cache.health_report().await
}

/// This process's counters for `cache` (failed probes count as errors).
pub(crate) fn counters(cache: &Cache) -> Stats {
    cache.stats()
}
