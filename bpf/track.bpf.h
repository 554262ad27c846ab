/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Giving a task a slot in the state table. Used by the fork hook (new
 * tasks) and the task iterator (tasks that existed before the agent, and
 * anything a hook missed).
 *
 * A slot is initialised completely before it is published in the task's
 * storage, so no hook can write to it half-made. Two paths racing for the
 * same task both allocate; the loser's slot is marked EXITED and userspace
 * recycles it.
 */
#ifndef TASKSCOPE_TRACK_BPF_H
#define TASKSCOPE_TRACK_BPF_H

#include "maps.bpf.h"

/* Whether --pid (if given) selects this task. */
static __always_inline bool pid_selected(struct task_struct *task)
{
	__u32 tgid, tid;

	if (!filter_pids)
		return true;
	tgid = task->tgid;
	tid = task->pid;
	return bpf_map_lookup_elem(&pid_filter, &tgid) ||
	       bpf_map_lookup_elem(&pid_filter, &tid);
}

/* A free slot index, or -1 when the table is full. */
static __always_inline long alloc_slot(void)
{
	__u32 fresh;

	for (int i = 0; i < 4; i++) {
		__u64 head = READ_ONCE(free_head);
		__u64 tail = READ_ONCE(free_tail);
		__u64 *slot;
		__u32 idx;

		if (head >= tail)
			break;
		idx = head & ring_mask;
		slot = bpf_map_lookup_elem(&free_ring, &idx);
		if (!slot)
			break;
		if (__sync_val_compare_and_swap(&free_head, head, head + 1) == head)
			return (__u32)READ_ONCE(*slot);
	}
	if (READ_ONCE(next_fresh) >= max_slots)
		return -1;
	fresh = __sync_fetch_and_add(&next_fresh, 1);
	if (fresh < max_slots)
		return fresh;
	return -1;
}

static __always_inline __u64 task_cgroup_id(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

static __always_inline __u32 task_euid(struct task_struct *task)
{
	return BPF_CORE_READ(task, cred, euid.val);
}

/* Same value for every thread of one process image; changes on exec. */
static __always_inline __u64 task_exe_id(struct task_struct *task)
{
	return (__u64)BPF_CORE_READ(task, mm, exe_file);
}

struct sched_entity___exec {
	__u64 exec_start;
} __attribute__((preserve_access_index));

struct task_struct___exec {
	struct sched_entity___exec se;
} __attribute__((preserve_access_index));

struct rq___clocks {
	__u64 clock;
	__u64 clock_task;
} __attribute__((preserve_access_index));

/*
 * For a task off CPU: CLOCK_MONOTONIC no earlier than its last switch-out,
 * from the scheduler's own timestamp (se.exec_start, the task clock of its
 * run queue when it last stopped running); 0 when not known.
 *
 * exec_start is in the run queue's task clock (rq->clock_task, which leaves
 * out IRQ and steal time); adding that run queue's clock - clock_task now
 * (which only grows) and this CPU's CLOCK_MONOTONIC - rq->clock (rq->clock
 * lags a little behind the real clock) can only move the result later. A
 * stale clock on an idle CPU errs the same way: the wait it starts is a
 * lower bound.
 */
static __always_inline __u64 seeded_switch_out(struct task_struct *task)
{
	struct task_struct___exec *t = (void *)task;
	struct rq___clocks *rq = (void *)task_rq_of(task);
	struct rq___clocks *here = (void *)task_rq_of(bpf_get_current_task_btf());
	__u64 exec_start, clock, clock_task, clock_here, now, at;

	if (!rq || !here || !bpf_core_field_exists(t->se.exec_start) ||
	    !bpf_core_field_exists(rq->clock_task))
		return 0;
	exec_start = t->se.exec_start;
	clock = rq->clock;
	clock_task = rq->clock_task;
	clock_here = here->clock;
	now = bpf_ktime_get_ns();
	if (!exec_start || exec_start > clock_task || clock_task > clock || clock_here > now)
		return 0;
	at = exec_start + (clock - clock_task) + (now - clock_here);
	return at <= now ? at : 0;
}

/*
 * Make sure `task` owns a slot. `seeded` is true for tasks found by the
 * iterator, whose switch times are unknown; false for a task being forked
 * right now (its state is known: new and waiting for a CPU since `now`).
 */
static __always_inline void track_task(struct task_struct *task, __u64 now, bool seeded)
{
	struct ts_slot_ref *ref;
	struct ts_thread *t;
	__u64 want, *packed;
	__u32 idx, flags = 0;
	long slot, nr = -1;

	if (task->tgid == agent_tgid || !pid_selected(task))
		return;
	ref = bpf_task_storage_get(&slot_of, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE_);
	if (!ref) {
		__sync_fetch_and_add(&counters.storage_failed, 1);
		return;
	}
	if (READ_ONCE(ref->slot) != TS_NO_SLOT) {
		/* Already tracked: the iterator just marks it as seen. */
		if (seeded) {
			idx = ref->slot - 1;
			t = bpf_map_lookup_elem(&threads, &idx);
			if (t) {
				WRITE_ONCE(t->seen_gen, reconcile_gen);
				/* Catch renames through /proc/<tid>/comm of threads
				 * that have not run since. No sequence counter is
				 * taken (each belongs to one writer), so a reader
				 * may see a half-updated name once. */
				if (!comm_equal(t->comm, task))
					copy_comm(t->comm, task);
				WRITE_ONCE(t->euid, task_euid(task));
				WRITE_ONCE(t->cgroup_id, task_cgroup_id(task));
			}
		}
		return;
	}

	slot = alloc_slot();
	if (slot < 0) {
		/* A fork is a new thread left out; an iterator pass counts every
		 * live thread still left out, for the `untracked_now` gauge. */
		if (seeded)
			__sync_fetch_and_add(&counters.seed_no_slot, 1);
		else
			__sync_fetch_and_add(&counters.slots_exhausted, 1);
		return;
	}
	idx = slot;
	t = bpf_map_lookup_elem(&threads, &idx);
	if (!t)
		return;

	if (task->flags & PF_KTHREAD)
		flags |= TS_F_KTHREAD;
	ts_seq_begin(&t->seq);
	t->tid = task->pid;
	t->tgid = task->tgid;
	t->exit_state = task->exit_state;
	t->wakeup_ns = 0;
	t->syscall_enter_ns = 0;
	t->syscall_seq = 0;
	t->syscall_args[0] = 0;
	t->syscall_args[1] = 0;
	t->syscall_args[2] = 0;
	t->exec_count = 0;
	t->perf_flags = 0;
	t->perf_ns = 0;
	t->io_rq = 0;
	t->io_inflight = 0;
	t->start_ns = task->start_time;
	t->exe_id = task_exe_id(task);
	t->euid = task_euid(task);
	t->cgroup_id = task_cgroup_id(task);
	t->seen_gen = reconcile_gen;
	t->slot_gen += 1;
	copy_comm(t->comm, task);
	if (seeded) {
		/* What the task struct says now; switch times unknown. */
		t->sched_state = task_state(task);
		t->cpu = task_cpu(task);
		t->switch_in_ns = 0;
		t->switch_out_ns = 0;
		if (task->on_cpu) {
			flags |= TS_F_ON_CPU;
		} else {
			struct ts_syscall_args *more = bpf_map_lookup_elem(&syscall_args, &idx);
			__u64 out = seeded_switch_out(task);

			nr = syscall_in_progress(task, t->syscall_args, more ? more->args_hi : NULL);
			/* Waiting, not runnable: a runnable task may have been
			 * woken long after it stopped running, so the time
			 * since then bounds its wait for a CPU from above. */
			if (out && t->sched_state != 0 && !(t->sched_state & 0x200 /* TASK_WAKING */)) {
				t->switch_out_ns = out;
				flags |= TS_F_SINCE_SEEDED;
			}
			/* A syscall is entered before the task stops running
			 * in it, whatever its state now. */
			if (out && nr >= 0) {
				t->syscall_enter_ns = out;
				flags |= TS_F_ENTER_SEEDED;
			}
		}
		if (nr >= 0)
			flags |= TS_F_IN_SYSCALL | TS_F_ARGS_KNOWN;
	} else {
		/* A new task is runnable and waits for its first CPU. */
		t->sched_state = 0;
		t->cpu = task_cpu(task);
		t->switch_in_ns = 0;
		t->switch_out_ns = now;
		flags |= TS_F_SWITCH_KNOWN;
	}
	t->syscall_nr = nr;
	t->flags = flags;
	t->slot_state = TS_SLOT_LIVE;
	ts_seq_end(&t->seq);
	/* The previous owner's waker and lock wait are not this thread's. */
	{
		struct ts_wait *w = bpf_map_lookup_elem(&waits, &idx);

		if (w) {
			ts_seq_begin(&w->seq);
			w->waker_tid = 0;
			ts_seq_end(&w->seq);
			ts_seq_begin(&w->lock_seq);
			w->lock_addr = 0;
			w->lock_owner = 0;
			ts_seq_end(&w->lock_seq);
		}
	}
	{
		struct ts_handover *h = bpf_map_lookup_elem(&handovers, &idx);

		if (h)
			WRITE_ONCE(h->armed, 0);
	}

	/* Publish: slot + 1 and its generation, in one 8-byte CAS. */
	want = ((__u64)t->slot_gen << 32) | (__u32)(slot + 1);
	packed = (__u64 *)ref;
	if (__sync_val_compare_and_swap(packed, 0, want) != 0) {
		/* Another path tracked this task first. */
		WRITE_ONCE(t->slot_state, TS_SLOT_EXITED);
		__sync_fetch_and_add(&counters.alloc_races, 1);
	}
}

#endif /* TASKSCOPE_TRACK_BPF_H */
