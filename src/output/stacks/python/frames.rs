//! Reading a thread's Python frames from the interpreter's memory
//! (`Interpreter::thread_frames`): its thread state (from the `ReadCache`
//! or by walking every interpreter's threads), the frame chain, each code
//! object checked and named, the line executing, and the frames grouped by
//! the eval-loop call that runs them (`groups`, `code_frame`: shared with
//! the on-CPU chains, `super::oncpu`).

use super::{
    linetable, word, Code, Current, Entry, Interpreter, LineTable, Link, Memory, PyFrame,
    ReadCache, CODE_LIMIT, FRAME_OWNED_BY_CSTACK, LINES, MAX_FRAMES, MAX_INTERPRETERS, MAX_THREADS,
    TABLE_BYTES, TSTATE_LIMIT,
};

impl Interpreter {
    /// The Python frames of thread `tid` of process `tgid`, grouped by the
    /// call of the eval loop that runs them, innermost group and frame
    /// first. `None` when the thread has no thread state or anything read
    /// is doubtful.
    pub fn thread_frames(
        &self,
        tgid: u32,
        tid: u32,
        cache: &mut ReadCache,
    ) -> Option<Vec<Vec<PyFrame>>> {
        let memory = Memory(nix::unistd::Pid::from_raw(i32::try_from(tgid).ok()?));
        let o = &self.layout;
        let (_, tstate) = self.find_thread(&memory, tid, cache)?;
        let mut frame = match o.current {
            Current::Direct(at) => word(&tstate, at)?,
            Current::ViaCFrame {
                cframe,
                current_frame,
            } => match word(&tstate, cframe)? {
                0 => 0,
                cframe => memory.u64(cframe + current_frame)?,
            },
        };
        // The chain first: each frame's code object (none for a shim),
        // and whether the frame closes its loop call's group.
        let mut chain: Vec<Link> = Vec::new();
        while frame != 0 {
            if chain.len() >= MAX_FRAMES {
                return None;
            }
            let bytes = memory.read(frame, o.frame_len())?;
            let owner = *bytes.get(o.frame_owner as usize)?;
            let (code, closes) = match o.entry {
                Entry::CStackShim if owner == FRAME_OWNED_BY_CSTACK => (None, true),
                Entry::CStackShim => (Some(word(&bytes, o.frame_code)?), false),
                Entry::IsEntry(at) => (
                    Some(word(&bytes, o.frame_code)?),
                    *bytes.get(at as usize)? != 0,
                ),
            };
            chain.push(Link {
                code,
                print: None,
                instr: word(&bytes, o.frame_instr)?,
                closes,
            });
            frame = word(&bytes, o.frame_previous)?;
        }
        self.groups(&memory, &chain, cache)
    }

    /// The frames of `chain` (innermost first) grouped by the loop calls
    /// that run them: every code object read in one call, each checked
    /// (`code_frame`, and against its fingerprint when it has one).
    pub(super) fn groups(
        &self,
        memory: &Memory,
        chain: &[Link],
        cache: &mut ReadCache,
    ) -> Option<Vec<Vec<PyFrame>>> {
        let o = &self.layout;
        let codes: Vec<u64> = chain.iter().filter_map(|link| link.code).collect();
        let len = o.code_len();
        let bytes = memory.read_many(&codes, len)?;
        let mut read = bytes.chunks_exact(len).zip(&codes);
        let mut groups = Vec::new();
        let mut group = Vec::new();
        for link in chain {
            if link.code.is_some() {
                let (bytes, &code) = read.next()?;
                if link
                    .print
                    .is_some_and(|print| self.print(bytes) != Some(print))
                {
                    return None;
                }
                group.push(self.code_frame(memory, (code, link.instr), bytes, cache)?);
            }
            if link.closes {
                groups.push(std::mem::take(&mut group));
            }
        }
        // A frame that no loop's entry closes: not a chain understood.
        group.is_empty().then_some(groups)
    }

    /// The fingerprint of the code object whose first bytes are `bytes`,
    /// as the on-CPU sample computes it (`bpf/python.bpf.h`).
    fn print(&self, bytes: &[u8]) -> Option<u64> {
        let o = &self.layout;
        let qualname = word(bytes, o.code_qualname)?;
        let filename = word(bytes, o.code_filename)?;
        let line = word(bytes, o.code_firstlineno)? & 0xffff_ffff;
        Some(qualname ^ filename.rotate_left(17) ^ line)
    }

    /// The start of thread `tid`'s thread state (through its current
    /// frame's field): from the cache if the state there still names the
    /// thread, else by walking every interpreter's threads (remembering
    /// them all).
    pub(super) fn find_thread(
        &self,
        memory: &Memory,
        tid: u32,
        cache: &mut ReadCache,
    ) -> Option<(u64, Vec<u8>)> {
        let o = &self.layout;
        let current = match o.current {
            Current::Direct(at) => at,
            Current::ViaCFrame { cframe, .. } => cframe,
        };
        let len = (o.thread_native_id.max(o.thread_next).max(current) + 8) as usize;
        if let Some(&at) = cache.tstates.get(&tid) {
            if let Some(bytes) = memory.read(at, len) {
                if word(&bytes, o.thread_native_id)? == u64::from(tid) {
                    return Some((at, bytes));
                }
            }
            cache.tstates.remove(&tid);
        }
        if cache.tstates.len() >= TSTATE_LIMIT {
            cache.tstates.clear();
        }
        let mut found = None;
        let mut interp = memory.u64(self.runtime + o.interpreters_head)?;
        for _ in 0..MAX_INTERPRETERS {
            if interp == 0 {
                break;
            }
            let mut tstate = memory.u64(interp + o.interp_threads_head)?;
            for _ in 0..MAX_THREADS {
                if tstate == 0 {
                    break;
                }
                let bytes = memory.read(tstate, len)?;
                let native = u32::try_from(word(&bytes, o.thread_native_id)?).ok();
                if let Some(native) = native {
                    cache.tstates.insert(native, tstate);
                }
                let next = word(&bytes, o.thread_next)?;
                if native == Some(tid) && found.is_none() {
                    found = Some((tstate, bytes));
                }
                tstate = next;
            }
            interp = memory.u64(interp + o.interp_next)?;
        }
        found
    }

    /// The frame of the code object at `code`, whose first bytes are
    /// `bytes`, executing at `instr`; `None` if it is not a code object.
    fn code_frame(
        &self,
        memory: &Memory,
        (code, instr): (u64, u64),
        bytes: &[u8],
        cache: &mut ReadCache,
    ) -> Option<PyFrame> {
        let o = &self.layout;
        if word(bytes, o.ob_type)? != self.code_type {
            return None;
        }
        let qualname = word(bytes, o.code_qualname)?;
        let filename = word(bytes, o.code_filename)?;
        let firstlineno = u32::try_from(word(bytes, o.code_firstlineno)? & 0xffff_ffff).ok()?;
        let linetable = word(bytes, o.code_linetable)?;
        let same = |c: &Code| {
            (c.qualname, c.filename, c.firstlineno, c.linetable)
                == (qualname, filename, firstlineno, linetable)
        };
        if !cache.codes.get(&code).is_some_and(same) {
            let frame = PyFrame {
                qualname: memory.ascii_str(qualname, o)?,
                filename: memory.ascii_str(filename, o)?,
                firstlineno,
                line: firstlineno,
            };
            if cache.codes.len() >= CODE_LIMIT {
                cache.codes.clear();
                cache.table_bytes = 0;
            }
            cache.codes.insert(
                code,
                Code {
                    qualname,
                    filename,
                    firstlineno,
                    linetable,
                    frame,
                    table: None,
                },
            );
        }
        let mut frame = cache.codes.get(&code)?.frame.clone();
        // The code unit executing: `instr` must point into this object's
        // code, else the first line stands (a frame that has not started
        // points just before its first unit).
        let units = word(bytes, o.ob_size)?;
        let unit = instr
            .checked_sub(code + o.code_adaptive)
            .filter(|d| d % 2 == 0 && d / 2 < units)
            .and_then(|d| u32::try_from(d / 2).ok());
        if let Some(unit) = unit.filter(|_| *LINES) {
            if cache.codes.get(&code)?.table.is_none() {
                let table = self.line_table(memory, linetable, firstlineno);
                let size = table.as_ref().map_or(0, LineTable::heap_bytes);
                if cache.table_bytes + size > TABLE_BYTES {
                    // The names stay: the tables are read again.
                    cache.codes.values_mut().for_each(|c| c.table = None);
                    cache.table_bytes = 0;
                }
                cache.table_bytes += size;
                cache.codes.get_mut(&code)?.table = Some(table);
            }
            let table = cache
                .codes
                .get(&code)?
                .table
                .as_ref()
                .and_then(Option::as_ref);
            if let Some(line) = table
                .filter(|t| u64::from(t.units()) == units)
                .and_then(|t| t.line(unit))
            {
                frame.line = line;
            }
        }
        Some(frame)
    }

    /// The location table `co_linetable` at `at` of a code object whose
    /// first line is `firstlineno`; `None` unless it is a `bytes` object
    /// (of at most `MAX_TABLE` bytes) that parses.
    fn line_table(&self, memory: &Memory, at: u64, firstlineno: u32) -> Option<LineTable> {
        let o = &self.layout;
        let head = memory.read(at, o.bytes_sval as usize)?;
        if Some(word(&head, o.ob_type)?) != self.bytes_type {
            return None;
        }
        let len = word(&head, o.ob_size)?;
        if len > linetable::MAX_TABLE {
            return None;
        }
        let bytes = memory.read(at + o.bytes_sval, len as usize)?;
        LineTable::parse(&bytes, firstlineno)
    }
}
