//! CPython 3.13 frames read from the interpreter's own memory (a start:
//! read, not yet spliced into stacks).
//!
//! CPython 3.13 publishes the offsets of the structures an outside reader
//! needs at the start of `_PyRuntime` (`_Py_DebugOffsets`: the cookie
//! `xdebugpy`, the version, then one record per structure), so no
//! per-build table is needed. From `_PyRuntime` the reader walks
//! `interpreters.head → threads.head → next` to the thread state whose
//! `native_thread_id` is the thread's id, then its `current_frame →
//! previous` chain: each frame's code object gives the function's
//! qualified name, file and first line. Memory is read with
//! `process_vm_readv`; anything that does not look right (cookie, version,
//! a type that is not `code`, a string that is not compact ASCII/UTF-8, a
//! chain longer than `MAX_FRAMES`) ends the reading with what is sure, and
//! a version other than 3.13 yields nothing: never a wrong name.
//!
//! Not yet: where the read happens relative to the native capture (the
//! thread must not have run since) and the splice in place of
//! `_PyEval_EvalFrameDefault`; 3.11 and 3.12, which have no debug offsets.

use std::path::Path;

use super::maps::ProcessMaps;

/// Frames read at most per thread.
const MAX_FRAMES: usize = 128;
/// Thread states walked at most per interpreter.
const MAX_THREADS: usize = 4_096;
/// Bytes of a name or file read at most.
const MAX_TEXT: u64 = 1_024;
/// Size of `_Py_DebugOffsets` in 3.13.
const DEBUG_OFFSETS_SIZE: usize = 584;
/// `_PyInterpreterFrame.owner` of the C stack's shim frames.
const FRAME_OWNED_BY_CSTACK: u8 = 3;

/// One Python frame: qualified name, file and the function's first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyFrame {
    pub qualname: String,
    pub filename: String,
    pub firstlineno: u32,
}

/// The offsets a reader needs, from `_Py_DebugOffsets` (3.13 layout).
#[derive(Debug, Clone, Copy)]
pub struct DebugOffsets {
    pub version: u64,
    interpreters_head: u64,
    interp_next: u64,
    interp_threads_head: u64,
    thread_next: u64,
    thread_current_frame: u64,
    thread_native_id: u64,
    frame_previous: u64,
    frame_executable: u64,
    frame_owner: u64,
    code_filename: u64,
    code_qualname: u64,
    code_firstlineno: u64,
    ob_type: u64,
    tp_name: u64,
    unicode_state: u64,
    unicode_length: u64,
    unicode_ascii_size: u64,
}

impl DebugOffsets {
    /// Parse the start of `_PyRuntime`; `None` unless it is a 3.13 one.
    pub fn parse(bytes: &[u8]) -> Option<DebugOffsets> {
        if bytes.len() < DEBUG_OFFSETS_SIZE || &bytes[..8] != b"xdebugpy" {
            return None;
        }
        let at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let version = at(8);
        // 3.13 only: later versions append and reorder records.
        if version >> 16 != 0x030d || at(16) != 0 {
            return None; // Another version, or free-threaded.
        }
        Some(DebugOffsets {
            version,
            interpreters_head: at(40),
            interp_next: at(64),
            interp_threads_head: at(72),
            thread_next: at(168),
            thread_current_frame: at(184),
            thread_native_id: at(200),
            frame_previous: at(232),
            frame_executable: at(240),
            frame_owner: at(264),
            code_filename: at(280),
            code_qualname: at(296),
            code_firstlineno: at(312),
            ob_type: at(360),
            tp_name: at(376),
            unicode_state: at(544),
            unicode_length: at(552),
            unicode_ascii_size: at(560),
        })
    }
}

/// Reads another process's memory.
struct Memory(nix::unistd::Pid);

impl Memory {
    fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        use nix::sys::uio::{process_vm_readv, RemoteIoVec};
        let mut buf = vec![0u8; len];
        let remote = [RemoteIoVec {
            base: usize::try_from(addr).ok()?,
            len,
        }];
        let n =
            process_vm_readv(self.0, &mut [std::io::IoSliceMut::new(&mut buf)], &remote).ok()?;
        (n == len).then_some(buf)
    }

    fn u64(&self, addr: u64) -> Option<u64> {
        let b = self.read(addr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    fn u32(&self, addr: u64) -> Option<u32> {
        let b = self.read(addr, 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    /// A NUL-terminated C string of at most `MAX_TEXT` bytes.
    fn c_string(&self, addr: u64) -> Option<String> {
        let bytes = self.read(addr, 64)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        String::from_utf8(bytes[..end].to_vec()).ok()
    }

    /// A compact ASCII `str` object's text (what code objects' names and
    /// files almost always are); `None` for anything else.
    fn ascii_str(&self, obj: u64, o: &DebugOffsets) -> Option<String> {
        let length = self.u64(obj + o.unicode_length)?;
        let state = self.u32(obj + o.unicode_state)?;
        // state bits: interned 0-1, kind 2-4, compact 5, ascii 6.
        let (kind, compact, ascii) = ((state >> 2) & 7, state >> 5 & 1, state >> 6 & 1);
        if kind != 1 || compact != 1 || ascii != 1 || length > MAX_TEXT {
            return None;
        }
        let bytes = self.read(obj + o.unicode_ascii_size, length as usize)?;
        String::from_utf8(bytes).ok()
    }
}

/// `_PyRuntime`'s address in process `tgid`: the symbol of the
/// executable mapping of libpython (or a static python binary) that
/// defines it, relocated by where the file is mapped.
pub fn runtime_address(maps: &ProcessMaps) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    for m in &maps.mappings {
        let Some(file) = &m.file else { continue };
        let name = file.name();
        if !(name.starts_with("libpython3") || name.starts_with("python3")) {
            continue;
        }
        let symbol = || {
            let data = std::fs::read(Path::new(&file.open_path)).ok()?;
            let elf = object::File::parse(&*data).ok()?;
            let found = elf
                .dynamic_symbols()
                .chain(elf.symbols())
                .find(|s| s.name() == Ok("_PyRuntime"))?
                .address();
            Some(found)
        };
        // The executable of a shared-library build does not define it.
        let Some(address) = symbol() else { continue };
        // Where the file's first byte is mapped, if its segments keep
        // file offset == address (the usual layout; the cookie checks it).
        return m.start.checked_sub(m.offset)?.checked_add(address);
    }
    None
}

/// The Python frames of thread `tid` of process `tgid` (innermost first),
/// given `_PyRuntime`'s address; empty when the thread runs no Python or
/// the process is not a 3.13 interpreter.
pub fn thread_frames(tgid: u32, tid: u32, runtime: u64) -> Vec<PyFrame> {
    let memory = Memory(nix::unistd::Pid::from_raw(tgid as i32));
    let Some(o) = memory
        .read(runtime, DEBUG_OFFSETS_SIZE)
        .and_then(|b| DebugOffsets::parse(&b))
    else {
        return Vec::new();
    };
    let Some(tstate) = find_thread(&memory, &o, runtime, tid) else {
        return Vec::new();
    };
    let mut frames = Vec::new();
    let mut frame = memory.u64(tstate + o.thread_current_frame).unwrap_or(0);
    while frame != 0 && frames.len() < MAX_FRAMES {
        let owner = memory.read(frame + o.frame_owner, 1).map(|b| b[0]);
        let code = memory.u64(frame + o.frame_executable).unwrap_or(0);
        if owner != Some(FRAME_OWNED_BY_CSTACK) && code != 0 {
            match code_frame(&memory, &o, code) {
                Some(f) => frames.push(f),
                None => break,
            }
        }
        frame = memory.u64(frame + o.frame_previous).unwrap_or(0);
    }
    frames
}

fn find_thread(memory: &Memory, o: &DebugOffsets, runtime: u64, tid: u32) -> Option<u64> {
    let mut interp = memory.u64(runtime + o.interpreters_head)?;
    while interp != 0 {
        let mut tstate = memory.u64(interp + o.interp_threads_head)?;
        for _ in 0..MAX_THREADS {
            if tstate == 0 {
                break;
            }
            if memory.u64(tstate + o.thread_native_id)? == u64::from(tid) {
                return Some(tstate);
            }
            tstate = memory.u64(tstate + o.thread_next)?;
        }
        interp = memory.u64(interp + o.interp_next)?;
    }
    None
}

/// A code object's frame; `None` if `code` is not a code object.
fn code_frame(memory: &Memory, o: &DebugOffsets, code: u64) -> Option<PyFrame> {
    let ty = memory.u64(code + o.ob_type)?;
    let type_name = memory.c_string(memory.u64(ty + o.tp_name)?)?;
    if type_name != "code" {
        return None;
    }
    Some(PyFrame {
        qualname: memory.ascii_str(memory.u64(code + o.code_qualname)?, o)?,
        filename: memory.ascii_str(memory.u64(code + o.code_filename)?, o)?,
        firstlineno: memory.u32(code + o.code_firstlineno)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::stacks::maps::{read_maps, FileCache};
    use std::time::{Duration, Instant};

    const PYTHON_313: &str = "/root/.pyenv/versions/3.13.0/bin/python3.13";

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let mut bytes = vec![0u8; DEBUG_OFFSETS_SIZE];
        assert!(DebugOffsets::parse(&bytes).is_none());
        bytes[..8].copy_from_slice(b"xdebugpy");
        bytes[8..16].copy_from_slice(&0x030c_01f0u64.to_le_bytes());
        assert!(
            DebugOffsets::parse(&bytes).is_none(),
            "3.12 has no such layout"
        );
        bytes[8..16].copy_from_slice(&0x030d_00f0u64.to_le_bytes());
        assert_eq!(DebugOffsets::parse(&bytes).unwrap().version, 0x030d_00f0);
        assert!(DebugOffsets::parse(&bytes[..100]).is_none());
    }

    #[test]
    fn a_sleeping_python_313_thread_shows_its_functions() {
        assert!(
            Path::new(PYTHON_313).is_file(),
            "{PYTHON_313} is missing: it is part of the machine image (pyenv)"
        );
        let script = "import threading, time\nclass Waiter:\n    def py_sleep(self):\n        time.sleep(30)\ndef outer():\n    Waiter().py_sleep()\ndef py_worker():\n    time.sleep(30)\nthreading.Thread(target=py_worker, daemon=True).start()\nprint('ready', flush=True)\nouter()\n";
        let mut child = std::process::Command::new(PYTHON_313)
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start python3.13");
        let pid = child.id();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let mut files = FileCache::default();
        let maps = read_maps(pid, &mut files).unwrap();
        let runtime = runtime_address(&maps).expect("_PyRuntime in libpython3.13");
        // The main thread reaches the sleep soon after printing.
        let start = Instant::now();
        let frames = loop {
            let frames = thread_frames(pid, pid, runtime);
            if frames.len() >= 3 || start.elapsed() > Duration::from_secs(5) {
                break frames;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Another thread id: nothing.
        // The other thread, by its own id; a thread that is not Python's:
        // nothing.
        let worker: u32 = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .find(|&tid| tid != pid)
            .expect("the worker thread");
        let worker_frames = thread_frames(pid, worker, runtime);
        let other = thread_frames(pid, 1, runtime);
        let _ = child.kill();
        let _ = child.wait();
        assert!(other.is_empty());
        let names: Vec<&str> = frames.iter().map(|f| f.qualname.as_str()).collect();
        assert_eq!(
            names,
            ["Waiter.py_sleep", "outer", "<module>"],
            "{frames:?}"
        );
        assert_eq!(
            (frames[0].filename.as_str(), frames[0].firstlineno),
            ("<string>", 3)
        );
        let worker_names: Vec<&str> = worker_frames.iter().map(|f| f.qualname.as_str()).collect();
        assert_eq!(
            worker_names.first(),
            Some(&"py_worker"),
            "{worker_frames:?}"
        );
        assert!(worker_names.contains(&"Thread.run"), "{worker_frames:?}");
    }
}
