/*
 * Threads that flip between two waits many times a second (issue 14, rows
 * from one moment): each `fl-flip` thread waits 1 ms in epoll_wait on an
 * empty epoll set, then writes 4 KiB to its own file on DIR and waits for
 * fdatasync, again and again. Three `fl-spin` threads keep both CPUs busy,
 * so the sampler is preempted mid-scan and reaches some entries after
 * their thread switched in and out again.
 *
 *   flip DIR     prints one JSON line (pid, flip tids), runs until SIGTERM
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FLIPS 4
#define SPINS 3

static const char *dir;
static int tids[FLIPS];
static int ready;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

__attribute__((noinline)) static void flip_wait_epoll(int ep)
{
	struct epoll_event ev;

	if (epoll_wait(ep, &ev, 1, 1) < 0)
		die("epoll_wait");
}

__attribute__((noinline)) static void flip_sync_file(int fd, char *block, size_t len)
{
	if (pwrite(fd, block, len, 0) != (ssize_t)len)
		die("pwrite");
	if (fdatasync(fd) != 0)
		die("fdatasync");
}

static void *flip(void *arg)
{
	long n = (long)arg;
	static char blocks[FLIPS][4096];
	char path[4096];
	int ep = epoll_create1(EPOLL_CLOEXEC), fd;

	if (ep < 0)
		die("epoll_create1");
	snprintf(path, sizeof(path), "%s/flip-%ld.dat", dir, n);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		die("open");
	unlink(path);
	prctl(PR_SET_NAME, "fl-flip");
	pthread_mutex_lock(&lock);
	tids[n] = (int)syscall(SYS_gettid);
	ready++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (unsigned long i = 0;; i++) {
		blocks[n][0] = (char)i;
		flip_wait_epoll(ep);
		flip_sync_file(fd, blocks[n], sizeof(blocks[n]));
	}
	return NULL;
}

static void *spin(void *arg)
{
	volatile unsigned long x = 0;

	(void)arg;
	prctl(PR_SET_NAME, "fl-spin");
	for (;;)
		x++;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	for (long n = 0; n < FLIPS; n++)
		if (pthread_create(&t, NULL, flip, (void *)n) != 0)
			die("pthread_create");
	for (long n = 0; n < SPINS; n++)
		if (pthread_create(&t, NULL, spin, NULL) != 0)
			die("pthread_create");
	pthread_mutex_lock(&lock);
	while (ready < FLIPS)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	printf("{\"pid\": %d, \"flip\": [", getpid());
	for (int n = 0; n < FLIPS; n++)
		printf("%s%d", n ? ", " : "", tids[n]);
	printf("]}\n");
	fflush(stdout);
	pause();
	return 0;
}
