//! The writer thread's loop: take ticks from the sampler's queue and
//! write them, flush on time, notice a removed output directory, publish
//! on request, and keep the heap trimmed.
//!
//! The decision a reader must know: the loop wakes at least every 250 ms
//! even without ticks, so a publication request (SIGHUP) is answered and
//! the writer shows life to the service watchdog while idle. What it
//! reports and asks goes through a [`Supervisor`], which the agent
//! implements: the writer knows nothing of signals or systemd.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::tick::{QueuedBytes, Tick};
use super::{Message, Writer, WriterStats};

/// How often the writer checks that the output directory still exists.
const OUTPUT_DIR_CHECK: Duration = Duration::from_secs(1);
/// How often the writer hands the heap's free pages back to the kernel.
const MEMORY_TRIM: Duration = Duration::from_secs(10);

/// What the writer thread tells the agent, and asks it, between ticks.
pub trait Supervisor {
    /// Whether a publication was asked for since the last call (SIGHUP).
    fn take_publish_request(&self) -> bool;
    /// A tick was written.
    fn tick_written(&self);
    /// The writer thread is alive (called at least every 250 ms).
    fn writer_alive(&self);
}

/// Write the ticks of `receiver` until the sampler hangs up, then close
/// the writer. A writer error that must stop the agent (the output
/// directory cannot be made again) ends the loop early and is returned
/// with the totals; dropping the receiver then stops the sampler.
pub fn writer_loop(
    mut writer: Writer,
    receiver: Receiver<Tick>,
    queued_bytes: QueuedBytes,
    flush_interval: Duration,
    supervisor: impl Supervisor,
) -> (WriterStats, Option<anyhow::Error>) {
    // Wake at least every 250 ms: SIGHUP is answered within that.
    let wait = flush_interval.min(Duration::from_millis(250));
    let mut dir_checked = Instant::now();
    let mut trimmed = Instant::now();
    loop {
        if trimmed.elapsed() >= MEMORY_TRIM {
            trimmed = Instant::now();
            writer.release_idle_caches();
            release_free_memory();
        }
        if dir_checked.elapsed() >= OUTPUT_DIR_CHECK {
            dir_checked = Instant::now();
            if let Err(err) = writer.check_output_dir() {
                return (writer.close(), Some(err));
            }
        }
        match receiver.recv_timeout(wait) {
            Ok(tick) => {
                let bytes = tick.approx_bytes();
                writer.handle(Message::Tick(tick));
                queued_bytes.release(bytes);
                supervisor.tick_written();
            }
            Err(RecvTimeoutError::Timeout) => writer.flush_if_due(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
        supervisor.writer_alive();
        if supervisor.take_publish_request() {
            writer.handle(Message::Publish);
        }
    }
    (writer.close(), None)
}

/// Give the allocator's free pages back to the kernel. glibc keeps freed
/// memory inside its heaps; with threads and processes coming and going,
/// short-lived buffers (a maps file, a tick of 10,000 rows, a symbolizer
/// index) leave free holes that stay resident, and the agent's anonymous
/// memory crept up ~30% over two minutes of churn with the bytes in use
/// flat. `malloc_trim` releases the free pages of every arena with
/// `MADV_DONTNEED` (measured: about a millisecond for a 70 MiB heap).
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory no allocation holds; it
    // takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
