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

SEC("iter/task")
int seed_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	track_task(task, 0, true);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
