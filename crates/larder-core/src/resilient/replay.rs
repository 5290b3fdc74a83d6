//! Replaying the journal on a task of its own: a long replay (a namespace
//! clear) is not cut short by the deadline of the operation that found the
//! journal waiting, and that operation waits only until its own deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::journal::{Journal, Pending};
use crate::backend::Backend;

pub(crate) struct Replayer {
    inner: Arc<dyn Backend>,
    pub(crate) journal: Journal,
    /// Whether a replay runs.
    running: AtomicBool,
    /// Signalled when a replay ends, emptied journal or not.
    ended: Notify,
    /// The longest one journaled invalidation may take to replay.
    step_timeout: Duration,
}

impl Replayer {
    pub(crate) fn new(inner: Arc<dyn Backend>, journal: Journal, step_timeout: Duration) -> Self {
        Replayer {
            inner,
            journal,
            running: AtomicBool::new(false),
            ended: Notify::new(),
            step_timeout,
        }
    }

    /// Whether the journal is empty by `deadline`: a replay is started if
    /// none runs, and awaited until the deadline. `false` when the deadline
    /// passes first or the replay stops on a failure (the next call starts
    /// another).
    pub(crate) async fn settle(self: &Arc<Self>, deadline: Instant) -> bool {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        // Registered before the checks below, so that a replay ending in
        // between is not missed.
        ended.as_mut().enable();
        if self.journal.is_empty() {
            return true;
        }
        if !self.running.swap(true, Ordering::SeqCst) {
            let replayer = self.clone();
            let replay = async move {
                replayer.run().await;
                replayer.running.store(false, Ordering::SeqCst);
                replayer.ended.notify_waiters();
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(replay)),
                Err(_) => replay.await,
            }
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        match tokio::time::timeout_at(deadline, ended).await {
            Ok(()) => self.journal.is_empty(),
            Err(_) => false,
        }
    }

    /// Replay oldest first, until the journal is empty or one fails.
    async fn run(&self) {
        while let Some(pending) = self.journal.front() {
            let inner = &*self.inner;
            let replay = async {
                match &pending {
                    Pending::Keys(keys) => inner.delete(keys).await.map(drop),
                    Pending::Tags(tags) => inner.invalidate_tags(tags).await.map(drop),
                    Pending::Pattern(p) => inner.delete_matching(p).await.map(drop),
                    Pending::Clear(prefix) => inner.clear(prefix).await.map(drop),
                }
            };
            match tokio::time::timeout(self.step_timeout, replay).await {
                Ok(Ok(())) => self.journal.replayed(&pending),
                Ok(Err(e)) => {
                    tracing::debug!(backend = inner.label(), "larder: replay failed: {e}");
                    return;
                }
                Err(_) => return,
            }
        }
    }
}
