//! The invalidation journal: invalidations that could not reach the
//! backend, replayed before anything else goes to it, so that a cache that
//! was unreachable during a write never serves the value the write replaced
//! (from this process).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::lock;

/// One invalidation to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Keys(Vec<String>),
    Tags(Vec<String>),
    Pattern(String),
    /// A namespace (`svc:v1:`) to clear.
    Clear(String),
}

impl Pending {
    /// The namespaces (`svc:v1:`) the invalidation touches.
    fn namespaces(&self) -> Vec<String> {
        let of = |name: &str| -> Option<String> {
            let mut colons = name.match_indices(':').map(|(i, _)| i);
            match (colons.next(), colons.next()) {
                (Some(_), Some(second)) => Some(name[..=second].to_owned()),
                _ => None,
            }
        };
        match self {
            Pending::Keys(names) | Pending::Tags(names) => {
                names.iter().filter_map(|n| of(n)).collect()
            }
            Pending::Pattern(p) => of(p).into_iter().collect(),
            Pending::Clear(prefix) => vec![prefix.clone()],
        }
    }
}

/// Invalidations waiting for the backend.
#[derive(Debug)]
pub(crate) struct Journal {
    pending: Mutex<VecDeque<Pending>>,
    /// `pending.len()`, readable without the lock (every operation checks
    /// it).
    len: AtomicUsize,
    capacity: usize,
    /// `larder_pending_invalidations`.
    gauge: metrics::Gauge,
}

impl Journal {
    pub(crate) fn new(capacity: usize) -> Self {
        Journal {
            pending: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            capacity: capacity.max(1),
            gauge: metrics::Gauge::noop(),
        }
    }

    /// Report the journal's length as a gauge labelled `backend` = `label`.
    pub(crate) fn with_metrics(mut self, label: &str) -> Self {
        self.gauge = metrics::gauge!(
            crate::stats::names::PENDING_INVALIDATIONS,
            "backend" => label.to_owned()
        );
        self.gauge.set(0.0);
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record an invalidation. Past the capacity, the journal folds into
    /// clears of the namespaces it touches: more is invalidated, nothing is
    /// forgotten.
    pub(crate) fn record(&self, pending: Pending) {
        let mut queue = lock(&self.pending);
        queue.push_back(pending);
        if queue.len() > self.capacity {
            let namespaces: BTreeSet<String> = queue.iter().flat_map(Pending::namespaces).collect();
            queue.clear();
            queue.extend(namespaces.into_iter().map(Pending::Clear));
        }
        self.len.store(queue.len(), Ordering::Release);
        self.gauge.set(queue.len() as f64);
    }

    /// The oldest invalidation, to replay.
    pub(crate) fn front(&self) -> Option<Pending> {
        lock(&self.pending).front().cloned()
    }

    /// Drop the oldest invalidation once it has been replayed, if it is
    /// still `done` (a fold may have replaced it meanwhile).
    pub(crate) fn replayed(&self, done: &Pending) {
        let mut queue = lock(&self.pending);
        if queue.front() == Some(done) {
            queue.pop_front();
        }
        self.len.store(queue.len(), Ordering::Release);
        self.gauge.set(queue.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_capacity_it_folds_into_namespace_clears() {
        let j = Journal::new(2);
        j.record(Pending::Keys(vec!["svc:v1:a".into()]));
        j.record(Pending::Tags(vec!["app:v2:t".into()]));
        assert_eq!(j.len(), 2);
        j.record(Pending::Pattern("svc:v1:user:*".into()));
        assert_eq!(j.len(), 2);
        assert_eq!(j.front(), Some(Pending::Clear("app:v2:".into())));
        j.replayed(&Pending::Clear("app:v2:".into()));
        assert_eq!(j.front(), Some(Pending::Clear("svc:v1:".into())));
    }
}
