//! The stream of invalidations a shared backend may offer, so that an
//! in-process near cache can drop what another process replaced.

use std::time::SystemTime;

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
    /// The stream is down (connection lost, failover): what is derived from
    /// the backend must be dropped and not trusted again until
    /// [`Invalidation::Connected`].
    Disconnected,
    /// The stream is (back) up and subscribed: from now on every change is
    /// reported. Anything derived before must still be dropped.
    Connected,
}

/// One event of an [`InvalidationStream`]: the change, and when the
/// writer sent it (for the invalidation lag), when known.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidationEvent {
    /// What changed.
    pub invalidation: Invalidation,
    /// When the writer sent it, by its clock.
    pub sent_at: Option<SystemTime>,
}

impl InvalidationEvent {
    /// An event without a send time.
    pub fn new(invalidation: Invalidation) -> Self {
        InvalidationEvent {
            invalidation,
            sent_at: None,
        }
    }

    /// An event sent at `sent_at`.
    pub fn sent(invalidation: Invalidation, sent_at: SystemTime) -> Self {
        InvalidationEvent {
            invalidation,
            sent_at: Some(sent_at),
        }
    }
}

/// A subscription to a backend's invalidations
/// ([`Backend::invalidations`](crate::Backend::invalidations)). Lag and
/// disconnection are reported as [`Invalidation::Reset`], never skipped
/// silently.
#[derive(Debug)]
pub struct InvalidationStream {
    rx: broadcast::Receiver<InvalidationEvent>,
}

impl InvalidationStream {
    /// A stream over a broadcast channel the backend publishes to.
    pub fn new(rx: broadcast::Receiver<InvalidationEvent>) -> Self {
        InvalidationStream { rx }
    }

    /// The next invalidation; `None` once the backend is gone. Messages
    /// lost to lag come out as one [`Invalidation::Reset`].
    pub async fn recv(&mut self) -> Option<InvalidationEvent> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Some(InvalidationEvent::new(Invalidation::Reset))
            }
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
            tx.send(InvalidationEvent::new(Invalidation::Keys(vec![format!(
                "k{i}"
            )])))
            .unwrap();
        }
        let next = |e: Option<InvalidationEvent>| e.map(|e| e.invalidation);
        assert_eq!(next(stream.recv().await), Some(Invalidation::Reset));
        assert_eq!(
            next(stream.recv().await),
            Some(Invalidation::Keys(vec!["k3".into()]))
        );
        drop(tx);
        assert_eq!(
            next(stream.recv().await),
            Some(Invalidation::Keys(vec!["k4".into()]))
        );
        assert_eq!(stream.recv().await, None);
    }
}
