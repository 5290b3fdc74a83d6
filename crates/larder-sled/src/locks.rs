//! Token-checked locks with expiry, in their own tree: each `lock` and
//! `unlock` is one transaction over it. An expired lock is free (checked on
//! every `lock`) and the sweeper removes it.

use std::time::Duration;

use larder_core::Result;
use sled::transaction::ConflictableTransactionResult;

use crate::connection::Store;
use crate::error;
use crate::format::{lock_value, now_ms, split_lock};
use crate::tags::expiry_of;

impl Store {
    pub(crate) fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let now = now_ms();
        let until = expiry_of(now, Some(ttl))?;
        let value = lock_value(until, token);
        let taken = self
            .locks
            .transaction(
                |locks| -> ConflictableTransactionResult<bool, larder_core::Error> {
                    let held = locks
                        .get(key)?
                        .is_some_and(|v| split_lock(&v).is_some_and(|(at, _)| at > now));
                    if held {
                        return Ok(false);
                    }
                    locks.insert(key.as_bytes(), value.clone())?;
                    Ok(true)
                },
            )
            .map_err(|e| error::transaction(self.dir(), "lock", e))?;
        self.flush_if_always("lock")?;
        Ok(taken)
    }

    pub(crate) fn unlock(&self, key: &str, token: &str) -> Result<bool> {
        let now = now_ms();
        let released = self
            .locks
            .transaction(
                |locks| -> ConflictableTransactionResult<bool, larder_core::Error> {
                    let mine = locks.get(key)?.is_some_and(|v| {
                        split_lock(&v)
                            .is_some_and(|(at, holder)| at > now && holder == token.as_bytes())
                    });
                    if mine {
                        locks.remove(key.as_bytes())?;
                    }
                    Ok(mine)
                },
            )
            .map_err(|e| error::transaction(self.dir(), "unlock", e))?;
        self.flush_if_always("unlock")?;
        Ok(released)
    }

    /// Remove expired locks; how many.
    pub(crate) fn sweep_locks(&self, now: u64) -> Result<u64> {
        let mut removed = 0;
        for item in self.locks.iter() {
            let (key, value) = item.map_err(self.err("sweep"))?;
            if split_lock(&value).is_none_or(|(at, _)| at <= now) {
                // Only if unchanged since it was read: a new holder stays.
                let swapped = self
                    .locks
                    .compare_and_swap(&key, Some(&value), None as Option<&[u8]>)
                    .map_err(self.err("sweep"))?;
                removed += u64::from(swapped.is_ok());
            }
        }
        Ok(removed)
    }
}
