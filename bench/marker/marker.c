/*
 * marker: the service every supervisor in the benchmark runs.
 *
 * Its first act is to read CLOCK_REALTIME and append one line,
 * "<nanoseconds since the epoch> <pid>\n", to the file named by
 * $MARKER_FILE or, when that is unset, by argv[1].  The environment wins
 * because s6-supervise runs ./run with the service's name as argv[1]; a
 * runit or s6 service directory can then use this program itself as its
 * run file, with MARKER_FILE set in the environment of the scanner.
 *
 * The driver compares that time with the moment it issued a kill or a
 * start command, so nothing runs before clock_gettime: no stdio, no
 * argument parsing beyond picking the path.
 *
 * The line goes out in one write(2) on an O_APPEND descriptor: appends
 * of a few bytes to a regular file are atomic with respect to each
 * other, so a thousand markers starting at once never interleave.
 *
 * If $MARKER_READY_FD names a descriptor, a newline is then written to it
 * and it is closed: that is s6's readiness notification (the service dir's
 * notification-fd file names the fd).  s6-supervise restarts a dead
 * service at once only if it had been ready for a second; without it,
 * it always waits one second.
 *
 * Then it waits in pause(2) until a signal ends it.  SIGTERM is reset to
 * its default action first because an ignored signal survives execve(2):
 * a supervisor started with TERM ignored must still be able to stop us.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* put_u64 writes v in decimal at the end of buf and returns the start. */
static char *put_u64(char *end, unsigned long long v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

int main(int argc, char **argv)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);

	const char *path = getenv("MARKER_FILE");
	if ((path == NULL || *path == '\0') && argc > 1)
		path = argv[1];
	if (path == NULL || *path == '\0')
		return 111;

	char buf[64];
	char *end = buf + sizeof buf;
	char *p = end;
	*--p = '\n';
	p = put_u64(p, (unsigned long long)getpid());
	*--p = ' ';
	p = put_u64(p, (unsigned long long)ts.tv_sec * 1000000000ULL +
			       (unsigned long long)ts.tv_nsec);

	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return 111;
	if (write(fd, p, (size_t)(end - p)) != end - p)
		return 111;
	close(fd);

	const char *ready = getenv("MARKER_READY_FD");
	if (ready != NULL && *ready != '\0') {
		int rfd = atoi(ready);
		ssize_t w = write(rfd, "\n", 1);
		(void)w; /* nobody to tell: s6 then just waits its second */
		close(rfd);
	}

	signal(SIGTERM, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (;;)
		pause();
}
