//! The wall clock, in the unit every counter and limiter uses. The engine's
//! operations take the time as an argument (`verify_at`, `refill_at`), so tests
//! and the model-based test drive their own clock; this is where the daemon
//! reads the real one.

use std::time::{SystemTime, UNIX_EPOCH};

use super::limits::Micros;

/// The current time in microseconds since the Unix epoch (0 before it).
pub fn now_us() -> Micros {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}
