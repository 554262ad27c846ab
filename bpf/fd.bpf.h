/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The file behind a syscall's fd (issue 13, the `file` column).
 *
 * At switch-out, and at the on-CPU sample, a thread inside a syscall whose
 * first argument is a file descriptor (the syscalls userspace marks in
 * `fd_syscalls`) gets the identity of the open file that fd names now: the struct file's
 * address (the identity while it is open), its inode number and its
 * position. Userspace names the file later, on the writer thread, by
 * readlink of /proc/<tid>/fd/<n>, and uses the name only when the inode
 * still matches: a fd closed and reused in between gives an empty value,
 * never another file's name.
 *
 * One 40-byte entry per slot in its own mmap-able array, beside the state
 * table (whose entry is full), written in the thread's own context (its
 * switch-out, or the on-CPU sample on its CPU), with its own sequence
 * counter, taken with a compare-and-swap. Not at seeding: a thread that
 * waits since before the agent started may have its fd pointed at another
 * file (dup2, close + open by another thread) than the one its syscall
 * holds, so it gets a file at its next switch-out. The same holds, within
 * one syscall, for a fd replaced between the syscall's entry and the
 * switch-out: the only case where the name can be other than the file the
 * syscall works on.
 */
#ifndef TASKSCOPE_FD_BPF_H
#define TASKSCOPE_FD_BPF_H

#include "maps.bpf.h"

struct ts_fd {
	__u32 seq;           /* odd while an update is in progress */
	__s32 fd;            /* the syscall's first argument */
	__u64 at_ns;         /* when it was read: the switch-out (ts_thread.switch_out_ns)
			      * or the on-CPU sample (ts_thread.perf_ns) */
	__u64 file;          /* struct file address: the open file's identity */
	__u64 ino;           /* its inode number */
	__s64 pos;           /* its position (f_pos) */
};

_Static_assert(sizeof(struct ts_fd) % 8 == 0, "mmap-able values are 8-byte multiples");

/* One entry per slot of `threads` (mmap-able). */
TS_EXTERN struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE_);
	__type(key, __u32);
	__type(value, struct ts_fd);
	__uint(max_entries, 1); /* max_slots, set at load */
} fds SEC(".maps");

/* Set before load: bit n set when syscall n's first argument is a fd. */
TS_EXTERN const volatile __u64 fd_syscalls[8];

/*
 * Record the file `prev`'s fd `fd` names, when it is inside syscall `nr`
 * that takes a fd first. Costs nothing for other syscalls but a bit test;
 * for fd syscalls a handful of reads through the task's file table.
 */
static __always_inline void record_fd(struct task_struct *prev, __u32 slot, long nr, __u64 fd,
				      __u64 now)
{
	struct files_struct *files;
	struct fdtable *fdt;
	struct file **arr;
	struct file *f = NULL;
	struct ts_fd *e;
	__u32 idx = slot - 1, seq;
	__u64 ino = 0;
	__s64 pos = 0;

	if (nr < 0 || nr >= 512)
		return;
	if (!(fd_syscalls[(nr >> 6) & 7] & (1ULL << (nr & 63))))
		return;
	e = bpf_map_lookup_elem(&fds, &idx);
	if (!e)
		return;
	/*
	 * Direct loads through BTF pointers (the verifier turns them into
	 * plain loads that cannot fault): this runs at every switch-out of a
	 * thread in a fd syscall, and a helper call per field read cost a
	 * same-CPU pipe ping-pong several percent (a call costs ~25 ns where
	 * CPU mitigations make every return expensive). The fd array's slot,
	 * a pointer to pointer, is read the same way, cast to the kernel's
	 * smallest struct that holds one pointer at offset 0 (llist_node; the
	 * cast is no instruction).
	 */
	files = prev->files;
	if (files) {
		fdt = files->fdt;
		if (fdt && fd < fdt->max_fds) {
			arr = fdt->fd;
			if (arr)
				f = (struct file *)bpf_core_cast(arr + fd, struct llist_node)->next;
		}
	}
	if (f) {
		struct file *file = bpf_core_cast(f, struct file);
		struct inode *inode = file->f_inode;

		ino = inode ? inode->i_ino : 0;
		pos = file->f_pos;
	}
	/* The on-CPU sample may interrupt a switch-out's update on the same
	 * CPU: the entry is taken with a compare-and-swap; a busy one is
	 * skipped. */
	seq = READ_ONCE(e->seq);
	if ((seq & 1) || __sync_val_compare_and_swap(&e->seq, seq, seq + 1) != seq)
		return;
	e->fd = (__s32)fd;
	e->at_ns = now;
	e->file = (__u64)f;
	e->ino = ino;
	e->pos = pos;
	__sync_fetch_and_add(&e->seq, 1);
}

#endif /* TASKSCOPE_FD_BPF_H */
