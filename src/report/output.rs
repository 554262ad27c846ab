//! Printing report results: aligned tables for people, CSV and JSON for
//! scripts (one JSON document per run, numbers as numbers, NULL as null).

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::aggregate::{Active, Timeline};
use super::latency::Latency;
use super::{states, Format as ReportFormat};
use crate::store::csv::push_field;
use crate::store::timefmt;

/// What the averages count, and what they leave out: one line.
fn counted_text(all_states: bool, other_us: i64, sampled_us: i64) -> String {
    if all_states {
        return "counted: threads in every state (--all-states)".to_string();
    }
    let active = states::active_names().join(", ");
    if other_us == 0 {
        return format!("counted: active threads ({active})");
    }
    format!(
        "counted: active threads ({active}); not counted: {:.2} average threads sleeping or idle (--all-states counts them)",
        other_us as f64 / sampled_us.max(1) as f64
    )
}

/// `includes the period being written, up to 13:04:05 UTC`, when it does.
fn live_text(live_until: Option<i64>) -> Option<String> {
    let until = live_until.filter(|&t| t > i64::MIN)?;
    let mut stamp = ts_text(until);
    stamp.truncate(19);
    Some(format!(
        "includes the period being written, up to its last complete tick ({stamp} UTC)"
    ))
}

fn ts_text(us: i64) -> String {
    let mut text = String::new();
    timefmt::write_timestamp_micros(&mut text, us);
    text
}

fn print(out: &mut dyn Write, text: &str) -> Result<()> {
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // A closed pipe (| head) is not an error worth a message.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn csv_line(fields: &[String]) -> String {
    let mut line = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        push_field(&mut line, field.as_bytes());
    }
    line.push(b'\n');
    String::from_utf8_lossy(&line).into_owned()
}

/// Columns aligned with two spaces; numbers (by `numeric`) right-aligned.
fn table(header: &[String], rows: &[Vec<String>], numeric: &[bool]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn key_json(groups: &[String], key: &[Option<String>]) -> Map<String, Value> {
    groups
        .iter()
        .zip(key)
        .map(|(name, value)| {
            (
                name.clone(),
                value.clone().map_or(Value::Null, Value::String),
            )
        })
        .collect()
}

/// The Active-Session-History report.
pub fn active(
    out: &mut dyn Write,
    report: &Active,
    format: ReportFormat,
    top: usize,
) -> Result<()> {
    let shown = &report.rows[..report.rows.len().min(top)];
    match format {
        ReportFormat::Json => {
            let rows: Vec<Value> = shown
                .iter()
                .map(|g| {
                    let mut object = key_json(&report.groups, &g.key);
                    object.insert("avg_active".into(), json!(report.avg_active(g)));
                    object.insert("share".into(), json!(report.share(g)));
                    object.insert("samples".into(), json!(g.samples));
                    object.insert("thread_seconds".into(), json!(g.weight_us as f64 / 1e6));
                    Value::Object(object)
                })
                .collect();
            let document = json!({
                "from": ts_text(report.window.from_us),
                "to": ts_text(report.window.to_us),
                "sampled_seconds": report.sampled_us as f64 / 1e6,
                "avg_active_total": report.total_us as f64 / report.sampled_us.max(1) as f64,
                "states": if report.all_states { "all" } else { "active" },
                "counted_states": counted_states(report.all_states),
                "avg_not_counted": report.other_us as f64 / report.sampled_us.max(1) as f64,
                "in_progress_until": report.live_until.map(ts_text),
                "groups": report.groups,
                "rows": rows,
            });
            print(
                out,
                &format!("{}\n", serde_json::to_string_pretty(&document)?),
            )
        }
        ReportFormat::Csv => {
            let mut header = report.groups.clone();
            header.extend(["avg_active", "share", "samples"].map(String::from));
            let mut text = csv_line(&header);
            for g in shown {
                let mut fields: Vec<String> = g
                    .key
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect();
                fields.push(format!("{:.4}", report.avg_active(g)));
                fields.push(format!("{:.4}", report.share(g)));
                fields.push(g.samples.to_string());
                text.push_str(&csv_line(&fields));
            }
            print(out, &text)
        }
        ReportFormat::Table => {
            let mut text = format!(
                "{}: {:.2} average {}threads over {:.0} s sampled\n{}\n",
                report.window.text(),
                report.total_us as f64 / report.sampled_us.max(1) as f64,
                if report.all_states { "" } else { "active " },
                report.sampled_us as f64 / 1e6,
                counted_text(report.all_states, report.other_us, report.sampled_us)
            );
            if let Some(live) = live_text(report.live_until) {
                text.push_str(&live);
                text.push('\n');
            }
            text.push('\n');
            let mut header: Vec<String> = vec!["AVG_ACTIVE".into(), "SHARE".into()];
            header.extend(report.groups.iter().map(|g| g.to_ascii_uppercase()));
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|g| {
                    let mut row = vec![
                        format!("{:.3}", report.avg_active(g)),
                        format!("{:.1}%", 100.0 * report.share(g)),
                    ];
                    row.extend(
                        g.key
                            .iter()
                            .map(|v| v.clone().unwrap_or_else(|| "-".into())),
                    );
                    row
                })
                .collect();
            text.push_str(&table(&header, &rows, &[true, true]));
            if report.rows.len() > shown.len() {
                text.push_str(&format!(
                    "({} more groups; --top N shows more)\n",
                    report.rows.len() - shown.len()
                ));
            }
            print(out, &text)
        }
    }
}

const CHART_WIDTH: f64 = 60.0;

/// The states counted, for JSON.
fn counted_states(all_states: bool) -> Value {
    if all_states {
        json!("all")
    } else {
        json!(states::active_names())
    }
}

/// Active threads per bucket and state: a chart on a terminal.
pub fn timeline(
    out: &mut dyn Write,
    timeline: &Timeline,
    format: ReportFormat,
    color: bool,
) -> Result<()> {
    let active = |sampled: i64, weight: i64| weight as f64 / sampled.max(1) as f64;
    match format {
        ReportFormat::Json | ReportFormat::Csv => {
            let mut rows = Vec::new();
            for (start, (sampled, states)) in &timeline.buckets {
                for (state, weight) in states {
                    rows.push((ts_text(*start), state.clone(), active(*sampled, *weight)));
                }
            }
            if format == ReportFormat::Csv {
                let mut text = csv_line(&["bucket".into(), "state".into(), "avg_active".into()]);
                for (bucket, state, value) in rows {
                    text.push_str(&csv_line(&[bucket, state, format!("{value:.4}")]));
                }
                return print(out, &text);
            }
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|(bucket, state, value)| json!({"bucket": bucket, "state": state, "avg_active": value}))
                .collect();
            print(
                out,
                &format!(
                    "{}\n",
                    serde_json::to_string_pretty(&json!({
                        "bucket_seconds": timeline.bucket.as_secs_f64(),
                        "states": if timeline.all_states { "all" } else { "active" },
                        "counted_states": counted_states(timeline.all_states),
                        "in_progress_until": timeline.live_until.map(ts_text),
                        "rows": rows,
                    }))?
                ),
            )
        }
        ReportFormat::Table => {
            let totals: Vec<f64> = timeline
                .buckets
                .values()
                .map(|(sampled, states)| active(*sampled, states.values().sum()))
                .collect();
            let peak = totals.iter().copied().fold(0.0, f64::max).max(1e-9);
            let sampled: i64 = timeline.buckets.values().map(|(s, _)| s).sum();
            let mut text = format!(
                "{}: average {}threads per {}, by state\n{}\n",
                timeline.window.text(),
                if timeline.all_states { "" } else { "active " },
                timefmt::human_duration(timeline.bucket),
                counted_text(timeline.all_states, timeline.other_us, sampled)
            );
            if let Some(live) = live_text(timeline.live_until) {
                text.push_str(&live);
                text.push('\n');
            }
            for ((start, (sampled, states)), total) in timeline.buckets.iter().zip(&totals) {
                let mut stamp = ts_text(*start);
                stamp.truncate(19);
                let mut bar = String::new();
                let mut order: Vec<(&String, &i64)> = states.iter().collect();
                order.sort_by_key(|(state, _)| states::order_of(state));
                for (state, weight) in order {
                    let cells = (active(*sampled, *weight) / peak * CHART_WIDTH).round() as usize;
                    let style = states::style_of(state);
                    let run: String = std::iter::repeat_n(style.letter, cells).collect();
                    if color && cells > 0 {
                        bar.push_str(&format!("\x1b[{}m{run}\x1b[0m", style.ansi));
                    } else {
                        bar.push_str(&run);
                    }
                }
                let sampled_mark = if *sampled == 0 { " (no ticks)" } else { "" };
                text.push_str(&format!("{stamp}  {total:>7.2}  {bar}{sampled_mark}\n"));
            }
            // The legend names the states drawn.
            let drawn: std::collections::BTreeSet<&str> = timeline
                .buckets
                .values()
                .flat_map(|(_, states)| states.keys().map(String::as_str))
                .collect();
            let legend: Vec<String> = states::STYLES
                .iter()
                .filter(|s| drawn.contains(s.name) || s.name == "ON_CPU")
                .map(|s| format!("{}={}", s.letter, s.name))
                .collect();
            text.push_str(&format!(
                "scale: {} columns = {peak:.2} threads; {}\n",
                CHART_WIDTH as usize,
                legend.join(" ")
            ));
            print(out, &text)
        }
    }
}

/// Latency of tracked syscalls or requests.
pub fn latency(
    out: &mut dyn Write,
    latency: &Latency,
    format: ReportFormat,
    top: usize,
    color: bool,
) -> Result<()> {
    let shown = &latency.rows[..latency.rows.len().min(top)];
    match format {
        ReportFormat::Json => {
            let rows: Vec<Value> = shown
                .iter()
                .map(|g| {
                    let mut object = key_json(&latency.groups, &g.key);
                    object.insert("count".into(), json!(g.durations.len()));
                    object.insert("estimated_count".into(), json!(g.estimated));
                    object.insert("avg_us".into(), json!(g.mean()));
                    for (name, p) in [("p50_us", 50.0), ("p95_us", 95.0), ("p99_us", 99.0), ("max_us", 100.0)] {
                        object.insert(name.into(), json!(g.percentile(p)));
                    }
                    let histogram: Vec<Value> = g
                        .histogram()
                        .into_iter()
                        .map(|(low, high, count)| json!({"low_us": low, "high_us": high, "count": count}))
                        .collect();
                    object.insert("histogram".into(), Value::Array(histogram));
                    Value::Object(object)
                })
                .collect();
            print(
                out,
                &format!(
                    "{}\n",
                    serde_json::to_string_pretty(&json!({
                        "table": latency.table,
                        "from": ts_text(latency.window.from_us),
                        "to": ts_text(latency.window.to_us),
                        "sampling_period_us": latency.period_us,
                        "groups": latency.groups,
                        "rows": rows,
                    }))?
                ),
            )
        }
        ReportFormat::Csv => {
            let mut header = latency.groups.clone();
            header.extend(
                [
                    "count",
                    "estimated_count",
                    "avg_us",
                    "p50_us",
                    "p95_us",
                    "p99_us",
                    "max_us",
                ]
                .map(String::from),
            );
            let mut text = csv_line(&header);
            for g in shown {
                let mut fields: Vec<String> = g
                    .key
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect();
                fields.push(g.durations.len().to_string());
                fields.push(g.estimated.map_or(String::new(), |e| format!("{e:.0}")));
                fields.push(format!("{:.0}", g.mean()));
                for p in [50.0, 95.0, 99.0, 100.0] {
                    fields.push(g.percentile(p).to_string());
                }
                text.push_str(&csv_line(&fields));
            }
            print(out, &text)
        }
        ReportFormat::Table => {
            let mut text = format!(
                "{}: {} that samples caught in progress (durations exact; long ones are over-represented, see estimated)\n\n",
                latency.window.text(),
                latency.table
            );
            let mut header: Vec<String> = latency
                .groups
                .iter()
                .map(|g| g.to_ascii_uppercase())
                .collect();
            header.extend(
                ["COUNT", "ESTIMATED", "AVG", "P50", "P95", "P99", "MAX"].map(String::from),
            );
            let n = latency.groups.len();
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|g| {
                    let mut row: Vec<String> = g
                        .key
                        .iter()
                        .map(|v| v.clone().unwrap_or_else(|| "-".into()))
                        .collect();
                    row.push(g.durations.len().to_string());
                    row.push(g.estimated.map_or("-".into(), |e| format!("{e:.0}")));
                    row.push(micros(g.mean() as u64));
                    for p in [50.0, 95.0, 99.0, 100.0] {
                        row.push(micros(g.percentile(p)));
                    }
                    row
                })
                .collect();
            let numeric: Vec<bool> = (0..n + 7).map(|i| i >= n).collect();
            text.push_str(&table(&header, &rows, &numeric));
            for g in shown {
                let name: Vec<String> = g
                    .key
                    .iter()
                    .map(|v| v.clone().unwrap_or_else(|| "-".into()))
                    .collect();
                text.push_str(&format!("\n{}\n", name.join(" ")));
                let histogram = g.histogram();
                let peak = histogram.iter().map(|b| b.2).max().unwrap_or(1).max(1);
                for (low, high, count) in histogram {
                    let cells = (count as f64 / peak as f64 * 40.0).round() as usize;
                    let bar: String = std::iter::repeat_n('*', cells).collect();
                    let bar = if color && cells > 0 {
                        format!("\x1b[36m{bar}\x1b[0m")
                    } else {
                        bar
                    };
                    text.push_str(&format!(
                        "  {:>9} .. {:<9} {:>8}  |{bar}\n",
                        micros(low),
                        micros(high),
                        count
                    ));
                }
            }
            print(out, &text)
        }
    }
}

/// `850us`, `12.5ms`, `1.20s`.
fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// `report --blockers`: each blocker, the thread time others waited on it,
/// and what it was doing meanwhile; its own blocker indented below.
pub fn blockers(
    out: &mut dyn Write,
    chains: &[super::blockers::Chain],
    format: ReportFormat,
) -> Result<()> {
    use super::blockers::{doing_text, Chain};
    fn json_of(chain: &Chain) -> Value {
        let doing: Vec<Value> = chain
            .doing
            .iter()
            .map(|(d, us)| {
                json!({
                    "state": d.as_ref().map(|d| d.state.clone()),
                    "wait_class": d.as_ref().map(|d| d.wait_class.clone()),
                    "syscall": d.as_ref().and_then(|d| d.syscall.clone()),
                    "blocker_tid": d.as_ref().and_then(|d| d.blocker_tid),
                    "waited_us": us,
                    "share": *us as f64 / chain.waited_us.max(1) as f64,
                })
            })
            .collect();
        json!({
            "tid": chain.tid,
            "comm": chain.comm,
            "waited_us": chain.waited_us,
            "waiters": chain.waiters,
            "doing": doing,
            "blocked_by": chain.next.as_deref().map(json_of),
        })
    }
    match format {
        ReportFormat::Json => {
            let document: Vec<Value> = chains.iter().map(json_of).collect();
            print(
                out,
                &format!(
                    "{}\n",
                    serde_json::to_string_pretty(&json!({ "blockers": document }))?
                ),
            )
        }
        ReportFormat::Csv => {
            let mut csv: Vec<u8> =
                b"rank,level,tid,comm,waited_us,waiters,state,wait_class,syscall,share\n".to_vec();
            for (rank, first) in chains.iter().enumerate() {
                let mut level = 1;
                let mut chain = Some(first);
                while let Some(c) = chain {
                    let (d, us) = c.doing.first().cloned().unwrap_or((None, 0));
                    let fields = [
                        (rank + 1).to_string(),
                        level.to_string(),
                        c.tid.to_string(),
                        c.comm.clone(),
                        c.waited_us.to_string(),
                        c.waiters.to_string(),
                        d.as_ref().map(|d| d.state.clone()).unwrap_or_default(),
                        d.as_ref().map(|d| d.wait_class.clone()).unwrap_or_default(),
                        d.as_ref()
                            .and_then(|d| d.syscall.clone())
                            .unwrap_or_default(),
                        format!("{:.3}", us as f64 / c.waited_us.max(1) as f64),
                    ];
                    for (i, field) in fields.iter().enumerate() {
                        if i > 0 {
                            csv.push(b',');
                        }
                        push_field(&mut csv, field.as_bytes());
                    }
                    csv.push(b'\n');
                    level += 1;
                    chain = c.next.as_deref();
                }
            }
            print(out, &String::from_utf8_lossy(&csv))
        }
        ReportFormat::Table => {
            if chains.is_empty() {
                return print(
                    out,
                    "no thread waited for another (blocker_tid is empty on every row)\n",
                );
            }
            let mut text = String::new();
            for (rank, first) in chains.iter().enumerate() {
                text.push_str(&format!(
                    "{}. {} [tid {}]: {} thread(s) waited {:.2} s for it\n",
                    rank + 1,
                    if first.comm.is_empty() {
                        "?"
                    } else {
                        &first.comm
                    },
                    first.tid,
                    first.waiters,
                    first.waited_us as f64 / 1e6
                ));
                let mut indent = 3;
                let mut chain = Some(first);
                while let Some(c) = chain {
                    let name = if c.comm.is_empty() { "?" } else { &c.comm };
                    for (d, us) in c.doing.iter().take(3) {
                        text.push_str(&format!(
                            "{:indent$}{name} meanwhile: {} {:.0}%\n",
                            "",
                            doing_text(d),
                            100.0 * *us as f64 / c.waited_us.max(1) as f64
                        ));
                    }
                    if let Some(next) = c.next.as_deref() {
                        indent += 2;
                        text.push_str(&format!(
                            "{:indent$}{name} waits for {} [tid {}]\n",
                            "",
                            if next.comm.is_empty() {
                                "?"
                            } else {
                                &next.comm
                            },
                            next.tid
                        ));
                    }
                    chain = c.next.as_deref();
                }
            }
            print(out, &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_tables() {
        let text = table(
            &["A".into(), "NAME".into()],
            &[
                vec!["1.5".into(), "x".into()],
                vec!["10.25".into(), "long".into()],
            ],
            &[true],
        );
        assert_eq!(text, "    A  NAME\n  1.5  x\n10.25  long\n");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(micros(850), "850us");
        assert_eq!(micros(12_500), "12.5ms");
        assert_eq!(micros(1_200_000), "1.20s");
    }
}
