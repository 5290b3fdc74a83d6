//! The health route: `200` while the cache serves, `503` when it does not.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use larder_core::{Cache, HealthReport, HealthStatus};

/// A health handler: probes the cache (every route of a router) and answers
/// `200` with `{"status":"healthy",...}` (or `"degraded"`: serving with a
/// part missing), or `503` with `"unhealthy"` and the reasons: the body is
/// [`HealthReport::to_json`]. Never cached
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
    let mut response = (status, Json(report.to_json())).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
