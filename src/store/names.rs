//! Names written for numbers: syscalls, block-request operations and
//! flags, devices.
//!
//! The numbers come from the kernel (syscall numbers of the architecture
//! taskscope was built for, REQ_OP_* values, dev_t); their names are part
//! of the file format, so they live with the store.

/// Bits of a block request's flags, as the `flags` of `iorq` names them
/// (the BPF side sets the same bits: `ts_io_flags`, checked where the
/// writer converts its records).
pub mod io_flags {
    pub const SYNC: u32 = 1;
    pub const META: u32 = 2;
    pub const FUA: u32 = 4;
    pub const PREFLUSH: u32 = 8;
}

/// Number of `futex` on the architecture taskscope was built for (the
/// writer asks of every sleeping row whether it waits in it).
#[cfg(target_arch = "x86_64")]
pub const FUTEX_NR: i32 = syscalls::x86_64::Sysno::futex as i32;
#[cfg(target_arch = "aarch64")]
pub const FUTEX_NR: i32 = syscalls::aarch64::Sysno::futex as i32;

/// Name of syscall `nr` on the architecture taskscope was built for.
pub fn syscall_name(nr: i32) -> Option<&'static str> {
    let nr = usize::try_from(nr).ok()?;
    #[cfg(target_arch = "x86_64")]
    let sysno = syscalls::x86_64::Sysno::new(nr);
    #[cfg(target_arch = "aarch64")]
    let sysno = syscalls::aarch64::Sysno::new(nr);
    sysno.map(|s| s.name())
}

/// Name of a block request: its REQ_OP_*, or FLUSH for a data-less write
/// that asks for a cache flush (what fsync waits on).
pub fn io_op_name(op: u32, flags: u32, bytes: u32) -> &'static str {
    if op == 1 && bytes == 0 && flags & io_flags::PREFLUSH != 0 {
        return "FLUSH";
    }
    match op {
        0 => "READ",
        1 => "WRITE",
        2 => "FLUSH",
        3 => "DISCARD",
        5 => "SECURE_ERASE",
        7 => "ZONE_APPEND",
        9 => "WRITE_ZEROES",
        10 => "ZONE_OPEN",
        11 => "ZONE_CLOSE",
        12 => "ZONE_FINISH",
        13 => "ZONE_RESET",
        15 => "ZONE_RESET_ALL",
        34 => "DRV_IN",
        35 => "DRV_OUT",
        _ => "OTHER",
    }
}

/// [`io_flags`] as text: `SYNC|META|FUA|PREFLUSH` (empty when none).
pub fn io_flags_text(flags: u32) -> &'static str {
    const NAMES: [&str; 16] = [
        "",
        "SYNC",
        "META",
        "SYNC|META",
        "FUA",
        "SYNC|FUA",
        "META|FUA",
        "SYNC|META|FUA",
        "PREFLUSH",
        "SYNC|PREFLUSH",
        "META|PREFLUSH",
        "SYNC|META|PREFLUSH",
        "FUA|PREFLUSH",
        "SYNC|FUA|PREFLUSH",
        "META|FUA|PREFLUSH",
        "SYNC|META|FUA|PREFLUSH",
    ];
    const _: () = assert!(
        io_flags::SYNC == 1 && io_flags::META == 2 && io_flags::FUA == 4 && io_flags::PREFLUSH == 8
    );
    NAMES[(flags & 0xf) as usize]
}

/// `major:minor` of a kernel dev_t (major << 20 | minor).
pub fn dev_name(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xf_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_nr_is_futex() {
        assert_eq!(syscall_name(FUTEX_NR), Some("futex"));
    }

    #[test]
    fn syscall_names() {
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(syscall_name(0), Some("read"));
            assert_eq!(syscall_name(202), Some("futex"));
            assert_eq!(syscall_name(230), Some("clock_nanosleep"));
            assert_eq!(syscall_name(75), Some("fdatasync"));
        }
        assert_eq!(syscall_name(-1), None);
        assert_eq!(syscall_name(100_000), None);
    }

    #[test]
    fn devices_and_ops() {
        assert_eq!(dev_name((254 << 20) | 3), "254:3");
        assert_eq!(dev_name((259 << 20) | 1_048_575), "259:1048575");
        let preflush = io_flags::PREFLUSH;
        assert_eq!(io_op_name(1, 0, 4096), "WRITE");
        assert_eq!(io_op_name(1, preflush, 0), "FLUSH");
        assert_eq!(io_op_name(1, preflush, 4096), "WRITE");
        assert_eq!(io_op_name(2, 0, 0), "FLUSH");
        assert_eq!(io_op_name(99, 0, 0), "OTHER");
    }

    #[test]
    fn flags_text() {
        assert_eq!(io_flags_text(0), "");
        assert_eq!(io_flags_text(1 | 8), "SYNC|PREFLUSH");
        assert_eq!(io_flags_text(15), "SYNC|META|FUA|PREFLUSH");
    }
}
