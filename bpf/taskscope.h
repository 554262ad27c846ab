/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Everything that crosses the kernel/user boundary: the per-thread state
 * table entry, the task-storage slot reference, the per-request I/O record,
 * the shared counters and the flag/state enums.
 *
 * Included by every .bpf.c file in bpf/; userspace sees these types through the
 * skeleton's generated `types` module (never through a hand-copied twin).
 * Field order matters for the sampler's scan: the first 64 bytes hold
 * everything the filter needs, so a pass over idle threads touches one cache
 * line per thread.
 */
#ifndef TASKSCOPE_H
#define TASKSCOPE_H

#define TS_COMM_LEN 16
/* Slot references are stored +1 so that zero-filled task storage means "none". */
#define TS_NO_SLOT 0
/* ts_cpu.slot when the running thread is not tracked. */
#define TS_CPU_UNTRACKED 0xffffffffU

/* Lifecycle of a slot in the `threads` table. */
enum ts_slot_state {
	TS_SLOT_FREE = 0,   /* never used, or recycled by userspace */
	TS_SLOT_LIVE = 1,   /* owned by a thread */
	TS_SLOT_EXITED = 2, /* thread freed; userspace will recycle the slot */
};

/* Bits of `ts_thread.flags` (sched region). */
enum ts_thread_flags {
	TS_F_ON_CPU = 1 << 0,          /* running on a CPU now */
	TS_F_PREEMPTED = 1 << 1,       /* last switch-out was involuntary (still runnable) */
	TS_F_AGENT_PREEMPTED = 1 << 2, /* ... and the agent's own thread took the CPU */
	TS_F_IN_SYSCALL = 1 << 3,      /* inside `syscall_nr` (as of the newest event) */
	TS_F_KTHREAD = 1 << 4,         /* kernel thread */
	TS_F_SWITCH_KNOWN = 1 << 5,    /* switch_in/out times are real, not seeded */
	TS_F_ENTER_KNOWN = 1 << 6,     /* syscall_enter_ns is the real entry time */
	TS_F_ARGS_KNOWN = 1 << 7,      /* syscall_args belong to syscall_nr */
	TS_F_COMM_DIRTY = 1 << 8,      /* prctl(PR_SET_NAME) seen: copy comm at switch-out */
	/* Seeded by the task iterator for a thread already off CPU when the
	 * agent started, from the scheduler's last-ran timestamp: the time is
	 * no earlier than the real one, so the wait it starts is a lower bound. */
	TS_F_SINCE_SEEDED = 1 << 9,    /* switch_out_ns, of a waiting (not runnable)
	                                * thread; cleared at its next switch */
	TS_F_ENTER_SEEDED = 1 << 10,   /* syscall_enter_ns, for syscall_nr */
	/* Passive syscalls (the default, no sys_enter hook): syscall_enter_ns is
	 * the switch-out that found the thread inside syscall_nr, no earlier than
	 * its entry, so the time in the syscall it gives is a lower bound. */
	TS_F_ENTER_BOUND = 1 << 11,
};

/* Bits of `ts_thread.perf_flags` (on-CPU sample region). */
enum ts_perf_flags {
	TS_P_VALID = 1 << 0,      /* a sample has been taken */
	TS_P_IN_SYSCALL = 1 << 1, /* the sample hit the thread inside a syscall */
	TS_P_USER = 1 << 2,       /* the sample hit the thread in user mode */
};

/*
 * One entry of the mmap-able `threads` array. Three writer classes, each
 * with its own sequence counter (odd while an update is in progress):
 *
 *   seq      - the thread's own context: sys_enter, sched_switch (as prev
 *              or next), exec, and slot initialisation. These never overlap
 *              for one thread, so the counter needs no atomic RMW on x86.
 *   perf_seq - the on-CPU perf_event program (runs on the thread's CPU).
 *   io_seq   - block-layer hooks, which run on any CPU; writers take the
 *              counter with a compare-and-swap.
 *
 * wakeup_ns, seen_gen, euid and cgroup_id are single aligned stores that
 * need no counter.
 */
struct ts_thread {
	/* cache line 0: what the filter looks at */
	__u32 seq;
	__u32 slot_state;   /* enum ts_slot_state */
	__u32 tid;
	__u32 tgid;
	__u32 flags;        /* enum ts_thread_flags */
	__u32 sched_state;  /* task->__state at switch-out; 0 if preempted */
	__u32 exit_state;   /* task->exit_state at switch-out */
	__u32 cpu;          /* CPU it runs on, or last ran on */
	__u64 switch_in_ns; /* CLOCK_MONOTONIC of the last switch-in */
	__u64 switch_out_ns;
	__u64 wakeup_ns;    /* last sched_wakeup/sched_wakeup_new */
	__u32 slot_gen;     /* bumped each time the slot is handed to a thread */
	__u32 seen_gen;     /* reconciliation pass that last saw the thread */

	/* cache line 1: identity and syscall */
	char comm[TS_COMM_LEN];
	__s32 syscall_nr;   /* last syscall entered (-1: none seen) */
	__u32 euid;
	__u64 syscall_enter_ns;
	__u64 syscall_seq;  /* syscalls entered since the slot was taken */
	__u64 syscall_args[3];

	/* cache line 2: process identity, on-CPU sample */
	__u64 start_ns;     /* task->start_time */
	__u64 exe_id;       /* identity of the process image (mm->exe_file) */
	__u64 cgroup_id;    /* cgroup v2 id (kernfs inode) */
	__u32 exec_count;   /* execs seen since the slot was taken */
	__u32 perf_seq;
	__u32 perf_flags;   /* enum ts_perf_flags */
	__s32 perf_syscall_nr;
	__u64 perf_ns;      /* time of the last on-CPU sample */
	__u64 stack_ns;     /* last stack capture at switch-out (rate limit) */
	__u64 wait_ns;      /* last voluntary switch-out (stacks on only) */

	/* cache line 3: block I/O (written from any CPU) */
	__u32 io_seq;
	__u32 io_dev;       /* kernel dev_t: major << 20 | minor */
	__u64 io_rq;        /* request cookie; 0 = nothing in flight */
	__u64 io_insert_ns;
	__u64 io_issue_ns;  /* 0 = not yet issued to the device */
	__u64 io_sector;
	__u32 io_bytes;
	__u32 io_op;        /* REQ_OP_* */
	__u32 io_inflight;  /* requests of this thread in flight */
	__u32 io_flags;     /* enum ts_io_flags */
	__u32 io_rq_seq;    /* requests started since the slot was taken; io_rq's number */
	__u32 stack_entry;  /* entry of the `stacks` pool with its last capture,
	                     * if ts_stack.slot still names this slot (a single
	                     * store by the capturing hook; stacks on only) */
};

_Static_assert(sizeof(struct ts_thread) == 256, "ts_thread is four cache lines");

/*
 * Who woke a thread and which kernel lock it waits for (issue 13): one
 * entry per slot of `threads` in the mmap-able `waits` side array, so the
 * 256-byte entry keeps its four cache lines. Two writer classes, each with
 * its own sequence counter (odd while an update is in progress):
 *
 *   seq      - sched_wakeup (the waker); wakeups of one task are
 *              serialized (one per sleep), so no atomic RMW is needed.
 *   lock_seq - the thread's own context: contention_begin/end and its
 *              switch-out while it waits for a kernel lock.
 */
struct ts_wait {
	__u32 seq;
	__u32 waker_tid;    /* 0: woken from an interrupt (or never seen) */
	__u32 waker_tgid;
	__u32 lock_seq;
	char waker_comm[TS_COMM_LEN];
	__u64 waker_sp;     /* a stack address of the last sched_wakeup: on the
	                     * waker's own stack, or an interrupt's */
	__u64 lock_addr;    /* kernel lock being contended; 0: none */
	__u32 lock_flags;   /* LCB_F_* of that wait (contention_begin) */
	__u32 lock_owner;   /* tid of its owner at the waiter's last switch-out; 0: unknown */
	__u64 owner_ns;     /* that switch-out (ts_thread.switch_out_ns) */
};

_Static_assert(sizeof(struct ts_wait) == 64, "ts_wait is one cache line");

/*
 * The waker of a wakeup handed over to the wakee's CPU (Linux 6.6+): noted
 * by csd_queue_cpu in the waker's context, taken by the sched_wakeup that
 * follows on the wakee's CPU, outside the waker's context (waits.bpf.h).
 * One entry per slot of `threads`, in the `handovers` array (BPF only).
 */
struct ts_handover {
	__u32 armed;        /* 1: noted and not yet taken */
	__u32 waker_tid;    /* 0: handed over from an interrupt, no waker */
	__u32 waker_tgid;
	__u32 reserved;
	__u64 switch_in_ns; /* the wakee's ts_thread.switch_in_ns when noted */
	__u64 sp;           /* scratch: a stack address of the hand-over */
	char waker_comm[TS_COMM_LEN];
};

/* The type of a call_single_data (include/linux/smp_types.h, 5.8+). */
#define TS_CSD_FLAG_TYPE_MASK 0xF0
#define TS_CSD_TYPE_TTWU 0x30

/* contention_begin's flags (include/trace/events/lock.h), stable since 5.19. */
enum ts_lock_flags {
	TS_LCB_F_SPIN = 1 << 0,
	TS_LCB_F_READ = 1 << 1,
	TS_LCB_F_WRITE = 1 << 2,
	TS_LCB_F_RT = 1 << 3,
	TS_LCB_F_PERCPU = 1 << 4,
	TS_LCB_F_MUTEX = 1 << 5,
};

/* Bits of `ts_thread.io_flags` and `ts_request.flags` (from REQ_* flags). */
enum ts_io_flags {
	TS_IO_SYNC = 1 << 0,
	TS_IO_META = 1 << 1,
	TS_IO_FUA = 1 << 2,
	TS_IO_PREFLUSH = 1 << 3,
};

/*
 * Per-CPU state, one 64-byte entry per CPU in the `cpus` array:
 *  - the slot of the thread running on the CPU, set at every switch-in, so
 *    hooks that run in the current thread's context (sys_enter, the on-CPU
 *    sample, sched_switch's prev) find its entry without a task-storage
 *    lookup;
 *  - the offset that turns this CPU's scheduler clock (rq->clock, just
 *    updated by the scheduler at every switch and wakeup) into
 *    CLOCK_MONOTONIC, so the hot hooks need no clock read of their own.
 */
struct ts_cpu {
	__u32 slot;           /* slot + 1 of the running thread; 0: not known
	                       * yet; TS_CPU_UNTRACKED: not tracked */
	__u32 tid;            /* pid of the thread last switched in */
	__s64 clock_offset;   /* CLOCK_MONOTONIC - rq->clock */
	__u64 calibrated_at;  /* rq->clock at the last calibration; 0: never */
	__u64 in_ns;          /* when it was switched in */
	/* The last two threads switched out here (most recent first): a
	 * thread switched in or woken on this CPU is most often one of them
	 * (a pipe or futex ping-pong), and its entry is then found without
	 * a task-storage lookup (sched.bpf.c: recent_thread). */
	struct ts_recent {
		__u64 task;   /* its task_struct's address; 0: none */
		__u32 slot;   /* its slot + 1 */
		__u32 pad;
	} recent[2];
};

_Static_assert(sizeof(struct ts_cpu) == 64, "ts_cpu is one cache line");

#define TS_KSTACK_DEPTH 24
#define TS_USTACK_DEPTH 32
/* Twice 256 bytes: CPython's eval loop keeps a 384-byte frame. */
#define TS_USTACK_PEEK 512

/*
 * The syscall arguments that do not fit in `ts_thread`, one entry per slot
 * of `threads` in the mmap-able `syscall_args` array (so the state table's
 * entry stays four cache lines and the scan's filter one):
 *
 *   args_hi   - arguments 3..5 of ts_thread.syscall_nr, written with
 *               syscall_args[0..2] under ts_thread.seq (same writer);
 *   perf_args - all six arguments of perf_syscall_nr at perf_ns, written by
 *               the on-CPU sample under ts_thread.perf_seq.
 *
 * A reader copies it inside the same sequence-counter window as the entry.
 */
struct ts_syscall_args {
	__u64 args_hi[3];
	__u64 reserved;
	__u64 perf_args[6];
};

_Static_assert(sizeof(struct ts_syscall_args) == 80, "ts_syscall_args layout");

/* Bits of `ts_stack.flags`. */
enum ts_stack_flags {
	TS_S_ONCPU = 1 << 0,       /* captured by the on-CPU sample (else at switch-out) */
	TS_S_KERNEL = 1 << 1,      /* kips valid */
	TS_S_USER = 1 << 2,        /* uips valid */
	TS_S_PEEK = 1 << 3,        /* peek holds the user stack at user_sp */
	TS_S_ITER = 1 << 4,        /* captured by the task iterator (off CPU) */
	TS_S_PYTHON = 1 << 5,      /* py_chain names the CPython frame chain read with it */
	TS_S_PREEMPTED = 1 << 6,   /* TS_S_ITER of a runnable thread: where it was preempted */
};

/*
 * The stacks of one thread: one entry of the mmap-able `stacks` pool, a
 * capture with the switch-out it belongs to, so the sampler can tell
 * whether it still describes where the thread waits. The pool is smaller
 * than the thread table: a thread keeps capturing into its entry
 * (`ts_thread.stack_entry`) while `slot` names it, and otherwise takes the
 * pool's next one (`stack_cursor`), the one taken longest ago, from
 * whichever thread had it; the sampler keeps what it needs of a capture
 * once it has read it. User stacks are frame-pointer walks plus a copy of the top
 * of the user stack (`peek`), from which userspace unwinds the innermost
 * frames of libraries built without frame pointers.
 */
struct ts_stack {
	__u32 seq;            /* odd while being written */
	__u32 flags;          /* enum ts_stack_flags */
	__u32 slot;           /* slot + 1 of the thread captured (0: none yet) */
	__u32 py_chain;       /* TS_S_PYTHON: the entry of `py_chains` read with it */
	__u64 captured_ns;
	__u64 switch_out_ns;  /* switch-out the capture belongs to (off CPU) */
	__u32 kframes;
	__u32 uframes;
	__u64 user_sp;
	__u64 user_bp;
	__u64 kips[TS_KSTACK_DEPTH];
	__u64 uips[TS_USTACK_DEPTH];
	__u8 peek[TS_USTACK_PEEK];
};

_Static_assert(sizeof(struct ts_stack) == 1016, "ts_stack layout");

/*
 * A refresh request, one per slot of `threads` in the mmap-able
 * `stack_requests` array: userspace bumps `want`; the refresh pass
 * captures the thread while `served` differs, and copies `want` there.
 */
struct ts_stack_request {
	__u32 want;
	__u32 served;
};

/*
 * CPython frame chains read by the on-CPU sample, at the instant of its
 * stack capture (bpf/oncpu.bpf.c). Userspace (output::stacks::python)
 * publishes each Python thread it found in `py_threads`: where its thread
 * state is and the few offsets of its interpreter's version the walk
 * needs; the sample walks up to TS_PY_DEPTH frames into the thread's own
 * entry of the mmap-able `py_chains` array, stamped with the capture's
 * time and thread id.
 */
#define TS_PY_DEPTH 48
/* Python threads whose chain is read (entries of both maps). */
#define TS_PY_THREADS 4096
/* ts_py_thread.cframe_current: `current` is the frame pointer itself. */
#define TS_PY_DIRECT 0xffffffffu
/* ts_py_thread.shim_owner: `marker` is the is_entry byte (3.11). */
#define TS_PY_IS_ENTRY 0xffffffffu

/* A thread to read the chain of, by thread id (`py_threads`). Offsets
 * are bytes into the structure named. */
struct ts_py_thread {
	__u64 tstate;           /* its PyThreadState */
	__u32 tgid;             /* the process (a reused tid is not it) */
	__u32 chain;            /* its entry of `py_chains` */
	__u32 native_id;        /* tstate->native_thread_id (checked == tid) */
	__u32 current;          /* tstate->current_frame, or tstate->cframe */
	__u32 cframe_current;   /* cframe->current_frame; TS_PY_DIRECT */
	__u32 previous;         /* frame->previous */
	__u32 code;             /* frame->f_code (f_executable) */
	__u32 instr;            /* frame->prev_instr (3.11, 3.12), instr_ptr (3.13) */
	__u32 marker;           /* frame->owner (3.12+), frame->is_entry (3.11) */
	__u32 shim_owner;       /* owner of the C stack's shim frames; TS_PY_IS_ENTRY */
	__u32 code_qualname;    /* code->co_qualname */
	__u32 code_filename;    /* code->co_filename */
	__u32 code_firstlineno; /* code->co_firstlineno (an int) */
	__u32 pad;
};

_Static_assert(sizeof(struct ts_py_thread) == 64, "ts_py_thread layout");

/* Bits of `ts_py_chain.flags`. */
enum ts_py_flags {
	TS_PY_COMPLETE = 1 << 0,  /* walked to the first frame */
	TS_PY_TRUNCATED = 1 << 1, /* more than TS_PY_DEPTH frames */
	TS_PY_FAILED = 1 << 2,    /* a read failed or a value was not plausible */
};

/*
 * One frame: the code object's address with bit 0 set when the frame
 * closes its eval-loop call's group (is_entry, 3.11), or 1 alone for a
 * shim frame (3.12+); and a fingerprint of the code object at the capture
 * (co_qualname ^ co_filename rotated 17 ^ co_firstlineno), which the
 * writer checks against the object it reads later; and the frame's
 * instruction pointer (0 for a shim), from which the writer tells the line
 * executing.
 */
struct ts_py_frame {
	__u64 code;
	__u64 print;
	__u64 instr;
};

struct ts_py_chain {
	__u32 seq;              /* odd while being written */
	__u32 n;                /* frames */
	__u32 tid;
	__u32 flags;            /* enum ts_py_flags */
	__u64 captured_ns;      /* ts_stack.captured_ns of the capture */
	struct ts_py_frame frames[TS_PY_DEPTH];
};

_Static_assert(sizeof(struct ts_py_frame) == 24, "ts_py_frame layout");
_Static_assert(sizeof(struct ts_py_chain) == 24 + 24 * TS_PY_DEPTH, "ts_py_chain layout");

/* Task-local storage: which slot a task owns. */
struct ts_slot_ref {
	__u32 slot;     /* slot index + 1; TS_NO_SLOT if none */
	__u32 slot_gen; /* ts_thread.slot_gen at allocation */
};

/* One block request in flight, keyed by the request pointer. */
struct ts_request {
	__u32 slot;
	__u32 slot_gen;
	__u64 insert_ns;
	__u64 issue_ns;
	__u64 sector;
	__u32 bytes;
	__u32 dev;
	__u32 op;
	__u32 tid;
	__u32 flags;
	__u32 seq;      /* the submitter's io_rq_seq for this request */
};

/*
 * Counters of events the hooks could not handle, shared through .bss.
 * Userspace logs them when they change.
 */
struct ts_counters {
	__u64 slots_exhausted;  /* new thread not tracked: table full */
	__u64 storage_failed;   /* task storage could not be created */
	__u64 alloc_races;      /* two paths allocated a slot for one task */
	__u64 io_contended;     /* I/O update dropped: region busy */
	__u64 io_untracked;     /* request of an untracked thread */
	__u64 freed_mismatch;   /* free hook found the slot already released (a
	                         * thread's last switch, or reconciliation) */
	__u64 completions_lost; /* tracked completion dropped: ring buffer full */
	__u64 seed_no_slot;     /* thread a task-iterator pass found untracked and
	                         * could not give a slot (table full); one count
	                         * per pass per thread: userspace takes the
	                         * difference around a pass as the number of live
	                         * threads left out */
	__u64 map_update_failed; /* bpf_map_update_elem failed (map full, no memory) */
	__u64 switch_in_missed; /* a switch-out of a thread whose switch-in no
	                         * hook saw (the entry said it was waiting) */
	__u64 switch_in_late;   /* a switch-in whose lookup failed (task storage
	                         * busy), recorded at the switch-out */
	__u64 handovers_noted;  /* a wakeup of a tracked thread handed over to its
	                         * CPU by a waker (csd_queue_cpu) */
	__u64 handovers_unnamed; /* ... by an interrupt (no waker) */
	__u64 handovers_taken;  /* a noted waker its sched_wakeup recorded */
	__u64 handovers_stale;  /* a noted waker dropped: the wakee had run since */
};

/* Bits of the `track_kinds` tunable (--track). */
enum ts_track_kinds {
	TS_TRACK_SYSCALLS = 1 << 0,
	TS_TRACK_IO = 1 << 1,
};

/* Kinds of `ts_completion` records. */
enum ts_completion_kind {
	TS_C_SYSCALL = 1,
	TS_C_IO = 2,
};

/*
 * The end of a syscall or block request that was in flight at a tick
 * (--track), sent through the `completions` ring buffer: the exit or
 * completion hook emits one when the syscall was entered (the request
 * queued) no later than the end of the latest tick's scan (`tick_ns`, which
 * userspace publishes after it scans). Userspace keeps the records of
 * those a written sample caught, by thread and sequence number.
 */
struct ts_completion {
	__u32 kind;       /* enum ts_completion_kind */
	__u32 tid;
	__u32 tgid;
	__s32 syscall_nr; /* syscalls */
	__u64 seq;        /* syscall_seq or io_rq_seq */
	__u64 start_ns;   /* syscall entry / request queued (CLOCK_MONOTONIC) */
	__u64 issue_ns;   /* request issued to the device (0: not seen) */
	__u64 end_ns;     /* syscall exit / request completion */
	__s64 ret;        /* syscall return value / blk_status_t of the request */
	__u64 sector;
	__u32 bytes;
	__u32 dev;        /* kernel dev_t: major << 20 | minor */
	__u32 op;         /* REQ_OP_* */
	__u32 flags;      /* enum ts_io_flags */
};

_Static_assert(sizeof(struct ts_completion) == 80, "ts_completion layout");

#endif /* TASKSCOPE_H */
