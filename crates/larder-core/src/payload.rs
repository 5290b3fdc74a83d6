//! What a set stores: a serde value or raw bytes, encoded behind the
//! envelope header.

use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;

use crate::codec::{self, Codec};
use crate::error::Result;

mod sealed {
    pub trait Sealed {}
}

/// A value a [`SetRequest`](crate::SetRequest) can store: a serde value ([`Typed`]) or bytes
/// kept unchanged ([`Raw`]). Sealed.
pub trait Payload: sealed::Sealed + Sync {
    /// The stored bytes: envelope header and payload.
    fn encode(&self, codec: Codec, fresh_until: Option<SystemTime>) -> Result<Bytes>;
}

/// A serde value, encoded with the cache's codec.
#[derive(Debug)]
pub struct Typed<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: ?Sized> sealed::Sealed for Typed<'_, T> {}

impl<T: Serialize + Sync + ?Sized> Payload for Typed<'_, T> {
    fn encode(&self, codec: Codec, fresh_until: Option<SystemTime>) -> Result<Bytes> {
        codec::encode(codec, self.0, fresh_until)
    }
}

/// Bytes stored unchanged behind the envelope header, read back with
/// [`Cache::get_raw`](crate::Cache::get_raw).
#[derive(Debug, Clone)]
pub struct Raw(pub(crate) Bytes);

impl sealed::Sealed for Raw {}

impl Payload for Raw {
    fn encode(&self, _codec: Codec, fresh_until: Option<SystemTime>) -> Result<Bytes> {
        Ok(codec::encode_raw(&self.0, fresh_until))
    }
}
