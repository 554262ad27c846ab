//! Times and days as users type them: `--from`, `--to`, `--day`, and the
//! `ts` literals of `report --where`.
//!
//! The decision a reader must know: they are parsed by `jiff`, not by
//! hand. A time is a Temporal/RFC 3339 date-time whose offset, when given,
//! is honoured (`2026-11-30T08:00+01:00`); without one it is UTC, as every
//! time taskscope writes or shows is. Only fixed offsets are understood: a
//! time zone name would need a time zone database, so it is refused rather
//! than guessed. The per-row reader of the files' own timestamps is
//! `timefmt` (a test there checks that both agree on which dates exist).

use jiff::fmt::temporal::{Pieces, PiecesOffset, TimeZoneAnnotationKind};
use jiff::{civil, Timestamp};

/// Examples shown in every time error.
const TIME_EXAMPLES: &str =
    "'2026-11-30 08:00' (UTC), 2026-11-30T08:00:05Z, '2026-11-30 08:00+01:00', 2026-11-30";

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
