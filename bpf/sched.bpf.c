/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Scheduler hooks: they keep each tracked thread's entry in the state table
 * true at every moment, so the sampler never asks the kernel about threads
 * that did nothing.
 *
 *   sched_switch      prev goes off CPU (state word, voluntary or not,
 *                     whether it is still inside a syscall), next comes on
 *                     and becomes this CPU's running thread
 *   sched_wakeup(_new) time a thread became runnable (RUNQUEUE wait), and
 *                     who woke it (waits.bpf.h)
 *   sched_process_fork a new thread or process gets a slot
 *   sched_process_exec tid (de_thread), comm and credentials change
 *   sched_process_free the task is reaped and freed: its slot is released
 *
 * A slot is released at the thread's last switch when it is already
 * reaped (EXIT_DEAD), else at sched_process_free, not sched_process_exit,
 * so a zombie stays visible as ZOMBIE until its parent reaps it.
 *
 * Times come from the scheduler clock the kernel has just updated
 * (rq->clock, see rq_now), so the hot hooks read no clock themselves.
 */
#include "track.bpf.h"
#include "waits.bpf.h"
#include "fd.bpf.h"
#include "python.bpf.h"
#include "capture.bpf.h"

/*
 * The entry of `prev`, the thread this CPU is switching away from, and
 * its slot + 1, from what this CPU's last switch-in left in `c`.
 *
 * That switch-in may not have been seen: some kernels skip the scheduler
 * tracepoints in some contexts (on the project's VMs, every switch away
 * from the hypervisor agent's threads), so `c` can still describe the
 * thread before. It is trusted only for the thread it names (`c->tid`);
 * anyone else is looked up, and the missed switch-in is counted. Trusting
 * it blindly lost the switch-out too, and the entry kept a wait the
 * thread had long left (a 200 ms sleep shown 383 ms long, a wait's stack
 * under another wait's state).
 */
static __always_inline struct ts_thread *prev_thread(struct ts_cpu *c, struct task_struct *prev, __u32 *slot)
{
	struct ts_thread *t;

	*slot = TS_NO_SLOT;
	if (c->tid == prev->pid) {
		if (c->slot == TS_CPU_UNTRACKED)
			return NULL;
		if (c->slot != TS_NO_SLOT) {
			t = thread_at(c->slot);
			if (t && t->tid == prev->pid) {
				*slot = c->slot;
				return t;
			}
		}
	}
	/* First switch on this CPU since attach, a tid changed by exec, a
	 * switch-in whose lookup failed, or one not seen. */
	t = thread_of_slot(prev, slot);
	if (t && c->tid == prev->pid && c->slot == TS_NO_SLOT) {
		/* Seen, but its lookup failed: record it now. */
		__sync_fetch_and_add(&counters.switch_in_late, 1);
		ts_seq_begin(&t->seq);
		t->switch_in_ns = c->in_ns;
		t->cpu = bpf_get_smp_processor_id();
		ts_seq_end(&t->seq);
	}
	return t;
}

/*
 * The slot reference `c` keeps for `next`, whose entry was not found:
 * TS_CPU_UNTRACKED when it cannot be tracked (the idle task, the agent, a
 * thread --pid leaves out), else TS_NO_SLOT, so that its switch-out looks
 * it up again. The lookup can fail for a tracked thread: up to Linux 6.18
 * the task-storage helpers guard against recursion with a per-CPU counter,
 * which a holder preempted inside one keeps raised for every thread that
 * runs on its CPU meanwhile.
 */
static __always_inline __u32 untracked_or_unknown(struct task_struct *next)
{
	if (!next->pid || next->tgid == agent_tgid || !pid_selected(next))
		return TS_CPU_UNTRACKED;
	return TS_NO_SLOT;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_sched_switch, bool preempt, struct task_struct *prev,
	     struct task_struct *next)
{
	struct ts_cpu *c = this_cpu_state();
	struct ts_thread *t;
	__u32 next_slot, prev_slot;
	__u64 now;

	if (!c)
		return 0;
	now = switch_now(task_rq_of(prev), c);
	t = prev_thread(c, prev, &prev_slot);
	if (t) {
		__u32 flags = t->flags & (TS_F_KTHREAD | TS_F_ENTER_KNOWN | TS_F_ENTER_SEEDED |
					   TS_F_ENTER_BOUND | TS_F_ARGS_KNOWN);
		bool renamed = t->flags & TS_F_COMM_DIRTY;
		/* A preempted task stays runnable whatever its state word says. */
		__u32 state = preempt ? 0 : task_state(prev);
		/* One read of the saved registers (a helper call) for the
		 * number and all six arguments. */
		__u64 args[3] = {}, args_hi[3] = {};
		long nr = syscall_in_progress(prev, args, args_hi);
		/* The syscall's entry was seen by sys_enter (--syscalls exact). */
		bool entered = nr >= 0 && nr == t->syscall_nr && (t->flags & TS_F_ENTER_KNOWN);
		struct ts_syscall_args *more = NULL;

		/* Its switch-in was not seen (prev_thread): the entry said it
		 * was waiting while it ran. */
		if ((t->flags & (TS_F_SWITCH_KNOWN | TS_F_ON_CPU)) == TS_F_SWITCH_KNOWN)
			__sync_fetch_and_add(&counters.switch_in_missed, 1);
		flags |= TS_F_SWITCH_KNOWN;
		/*
		 * Involuntary as the kernel counts it (nivcsw): kernel preemption,
		 * or a switch while still runnable - which is how a task running
		 * in user mode is preempted (schedule() on return from the
		 * interrupt, with preempt == false).
		 */
		if (state == 0) {
			flags |= TS_F_PREEMPTED;
			if (next->tgid == agent_tgid)
				flags |= TS_F_AGENT_PREEMPTED;
		}
		if (nr >= 0) {
			flags |= TS_F_IN_SYSCALL | TS_F_ARGS_KNOWN;
			/*
			 * A syscall whose entry was not seen (the default: no
			 * sys_enter hook): it was entered no later than now, so
			 * now bounds its time from below; its number and
			 * arguments come from the saved registers. Not carried
			 * over from an earlier switch-out: the thread has run
			 * since, and may have returned and entered the same
			 * syscall again (a seeded entry time ends here too).
			 */
			if (!entered) {
				flags &= ~(TS_F_ENTER_KNOWN | TS_F_ENTER_SEEDED);
				flags |= TS_F_ENTER_BOUND;
				more = syscall_args_at(prev_slot);
			}
		}
		ts_seq_begin(&t->seq);
		t->switch_out_ns = now;
		t->sched_state = state;
		/* Only a dying task's last switch has an exit state. */
		t->exit_state = state & 0x80 /* TASK_DEAD */ ? prev->exit_state : 0;
		if (nr >= 0 && !entered) {
			t->syscall_nr = nr;
			t->syscall_enter_ns = now;
			t->syscall_args[0] = args[0];
			t->syscall_args[1] = args[1];
			t->syscall_args[2] = args[2];
			if (more) {
				more->args_hi[0] = args_hi[0];
				more->args_hi[1] = args_hi[1];
				more->args_hi[2] = args_hi[2];
			}
		}
		/*
		 * Names change rarely; copying one at every switch would touch a
		 * second cache line of the entry on the hottest path. With
		 * sys_enter attached, prctl(PR_SET_NAME) marks the entry; without
		 * it (the default) nothing sees the rename, so a switch-out in a
		 * syscall, which writes that line anyway, copies the name too.
		 */
		if (renamed || (nr >= 0 && !entered))
			copy_comm(t->comm, prev);
		t->flags = flags;
		ts_seq_end(&t->seq);
		/* A kernel mutex or rw-semaphore wait: who holds the lock now. */
		if (state & 2 /* TASK_UNINTERRUPTIBLE */)
			note_lock_owner(prev, prev_slot, now);
		/* The file its fd names (issue 13): fd syscalls only. */
		if (nr >= 0)
			record_fd(prev, prev_slot, nr, t->syscall_args[0], now);
		/*
		 * Where it waits: captured when the wait starts just before a
		 * tick (so short waits that a tick sees have their stacks), and
		 * otherwise at most once per sampling period per thread;
		 * capturing at every switch halves a pipe ping-pong.
		 */
		if (stack_kinds && state != 0) {
			t->wait_ns = now;
			__u64 window = READ_ONCE(capture_from_ns);

			if ((window && now >= window) || now - t->stack_ns >= stack_interval_ns) {
				t->stack_ns = now;
				/* prev is still current: its frame chain too,
				 * if userspace published it. */
				capture_stacks(ctx, prev, t, prev_slot - 1, now, now, 0,
					       (stack_kinds & TS_S_USER) ?
						       capture_python(prev, now) : 0);
			}
		}
		/*
		 * A thread already released (EXIT_DEAD: every exiting thread but
		 * a zombie group leader) never runs again: its slot goes back
		 * now. sched_process_free cannot be relied on for these: it runs
		 * from an RCU callback, which may interrupt a hook holding this
		 * CPU's task-storage lock, and its lookup then finds nothing
		 * (about one exit in 1,000 under churn; reconciliation caught
		 * them 10-20 s later). Zombies still wait for their reaping.
		 */
		if (t->exit_state & 0x10 /* EXIT_DEAD */)
			__sync_val_compare_and_swap(&t->slot_state, TS_SLOT_LIVE, TS_SLOT_EXITED);
		else
			note_recent(c, prev, prev_slot);
	}

	t = recent_thread(c, next, &next_slot);
	if (!t)
		t = thread_of_slot(next, &next_slot);
	c->slot = next_slot != TS_NO_SLOT ? next_slot : untracked_or_unknown(next);
	c->tid = next->pid;
	c->in_ns = now;
	if (t) {
		ts_seq_begin(&t->seq);
		t->switch_in_ns = now;
		t->cpu = bpf_get_smp_processor_id();
		t->flags = (t->flags & ~(TS_F_PREEMPTED | TS_F_AGENT_PREEMPTED | TS_F_SINCE_SEEDED)) |
			   TS_F_ON_CPU | TS_F_SWITCH_KNOWN;
		ts_seq_end(&t->seq);
	}
	return 0;
}

/* Mark `p` woken, at the scheduler clock of the run queue it was put on
 * (just updated by its enqueue); with `waker`, note who woke it. */
static __always_inline void mark_woken(struct task_struct *p, bool waker)
{
	struct ts_thread *t;
	__u32 cpu, slot;

	/* Woken here, it most often last ran here too. */
	t = recent_thread(this_cpu_state(), p, &slot);
	if (!t)
		t = thread_of_slot(p, &slot);
	if (!t)
		return;
	cpu = task_cpu(p);
	WRITE_ONCE(t->wakeup_ns, rq_now(task_rq_of(p), bpf_map_lookup_elem(&cpus, &cpu)));
	if (waker)
		note_waker(t, slot);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(on_sched_wakeup, struct task_struct *p)
{
	mark_woken(p, true);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(on_sched_wakeup_new, struct task_struct *p)
{
	mark_woken(p, false);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	track_task(child, bpf_ktime_get_ns(), false);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_sched_process_exec, struct task_struct *p, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct ts_thread *t = thread_of(p);

	if (!t)
		return 0;
	ts_seq_begin(&t->seq);
	/* A non-leader thread that execs takes over the leader's pid. */
	t->tid = p->pid;
	copy_comm(t->comm, p);
	t->exec_count += 1;
	ts_seq_end(&t->seq);
	WRITE_ONCE(t->euid, task_euid(p));
	WRITE_ONCE(t->exe_id, task_exe_id(p));
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(on_sched_process_free, struct task_struct *p)
{
	struct ts_slot_ref *ref;
	struct ts_thread *t;
	__u32 idx;

	ref = bpf_task_storage_get(&slot_of, p, 0, 0);
	if (!ref || ref->slot == TS_NO_SLOT)
		return 0;
	idx = ref->slot - 1;
	t = bpf_map_lookup_elem(&threads, &idx);
	if (t) {
		/* Reconciliation may already have recycled the slot. */
		if (t->slot_gen == ref->slot_gen && t->slot_state == TS_SLOT_LIVE)
			WRITE_ONCE(t->slot_state, TS_SLOT_EXITED);
		else
			__sync_fetch_and_add(&counters.freed_mismatch, 1);
	}
	bpf_task_storage_delete(&slot_of, p);
	return 0;
}

/*
 * The scheduler floor: empty programs on the two hooks a same-CPU pipe
 * ping-pong runs, never attached by the agent. benches/hooks.rs attaches
 * them alone (bpf::floor) to show what any program there costs before its
 * first instruction (the tracepoint's call into BPF, per switch and per
 * wakeup).
 */
SEC("?tp_btf/sched_switch")
int BPF_PROG(floor_switch)
{
	return 0;
}

SEC("?tp_btf/sched_wakeup")
int BPF_PROG(floor_wakeup)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
