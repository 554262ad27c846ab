/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel lock owners (issue 13), read at the switch-out of a thread that
 * waits for a kernel mutex or rw-semaphore: contention_begin (waits.bpf.c)
 * noted the lock in the thread's `waits` entry; here, each time the thread
 * goes to sleep for it, the owner recorded in the lock itself is read.
 *
 * mutex->owner and rw_semaphore->owner hold a task_struct pointer with
 * flag bits in the low 3 bits. A reader-owned rw-semaphore has no single
 * owner (RWSEM_READER_OWNED): no owner is recorded.
 */
#ifndef TASKSCOPE_WAITS_BPF_H
#define TASKSCOPE_WAITS_BPF_H

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
 * not the waker. The kernel's preempt count would say so directly, but it
 * is a per-CPU variable that kallsyms does not list on every kernel (the
 * verifier then cannot resolve it). The address of a local variable is
 * turned into a plain number by a store to and a load from `scratch`, in
 * a map entry (privileged programs may).
 */
static __always_inline bool on_task_stack(struct task_struct *cur, __u64 *scratch)
{
	volatile __u64 marker = 0;
	__u64 here, base;

	*(volatile __u64 *)scratch = (__u64)&marker;
	here = *(volatile __u64 *)scratch;
	base = (__u64)cur->stack;
	return here - base < TS_THREAD_SIZE;
}

/*
 * Whether `cur`, the current task, is what woke a thread from this hook:
 * a thread (not the idle task) in a syscall, or a kernel thread, on its
 * own stack. An interrupt that arrives in user mode runs on the task's
 * stack on x86_64, but its saved registers are not a syscall's.
 */
static __always_inline bool current_is_waker(struct task_struct *cur, __u64 *scratch)
{
	return cur->pid && on_task_stack(cur, scratch) &&
	       ((cur->flags & PF_KTHREAD) || syscall_in_progress(cur, NULL, NULL) >= 0);
}

/*
 * The waker noted for `t` (slot + 1 `slot`) at a hand-over, taken (the
 * entry is disarmed) when it is for this wakeup; NULL otherwise.
 *
 * A hand-over is always followed by the wakee's sched_wakeup and the
 * wakee cannot sleep again before it has been switched in, so a noted
 * waker is this wakeup's when the wakee's switch-in time is still the one
 * seen at the hand-over. One left armed (the sched_wakeup that should
 * have taken it did not find the wakee's entry) is older than the
 * wakee's next switch-in, and is dropped: no waker, never a wrong one.
 */
static __always_inline struct ts_handover *take_handover(struct ts_thread *t, __u32 slot)
{
	struct ts_handover *h;
	__u32 idx = slot - 1;

	h = bpf_map_lookup_elem(&handovers, &idx);
	if (!h || !READ_ONCE(h->armed))
		return NULL;
	WRITE_ONCE(h->armed, 0);
	if (!h->waker_tid)
		return NULL;
	if (h->switch_in_ns != READ_ONCE(t->switch_in_ns)) {
		__sync_fetch_and_add(&counters.handovers_stale, 1);
		return NULL;
	}
	__sync_fetch_and_add(&counters.handovers_taken, 1);
	return h;
}

/*
 * Who woke the thread `t` in slot `slot` (slot + 1), from sched_wakeup.
 * That tracepoint runs in the waker's context when the wakeup is done on
 * the spot (the wakee is enqueued by the waker, or was still on its run
 * queue). A wakeup handed over to the wakee's CPU (ttwu_queue_wakelist:
 * that CPU is idle or in another cache domain, or the wakee is still
 * switching out there) runs on that CPU, from an IPI or its idle loop:
 * its waker is the one csd_queue_cpu noted at the hand-over, in the
 * waker's context (on_csd_queue, Linux 6.6+; none on older kernels).
 * A wakeup from an interrupt (a timer, a device, a softirq) records no
 * waker.
 *
 * It used to be a sched_waking program of its own (which always runs in
 * the waker's context): a second program on every wakeup, ~45 ns. The
 * hand-over hook runs only for hand-overs, which cost an IPI anyway.
 */
static __always_inline void note_waker(struct ts_thread *t, __u32 slot)
{
	struct task_struct *cur;
	struct ts_handover *h;
	struct ts_wait *w;
	__u32 idx = slot - 1;

	if (!record_wakers)
		return;
	w = bpf_map_lookup_elem(&waits, &idx);
	if (!w)
		return;
	cur = bpf_get_current_task_btf();
	ts_seq_begin(&w->seq);
	if (current_is_waker(cur, &w->waker_sp)) {
		w->waker_tid = cur->pid;
		w->waker_tgid = cur->tgid;
		copy_comm(w->waker_comm, cur);
	} else if ((h = take_handover(t, slot))) {
		__u64 *from = (__u64 *)h->waker_comm, *to = (__u64 *)w->waker_comm;

		w->waker_tid = h->waker_tid;
		w->waker_tgid = h->waker_tgid;
		to[0] = from[0];
		to[1] = from[1];
	} else {
		w->waker_tid = 0;
		w->waker_tgid = 0;
	}
	ts_seq_end(&w->seq);
}

#define TS_RWSEM_READER_OWNED 1UL
#define TS_LOCK_OWNER_FLAGS 7UL

/* The tid of the owner of the lock at `addr`, or 0 when there is none
 * that one thread holds. */
static __always_inline __u32 lock_owner_tid(__u64 addr, __u32 flags)
{
	unsigned long owner;
	struct task_struct *task;

	if (flags & (TS_LCB_F_RT | TS_LCB_F_PERCPU))
		return 0;
	if (flags & TS_LCB_F_MUTEX) {
		owner = BPF_CORE_READ((struct mutex *)addr, owner.counter);
	} else {
		owner = BPF_CORE_READ((struct rw_semaphore *)addr, owner.counter);
		if (owner & TS_RWSEM_READER_OWNED)
			return 0;
	}
	task = (struct task_struct *)(owner & ~TS_LOCK_OWNER_FLAGS);
	if (!task)
		return 0;
	return BPF_CORE_READ(task, pid);
}

/* `prev` (slot + 1 `slot`) goes to sleep uninterruptibly at `now`: if it
 * waits for a kernel lock, record who holds it now. */
static __always_inline void note_lock_owner(struct task_struct *prev, __u32 slot, __u64 now)
{
	struct ts_wait *w;
	__u32 idx = slot - 1, owner;

	w = bpf_map_lookup_elem(&waits, &idx);
	if (!w || !w->lock_addr)
		return;
	owner = lock_owner_tid(w->lock_addr, w->lock_flags);
	if (owner == prev->pid)
		owner = 0;
	ts_seq_begin(&w->lock_seq);
	w->lock_owner = owner;
	w->owner_ns = now;
	ts_seq_end(&w->lock_seq);
}

#endif /* TASKSCOPE_WAITS_BPF_H */
