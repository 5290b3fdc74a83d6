//! What the monitor knows about each route: the latest report and the
//! history behind the percentiles and sparklines.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use larder::HealthReport;

use crate::server::ServerCounters;

/// Samples kept per route (5 minutes at one a second).
pub(crate) const HISTORY: usize = 300;

/// Everything on screen.
#[derive(Debug)]
pub(crate) struct Board {
    /// One entry per route, the default first.
    pub(crate) routes: Vec<RouteState>,
    /// Time between probes.
    pub(crate) interval: Duration,
    /// Where Prometheus metrics are served, if anywhere.
    pub(crate) prometheus: Option<SocketAddr>,
}

/// One route's figures.
#[derive(Debug, Clone)]
pub(crate) struct RouteState {
    /// The route's name (`default` for the URL).
    pub(crate) name: String,
    /// The host it talks to.
    pub(crate) host: String,
    /// Backend kind, once probed.
    pub(crate) backend: &'static str,
    /// Whether the last probe answered.
    pub(crate) healthy: Option<bool>,
    /// The last probe's error.
    pub(crate) error: Option<String>,
    /// Probe round trips in microseconds, oldest first.
    pub(crate) rtt_us: VecDeque<u64>,
    /// Server ops/s per sample, where the backend counts commands.
    pub(crate) ops: VecDeque<u64>,
    /// Hit rate per sample in tenths of a percent.
    pub(crate) hit_permille: VecDeque<u64>,
    /// Latest server ops/s.
    pub(crate) ops_per_s: Option<f64>,
    /// Latest interval hit rate.
    pub(crate) hit_rate: Option<f64>,
    /// Server counters as of the last probe.
    pub(crate) counters: ServerCounters,
    /// Failed probes.
    pub(crate) errors: u64,
    /// Probes run.
    pub(crate) probes: u64,
    last: Option<(Instant, ServerCounters)>,
}

fn push(history: &mut VecDeque<u64>, value: u64) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(value);
}

impl RouteState {
    /// A route not probed yet.
    pub(crate) fn new(name: &str, host: &str) -> Self {
        RouteState {
            name: name.to_owned(),
            host: host.to_owned(),
            backend: "",
            healthy: None,
            error: None,
            rtt_us: VecDeque::new(),
            ops: VecDeque::new(),
            hit_permille: VecDeque::new(),
            ops_per_s: None,
            hit_rate: None,
            counters: ServerCounters::default(),
            errors: 0,
            probes: 0,
            last: None,
        }
    }

    /// Take in one probe; `errors` is the cache's count of failed probes.
    pub(crate) fn record(&mut self, report: &HealthReport, errors: u64) {
        let now = Instant::now();
        self.probes += 1;
        self.errors = errors;
        self.backend = report.backend;
        self.healthy = Some(report.is_healthy());
        self.error = (!report.reasons.is_empty()).then(|| report.reasons.join("; "));
        push(
            &mut self.rtt_us,
            u64::try_from(report.latency.as_micros()).unwrap_or(u64::MAX),
        );
        if !report.is_healthy() {
            return;
        }
        let counters = ServerCounters::from_details(&report.details);
        if let Some((at, before)) = &self.last {
            let rates = counters.rates_since(before, now - *at);
            self.ops_per_s = rates.ops_per_s;
            self.hit_rate = rates.hit_rate.or(self.hit_rate);
            if let Some(ops) = rates.ops_per_s {
                push(&mut self.ops, ops.round() as u64);
            }
            if let Some(rate) = self.hit_rate {
                push(&mut self.hit_permille, (rate * 1000.0).round() as u64);
            }
        }
        self.counters = counters;
        self.last = Some((now, counters));
    }

    /// Round-trip percentile `q` (0-100) over the history, in microseconds.
    pub(crate) fn rtt_percentile(&self, q: usize) -> Option<u64> {
        let mut sorted: Vec<u64> = self.rtt_us.iter().copied().collect();
        sorted.sort_unstable();
        let i = sorted.len().checked_sub(1)? * q / 100;
        sorted.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let mut route = RouteState::new("default", "redis at h");
        let mut report = HealthReport::healthy("redis", "r", Duration::from_micros(100))
            .detail("keyspace_hits", 0)
            .detail("keyspace_misses", 0)
            .detail("total_commands_processed", 0);
        route.record(&report, 0);
        report = HealthReport::healthy("redis", "r", Duration::from_micros(300))
            .detail("keyspace_hits", 3)
            .detail("keyspace_misses", 1)
            .detail("total_commands_processed", 1000);
        route.record(&report, 0);
        assert_eq!(route.rtt_percentile(50), Some(100));
        assert_eq!(route.rtt_percentile(100), Some(300));
        assert_eq!(route.hit_rate, Some(0.75));
        assert!(route.ops_per_s.is_some_and(|o| o > 0.0));
        assert_eq!(route.hit_permille.back(), Some(&750));
    }
}
