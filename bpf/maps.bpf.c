/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Definitions of the maps and globals declared in maps.bpf.h. Only this
 * file defines them; the linker points every other program at these.
 */
#define TS_DEFINE_MAPS
#include "maps.bpf.h"
#include "fd.bpf.h"

/* Set by `run`: the agent's own process (its threads are never tracked). */
const volatile __u32 agent_tgid = 0;
/* Set by `run --pid`: track only processes/threads listed in pid_filter. */
const volatile __u32 filter_pids = 0;
/* Set by `run --max-threads`: usable entries of `threads`. */
const volatile __u32 max_slots = 1;
/* free_ring's size minus one (a power of two minus one). */
const volatile __u64 ring_mask = 0;
/* Set by `run --stacks`: TS_S_KERNEL and/or TS_S_USER (0: none). */
const volatile __u32 stack_kinds = 0;
/* Set from `run --frequency`: one sampling period. */
const volatile __u64 stack_interval_ns = 1000000000;
/* Set by `run --track`: enum ts_track_kinds. */
const volatile __u32 track_kinds = 0;
const volatile __u32 record_wakers = 1;

/* A task's saved user registers from its kernel stack's base, in bytes
 * (task_regs in maps.bpf.h); 0 until the first lookup learns it. */
__u64 pt_regs_offset = 0;
__u64 free_head = 0;
__u64 free_tail = 0;
__u32 next_fresh = 0;
__u32 reconcile_gen = 0;
/* 0 until the sampler sets the first window. */
__u64 capture_from_ns = 0;
/* 0 until the first tick (--track). */
__u64 tick_ns = 0;
struct ts_counters counters = {};
/* Set at load: syscalls whose first argument is a fd (fd.bpf.h). */
const volatile __u64 fd_syscalls[8] = {};
/* Emit struct ts_fd's BTF for the skeleton's `types`. */
struct ts_fd ts_fd_btf = {};

/* Emit the enums' BTF so the skeleton's `types` module carries them. */
const volatile enum ts_slot_state ts_slot_state_btf = TS_SLOT_FREE;
const volatile enum ts_thread_flags ts_thread_flags_btf = TS_F_ON_CPU;
const volatile enum ts_perf_flags ts_perf_flags_btf = TS_P_VALID;
const volatile enum ts_io_flags ts_io_flags_btf = TS_IO_SYNC;
const volatile enum ts_stack_flags ts_stack_flags_btf = TS_S_ONCPU;
const volatile enum ts_track_kinds ts_track_kinds_btf = TS_TRACK_SYSCALLS;
const volatile enum ts_completion_kind ts_completion_kind_btf = TS_C_SYSCALL;
const volatile enum ts_lock_flags ts_lock_flags_btf = TS_LCB_F_SPIN;
const volatile enum ts_py_flags ts_py_flags_btf = TS_PY_COMPLETE;
/* ... and the ring buffer record's struct. */
struct ts_completion ts_completion_btf = {};
struct ts_wait ts_wait_btf = {};

char LICENSE[] SEC("license") = "Dual BSD/GPL";
