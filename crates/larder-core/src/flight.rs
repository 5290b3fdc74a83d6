//! In-process single-flight: concurrent misses of one key share one load.
//!
//! Each key in flight has a [`Flight`]: an async mutex around a slot. The
//! first caller to take the mutex leads the load and fills the slot with
//! what it produced; the others wait on the mutex and then read the slot.
//! Dropping a waiter only drops its own wait. Dropping the leader releases
//! the mutex with the slot still empty, so the next waiter leads instead.
//!
//! A flight serves only the callers that joined it before it finished: once
//! the leader has produced, the flight is marked finished and a new caller
//! of the key starts a new flight. And a value is handed only to callers
//! that started before it was read or stored (see [`Produced::Value`]), so
//! a caller that starts after an invalidation never receives a value the
//! invalidation replaced, however the threads are scheduled.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::OwnedMutexGuard;

use crate::sync::lock;

/// What a leader leaves for the callers waiting on its flight.
pub(crate) enum Produced {
    /// The value, encoded: each waiter decodes its own copy. Only for
    /// callers that started before the instant given: the moment the value
    /// was read or stored (or the load began, for a value that was not
    /// stored). A caller that started later may have started after an
    /// invalidation the value predates, so it looks again instead.
    Value(Bytes, Instant),
    /// A failure to hand out: the leader's outcome, cloned for each waiter
    /// by the caller's share function.
    Failure(Box<dyn Any + Send>),
    /// The value cannot be trusted for callers that did not run the load
    /// (the store was refused or declined, or the cache saw an invalidation
    /// meanwhile): look again.
    Reload,
    /// The outcome cannot be shared: each waiter loads for itself.
    LoadYourself,
}

/// One key in flight.
#[derive(Default)]
pub(crate) struct Flight {
    slot: Arc<tokio::sync::Mutex<Option<Produced>>>,
    finished: AtomicBool,
}

/// The keys in flight.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

impl Flights {
    /// Join the flight of `key`, or start one when there is none or the
    /// current one has finished.
    pub(crate) fn join(&self, key: &str) -> Ticket<'_> {
        let mut map = lock(&self.map);
        let flight = match map.get(key) {
            Some(f) if !f.finished.load(Ordering::Acquire) => f.clone(),
            _ => {
                let f = Arc::new(Flight::default());
                map.insert(key.to_owned(), f.clone());
                f
            }
        };
        Ticket {
            flights: self,
            key: key.to_owned(),
            flight: Some(flight),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// Membership of one flight; leaving the last ticket removes the flight.
pub(crate) struct Ticket<'a> {
    flights: &'a Flights,
    key: String,
    flight: Option<Arc<Flight>>,
}

impl Ticket<'_> {
    fn flight(&self) -> &Flight {
        match &self.flight {
            Some(f) => f,
            None => unreachable!("the flight is only taken in drop"),
        }
    }

    /// Wait for the flight's slot: empty when this caller is to lead.
    pub(crate) async fn slot(&self) -> OwnedMutexGuard<Option<Produced>> {
        self.flight().slot.clone().lock_owned().await
    }

    /// Mark the flight finished: later callers start a new one. Call it
    /// while still holding the filled slot.
    pub(crate) fn finish(&self) {
        self.flight().finished.store(true, Ordering::Release);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.flights.map);
        // Every clone and drop of a flight's Arc happens under the map lock,
        // so the count is exact here: 2 means only the map and we hold it.
        if let Some(flight) = self.flight.take()
            && Arc::strong_count(&flight) == 2
            && map.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_ticket_removes_the_flight() {
        let flights = Flights::default();
        let a = flights.join("k");
        let b = flights.join("k");
        assert!(std::ptr::eq(a.flight(), b.flight()));
        assert_eq!(flights.len(), 1);
        drop(a);
        assert_eq!(flights.len(), 1);
        drop(b);
        assert_eq!(flights.len(), 0);
        let c = flights.join("k");
        drop(c);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_finished_flight_is_never_joined() {
        let flights = Flights::default();
        let a = flights.join("k");
        let b = flights.join("k");
        a.finish();
        let late = flights.join("k");
        assert!(std::ptr::eq(a.flight(), b.flight()));
        assert!(!std::ptr::eq(a.flight(), late.flight()), "a new flight");
        drop(late);
        assert_eq!(flights.len(), 0, "the new flight left with its ticket");
        drop((a, b));
        assert_eq!(flights.len(), 0);
    }
}
