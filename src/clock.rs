//! Wall-clock time as the gateway uses it: token times are Unix seconds,
//! metrics timestamps Unix seconds as floats. A clock set before 1970
//! reads as 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch of `at`.
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch of `at`.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

/// Seconds since the Unix epoch, now, with the fraction (for gauges).
pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
