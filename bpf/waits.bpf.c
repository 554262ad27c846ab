/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Who woke a thread, and which kernel lock it waits for (issue 13), kept in
 * the `waits` side array (one entry per slot of `threads`):
 *
 *   contention_begin  a thread starts waiting for a kernel lock: mutexes
 *                     and rw-semaphores are noted (spinlocks are not: they
 *                     never sleep)
 *   contention_end    ... and got it (or gave up)
 *   csd_queue_cpu     a wakeup is handed over to the wakee's CPU (Linux
 *                     6.6+): who hands it over, for the sched_wakeup that
 *                     follows there, outside the waker's context
 *
 * The lock's owner is read at each switch-out of the waiting thread, and
 * the waker at each wakeup (waits.bpf.h, called from sched_switch and
 * sched_wakeup).
 */
#include "maps.bpf.h"
#include "waits.bpf.h"

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;

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

/*
 * A function queued for another CPU (__smp_call_single_queue and
 * smp_call_function_many_cond), in the caller's context. For a wakeup
 * handed over to the wakee's CPU (ttwu_queue_wakelist), `csd` is the
 * wakee's `wake_entry`, whose type is CSD_TYPE_TTWU: the caller is the
 * waker, noted in the wakee's `handovers` entry for its sched_wakeup
 * (take_handover in waits.bpf.h). Any other cross-CPU call returns at
 * the type check. Attached only when the kernel has the tracepoint.
 */
SEC("tp_btf/csd_queue_cpu")
int BPF_PROG(on_csd_queue, unsigned int cpu, unsigned long callsite, void *func,
	     call_single_data_t *csd)
{
	struct task_struct *cur, *task;
	struct ts_handover *h;
	struct ts_slot_ref *ref;
	struct ts_thread *t;
	__u32 slot, idx;
	__u64 wakee;
	int tid;

	if ((csd->node.u_flags & TS_CSD_FLAG_TYPE_MASK) != TS_CSD_TYPE_TTWU || !record_wakers)
		return 0;
	/* container_of(csd, struct task_struct, wake_entry), as a number:
	 * the slot is found through the task storage, which takes the task
	 * as the kernel hands it out, by its tid. */
	wakee = (__u64)csd - bpf_core_field_offset(struct task_struct, wake_entry);
	tid = BPF_CORE_READ((struct task_struct *)wakee, pid);
	task = bpf_task_from_pid(tid);
	if (!task)
		return 0;
	slot = TS_NO_SLOT;
	if ((__u64)task == wakee) {
		ref = bpf_task_storage_get(&slot_of, task, 0, 0);
		if (ref)
			slot = ref->slot;
	}
	bpf_task_release(task);
	t = thread_at(slot);
	idx = slot - 1;
	h = bpf_map_lookup_elem(&handovers, &idx);
	if (!t || !h)
		return 0;
	cur = bpf_get_current_task_btf();
	if (current_is_waker(cur, &h->sp)) {
		h->waker_tid = cur->pid;
		h->waker_tgid = cur->tgid;
		copy_comm(h->waker_comm, cur);
		__sync_fetch_and_add(&counters.handovers_noted, 1);
	} else {
		h->waker_tid = 0;
		__sync_fetch_and_add(&counters.handovers_unnamed, 1);
	}
	h->switch_in_ns = READ_ONCE(t->switch_in_ns);
	WRITE_ONCE(h->armed, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
