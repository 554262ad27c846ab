//! Recovering the frames a frame-pointer walk loses.
//!
//! The kernel walks user stacks by frame pointer. Distribution libraries
//! (libc above all) are built without frame pointers, so the walk from a
//! thread blocked in `nanosleep` or `read` goes from the libc leaf straight
//! to the caller's caller: the application function that called libc —
//! the one a user wants to see — is lost. The capture also copies the top
//! of the user stack (`peek`, 512 bytes at the stack pointer: enough for
//! the frames of libc's blocking calls, `pthread_cond_wait`'s 192 bytes
//! being the largest common one, and for CPython's 384-byte eval loop
//! frame, above which `-X perf` puts the Python function's trampoline). Here the innermost frames are unwound
//! with the modules' `.eh_frame` (DWARF CFI, through framehop) over that
//! window, and the result is spliced onto the frame-pointer chain where
//! the two meet.

use std::ops::Range;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::maps::{MappedFile, ProcessMaps};
#[cfg(target_arch = "x86_64")]
use super::sigframe::{sigframe_regs, Trampolines};

/// A user stack as captured.
#[derive(Debug, Clone, Default)]
pub struct RawUser<'a> {
    /// Frame-pointer walk: instruction pointer, then return addresses.
    pub ips: &'a [u64],
    pub sp: u64,
    pub bp: u64,
    /// The user stack at `sp`, if it could be copied.
    pub peek: Option<&'a [u8]>,
    /// The process, whose live stack extends the window (0: none).
    pub tgid: u32,
}

/// Unwind sections of one ELF file.
#[derive(Clone)]
struct ElfUnwind {
    text_svma: Option<Range<u64>>,
    got_svma: Option<Range<u64>>,
    eh_frame: Option<(Range<u64>, Arc<[u8]>)>,
    eh_frame_hdr: Option<(Range<u64>, Arc<[u8]>)>,
    /// (file offset, file size, virtual address) of each PT_LOAD segment.
    segments: Vec<(u64, u64, u64)>,
}

fn read_elf_unwind(file: &MappedFile) -> Option<ElfUnwind> {
    use object::{Object, ObjectSection, ObjectSegment};
    let handle = std::fs::File::open(&file.open_path).ok()?;
    let cache = object::ReadCache::new(handle);
    let elf = object::File::parse(&cache).ok()?;
    let range = |s: &object::Section<'_, '_, &object::ReadCache<std::fs::File>>| {
        s.address()..s.address() + s.size()
    };
    let section = |name: &str| {
        let s = elf.section_by_name(name)?;
        let data: Arc<[u8]> = Arc::from(s.data().ok()?);
        Some((range(&s), data))
    };
    Some(ElfUnwind {
        text_svma: elf.section_by_name(".text").map(|s| range(&s)),
        got_svma: elf.section_by_name(".got").map(|s| range(&s)),
        eh_frame: section(".eh_frame"),
        eh_frame_hdr: section(".eh_frame_hdr"),
        segments: elf
            .segments()
            .map(|s| (s.file_range().0, s.file_range().1, s.address()))
            .collect(),
    })
}

/// Unwind data of mapped files, parsed once per file.
#[derive(Default)]
pub struct UnwindCache {
    elves: FxHashMap<(u64, u64), Option<ElfUnwind>>,
    #[cfg(target_arch = "x86_64")]
    rules: Option<framehop::x86_64::CacheX86_64>,
    /// Unwinders with every executable mapping of one maps reading added,
    /// by `ProcessMaps::reading`: building one costs a few µs per mapping.
    #[cfg(target_arch = "x86_64")]
    unwinders: FxHashMap<u64, framehop::x86_64::UnwinderX86_64<Arc<[u8]>>>,
    #[cfg(target_arch = "x86_64")]
    trampolines: Trampolines,
}

impl UnwindCache {
    fn elf(&mut self, file: &MappedFile) -> Option<ElfUnwind> {
        // Unwind tables are copies of .eh_frame/.eh_frame_hdr (libc's are
        // ~100 KiB): keep those of the files in use, not of every file seen.
        if self.elves.len() > 128 {
            self.elves.clear();
        }
        self.elves
            .entry(file.key)
            .or_insert_with(|| read_elf_unwind(file))
            .clone()
    }

    /// Files parsed (with or without unwind data).
    pub fn len(&self) -> usize {
        self.elves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.elves.is_empty()
    }
}

/// Addresses below this are in the null page, which nothing maps: a walk
/// that reads one as a return address has left the stack's frames
/// (`libc.so.6+0x…;0x0` after a signal trampoline, say).
pub(super) const NULL_PAGE_END: u64 = 4096;

/// A user stack as recovered.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    pub ips: Vec<u64>,
    /// The unwind needed the live stack and found it changed since the
    /// capture (the thread ran on): another capture with the same window
    /// may unwind further, so this result is not one to remember.
    pub live_changed: bool,
    /// Whether the unwind went through a signal frame.
    pub signal_frames: bool,
}

/// The user stack with the innermost frames recovered where possible,
/// ending before the first address a walk read from outside its frames.
pub fn recover(raw: &RawUser<'_>, maps: &ProcessMaps, cache: &mut UnwindCache) -> Recovered {
    let (mut ips, live_changed, signal_frames) = recover_frames(raw, maps, cache);
    if let Some(end) = ips.iter().position(|&addr| addr < NULL_PAGE_END) {
        ips.truncate(end);
    }
    Recovered {
        ips,
        live_changed,
        signal_frames,
    }
}

/// Frames unwound from the captured registers, innermost first.
#[derive(Debug, Default)]
struct Unwound {
    ips: Vec<u64>,
    /// Index of the last signal trampoline the unwind went through; the
    /// interrupted code's instruction pointer follows it.
    trampoline: Option<usize>,
    /// The live stack was needed but no longer matched the window.
    live_changed: bool,
}

fn recover_frames(
    raw: &RawUser<'_>,
    maps: &ProcessMaps,
    cache: &mut UnwindCache,
) -> (Vec<u64>, bool, bool) {
    if raw.ips.is_empty() {
        return (Vec::new(), false, false);
    }
    let unwound = unwind_window(raw, maps, cache);
    let (live_changed, signal_frames) = (unwound.live_changed, unwound.trampoline.is_some());
    (splice_chain(raw.ips, unwound), live_changed, signal_frames)
}

/// The unwound frames continued with the frame-pointer chain `fp` where
/// the two meet.
fn splice_chain(fp: &[u64], unwound: Unwound) -> Vec<u64> {
    if unwound.ips.len() <= 1 {
        return fp.to_vec();
    }
    // Past a signal frame the chain only counts from the trampoline on:
    // a handler's frames would lead the splice back around it (the
    // chain skips the interrupted function).
    let (from, fp_from) = match unwound.trampoline {
        Some(t) => match fp.iter().position(|&a| a == unwound.ips[t]) {
            Some(q) => (t + 1, q),
            None => (unwound.ips.len(), fp.len()),
        },
        None => (1, 0),
    };
    let fp_rest = fp.get(fp_from + 1..).unwrap_or_default();
    // Where the unwound frames meet the frame-pointer chain, continue
    // with the chain; if they never meet, the chain's first frame after the
    // leaf (or the trampoline) is its caller's caller (the leaf kept the
    // frame pointer).
    for (j, addr) in unwound.ips.iter().enumerate().skip(from) {
        if let Some(p) = fp_rest.iter().position(|a| a == addr) {
            let mut out = unwound.ips[..j].to_vec();
            out.extend_from_slice(&fp_rest[p..]);
            return out;
        }
    }
    let mut out = unwound.ips;
    out.extend_from_slice(fp_rest);
    out
}

#[cfg(target_arch = "x86_64")]
fn unwind_window(raw: &RawUser<'_>, maps: &ProcessMaps, cache: &mut UnwindCache) -> Unwound {
    use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
    use framehop::{FrameAddress, Unwinder};

    let Some(peek) = raw.peek else {
        return Unwound::default();
    };
    if !cache.unwinders.contains_key(&maps.reading) {
        if cache.unwinders.len() >= 256 {
            cache.unwinders.clear();
        }
        let unwinder = build_unwinder(maps, cache);
        cache.unwinders.insert(maps.reading, unwinder);
    }
    let mut memory = StackMemory {
        tgid: raw.tgid,
        sp: raw.sp,
        window: peek,
        live: None,
        extended: false,
    };
    let mut read_stack = |addr: u64| memory.read(addr);
    let rules = cache.rules.get_or_insert_with(CacheX86_64::new);
    let unwinder = &cache.unwinders[&maps.reading];
    let mut regs = UnwindRegsX86_64::new(raw.ips[0], raw.sp, raw.bp);
    let mut address = FrameAddress::InstructionPointer(raw.ips[0]);
    let mut out = Unwound {
        ips: vec![raw.ips[0]],
        trampoline: None,
        live_changed: false,
    };
    while out.ips.len() < MAX_FRAMES {
        // A signal handler returns into the trampoline, whose frame is
        // the kernel's signal frame: the interrupted code's registers.
        if let FrameAddress::ReturnAddress(ret) = address {
            if cache.trampolines.is(maps, ret.get()) {
                let Some((ip, sp, bp)) = sigframe_regs(regs.sp(), &mut read_stack) else {
                    break;
                };
                out.trampoline = Some(out.ips.len() - 1);
                out.ips.push(ip);
                regs = UnwindRegsX86_64::new(ip, sp, bp);
                address = FrameAddress::InstructionPointer(ip);
                continue;
            }
        }
        match unwinder.unwind_frame(address, &mut regs, rules, &mut read_stack) {
            Ok(Some(ret)) => match FrameAddress::from_return_address(ret) {
                Some(next) => {
                    out.ips.push(ret);
                    address = next;
                }
                None => break,
            },
            Ok(None) | Err(_) => break,
        }
    }
    out.live_changed = memory.changed();
    out
}

/// An unwinder for every executable, file-backed mapping in `maps`.
#[cfg(target_arch = "x86_64")]
fn build_unwinder(
    maps: &ProcessMaps,
    cache: &mut UnwindCache,
) -> framehop::x86_64::UnwinderX86_64<Arc<[u8]>> {
    use framehop::x86_64::UnwinderX86_64;
    use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};

    let mut unwinder: UnwinderX86_64<Arc<[u8]>> = UnwinderX86_64::new();
    for m in maps.mappings.iter().filter(|m| m.exec) {
        let Some(file) = &m.file else { continue };
        let Some(elf) = cache.elf(file) else { continue };
        // Load bias: where the mapping's first byte lives in the file's
        // address space.
        let Some(&(seg_off, _, seg_vaddr)) = elf
            .segments
            .iter()
            .find(|&&(off, size, _)| (off..off + size.max(1)).contains(&m.offset))
        else {
            continue;
        };
        let bias = m.start.wrapping_sub(seg_vaddr + (m.offset - seg_off));
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: elf.text_svma.clone(),
            got_svma: elf.got_svma.clone(),
            eh_frame_svma: elf.eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: elf.eh_frame.as_ref().map(|(_, d)| d.clone()),
            eh_frame_hdr_svma: elf.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: elf.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
            ..Default::default()
        };
        unwinder.add_module(Module::new(file.name(), m.start..m.end, bias, info));
    }
    unwinder
}

/// Frames unwound at most (the kernel's walk keeps 32).
const MAX_FRAMES: usize = 32;
/// Live stack read first.
const LIVE_STACK_FIRST: usize = 4 * 1024;
/// Live stack read beyond the captured window, at most.
const LIVE_STACK_BYTES: usize = 64 * 1024;

/// The stack as the unwinder reads it: the captured window, then, beyond
/// it, the live stack of the process — only while its top still matches
/// the window byte for byte. Callers' frames lie above the window and do
/// not change while the thread stays inside the calls the window shows;
/// a thread that has returned past them has rewritten the window.
struct StackMemory<'a> {
    tgid: u32,
    sp: u64,
    window: &'a [u8],
    /// The live stack from `sp`, read once when first needed; empty when
    /// unreadable or changed.
    live: Option<Vec<u8>>,
    /// Whether `live` has been read to `LIVE_STACK_BYTES`.
    extended: bool,
}

impl StackMemory<'_> {
    /// Whether the live stack was read and found changed (or gone).
    fn changed(&self) -> bool {
        self.tgid != 0 && self.live.as_ref().is_some_and(Vec::is_empty)
    }

    fn read(&mut self, addr: u64) -> Result<u64, ()> {
        let off = addr.checked_sub(self.sp).ok_or(())? as usize;
        let word = |bytes: &[u8]| -> Result<u64, ()> {
            Ok(u64::from_le_bytes(
                bytes
                    .get(off..off + 8)
                    .ok_or(())?
                    .try_into()
                    .map_err(|_| ())?,
            ))
        };
        if off + 8 <= self.window.len() {
            return word(self.window);
        }
        // Most callers' frames are within a few KiB: read that much first,
        // all of it only when the unwinder goes further (at whichever
        // read that is: a signal frame's registers and the frames above
        // it are usually past the first KiBs).
        let live = self
            .live
            .get_or_insert_with(|| read_live(self.tgid, self.sp, self.window, LIVE_STACK_FIRST));
        if off + 8 > live.len() && live.len() == LIVE_STACK_FIRST && !self.extended {
            *live = read_live(self.tgid, self.sp, self.window, LIVE_STACK_BYTES);
            self.extended = true;
        }
        word(live)
    }
}

/// The live stack of process `tgid` from `sp`, if its first bytes are
/// still `window`.
fn read_live(tgid: u32, sp: u64, window: &[u8], bytes: usize) -> Vec<u8> {
    use nix::sys::uio::{process_vm_readv, RemoteIoVec};
    if tgid == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; bytes];
    let remote = [RemoteIoVec {
        base: sp as usize,
        len: bytes,
    }];
    let pid = nix::unistd::Pid::from_raw(tgid as i32);
    // A partial read ends at the top of the stack mapping.
    let n = process_vm_readv(pid, &mut [std::io::IoSliceMut::new(&mut buf)], &remote).unwrap_or(0);
    buf.truncate(n);
    if buf.len() < window.len() || buf[..window.len()] != *window {
        buf.clear();
    }
    buf
}

#[cfg(not(target_arch = "x86_64"))]
fn unwind_window(_raw: &RawUser<'_>, _maps: &ProcessMaps, _cache: &mut UnwindCache) -> Unwound {
    Unwound::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_stack_extends_a_matching_window_only() {
        let frame = std::hint::black_box([0x5au8; 512]);
        let sp = frame.as_ptr() as u64;
        let me = std::process::id();
        let live = read_live(me, sp, &frame[..128], LIVE_STACK_BYTES);
        assert!(
            live.len() >= 512 && live[..512] == frame[..],
            "read {} bytes",
            live.len()
        );
        let mut other = frame;
        other[3] = 0;
        assert!(
            read_live(me, sp, &other[..128], LIVE_STACK_BYTES).is_empty(),
            "a changed window must not be extended"
        );
        assert!(read_live(0, sp, &frame[..128], LIVE_STACK_BYTES).is_empty());
        let mut memory = StackMemory {
            tgid: me,
            sp,
            window: &frame[..16],
            live: None,
            extended: false,
        };
        assert_eq!(memory.read(sp + 256), Ok(0x5a5a_5a5a_5a5a_5a5a));
        assert_eq!(memory.read(sp - 8), Err(()));
        assert!(!memory.changed());
        let mut memory = StackMemory {
            tgid: me,
            sp,
            window: &other[..16],
            live: None,
            extended: false,
        };
        assert_eq!(memory.read(sp + 256), Err(()));
        assert!(memory.changed(), "a window the live stack no longer has");
    }

    #[test]
    fn live_stack_is_extended_at_the_first_read_past_its_first_kib() {
        // A first read within LIVE_STACK_FIRST, a later one beyond it (the
        // frames above a signal frame): both are read.
        let frame = std::hint::black_box([0x5au8; 3 * LIVE_STACK_FIRST]);
        let sp = frame.as_ptr() as u64;
        let mut memory = StackMemory {
            tgid: std::process::id(),
            sp,
            window: &frame[..16],
            live: None,
            extended: false,
        };
        assert_eq!(memory.read(sp + 256), Ok(0x5a5a_5a5a_5a5a_5a5a));
        let far = sp + 2 * LIVE_STACK_FIRST as u64;
        assert_eq!(memory.read(far), Ok(0x5a5a_5a5a_5a5a_5a5a));
    }

    /// A frame-pointer chain captured without the top of the stack.
    fn chain_only(ips: &[u64]) -> RawUser<'_> {
        RawUser {
            ips,
            sp: 0x7000,
            bp: 0x7100,
            peek: None,
            tgid: 0,
        }
    }

    #[test]
    fn without_a_window_the_chain_is_kept() {
        let ips = [0x1000, 0x2000, 0x3000];
        assert_eq!(
            recover(
                &chain_only(&ips),
                &ProcessMaps::default(),
                &mut UnwindCache::default()
            )
            .ips,
            ips
        );
        assert!(recover(
            &RawUser::default(),
            &ProcessMaps::default(),
            &mut UnwindCache::default()
        )
        .ips
        .is_empty());
    }

    #[test]
    fn a_chain_ends_before_an_address_in_the_null_page() {
        for (ips, kept) in [
            (&[0x1000, 0x2000, 0x0][..], 2),
            (&[0x1000, 0x2000, 0x7d9, 0x3000][..], 2),
            (&[0x1000, 0x2000, 0x3000][..], 3),
        ] {
            assert_eq!(
                recover(
                    &chain_only(ips),
                    &ProcessMaps::default(),
                    &mut UnwindCache::default()
                )
                .ips,
                ips[..kept],
                "{ips:x?}"
            );
        }
    }

    #[test]
    fn past_a_signal_frame_the_chain_joins_after_the_trampoline() {
        // leaf, handler, trampoline 0x30, interrupted 0x40, caller 0x50, main 0x60
        let unwound = |ips: &[u64], t: Option<usize>| Unwound {
            ips: ips.to_vec(),
            trampoline: t,
            live_changed: false,
        };
        // The chain has the handler, the trampoline, then the caller's
        // frames: joined at the caller, not at the handler.
        let fp = [0x10, 0x20, 0x30, 0x50, 0x60, 0x70];
        assert_eq!(
            splice_chain(&fp, unwound(&[0x10, 0x20, 0x30, 0x40, 0x50], Some(2))),
            [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70]
        );
        // The unwind stops at the interrupted function: the chain after the
        // trampoline continues it.
        assert_eq!(
            splice_chain(&fp, unwound(&[0x10, 0x20, 0x30, 0x40], Some(2))),
            [0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70]
        );
        // A chain without the trampoline (garbage past the handler) adds
        // nothing to the unwound frames.
        let fp = [0x10, 0x20, 0x999, 0x60];
        assert_eq!(
            splice_chain(&fp, unwound(&[0x10, 0x20, 0x30, 0x40, 0x50, 0x60], Some(2))),
            [0x10, 0x20, 0x30, 0x40, 0x50, 0x60]
        );
        // Without a signal frame, the first meeting point as before.
        assert_eq!(
            splice_chain(&[0x10, 0x50, 0x60], unwound(&[0x10, 0x20, 0x50], None)),
            [0x10, 0x20, 0x50, 0x60]
        );
        assert_eq!(
            splice_chain(&[0x10, 0x50, 0x60], unwound(&[0x10, 0x20], None)),
            [0x10, 0x20, 0x50, 0x60]
        );
    }
}
