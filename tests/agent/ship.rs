//! `run --ship-to`: the real agent ships its published files to a real S3
//! server process on loopback (s3s-fs 0.14.1, built from crates.io by
//! `./dev.sh test`), which stores each object as a plain file under its
//! data directory, so the tests compare objects with the local files byte
//! for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    assert_success, exclusive, query_number, require_root, scratch, wait_for_first_tick,
    wait_with_limit, AgentRun,
};

pub const KEY: &str = "AKIDTEST";
pub const SECRET: &str = "SECRETTEST";
pub const BUCKET: &str = "fleet";
pub const PREFIX: &str = "agents";

/// A tool `./dev.sh test` installs under ~/.cache/taskscope: `$env` when
/// set, else `relative` there; a missing one fails with `how` it is made.
pub fn cached_tool(env: &str, relative: &str, how: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/taskscope").join(relative)
        },
        PathBuf::from,
    );
    assert!(path.is_file(), "{} is missing: {how}", path.display());
    path
}

/// The s3s-fs binary: $TASKSCOPE_S3S_FS, or where `./dev.sh test` installs it.
fn s3s_fs() -> PathBuf {
    cached_tool(
        "TASKSCOPE_S3S_FS",
        "s3s-fs-0.14.1/bin/s3s-fs",
        "the S3 server of these tests is installed by ./dev.sh test (cargo install s3s-fs --version 0.14.1 --features binary --locked)",
    )
}

/// A port nobody listens on (yet).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running s3s-fs on 127.0.0.1, killed when dropped.
pub struct S3 {
    child: Child,
    pub root: PathBuf,
    pub port: u16,
}

impl S3 {
    /// Start the server on `port` over the data directory `root` (with
    /// the bucket made if missing).
    pub fn start(root: &Path, port: u16) -> S3 {
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket dir");
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", KEY, "--secret-key", SECRET])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "s3s-fs did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        S3 {
            child,
            root: root.to_path_buf(),
            port,
        }
    }

    /// Every object of the bucket: key → bytes (s3s-fs keeps its own
    /// files, under names starting with '.', beside them).
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        objects_under(&self.root.join(BUCKET))
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn objects_under(bucket: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for relative in crate::support::files_under(bucket) {
        let hidden = relative
            .iter()
            .any(|part| part.to_string_lossy().starts_with('.'));
        if !hidden {
            let bytes = std::fs::read(bucket.join(&relative)).expect("read object");
            out.insert(relative.to_string_lossy().into_owned(), bytes);
        }
    }
    out
}

/// The agent, shipping Parquet every 2 s to the server on `port`.
pub fn shipping_agent(out: &Path, port: u16, secret: &str) -> AgentRun {
    AgentRun::new()
        .output(out)
        .args([
            "--format",
            "parquet",
            "--test-rotate-secs",
            "2",
            "--stacks",
            "none",
        ])
        .args(["--ship-to", &format!("s3://{BUCKET}/{PREFIX}")])
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
}

/// The host in a published file's name.
pub fn host_of(name: &str) -> String {
    let base = name
        .trim_end_matches(".parquet")
        .trim_end_matches(".csv.zst");
    let base = match base.rsplit_once('-') {
        Some((rest, n)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => base,
    };
    base[..base.len() - "-20261130T120000Z".len()].to_string()
}

/// Published data files of `out`: relative path → bytes.
pub fn published(out: &Path) -> BTreeMap<String, Vec<u8>> {
    crate::support::files_under(out)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.starts_with('.') && (p.ends_with(".parquet") || p.ends_with(".csv.zst")))
        .map(|p| {
            let bytes = std::fs::read(out.join(&p)).expect("read file");
            (p, bytes)
        })
        .collect()
}

/// The object key of a published file.
pub fn key_of(relative: &str) -> String {
    let (dir, name) = relative.rsplit_once('/').expect("table/date/hour/name");
    format!("{PREFIX}/{dir}/host={}/{name}", host_of(name))
}

/// The files the ledger lists, in its order.
fn ledger(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join(".shipped")).expect("the .shipped ledger");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("# taskscope shipped v1 s3://{BUCKET}/{PREFIX}").as_str())
    );
    lines
        .map(|l| l.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

/// Every published file of `out` is an object with the same bytes, listed
/// once in the ledger; returns the number of files.
pub fn assert_all_shipped(out: &Path, s3: &S3) -> usize {
    let local = published(out);
    let objects = s3.objects();
    assert!(
        !local.is_empty(),
        "nothing was published in {}",
        out.display()
    );
    for (relative, bytes) in &local {
        let key = key_of(relative);
        let object = objects.get(&key).unwrap_or_else(|| {
            panic!(
                "{relative} was not shipped to {key}; objects: {:?}",
                objects.keys()
            )
        });
        assert!(object == bytes, "{key} differs from {relative}");
    }
    let listed = ledger(out);
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "the ledger lists a file twice: {listed:?}"
    );
    let local_names: BTreeSet<&String> = local.keys().collect();
    assert_eq!(
        unique, local_names,
        "the ledger and the published files differ"
    );
    local.len()
}

/// Every object is byte for byte a file of one of `outs` (no partial or
/// foreign object).
fn assert_objects_are_files(s3: &S3, outs: &[&Path]) {
    let mut local = BTreeMap::new();
    for out in outs {
        for (relative, bytes) in published(out) {
            local.insert(key_of(&relative), bytes);
        }
    }
    for (key, bytes) in s3.objects() {
        let file = local
            .get(&key)
            .unwrap_or_else(|| panic!("object {key} matches no published file"));
        assert!(
            file == &bytes,
            "object {key} is not its file's bytes ({} of {} bytes)",
            bytes.len(),
            file.len()
        );
    }
}

fn stamp_of(relative: &str) -> String {
    let name = relative.rsplit('/').next().unwrap_or_default();
    let host = host_of(name);
    name[host.len() + 1..host.len() + 17].to_string()
}

pub fn lines_with(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

#[test]
fn store_down_then_back_ships_the_backlog_in_order() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    let out = dir.path().join("out");
    let port = free_port();
    let agent = shipping_agent(&out, port, SECRET)
        .duration(16)
        .limit(Duration::from_secs(90));
    let child = agent.spawn();
    wait_for_first_tick(&out, Duration::from_secs(30));
    // Down for a while: periods are published and wait.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        published(&out).len() >= 2,
        "no backlog was published while the store was down"
    );
    let s3 = S3::start(&dir.path().join("s3"), port);
    let run = wait_with_limit(child, Duration::from_secs(90));
    assert_success(&run);
    let log = String::from_utf8_lossy(&run.stderr);
    // One line when it went down, none per retry.
    assert_eq!(lines_with(&log, "not shipping:"), 1, "log:\n{log}");
    assert!(log.contains("shipping: up to date"), "log:\n{log}");
    let files = assert_all_shipped(&out, &s3);
    // In order: the ledger's periods never go back in time.
    let stamps: Vec<String> = ledger(&out).iter().map(|f| stamp_of(f)).collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "shipped out of order");
    // Recording went on: every tick of the run is in the local files.
    let ticks = query_number(&out, "SELECT count(*) FROM 'ticks/*/*/*.parquet'");
    assert!(ticks >= 14.0, "only {ticks} ticks recorded in 16 s");
    let unshipped = query_number(
        &out,
        "SELECT max(unshipped_deleted) FROM 'ticks/*/*/*.parquet'",
    );
    assert_eq!(unshipped, 0.0);
    assert!(files >= 8, "only {files} files");
}

#[test]
fn wrong_credentials_say_so_once_and_recording_goes_on() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    let out = dir.path().join("out");
    let s3 = S3::start(&dir.path().join("s3"), free_port());
    // --check says whether the store answers.
    let check = |secret: &str| {
        let mut command = shipping_agent(&out, s3.port, secret)
            .args(["--check"])
            .command();
        let run = wait_with_limit(
            command.spawn().expect("run --check"),
            Duration::from_secs(60),
        );
        String::from_utf8_lossy(&run.stdout).into_owned()
    };
    let good = check(SECRET);
    assert!(
        good.contains(&format!("ship-to: s3://{BUCKET}/{PREFIX} is reachable")),
        "{good}"
    );
    let bad = check("not-the-secret");
    assert!(bad.contains("is NOT reachable: access denied"), "{bad}");

    let run = shipping_agent(&out, s3.port, "not-the-secret")
        .duration(8)
        .limit(Duration::from_secs(60))
        .run();
    assert_success(&run);
    let log = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        lines_with(&log, "not shipping: access denied"),
        1,
        "log:\n{log}"
    );
    assert!(
        s3.objects().is_empty(),
        "objects written with wrong credentials"
    );
    assert!(ledger(&out).is_empty());
    let ticks = query_number(&out, "SELECT count(*) FROM 'ticks/*/*/*.parquet'");
    assert!(ticks >= 6.0, "only {ticks} ticks recorded in 8 s");
    assert!(published(&out).keys().any(|f| f.starts_with("samples/")));
}

#[test]
fn killed_mid_shipping_leaves_no_partial_object_and_resumes_without_duplicates() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    let out = dir.path().join("out");
    let port = free_port();
    // A backlog: 10 s of periods while the store is down.
    let run = shipping_agent(&out, port, SECRET)
        .duration(10)
        .limit(Duration::from_secs(90))
        .run();
    assert_success(&run);
    let backlog = published(&out).len();
    assert!(backlog >= 8, "backlog of {backlog} files");
    let s3 = S3::start(&dir.path().join("s3"), port);
    // Shipping starts: kill the agent the moment the first object lands.
    let child = shipping_agent(&out, port, SECRET).duration(30).spawn();
    let start = Instant::now();
    while s3.objects().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nothing shipped in 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    crate::support::send_signal(&child, nix::sys::signal::Signal::SIGKILL);
    let _ = wait_with_limit(child, Duration::from_secs(10));
    let shipped_before = s3.objects().len();
    assert!(
        shipped_before < published(&out).len(),
        "the kill came after everything was shipped"
    );
    assert_objects_are_files(&s3, &[&out]);
    // The next start resumes; nothing is shipped twice.
    let run = shipping_agent(&out, port, SECRET)
        .duration(4)
        .limit(Duration::from_secs(60))
        .run();
    assert_success(&run);
    let files = assert_all_shipped(&out, &s3);
    assert_eq!(s3.objects().len(), files);
}

/// `date -u` of `secs` since the epoch as a file stamp.
pub fn stamp(secs: i64) -> String {
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{secs}"),
            "+%Y%m%dT%H%M%SZ %Y-%m-%d %H",
        ])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn epoch_of(stamp: &str) -> i64 {
    let iso = format!(
        "{}-{}-{} {}:{}:{}",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let out = Command::new("date")
        .args(["-u", "-d", &iso, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("epoch")
}

/// Move every published file of `out` to where a clock `skew` seconds off
/// would have put it (name and partition; the rows keep their times).
fn skew_files(out: &Path, skew: i64) {
    for relative in published(out).keys() {
        let (table, rest) = relative.split_once('/').expect("table/");
        let name = rest.rsplit('/').next().expect("name");
        let host = host_of(name);
        let old = &name[host.len() + 1..host.len() + 17];
        let new = stamp(epoch_of(old) + skew);
        let mut parts = new.split(' ');
        let (new_stamp, date, hour) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let target_dir = out
            .join(table)
            .join(format!("date={date}"))
            .join(format!("hour={hour}"));
        std::fs::create_dir_all(&target_dir).expect("partition");
        let new_name = name.replacen(old, new_stamp, 1);
        std::fs::rename(out.join(relative), target_dir.join(new_name)).expect("rename");
    }
}

/// `taskscope run` as host `host` (its own UTS namespace).
fn agent_as_host(host: &str, agent: &AgentRun) -> Child {
    let command = agent.command();
    let mut wrapped = Command::new("unshare");
    wrapped
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
        .stderr(Stdio::piped());
    wrapped.spawn().expect("unshare")
}

#[test]
fn two_hosts_with_skewed_clocks_share_one_bucket() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    let s3 = S3::start(&dir.path().join("s3"), free_port());
    let (out_a, out_b) = (dir.path().join("a"), dir.path().join("b"));
    // Host b's earlier run, as a clock 59 minutes 58 s behind wrote it: its
    // files land in the previous hour, on the same 2 s period boundaries.
    let earlier = shipping_agent(&out_b, free_port(), SECRET).duration(6);
    let run = wait_with_limit(agent_as_host("fleet-b", &earlier), Duration::from_secs(90));
    assert_success(&run);
    skew_files(&out_b, -3598);
    // Both hosts now ship at the same time: same period stamps, one bucket.
    let a = agent_as_host(
        "fleet-a",
        &shipping_agent(&out_a, s3.port, SECRET).duration(8),
    );
    let b = agent_as_host(
        "fleet-b",
        &shipping_agent(&out_b, s3.port, SECRET).duration(8),
    );
    assert_success(&wait_with_limit(a, Duration::from_secs(90)));
    assert_success(&wait_with_limit(b, Duration::from_secs(90)));
    let files_a = assert_all_shipped(&out_a, &s3);
    let files_b = assert_all_shipped(&out_b, &s3);
    assert_eq!(
        s3.objects().len(),
        files_a + files_b,
        "an object was overwritten or is foreign"
    );
    assert_objects_are_files(&s3, &[&out_a, &out_b]);
    // The same period stamp exists under both hosts.
    let stamps =
        |out: &Path| -> BTreeSet<String> { published(out).keys().map(|f| stamp_of(f)).collect() };
    assert!(
        stamps(&out_a)
            .intersection(&stamps(&out_b))
            .next()
            .is_some(),
        "the two hosts never wrote the same period"
    );
    for key in s3.objects().keys() {
        assert!(
            key.contains("/host=fleet-a/fleet-a-") || key.contains("/host=fleet-b/fleet-b-"),
            "{key}"
        );
    }
}
