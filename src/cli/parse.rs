//! What users type: durations, sizes, file modes, times and days, parsed
//! one way for every flag and the settings file (which hands its values to
//! the same clap parsers).
//!
//! The decision a reader must know: times and durations are parsed by
//! `jiff`, not by hand. A time is a Temporal/RFC 3339 date-time whose
//! offset, when given, is honoured (`2026-11-30T08:00+01:00`); without one
//! it is UTC, as every time taskscope writes or shows is. Only fixed
//! offsets are understood: a time zone name would need a time zone
//! database, so it is refused rather than guessed. Durations are jiff's
//! "friendly" or ISO 8601 forms with days of 24 hours; a bare number is
//! seconds. Sizes stay hand-written: their units mean what the README
//! says (K and KiB are 1024, KB is 1000), which the crates that parse
//! sizes do not all agree on.

use std::time::Duration;

use jiff::fmt::temporal::{Pieces, PiecesOffset, TimeZoneAnnotationKind};
use jiff::{civil, Span, SpanRelativeTo, Timestamp};

/// Examples shown in every duration error.
const DURATION_EXAMPLES: &str = "90s, 30m, 1h30m, '2 hours', 1d12h";
/// Examples shown in every time error.
const TIME_EXAMPLES: &str =
    "'2026-11-30 08:00' (UTC), 2026-11-30T08:00:05Z, '2026-11-30 08:00+01:00', 2026-11-30";

/// A duration: `90` (seconds), `250ms`, `90s`, `30m`, `1h30m`, `2 hours`,
/// `1d12h`, `1.5h`, `PT1H`. Days are 24 hours; months and years, which
/// have no fixed length, and negative durations are refused.
pub fn duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("'{text}' is too long"));
    }
    let span = trimmed
        .parse::<Span>()
        .or_else(|err| {
            trimmed
                .to_ascii_lowercase()
                .parse::<Span>()
                .map_err(|_| err)
        })
        .map_err(|_| format!("'{text}' is not a duration (examples: {DURATION_EXAMPLES})"))?;
    if span.is_negative() {
        return Err(format!(
            "'{text}' is negative; give a length such as {DURATION_EXAMPLES}"
        ));
    }
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            format!("'{text}': months and years have no fixed length; give days (30d, 365d)")
        })?;
    Duration::try_from(signed).map_err(|_| format!("'{text}' is too long"))
}

/// A size: `1GiB`, `500M`, `10MB`, `4096` (bytes). K, M, G, T and their
/// -iB forms are powers of 1024; KB, MB, GB, TB of 1000.
pub fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (examples: 500M, 1GiB, 20GB)"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{text}' (use K, M, G, T, KB, MB, GB, TB)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// An octal file mode: `0640`, `640`, `0o640`.
pub fn mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
        .map_err(|_| format!("'{text}' is not an octal mode such as 0644"))
}

/// A point in time, in microseconds since the Unix epoch.
///
/// A date and a time (`T` or a space between them; minutes, seconds or a
/// fraction), or a date alone (its midnight), followed by an offset
/// (`Z`, `+01:00`, `-0500`, with or without a space before it, or `UTC`)
/// or by nothing, which means UTC. The date and the time must exist:
/// `2026-02-30` and `24:00` are errors, not the next day.
pub fn time(text: &str) -> Result<i64, String> {
    let joined = join_offset(text.trim());
    let pieces = Pieces::parse(joined.as_str()).map_err(|err| time_error(text, &err))?;
    let offset = match (pieces.offset(), pieces.time_zone_annotation()) {
        (Some(offset), _) => offset,
        (None, None) => PiecesOffset::Zulu,
        (None, Some(annotation)) => match annotation.kind() {
            TimeZoneAnnotationKind::Offset(offset) => PiecesOffset::from(*offset),
            TimeZoneAnnotationKind::Named(name) if name.as_str().eq_ignore_ascii_case("utc") => {
                PiecesOffset::Zulu
            }
            TimeZoneAnnotationKind::Named(name) => {
                return Err(format!(
                    "'{text}': time zone names such as {} are not understood; give an \
                     offset (+01:00) or none for UTC",
                    name.as_str()
                ))
            }
            // A later jiff may know more kinds; none of them is an offset.
            #[allow(unreachable_patterns)]
            _ => {
                return Err(format!(
                    "'{text}' is not a time (examples: {TIME_EXAMPLES})"
                ))
            }
        },
    };
    let datetime = pieces
        .date()
        .to_datetime(pieces.time().unwrap_or(civil::Time::midnight()));
    let timestamp = offset
        .to_numeric_offset()
        .to_timestamp(datetime)
        .map_err(|_| format!("'{text}' is out of range"))?;
    Ok(micros(timestamp))
}

/// A whole UTC day as users name it (`--day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    Today,
    Yesterday,
    /// The day's first microsecond since the epoch.
    Starting(i64),
}

/// `today`, `yesterday` or a date `YYYY-MM-DD` that exists.
pub fn day(text: &str) -> Result<Day, String> {
    match text.trim() {
        "today" => return Ok(Day::Today),
        "yesterday" => return Ok(Day::Yesterday),
        _ => {}
    }
    let trimmed = text.trim();
    if trimmed.len() != 10 || !looks_like_a_date(trimmed) {
        return Err(format!(
            "'{text}' is not a day: give yesterday, today or YYYY-MM-DD"
        ));
    }
    let date: civil::Date = trimmed
        .parse()
        .map_err(|err: jiff::Error| format!("{text} is not a date: {}", reason(&err)))?;
    let start = jiff::tz::Offset::UTC
        .to_timestamp(date.to_datetime(civil::Time::midnight()))
        .map_err(|_| format!("'{text}' is out of range"))?;
    Ok(Day::Starting(micros(start)))
}

fn micros(timestamp: Timestamp) -> i64 {
    // Microseconds since 1970 fit an i64 for every year jiff represents.
    timestamp.as_microsecond()
}

/// `2026-11-30 08:00 +01:00` → `2026-11-30 08:00+01:00`, and a final
/// `UTC` → `Z`, so that Temporal's grammar reads what people write.
fn join_offset(text: &str) -> String {
    if text.len() > 3 && text[text.len() - 3..].eq_ignore_ascii_case("utc") {
        return format!("{}Z", text[..text.len() - 3].trim_end());
    }
    if let Some((head, tail)) = text.rsplit_once(' ') {
        let has_time = head.contains([' ', 'T', 't']);
        let is_offset = tail.starts_with(['+', '-']) || tail.eq_ignore_ascii_case("z");
        if has_time && is_offset {
            return format!("{}{tail}", head.trim_end());
        }
    }
    text.to_string()
}

/// Whether `text` starts like `YYYY-MM-DD`, so that an error can say
/// what in it is wrong.
fn looks_like_a_date(text: &str) -> bool {
    let t = text.trim().as_bytes();
    t.len() >= 10 && t[4] == b'-' && t[7] == b'-' && t[..4].iter().all(u8::is_ascii_digit)
}

/// The part of jiff's message that says what is wrong ("parameter 'day'
/// for `2026-02` is invalid, must be in range `1..=28`").
fn reason(err: &jiff::Error) -> String {
    let text = err.to_string();
    text.rsplit(": ").next().unwrap_or(&text).to_string()
}

fn time_error(text: &str, err: &jiff::Error) -> String {
    let trimmed = text.trim();
    if looks_like_a_date(trimmed) {
        format!(
            "'{text}' is not a valid time: {} (examples: {TIME_EXAMPLES})",
            reason(err)
        )
    } else if trimmed.contains(':') && !trimmed.contains('-') {
        format!("'{text}' has no date: write it as '2026-11-30 {trimmed}' (UTC)")
    } else {
        format!("'{text}' is not a time (examples: {TIME_EXAMPLES})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;
    const HOUR: i64 = 60 * MINUTE;
    /// 2026-11-30 00:00:00 UTC.
    const NOV30: i64 = 1_795_996_800_000_000;

    #[test]
    fn durations() {
        for (text, secs) in [
            ("90", 90),
            ("0", 0),
            ("90s", 90),
            ("30m", 1_800),
            ("1h30m", 5_400),
            ("1h 30m", 5_400),
            ("2 hours", 7_200),
            ("2 hours, 30 minutes", 9_000),
            ("1d12h", 129_600),
            ("7d", 604_800),
            ("1w", 604_800),
            ("1.5h", 5_400),
            ("PT1H", 3_600),
            ("1H", 3_600),
            (" 10s ", 10),
        ] {
            assert_eq!(duration(text), Ok(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1_500)));
        for (text, message) in [
            ("", "not a duration"),
            ("soon", "not a duration"),
            ("5 parsecs", "not a duration"),
            ("99999999999999999999d", "not a duration"),
            ("99999999999999999999", "too long"),
            ("-5m", "negative"),
            ("1h ago", "negative"),
            ("1y", "no fixed length"),
            ("1mo", "no fixed length"),
        ] {
            let err = duration(text).unwrap_err();
            assert!(err.contains(message), "{text}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("500M"), Ok(500 << 20));
        assert_eq!(size("500 M"), Ok(500 << 20));
        assert_eq!(size("10MB"), Ok(10_000_000));
        assert_eq!(size("4096"), Ok(4096));
        assert!(size("1 parsec").is_err());
        assert!(size("").is_err());
        assert!(size("99999999999T").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(mode("0640"), Ok(0o640));
        assert_eq!(mode("640"), Ok(0o640));
        assert_eq!(mode("0o640"), Ok(0o640));
        assert!(mode("rw-r--r--").is_err());
        assert!(mode("0689").is_err());
    }

    #[test]
    fn times() {
        let at8 = NOV30 + 8 * HOUR;
        for (text, want) in [
            ("2026-11-30", NOV30),
            ("2026-11-30 08:00", at8),
            ("2026-11-30T08:00", at8),
            ("2026-11-30 08:00:00", at8),
            ("2026-11-30 08:00:05.25", at8 + 5_250_000),
            ("2026-11-30 08:00:05.123456789", at8 + 5_123_456),
            ("2026-11-30T08:00:00Z", at8),
            ("2026-11-30 08:00Z", at8),
            ("2026-11-30 08:00 Z", at8),
            ("2026-11-30 08:00 UTC", at8),
            ("2026-11-30 08:00:00 UTC", at8),
            ("2026-11-30T08:00:00+01:00", at8 - HOUR),
            ("2026-11-30 08:00:00 +01:00", at8 - HOUR),
            ("2026-11-30 08:00 -0530", at8 + 5 * HOUR + 30 * MINUTE),
            ("2026-11-30T08:00:00-00:00", at8),
            ("2026-11-30 08:00[UTC]", at8),
            ("  2026-11-30 08:00  ", at8),
            ("2028-02-29", 1_835_395_200_000_000),
            ("1969-12-31 23:59:59", -1_000_000),
        ] {
            assert_eq!(time(text), Ok(want), "{text}");
        }
        for (text, message) in [
            ("2026-02-30", "not a valid time"),
            ("2026-02-29", "not a valid time"),
            ("2026-13-01", "not a valid time"),
            ("2026-11-31 08:00", "not a valid time"),
            ("2026-11-30 24:00", "not a valid time"),
            ("2026-11-30 08:60", "not a valid time"),
            ("2026-11-30 08:00+26:00", "not a valid time"),
            ("2026-11-30 08:00[Europe/Paris]", "time zone names"),
            ("08:00", "has no date"),
            ("08:00:05", "has no date"),
            ("yesterday", "not a time"),
            ("soon", "not a time"),
            ("", "not a time"),
        ] {
            let err = time(text).unwrap_err();
            assert!(err.contains(message), "{text}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = time("2026-02-30").unwrap_err();
        assert!(err.contains("day"), "says which part is wrong: {err}");
    }

    #[test]
    fn days() {
        assert_eq!(day("today"), Ok(Day::Today));
        assert_eq!(day("yesterday"), Ok(Day::Yesterday));
        assert_eq!(day("2026-11-30"), Ok(Day::Starting(NOV30)));
        for (text, message) in [
            ("2026-02-30", "2026-02-30 is not a date"),
            ("2026-13-01", "2026-13-01 is not a date"),
            ("2026-04-31", "is not a date"),
            ("2026-11-30 08:00", "give yesterday, today or YYYY-MM-DD"),
            ("tomorrow", "give yesterday, today or YYYY-MM-DD"),
            ("30/11/2026", "give yesterday, today or YYYY-MM-DD"),
        ] {
            let err = day(text).unwrap_err();
            assert!(err.contains(message), "{text}: {err}");
        }
    }
}
