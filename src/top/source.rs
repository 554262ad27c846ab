//! Where `top`'s screens come from: the live table (a ring of reads) or
//! the files over a window (through `report`, so the numbers are the
//! report's). The filter (`/`) is a SQL condition on the rows: the
//! report's `--where` in history, evaluated on each read live
//! (`filter::LiveFilter`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::chart::{class_index, Column};
use super::filter::LiveFilter;
use super::group::{self, sort_rows, GroupRow, Sort};
use crate::bpf::live::LiveTable;
use crate::output::live::{self, LiveRow, LiveStacks};
use crate::report;
use crate::store::catalog::Window;
use crate::store::timefmt;

/// Reads the live table keeps: the chart's last minutes.
const KEPT_READS: usize = 600;
/// Frames shown at most per stack in a thread's detail.
const STACK_LINES: usize = 24;
/// Reads the live groups average over.
pub const TABLE_READS: usize = 10;

/// What is on screen: a level of the drill-down.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    /// Groups by the chosen columns.
    Groups,
    /// The threads of one group.
    Threads {
        columns: Vec<String>,
        key: Vec<Option<String>>,
    },
    /// One thread: its recent states.
    Thread { tid: u32 },
}

/// The columns of a group's threads table.
pub const THREAD_COLUMNS: [&str; 5] = ["tid", "comm", "state", "wait_class", "syscall"];

/// One screen's data.
#[derive(Debug, Clone, Default)]
pub struct Screen {
    /// What the numbers are over (the window, the reads).
    pub scope: String,
    pub columns: Vec<String>,
    pub rows: Vec<GroupRow>,
    /// Text instead of a table (a thread's detail).
    pub detail: Vec<String>,
    /// The chart, oldest column first.
    pub chart: Vec<Column>,
    /// What one chart column is.
    pub chart_step: String,
    /// Files left out (history), shown under the table.
    pub problems: Vec<String>,
}

/// What a screen asks of its source.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub level: &'a Level,
    pub by: &'a [String],
    pub all_states: bool,
    pub filter: &'a str,
    pub sort: Sort,
    /// Columns the chart can show.
    pub chart_width: usize,
}

/// One read of the live table, and its rows the filter keeps.
struct Read {
    ts: i64,
    rows: Vec<LiveRow>,
    /// The rows the filter keeps (None: no filter).
    kept: Option<Vec<LiveRow>>,
}

impl Read {
    fn shown(&self) -> &[LiveRow] {
        self.kept.as_deref().unwrap_or(&self.rows)
    }
}

/// The live table and its recent reads.
pub struct Live {
    table: LiveTable,
    /// The rows' stacks, resolved as the writer does (when the agent
    /// pinned its captures).
    stacks: Box<LiveStacks>,
    reads: VecDeque<Read>,
    filter: Option<LiveFilter>,
    pub interval: Duration,
}

/// The rows of `rows` that `filter` keeps.
fn kept(filter: &LiveFilter, rows: &[LiveRow]) -> Result<Vec<LiveRow>> {
    let keep = filter.keep(rows)?;
    Ok(rows
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(r, _)| r.clone())
        .collect())
}

impl Live {
    pub fn new(table: LiveTable, interval: Duration) -> Live {
        Live {
            table,
            stacks: Box::new(LiveStacks::new()),
            reads: VecDeque::new(),
            filter: None,
            interval,
        }
    }

    /// Read the table now: active threads only unless `all` (decoding
    /// every sleeper costs ~8x more over 10,000 threads: `benches/live.rs`).
    pub fn read(&mut self, woke_ns: u64, all: bool) -> Result<()> {
        let read = live::read_now(&self.table, all, woke_ns, Some(&mut self.stacks));
        let ts = read.rows.first().map(|r| r.ts_us).unwrap_or_else(now_us);
        let kept = self
            .filter
            .as_ref()
            .map(|f| kept(f, &read.rows))
            .transpose()?;
        self.reads.push_back(Read {
            ts,
            rows: read.rows,
            kept,
        });
        while self.reads.len() > KEPT_READS {
            self.reads.pop_front();
        }
        Ok(())
    }

    /// Filter the rows by `text` (a SQL condition; empty: no filter), the
    /// reads kept so far too. A bad condition changes nothing.
    pub fn set_filter(&mut self, text: &str) -> Result<()> {
        let filter = match text.trim() {
            "" => None,
            text => Some(LiveFilter::new(text)?),
        };
        let mut kept_rows = Vec::with_capacity(self.reads.len());
        for read in &self.reads {
            kept_rows.push(filter.as_ref().map(|f| kept(f, &read.rows)).transpose()?);
        }
        for (read, kept) in self.reads.iter_mut().zip(kept_rows) {
            read.kept = kept;
        }
        self.filter = filter;
        Ok(())
    }

    fn screen(&self, ask: &Ask<'_>) -> Result<Screen> {
        let keep = |r: &LiveRow| ask.all_states || r.state.is_active();
        let recent: Vec<&[LiveRow]> = self
            .reads
            .iter()
            .rev()
            .take(TABLE_READS)
            .map(Read::shown)
            .collect();
        let mut screen = Screen {
            scope: format!(
                "live {}: last {} read(s) every {}",
                self.table.dir().display(),
                recent.len(),
                humantime(self.interval)
            ),
            chart_step: format!("one column per read ({})", humantime(self.interval)),
            ..Screen::default()
        };
        screen.chart = self
            .reads
            .iter()
            .map(|read| {
                let mut column: Vec<(usize, f64)> = Vec::new();
                for row in read.shown().iter().filter(|r| keep(r)) {
                    let i = class_index(row.wait_class.name());
                    match column.iter_mut().find(|(j, _)| *j == i) {
                        Some((_, v)) => *v += 1.0,
                        None => column.push((i, 1.0)),
                    }
                }
                column
            })
            .collect();
        match ask.level {
            Level::Groups => {
                let by = group::live_columns(ask.by)?;
                screen.rows = group::group(recent, &by, keep);
                screen.columns = by;
            }
            Level::Threads { columns, key } => {
                let in_group = |r: &LiveRow| {
                    keep(r)
                        && columns
                            .iter()
                            .zip(key)
                            .all(|(c, v)| group::value(r, c) == *v)
                };
                let by: Vec<String> = THREAD_COLUMNS.iter().map(|c| c.to_string()).collect();
                screen.rows = group::group(recent, &by, in_group);
                screen.columns = by;
            }
            Level::Thread { tid } => {
                screen.detail = self.thread_detail(*tid);
            }
        }
        sort_rows(&mut screen.rows, ask.sort);
        Ok(screen)
    }

    fn thread_detail(&self, tid: u32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut name = None;
        for read in self.reads.iter().rev() {
            let Some(r) = read.rows.iter().find(|r| r.tid == tid) else {
                continue;
            };
            let ts = &read.ts;
            name.get_or_insert_with(|| format!("thread {tid} ({}) of process {}", r.comm, r.tgid));
            lines.push(format!(
                "{}  {:<15} {:<9} {:<16} {:>10}  cpu {}",
                &ts_text(*ts)[11..19],
                r.state.name(),
                r.wait_class.name(),
                r.syscall.unwrap_or("-"),
                r.state_since_us
                    .map(|us| format!("{:.3}s", us as f64 / 1e6))
                    .unwrap_or_default(),
                r.cpu
            ));
            if lines.len() >= 200 {
                break;
            }
        }
        let mut out =
            vec![name.unwrap_or_else(|| format!("thread {tid}: not seen in the recent reads"))];
        out.extend(self.stack_lines(tid));
        out.push("newest first: time, state, wait class, syscall, time in state, cpu".to_string());
        out.extend(lines);
        out
    }

    /// The thread's stacks in its newest row that has any: kernel frames,
    /// then user frames, innermost first (as `stacks.frames`).
    fn stack_lines(&self, tid: u32) -> Vec<String> {
        if !self.table.has_stacks() {
            return vec![
                "stacks: this agent does not capture them (--stacks none) or did not pin them"
                    .to_string(),
                String::new(),
            ];
        }
        let newest = self.reads.iter().rev().find_map(|read| {
            read.rows
                .iter()
                .find(|r| r.tid == tid && (r.kstack_id.is_some() || r.ustack_id.is_some()))
                .map(|r| (read.ts, r))
        });
        let Some((ts, row)) = newest else {
            return vec![
                "stacks: none yet (a capture describes a row only once it is of that very state)"
                    .to_string(),
                String::new(),
            ];
        };
        let mut out = vec![format!(
            "stacks at {} ({}{}), innermost first:",
            &ts_text(ts)[11..19],
            row.state.name(),
            row.syscall.map(|s| format!(" in {s}")).unwrap_or_default()
        )];
        for (kind, id) in [("kernel", row.kstack_id), ("user", row.ustack_id)] {
            let Some(def) = id.and_then(|id| self.stacks.definition(id)) else {
                continue;
            };
            out.push(format!(
                "  {kind}{}:",
                if def.truncated { " (cut short)" } else { "" }
            ));
            out.extend(
                def.frames
                    .split(';')
                    .take(STACK_LINES)
                    .map(|f| format!("    {f}")),
            );
            if def.depth as usize > STACK_LINES {
                out.push(format!("    ... {} more", def.depth as usize - STACK_LINES));
            }
        }
        out.push(String::new());
        out
    }
}

/// The files over a window, through the report.
pub struct History {
    pub dir: PathBuf,
    pub window: Window,
}

impl History {
    fn screen(&self, ask: &Ask<'_>) -> Result<Screen> {
        let mut screen = Screen {
            scope: format!(
                "history {}: {} to {} UTC",
                self.dir.display(),
                &ts_text(self.window.from_us)[..19],
                &ts_text(self.window.to_us)[..19]
            ),
            ..Screen::default()
        };
        let len_s = (self.window.len_us() / 1_000_000).max(1) as u64;
        let step = (len_s / ask.chart_width.max(1) as u64).max(1);
        screen.chart_step = format!("one column per {}", humantime(Duration::from_secs(step)));
        let filter = (!ask.filter.is_empty()).then_some(ask.filter);
        let timeline = report::timeline_of(
            &self.dir,
            self.window,
            Duration::from_secs(step),
            "wait_class",
            filter,
            ask.all_states,
        );
        if let Ok(timeline) = timeline {
            screen.chart = timeline
                .buckets
                .values()
                .map(|(sampled, states)| {
                    states
                        .iter()
                        .map(|(s, w)| (class_index(s), *w as f64 / (*sampled).max(1) as f64))
                        .collect()
                })
                .collect();
        }
        let (by, filter, all_states) = match ask.level {
            Level::Groups => (ask.by.to_vec(), filter.map(str::to_string), ask.all_states),
            Level::Threads { columns, key } => (
                THREAD_COLUMNS.iter().map(|c| c.to_string()).collect(),
                Some(match filter {
                    Some(f) => format!("({f}) AND {}", predicate(columns, key)),
                    None => predicate(columns, key),
                }),
                ask.all_states,
            ),
            Level::Thread { tid } => (
                ["state", "wait_class", "syscall", "kfunc", "kstack_id"]
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                Some(format!("tid = {tid}")),
                true,
            ),
        };
        let (active, problems) =
            report::active_threads(&self.dir, self.window, &by, filter.as_deref(), all_states)?;
        screen.problems = problems.iter().map(|p| p.to_string()).collect();
        screen.columns = active.groups.clone();
        screen.rows = active
            .rows
            .iter()
            .map(|g| GroupRow {
                key: g.key.clone(),
                avg: active.avg_active(g),
                samples: g.samples,
            })
            .collect();
        // The report's order (thread time, then key) unless sorted by key.
        if ask.sort == Sort::Key {
            sort_rows(&mut screen.rows, ask.sort);
        }
        if let Level::Thread { tid } = ask.level {
            screen.detail = vec![
                format!("thread {tid}: its states in the window (every state counted)"),
                format!(
                    "stacks: taskscope flamegraph --dir {} --where 'tid = {tid}' -o t.svg (kstack_id: the stacks table)",
                    self.dir.display()
                ),
            ];
        }
        if active.sampled_us == 0 {
            screen.problems.push(format!(
                "no samples in this window of {}: move it with [ ] or zoom out with -",
                self.dir.display()
            ));
        }
        Ok(screen)
    }

    /// Move the window by `steps` of its length (negative: back); never
    /// past now.
    pub fn shift(&mut self, steps: i64) {
        let len = self.window.len_us();
        let now = now_us();
        let mut to = self.window.to_us.saturating_add(steps * len);
        if to > now {
            to = now;
        }
        self.window = Window {
            from_us: to - len,
            to_us: to,
        };
    }

    /// Zoom: `factor` 2 doubles the window (around its middle), 0.5 halves
    /// it; at least one second; never past now.
    pub fn zoom(&mut self, factor: f64) {
        let len = ((self.window.len_us() as f64 * factor) as i64).max(1_000_000);
        let mid = self.window.from_us + self.window.len_us() / 2;
        let to = (mid + len / 2).min(now_us());
        self.window = Window {
            from_us: to - len,
            to_us: to,
        };
    }
}

/// A `--where` predicate selecting `key`'s group.
pub fn predicate(columns: &[String], key: &[Option<String>]) -> String {
    columns
        .iter()
        .zip(key)
        .map(|(c, v)| match v {
            None => format!("{c} IS NULL"),
            Some(v) if v.parse::<i64>().is_ok() && c != "comm" => format!("{c} = {v}"),
            Some(v) => format!("{c} = '{}'", v.replace('\'', "''")),
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Where a screen comes from.
pub enum Source {
    Live(Live),
    History(History),
}

impl Source {
    pub fn screen(&self, ask: &Ask<'_>) -> Result<Screen> {
        match self {
            Source::Live(live) => live.screen(ask),
            Source::History(history) => history.screen(ask),
        }
    }
}

fn now_us() -> i64 {
    timefmt::unix_micros_now()
}

fn ts_text(us: i64) -> String {
    let mut text = String::new();
    timefmt::write_timestamp_micros(&mut text, us);
    text
}

/// A duration as `1s`, `500ms`, `2m`, `1h`.
pub fn humantime(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    match ms {
        0..=999 => format!("{ms}ms"),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_select_one_group() {
        let columns: Vec<String> = ["wait_class", "comm", "syscall", "tid"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let key = vec![
            Some("CPU".to_string()),
            Some("o'k".to_string()),
            None,
            Some("42".to_string()),
        ];
        assert_eq!(
            predicate(&columns, &key),
            "wait_class = 'CPU' AND comm = 'o''k' AND syscall IS NULL AND tid = 42"
        );
    }

    #[test]
    fn windows_move_and_zoom_but_not_past_now() {
        let now = now_us();
        let mut h = History {
            dir: PathBuf::from("/nonexistent"),
            window: Window {
                from_us: now - 3_600_000_000,
                to_us: now - 1_800_000_000,
            },
        };
        h.shift(-1);
        assert_eq!(h.window.len_us(), 1_800_000_000);
        assert_eq!(h.window.to_us, now - 3_600_000_000);
        h.shift(5);
        assert!(h.window.to_us <= now_us() && h.window.to_us >= now);
        h.zoom(0.5);
        assert_eq!(h.window.len_us(), 900_000_000);
        assert_eq!(humantime(Duration::from_secs(60)), "1m");
        assert_eq!(humantime(Duration::from_millis(250)), "250ms");
    }
}
