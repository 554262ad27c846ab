//! UTC calendar arithmetic and the text forms of times used in files.
//!
//! All times in taskscope's files are UTC. Formatting a timestamp is on the
//! writer's per-row path, and reading one back is on the readers' per-row
//! path, so both are small conversions (days-to-civil and back) rather than
//! a general date library. They handle only the one form the agent writes;
//! what users type is parsed by `user_time` (with jiff), and a test checks
//! that both agree on which dates exist. The instant of a tick or a live
//! read is taken here too, on CLOCK_MONOTONIC and the wall clock at once
//! ([`now_pair`]), so that a row's `ts` and its durations agree.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    /// The calendar time of `secs` seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400) as u32;
        // Days to civil date, proleptic Gregorian (era-based algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: of_day / 3_600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
        }
    }

    /// `2026-11-22`
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `20261122T130000Z`
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Microseconds since the Unix epoch, now.
pub fn unix_micros_now() -> i64 {
    unix_micros(SystemTime::now())
}

/// Microseconds since the Unix epoch of `time` (negative before 1970).
pub fn unix_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_micros() as i64,
        Err(before) => -(before.duration().as_micros() as i64),
    }
}

/// Append `2026-11-22 13:00:00.123456` (UTC) to `out`.
pub fn write_timestamp_micros(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let c = Civil::from_unix(secs);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, frac
    );
}

/// Days since the epoch of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parse `2026-11-22 13:00:00.123456` (UTC; the fraction may be shorter or
/// absent) into microseconds since the epoch. A date or time that does not
/// exist (`2026-02-30`, `24:00:00`) is `None`, never the next day.
pub fn parse_timestamp_micros(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(' ')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=59).contains(&second)
    {
        return None;
    }
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(secs * 1_000_000 + micros)
}

/// Parse the `YYYYMMDDTHHMMSSZ` stamp of a file name.
pub fn parse_compact(stamp: &str) -> Option<i64> {
    if stamp.len() != 16 || !stamp.ends_with('Z') || stamp.as_bytes()[8] != b'T' {
        return None;
    }
    let text = format!(
        "{}-{}-{} {}:{}:{}",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    parse_timestamp_micros(&text).map(|us| us / 1_000_000)
}

/// `1m`, `24h`, `10s`, `250ms`: the shortest exact form.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1_000) {
        return format!("{ms}ms");
    }
    let s = ms / 1_000;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the BPF hooks stamp events
/// with.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Largest gap between the two CLOCK_MONOTONIC reads around the wall
/// clock's that [`now_pair`] accepts at once.
const PAIR_GAP_NS: u64 = 20_000;

/// One instant on both clocks: CLOCK_MONOTONIC (ns) and the wall clock
/// (µs since the epoch). The wall clock is read between two monotonic
/// reads and paired with their midpoint; if the thread was preempted or
/// interrupted in between (a gap over `PAIR_GAP_NS`), it is read again, up
/// to four times, keeping the tightest pair. A tick's `ts` and the instant
/// its durations are counted to thus differ by microseconds, not by a
/// preemption (15 ms once under load, when they were read separately).
pub fn now_pair() -> (u64, i64) {
    let mut best: Option<(u64, u64, i64)> = None;
    for _ in 0..4 {
        let before = monotonic_ns();
        let wall = unix_micros_now();
        let after = monotonic_ns();
        let gap = after.saturating_sub(before);
        let pair = (gap, before + gap / 2, wall);
        if gap <= PAIR_GAP_NS {
            return (pair.1, pair.2);
        }
        if best.is_none_or(|(tightest, _, _)| gap < tightest) {
            best = Some(pair);
        }
    }
    let (_, mono, wall) = best.expect("four tries");
    (mono, wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(
            Civil::from_unix(0),
            Civil {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
        // 2026-11-22T13:04:05Z
        let c = Civil::from_unix(1_795_352_645);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2026, 11, 22, 13, 4, 5)
        );
        assert_eq!(c.date(), "2026-11-22");
        assert_eq!(c.compact(), "20261122T130405Z");
        // Leap day and the day before the epoch.
        let leap = Civil::from_unix(951_782_400);
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let before = Civil::from_unix(-1);
        assert_eq!(
            (before.year, before.month, before.day, before.second),
            (1969, 12, 31, 59)
        );
    }

    #[test]
    fn matches_the_system_calendar_over_many_days() {
        // Every 7 hours 13 minutes for ~60 years, against `date -u` style
        // rules: month lengths and leap years.
        let mut t: i64 = 0;
        let mut last = Civil::from_unix(0);
        while t < 60 * 365 * 86_400 {
            t += 7 * 3_600 + 13 * 60;
            let c = Civil::from_unix(t);
            let month_len = match c.month {
                2 if (c.year % 4 == 0 && c.year % 100 != 0) || c.year % 400 == 0 => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            assert!(c.day >= 1 && c.day <= month_len, "{c:?}");
            assert!((c.year, c.month, c.day) >= (last.year, last.month, last.day));
            assert_eq!(
                i64::from(c.hour * 3_600 + c.minute * 60 + c.second),
                t.rem_euclid(86_400)
            );
            last = c;
        }
    }

    #[test]
    fn timestamps() {
        let mut s = String::new();
        write_timestamp_micros(&mut s, 1_795_352_645_000_123);
        assert_eq!(s, "2026-11-22 13:04:05.000123");
    }

    #[test]
    fn timestamps_round_trip() {
        for micros in [
            0,
            951_782_400_000_001,
            1_795_352_645_000_123,
            4_102_444_799_999_999,
        ] {
            let mut s = String::new();
            write_timestamp_micros(&mut s, micros);
            assert_eq!(parse_timestamp_micros(&s), Some(micros), "{s}");
        }
        assert_eq!(
            parse_timestamp_micros("2026-11-22 13:04:05"),
            Some(1_795_352_645_000_000)
        );
        assert_eq!(
            parse_timestamp_micros("2026-11-22 13:04:05.5"),
            Some(1_795_352_645_500_000)
        );
        assert_eq!(parse_timestamp_micros("2026-13-22 13:04:05"), None);
        for bad in [
            "2026-02-29 00:00:00",
            "2026-02-30 00:00:00",
            "2026-04-31 00:00:00",
            "2100-02-29 00:00:00",
            "2026-11-22 24:00:00",
            "2026-11-22 13:60:00",
            "2026-11-22 13:04:60",
            "2026-11-22 -1:04:05",
            "2026-00-22 13:04:05",
            "2026-11-00 13:04:05",
        ] {
            assert_eq!(parse_timestamp_micros(bad), None, "{bad}");
        }
        assert!(parse_timestamp_micros("2028-02-29 00:00:00").is_some());
        assert!(parse_timestamp_micros("2000-02-29 00:00:00").is_some());
        assert_eq!(parse_compact("20260230T000000Z"), None);
        assert_eq!(parse_compact("20261122T130405Z"), Some(1_795_352_645));
        assert_eq!(parse_compact("20261122T130405"), None);
    }

    /// The per-row reader agrees with jiff (what users' times are parsed
    /// with) on every date and time, valid or not, of a pseudo-random walk
    /// through the fields' edges.
    #[test]
    fn reader_agrees_with_jiff() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..200_000 {
            let year =
                [1970, 1999, 2000, 2024, 2026, 2100, 2400][next(7) as usize] + next(3) as i64;
            let (month, day) = (next(14), next(33));
            let (hour, minute, second) = (next(26), next(62), next(62));
            let frac = ["", ".5", ".123456", ".000001"][next(4) as usize];
            let text =
                format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}{frac}");
            let ours = parse_timestamp_micros(&text);
            let theirs = text
                .parse::<jiff::civil::DateTime>()
                .ok()
                .filter(|_| second < 60) // jiff reads :60 as :59 (leap second)
                .and_then(|dt| jiff::tz::Offset::UTC.to_timestamp(dt).ok())
                .map(|ts| ts.as_microsecond());
            assert_eq!(ours, theirs, "{text}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(Duration::from_secs(60)), "1m");
        assert_eq!(human_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
        assert_eq!(human_duration(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(human_duration(Duration::from_secs(7_200)), "2h");
    }

    #[test]
    fn a_pair_is_one_instant_on_both_clocks() {
        let mut offsets = Vec::new();
        for _ in 0..1_000 {
            let before = monotonic_ns();
            let (mono, wall) = now_pair();
            let after = monotonic_ns();
            assert!(before <= mono && mono <= after, "{before} {mono} {after}");
            offsets.push(wall - (mono / 1_000) as i64);
        }
        // The wall clock minus the monotonic one stays put across pairs
        // (to rounding and a slewing clock), where reads apart would
        // differ by whatever ran between them.
        let (min, max) = (offsets.iter().min().unwrap(), offsets.iter().max().unwrap());
        assert!(max - min <= 1_000, "offsets spread {} us", max - min);
    }
}
