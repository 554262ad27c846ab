//! The activity chart's shape: how wide its buckets are for a window
//! (at most [`MAX_POINTS`] points, round steps), and a timeline as the
//! page's columns (at most [`MAX_SERIES`] series, the rest as `other`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::api::{problems, stamp};
use super::params::Selection;
use crate::report::aggregate::Timeline;
use crate::store::catalog::Catalog;

/// Points of the activity chart at most: a wider window gets wider buckets.
pub const MAX_POINTS: i64 = 500;
/// Series of the activity chart at most; the rest is summed as `other`.
const MAX_SERIES: usize = 12;

/// The bucket width giving at most [`MAX_POINTS`] points over `len_us`: a
/// round step (whole seconds, minutes, hours, days).
pub fn bucket_for(len_us: i64) -> Duration {
    const STEPS: [i64; 17] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200,
    ];
    let secs = (len_us.max(1) + 999_999) / 1_000_000;
    let step = STEPS
        .iter()
        .copied()
        .find(|step| ceil_div(secs, *step) < MAX_POINTS)
        .unwrap_or_else(|| 86_400 * (ceil_div(secs, 86_400) / (MAX_POINTS - 1) + 1));
    Duration::from_secs(step as u64)
}

/// `a / b` rounded up, for positive numbers.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// A timeline as the chart's columns: bucket starts (Unix seconds), one
/// series per value (largest first, beyond [`MAX_SERIES`] summed into
/// `other`), each point average threads (null where nothing was sampled).
pub fn chart(timeline: &Timeline, selection: &Selection, catalog: &Catalog) -> Value {
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, values) in timeline.buckets.values() {
        for (value, weight) in values {
            *totals.entry(value.as_str()).or_default() += weight;
        }
    }
    let mut names: Vec<(&str, i64)> = totals.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let other = names.len() > MAX_SERIES;
    let kept: Vec<&str> = names
        .iter()
        .take(if other { MAX_SERIES - 1 } else { MAX_SERIES })
        .map(|(n, _)| *n)
        .collect();
    let times: Vec<f64> = timeline.buckets.keys().map(|&t| t as f64 / 1e6).collect();
    let sampled: Vec<f64> = timeline
        .buckets
        .values()
        .map(|(s, _)| *s as f64 / 1e6)
        .collect();
    let point = |sampled: i64, weight: i64| {
        if sampled == 0 {
            Value::Null
        } else {
            json!(weight as f64 / sampled as f64)
        }
    };
    let mut series: Vec<Value> = kept
        .iter()
        .map(|name| {
            let values: Vec<Value> = timeline
                .buckets
                .values()
                .map(|(s, v)| point(*s, v.get(*name).copied().unwrap_or(0)))
                .collect();
            json!({"name": name, "values": values})
        })
        .collect();
    if other {
        let values: Vec<Value> = timeline
            .buckets
            .values()
            .map(|(s, v)| {
                let rest = v
                    .iter()
                    .filter(|(k, _)| !kept.contains(&k.as_str()))
                    .map(|(_, w)| w)
                    .sum();
                point(*s, rest)
            })
            .collect();
        series.push(json!({"name": "other", "values": values}));
    }
    json!({
        "from": stamp(timeline.window.from_us),
        "to": stamp(timeline.window.to_us),
        "from_unix": timeline.window.from_us as f64 / 1e6,
        "to_unix": timeline.window.to_us as f64 / 1e6,
        "live": selection.live,
        "by": timeline.by,
        "bucket_seconds": timeline.bucket.as_secs_f64(),
        "states": if timeline.all_states { "all" } else { "active" },
        "times": times,
        "sampled_seconds": sampled,
        "series": series,
        "avg_not_counted": timeline.other_us as f64 / timeline.buckets.values().map(|(s, _)| s).sum::<i64>().max(1) as f64,
        "in_progress_until": timeline.live_until.map(stamp),
        "problems": problems(catalog),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_the_points() {
        for secs in [1, 60, 499, 500, 3_600, 86_400, 7 * 86_400, 400 * 86_400] {
            let width = bucket_for(secs * 1_000_000).as_secs() as i64;
            let points = ceil_div(secs, width) + 1;
            assert!(
                points <= MAX_POINTS,
                "{secs} s in {width} s buckets: {points} points"
            );
        }
        assert_eq!(bucket_for(3_600_000_000).as_secs(), 10);
        assert_eq!(bucket_for(60_000_000).as_secs(), 1);
    }
}
