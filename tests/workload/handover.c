/*
 * Workload for taskscope's test of wakers of wakeups handed over to the
 * wakee's CPU (issue 13): a pipe writer pinned to CPU 0 wakes a reader
 * pinned to CPU 1. The reader sleeps on an otherwise idle CPU, so the
 * kernel hands each wakeup over to CPU 1 (ttwu_queue_wakelist, an IPI or
 * the idle loop) instead of enqueuing the reader from the writer.
 *
 *   ho-writer   (CPU 0) writes a byte into a pipe every 10 ms
 *   ho-reader   (CPU 1) reads it, then spins ~3 ms    -> woken by ho-writer
 *
 * Prints one JSON line with both tids, then runs until SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int wake_pipe[2];
static volatile pid_t writer_tid, reader_tid;

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		exit(1);
	}
}

static void spin_ms(long ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do
		clock_gettime(CLOCK_MONOTONIC, &now);
	while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
}

static void *writer(void *arg)
{
	struct timespec nap = { 0, 10 * 1000000L };
	char byte = 'x';

	(void)arg;
	pin(0);
	prctl(PR_SET_NAME, "ho-writer");
	writer_tid = (pid_t)syscall(SYS_gettid);
	for (;;) {
		clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, NULL);
		if (write(wake_pipe[1], &byte, 1) != 1)
			return NULL;
	}
}

static void *reader(void *arg)
{
	char bytes[64];

	(void)arg;
	pin(1);
	prctl(PR_SET_NAME, "ho-reader");
	reader_tid = (pid_t)syscall(SYS_gettid);
	for (;;) {
		/* All that is there: a reader slowed down by a busy CPU
		 * catches up, and sleeps again. */
		if (read(wake_pipe[0], bytes, sizeof(bytes)) <= 0)
			return NULL;
		spin_ms(3);
	}
}

int main(void)
{
	struct timespec nap = { 0, 1000000L };
	pthread_t w, r;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		fprintf(stderr, "handover: needs two online CPUs\n");
		return 1;
	}
	if (pipe(wake_pipe)) {
		perror("pipe");
		return 1;
	}
	pthread_create(&r, NULL, reader, NULL);
	pthread_create(&w, NULL, writer, NULL);
	while (!writer_tid || !reader_tid)
		clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, NULL);
	printf("{\"pid\": %d, \"writer\": %d, \"reader\": %d}\n", getpid(), writer_tid, reader_tid);
	fflush(stdout);
	pause();
	return 0;
}
