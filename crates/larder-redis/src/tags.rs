//! Writes, deletes and everything that keeps the tag index right.
//!
//! Standalone and Sentinel: each operation is one script, so a value, its
//! tag sets and its stamps change together, with exact scores.
//!
//! Cluster: a value and its tag sets live on different slots, so no step
//! spans both. The protocol that keeps the index safe:
//! - a write stores the value first and then *bumps* its tag entries: a
//!   score never goes down, and every bump changes it;
//! - an entry is removed only by a *verified* removal: read its score,
//!   check that the member's value no longer carries the tag (reading the
//!   value's header only), then remove it only if the score is unchanged. A
//!   write that came in between bumped the score after storing its value,
//!   so its entry stays;
//! - deletes, untagged and re-tagged overwrites, and invalidations use it,
//!   so the index holds only live members; expired members are trimmed by
//!   score on every change to the tag.
//!
//! A member's score can be higher than its value's real expiry (a later
//! write with a shorter TTL never lowers it): the index then lives a little
//! longer than needed, never shorter than a member.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use fred::types::Value;
use larder_core::{Error, FillToken, Result, SetMode, WriteOptions, frame};

use crate::connection::{BATCH, Connection, ms};
use crate::scripts::internal_key;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    Stored,
    Declined,
    Refused,
}

/// The `mode` argument of the write scripts.
pub(crate) fn script_mode(mode: SetMode) -> Result<&'static str> {
    match mode {
        SetMode::Always => Ok("always"),
        SetMode::IfAbsent => Ok("nx"),
        SetMode::IfPresent => Ok("xx"),
        other => Err(Error::Backend {
            backend: "redis",
            message: format!(
                "write mode {other:?} is not supported by this version of larder-redis"
            ),
        }),
    }
}

/// A checked TTL in milliseconds, 0 for none.
pub(crate) fn ttl_ms(ttl: Option<Duration>) -> Result<i64> {
    ttl.map_or(Ok(0), |t| Error::check_ttl(t).map(ms))
}

fn integer(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// The strings of an array reply after its first element.
fn tail_strings(value: Value) -> (i64, Vec<String>) {
    match value {
        Value::Array(items) => {
            let mut items = items.into_iter();
            let head = items.next().as_ref().map_or(0, integer);
            (head, items.filter_map(Value::into_string).collect())
        }
        other => (integer(&other), Vec::new()),
    }
}

impl Connection {
    /// Write `value` under `key` with `options`; a fill passes its token and
    /// is refused if an invalidation it depends on came after it.
    pub(crate) async fn write(
        &self,
        key: &str,
        value: Bytes,
        options: &WriteOptions,
        token: Option<FillToken>,
    ) -> Result<Written> {
        let ttl = ttl_ms(options.ttl)?;
        let mode = script_mode(options.mode)?;
        let stored = frame::encode(&options.tags, value);
        let token = token.map_or(0, |t| i64::try_from(t.reading()).unwrap_or(i64::MAX).max(1));
        if self.cluster() {
            return self
                .cluster_write(key, stored, options, ttl, mode, token)
                .await;
        }
        let mut args = vec![
            Value::from(stored),
            Value::from(ttl),
            Value::from(mode),
            Value::from(token),
        ];
        args.extend(options.tags.iter().map(|t| Value::from(t.as_str())));
        let done: i64 = self
            .script("set", &self.scripts.write, vec![key.to_owned()], args)
            .await?;
        Ok(match done {
            1 => Written::Stored,
            0 => Written::Declined,
            _ => Written::Refused,
        })
    }

    async fn cluster_write(
        &self,
        key: &str,
        stored: Bytes,
        options: &WriteOptions,
        ttl: i64,
        mode: &str,
        token: i64,
    ) -> Result<Written> {
        let args = vec![
            Value::from(stored),
            Value::from(ttl),
            Value::from(mode),
            Value::from(token),
        ];
        let reply: Value = self
            .script(
                "set",
                &self.scripts.cluster_write,
                vec![key.to_owned()],
                args,
            )
            .await?;
        let (status, old_tags) = tail_strings(reply);
        match status {
            1 => {}
            0 => return Ok(Written::Declined),
            _ => return Ok(Written::Refused),
        }
        self.bump_tags(key, &options.tags, ttl).await?;
        let dropped: Vec<String> = old_tags
            .into_iter()
            .filter(|t| !options.tags.contains(t))
            .collect();
        self.untag_verified(key, &dropped).await?;
        Ok(Written::Stored)
    }

    /// Cluster: add `key` to the sets of `tags`, or raise its score there.
    async fn bump_tags(&self, key: &str, tags: &[String], ttl: i64) -> Result<()> {
        let calls = tags
            .iter()
            .map(|t| {
                (
                    internal_key('t', t),
                    vec![Value::from(key), Value::from(ttl)],
                )
            })
            .collect();
        self.script_per_key("set", &self.scripts.cluster_tag_bump, calls)
            .await
            .map(drop)
    }

    /// Cluster: take `key` out of the sets of `tags` where its value no
    /// longer carries the tag, unless a write bumped it meanwhile.
    pub(crate) async fn untag_verified(&self, key: &str, tags: &[String]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let scores = self
            .per_key(
                "ZSCORE",
                tags.iter()
                    .map(|t| vec![Value::from(internal_key('t', t)), Value::from(key)])
                    .collect(),
            )
            .await?;
        let carried = self.header_tags(&[key.to_owned()]).await?;
        let carried: HashSet<&String> = carried.iter().flatten().collect();
        let calls = tags
            .iter()
            .zip(scores)
            .filter(|(t, _)| !carried.contains(t))
            .filter_map(|(t, score)| {
                let score = score.into_string()?;
                Some((
                    internal_key('t', t),
                    vec![Value::from(key), Value::from(score)],
                ))
            })
            .collect();
        self.script_per_key("set", &self.scripts.cluster_tag_drop_if, calls)
            .await
            .map(drop)
    }

    /// Cluster: the tags each key's value carries, reading headers only.
    pub(crate) async fn header_tags(&self, keys: &[String]) -> Result<Vec<Vec<String>>> {
        let probe_end = i64::try_from(frame::PROBE_LEN).unwrap_or(24) - 1;
        let probes = self
            .per_key(
                "GETRANGE",
                keys.iter()
                    .map(|k| {
                        vec![
                            Value::from(k.as_str()),
                            Value::from(0i64),
                            Value::from(probe_end),
                        ]
                    })
                    .collect(),
            )
            .await?;
        let probes: Vec<Bytes> = probes
            .into_iter()
            .map(|v| v.into_bytes().unwrap_or_default())
            .collect();
        let longer: Vec<(usize, usize)> = probes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                frame::header_len(p)
                    .filter(|n| *n > p.len())
                    .map(|n| (i, n))
            })
            .collect();
        let full = self
            .per_key(
                "GETRANGE",
                longer
                    .iter()
                    .map(|(i, n)| {
                        vec![
                            Value::from(keys[*i].as_str()),
                            Value::from(0i64),
                            Value::from(i64::try_from(*n).unwrap_or(i64::MAX) - 1),
                        ]
                    })
                    .collect(),
            )
            .await?;
        let mut headers = probes;
        for ((i, _), header) in longer.iter().zip(full) {
            headers[*i] = header.into_bytes().unwrap_or_default();
        }
        Ok(headers.iter().map(|h| frame::tags(h)).collect())
    }

    /// Record invalidations of `names` (keys or tags) now, on a cluster
    /// where each stamp lives on its own slot.
    pub(crate) async fn cluster_stamp(&self, stamps: Vec<String>) -> Result<()> {
        let calls = stamps.into_iter().map(|s| (s, Vec::new())).collect();
        self.script_per_key("invalidate", &self.scripts.cluster_stamp, calls)
            .await
            .map(drop)
    }

    /// Delete `keys` (stamped, untagged); how many existed.
    pub(crate) async fn delete_keys(&self, keys: &[String]) -> Result<u64> {
        let mut n = 0;
        for chunk in keys.chunks(BATCH) {
            if !self.cluster() {
                n += self
                    .script::<u64>("delete", &self.scripts.delete, chunk.to_vec(), Vec::new())
                    .await?;
                continue;
            }
            self.cluster_stamp(chunk.iter().map(|k| internal_key('i', k)).collect())
                .await?;
            let replies = self
                .script_per_key(
                    "delete",
                    &self.scripts.cluster_delete,
                    chunk.iter().map(|k| (k.clone(), Vec::new())).collect(),
                )
                .await?;
            for (key, reply) in chunk.iter().zip(replies) {
                let (existed, tags) = tail_strings(reply);
                n += u64::try_from(existed).unwrap_or(0);
                self.untag_verified(key, &tags).await?;
            }
        }
        Ok(n)
    }

    /// Invalidate one tag: stamp it, delete its members that still carry
    /// it, and empty its set. Returns how many keys were deleted.
    pub(crate) async fn invalidate_tag(&self, tag: &str) -> Result<u64> {
        let tag_key = internal_key('t', tag);
        if !self.cluster() {
            let mut deleted = 0;
            loop {
                let (n, left): (u64, u64) = self
                    .script(
                        "invalidate_tags",
                        &self.scripts.invalidate,
                        vec![tag_key.clone()],
                        vec![Value::from(tag), Value::from(BATCH as i64)],
                    )
                    .await?;
                deleted += n;
                if left == 0 {
                    return Ok(deleted);
                }
            }
        }
        self.cluster_stamp(vec![internal_key('i', tag)]).await?;
        let mut deleted = 0;
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let batch: Vec<(String, String)> = self
                .call(
                    "ZRANGE",
                    vec![
                        Value::from(tag_key.as_str()),
                        Value::from(0i64),
                        Value::from(BATCH as i64 - 1),
                        Value::from("WITHSCORES"),
                    ],
                )
                .await?;
            let batch: Vec<(String, String)> = batch
                .into_iter()
                .filter(|(m, _)| !seen.contains(m))
                .collect();
            if batch.is_empty() {
                return Ok(deleted);
            }
            let members: Vec<String> = batch.iter().map(|(m, _)| m.clone()).collect();
            let carried = self.header_tags(&members).await?;
            let doomed: Vec<(&String, &Vec<String>)> = members
                .iter()
                .zip(&carried)
                .filter(|(_, tags)| tags.iter().any(|t| t == tag))
                .collect();
            let unlinked = self
                .per_key(
                    "UNLINK",
                    doomed
                        .iter()
                        .map(|(m, _)| vec![Value::from(m.as_str())])
                        .collect(),
                )
                .await?;
            deleted += unlinked
                .iter()
                .map(|v| v.as_u64().unwrap_or(0))
                .sum::<u64>();
            for (member, tags) in &doomed {
                let others: Vec<String> = tags.iter().filter(|t| *t != tag).cloned().collect();
                self.untag_verified(member, &others).await?;
            }
            let calls = batch
                .iter()
                .map(|(m, score)| {
                    (
                        tag_key.clone(),
                        vec![Value::from(m.as_str()), Value::from(score.as_str())],
                    )
                })
                .collect();
            self.script_per_key("invalidate_tags", &self.scripts.cluster_tag_drop_if, calls)
                .await?;
            seen.extend(members);
        }
    }

    /// Up to `limit` members of `tag` whose value still carries it.
    pub(crate) async fn tag_members(&self, tag: &str, limit: usize) -> Result<Vec<String>> {
        let tag_key = internal_key('t', tag);
        if limit == 0 {
            return Ok(Vec::new());
        }
        if !self.cluster() {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            return self
                .script(
                    "tag_members",
                    &self.scripts.tag_members,
                    vec![tag_key],
                    vec![Value::from(tag), Value::from(limit)],
                )
                .await;
        }
        let mut live = Vec::new();
        let mut from = 0i64;
        while live.len() < limit {
            let members: Vec<String> = self
                .call(
                    "ZRANGE",
                    vec![
                        Value::from(tag_key.as_str()),
                        Value::from(from),
                        Value::from(from + BATCH as i64 - 1),
                    ],
                )
                .await?;
            if members.is_empty() {
                break;
            }
            let carried = self.header_tags(&members).await?;
            live.extend(
                members
                    .into_iter()
                    .zip(carried)
                    .filter(|(_, tags)| tags.iter().any(|t| t == tag))
                    .map(|(m, _)| m),
            );
            from += BATCH as i64;
        }
        live.truncate(limit);
        Ok(live)
    }

    /// Give a live key a new TTL, and its tag sets the expiry to match.
    pub(crate) async fn expire_key(&self, key: &str, ttl: Duration) -> Result<bool> {
        let ttl = ms(Error::check_ttl(ttl)?);
        if !self.cluster() {
            let done: i64 = self
                .script(
                    "expire",
                    &self.scripts.expire,
                    vec![key.to_owned()],
                    vec![Value::from(ttl)],
                )
                .await?;
            return Ok(done == 1);
        }
        let done: i64 = self
            .call("PEXPIRE", vec![Value::from(key), Value::from(ttl)])
            .await?;
        if done == 0 {
            return Ok(false);
        }
        let tags = self.header_tags(&[key.to_owned()]).await?;
        self.bump_tags(key, tags.first().map_or(&[][..], Vec::as_slice), ttl)
            .await?;
        Ok(true)
    }

    /// The value under `key` with its TTL renewed, tags included.
    pub(crate) async fn get_touch(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let ttl = ms(Error::check_ttl(ttl)?);
        let script = if self.cluster() {
            &self.scripts.cluster_get_touch
        } else {
            &self.scripts.get_touch
        };
        let value: Option<Bytes> = self
            .script(
                "get_and_touch",
                script,
                vec![key.to_owned()],
                vec![Value::from(ttl)],
            )
            .await?;
        let Some(value) = value else {
            return Ok(None);
        };
        let (payload, tags) = frame::decode(value);
        if self.cluster() {
            self.bump_tags(key, &tags, ttl).await?;
        }
        Ok(Some(payload))
    }

    /// The value under `key`, deleted (stamped, untagged) in the same step.
    pub(crate) async fn get_delete(&self, key: &str) -> Result<Option<Bytes>> {
        if !self.cluster() {
            let value: Option<Bytes> = self
                .script(
                    "get_delete",
                    &self.scripts.get_delete,
                    vec![key.to_owned()],
                    Vec::new(),
                )
                .await?;
            return Ok(value.map(frame::payload));
        }
        self.cluster_stamp(vec![internal_key('i', key)]).await?;
        let value: Option<Bytes> = self
            .script(
                "get_delete",
                &self.scripts.cluster_get_delete,
                vec![key.to_owned()],
                Vec::new(),
            )
            .await?;
        let Some(value) = value else {
            return Ok(None);
        };
        let (payload, tags) = frame::decode(value);
        self.untag_verified(key, &tags).await?;
        Ok(Some(payload))
    }
}
