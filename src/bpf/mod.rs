//! Loading, attaching and owning the BPF programs.
//!
//! [`Agent::load`] opens the skeleton, sizes the tables, sets the tunables,
//! loads and attaches everything, pins the thread table and maps it. The
//! required hooks (scheduler, syscall entry, task iterator) fail the load
//! with the kernel's reason; optional ones (block I/O, on-CPU sampling) are
//! probed first and only warn when unavailable. Dropping the `Agent`
//! detaches every program and removes the pin.

pub mod table;

#[allow(
    clippy::all,
    dead_code,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unused_imports,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/taskscope.skel.rs"));
}

use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Iter, Link, MapCore, OpenObject};
use tracing::{debug, info, warn};

pub use skel::types;
use skel::{TaskscopeSkel, TaskscopeSkelBuilder};
pub use table::{SchedFields, StackHeader, StateTable, Tracked};

/// Where the kernel publishes its own type information.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// This process: its threads are never tracked.
    pub agent_tgid: u32,
    /// Track only these processes/threads (empty: all).
    pub pids: Vec<u32>,
    /// Entries of the thread table.
    pub max_threads: u32,
    /// Sampling frequency, used for the on-CPU perf events.
    pub frequency: u32,
    /// bpffs directory to pin the thread table in.
    pub pin_dir: Option<PathBuf>,
    /// Which stacks to capture.
    pub stacks: StackKinds,
    /// Which ends of sampled syscalls and requests to report (--track).
    pub track: TrackKinds,
}

/// What `--track` follows to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackKinds {
    pub syscalls: bool,
    pub io: bool,
}

impl TrackKinds {
    pub fn any(self) -> bool {
        self.syscalls || self.io
    }
}

/// Bytes of the completions ring buffer: 13,000 records, far more than
/// one tick of a busy machine produces (it is drained every tick).
const COMPLETIONS_RING_BYTES: u32 = 1 << 20;

/// Which stacks to capture (`--stacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StackKinds {
    pub kernel: bool,
    pub user: bool,
}

impl StackKinds {
    pub fn any(self) -> bool {
        self.kernel || self.user
    }
}

/// Which optional parts are running.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub block_io: bool,
    /// Requests are attributed when built (block_io_start, Linux 6.5+).
    pub block_io_start: bool,
    /// CPUs with an on-CPU perf event attached.
    pub oncpu_cpus: usize,
    pub pinned: Option<PathBuf>,
    /// What --track follows (I/O only when the block hooks run).
    pub track: TrackKinds,
}

/// The loaded and attached programs and their maps.
pub struct Agent {
    // Drop order is declaration order: detach everything before the
    // skeleton (and the .bss the table points into) goes away.
    links: Vec<Link>,
    perf_events: Vec<OwnedFd>,
    iter_link: Link,
    refresh_link: Option<Link>,
    completions: Option<(
        libbpf_rs::RingBuffer<'static>,
        Arc<Mutex<Vec<types::ts_completion>>>,
    )>,
    table: StateTable,
    pinned: Option<Pin>,
    features: Features,
    /// Live threads the seeding pass could not give a slot.
    seed_left_out: u64,
    skel: TaskscopeSkel<'static>,
}

impl Agent {
    /// Load and attach everything, then seed the table with the threads
    /// that already exist.
    pub fn load(options: &LoadOptions) -> Result<Agent> {
        check_btf()?;
        // The open object must outlive the skeleton that borrows it; one is
        // created per load, so leaking the (pointer-sized) holder is fine.
        let open_object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = TaskscopeSkelBuilder::default()
            .open(open_object)
            .context("cannot open the BPF object")?;

        let ring_size = (options.max_threads as usize).next_power_of_two();
        {
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .ok_or_else(|| anyhow!("BPF object has no .rodata"))?;
            rodata.agent_tgid = options.agent_tgid;
            rodata.filter_pids = u32::from(!options.pids.is_empty());
            rodata.max_slots = options.max_threads;
            rodata.ring_mask = ring_size as u64 - 1;
            rodata.stack_kinds = (if options.stacks.kernel {
                types::ts_stack_flags::TS_S_KERNEL.0
            } else {
                0
            }) | (if options.stacks.user {
                types::ts_stack_flags::TS_S_USER.0
            } else {
                0
            });
            rodata.track_kinds = (if options.track.syscalls {
                types::ts_track_kinds::TS_TRACK_SYSCALLS.0
            } else {
                0
            }) | (if options.track.io {
                types::ts_track_kinds::TS_TRACK_IO.0
            } else {
                0
            });
            rodata.stack_interval_ns = if std::env::var_os("TS_STACK_EVERY").is_some() {
                0
            } else {
                1_000_000_000 / u64::from(options.frequency.max(1))
            };
        }
        open.maps.threads.set_max_entries(options.max_threads)?;
        open.maps.free_ring.set_max_entries(ring_size as u32)?;
        let stack_slots = if options.stacks.any() {
            options.max_threads
        } else {
            1
        };
        open.maps.stacks.set_max_entries(stack_slots)?;
        open.maps.stack_requests.set_max_entries(stack_slots)?;
        let slots_if = |on: bool| if on { options.max_threads } else { 1 };
        open.maps
            .track_syscalls
            .set_max_entries(slots_if(options.track.syscalls))?;
        open.maps
            .track_io
            .set_max_entries(slots_if(options.track.io))?;
        if options.track.any() {
            open.maps
                .completions
                .set_max_entries(COMPLETIONS_RING_BYTES)?;
        }
        open.progs.on_sys_exit.set_autoload(options.track.syscalls);
        // The refresh pass reads other processes' memory from a sleepable
        // iterator with task storage: Linux 5.18 and later.
        let refresh = options.stacks.any() && kernel_at_least(5, 18);
        open.progs.refresh_stacks.set_autoload(refresh);
        if options.stacks.any() && !refresh {
            warn!("kernel older than 5.18: stacks of threads that wait without switching are not refreshed");
        }
        let cpus = libbpf_rs::num_possible_cpus().context("cannot count the possible CPUs")?;
        open.maps.cpus.set_max_entries(cpus as u32)?;

        let block_io = kernel_has_tracepoints(&[
            "block_rq_insert",
            "block_rq_issue",
            "block_rq_complete",
            "block_rq_merge",
        ]);
        for prog in [
            &mut open.progs.on_block_rq_insert,
            &mut open.progs.on_block_rq_issue,
            &mut open.progs.on_block_rq_complete,
            &mut open.progs.on_block_rq_merge,
        ] {
            prog.set_autoload(block_io);
        }
        if !block_io {
            warn!("block I/O tracepoints not found in kernel BTF: io_* columns will stay empty");
            if options.track.io {
                warn!("--track io: no block I/O tracepoints, the iorq table will stay empty");
            }
        }
        // 6.5+: requests are seen when built, in the submitter's context,
        // including the ones threads wait on during cache flushes.
        let io_start = block_io && kernel_has_tracepoints(&["block_io_start"]);
        open.progs.on_block_io_start.set_autoload(io_start);

        let mut skel = open.load().map_err(|err| explain_load_error(&err))?;

        for pid in &options.pids {
            skel.maps
                .pid_filter
                .update(&pid.to_ne_bytes(), &[1u8], libbpf_rs::MapFlags::ANY)
                .with_context(|| format!("cannot add --pid {pid} to the kernel filter"))?;
        }

        let mut links = Vec::new();
        {
            let progs = &skel.progs;
            for (name, prog) in [
                ("sched_process_fork", &progs.on_sched_process_fork),
                ("sched_process_free", &progs.on_sched_process_free),
                ("sched_process_exec", &progs.on_sched_process_exec),
                ("sched_switch", &progs.on_sched_switch),
                ("sched_wakeup", &progs.on_sched_wakeup),
                ("sched_wakeup_new", &progs.on_sched_wakeup_new),
                ("sys_enter", &progs.on_sys_enter),
            ] {
                links.push(
                    prog.attach()
                        .with_context(|| format!("cannot attach to tracepoint {name}"))?,
                );
            }
            if options.track.syscalls {
                links.push(
                    progs
                        .on_sys_exit
                        .attach()
                        .context("cannot attach to tracepoint sys_exit (--track syscalls)")?,
                );
            }
            if io_start {
                links.push(
                    progs
                        .on_block_io_start
                        .attach()
                        .context("cannot attach to tracepoint block_io_start")?,
                );
            }
            if block_io {
                for (name, prog) in [
                    ("block_rq_insert", &progs.on_block_rq_insert),
                    ("block_rq_issue", &progs.on_block_rq_issue),
                    ("block_rq_complete", &progs.on_block_rq_complete),
                    ("block_rq_merge", &progs.on_block_rq_merge),
                ] {
                    links.push(
                        prog.attach()
                            .with_context(|| format!("cannot attach to tracepoint {name}"))?,
                    );
                }
            }
        }
        let iter_link = skel
            .progs
            .seed_threads
            .attach()
            .context("cannot create the task iterator")?;
        let refresh_link = if refresh {
            Some(
                skel.progs
                    .refresh_stacks
                    .attach()
                    .context("cannot create the stack refresh iterator")?,
            )
        } else {
            None
        };

        let (perf_events, oncpu_links) = attach_oncpu(&skel, options.frequency);
        let oncpu_cpus = oncpu_links.len();
        links.extend(oncpu_links);

        let globals = skel
            .maps
            .bss_data
            .as_deref_mut()
            .map(NonNull::from)
            .ok_or_else(|| anyhow!("BPF object has no .bss"))?;
        // SAFETY: `globals` is the skeleton's mmap-ed .bss, which lives as
        // long as `skel`; the Agent drops the table before the skeleton.
        let stack_maps = options
            .stacks
            .any()
            .then(|| (skel.maps.stacks.as_fd(), skel.maps.stack_requests.as_fd()));
        let track_io = options.track.io && block_io;
        let track_maps = [
            options
                .track
                .syscalls
                .then(|| skel.maps.track_syscalls.as_fd()),
            track_io.then(|| skel.maps.track_io.as_fd()),
        ];
        let table = unsafe {
            StateTable::new(
                skel.maps.threads.as_fd(),
                options.max_threads as usize,
                skel.maps.free_ring.as_fd(),
                ring_size,
                stack_maps,
                track_maps,
                globals,
            )?
        };
        let completions = if options.track.any() {
            Some(completions_reader(&skel)?)
        } else {
            None
        };

        let pinned = match &options.pin_dir {
            Some(dir) => pin_table(&mut skel, dir),
            None => None,
        };

        let features = Features {
            block_io,
            block_io_start: io_start,
            oncpu_cpus,
            pinned: pinned.as_ref().map(|pin| pin.path.clone()),
            track: TrackKinds {
                syscalls: options.track.syscalls,
                io: track_io,
            },
        };
        info!(
            block_io = features.block_io,
            block_io_start = features.block_io_start,
            oncpu_cpus = features.oncpu_cpus,
            pinned = ?features.pinned,
            max_threads = options.max_threads,
            "BPF programs attached"
        );
        let mut agent = Agent {
            links,
            perf_events,
            iter_link,
            refresh_link,
            completions,
            table,
            pinned,
            features,
            seed_left_out: 0,
            skel,
        };
        agent.seed_left_out = agent.reconcile(1)?;
        Ok(agent)
    }

    /// Live threads the seeding pass at load could not give a slot
    /// because the table was full.
    pub fn seed_left_out(&self) -> u64 {
        self.seed_left_out
    }

    /// The thread table.
    pub fn table(&self) -> &StateTable {
        &self.table
    }

    /// Which optional parts are running.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Run the stack refresh pass (serves `StateTable::request_stack`);
    /// false when the kernel cannot.
    pub fn refresh_stacks(&self) -> Result<bool> {
        let Some(link) = &self.refresh_link else {
            return Ok(false);
        };
        let mut iter = Iter::new(link).context("cannot start the stack refresh iterator")?;
        let mut sink = Vec::new();
        iter.read_to_end(&mut sink)
            .context("stack refresh iterator failed")?;
        Ok(true)
    }

    /// Append the completions the hooks reported since the last call
    /// (--track) to `out`; no syscall, the ring buffer is mmap-ed.
    pub fn drain_completions(&self, out: &mut Vec<types::ts_completion>) -> Result<()> {
        let Some((ring, received)) = &self.completions else {
            return Ok(());
        };
        ring.consume()
            .context("cannot read the completions ring buffer")?;
        let mut received = received.lock().unwrap_or_else(|p| p.into_inner());
        out.append(&mut received);
        Ok(())
    }

    /// Block requests the kernel side currently tracks as in flight.
    pub fn requests_in_flight(&self) -> usize {
        self.skel.maps.requests.keys().count()
    }

    /// Walk every task in the kernel once (task iterator): track threads
    /// that are missing, stamp the ones present with `generation`. Returns
    /// how many live threads the pass could not give a slot (table full).
    pub fn reconcile(&mut self, generation: u32) -> Result<u64> {
        self.table.set_reconcile_gen(generation);
        let before = self.table.counters().seed_no_slot;
        let mut iter = Iter::new(&self.iter_link).context("cannot start the task iterator")?;
        let mut sink = Vec::new();
        iter.read_to_end(&mut sink)
            .context("task iterator failed")?;
        // Only the iterator adds to seed_no_slot, and only one pass runs at
        // a time (this one), so the difference is this pass's count.
        Ok(self.table.counters().seed_no_slot.saturating_sub(before))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Unpinned first, then the pin directory's lock is released.
        if let Some(pin) = self.pinned.take() {
            if let Err(err) = self.skel.maps.threads.unpin(&pin.path) {
                warn!("cannot remove pin {}: {err}", pin.path.display());
            }
        }
        debug!(
            links = self.links.len(),
            perf_events = self.perf_events.len(),
            "detaching BPF programs"
        );
    }
}

/// A reader of the completions ring buffer that collects records into the
/// returned vector.
fn completions_reader(
    skel: &TaskscopeSkel<'_>,
) -> Result<(
    libbpf_rs::RingBuffer<'static>,
    Arc<Mutex<Vec<types::ts_completion>>>,
)> {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder
        .add(&skel.maps.completions, move |bytes: &[u8]| {
            if bytes.len() < size_of::<types::ts_completion>() {
                return 0;
            }
            // SAFETY: the kernel wrote a whole ts_completion (plain old
            // data, any bit pattern valid); the read is unaligned-safe.
            let record =
                unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<types::ts_completion>()) };
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(record);
            0
        })
        .context("cannot attach to the completions ring buffer")?;
    let ring = builder
        .build()
        .context("cannot map the completions ring buffer")?;
    Ok((ring, received))
}

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

fn explain_load_error(err: &libbpf_rs::Error) -> anyhow::Error {
    let text = err.to_string();
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        anyhow!(
            "the kernel refused to load the BPF programs ({text}): taskscope needs CAP_BPF and \
             CAP_PERFMON (run as root); inside a container, also a seccomp profile that allows bpf()"
        )
    } else {
        anyhow!("the kernel refused to load the BPF programs: {text} (the verifier's log is above; run with -vv for libbpf's full output)")
    }
}

/// A cpu-clock perf event on every online CPU with the on-CPU sampler
/// attached. Failures only warn: without it, threads on a CPU report the
/// syscall state they had when they were switched in.
fn attach_oncpu(skel: &TaskscopeSkel<'_>, frequency: u32) -> (Vec<OwnedFd>, Vec<Link>) {
    let cpus = match online_cpus() {
        Ok(cpus) => cpus,
        Err(err) => {
            warn!("on-CPU sampling disabled: {err:#}");
            return (Vec::new(), Vec::new());
        }
    };
    let mut fds = Vec::new();
    let mut links = Vec::new();
    for cpu in cpus {
        match open_cpu_clock(cpu, frequency) {
            Ok(fd) => match skel.progs.on_cpu_sample.attach_perf_event(fd.as_raw_fd()) {
                Ok(link) => {
                    links.push(link);
                    fds.push(fd);
                }
                Err(err) => warn!("on-CPU sampling: cannot attach to CPU {cpu}: {err}"),
            },
            Err(err) => warn!("on-CPU sampling: no cpu-clock perf event on CPU {cpu}: {err}"),
        }
    }
    (fds, links)
}

fn open_cpu_clock(cpu: u32, frequency: u32) -> std::io::Result<OwnedFd> {
    use libbpf_rs::libbpf_sys::{
        perf_event_attr, PERF_COUNT_SW_CPU_CLOCK, PERF_FLAG_FD_CLOEXEC, PERF_TYPE_SOFTWARE,
    };
    let mut attr: perf_event_attr = unsafe {
        // SAFETY: perf_event_attr is plain-old-data; all-zero is its
        // documented default.
        std::mem::zeroed()
    };
    attr.type_ = PERF_TYPE_SOFTWARE;
    attr.size = size_of::<perf_event_attr>() as u32;
    attr.config = u64::from(PERF_COUNT_SW_CPU_CLOCK);
    // cpu-clock counts nanoseconds: one sample per tick.
    attr.__bindgen_anon_1.sample_period = 1_000_000_000 / u64::from(frequency.max(1));
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
fn online_cpus() -> Result<Vec<u32>> {
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

/// The pinned thread table, and the lock on its directory that says a
/// live agent owns it.
struct Pin {
    path: PathBuf,
    _lock: OwnedFd,
}

/// Pin the thread table under `dir` if `dir` is on a BPF filesystem and
/// no running agent owns it. The agent holds an exclusive `flock` on
/// `dir` for as long as its pin exists (bpffs holds no lock files, but a
/// directory can be locked), so a pin whose directory is unlocked was
/// left by an agent that is gone and is replaced; a live agent's pin is
/// never touched.
fn pin_table(skel: &mut TaskscopeSkel<'_>, dir: &Path) -> Option<Pin> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let parent = dir.parent().unwrap_or(dir);
    match rustix::fs::statfs(parent) {
        Ok(fs) if fs.f_type == BPF_FS_MAGIC => {}
        _ => {
            warn!(
                "not pinning the thread table: {} is not a mounted BPF filesystem",
                parent.display()
            );
            return None;
        }
    }
    if let Err(err) = std::fs::create_dir(dir) {
        if err.kind() != std::io::ErrorKind::AlreadyExists {
            warn!(
                "not pinning the thread table: cannot create {}: {err}",
                dir.display()
            );
            return None;
        }
    }
    let lock = match lock_pin_dir(dir) {
        Ok(lock) => lock,
        Err(err) => {
            warn!("not pinning the thread table: {err:#}");
            return None;
        }
    };
    let path = dir.join("threads");
    if std::fs::symlink_metadata(&path).is_ok() {
        warn!(
            "replacing {}: its agent is no longer running",
            path.display()
        );
        let _ = std::fs::remove_file(&path);
    }
    match skel.maps.threads.pin(&path) {
        Ok(()) => Some(Pin { path, _lock: lock }),
        Err(err) => {
            warn!("cannot pin the thread table at {}: {err}", path.display());
            None
        }
    }
}

/// Lock the pin directory `dir` for this agent, or say which agent has it.
fn lock_pin_dir(dir: &Path) -> Result<OwnedFd> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("cannot open {}", dir.display()))?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = crate::files::locks::flock_holder(&fd)
                .map(|h| h.pid_text())
                .unwrap_or_default();
            bail!(
                "{} belongs to a running taskscope agent{holder}; give this one another --pin-dir, or --no-pin",
                dir.display()
            )
        }
        Err(err) => {
            Err(std::io::Error::from(err)).with_context(|| format!("cannot lock {}", dir.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_four_cache_lines() {
        // The C side asserts the same with _Static_assert.
        assert_eq!(size_of::<types::ts_thread>(), 256);
        assert_eq!(std::mem::offset_of!(types::ts_thread, comm), 64);
        assert_eq!(std::mem::offset_of!(types::ts_thread, start_ns), 128);
        assert_eq!(std::mem::offset_of!(types::ts_thread, io_seq), 192);
        assert_eq!(size_of::<types::ts_slot_ref>(), 8);
        assert_eq!(size_of::<types::ts_completion>(), 80);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5").unwrap(), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert!(parse_cpu_list("x").is_err());
    }
}
