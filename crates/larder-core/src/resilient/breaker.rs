//! The circuit breaker: closed, open, half-open with one probe at a time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::CircuitState;
use crate::sync::lock;

/// Operations the failure rate looks back over.
const RATE_WINDOW: usize = 20;

#[derive(Debug)]
enum State {
    Closed {
        consecutive: u32,
        recent: VecDeque<bool>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        probing: bool,
    },
}

/// Whether an operation may go to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Yes, the circuit is closed.
    Allowed,
    /// Yes, as the one probe of a half-open circuit.
    Probe,
    /// No: the circuit is open (or another probe is out).
    Rejected,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    /// The fast path: the circuit is closed and nothing has failed lately
    /// (no failure in a row, none in the rate window), so an admission is
    /// `Allowed` and a success changes nothing, without taking the lock.
    clean: AtomicBool,
    threshold: u32,
    failure_rate: f64,
    open_for: Duration,
    /// `larder_circuit_state` and `larder_circuit_opened_total`.
    gauge: metrics::Gauge,
    opened: metrics::Counter,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, failure_rate: f64, open_for: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::Closed {
                consecutive: 0,
                recent: VecDeque::new(),
            }),
            clean: AtomicBool::new(true),
            threshold: threshold.max(1),
            failure_rate,
            open_for,
            gauge: metrics::Gauge::noop(),
            opened: metrics::Counter::noop(),
        }
    }

    /// Report state changes as metrics labelled `backend` = `label`.
    pub(crate) fn with_metrics(mut self, label: &str) -> Self {
        use crate::stats::names;
        self.gauge = metrics::gauge!(names::CIRCUIT_STATE, "backend" => label.to_owned());
        self.opened = metrics::counter!(names::CIRCUIT_OPENED, "backend" => label.to_owned());
        self.gauge.set(0.0);
        self
    }

    /// Note a state change for the metrics.
    fn entered(&self, state: CircuitState) {
        self.gauge.set(match state {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        });
        if state == CircuitState::Open {
            self.opened.increment(1);
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        match &*lock(&self.state) {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if Instant::now() < *until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    pub(crate) fn admit(&self) -> Admission {
        if self.clean.load(Ordering::Acquire) {
            return Admission::Allowed;
        }
        let mut state = lock(&self.state);
        match &mut *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } if Instant::now() < *until => Admission::Rejected,
            State::Open { .. } => {
                *state = State::HalfOpen { probing: true };
                self.entered(CircuitState::HalfOpen);
                Admission::Probe
            }
            State::HalfOpen { probing: true } => Admission::Rejected,
            State::HalfOpen { probing } => {
                *probing = true;
                Admission::Probe
            }
        }
    }

    /// The outcome of an admitted operation: `Some(ok)`, or `None` when it
    /// ended without telling (dropped before it finished).
    pub(crate) fn record(&self, admission: Admission, outcome: Option<bool>) {
        if admission == Admission::Allowed
            && outcome == Some(true)
            && self.clean.load(Ordering::Acquire)
        {
            return;
        }
        let mut state = lock(&self.state);
        self.clean.store(false, Ordering::Release);
        match (admission, outcome) {
            (Admission::Rejected, _) => {}
            (Admission::Probe, Some(true)) => {
                *state = State::Closed {
                    consecutive: 0,
                    recent: VecDeque::new(),
                };
                self.clean.store(true, Ordering::Release);
                self.entered(CircuitState::Closed);
            }
            (Admission::Probe, Some(false)) => {
                *state = State::Open {
                    until: Instant::now() + self.open_for,
                };
                self.entered(CircuitState::Open);
            }
            (Admission::Probe, None) => {
                if let State::HalfOpen { probing } = &mut *state {
                    *probing = false;
                }
            }
            (Admission::Allowed, None) => {}
            (Admission::Allowed, Some(ok)) => {
                let State::Closed {
                    consecutive,
                    recent,
                } = &mut *state
                else {
                    return;
                };
                *consecutive = if ok { 0 } else { *consecutive + 1 };
                if recent.is_empty() && !ok {
                    // Successes were not recorded while the circuit was
                    // clean: count the window as full of them.
                    recent.extend(std::iter::repeat_n(true, RATE_WINDOW - 1));
                }
                recent.push_back(ok);
                if recent.len() > RATE_WINDOW {
                    recent.pop_front();
                }
                let failures = recent.iter().filter(|ok| !**ok).count();
                let by_rate = self.failure_rate > 0.0
                    && recent.len() >= RATE_WINDOW
                    && failures as f64 >= self.failure_rate * recent.len() as f64;
                if *consecutive >= self.threshold || by_rate {
                    *state = State::Open {
                        until: Instant::now() + self.open_for,
                    };
                    self.entered(CircuitState::Open);
                } else if failures == 0 {
                    recent.clear();
                    self.clean.store(true, Ordering::Release);
                }
            }
        }
    }
}

/// Reports an admitted operation's outcome when dropped, so that a probe
/// dropped halfway lets another caller probe.
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    admission: Admission,
    outcome: Option<bool>,
}

impl<'a> Ticket<'a> {
    pub(crate) fn new(breaker: &'a Breaker, admission: Admission) -> Self {
        Ticket {
            breaker,
            admission,
            outcome: None,
        }
    }

    pub(crate) fn done(&mut self, ok: bool) {
        self.outcome = Some(ok);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.breaker.record(self.admission, self.outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_once() {
        let b = Breaker::new(3, 0.0, Duration::from_millis(50));
        for _ in 0..2 {
            assert_eq!(b.admit(), Admission::Allowed);
            b.record(Admission::Allowed, Some(false));
        }
        assert_eq!(b.state(), CircuitState::Closed);
        b.record(Admission::Allowed, Some(false));
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.admit(), Admission::Rejected);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(), Admission::Probe);
        assert_eq!(b.admit(), Admission::Rejected, "one probe at a time");
        b.record(Admission::Probe, Some(true));
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.admit(), Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_reopens_and_a_dropped_one_frees_the_slot() {
        let b = Breaker::new(1, 0.0, Duration::from_millis(20));
        b.record(Admission::Allowed, Some(false));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(), Admission::Probe);
        b.record(Admission::Probe, Some(false));
        assert_eq!(b.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(30));
        {
            let _ticket = Ticket::new(&b, b.admit());
        }
        assert_eq!(
            b.admit(),
            Admission::Probe,
            "the dropped probe freed its slot"
        );
    }

    #[test]
    fn a_failure_rate_opens_it_too() {
        let b = Breaker::new(100, 0.5, Duration::from_secs(5));
        for i in 0..RATE_WINDOW {
            b.record(Admission::Allowed, Some(i % 2 == 0));
        }
        assert_eq!(b.state(), CircuitState::Open);
    }
}
