//! CPython frames read from the interpreter's own memory, for splicing
//! into sampled user stacks (`super::splice`).
//!
//! Covered: CPython 3.13 (any patch release: it publishes the offsets of
//! the structures an outside reader needs at the start of `_PyRuntime`,
//! `_Py_DebugOffsets`), and the 3.11 and 3.12 releases whose layouts were
//! checked against their own headers (`offsetof` over the installed
//! `internal/pycore_*.h`): 3.11.2 (Debian 12), 3.11.7 and 3.12.1. Any
//! other version — another patch release of 3.11 or 3.12, 3.10 and older,
//! 3.14, a free-threaded or debug build — yields nothing, so its stacks keep
//! their native frames: never a wrong name.
//!
//! The version comes from the interpreter's own file: the value of its
//! `Py_Version` symbol (`PY_VERSION_HEX`), which the process's memory must
//! hold at the symbol's relocated address too (that checks the
//! relocation). `_PyRuntime` and `PyCode_Type` are found by their dynamic
//! or static symbols (libpython, or a static `python3.x` binary that
//! exports them, as Debian's does); a stripped binary without them is not
//! read.
//!
//! From `_PyRuntime` the reader walks `interpreters.head → threads.head →
//! next` to the thread state whose `native_thread_id` is the thread's id,
//! then its current frame (`tstate->current_frame` in 3.13,
//! `tstate->cframe->current_frame` before) and the `previous` chain. Each
//! frame's code object (its type must be `PyCode_Type`) gives the
//! function's qualified name, file and first line, and the frame's
//! instruction pointer (`prev_instr` in 3.11 and 3.12, `instr_ptr` in
//! 3.13: the instruction executing, for a caller its call) the line
//! executing: its code unit in `co_code_adaptive` looked up in the code
//! object's location table (`co_linetable`, a `bytes` object: its type
//! must be `PyBytes_Type`; `linetable`). A pointer outside the code, a
//! table that does not parse or does not cover exactly the code's units,
//! or an instruction without a line leaves the function's first line:
//! never another line. Frames are grouped by
//! the call of the eval loop (`_PyEval_EvalFrameDefault`) that runs them:
//! 3.12 and 3.13 push a shim frame owned by the C stack at each entry to
//! the loop, 3.11 marks the first frame a loop ran (`is_entry`). Memory is
//! read with `process_vm_readv` (the code objects of a chain in one call);
//! anything that does not look right (a type that is not `code`, a string
//! that is not compact ASCII, a chain longer than `MAX_FRAMES`, a frame
//! run by no loop) makes the whole read `None`. A `ReadCache` per process
//! keeps thread states by thread id (used only while the state there still
//! names the thread) and code objects' names and parsed location tables
//! (used only while the object still points to the same name, file and
//! table objects, which it keeps alive, and has the same first line: the
//! line itself is looked up per frame, never cached);
//! a `SymbolCache` parses each interpreter file once. On-CPU captures
//! get their chain from the on-CPU sample instead (`oncpu`: read in BPF at
//! the capture) and share the naming and grouping (`Interpreter::groups`).

use std::path::Path;

use rustc_hash::FxHashMap;

use super::maps::ProcessMaps;

/// Frames read at most per thread.
const MAX_FRAMES: usize = 256;
/// Thread states walked at most per interpreter.
const MAX_THREADS: usize = 4_096;
/// Interpreters walked at most.
const MAX_INTERPRETERS: usize = 64;
/// Bytes of a name or file read at most.
const MAX_TEXT: u64 = 1_024;
/// Size of `_Py_DebugOffsets` in 3.13.
const DEBUG_OFFSETS_SIZE: usize = 584;
/// `_PyInterpreterFrame.owner` of the C stack's shim frames (3.12+).
const FRAME_OWNED_BY_CSTACK: u8 = 3;
/// Whether frames get the line executing: unless `TS_NO_PYLINE` is set
/// (benches only: the reader as before, every frame at its first line,
/// to measure the line's cost side by side).
static LINES: std::sync::LazyLock<bool> =
    std::sync::LazyLock::new(|| std::env::var_os("TS_NO_PYLINE").is_none());

/// One Python frame: qualified name, file, the function's first line and
/// the line being executed (for a caller, the line of the call in
/// progress; the first line when it cannot be told).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyFrame {
    pub qualname: String,
    pub filename: String,
    pub firstlineno: u32,
    pub line: u32,
}

/// Where a thread state keeps its innermost frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    /// `tstate->current_frame` (3.13).
    Direct(u64),
    /// `tstate->cframe->current_frame` (3.11, 3.12).
    ViaCFrame { cframe: u64, current_frame: u64 },
}

/// How a frame shows where a call of the eval loop begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// A shim frame owned by the C stack, outside the frames the loop
    /// runs (3.12, 3.13).
    CStackShim,
    /// `_PyInterpreterFrame.is_entry` at this offset: the outermost frame
    /// the loop runs (3.11).
    IsEntry(u64),
}

/// One frame of a chain: its code object (none for a shim), the code
/// object's fingerprint at the capture (on-CPU chains), its instruction
/// pointer (0 if unknown), and whether the frame closes its loop call's
/// group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    code: Option<u64>,
    print: Option<u64>,
    instr: u64,
    closes: bool,
}

/// The offsets a reader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `PY_VERSION_HEX`.
    pub version: u64,
    interpreters_head: u64,
    interp_next: u64,
    interp_threads_head: u64,
    thread_next: u64,
    current: Current,
    thread_native_id: u64,
    frame_previous: u64,
    frame_code: u64,
    /// `prev_instr` (3.11, 3.12) or `instr_ptr` (3.13): the instruction
    /// executing (a caller: its call), as a pointer into the code.
    frame_instr: u64,
    frame_owner: u64,
    entry: Entry,
    code_filename: u64,
    code_qualname: u64,
    code_firstlineno: u64,
    /// `co_linetable` (a `bytes` object).
    code_linetable: u64,
    /// `co_code_adaptive`: the code units, inline in the object.
    code_adaptive: u64,
    ob_type: u64,
    /// `ob_size` of a variable-size object: a code object's code units,
    /// a `bytes` object's length.
    ob_size: u64,
    /// `PyBytesObject.ob_sval`.
    bytes_sval: u64,
    unicode_state: u64,
    unicode_length: u64,
    unicode_ascii_size: u64,
}

/// 3.11 releases checked (`PY_VERSION_HEX`): 3.11.2, 3.11.7.
const CHECKED_311: [u64; 2] = [0x030b_02f0, 0x030b_07f0];
/// 3.12 releases checked: 3.12.1.
const CHECKED_312: [u64; 1] = [0x030c_01f0];

impl Layout {
    /// The table of a checked 3.11 or 3.12 release; `None` for any other.
    fn of_release(version: u64) -> Option<Layout> {
        let common = Layout {
            version,
            interpreters_head: 40,
            interp_next: 0,
            interp_threads_head: 16,
            thread_next: 8,
            current: Current::ViaCFrame {
                cframe: 56,
                current_frame: 8,
            },
            thread_native_id: 160,
            frame_previous: 48,
            frame_code: 32,
            frame_instr: 56,
            frame_owner: 69,
            entry: Entry::IsEntry(68),
            code_filename: 112,
            code_qualname: 128,
            code_firstlineno: 72,
            code_linetable: 136,
            code_adaptive: 184,
            ob_type: 8,
            ob_size: 16,
            bytes_sval: 32,
            unicode_state: 32,
            unicode_length: 16,
            unicode_ascii_size: 48,
        };
        if CHECKED_311.contains(&version) {
            return Some(common);
        }
        if CHECKED_312.contains(&version) {
            return Some(Layout {
                interp_threads_head: 72,
                current: Current::ViaCFrame {
                    cframe: 56,
                    current_frame: 0,
                },
                thread_native_id: 144,
                frame_previous: 8,
                frame_code: 0,
                frame_owner: 70,
                entry: Entry::CStackShim,
                code_firstlineno: 68,
                code_adaptive: 192,
                unicode_ascii_size: 40,
                ..common
            });
        }
        None
    }

    /// Parse the start of a 3.13 `_PyRuntime` (`_Py_DebugOffsets`);
    /// `None` unless it is one, of the release `version`.
    pub fn of_debug_offsets(bytes: &[u8], version: u64) -> Option<Layout> {
        if bytes.len() < DEBUG_OFFSETS_SIZE || &bytes[..8] != b"xdebugpy" {
            return None;
        }
        let at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        // 3.13 only: later versions append and reorder records.
        if at(8) != version || version >> 16 != 0x030d || at(16) != 0 {
            return None; // Another version, or free-threaded.
        }
        Some(Layout {
            version,
            interpreters_head: at(40),
            interp_next: at(64),
            interp_threads_head: at(72),
            thread_next: at(168),
            current: Current::Direct(at(184)),
            thread_native_id: at(200),
            frame_previous: at(232),
            frame_code: at(240),
            frame_instr: at(248),
            frame_owner: at(264),
            entry: Entry::CStackShim,
            code_filename: at(280),
            code_qualname: at(296),
            code_firstlineno: at(312),
            code_linetable: at(304),
            code_adaptive: at(344),
            ob_type: at(360),
            ob_size: at(520),
            bytes_sval: at(528),
            unicode_state: at(544),
            unicode_length: at(552),
            unicode_ascii_size: at(560),
        })
    }

    /// Bytes of a frame to read for every field used.
    fn frame_len(&self) -> usize {
        let owner = match self.entry {
            Entry::IsEntry(at) => at.max(self.frame_owner),
            Entry::CStackShim => self.frame_owner,
        };
        (self
            .frame_previous
            .max(self.frame_code)
            .max(self.frame_instr)
            .max(owner)
            + 8) as usize
    }

    fn code_len(&self) -> usize {
        (self
            .code_filename
            .max(self.code_qualname)
            .max(self.code_firstlineno)
            .max(self.code_linetable)
            .max(self.ob_type)
            .max(self.ob_size)
            + 8) as usize
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

    /// `len` bytes at each of `addrs`, one after the other, in one call.
    fn read_many(&self, addrs: &[u64], len: usize) -> Option<Vec<u8>> {
        use nix::sys::uio::{process_vm_readv, RemoteIoVec};
        let mut buf = vec![0u8; addrs.len() * len];
        if addrs.is_empty() {
            return Some(buf);
        }
        let remote = addrs
            .iter()
            .map(|&a| {
                Some(RemoteIoVec {
                    base: usize::try_from(a).ok()?,
                    len,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let n =
            process_vm_readv(self.0, &mut [std::io::IoSliceMut::new(&mut buf)], &remote).ok()?;
        (n == buf.len()).then_some(buf)
    }

    fn u64(&self, addr: u64) -> Option<u64> {
        let b = self.read(addr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// A compact ASCII `str` object's text (what code objects' names and
    /// files almost always are); `None` for anything else.
    fn ascii_str(&self, obj: u64, o: &Layout) -> Option<String> {
        let head = self.read(obj, o.unicode_ascii_size as usize)?;
        let length = word(&head, o.unicode_length)?;
        let state = u32::try_from(word(&head, o.unicode_state)? & 0xffff_ffff).ok()?;
        // state bits: interned 0-1, kind 2-4, compact 5, ascii 6.
        let (kind, compact, ascii) = ((state >> 2) & 7, state >> 5 & 1, state >> 6 & 1);
        if kind != 1 || compact != 1 || ascii != 1 || length > MAX_TEXT {
            return None;
        }
        let bytes = self.read(obj + o.unicode_ascii_size, length as usize)?;
        String::from_utf8(bytes).ok()
    }
}

/// The little-endian word at `at` in `bytes`.
fn word(bytes: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// A process's interpreter, once found: where its runtime state is and
/// how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interpreter {
    runtime: u64,
    code_type: u64,
    /// `PyBytes_Type` (a location table's type); without it every frame
    /// shows its function's first line.
    bytes_type: Option<u64>,
    pub layout: Layout,
}

/// The addresses of the symbols the reader needs in one ELF file, the
/// value of its `Py_Version`, and its loadable segments (file offset,
/// size, link address) to relocate them.
#[derive(Debug, Clone)]
pub struct FileSymbols {
    runtime: u64,
    code_type: u64,
    bytes_type: Option<u64>,
    version_at: u64,
    version: u64,
    segments: Vec<(u64, u64, u64)>,
}

impl FileSymbols {
    fn read(path: &Path) -> Option<FileSymbols> {
        use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
        let data = std::fs::read(path).ok()?;
        let elf = object::File::parse(&*data).ok()?;
        let find = |name: &str| {
            elf.dynamic_symbols()
                .chain(elf.symbols())
                .find(|s| s.name() == Ok(name) && s.is_definition())
        };
        let runtime = find("_PyRuntime")?.address();
        let code_type = find("PyCode_Type")?.address();
        let bytes_type = find("PyBytes_Type").map(|s| s.address());
        let version_symbol = find("Py_Version")?;
        let version_at = version_symbol.address();
        let section = elf.section_by_index(version_symbol.section_index()?).ok()?;
        let bytes = section.data().ok()?;
        let version = word(bytes, version_at.checked_sub(section.address())?)?;
        let segments = elf
            .segments()
            .map(|s| (s.file_range().0, s.file_range().1, s.address()))
            .collect();
        Some(FileSymbols {
            runtime,
            code_type,
            bytes_type,
            version_at,
            version,
            segments,
        })
    }

    /// Load address minus link address, for the file mapped at `start`
    /// from file offset `offset` (0 for a non-PIE executable).
    fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let &(from, _, address) = self
            .segments
            .iter()
            .find(|&&(from, size, _)| from <= offset && offset < from + size)?;
        Some(start.wrapping_sub(address + (offset - from)))
    }
}

/// `FileSymbols` by file (device and inode), `None` for a file without
/// them: each interpreter file is parsed once, not once per process.
#[derive(Debug, Default)]
pub struct SymbolCache(FxHashMap<(u64, u64), Option<FileSymbols>>);

/// Files whose symbols are kept before the cache is cleared.
const SYMBOL_FILES: usize = 256;

/// The interpreter of process `tgid`, if it runs a covered CPython: the
/// libpython (or static `python3.x`) mapping that defines `_PyRuntime`,
/// with its version checked in the process's memory.
pub fn interpreter(tgid: u32, maps: &ProcessMaps, files: &mut SymbolCache) -> Option<Interpreter> {
    let memory = Memory(nix::unistd::Pid::from_raw(i32::try_from(tgid).ok()?));
    for m in &maps.mappings {
        let Some(file) = &m.file else { continue };
        let name = file.name();
        if !(name.starts_with("libpython3") || name.starts_with("python3")) {
            continue;
        }
        if files.0.len() >= SYMBOL_FILES {
            files.0.clear();
        }
        let symbols = files
            .0
            .entry(file.key)
            .or_insert_with(|| FileSymbols::read(Path::new(&file.open_path)));
        // The executable of a shared-library build does not define them.
        let Some(s) = symbols else { continue };
        let bias = s.bias(m.start, m.offset)?;
        let at = |link: u64| link.wrapping_add(bias);
        if memory.u64(at(s.version_at)) != Some(s.version) {
            return None;
        }
        let runtime = at(s.runtime);
        let layout = if s.version >> 16 == 0x030d {
            let bytes = memory.read(runtime, DEBUG_OFFSETS_SIZE)?;
            Layout::of_debug_offsets(&bytes, s.version)?
        } else {
            Layout::of_release(s.version)?
        };
        return Some(Interpreter {
            runtime,
            code_type: at(s.code_type),
            bytes_type: s.bytes_type.map(at),
            layout,
        });
    }
    None
}

/// What reading a process's frames learned, to read less next time:
/// thread states by thread id (checked on every use: the state at that
/// address must still name the thread) and code objects by address (used
/// only while the object still points to the same name, file and location
/// table objects, which it keeps alive, and has the same first line).
#[derive(Debug, Default)]
pub struct ReadCache {
    tstates: FxHashMap<u32, u64>,
    codes: FxHashMap<u64, Code>,
    /// Heap bytes of the tables in `codes`, as parsed.
    table_bytes: usize,
}

/// A code object read: the pointers it was read through (its identity),
/// its names, and its location table once a frame needed it (`None`
/// inside: unreadable or not understood; its frames show the first line).
#[derive(Debug)]
struct Code {
    qualname: u64,
    filename: u64,
    firstlineno: u32,
    linetable: u64,
    frame: PyFrame,
    table: Option<Option<LineTable>>,
}

/// Thread states a `ReadCache` keeps before it is cleared (16 bytes
/// each: a process's whole pool fits).
const TSTATE_LIMIT: usize = 16_384;
/// Code objects' names a `ReadCache` keeps before it is cleared (a few
/// hundred bytes each, per process).
const CODE_LIMIT: usize = 2_048;
/// Heap bytes of parsed location tables a `ReadCache` keeps before they
/// are dropped (12 bytes per entry of a table, an entry per 1 to 8 code
/// units: a typical function's takes a few hundred bytes).
const TABLE_BYTES: usize = 2 << 20;

mod frames;
mod linetable;
mod oncpu;
use linetable::LineTable;
pub use oncpu::{Chain, Publisher};

#[cfg(test)]
mod tests;
