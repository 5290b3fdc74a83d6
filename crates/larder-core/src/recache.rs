//! Recache: re-run cached reads with a forced refresh after a write.
//!
//! [`refresh`] wraps the future of a cached read (a `#[cache_read]`
//! function, or any code that calls [`Cache::read_through`](crate::Cache::read_through),
//! `get_or_load` or `read(..).load(..)`): the lookup is skipped, the loader
//! runs, and its value overwrites the entry. [`run_all`] runs several such
//! futures with bounded concurrency.
//!
//! ```
//! # async fn demo(cache: larder_core::Cache) -> larder_core::Result<()> {
//! use larder_core::recache::refresh;
//! async fn load(cache: &larder_core::Cache) -> larder_core::Result<u32> {
//!     cache.get_or_load("answer", || async { Ok(42) }).await
//! }
//! cache.set("answer", &41).await?;
//! assert_eq!(refresh(load(&cache)).await?, 42, "the stale value is replaced");
//! assert_eq!(cache.get::<u32>("answer").await?, Some(42));
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static FORCE_REFRESH: Cell<bool> = const { Cell::new(false) };
}

/// Consume the forced-refresh flag of the current poll.
pub(crate) fn take() -> bool {
    FORCE_REFRESH.with(|f| f.replace(false))
}

/// Run `future` with a forced refresh of the first cached read it makes.
pub fn refresh<F: Future>(future: F) -> Refresh<F> {
    Refresh {
        inner: Box::pin(future),
        armed: true,
    }
}

/// The future returned by [`refresh`].
#[must_use = "futures do nothing unless awaited"]
pub struct Refresh<F> {
    inner: Pin<Box<F>>,
    armed: bool,
}

impl<F: Future> Future for Refresh<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // The flag is set only while the inner future is polled, and the
        // first cached read consumes it: nested reads are not forced.
        let armed = self.armed;
        let before = FORCE_REFRESH.with(|f| f.replace(armed));
        let result = self.inner.as_mut().poll(cx);
        let unconsumed = FORCE_REFRESH.with(|f| f.replace(before));
        if armed && !unconsumed {
            self.armed = false;
        }
        result
    }
}

/// A boxed recache job.
pub type Job<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Run `jobs`, at most `concurrency` at a time (at least one), until all
/// are done.
pub fn run_all<'a>(jobs: impl IntoIterator<Item = Job<'a>>, concurrency: usize) -> RunAll<'a> {
    RunAll {
        waiting: jobs.into_iter().collect(),
        running: Vec::new(),
        limit: concurrency.max(1),
    }
}

/// The future returned by [`run_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct RunAll<'a> {
    waiting: VecDeque<Job<'a>>,
    running: Vec<Job<'a>>,
    limit: usize,
}

impl Future for RunAll<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            while this.running.len() < this.limit {
                match this.waiting.pop_front() {
                    Some(job) => this.running.push(job),
                    None => break,
                }
            }
            let before = this.running.len();
            this.running
                .retain_mut(|job| job.as_mut().poll(cx).is_pending());
            if this.running.is_empty() && this.waiting.is_empty() {
                return Poll::Ready(());
            }
            // Finished jobs made room for waiting ones: start them now.
            if this.running.len() == before || this.waiting.is_empty() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn run_all_bounds_concurrency() {
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<Job<'_>> = (0..10)
            .map(|_| {
                let (active, peak, done) = (active.clone(), peak.clone(), done.clone());
                Box::pin(async move {
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                }) as Job<'_>
            })
            .collect();
        run_all(jobs, 3).await;
        assert_eq!(done.load(Ordering::SeqCst), 10);
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refresh_flag_is_consumed_once() {
        let seen = refresh(async {
            let first = take();
            let second = take();
            tokio::task::yield_now().await;
            (first, second, take())
        })
        .await;
        assert_eq!(seen, (true, false, false));
        assert!(!take(), "the flag does not leak out of the wrapper");
    }
}
