//! Query the fleet: two real agents (two host names) ship to a real S3
//! server (s3s-fs), then DuckDB (1.5.5 with the httpfs extension from
//! PyPI, through share/taskscope-fleet.sql) and ClickHouse (chDB, the
//! README's query) read the bucket over S3 and must give the same answer
//! to "top waits by host and container for one hour".

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::ship::{cached_tool, free_port, shipping_agent, BUCKET, KEY, PREFIX, S3, SECRET};
use crate::support::{assert_success, exclusive, query, require_root, scratch, wait_with_limit};

/// The Python with duckdb==1.5.5, duckdb-extension-httpfs and chdb
/// (`./dev.sh test` makes it).
fn fleet_python() -> PathBuf {
    cached_tool(
        "TASKSCOPE_FLEET_PYTHON",
        "fleet-venv/bin/python",
        "./dev.sh test makes it (a venv with duckdb==1.5.5, duckdb-extension-httpfs==1.5.5, chdb)",
    )
}

/// The engines' script: argv = port, hour start, fleet SQL file; prints
/// one JSON object {"duckdb": rows, "chdb": rows}.
const ENGINES: &str = r#"
import glob, json, os, sys
import chdb, duckdb, duckdb_extension_httpfs
port, start, sql_file = sys.argv[1], sys.argv[2], sys.argv[3]
end_sql = f"TIMESTAMP '{start}' + INTERVAL 1 HOUR"
ext = glob.glob(os.path.dirname(duckdb_extension_httpfs.__file__) + '/extensions/*/httpfs.duckdb_extension')[0]
con = duckdb.connect(config={'allow_unsigned_extensions': 'true'})
con.execute(f"LOAD '{ext}'")
con.execute(f"CREATE SECRET (TYPE s3, KEY_ID 'AKIDTEST', SECRET 'SECRETTEST', ENDPOINT '127.0.0.1:{port}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')")
con.execute("SET VARIABLE taskscope_fleet = 's3://fleet/agents'")
con.execute(open(sql_file).read())
cols = "host, container_id, state, syscall, waited_s"
duck = con.sql(f"SELECT {cols} FROM fleet_top_waits(TIMESTAMP '{start}', {end_sql})").fetchall()
hosts = con.sql(f"SELECT host, ticks, files FROM fleet_hosts(TIMESTAMP '{start}', {end_sql})").fetchall()
per_host = con.sql(f"SELECT host, count(*) FROM fleet_samples(TIMESTAMP '{start}', {end_sql}) GROUP BY host ORDER BY host").fetchall()
try:
    con.sql(f"FROM fleet_top_waits(TIMESTAMP '{start}' - INTERVAL 400 DAY, TIMESTAMP '{start}' - INTERVAL 400 DAY + INTERVAL 1 HOUR)").fetchall()
    empty = 'no error'
except duckdb.Error as e:
    empty = str(e).splitlines()[0]
ch_sql = open(sys.argv[4]).read().replace('ENDPOINT', f'http://127.0.0.1:{port}/fleet/agents') \
    .replace('FROM_TS', start).replace('KEY_ID', 'AKIDTEST').replace('SECRET_KEY', 'SECRETTEST')
ch = [r for r in chdb.query(ch_sql, 'JSONCompact').data().splitlines()]
ch = json.loads('\n'.join(ch))['data'] if ch else []
print(json.dumps({'hosts': [[str(v) for v in r] for r in hosts],
                  'samples': [[str(v) for v in r] for r in per_host], 'empty': empty,
                  'duckdb': [[str(v) for v in r] for r in duck],
                  'chdb': [[str(r[0]), str(r[2]), str(r[5]), str(r[6]), str(float(r[8]))] for r in ch]}))
"#;

/// The README's ClickHouse query (the block after `<!-- fleet-clickhouse -->`).
fn clickhouse_query() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let (_, rest) = readme
        .split_once("<!-- fleet-clickhouse -->\n```sql\n")
        .expect("the README's ClickHouse fleet query");
    rest.split_once("```")
        .expect("end of the block")
        .0
        .to_string()
}

/// Spinners in a docker-named cgroup of the v1 name=systemd hierarchy.
struct Container {
    spinners: Vec<Child>,
    dir: PathBuf,
}

impl Container {
    fn start(id: &str, spinners: usize) -> Container {
        let hierarchy = Path::new("/sys/fs/cgroup/systemd");
        assert!(
            hierarchy.join("cgroup.procs").exists(),
            "this test needs the cgroup v1 name=systemd hierarchy (a hybrid host)"
        );
        let dir = hierarchy.join("docker").join(id);
        std::fs::create_dir_all(&dir).expect("make the container's cgroup");
        let mut container = Container {
            spinners: Vec::new(),
            dir,
        };
        for _ in 0..spinners {
            let child = spin();
            std::fs::write(container.dir.join("cgroup.procs"), child.id().to_string())
                .expect("move the spinner into the cgroup");
            container.spinners.push(child);
        }
        container
    }
}

fn spin() -> Child {
    Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start a spinner")
}

impl Drop for Container {
    fn drop(&mut self) {
        for child in &mut self.spinners {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_dir(self.dir.parent().expect("docker/"));
    }
}

/// `taskscope run` as host `host` (its own UTS namespace).
fn agent_as_host(host: &str, agent: &crate::support::AgentRun) -> Child {
    let command = agent.command();
    Command::new("unshare")
        .args([
            "--uts",
            "--",
            "sh",
            "-c",
            "hostname \"$0\" && exec \"$@\"",
            host,
        ])
        .arg(command.get_program())
        .args(command.get_args())
        .envs(command.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare")
}

#[test]
fn duckdb_and_clickhouse_agree_on_top_waits_by_host_and_container() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    let s3 = S3::start(&dir.path().join("s3"), free_port());
    let id = format!("f1ee7{}", "0123456789abcdef".repeat(4))[..64].to_string();
    // Three spinners in a container and one on the host, on two cores:
    // they wait for a CPU (RUNQUEUE) in both.
    let _container = Container::start(&id, 3);
    let mut host_spinner = spin();
    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    let a = agent_as_host(
        "fleet-a",
        &shipping_agent(&out_a, s3.port, SECRET).duration(6),
    );
    let b = agent_as_host(
        "fleet-b",
        &shipping_agent(&out_b, s3.port, SECRET).duration(6),
    );
    assert_success(&wait_with_limit(a, Duration::from_secs(90)));
    assert_success(&wait_with_limit(b, Duration::from_secs(90)));
    let _ = host_spinner.kill();
    let _ = host_spinner.wait();
    assert!(!s3.objects().is_empty(), "nothing shipped");

    // The hour of the first sample.
    let start = query(
        &out_a,
        "SELECT strftime(date_trunc('hour', min(ts)), '%Y-%m-%d %H:%M:%S') AS h FROM 'samples/*/*/*.parquet'",
    )[0]["h"]
        .as_str()
        .expect("an hour")
        .to_string();
    let ch_file = dir.path().join("clickhouse.sql");
    std::fs::write(&ch_file, clickhouse_query()).expect("write the query");
    let sql_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("share/taskscope-fleet.sql");
    let out = Command::new(fleet_python())
        .arg("-c")
        .arg(ENGINES)
        .arg(s3.port.to_string())
        .arg(&start)
        .arg(&sql_file)
        .arg(&ch_file)
        .output()
        .expect("run the engines");
    assert!(
        out.status.success(),
        "the engines failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON from the engines");
    let (duck, ch) = (&answer["duckdb"], &answer["chdb"]);
    assert_eq!(duck, ch, "DuckDB and ClickHouse disagree");
    let rows = duck.as_array().expect("rows");
    let has = |host: &str, container: &str| {
        rows.iter()
            .any(|r| r[0] == host && r[1] == container && r[2] == "RUNQUEUE")
    };
    for host in ["fleet-a", "fleet-b"] {
        assert!(
            has(host, &id),
            "no RUNQUEUE waits of the container on {host}: {rows:?}"
        );
        assert!(
            has(host, ""),
            "no RUNQUEUE waits of host processes on {host}: {rows:?}"
        );
    }
    // The window's macros: every host's ticks and rows of that hour, the
    // same rows as its own files; a window with no object says so.
    for (host, out) in [("fleet-a", &out_a), ("fleet-b", &out_b)] {
        let local = query(
            out,
            &format!(
                "SELECT count(*) AS n FROM 'samples/*/*/*.parquet' \
                 WHERE ts >= TIMESTAMP '{start}' AND ts < TIMESTAMP '{start}' + INTERVAL 1 HOUR"
            ),
        )[0]["n"]
            .as_u64()
            .expect("a count");
        let row = |key: &str| {
            answer[key]
                .as_array()
                .expect("rows")
                .iter()
                .find(|r| r[0] == host)
                .cloned()
                .unwrap_or_else(|| panic!("{host} missing from {key}: {answer}"))
        };
        assert_eq!(row("samples")[1], local.to_string(), "{host}'s rows");
        let ticks: u64 = row("hosts")[1].as_str().expect("ticks").parse().expect("n");
        assert!(ticks >= 3, "{host}: {ticks} ticks in fleet_hosts");
    }
    let empty = answer["empty"].as_str().expect("the empty window's answer");
    assert!(
        empty.contains("No files found that match the pattern")
            && empty.contains("/samples/date=")
            && empty.contains("/hour=")
            && !empty.contains("hour=*"),
        "a window without objects: {empty}"
    );
    let _ = (KEY, BUCKET, PREFIX);
}
