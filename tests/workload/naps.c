/*
 * An exact number of short syscalls (issue 14, tracked latency): after a
 * line on stdin, the `nap-loop` thread calls clock_nanosleep(500 us)
 * exactly N times, then prints {"done": N} and waits for SIGTERM.
 *
 *   naps N     prints {"pid": P, "tid": T} first
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long calls;

static void *nap_loop(void *arg)
{
	struct timespec nap = {.tv_sec = 0, .tv_nsec = 500 * 1000};
	long n;

	(void)arg;
	prctl(PR_SET_NAME, "nap-loop");
	printf("{\"pid\": %d, \"tid\": %ld}\n", getpid(), (long)syscall(SYS_gettid));
	fflush(stdout);
	if (getchar() == EOF)
		exit(1);
	for (n = 0; n < calls; n++)
		if (clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, NULL) != 0)
			exit(1);
	printf("{\"done\": %ld}\n", n);
	fflush(stdout);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;

	if (argc != 2 || (calls = atol(argv[1])) <= 0) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	if (pthread_create(&t, NULL, nap_loop, NULL) != 0)
		return 1;
	pthread_join(t, NULL);
	pause();
	return 0;
}
