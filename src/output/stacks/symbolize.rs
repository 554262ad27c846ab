//! Addresses to frame text, with blazesym.
//!
//! Kernel addresses are symbolized from kallsyms; user addresses are first
//! normalized through the process's cached maps to (file, file offset) and
//! symbolized from that file (ELF symbols, DWARF for `[file:line]` and
//! inlined frames when present). Results are cached per (file, offset) —
//! shared by every process that maps the file — and per kernel address.
//! A frame that cannot be symbolized keeps a stable raw form
//! (`libfoo.so+0x1a2b`, or `0x7f…` outside any file) instead of vanishing.
//!
//! Every frame but an exact instruction pointer is a return address: the
//! instruction after a call. It is looked up one byte earlier, inside the
//! call — after a call that never returns the return address is already
//! the next function — and shown with its real offset.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Kernel, Source};
use blazesym::symbolize::{Input, Sym, Symbolized, Symbolizer as Blaze};
use blazesym::MaybeDefault;
use rustc_hash::FxHashMap;

use super::maps::ProcessMaps;
use super::perfmap::{self, PerfMap};
use crate::store::schema::FrameKind;

/// Module name of the kernel image.
const KERNEL: &str = "vmlinux";
/// Module name of JIT code named from a perf map.
const JIT: &str = "[jit]";
/// Cached frames before the caches are cleared.
const FRAME_CACHE_LIMIT: usize = 200_000;
/// Distinct files blazesym has opened (and keeps parsed: ELF sections,
/// DWARF) before it is replaced by a fresh instance. Without this a host
/// that runs ever new binaries (deploys, build jobs) would grow the agent
/// without bound.
const PARSED_FILE_LIMIT: usize = 128;
/// How long blazesym's parsed state (kallsyms, ELF sections, DWARF) is
/// kept without a lookup before it is released (`release_idle`): on a
/// steady host every stack is a cache hit after the first minute, and the
/// parsed state was 16 of the agent's 33 MiB of anonymous memory at 10,000
/// threads (kallsyms 6 MiB; libc's separate debug file, decompressed, 10
/// MiB). A lookup after the release parses again what it needs. Kernel
/// and user files idle apart: the kernel keeps showing new addresses
/// (interrupts, kernel threads) long after the processes' stacks are all
/// cached, and a single instance then kept the user files' DWARF for good.
pub const PARSED_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// One symbolized address: the frame texts (an address inside inlined
/// calls yields several, innermost first) and the function it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    pub texts: Vec<Arc<str>>,
    /// The outer (non-inlined) function's name, if known.
    pub function: Option<Arc<str>>,
    /// The module's name (`libc.so.6`, `vmlinux`, `[ext4]`).
    pub module: Arc<str>,
    /// Kernel address inside the scheduler's own code (`.sched.text`).
    pub sched: bool,
    /// What produced the code: every text of the address has this kind.
    pub kind: FrameKind,
}

/// A user address normalized: its cache key (file, file offset, is a
/// return address), the open file to read and the module name.
type Located<'a> = (((u64, u64), u64, bool), &'a Path, String);

/// One blazesym instance and its last lookup, released when idle.
struct Parsed {
    blaze: Blaze,
    /// The last lookup `blaze` made; None: it holds nothing parsed.
    used_at: Option<std::time::Instant>,
}

impl Parsed {
    fn new() -> Parsed {
        Parsed {
            blaze: Blaze::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
            used_at: None,
        }
    }

    fn symbolize(&mut self, source: &Source<'_>, input: Input<&[u64]>) -> Vec<Symbolized<'_>> {
        let results = self.blaze.symbolize(source, input).unwrap_or_default();
        // Idle from the end of the lookup (parsing kallsyms takes ~0.1 s).
        self.used_at = Some(std::time::Instant::now());
        results
    }

    /// Start afresh if no lookup came for `idle`; true if it held
    /// anything.
    fn release_idle(&mut self, idle: std::time::Duration) -> bool {
        if self.used_at.is_none_or(|at| at.elapsed() < idle) {
            return false;
        }
        *self = Parsed::new();
        true
    }
}

/// Symbolizes kernel and user addresses, with caches.
pub struct Symbolizer {
    /// Kallsyms.
    kernel_parsed: Parsed,
    /// User files (ELF sections, DWARF).
    user_parsed: Parsed,
    /// By (address, is a return address).
    kernel: FxHashMap<(u64, bool), Frames>,
    /// By (file, file offset, is a return address).
    user: FxHashMap<((u64, u64), u64, bool), Frames>,
    sched_text: Option<Range<u64>>,
    /// Files handed to `user_parsed` since it was created.
    parsed: rustc_hash::FxHashSet<(u64, u64)>,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

impl Symbolizer {
    pub fn new() -> Symbolizer {
        Symbolizer {
            kernel_parsed: Parsed::new(),
            user_parsed: Parsed::new(),
            kernel: FxHashMap::default(),
            user: FxHashMap::default(),
            sched_text: sched_text_range(),
            parsed: Default::default(),
        }
    }

    /// Release blazesym's parsed kernel symbols, and apart from them its
    /// parsed user files, if it made no lookup in them for `idle` (the
    /// frame caches stay); true if anything was released.
    pub fn release_idle(&mut self, idle: std::time::Duration) -> bool {
        let kernel = self.kernel_parsed.release_idle(idle);
        let user = self.user_parsed.release_idle(idle);
        if user {
            self.parsed.clear();
        }
        kernel || user
    }

    /// Addresses cached.
    pub fn cached(&self) -> usize {
        self.kernel.len() + self.user.len()
    }

    /// Files blazesym holds parsed right now.
    pub fn parsed_files(&self) -> usize {
        self.parsed.len()
    }

    fn trim(&mut self) {
        if self.cached() > FRAME_CACHE_LIMIT {
            self.kernel.clear();
            self.user.clear();
        }
        if self.parsed.len() > PARSED_FILE_LIMIT {
            self.user_parsed = Parsed::new();
            self.parsed.clear();
        }
    }

    /// Frames of kernel addresses; `first_exact`: the first is an
    /// interrupted instruction, not a return address.
    pub fn kernel(&mut self, ips: &[u64], first_exact: bool) -> Vec<Frames> {
        self.trim();
        let keys: Vec<(u64, bool)> = ips
            .iter()
            .enumerate()
            .map(|(i, &a)| (a, i > 0 || !first_exact))
            .collect();
        let mut missing: Vec<(u64, bool)> = keys
            .iter()
            .copied()
            .filter(|k| !self.kernel.contains_key(k))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let lookups: Vec<u64> = missing.iter().map(|&(a, ret)| a - u64::from(ret)).collect();
            let source = Source::Kernel(Kernel {
                vmlinux: MaybeDefault::None,
                debug_syms: false,
                ..Kernel::default()
            });
            let results = self
                .kernel_parsed
                .symbolize(&source, Input::AbsAddr(&lookups));
            for (i, &(addr, ret)) in missing.iter().enumerate() {
                let sched = self
                    .sched_text
                    .as_ref()
                    .is_some_and(|r| r.contains(&(addr - u64::from(ret))));
                let frames = match results.get(i) {
                    Some(Symbolized::Sym(sym)) => frames_of(sym, KERNEL, sched, ret),
                    _ => raw_frames(format!("0x{addr:x}"), KERNEL, sched),
                };
                self.kernel.insert((addr, ret), frames);
            }
        }
        keys.iter().map(|k| self.kernel[k].clone()).collect()
    }

    /// Frames of user addresses of a process with maps `maps` and perf
    /// map `jit`: the instruction pointer, then return addresses.
    pub fn user(&mut self, maps: &ProcessMaps, jit: &PerfMap, ips: &[u64]) -> Vec<Frames> {
        self.trim();
        // Normalize: (file key, file offset of the looked-up byte, is a
        // return address) per address, or none.
        let located: Vec<Option<Located<'_>>> = ips
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let ret = i > 0;
                let lookup = addr - u64::from(ret);
                let m = maps.find(lookup)?;
                let file = m.file.as_ref()?;
                Some((
                    (file.key, lookup - m.start + m.offset, ret),
                    file.open_path.as_path(),
                    file.name(),
                ))
            })
            .collect();
        // Symbolize what is not cached, file by file.
        let mut by_file: FxHashMap<&Path, Vec<(u64, bool)>> = FxHashMap::default();
        for (key, path, _) in located.iter().flatten() {
            if !self.user.contains_key(key) {
                by_file.entry(path).or_default().push((key.1, key.2));
            }
        }
        for (path, mut wanted) in by_file {
            wanted.sort_unstable();
            wanted.dedup();
            let file = located
                .iter()
                .flatten()
                .find(|(_, p, _)| *p == path)
                .expect("present");
            let (file_key, module) = (file.0 .0, file.2.clone());
            let offsets: Vec<u64> = wanted.iter().map(|&(offset, _)| offset).collect();
            self.parsed.insert(file_key);
            let source = Source::Elf(Elf::new(path));
            let results = self
                .user_parsed
                .symbolize(&source, Input::FileOffset(&offsets));
            for (i, &(offset, ret)) in wanted.iter().enumerate() {
                let frames = match results.get(i) {
                    Some(Symbolized::Sym(sym)) => frames_of(sym, &module, false, ret),
                    _ => raw_frames(
                        format!("{module}+0x{:x}", offset + u64::from(ret)),
                        &module,
                        false,
                    ),
                };
                self.user.insert((file_key, offset, ret), frames);
            }
        }
        ips.iter()
            .zip(&located)
            .enumerate()
            .map(|(i, (&addr, located))| match located {
                Some((key, _, _)) => self.user[key].clone(),
                None => {
                    let lookup = addr - u64::from(i > 0);
                    // Code outside any file: JIT code, if the perf map
                    // names it (not cached: the map names it, cheaply).
                    match jit.find(lookup) {
                        Some((name, start)) => Frames {
                            texts: vec![perfmap::frame_text(name, addr - start)],
                            function: Some(Arc::from(name)),
                            module: Arc::from(JIT),
                            sched: false,
                            kind: FrameKind::Jit,
                        },
                        None => raw_frames(
                            format!("0x{addr:x}"),
                            maps.find(addr).map_or("", |m| &m.name),
                            false,
                        ),
                    }
                }
            })
            .collect()
    }
}

/// The kind of the frames of a module passed to `raw_frames`/`frames_of`.
fn kind_of(module: &str) -> FrameKind {
    if module == KERNEL {
        FrameKind::Kernel
    } else {
        FrameKind::Native
    }
}

fn raw_frames(text: String, module: &str, sched: bool) -> Frames {
    Frames {
        texts: vec![Arc::from(text.as_str())],
        function: None,
        module: Arc::from(module),
        sched,
        kind: kind_of(module),
    }
}

fn location(code: &blazesym::symbolize::CodeInfo<'_>) -> String {
    let file = Path::new(&code.file)
        .file_name()
        .map_or_else(|| code.file.to_string_lossy(), |f| f.to_string_lossy());
    match code.line {
        Some(line) => format!(" [{file}:{line}]"),
        None => format!(" [{file}]"),
    }
}

/// `function+0xoffset [file:line]`, preceded (innermost first) by the
/// inlined calls the address is in, each marked `[inlined]`. `ret`: the
/// symbol is of the byte before a return address, which the offset shows.
/// The module is `module`, or for kernel symbols the kernel module the
/// symbol names (`ext4`), if any.
fn frames_of(sym: &Sym<'_>, module: &str, sched: bool, ret: bool) -> Frames {
    let kind = kind_of(module);
    let module = match (module, sym.module.as_deref()) {
        (KERNEL, Some(m)) => Path::new(m)
            .file_name()
            .unwrap_or(m)
            .to_string_lossy()
            .into_owned(),
        _ => module.to_string(),
    };
    let mut texts = Vec::with_capacity(1 + sym.inlined.len());
    // Inlined functions come outermost first, each with the location of
    // the call inside its caller; the innermost's own location is the
    // symbol's code info.
    let inlined = &sym.inlined;
    for (i, f) in inlined.iter().enumerate().rev() {
        let at = if i + 1 == inlined.len() {
            sym.code_info.as_deref().map(location)
        } else {
            inlined[i + 1].code_info.as_ref().map(location)
        };
        texts.push(Arc::from(
            format!("{} [inlined]{}", f.name, at.unwrap_or_default()).as_str(),
        ));
    }
    let outer_at = match inlined.first() {
        Some(first) => first.code_info.as_ref().map(location),
        None => sym.code_info.as_deref().map(location),
    };
    let offset = sym.offset + usize::from(ret);
    texts.push(Arc::from(
        format!(
            "{}+0x{:x}{}",
            sym.name,
            offset,
            outer_at.unwrap_or_default()
        )
        .as_str(),
    ));
    Frames {
        texts,
        function: Some(Arc::from(sym.name.as_ref())),
        module: Arc::from(module.as_str()),
        sched,
        kind,
    }
}

/// The kernel's `.sched.text` section, from kallsyms.
fn sched_text_range() -> Option<Range<u64>> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").ok()?;
    let find = |name: &str| {
        kallsyms.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.next()?;
            let _kind = f.next()?;
            (f.next()? == name)
                .then(|| u64::from_str_radix(addr, 16).ok())
                .flatten()
        })
    };
    let (start, end) = (find("__sched_text_start")?, find("__sched_text_end")?);
    (start != 0 && end > start).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::stacks::maps::{read_maps, FileCache};

    #[inline(never)]
    fn marker_function_for_symbolization() -> u64 {
        marker_function_for_symbolization as fn() -> u64 as usize as u64 + 4
    }

    #[test]
    fn own_function_symbolizes_with_file_and_line() {
        let addr = marker_function_for_symbolization();
        let mut files = FileCache::default();
        let maps = read_maps(std::process::id(), &mut files).unwrap();
        let mut s = Symbolizer::new();
        let frames = s.user(&maps, &PerfMap::default(), &[addr, 0x10]);
        let text = frames[0].texts.last().unwrap();
        assert!(
            text.contains("marker_function_for_symbolization+0x4"),
            "{text}"
        );
        assert!(text.contains("symbolize.rs:"), "no file:line in {text}");
        assert_eq!(&*frames[1].texts[0], "0x10");
        // As a return address it is looked up one byte earlier, shown as is.
        let as_return = s.user(&maps, &PerfMap::default(), &[0x10, addr]);
        assert_eq!(as_return[1].texts.last(), frames[0].texts.last());
        // Cached the second time.
        let before = s.cached();
        assert_eq!(s.user(&maps, &PerfMap::default(), &[addr])[0], frames[0]);
        assert_eq!(s.cached(), before);
    }

    /// `vfs_read`'s address, from kallsyms.
    fn vfs_read() -> u64 {
        let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let addr = kallsyms
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3 && f[2] == "vfs_read").then(|| u64::from_str_radix(f[0], 16).unwrap())
            })
            .expect("vfs_read in kallsyms");
        assert_ne!(addr, 0, "kallsyms hides addresses: tests must run as root");
        addr
    }

    #[test]
    fn kernel_addresses_symbolize_from_kallsyms() {
        let addr = vfs_read();
        let mut s = Symbolizer::new();
        let frames = s.kernel(&[addr + 8, addr + 1, addr], true);
        assert_eq!(&*frames[0].texts[0], "vfs_read+0x8");
        // A return address just past the start is looked up inside.
        assert_eq!(&*frames[1].texts[0], "vfs_read+0x1");
        assert!(!frames[0].sched);
        assert!(s.sched_text.is_some());

        // Idle, the parsed state goes and the frames stay; a new address
        // is looked up again.
        assert!(!s.release_idle(std::time::Duration::from_secs(3600)));
        assert!(s.release_idle(std::time::Duration::ZERO));
        assert!(
            !s.release_idle(std::time::Duration::ZERO),
            "nothing parsed since"
        );
        let cached = s.cached();
        assert_eq!(s.kernel(&[addr + 8], true)[0], frames[0]);
        assert_eq!(s.cached(), cached, "a cached address needs no lookup");
        assert_eq!(&*s.kernel(&[addr + 9], true)[0].texts[0], "vfs_read+0x9");
        assert!(s.release_idle(std::time::Duration::ZERO));
    }

    #[test]
    fn user_files_are_released_while_kernel_lookups_go_on() {
        let (user, kernel) = (marker_function_for_symbolization(), vfs_read());
        let mut files = FileCache::default();
        let maps = read_maps(std::process::id(), &mut files).unwrap();
        let mut s = Symbolizer::new();
        let frames = s.user(&maps, &PerfMap::default(), &[user]);
        assert_eq!(s.parsed_files(), 1);
        std::thread::sleep(std::time::Duration::from_millis(100));
        s.kernel(&[kernel + 1], true);
        // The user file idled 100 ms, kallsyms not at all.
        assert!(s.release_idle(std::time::Duration::from_millis(50)));
        assert_eq!(s.parsed_files(), 0, "the user file stays parsed");
        assert!(s.user_parsed.used_at.is_none());
        assert!(
            s.kernel_parsed.used_at.is_some(),
            "kallsyms released while in use"
        );
        // Frames stay cached.
        let cached = s.cached();
        assert_eq!(s.user(&maps, &PerfMap::default(), &[user]), frames);
        assert_eq!(s.cached(), cached);
        assert!(
            s.user_parsed.used_at.is_none(),
            "a cached frame parsed again"
        );
    }
}
