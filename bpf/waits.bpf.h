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
