//! Durations of tracked events (`report --latency`): the `syscalls` and
//! `iorq` tables, grouped, with percentiles, a log2 histogram and the
//! estimated count of such events in the window.
//!
//! Files are read one by one like the samples (`read::scan_files`); a file
//! that cannot be read whole is named and left out (`Catalog::leave_out`).

use std::collections::HashMap;

use anyhow::Result;

use super::aggregate::{decode_key, errors, prepare, KeyBuffer, Prepared};
use super::read;
use crate::store::catalog::{Catalog, Prefer, TableReads, Window};
use crate::store::schema::Table;

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
    /// Rows in the window before `--where`.
    pub in_window: u64,
}

/// Durations of table `T`'s events that started in `window`, by `groups`.
pub fn latency<T: Table>(
    catalog: &mut Catalog,
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
    let files = catalog.select(T::NAME, window, Prefer::Parquet);
    type Durations = (HashMap<Vec<u8>, Vec<u64>>, KeyBuffer, u64);
    let reads = read::scan_files(
        &files,
        &projection,
        expr.as_ref(),
        |_| Durations::default(),
        |(by_group, key, seen), row| {
            if !row
                .cell(extra[0])
                .as_int()
                .is_some_and(|t| window.contains(t))
            {
                return;
            }
            *seen += 1;
            let Some(duration) = row.cell(extra[1]).as_int().filter(|&d| d >= 0) else {
                return;
            };
            if !row.passes() {
                return;
            }
            let k = key.build(row, &group_columns);
            match by_group.get_mut(k) {
                Some(list) => list.push(duration as u64),
                None => {
                    let k = k.to_vec();
                    by_group.insert(k, vec![duration as u64]);
                }
            }
        },
    )?;
    let tables: [TableReads<'_>; 1] = [(T::NAME, errors(&files, &reads))];
    catalog.leave_out(&tables, |_, _| false);
    let mut by_group: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
    let mut in_window = 0;
    for (part, _, seen) in reads.into_iter().flatten() {
        in_window += seen;
        for (key, durations) in part {
            by_group.entry(key).or_default().extend(durations);
        }
    }
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
        in_window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
