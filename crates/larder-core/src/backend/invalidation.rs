//! The stream of invalidations a shared backend may offer, so that an
//! in-process near cache can drop what another process replaced.

use tokio::sync::broadcast;

/// One change a backend reports. Keys, tags and patterns are in stored
/// (namespaced) form.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// These keys were written, deleted or expired.
    Keys(Vec<String>),
    /// Every key carrying one of these tags was invalidated.
    Tags(Vec<String>),
    /// Every key matching this glob was deleted.
    Pattern(String),
    /// Every key starting with this prefix (a namespace, `svc:v1:`) was
    /// deleted.
    Flush {
        /// The prefix.
        prefix: String,
    },
    /// The stream lost messages, reconnected or cannot be trusted: anything
    /// derived from the backend may be stale and must be dropped.
    Reset,
}

/// A subscription to a backend's invalidations
/// ([`Backend::invalidations`](crate::Backend::invalidations)). Lag and
/// disconnection are reported as [`Invalidation::Reset`], never skipped
/// silently.
#[derive(Debug)]
pub struct InvalidationStream {
    rx: broadcast::Receiver<Invalidation>,
}

impl InvalidationStream {
    /// A stream over a broadcast channel the backend publishes to.
    pub fn new(rx: broadcast::Receiver<Invalidation>) -> Self {
        InvalidationStream { rx }
    }

    /// The next invalidation; `None` once the backend is gone. Messages
    /// lost to lag come out as one [`Invalidation::Reset`].
    pub async fn recv(&mut self) -> Option<Invalidation> {
        match self.rx.recv().await {
            Ok(invalidation) => Some(invalidation),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Invalidation::Reset),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lag_becomes_a_reset() {
        let (tx, rx) = broadcast::channel(2);
        let mut stream = InvalidationStream::new(rx);
        for i in 0..5 {
            tx.send(Invalidation::Keys(vec![format!("k{i}")])).unwrap();
        }
        assert_eq!(stream.recv().await, Some(Invalidation::Reset));
        assert_eq!(
            stream.recv().await,
            Some(Invalidation::Keys(vec!["k3".into()]))
        );
        drop(tx);
        assert_eq!(
            stream.recv().await,
            Some(Invalidation::Keys(vec!["k4".into()]))
        );
        assert_eq!(stream.recv().await, None);
    }
}
