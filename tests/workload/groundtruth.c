/*
 * Ground-truth workload for taskscope's tests: threads in known states.
 *
 *   gt-spin0..N    busy loops in user mode, one more than there are CPUs
 *                  (so some are always waiting in the run queue)
 *   gt-sleeper     nanosleep(200 ms) in a loop      -> SLEEP, clock_nanosleep
 *   gt-piperead    read() on an empty pipe          -> SLEEP, read
 *   gt-futex       pthread_cond_wait, never signaled-> SLEEP, futex
 *   gt-fsync       pwrite 256 KiB + fdatasync on a disk file -> DISK with io_*
 *                  (nice -10, so it is not starved by the spinners)
 *   gt-stopped     child process stopped by SIGSTOP -> STOPPED
 *   gt-zombie      child process that exited, never reaped -> ZOMBIE
 *
 * Usage: groundtruth DIR   (DIR must be on a block device; a 256 KiB file
 * is created there). Prints one JSON line with every tid, then runs until
 * SIGTERM/SIGINT, when it kills and reaps its children and exits.
 *
 *        groundtruth --nap MS     a short-lived process: sleeps MS ms in
 *                                 nap_then_exit() as gt-nap, then exits
 *        groundtruth --churn      creates and joins short threads (gt-churn,
 *                                 ~2 ms each) one after another until killed
 *        groundtruth --vfork      as gt-vfork, vfork()s a child (gt-vforkchild)
 *                                 that sleeps 300 ms and exits, in a loop until
 *                                 killed: an uninterruptible wait without I/O
 * Built with frame pointers so user stacks can be walked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SPINNERS 256

static volatile sig_atomic_t stop;
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready_count;
static int pipe_fds[2];
static char fsync_path[4096];
static pthread_mutex_t never_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never_cond = PTHREAD_COND_INITIALIZER;

struct worker {
	const char *role;
	char name[16];
	pid_t tid;
	pthread_t thread;
};

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void announce(struct worker *w)
{
	prctl(PR_SET_NAME, w->name);
	w->tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_lock(&ready_lock);
	ready_count++;
	pthread_cond_broadcast(&ready_cond);
	pthread_mutex_unlock(&ready_lock);
}

__attribute__((noinline)) static void spin_forever(void)
{
	volatile unsigned long counter = 0;

	for (;;)
		counter++;
}

__attribute__((noinline)) static void sleep_forever(void)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 200 * 1000 * 1000 };

	for (;;)
		nanosleep(&ts, NULL);
}

__attribute__((noinline)) static void read_pipe_forever(void)
{
	char byte;

	for (;;)
		if (read(pipe_fds[0], &byte, 1) < 0 && errno != EINTR)
			abort();
}

__attribute__((noinline)) static void wait_futex_forever(void)
{
	pthread_mutex_lock(&never_lock);
	for (;;)
		pthread_cond_wait(&never_cond, &never_lock);
}

#define FSYNC_BYTES (256 * 1024)

__attribute__((noinline)) static void fsync_forever(void)
{
	static char block[FSYNC_BYTES];
	int fd = open(fsync_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0) {
		perror("open fsync file");
		exit(1);
	}
	/* An I/O-bound thread should not starve behind the spinners. */
	setpriority(PRIO_PROCESS, 0, -10);
	memset(block, 'x', sizeof(block));
	for (unsigned long i = 0;; i++) {
		block[0] = (char)i;
		if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block)) {
			perror("pwrite");
			exit(1);
		}
		if (fdatasync(fd) != 0) {
			perror("fdatasync");
			exit(1);
		}
	}
}

__attribute__((noinline)) static void vfork_forever(void)
{
	for (;;) {
		pid_t child = vfork();

		if (child == 0) {
			/* Shares the parent's memory until it exits: syscalls only. */
			struct timespec ts = { .tv_sec = 0, .tv_nsec = 300 * 1000 * 1000 };

			prctl(PR_SET_NAME, "gt-vforkchild");
			nanosleep(&ts, NULL);
			_exit(0);
		}
		if (child < 0) {
			perror("vfork");
			exit(1);
		}
		waitpid(child, NULL, 0);
	}
}

__attribute__((noinline)) static void nap_then_exit(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000 * 1000 };

	nanosleep(&ts, NULL);
	exit(0);
}

static void *churn_briefly(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "gt-churn");
	usleep(2000);
	return NULL;
}

__attribute__((noinline)) static void churn_forever(void)
{
	for (;;) {
		pthread_t thread;

		if (pthread_create(&thread, NULL, churn_briefly, NULL) != 0) {
			perror("pthread_create");
			exit(1);
		}
		pthread_join(thread, NULL);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	announce(w);
	if (strcmp(w->role, "spin") == 0)
		spin_forever();
	else if (strcmp(w->role, "sleeper") == 0)
		sleep_forever();
	else if (strcmp(w->role, "piperead") == 0)
		read_pipe_forever();
	else if (strcmp(w->role, "futex") == 0)
		wait_futex_forever();
	else if (strcmp(w->role, "fsync") == 0)
		fsync_forever();
	return NULL;
}

static void start(struct worker *w, const char *role, const char *name)
{
	sigset_t all, old;

	w->role = role;
	snprintf(w->name, sizeof(w->name), "%s", name);
	/* Workers never take the termination signals: main does. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		perror("pthread_create");
		exit(1);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

int main(int argc, char **argv)
{
	static struct worker workers[MAX_SPINNERS + 8];
	int nworkers = 0, nspin;
	pid_t stopped, zombie;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (argc == 3 && strcmp(argv[1], "--nap") == 0) {
		prctl(PR_SET_NAME, "gt-nap");
		nap_then_exit(atol(argv[2]));
	}
	if (argc == 2 && strcmp(argv[1], "--churn") == 0) {
		prctl(PR_SET_NAME, "gt-churner");
		churn_forever();
	}
	if (argc == 2 && strcmp(argv[1], "--vfork") == 0) {
		prctl(PR_SET_NAME, "gt-vfork");
		vfork_forever();
	}
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR | --nap MS | --churn | --vfork\n", argv[0]);
		return 2;
	}
	snprintf(fsync_path, sizeof(fsync_path), "%s/groundtruth-fsync.dat", argv[1]);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (pipe(pipe_fds) != 0) {
		perror("pipe");
		return 1;
	}

	stopped = fork();
	if (stopped == 0) {
		prctl(PR_SET_NAME, "gt-stopped");
		for (;;)
			pause();
	}
	zombie = fork();
	if (zombie == 0) {
		prctl(PR_SET_NAME, "gt-zombie");
		_exit(0);
	}
	kill(stopped, SIGSTOP);

	nspin = (int)ncpu + 1;
	if (nspin > MAX_SPINNERS)
		nspin = MAX_SPINNERS;
	for (int i = 0; i < nspin; i++) {
		char name[16];

		snprintf(name, sizeof(name), "gt-spin%d", i);
		start(&workers[nworkers++], "spin", name);
	}
	start(&workers[nworkers++], "sleeper", "gt-sleeper");
	start(&workers[nworkers++], "piperead", "gt-piperead");
	start(&workers[nworkers++], "futex", "gt-futex");
	start(&workers[nworkers++], "fsync", "gt-fsync");

	pthread_mutex_lock(&ready_lock);
	while (ready_count < nworkers)
		pthread_cond_wait(&ready_cond, &ready_lock);
	pthread_mutex_unlock(&ready_lock);

	/* Wait until the stopped child really is stopped and the zombie dead. */
	for (int tries = 0; tries < 500; tries++) {
		char path[64], buf[512];
		int stopped_ok = 0, zombie_ok = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/stat", stopped);
		if ((f = fopen(path, "r"))) {
			if (fgets(buf, sizeof(buf), f))
				stopped_ok = strstr(buf, ") T ") != NULL;
			fclose(f);
		}
		snprintf(path, sizeof(path), "/proc/%d/stat", zombie);
		if ((f = fopen(path, "r"))) {
			if (fgets(buf, sizeof(buf), f))
				zombie_ok = strstr(buf, ") Z ") != NULL;
			fclose(f);
		}
		if (stopped_ok && zombie_ok)
			break;
		usleep(10 * 1000);
	}

	printf("{\"pid\": %d, \"stopped\": %d, \"zombie\": %d, \"pipe_fd\": %d, \"fsync_file\": \"%s\", \"spin\": [",
	       getpid(), stopped, zombie, pipe_fds[0], fsync_path);
	for (int i = 0; i < nspin; i++)
		printf("%s%d", i ? ", " : "", workers[i].tid);
	printf("]");
	for (int i = nspin; i < nworkers; i++)
		printf(", \"%s\": %d", workers[i].role, workers[i].tid);
	printf("}\n");
	fflush(stdout);

	while (!stop)
		pause();

	kill(stopped, SIGKILL);
	waitpid(stopped, NULL, 0);
	waitpid(zombie, NULL, 0);
	unlink(fsync_path);
	return 0;
}
