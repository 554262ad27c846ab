//! The Python frames of a capture, for `StackResolver`: read after the
//! fact for an off-CPU capture whose thread has not run since, or named
//! from the chain BPF read with an on-CPU (or published switch-out)
//! capture; and publishing the threads BPF should read (`python::oncpu`).

use super::*;

impl StackResolver {
    /// The interpreter of a Python process whose capture may get Python
    /// frames: one taken off CPU with the switch view at hand, or on CPU
    /// with Python threads published (the chain comes with the capture).
    pub(super) fn python_of(
        &mut self,
        thread: (u32, u32, u32),
        exe_id: u64,
        raw: &RawStacks,
    ) -> Option<Interpreter> {
        let possible = if raw.on_cpu || raw.python.is_some() {
            self.publisher.is_some()
        } else {
            raw.switch_out_ns != 0 && self.switches.is_some()
        };
        if !possible {
            return None;
        }
        let process = self.processes.get_mut(&(thread.0, exe_id))?;
        *process.python.get_or_insert_with(|| {
            python::interpreter(thread.0, &process.maps, &mut self.python_files)
        })
    }

    /// The Python frames (by eval-loop call) to splice into `native`, if
    /// the thread has not run since its capture, before and after reading
    /// them (its slot still holds it, switched out at the capture's
    /// switch-out, not switched in since), and they agree with the native
    /// stack.
    pub(super) fn python_frames(
        &mut self,
        (tgid, tid, slot): (u32, u32, u32),
        exe_id: u64,
        raw: &RawStacks,
        interpreter: Interpreter,
        native: &[Frames],
        cut: bool,
    ) -> Option<Vec<Vec<python::PyFrame>>> {
        if !native.iter().any(splice::is_eval_loop) {
            return None;
        }
        if raw.on_cpu || raw.python.is_some() {
            return self.on_cpu_frames((tgid, tid, slot), exe_id, raw, interpreter, native, cut);
        }
        let switches = self.switches.as_ref()?;
        let still = || {
            switches.read(slot as usize).is_some_and(|s| {
                s.tid == tid
                    && s.switch_out_ns == raw.switch_out_ns
                    && s.switch_in_ns < s.switch_out_ns
            })
        };
        if !still() {
            return None;
        }
        let cache = &mut self.processes.get_mut(&(tgid, exe_id))?.python_cache;
        let groups = interpreter.thread_frames(tgid, tid, cache)?;
        if !still() {
            return None;
        }
        splice::agrees(native, &groups, !cut).then_some(groups)
    }

    /// The Python frames of an on-CPU capture, or of a switch-out capture
    /// of a published thread: from the chain read in BPF with it, if they
    /// agree with the native stack. A failed chain
    /// unpublishes its thread (its thread state may have moved: the next
    /// capture publishes it again, `publish_python`).
    pub(super) fn on_cpu_frames(
        &mut self,
        (tgid, tid, _): (u32, u32, u32),
        exe_id: u64,
        raw: &RawStacks,
        interpreter: Interpreter,
        native: &[Frames],
        cut: bool,
    ) -> Option<Vec<Vec<python::PyFrame>>> {
        let publisher = self.publisher.as_mut()?;
        let cache = &mut self.processes.get_mut(&(tgid, exe_id))?.python_cache;
        match &raw.python {
            Some(python::Chain::Complete(frames)) => {
                publisher.used(tid);
                let groups = interpreter.chain_frames(tgid, frames, cache)?;
                splice::agrees(native, &groups, !cut).then_some(groups)
            }
            Some(python::Chain::Truncated) => {
                publisher.used(tid);
                None
            }
            Some(python::Chain::Failed) => {
                publisher.remove(tid);
                None
            }
            None => None,
        }
    }

    /// Publish the thread of an on-CPU capture of a Python process that
    /// came without a frame chain, so that its next on-CPU samples read
    /// it. Called for a tick's captures before any is resolved: the
    /// first tick's symbolization (hundreds of milliseconds) does not
    /// delay it.
    pub fn publish_python(
        &mut self,
        tgid: u32,
        tid: u32,
        exe_id: u64,
        stack: &StackRef,
        raw: &RawStacks,
    ) {
        let wanted = self.publisher.as_ref().is_some_and(|p| p.wants(tgid, tid));
        if !raw.on_cpu || raw.python.is_some() || raw.user.is_empty() || !wanted {
            return;
        }
        self.ensure_process(tgid, exe_id, &raw.user);
        let Some(interpreter) = self.python_of((tgid, tid, stack.slot), exe_id, raw) else {
            return;
        };
        let Some(process) = self.processes.get_mut(&(tgid, exe_id)) else {
            return;
        };
        let thread = interpreter.published(tgid, tid, &mut process.python_cache);
        if let Some(publisher) = &mut self.publisher {
            publisher.publish(tgid, tid, stack.slot, thread);
        }
    }
}
