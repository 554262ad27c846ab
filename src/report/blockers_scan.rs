//! Feeding `report --blockers` ([`super::blockers`]) from the files with
//! the report's own reader: the window's `samples` files, `--where`, one
//! pass for the waiters and up to two more for the blockers found (and
//! theirs). Every state counts (waiters sleep).

use anyhow::Result;

use super::blockers::{BlockRow, Blockers, Chain};
use super::predicate;
use super::read::{self, Cell, Projection};
use crate::store::catalog::{Catalog, Prefer, Window};
use crate::store::schema::{Samples, Table};

/// Columns read.
const COLUMNS: [&str; 8] = [
    "ts",
    "tid",
    "comm",
    "state",
    "wait_class",
    "syscall",
    "blocker_tid",
    "weight_us",
];

/// The `top` chains of the window; rows of files that could not be read
/// whole are left out and named (`Catalog::leave_out`).
pub fn chains(
    catalog: &mut Catalog,
    window: &Window,
    predicate: Option<&str>,
    top: usize,
) -> Result<(Vec<Chain>, bool)> {
    // blocker_tid is not required: files older than it have no blockers.
    let mut projection = Projection::of::<Samples>(&[], "report")?;
    let mut c = Vec::new();
    for name in COLUMNS {
        c.push(if name == "blocker_tid" {
            projection.require::<Samples>(name, "report")?
        } else {
            projection.need::<Samples>(name, "report")?
        });
    }
    let expr = predicate
        .map(|text| predicate::parse::<Samples>(text, &mut projection))
        .transpose()?;
    let files = catalog
        .select_periods(&[Samples::NAME], window, Prefer::Parquet)
        .pop()
        .unwrap_or_default();
    let mut blockers = Blockers::new();
    let mut errors: Vec<Option<String>> = vec![None; files.len()];
    let mut any = false;
    // Pass 1: waiters (and blockers already known); then the blockers'
    // own rows, while passes find new ones (a chain of three at most).
    let mut wanted = usize::MAX;
    for _pass in 0..3 {
        if blockers.wanted() == wanted {
            break;
        }
        wanted = blockers.wanted();
        for (file, error) in files.iter().zip(errors.iter_mut()) {
            if error.is_some() {
                continue;
            }
            let result = read::scan_file(file, &projection, expr.as_ref(), |row| {
                let Some(ts) = row.cell(c[0]).as_int().filter(|t| window.contains(*t)) else {
                    return;
                };
                if !row.passes() {
                    return;
                }
                any = true;
                let text = |i: usize| match row.cell(c[i]) {
                    Cell::Text(s) => Some(s),
                    _ => None,
                };
                let int = |i: usize| row.cell(c[i]).as_int();
                let tid = int(1).and_then(|t| u32::try_from(t).ok()).unwrap_or(0);
                let blocker_tid = int(6).and_then(|t| u32::try_from(t).ok());
                if blocker_tid.is_none() && !blockers.wants(tid) {
                    return;
                }
                blockers.feed(&BlockRow {
                    ts_us: ts,
                    tid,
                    comm: text(2).unwrap_or(""),
                    state: text(3).unwrap_or(""),
                    wait_class: text(4).unwrap_or(""),
                    syscall: text(5),
                    blocker_tid,
                    weight_us: int(7).unwrap_or(0),
                });
            });
            if let Err(err) = result {
                *error = Some(format!("{err:#}"));
            }
        }
    }
    let reads = [(Samples::NAME, files.iter().zip(errors).collect::<Vec<_>>())];
    catalog.leave_out(&reads, |_, _| true);
    Ok((blockers.chains(top, 3), any))
}
