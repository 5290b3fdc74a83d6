//! In-process single-flight: concurrent misses of one key share one load.
//!
//! Each key in flight has a [`Flight`] holding an async mutex around a slot.
//! The first caller to take the mutex loads and fills the slot; the others
//! wait on the mutex and then read the slot. Dropping a waiter only drops its
//! own wait. Dropping the leader releases the mutex with the slot still empty,
//! so the next waiter takes over the load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// Lock a std mutex; our critical sections never panic, so a poisoned lock
/// still holds consistent data.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One key in flight.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    /// The encoded value once a leader has loaded it.
    pub(crate) slot: tokio::sync::Mutex<Option<Bytes>>,
}

/// The keys in flight.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

impl Flights {
    /// Join (or start) the flight of `key`.
    pub(crate) fn join(&self, key: &str) -> Ticket<'_> {
        let flight = lock(&self.map).entry(key.to_owned()).or_default().clone();
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
    pub(crate) fn flight(&self) -> &Flight {
        match &self.flight {
            Some(f) => f,
            None => unreachable!("the flight is only taken in drop"),
        }
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
}
