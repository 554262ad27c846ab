//! The arithmetic of the report: average active threads per group and per
//! time bucket (`latency` has the durations of tracked events).
//!
//! Averages divide the thread time of the rows counted by the *time
//! sampled*: the ticks' `weight_us` in the window, restricted by the same
//! `ts` conditions as the rows (`predicate::ticks_filter`), over the same
//! periods. Each file is read on its own; a period whose `samples` or
//! `ticks` file is missing or could not be read whole is left out of both
//! sums and named (`Catalog::leave_out`), so a damaged file never
//! stretches or dilutes the others. Rows count when their state is active
//! (`states::is_active`), or every state with `--all-states`. Both
//! answers are one pass over the files (`one_pass`), which can also add up
//! both at once ([`active_and_timeline`], the web view's first answer).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::Result;

use super::one_pass;
use super::predicate::{self, Filter};
use super::read::{self, Cell, Projection, Row};
use crate::store::catalog::{Catalog, DataFile, Prefer, TableReads, Window};
use crate::store::schema::{Samples, Table, Ticks};

/// What an answer over `samples` counts: the window, `--where`, and the
/// states.
pub struct Query<'a> {
    pub window: Window,
    pub predicate: Option<&'a str>,
    /// Every state, not only active ones (`--all-states`).
    pub all_states: bool,
}

/// Average active threads by group.
#[derive(Debug, Clone)]
pub struct Active {
    pub groups: Vec<String>,
    /// Sorted by weight, largest first.
    pub rows: Vec<Group>,
    /// Thread time all counted rows stand for, microseconds.
    pub total_us: i64,
    /// Time sampled in the window (sum of the ticks' weight_us).
    pub sampled_us: i64,
    pub window: Window,
    pub all_states: bool,
    /// Thread time of rows not counted because their state is not active.
    pub other_us: i64,
    /// The newest tick used of a period still being written, if any.
    pub live_until: Option<i64>,
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
/// allocate nothing. Timestamps are UTC text, as in the files.
#[derive(Default)]
pub struct KeyBuffer(Vec<u8>, String);

impl KeyBuffer {
    pub fn build(&mut self, row: &dyn Row, columns: &[usize]) -> &[u8] {
        let KeyBuffer(buf, text) = self;
        buf.clear();
        for &column in columns {
            match row.cell(column) {
                Cell::Null => buf.push(0),
                Cell::Int(v) => {
                    buf.push(1);
                    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
                }
                Cell::Timestamp(v) => {
                    buf.push(1);
                    text.clear();
                    crate::store::timefmt::write_timestamp_micros(text, v);
                    buf.extend_from_slice(text.as_bytes());
                }
                Cell::Text(value) => {
                    buf.push(1);
                    buf.extend_from_slice(value.as_bytes());
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

pub fn decode_key(key: &[u8]) -> Vec<Option<String>> {
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
pub struct Prepared {
    pub projection: Projection,
    pub groups: Vec<usize>,
    pub extra: Vec<usize>,
    pub expr: Option<Filter>,
}

/// Projection of `T` with `groups` first, then `extra` (which files must
/// have), and the parsed `--where` (which may add columns).
pub fn prepare<T: Table>(
    groups: &[String],
    extra: &[&str],
    predicate: Option<&str>,
) -> Result<Prepared> {
    let mut projection = Projection::of::<T>(groups, "--by")?;
    let group_columns: Vec<usize> = (0..groups.len()).collect();
    let mut extra_columns = Vec::new();
    for name in extra {
        extra_columns.push(projection.need::<T>(name, "report")?);
    }
    let expr = predicate
        .map(|text| predicate::parse::<T>(text, &mut projection))
        .transpose()?;
    Ok(Prepared {
        projection,
        groups: group_columns,
        extra: extra_columns,
        expr,
    })
}

/// The ticks' projection (`ts`, `weight_us` first) and the part of the
/// samples' `--where` that restricts time, over it.
pub(super) fn ticks_query(samples: &Prepared) -> Result<(Projection, Option<Filter>)> {
    let mut projection = Projection::of::<Ticks>(&[], "report")?;
    projection.need::<Ticks>("ts", "report")?;
    projection.need::<Ticks>("weight_us", "report")?;
    let expr = match &samples.expr {
        Some(filter) => predicate::ticks_filter::<Ticks>(filter, &mut projection)?,
        None => None,
    };
    Ok((projection, expr))
}

/// The `samples` and `ticks` files of the window's periods.
pub(super) fn period_files(
    catalog: &mut Catalog,
    window: &Window,
) -> (Vec<DataFile>, Vec<DataFile>) {
    let mut both = catalog.select_periods(&[Samples::NAME, Ticks::NAME], window, Prefer::Parquet);
    let ticks = both.pop().unwrap_or_default();
    let samples = both.pop().unwrap_or_default();
    (samples, ticks)
}

/// The periods to leave out of an answer over `samples` and `ticks`.
pub(super) fn left_out<S, T>(
    catalog: &mut Catalog,
    samples: &[DataFile],
    sample_reads: &[Result<S, String>],
    ticks: &[DataFile],
    tick_reads: &[Result<T, String>],
) -> BTreeSet<String> {
    let all: [TableReads<'_>; 2] = [
        (Samples::NAME, errors(samples, sample_reads)),
        (Ticks::NAME, errors(ticks, tick_reads)),
    ];
    catalog.leave_out(&all, |_, _| true)
}

/// Each file with the reason it could not be read whole (None: it was).
pub fn errors<'f, S>(
    files: &'f [DataFile],
    results: &[Result<S, String>],
) -> Vec<(&'f DataFile, Option<String>)> {
    files
        .iter()
        .zip(results)
        .map(|(f, r)| (f, r.as_ref().err().cloned()))
        .collect()
}

/// The newest tick used of a period being written.
pub(super) fn live_until(files: &[DataFile], left_out: &BTreeSet<String>) -> Option<i64> {
    files
        .iter()
        .filter(|f| f.in_progress && !left_out.contains(&f.stem))
        .filter_map(|f| f.until_us)
        .max()
}

/// Average active threads in the window grouped by `groups`.
pub fn active(catalog: &mut Catalog, query: &Query<'_>, groups: &[String]) -> Result<Active> {
    let (active, _) = one_pass::pass(catalog, query, Some(groups), None)?;
    active.ok_or_else(|| anyhow::anyhow!("the pass was asked for groups"))
}

/// Per ticks file: its (ts, weight_us) ticks, or why it could not be read.
pub(super) type TickReads = Vec<Result<Vec<(i64, i64)>, String>>;

/// Each ticks file's ticks in `window` that pass `expr`: (ts, weight_us).
pub(super) fn sampled(
    ticks: &[DataFile],
    projection: &Projection,
    filter: Option<&Filter>,
    window: &Window,
) -> Result<TickReads> {
    read::scan_files(
        ticks,
        projection,
        filter,
        |_| Vec::new(),
        |list, row| {
            let Some(ts) = row.cell(0).as_int().filter(|&t| window.contains(t)) else {
                return;
            };
            if !row.passes() {
                return;
            }
            list.push((ts, row.cell(1).as_int().unwrap_or(0)));
        },
    )
}

/// The sampling period (the most common tick weight) in `window`, if any
/// tick says; damaged ticks files are named and left out.
pub fn sampling_period(catalog: &mut Catalog, window: &Window) -> Result<Option<i64>> {
    let files = catalog.select(Ticks::NAME, window, Prefer::Parquet);
    let mut projection = Projection::of::<Ticks>(&[], "report")?;
    projection.need::<Ticks>("ts", "report")?;
    projection.need::<Ticks>("weight_us", "report")?;
    let reads = sampled(&files, &projection, None, window)?;
    let tables: [TableReads<'_>; 1] = [(Ticks::NAME, errors(&files, &reads))];
    catalog.leave_out(&tables, |_, _| false);
    let mut counts: HashMap<i64, u64> = HashMap::new();
    for (_, weight) in reads.into_iter().flatten().flatten() {
        *counts.entry(weight).or_default() += 1;
    }
    Ok(counts.into_iter().max_by_key(|&(_, n)| n).map(|(w, _)| w))
}

/// Average active threads per time bucket and value of one column (the
/// state for `report --timeline`).
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The column the weights are split by.
    pub by: String,
    pub bucket: Duration,
    /// Bucket start (µs) → (time sampled in it, weight per value of `by`;
    /// NULL is `-`).
    pub buckets: BTreeMap<i64, (i64, BTreeMap<String, i64>)>,
    pub window: Window,
    pub all_states: bool,
    /// Thread time of rows not counted because their state is not active.
    pub other_us: i64,
    pub live_until: Option<i64>,
}

/// Average threads per bucket and value of column `by`: buckets of
/// `bucket`, or of a width chosen by `auto_bucket` from the span of the
/// ticks found.
pub fn timeline(
    catalog: &mut Catalog,
    query: &Query<'_>,
    by: &str,
    bucket: Option<Duration>,
    auto_bucket: impl Fn(i64) -> Duration,
) -> Result<Timeline> {
    let of = one_pass::TimelineOf {
        by,
        bucket,
        auto_bucket: &auto_bucket,
    };
    let (_, timeline) = one_pass::pass(catalog, query, None, Some(of))?;
    timeline.ok_or_else(|| anyhow::anyhow!("the pass was asked for a timeline"))
}

/// [`active`] by `groups` and [`timeline`] by `by` in `bucket`s, in one
/// read of the window (the web view's first answer).
pub fn active_and_timeline(
    catalog: &mut Catalog,
    query: &Query<'_>,
    groups: &[String],
    by: &str,
    bucket: Duration,
) -> Result<(Active, Timeline)> {
    let of = one_pass::TimelineOf {
        by,
        bucket: Some(bucket),
        auto_bucket: &|_| bucket,
    };
    match one_pass::pass(catalog, query, Some(groups), Some(of))? {
        (Some(active), Some(timeline)) => Ok((active, timeline)),
        _ => anyhow::bail!("the pass was asked for groups and a timeline"),
    }
}

/// The newest tick of the data (µs), from the ticks of each host's newest
/// period (a journal is read up to its last complete tick); None when
/// there are no ticks files or none could be read.
pub fn newest_tick(catalog: &mut Catalog) -> Result<Option<i64>> {
    let all = catalog.list(Ticks::NAME);
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for file in &all {
        let start = newest.entry(file.host.as_str()).or_insert(i64::MIN);
        *start = (*start).max(file.start_us);
    }
    let files: Vec<DataFile> = all
        .iter()
        .filter(|f| newest.get(f.host.as_str()) == Some(&f.start_us))
        .cloned()
        .collect();
    let mut projection = Projection::of::<Ticks>(&[], "report")?;
    projection.need::<Ticks>("ts", "report")?;
    projection.need::<Ticks>("weight_us", "report")?;
    let everything = Window {
        from_us: i64::MIN,
        to_us: i64::MAX,
    };
    let reads = sampled(&files, &projection, None, &everything)?;
    Ok(reads
        .into_iter()
        .flatten()
        .flatten()
        .map(|(ts, _)| ts)
        .max())
}

/// The CPUs each host's samples in `window` name: the highest `cpu`
/// number seen plus one (a lower bound of the host's CPU count: a CPU no
/// thread ran on in the window is not seen).
pub fn cpus_seen(catalog: &mut Catalog, window: Window) -> Result<BTreeMap<String, i64>> {
    let query = Query {
        window,
        predicate: None,
        all_states: true,
    };
    let report = active(catalog, &query, &["host".to_string(), "cpu".to_string()])?;
    let mut cpus: BTreeMap<String, i64> = BTreeMap::new();
    for group in &report.rows {
        let host = group.key[0].clone().unwrap_or_default();
        if let Some(cpu) = group.key[1].as_deref().and_then(|c| c.parse::<i64>().ok()) {
            let count = cpus.entry(host).or_default();
            *count = (*count).max(cpu + 1);
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        struct R;
        impl Row for R {
            fn cell(&self, column: usize) -> Cell<'_> {
                [
                    Cell::Text("SLEEP"),
                    Cell::Null,
                    Cell::Int(-3),
                    Cell::Timestamp(1_795_352_645_000_001),
                ][column]
            }
        }
        let mut buffer = KeyBuffer::default();
        let key = buffer.build(&R, &[0, 1, 2, 3]).to_vec();
        assert_eq!(
            decode_key(&key),
            vec![
                Some("SLEEP".into()),
                None,
                Some("-3".into()),
                Some("2026-11-22 13:04:05.000001".into())
            ]
        );
    }
}
