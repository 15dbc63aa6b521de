//! The duration and time arguments: `90m`, `12h`, `30d`, `2w`; RFC 3339 or a date;
//! a duration ago.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// `90m`, `12h`, `30d`, `2w`, `45s`.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let bad = || {
        format!("invalid duration `{s}`: expected a number and a unit, e.g. `90m`, `12h`, `30d`")
    };
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(unit_at);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let delta = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        "w" => TimeDelta::try_weeks(n),
        _ => None,
    };
    delta.ok_or_else(bad)
}

/// RFC 3339, or a date (midnight UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("invalid time `{s}`: expected RFC 3339 (`2025-01-31T12:00:00Z`) or a date (`2025-01-31`)"))
}

/// A duration from now (an expiry): `now + d`, refused when it falls beyond the
/// calendar rather than overflowing (E4).
pub fn parse_from_now(s: &str) -> Result<DateTime<Utc>, String> {
    let d = parse_duration(s)?;
    Utc::now()
        .checked_add_signed(d)
        .ok_or_else(|| format!("duration `{s}` reaches beyond the last representable time"))
}

/// [`parse_time`], or a duration before now: `now - d`, refused when it falls before
/// the calendar rather than overflowing (E4).
pub fn parse_time_or_ago(s: &str) -> Result<DateTime<Utc>, String> {
    match parse_duration(s) {
        Ok(ago) => Utc::now().checked_sub_signed(ago).ok_or_else(|| {
            format!("duration `{s}` reaches before the first representable time")
        }),
        Err(_) => parse_time(s).map_err(|_| {
            format!("invalid time `{s}`: expected RFC 3339, a date (`2025-01-31`) or a duration ago (`12h`, `7d`)")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration("90m"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("2w"), Ok(TimeDelta::days(14)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        let t = parse_time("2025-01-31").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-31T00:00:00+00:00");
        let t = parse_time("2025-01-31T12:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-31T10:00:00+00:00");
        assert!(parse_time_or_ago("1h").unwrap() < Utc::now());
        assert!(parse_time_or_ago("yesterday").is_err());
        // E4: in range for TimeDelta, out of range for a date.
        assert!(parse_time_or_ago("100000000d").is_err());
        assert!(parse_from_now("100000000d").is_err());
        assert!(parse_from_now("30d").unwrap() > Utc::now());
    }
}
