//! Times as people and models write them: `75`, `75.5`, `1:15`, `01:15.500`,
//! `1:01:15`. Parsed into integer milliseconds, never through floats. And
//! the one way a number of seconds from outside (a header, a setting)
//! becomes a [`Duration`].

use std::time::Duration;

use crate::schema::Millis;

/// The longest wait or timeout vidgate takes from a number of seconds: a
/// week. Settings beyond it are refused; a server's longer wait is cut to it.
pub const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// `secs` seconds, cut to [`MAX_SECONDS`]; NaN and negatives are zero.
///
/// `Duration::from_secs_f64` panics on huge, infinite or negative values,
/// and a deadline that far out would overflow an `Instant` anyway.
pub fn seconds(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs.min(MAX_SECONDS)).unwrap_or(Duration::ZERO)
}

/// `wait` cut to [`MAX_SECONDS`], for waits that arrive already as durations.
pub fn capped(wait: Duration) -> Duration {
    wait.min(seconds(MAX_SECONDS))
}

/// Parse a time into milliseconds, or `None` when it is not one.
pub fn parse(text: &str) -> Option<Millis> {
    let text = text.trim();
    let text = text.strip_suffix('s').unwrap_or(text);
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 {
        return None;
    }
    let (last, whole) = parts.split_last()?;
    let (secs, millis) = seconds_and_millis(last)?;
    let mut total: u64 = 0;
    for (i, part) in whole.iter().enumerate() {
        if part.is_empty() || part.len() > 10 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u64 = part.parse().ok()?;
        // Minutes (and seconds after a colon) stay under 60; the first unit may run on.
        if i > 0 && v >= 60 {
            return None;
        }
        total = total.checked_mul(60)?.checked_add(v)?;
    }
    if !whole.is_empty() && secs >= 60 {
        return None;
    }
    let total_secs = if whole.is_empty() { secs } else { total.checked_mul(60)?.checked_add(secs)? };
    total_secs.checked_mul(1000)?.checked_add(millis)
}

fn seconds_and_millis(text: &str) -> Option<(u64, u64)> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || int.len() > 12 || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let mut millis = 0u64;
    for (i, b) in frac.bytes().take(3).enumerate() {
        millis += (b - b'0') as u64 * 10u64.pow(2 - i as u32);
    }
    Some((int.parse().ok()?, millis))
}

/// `H:MM:SS.mmm`, or `MM:SS.mmm` under an hour.
pub fn format(ms: Millis) -> String {
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{milli:03}")
    } else {
        format!("{m:02}:{s:02}.{milli:03}")
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time, as token services write
/// expiries: `2026-12-06T03:15:00Z`, `2026-12-06T04:15:00.123456+01:00`. A
/// time without an offset is read as UTC. `None` when it is not one.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let text = text.trim();
    let b = text.as_bytes();
    if !text.is_ascii() || b.len() < 19 || b.len() > 64 {
        return None;
    }
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (year, month, day) = (num(&text[0..4])?, num(&text[5..7])?, num(&text[8..10])?);
    let (hour, minute, second) = (num(&text[11..13])?, num(&text[14..16])?, num(&text[17..19])?);
    let mut rest = &text[19..];
    let mut fraction = 0.0;
    if let Some(after) = rest.strip_prefix('.') {
        let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        if digits == 0 {
            return None;
        }
        fraction = format!("0.{}", &after[..digits]).parse().ok()?;
        rest = &after[digits..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = &rest[1..];
            if hm.len() != 5 || hm.as_bytes()[2] != b':' {
                return None;
            }
            let (h, m) = (num(&hm[0..2])?, num(&hm[3..5])?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60: a leap second.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset_s) as f64 + fraction)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_forms_parse_exactly() {
        for (text, ms) in [
            ("0", 0),
            ("75", 75_000),
            ("75.5", 75_500),
            ("2.25s", 2_250),
            ("1:15", 75_000),
            ("01:15.500", 75_500),
            ("1:01:15", 3_675_000),
            ("1:01:15.0129", 3_675_012),
            ("90:00", 5_400_000),
        ] {
            assert_eq!(parse(text), Some(ms), "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for text in
            ["", ":", "1:", ":5", "1:60", "1:75:00", "-3", "1.2.3", "abc", "1:2:3:4", "1e3", "99999999999999999999"]
        {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn seconds_from_outside_never_panic() {
        let cap = Duration::from_secs(7 * 86_400);
        for (secs, want) in [
            (1.5, Duration::from_millis(1500)),
            (0.0, Duration::ZERO),
            (-0.0, Duration::ZERO),
            (-3.0, Duration::ZERO),
            (f64::NAN, Duration::ZERO),
            (1e30, cap),
            (1e300, cap),
            (f64::MAX, cap),
            (f64::INFINITY, cap),
            (f64::NEG_INFINITY, Duration::ZERO),
        ] {
            assert_eq!(seconds(secs), want, "{secs}");
        }
        assert_eq!(capped(Duration::MAX), cap);
        assert_eq!(capped(Duration::from_secs(3)), Duration::from_secs(3));
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [0, 999, 75_500, 3_675_012, 86_400_000] {
            assert_eq!(parse(&format(ms)), Some(ms));
        }
        assert_eq!(format(75_500), "01:15.500");
    }

    #[test]
    fn rfc3339_times_read_as_unix_seconds() {
        for (text, want) in [
            ("1970-01-01T00:00:00Z", 0.0),
            ("2000-03-01T00:00:00Z", 951_868_800.0),
            ("2026-12-06T03:15:00Z", 1_796_526_900.0),
            ("2026-12-06T04:15:00+01:00", 1_796_526_900.0),
            ("2026-12-06T02:45:00.5-00:30", 1_796_526_900.5),
            ("2026-12-06 03:15:00", 1_796_526_900.0),
            ("2024-02-29T23:59:59.250000Z", 1_709_251_199.25),
        ] {
            assert_eq!(parse_rfc3339(text), Some(want), "{text}");
        }
        for text in [
            "",
            "2026-12-06",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06T03:15:00+1:00",
            "2026-12-06T03:15:00.Z",
            "2026-12-06T03:15:00 UTC",
            "tomorrow at noon, roughly",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text}");
        }
    }
}
