//! Early refresh, stale-while-revalidate and stale-if-error.
//!
//! A value stored by a read with a fresh window (`early_ttl`, `stale_ttl`,
//! `xfetch`) carries `fresh_until` in its header. A hit past it is *due*:
//! one caller claims the refresh (in this process a set of keys being
//! refreshed; across processes a short lock on the backend), loads, and
//! overwrites the value (guarded like any fill); everyone else keeps
//! getting the current value meanwhile. When the refresh fails, the current
//! value is served on (stale-if-error) for as long as it lives: the stale
//! window past its TTL, or the rest of its TTL after an early refresh.
//!
//! A loader may borrow from its caller, so it cannot always move to a
//! background task: the caller that claims the refresh runs it inline and
//! returns the new value. `ReadRequest::load_owned` takes an owned loader
//! and refreshes on a spawned task instead, every caller getting the
//! current value at once.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::through::{FillPlan, ReadThrough};
use super::{FillOptions, Outcome};
use crate::core::Core;
use crate::lock::{self, Lock};
use crate::sync::lock as lock_mutex;

/// The right to refresh one key; dropping it lets another caller claim it.
pub(crate) struct Claim {
    refreshing: Arc<Mutex<HashSet<String>>>,
    stored: String,
    lock: Option<Lock>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock_mutex(&self.refreshing).remove(&self.stored);
    }
}

impl Claim {
    /// Give the claim back, releasing its lock on the backend.
    pub(crate) async fn release(mut self, core: &Core) {
        if let Some(lock) = self.lock.take()
            && let Err(e) = lock.release().await
        {
            core.record_error("unlock", &e);
        }
    }
}

impl ReadThrough {
    /// Claim the refresh of `stored`, or `None` when another caller (of this
    /// process, or of another one sharing the backend) has it.
    pub(crate) async fn claim(
        &self,
        core: &Core,
        key: &str,
        stored: &str,
        options: &FillOptions,
    ) -> Option<Claim> {
        if !lock_mutex(&self.refreshing).insert(stored.to_owned()) {
            return None;
        }
        let mut claim = Claim {
            refreshing: self.refreshing.clone(),
            stored: stored.to_owned(),
            lock: None,
        };
        if core.caps.locks {
            match lock::take(core, &format!("__refresh:{key}"), options.lock_timeout).await {
                Ok(Some(lock)) => claim.lock = Some(lock),
                Ok(None) => return None,
                // Refresh without the lock: at worst two processes load.
                Err(e) => core.record_error("lock", &e),
            }
        }
        Some(claim)
    }

    /// A due hit: refresh inline if this caller claims it, returning the new
    /// value; otherwise, or if the refresh fails, the current one.
    pub(super) async fn refresh_inline<O, L, Fut, T, C, S>(
        &self,
        core: &Core,
        plan: FillPlan<'_, T, C, S>,
        current: O::Value,
        loader: L,
    ) -> O
    where
        O: Outcome + Send + 'static,
        L: FnOnce() -> Fut,
        Fut: Future<Output = O>,
        T: FnOnce() -> Vec<String>,
        C: FnOnce(&O::Subject) -> bool,
        S: Fn(&O) -> Option<O>,
    {
        let Some(claim) = self.claim(core, plan.key, plan.stored, plan.options).await else {
            return O::from_stored(current);
        };
        let outcome = self.refresh(core, plan, loader).await;
        claim.release(core).await;
        match outcome {
            Some(outcome) => outcome,
            None => O::from_stored(current),
        }
    }

    /// Load and overwrite; `None` when the load failed (the current value
    /// is then served on).
    pub(crate) async fn refresh<O, L, Fut, T, C, S>(
        &self,
        core: &Core,
        plan: FillPlan<'_, T, C, S>,
        loader: L,
    ) -> Option<O>
    where
        O: Outcome + Send + 'static,
        L: FnOnce() -> Fut,
        Fut: Future<Output = O>,
        T: FnOnce() -> Vec<String>,
        C: FnOnce(&O::Subject) -> bool,
        S: Fn(&O) -> Option<O>,
    {
        core.counters.refreshes.add(1);
        let lifetimes = match self.lifetimes(core, plan.options) {
            Ok(l) => l,
            Err(e) => {
                core.record_error("read_through", &e);
                return None;
            }
        };
        let mut unshared = None;
        let outcome = self
            .lead(core, plan, &lifetimes, true, loader, &mut unshared)
            .await;
        if outcome.value().is_none() {
            core.counters.stale.add(1);
            tracing::debug!("larder: a refresh failed; the current value is served on");
            return None;
        }
        Some(outcome)
    }
}
