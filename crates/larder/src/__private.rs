//! Support for the code `#[cache_read]` and `#[cache_write]` generate. Not
//! a public API: it changes with the macros.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

pub use larder_core::key::{
    push_part, push_part_escaping, push_part_escaping_lower, push_part_hash, push_part_lower,
};
use larder_core::{Cache, Error, Outcome, recache, warn_uninstalled};
pub use larder_core::{FillOptions, Plain, Resource, Ttl, TtlBucket, installed};

/// Fill lock timeout of `lock = true`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// A recache call: `None` when it succeeded, else what went wrong.
pub type RecacheFuture<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// The body of a `#[cache_read]` function.
#[allow(clippy::too_many_arguments)]
pub async fn read<O, Fut, C, T, S>(
    cache: Option<&Cache>,
    function: &'static str,
    key: &str,
    tags: T,
    fill: &FillOptions,
    condition: C,
    share: S,
    body: Fut,
) -> O
where
    O: Outcome + Send + 'static,
    Fut: Future<Output = O>,
    C: FnOnce(&O::Subject) -> bool,
    T: FnOnce() -> Vec<String>,
    S: Fn(&O) -> Option<O>,
{
    match cache {
        None => {
            warn_uninstalled(function);
            body.await
        }
        Some(cache) => {
            cache
                .read_through(key, tags, fill, condition, share, || body)
                .await
        }
    }
}

/// Classifies the return type `R` of a cached function by the type system,
/// not by its name: the attributes call methods on `&Adapt::<R>::NEW`, and
/// method resolution picks the `Result` / `Option` impls (which take
/// `&self` on `Adapt<R>`) before the fallback for everything else (which
/// takes `&self` on `&Adapt<R>`, one auto-reference further). So type
/// aliases (`type ApiResult<T> = Result<T, ApiError>`) and fully qualified
/// paths behave like `Result`.
pub struct Adapt<R>(PhantomData<R>);

impl<R> Adapt<R> {
    /// The probe.
    pub const NEW: Adapt<R> = Adapt(PhantomData);
}

/// `Result` and `Option` are outcomes as they are.
pub trait ViaOutcome {
    /// The return type.
    type Returned: Outcome;
    /// Into the outcome the read-through handles.
    fn wrap(&self, returned: Self::Returned) -> Self::Returned {
        returned
    }
    /// Back into the return type.
    fn unwrap(&self, outcome: Self::Returned) -> Self::Returned {
        outcome
    }
}

impl<T: Serialize + DeserializeOwned, E> ViaOutcome for Adapt<Result<T, E>> {
    type Returned = Result<T, E>;
}

impl<T: Serialize + DeserializeOwned> ViaOutcome for Adapt<Option<T>> {
    type Returned = Option<T>;
}

/// Any other return type is stored whole, as a [`Plain`] value.
pub trait ViaPlain<R> {
    /// Into the outcome the read-through handles.
    fn wrap(&self, returned: R) -> Plain<R> {
        Plain(returned)
    }
    /// Back into the return type.
    fn unwrap(&self, outcome: Plain<R>) -> R {
        outcome.0
    }
}

impl<R> ViaPlain<R> for &Adapt<R> {}

/// Copies an outcome for a caller that shared its load, or says it cannot.
pub type Share<O> = fn(&O) -> Option<O>;

/// A failed `Result` whose error is `Clone` is copied to the callers that
/// shared its load.
pub trait ShareClone<T, E: Clone> {
    /// The copier.
    fn share(&self) -> Share<Result<T, E>> {
        |outcome| match outcome {
            Err(e) => Some(Err(e.clone())),
            Ok(_) => None,
        }
    }
}

impl<T, E: Clone> ShareClone<T, E> for Adapt<Result<T, E>> {}

/// Other failures cannot be copied: each sharing caller loads for itself.
pub trait ShareNothing {
    /// The copier that copies nothing.
    fn share<O>(&self) -> Share<O> {
        |_| None
    }
}

impl<R> ShareNothing for &Adapt<R> {}

/// `cache_none` only makes sense for a function returning an `Option`.
#[diagnostic::on_unimplemented(
    message = "`cache_none` applies to functions returning `Option<T>`, not `{Self}`",
    label = "this return type is not an `Option`"
)]
pub trait ReturnsOption {}

impl<T> ReturnsOption for Option<T> {}

/// Compiles only when `R` is an `Option` (aliases included).
pub const fn expect_option<R: ReturnsOption>() {}

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

/// Success of a `Result` return type: `is_ok()`.
pub trait ResultReturned<T, E> {
    /// Whether the call succeeded.
    fn succeeded(&self, returned: &Result<T, E>) -> bool {
        returned.is_ok()
    }
}

impl<T, E> ResultReturned<T, E> for Adapt<Result<T, E>> {}

/// Success of any other return type: always.
pub trait OtherReturned<R> {
    /// `true`.
    fn succeeded(&self, _returned: &R) -> bool {
        true
    }
}

impl<R> OtherReturned<R> for &Adapt<R> {}

/// Wraps the value a recache call returned (whose type the attribute does
/// not name) so that the method probes below pick the `Result` impls when
/// it is a `Result`, and the fallbacks otherwise.
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
