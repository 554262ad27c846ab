//! What users type: durations, sizes, file modes, times and days, parsed
//! one way for every flag and the settings file (which hands its values to
//! the same clap parsers).
//!
//! The decision a reader must know: durations are parsed by `jiff`, not by
//! hand: its "friendly" or ISO 8601 forms with days of 24 hours; a bare
//! number is seconds. Times and days are parsed in `store::user_time`
//! (also with jiff), because `report --where` reads times in its
//! predicates too and the readers depend on the store alone; they are
//! named here as `time` and `day` so every flag's parser is in this one
//! list. Sizes stay hand-written: their units mean what the README says
//! (K and KiB are 1024, KB is 1000), which the crates that parse sizes do
//! not all agree on.

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};

pub use crate::store::user_time::{day, time, Day};

/// Examples shown in every duration error.
const DURATION_EXAMPLES: &str = "90s, 30m, 1h30m, '2 hours', 1d12h";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
