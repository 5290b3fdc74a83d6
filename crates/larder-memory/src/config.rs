//! Settings of the memory backend, from code or from a `mem://` URL.

use larder_core::config::parse_size;
use larder_core::url::BackendUrl;
use larder_core::{Error, Result};

use crate::MemoryBackend;

/// Settings of a [`MemoryBackend`]; also its builder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MemoryConfig {
    /// Most entries kept (default 10,000).
    pub max_entries: usize,
    /// Most bytes kept, keys, values and bookkeeping included (default: no
    /// byte bound).
    pub max_bytes: Option<usize>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_bytes: None,
        }
    }
}

impl MemoryConfig {
    /// Default entry bound.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

    /// Bound the number of entries.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// Bound the memory held, in bytes.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Build the backend.
    pub fn build(&self) -> MemoryBackend {
        MemoryBackend::with_config(self)
    }

    /// Settings from `mem://?max_entries=50000&max_bytes=64MiB`.
    pub fn from_url(url: &BackendUrl) -> Result<Self> {
        if url.scheme != "mem" && url.scheme != "memory" {
            return Err(Error::config(
                "url",
                format!("URL {}", url.masked()),
                "a mem:// URL",
                url.masked(),
            ));
        }
        if !url.hosts.is_empty() || !url.path.is_empty() {
            return Err(Error::config(
                "url",
                format!("URL {}", url.masked()),
                "mem:// with no host or path, options as query parameters (mem://?max_entries=10000)",
                url.masked(),
            ));
        }
        url.ensure_known_params(&["max_entries", "max_bytes"])?;
        let mut config = MemoryConfig::default();
        let positive = |raw: &str| raw.parse::<usize>().ok().filter(|n| *n > 0);
        if let Some(n) = url.param_with("max_entries", "a positive whole number", positive)? {
            config.max_entries = n;
        }
        let size = |raw: &str| {
            parse_size(raw)
                .filter(|n| *n > 0)
                .and_then(|n| usize::try_from(n).ok())
        };
        if let Some(b) =
            url.param_with("max_bytes", "a size such as 1048576, 512KiB or 64MiB", size)?
        {
            config.max_bytes = Some(b);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_url() {
        let url = BackendUrl::parse("mem://?max_entries=500&max_bytes=1MiB").unwrap();
        let c = MemoryConfig::from_url(&url).unwrap();
        assert_eq!(c.max_entries, 500);
        assert_eq!(c.max_bytes, Some(1 << 20));
        let c = MemoryConfig::from_url(&BackendUrl::parse("mem://").unwrap()).unwrap();
        assert_eq!(c, MemoryConfig::default());
    }

    #[test]
    fn bad_urls() {
        for (url, needle) in [
            ("mem://?max_entries=0", "positive whole number"),
            ("mem://?max_entries=lots", "lots"),
            ("mem://?max_bytes=big", "64MiB"),
            ("mem://?size=1", "max_entries, max_bytes"),
            ("mem://host", "no host"),
        ] {
            let err = MemoryConfig::from_url(&BackendUrl::parse(url).unwrap())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
