//! What a backend can do, stated by the backend itself.

use std::time::Duration;

/// How a backend guards read-through stores against invalidations that
/// happen while the load runs (see [`Backend::set_filled`](crate::Backend::set_filled)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FillGuard {
    /// No guard: a load that started before an invalidation may store its
    /// result after it.
    None,
    /// The check and the store are one atomic step.
    Atomic,
    /// Checked before and after the store; a store that raced an
    /// invalidation is deleted again. A reader may see the old value during
    /// that window (one round trip); the backend's docs say how long.
    Windowed,
}

/// What a backend does. Everything starts off in [`Capabilities::none`]; a
/// backend turns on what it supports, and the conformance suite holds it to
/// each claim (and checks that what it does not claim answers
/// [`Error::Unsupported`](crate::Error::Unsupported)).
///
/// ```
/// use std::time::Duration;
/// use larder_core::Capabilities;
/// let mut caps = Capabilities::none();
/// caps.tags = true;
/// caps.ttl_resolution = Duration::from_millis(1);
/// assert!(!caps.scan);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Tagged writes and `invalidate_tags` work.
    pub tags: bool,
    /// `tag_members` lists a tag's live keys (a backend with tag versions
    /// cannot).
    pub tag_listing: bool,
    /// `scan` and `delete_matching` work.
    pub scan: bool,
    /// `lock` / `unlock` work.
    pub locks: bool,
    /// `get_and_touch` renews a TTL as it reads (sliding expiry).
    pub touch: bool,
    /// `get_delete` reads and deletes in one atomic step.
    pub get_delete: bool,
    /// `incr` takes negative deltas (Memcached counters are unsigned).
    pub signed_counters: bool,
    /// Remaining TTLs can be read back (`ttl`, the expiry of `get_entry`).
    pub ttl_readable: bool,
    /// `invalidate_tags`, `delete_matching` and `clear` return exact counts
    /// (otherwise [`Count::Unknown`](crate::Count::Unknown)).
    pub exact_counts: bool,
    /// How read-through stores are guarded against concurrent invalidation.
    pub fill_guard: FillGuard,
    /// `invalidations()` yields a stream of what changed.
    pub invalidation_stream: bool,
    /// Values are shared between processes.
    pub shared: bool,
    /// Values survive a restart.
    pub persistent: bool,
    /// The smallest TTL step the backend honours.
    pub ttl_resolution: Duration,
    /// The longest stored key, in bytes, if shorter than larder's own limit
    /// ([`MAX_STORED_KEY_LEN`](crate::key::MAX_STORED_KEY_LEN)).
    pub max_key_len: Option<usize>,
    /// Characters a stored key must not hold (Memcached: space). Keys that
    /// hold one are stored in hashed form by the key layer, never refused.
    /// Control characters never reach a backend.
    pub forbidden_key_chars: &'static str,
    /// The largest value the backend stores, if it has a limit.
    pub max_value_size: Option<usize>,
}

impl Capabilities {
    /// A backend that can do nothing beyond the required operations: no
    /// tags, scans, locks or optional reads, unsigned counters, TTLs that
    /// cannot be read back, unknown counts, no fill guard, one-second TTL
    /// resolution, private to one process, lost on restart. Turn on what the
    /// backend supports.
    pub const fn none() -> Self {
        Capabilities {
            tags: false,
            tag_listing: false,
            scan: false,
            locks: false,
            touch: false,
            get_delete: false,
            signed_counters: false,
            ttl_readable: false,
            exact_counts: false,
            fill_guard: FillGuard::None,
            invalidation_stream: false,
            shared: false,
            persistent: false,
            ttl_resolution: Duration::from_secs(1),
            max_key_len: None,
            forbidden_key_chars: "",
            max_value_size: None,
        }
    }
}
