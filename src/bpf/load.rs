//! [`Agent::load`], in phases: probe what the kernel offers, open the
//! skeleton and size it, load it, attach the hooks, map the tables.
//!
//! The required hooks (scheduler, task iterator; syscall entry with
//! `--syscalls exact` or `--track syscalls`) fail the load with the
//! kernel's reason; optional ones (block I/O, on-CPU
//! sampling, the stack refresh) are probed first and only warn when
//! unavailable. `doctor` loads through this same function.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, OpenObject};
use tracing::{info, warn};

use super::pin::pin_table;
use super::probe::{
    check_btf, kernel_at_least, kernel_has_tracepoints, online_cpus, open_cpu_clock,
};
use super::skel::{types, OpenTaskscopeSkel, TaskscopeSkel, TaskscopeSkelBuilder};
use super::table::stack_pool_size;
use super::{Agent, Completions, Features, LoadOptions, SyscallMode, ThreadTable, TrackKinds};

/// Bytes of the completions ring buffer: 13,000 records, far more than
/// one tick of a busy machine produces (it is drained every tick).
const COMPLETIONS_RING_BYTES: u32 = 1 << 20;

/// The block I/O tracepoints; optional.
const BLOCK_TRACEPOINTS: [&str; 4] = [
    "block_rq_insert",
    "block_rq_issue",
    "block_rq_complete",
    "block_rq_merge",
];

/// What this load will do, decided before opening the object.
struct Plan {
    /// Slots of the free-slot ring (a power of two).
    ring_size: usize,
    /// The stack refresh iterator runs (stacks asked for, Linux 5.18+).
    refresh: bool,
    /// The block I/O tracepoints exist.
    block_io: bool,
    /// block_io_start exists too (6.5+).
    io_start: bool,
    /// contention_begin/end exist (5.19+): kernel lock waits and owners.
    lock_contention: bool,
    /// csd_queue_cpu exists (6.6+): the waker of a wakeup handed over to
    /// the wakee's CPU.
    handover: bool,
    /// How syscalls are seen: exact when asked, or when --track syscalls
    /// needs the entry hook's sequence numbers.
    syscalls: SyscallMode,
}

impl Plan {
    fn probe(options: &LoadOptions) -> Plan {
        // The refresh pass reads other processes' memory from a sleepable
        // iterator with task storage: Linux 5.18 and later.
        let refresh = options.stacks.any() && kernel_at_least(5, 18);
        if options.stacks.any() && !refresh {
            warn!("kernel older than 5.18: stacks of threads that wait without switching are not refreshed");
        }
        let block_io = kernel_has_tracepoints(&BLOCK_TRACEPOINTS);
        if !block_io {
            warn!("block I/O tracepoints not found in kernel BTF: io_* columns will stay empty");
            if options.track.io {
                warn!("--track io: no block I/O tracepoints, the iorq table will stay empty");
            }
        }
        Plan {
            ring_size: (options.max_threads as usize).next_power_of_two(),
            refresh,
            block_io,
            // 6.5+: requests are seen when built, in the submitter's
            // context, including the ones threads wait on during cache
            // flushes.
            io_start: block_io && kernel_has_tracepoints(&["block_io_start"]),
            lock_contention: kernel_has_tracepoints(&["contention_begin", "contention_end"]),
            handover: handover_wakers(),
            syscalls: if options.track.syscalls {
                SyscallMode::Exact
            } else {
                options.syscalls
            },
        }
    }
}

/// The hooks attached, and what keeps them attached.
struct Attached {
    links: Vec<Link>,
    perf_events: Vec<OwnedFd>,
    iter_link: Link,
    refresh_link: Option<Link>,
    oncpu_cpus: usize,
}

impl Agent {
    /// Load and attach everything, then seed the table with the threads
    /// that already exist.
    pub fn load(options: &LoadOptions) -> Result<Agent> {
        check_btf()?;
        let plan = Plan::probe(options);
        let open = open_sized(options, &plan)?;
        let mut skel = open.load().map_err(|err| explain_load_error(&err))?;
        for pid in &options.pids {
            skel.maps
                .pid_filter
                .update(&pid.to_ne_bytes(), &[1u8], libbpf_rs::MapFlags::ANY)
                .with_context(|| format!("cannot add --pid {pid} to the kernel filter"))?;
        }
        let attached = attach(&skel, options, &plan)?;
        let track = TrackKinds {
            syscalls: options.track.syscalls,
            io: options.track.io && plan.block_io,
        };
        let table = map_table(&mut skel, options, &plan)?;
        let completions = options
            .track
            .any()
            .then(|| completions_reader(&skel))
            .transpose()?;
        let pinned = options
            .pin_dir
            .as_ref()
            .and_then(|dir| pin_table(&mut skel, dir, &options.pin_permissions));
        let features = Features {
            block_io: plan.block_io,
            block_io_start: plan.io_start,
            oncpu_cpus: attached.oncpu_cpus,
            pinned: pinned.as_ref().map(|pin| pin.path.clone()),
            track,
            syscalls: plan.syscalls,
        };
        info!(
            syscalls = ?features.syscalls,
            block_io = features.block_io,
            block_io_start = features.block_io_start,
            oncpu_cpus = features.oncpu_cpus,
            pinned = ?features.pinned,
            max_threads = options.max_threads,
            handover_wakers = plan.handover,
            "BPF programs attached"
        );
        let mut agent = Agent {
            links: attached.links,
            perf_events: attached.perf_events,
            iter_link: attached.iter_link,
            refresh_link: attached.refresh_link,
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
}

/// Open the BPF object, set the tunables (`.rodata`), size the maps and
/// choose the optional programs.
fn open_sized(options: &LoadOptions, plan: &Plan) -> Result<OpenTaskscopeSkel<'static>> {
    // The open object must outlive the skeleton that borrows it; one is
    // created per load, so leaking the (pointer-sized) holder is fine.
    let open_object: &'static mut MaybeUninit<OpenObject> =
        Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = TaskscopeSkelBuilder::default()
        .open(open_object)
        .context("cannot open the BPF object")?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| anyhow!("BPF object has no .rodata"))?;
    let flag = |on: bool, bit: u32| if on { bit } else { 0 };
    rodata.agent_tgid = options.agent_tgid;
    rodata.filter_pids = u32::from(!options.pids.is_empty());
    rodata.max_slots = options.max_threads;
    rodata.ring_mask = plan.ring_size as u64 - 1;
    // TS_NO_FD (benches only): no fd syscalls, so no `file` record, to measure it.
    rodata.fd_syscalls = if std::env::var_os("TS_NO_FD").is_some() {
        [0; 8]
    } else {
        super::fd_syscalls::fd_syscall_bitmap()
    };
    // TS_NO_WAKER (benches only): no waker record, to measure it.
    rodata.record_wakers = u32::from(std::env::var_os("TS_NO_WAKER").is_none());
    rodata.stack_kinds = flag(options.stacks.kernel, types::ts_stack_flags::TS_S_KERNEL.0)
        | flag(options.stacks.user, types::ts_stack_flags::TS_S_USER.0);
    rodata.track_kinds = flag(
        options.track.syscalls,
        types::ts_track_kinds::TS_TRACK_SYSCALLS.0,
    ) | flag(options.track.io, types::ts_track_kinds::TS_TRACK_IO.0);
    rodata.stack_pool_mask = stack_pool(options) - 1;
    rodata.stack_interval_ns = if std::env::var_os("TS_STACK_EVERY").is_some() {
        0
    } else {
        1_000_000_000 / u64::from(options.frequency.max(1))
    };

    let slots_if = |on: bool| if on { options.max_threads } else { 1 };
    let maps = &mut open.maps;
    maps.threads.set_max_entries(options.max_threads)?;
    maps.waits.set_max_entries(options.max_threads)?;
    maps.handovers.set_max_entries(slots_if(plan.handover))?;
    maps.syscall_args.set_max_entries(options.max_threads)?;
    maps.free_ring.set_max_entries(plan.ring_size as u32)?;
    maps.fds.set_max_entries(options.max_threads)?;
    maps.stacks.set_max_entries(if options.stacks.any() {
        stack_pool(options)
    } else {
        1
    })?;
    maps.stack_requests
        .set_max_entries(slots_if(options.stacks.any()))?;
    let python = if python_chains(options) {
        super::python::PY_THREADS
    } else {
        1
    };
    maps.py_threads.set_max_entries(python)?;
    maps.py_chains.set_max_entries(python)?;
    if options.track.any() {
        maps.completions.set_max_entries(COMPLETIONS_RING_BYTES)?;
    }
    let cpus = libbpf_rs::num_possible_cpus().context("cannot count the possible CPUs")?;
    maps.cpus.set_max_entries(cpus as u32)?;

    let progs = &mut open.progs;
    // Not even loaded by default: the per-syscall hooks are the one cost
    // every syscall of the machine pays.
    progs
        .on_sys_enter
        .set_autoload(plan.syscalls == SyscallMode::Exact);
    progs.on_sys_exit.set_autoload(options.track.syscalls);
    progs.refresh_stacks.set_autoload(plan.refresh);
    for prog in [
        &mut progs.on_block_rq_insert,
        &mut progs.on_block_rq_issue,
        &mut progs.on_block_rq_complete,
        &mut progs.on_block_rq_merge,
    ] {
        prog.set_autoload(plan.block_io);
    }
    progs.on_block_io_start.set_autoload(plan.io_start);
    // Kernel lock waits (contention_begin/end): Linux 5.19 on.
    progs.on_contention_begin.set_autoload(plan.lock_contention);
    progs.on_contention_end.set_autoload(plan.lock_contention);
    // Wakers of wakeups handed over to the wakee's CPU: Linux 6.6 on.
    progs.on_csd_queue.set_autoload(plan.handover);
    Ok(open)
}

/// Attach every loaded program: the tracepoints, the iterators and the
/// on-CPU perf events.
fn attach(skel: &TaskscopeSkel<'_>, options: &LoadOptions, plan: &Plan) -> Result<Attached> {
    let progs = &skel.progs;
    let mut links = Vec::new();
    let mut tracepoints = vec![
        ("sched_process_fork", &progs.on_sched_process_fork),
        ("sched_process_free", &progs.on_sched_process_free),
        ("sched_process_exec", &progs.on_sched_process_exec),
        ("sched_switch", &progs.on_sched_switch),
        ("sched_wakeup", &progs.on_sched_wakeup),
        ("sched_wakeup_new", &progs.on_sched_wakeup_new),
    ];
    if plan.syscalls == SyscallMode::Exact {
        tracepoints.push(("sys_enter", &progs.on_sys_enter));
    }
    if options.track.syscalls {
        tracepoints.push(("sys_exit", &progs.on_sys_exit));
    }
    if plan.lock_contention {
        tracepoints.push(("contention_begin", &progs.on_contention_begin));
        tracepoints.push(("contention_end", &progs.on_contention_end));
    }
    if plan.handover {
        tracepoints.push(("csd_queue_cpu", &progs.on_csd_queue));
    }
    if plan.io_start {
        tracepoints.push(("block_io_start", &progs.on_block_io_start));
    }
    if plan.block_io {
        tracepoints.extend([
            ("block_rq_insert", &progs.on_block_rq_insert),
            ("block_rq_issue", &progs.on_block_rq_issue),
            ("block_rq_complete", &progs.on_block_rq_complete),
            ("block_rq_merge", &progs.on_block_rq_merge),
        ]);
    }
    for (name, prog) in tracepoints {
        let why = match name {
            "sys_enter" => " (--syscalls exact)",
            "sys_exit" => " (--track syscalls)",
            _ => "",
        };
        links.push(
            prog.attach()
                .with_context(|| format!("cannot attach to tracepoint {name}{why}"))?,
        );
    }
    let iter_link = progs
        .seed_threads
        .attach()
        .context("cannot create the task iterator")?;
    let refresh_link = if plan.refresh {
        Some(
            progs
                .refresh_stacks
                .attach()
                .context("cannot create the stack refresh iterator")?,
        )
    } else {
        None
    };
    let (perf_events, oncpu_links) = attach_oncpu(skel, options.frequency);
    let oncpu_cpus = oncpu_links.len();
    links.extend(oncpu_links);
    Ok(Attached {
        links,
        perf_events,
        iter_link,
        refresh_link,
        oncpu_cpus,
    })
}

/// Map the thread table and the maps beside it into this process.
fn map_table(
    skel: &mut TaskscopeSkel<'static>,
    options: &LoadOptions,
    plan: &Plan,
) -> Result<ThreadTable> {
    let globals = skel
        .maps
        .bss_data
        .as_deref_mut()
        .map(NonNull::from)
        .ok_or_else(|| anyhow!("BPF object has no .bss"))?;
    let maps = &skel.maps;
    let stack_maps = options.stacks.any().then(|| {
        let pool = stack_pool(options) as usize;
        (maps.stacks.as_fd(), pool, maps.stack_requests.as_fd())
    });
    // SAFETY: `globals` is the skeleton's mmap-ed .bss, which lives as
    // long as `skel`; the Agent drops the table before the skeleton.
    let mut table = unsafe {
        ThreadTable::new(
            maps.threads.as_fd(),
            maps.syscall_args.as_fd(),
            options.max_threads as usize,
            maps.free_ring.as_fd(),
            plan.ring_size,
            maps.waits.as_fd(),
            stack_maps,
            maps.fds.as_fd(),
            globals,
        )
    }?;
    if python_chains(options) {
        table.map_py_chains(maps.py_chains.as_fd())?;
    }
    Ok(table)
}

/// Whether the waker of a wakeup handed over to the wakee's CPU is
/// recorded: when the kernel has csd_queue_cpu (6.6+), unless `TS_NO_CSD`
/// is set (benches only, to measure it). Said once, at load.
fn handover_wakers() -> bool {
    if std::env::var_os("TS_NO_CSD").is_some() || std::env::var_os("TS_NO_WAKER").is_some() {
        return false;
    }
    let found = kernel_has_tracepoints(&["csd_queue_cpu"]);
    if !found {
        info!(
            "no csd_queue_cpu tracepoint (Linux < 6.6): wakeups handed over to the wakee's CPU \
             by IPI have no waker"
        );
    }
    found
}

/// Entries of the stack capture pool: `table::stack_pool_size`, or
/// `TS_STACK_POOL` rounded up to a power of two (tests only, to make
/// threads take each other's entries).
fn stack_pool(options: &LoadOptions) -> u32 {
    std::env::var("TS_STACK_POOL")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .map_or_else(
            || stack_pool_size(options.max_threads),
            |n| n.clamp(1, options.max_threads.max(1)).next_power_of_two(),
        )
}

/// Whether the on-CPU sample reads CPython frame chains: with user
/// stacks, unless `TS_NO_PYCHAIN` is set (benches only, to measure it).
fn python_chains(options: &LoadOptions) -> bool {
    options.stacks.user && std::env::var_os("TS_NO_PYCHAIN").is_none()
}

/// A reader of the completions ring buffer that collects records into the
/// returned vector.
fn completions_reader(skel: &TaskscopeSkel<'_>) -> Result<Completions> {
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
        match open_cpu_clock(cpu, frequency, true) {
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
