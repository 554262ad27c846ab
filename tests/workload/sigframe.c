/*
 * A process that blocks inside its signal handler, as PostgreSQL's
 * postmaster does when it forks a child from reaper() (issue 18): main
 * calls wait_for_signal, which waits in pause() with %rbp cleared (no
 * frame pointer to follow, like libc or a distribution's PostgreSQL); a
 * SIGALRM interrupts the wait, and on_signal calls in_handler_sleep,
 * which sleeps forever. Neither the handler nor the functions it calls
 * keep frame pointers: only the signal frame leads from the handler back
 * to pause, wait_for_signal and main.
 *
 *   sigframe     prints one JSON line (pid) once in the handler; runs until killed
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NO_FP __attribute__((noinline, optimize("omit-frame-pointer")))

NO_FP static void in_handler_sleep(void)
{
	struct timespec ts = { .tv_sec = 1 };

	printf("{\"pid\": %d}\n", getpid());
	fflush(stdout);
	for (;;)
		nanosleep(&ts, NULL);
}

NO_FP static void on_signal(int sig)
{
	(void)sig;
	in_handler_sleep();
	__asm__ volatile("" ::: "memory");
}

NO_FP static void wait_for_signal(void)
{
	/* Clobbering %rbp makes the compiler save it; pause() then runs with
	 * %rbp = 0, as code without frame pointers leaves it garbage. */
	__asm__ volatile("xor %%ebp, %%ebp" ::: "rbp");
	pause();
	__asm__ volatile("" ::: "memory");
}

int main(void)
{
	struct sigaction sa;
	struct itimerval timer = { .it_value = { .tv_usec = 20000 } };

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &timer, NULL);
	for (;;)
		wait_for_signal();
}
