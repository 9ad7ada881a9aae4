/*
 * marker: the service of the respawn measurement in bench/sockets.
 *
 * Its first act is clock_gettime(CLOCK_REALTIME); the driver read the same
 * clock just before its kill(2), so the difference is what the supervisor
 * took to notice the death and start this process again, fork and exec
 * (and, for a `sockets=` service, cfkd's /bin/sh exec step) included.
 *
 * It then appends one line, "<ns> <pid> <listen>\n", in one write(2) on an
 * O_APPEND descriptor to the file named by argv[1], where <listen> says
 * what systemd's socket protocol handed it:
 *   0  no LISTEN_PID in the environment (a service without sockets=)
 *   1  LISTEN_PID is our own pid, LISTEN_FDS=1 and fd 3 is a socket:
 *      the exec step worked
 *   2  LISTEN_PID is set but wrong, or fd 3 is not a socket
 * and a fourth field, 1 when stdin is a socket (tie_stdin_to=), else 0.
 * These checks come after the clock, so they cost the figure nothing.
 *
 * Then it sleeps in pause(2) until a signal ends it.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char *put_u64(char *end, unsigned long long v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

static int is_socket(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

int main(int argc, char **argv)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (argc < 2)
		return 111;

	pid_t pid = getpid();
	int listen = 0;
	const char *lp = getenv("LISTEN_PID");
	if (lp != NULL) {
		const char *lf = getenv("LISTEN_FDS");
		listen = (atoll(lp) == (long long)pid && lf != NULL &&
			  strcmp(lf, "1") == 0 && is_socket(3)) ? 1 : 2;
	}

	char buf[80];
	char *end = buf + sizeof buf;
	char *p = end;
	*--p = '\n';
	*--p = is_socket(0) ? '1' : '0';
	*--p = ' ';
	*--p = (char)('0' + listen);
	*--p = ' ';
	p = put_u64(p, (unsigned long long)pid);
	*--p = ' ';
	p = put_u64(p, (unsigned long long)ts.tv_sec * 1000000000ULL +
			       (unsigned long long)ts.tv_nsec);

	int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, p, (size_t)(end - p)) != end - p)
		return 111;
	close(fd);

	signal(SIGTERM, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (;;)
		pause();
}
