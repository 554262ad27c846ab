/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Task iterator: seeds the state table with every thread that existed
 * before the agent started, and on each later pass (reconciliation) marks
 * every tracked thread as seen and tracks anything a hook missed (threads
 * created without sched_process_fork, such as io_uring workers, or while
 * the table was full). Userspace recycles slots that two passes in a row
 * did not see.
 */
#include "track.bpf.h"
#include "capture.bpf.h"

SEC("iter/task")
int seed_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

	/* No `file` for a thread waiting since before the agent started: its
	 * fd may name another file by now than the one its syscall holds
	 * (fd.bpf.h); it gets one at its next switch-out. */
	if (!task)
		return 0;
	track_task(task, 0, true);
	return 0;
}

/* A frame of the frame-pointer chain: saved frame pointer, return address. */
struct user_frame {
	__u64 fp;
	__u64 ret;
};

/*
 * Refresh pass: capture the stacks of the threads userspace asked for (a
 * sampled thread whose last capture predates its current wait, or that has
 * not switched since the agent started). Sleepable, so it can read another
 * process's memory: the user stack is a frame-pointer walk from the
 * thread's saved registers, and the top of its stack is copied for the
 * unwinder in userspace. Only off-CPU threads are served; a running
 * thread's stacks come from the on-CPU sample.
 */
SEC("?iter.s/task")
int refresh_stacks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct ts_slot_ref *ref;
	struct ts_stack_request *req;
	struct ts_stack *s;
	struct ts_thread *t;
	struct pt_regs *regs;
	__u32 idx, want, entry, flags = TS_S_ITER;
	__u64 fp, now, switch_out_ns;
	long n;

	if (!task || task->on_cpu)
		return 0;
	ref = bpf_task_storage_get(&slot_of, task, 0, 0);
	if (!ref || ref->slot == TS_NO_SLOT)
		return 0;
	idx = ref->slot - 1;
	req = bpf_map_lookup_elem(&stack_requests, &idx);
	t = bpf_map_lookup_elem(&threads, &idx);
	if (!req || !t)
		return 0;
	want = READ_ONCE(req->want);
	if (want == READ_ONCE(req->served))
		return 0;
	s = begin_capture(t, idx, &entry);
	if (!s)
		return 0;
	req->served = want;
	now = bpf_ktime_get_ns();
	s->captured_ns = now;
	switch_out_ns = READ_ONCE(t->switch_out_ns);
	s->switch_out_ns = switch_out_ns;
	s->py_chain = 0;
	s->kframes = 0;
	s->uframes = 0;
	if (stack_kinds & TS_S_KERNEL) {
		n = bpf_get_task_stack(task, s->kips, sizeof(s->kips), 0);
		if (n > 0) {
			s->kframes = n / 8;
			flags |= TS_S_KERNEL;
		}
	}
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if ((stack_kinds & TS_S_USER) && regs && !(task->flags & PF_KTHREAD)) {
#if defined(__TARGET_ARCH_x86)
		s->uips[0] = regs->ip;
		s->user_sp = regs->sp;
		fp = regs->bp;
#elif defined(__TARGET_ARCH_arm64)
		s->uips[0] = regs->pc;
		s->user_sp = regs->sp;
		fp = regs->regs[29];
#else
		fp = 0;
#endif
		s->user_bp = fp;
		s->uframes = 1;
		for (int i = 1; i < TS_USTACK_DEPTH; i++) {
			struct user_frame frame;

			if (!fp || bpf_copy_from_user_task(&frame, sizeof(frame), (void *)fp, task, 0))
				break;
			if (!frame.ret)
				break;
			s->uips[i & (TS_USTACK_DEPTH - 1)] = frame.ret;
			s->uframes = i + 1;
			if (frame.fp <= fp)
				break;
			fp = frame.fp;
		}
		flags |= TS_S_USER;
		/* In two halves, as at switch-out (maps.bpf.h). */
		if (!bpf_copy_from_user_task(s->peek, TS_USTACK_PEEK / 2, (void *)s->user_sp, task, 0)) {
			flags |= TS_S_PEEK;
			bpf_copy_from_user_task(s->peek + TS_USTACK_PEEK / 2, TS_USTACK_PEEK / 2,
						(void *)(s->user_sp + TS_USTACK_PEEK / 2), task, 0);
		}
	}
	/*
	 * The thread may have run and gone to sleep again while it was being
	 * captured: the stacks would then be of another wait than the
	 * switch-out they are filed under. Such a capture is marked empty.
	 */
	if (task->on_cpu || READ_ONCE(t->switch_out_ns) != switch_out_ns)
		flags &= ~(TS_S_KERNEL | TS_S_USER);
	/*
	 * Off CPU yet runnable: preempted, not asleep. Its stacks are a point
	 * of the run it resumes, which may describe it once it runs again
	 * (the capture replaced that run's on-CPU sample).
	 */
	else if (task_state(task) == 0 /* TASK_RUNNING */)
		flags |= TS_S_PREEMPTED;
	end_capture(t, s, entry, flags);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
