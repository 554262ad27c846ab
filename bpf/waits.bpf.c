/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Who woke a thread, and which kernel lock it waits for (issue 13), kept in
 * the `waits` side array (one entry per slot of `threads`):
 *
 *   sched_waking      runs in the waker's context (unlike sched_wakeup,
 *                     which may run on the wakee's CPU from an IPI): the
 *                     current task is the waker, unless the wakeup comes
 *                     from an interrupt (a timer, a device, a softirq),
 *                     when no waker is recorded
 *   contention_begin  a thread starts waiting for a kernel lock: mutexes
 *                     and rw-semaphores are noted (spinlocks are not: they
 *                     never sleep)
 *   contention_end    ... and got it (or gave up)
 *
 * The lock's owner is read at each switch-out of the waiting thread
 * (waits.bpf.h, called from sched_switch).
 */
#include "maps.bpf.h"

/*
 * Kernel stacks are THREAD_SIZE bytes: 16 KiB on x86_64 and arm64 (32 KiB
 * with KASAN, where a deep task-context wakeup is then taken for an
 * interrupt's: no waker, never a wrong one).
 */
#define TS_THREAD_SIZE (16 * 1024)

/*
 * Whether this hook runs on the current task's own kernel stack. Hard
 * interrupts and softirqs (but those run by ksoftirqd, whose waker is
 * ksoftirqd) that interrupt kernel code run on the CPU's interrupt stack
 * on x86_64 and arm64, where `current` is whatever task was interrupted,
 * not the waker. The kernel's
 * preempt count would say so directly, but it is a per-CPU variable that
 * kallsyms does not list on every kernel (the verifier then cannot resolve
 * it). The address of a local variable is turned into a plain number by a
 * store to and a load from the map entry (privileged programs may).
 */
static __always_inline bool on_task_stack(struct task_struct *cur, struct ts_wait *w)
{
	volatile __u64 marker = 0;
	__u64 here, base;

	*(volatile __u64 *)&w->waker_sp = (__u64)&marker;
	here = *(volatile __u64 *)&w->waker_sp;
	base = (__u64)cur->stack;
	return here - base < TS_THREAD_SIZE;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(on_sched_waking, struct task_struct *p)
{
	struct ts_slot_ref *ref;
	struct task_struct *cur;
	struct ts_wait *w;
	__u32 idx;

	ref = bpf_task_storage_get(&slot_of, p, 0, 0);
	if (!ref || ref->slot == TS_NO_SLOT)
		return 0;
	idx = ref->slot - 1;
	w = bpf_map_lookup_elem(&waits, &idx);
	if (!w)
		return 0;
	cur = bpf_get_current_task_btf();
	ts_seq_begin(&w->seq);
	/*
	 * A waker is a thread in a syscall (or a kernel thread) on its own
	 * stack. An interrupt that arrives in user mode runs on the task's
	 * stack on x86_64, but its saved registers are not a syscall's.
	 */
	if (!on_task_stack(cur, w) ||
	    (!(cur->flags & PF_KTHREAD) && syscall_in_progress(cur, NULL, NULL) < 0)) {
		w->waker_tid = 0;
		w->waker_tgid = 0;
	} else {
		w->waker_tid = cur->pid;
		w->waker_tgid = cur->tgid;
		copy_comm(w->waker_comm, cur);
	}
	ts_seq_end(&w->seq);
	return 0;
}

/* The running thread's `waits` entry, or NULL when it is not tracked. */
static __always_inline struct ts_wait *current_wait(void)
{
	__u32 slot = running_slot(this_cpu_state()), idx = slot - 1;

	if (slot == TS_NO_SLOT || slot == TS_CPU_UNTRACKED)
		return NULL;
	return bpf_map_lookup_elem(&waits, &idx);
}

SEC("tp_btf/contention_begin")
int BPF_PROG(on_contention_begin, void *lock, unsigned int flags)
{
	struct ts_wait *w;

	/* Spinlocks and rwlocks (and their contention is the hottest case):
	 * nothing to record, they do not sleep. */
	if ((flags & TS_LCB_F_SPIN) && !(flags & TS_LCB_F_MUTEX))
		return 0;
	if (flags & (TS_LCB_F_RT | TS_LCB_F_PERCPU))
		return 0;
	w = current_wait();
	if (!w)
		return 0;
	ts_seq_begin(&w->lock_seq);
	w->lock_addr = (__u64)lock;
	w->lock_flags = flags;
	w->lock_owner = 0;
	w->owner_ns = 0;
	ts_seq_end(&w->lock_seq);
	return 0;
}

SEC("tp_btf/contention_end")
int BPF_PROG(on_contention_end, void *lock, int ret)
{
	struct ts_wait *w = current_wait();

	if (!w || w->lock_addr != (__u64)lock)
		return 0;
	ts_seq_begin(&w->lock_seq);
	w->lock_addr = 0;
	w->lock_owner = 0;
	ts_seq_end(&w->lock_seq);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
