//! Lock-free limiters. Each is one `AtomicU64` updated with a compare-and-swap
//! loop, so concurrent verifiers never wait on each other and never over-admit.
//! Every `try_*` has an `undo` so that a request denied by a later check gives
//! back what an earlier one took: a denied request consumes nothing.
//!
//! Time is passed in, never read: the verifier is a pure function of its inputs
//! and tests can stop the clock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::model::{RateLimit, Refill};

/// Microseconds since the Unix epoch.
pub type Micros = u64;

/// What a rate limiter tells the caller, allowed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateInfo {
    /// The limit (requests per window).
    pub limit: u32,
    /// Requests that could still be made right now.
    pub remaining: u32,
    /// Milliseconds until the limiter is back to its full allowance.
    pub reset_ms: u64,
}

/// A denial by a rate limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDenied {
    /// The state when denied.
    pub info: RateInfo,
    /// Milliseconds after which the same request would be allowed.
    pub retry_after_ms: u64,
}

/// A GCRA limiter (the token bucket as a single timestamp): `max` requests at
/// once, refilled at `max` per `window_ms`.
#[derive(Debug, Default)]
pub struct Gcra {
    /// Theoretical arrival time in microseconds; 0 = never used (full bucket).
    tat: AtomicU64,
}

impl Gcra {
    /// Takes `cost` requests from the bucket, or denies without changing it.
    pub fn try_take(&self, limit: RateLimit, now: Micros, cost: u32) -> Result<RateInfo, RateDenied> {
        let (t, tau) = gcra_params(limit);
        let need = t.saturating_mul(u64::from(cost));
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now).saturating_add(need);
            let ahead = new_tat - now;
            if ahead > tau {
                let current = tat.max(now) - now;
                return Err(RateDenied {
                    info: gcra_info(limit, t, tau, current),
                    retry_after_ms: (ahead - tau).div_ceil(1000),
                });
            }
            match self.tat.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(gcra_info(limit, t, tau, ahead)),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives back what a successful `try_take` with the same arguments took.
    pub fn undo(&self, limit: RateLimit, cost: u32) {
        let (t, _) = gcra_params(limit);
        let need = t.saturating_mul(u64::from(cost));
        let _ = self.tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| Some(tat.saturating_sub(need)));
    }

    /// The bucket's state at `now` without taking anything.
    pub fn peek(&self, limit: RateLimit, now: Micros) -> RateInfo {
        let (t, tau) = gcra_params(limit);
        gcra_info(limit, t, tau, self.tat.load(Ordering::Acquire).saturating_sub(now))
    }
}

/// Emission interval `t` and burst tolerance `tau` in microseconds.
fn gcra_params(limit: RateLimit) -> (u64, u64) {
    let max = u64::from(limit.max.max(1));
    let t = (limit.window_ms.saturating_mul(1000) / max).max(1);
    (t, t * max)
}

fn gcra_info(limit: RateLimit, t: u64, tau: u64, ahead: u64) -> RateInfo {
    RateInfo {
        limit: limit.max,
        remaining: u32::try_from(tau.saturating_sub(ahead) / t).unwrap_or(u32::MAX),
        reset_ms: ahead.div_ceil(1000),
    }
}

/// A fixed-window counter: at most `limit` requests in each window of
/// `window_us`, as seed 000's "requests per minute". The window number (low 32
/// bits) and the count share one atomic so that a new window resets the count in
/// the same CAS that counts the request.
#[derive(Debug, Default)]
pub struct FixedWindow {
    state: AtomicU64,
}

impl FixedWindow {
    /// Counts `cost` requests in the window containing `now`, or denies.
    pub fn try_take(&self, limit: u32, window_us: u64, now: Micros, cost: u32) -> Result<RateInfo, RateDenied> {
        let window = (now / window_us) as u32;
        let reset_ms = (window_us - now % window_us).div_ceil(1000);
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (w, count) = ((state >> 32) as u32, state as u32);
            let count = if w == window { count } else { 0 };
            let new = u64::from(count) + u64::from(cost);
            if new > u64::from(limit) {
                return Err(RateDenied {
                    info: RateInfo { limit, remaining: limit.saturating_sub(count), reset_ms },
                    retry_after_ms: reset_ms,
                });
            }
            let next = (u64::from(window) << 32) | new;
            match self.state.compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Ok(RateInfo { limit, remaining: limit - new as u32, reset_ms });
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// Gives back `cost` requests if the window containing `now` is still current.
    pub fn undo(&self, window_us: u64, now: Micros, cost: u32) {
        let window = (now / window_us) as u32;
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            ((s >> 32) as u32 == window).then(|| (s & !0xffff_ffff) | u64::from((s as u32).saturating_sub(cost)))
        });
    }
}

/// Remaining uses with an optional periodic refill (seed 002). The refill period
/// (high 32 bits) and the remaining count (low 32 bits) share one atomic, so the
/// first request of a new period refills and takes in a single CAS: two requests
/// racing across a period boundary cannot both refill.
#[derive(Debug)]
pub struct Uses {
    state: AtomicU64,
}

/// The outcome of `Uses::try_take`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Allowed; uses left in the period.
    Taken(u32),
    /// Not enough uses left; milliseconds until the next refill, if any.
    Exhausted(Option<u64>),
}

impl Uses {
    /// Counter holding `remaining` uses in refill period `period`.
    pub fn new(remaining: u32, period: u32) -> Uses {
        Uses { state: AtomicU64::new(pack(period, remaining)) }
    }

    /// Current `(period, remaining)`, for persistence and display.
    pub fn load(&self) -> (u32, u32) {
        unpack(self.state.load(Ordering::Acquire))
    }

    /// Takes `cost` uses, refilling first if `now_ms` is in a later period.
    pub fn try_take(&self, refill: Option<Refill>, anchor_ms: u64, now_ms: u64, cost: u32) -> Take {
        let period = refill.map_or(0, |r| period_of(r, anchor_ms, now_ms));
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (p, mut remaining) = unpack(state);
            let mut current = p;
            if let Some(r) = refill {
                // Wrapping comparison: refill only when `period` is after `p`.
                if (period.wrapping_sub(p) as i32) > 0 {
                    remaining = r.amount;
                    current = period;
                }
            }
            if remaining < cost {
                let next = refill.map(|r| {
                    let next_start = anchor_ms.saturating_add(r.interval_ms.saturating_mul(u64::from(current) + 1));
                    next_start.saturating_sub(now_ms)
                });
                return Take::Exhausted(next);
            }
            let left = remaining - cost;
            match self.state.compare_exchange_weak(state, pack(current, left), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Take::Taken(left),
                Err(actual) => state = actual,
            }
        }
    }

    /// Gives back what a successful `try_take` with the same arguments took,
    /// unless the counter has moved to another period since (a refill replaced
    /// the count, so giving back would over-admit).
    pub fn undo(&self, refill: Option<Refill>, anchor_ms: u64, now_ms: u64, cost: u32) {
        let period = refill.map_or(0, |r| period_of(r, anchor_ms, now_ms));
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            let (p, r) = unpack(s);
            (refill.is_none() || p == period).then(|| pack(p, r.saturating_add(cost)))
        });
    }

    /// Overwrites the counter (an administrator set `remaining`).
    pub fn set(&self, remaining: u32, period: u32) {
        self.state.store(pack(period, remaining), Ordering::Release);
    }
}

/// The refill period containing `now_ms`, truncated to 32 bits (intervals are at
/// least a second, so the count wraps after 136 years).
pub fn period_of(refill: Refill, anchor_ms: u64, now_ms: u64) -> u32 {
    (now_ms.saturating_sub(anchor_ms) / refill.interval_ms.max(1)) as u32
}

fn pack(period: u32, remaining: u32) -> u64 {
    (u64::from(period) << 32) | u64::from(remaining)
}

fn unpack(s: u64) -> (u32, u32) {
    ((s >> 32) as u32, s as u32)
}

/// A consumable quota (e.g. a team's documents): `used` never exceeds the limit.
#[derive(Debug, Default)]
pub struct Quota {
    used: AtomicU64,
}

impl Quota {
    /// Quota with `used` already consumed.
    pub fn new(used: u64) -> Quota {
        Quota { used: AtomicU64::new(used) }
    }

    /// Current consumption.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Consumes `amount` if that keeps `used <= limit`; returns the new `used`,
    /// or the unchanged `used` as the error.
    pub fn try_consume(&self, amount: u64, limit: u64) -> Result<u64, u64> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| u.checked_add(amount).filter(|&n| n <= limit))
            .map(|old| old + amount)
    }

    /// Releases `amount` (never below zero); returns the new `used`.
    pub fn release(&self, amount: u64) -> u64 {
        let old = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(amount)))
            .unwrap_or_else(|u| u);
        old.saturating_sub(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn gcra_admits_max_then_refills_at_rate() {
        let g = Gcra::default();
        let limit = RateLimit { max: 10, window_ms: 1000 };
        let now = 1_700_000_000 * SEC;
        for i in 0..10 {
            let info = g.try_take(limit, now, 1).unwrap();
            assert_eq!(info.remaining, 9 - i);
        }
        let denied = g.try_take(limit, now, 1).unwrap_err();
        assert_eq!(denied.retry_after_ms, 100);
        assert!(g.try_take(limit, now + 99_000, 1).is_err());
        assert!(g.try_take(limit, now + 100_000, 1).is_ok());
        // After a full window the bucket is full again.
        for _ in 0..10 {
            g.try_take(limit, now + 2 * SEC, 1).unwrap();
        }
    }

    #[test]
    fn gcra_cost_and_undo() {
        let g = Gcra::default();
        let limit = RateLimit { max: 5, window_ms: 60_000 };
        let now = 42 * SEC;
        g.try_take(limit, now, 3).unwrap();
        assert!(g.try_take(limit, now, 3).is_err());
        g.undo(limit, 3);
        g.try_take(limit, now, 5).unwrap();
        assert_eq!(g.peek(limit, now).remaining, 0);
    }

    #[test]
    fn fixed_window_resets_each_window() {
        let w = FixedWindow::default();
        let minute = 60 * SEC;
        let now = 100 * minute + 5 * SEC;
        assert_eq!(w.try_take(2, minute, now, 1).unwrap().remaining, 1);
        assert_eq!(w.try_take(2, minute, now, 1).unwrap().remaining, 0);
        let d = w.try_take(2, minute, now, 1).unwrap_err();
        assert_eq!(d.retry_after_ms, 55_000);
        w.undo(minute, now, 1);
        assert!(w.try_take(2, minute, now, 1).is_ok());
        assert!(w.try_take(2, minute, now + 55 * SEC, 1).is_ok());
    }

    #[test]
    fn uses_refill_once_per_period() {
        let u = Uses::new(2, 0);
        let refill = Some(Refill { amount: 3, interval_ms: 1000 });
        assert_eq!(u.try_take(refill, 0, 10, 1), Take::Taken(1));
        assert_eq!(u.try_take(refill, 0, 20, 1), Take::Taken(0));
        assert_eq!(u.try_take(refill, 0, 30, 1), Take::Exhausted(Some(970)));
        assert_eq!(u.try_take(refill, 0, 1000, 1), Take::Taken(2));
        assert_eq!(u.load(), (1, 2));
        // A clock step backwards does not refill again.
        assert_eq!(u.try_take(refill, 0, 999, 2), Take::Taken(0));
        assert_eq!(u.try_take(refill, 0, 1999, 1), Take::Exhausted(Some(1)));
        // Giving back works within the period and is refused once it has ended.
        u.undo(refill, 0, 1500, 1);
        assert_eq!(u.load(), (1, 1));
        u.undo(refill, 0, 2500, 1);
        assert_eq!(u.load(), (1, 1));
        let plain = Uses::new(1, 0);
        assert_eq!(plain.try_take(None, 0, 5, 1), Take::Taken(0));
        assert_eq!(plain.try_take(None, 0, 5, 1), Take::Exhausted(None));
        plain.undo(None, 0, 5, 1);
        assert_eq!(plain.try_take(None, 0, 5, 1), Take::Taken(0));
    }

    #[test]
    fn quota_never_exceeds_limit() {
        let q = Quota::new(8);
        assert_eq!(q.try_consume(2, 10), Ok(10));
        assert_eq!(q.try_consume(1, 10), Err(10));
        assert_eq!(q.release(15), 0);
        assert_eq!(q.try_consume(u64::MAX, u64::MAX), Ok(u64::MAX));
        assert_eq!(q.try_consume(1, u64::MAX), Err(u64::MAX));
    }
}
