//! Time in the one unit the store keeps: Unix milliseconds, UTC.

use chrono::{DateTime, Utc};

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A stored time as a `DateTime`; out-of-range values (which turnstile never writes)
/// read as the epoch rather than panicking.
pub(crate) fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
