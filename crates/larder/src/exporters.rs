//! Exporters for the metrics every [`Cache`](crate::Cache) emits through the
//! [`metrics`](https://docs.rs/metrics) facade (names in
//! [`metric_names`](crate::metric_names); `docs/observability.md` lists
//! them with their labels).
//!
//! Install an exporter **before** building caches: a cache registers its
//! metrics with the recorder installed when it is built (so that its hit
//! path does not look one up), and one built earlier reports only to its
//! own [`Cache::stats`](crate::Cache::stats). One recorder per process: a
//! second install is an error.

/// Histogram buckets for `larder_operation_duration_seconds`, in seconds:
/// from a memory hit (under a microsecond) to a slow load.
#[cfg(feature = "prometheus")]
const DURATION_BUCKETS: &[f64] = &[
    0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The Prometheus exporter (cargo feature `prometheus`).
///
/// ```no_run
/// # async fn demo() -> larder::Result<()> {
/// // Serve /metrics on port 9000, then build caches.
/// larder::exporters::prometheus::listen("127.0.0.1:9000".parse().unwrap())?;
/// let cache = larder::open("mem://").await?;
/// # let _ = cache; Ok(()) }
/// ```
#[cfg(feature = "prometheus")]
pub mod prometheus {
    use std::net::SocketAddr;

    #[doc(inline)]
    pub use metrics_exporter_prometheus::PrometheusHandle;
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

    use super::DURATION_BUCKETS;
    use crate::{Error, Result};

    fn builder() -> Result<PrometheusBuilder> {
        PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(crate::metric_names::OPERATION_DURATION.to_owned()),
                DURATION_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(crate::metric_names::NEAR_INVALIDATION_LAG.to_owned()),
                    DURATION_BUCKETS,
                )
            })
            .map_err(|e| failed("histogram buckets", e))
    }

    fn failed(what: &str, error: impl std::fmt::Display) -> Error {
        Error::config(
            "prometheus exporter",
            "larder::exporters::prometheus",
            format!("{what} to be usable (and no other metrics recorder installed)"),
            error.to_string(),
        )
    }

    /// Install the Prometheus recorder and serve its text format over HTTP
    /// on `addr` (any path answers; scrape `/metrics`). Inside a tokio
    /// runtime the listener runs on it; outside, on a thread of its own.
    /// Also returns the handle, to render the same text elsewhere.
    pub fn listen(addr: SocketAddr) -> Result<PrometheusHandle> {
        let builder = builder()?.with_http_listener(addr);
        let bind_failed = |e| failed(&format!("the listen address {addr}"), e);
        // Building spawns the exporter's upkeep, so it needs a runtime.
        let recorder = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let _entered = runtime.enter();
                let (recorder, serve) = builder.build().map_err(bind_failed)?;
                runtime.spawn(serve);
                recorder
            }
            Err(_) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| failed("a runtime for the listener", e))?;
                let (recorder, serve) = {
                    let _entered = runtime.enter();
                    builder.build().map_err(bind_failed)?
                };
                std::thread::Builder::new()
                    .name("larder-prometheus".into())
                    .spawn(move || runtime.block_on(serve))
                    .map_err(|e| failed("a thread for the listener", e))?;
                recorder
            }
        };
        let handle = recorder.handle();
        ::metrics::set_global_recorder(recorder)
            .map_err(|e| failed("the global metrics recorder", e))?;
        Ok(handle)
    }

    /// Install the Prometheus recorder without a listener; serve
    /// [`PrometheusHandle::render`] from a route of your own (the axum
    /// integration does). Call [`PrometheusHandle::run_upkeep`] now and
    /// then (every few seconds) to drain histograms.
    pub fn install() -> Result<PrometheusHandle> {
        builder()?
            .install_recorder()
            .map_err(|e| failed("the global metrics recorder", e))
    }
}

/// The StatsD exporter (cargo feature `statsd`).
///
/// ```no_run
/// # fn demo() -> larder::Result<()> {
/// larder::exporters::statsd::install("127.0.0.1", 8125, Some("myservice"))?;
/// # Ok(()) }
/// ```
#[cfg(feature = "statsd")]
pub mod statsd {
    use metrics_exporter_statsd::StatsdBuilder;

    use crate::{Error, Result};

    /// Install a recorder that sends every metric to the StatsD server at
    /// `host:port` over UDP, names prefixed with `prefix.` when given;
    /// labels become tags (DogStatsD style). Histograms are sent as timers.
    /// Lines are batched into datagrams of up to 256 bytes, sent from a
    /// queue off the caller's thread.
    pub fn install(host: &str, port: u16, prefix: Option<&str>) -> Result<()> {
        let failed = |what: &str, error: &dyn std::fmt::Display| {
            Error::config(
                "statsd exporter",
                "larder::exporters::statsd",
                format!("{what} (and no other metrics recorder installed)"),
                error.to_string(),
            )
        };
        // Send from an address of the same family, on loopback when the
        // server is there.
        let local = match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() && ip.is_ipv6() => "::1",
            Ok(ip) if ip.is_ipv6() => "::",
            Ok(ip) if ip.is_loopback() => "127.0.0.1",
            _ if host == "localhost" => "127.0.0.1",
            _ => "0.0.0.0",
        };
        let recorder = StatsdBuilder::from(host, port)
            .with_client_udp_host(local)
            .histogram_is_timer()
            .build(prefix)
            .map_err(|e| failed(&format!("a reachable StatsD address {host}:{port}"), &e))?;
        ::metrics::set_global_recorder(recorder)
            .map_err(|e| failed("the global metrics recorder", &e))
    }
}
