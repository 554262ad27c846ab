/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Who woke a thread, and which kernel lock it waits for (issue 13), kept in
 * the `waits` side array (one entry per slot of `threads`):
 *
 *   contention_begin  a thread starts waiting for a kernel lock: mutexes
 *                     and rw-semaphores are noted (spinlocks are not: they
 *                     never sleep)
 *   contention_end    ... and got it (or gave up)
 *
 * The lock's owner is read at each switch-out of the waiting thread, and
 * the waker at each wakeup (waits.bpf.h, called from sched_switch and
 * sched_wakeup).
 */
#include "maps.bpf.h"

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
