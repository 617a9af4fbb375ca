/* cprog: an ordinary static C program (glibc or musl) that Folium must run
 * unchanged: it prints through stdio, reads both clocks, allocates small
 * and large buffers (so both brk and mmap), forks, waits for its child and
 * checks the status word, vforks, starts itself again with posix_spawn
 * (glibc), counts the CPUs as `nproc` does, then reports. Exits 0 only if
 * every check held. Run as `cprog --spawned` it exits 42 after 0.5 s. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>

static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		printf("cprog: FAILED: %s\n", what);
		failures++;
	}
}

/* Fills every page of `p` with a value derived from its index and `seed`,
 * then checks them all: a page lost, shared or misplaced shows up. */
static int touch_and_verify(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 4096)
		p[i] = (unsigned char)((i >> 12) * 7 + seed);
	p[n - 1] = (unsigned char)seed;
	for (size_t i = 0; i < n; i += 4096)
		if (p[i] != (unsigned char)((i >> 12) * 7 + seed))
			return 0;
	return p[n - 1] == (unsigned char)seed;
}

/* Large buffers: libc serves requests above its mmap threshold (128 KiB by
 * default in glibc and musl) with mmap and frees them with munmap; many
 * smaller blocks grow the brk heap by megabytes, and freeing them lets libc
 * shrink it again. */
static void big_buffers(void)
{
	static const size_t sizes[] = { 100 << 10, 1 << 20, 3 << 20, 16 << 20 };
	for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		unsigned char *p = malloc(sizes[k]);
		check(p != NULL, "malloc of a large buffer");
		if (p)
			check(touch_and_verify(p, sizes[k], k), "large buffer contents");
		free(p);
	}
	enum { BLOCKS = 256, BLOCK = 16 << 10 };
	static unsigned char *blocks[BLOCKS];
	for (unsigned i = 0; i < BLOCKS; i++) {
		blocks[i] = malloc(BLOCK);
		check(blocks[i] != NULL, "malloc of a heap block");
		if (blocks[i])
			memset(blocks[i], (int)(i & 0xff), BLOCK);
	}
	for (unsigned i = 0; i < BLOCKS; i++)
		if (blocks[i])
			check(blocks[i][i % BLOCK] == (unsigned char)(i & 0xff) &&
				      blocks[i][BLOCK - 1] == (unsigned char)(i & 0xff),
			      "heap block contents");
	for (unsigned i = 0; i < BLOCKS; i++)
		free(blocks[i]);
	/* The freed space is reused: a second round must work as well. */
	unsigned char *again = malloc(4 << 20);
	check(again != NULL && touch_and_verify(again, 4 << 20, 99), "reuse after free");
	free(again);
}

/* vfork: the child runs in this address space (a store it makes is seen
 * here) while this process waits, until it exits; posix_spawn (glibc's is
 * clone(CLONE_VM | CLONE_VFORK) on a stack of its own, and its child
 * reports a failed exec through the shared memory) starts this program
 * again, and fails with ENOENT for a program that does not exist. musl's
 * posix_spawn needs a pipe, which Folium does not have yet. */
static void vfork_and_spawn(char *self)
{
	static volatile int seen;
	seen = 0;
	pid_t pid = vfork();
	if (pid == 0) {
		seen = 1;
		/* Still here once the child is gone only if it waited. */
		for (volatile int i = 0; i < 100000; i++)
			;
		seen = 2;
		_exit(5);
	}
	check(pid > 0, "vfork");
	check(seen == 2, "vfork: the child's stores, and the parent waited");
	int status = 0;
	check(waitpid(pid, &status, 0) == pid, "waitpid after vfork");
	check(WIFEXITED(status) && WEXITSTATUS(status) == 5, "vfork child exit status");
#ifdef __GLIBC__
	char *args[] = {self, "--spawned", NULL};
	char *env[] = {NULL};
	pid_t child = 0;
	int r = posix_spawn(&child, self, NULL, NULL, args, env);
	check(r == 0 && child > 0, "posix_spawn of this program");
	if (r == 0) {
		/* The parent went on at the child's exec, not at its exit. */
		check(waitpid(child, &status, WNOHANG) == 0,
		      "posix_spawn returned before the child ended");
		status = 0;
		check(waitpid(child, &status, 0) == child, "waitpid after posix_spawn");
		check(WIFEXITED(status) && WEXITSTATUS(status) == 42, "posix_spawn child exit status");
	}
	char *none[] = {"/no-such-program", NULL};
	r = posix_spawn(&child, "/no-such-program", NULL, NULL, none, env);
	check(r == ENOENT, "posix_spawn of a missing program: ENOENT");
#else
	(void)self;
#endif
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--spawned") == 0) {
		/* Long enough that posix_spawn, which returns once the exec
		 * is done, comes back well before this ends. */
		struct timespec half = {0, 500000000};
		nanosleep(&half, NULL);
		return 42;
	}
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

	big_buffers();

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

	vfork_and_spawn(argv[0]);

	check(clock_gettime(CLOCK_MONOTONIC, &b) == 0, "clock_gettime again");
	check(b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec),
	      "monotonic time went backwards");
	/* The CPUs: the affinity mask (what coreutils' nproc and musl's
	 * sysconf read), sysconf and get_nprocs (glibc reads
	 * /sys/devices/system/cpu/online) must agree. */
	cpu_set_t set;
	CPU_ZERO(&set);
	check(sched_getaffinity(0, sizeof set, &set) == 0, "sched_getaffinity");
	int cpus = CPU_COUNT(&set);
	check(cpus >= 1, "an empty affinity mask");
	check(sysconf(_SC_NPROCESSORS_ONLN) == cpus, "sysconf(_SC_NPROCESSORS_ONLN) = affinity");
	check(get_nprocs() == cpus, "get_nprocs() = affinity");

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
	printf("cprog: %d cpus\n", cpus);
	free(buf);
	return failures ? 1 : 0;
}
