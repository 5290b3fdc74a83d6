//! Serving an axum app with its cache: probed before the first request,
//! closed after the last.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use axum::Router;
use larder_core::{Cache, HealthStatus};
use tokio::net::TcpListener;

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// [`Serve::require_healthy`] was set and the cache did not answer.
    #[error(
        "the cache is unhealthy at startup ({reasons}); start its backend, fix its URL \
         (LARDER_URL), or serve without require_healthy to start degraded"
    )]
    Unhealthy {
        /// The reasons of the health report.
        reasons: String,
    },
    /// The server failed.
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
    /// Closing the cache after shutdown failed (writes may be lost).
    #[error("the server stopped, but closing the cache failed: {0}")]
    Close(#[source] larder_core::Error),
}

/// Serve `app` on `listener` with `cache`'s lifecycle: probe the cache
/// first (logging its status, or refusing to start with
/// [`Serve::require_healthy`]), serve until the shutdown signal, let
/// in-flight requests finish, then [`Cache::close`] it.
///
/// ```no_run
/// # async fn demo(cache: larder_core::Cache, app: axum::Router) -> Result<(), larder_axum::ServeError> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// larder_axum::serve(listener, app, cache)
///     .with_graceful_shutdown(larder_axum::shutdown_signal())
///     .await
/// # }
/// ```
pub fn serve(listener: TcpListener, app: Router, cache: Cache) -> Serve {
    Serve {
        listener,
        app,
        cache,
        shutdown: None,
        require_healthy: false,
    }
}

/// A pending [`serve`]; configure, then `.await` it.
#[must_use = "serve does nothing until awaited"]
pub struct Serve {
    listener: TcpListener,
    app: Router,
    cache: Cache,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    require_healthy: bool,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("cache", &self.cache)
            .field("graceful_shutdown", &self.shutdown.is_some())
            .field("require_healthy", &self.require_healthy)
            .finish()
    }
}

impl Serve {
    /// Stop accepting when `signal` completes, and finish in-flight
    /// requests before closing the cache. Without one, serve until the
    /// listener fails.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Refuse to start when the cache is unhealthy (default: start anyway,
    /// degraded; the read-through serves from the handlers meanwhile).
    pub fn require_healthy(mut self, require: bool) -> Self {
        self.require_healthy = require;
        self
    }

    async fn run(self) -> Result<(), ServeError> {
        let report = self.cache.health_report().await;
        match report.status {
            HealthStatus::Unhealthy if self.require_healthy => {
                return Err(ServeError::Unhealthy {
                    reasons: report.reasons.join("; "),
                });
            }
            HealthStatus::Healthy => {
                tracing::info!(backend = %report.label, "cache healthy; serving");
            }
            status => {
                tracing::warn!(
                    backend = %report.label,
                    %status,
                    reasons = %report.reasons.join("; "),
                    "serving with a cache that is not healthy"
                );
            }
        }
        let served = match self.shutdown {
            Some(signal) => {
                axum::serve(self.listener, self.app)
                    .with_graceful_shutdown(signal)
                    .await
            }
            None => axum::serve(self.listener, self.app).await,
        };
        let closed = self.cache.close().await;
        served?;
        closed.map_err(ServeError::Close)
    }
}

impl IntoFuture for Serve {
    type Output = Result<(), ServeError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Completes on Ctrl-C, or SIGTERM on Unix (what orchestrators send):
/// the usual argument of [`Serve::with_graceful_shutdown`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
