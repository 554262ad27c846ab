/*
 * Unix socket peers (issue 13, peer_pid / peer_comm): two processes over
 * a unix stream socket bound at DIR/peers.sock.
 *
 *   peers DIR
 *
 *   ts-userver  accepts one connection, then: read() a 1-byte request
 *               (blocked while the client sleeps), sleep 300 ms, answer
 *   ts-uclient  connects, then: send a byte, read() the answer (blocked
 *               while the server sleeps), sleep 300 ms
 *
 * Prints one JSON line (the two pids and the socket path), then runs
 * until SIGTERM.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
}

static void serve(int listener)
{
	char byte;
	int conn = accept(listener, NULL, NULL);

	if (conn < 0)
		die("accept");
	for (;;) {
		if (read(conn, &byte, 1) != 1)
			_exit(0);
		sleep_ms(300);
		if (write(conn, &byte, 1) != 1)
			_exit(0);
	}
}

static void ask(const struct sockaddr_un *addr)
{
	char byte = 'x';
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0)
		die("connect");
	for (;;) {
		if (write(fd, &byte, 1) != 1 || read(fd, &byte, 1) != 1)
			_exit(0);
		sleep_ms(300);
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	pid_t server, client;
	sigset_t term;
	int listener, sig;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/peers.sock", argv[1]);
	unlink(addr.sun_path);
	listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(listener, 1) != 0)
		die("listen");
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGINT);
	sigprocmask(SIG_BLOCK, &term, NULL);
	server = fork();
	if (server == 0) {
		prctl(PR_SET_NAME, "ts-userver");
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		serve(listener);
	}
	/* Only the server holds the listener: the accepted socket's peer is
	 * the client's alone. */
	close(listener);
	client = fork();
	if (client == 0) {
		prctl(PR_SET_NAME, "ts-uclient");
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		ask(&addr);
	}
	printf("{\"server\": %d, \"client\": %d, \"path\": \"%s\"}\n", server, client, addr.sun_path);
	fflush(stdout);
	sigwait(&term, &sig);
	kill(server, SIGKILL);
	kill(client, SIGKILL);
	waitpid(server, NULL, 0);
	waitpid(client, NULL, 0);
	unlink(addr.sun_path);
	return 0;
}
