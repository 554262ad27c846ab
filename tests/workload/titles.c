/*
 * Process titles (issue 13, proc_title).
 *
 *   titles [ARGS...]        a process that sleeps in clock_nanosleep
 *                           (started with argv[0] "tsworker" and
 *                           password-like arguments, which must never
 *                           reach a file)
 *   titles --retitle MS     sets its title to "tsapp: phase one" over its
 *                           argument area, as setproctitle does, and MS
 *                           milliseconds after start to "tsapp: phase two"
 *
 * Prints one JSON line (pid; with --retitle the wall-clock time of the
 * change, microseconds since the epoch), then runs until killed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
}

/* The title a process sets for itself: over the whole argument area, the
 * rest zeroed. */
static void set_title(int argc, char **argv, const char *title)
{
	char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]);
	size_t room = (size_t)(end - start);

	memset(start, 0, room);
	strncpy(start, title, room - 1);
}

int main(int argc, char **argv)
{
	prctl(PR_SET_PDEATHSIG, 9);
	if (argc >= 3 && strcmp(argv[1], "--retitle") == 0) {
		long ms = atol(argv[2]);
		long long change_us = now_us() + ms * 1000;

		set_title(argc, argv, "tsapp: phase one");
		printf("{\"pid\": %d, \"change_us\": %lld}\n", getpid(), change_us);
		fflush(stdout);
		while (now_us() < change_us)
			sleep_ms(10);
		set_title(argc, argv, "tsapp: phase two");
		for (;;)
			sleep_ms(100);
	}
	printf("{\"pid\": %d}\n", getpid());
	fflush(stdout);
	for (;;)
		sleep_ms(100);
}
