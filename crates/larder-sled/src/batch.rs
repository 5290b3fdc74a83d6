//! Batches: `get_many`, `set_many` and `delete` of many keys. A batch write
//! is one transaction (and, with `flush=always`, one flush).

use bytes::Bytes;
use larder_core::{Result, WriteOptions};

use crate::connection::Store;
use crate::fill::key_stamp;
use crate::format::now_ms;
use crate::tags::{Prepared, live_at};

impl Store {
    pub(crate) fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Every entry honours `options.mode` on its own; returns how many were
    /// written.
    pub(crate) fn set_many(
        &self,
        entries: &[(String, Bytes)],
        options: &WriteOptions,
    ) -> Result<u64> {
        let now = now_ms();
        let prepared = entries
            .iter()
            .map(|(key, value)| self.prepare(key, value, options, now))
            .collect::<Result<Vec<Prepared<'_>>>>()?;
        let (written, created) = self.write("set_many", |tx| {
            let (mut written, mut created) = (0u64, 0u64);
            for p in &prepared {
                let done = tx.set_one(p, options.mode, now)?;
                written += u64::from(done.written);
                created += u64::from(done.created);
            }
            Ok((written, created))
        })?;
        self.after_write(created);
        Ok(written)
    }

    /// Delete `keys` (stamping each for the fill guard, in the same
    /// transaction); how many held a live value.
    pub(crate) fn delete(&self, keys: &[String]) -> Result<u64> {
        let now = now_ms();
        let stamp = self.clock.next();
        let rows: Vec<Vec<u8>> = keys.iter().map(|k| key_stamp(k)).collect();
        let (live, removed) = self.write("delete", |tx| {
            let (mut live, mut removed) = (0u64, 0i64);
            for (key, row) in keys.iter().zip(&rows) {
                tx.stamp(row, stamp)?;
                if let Some(old) = tx.remove(key)? {
                    removed += 1;
                    live += u64::from(live_at(&old, now));
                }
            }
            Ok((live, removed))
        })?;
        self.counted(-removed);
        Ok(live)
    }
}
