//! The arithmetic of the report: average active threads per group, per
//! time bucket, and latency distributions of tracked events.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Result;

use super::filter::{self, Expr};
use super::read::{self, Cell, Projection, Row};
use crate::catalog::{DataFile, Window};
use crate::schema::{Samples, Table, Ticks};

/// Average active threads by group.
#[derive(Debug, Clone)]
pub struct Active {
    pub groups: Vec<String>,
    /// Sorted by weight, largest first.
    pub rows: Vec<Group>,
    /// Thread time all rows stand for, microseconds.
    pub total_us: i64,
    /// Time sampled in the window (sum of the ticks' weight_us).
    pub sampled_us: i64,
    pub window: Window,
}

#[derive(Debug, Clone)]
pub struct Group {
    /// One value per group column; None for NULL.
    pub key: Vec<Option<String>>,
    pub weight_us: i64,
    pub samples: u64,
}

impl Active {
    pub fn avg_active(&self, group: &Group) -> f64 {
        group.weight_us as f64 / self.sampled_us.max(1) as f64
    }
    pub fn share(&self, group: &Group) -> f64 {
        group.weight_us as f64 / self.total_us.max(1) as f64
    }
}

/// Group keys encoded into one byte string: each value is a tag (0 NULL,
/// 1 present) and its text, ended by 0x1f. Lookups of existing groups
/// allocate nothing.
#[derive(Default)]
struct KeyBuffer(Vec<u8>);

impl KeyBuffer {
    fn build(&mut self, row: &dyn Row, columns: &[usize]) -> &[u8] {
        let buf = &mut self.0;
        buf.clear();
        for &column in columns {
            match row.cell(column) {
                Cell::Null => buf.push(0),
                Cell::Int(v) | Cell::Timestamp(v) => {
                    buf.push(1);
                    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                }
                Cell::Text(text) => {
                    buf.push(1);
                    buf.extend_from_slice(text.as_bytes());
                }
                Cell::Bool(v) => {
                    buf.push(1);
                    buf.extend_from_slice(if v { b"true" } else { b"false" });
                }
            }
            buf.push(0x1f);
        }
        buf
    }
}

fn decode_key(key: &[u8]) -> Vec<Option<String>> {
    key.split(|&b| b == 0x1f)
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_first() {
            Some((1, text)) => Some(String::from_utf8_lossy(text).into_owned()),
            _ => None,
        })
        .collect()
}

/// What a scan reads: the projection, where the group columns and the
/// extra columns are in it, and the parsed `--where`.
struct Prepared {
    projection: Projection,
    groups: Vec<usize>,
    extra: Vec<usize>,
    expr: Option<Expr>,
}

/// Projection of `T` with `groups` first, then `extra`, and the parsed
/// `--where` (which may add columns).
fn prepare<T: Table>(
    groups: &[String],
    extra: &[&str],
    predicate: Option<&str>,
) -> Result<Prepared> {
    let mut projection = Projection::of::<T>(groups, "--by")?;
    let group_columns: Vec<usize> = (0..groups.len()).collect();
    let mut extra_columns = Vec::new();
    for name in extra {
        extra_columns.push(projection.require::<T>(name, "report")?);
    }
    let expr = predicate
        .map(|text| filter::parse::<T>(text, &mut projection))
        .transpose()?;
    Ok(Prepared {
        projection,
        groups: group_columns,
        extra: extra_columns,
        expr,
    })
}

/// Time sampled in `window`: the sum of the ticks' weight_us, or the
/// window's length when there is no ticks table.
pub fn sampled_us(ticks: &[DataFile], window: &Window) -> Result<i64> {
    let Prepared {
        projection,
        groups: _,
        extra: columns,
        expr: _,
    } = prepare::<Ticks>(&[], &["ts", "weight_us"], None)?;
    let mut total = 0i64;
    read::scan(ticks, &projection, |row| {
        if row
            .cell(columns[0])
            .as_int()
            .is_some_and(|ts| window.contains(ts))
        {
            total += row.cell(columns[1]).as_int().unwrap_or(0);
        }
        Ok(())
    })?;
    Ok(if total > 0 { total } else { window.len_us() })
}

/// The sampling period (the most common tick weight) in `window`, if any
/// tick says.
pub fn sampling_period(ticks: &[DataFile], window: &Window) -> Result<Option<i64>> {
    let Prepared {
        projection,
        groups: _,
        extra: columns,
        expr: _,
    } = prepare::<Ticks>(&[], &["ts", "weight_us"], None)?;
    let mut counts: HashMap<i64, u64> = HashMap::new();
    read::scan(ticks, &projection, |row| {
        if row
            .cell(columns[0])
            .as_int()
            .is_some_and(|ts| window.contains(ts))
        {
            if let Some(weight) = row.cell(columns[1]).as_int() {
                *counts.entry(weight).or_default() += 1;
            }
        }
        Ok(())
    })?;
    Ok(counts.into_iter().max_by_key(|&(_, n)| n).map(|(w, _)| w))
}

/// Average active threads in `window` grouped by `groups`.
pub fn active(
    samples: &[DataFile],
    ticks: &[DataFile],
    window: &Window,
    groups: &[String],
    predicate: Option<&str>,
) -> Result<Active> {
    let Prepared {
        projection,
        groups: group_columns,
        extra,
        expr,
    } = prepare::<Samples>(groups, &["ts", "weight_us"], predicate)?;
    let (ts, weight) = (extra[0], extra[1]);
    type Sums = (HashMap<Vec<u8>, (i64, u64)>, KeyBuffer, i64);
    let parts = read::scan_parallel(
        samples,
        &projection,
        || -> Sums { (HashMap::new(), KeyBuffer::default(), 0) },
        |(sums, key, total_us), row| {
            if !row.cell(ts).as_int().is_some_and(|t| window.contains(t)) {
                return Ok(());
            }
            if expr.as_ref().is_some_and(|e| !filter::passes(e, row)) {
                return Ok(());
            }
            let w = row.cell(weight).as_int().unwrap_or(0);
            *total_us += w;
            let k = key.build(row, &group_columns);
            match sums.get_mut(k) {
                Some(sum) => {
                    sum.0 += w;
                    sum.1 += 1;
                }
                None => {
                    sums.insert(k.to_vec(), (w, 1));
                }
            }
            Ok(())
        },
    )?;
    let mut sums: HashMap<Vec<u8>, (i64, u64)> = HashMap::new();
    let mut total_us = 0;
    for (part, _, part_total) in parts {
        total_us += part_total;
        for (key, (w, n)) in part {
            let sum = sums.entry(key).or_default();
            sum.0 += w;
            sum.1 += n;
        }
    }
    let mut rows: Vec<Group> = sums
        .into_iter()
        .map(|(key, (weight_us, samples))| Group {
            key: decode_key(&key),
            weight_us,
            samples,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.weight_us
            .cmp(&a.weight_us)
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(Active {
        groups: groups.to_vec(),
        rows,
        total_us,
        sampled_us: sampled_us(ticks, window)?,
        window: *window,
    })
}

/// Average active threads per time bucket and state.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub bucket: Duration,
    /// Bucket start (µs) → (time sampled in it, weight per state).
    pub buckets: BTreeMap<i64, (i64, BTreeMap<String, i64>)>,
    pub window: Window,
}

pub fn timeline(
    samples: &[DataFile],
    ticks: &[DataFile],
    window: &Window,
    bucket: Duration,
    predicate: Option<&str>,
) -> Result<Timeline> {
    let width = (bucket.as_micros() as i64).max(1);
    // Buckets on round times (whole minutes, hours, ... since the epoch).
    let start_of = |ts: i64| ts - ts.rem_euclid(width);
    // Buckets from the first to the last one with ticks (a week's window
    // over an hour of data is an hour of chart), gaps included.
    let mut buckets: BTreeMap<i64, (i64, BTreeMap<String, i64>)> = BTreeMap::new();
    let Prepared {
        projection,
        groups: _,
        extra: columns,
        expr: _,
    } = prepare::<Ticks>(&[], &["ts", "weight_us"], None)?;
    read::scan(ticks, &projection, |row| {
        if let Some(ts) = row
            .cell(columns[0])
            .as_int()
            .filter(|&t| window.contains(t))
        {
            buckets.entry(start_of(ts)).or_default().0 +=
                row.cell(columns[1]).as_int().unwrap_or(0);
        }
        Ok(())
    })?;
    if let (Some(&first), Some(&last)) = (buckets.keys().next(), buckets.keys().next_back()) {
        let mut at = first;
        while at < last {
            buckets.entry(at).or_default();
            at += width;
        }
    }
    let Prepared {
        projection,
        groups: _,
        extra,
        expr,
    } = prepare::<Samples>(&[], &["ts", "weight_us", "state"], predicate)?;
    let parts = read::scan_parallel(
        samples,
        &projection,
        HashMap::<i64, HashMap<String, i64>>::new,
        |weights, row| {
            let Some(ts) = row.cell(extra[0]).as_int().filter(|&t| window.contains(t)) else {
                return Ok(());
            };
            if expr.as_ref().is_some_and(|e| !filter::passes(e, row)) {
                return Ok(());
            }
            let Cell::Text(state) = row.cell(extra[2]) else {
                return Ok(());
            };
            let w = row.cell(extra[1]).as_int().unwrap_or(0);
            // Look up by &str: a new String only for a bucket's new state.
            let states = weights.entry(start_of(ts)).or_default();
            match states.get_mut(state) {
                Some(sum) => *sum += w,
                None => {
                    states.insert(state.to_string(), w);
                }
            }
            Ok(())
        },
    )?;
    for part in parts {
        for (start, states) in part {
            let bucket = &mut buckets.entry(start).or_default().1;
            for (state, w) in states {
                *bucket.entry(state).or_default() += w;
            }
        }
    }
    Ok(Timeline {
        bucket,
        buckets,
        window: *window,
    })
}

/// Durations of one group of tracked events.
#[derive(Debug, Clone)]
pub struct LatencyGroup {
    pub key: Vec<Option<String>>,
    /// Sorted, microseconds.
    pub durations: Vec<u64>,
    /// Estimated number of such events in the window: each recorded event
    /// of duration d stands for max(1, period / d) events, the inverse of
    /// the chance that a tick caught it.
    pub estimated: Option<f64>,
}

impl LatencyGroup {
    pub fn percentile(&self, p: f64) -> u64 {
        let n = self.durations.len();
        if n == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.durations[rank.clamp(1, n) - 1]
    }
    pub fn mean(&self) -> f64 {
        self.durations.iter().sum::<u64>() as f64 / self.durations.len().max(1) as f64
    }
    /// Counts per log2 bucket: (low_us, high_us exclusive, count).
    pub fn histogram(&self) -> Vec<(u64, u64, u64)> {
        let mut counts = [0u64; 65];
        for &d in &self.durations {
            counts[(64 - d.leading_zeros()) as usize] += 1;
        }
        let first = counts.iter().position(|&c| c > 0).unwrap_or(0);
        let last = counts.iter().rposition(|&c| c > 0).unwrap_or(0);
        (first..=last)
            .map(|b| {
                let low = if b == 0 { 0 } else { 1u64 << (b - 1) };
                let high = if b == 0 {
                    1
                } else {
                    1u64.checked_shl(b as u32).unwrap_or(u64::MAX)
                };
                (low, high, counts[b])
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Latency {
    pub table: &'static str,
    pub groups: Vec<String>,
    /// Largest total time first.
    pub rows: Vec<LatencyGroup>,
    pub window: Window,
    pub period_us: Option<i64>,
}

/// Durations of table `T`'s events that started in `window`, by `groups`.
pub fn latency<T: Table>(
    files: &[DataFile],
    window: &Window,
    groups: &[String],
    predicate: Option<&str>,
    time_column: &str,
    period_us: Option<i64>,
) -> Result<Latency> {
    let Prepared {
        projection,
        groups: group_columns,
        extra,
        expr,
    } = prepare::<T>(groups, &[time_column, "duration_us"], predicate)?;
    let mut by_group: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
    let mut key = KeyBuffer::default();
    read::scan(files, &projection, |row| {
        if !row
            .cell(extra[0])
            .as_int()
            .is_some_and(|t| window.contains(t))
        {
            return Ok(());
        }
        let Some(duration) = row.cell(extra[1]).as_int().filter(|&d| d >= 0) else {
            return Ok(());
        };
        if expr.as_ref().is_some_and(|e| !filter::passes(e, row)) {
            return Ok(());
        }
        let k = key.build(row, &group_columns);
        match by_group.get_mut(k) {
            Some(list) => list.push(duration as u64),
            None => {
                by_group.insert(k.to_vec(), vec![duration as u64]);
            }
        }
        Ok(())
    })?;
    let mut rows: Vec<LatencyGroup> = by_group
        .into_iter()
        .map(|(key, mut durations)| {
            durations.sort_unstable();
            let estimated = period_us.map(|period| {
                durations
                    .iter()
                    .map(|&d| (period as f64 / d.max(1) as f64).max(1.0))
                    .sum()
            });
            LatencyGroup {
                key: decode_key(&key),
                durations,
                estimated,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        let total = |g: &LatencyGroup| g.durations.iter().sum::<u64>();
        total(b).cmp(&total(a)).then_with(|| a.key.cmp(&b.key))
    });
    Ok(Latency {
        table: T::NAME,
        groups: groups.to_vec(),
        rows,
        window: *window,
        period_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        struct R;
        impl Row for R {
            fn cell(&self, column: usize) -> Cell<'_> {
                [Cell::Text("SLEEP"), Cell::Null, Cell::Int(-3)][column]
            }
        }
        let mut buffer = KeyBuffer::default();
        let key = buffer.build(&R, &[0, 1, 2]).to_vec();
        assert_eq!(
            decode_key(&key),
            vec![Some("SLEEP".into()), None, Some("-3".into())]
        );
    }

    #[test]
    fn percentiles_and_histogram() {
        let group = LatencyGroup {
            key: vec![],
            durations: vec![0, 1, 3, 4, 100, 200_000],
            estimated: None,
        };
        assert_eq!(group.percentile(50.0), 3);
        assert_eq!(group.percentile(99.0), 200_000);
        assert_eq!(group.percentile(0.0), 0);
        let histogram = group.histogram();
        assert_eq!(histogram[0], (0, 1, 1));
        assert_eq!(histogram[1], (1, 2, 1));
        assert_eq!(histogram[2], (2, 4, 1));
        assert_eq!(histogram[3], (4, 8, 1));
        assert_eq!(histogram.iter().map(|b| b.2).sum::<u64>(), 6);
        assert!(histogram
            .iter()
            .any(|&(low, high, n)| low <= 200_000 && 200_000 < high && n == 1));
    }
}
