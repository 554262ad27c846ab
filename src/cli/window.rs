//! The time window of the reading commands (`report`, `flamegraph` and
//! `export`), resolved against the clock.
//!
//! The decision a reader must know: there is one resolver, evaluated once
//! per command with the real time of day, so the three commands agree on
//! what `--from`, `--to`, `--since` and `--day` mean. `--to` defaults to
//! now; `--since` counts back from `--to`; without either `--from` or
//! `--since` the window is the last hour. A window that ends before it
//! starts, or that starts at or after now (nothing can have been sampled
//! in it yet), is a usage error (exit 2): an answer about it could only be
//! "nothing", which would look like an idle machine.

use std::time::Duration;

use super::parse::Day;
use crate::store::catalog::Window;

/// Length of the window when neither `--from` nor `--since` is given.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(3_600);

const DAY_US: i64 = 86_400_000_000;

/// The window flags as typed, times already parsed (microseconds since
/// the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowFlags {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub since: Option<Duration>,
    pub day: Option<Day>,
}

/// A window that cannot be read: a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadWindow(pub String);

impl WindowFlags {
    /// The window `[from, to)` these flags ask for when it is `now_us`.
    pub fn resolve(&self, now_us: i64) -> Result<Window, BadWindow> {
        let (from_us, to_us) = match self.day {
            Some(day) => {
                let today = now_us.div_euclid(DAY_US) * DAY_US;
                let start = match day {
                    Day::Today => today,
                    Day::Yesterday => today - DAY_US,
                    Day::Starting(us) => us,
                };
                (start, start.saturating_add(DAY_US))
            }
            None => {
                let to_us = self.to.unwrap_or(now_us);
                let from_us = match self.from {
                    Some(from_us) => from_us,
                    None => to_us.saturating_sub(micros(self.since.unwrap_or(DEFAULT_SINCE))),
                };
                (from_us, to_us)
            }
        };
        let start_given = self.from.is_some() || self.day.is_some();
        if start_given && from_us >= now_us {
            return Err(BadWindow(format!(
                "the window starts at {} UTC, after now ({} UTC): nothing has been sampled in it \
                 yet (times without an offset are UTC)",
                shown(from_us),
                shown(now_us.div_euclid(1_000_000) * 1_000_000)
            )));
        }
        if from_us >= to_us {
            return Err(BadWindow(format!(
                "the window is empty: it would start at {} and end at {} UTC (--from must be \
                 before --to)",
                shown(from_us),
                shown(to_us)
            )));
        }
        Ok(Window { from_us, to_us })
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// `2026-11-30 08:00:00`, with a fraction only when there is one.
fn shown(us: i64) -> String {
    let mut text = String::new();
    crate::store::timefmt::write_timestamp_micros(&mut text, us);
    match text.strip_suffix(".000000") {
        Some(whole) => whole.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;
    /// 2026-11-30 00:00:00 UTC.
    const NOV30: i64 = 1_795_996_800_000_000;
    /// 2026-11-30 10:30:00 UTC: "now" in these tests.
    const NOW: i64 = NOV30 + 10 * HOUR + HOUR / 2;

    fn flags(from: Option<i64>, to: Option<i64>, since: Option<u64>) -> WindowFlags {
        WindowFlags {
            from,
            to,
            since: since.map(Duration::from_secs),
            day: None,
        }
    }

    fn window(flags: WindowFlags) -> (i64, i64) {
        let w = flags.resolve(NOW).unwrap_or_else(|err| panic!("{err}"));
        (w.from_us, w.to_us)
    }

    #[test]
    fn to_defaults_to_now() {
        let at8 = NOV30 + 8 * HOUR;
        assert_eq!(window(flags(Some(at8), None, None)), (at8, NOW));
        assert_eq!(window(flags(None, None, None)), (NOW - HOUR, NOW));
        assert_eq!(
            window(flags(None, None, Some(120))),
            (NOW - 120_000_000, NOW)
        );
        assert_eq!(
            window(flags(None, Some(at8), Some(1_800))),
            (at8 - HOUR / 2, at8)
        );
        assert_eq!(window(flags(None, Some(at8), None)), (at8 - HOUR, at8));
        // A window reaching past now is fine (the current hour, today).
        assert_eq!(
            window(flags(Some(at8), Some(NOW + HOUR), None)),
            (at8, NOW + HOUR)
        );
    }

    #[test]
    fn days_are_whole_utc_days() {
        let day = |day| WindowFlags {
            day: Some(day),
            ..WindowFlags::default()
        };
        assert_eq!(window(day(Day::Today)), (NOV30, NOV30 + 24 * HOUR));
        assert_eq!(window(day(Day::Yesterday)), (NOV30 - 24 * HOUR, NOV30));
        assert_eq!(
            window(day(Day::Starting(NOV30 - 48 * HOUR))),
            (NOV30 - 48 * HOUR, NOV30 - 24 * HOUR)
        );
        let err = day(Day::Starting(NOV30 + 24 * HOUR))
            .resolve(NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("after now"), "{err}");
    }

    #[test]
    fn empty_and_future_windows_are_refused() {
        let at8 = NOV30 + 8 * HOUR;
        let err = flags(Some(at8), Some(at8), None)
            .resolve(NOW)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the window is empty")
                && err.contains("2026-11-30 08:00:00 and end at 2026-11-30 08:00:00 UTC"),
            "{err}"
        );
        let err = flags(Some(NOW + HOUR), None, None)
            .resolve(NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("after now"), "{err}");
        let err = flags(Some(at8), Some(at8 - HOUR), None)
            .resolve(NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the window is empty"), "{err}");
        let err = flags(Some(NOW + HOUR), Some(NOW + 2 * HOUR), None)
            .resolve(NOW)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("starts at 2026-11-30 11:30:00 UTC, after now (2026-11-30 10:30:00 UTC)"),
            "{err}"
        );
        assert!(flags(None, None, Some(0)).resolve(NOW).is_err());
        // An absurd --since reaches back to the beginning of time, no overflow.
        let (from, to) = window(flags(None, None, Some(u64::MAX)));
        assert!(from < 0 && to == NOW);
    }
}
