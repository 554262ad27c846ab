//! `run --ship-to s3://bucket/prefix`: copy every published period to
//! S3-compatible object storage, laid out for engines that read hive
//! partitions: `<prefix>/<table>/date=YYYY-MM-DD/hour=HH/host=<host>/<file>`
//! (`store::shipped::object_key`).
//!
//! The shipper is a thread of the agent's process, started beside the
//! agent by `cli` (not a companion unit: it needs no second service, no
//! second set of privileges, and it sees the files the moment they are
//! published). It reads only published files, through the store's layout,
//! like the other readers; it has its own current-thread tokio runtime
//! for the S3 client, and nothing the sampler or the writer does waits on
//! it. What was shipped is the ledger `<output-dir>/.shipped`
//! (`queue`, `store::shipped`); what is not is the queue, in period order.
//!
//! The decision a reader must know: the store being down, slow or
//! refusing never touches recording. A failing pass ends at the first
//! file that fails (so files are shipped in order) and the next pass
//! comes after an exponential backoff (2 s doubling to 2 minutes; each
//! request is also retried a few times by the client). The log says when
//! the state changes (shipping, unreachable, access denied, conflict),
//! once, not at every retry.

mod client;
mod profile;
mod queue;
mod upload;
mod uploads;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use tracing::{debug, info, warn};

pub use client::Destination;
use client::Store;
pub use profile::from_process_environment as profile_settings;
use queue::Ledger;
use upload::Shipped;
use uploads::Uploads;

use crate::files::at;
use crate::store::shipped::object_key;

/// How often the output directory is looked at for new files.
const POLL: Duration = Duration::from_secs(2);
/// Backoff after a failed pass: first, and longest.
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(120);
/// How long the last pass at shutdown may take.
const FINAL_PASS: Duration = Duration::from_secs(15);
/// Refusals (not failures to reach the store) after which an earlier
/// run's multipart upload is no longer aborted, but left to the bucket's
/// lifecycle rule.
const ABORT_TRIES: u32 = 3;

/// The shipper's state, logged when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Starting,
    /// The last pass shipped everything there was.
    UpToDate,
    /// Credentials refused.
    Denied,
    /// The store did not answer (or answered with an error).
    Failing(String),
}

/// A running shipper.
pub struct Shipper {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Shipper {
    /// Start shipping the published files of `output_dir` (created by
    /// the agent; waited for) to `destination`.
    pub fn start(destination: Destination, output_dir: PathBuf) -> Result<Shipper> {
        let store = client::connect(&destination)?;
        let (stop, stopped) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("taskscope-ship".into())
            .spawn(move || run(&destination, &output_dir, store, &stopped))
            .context("cannot start the shipper thread")?;
        Ok(Shipper { stop, thread })
    }

    /// Ship what the agent published last (for at most a few seconds),
    /// then stop. What is left is shipped at the next start.
    pub fn finish(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            warn!("the shipper thread panicked");
        }
    }
}

/// Whether the store answers with these credentials: for `run --check`.
pub fn check(destination: &Destination) -> Result<String> {
    let store = client::connect(destination)?;
    let runtime = runtime()?;
    let prefix = (!destination.prefix.is_empty())
        .then(|| object_store::path::Path::from(destination.prefix.as_str()));
    runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(20),
                store.list_with_delimiter(prefix.as_ref()),
            )
            .await
        })
        .map_err(|_| anyhow::anyhow!("no answer in 20 s"))?
        .map_err(|err| anyhow::anyhow!(describe(&err)))?;
    Ok(format!("{} is reachable and lists", destination.url))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the shipper's runtime")
}

/// S3 error codes and statuses that mean the credentials were refused
/// (object_store reports most of them as `Generic` with the status).
const DENIED: &[&str] = &[
    "403 Forbidden",
    "401 Unauthorized",
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "InvalidToken",
];

/// Whether `err` says the credentials were refused.
fn is_denied(err: &object_store::Error) -> bool {
    matches!(
        err,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || {
        let text = err.to_string();
        DENIED.iter().any(|code| text.contains(code))
    }
}

/// One line for an error of the store, saying what to do.
fn describe(err: &object_store::Error) -> String {
    if is_denied(err) {
        format!("access denied: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the role) and the bucket policy ({err})")
    } else {
        format!("{err}")
    }
}

fn run(
    destination: &Destination,
    output_dir: &std::path::Path,
    store: Arc<dyn Store>,
    stopped: &Receiver<()>,
) {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            warn!("not shipping: {err:#}");
            return;
        }
    };
    let mut state = State::Starting;
    let mut backoff = BACKOFF_FIRST;
    let mut conflicts = std::collections::HashSet::new();
    let mut refused = std::collections::HashMap::new();
    loop {
        let pass = match at::open_dir(output_dir) {
            Ok(out) => runtime
                .block_on(pass(
                    destination,
                    &out,
                    store.as_ref(),
                    &mut conflicts,
                    &mut refused,
                    None,
                ))
                .map(Some),
            // The agent has not made it yet.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(Failure::Local(format!(
                "cannot open {}: {err}",
                output_dir.display()
            ))),
        };
        let wait = match pass {
            Ok(None) => POLL,
            Ok(Some(sent)) => {
                if state != State::UpToDate {
                    info!(destination = %destination.url, shipped = sent, "shipping: up to date");
                }
                state = State::UpToDate;
                backoff = BACKOFF_FIRST;
                POLL
            }
            Err(failure) => {
                let next = failure.state();
                if next != state {
                    warn!(destination = %destination.url, "not shipping: {}; recording goes on, the files wait in the output directory and are shipped in order when it works again", failure.message());
                }
                state = next;
                let wait = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            }
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // The agent has published its last periods: one bounded last pass.
    if let Ok(out) = at::open_dir(output_dir) {
        let deadline = Instant::now() + FINAL_PASS;
        match runtime.block_on(pass(
            destination,
            &out,
            store.as_ref(),
            &mut conflicts,
            &mut refused,
            Some(deadline),
        )) {
            Ok(_) => info!(destination = %destination.url, "shipping: up to date at exit"),
            Err(failure) => {
                warn!(destination = %destination.url, "stopping with files not shipped yet (shipped at the next start): {}", failure.message())
            }
        }
    }
}

/// Why a pass stopped.
enum Failure {
    Store(String, bool),
    Local(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Store(message, _) | Failure::Local(message) => message,
        }
    }

    fn state(&self) -> State {
        match self {
            // Messages name the file and the time taken: not part of the state.
            Failure::Store(_, true) => State::Denied,
            Failure::Store(message, false) | Failure::Local(message) => {
                // The same kind of failure is one state, whatever the file.
                State::Failing(message.split(':').next().unwrap_or(message).to_string())
            }
        }
    }
}

/// Ship every file not in the ledger, oldest first; stop at the first
/// failure (or at `deadline`). Returns how many were shipped.
async fn pass(
    destination: &Destination,
    out: &OwnedFd,
    store: &dyn Store,
    conflicts: &mut std::collections::HashSet<String>,
    refused: &mut std::collections::HashMap<String, u32>,
    deadline: Option<Instant>,
) -> std::result::Result<usize, Failure> {
    let local = |err: anyhow::Error| Failure::Local(format!("{err:#}"));
    let mut uploads = Uploads::open(out).map_err(local)?;
    abort_earlier_uploads(store, &mut uploads, refused)
        .await
        .map_err(local)?;
    let files = queue::published(out).map_err(local)?;
    let mut ledger = Ledger::open(out, &destination.url, &files).map_err(local)?;
    let mut sent = 0;
    for file in &files {
        if ledger.contains(&file.relative) {
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Failure::Local("out of time".into()));
        }
        if conflicts.contains(&file.relative) {
            continue;
        }
        let Some(key) = object_key(&destination.prefix, &file.relative) else {
            continue;
        };
        let shipping = upload::ship(store, out, file, &key, &mut uploads);
        let result = match deadline {
            Some(d) => tokio::time::timeout(d.saturating_duration_since(Instant::now()), shipping)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("out of time"))),
            None => shipping.await,
        };
        match result {
            Ok((Shipped::Sent { etag } | Shipped::AlreadyThere { etag }, size)) => {
                ledger.record(&file.relative, size, &etag).map_err(local)?;
                debug!(key, size, "shipped");
                sent += 1;
            }
            Ok((Shipped::Conflict { size, sha256 }, _)) => {
                warn!(key, size, sha256 = sha256.as_deref().unwrap_or("none"), "not shipping {}: another object with other content has its key; it is not overwritten (move that object away to ship the file)", file.relative);
                conflicts.insert(file.relative.clone());
            }
            Err(err) => {
                let denied = err.chain().any(|cause| {
                    cause
                        .downcast_ref::<object_store::Error>()
                        .is_some_and(is_denied)
                });
                let message = match err.downcast_ref::<object_store::Error>() {
                    Some(store_err) => describe(store_err),
                    None => format!("{err:#}"),
                };
                return Err(Failure::Store(message, denied));
            }
        }
    }
    Ok(sent)
}

/// Abort the multipart uploads an earlier pass or run began and did not
/// end (a kill, a crash, or an abort that did not go through). One the
/// store no longer knows is done; one it refuses to abort `ABORT_TRIES`
/// times is left to the bucket's lifecycle rule (logged); one it cannot be
/// asked about now (unreachable) waits for the next pass.
async fn abort_earlier_uploads(
    store: &dyn Store,
    uploads: &mut Uploads<'_>,
    refused: &mut std::collections::HashMap<String, u32>,
) -> Result<()> {
    for begun in uploads.begun().to_vec() {
        let Ok(key) = object_store::path::Path::parse(&begun.key) else {
            uploads.end(&begun.id)?;
            continue;
        };
        match store.abort_multipart(&key, &begun.id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                info!(
                    key = begun.key,
                    "aborted the multipart upload an earlier run left incomplete"
                );
                refused.remove(&begun.id);
                uploads.end(&begun.id)?;
            }
            // No answer (or a server error): try again at the next pass.
            Err(err @ object_store::Error::Generic { .. }) => {
                debug!(
                    key = begun.key,
                    "cannot abort an earlier multipart upload now: {err}"
                );
            }
            Err(err) => {
                let tries = refused.entry(begun.id.clone()).or_insert(0);
                *tries += 1;
                if *tries >= ABORT_TRIES {
                    warn!(key = begun.key, upload_id = begun.id, "the store refuses to abort the multipart upload an earlier run left incomplete ({}); it is left to the bucket's lifecycle rule (AbortIncompleteMultipartUpload)", describe(&err));
                    refused.remove(&begun.id);
                    uploads.end(&begun.id)?;
                }
            }
        }
    }
    Ok(())
}
