//! The native user frames of a capture, for `StackResolver`: each
//! process's maps and perf map (read, refreshed when an address falls
//! outside them, pruned when idle), unwinding and symbolizing, and the key
//! a user stack's resolution is remembered by (`user_key`).

use super::*;

/// Processes whose maps are kept before the cache is cleared.
const PROCESS_LIMIT: usize = 1_024;
/// A process's maps are dropped when none of its stacks needed them for
/// this long (checked every `PRUNE_EVERY`); they are read again if needed.
const PROCESS_IDLE: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// A process's maps are read again at most this often when an address
/// falls outside them (a library loaded since).
const MAPS_REFRESH: Duration = Duration::from_secs(10);

/// Perf maps of all processes are dropped when they hold more than this
/// (bytes); each is read again when one of its stacks needs it.
const PERF_MAP_BUDGET: usize = 64 << 20;

/// What a user stack's unwinding depends on: the process, the
/// frame-pointer chain, where the frame pointer is relative to the stack
/// pointer, and the code addresses in the stack window with their
/// offsets. The rest of the window is data (a sleep's timespec, an
/// interpreter's locals) that changes between otherwise identical waits.
/// JIT frames are named from the perf map as far as it was read
/// (`jit_generation`): a map grown since resolves the stack again.
pub(super) fn user_key(
    tgid: u32,
    exe_id: u64,
    raw: &RawStacks,
    maps: &ProcessMaps,
    jit_generation: u64,
) -> u128 {
    let code: Vec<(usize, u64)> = raw
        .peek
        .as_deref()
        .unwrap_or_default()
        .chunks_exact(8)
        .enumerate()
        .map(|(i, word)| (i, u64::from_le_bytes(word.try_into().expect("8 bytes"))))
        .filter(|&(_, word)| maps.find(word).is_some_and(|m| m.exec))
        .collect();
    content_key(&(
        tgid,
        exe_id,
        &raw.user,
        raw.user_bp.wrapping_sub(raw.user_sp),
        code,
        jit_generation,
    ))
}

impl StackResolver {
    /// A capture's native user frames, unwound and symbolized; whether
    /// they are cut short of the thread's entry point; and whether every
    /// capture with the same `user_key` resolves the same (not when the
    /// unwind found the live stack changed: the thread ran on, and a later
    /// capture of the same wait may unwind further).
    pub(super) fn native_user(
        &mut self,
        tgid: u32,
        exe_id: u64,
        raw: &RawStacks,
    ) -> (Vec<Frames>, bool, bool) {
        let process = &self.processes[&(tgid, exe_id)];
        {
            let unwind::Recovered {
                ips,
                live_changed,
                signal_frames,
            } = unwind::recover(
                &RawUser {
                    ips: &raw.user,
                    sp: raw.user_sp,
                    bp: raw.user_bp,
                    peek: raw.peek.as_deref(),
                    tgid,
                },
                &process.maps,
                &mut self.unwind,
            );
            // Unwinding may have found JIT frames the walk had not.
            self.ensure_perf_map(tgid, exe_id, &ips);
            let process = &self.processes[&(tgid, exe_id)];
            let symbolizer = self.symbolizer.get_or_insert_with(Symbolizer::new);
            let mut frames = symbolizer.user(&process.maps, &process.jit, &ips);
            // A stack ends at its thread's entry point; what a walk finds
            // beyond it (`clone3`, `_start`) depends on how it was walked.
            let entry = frames.iter().position(is_thread_entry);
            if let Some(entry) = entry {
                frames.truncate(entry + 1);
            }
            self.user_through_signal_frames += u64::from(signal_frames);
            let cut_changed = live_changed && entry.is_none();
            self.user_cut_live_changed += u64::from(cut_changed);
            (frames, entry.is_none(), !cut_changed)
        }
    }

    /// Read the process's maps the first time, and again (rate-limited)
    /// when an address falls outside them.
    pub(super) fn ensure_process(&mut self, tgid: u32, exe_id: u64, ips: &[u64]) {
        let stale = match self.processes.get(&(tgid, exe_id)) {
            None => true,
            Some(p) => {
                p.read_at.elapsed() >= MAPS_REFRESH && ips.iter().any(|a| p.maps.find(*a).is_none())
            }
        };
        if self.pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            self.processes
                .retain(|_, p| p.used_at.elapsed() < PROCESS_IDLE);
            self.pruned_at = Some(Instant::now());
            if let Some(publisher) = &mut self.publisher {
                publisher.prune(self.switches.as_deref());
            }
        }
        if let Some(p) = self.processes.get_mut(&(tgid, exe_id)) {
            p.used_at = Instant::now();
        }
        if !stale {
            return;
        }
        if self.processes.len() >= PROCESS_LIMIT {
            self.processes.clear();
        }
        match maps::read_maps(tgid, &mut self.files) {
            Ok(maps) => {
                let jit = self
                    .processes
                    .remove(&(tgid, exe_id))
                    .map(|p| p.jit)
                    .unwrap_or_default();
                self.processes.insert(
                    (tgid, exe_id),
                    Process {
                        maps,
                        jit,
                        python: None,
                        python_cache: python::ReadCache::default(),
                        read_at: Instant::now(),
                        used_at: Instant::now(),
                    },
                );
            }
            Err(_) => {
                // Gone: keep what we had, or remember that there is nothing.
                self.processes
                    .entry((tgid, exe_id))
                    .or_insert_with(|| Process {
                        maps: ProcessMaps::default(),
                        jit: PerfMap::default(),
                        python: Some(None),
                        python_cache: python::ReadCache::default(),
                        read_at: Instant::now(),
                        used_at: Instant::now(),
                    });
            }
        }
    }

    /// Read what the process's perf map gained when `ips` has an address
    /// outside any mapped file that it does not name yet (at most every
    /// `perfmap::REFRESH`): JIT code.
    pub(super) fn ensure_perf_map(&mut self, tgid: u32, exe_id: u64, ips: &[u64]) {
        let Some(process) = self.processes.get_mut(&(tgid, exe_id)) else {
            return;
        };
        let unnamed = |p: &Process| {
            ips.iter().enumerate().any(|(i, &addr)| {
                let lookup = addr.wrapping_sub(u64::from(i > 0));
                // Anonymous: not a file, nor `[vdso]`.
                p.maps
                    .find(lookup)
                    .is_some_and(|m| m.file.is_none() && !m.name.starts_with('['))
                    && p.jit.find(lookup).is_none()
            })
        };
        if !process.jit.due() || !unnamed(process) {
            return;
        }
        let before = process.jit.generation();
        if let Some(refused) = process.jit.refresh(tgid) {
            tracing::warn!(
                pid = tgid,
                ?refused,
                "not naming JIT frames from /tmp/perf-{tgid}.map: not a regular file owned by the process"
            );
        }
        if process.jit.generation() > before
            && self
                .processes
                .values()
                .map(|p| p.jit.bytes())
                .sum::<usize>()
                > PERF_MAP_BUDGET
        {
            for p in self.processes.values_mut() {
                p.jit = PerfMap::default();
            }
        }
    }
}
