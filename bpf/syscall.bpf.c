/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Exact syscalls (`--syscalls exact`, implied by `--track syscalls`): a
 * sys_enter hook records number, entry time, the six arguments and a
 * per-thread sequence number of every syscall. Both programs are optional
 * (`?`) and not even loaded by default: every instruction here is paid on
 * every syscall of the machine (an empty sys_enter alone adds about half a
 * getppid()). By default the syscall, its arguments and a lower bound of
 * its entry time come from the saved registers at switch-out (sched.bpf.c)
 * and in on-CPU samples (oncpu.bpf.c). With --track syscalls, a sys_exit
 * hook reports the end of every syscall that was in flight at the latest
 * tick (entered no later than the end of its scan, `tick_ns`), and nothing
 * else: decided here, so a call that ends right after the tick is not
 * lost to a sampler that has not yet read its row.
 *
 * The entry hook does no helper call but the CPU id: the entry comes from
 * the per-CPU running thread slot, the time from the run queue's clock.
 */
#include "maps.bpf.h"

SEC("?tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long id)
{
	struct ts_cpu *c = this_cpu_state();
	struct ts_syscall_args *more;
	struct ts_thread *t;
	__u64 enter;
	__u32 slot;

	/* The running thread's entry, set by its switch-in: no lookups. */
	if (!c)
		return 0;
	slot = current_slot(c);
	t = thread_at(slot);
	more = syscall_args_at(slot);
	if (!t || !more)
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
	more->args_hi[0] = SYSCALL_ARG3(regs);
	more->args_hi[1] = SYSCALL_ARG4(regs);
	more->args_hi[2] = SYSCALL_ARG5(regs);
	t->syscall_seq += 1;
	t->flags = (t->flags & ~TS_F_ENTER_BOUND) | TS_F_IN_SYSCALL | TS_F_ENTER_KNOWN |
		   TS_F_ARGS_KNOWN;
	/* The thread renames itself: its next switch-out copies the name. */
	if (id == TS_NR_PRCTL && t->syscall_args[0] == TS_PR_SET_NAME)
		t->flags |= TS_F_COMM_DIRTY;
	ts_seq_end(&t->seq);
	return 0;
}

/*
 * --track syscalls: the end of a syscall that was in flight at the latest
 * tick. Userspace keeps the records of those a written sample caught (a
 * thread the tick's filter left out has its record dropped there); every
 * other exit costs one array lookup and a compare.
 */
SEC("?tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
	struct ts_cpu *c = this_cpu_state();
	struct ts_completion *rec;
	struct ts_thread *t;
	__u64 seq;

	if (!c)
		return 0;
	t = thread_at(current_slot(c));
	if (!t)
		return 0;
	/* Its entry was seen (a seeded one was not numbered), and came no
	 * later than the end of the latest tick's scan. */
	if (!(t->flags & TS_F_ENTER_KNOWN) || t->syscall_enter_ns > READ_ONCE(tick_ns))
		return 0;
	seq = t->syscall_seq;
	rec = bpf_ringbuf_reserve(&completions, sizeof(*rec), 0);
	if (!rec) {
		__sync_fetch_and_add(&counters.completions_lost, 1);
		return 0;
	}
	rec->kind = TS_C_SYSCALL;
	rec->tid = t->tid;
	rec->tgid = t->tgid;
	rec->syscall_nr = t->syscall_nr;
	rec->seq = seq;
	rec->start_ns = t->syscall_enter_ns;
	rec->issue_ns = 0;
	rec->end_ns = bpf_ktime_get_ns();
	rec->ret = ret;
	rec->sector = 0;
	rec->bytes = 0;
	rec->dev = 0;
	rec->op = 0;
	rec->flags = 0;
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

/*
 * The floor: an empty sys_enter and sys_exit, never attached by the agent.
 * benches/hooks.rs attaches them alone (bpf::floor) to show what any
 * per-syscall hook costs before its first instruction.
 */
SEC("?tp_btf/sys_enter")
int BPF_PROG(empty_sys_enter)
{
	return 0;
}

SEC("?tp_btf/sys_exit")
int BPF_PROG(empty_sys_exit)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
