/*
 * Workload for taskscope's waker and blocker tests (issue 13): threads
 * that wait for one another in known ways.
 *
 *   bk-holder       locks a pthread mutex, then sleeps in clock_nanosleep
 *                   (200 ms at a time) holding it for ever
 *   bk-mwait0..2    pthread_mutex_lock on that mutex     -> blocker bk-holder
 *   bk-cvwait       pthread_cond_wait, never signalled   -> no blocker
 *   bk-pwriter      writes a byte into a pipe every 20 ms
 *   bk-preader      reads it, then spins ~5 ms           -> woken by bk-pwriter
 *   bk-kholder      write() into a pipe from a page a userfaultfd never
 *                   fills: it sleeps in the fault holding the pipe's mutex
 *   bk-kwaiter      after a line on stdin, write() into the same pipe
 *                                                        -> kernel mutex wait,
 *                                                           blocker bk-kholder
 *   bk-timed        clock_nanosleep 100 ms, then spins 30 ms, again
 *                                                        -> on a CPU, no waker
 *
 * Prints one JSON line with every tid, then runs until SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t cv_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int wake_pipe[2], lock_pipe[2];
static char *unfilled; /* a page registered with userfaultfd, never filled */
static volatile int held_now;
static volatile int kheld_now;
static volatile sig_atomic_t stop;

enum { HOLDER, MWAIT0, MWAIT1, MWAIT2, CVWAIT, PWRITER, PREADER, KHOLDER, KWAITER, TIMED, ROLES };
static const char *names[ROLES] = { "bk-holder", "bk-mwait0", "bk-mwait1", "bk-mwait2",
				    "bk-cvwait", "bk-pwriter", "bk-preader", "bk-kholder",
				    "bk-kwaiter", "bk-timed" };
static const char *keys[ROLES] = { "holder", "mwait0", "mwait1", "mwait2", "cvwait",
				   "pwriter", "preader", "kholder", "kwaiter", "timed" };
static volatile pid_t tids[ROLES];

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
}

static void spin_ms(long ms)
{
	struct timespec start, now;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do
		clock_gettime(CLOCK_MONOTONIC, &now);
	while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
}

static void *run(void *arg)
{
	long role = (long)arg;
	char byte = 'x';

	prctl(PR_SET_NAME, names[role]);
	tids[role] = (pid_t)syscall(SYS_gettid);
	switch (role) {
	case HOLDER:
		pthread_mutex_lock(&held);
		held_now = 1;
		for (;;)
			nap_ms(200);
	case MWAIT0:
	case MWAIT1:
	case MWAIT2:
		while (!held_now)
			nap_ms(1);
		pthread_mutex_lock(&held);
		break;
	case CVWAIT:
		pthread_mutex_lock(&cv_lock);
		for (;;)
			pthread_cond_wait(&never, &cv_lock);
	case PWRITER:
		for (;;) {
			nap_ms(20);
			if (write(wake_pipe[1], &byte, 1) != 1)
				return NULL;
		}
	case PREADER:
		for (;;) {
			if (read(wake_pipe[0], &byte, 1) != 1)
				return NULL;
			spin_ms(5);
		}
	case KHOLDER:
		kheld_now = 1;
		/* Faults on `unfilled` inside pipe_write, with pipe->mutex held. */
		if (write(lock_pipe[1], unfilled, 64) < 0)
			return NULL;
		break;
	case KWAITER:
		/* Only when told (a line on stdin), so that an agent started in
		 * between sees the wait begin. */
		if (read(0, &byte, 1) != 1)
			return NULL;
		while (!kheld_now)
			nap_ms(1);
		nap_ms(100);
		if (write(lock_pipe[1], &byte, 1) < 0)
			return NULL;
		break;
	case TIMED:
		/* Woken by its timer (an interrupt: no waker), then on a CPU
		 * long enough for ticks to catch it there. */
		for (;;) {
			nap_ms(100);
			spin_ms(30);
		}
	}
	for (;;)
		nap_ms(1000);
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

/* A page whose first touch blocks for ever: registered with a userfaultfd
 * nobody serves. */
static char *unfilled_page(void)
{
	long page = sysconf(_SC_PAGESIZE);
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	char *p;

	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0) {
		perror("userfaultfd");
		exit(1);
	}
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(&reg, 0, sizeof(reg));
	reg.range.start = (unsigned long)p;
	reg.range.len = page;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
		perror("UFFDIO_REGISTER");
		exit(1);
	}
	return p;
}

int main(void)
{
	pthread_t threads[ROLES];

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (pipe(wake_pipe) || pipe(lock_pipe)) {
		perror("pipe");
		return 1;
	}
	unfilled = unfilled_page();
	for (long role = 0; role < ROLES; role++)
		pthread_create(&threads[role], NULL, run, (void *)role);
	for (int role = 0; role < ROLES; role++)
		while (!tids[role])
			nap_ms(1);
	printf("{\"pid\": %d", getpid());
	for (int role = 0; role < ROLES; role++)
		printf(", \"%s\": %d", keys[role], tids[role]);
	printf("}\n");
	fflush(stdout);
	while (!stop)
		nap_ms(50);
	/* exit_group: the fault of bk-kholder is interrupted by the kill. */
	_exit(0);
}
