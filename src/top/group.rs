//! Grouping live rows the way `report` groups sample rows: a key of the
//! chosen columns per row, average active threads per key.
//!
//! The decision a reader must know: a live read is one tick, so a group's
//! *average active threads* over the last reads is its rows divided by the
//! number of reads: the same arithmetic as the report's (each row stands
//! for one read interval of thread time; the time sampled is the reads'
//! intervals).

use std::collections::HashMap;

use anyhow::{bail, Result};

use crate::output::live::LiveRow;

/// The columns live rows can be grouped by (what a live read fills).
pub const LIVE_COLUMNS: &[&str] = &[
    "wait_class",
    "state",
    "comm",
    "syscall",
    "kfunc",
    "tid",
    "tgid",
    "cpu",
    "io_dev",
    "io_op",
    "waker_tid",
    "waker_comm",
    "blocker_tid",
    "blocker_kind",
    "file",
    "sock_remote",
];

/// `by` checked for live grouping (`blocker` and `peer` are the report's
/// short names of `blocker_tid` and `sock_remote`).
pub fn live_columns(by: &[String]) -> Result<Vec<String>> {
    by.iter()
        .map(|c| {
            let c = match c.trim().to_ascii_lowercase() {
                name if name == "blocker" => "blocker_tid".to_string(),
                name if name == "peer" => "sock_remote".to_string(),
                name => name,
            };
            if !LIVE_COLUMNS.contains(&c.as_str()) {
                bail!(
                    "cannot group live threads by {c}; live columns: {}",
                    LIVE_COLUMNS.join(", ")
                );
            }
            Ok(c)
        })
        .collect()
}

/// The value of column `column` of `row`; None for NULL (and for the
/// columns only the agent's writer fills: file, sock_remote).
pub fn value(row: &LiveRow, column: &str) -> Option<String> {
    match column {
        "wait_class" => Some(row.wait_class.name().to_string()),
        "state" => Some(row.state.name().to_string()),
        "comm" => Some(row.comm.clone()),
        "syscall" => row.syscall.map(str::to_string),
        "kfunc" => row.kfunc.as_deref().map(str::to_string),
        "tid" => Some(row.tid.to_string()),
        "tgid" => Some(row.tgid.to_string()),
        "cpu" => Some(row.cpu.to_string()),
        "io_dev" => row.io_dev.clone(),
        "io_op" => row.io_op.map(str::to_string),
        "waker_tid" => row.waker_tid.map(|t| t.to_string()),
        "waker_comm" => row.waker_comm.clone(),
        "blocker_tid" => row.blocker_tid.map(|t| t.to_string()),
        "blocker_kind" => row.blocker_kind.map(str::to_string),
        _ => None,
    }
}

/// One line of a grouped table.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// One value per column; None for NULL.
    pub key: Vec<Option<String>>,
    /// Average active threads.
    pub avg: f64,
    /// Rows counted.
    pub samples: u64,
}

/// Rows of `reads` (each one read's rows) grouped by `columns`, largest
/// first; `keep` chooses the rows counted.
pub fn group<'a>(
    reads: impl IntoIterator<Item = &'a [LiveRow]>,
    columns: &[String],
    keep: impl Fn(&LiveRow) -> bool,
) -> Vec<GroupRow> {
    let mut sums: HashMap<Vec<Option<String>>, u64> = HashMap::new();
    let mut n_reads = 0u64;
    for rows in reads {
        n_reads += 1;
        for row in rows.iter().filter(|r| keep(r)) {
            let key = columns.iter().map(|c| value(row, c)).collect();
            *sums.entry(key).or_default() += 1;
        }
    }
    let mut out: Vec<GroupRow> = sums
        .into_iter()
        .map(|(key, samples)| GroupRow {
            key,
            avg: samples as f64 / n_reads.max(1) as f64,
            samples,
        })
        .collect();
    sort_rows(&mut out, Sort::Active);
    out
}

/// How a table is sorted (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Average active threads, largest first.
    #[default]
    Active,
    /// By key, in order.
    Key,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Active => Sort::Key,
            Sort::Key => Sort::Active,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Sort::Active => "active",
            Sort::Key => "key",
        }
    }
}

/// Sort `rows` in place; ties keep a stable order by key.
pub fn sort_rows(rows: &mut [GroupRow], sort: Sort) {
    match sort {
        Sort::Active => rows.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| b.avg.total_cmp(&a.avg))
                .then_with(|| a.key.cmp(&b.key))
        }),
        Sort::Key => rows.sort_by(|a, b| a.key.cmp(&b.key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::thread_state::ThreadState;
    use crate::store::wait_class::WaitClass;

    fn row(tid: u32, comm: &str, state: ThreadState, syscall: Option<&'static str>) -> LiveRow {
        let class = if state == ThreadState::OnCpu {
            WaitClass::Cpu
        } else {
            WaitClass::Timer
        };
        LiveRow::for_test(tid, comm, state, class, syscall)
    }

    #[test]
    fn averages_are_rows_per_read() {
        let a = [
            row(1, "spin", ThreadState::OnCpu, None),
            row(2, "spin", ThreadState::OnCpu, None),
            row(3, "nap", ThreadState::Sleep, Some("clock_nanosleep")),
        ];
        let b = [row(1, "spin", ThreadState::OnCpu, None)];
        let by = live_columns(&["state".into(), "comm".into(), "syscall".into()]).unwrap();
        let rows = group([&a[..], &b[..]], &by, |_| true);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].key,
            vec![Some("ON_CPU".into()), Some("spin".into()), None]
        );
        assert_eq!((rows[0].avg, rows[0].samples), (1.5, 3));
        assert_eq!(rows[1].avg, 0.5);
        let active = group([&a[..], &b[..]], &by, |r| r.state.is_active());
        assert_eq!(active.len(), 1);
    }

    #[test]
    fn unknown_columns_are_refused_and_short_names_mapped() {
        assert!(live_columns(&["nonsense".into()]).is_err());
        assert_eq!(
            live_columns(&["blocker".into(), "peer".into()]).unwrap(),
            vec!["blocker_tid", "sock_remote"]
        );
    }

    #[test]
    fn sorts() {
        let mut rows = vec![
            GroupRow {
                key: vec![Some("b".into())],
                avg: 2.0,
                samples: 2,
            },
            GroupRow {
                key: vec![Some("a".into())],
                avg: 1.0,
                samples: 1,
            },
        ];
        sort_rows(&mut rows, Sort::Key);
        assert_eq!(rows[0].key[0].as_deref(), Some("a"));
        sort_rows(&mut rows, Sort::Active);
        assert_eq!(rows[0].key[0].as_deref(), Some("b"));
    }
}
