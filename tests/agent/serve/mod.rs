//! `taskscope serve` on one ground-truth run: a real headless Chromium,
//! driven over the DevTools protocol by puppeteer-core (tests/web/drive.js),
//! loads the page, reads the chart and the tables, drags a brush, opens a
//! thread's timeline and the flame graph and takes a screenshot of each
//! view (target/serve-screenshots/); then plain HTTP requests check the
//! security rules and the bounds (`security`). `live`: the page follows a
//! running agent.

mod live;
mod security;
mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;
use security::security_checks;

/// A running `taskscope serve`, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `taskscope serve ARGS --listen ADDR:0`; the port from its first line.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(AGENT);
        command
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start taskscope serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the serve line");
        let port = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("serve printed {line:?}; stderr: {err}")
            });
        Server { child, port }
    }

    fn url(&self, target: &str) -> String {
        format!("http://127.0.0.1:{}{target}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request: (status, head, body).
fn http(port: u16, method: &str, target: &str, headers: &[&str]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream
        .write_all(&request(method, target, headers))
        .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("receive");
    response_parts(&response)
}

/// The bytes of a request (the connection closes after the answer).
fn request(method: &str, target: &str, headers: &[&str]) -> Vec<u8> {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    request.into_bytes()
}

/// (status, head, body) of a whole response.
fn response_parts(response: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_string(), body.to_string())
}

fn get(port: u16, target: &str) -> (u16, String, String) {
    http(port, "GET", target, &[])
}

fn get_json(port: u16, target: &str) -> Value {
    let (status, _, body) = get(port, target);
    assert_eq!(status, 200, "GET {target}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {target}: {e}: {body}"))
}

/// puppeteer-core's node_modules: $TASKSCOPE_WEB_DRIVER, or where `./dev.sh
/// setup` installs it (`npm ci` of tests/web/package-lock.json).
fn driver_modules() -> PathBuf {
    let dir = std::env::var_os("TASKSCOPE_WEB_DRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
                });
            cache.join("taskscope/web-driver")
        })
        .join("node_modules");
    assert!(
        dir.join("puppeteer-core").is_dir(),
        "no puppeteer-core under {}: run ./dev.sh setup (npm ci of tests/web/package-lock.json) or set TASKSCOPE_WEB_DRIVER",
        dir.display()
    );
    dir
}

/// Drive the page at `url` in headless Chromium (tests/web/drive.js);
/// what it saw.
fn drive(url: &str, shots: &Path) -> Value {
    let shots = shots.to_str().expect("utf-8 path");
    node("drive.js", &[url, shots, "gt-fsync"])
}

/// Run tests/web/`script` with `args` under node with puppeteer-core; the
/// JSON document it prints.
fn node(script: &str, args: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/web")
        .join(script);
    let out = Command::new("node")
        .arg(&path)
        .args(args)
        .env("NODE_PATH", driver_modules())
        .output()
        .expect("run node (the nodejs package)");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{script} prints JSON: {e}"))
}

/// The rows of a table the page read, as (first column, second column).
fn pairs(rows: &Value) -> Vec<(String, String)> {
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or("").to_string(),
                r[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn stamp(text: &str) -> String {
    // 2026-12-01T02:00:05Z -> 2026-12-01 02:00:05
    text.replace('T', " ").trim_end_matches('Z').to_string()
}

#[test]
fn web_view_on_ground_truth() {
    require_root();
    let (workload, _scratch, out) = {
        let _serial = exclusive();
        sample_workload(&[
            "-F",
            "20",
            "--all",
            "--track",
            "syscalls,io",
            "--duration",
            "8s",
        ])
    };
    let dir = out.to_str().expect("utf-8");
    let server = Server::start(&["--dir", dir, "--listen", "127.0.0.1:0"], &[]);
    let port = server.port;
    let info = get_json(port, "/api/info");
    assert_eq!(info["dir"], dir, "{info}");
    // This machine's own data: its online CPUs, without reading samples.
    assert!(
        info["cpus_complete"] == true && info["cpus_total"].as_i64().unwrap_or(0) >= 1,
        "{info}"
    );
    let newest = info["newest_unix"].as_f64().expect("newest tick") as i64;
    let oldest = info["oldest_unix"].as_f64().expect("oldest") as i64;
    let iso = |secs: i64| {
        let text = Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .expect("date");
        String::from_utf8(text.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    };
    let (from, to) = (iso(oldest - 1), iso(newest + 2));
    let pid = workload.pid();

    // The browser: every state (the sleeper's TIMER sleeps), the workload's
    // process only.
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/serve-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let seen = drive(
        &server.url(&format!("/?from={from}&to={to}&states=all&tgid={pid}")),
        &shots,
    );
    let first = &seen["first"];
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
    let csp = seen["console_errors"]
        .as_array()
        .expect("console")
        .iter()
        .filter(|e| e.as_str().unwrap_or("").contains("Content Security Policy"))
        .count();
    assert_eq!(csp, 0, "the page breaks its own CSP: {seen}");
    assert!(
        first["source"].as_str().unwrap_or("").contains(dir),
        "the page names the data directory: {first}"
    );
    let series: Vec<&str> = first["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for class in ["CPU", "IO", "TIMER"] {
        assert!(
            series.contains(&class),
            "chart series {series:?} lack {class}: {first}"
        );
    }
    // Top groups (wait_class, comm, ...): the spinners on CPU, the fsync
    // thread in IO, the sleeper in TIMER.
    let groups = pairs(&first["groups"]);
    for (class, comm) in [
        ("CPU", "gt-spin"),
        ("IO", "gt-fsync"),
        ("TIMER", "gt-sleeper"),
    ] {
        assert!(
            groups
                .iter()
                .any(|(c, n)| c == class && n.starts_with(comm)),
            "top groups lack {class} {comm}: {groups:?}"
        );
    }
    // The same numbers as `taskscope report` for the window and filter.
    let report = Command::new(AGENT)
        .args([
            "report",
            "--dir",
            dir,
            "--from",
            &stamp(&from),
            "--to",
            &stamp(&to),
            "--where",
            &format!("tgid = {pid}"),
            "--all-states",
            "--format",
            "json",
        ])
        .output()
        .expect("report");
    let report: Value = serde_json::from_slice(&report.stdout).expect("report JSON");
    let top = &report["rows"][0];
    assert_eq!(first["groups"][0][0], top["wait_class"], "{report}");
    assert_eq!(first["groups"][0][1], top["comm"], "{report}");
    assert_eq!(
        first["groups"][0][4].as_str().unwrap_or(""),
        format!("{:.3}", top["avg_active"].as_f64().expect("avg")),
        "page and report disagree: {report}"
    );
    let threads = pairs(&first["threads"]);
    assert!(
        threads
            .iter()
            .any(|(tid, _)| tid == &workload.tid("sleeper").to_string()),
        "top threads lack the sleeper: {threads:?}"
    );

    // The brush: the panels follow the selection, and the URL holds it.
    let brushed = &seen["brushed"];
    let url = brushed["url"].as_str().expect("url");
    assert!(
        url.contains("sel_from=") && url.contains("sel_to="),
        "{url}"
    );
    let (window_before, window_after) = (&first["groups_window"], &brushed["groups_window"]);
    assert_ne!(
        window_before, window_after,
        "the panels did not follow the brush"
    );
    let sel_from = url
        .split("sel_from=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .expect("sel_from")
        .replace("%3A", ":");
    assert!(
        window_after[0]
            .as_str()
            .unwrap_or("")
            .starts_with(&stamp(&sel_from)),
        "panels show {window_after}, the URL {url}"
    );
    assert!(
        seen["reloaded"]["url"]
            .as_str()
            .unwrap_or("")
            .contains("sel_from="),
        "{seen}"
    );
    assert_eq!(
        seen["reloaded"]["groups_window"], *window_after,
        "a reload loses the selection"
    );

    // A thread's timeline and the flame graph open.
    let thread = &seen["thread"];
    assert!(
        thread["tid"].is_string() && thread["cells"].as_u64().unwrap_or(0) > 0,
        "no thread timeline: {thread}"
    );
    assert!(
        thread["url"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("tid={}", workload.tid("fsync"))),
        "{thread}"
    );
    // The fsync thread waits for its disk, and is seen in other states too.
    let states = thread["states"].as_array().expect("states");
    assert!(
        states.iter().any(|s| s == "DISK") && states.len() >= 2,
        "{thread}"
    );
    // Top stacks (through the SQL layer): the spinners' user stack.
    assert_eq!(first["stacks_msg"], "", "{first}");
    let stacks = first["stacks"].as_array().expect("stacks rows");
    assert!(
        stacks
            .iter()
            .any(|row| row.to_string().contains("spin_forever")),
        "no spinner stack in the top stacks panel: {first}"
    );
    let flame = &seen["flame"];
    assert!(
        flame["loaded"].is_string()
            && flame["type"] == "image/svg+xml"
            && flame["width"].as_u64().unwrap_or(0) > 100
            && flame["height"].as_u64().unwrap_or(0) > 100
            && flame["frames"].as_u64().unwrap_or(0) > 10,
        "no flame graph: {flame}"
    );
    // Interactive, as `taskscope flamegraph` draws it: hovering a frame
    // names it, clicking it zooms (the SVG's own script ran, allowed by
    // its policy's hashes; the page's console has no policy violation).
    let clicked = flame["clicked"].as_str().expect("a frame to click");
    assert!(clicked.contains("spin_forever"), "{flame}");
    let function = clicked.split(" (").next().unwrap_or(clicked);
    assert!(
        flame["hovered"].as_str().unwrap_or("").contains(function),
        "hovering {function} does not name it: {flame}"
    );
    assert_eq!(
        flame["zoomed"], true,
        "clicking {function} does not zoom: {flame}"
    );
    for name in [
        "serve-overview",
        "serve-brushed",
        "serve-thread",
        "serve-flame",
        "serve-stacks",
    ] {
        let size = std::fs::metadata(shots.join(format!("{name}.png")))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 2_000, "{name}.png is {size} bytes");
    }

    // Bounds: a wide window gets coarse buckets, never more than 500 points.
    let wide = get_json(port, &format!("/api/activity?since=399d&to={to}"));
    let bucket = wide["bucket_seconds"].as_f64().expect("bucket");
    assert!(
        bucket * 500.0 >= 399.0 * 86_400.0,
        "{bucket} s buckets for 399 days"
    );
    assert!(wide["times"].as_array().expect("times").len() <= 500);
    let narrow = get_json(port, &format!("/api/activity?from={from}&to={to}"));
    assert_eq!(narrow["bucket_seconds"], 1.0, "{narrow}");
    let hour = get_json(port, &format!("/api/activity?since=1h&to={to}&by=state"));
    assert!(
        hour["times"].as_array().expect("times").len() <= 500,
        "{hour}"
    );
    assert!(
        hour["series"]
            .as_array()
            .expect("series")
            .iter()
            .any(|s| s["name"] == "ON_CPU"),
        "{hour}"
    );
    // The first view's one read gives what the two endpoints give.
    let window = format!("from={from}&to={to}&tgid={pid}&states=all");
    let overview = get_json(
        port,
        &format!("/api/overview?{window}&groups=comm,state&top=50"),
    );
    let activity = get_json(port, &format!("/api/activity?{window}"));
    let top = get_json(port, &format!("/api/top?{window}&by=comm,state&top=50"));
    assert_eq!(
        overview["activity"], activity,
        "overview and activity differ"
    );
    assert_eq!(
        overview["top"]["rows"], top["rows"],
        "overview and top differ"
    );
    // The top stacks are what `taskscope sql` answers for the same query.
    let api = get_json(port, &format!("/api/stacks?{window}&kind=user&top=5"));
    let ids =
        |rows: &[Value]| -> Vec<Value> { rows.iter().map(|r| r["stack_id"].clone()).collect() };
    let sql = taskscope(&[
        "sql",
        "--dir",
        dir,
        "--from",
        &stamp(&from),
        "--to",
        &stamp(&to),
        "--format",
        "json",
        &format!(
            "WITH samples AS (SELECT * FROM samples WHERE tgid = {pid}) \
             SELECT stack_id FROM top_stacks(kind := 'user', all_states := true) LIMIT 5"
        ),
    ]);
    assert_success(&sql);
    let sql_rows: Vec<Value> = String::from_utf8_lossy(&sql.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let api_rows = api["stacks"].as_array().expect("stacks");
    assert!(!api_rows.is_empty(), "{api}");
    assert_eq!(ids(api_rows), ids(&sql_rows), "{api}");
    // Every endpoint answers for the window.
    for endpoint in [
        "top",
        "threads",
        "blockers",
        "latency",
        "latency?table=io",
        "stacks",
    ] {
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        get_json(port, &format!("/api/{endpoint}{sep}from={from}&to={to}"));
    }
    security_checks(&server, &format!("from={from}&to={to}"));
}
