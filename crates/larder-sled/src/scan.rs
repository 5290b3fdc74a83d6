//! Patterns and `clear`: a range read over the pattern's literal prefix
//! (`scan_prefix`), larder's glob on each key, deletions in small
//! transactions. Like `invalidate_tags`, `delete_matching` and `clear`
//! stamp the namespace for the fill guard before they read the range (see
//! `tags.rs`).

use larder_core::glob::Glob;
use larder_core::{Count, Result};
use sled::IVec;

use crate::connection::Store;
use crate::fill::prefix_stamp;
use crate::format::now_ms;
use crate::tags::{CHUNK, live_at};

impl Store {
    pub(crate) fn scan(&self, pattern: &str, limit: usize) -> Result<Vec<String>> {
        let glob = Glob::new(pattern)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let now = now_ms();
        for item in self.entries.scan_prefix(glob.literal_prefix().as_bytes()) {
            let (key, raw) = item.map_err(self.err("scan"))?;
            let Ok(key) = std::str::from_utf8(&key) else {
                continue;
            };
            if live_at(&raw, now) && glob.matches(key) {
                out.push(key.to_owned());
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn delete_matching(&self, pattern: &str) -> Result<Count> {
        let glob = Glob::new(pattern)?;
        let prefix = glob.literal_prefix();
        self.stamp_first("delete_matching", &prefix_stamp(&prefix))?;
        self.delete_where("delete_matching", &prefix, |key| glob.matches(key))
            .map(Count::Exact)
    }

    pub(crate) fn clear(&self, prefix: &str) -> Result<Count> {
        self.stamp_first("clear", &prefix_stamp(prefix))?;
        let n = self.delete_where("clear", prefix, |_| true)?;
        for lock in self.locks.scan_prefix(prefix.as_bytes()).keys() {
            let lock = lock.map_err(self.err("clear"))?;
            self.locks.remove(lock).map_err(self.err("clear"))?;
        }
        self.flush_if_always("clear")?;
        Ok(Count::Exact(n))
    }

    /// Delete every entry whose key starts with `prefix` and `matches`,
    /// a chunk per transaction; how many were live.
    fn delete_where(
        &self,
        operation: &'static str,
        prefix: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<u64> {
        let mut from: Vec<u8> = prefix.as_bytes().to_vec();
        let mut live = 0;
        loop {
            let mut chosen: Vec<String> = Vec::new();
            let mut last: Option<IVec> = None;
            for key in self.entries.range(from.as_slice()..).keys() {
                let key = key.map_err(self.err(operation))?;
                if !key.starts_with(prefix.as_bytes()) {
                    break;
                }
                if let Ok(text) = std::str::from_utf8(&key)
                    && matches(text)
                {
                    chosen.push(text.to_owned());
                }
                last = Some(key);
                if chosen.len() >= CHUNK {
                    break;
                }
            }
            if !chosen.is_empty() {
                let now = now_ms();
                let (n, removed) = self.write(operation, |tx| {
                    let (mut n, mut removed) = (0u64, 0i64);
                    for key in &chosen {
                        if let Some(old) = tx.remove(key)? {
                            removed += 1;
                            n += u64::from(live_at(&old, now));
                        }
                    }
                    Ok((n, removed))
                })?;
                self.counted(-removed);
                live += n;
            }
            match last {
                Some(key) if chosen.len() >= CHUNK => {
                    from = key.to_vec();
                    from.push(0);
                }
                _ => return Ok(live),
            }
        }
    }
}
