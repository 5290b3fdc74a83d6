//! Write options: TTL, tags and mode.

use std::time::Duration;

use crate::backend::SetMode;
use crate::config::TtlBucket;

/// How long a written value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Ttl {
    /// The cache's default TTL.
    #[default]
    Default,
    /// A TTL bucket from the configuration.
    Bucket(TtlBucket),
    /// Exactly this long (positive, at most [`MAX_TTL`](crate::MAX_TTL)).
    Fixed(Duration),
    /// No expiry: the value lives until deleted or evicted.
    Never,
}

impl From<Duration> for Ttl {
    fn from(d: Duration) -> Self {
        Ttl::Fixed(d)
    }
}

impl From<TtlBucket> for Ttl {
    fn from(b: TtlBucket) -> Self {
        Ttl::Bucket(b)
    }
}

/// Options of a write: TTL, tags and mode. Used by `set`, `set_many` and
/// `set_raw`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub(crate) ttl: Ttl,
    pub(crate) tags: Vec<String>,
    pub(crate) mode: SetMode,
}

impl SetOptions {
    /// Default TTL, no tags, always write.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the TTL: a `Duration`, a [`TtlBucket`] or a [`Ttl`].
    #[must_use]
    pub fn ttl(mut self, ttl: impl Into<Ttl>) -> Self {
        self.ttl = ttl.into();
        self
    }

    /// Store without expiry.
    #[must_use]
    pub fn no_expiry(self) -> Self {
        self.ttl(Ttl::Never)
    }

    /// Add tags. A re-set replaces the key's tags with the new set.
    #[must_use]
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.tags
            .extend(tags.into_iter().map(|t| t.as_ref().to_owned()));
        self
    }

    /// Add one tag.
    #[must_use]
    pub fn tag(mut self, tag: impl AsRef<str>) -> Self {
        self.tags.push(tag.as_ref().to_owned());
        self
    }

    /// Write mode.
    #[must_use]
    pub fn mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }

    /// Write only when the key is absent.
    #[must_use]
    pub fn if_absent(self) -> Self {
        self.mode(SetMode::IfAbsent)
    }

    /// Write only when the key is present.
    #[must_use]
    pub fn if_present(self) -> Self {
        self.mode(SetMode::IfPresent)
    }
}
