//! Signal frames on x86_64: recognising a signal trampoline, and the
//! registers of the code a signal interrupted.
//!
//! A signal handler returns into a trampoline (glibc's and musl's
//! `__restore_rt`) that calls `rt_sigreturn`; the kernel built the frame
//! the handler runs on (`rt_sigframe`): the trampoline's address as the
//! handler's return address, then `struct ucontext` with the interrupted
//! registers. The unwinder (`unwind`) continues from those.

use rustc_hash::FxHashMap;

use super::maps::ProcessMaps;
use super::unwind::NULL_PAGE_END;

/// x86_64's `rt_sigframe`: the handler's return address (`pretcode`, the
/// trampoline), then `struct ucontext`, whose `uc_mcontext.gregs` start
/// 40 bytes in (after `uc_flags`, `uc_link`, `uc_stack`).
const UCONTEXT_GREGS: u64 = 40;
/// `REG_RBP`, `REG_RSP`, `REG_RIP` in `gregs`.
const REG_RBP: u64 = 10;
const REG_RSP: u64 = 15;
const REG_RIP: u64 = 16;

/// The interrupted code's (ip, sp, bp), from the signal frame whose
/// `ucontext` is at `uc` (the stack pointer just past the handler's
/// return address).
pub fn sigframe_regs(
    uc: u64,
    read_stack: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Option<(u64, u64, u64)> {
    let mut greg = |r: u64| read_stack(uc + UCONTEXT_GREGS + 8 * r).ok();
    let (ip, sp, bp) = (greg(REG_RIP)?, greg(REG_RSP)?, greg(REG_RBP)?);
    // The interrupted code ran below the signal frame (or on another
    // stack, which the window does not reach).
    (ip >= NULL_PAGE_END && sp > uc).then_some((ip, sp, bp))
}

/// glibc's x86_64 signal trampoline `__restore_rt`: `mov $15,%rax`
/// (`rt_sigreturn`); `syscall`. musl's `__restore_rt` is the same code.
const TRAMPOLINE: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Which return addresses are a signal trampoline, by the code bytes at
/// them in the mapped file, cached per (file, offset).
#[derive(Default)]
pub struct Trampolines {
    known: FxHashMap<((u64, u64), u64), bool>,
}

impl Trampolines {
    pub fn is(&mut self, maps: &ProcessMaps, addr: u64) -> bool {
        let Some(m) = maps.find(addr) else {
            return false;
        };
        let Some(file) = &m.file else { return false };
        let offset = addr - m.start + m.offset;
        if self.known.len() > 4096 {
            self.known.clear();
        }
        *self
            .known
            .entry((file.key, offset))
            .or_insert_with(|| is_trampoline_at(&file.open_path, offset))
    }
}

fn is_trampoline_at(path: &std::path::Path, offset: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut code = [0u8; TRAMPOLINE.len()];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut code, offset))
        .is_ok_and(|()| code == TRAMPOLINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic `rt_sigframe` on a stack window: the handler's return
    /// address, then `ucontext` with the interrupted registers.
    #[test]
    fn a_signal_frame_gives_the_interrupted_registers() {
        const SP: u64 = 0x7ffd_0000_0000;
        let mut window = vec![0u8; 2048];
        let put = |w: &mut Vec<u8>, at: u64, v: u64| {
            let i = (at - SP) as usize;
            w[i..i + 8].copy_from_slice(&v.to_le_bytes());
        };
        let pretcode = SP + 0x40;
        let uc = pretcode + 8;
        put(&mut window, pretcode, 0x7f00_0003_c050);
        put(&mut window, uc + 40 + 8 * 10, 0x7ffd_0000_1000); // rbp
        put(&mut window, uc + 40 + 8 * 15, SP + 0x600); // rsp
        put(&mut window, uc + 40 + 8 * 16, 0x5555_0000_11f1); // rip
        let reader = |w: &[u8]| {
            let w = w.to_vec();
            move |a: u64| -> Result<u64, ()> {
                let i = a.checked_sub(SP).ok_or(())? as usize;
                let b = w.get(i..i + 8).ok_or(())?;
                Ok(u64::from_le_bytes(b.try_into().map_err(|_| ())?))
            }
        };
        assert_eq!(
            sigframe_regs(uc, &mut reader(&window)),
            Some((0x5555_0000_11f1, SP + 0x600, 0x7ffd_0000_1000))
        );
        // Registers that do not describe code below the frame: none.
        put(&mut window, uc + 40 + 8 * 15, SP);
        assert_eq!(sigframe_regs(uc, &mut reader(&window)), None);
        // A frame beyond what can be read: none.
        assert_eq!(sigframe_regs(SP + 4096, &mut reader(&window)), None);
    }

    #[test]
    fn the_trampoline_is_recognised_by_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib");
        let mut code = vec![0x90u8; 64];
        code[17..26].copy_from_slice(&TRAMPOLINE);
        std::fs::write(&path, &code).unwrap();
        assert!(is_trampoline_at(&path, 17));
        assert!(!is_trampoline_at(&path, 16));
        assert!(!is_trampoline_at(&path, 60), "past the end of the file");
        assert!(!is_trampoline_at(&dir.path().join("missing"), 0));
    }
}
