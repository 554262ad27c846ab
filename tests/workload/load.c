/*
 * Load workloads for the agent's robustness tests (tests/agent/load.rs).
 *
 *   load crowd N       up to N threads (ld-crowd) blocked in read(2) on a
 *                      pipe (fewer if the machine refuses more); prints
 *                      {"pid": P, "threads": T} when they exist, then obeys
 *                      lines on stdin:
 *                        release   the crowd exits (pipe closed), joined;
 *                                  prints "released"
 *                        late K    K more threads (ld-late) block on a
 *                                  second pipe; prints their tids
 *                      and exits at the end of stdin.
 *   load churn SECS THREADS_PER_SEC PROCS_PER_SEC LOG
 *                      for SECS seconds creates threads (ld-churn) whose
 *                      lifetimes cycle through 1 ms .. 500 ms, and short
 *                      processes (ld-proc) that end by exit, exec of
 *                      /bin/true or SIGKILL and are reaped 300 ms late;
 *                      writes one "tid,start_us,end_us" line per thread
 *                      (CLOCK_REALTIME) to LOG and prints
 *                      {"threads": T, "processes": P}.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)

static int crowd_pipe[2], late_pipe[2];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void *block_on_pipe(void *arg)
{
	int fd = *(int *)arg;
	char byte;

	prctl(PR_SET_NAME, fd == crowd_pipe[0] ? "ld-crowd" : "ld-late");
	while (read(fd, &byte, 1) > 0)
		;
	return NULL;
}

/* 0, or the error number if the machine refuses another thread. */
static int try_start_thread(void *(*fn)(void *), void *arg, pthread_t *thread)
{
	pthread_attr_t attr;
	int err;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, STACK_SIZE);
	err = pthread_create(thread, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return err;
}

static pthread_t start_thread(void *(*fn)(void *), void *arg)
{
	pthread_t thread;

	if (try_start_thread(fn, arg, &thread) != 0)
		die("pthread_create");
	return thread;
}

struct late_arg {
	atomic_int tid;
};

static void *late_main(void *arg)
{
	struct late_arg *a = arg;

	atomic_store(&a->tid, (int)syscall(SYS_gettid));
	return block_on_pipe(&late_pipe[0]);
}

static int crowd(int n)
{
	pthread_t *threads = calloc(n, sizeof(*threads));
	char line[128];

	if (!threads || pipe(crowd_pipe) || pipe(late_pipe))
		die("setup");
	for (int i = 0; i < n; i++) {
		int err = try_start_thread(block_on_pipe, &crowd_pipe[0], &threads[i]);

		if (err != 0) {
			fprintf(stderr, "load: the machine refused thread %d: %s\n", i + 1,
				strerror(err));
			n = i;
			break;
		}
	}
	printf("{\"pid\": %d, \"threads\": %d}\n", getpid(), n);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		if (strncmp(line, "release", 7) == 0) {
			close(crowd_pipe[1]);
			for (int i = 0; i < n; i++)
				pthread_join(threads[i], NULL);
			printf("released\n");
		} else if (strncmp(line, "late ", 5) == 0) {
			int k = atoi(line + 5);
			struct late_arg *args = calloc(k, sizeof(*args));

			if (!args)
				die("calloc");
			for (int i = 0; i < k; i++)
				start_thread(late_main, &args[i]);
			for (int i = 0; i < k; i++) {
				while (!atomic_load(&args[i].tid))
					usleep(1000);
				printf("%s%d", i ? " " : "", atomic_load(&args[i].tid));
			}
			printf("\n");
		}
		fflush(stdout);
	}
	return 0;
}

struct record {
	int tid;
	long lifetime_ms;
	long long start_us, end_us;
};

static struct record *records;
static atomic_long live_threads;

static long long now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *churn_thread(void *arg)
{
	struct record *r = arg;
	struct timespec nap = { r->lifetime_ms / 1000, (r->lifetime_ms % 1000) * 1000000L };

	prctl(PR_SET_NAME, "ld-churn");
	r->tid = (int)syscall(SYS_gettid);
	r->start_us = now_ns(CLOCK_REALTIME) / 1000;
	nanosleep(&nap, NULL);
	r->end_us = now_ns(CLOCK_REALTIME) / 1000;
	atomic_fetch_sub(&live_threads, 1);
	return NULL;
}

static void sleep_until(long long deadline_ns)
{
	struct timespec ts = { deadline_ns / 1000000000LL, deadline_ns % 1000000000LL };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL))
		;
}

static void proc_child(long i)
{
	struct timespec nap = { 0, 5 * 1000000L };

	prctl(PR_SET_NAME, "ld-proc");
	nanosleep(&nap, NULL);
	switch (i % 3) {
	case 0:
		_exit(0);
	case 1:
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	default:
		raise(SIGKILL);
		_exit(1);
	}
}

struct pending {
	pid_t pid;
	long long at_ns;
};

static int churn(int secs, int threads_per_sec, int procs_per_sec, const char *log)
{
	long max = (long)secs * threads_per_sec + 16, made = 0, procs = 0;
	long long start = now_ns(CLOCK_MONOTONIC), end = start + secs * 1000000000LL;
	long long thread_period = 1000000000LL / threads_per_sec;
	long long proc_period = procs_per_sec ? 1000000000LL / procs_per_sec : end;
	long long next_thread = start, next_proc = start;
	static const long lifetimes[] = { 1, 2, 5, 10, 20, 50, 100, 200, 300, 500 };
	struct pending pending[4096];
	int npending = 0;
	pthread_attr_t attr;
	FILE *out;

	records = calloc(max, sizeof(*records));
	if (!records)
		die("calloc");
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, STACK_SIZE);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	prctl(PR_SET_NAME, "ld-churner");
	for (;;) {
		long long now = now_ns(CLOCK_MONOTONIC), next;
		pthread_t thread;

		if (now >= end)
			break;
		while (next_thread <= now && made < max) {
			records[made].lifetime_ms = lifetimes[made % 10];
			atomic_fetch_add(&live_threads, 1);
			if (pthread_create(&thread, &attr, churn_thread, &records[made]) != 0)
				die("pthread_create");
			made++;
			next_thread += thread_period;
		}
		while (next_proc <= now && npending < 4096) {
			pid_t pid = fork();

			if (pid < 0)
				die("fork");
			if (pid == 0)
				proc_child(procs);
			pending[npending++] = (struct pending){ pid, now };
			procs++;
			next_proc += proc_period;
		}
		/* Reap children 300 ms after their start: each is a zombie for
		 * a while, as with a parent that reaps late. */
		for (int i = 0; i < npending;) {
			if (now - pending[i].at_ns >= 300000000LL) {
				waitpid(pending[i].pid, NULL, 0);
				pending[i] = pending[--npending];
			} else {
				i++;
			}
		}
		next = next_thread < next_proc ? next_thread : next_proc;
		sleep_until(next < end ? next : end);
	}
	for (int i = 0; i < npending; i++)
		waitpid(pending[i].pid, NULL, 0);
	while (atomic_load(&live_threads) > 0)
		usleep(1000);
	out = fopen(log, "w");
	if (!out)
		die(log);
	for (long i = 0; i < made; i++)
		fprintf(out, "%d,%lld,%lld\n", records[i].tid, records[i].start_us, records[i].end_us);
	if (fclose(out))
		die(log);
	printf("{\"threads\": %ld, \"processes\": %ld}\n", made, procs);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "crowd") == 0)
		return crowd(atoi(argv[2]));
	if (argc == 6 && strcmp(argv[1], "churn") == 0)
		return churn(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argv[5]);
	fprintf(stderr, "usage: %s crowd N | churn SECS THREADS_PER_SEC PROCS_PER_SEC LOG\n", argv[0]);
	return 2;
}
