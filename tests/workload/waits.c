/*
 * What threads wait on (issue 13): threads whose fds and sockets are known.
 *
 *   waits DIR [ARGS...]   all roles below; extra arguments are ignored (the
 *                         tests pass password-like ones that must never
 *                         reach a file)
 *   waits --net           only the TCP roles (run inside another network
 *                         namespace)
 *
 *   wt-fsync    pwrite 64 KiB + fdatasync on DIR/waits-fsync.dat
 *   wt-accept   blocked in accept() on a listening socket of 127.0.0.1
 *   wt-server   answers each 1-byte request after 300 ms
 *   wt-client   sends a byte, blocks in recv() for the answer, again
 *   wt-swapped  blocked in read() on a pipe whose fd number wt-swapper
 *               points at another file while it waits (dup2), then back
 *   wt-unixread blocked in read() on a unix socket whose other end a
 *               child process holds; the child ("wt-peer") sets its own
 *               process title over its argument area
 *
 * Prints one JSON line of tids, ports and inodes, then runs until SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready_count;
static int accepted;

static char fsync_path[4096];
static int listen_fd, server_port;
static int swap_fd, swap_pipe[2], other_fd;
static int unix_fds[2];

struct worker {
	const char *name;
	void (*run)(void);
	pthread_t thread;
	int tid;
};

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void fsync_forever(void)
{
	static char block[64 * 1024];
	int fd = open(fsync_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		die("open fsync file");
	memset(block, 'x', sizeof(block));
	for (unsigned long i = 0;; i++) {
		block[0] = (char)i;
		if (pwrite(fd, block, sizeof(block), 0) != (ssize_t)sizeof(block))
			die("pwrite");
		if (fdatasync(fd) != 0)
			die("fdatasync");
	}
}

static void serve_forever(void)
{
	int conn;
	char c;

	while ((conn = accept(listen_fd, NULL, NULL)) < 0)
		;
	pthread_mutex_lock(&ready_lock);
	accepted = 1;
	pthread_cond_broadcast(&ready_cond);
	pthread_mutex_unlock(&ready_lock);
	for (;;) {
		if (read(conn, &c, 1) != 1)
			die("server read");
		usleep(300 * 1000);
		if (write(conn, &c, 1) != 1)
			die("server write");
	}
}

static void accept_forever(void)
{
	/* wt-server takes the client's connection; this thread then waits
	 * for one that never comes. */
	pthread_mutex_lock(&ready_lock);
	while (!accepted)
		pthread_cond_wait(&ready_cond, &ready_lock);
	pthread_mutex_unlock(&ready_lock);
	for (;;) {
		int conn = accept(listen_fd, NULL, NULL);

		if (conn >= 0)
			close(conn);
	}
}

static void client_forever(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(server_port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char c = 'q';

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
		die("connect");
	for (;;) {
		if (send(fd, &c, 1, 0) != 1)
			die("send");
		if (recv(fd, &c, 1, 0) != 1)
			die("recv");
	}
}

static void swapped_forever(void)
{
	char c;

	for (;;) {
		/* 0: the swapper pointed the fd at the other file before this
		 * read began; it reads that file's end at once. */
		if (read(swap_fd, &c, 1) < 0)
			die("swapped read");
		/* Back to the pipe for the next wait. */
		if (dup2(swap_pipe[0], swap_fd) < 0)
			die("dup2 back");
	}
}

static void swapper_forever(void)
{
	for (;;) {
		usleep(2 * 1000);
		/* wt-swapped waits in read() on the pipe; its fd now names
		 * another file. */
		if (dup2(other_fd, swap_fd) < 0)
			die("dup2");
		usleep(300 * 1000);
		if (write(swap_pipe[1], "x", 1) != 1)
			die("swapper write");
		usleep(20 * 1000);
	}
}

static void unixread_forever(void)
{
	char c;

	for (;;)
		if (read(unix_fds[0], &c, 1) < 0)
			die("unix read");
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	prctl(PR_SET_NAME, w->name);
	pthread_mutex_lock(&ready_lock);
	w->tid = (int)syscall(SYS_gettid);
	ready_count++;
	pthread_cond_broadcast(&ready_cond);
	pthread_mutex_unlock(&ready_lock);
	w->run();
	return NULL;
}

static void start_all(struct worker *workers, int n)
{
	for (int i = 0; i < n; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
			die("pthread_create");
	pthread_mutex_lock(&ready_lock);
	while (ready_count < n)
		pthread_cond_wait(&ready_cond, &ready_lock);
	pthread_mutex_unlock(&ready_lock);
}

static void listen_loopback(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t len = sizeof(addr);

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
	    listen(listen_fd, 8) != 0 || getsockname(listen_fd, (struct sockaddr *)&addr, &len) != 0)
		die("listen");
	server_port = ntohs(addr.sin_port);
	/* accept() returns every 300 ms: a thread that waits since before
	 * the agent started gets its file at its next switch-out. */
	{
		struct timeval tv = {.tv_sec = 0, .tv_usec = 300 * 1000};

		setsockopt(listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
}

static unsigned long inode_of(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		die("fstat");
	return (unsigned long)st.st_ino;
}

static void print_workers(struct worker *workers, int n)
{
	for (int i = 0; i < n; i++)
		printf(", \"%s\": %d", workers[i].name, workers[i].tid);
	printf("}\n");
	fflush(stdout);
}

/* The title a process sets for itself, as setproctitle does: over the
 * whole argument area, the rest zeroed. */
static void set_title(int argc, char **argv, const char *title)
{
	char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]);
	size_t room = (size_t)(end - start);

	memset(start, 0, room);
	strncpy(start, title, room - 1);
}

int main(int argc, char **argv)
{
	static struct worker net[] = {
		{"wt-accept", accept_forever},
		{"wt-server", serve_forever},
		{"wt-client", client_forever},
	};
	static struct worker all[] = {
		{"wt-fsync", fsync_forever},
		{"wt-accept", accept_forever},
		{"wt-server", serve_forever},
		{"wt-client", client_forever},
		{"wt-swapped", swapped_forever},
		{"wt-swapper", swapper_forever},
		{"wt-unixread", unixread_forever},
	};
	char other_path[4096];
	sigset_t term;
	pid_t peer;
	int sig;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [ARGS...] | --net\n", argv[0]);
		return 2;
	}
	/* Threads inherit the blocked signals; main waits for them. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigaddset(&term, SIGINT);
	pthread_sigmask(SIG_BLOCK, &term, NULL);
	listen_loopback();
	if (strcmp(argv[1], "--net") == 0) {
		/* The server's thread must accept before the client connects:
		 * the backlog holds the connection until then anyway. */
		start_all(net, 3);
		printf("{\"pid\": %d, \"port\": %d", getpid(), server_port);
		print_workers(net, 3);
		sigwait(&term, &sig);
		return 0;
	}
	snprintf(fsync_path, sizeof(fsync_path), "%s/waits-fsync.dat", argv[1]);
	snprintf(other_path, sizeof(other_path), "%s/waits-other.dat", argv[1]);
	other_fd = open(other_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (other_fd < 0 || pipe(swap_pipe) != 0)
		die("swap files");
	/* A fd number of its own, so dup2 has something to replace. */
	swap_fd = dup(swap_pipe[0]);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, unix_fds) != 0)
		die("socketpair");
	peer = fork();
	if (peer == 0) {
		prctl(PR_SET_NAME, "wt-peer");
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(unix_fds[0]);
		set_title(argc, argv, "wt-peer: holding a unix socket");
		sigwait(&term, &sig);
		_exit(0);
	}
	close(unix_fds[1]);
	start_all(all, 7);
	printf("{\"pid\": %d, \"peer\": %d, \"port\": %d, \"fsync_file\": \"%s\", \"other_file\": \"%s\", "
	       "\"swap_pipe_ino\": %lu, \"unix_ino\": %lu",
	       getpid(), peer, server_port, fsync_path, other_path, inode_of(swap_pipe[0]),
	       inode_of(unix_fds[0]));
	print_workers(all, 7);
	sigwait(&term, &sig);
	kill(peer, SIGTERM);
	waitpid(peer, NULL, 0);
	unlink(fsync_path);
	unlink(other_path);
	return 0;
}
