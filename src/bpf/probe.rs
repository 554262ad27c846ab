//! What the running kernel offers, asked without loading anything: its
//! version, its BTF and the tracepoints it names, the online CPUs, whether
//! a path is on a BPF filesystem, and a cpu-clock perf event.
//!
//! The loader decides what to attach from these, and `doctor` reports
//! them; both call the same functions, so the check cannot drift from
//! what the agent does.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tracing::{debug, warn};

/// Where the kernel publishes its own type information.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    version >= (major, minor)
}

/// Fail unless the kernel publishes its BTF (CO-RE and tp_btf need it).
/// `TASKSCOPE_TEST_SYSFS_BTF` replaces the path, so the test suite can
/// exercise this error on a kernel that has BTF.
pub fn check_btf() -> Result<()> {
    let path = std::env::var_os("TASKSCOPE_TEST_SYSFS_BTF")
        .map_or_else(|| PathBuf::from(VMLINUX_BTF), PathBuf::from);
    if !path.exists() {
        bail!(
            "kernel BTF not found at {}: taskscope needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y (Linux 5.15 or newer)",
            path.display()
        );
    }
    Ok(())
}

/// Whether the kernel's BTF knows `btf_trace_<name>` for each name.
pub fn kernel_has_tracepoints(names: &[&str]) -> bool {
    let btf = match libbpf_rs::btf::Btf::from_vmlinux() {
        Ok(btf) => btf,
        Err(err) => {
            warn!("cannot read kernel BTF to probe tracepoints: {err}");
            return false;
        }
    };
    names.iter().all(|name| {
        let found = btf
            .type_by_name::<libbpf_rs::btf::types::Typedef<'_>>(&format!("btf_trace_{name}"))
            .is_some();
        if !found {
            debug!("tracepoint {name} not in kernel BTF");
        }
        found
    })
}

/// Whether `path` is on a mounted BPF filesystem (where maps are pinned).
pub fn is_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    rustix::fs::statfs(path).is_ok_and(|fs| fs.f_type == BPF_FS_MAGIC)
}

/// A cpu-clock perf event on `cpu` that samples every thread there
/// `frequency` times a second: what the on-CPU sampler attaches to, and
/// what `doctor` opens (`enabled` false) to see whether it could.
pub fn open_cpu_clock(cpu: u32, frequency: u32, enabled: bool) -> std::io::Result<OwnedFd> {
    use libbpf_rs::libbpf_sys::{
        perf_event_attr, PERF_COUNT_SW_CPU_CLOCK, PERF_FLAG_FD_CLOEXEC, PERF_TYPE_SOFTWARE,
    };
    // SAFETY: perf_event_attr is plain-old-data; all-zero is its
    // documented default.
    let mut attr: perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = PERF_TYPE_SOFTWARE;
    attr.size = size_of::<perf_event_attr>() as u32;
    attr.config = u64::from(PERF_COUNT_SW_CPU_CLOCK);
    // cpu-clock counts nanoseconds: one sample per tick.
    attr.__bindgen_anon_1.sample_period = 1_000_000_000 / u64::from(frequency.max(1));
    attr.set_disabled(u64::from(!enabled));
    // SAFETY: perf_event_open with a valid attr; pid -1 + cpu N observes
    // every task on that CPU; the result is a new fd we take ownership of.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const perf_event_attr,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new, owned file descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// CPUs listed in /sys/devices/system/cpu/online ("0-3,5").
pub fn online_cpus() -> Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .context("cannot read /sys/devices/system/cpu/online")?;
    parse_cpu_list(text.trim())
}

fn parse_cpu_list(text: &str) -> Result<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u32, u32) = (lo.parse()?, hi.parse()?);
                cpus.extend(lo..=hi);
            }
            None => cpus.push(part.parse()?),
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5").unwrap(), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert!(parse_cpu_list("x").is_err());
    }
}
