//! Operation latency: a lock-free log-linear histogram per operation, and
//! the sampling that keeps timing off most of the hit path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: percentiles are exact to within 1/8
/// (12.5 %) of the value.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two of nanoseconds covered: up to 2^40 ns (about 18 minutes);
/// longer operations land in the last bucket.
const POWERS: usize = 40;
const BUCKETS: usize = POWERS * SUB;

/// One operation in this many (per thread) is timed. Two clock readings
/// are about a sixth of a memory-backend hit; one in sixteen makes them
/// vanish in the noise while every percentile still sees thousands of
/// samples a second on a busy cache.
pub(crate) const SAMPLE_EVERY: u32 = 16;

thread_local! {
    static TICK: Cell<u32> = const { Cell::new(0) };
}

/// Whether this operation is one of the timed ones.
pub(crate) fn sampled() -> bool {
    TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n % SAMPLE_EVERY == 0
    })
}

/// Durations of one operation, in log-linear buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish()
    }
}

/// The bucket of `ns`: values below `SUB` have one bucket each; above,
/// each power of two is split in `SUB` equal parts.
fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let power = 63 - ns.leading_zeros(); // >= SUB_BITS
    let sub = (ns >> (power - SUB_BITS)) as usize & (SUB - 1);
    let index = (power - SUB_BITS + 1) as usize * SUB + sub;
    index.min(BUCKETS - 1)
}

/// The largest value that falls in bucket `index` (a percentile is
/// reported as its bucket's upper bound: never under the truth).
fn upper_bound(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let power = (index / SUB) as u32 + SUB_BITS - 1;
    let sub = (index % SUB) as u64;
    let width = 1u64 << (power - SUB_BITS);
    (1u64 << power) + (sub + 1) * width - 1
}

impl Histogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Count, p50, p95, p99 and max; `None` before the first sample.
    pub(crate) fn summary(&self) -> Option<(u64, [Duration; 4])> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let max = self.max_ns.load(Ordering::Relaxed);
        let at = |q: f64| {
            let rank = ((total as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_nanos(upper_bound(i).min(max));
                }
            }
            Duration::from_nanos(max)
        };
        Some((
            total,
            [at(0.50), at(0.95), at(0.99), Duration::from_nanos(max)],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        let mut last = 0;
        for ns in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            100,
            1_000,
            123_456,
            9_999_999_999,
        ] {
            let b = bucket_of(ns);
            assert!(b >= last, "{ns} went back a bucket");
            last = b;
            assert!(upper_bound(b) >= ns, "{ns} above its bucket's bound");
            if b > 0 {
                assert!(upper_bound(b - 1) < ns, "{ns} belongs lower");
            }
            if ns >= 8 {
                assert!(
                    (upper_bound(b) - ns) as f64 <= ns as f64 / SUB as f64,
                    "{ns}: bucket too wide"
                );
            }
        }
    }

    #[test]
    fn percentiles_of_a_known_spread() {
        let h = Histogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let Some((n, [p50, p95, p99, max])) = h.summary() else {
            panic!("no summary");
        };
        assert_eq!(n, 100);
        let near = |d: Duration, us: u64| {
            let got = d.as_nanos() as f64 / 1_000.0;
            assert!(
                got >= us as f64 && got <= us as f64 * 1.125,
                "{got} µs is not within 12.5 % above {us} µs"
            );
        };
        near(p50, 50);
        near(p95, 95);
        near(p99, 99);
        assert_eq!(max, Duration::from_micros(100));
    }

    #[test]
    fn one_in_sample_every_is_timed() {
        let timed = (0..SAMPLE_EVERY * 100).filter(|_| sampled()).count();
        assert_eq!(timed, 100);
    }
}
