//! The page follows a running agent (issue 16): an agent flushing every
//! 2 s, a real headless Chromium on the page without an end time
//! (tests/web/follow.js), and the requests it makes counted from the
//! browser's own network events.

use std::time::Duration;

use serde_json::Value;

use super::{get, get_json, node, Server};
use crate::support::*;

/// Seconds the page may take to draw a newer flushed tick while the agent
/// flushes every 2 s and the page polls every 1 s.
const FOLLOW_WITHIN: &str = "5";

fn data_version(port: u16) -> String {
    let answer = get_json(port, "/api/changes");
    assert!(answer["entries"].as_u64().unwrap_or(0) > 0, "{answer}");
    answer["version"].as_str().expect("version").to_string()
}

/// Requests of `path` in a counted map of follow.js (0 when absent).
fn count(requests: &Value, path: &str) -> u64 {
    requests[path].as_u64().unwrap_or(0)
}

/// While the agent writes, the API and the page follow the present (the
/// period being written up to its newest flushed tick) at the agent's
/// flush interval; once it stops, the page asks for the data version
/// every second and reads nothing else.
#[test]
fn live_page_follows_the_agents_flushes() {
    require_root();
    let _serial = exclusive();
    let _workload = Workload::start();
    let scratch = scratch();
    let out = scratch.path().join("out");
    let mut agent = AgentRun::new()
        .args(["-F", "10", "--flush-interval", "2s"])
        .output(&out)
        .duration("120s")
        .spawn();
    wait_for_first_tick(&out, Duration::from_secs(20));
    let server = Server::start(
        &[
            "--dir",
            out.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let port = server.port;
    // The API: each flush shows a newer tick, and changes the data version.
    let newest_of = |answer: &Value| answer["in_progress_until"].as_str().map(str::to_string);
    let mut seen = Vec::new();
    let mut versions = vec![data_version(port)];
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        let answer = get_json(port, "/api/activity?since=5m");
        assert_eq!(answer["live"], true, "{answer}");
        assert!(
            !answer["times"].as_array().expect("times").is_empty(),
            "{answer}"
        );
        seen.push(newest_of(&answer).unwrap_or_else(|| panic!("not read live: {answer}")));
        versions.push(data_version(port));
    }
    // The page, without a reload: a newer tick drawn within seconds, again
    // and again.
    let page = node(
        "follow.js",
        &["follow", &server.url("/?since=5m"), "4", FOLLOW_WITHIN],
    );
    send_signal(&agent, nix::sys::signal::Signal::SIGTERM);
    let _ = agent.wait();
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "the newest tick read did not advance: {seen:?}"
    );
    assert!(
        versions.windows(2).all(|pair| pair[0] != pair[1]),
        "the data version did not change with the flushes: {versions:?}"
    );
    assert_eq!(page["page_errors"], serde_json::json!([]), "{page}");
    assert!(
        page["first"]["status"]
            .as_str()
            .unwrap_or("")
            .starts_with("live: follows the agent's flushes"),
        "{page}"
    );
    let steps = page["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 4, "a step timed out: {page}");
    let mut newest = page["first"]["newest"].as_str().expect("a tick drawn");
    for step in steps {
        assert!(step["timeout"].is_null(), "{page}");
        let drawn = step["newest"].as_str().expect("newest");
        assert!(drawn > newest, "{page}");
        assert!(count(&step["requests"], "/api/overview") >= 1, "{page}");
        newest = drawn;
    }
    // The header's span ("data … to … UTC") follows the flushes too.
    let last_span = steps[steps.len() - 1]["span"].as_str().unwrap_or("");
    assert!(
        last_span.contains(" to ") && Some(last_span) != page["first"]["span"].as_str(),
        "{page}"
    );
    let times: Vec<u64> = steps.iter().filter_map(|s| s["ms"].as_u64()).collect();
    eprintln!("the page drew a newer flushed tick after {times:?} ms");

    // The agent stopped (its last period published): nothing changes.
    let quiet = data_version(port);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(data_version(port), quiet, "nothing was written");
    let page = node("follow.js", &["quiet", &server.url("/?since=5m"), "5"]);
    assert_eq!(page["page_errors"], serde_json::json!([]), "{page}");
    let requests = &page["requests"];
    assert!(count(requests, "/api/changes") >= 3, "{page}");
    let others: Vec<&String> = requests
        .as_object()
        .expect("requests")
        .keys()
        .filter(|path| *path != "/api/changes")
        .collect();
    assert!(
        others.is_empty(),
        "nothing changed, yet the page read {others:?}: {page}"
    );
    assert_eq!(page["first"]["draws"], page["later"]["draws"], "{page}");
    assert!(
        page["later"]["status"]
            .as_str()
            .unwrap_or("")
            .starts_with("live"),
        "{page}"
    );

    // A fixed window is not followed: no polls.
    let info = get_json(port, "/api/info");
    let to = info["newest_unix"].as_f64().expect("newest tick") as i64 + 1;
    let fixed = server.url(&format!("/?from={}&to={to}", to - 60));
    let page = node("follow.js", &["quiet", &fixed, "3"]);
    assert_eq!(page["page_errors"], serde_json::json!([]), "{page}");
    assert_eq!(count(&page["requests"], "/api/changes"), 0, "{page}");
    assert_eq!(page["later"]["status"], "", "{page}");
    // The endpoint takes no parameters.
    let (status, _, body) = get(port, "/api/changes?since=5m");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body.trim_end().lines().count(), 1, "{body:?}");
}
