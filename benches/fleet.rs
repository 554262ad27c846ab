//! Fleet queries at scale: N hosts × 24 h of 1 Hz data in the bucket
//! layout `--ship-to` makes, on a real S3 server (s3s-fs on loopback),
//! queried for "top waits by host and container" over one hour and one
//! day with DuckDB (share/taskscope-fleet.sql, httpfs) and ClickHouse
//! (chDB, the README's query). `./dev.sh bench --bench fleet`
//! (`FLEET_HOSTS=100,1000`, `FLEET_ROWS=12` rows per tick).
//!
//! How the data is made, and what that means: `TEMPLATES` host-days are
//! written by the real writer (`output::Writer`, Parquet, hourly files)
//! from synthetic ticks shaped like a busy server's (a dozen active
//! threads per tick: on CPU, waiting for a CPU, in uninterruptible
//! sleep, in five syscalls; no container identity, which the writer
//! resolves from the live system and synthetic threads do not have).
//! The N hosts' objects are hard links of those files, named and
//! partitioned as each host's (`host=h0042/h0042-<stamp>.parquet`), put
//! straight into the server's data directory (s3s-fs stores an object as
//! a plain file). So the engines list, fetch and decode N distinct objects
//! per hour over HTTP exactly as for N real hosts; only the rows repeat
//! (the `host` column inside says the template's name, the partition —
//! which the queries group by — the host's).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use taskscope::agent::decode::decode;
use taskscope::bpf::types::{ts_thread, ts_thread_flags};
use taskscope::bpf::ThreadEntry;
use taskscope::output::sample::Sample;
use taskscope::output::tick::{Tick, TickStats};
use taskscope::output::{Formats, OutputDir, Writer, WriterConfig};

/// Distinct host-days written by the writer.
const TEMPLATES: usize = 4;
/// 2026-11-30 00:00:00 UTC.
const DAY_START_US: i64 = 1_795_996_800_000_000;
const KEY: &str = "AKIDTEST";
/// Longest a query may take before the table says "> LIMIT_SECS"
/// (`FLEET_LIMIT_SECS`).
static LIMIT_SECS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    std::env::var("FLEET_LIMIT_SECS")
        .ok()
        .map_or(300, |n| n.parse().expect("FLEET_LIMIT_SECS: seconds"))
});
const SECRET: &str = "SECRETTEST";

/// One tick's samples: `rows` active threads, states by a fixed mix.
fn tick_samples(tick: u64, rows: u32, template: u32) -> Vec<Sample> {
    let now = 1_000_000_000_000 + tick * 1_000_000_000;
    (0..rows)
        .map(|i| {
            let n = (tick as u32)
                .wrapping_mul(31)
                .wrapping_add(i * 7 + template)
                % 100;
            // 45% on CPU, 25% runnable, 30% uninterruptible.
            let (sched_state, on_cpu) = match n {
                0..=44 => (0, true),
                45..=69 => (0, false),
                _ => (2, false),
            };
            let mut entry = ts_thread {
                tid: 2_000 + i + template * 100,
                tgid: 2_000 + i / 4 * 4 + template * 100,
                flags: ts_thread_flags::TS_F_SWITCH_KNOWN.0
                    | ts_thread_flags::TS_F_IN_SYSCALL.0
                    | ts_thread_flags::TS_F_ENTER_KNOWN.0,
                sched_state,
                switch_out_ns: now - 1_000_000 * u64::from(n),
                switch_in_ns: now - 2_000_000_000,
                syscall_nr: [0, 1, 17, 74, 202][(n % 5) as usize],
                syscall_enter_ns: now - 1_000_000 * u64::from(n) - 20_000,
                cpu: i % 2,
                cgroup_id: 1,
                exe_id: u64::from(i / 4) + 1,
                ..Default::default()
            };
            entry.comm[..6].copy_from_slice(&b"worker".map(|b| b as i8));
            if on_cpu {
                entry.flags |= ts_thread_flags::TS_F_ON_CPU.0;
            }
            decode(
                &ThreadEntry {
                    thread: entry,
                    ..Default::default()
                },
                now,
            )
        })
        .collect()
}

/// Write one host-day with the real writer; returns its output directory.
fn write_template(dir: &Path, template: u32, rows: u32) -> PathBuf {
    let out = dir.join(format!("template-{template}"));
    let plan = taskscope::output::dir::check(&out).expect("output dir");
    let mut config = WriterConfig::csv(
        &format!("tmpl{template}"),
        Duration::from_secs(3_600),
        Duration::from_secs(600),
    );
    config.formats = Formats {
        csv: false,
        parquet: true,
    };
    let mut writer =
        Writer::new(OutputDir::create(&plan).expect("create"), config).expect("writer");
    for second in 0..86_400u64 {
        writer.write_tick(&Tick {
            ts_us: DAY_START_US + second as i64 * 1_000_000,
            mono_ns: 1_000_000_000_000 + second * 1_000_000_000,
            weight_us: 1_000_000,
            samples: tick_samples(second, rows, template),
            completions: Vec::new(),
            stacks: Vec::new(),
            stats: TickStats::default(),
        });
    }
    writer.close();
    out
}

/// Hard-link the templates' files into the bucket as `hosts` hosts.
fn lay_out(bucket: &Path, templates: &[PathBuf], hosts: usize) -> u64 {
    let mut bytes = 0;
    for table in ["samples", "ticks"] {
        for (t, template) in templates.iter().enumerate() {
            for file in common::files_below(&template.join(table)) {
                let relative = file.strip_prefix(template.join(table)).expect("below");
                let name = relative
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                let partition = relative.parent().expect("date/hour");
                let stamp = name.trim_start_matches(&format!("tmpl{t}-"));
                for host in (t..hosts).step_by(templates.len()) {
                    let host = format!("h{host:04}");
                    let dir = bucket
                        .join(table)
                        .join(partition)
                        .join(format!("host={host}"));
                    std::fs::create_dir_all(&dir).expect("partition");
                    let target = dir.join(format!("{host}-{stamp}"));
                    if !target.exists() {
                        std::fs::hard_link(&file, &target).expect("link");
                    }
                    if table == "samples" {
                        bytes += std::fs::metadata(&file).expect("size").len();
                    }
                }
            }
        }
    }
    bytes
}

fn fleet_python() -> PathBuf {
    std::env::var_os("TASKSCOPE_FLEET_PYTHON").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/taskscope/fleet-venv/bin/python")
        },
        PathBuf::from,
    )
}

/// Times one engine's query; argv: engine, endpoint, prefix, from, to, files.
const QUERY: &str = r#"
import glob, os, sys, time
engine, port, prefix, start, end, sql_file, ch_file = sys.argv[1:8]
if engine == 'duckdb':
    import duckdb, duckdb_extension_httpfs
    ext = glob.glob(os.path.dirname(duckdb_extension_httpfs.__file__) + '/extensions/*/httpfs.duckdb_extension')[0]
    con = duckdb.connect(config={'allow_unsigned_extensions': 'true'})
    con.execute("SET enable_progress_bar = false")
    con.execute(f"LOAD '{ext}'")
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'AKIDTEST', SECRET 'SECRETTEST', ENDPOINT '127.0.0.1:{port}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')")
    con.execute(f"SET VARIABLE taskscope_fleet = 's3://fleet/{prefix}'")
    # Loading the script is timed too: it reads nothing (table macros, no
    # views), and the clock would hide it if it did.
    t = time.monotonic()
    con.execute(open(sql_file).read())
    rows = con.sql(f"SELECT * FROM fleet_top_waits(TIMESTAMP '{start}', TIMESTAMP '{end}')").fetchall()
else:
    import chdb
    sql = open(ch_file).read().replace('ENDPOINT', f'http://127.0.0.1:{port}/fleet/{prefix}') \
        .replace('KEY_ID', 'AKIDTEST').replace('SECRET_KEY', 'SECRETTEST')
    # The README's query is for one hour; a day drops the hour test.
    sql = sql.replace('FROM_TS', start)
    if end.endswith('00:00:00') and end != start:
        sql = sql.replace(" AND hour = toHour(toDateTime('" + start + "', 'UTC'))", '') \
                 .replace("+ INTERVAL 1 HOUR", "+ INTERVAL 1 DAY") \
                 .replace("'date=%F/hour=%H'", "'date=%F/hour=*'")
        assert "hour=*" in sql, "the README's ClickHouse query names its hour's objects"
    t = time.monotonic()
    rows = chdb.query(sql, 'CSV').data().splitlines()
print(f"{time.monotonic() - t:.2f} {len(rows)}")
"#;

fn clickhouse_query(dir: &Path) -> PathBuf {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let (_, rest) = readme
        .split_once("<!-- fleet-clickhouse -->\n```sql\n")
        .expect("the README's ClickHouse fleet query");
    let path = dir.join("clickhouse.sql");
    std::fs::write(&path, rest.split_once("```").expect("end").0).expect("write");
    path
}

fn s3s_fs(root: &Path, port: u16) -> Child {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let binary = std::env::var_os("TASKSCOPE_S3S_FS").map_or_else(
        || PathBuf::from(home).join(".cache/taskscope/s3s-fs-0.14.1/bin/s3s-fs"),
        PathBuf::from,
    );
    let child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY, "--secret-key", SECRET])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs (./dev.sh bench installs it)");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "s3s-fs did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn main() {
    let hosts: Vec<usize> = std::env::var("FLEET_HOSTS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("FLEET_HOSTS: numbers"))
        .collect();
    let rows: u32 = std::env::var("FLEET_ROWS")
        .ok()
        .map_or(12, |n| n.parse().expect("FLEET_ROWS: a number"));
    let dir = common::scratch_dir("fleet");
    let started = Instant::now();
    let templates: Vec<PathBuf> = (0..TEMPLATES as u32)
        .map(|t| write_template(&dir, t, rows))
        .collect();
    let written = started.elapsed();
    let template_bytes: u64 = templates
        .iter()
        .flat_map(|t| common::files_below(&t.join("samples")))
        .map(|f| std::fs::metadata(f).expect("size").len())
        .sum();
    println!(
        "writer: {TEMPLATES} host-days of {rows} rows/s ({} rows each) in {:.1} s; samples Parquet {:.1} MB per host-day",
        86_400 * rows,
        written.as_secs_f64(),
        template_bytes as f64 / TEMPLATES as f64 / 1e6
    );
    let ch = clickhouse_query(&dir);
    let sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("share/taskscope-fleet.sql");
    let root = dir.join("s3");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    println!("| hosts | window | objects read | samples MB | DuckDB s | chDB s | rows |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for &n in &hosts {
        let prefix = format!("bench{n}");
        let bytes = lay_out(&root.join("fleet").join(&prefix), &templates, n);
        let mut server = s3s_fs(&root, port);
        for (window, start, end, objects) in [
            ("1 hour", "2026-11-30 12:00:00", "2026-11-30 13:00:00", n),
            (
                "1 day",
                "2026-11-30 00:00:00",
                "2026-12-01 00:00:00",
                n * 24,
            ),
        ] {
            let mut times = Vec::new();
            let mut count = String::new();
            for engine in ["duckdb", "chdb"] {
                let out = Command::new("timeout")
                    .arg(LIMIT_SECS.to_string())
                    .arg(fleet_python())
                    .args(["-c", QUERY, engine, &port.to_string(), &prefix, start, end])
                    .arg(&sql)
                    .arg(&ch)
                    .output()
                    .expect("run the engine");
                if out.status.code() == Some(124) {
                    times.push(format!("> {}", *LIMIT_SECS));
                    continue;
                }
                assert!(
                    out.status.success(),
                    "{engine} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                let last = text.lines().last().unwrap_or_default().to_string();
                let mut parts = last.split_whitespace();
                times.push(parts.next().unwrap_or("?").to_string());
                count = parts.next().unwrap_or("?").to_string();
            }
            let mb = if window == "1 hour" {
                bytes as f64 / 24.0 / 1e6
            } else {
                bytes as f64 / 1e6
            };
            println!(
                "| {n} | {window} | {objects} | {mb:.0} | {} | {} | {count} |",
                times[0], times[1]
            );
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}
