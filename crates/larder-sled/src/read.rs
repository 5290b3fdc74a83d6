//! Reads: lazy expiry (an expired entry is never returned, whether or not
//! the sweeper has removed it yet).

use bytes::Bytes;
use larder_core::{Entry, Error, Expiry, KeyTtl, Result};
use sled::IVec;

use crate::connection::Store;
use crate::error::KIND;
use crate::format::{self, Header, now_ms};

impl Store {
    /// The live entry under `key` and its header.
    pub(crate) fn read(
        &self,
        operation: &str,
        key: &str,
        now: u64,
    ) -> Result<Option<(IVec, Header)>> {
        let Some(raw) = self.entries.get(key).map_err(self.err(operation))? else {
            return Ok(None);
        };
        let Some(header) = Header::parse(&raw) else {
            return Err(Error::Backend {
                backend: KIND,
                message: format!(
                    "{operation}: the entry under {key:?} in {} is not in larder-sled's format \
                     (damaged, or written by another program); overwrite or delete it",
                    self.dir().display()
                ),
            });
        };
        Ok(header.live(now).then_some((raw, header)))
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self
            .read("get", key, now_ms())?
            .map(|(raw, _)| format::payload(raw)))
    }

    pub(crate) fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        let now = now_ms();
        Ok(self.read("get_entry", key, now)?.map(|(raw, header)| {
            let expiry = match header.remaining(now) {
                Some(left) => Expiry::After(left),
                None => Expiry::Never,
            };
            let tags = format::tags(&raw);
            Entry::new(format::payload(raw), expiry, tags)
        }))
    }

    pub(crate) fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.read("exists", key, now_ms())?.is_some())
    }

    pub(crate) fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let now = now_ms();
        Ok(match self.read("ttl", key, now)? {
            None => KeyTtl::Missing,
            Some((_, header)) => match header.remaining(now) {
                Some(left) => KeyTtl::Expires(left),
                None => KeyTtl::Persistent,
            },
        })
    }
}
