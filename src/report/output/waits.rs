//! Printing the reports on waits: `--latency` (how long tracked syscalls
//! and requests took) and `--blockers` (the threads others waited for,
//! and what each was doing meanwhile).

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Value};

use super::{csv_line, key_json, print, table, ts_text};
use crate::report::latency::Latency;
use crate::report::Format as ReportFormat;
use crate::store::csv::push_field;

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
pub(super) fn micros(us: u64) -> String {
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
    chains: &[crate::report::blockers::Chain],
    format: ReportFormat,
) -> Result<()> {
    use crate::report::blockers::{doing_text, Chain};
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
