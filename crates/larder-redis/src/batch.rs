//! Batches: `MGET` (one pipelined `GET` per key on a cluster), pipelined
//! writes and `UNLINK`s.

use bytes::Bytes;
use fred::types::Value;
use larder_core::{Result, WriteOptions, frame};

use crate::connection::{BATCH, Connection};
use crate::tags::{Written, script_mode, ttl_ms};

fn as_bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::Null => None,
        other => other.into_bytes(),
    }
}

impl Connection {
    /// The stored bytes of `keys` (frames included), in order.
    pub(crate) async fn get_all(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Value> = if self.cluster() {
            let calls = keys.iter().map(|k| vec![Value::from(k.as_str())]).collect();
            self.per_key("GET", calls).await?
        } else {
            let args = keys.iter().map(|k| Value::from(k.as_str())).collect();
            self.call("MGET", args).await?
        };
        Ok(values.into_iter().map(as_bytes).collect())
    }

    /// Write many values with the same options: the write script,
    /// pipelined (one at a time on a cluster, where each write is several
    /// steps). Returns how many were written.
    pub(crate) async fn write_many(
        &self,
        entries: &[(String, Bytes)],
        options: &WriteOptions,
    ) -> Result<u64> {
        if self.cluster() {
            let mut written = 0;
            for (key, value) in entries {
                let done = self.write(key, value.clone(), options, None).await?;
                written += u64::from(done == Written::Stored);
            }
            return Ok(written);
        }
        let ttl = ttl_ms(options.ttl)?;
        let mode = script_mode(options.mode)?;
        let mut written = 0;
        for chunk in entries.chunks(BATCH) {
            let calls = chunk
                .iter()
                .map(|(key, value)| {
                    let mut args = vec![
                        Value::from(frame::encode(&options.tags, value.clone())),
                        Value::from(ttl),
                        Value::from(mode),
                        Value::from(0i64),
                    ];
                    args.extend(options.tags.iter().map(|t| Value::from(t.as_str())));
                    (key.clone(), args)
                })
                .collect();
            let replies = self
                .script_per_key("set_many", &self.scripts.write, calls)
                .await?;
            written += replies.iter().filter(|v| v.as_i64() == Some(1)).count() as u64;
        }
        Ok(written)
    }

    /// `UNLINK` keys in batches (internal keys, no tags to mind); how many
    /// existed.
    pub(crate) async fn unlink(&self, keys: &[String]) -> Result<u64> {
        let mut n = 0;
        for chunk in keys.chunks(BATCH) {
            if self.cluster() {
                let calls = chunk
                    .iter()
                    .map(|k| vec![Value::from(k.as_str())])
                    .collect();
                for v in self.per_key("UNLINK", calls).await? {
                    n += v.as_u64().unwrap_or(0);
                }
            } else {
                let args = chunk.iter().map(|k| Value::from(k.as_str())).collect();
                n += self.call::<u64>("UNLINK", args).await?;
            }
        }
        Ok(n)
    }
}
