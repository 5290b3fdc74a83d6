//! The sweeper: expired entries leave, with their tag and expiry rows, in
//! small transactions every few seconds, on a thread of its own. And the
//! bound: beyond `max_entries`, the soonest-expiring entries are evicted
//! (then, when too few entries expire, the first keys in order).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use larder_core::{Error, Result};
use sled::IVec;

use crate::connection::Store;
use crate::error::KIND;
use crate::format::{Header, expiry_row, now_ms, split_expiry_row};

impl Store {
    /// Remove every entry expired by now, its tag and expiry rows with it,
    /// and expired locks; how many entries were removed.
    pub(crate) fn sweep(&self) -> Result<u64> {
        let now = now_ms();
        let batch = self.config.sweep_batch.max(1);
        // Rows at or before `now`: strictly below the first row of now + 1.
        let end = expiry_row(now.saturating_add(1), "");
        let mut total = 0;
        loop {
            let rows = self
                .expiry
                .range(..end.as_slice())
                .keys()
                .take(batch)
                .collect::<std::result::Result<Vec<IVec>, _>>()
                .map_err(self.err("sweep"))?;
            if rows.is_empty() {
                break;
            }
            let removed = self.transact("sweep", |tx| {
                let mut removed = 0i64;
                for row in &rows {
                    let current = match split_expiry_row(row) {
                        Some((at, key)) => tx
                            .entries
                            .get(key)?
                            .filter(|raw| Header::parse(raw).is_some_and(|h| h.expires_at == at))
                            .map(|_| key),
                        None => None,
                    };
                    match current {
                        Some(key) => {
                            tx.remove(key)?;
                            removed += 1;
                        }
                        // A row its entry no longer backs.
                        None => {
                            tx.expiry.remove(row.clone())?;
                        }
                    }
                }
                Ok(removed)
            })?;
            self.counted(-removed);
            total += u64::try_from(removed).unwrap_or(0);
            if rows.len() < batch {
                break;
            }
        }
        self.sweep_locks(now)?;
        Ok(total)
    }

    /// Evict beyond `max_entries`. A failure is logged: the write that
    /// triggered it has succeeded.
    pub(crate) fn evict_if_over(&self) {
        let Some(max) = self.config.max_entries else {
            return;
        };
        let over = self.count.load(Ordering::Relaxed) - i64::try_from(max).unwrap_or(i64::MAX);
        let Ok(over) = usize::try_from(over) else {
            return;
        };
        if over == 0 {
            return;
        }
        match self.evict(over) {
            Ok(n) => {
                self.evictions.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir().display(), "sled eviction failed")
            }
        }
    }

    /// Evict `n` entries: soonest-expiring first, then the first keys.
    fn evict(&self, n: usize) -> Result<u64> {
        let mut keys: Vec<String> = Vec::with_capacity(n);
        for row in self.expiry.iter().keys().take(n) {
            let row = row.map_err(self.err("evict"))?;
            if let Some((_, key)) = split_expiry_row(&row) {
                keys.push(key.to_owned());
            }
        }
        if keys.len() < n {
            for key in self.entries.iter().keys() {
                let key = key.map_err(self.err("evict"))?;
                let Ok(key) = String::from_utf8(key.to_vec()) else {
                    continue;
                };
                if !keys.contains(&key) {
                    keys.push(key);
                }
                if keys.len() >= n {
                    break;
                }
            }
        }
        let removed = self.transact("evict", |tx| {
            let mut removed = 0i64;
            for key in &keys {
                removed += i64::from(tx.remove(key)?.is_some());
            }
            Ok(removed)
        })?;
        self.counted(-removed);
        Ok(u64::try_from(removed).unwrap_or(0))
    }
}

/// The sweeper thread; stopped by [`Sweeper::stop`].
#[derive(Debug)]
pub(crate) struct Sweeper {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl Sweeper {
    /// Sweep `store` every `every` until stopped or until the store is
    /// gone.
    pub(crate) fn start(store: &Arc<Store>, every: Duration) -> Result<Sweeper> {
        let weak: Weak<Store> = Arc::downgrade(store);
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = thread::Builder::new()
            .name("larder-sled-sweeper".to_owned())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                    let Some(store) = weak.upgrade() else {
                        return;
                    };
                    if let Err(e) = store.sweep() {
                        tracing::warn!(error = %e, dir = %store.dir().display(), "sled sweep failed");
                    }
                }
            })
            .map_err(|e| Error::Backend {
                backend: KIND,
                message: format!("cannot start the sweeper thread: {e}"),
            })?;
        Ok(Sweeper { stop, handle })
    }

    /// Stop the thread and wait for it (a sweep in progress finishes).
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        if self.handle.thread().id() != thread::current().id() {
            let _ = self.handle.join();
        }
    }
}
