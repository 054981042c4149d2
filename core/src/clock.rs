//! The clock: unix time in whole seconds, and a [`Clock`] that tests can
//! move by hand.

#[cfg(test)]
use std::sync::atomic::{AtomicI64, Ordering};

/// Current unix time in whole seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A source of unix time in seconds, so tests can move time by hand.
pub(crate) trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;
}

/// The system clock ([`now_unix`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        now_unix()
    }
}

/// A clock that only moves when told to (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct ManualClock(AtomicI64);

#[cfg(test)]
impl ManualClock {
    pub fn new(now: i64) -> Self {
        ManualClock(AtomicI64::new(now))
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst)
    }
    pub(crate) fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The UTC calendar date and time of a unix time:
/// `(year, month, day, hour, minute, second)` (Howard Hinnant's civil-from-days).
/// Used wherever a timestamp is formatted (SigV4 dates, the proxy's JSON log).
pub fn utc_civil(unix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}
