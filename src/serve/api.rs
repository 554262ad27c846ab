//! The JSON (and SVG) endpoints: report's answers for a window and filter.
//!
//! The decision a reader must know: every answer is computed by report's
//! own functions (`report::aggregate`, `latency`, `blockers_scan`,
//! `flame`), and where report prints JSON the endpoint returns that same
//! document (`report::output` writes into a buffer), so the page shows
//! what `taskscope report --format json` says for the same window and
//! `--where`; the top stacks come from the SQL query layer (`stacks`), the
//! chart's buckets and series from `chart`. Each query runs on tokio's
//! blocking pool under a semaphore of [`QUERIES`] slots and a time limit
//! ([`QUERY_TIME`]); see [`answer`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::chart::{bucket_for, chart, MAX_POINTS};
use super::params::Selection;
use super::Shared;
use crate::report::aggregate::{self, Query as ReportQuery};
use crate::report::{self, blockers_scan, flame, latency, output, Format, LatencyOf};
use crate::store::catalog::{Catalog, Window};
use crate::store::schema::{Iorq, Samples, Syscalls, Table};
use crate::store::timefmt;

/// Queries read at once; more wait up to [`QUEUE_TIME`] for a slot.
pub const QUERIES: usize = 2;
/// How long a query may wait for a slot before a 503.
const QUEUE_TIME: Duration = Duration::from_secs(10);
/// How long the server waits for a query's answer.
pub const QUERY_TIME: Duration = Duration::from_secs(30);
/// Folded stacks drawn at most (the heaviest).
const MAX_STACKS: usize = 20_000;

/// An answer that is not one: status and a one-line reason.
pub struct Failure(StatusCode, String);

impl Failure {
    fn bad(err: impl std::fmt::Display) -> Failure {
        Failure(StatusCode::BAD_REQUEST, one_line(&format!("{err:#}")))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            one_line(&format!("{err:#}")),
        )
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A plain-text error response: one line.
pub fn error(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("{}\n", one_line(reason)),
    )
        .into_response()
}

type Work = fn(&Shared, &Selection) -> Result<Response, Failure>;

/// Parse the parameters, then run `work` bounded: it waits at most
/// [`QUEUE_TIME`] for one of [`QUERIES`] slots (else 503), runs on the
/// blocking pool, and is answered within [`QUERY_TIME`] or a 503 says it
/// was abandoned. An abandoned query cannot be stopped (its reader
/// threads run to the end of their files); it keeps its slot until it
/// finishes, so abandoned work never piles up beyond the slots.
async fn answer(shared: Arc<Shared>, params: BTreeMap<String, String>, work: Work) -> Response {
    let selection = match Selection::parse(params, timefmt::unix_micros_now()) {
        Ok(selection) => selection,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };
    let slot = match tokio::time::timeout(QUEUE_TIME, shared.queries.clone().acquire_owned()).await
    {
        Ok(Ok(slot)) => slot,
        _ => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: every query slot is taken; retry in a moment",
            )
        }
    };
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work(&shared, &selection)
    });
    match tokio::time::timeout(QUERY_TIME, task).await {
        Ok(Ok(Ok(response))) => response,
        Ok(Ok(Err(Failure(status, reason)))) => error(status, &reason),
        Ok(Err(_)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the query failed (a reader thread panicked)",
        ),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the query took longer than {} s and was abandoned; narrow the window or the filter",
                QUERY_TIME.as_secs()
            ),
        ),
    }
}

macro_rules! endpoint {
    ($name:ident, $work:path) => {
        pub async fn $name(
            State(shared): State<Arc<Shared>>,
            Query(params): Query<BTreeMap<String, String>>,
        ) -> Response {
            answer(shared, params, $work).await
        }
    };
}

endpoint!(info, info_of);
endpoint!(cpus_now, cpus_of);
endpoint!(activity, activity_of);
endpoint!(overview, overview_of);
endpoint!(top, top_of);
endpoint!(threads, threads_of);
endpoint!(blockers, blockers_of);
endpoint!(latency, latency_of);
endpoint!(thread, thread_of);
endpoint!(flame_svg, flame_of);
endpoint!(stacks, stacks_of);

fn json_response(value: &Value) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        value.to_string(),
    )
        .into_response()
}

pub(super) fn stamp(us: i64) -> String {
    let mut text = String::new();
    timefmt::write_timestamp_micros(&mut text, us);
    text
}

fn open(shared: &Shared) -> Result<Catalog, Failure> {
    Ok(Catalog::open(&shared.dir)?)
}

/// Problems as lines, for the page's warning.
pub(super) fn problems(catalog: &Catalog) -> Value {
    json!(catalog
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>())
}

/// The 404 of a window without rows of `table` (report's message: where
/// the data is), or a 500 when damaged files left nothing.
fn nothing(catalog: &mut Catalog, table: &str, window: &Window) -> Failure {
    if !catalog.problems.is_empty() {
        let lines: Vec<String> = catalog.problems.iter().map(|p| p.to_string()).collect();
        return Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "no usable {table} rows in {}: {}",
                window.text(),
                lines.join("; ")
            ),
        );
    }
    Failure(
        StatusCode::NOT_FOUND,
        one_line(&format!("{:#}", catalog.no_data(table, window))),
    )
}

/// report's JSON document for the answer, with the problems added.
fn report_json(
    catalog: &Catalog,
    write: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<Response, Failure> {
    let mut buffer = Vec::new();
    write(&mut buffer)?;
    let mut document: Value =
        serde_json::from_slice(&buffer).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    if let Value::Object(map) = &mut document {
        map.insert("problems".into(), problems(catalog));
    }
    Ok(json_response(&document))
}

/// The online CPUs of this machine, for data it wrote itself.
fn local_cpus() -> i64 {
    // SAFETY: sysconf reads a system value; no pointers are involved.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    online.max(0)
}

/// Each host's CPU count: this machine's online CPUs for its own data
/// (no file read), else — with `scan` — the highest `cpu` number in the
/// last 10 minutes of `window` plus one (a lower bound:
/// `aggregate::cpus_seen`).
fn cpus(
    shared: &Shared,
    catalog: &mut Catalog,
    hosts: &[String],
    window: Option<Window>,
) -> Result<BTreeMap<String, (i64, &'static str)>, Failure> {
    let mut cpus = BTreeMap::new();
    let foreign = hosts.iter().any(|h| *h != shared.hostname);
    if let (true, Some(window)) = (foreign, window) {
        let last = Window {
            from_us: window.from_us.max(window.to_us - 600_000_000),
            to_us: window.to_us,
        };
        for (host, count) in aggregate::cpus_seen(catalog, last)? {
            cpus.insert(host, (count, "seen"));
        }
    }
    for host in hosts {
        if *host == shared.hostname {
            cpus.insert(host.clone(), (local_cpus(), "online"));
        }
    }
    Ok(cpus)
}

fn cpus_json(cpus: &BTreeMap<String, (i64, &'static str)>) -> Value {
    json!({
        "cpus": cpus.iter().map(|(h, (n, _))| (h.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "cpus_total": cpus.values().map(|(n, _)| n).sum::<i64>(),
        "cpus_source": cpus.iter().map(|(h, (_, how))| (h.clone(), json!(how))).collect::<serde_json::Map<_, _>>(),
    })
}

fn info_of(shared: &Shared, _selection: &Selection) -> Result<Response, Failure> {
    let mut catalog = open(shared)?;
    let spans = catalog.spans(Samples::NAME);
    let newest = aggregate::newest_tick(&mut catalog)?;
    let names: Vec<String> = spans.iter().map(|s| s.host.clone()).collect();
    // Only this machine's own count here: counting another host's CPUs
    // reads its samples (`/api/cpus`), which the first view should not
    // wait for.
    let cpus = cpus(shared, &mut catalog, &names, None)?;
    let hosts: Vec<Value> = spans
        .iter()
        .map(|s| {
            json!({
                "host": s.host,
                "periods": s.periods,
                "first_period": stamp(s.first_us),
                "newest_period": stamp(s.newest_us),
            })
        })
        .collect();
    let mut answer = json!({
        "dir": shared.dir.display().to_string(),
        "served_by": shared.hostname,
        "hosts": hosts,
        "cpus_complete": names.iter().all(|h| *h == shared.hostname),
        "oldest": spans.iter().map(|s| s.first_us).min().map(stamp),
        "oldest_unix": spans.iter().map(|s| s.first_us).min().map(|us| us as f64 / 1e6),
        "newest": newest.map(stamp),
        "newest_unix": newest.map(|us| us as f64 / 1e6),
        "now_unix": timefmt::unix_micros_now() as f64 / 1e6,
        "version": env!("CARGO_PKG_VERSION"),
        "max_points": MAX_POINTS,
        "problems": problems(&catalog),
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut answer, cpus_json(&cpus)) {
        map.extend(more);
    }
    Ok(json_response(&answer))
}

/// The CPU count of each host with data in the window.
fn cpus_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    let mut catalog = open(shared)?;
    let names: Vec<String> = catalog
        .spans(Samples::NAME)
        .into_iter()
        .map(|s| s.host)
        .collect();
    let cpus = cpus(shared, &mut catalog, &names, Some(selection.window))?;
    Ok(json_response(&cpus_json(&cpus)))
}

fn timeline_of(
    shared: &Shared,
    selection: &Selection,
    by: &str,
    all_states: bool,
) -> Result<Response, Failure> {
    report::check_samples(&[by.to_string()], selection.predicate.as_deref())
        .map_err(Failure::bad)?;
    let mut catalog = open(shared)?;
    let query = ReportQuery {
        window: selection.window,
        predicate: selection.predicate.as_deref(),
        all_states,
    };
    let bucket = bucket_for(selection.window.len_us());
    let timeline = aggregate::timeline(&mut catalog, &query, by, Some(bucket), |_| bucket)?;
    if timeline.buckets.is_empty() {
        return Err(nothing(&mut catalog, Samples::NAME, &selection.window));
    }
    Ok(json_response(&chart(&timeline, selection, &catalog)))
}

/// The first view: the chart and the top groups of the same window and
/// filter, in one read of the files (`aggregate::active_and_timeline`).
fn overview_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    let by = chart_column(selection)?;
    let groups = selection.groups();
    report::check_samples(&groups, selection.predicate.as_deref()).map_err(Failure::bad)?;
    report::check_samples(std::slice::from_ref(&by), selection.predicate.as_deref())
        .map_err(Failure::bad)?;
    let mut catalog = open(shared)?;
    let query = ReportQuery {
        window: selection.window,
        predicate: selection.predicate.as_deref(),
        all_states: selection.all_states,
    };
    let bucket = bucket_for(selection.window.len_us());
    let (active, timeline) =
        aggregate::active_and_timeline(&mut catalog, &query, &groups, &by, bucket)?;
    if timeline.buckets.is_empty() || active.sampled_us == 0 {
        return Err(nothing(&mut catalog, Samples::NAME, &selection.window));
    }
    let mut buffer = Vec::new();
    output::active(&mut buffer, &active, Format::Json, selection.top)?;
    let top: Value =
        serde_json::from_slice(&buffer).map_err(|e| Failure::from(anyhow::Error::from(e)))?;
    Ok(json_response(&json!({
        "activity": chart(&timeline, selection, &catalog),
        "top": top,
        "problems": problems(&catalog),
    })))
}

/// The one column the chart is split by (`by`, default `wait_class`).
fn chart_column(selection: &Selection) -> Result<String, Failure> {
    let by = selection.by(&["wait_class"]);
    match by.as_slice() {
        [by] => Ok(by.clone()),
        _ => Err(Failure::bad(
            "the activity chart is split by one column (by=wait_class, by=state, by=comm, ...)",
        )),
    }
}

fn activity_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    let by = selection.by(&["wait_class"]);
    let [by] = by.as_slice() else {
        return Err(Failure::bad(
            "the activity chart is split by one column (by=wait_class, by=state, by=comm, ...)",
        ));
    };
    timeline_of(shared, selection, by, selection.all_states)
}

/// One thread's states over the window (every state counts).
fn thread_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    if selection.get("tid").is_none() {
        return Err(Failure::bad("give tid: the thread whose timeline to draw"));
    }
    timeline_of(shared, selection, "state", true)
}

fn groups_of(
    shared: &Shared,
    selection: &Selection,
    groups: Vec<String>,
) -> Result<Response, Failure> {
    report::check_samples(&groups, selection.predicate.as_deref()).map_err(Failure::bad)?;
    let mut catalog = open(shared)?;
    let query = ReportQuery {
        window: selection.window,
        predicate: selection.predicate.as_deref(),
        all_states: selection.all_states,
    };
    let answer = aggregate::active(&mut catalog, &query, &groups)?;
    if answer.sampled_us == 0 {
        return Err(nothing(&mut catalog, Samples::NAME, &selection.window));
    }
    report_json(&catalog, |out| {
        output::active(out, &answer, Format::Json, selection.top)
    })
}

fn top_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    groups_of(shared, selection, selection.by(&report::DEFAULT_GROUPS))
}

fn threads_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    groups_of(
        shared,
        selection,
        ["tid", "tgid", "comm"].map(String::from).to_vec(),
    )
}

fn blockers_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    report::check_samples(&[], selection.predicate.as_deref()).map_err(Failure::bad)?;
    let mut catalog = open(shared)?;
    let top = selection.top.min(50);
    let (chains, any) = blockers_scan::chains(
        &mut catalog,
        &selection.window,
        selection.predicate.as_deref(),
        top,
    )?;
    if !any {
        return Err(nothing(&mut catalog, Samples::NAME, &selection.window));
    }
    report_json(&catalog, |out| output::blockers(out, &chains, Format::Json))
}

fn latency_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    let (kind, table, default, time_column) = match selection.get("table").unwrap_or("syscalls") {
        "syscalls" => (
            LatencyOf::Syscalls,
            Syscalls::NAME,
            vec!["syscall"],
            "enter_ts",
        ),
        "io" => (LatencyOf::Io, Iorq::NAME, vec!["dev", "op"], "start_ts"),
        other => {
            return Err(Failure::bad(format!(
                "table must be syscalls or io, not '{other}'"
            )))
        }
    };
    // The samples' filters (comm, tgid, ...) name columns these tables
    // share; `where` must name the tracked table's columns.
    let groups = selection.by(&default);
    let predicate = selection.predicate.as_deref();
    report::check_latency(kind, &groups, predicate).map_err(Failure::bad)?;
    let mut catalog = open(shared)?;
    let period_us = aggregate::sampling_period(&mut catalog, &selection.window)?;
    let window = &selection.window;
    let answer = match kind {
        LatencyOf::Syscalls => latency::latency::<Syscalls>(
            &mut catalog,
            window,
            &groups,
            predicate,
            time_column,
            period_us,
        )?,
        LatencyOf::Io => latency::latency::<Iorq>(
            &mut catalog,
            window,
            &groups,
            predicate,
            time_column,
            period_us,
        )?,
    };
    if answer.in_window == 0 {
        return Err(nothing(&mut catalog, table, window));
    }
    report_json(&catalog, |out| {
        output::latency(out, &answer, Format::Json, selection.top, false)
    })
}

fn flame_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    report::check_samples(&[], selection.predicate.as_deref()).map_err(Failure::bad)?;
    let mut catalog = open(shared)?;
    let query = ReportQuery {
        window: selection.window,
        predicate: selection.predicate.as_deref(),
        all_states: selection.all_states,
    };
    let kinds = flame::Kinds {
        kernel: true,
        native: true,
        jit: true,
        python: true,
    };
    let mut lines = flame::folded(&mut catalog, &query, kinds)?;
    if lines.is_empty() {
        return Err(nothing(&mut catalog, Samples::NAME, &selection.window));
    }
    lines.truncate(MAX_STACKS);
    let mut text = String::new();
    for (stack, weight) in &lines {
        text.push_str(stack);
        text.push(' ');
        text.push_str(itoa::Buffer::new().format(*weight));
        text.push('\n');
    }
    let svg = flame::svg(&text, &selection.window, &None)?;
    // Its own policy (the page's would stop its script): see flame_policy.
    let policy = HeaderValue::from_str(&super::flame_policy::policy(&svg))
        .map_err(|err| anyhow::anyhow!("flame graph policy: {err}"))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            ),
        ],
        svg,
    )
        .into_response())
}

/// The top stacks panel (`stacks`: through the SQL query layer).
fn stacks_of(shared: &Shared, selection: &Selection) -> Result<Response, Failure> {
    report::check_samples(&[], selection.predicate.as_deref()).map_err(Failure::bad)?;
    super::stacks::kind_of(selection).map_err(Failure::bad)?;
    let doc = super::stacks::answer(&shared.dir, selection, QUERY_TIME)?;
    Ok(json_response(&doc))
}
