/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * CPython frame chains read at the on-CPU sample (oncpu.bpf.c) and at a
 * captured switch-out (sched.bpf.c, where the thread is still current), at
 * the same instant as the native user stack, so the writer can name the
 * Python functions of a thread that runs on exactly
 * (output::stacks::python).
 *
 * Only threads userspace published in `py_threads` are read: for any
 * other thread the cost is one hash lookup that misses. The walk follows
 * thread state -> current frame -> previous ... with bpf_probe_read_user,
 * at most TS_PY_DEPTH frames, and stores per frame the code object's
 * address, whether the frame closes its eval-loop call's group, a
 * fingerprint of the code object, and the frame's instruction pointer
 * (the writer tells the line from it). Anything implausible (a read that
 * fails, a thread state that names another thread, a misaligned code
 * pointer) marks the chain failed: the writer keeps the native frames.
 */
#ifndef TASKSCOPE_PYTHON_BPF_H
#define TASKSCOPE_PYTHON_BPF_H

#include "maps.bpf.h"

static __always_inline bool py_u64(__u64 *dst, __u64 addr)
{
	return bpf_probe_read_user(dst, sizeof(*dst), (void *)addr) == 0;
}

/* The frames of `p`'s chain from `frame` on into `c`; its flags. */
static __always_inline __u32 py_walk(struct ts_py_thread *p, struct ts_py_chain *c, __u64 frame)
{
	__u32 shim = p->shim_owner;
	__u32 i;

#pragma clang loop unroll(disable)
	for (i = 0; i < TS_PY_DEPTH; i++) {
		__u64 code = 0, prev = 0, instr = 0, qualname = 0, filename = 0;
		__u32 line = 0;
		__u8 marker = 0;

		if (!frame)
			return TS_PY_COMPLETE;
		if (!py_u64(&code, frame + p->code) || !py_u64(&prev, frame + p->previous) ||
		    bpf_probe_read_user(&marker, 1, (void *)(frame + p->marker)))
			return TS_PY_FAILED;
		if (shim != TS_PY_IS_ENTRY && marker == shim) {
			/* The C stack's shim: closes a group, names nothing. */
			c->frames[i].code = 1;
			c->frames[i].print = 0;
			c->frames[i].instr = 0;
		} else {
			if (!code || (code & 7))
				return TS_PY_FAILED;
			if (!py_u64(&qualname, code + p->code_qualname) ||
			    !py_u64(&filename, code + p->code_filename) ||
			    !py_u64(&instr, frame + p->instr) ||
			    bpf_probe_read_user(&line, 4, (void *)(code + p->code_firstlineno)))
				return TS_PY_FAILED;
			c->frames[i].code = code | (shim == TS_PY_IS_ENTRY && marker);
			c->frames[i].print =
				qualname ^ ((filename << 17) | (filename >> 47)) ^ (__u64)line;
			c->frames[i].instr = instr;
		}
		c->n = i + 1;
		frame = prev;
	}
	return frame ? TS_PY_TRUNCATED : TS_PY_COMPLETE;
}

/*
 * Read the running thread's frame chain if userspace published it; the
 * entry + 1 of `py_chains` that holds it (stamped `now`), 0 if none.
 */
static __always_inline __u32 capture_python(struct task_struct *task, __u64 now)
{
	__u32 tid = task->pid, idx;
	struct ts_py_thread *p = bpf_map_lookup_elem(&py_threads, &tid);
	struct ts_py_chain *c;
	__u64 native = 0, frame = 0;
	__u32 flags;

	if (!p || p->tgid != (__u32)task->tgid || (task->flags & PF_KTHREAD))
		return 0;
	idx = p->chain;
	c = bpf_map_lookup_elem(&py_chains, &idx);
	if (!c)
		return 0;
	/* Atomic: after userspace gives the entry to another thread, a
	 * sample of the old one may still be writing it. */
	__sync_fetch_and_add(&c->seq, 1);
	c->tid = tid;
	c->captured_ns = now;
	c->n = 0;
	if (!py_u64(&native, p->tstate + p->native_id) || native != tid ||
	    !py_u64(&frame, p->tstate + p->current)) {
		flags = TS_PY_FAILED;
	} else if (p->cframe_current != TS_PY_DIRECT && frame &&
		   !py_u64(&frame, frame + p->cframe_current)) {
		flags = TS_PY_FAILED;
	} else {
		flags = py_walk(p, c, frame);
	}
	c->flags = flags;
	__sync_fetch_and_add(&c->seq, 1);
	return idx + 1;
}

#endif /* TASKSCOPE_PYTHON_BPF_H */
