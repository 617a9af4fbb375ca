/* cprog: an ordinary static C program (glibc or musl) that Folium must run
 * unchanged: it prints through stdio, reads both clocks, allocates, forks,
 * waits for its child and checks the status word, then reports. Exits 0
 * only if every check held. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		printf("cprog: FAILED: %s\n", what);
		failures++;
	}
}

int main(int argc, char **argv)
{
	struct timespec a, b, r;
	check(clock_gettime(CLOCK_MONOTONIC, &a) == 0, "clock_gettime(MONOTONIC)");
	check(clock_gettime(CLOCK_REALTIME, &r) == 0, "clock_gettime(REALTIME)");

	/* The heap: malloc goes to brk (and mmap for big blocks in libc). */
	char *buf = malloc(1 << 16);
	check(buf != NULL, "malloc");
	if (buf) {
		memset(buf, 'x', 1 << 16);
		check(buf[12345] == 'x', "heap contents");
	}

	int shared = 1;
	pid_t pid = fork();
	if (pid == 0) {
		shared = 2;
		printf("cprog: child %d of %d says hello\n", (int)getpid(), (int)getppid());
		fflush(stdout);
		_exit(shared == 2 ? 3 : 4);
	}
	check(pid > 0, "fork");
	int status = 0;
	check(waitpid(pid, &status, 0) == pid, "waitpid");
	check(WIFEXITED(status) && WEXITSTATUS(status) == 3, "child exit status");
	check(shared == 1, "copy-on-write isolation");

	check(clock_gettime(CLOCK_MONOTONIC, &b) == 0, "clock_gettime again");
	check(b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec),
	      "monotonic time went backwards");
	double x = 0;
	for (int i = 1; i <= 1000; i++)
		x += 1.0 / ((double)i * i);
	check(x > 1.6438 && x < 1.6441, "floating point");

	printf("cprog %s (%s): %s, argc %d, %d failures\n",
	       argc > 0 ? argv[0] : "?",
#ifdef __GLIBC__
	       "glibc",
#else
	       "musl",
#endif
	       failures ? "FAILED" : "ok", argc, failures);
	free(buf);
	return failures ? 1 : 0;
}
