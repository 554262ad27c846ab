/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Syscall entry: number, entry time, first three arguments and a per-thread
 * sequence number. There is deliberately no sys_exit hook: it would double
 * the cost paid on every syscall of the machine. Whether a thread is still
 * inside the syscall is decided from its saved registers when it switches
 * out (sched.bpf.c) and, for threads on a CPU, by the on-CPU sample
 * (oncpu.bpf.c).
 */
#include "maps.bpf.h"

SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long id)
{
	struct ts_thread *t = thread_of(bpf_get_current_task_btf());
	__u64 now;

	if (!t)
		return 0;
	now = bpf_ktime_get_ns();
	ts_seq_begin(&t->seq);
	t->syscall_nr = id;
	t->syscall_enter_ns = now;
	t->syscall_args[0] = SYSCALL_ARG0(regs);
	t->syscall_args[1] = SYSCALL_ARG1(regs);
	t->syscall_args[2] = SYSCALL_ARG2(regs);
	t->syscall_seq += 1;
	t->flags |= TS_F_IN_SYSCALL | TS_F_ENTER_KNOWN | TS_F_ARGS_KNOWN;
	ts_seq_end(&t->seq);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
