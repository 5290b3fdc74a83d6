//! The fill guard: a read-through load takes the server's time when it
//! starts; a delete, tag invalidation, pattern invalidation or clear stamps
//! what it invalidated with the server's time; the load's store is refused
//! when a stamp it depends on (its key, its tags, its namespace) is at or
//! after its start, or when it started more than `MAX_FILL_AGE` ago (stamps
//! live that long).
//!
//! Standalone and Sentinel: the check and the write are one script
//! ([`FillGuard::Atomic`](larder_core::FillGuard::Atomic)). Cluster: stamps
//! live on other slots, so the stamps are read before the write and again
//! after it, and a write that raced an invalidation is deleted again
//! ([`FillGuard::Windowed`](larder_core::FillGuard::Windowed)): for about
//! one round trip a reader may see it. Cluster nodes have their own clocks,
//! so stamps count from [`CLUSTER_CLOCK_SKEW`] earlier.

use std::time::Duration;

use bytes::Bytes;
use fred::types::Value;
use larder_core::{FillStore, FillToken, Result, WriteOptions, frame};

use crate::connection::Connection;
use crate::scripts::{internal_key, namespace_stamp_key};
use crate::tags::Written;

/// How far apart cluster nodes' clocks may be for the guard to hold.
pub(crate) const CLUSTER_CLOCK_SKEW: Duration = Duration::from_millis(250);

impl Connection {
    /// The value under `key` (if any) and a fill token: the server's time.
    pub(crate) async fn begin_fill(&self, key: &str) -> Result<(Option<Bytes>, FillToken)> {
        let (value, now): (Option<Bytes>, i64) = self
            .script(
                "get",
                &self.scripts.begin_fill,
                vec![key.to_owned()],
                Vec::new(),
            )
            .await?;
        let token = FillToken::new(u64::try_from(now).unwrap_or(1).max(1));
        Ok((value.map(frame::payload), token))
    }

    /// Store a loaded value unless an invalidation it depends on came after
    /// `token`.
    pub(crate) async fn set_filled(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: FillToken,
    ) -> Result<FillStore> {
        if !self.cluster() {
            return Ok(match self.write(key, value, options, Some(token)).await? {
                Written::Stored => FillStore::Stored,
                Written::Declined => FillStore::Declined,
                Written::Refused => FillStore::Refused,
            });
        }
        if self.stamped_since(key, &options.tags, token).await? {
            return Ok(FillStore::Refused);
        }
        match self.write(key, value.clone(), options, Some(token)).await? {
            Written::Stored => {}
            Written::Declined => return Ok(FillStore::Declined),
            Written::Refused => return Ok(FillStore::Refused),
        }
        if self.stamped_since(key, &options.tags, token).await? {
            // Raced an invalidation: undo, unless someone wrote since.
            let stored = frame::encode(&options.tags, value);
            let _: i64 = self
                .script(
                    "set",
                    &self.scripts.cluster_delete_if,
                    vec![key.to_owned()],
                    vec![Value::from(stored)],
                )
                .await?;
            return Ok(FillStore::Refused);
        }
        Ok(FillStore::Stored)
    }

    /// Cluster: whether the key, one of `tags` or the namespace was stamped
    /// at or after `token` (less the clock skew allowance).
    async fn stamped_since(&self, key: &str, tags: &[String], token: FillToken) -> Result<bool> {
        let mut stamps = vec![internal_key('i', key), namespace_stamp_key(key)];
        stamps.extend(tags.iter().map(|t| internal_key('i', t)));
        let values = self
            .per_key(
                "GET",
                stamps.into_iter().map(|s| vec![Value::from(s)]).collect(),
            )
            .await?;
        let skew = u64::try_from(CLUSTER_CLOCK_SKEW.as_millis()).unwrap_or(0);
        let since = token.reading().saturating_sub(skew);
        Ok(values
            .into_iter()
            .filter_map(|v| v.as_u64())
            .any(|stamp| stamp >= since))
    }
}
