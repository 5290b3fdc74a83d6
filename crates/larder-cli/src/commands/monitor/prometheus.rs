//! `monitor --prometheus ADDR`: the figures on screen as Prometheus
//! metrics, served by metrics-exporter-prometheus's HTTP listener.

use std::net::SocketAddr;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusBuilder;

use super::state::RouteState;
use crate::exit::{CliError, CliResult};

/// Install the recorder and start serving `/metrics` on `addr`.
pub(crate) fn install(addr: SocketAddr) -> CliResult {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| CliError::failed(format!("cannot serve Prometheus metrics on {addr}: {e}")))
}

/// Publish one route's latest figures (a no-op without a recorder).
pub(crate) fn publish(route: &RouteState) {
    let labels = [
        ("route", route.name.clone()),
        ("backend", route.backend.to_owned()),
    ];
    gauge!("larder_monitor_up", &labels).set(if route.healthy == Some(true) {
        1.0
    } else {
        0.0
    });
    for (quantile, q) in [("0.5", 50), ("0.99", 99), ("1", 100)] {
        if let Some(us) = route.rtt_percentile(q) {
            let mut with_q = labels.to_vec();
            with_q.push(("quantile", quantile.to_owned()));
            gauge!("larder_monitor_probe_latency_seconds", &with_q).set(us as f64 / 1e6);
        }
    }
    if let Some(rate) = route.hit_rate {
        gauge!("larder_monitor_hit_rate", &labels).set(rate);
    }
    if let Some(ops) = route.ops_per_s {
        gauge!("larder_monitor_ops_per_second", &labels).set(ops);
    }
    if let Some(keys) = route.counters.keys {
        gauge!("larder_monitor_keys", &labels).set(keys as f64);
    }
    if let Some(bytes) = route.counters.memory {
        gauge!("larder_monitor_memory_bytes", &labels).set(bytes as f64);
    }
    counter!("larder_monitor_probe_errors_total", &labels).absolute(route.errors);
    counter!("larder_monitor_probes_total", &labels).absolute(route.probes);
}
