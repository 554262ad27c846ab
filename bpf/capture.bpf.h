/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Stack captures into the `stacks` pool (maps.bpf.h), from the switch-out
 * (sched.bpf.c), the on-CPU sample (oncpu.bpf.c) and the refresh pass
 * (iter.bpf.c). The pool is smaller than the thread table: a thread keeps
 * its entry while the entry's `slot` still names it, and otherwise takes
 * the entry taken longest ago (taskscope.h, struct ts_stack).
 */
#ifndef TASKSCOPE_CAPTURE_BPF_H
#define TASKSCOPE_CAPTURE_BPF_H

#include "maps.bpf.h"

/*
 * Take the `stacks` entry for a capture of the thread of `t` (slot index
 * `idx`): its own while it still holds it, else the pool's next, the one
 * taken longest ago. Captures may come from another CPU (the iterator), so
 * the entry's counter is taken with a compare-and-swap; NULL when the
 * entry is being written (the capture is skipped). The entry is the
 * thread's from here; end_capture() hands it back.
 */
static __always_inline struct ts_stack *begin_capture(struct ts_thread *t, __u32 idx, __u32 *entry)
{
	__u32 e = READ_ONCE(t->stack_entry), seq;
	struct ts_stack *s = bpf_map_lookup_elem(&stacks, &e);

	if (!s || READ_ONCE(s->slot) != idx + 1) {
		e = (__u32)__sync_fetch_and_add(&stack_cursor, 1) & stack_pool_mask;
		s = bpf_map_lookup_elem(&stacks, &e);
		if (!s)
			return NULL;
	}
	seq = READ_ONCE(s->seq);
	if ((seq & 1) || __sync_val_compare_and_swap(&s->seq, seq, seq + 1) != seq)
		return NULL;
	s->slot = idx + 1;
	*entry = e;
	return s;
}

/* Publish a capture taken with begin_capture(). */
static __always_inline void end_capture(struct ts_thread *t, struct ts_stack *s, __u32 entry,
					__u32 flags)
{
	s->flags = flags;
	__sync_fetch_and_add(&s->seq, 1);
	WRITE_ONCE(t->stack_entry, entry);
}

/*
 * Capture the stacks of `task`, current, whose entry is `t` at slot index
 * `idx`. `py_chain` (entry + 1 of `py_chains`, 0: none) is the CPython
 * frame chain read at `now` for this capture (python.bpf.h).
 */
static __always_inline void capture_stacks(void *ctx, struct task_struct *task, struct ts_thread *t,
					   __u32 idx, __u64 now, __u64 switch_out_ns, __u32 how,
					   __u32 py_chain)
{
	__u32 flags = how, entry;
	struct ts_stack *s = begin_capture(t, idx, &entry);
	long n;

	if (!s)
		return;
	s->captured_ns = now;
	s->switch_out_ns = switch_out_ns;
	s->kframes = 0;
	s->uframes = 0;
	s->py_chain = 0;
	if (py_chain) {
		s->py_chain = py_chain - 1;
		flags |= TS_S_PYTHON;
	}
	if (stack_kinds & TS_S_KERNEL) {
		n = bpf_get_stack(ctx, s->kips, sizeof(s->kips), 0);
		if (n > 0) {
			s->kframes = n / 8;
			flags |= TS_S_KERNEL;
		}
	}
	if ((stack_kinds & TS_S_USER) && !(task->flags & PF_KTHREAD)) {
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);

		n = bpf_get_stack(ctx, s->uips, sizeof(s->uips), BPF_F_USER_STACK);
		if (n > 0) {
			s->uframes = n / 8;
			flags |= TS_S_USER;
		}
		if (regs) {
#if defined(__TARGET_ARCH_x86)
			s->user_sp = regs->sp;
			s->user_bp = regs->bp;
#elif defined(__TARGET_ARCH_arm64)
			s->user_sp = regs->sp;
			s->user_bp = regs->regs[29];
#endif
			/* In two halves: a stack whose top is less than
			 * TS_USTACK_PEEK bytes away still gets the first one
			 * (a failed read zeroes its half). */
			if (!bpf_probe_read_user(s->peek, TS_USTACK_PEEK / 2, (void *)s->user_sp)) {
				flags |= TS_S_PEEK;
				bpf_probe_read_user(s->peek + TS_USTACK_PEEK / 2, TS_USTACK_PEEK / 2,
						    (void *)(s->user_sp + TS_USTACK_PEEK / 2));
			}
		}
	}
	end_capture(t, s, entry, flags);
}

#endif /* TASKSCOPE_CAPTURE_BPF_H */
