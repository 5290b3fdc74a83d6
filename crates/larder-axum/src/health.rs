//! The health route: `200` while the cache serves, `503` when it does not.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use larder_core::{Cache, HealthReport, HealthStatus};
use serde_json::{Map, Value, json};

/// A health handler: probes the cache (every route of a router) and answers
/// `200` with `{"status":"healthy",...}` (or `"degraded"`: serving with a
/// part missing), or `503` with `"unhealthy"` and the reasons. Never cached
/// (`Cache-Control: no-store`).
///
/// It takes the [`Cache`] from the router's state; with a state of your own,
/// implement `FromRef<YourState> for Cache`:
///
/// ```
/// use axum::{Router, routing::get};
/// # fn demo(cache: larder_core::Cache) {
/// let app: Router = Router::new()
///     .route("/health", get(larder_axum::health))
///     .with_state(cache);
/// # let _ = app; }
/// ```
pub async fn health(State(cache): State<Cache>) -> Response {
    health_response(&cache.health_report().await)
}

/// The response [`health`] sends for `report`, for handlers that probe
/// more than the cache.
pub fn health_response(report: &HealthReport) -> Response {
    let status = if report.status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(report_json(report))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A report as JSON: status, backend, label, latency, reasons, details and
/// the routes' own reports.
pub fn report_json(report: &HealthReport) -> Value {
    let details: Map<String, Value> = report
        .details
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    let routes: Vec<Value> = report
        .routes
        .iter()
        .map(|route| {
            let mut value = report_json(&route.report);
            if let Value::Object(fields) = &mut value {
                fields.insert("name".into(), Value::String(route.name.clone()));
                fields.insert("prefix".into(), Value::String(route.prefix.clone()));
            }
            value
        })
        .collect();
    json!({
        "status": report.status.to_string(),
        "backend": report.backend,
        "label": report.label,
        "latency_ms": report.latency.as_secs_f64() * 1000.0,
        "reasons": report.reasons,
        "details": details,
        "routes": routes,
    })
}
