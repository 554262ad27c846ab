//! `run --ship-to` killed while an object's bytes are provably in flight:
//! the agent talks to the real s3s-fs server through a throttling relay
//! (`relay`), and is SIGKILLed when the relay has forwarded part, but not
//! all, of a request body — once for a file sent in one PUT, once for a
//! file sent as a multipart upload (over 64 MiB, upload.rs's
//! `SINGLE_PUT_MAX`, so no knob of the agent is needed).
//!
//! The big file is written by the test into the output directory as the
//! agent publishes (a `samples` period before the agent's own, named for
//! its host), of random bytes: the shipper copies bytes and never reads
//! them, and random bytes make any cut or mix-up show.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::relay::Relay;
use crate::ship::{
    assert_all_shipped, epoch_of, free_port, host_of, lines_with, published, shipping_agent, stamp,
    S3, SECRET,
};
use crate::support::{
    assert_success, exclusive, require_root, scratch, send_signal, wait_with_limit,
};

/// Write `size` random bytes as a `samples` file of the period just
/// before the earliest one the agent published in `out`; returns its
/// relative path.
fn add_big_file(out: &Path, size: usize) -> String {
    let files = published(out);
    let first = files.keys().next().expect("the agent published files");
    let name = first.rsplit('/').next().expect("a name");
    let host = host_of(name);
    let earliest = files
        .keys()
        .map(|f| {
            let name = f.rsplit('/').next().unwrap_or_default();
            name[host.len() + 1..host.len() + 17].to_string()
        })
        .min()
        .expect("a stamp");
    let before = stamp(epoch_of(&earliest) - 2);
    let mut parts = before.split(' ');
    let (file_stamp, date, hour) = (
        parts.next().expect("stamp"),
        parts.next().expect("date"),
        parts.next().expect("hour"),
    );
    let dir = out
        .join("samples")
        .join(format!("date={date}"))
        .join(format!("hour={hour}"));
    std::fs::create_dir_all(&dir).expect("partition");
    let relative = format!("samples/date={date}/hour={hour}/{host}-{file_stamp}.parquet");
    let mut random = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    let mut bytes = vec![0u8; size];
    std::io::Read::read_exact(&mut random, &mut bytes).expect("random bytes");
    let mut file = std::fs::File::create(out.join(&relative)).expect("create the big file");
    file.write_all(&bytes).expect("write the big file");
    file.sync_all().expect("sync the big file");
    relative
}

/// Names of s3s-fs's own files at the top of its data directory starting
/// with `prefix` (multipart parts `.upload_id-<id>.part-<n>`, uploads
/// `.upload-<id>.json`).
fn server_files(s3: &S3, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&s3.root)
        .expect("read the server's directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Every file of s3s-fs's data directory (the bucket included) that
/// belongs to a multipart upload: parts, the upload's record, its
/// metadata.
fn upload_files(s3: &S3) -> Vec<String> {
    crate::support::files_under(&s3.root)
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains("upload"))
        .collect()
}

/// Wait (at most a minute) until `ready`, checking every 5 ms.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not happen in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A backlog of real periods published while the store is down, plus the
/// big file (first in the queue); returns the output directory and the
/// big file's relative path.
fn backlog_with_big_file(dir: &Path, size: usize) -> (PathBuf, String) {
    let out = dir.join("out");
    let run = shipping_agent(&out, free_port(), SECRET)
        .duration(4)
        .limit(Duration::from_secs(90))
        .run();
    assert_success(&run);
    let big = add_big_file(&out, size);
    (out, big)
}

/// The next start, straight to the server: everything ships, each object
/// is its file byte for byte, nothing twice. Returns the agent's log.
fn restart_ships_everything_once(out: &Path, s3: &S3) -> String {
    let run = shipping_agent(out, s3.port, SECRET)
        .duration(6)
        .limit(Duration::from_secs(120))
        .run();
    assert_success(&run);
    let files = assert_all_shipped(out, s3);
    assert_eq!(
        s3.objects().len(),
        files,
        "an object is there twice or foreign"
    );
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// SIGKILL the agent and return the request bytes the relay had forwarded
/// of each request the agent's death cut.
fn kill_and_cut(child: std::process::Child, relay: &Relay) -> Vec<u64> {
    send_signal(&child, nix::sys::signal::Signal::SIGKILL);
    let _ = wait_with_limit(child, Duration::from_secs(10));
    wait_until("the relay seeing the agent go", || {
        !relay.cut_requests().is_empty()
    });
    std::thread::sleep(Duration::from_millis(200));
    relay.cut_requests()
}

#[test]
fn killed_during_a_single_put_leaves_no_object_and_the_next_start_ships_it_once() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    const SIZE: usize = 1 << 20;
    const KILL_AT: u64 = 256 << 10;
    let (out, big) = backlog_with_big_file(dir.path(), SIZE);
    let s3 = S3::start(&dir.path().join("s3"), free_port());
    // 64 KiB/s: the 1 MiB PUT takes 16 s; the kill comes at 256 KiB.
    let relay = Relay::start(s3.port, 64 << 10);
    let child = shipping_agent(&out, relay.port, SECRET)
        .duration(120)
        .spawn();
    wait_until("a request body of 256 KiB in flight", || {
        relay.in_flight() >= KILL_AT
    });
    // Exactly one request was cut, in its body: more than any header, less
    // than the file.
    let cut = kill_and_cut(child, &relay);
    eprintln!("single PUT: killed with {cut:?} bytes of the request forwarded (body {SIZE})");
    assert_eq!(cut.len(), 1, "requests cut: {cut:?}");
    assert!(
        (KILL_AT..SIZE as u64).contains(&cut[0]),
        "the cut request had {} bytes forwarded of a {SIZE}-byte body",
        cut[0]
    );
    drop(relay);
    // The big file is first in the queue: nothing is in the bucket, not
    // even a part of it.
    assert!(
        s3.objects().is_empty(),
        "objects after the kill: {:?}",
        s3.objects().keys().collect::<Vec<_>>()
    );
    assert!(upload_files(&s3).is_empty(), "{:?}", upload_files(&s3));
    let log = restart_ships_everything_once(&out, &s3);
    assert!(published(&out).contains_key(&big));
    assert_eq!(
        lines_with(&log, "aborted the multipart upload"),
        0,
        "log:\n{log}"
    );
}

#[test]
fn killed_during_a_multipart_upload_leaves_no_object_and_the_next_start_aborts_it() {
    require_root();
    let _guard = exclusive();
    let dir = scratch();
    // Over the 64 MiB single-PUT limit: parts of 16 MiB (4 + 8 MiB).
    const SIZE: usize = 72 << 20;
    const PART: u64 = 16 << 20;
    const KILL_AT: u64 = 4 << 20;
    let (out, big) = backlog_with_big_file(dir.path(), SIZE);
    let s3 = S3::start(&dir.path().join("s3"), free_port());
    // 16 MiB/s: one part a second; the kill comes 4 MiB into the second.
    let relay = Relay::start(s3.port, 16 << 20);
    let child = shipping_agent(&out, relay.port, SECRET)
        .duration(120)
        .limit(Duration::from_secs(120))
        .spawn();
    wait_until("part 1 stored and 4 MiB of part 2 in flight", || {
        !server_files(&s3, ".upload_id-").is_empty() && relay.in_flight() >= KILL_AT
    });
    let cut = kill_and_cut(child, &relay);
    eprintln!(
        "multipart: killed with {cut:?} bytes of part 2 forwarded (part {PART}), {} bytes in all",
        relay.uploaded()
    );
    assert_eq!(cut.len(), 1, "requests cut: {cut:?}");
    assert!(
        (KILL_AT..PART).contains(&cut[0]),
        "the cut part had {} bytes forwarded of {PART}",
        cut[0]
    );
    assert!(relay.uploaded() < SIZE as u64);
    drop(relay);
    // Readers see nothing: the upload is incomplete, its part is the
    // server's own file, not an object.
    assert!(
        s3.objects().is_empty(),
        "objects after the kill: {:?}",
        s3.objects().keys().collect::<Vec<_>>()
    );
    let parts = server_files(&s3, ".upload_id-");
    assert_eq!(parts.len(), 1, "stored parts: {parts:?}");
    assert!(parts[0].ends_with(".part-1"), "{parts:?}");
    let upload_id = parts[0]
        .strip_prefix(".upload_id-")
        .and_then(|rest| rest.split('.').next())
        .expect("the upload id")
        .to_string();
    assert_eq!(server_files(&s3, ".upload-").len(), 1);
    // The agent recorded the upload before sending its first part.
    let begun = std::fs::read_to_string(out.join(".shipping-uploads"))
        .expect("the list of begun multipart uploads");
    assert!(begun.contains(&upload_id), "{begun}");

    let log = restart_ships_everything_once(&out, &s3);
    // The cut upload was aborted (its part and its record are gone at the
    // server), and the completed one left nothing behind either.
    assert_eq!(
        lines_with(
            &log,
            "aborted the multipart upload an earlier run left incomplete"
        ),
        1,
        "log:\n{log}"
    );
    assert!(
        upload_files(&s3).is_empty(),
        "left at the server: {:?}",
        upload_files(&s3)
    );
    assert!(!out.join(".shipping-uploads").exists());
    assert_eq!(
        s3.objects().get(&crate::ship::key_of(&big)).map(Vec::len),
        Some(SIZE)
    );
}
