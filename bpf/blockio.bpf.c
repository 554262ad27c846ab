/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Block I/O: per-request state keyed by the request pointer (submitting
 * thread, insert and issue time, device, sector, bytes, op) and, in each
 * thread's entry, the request it has in flight.
 *
 * A request is first seen at block_io_start (6.5+: when it is built from a
 * bio, in the submitter's context, for every request including the one a
 * thread waits on while the block layer flushes the device cache), else at
 * block_rq_insert, else at block_rq_issue (requests that bypass the I/O
 * scheduler), and attributed to the thread current at that moment.
 *
 * Requests are often issued and completed on other CPUs than the one that
 * submitted them, so the thread's I/O region is updated under a try-lock
 * (compare-and-swap on io_seq). The request map is an LRU hash and entries
 * are deleted on completion and on merge, so requests that complete
 * elsewhere, or never, cannot leak entries.
 */
#include "maps.bpf.h"

struct request___pre519 {
	struct gendisk *rq_disk;
} __attribute__((preserve_access_index));

struct request_queue___disk {
	struct gendisk *disk;
} __attribute__((preserve_access_index));

struct bio___bdev {
	struct block_device *bi_bdev;
} __attribute__((preserve_access_index));

/* Kernel dev_t (major << 20 | minor) of the partition, else of the disk. */
static __always_inline __u32 request_dev(struct request *rq)
{
	struct block_device *part = NULL;
	struct gendisk *disk;

	if (bpf_core_field_exists(((struct bio___bdev *)0)->bi_bdev)) {
		struct bio___bdev *bio = (void *)BPF_CORE_READ(rq, bio);

		if (bio)
			part = BPF_CORE_READ(bio, bi_bdev);
	}
	if (!part)
		part = BPF_CORE_READ(rq, part);
	if (part)
		return BPF_CORE_READ(part, bd_dev);
	if (bpf_core_field_exists(((struct request_queue___disk *)0)->disk)) {
		struct request_queue___disk *q = (void *)BPF_CORE_READ(rq, q);

		disk = BPF_CORE_READ(q, disk);
	} else {
		disk = BPF_CORE_READ((struct request___pre519 *)rq, rq_disk);
	}
	if (!disk)
		return 0;
	return (BPF_CORE_READ(disk, major) << 20) | BPF_CORE_READ(disk, first_minor);
}

/* The REQ_* flags taskscope reports, normalised (bit numbers vary). */
static __always_inline __u32 request_flags(__u64 cmd_flags)
{
	__u32 flags = 0;

	if (cmd_flags & (1ULL << bpf_core_enum_value(enum req_flag_bits, __REQ_SYNC)))
		flags |= TS_IO_SYNC;
	if (cmd_flags & (1ULL << bpf_core_enum_value(enum req_flag_bits, __REQ_META)))
		flags |= TS_IO_META;
	if (cmd_flags & (1ULL << bpf_core_enum_value(enum req_flag_bits, __REQ_FUA)))
		flags |= TS_IO_FUA;
	if (cmd_flags & (1ULL << bpf_core_enum_value(enum req_flag_bits, __REQ_PREFLUSH)))
		flags |= TS_IO_PREFLUSH;
	return flags;
}

static __always_inline bool io_lock(struct ts_thread *t)
{
	for (int i = 0; i < 8; i++) {
		__u32 s = READ_ONCE(t->io_seq);

		if (!(s & 1) && __sync_val_compare_and_swap(&t->io_seq, s, s + 1) == s)
			return true;
	}
	__sync_fetch_and_add(&counters.io_contended, 1);
	return false;
}

static __always_inline void io_unlock(struct ts_thread *t)
{
	__sync_fetch_and_add(&t->io_seq, 1);
}

/* The entry of the thread that submitted `req`, if it still owns its slot. */
static __always_inline struct ts_thread *request_owner(struct ts_request *req)
{
	__u32 idx = req->slot;
	struct ts_thread *t = bpf_map_lookup_elem(&threads, &idx);

	if (!t || t->slot_gen != req->slot_gen || t->slot_state != TS_SLOT_LIVE)
		return NULL;
	return t;
}

/* First sight of a request (insert, or issue for requests that skip the
 * I/O scheduler): attribute it to the current thread. */
static __always_inline struct ts_request *request_start(struct request *rq, __u64 now)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct ts_slot_ref *ref;
	struct ts_request req = {};
	struct ts_thread *t;
	__u64 key = (__u64)rq, cmd_flags;
	__u32 idx;

	ref = bpf_task_storage_get(&slot_of, task, 0, 0);
	if (!ref || ref->slot == TS_NO_SLOT) {
		__sync_fetch_and_add(&counters.io_untracked, 1);
		return NULL;
	}
	idx = ref->slot - 1;
	t = bpf_map_lookup_elem(&threads, &idx);
	if (!t)
		return NULL;

	req.slot = idx;
	req.slot_gen = ref->slot_gen;
	req.insert_ns = now;
	req.sector = BPF_CORE_READ(rq, __sector);
	req.bytes = BPF_CORE_READ(rq, __data_len);
	req.dev = request_dev(rq);
	cmd_flags = BPF_CORE_READ(rq, cmd_flags);
	req.op = cmd_flags & REQ_OP_MASK_;
	req.flags = request_flags(cmd_flags);
	req.tid = task->pid;
	/* The thread's request number goes with the request: --track io
	 * follows the one a sample saw in flight. */
	if (!io_lock(t))
		return NULL;
	req.seq = t->io_rq_seq + 1;
	if (bpf_map_update_elem(&requests, &key, &req, BPF_ANY)) {
		__sync_fetch_and_add(&counters.map_update_failed, 1);
		io_unlock(t);
		return NULL;
	}
	t->io_rq_seq = req.seq;
	t->io_rq = key;
	t->io_insert_ns = now;
	t->io_issue_ns = 0;
	t->io_sector = req.sector;
	t->io_bytes = req.bytes;
	t->io_dev = req.dev;
	t->io_op = req.op;
	t->io_flags = req.flags;
	t->io_inflight += 1;
	io_unlock(t);
	return bpf_map_lookup_elem(&requests, &key);
}

SEC("?tp_btf/block_io_start")
int BPF_PROG(on_block_io_start, struct request *rq)
{
	request_start(rq, bpf_ktime_get_ns());
	return 0;
}

SEC("?tp_btf/block_rq_insert")
int BPF_PROG(on_block_rq_insert, struct request *rq)
{
	__u64 key = (__u64)rq;

	if (!bpf_map_lookup_elem(&requests, &key))
		request_start(rq, bpf_ktime_get_ns());
	return 0;
}

SEC("?tp_btf/block_rq_issue")
int BPF_PROG(on_block_rq_issue, struct request *rq)
{
	__u64 key = (__u64)rq, now = bpf_ktime_get_ns();
	struct ts_request *req;
	struct ts_thread *t;

	req = bpf_map_lookup_elem(&requests, &key);
	if (!req) {
		req = request_start(rq, now);
		if (!req)
			return 0;
	}
	req->issue_ns = now;
	/* Merges may have grown the request since it was inserted. */
	req->bytes = BPF_CORE_READ(rq, __data_len);
	t = request_owner(req);
	if (t && READ_ONCE(t->io_rq) == key && io_lock(t)) {
		if (t->io_rq == key) {
			t->io_issue_ns = now;
			t->io_bytes = req->bytes;
		}
		io_unlock(t);
	}
	return 0;
}

/* --track io: report the completion of a request that was in flight at
 * the latest tick (queued no later than the end of its scan, `tick_ns`). */
static __always_inline void report_completion(struct ts_request *req, struct ts_thread *t,
					      int error)
{
	struct ts_completion *rec;

	if (req->insert_ns > READ_ONCE(tick_ns))
		return;
	rec = bpf_ringbuf_reserve(&completions, sizeof(*rec), 0);
	if (!rec) {
		__sync_fetch_and_add(&counters.completions_lost, 1);
		return;
	}
	rec->kind = TS_C_IO;
	rec->tid = req->tid;
	rec->tgid = t->tgid;
	rec->syscall_nr = -1;
	rec->seq = req->seq;
	rec->start_ns = req->insert_ns;
	rec->issue_ns = req->issue_ns;
	rec->end_ns = bpf_ktime_get_ns();
	rec->ret = error;
	rec->sector = req->sector;
	rec->bytes = req->bytes;
	rec->dev = req->dev;
	rec->op = req->op;
	rec->flags = req->flags;
	bpf_ringbuf_submit(rec, 0);
}

/* The request is finished (`completed`, with `error`) or merged away:
 * forget it. */
static __always_inline void request_end(struct request *rq, bool completed, int error)
{
	__u64 key = (__u64)rq;
	struct ts_request *req;
	struct ts_thread *t;

	req = bpf_map_lookup_elem(&requests, &key);
	if (!req)
		return;
	t = request_owner(req);
	if (t && completed && (track_kinds & TS_TRACK_IO))
		report_completion(req, t, error);
	if (t && io_lock(t)) {
		if (t->io_rq == key)
			t->io_rq = 0;
		if (t->io_inflight > 0)
			t->io_inflight -= 1;
		io_unlock(t);
	}
	bpf_map_delete_elem(&requests, &key);
}

SEC("?tp_btf/block_rq_complete")
int BPF_PROG(on_block_rq_complete, struct request *rq, int error, unsigned int nr_bytes)
{
	/* A partial completion leaves the rest of the request in flight. */
	if (nr_bytes < BPF_CORE_READ(rq, __data_len))
		return 0;
	request_end(rq, true, error);
	return 0;
}

SEC("?tp_btf/block_rq_merge")
int BPF_PROG(on_block_rq_merge, struct request *rq)
{
	request_end(rq, false, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
