//! The CLI's units: durations as humantime strings (`30d`, `1h30m`, `500ms`)
//! everywhere, and points in time as RFC 3339 or "that long ago". Each flag
//! also takes the plain number it took before, in its old unit, so existing
//! scripts keep working; clap calls these as value parsers, so a bad value is
//! a usage error (exit 2) that names the flag.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A humantime duration (`90s`, `1h 30m`, `30d`), without a plain-number
/// fallback. Spaces between the parts are allowed; a negative or empty value
/// is not.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty; expected a duration such as 30s, 5m, 1h or 30d".to_owned());
    }
    humantime::parse_duration(t).map_err(|e| format!("{e}; expected a duration such as 30s, 5m, 1h or 30d"))
}

/// A plain unsigned integer (the old, unit-less form), or `None` when `s` is
/// not one.
fn plain(s: &str) -> Option<Result<u64, String>> {
    let t = s.trim();
    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse::<u64>().map_err(|_| format!("{t} is too large")))
}

/// Whole seconds: a duration (`30d`, `12h`) or a plain number of seconds.
/// At least one second; a fraction of a second is refused, not rounded.
pub fn seconds(s: &str) -> Result<u64, String> {
    let secs = match plain(s) {
        Some(n) => n?,
        None => {
            let d = duration(s)?;
            if d.subsec_nanos() != 0 {
                return Err(format!("{s:?} is not a whole number of seconds"));
            }
            d.as_secs()
        }
    };
    if secs == 0 { Err("must be at least 1s".to_owned()) } else { Ok(secs) }
}

/// Whole milliseconds: a duration (`1m`, `500ms`) or a plain number of
/// milliseconds. At least one millisecond.
pub fn millis(s: &str) -> Result<u64, String> {
    let ms = match plain(s) {
        Some(n) => n?,
        None => {
            let d = duration(s)?;
            if d.subsec_nanos() % 1_000_000 != 0 {
                return Err(format!("{s:?} is not a whole number of milliseconds"));
            }
            u64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))?
        }
    };
    if ms == 0 { Err("must be at least 1ms".to_owned()) } else { Ok(ms) }
}

/// Whole days: a duration that is a multiple of 24 hours (`30d`, `48h`) or a
/// plain number of days. At least one day.
pub fn days(s: &str) -> Result<u32, String> {
    const DAY: u64 = 86_400;
    let days = match plain(s) {
        Some(n) => n?,
        None => {
            let d = duration(s)?;
            if d.subsec_nanos() != 0 || d.as_secs() % DAY != 0 {
                return Err(format!("{s:?} is not a whole number of days (access tokens expire in days)"));
            }
            d.as_secs() / DAY
        }
    };
    match u32::try_from(days) {
        Ok(0) => Err("must be at least 1d".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is too long")),
    }
}

/// The `--timeout`: a duration or a plain number of seconds, at least 1 ms.
pub fn timeout(s: &str) -> Result<Duration, String> {
    let d = match plain(s) {
        Some(n) => Duration::from_secs(n?),
        None => duration(s)?,
    };
    if d < Duration::from_millis(1) { Err("must be at least 1ms".to_owned()) } else { Ok(d) }
}

/// A point in time as milliseconds since the epoch, from an RFC 3339 time
/// (`2026-11-22T20:41:46Z`, `2026-11-22T21:41:46+01:00`, fractions allowed),
/// a duration meaning that long before now (`2h`, `7d`), or a plain number of
/// milliseconds since the epoch (the old form).
pub fn instant_ms(s: &str) -> Result<u64, String> {
    instant_ms_at(s, SystemTime::now())
}

fn instant_ms_at(s: &str, now: SystemTime) -> Result<u64, String> {
    if let Some(n) = plain(s) {
        return n;
    }
    let t = s.trim();
    if t.contains('T') || t.contains('t') || (t.len() >= 10 && t.as_bytes()[4] == b'-') {
        return rfc3339_ms(t);
    }
    let ago = duration(t).map_err(|_| {
        format!("{s:?}: expected an RFC 3339 time (2026-11-22T20:41:46Z), a duration before now (2h, 7d) or epoch milliseconds")
    })?;
    let at = now.checked_sub(ago).filter(|at| *at >= UNIX_EPOCH).ok_or_else(|| format!("{s:?} ago is before 1970"))?;
    Ok(at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

/// RFC 3339 with `Z` or a numeric offset, as epoch milliseconds.
fn rfc3339_ms(t: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("{t:?} is not an RFC 3339 time ({why}); e.g. 2026-11-22T20:41:46Z");
    // humantime reads only `Z`: take a `+hh:mm` / `-hh:mm` offset off first.
    let (utc, offset_secs): (String, i64) = match t.len().checked_sub(6).map(|i| (i, &t[i..])) {
        Some((i, tail))
            if (tail.starts_with('+') || tail.starts_with('-'))
                && tail.as_bytes()[3] == b':'
                && tail[1..3].bytes().chain(tail[4..].bytes()).all(|b| b.is_ascii_digit()) =>
        {
            let h: i64 = tail[1..3].parse().map_err(|_| bad("offset"))?;
            let m: i64 = tail[4..].parse().map_err(|_| bad("offset"))?;
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            (format!("{}Z", &t[..i]), sign * (h * 3600 + m * 60))
        }
        _ => (t.to_owned(), 0),
    };
    let local =
        humantime::parse_rfc3339(&utc.replacen('t', "T", 1).replacen('z', "Z", 1)).map_err(|e| bad(&e.to_string()))?;
    let ms = local.duration_since(UNIX_EPOCH).map_err(|_| bad("before 1970"))?.as_millis() as i64;
    // 10:00+01:00 is 09:00Z: subtract the offset.
    u64::try_from(ms - offset_secs * 1000).map_err(|_| bad("before 1970"))
}

/// A duration in milliseconds for people: `1m`, `1h 30m`, `500ms`.
pub fn show_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_plain_numbers() {
        assert_eq!(seconds("30d"), Ok(30 * 86_400));
        assert_eq!(seconds("3600"), Ok(3600), "the old form: seconds");
        assert_eq!(seconds("1h 30m"), Ok(5400));
        assert!(seconds("500ms").unwrap_err().contains("whole number of seconds"));
        assert!(seconds("0").is_err() && seconds("0s").is_err());
        assert!(seconds("soon").unwrap_err().contains("expected a duration"));
        assert!(seconds("-5s").is_err());
        assert_eq!(millis("1m"), Ok(60_000));
        assert_eq!(millis("60000"), Ok(60_000), "the old form: milliseconds");
        assert_eq!(millis("250ms"), Ok(250));
        assert!(millis("1us").is_err());
        assert_eq!(days("30d"), Ok(30));
        assert_eq!(days("7"), Ok(7), "the old form: days");
        assert_eq!(days("48h"), Ok(2));
        assert!(days("36h").unwrap_err().contains("whole number of days"));
        assert_eq!(timeout("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(timeout("5"), Ok(Duration::from_secs(5)), "a plain number is seconds");
        assert_eq!(timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(timeout("0").is_err());
        assert_eq!(show_ms(60_000), "1m");
        assert_eq!(show_ms(5_400_500), "1h 30m 500ms");
    }

    #[test]
    fn instants() {
        let now = UNIX_EPOCH + Duration::from_millis(1_795_380_106_758);
        assert_eq!(instant_ms_at("1795380106758", now), Ok(1_795_380_106_758), "epoch milliseconds");
        assert_eq!(instant_ms_at("2h", now), Ok(1_795_380_106_758 - 7_200_000));
        assert_eq!(instant_ms_at("2026-11-22T20:41:46Z", now), Ok(1_795_380_106_000));
        assert_eq!(instant_ms_at("2026-11-22T20:41:46.758Z", now), Ok(1_795_380_106_758));
        assert_eq!(instant_ms_at("2026-11-22T21:41:46+01:00", now), Ok(1_795_380_106_000));
        assert_eq!(instant_ms_at("2026-11-22T15:41:46-05:00", now), Ok(1_795_380_106_000));
        assert_eq!(instant_ms_at("2026-11-22t20:41:46z", now), Ok(1_795_380_106_000));
        for bad in ["2026-13-01T00:00:00Z", "2026-11-22T20:41:46+25:00", "yesterday", "2026-11-22", ""] {
            assert!(instant_ms_at(bad, now).is_err(), "{bad}");
        }
        assert!(instant_ms_at("100000d", now).unwrap_err().contains("before 1970"));
    }
}
