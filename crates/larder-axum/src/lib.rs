//! axum integration for [larder](https://docs.rs/larder): a tower layer
//! that caches responses (with strong ETags, `304 Not Modified`, `Age` and
//! `max-age`, tag invalidation), a health handler, and serving with the
//! cache's lifecycle.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use larder_axum::{CacheTags, ResponseCacheLayer};
//!
//! async fn product(axum::extract::Path(id): axum::extract::Path<u64>) -> (CacheTags, String) {
//!     (CacheTags::new([format!("product:{id}")]), format!("product {id}"))
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! # let cache: larder_core::Cache = todo!();
//! let app = Router::new()
//!     .route("/products/{id}", get(product))
//!     .layer(ResponseCacheLayer::new(cache.clone()).ttl(Duration::from_secs(60)))
//!     .route("/health", get(larder_axum::health))
//!     .with_state(cache.clone());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! larder_axum::serve(listener, app, cache)
//!     .with_graceful_shutdown(larder_axum::shutdown_signal())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! `docs/axum.md` in the repository is the guide.

mod health;
mod layer;
mod request;
mod serve;
mod stored;
mod tags;

pub use health::{health, health_response};
pub use layer::{DEFAULT_MAX_BODY_BYTES, DEFAULT_TTL, ResponseCache, ResponseCacheLayer};
pub use serve::{Serve, ServeError, serve, shutdown_signal};
pub use stored::X_CACHE;
pub use tags::CacheTags;
