//! The near cache's clock: nanoseconds on a monotonic timeline, read on
//! every hit, so it must be cheap. On Linux it is `CLOCK_MONOTONIC_COARSE`
//! (a vDSO read of the last tick, several times cheaper than
//! `Instant::now`), which lags the precise clock by at most its resolution
//! (`RESOLUTION`); deadlines are set that much earlier, so that an entry
//! still never outlives its bound. Elsewhere it is `Instant` (no lag).

use std::sync::OnceLock;
use std::time::Duration;

/// Now, in nanoseconds on the clock's timeline.
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn now() -> u64 {
    use rustix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::MonotonicCoarse);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// How far the clock may lag real time.
#[cfg(target_os = "linux")]
pub(crate) fn lag() -> u64 {
    static LAG: OnceLock<u64> = OnceLock::new();
    *LAG.get_or_init(|| {
        use rustix::time::{ClockId, clock_getres};
        let r = clock_getres(ClockId::MonotonicCoarse);
        let res = u64::try_from(r.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(r.tv_nsec).unwrap_or(0));
        // Twice the resolution, and at least 1 ms: a margin, not a bet.
        (2 * res).max(1_000_000)
    })
}

/// Now, in nanoseconds since the first call.
#[cfg(not(target_os = "linux"))]
#[inline]
pub(crate) fn now() -> u64 {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// How far the clock may lag real time: not at all.
#[cfg(not(target_os = "linux"))]
pub(crate) fn lag() -> u64 {
    0
}

/// The deadline of an entry allowed to live `life` from `start` (a reading
/// of [`now`] taken before the value was read): `None` when that is too
/// short to be worth keeping.
pub(crate) fn deadline(start: u64, life: Duration) -> Option<u64> {
    let life = u64::try_from(life.as_nanos()).unwrap_or(u64::MAX);
    let life = life.checked_sub(lag()).filter(|l| *l > 0)?;
    Some(start.saturating_add(life))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_and_deadlines_are_early() {
        let a = now();
        std::thread::sleep(Duration::from_millis(20));
        let b = now();
        assert!(b > a, "{a} {b}");
        assert!(b - a <= 20_000_000 + lag() + 50_000_000);
        let d = deadline(a, Duration::from_secs(1)).unwrap();
        assert!(d <= a + 1_000_000_000);
        assert!(deadline(a, Duration::from_nanos(1)).is_none());
    }
}
