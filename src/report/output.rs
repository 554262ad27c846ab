//! Printing report results: aligned tables for people, CSV and JSON for
//! scripts (one JSON document per run, numbers as numbers, NULL as null).
//! The reports on waits (`--latency`, `--blockers`) are in `waits`.

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::aggregate::{Active, Timeline};
use super::{states, Format as ReportFormat};
use crate::store::csv::push_field;
use crate::store::timefmt;

mod waits;
pub use waits::{blockers, latency};

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

#[cfg(test)]
mod tests {
    use super::waits::micros;
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
