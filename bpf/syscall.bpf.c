/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Syscall entry: number, entry time, first three arguments and a per-thread
 * sequence number. There is deliberately no sys_exit hook: it would double
 * the cost paid on every syscall of the machine. Whether a thread is still
 * inside the syscall is decided from its saved registers when it switches
 * out (sched.bpf.c) and, for threads on a CPU, by the on-CPU sample
 * (oncpu.bpf.c).
 *
 * This hook runs on every syscall of every tracked thread, so it does no
 * helper call but the CPU id: the entry comes from the per-CPU running
 * thread slot, the time from the run queue's clock.
 */
#include "maps.bpf.h"

SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long id)
{
	struct ts_cpu *c = this_cpu_state();
	struct ts_thread *t;
	__u64 enter;

	/* The running thread's entry, set by its switch-in: no lookups. */
	if (!c)
		return 0;
	t = thread_at(c->slot);
	if (!t)
		return 0;
	/*
	 * The run queue's clock is at most one scheduler tick old here, and
	 * usually fresh (the thread was switched in or something was woken on
	 * this CPU a moment ago). The entry cannot be before the switch-in.
	 */
	enter = rq_now(task_rq_of(bpf_get_current_task_btf()), c);
	if (enter < t->switch_in_ns)
		enter = t->switch_in_ns;
	ts_seq_begin(&t->seq);
	t->syscall_nr = id;
	t->syscall_enter_ns = enter;
	t->syscall_args[0] = SYSCALL_ARG0(regs);
	t->syscall_args[1] = SYSCALL_ARG1(regs);
	t->syscall_args[2] = SYSCALL_ARG2(regs);
	t->syscall_seq += 1;
	t->flags |= TS_F_IN_SYSCALL | TS_F_ENTER_KNOWN | TS_F_ARGS_KNOWN;
	/* The thread renames itself: its next switch-out copies the name. */
	if (id == TS_NR_PRCTL && t->syscall_args[0] == TS_PR_SET_NAME)
		t->flags |= TS_F_COMM_DIRTY;
	ts_seq_end(&t->seq);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
