//! Support for the code `#[cache_read]` and `#[cache_write]` generate. Not
//! a public API: it changes with the macros.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use larder_core::key::{
    push_part, push_part_escaping, push_part_escaping_lower, push_part_hash, push_part_lower,
};
use larder_core::{Cache, Error, Outcome, SetOptions, Ttl, recache, warn_uninstalled};
pub use larder_core::{FillOptions, Plain, Resource, installed};

/// Fill lock timeout of `lock = true`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// A recache call: `None` when it succeeded, else what went wrong.
pub type RecacheFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// The body of a `#[cache_read]` function.
#[allow(clippy::too_many_arguments)]
pub async fn read<O, Fut, C, T>(
    cache: Option<&Cache>,
    function: &'static str,
    key: &str,
    ttl: Ttl,
    tags: T,
    fill: &FillOptions,
    condition: C,
    body: Fut,
) -> O
where
    O: Outcome,
    Fut: Future<Output = O>,
    C: FnOnce(&O::Subject) -> bool,
    T: FnOnce() -> Vec<String>,
{
    match cache {
        None => {
            warn_uninstalled(function);
            body.await
        }
        Some(cache) => {
            let write = || cache.write_options(&SetOptions::new().ttl(ttl).tags(tags()));
            cache
                .read_through(key, write, fill, condition, || body)
                .await
        }
    }
}

/// Invalidate `tags` after a successful write; failures are logged and
/// counted, never returned.
pub async fn invalidate(cache: Option<&Cache>, function: &'static str, tags: &[String]) {
    let Some(cache) = cache else {
        warn_uninstalled(function);
        return;
    };
    if let Err(e) = cache.invalidate_tags(tags).await {
        tracing::warn!(
            function,
            "larder: invalidation after a write failed ({e}); recache calls still overwrite"
        );
    }
}

fn note_failure(cache: Option<&Cache>, call: &str, message: String) {
    let error = Error::Recache {
        call: call.to_owned(),
        message,
    };
    match cache {
        Some(cache) => cache.record_error("recache", &error),
        None => tracing::warn!("larder: {error}"),
    }
}

/// Run recache calls, at most `concurrency` at a time.
pub async fn run_recache(
    cache: Option<&Cache>,
    jobs: Vec<(&'static str, RecacheFuture<'_>)>,
    concurrency: usize,
) {
    let jobs = jobs.into_iter().map(|(call, job)| {
        Box::pin(async move {
            if let Some(message) = job.await {
                note_failure(cache, call, message);
            }
        }) as recache::Job<'_>
    });
    recache::run_all(jobs, concurrency).await;
}

/// Run recache calls in the background on the current tokio runtime.
pub fn spawn_recache(
    cache: Option<Cache>,
    function: &'static str,
    jobs: Vec<(&'static str, RecacheFuture<'static>)>,
    concurrency: usize,
) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(async move { run_recache(cache.as_ref(), jobs, concurrency).await });
        }
        Err(_) => tracing::warn!(
            function,
            "larder: `background = true` needs a tokio runtime; recache skipped"
        ),
    }
}

/// Wraps an outcome so that the method probe below picks the `Result`
/// impls when the type is a `Result`, and the fallbacks otherwise.
pub struct Check<'a, T>(pub &'a T);

/// Success of a `Result`.
pub trait ResultSuccess {
    /// `is_ok()`.
    fn succeeded(&self) -> bool;
}

impl<T, E> ResultSuccess for Check<'_, Result<T, E>> {
    fn succeeded(&self) -> bool {
        self.0.is_ok()
    }
}

/// Success of anything else: always.
pub trait AnySuccess {
    /// `true`.
    fn succeeded(&self) -> bool {
        true
    }
}

impl<T> AnySuccess for &Check<'_, T> {}

/// The error of a failed `Result` whose error type is `Debug`.
pub trait ResultDescribe {
    /// The error, debug-formatted.
    fn describe(&self) -> String;
}

impl<T, E: fmt::Debug> ResultDescribe for Check<'_, Result<T, E>> {
    fn describe(&self) -> String {
        match self.0 {
            Ok(_) => "succeeded".to_owned(),
            Err(e) => format!("{e:?}"),
        }
    }
}

/// The error of anything else.
pub trait AnyDescribe {
    /// A generic description.
    fn describe(&self) -> String {
        "returned an error".to_owned()
    }
}

impl<T> AnyDescribe for &Check<'_, T> {}
