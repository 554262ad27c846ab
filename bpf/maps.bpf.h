/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Maps, globals and the small helpers every hook shares.
 *
 * maps.bpf.c defines the maps and globals (TS_DEFINE_MAPS); every other
 * .bpf.c file sees `extern` declarations that libbpf's static linker
 * resolves against those definitions, so all programs share one state
 * table. The definitions must stay identical: the linker checks.
 */
#ifndef TASKSCOPE_MAPS_BPF_H
#define TASKSCOPE_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "taskscope.h"

#ifdef TS_DEFINE_MAPS
#define TS_EXTERN
#else
#define TS_EXTERN extern
#endif

#define PF_KTHREAD 0x00200000
#define TS_ENOSYS 38
#define BPF_F_MMAPABLE_ (1U << 10)
#define BPF_F_NO_PREALLOC_ (1U << 0)
#define BPF_LOCAL_STORAGE_GET_F_CREATE_ (1ULL << 0)
#define REQ_OP_MASK_ 0xff

#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x)) = (v)
#define barrier() asm volatile("" ::: "memory")

/* The per-thread state table, scanned by userspace through mmap. */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, struct ts_thread);
	__uint(max_entries, 1); /* sized at load time: --max-threads */
} threads SEC(".maps");

/*
 * Recycled slot numbers, produced by userspace and consumed by the hooks.
 * Values of mmap-able arrays are laid out 8 bytes apart at least, so
 * values shared with userspace through mmap are 64-bit.
 */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1); /* power of two >= threads' size, set at load */
} free_ring SEC(".maps");

/* Stack captures, a pool shared by the threads (mmap-able; struct ts_stack). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, struct ts_stack);
	__uint(max_entries, 1); /* stack_pool_mask + 1 when stacks are on, set at load */
} stacks SEC(".maps");

/* Python threads whose frame chain the on-CPU sample reads, by tid
 * (userspace adds and removes them; sized at load). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct ts_py_thread);
	__uint(max_entries, 1); /* TS_PY_THREADS when user stacks are on */
} py_threads SEC(".maps");

/* Their chains, by ts_py_thread.chain (mmap-able). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, struct ts_py_chain);
	__uint(max_entries, 1); /* TS_PY_THREADS when user stacks are on */
} py_chains SEC(".maps");

/* Syscall arguments beyond the first three, one entry per slot of
 * `threads` (mmap-able; struct ts_syscall_args). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, struct ts_syscall_args);
	__uint(max_entries, 1); /* max_slots, set at load */
} syscall_args SEC(".maps");

/* Stack refresh requests, one per slot (mmap-able; struct ts_stack_request). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, struct ts_stack_request);
	__uint(max_entries, 1); /* max_slots when stacks are on, set at load */
} stack_requests SEC(".maps");

/* Waker and kernel-lock wait, one entry per slot of `threads` (mmap-able). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, struct ts_wait);
	__uint(max_entries, 1); /* max_slots, set at load */
} waits SEC(".maps");

/* Wakers noted at a hand-over to the wakee's CPU, one entry per slot of
 * `threads` (struct ts_handover; csd_queue_cpu, Linux 6.6+). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ts_handover);
	__uint(max_entries, 1); /* max_slots when csd_queue_cpu exists, set at load */
} handovers SEC(".maps");

/* Per-CPU state, indexed by CPU number. */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ts_cpu);
	__uint(max_entries, 1); /* number of possible CPUs, set at load */
} cpus SEC(".maps");

/* task -> slot it owns. */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, struct ts_slot_ref);
} slot_of SEC(".maps");

/* Block requests in flight, by request pointer. LRU: never leaks. */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct ts_request);
	__uint(max_entries, 16384);
} requests SEC(".maps");

/* Completions of tracked syscalls and requests (struct ts_completion). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* sized at load when tracking */
} completions SEC(".maps");

/* Processes (tgid) or threads (tid) to track when --pid is given. */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 4096);
} pid_filter SEC(".maps");

/* Set before load. */
TS_EXTERN const volatile __u32 agent_tgid;  /* the agent itself (automatic) */
TS_EXTERN const volatile __u32 filter_pids; /* --pid given: track only pid_filter */
TS_EXTERN const volatile __u32 max_slots;   /* --max-threads */
TS_EXTERN const volatile __u64 ring_mask;   /* free_ring size - 1 */
TS_EXTERN const volatile __u32 stack_kinds; /* --stacks: TS_S_KERNEL | TS_S_USER */
TS_EXTERN const volatile __u64 stack_interval_ns; /* at most one switch-out capture per thread per period */
TS_EXTERN const volatile __u32 stack_pool_mask; /* `stacks` entries - 1 (a power of two - 1) */
TS_EXTERN const volatile __u32 track_kinds; /* --track: enum ts_track_kinds */
TS_EXTERN const volatile __u32 record_wakers; /* who woke a thread (off only in benches) */

/* Shared with userspace through the mmap-ed .bss. */
TS_EXTERN __u64 free_head;      /* next free_ring entry to take (hooks) */
TS_EXTERN __u64 free_tail;      /* next free_ring entry to fill (userspace) */
TS_EXTERN __u32 next_fresh;     /* slots never used start here */
TS_EXTERN __u32 reconcile_gen;  /* current reconciliation pass (userspace) */
TS_EXTERN __u64 pt_regs_offset; /* task_regs(): learnt from the first bpf_task_pt_regs() */
TS_EXTERN __u64 stack_cursor;   /* `stacks` entries taken (the next one: & stack_pool_mask) */
TS_EXTERN __u64 capture_from_ns; /* every switch-out from here to the next tick captures stacks (userspace) */
/*
 * --track: when the latest tick's scan ended (userspace), U64_MAX while a
 * tick reads its clock and scans. A syscall or request that began no later
 * than it may be one the tick's rows caught in flight: its end is reported
 * (userspace keeps those a written row caught).
 */
TS_EXTERN __u64 tick_ns;
TS_EXTERN struct ts_counters counters;

/*
 * Sequence counter for the single-writer regions (seq, perf_seq). On x86
 * stores are not reordered with other stores, so a compiler barrier is
 * enough; elsewhere the fetch-and-add is a full barrier.
 */
static __always_inline void ts_seq_begin(__u32 *seq)
{
#if defined(__TARGET_ARCH_x86)
	WRITE_ONCE(*seq, READ_ONCE(*seq) + 1);
	barrier();
#else
	__sync_fetch_and_add(seq, 1);
#endif
}

static __always_inline void ts_seq_end(__u32 *seq)
{
#if defined(__TARGET_ARCH_x86)
	barrier();
	WRITE_ONCE(*seq, READ_ONCE(*seq) + 1);
#else
	__sync_fetch_and_add(seq, 1);
#endif
}

/* The entry at `slot` + 1, or NULL. */
static __always_inline struct ts_thread *thread_at(__u32 slot)
{
	__u32 idx = slot - 1;

	if (slot == TS_NO_SLOT || slot == TS_CPU_UNTRACKED)
		return NULL;
	return bpf_map_lookup_elem(&threads, &idx);
}

/*
 * The slot + 1 of the thread running on this CPU, as its switch-in left it
 * in `c`; TS_NO_SLOT when that switch-in was not seen (`c` names another
 * thread: prev_thread in sched.bpf.c) or the thread is not tracked.
 */
static __always_inline __u32 running_slot(struct ts_cpu *c)
{
	if (!c || c->tid != (__u32)bpf_get_current_pid_tgid())
		return TS_NO_SLOT;
	return c->slot;
}

/* The state-table entry a task owns, or NULL if it is not tracked; with
 * `slot` non-NULL also its slot + 1 (0 when untracked). */
static __always_inline struct ts_thread *thread_of_slot(struct task_struct *task, __u32 *slot)
{
	struct ts_slot_ref *ref;
	__u32 idx;

	if (slot)
		*slot = TS_NO_SLOT;
	ref = bpf_task_storage_get(&slot_of, task, 0, 0);
	if (!ref || ref->slot == TS_NO_SLOT)
		return NULL;
	idx = ref->slot - 1;
	if (slot)
		*slot = ref->slot;
	return bpf_map_lookup_elem(&threads, &idx);
}

/*
 * The entry of `task` when it is one of the last two threads switched out
 * on the CPU of `c` (sched.bpf.c notes them), with its slot + 1 in `slot`;
 * else NULL, and the caller looks it up (thread_of_slot). A noted slot is
 * trusted only while it is live and still holds this task: same tid and
 * start time. The address alone could be a freed task's reused by a new
 * one; tid and start time alone could be a group leader's old entry, not
 * yet released, after another thread's exec took over its tid and start
 * time (de_thread) - that thread's address differs.
 */
static __always_inline struct ts_thread *recent_thread(struct ts_cpu *c, struct task_struct *task,
						       __u32 *slot)
{
	__u64 addr = (__u64)task;
	struct ts_thread *t;
	__u32 s;

	if (!c)
		return NULL;
	if (c->recent[0].task == addr)
		s = c->recent[0].slot;
	else if (c->recent[1].task == addr)
		s = c->recent[1].slot;
	else
		return NULL;
	t = thread_at(s);
	if (!t || READ_ONCE(t->slot_state) != TS_SLOT_LIVE || t->tid != (__u32)task->pid ||
	    t->start_ns != task->start_time)
		return NULL;
	*slot = s;
	return t;
}

/* Note `task` (slot + 1 `slot`) as the thread last switched out on the
 * CPU of `c`. */
static __always_inline void note_recent(struct ts_cpu *c, struct task_struct *task, __u32 slot)
{
	if (c->recent[0].task == (__u64)task) {
		c->recent[0].slot = slot;
		return;
	}
	c->recent[1] = c->recent[0];
	c->recent[0].task = (__u64)task;
	c->recent[0].slot = slot;
}

static __always_inline struct ts_thread *thread_of(struct task_struct *task)
{
	return thread_of_slot(task, NULL);
}


/*
 * The slot + 1 of the current thread, for hooks in its own context that
 * must not lose it (sys_enter, sys_exit): the CPU's record of its
 * switch-in (no lookup), or when that switch-in was not seen (the record
 * names another thread) its task storage. Otherwise sys_enter would leave
 * the previous syscall's entry time in place, and the next switch-out,
 * seeing the same number with a known entry, would count a sleep from an
 * earlier call of the same syscall (one row in 150, 203 ms early, under
 * load in passive::default_syscall_times_...); and sys_exit would lose
 * the call's completion.
 */
static __always_inline __u32 current_slot(struct ts_cpu *c)
{
	__u32 slot = running_slot(c);

	if (slot == TS_NO_SLOT && c && c->slot != TS_NO_SLOT)
		thread_of_slot(bpf_get_current_task_btf(), &slot);
	return slot;
}

/* This CPU's state. */
static __always_inline struct ts_cpu *this_cpu_state(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&cpus, &cpu);
}

struct cfs_rq___grp {
	struct rq *rq;
} __attribute__((preserve_access_index));

struct sched_entity___grp {
	struct cfs_rq___grp *cfs_rq;
} __attribute__((preserve_access_index));

struct task_struct___grp {
	struct sched_entity___grp se;
} __attribute__((preserve_access_index));

/*
 * The run queue of the CPU `task` is on, through its CFS group run queue
 * (CONFIG_FAIR_GROUP_SCHED, which distributions enable); NULL otherwise.
 * Reaching it this way needs no kallsyms entry for `runqueues`.
 */
static __always_inline struct rq *task_rq_of(struct task_struct *task)
{
	struct task_struct___grp *t = (void *)task;
	struct cfs_rq___grp *cfs;

	if (!bpf_core_field_exists(t->se.cfs_rq))
		return NULL;
	cfs = t->se.cfs_rq;
	if (!cfs)
		return NULL;
	return cfs->rq;
}

/* Recalibrate a CPU's clock offset this often (scheduler clock time). */
#define TS_CALIBRATE_NS (50ULL * 1000 * 1000)

/*
 * CLOCK_MONOTONIC now, from the scheduler clock of `rq` (fresh in the
 * scheduler hooks) and the offset of the CPU it belongs to. Falls back to a
 * real clock read without a run queue or until that CPU is calibrated.
 */
static __always_inline __u64 rq_now(struct rq *rq, struct ts_cpu *c)
{
	if (!rq || !c || !c->calibrated_at)
		return bpf_ktime_get_ns();
	return rq->clock + c->clock_offset;
}

/* As rq_now for this CPU's run queue `rq`, recalibrating the offset when
 * it is old. Only for sched_switch, where rq->clock was just updated. */
static __always_inline __u64 switch_now(struct rq *rq, struct ts_cpu *c)
{
	__u64 clock, now;

	if (!rq)
		return bpf_ktime_get_ns();
	clock = rq->clock;
	if (!c->calibrated_at || clock - c->calibrated_at > TS_CALIBRATE_NS) {
		now = bpf_ktime_get_ns();
		c->clock_offset = (__s64)(now - clock);
		c->calibrated_at = clock ? clock : 1;
		return now;
	}
	return clock + c->clock_offset;
}

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

/* task->__state (5.14+) or task->state (older). */
static __always_inline __u32 task_state(struct task_struct *task)
{
	if (bpf_core_field_exists(task->__state))
		return task->__state;
	return ((struct task_struct___pre514 *)task)->state;
}

struct thread_info___cpu {
	__u32 cpu;
} __attribute__((preserve_access_index));

struct task_struct___cpu {
	unsigned int cpu;
} __attribute__((preserve_access_index));

/* The CPU a task runs on or last ran on. */
static __always_inline __u32 task_cpu(struct task_struct *task)
{
	struct task_struct___cpu *t = (void *)task;

	if (bpf_core_field_exists(t->cpu))
		return t->cpu;
	return ((struct thread_info___cpu *)&task->thread_info)->cpu;
}

#if defined(__TARGET_ARCH_x86)
#define TS_NR_PRCTL 157
#elif defined(__TARGET_ARCH_arm64)
#define TS_NR_PRCTL 167
#endif
#define TS_PR_SET_NAME 15

/* The six syscall arguments from the syscall's saved registers. */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_ARG0(regs) ((regs)->di)
#define SYSCALL_ARG1(regs) ((regs)->si)
#define SYSCALL_ARG2(regs) ((regs)->dx)
#define SYSCALL_ARG3(regs) ((regs)->r10)
#define SYSCALL_ARG4(regs) ((regs)->r8)
#define SYSCALL_ARG5(regs) ((regs)->r9)
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_ARG0(regs) ((regs)->orig_x0)
#define SYSCALL_ARG1(regs) ((regs)->regs[1])
#define SYSCALL_ARG2(regs) ((regs)->regs[2])
#define SYSCALL_ARG3(regs) ((regs)->regs[3])
#define SYSCALL_ARG4(regs) ((regs)->regs[4])
#define SYSCALL_ARG5(regs) ((regs)->regs[5])
#endif

/* The entry of `syscall_args` for slot + 1, or NULL. */
static __always_inline struct ts_syscall_args *syscall_args_at(__u32 slot)
{
	__u32 idx = slot - 1;

	if (slot == TS_NO_SLOT || slot == TS_CPU_UNTRACKED)
		return NULL;
	return bpf_map_lookup_elem(&syscall_args, &idx);
}

/*
 * `task`'s saved user registers (the kernel's task_pt_regs). They sit at
 * a fixed offset from the base of every task's kernel stack: THREAD_SIZE,
 * less the stack's top padding (x86_64: 16 bytes with FRED, else none),
 * less the registers' size. The kernel's config decides it, so it is
 * learnt from the first bpf_task_pt_regs() call and kept in
 * `pt_regs_offset` (every CPU writes the same value); from then on the
 * address is computed and read through a cast, which the verifier turns
 * into no instruction. A helper call costs ~25 ns on hosts whose CPU
 * mitigations make every return expensive (the project's VMs), and the
 * switch-out and the wakeup each made one: on a same-CPU pipe ping-pong,
 * 100 ns per round trip.
 */
static __always_inline struct pt_regs *task_regs(struct task_struct *task)
{
	__u64 stack = (__u64)task->stack, off = READ_ONCE(pt_regs_offset);
	struct pt_regs *regs;

	if (!stack)
		return NULL;
	if (off)
		return bpf_core_cast((void *)(stack + off), struct pt_regs);
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if ((__u64)regs > stack && (__u64)regs - stack < 64 * 1024)
		WRITE_ONCE(pt_regs_offset, (__u64)regs - stack);
	return regs;
}

/*
 * The syscall a task is inside right now according to its saved user
 * registers, or -1; with `args` non-NULL also its first three arguments,
 * and with `args_hi` non-NULL the other three, which stay in the saved
 * registers for the whole syscall. Valid for a
 * task that is off CPU (and for the current task when it is in kernel
 * mode): the entry code leaves the syscall number in orig_ax and -ENOSYS
 * in ax until the syscall returns.
 */
static __always_inline long syscall_in_progress(struct task_struct *task, __u64 *args,
						__u64 *args_hi)
{
	struct pt_regs *regs;
	long nr = -1;

	if (task->flags & PF_KTHREAD)
		return -1;
	regs = task_regs(task);
	if (!regs)
		return -1;
#if defined(__TARGET_ARCH_x86)
	{
		long orig = regs->orig_ax;
		long ax = regs->ax;

		if (ax == -TS_ENOSYS && orig >= 0 && orig <= 4095)
			nr = orig;
	}
#elif defined(__TARGET_ARCH_arm64)
	{
		int syscallno = regs->syscallno;

		if (syscallno >= 0)
			nr = syscallno;
	}
#endif
	if (nr >= 0 && args) {
		args[0] = SYSCALL_ARG0(regs);
		args[1] = SYSCALL_ARG1(regs);
		args[2] = SYSCALL_ARG2(regs);
	}
	if (nr >= 0 && args_hi) {
		args_hi[0] = SYSCALL_ARG3(regs);
		args_hi[1] = SYSCALL_ARG4(regs);
		args_hi[2] = SYSCALL_ARG5(regs);
	}
	return nr;
}

static __always_inline bool comm_equal(char *have, struct task_struct *task)
{
	__u64 *h = (__u64 *)have;
	__u64 *s = (__u64 *)task->comm;

	return h[0] == s[0] && h[1] == s[1];
}

static __always_inline void copy_comm(char *dst, struct task_struct *task)
{
	/* two direct 8-byte loads; a thread renaming itself at this moment
	 * can at worst show a mix of old and new name for one sample */
	__u64 *d = (__u64 *)dst;
	__u64 *s = (__u64 *)task->comm;

	d[0] = s[0];
	d[1] = s[1];
}

#endif /* TASKSCOPE_MAPS_BPF_H */
