//! Which syscalls take a file descriptor first: the BPF side reads the
//! file behind that fd when a thread switches out in one (`bpf/fd.bpf.h`),
//! and samples in them get the `file` column.

/// Name of syscall `nr` on the architecture taskscope was built for.
fn syscall_name(nr: i32) -> Option<&'static str> {
    let nr = usize::try_from(nr).ok()?;
    #[cfg(target_arch = "x86_64")]
    let sysno = syscalls::x86_64::Sysno::new(nr);
    #[cfg(target_arch = "aarch64")]
    let sysno = syscalls::aarch64::Sysno::new(nr);
    sysno.map(|s| s.name())
}

/// Syscalls whose first argument is a file descriptor: samples in them
/// get the `file` column (what that fd names). Names of the `syscalls`
/// crate; those an architecture lacks are skipped.
pub const FD_SYSCALLS: &[&str] = &[
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "fallocate",
    "ftruncate",
    "sendfile",
    "splice",
    "tee",
    "vmsplice",
    "copy_file_range",
    "ioctl",
    "flock",
    "fcntl",
    "lseek",
    "getdents64",
    "fadvise64",
    "readahead",
    "syncfs",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "accept",
    "accept4",
    "connect",
    "shutdown",
    "io_uring_enter",
];

/// Whether syscall `nr` takes a file descriptor first ([`FD_SYSCALLS`]).
pub fn is_fd_syscall(nr: i32) -> bool {
    match usize::try_from(nr) {
        Ok(nr) if nr < 512 => fd_syscall_bitmap()[nr / 64] & (1 << (nr % 64)) != 0,
        _ => false,
    }
}

/// [`FD_SYSCALLS`] as a bitmap of syscall numbers (bit n of word n / 64),
/// for the BPF side. Numbers of 512 and above are left out.
pub fn fd_syscall_bitmap() -> [u64; 8] {
    static BITS: std::sync::OnceLock<[u64; 8]> = std::sync::OnceLock::new();
    *BITS.get_or_init(|| {
        let mut bits = [0u64; 8];
        for nr in 0..512 {
            if syscall_name(nr as i32).is_some_and(|name| FD_SYSCALLS.contains(&name)) {
                bits[nr / 64] |= 1 << (nr % 64);
            }
        }
        bits
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_syscalls_are_known() {
        let bits = fd_syscall_bitmap();
        #[cfg(target_arch = "x86_64")]
        {
            assert!(bits[0] & 1 != 0, "read");
            assert!(bits[1] & (1 << (75 - 64)) != 0, "fdatasync");
            assert!(!is_fd_syscall(202), "futex");
        }
        let count: u32 = bits.iter().map(|w| w.count_ones()).sum();
        assert!(count as usize >= FD_SYSCALLS.len() - 4, "{count}");
    }
}
