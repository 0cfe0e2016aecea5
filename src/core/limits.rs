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

impl RateInfo {
    /// The tighter of two limiters' states: fewer requests remaining, and on
    /// a tie the one that takes longer to reset.
    pub fn tighter(self, other: RateInfo) -> RateInfo {
        if (other.remaining, std::cmp::Reverse(other.reset_ms)) < (self.remaining, std::cmp::Reverse(self.reset_ms)) {
            other
        } else {
            self
        }
    }

    /// [`RateInfo::tighter`] of two optional states.
    pub fn tightest(a: Option<RateInfo>, b: Option<RateInfo>) -> Option<RateInfo> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.tighter(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A denial by a rate limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDenied {
    /// The state when denied.
    pub info: RateInfo,
    /// Milliseconds after which the same request would be allowed.
    pub retry_after_ms: u64,
}

/// The largest `rateLimitMax` a key may have: the count of a window has 22 bits
/// of the limiter's atomic.
pub const WINDOW_MAX_REQUESTS: u32 = (1 << COUNT_BITS) - 1;

const COUNT_BITS: u32 = 22;
/// Bits of the window's start, above the count; the top bit says a window
/// was ever opened.
const TIME_BITS: u32 = 41;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
const OPENED: u64 = 1 << 63;
/// Half the range of the stored start (about 35 years): a start less than
/// this far ahead of `now` means the clock stepped back; more, that it is in
/// the past (the difference wrapped).
const TIME_HALF: u64 = 1 << (TIME_BITS - 1);
/// Windows longer than this (about 17 years) are treated as this long, so the
/// signed comparison stays unambiguous (the engine allows at most a year).
const MAX_WINDOW_MS: u64 = 1 << (TIME_BITS - 2);

/// The per-key limiter of seed 002: at most `max` requests in a window of
/// `window_ms` that starts at the first request after the previous window
/// ended ("once maxRequests is reached, the request will be rejected until
/// the timeWindow has passed, at which point the timeWindow will be reset").
///
/// One atomic holds a flag (bit 63: a window was opened), the window's start
/// (milliseconds since the Unix epoch modulo 2^41, bits 22..63) and the
/// requests counted in it (bits 0..22, so `max` is at most
/// [`WINDOW_MAX_REQUESTS`]). Starts are compared with wrapping arithmetic, so
/// there is no date after which it stops working. Times are whole
/// milliseconds (`now` truncated).
///
/// Window starts only move forward: a request whose clock is behind the
/// current window's start counts in that window (a clock stepping back never
/// opens a window early). A window whose requests were all given back by
/// `undo` is closed, and the next request (not earlier than its start) opens
/// a new one; otherwise an undo gives back the count but not the start.
#[derive(Debug, Default)]
pub struct AnchoredWindow {
    /// `OPENED | start << COUNT_BITS | count`, or 0 before the first request.
    state: AtomicU64,
}

impl AnchoredWindow {
    /// Counts `cost` requests in the current window, opening a new window at
    /// `now` if none is open or the last one has ended; or denies without
    /// changing anything.
    pub fn try_take(&self, limit: RateLimit, now: Micros, cost: u32) -> Result<RateInfo, RateDenied> {
        let (max, window) = window_params(limit);
        let now_ms = now / 1000;
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (start, count) = unpack_window(state);
            let elapsed = elapsed_ms(now_ms, start);
            let open = state & OPENED != 0 && elapsed < window && (count > 0 || elapsed < 0);
            let (start, count, elapsed) = if open { (start, count, elapsed) } else { (now_ms & TIME_MASK, 0, 0) };
            // `elapsed < window` (or 0 for a new window); both are far from
            // the limits of i64.
            let reset_ms = u64::try_from(window - elapsed).unwrap_or(0);
            let new = u64::from(count) + u64::from(cost);
            if new > u64::from(max) {
                return Err(RateDenied {
                    info: RateInfo { limit: max, remaining: max.saturating_sub(count), reset_ms },
                    retry_after_ms: reset_ms,
                });
            }
            // `new <= max <= WINDOW_MAX_REQUESTS`: it fits in the count bits.
            let next = OPENED | (start << COUNT_BITS) | new;
            match self.state.compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let remaining = max.saturating_sub(u32::try_from(new).unwrap_or(u32::MAX));
                    return Ok(RateInfo { limit: max, remaining, reset_ms });
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// A limiter in this one's state now: a key whose other counters are
    /// replaced (an administrator set its remaining uses or its refill) keeps
    /// its rate-limit window.
    pub fn snapshot(&self) -> AnchoredWindow {
        AnchoredWindow { state: AtomicU64::new(self.state.load(Ordering::Acquire)) }
    }

    /// Gives back what a successful `try_take` with the same arguments took,
    /// if the window it counted in is still the current one: a window that
    /// contains `now`. (A later window starts after `now`, because starts only
    /// move forward; a request counted with a clock behind its window's start
    /// is not given back, which is conservative.)
    pub fn undo(&self, limit: RateLimit, now: Micros, cost: u32) {
        let (_, window) = window_params(limit);
        let now_ms = now / 1000;
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            let (start, count) = unpack_window(s);
            let elapsed = elapsed_ms(now_ms, start);
            (s & OPENED != 0 && count > 0 && (0..window).contains(&elapsed))
                .then(|| OPENED | (start << COUNT_BITS) | u64::from(count.saturating_sub(cost)))
        });
    }
}

/// Cluster mode: this node's share of a key's rate-limit window, leased from
/// the cluster: tokens usable until the window's end. One atomic: a flag (bit
/// 63: a lease was granted), the end (milliseconds since the epoch modulo
/// 2^41, bits 22..63) and the tokens left (bits 0..22), compared with the
/// same wrapping arithmetic as [`AnchoredWindow`].
#[derive(Debug, Default)]
pub struct RateLease {
    state: AtomicU64,
}

impl RateLease {
    /// Takes `cost` tokens if the leased window has not ended at `now`;
    /// `None` when there are not enough (the caller asks for more).
    pub fn try_take(&self, max: u32, now: Micros, cost: u32) -> Option<RateInfo> {
        let now_ms = now / 1000;
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let (end, tokens) = unpack_window(state);
            let left_ms = -elapsed_ms(now_ms, end);
            if state & OPENED == 0 || left_ms <= 0 || tokens < cost {
                return None;
            }
            let next = OPENED | (end << COUNT_BITS) | u64::from(tokens - cost);
            match self.state.compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Some(RateInfo { limit: max, remaining: tokens - cost, reset_ms: left_ms as u64 });
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// A lease in this one's state now (a key whose other counters are
    /// replaced keeps its tokens).
    pub fn snapshot(&self) -> RateLease {
        RateLease { state: AtomicU64::new(self.state.load(Ordering::Acquire)) }
    }

    /// Gives back what a successful `try_take` took.
    pub fn undo(&self, cost: u32) {
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            let (end, tokens) = unpack_window(s);
            (s & OPENED != 0)
                .then(|| OPENED | (end << COUNT_BITS) | u64::from(tokens.saturating_add(cost).min(WINDOW_MAX_REQUESTS)))
        });
    }

    /// Tokens usable at `now` (0 once the window has ended).
    pub fn available(&self, now: Micros) -> u32 {
        let s = self.state.load(Ordering::Acquire);
        let (end, tokens) = unpack_window(s);
        if s & OPENED != 0 && elapsed_ms(now / 1000, end) < 0 { tokens } else { 0 }
    }

    /// Milliseconds until the leased window ends at `now` (0: none, or ended).
    pub fn reset_ms(&self, now: Micros) -> u64 {
        let s = self.state.load(Ordering::Acquire);
        let (end, _) = unpack_window(s);
        if s & OPENED == 0 { 0 } else { u64::try_from(-elapsed_ms(now / 1000, end)).unwrap_or(0) }
    }

    /// Adds `tokens` granted for the window ending at `end_ms`: to those
    /// held if they are of the same window, in their place otherwise.
    pub fn grant(&self, end_ms: u64, tokens: u32) {
        let end = end_ms & TIME_MASK;
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            let (held_end, held) = unpack_window(s);
            let base = if s & OPENED != 0 && held_end == end { held } else { 0 };
            Some(OPENED | (end << COUNT_BITS) | u64::from(base.saturating_add(tokens).min(WINDOW_MAX_REQUESTS)))
        });
    }
}

/// The effective `max` (capped to what the atomic holds) and window.
fn window_params(limit: RateLimit) -> (u32, i64) {
    let window = limit.window_ms.min(MAX_WINDOW_MS);
    (limit.max.min(WINDOW_MAX_REQUESTS), i64::try_from(window).unwrap_or(i64::MAX))
}

fn unpack_window(s: u64) -> (u64, u32) {
    ((s >> COUNT_BITS) & TIME_MASK, (s & u64::from(WINDOW_MAX_REQUESTS)) as u32)
}

/// `now_ms - start` modulo 2^41 as a signed number: negative when the clock
/// is behind the window's start.
fn elapsed_ms(now_ms: u64, start: u64) -> i64 {
    let d = now_ms.wrapping_sub(start) & TIME_MASK;
    if d < TIME_HALF { d as i64 } else { d as i64 - (1i64 << TIME_BITS) }
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

    /// Requests counted in the window containing `now` (0 once it has passed).
    pub fn count(&self, window_us: u64, now: Micros) -> u32 {
        let s = self.state.load(Ordering::Acquire);
        if (s >> 32) as u32 == (now / window_us) as u32 { s as u32 } else { 0 }
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

    /// Adds `n` uses (a lease granted in cluster mode), saturating.
    pub fn add(&self, n: u32) {
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            let (p, r) = unpack(s);
            Some(pack(p, r.saturating_add(n)))
        });
    }

    /// Takes every use left (a lease returned in cluster mode); returns how many.
    pub fn drain(&self) -> u32 {
        let old = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| Some(pack(unpack(s).0, 0)));
        unpack(old.unwrap_or(0)).1
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

    /// Overwrites the consumption (cluster mode: as PostgreSQL counts it).
    pub fn set(&self, used: u64) {
        self.used.store(used, Ordering::Release);
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

    const MS: u64 = 1000;

    #[test]
    fn window_admits_max_until_the_window_has_passed() {
        // The case: 2 per minute, requests at 0 s, 0.5 s and 30.1 s.
        let w = AnchoredWindow::default();
        let limit = RateLimit { max: 2, window_ms: 60_000 };
        let t0 = 1_700_000_000 * SEC + 123;
        assert_eq!(w.try_take(limit, t0, 1), Ok(RateInfo { limit: 2, remaining: 1, reset_ms: 60_000 }));
        assert_eq!(w.try_take(limit, t0 + 500 * MS, 1), Ok(RateInfo { limit: 2, remaining: 0, reset_ms: 59_500 }));
        let d = w.try_take(limit, t0 + 30_100 * MS, 1).unwrap_err();
        assert_eq!(
            d,
            RateDenied { info: RateInfo { limit: 2, remaining: 0, reset_ms: 29_900 }, retry_after_ms: 29_900 }
        );
        assert!(w.try_take(limit, t0 + 59_999 * MS, 1).is_err());
        // When the window has passed, the next request opens a new one at its
        // own time (not at the old window's end).
        let t1 = t0 + 75 * SEC;
        assert_eq!(w.try_take(limit, t1, 1), Ok(RateInfo { limit: 2, remaining: 1, reset_ms: 60_000 }));
        assert!(w.try_take(limit, t1 + 59 * SEC, 1).is_ok());
        assert!(w.try_take(limit, t1 + 59 * SEC, 1).is_err());
        assert!(w.try_take(limit, t1 + 60 * SEC, 1).is_ok());
    }

    #[test]
    fn window_cost_undo_and_clock_steps() {
        let w = AnchoredWindow::default();
        let limit = RateLimit { max: 5, window_ms: 1000 };
        let now = 42 * SEC;
        w.try_take(limit, now, 3).unwrap();
        let d = w.try_take(limit, now + 100 * MS, 3).unwrap_err();
        assert_eq!((d.info.remaining, d.retry_after_ms), (2, 900));
        // A cost above the limit is denied, and changes nothing.
        assert!(w.try_take(limit, now, 6).is_err());
        w.undo(limit, now + 200 * MS, 3);
        assert_eq!(w.try_take(limit, now + 300 * MS, 5).unwrap().remaining, 0);
        // An undo after the window has ended gives nothing back to the next.
        w.undo(limit, now + 300 * MS, 5);
        w.try_take(limit, now + 300 * MS, 5).unwrap();
        w.try_take(limit, now + 2 * SEC, 5).unwrap();
        w.undo(limit, now + 300 * MS, 5);
        assert!(w.try_take(limit, now + 2 * SEC, 1).is_err(), "an old window's undo leaked into the new one");
        // A clock that steps back counts in the current window: no early reset.
        let d = w.try_take(limit, now + SEC, 1).unwrap_err();
        assert_eq!(d.retry_after_ms, 2000);
        // A window whose requests were all given back is closed: the next
        // request anchors a new one.
        let w = AnchoredWindow::default();
        w.try_take(limit, now, 1).unwrap();
        w.undo(limit, now, 1);
        assert_eq!(w.try_take(limit, now + 700 * MS, 5).unwrap().reset_ms, 1000);
        // ...but never one that starts before it: a clock behind counts in it.
        w.undo(limit, now + 700 * MS, 5);
        assert_eq!(w.try_take(limit, now + 600 * MS, 1).unwrap().reset_ms, 1100);
    }

    #[test]
    fn window_survives_extreme_inputs() {
        for limit in [
            RateLimit { max: 0, window_ms: 0 },
            RateLimit { max: u32::MAX, window_ms: u64::MAX },
            RateLimit { max: 1, window_ms: 0 },
            RateLimit { max: WINDOW_MAX_REQUESTS, window_ms: 1 },
        ] {
            let w = AnchoredWindow::default();
            for now in [0, 1, u64::MAX, u64::MAX / 2, 1 << 52, 5] {
                for cost in [1, u32::MAX, WINDOW_MAX_REQUESTS] {
                    if let Ok(info) = w.try_take(limit, now, cost) {
                        assert!(info.remaining <= info.limit);
                        w.undo(limit, now, cost);
                    }
                }
            }
        }
        // The cap: a limit above it admits exactly the cap.
        let w = AnchoredWindow::default();
        let limit = RateLimit { max: u32::MAX, window_ms: 60_000 };
        assert_eq!(w.try_take(limit, SEC, WINDOW_MAX_REQUESTS).unwrap().remaining, 0);
        assert!(w.try_take(limit, SEC, 1).is_err());
        // Times wrap around the 41 bits of the start without a false reset,
        // and a first request at any time opens a window.
        let w = AnchoredWindow::default();
        let limit = RateLimit { max: 1, window_ms: 10_000 };
        let edge = ((1u64 << 41) - 1) * MS;
        w.try_take(limit, edge, 1).unwrap();
        assert!(w.try_take(limit, edge + 9 * SEC, 1).is_err());
        assert!(w.try_take(limit, edge + 10 * SEC, 1).is_ok());
    }

    #[test]
    fn window_never_over_admits_under_contention() {
        use std::collections::HashMap;
        use std::sync::Mutex;
        // Random times over many windows from 8 threads, some takes undone:
        // every admitted request reports its window (now + reset - window),
        // and no window holds more than `max` net of undos, windows do not
        // overlap, and each starts at the time of a request counted in it.
        let limit = RateLimit { max: 7, window_ms: 50 };
        let w = AnchoredWindow::default();
        let base = 1_700_000_000 * SEC;
        let taken: Mutex<Vec<(u64, u64, bool)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let (w, taken) = (&w, &taken);
                s.spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                    let mut mine = Vec::new();
                    for i in 0..20_000u64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Each thread's clock moves forward with up to 6 ms of
                        // jitter; threads run at different speeds, so their
                        // clocks also disagree with each other.
                        let now = base + i * 400 + (x % 6000);
                        if let Ok(info) = w.try_take(limit, now, 1) {
                            let start = (now / MS + info.reset_ms) - limit.window_ms;
                            let undone = x.is_multiple_of(5);
                            if undone {
                                w.undo(limit, now, 1);
                            }
                            mine.push((start, now / MS, undone));
                        }
                    }
                    taken.lock().unwrap().extend(mine);
                });
            }
        });
        let taken = taken.into_inner().unwrap();
        let mut windows: HashMap<u64, (u32, bool)> = HashMap::new();
        for &(start, at, undone) in &taken {
            assert!(at < start + limit.window_ms, "counted after its window ended");
            let e = windows.entry(start).or_default();
            e.0 += u32::from(!undone);
            e.1 |= at == start;
        }
        // A window whose every request was given back is closed early; the
        // others never overlap.
        let mut starts: Vec<u64> = windows.iter().filter(|(_, (net, _))| *net > 0).map(|(s, _)| *s).collect();
        starts.sort_unstable();
        assert!(starts.len() > 100, "{} windows", starts.len());
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= limit.window_ms, "windows overlap: {pair:?}");
        }
        for (start, (net, anchored)) in windows {
            assert!(net <= limit.max, "window at {start} admitted {net}");
            assert!(anchored, "window at {start} does not start at a request");
        }
    }

    #[test]
    fn tighter_has_fewer_remaining_then_the_longer_reset() {
        let a = RateInfo { limit: 10, remaining: 3, reset_ms: 100 };
        let b = RateInfo { limit: 100, remaining: 2, reset_ms: 10 };
        let c = RateInfo { limit: 5, remaining: 3, reset_ms: 900 };
        assert_eq!(a.tighter(b), b);
        assert_eq!(b.tighter(a), b);
        assert_eq!(a.tighter(c), c);
        assert_eq!(c.tighter(a), c);
        assert_eq!(RateInfo::tightest(Some(a), None), Some(a));
        assert_eq!(RateInfo::tightest(None, Some(b)), Some(b));
        assert_eq!(RateInfo::tightest(None, None), None);
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
