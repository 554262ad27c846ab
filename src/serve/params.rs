//! The query string of the API: window, filters and the per-panel choices,
//! checked into a [`Selection`] before any file is read.
//!
//! The decision a reader must know: the filters (`comm`, `tgid`,
//! `container`, `where`) become one `--where` predicate, so every panel
//! applies them through report's own filter, and a bad one is the same
//! one-line error `report --where` gives (here a 400). Unknown parameters
//! are refused too: a misspelt filter must not silently show everything.

use std::collections::BTreeMap;

use crate::store::catalog::Window;
use crate::store::timefmt;

/// Parameters any endpoint accepts (`token`: see `guard`).
const KNOWN: &[&str] = &[
    "from",
    "to",
    "since",
    "comm",
    "tgid",
    "container",
    "where",
    "by",
    "groups",
    "top",
    "tid",
    "table",
    "states",
    "kind",
    "token",
];

/// Longest window a query may span (the page degrades to coarser buckets
/// up to it).
pub const MAX_WINDOW_US: i64 = 400 * 86_400 * 1_000_000;

/// Groups, threads or histograms returned at most (`top`).
pub const MAX_TOP: usize = 1_000;

/// A checked request: window, the predicate made of the filters, and the
/// raw map for the endpoint's own parameters.
#[derive(Debug, Clone)]
pub struct Selection {
    pub window: Window,
    /// Whether the window ends at "now" (no `to`): the page follows it.
    pub live: bool,
    pub predicate: Option<String>,
    pub all_states: bool,
    pub top: usize,
    params: BTreeMap<String, String>,
}

impl Selection {
    /// The request's `params` at `now_us`; an error is one line for a 400.
    pub fn parse(params: BTreeMap<String, String>, now_us: i64) -> Result<Selection, String> {
        if let Some(name) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!(
                "unknown parameter '{name}' (known: {})",
                KNOWN.join(", ")
            ));
        }
        let get = |name: &str| params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let to = get("to").map(|t| timestamp("to", t)).transpose()?;
        let since = get("since").map(duration_us).transpose()?;
        let from = get("from").map(|t| timestamp("from", t)).transpose()?;
        let to_us = to.unwrap_or(now_us);
        let from_us = match (from, since) {
            (Some(_), Some(_)) => return Err("give from or since, not both".into()),
            (Some(from), None) => from,
            (None, since) => to_us.saturating_sub(since.unwrap_or(3_600_000_000)),
        };
        if to_us <= from_us {
            return Err("the window ends before it starts (to must be after from)".into());
        }
        if to_us - from_us > MAX_WINDOW_US {
            return Err("the window is longer than 400 days".into());
        }
        let mut parts = Vec::new();
        if let Some(comm) = get("comm") {
            parts.push(format!("comm = {}", quoted(comm)));
        }
        if let Some(tgid) = get("tgid") {
            let tgid: u32 = tgid
                .parse()
                .map_err(|_| format!("tgid must be a process id, not '{tgid}'"))?;
            parts.push(format!("tgid = {tgid}"));
        }
        if let Some(container) = get("container") {
            let q = quoted(container);
            let prefix = quoted(&format!("{container}%"));
            let inside = quoted(&format!("%{container}%"));
            parts.push(format!(
                "(container_name = {q} OR container_id LIKE {prefix} OR cgroup LIKE {inside})"
            ));
        }
        if let Some(tid) = get("tid") {
            let tid: u32 = tid
                .parse()
                .map_err(|_| format!("tid must be a thread id, not '{tid}'"))?;
            parts.push(format!("tid = {tid}"));
        }
        if let Some(predicate) = get("where") {
            if predicate.contains('\n') {
                return Err("where must be one line".into());
            }
            parts.push(format!("({predicate})"));
        }
        let all_states = match get("states") {
            None | Some("active") => false,
            Some("all") => true,
            Some(other) => return Err(format!("states must be active or all, not '{other}'")),
        };
        let top = match get("top") {
            None => 20,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_TOP).contains(&n) => n,
                _ => return Err(format!("top must be 1 to {MAX_TOP}, not '{text}'")),
            },
        };
        Ok(Selection {
            window: Window { from_us, to_us },
            live: to.is_none(),
            predicate: (!parts.is_empty()).then(|| parts.join(" AND ")),
            all_states,
            top,
            params,
        })
    }

    /// An endpoint's own parameter, trimmed; None when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `by` as a list of column names (report's `--by`), or `default`.
    pub fn by(&self, default: &[&str]) -> Vec<String> {
        let given: Vec<String> = self
            .get("by")
            .map(|by| by.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        crate::report::chosen(&given, default)
    }
}

impl Selection {
    /// `groups` (the overview's top groups: report's `--by`), or report's
    /// default grouping.
    pub fn groups(&self) -> Vec<String> {
        let given: Vec<String> = self
            .get("groups")
            .map(|by| by.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        crate::report::chosen(&given, &crate::report::DEFAULT_GROUPS)
    }
}

/// A SQL text literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `2026-12-01 02:00:00`, `2026-12-01T02:00:00Z` (UTC, fraction optional)
/// or Unix seconds.
fn timestamp(name: &str, text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.parse::<i64>() {
        return secs
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("{name}: {text} seconds is out of range"));
    }
    let normal = text.trim_end_matches('Z').replacen('T', " ", 1);
    let normal = if normal.len() == 16 {
        format!("{normal}:00")
    } else {
        normal
    };
    timefmt::parse_timestamp_micros(&normal).ok_or_else(|| {
        format!("{name} must be a UTC time like 2026-12-01T02:00:00Z or Unix seconds, not '{text}'")
    })
}

/// `90s`, `15m`, `1h`, `2d` or plain seconds, in microseconds.
fn duration_us(text: &str) -> Result<i64, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    match number.parse::<i64>() {
        Ok(n) if n > 0 && scale > 0 => n
            .checked_mul(scale * 1_000_000)
            .ok_or_else(|| format!("since {text} is out of range")),
        _ => Err(format!(
            "since must be a duration like 90s, 15m, 1h or 2d, not '{text}'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Selection, String> {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Selection::parse(params, 1_800_000_000_000_000)
    }

    #[test]
    fn windows_and_filters() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.window.len_us(), 3_600_000_000);
        assert!(s.live && s.predicate.is_none() && s.top == 20);
        let s = parse(&[
            ("from", "2026-12-01T02:00:00Z"),
            ("to", "2026-12-01 02:30"),
            ("comm", "it's"),
            ("tgid", "42"),
            ("where", "state = 'DISK'"),
        ])
        .unwrap();
        assert_eq!(s.window.len_us(), 1_800_000_000);
        assert!(!s.live);
        assert_eq!(
            s.predicate.as_deref(),
            Some("comm = 'it''s' AND tgid = 42 AND (state = 'DISK')")
        );
        assert_eq!(
            parse(&[("since", "15m")]).unwrap().window.len_us(),
            900_000_000
        );
    }

    #[test]
    fn bad_parameters_are_one_line() {
        for pairs in [
            vec![("form", "1")],
            vec![("from", "yesterday")],
            vec![("since", "1x")],
            vec![("since", "-5")],
            vec![("from", "2000"), ("to", "1000")],
            vec![("tgid", "abc")],
            vec![("top", "0")],
            vec![("states", "some")],
            vec![("from", "0"), ("to", "99999999999")],
            vec![("where", "a\nb")],
        ] {
            let err = parse(&pairs).unwrap_err();
            assert!(!err.contains('\n') && !err.is_empty(), "{pairs:?}: {err}");
        }
    }
}
