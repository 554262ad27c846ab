//! One pass over a window's `samples` and `ticks` that adds up both of
//! report's answers: average active threads by group ([`Active`]) and per
//! time bucket by the value of one column ([`Timeline`]).
//!
//! The decision a reader must know: `aggregate::active` and
//! `aggregate::timeline` are this pass with one of the two parts asked
//! for, and the web view's first answer asks for both, so the chart and
//! the top groups are one read of the window — and the same arithmetic as
//! `report` and `report --timeline`, by construction.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use rustc_hash::FxHashMap;

use super::aggregate::{
    decode_key, left_out, live_until, period_files, prepare, sampled, ticks_query, Active, Group,
    KeyBuffer, Prepared, Query, Timeline,
};
use super::read::{self, Cell, Row};
use super::states;
use crate::store::catalog::Catalog;
use crate::store::schema::Samples;

/// The timeline part of a pass: the column, and the bucket width (None:
/// chosen by `auto_bucket` from the span of the ticks found).
pub struct TimelineOf<'a> {
    pub by: &'a str,
    pub bucket: Option<Duration>,
    pub auto_bucket: &'a dyn Fn(i64) -> Duration,
}

/// Per file: group sums and per-bucket sums. Rows find their group and
/// their `--by` value by the batch's dictionary code when the reader has
/// one (Parquet), by their text otherwise. (FxHash: the keys are the
/// files' own values, and SipHash was 15% of a report's time.)
#[derive(Default)]
struct Sums {
    /// Each group's key and its index in `sums`.
    groups: FxHashMap<Vec<u8>, usize>,
    /// Weight and rows of each group.
    sums: Vec<(i64, u64)>,
    /// Most rows find their group by one small integer.
    group_codes: Codes<usize>,
    key: KeyBuffer,
    total_us: i64,
    other_us: i64,
    /// Thread time per (bucket start, index of the `--by` value).
    buckets: FxHashMap<(i64, u32), i64>,
    /// The `--by` values seen, each once, and their indexes.
    values: Vec<String>,
    value_of: FxHashMap<String, u32>,
    value_codes: Codes<u32>,
    timeline_other_us: i64,
    text: String,
}

/// What the current batch's codes (`Row::group_code`) stand for.
#[derive(Default)]
struct Codes<T> {
    of: FxHashMap<u64, T>,
    batch: u64,
}

impl<T: Copy> Codes<T> {
    /// What `code` stands for, if this batch has seen it.
    fn get(&mut self, code: Option<(u64, u64)>) -> Option<T> {
        let (batch, code) = code?;
        if batch != self.batch {
            self.of.clear();
            self.batch = batch;
        }
        self.of.get(&code).copied()
    }

    fn put(&mut self, code: Option<(u64, u64)>, value: T) {
        if let Some((_, code)) = code {
            self.of.insert(code, value);
        }
    }
}

impl Sums {
    /// The index of `row`'s group by `columns`, added if new.
    fn group_of(&mut self, row: &dyn Row, columns: &[usize]) -> usize {
        let code = row.group_code(columns);
        if let Some(group) = self.group_codes.get(code) {
            return group;
        }
        let key = self.key.build(row, columns);
        let group = match self.groups.get(key) {
            Some(&group) => group,
            None => {
                let group = self.sums.len();
                self.groups.insert(key.to_vec(), group);
                self.sums.push((0, 0));
                group
            }
        };
        self.group_codes.put(code, group);
        group
    }

    /// The index of `row`'s value of column `by` in `values`, added if new.
    fn value_index(&mut self, row: &dyn Row, by: usize) -> u32 {
        let code = row.group_code(&[by]);
        if let Some(value) = self.value_codes.get(code) {
            return value;
        }
        let text = cell_text(row.cell(by), &mut self.text);
        let value = match self.value_of.get(text) {
            Some(&value) => value,
            None => {
                let value = self.values.len() as u32;
                self.values.push(text.to_string());
                self.value_of.insert(text.to_string(), value);
                value
            }
        };
        self.value_codes.put(code, value);
        value
    }
}

/// `cell` as the text a timeline series is named by (NULL: `-`).
fn cell_text<'a>(cell: Cell<'a>, text: &'a mut String) -> &'a str {
    match cell {
        Cell::Text(value) => value,
        Cell::Null => "-",
        other => {
            text.clear();
            match other {
                Cell::Timestamp(v) => crate::store::timefmt::write_timestamp_micros(text, v),
                Cell::Int(v) => text.push_str(itoa::Buffer::new().format(v)),
                Cell::Bool(v) => text.push_str(if v { "true" } else { "false" }),
                Cell::Text(_) | Cell::Null => {}
            }
            text.as_str()
        }
    }
}

/// Average active threads in the window by `groups` (when `groups` is
/// Some) and per bucket of `timeline` (when Some), in one pass.
pub fn pass(
    catalog: &mut Catalog,
    query: &Query<'_>,
    groups: Option<&[String]>,
    timeline: Option<TimelineOf<'_>>,
) -> Result<(Option<Active>, Option<Timeline>)> {
    let window = query.window;
    let group_names = groups.unwrap_or(&[]);
    let mut prepared =
        prepare::<Samples>(group_names, &["ts", "weight_us", "state"], query.predicate)?;
    let by_column = match &timeline {
        Some(t) => Some(prepared.projection.require::<Samples>(t.by, "--by")?),
        None => None,
    };
    let (ticks_projection, ticks_expr) = ticks_query(&prepared)?;
    let (samples, ticks) = period_files(catalog, &window);
    let tick_reads = sampled(&ticks, &ticks_projection, ticks_expr.as_ref(), &window)?;
    // The width follows the data in the window, not the window: 15 s of
    // data in an hour's window is drawn in seconds.
    let bucket = timeline.as_ref().map(|t| {
        t.bucket.unwrap_or_else(|| {
            let (first, last) = tick_reads
                .iter()
                .flatten()
                .flatten()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &(ts, _)| {
                    (lo.min(ts), hi.max(ts))
                });
            (t.auto_bucket)(last.saturating_sub(first).max(0))
        })
    });
    let width = bucket.map_or(1, |b| (b.as_micros() as i64).max(1));
    // Buckets on round times (whole minutes, hours, ... since the epoch).
    let start_of = |ts: i64| ts - ts.rem_euclid(width);
    let Prepared {
        projection,
        groups: group_columns,
        extra,
        expr,
    } = prepared;
    let (ts, weight, state) = (extra[0], extra[1], extra[2]);
    let sample_reads = read::scan_files(
        &samples,
        &projection,
        expr.as_ref(),
        |_| Sums::default(),
        |sums, row| {
            let Some(t) = row.cell(ts).as_int().filter(|&t| window.contains(t)) else {
                return;
            };
            if !row.passes() {
                return;
            }
            let w = row.cell(weight).as_int().unwrap_or(0);
            let state = row.cell(state);
            let active = matches!(state, Cell::Text(s) if states::is_active(s));
            if groups.is_some() {
                if query.all_states || active {
                    sums.total_us += w;
                    let group = sums.group_of(row, &group_columns);
                    let sum = &mut sums.sums[group];
                    sum.0 += w;
                    sum.1 += 1;
                } else {
                    sums.other_us += w;
                }
            }
            // The timeline skips rows without a state.
            if let (Some(by), Cell::Text(_)) = (by_column, state) {
                if !query.all_states && !active {
                    sums.timeline_other_us += w;
                    return;
                }
                let value = sums.value_index(row, by);
                *sums.buckets.entry((start_of(t), value)).or_default() += w;
            }
        },
    )?;
    let out = left_out(catalog, &samples, &sample_reads, &ticks, &tick_reads);
    let live = live_until(&samples, &out);
    let mut sampled_us = 0;
    let mut buckets: BTreeMap<i64, (i64, BTreeMap<String, i64>)> = BTreeMap::new();
    for (file, part) in ticks.iter().zip(&tick_reads) {
        let (Ok(list), false) = (part, out.contains(&file.stem)) else {
            continue;
        };
        for &(ts, w) in list {
            sampled_us += w;
            if bucket.is_some() {
                buckets.entry(start_of(ts)).or_default().0 += w;
            }
        }
    }
    // Buckets from the first to the last one with ticks, gaps included.
    if let (Some(&first), Some(&last)) = (buckets.keys().next(), buckets.keys().next_back()) {
        let mut at = first;
        while at < last {
            buckets.entry(at).or_default();
            at += width;
        }
    }
    let mut sums: FxHashMap<Vec<u8>, (i64, u64)> = FxHashMap::default();
    let (mut total_us, mut other_us, mut timeline_other_us) = (0, 0, 0);
    for (file, part) in samples.iter().zip(sample_reads) {
        let (Ok(part), false) = (part, out.contains(&file.stem)) else {
            continue;
        };
        total_us += part.total_us;
        other_us += part.other_us;
        timeline_other_us += part.timeline_other_us;
        for (key, group) in part.groups {
            let (w, n) = part.sums[group];
            let sum = sums.entry(key).or_default();
            sum.0 += w;
            sum.1 += n;
        }
        for ((start, value), w) in part.buckets {
            let bucket = &mut buckets.entry(start).or_default().1;
            let value = &part.values[value as usize];
            match bucket.get_mut(value) {
                Some(sum) => *sum += w,
                None => {
                    bucket.insert(value.clone(), w);
                }
            }
        }
    }
    let active = groups.map(|groups| {
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
        Active {
            groups: groups.to_vec(),
            rows,
            total_us,
            sampled_us,
            window,
            all_states: query.all_states,
            other_us,
            live_until: live,
        }
    });
    let timeline = match (timeline, bucket) {
        (Some(t), Some(bucket)) => Some(Timeline {
            by: t.by.to_string(),
            bucket,
            buckets,
            window,
            all_states: query.all_states,
            other_us: timeline_other_us,
            live_until: live,
        }),
        _ => None,
    };
    Ok((active, timeline))
}
