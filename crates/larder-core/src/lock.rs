//! Distributed locks: [`Lock`] and the token that identifies its holder.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::Backend;
use crate::core::Core;
use crate::error::Result;

/// A held distributed lock; release it with [`Lock::release`]. If dropped
/// unreleased, the lock expires after its TTL.
#[derive(Debug)]
pub struct Lock {
    backend: Arc<dyn Backend>,
    key: String,
    token: String,
}

impl Lock {
    /// The random token identifying this holder.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Release the lock if this holder still has it. Returns `false` when it
    /// had expired and someone else (or no one) holds it now.
    pub async fn release(self) -> Result<bool> {
        self.backend.unlock(&self.key, &self.token).await
    }
}

/// Try to take the lock `name` of `core`'s namespace for `ttl`.
pub(crate) async fn take(core: &Core, name: &str, ttl: Duration) -> Result<Option<Lock>> {
    let key = core.key(&format!("__lock:{name}"))?;
    let ttl = crate::Error::check_ttl(ttl)?;
    let token = token();
    let taken = core.backend.lock(&key, &token, ttl).await?;
    Ok(taken.then(|| Lock {
        backend: core.backend.clone(),
        key,
        token,
    }))
}

/// A token unlikely to repeat across processes: a process-random seed mixed
/// with time and a counter.
pub(crate) fn token() -> String {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let a = state.hash_one((n, nanos, std::process::id()));
    let b = state.hash_one((a, n));
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_differ() {
        assert_ne!(super::token(), super::token());
        assert_eq!(super::token().len(), 32);
    }
}
