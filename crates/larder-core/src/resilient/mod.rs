//! [`Resilient`]: a [`Backend`] around a shared backend that bounds what an
//! outage costs.
//!
//! - **Timeout**: each operation, retries included, ends within
//!   [`ResilienceConfig::timeout`].
//! - **Retries** with exponential backoff and jitter, for transient errors
//!   only (never auth or codec errors), and only for operations that are
//!   safe to repeat (never `incr`, a lock, `get_delete`, a conditional or a
//!   guarded write).
//! - **Circuit breaker**: after [`ResilienceConfig::breaker_threshold`]
//!   failed operations in a row (or a failure rate), operations are rejected
//!   at once for [`ResilienceConfig::breaker_open_for`]; then one probe at a
//!   time decides.
//! - **Backpressure**: at most [`ResilienceConfig::max_concurrency`]
//!   operations at once, [`ResilienceConfig::queue_limit`] waiting; past
//!   that, an operation fails at once.
//! - **Invalidation journal**: a delete, tag or pattern invalidation or
//!   clear that fails, or a write that would have replaced values (its keys
//!   are deleted), is recorded and replayed before anything else goes to
//!   the backend again; until it is, operations fail (and a fail-open cache
//!   misses), so this process never serves a value an invalidation replaced.
//! - **Local fallback** (optional): while the circuit is open or the
//!   journal waits, operations go to a small in-process backend, emptied
//!   when the shared one is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::backend::{
    Backend, BoxFuture, Capabilities, Count, Entry, FillStore, FillToken, HealthReport, KeyTtl,
    SetMode, WriteOptions,
};
use crate::error::{Error, Result};

mod breaker;
pub(crate) mod config;
mod journal;
mod replay;

use breaker::{Admission, Breaker, Ticket};
pub use config::{CircuitState, Fallback, ResilienceConfig};
use journal::{Journal, Pending};
use replay::Replayer;

/// How many invalidations the journal keeps before folding them into
/// namespace clears.
const JOURNAL_CAPACITY: usize = 10_000;

/// See the module docs.
pub struct Resilient {
    inner: Arc<dyn Backend>,
    local: Option<Arc<dyn Backend>>,
    /// Whether the local fallback may hold entries (it is emptied before
    /// the shared backend is used again).
    local_used: AtomicBool,
    config: ResilienceConfig,
    breaker: Breaker,
    replayer: Arc<Replayer>,
    permits: Semaphore,
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Resilient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilient")
            .field("inner", &self.inner.label())
            .field("circuit", &self.circuit())
            .field("pending_invalidations", &self.replayer.journal.len())
            .field("config", &self.config)
            .finish()
    }
}

/// Keys per `timeout` a batch is given.
const BATCH_UNIT: usize = 1000;

/// One operation as the layer sees it.
#[derive(Clone, Copy)]
struct Op {
    name: &'static str,
    effect: Effect,
    /// How long it may take, retries included.
    budget: Duration,
}

/// What an operation does to the store, for retries and the journal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// A read, or a write that may be repeated.
    Repeatable,
    /// Must not be sent twice.
    Once,
}

impl Resilient {
    /// Wrap `inner` with `config`.
    pub fn new(inner: Arc<dyn Backend>, config: ResilienceConfig) -> Self {
        Resilient {
            breaker: Breaker::new(
                config.breaker_threshold,
                config.breaker_failure_rate,
                config.breaker_open_for,
            )
            .with_metrics(inner.label()),
            replayer: Arc::new(Replayer::new(
                inner.clone(),
                Journal::new(JOURNAL_CAPACITY).with_metrics(inner.label()),
                config.bulk_timeout.max(config.timeout),
            )),
            permits: Semaphore::new(config.max_concurrency.max(1)),
            waiting: AtomicUsize::new(0),
            local: None,
            local_used: AtomicBool::new(false),
            inner,
            config,
        }
    }

    /// Serve operations from `local` while the circuit is open or
    /// invalidations wait to be replayed.
    #[must_use]
    pub fn with_local_fallback(mut self, local: Arc<dyn Backend>) -> Self {
        self.local = Some(local);
        self
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    /// The circuit breaker's state.
    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Invalidations waiting to be replayed.
    pub fn pending_invalidations(&self) -> usize {
        self.replayer.journal.len()
    }

    fn unavailable(&self, message: String) -> Error {
        Error::Unavailable {
            backend: self.inner.kind(),
            message,
        }
    }

    /// Run `call` against the backend under the timeout, the breaker, the
    /// journal and the concurrency bound, retrying what may be repeated. On
    /// failure, an invalidation is journaled (`pending`), and the local
    /// fallback answers when there is one.
    async fn run<'a, T>(
        &'a self,
        op: Op,
        pending: Option<Pending>,
        call: impl Fn(&'a dyn Backend) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let result = self.attempt(op, &call).await;
        let Err(error) = result else {
            return result;
        };
        if !error.is_transient() {
            return Err(error);
        }
        if let Some(pending) = pending {
            self.replayer.journal.record(pending);
        }
        match &self.local {
            Some(local) => {
                self.local_used.store(true, Ordering::SeqCst);
                call(&**local).await
            }
            None => Err(error),
        }
    }

    async fn attempt<'a, T>(
        &'a self,
        op: Op,
        call: &impl Fn(&'a dyn Backend) -> BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let Op {
            name: operation,
            effect,
            budget,
        } = op;
        let started = Instant::now();
        let deadline = started + budget;
        let admission = self.breaker.admit();
        if admission == Admission::Rejected {
            return Err(self.unavailable(format!(
                "{operation}: the circuit is {} after repeated failures; operations are \
                 rejected for up to {:?} before one probe is let through",
                self.breaker.state().name(),
                self.config.breaker_open_for
            )));
        }
        let mut ticket = Ticket::new(&self.breaker, admission);
        if !self.replayer.settle(deadline).await {
            ticket.done(false);
            return Err(self.waiting_for_replay());
        }
        let _permit = self.permit(op, started).await?;
        if self.local_used.load(Ordering::Relaxed)
            && self.local_used.swap(false, Ordering::SeqCst)
            && let Some(local) = &self.local
        {
            // The shared backend is back: what the fallback holds may be
            // older than what it has.
            let _ = local.clear("").await;
        }
        let mut backoff = self.config.retry_backoff;
        let mut retries = self.config.retries;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = tokio::time::timeout(remaining, call(&*self.inner)).await;
            match outcome {
                Ok(Ok(value)) => {
                    ticket.done(true);
                    return Ok(value);
                }
                Ok(Err(e)) if e.is_transient() => {
                    let pause = jittered(backoff);
                    let time_left = deadline.saturating_duration_since(Instant::now());
                    if effect == Effect::Repeatable && retries > 0 && pause < time_left {
                        retries -= 1;
                        tokio::time::sleep(pause).await;
                        backoff = (backoff * 2).min(self.config.retry_backoff * 10);
                        continue;
                    }
                    ticket.done(false);
                    return Err(e);
                }
                // The backend answered: it is up, the request was refused.
                Ok(Err(e)) => {
                    ticket.done(true);
                    return Err(e);
                }
                Err(_) => {
                    ticket.done(false);
                    return Err(self.timed_out(op, started));
                }
            }
        }
    }

    /// A slot to run in, or a backpressure error when too many wait.
    async fn permit(&self, op: Op, started: Instant) -> Result<SemaphorePermit<'_>> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.queue_limit {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(self.unavailable(format!(
                "{}: {} operations already wait for the backend (queue limit); \
                 rejected at once",
                op.name, self.config.queue_limit
            )));
        }
        let remaining = op.budget.saturating_sub(started.elapsed());
        let permit = tokio::time::timeout(remaining, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(self.timed_out(op, started)),
        }
    }

    fn timed_out(&self, op: Op, started: Instant) -> Error {
        Error::Timeout {
            backend: self.inner.kind(),
            operation: op.name,
            elapsed: started.elapsed(),
            limit: op.budget,
        }
    }

    /// An operation on one key: one `timeout`.
    fn single(&self, name: &'static str, effect: Effect) -> Op {
        Op {
            name,
            effect,
            budget: self.config.timeout,
        }
    }

    /// An operation on `keys` keys: one `timeout` per 1,000, up to
    /// `bulk_timeout`.
    fn batch(&self, name: &'static str, effect: Effect, keys: usize) -> Op {
        let thousands = u32::try_from(keys.div_ceil(BATCH_UNIT))
            .unwrap_or(u32::MAX)
            .max(1);
        Op {
            name,
            effect,
            budget: self
                .config
                .timeout
                .saturating_mul(thousands)
                .min(self.bulk_budget()),
        }
    }

    /// An operation whose cost grows with the data (tags, patterns, clears).
    fn bulk(&self, name: &'static str) -> Op {
        Op {
            name,
            effect: Effect::Repeatable,
            budget: self.bulk_budget(),
        }
    }

    fn bulk_budget(&self) -> Duration {
        self.config.bulk_timeout.max(self.config.timeout)
    }

    fn waiting_for_replay(&self) -> Error {
        self.unavailable(format!(
            "{} invalidation(s) made while the backend was unreachable wait to be replayed; \
             nothing is read until they are",
            self.replayer.journal.len()
        ))
    }
}

/// `backend` wrapped in the resilience layer when it needs one: `config`
/// enables it, the backend is shared (an in-process backend has no outage
/// to bound), and it is not wrapped already. `local` is the optional local
/// fallback.
pub fn wrap(
    backend: Arc<dyn Backend>,
    config: &ResilienceConfig,
    local: Option<Arc<dyn Backend>>,
) -> Arc<dyn Backend> {
    if !config.enabled || !backend.capabilities().shared || backend.journals_invalidations() {
        return backend;
    }
    let mut resilient = Resilient::new(backend, config.clone());
    if let Some(local) = local {
        resilient = resilient.with_local_fallback(local);
    }
    Arc::new(resilient)
}

/// `d` give or take a quarter, so that callers that failed together do not
/// retry together.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let r = RandomState::new().hash_one(Instant::now()) % 1000;
    d.mul_f64(0.75 + r as f64 / 2000.0)
}

fn repeatable_if(mode: SetMode) -> Effect {
    if mode == SetMode::Always {
        Effect::Repeatable
    } else {
        Effect::Once
    }
}

/// A write that may replace values and fails leaves them in place, or not:
/// journal the keys' deletion, so that the values it meant to replace are
/// never served. A write that only adds replaces nothing.
fn replaced(options: &WriteOptions, keys: impl FnOnce() -> Vec<String>) -> Option<Pending> {
    (options.mode != SetMode::IfAbsent).then(|| Pending::Keys(keys()))
}

impl Backend for Resilient {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn label(&self) -> &str {
        self.inner.label()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(
            self.run(self.single("get", Effect::Repeatable), None, move |b| {
                b.get(key)
            }),
        )
    }

    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        Box::pin(self.run(
            self.single("get_entry", Effect::Repeatable),
            None,
            move |b| b.get_entry(key),
        ))
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(self.run(
            self.batch("get_many", Effect::Repeatable, keys.len()),
            None,
            move |b| b.get_many(keys),
        ))
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(self.run(
            self.single("get_and_touch", Effect::Repeatable),
            None,
            move |b| b.get_and_touch(key, ttl),
        ))
    }

    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        let pending = Pending::Keys(vec![key.to_owned()]);
        Box::pin(self.run(
            self.single("get_delete", Effect::Once),
            Some(pending),
            move |b| b.get_delete(key),
        ))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        let effect = repeatable_if(options.mode);
        let pending = replaced(options, || vec![key.to_owned()]);
        Box::pin(self.run(self.single("set", effect), pending, move |b| {
            b.set(key, value.clone(), options)
        }))
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        let effect = repeatable_if(options.mode);
        let pending = replaced(options, || entries.iter().map(|(k, _)| k.clone()).collect());
        Box::pin(self.run(
            self.batch("set_many", effect, entries.len()),
            pending,
            move |b| b.set_many(entries, options),
        ))
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        let pending = Pending::Keys(keys.to_vec());
        Box::pin(self.run(
            self.batch("delete", Effect::Repeatable, keys.len()),
            Some(pending),
            move |b| b.delete(keys),
        ))
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(
            self.run(self.single("exists", Effect::Repeatable), None, move |b| {
                b.exists(key)
            }),
        )
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        Box::pin(
            self.run(self.single("expire", Effect::Repeatable), None, move |b| {
                b.expire(key, ttl)
            }),
        )
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        Box::pin(
            self.run(self.single("ttl", Effect::Repeatable), None, move |b| {
                b.ttl(key)
            }),
        )
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        Box::pin(self.run(self.single("incr", Effect::Once), None, move |b| {
            b.incr(key, delta, ttl)
        }))
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>> {
        let pending = Pending::Tags(tags.to_vec());
        Box::pin(
            self.run(self.bulk("invalidate_tags"), Some(pending), move |b| {
                b.invalidate_tags(tags)
            }),
        )
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.run(
            self.single("tag_members", Effect::Repeatable),
            None,
            move |b| b.tag_members(tag, limit),
        ))
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        let pending = Pending::Pattern(pattern.to_owned());
        Box::pin(
            self.run(self.bulk("delete_matching"), Some(pending), move |b| {
                b.delete_matching(pattern)
            }),
        )
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.run(self.bulk("scan"), None, move |b| b.scan(pattern, limit)))
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>> {
        let pending = Pending::Clear(prefix.to_owned());
        Box::pin(self.run(self.bulk("clear"), Some(pending), move |b| b.clear(prefix)))
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.attempt(
                self.single("lock", Effect::Once),
                &move |b: &'a dyn Backend| b.lock(key, token, ttl),
            )
            .await
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            self.attempt(
                self.single("unlock", Effect::Once),
                &move |b: &'a dyn Backend| b.unlock(key, token),
            )
            .await
        })
    }

    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        Box::pin(self.run(
            self.single("begin_fill", Effect::Repeatable),
            None,
            move |b| b.begin_fill(key),
        ))
    }

    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        Box::pin(
            self.run(self.single("set_filled", Effect::Once), None, move |b| {
                b.set_filled(key, value.clone(), options, token)
            }),
        )
    }

    /// The wrapped backend's own probe (it bypasses the breaker, so that
    /// health shows what the backend says), with the circuit's state and the
    /// journal.
    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        Box::pin(async move {
            let started = Instant::now();
            let probe = tokio::time::timeout(self.config.timeout, self.inner.health()).await;
            let report = match probe {
                Ok(Ok(report)) => report,
                Ok(Err(e)) => HealthReport::unhealthy(
                    self.inner.kind(),
                    self.inner.label(),
                    started.elapsed(),
                    e,
                ),
                Err(_) => HealthReport::unhealthy(
                    self.inner.kind(),
                    self.inner.label(),
                    started.elapsed(),
                    format!("no answer within {:?}", self.config.timeout),
                ),
            };
            let circuit = self.circuit();
            let pending = self.replayer.journal.len();
            let mut report = report
                .detail("circuit", circuit.name())
                .detail("pending_invalidations", pending);
            match circuit {
                CircuitState::Open => report = report.fail("the circuit is open"),
                CircuitState::HalfOpen => {
                    report = report.degrade("the circuit is half-open (probing)");
                }
                CircuitState::Closed => {}
            }
            if pending > 0 {
                report = report.degrade(format!(
                    "{pending} invalidations wait to be replayed (reads miss until they are)"
                ));
            }
            Ok(report)
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.close()
    }

    fn journals_invalidations(&self) -> bool {
        true
    }

    fn evictions(&self) -> Option<u64> {
        self.inner.evictions()
    }

    fn invalidations(&self) -> Option<crate::InvalidationStream> {
        self.inner.invalidations()
    }
}
