/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * On-CPU sample: a cpu-clock perf event per CPU, at the sampling frequency,
 * records what the running thread is doing right now (user mode, or inside
 * which syscall). Without it a thread that returned from a syscall and kept
 * running would look as if it were still in that syscall, because there is
 * no sys_exit hook. A sample inside a syscall also records its arguments
 * (from the saved registers) and bounds its entry time: no later than the
 * sample. The stacks it captures come with the CPython frame chain of
 * a Python thread userspace published (python.bpf.h).
 */
#include "fd.bpf.h"
#include "python.bpf.h"
#include "capture.bpf.h"

SEC("perf_event")
int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 slot = running_slot(this_cpu_state());
	struct ts_thread *t = thread_at(slot);
	struct ts_syscall_args *more;
	__u32 flags = TS_P_VALID;
	long nr = -1;
	__u64 now;
	bool user;

	if (!t)
		return 0;
	/* Context fields must be read at their full width. */
#if defined(__TARGET_ARCH_x86)
	{
		/* cs is 16 bits wide in newer kernels (FRED union), but the
		 * context only allows 8-byte loads: read the word it starts. */
		__u64 cs = *(__u64 *)((char *)ctx + bpf_core_field_offset(struct pt_regs, cs));

		user = (cs & 3) != 0;
	}
#elif defined(__TARGET_ARCH_arm64)
	{
		__u64 pstate = ctx->regs.pstate;

		barrier_var(pstate);
		user = (pstate & 0xf) == 0;
	}
#else
	user = false;
#endif
	more = syscall_args_at(slot);
	now = bpf_ktime_get_ns();
	ts_seq_begin(&t->perf_seq);
	/* In a syscall: which, and its arguments (entered before `now`). */
	if (user)
		flags |= TS_P_USER;
	else
		nr = syscall_in_progress(task, more ? more->perf_args : NULL,
					 more ? more->perf_args + 3 : NULL);
	if (nr >= 0)
		flags |= TS_P_IN_SYSCALL;
	/* Refresh the name (renamed through /proc/<tid>/comm, say). */
	copy_comm(t->comm, task);
	t->perf_ns = now;
	t->perf_flags = flags;
	t->perf_syscall_nr = nr;
	ts_seq_end(&t->perf_seq);
	/* The file its fd names: the fd of the arguments read just now, or
	 * (without the side array) of the entry's record of this syscall. */
	if (nr >= 0 && more)
		record_fd(task, slot, nr, more->perf_args[0], now);
	else if (nr >= 0 && nr == t->syscall_nr && (t->flags & TS_F_ARGS_KNOWN))
		record_fd(task, slot, nr, t->syscall_args[0], now);
	/* Where it runs: the stacks of the running thread. */
	if (stack_kinds)
		capture_stacks(ctx, task, t, slot - 1, now, 0, TS_S_ONCPU,
			       (stack_kinds & TS_S_USER) ? capture_python(task, now) : 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
