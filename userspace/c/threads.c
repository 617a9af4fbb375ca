/* cthreads: an ordinary static C program using POSIX threads (glibc or
 * musl) that Folium must run unchanged on several CPUs. Each part checks
 * its result through a second path (a count every thread adds to, a value
 * written by one thread and read by another, a signal a stale TLB entry
 * would not raise), prints one line, and the program reports
 * `cthreads NAME (libc): ok, N failures` and exits 0 only if every check
 * held. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Linux's futex operations (musl ships no <linux/futex.h>). */
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_WAIT_PRIVATE (0 | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_PRIVATE (1 | FUTEX_PRIVATE_FLAG)
#define FUTEX_CMP_REQUEUE_PRIVATE (4 | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAIT_BITSET_PRIVATE (9 | FUTEX_PRIVATE_FLAG)

static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		printf("cthreads: FAILED: %s\n", what);
		failures++;
	}
}

static long futex(atomic_int *w, int op, int val, const struct timespec *t, atomic_int *w2, int val3)
{
	return syscall(SYS_futex, w, op, val, t, w2, val3);
}

static int ncpus(void)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof set, &set) != 0)
		return 1;
	return CPU_COUNT(&set);
}

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof set, &set);
}

/* --- ids: getpid is the process's, gettid each thread's own ----------- */
static pid_t main_pid;
static void *ids_thread(void *arg)
{
	(void)arg;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	check(getpid() == main_pid, "a thread's getpid is its process's");
	check(tid != main_pid && tid > 0, "a thread has a tid of its own");
	return (void *)(intptr_t)tid;
}

/* --- the fd table is the process's (CLONE_FILES) ----------------------- */
static int opened_fd = -1;
static void *opener(void *arg)
{
	(void)arg;
	opened_fd = open("/proc/meminfo", O_RDONLY);
	return NULL;
}

/* --- a mutex and a counter, every thread at once ---------------------- */
enum { ADDERS = 4, ADDS = 20000 };
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *adder(void *arg)
{
	(void)arg;
	for (int i = 0; i < ADDS; i++) {
		pthread_mutex_lock(&lock);
		counter++;
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

/* --- condition variable: a queue handed from producer to consumer ----- */
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int queue[16], q_len, q_done;
static long consumed_sum;
static void *consumer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		while (q_len == 0 && !q_done)
			pthread_cond_wait(&cond, &lock);
		if (q_len == 0 && q_done)
			break;
		consumed_sum += queue[--q_len];
		pthread_cond_broadcast(&cond);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* --- barrier: nobody passes before everybody arrived ------------------ */
enum { BARRIER_THREADS = 4, ROUNDS = 50 };
static pthread_barrier_t barrier;
static atomic_int arrived[ROUNDS];
static atomic_int barrier_bad;
static void *barrier_thread(void *arg)
{
	(void)arg;
	for (int r = 0; r < ROUNDS; r++) {
		atomic_fetch_add(&arrived[r], 1);
		pthread_barrier_wait(&barrier);
		if (atomic_load(&arrived[r]) != BARRIER_THREADS)
			atomic_store(&barrier_bad, 1);
		pthread_barrier_wait(&barrier);
	}
	return NULL;
}

/* --- futex ping-pong across CPUs -------------------------------------- */
enum { PINGS = 2000 };
static atomic_int turn;
static void *ponger(void *arg)
{
	int cpu = (int)(intptr_t)arg;
	pin(cpu);
	for (int i = 0; i < PINGS; i++) {
		while (atomic_load(&turn) != 1)
			futex(&turn, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		atomic_store(&turn, 0);
		futex(&turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
	return NULL;
}

/* --- a reader faults right after another thread's munmap -------------- */
static volatile unsigned char *watched;
static atomic_int reader_go, reader_started;
static atomic_long reads_after_unmap;

/* --- concurrent faults on one large mapping --------------------------- */
enum { FAULTERS = 4 };
static unsigned char *shared_area;
static size_t shared_len;
static void *faulter(void *arg)
{
	int k = (int)(intptr_t)arg;
	pin(k % ncpus());
	/* Every thread writes its own bytes of every page, in a different
	 * order: the faults on each folio race. */
	for (size_t off = 0; off < shared_len; off += 4096) {
		size_t at = (k & 1) ? shared_len - 4096 - off : off;
		shared_area[at + k] = (unsigned char)(at / 4096 + k);
	}
	return NULL;
}

/* --- fork and munmap in one process at once --------------------------- */
static atomic_int unmapper_done;
static void *unmapper(void *arg)
{
	(void)arg;
	for (int i = 0; i < 40; i++) {
		size_t len = 2 << 20;
		unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			check(0, "mmap in the unmapping thread");
			break;
		}
		memset(p, i, len);
		check(p[len - 1] == (unsigned char)i, "contents before munmap");
		munmap(p, len);
	}
	atomic_store(&unmapper_done, 1);
	return NULL;
}

static void *short_thread(void *arg)
{
	return (void *)((intptr_t)arg * 2);
}

/* --- exec from a thread that is not the leader ------------------------- */
static char *self_path;
static pid_t exec_expect;
static void *exec_thread(void *arg)
{
	(void)arg;
	char pid[16];
	snprintf(pid, sizeof pid, "%d", (int)exec_expect);
	char *argv[] = { self_path, "--exec-check", pid, NULL };
	char *envp[] = { NULL };
	execve(self_path, argv, envp);
	_exit(2);
}

/* --- exit_group from a thread ends the whole process ------------------ */
static void *exiting_thread(void *arg)
{
	(void)arg;
	exit(7);
}
static void *blocked_forever(void *arg)
{
	(void)arg;
	for (;;)
		sleep(100);
	return NULL;
}

int main(int argc, char **argv)
{
	/* Line by line, and nothing left in the buffer for a fork to copy. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Run again by exec from a thread: the process keeps its pid, which
	 * is the tid of the thread that runs now, and no other thread
	 * survives. */
	if (argc == 3 && strcmp(argv[1], "--exec-check") == 0) {
		pid_t want = (pid_t)atoi(argv[2]);
		int ok = getpid() == want && (pid_t)syscall(SYS_gettid) == want;
		_exit(ok ? 7 : 8);
	}
	int cpus = ncpus();
	main_pid = getpid();
	check((pid_t)syscall(SYS_gettid) == main_pid, "the main thread's tid is the pid");

	/* ids */
	pthread_t t;
	void *ret;
	check(pthread_create(&t, NULL, ids_thread, NULL) == 0, "pthread_create");
	check(pthread_join(t, &ret) == 0, "pthread_join");
	check((intptr_t)ret > 0 && (intptr_t)ret != main_pid, "a thread's tid returned through join");

	/* a file one thread opens is open in the others */
	pthread_create(&t, NULL, opener, NULL);
	pthread_join(t, NULL);
	char head[9] = { 0 };
	check(opened_fd >= 0 && read(opened_fd, head, 8) == 8 && memcmp(head, "MemTotal", 8) == 0,
	      "a file a thread opened reads in its sibling (one fd table)");
	/* fork shares the open file itself: one position for both */
	if (opened_fd >= 0) {
		pid_t r = fork();
		if (r == 0) {
			char c;
			_exit(read(opened_fd, &c, 1) == 1 && c == ':' ? 0 : 1);
		}
		int rst = 0;
		waitpid(r, &rst, 0);
		char next = 0;
		check(WIFEXITED(rst) && WEXITSTATUS(rst) == 0 && read(opened_fd, &next, 1) == 1 &&
			      next == ' ',
		      "a forked child's read moves its parent's position (one open file)");
	}
	check(opened_fd >= 0 && close(opened_fd) == 0, "a sibling closes it");
	printf("cthreads: fd %d opened in a thread, read and closed in main\n", opened_fd);

	/* mutex */
	pthread_t adders[ADDERS];
	for (int i = 0; i < ADDERS; i++)
		check(pthread_create(&adders[i], NULL, adder, NULL) == 0, "create an adder");
	for (int i = 0; i < ADDERS; i++)
		pthread_join(adders[i], NULL);
	check(counter == (long)ADDERS * ADDS, "the mutex kept every increment");
	printf("cthreads: mutex: %d threads, %ld increments\n", ADDERS, counter);

	/* condvar */
	pthread_t c;
	pthread_create(&c, NULL, consumer, NULL);
	long produced = 0;
	for (int i = 1; i <= 5000; i++) {
		pthread_mutex_lock(&lock);
		while (q_len == 16)
			pthread_cond_wait(&cond, &lock);
		queue[q_len++] = i;
		produced += i;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
	pthread_mutex_lock(&lock);
	q_done = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	pthread_join(c, NULL);
	check(consumed_sum == produced, "the condvar queue handed every item over");
	printf("cthreads: condvar: sum %ld\n", consumed_sum);

	/* barrier */
	pthread_barrier_init(&barrier, NULL, BARRIER_THREADS);
	pthread_t bt[BARRIER_THREADS];
	for (int i = 0; i < BARRIER_THREADS; i++)
		pthread_create(&bt[i], NULL, barrier_thread, NULL);
	for (int i = 0; i < BARRIER_THREADS; i++)
		pthread_join(bt[i], NULL);
	check(!barrier_bad, "a thread passed the barrier early");
	pthread_barrier_destroy(&barrier);
	printf("cthreads: barrier: %d threads, %d rounds\n", BARRIER_THREADS, ROUNDS);

	/* futex: errors and a timeout as Linux gives them */
	atomic_int word = 5;
	errno = 0;
	check(futex(&word, FUTEX_WAIT_PRIVATE, 4, NULL, NULL, 0) == -1 && errno == EAGAIN,
	      "FUTEX_WAIT on a changed word is EAGAIN");
	struct timespec small = { 0, 20 * 1000 * 1000 }, t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	errno = 0;
	check(futex(&word, FUTEX_WAIT_PRIVATE, 5, &small, NULL, 0) == -1 && errno == ETIMEDOUT,
	      "FUTEX_WAIT times out with ETIMEDOUT");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	check(waited_ms >= 19, "FUTEX_WAIT waited its timeout");
	errno = 0;
	check(futex((atomic_int *)((char *)&word + 1), FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) == -1 &&
		      errno == EINVAL,
	      "an unaligned futex is EINVAL");
	errno = 0;
	check(futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 5, NULL, NULL, 0) == -1 && errno == EINVAL,
	      "FUTEX_WAIT_BITSET with an empty bitset is EINVAL");
	check(futex(&word, FUTEX_WAKE_PRIVATE, 10, NULL, NULL, 0) == 0, "FUTEX_WAKE with no waiter wakes 0");
	errno = 0;
	check(futex(&word, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)1, &word, 4) == -1 && errno == EAGAIN,
	      "FUTEX_CMP_REQUEUE on a changed word is EAGAIN");

	/* futex ping-pong between two CPUs (or on one) */
	int other = cpus > 1 ? 1 : 0;
	pin(0);
	pthread_t pong;
	pthread_create(&pong, NULL, ponger, (void *)(intptr_t)other);
	for (int i = 0; i < PINGS; i++) {
		atomic_store(&turn, 1);
		futex(&turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		while (atomic_load(&turn) != 0)
			futex(&turn, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
	}
	pthread_join(pong, NULL);
	printf("cthreads: futex ping-pong: %d round trips, CPU 0 and CPU %d\n", PINGS, other);
	cpu_set_t all;
	CPU_ZERO(&all);
	for (int i = 0; i < cpus; i++)
		CPU_SET(i, &all);
	sched_setaffinity(0, sizeof all, &all);

	/* a reader loops on a page; after munmap returns it must fault */
	{
		unsigned char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		page[0] = 42;
		watched = page;
		pid_t child = fork();
		if (child == 0) {
			/* In a child, so the fatal fault ends only it: a reader
			 * thread spins on the page, the main thread unmaps it
			 * once the reader is running on another CPU, and the
			 * reader must die of SIGSEGV right after. */
			pthread_t r;
			extern void *reader_thread(void *);
			pthread_create(&r, NULL, reader_thread, (void *)(intptr_t)other);
			while (!atomic_load(&reader_started))
				sched_yield();
			munmap(page, 4096);
			atomic_store(&reader_go, 1);
			/* The reader dies with the whole process; if it does
			 * not, report after a while. */
			sleep(5);
			_exit(9);
		}
		int st = 0;
		waitpid(child, &st, 0);
		check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
		      "a thread reading a page another thread unmapped faults (no stale TLB entry)");
		printf("cthreads: munmap under a reader on CPU %d: %s\n", other,
		       WIFSIGNALED(st) ? "faulted" : "did not fault");
		munmap(page, 4096);
	}

	/* concurrent faults on one large mapping */
	shared_len = 8 << 20;
	shared_area = mmap(NULL, shared_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	check(shared_area != MAP_FAILED, "mmap for the faulters");
	pthread_t ft[FAULTERS];
	for (int i = 0; i < FAULTERS; i++)
		pthread_create(&ft[i], NULL, faulter, (void *)(intptr_t)i);
	for (int i = 0; i < FAULTERS; i++)
		pthread_join(ft[i], NULL);
	int bad = 0;
	for (size_t at = 0; at < shared_len; at += 4096)
		for (int k = 0; k < FAULTERS; k++)
			bad += shared_area[at + k] != (unsigned char)(at / 4096 + k);
	check(bad == 0, "concurrent faults kept every thread's bytes");
	munmap(shared_area, shared_len);
	printf("cthreads: concurrent faults: %d threads, %zu MiB, %d bad bytes\n", FAULTERS,
	       shared_len >> 20, bad);

	/* fork while another thread maps and unmaps */
	pthread_t um;
	pthread_create(&um, NULL, unmapper, NULL);
	int forks = 0;
	while (!atomic_load(&unmapper_done)) {
		pid_t p = fork();
		if (p == 0)
			_exit(counter == (long)ADDERS * ADDS ? 0 : 1);
		int st = 0;
		waitpid(p, &st, 0);
		check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a child forked beside munmap sees its memory");
		forks++;
	}
	pthread_join(um, NULL);
	printf("cthreads: fork beside munmap: %d forks\n", forks);

	/* 1,000 threads created and joined, 50 at a time */
	int made = 0, joined_ok = 0;
	for (int round = 0; round < 20; round++) {
		pthread_t many[50];
		for (int i = 0; i < 50; i++)
			if (pthread_create(&many[i], NULL, short_thread, (void *)(intptr_t)(made + i)) != 0)
				many[i] = 0;
		for (int i = 0; i < 50; i++) {
			if (!many[i])
				continue;
			void *r;
			if (pthread_join(many[i], &r) == 0 && (intptr_t)r == 2 * (made + i))
				joined_ok++;
		}
		made += 50;
	}
	check(joined_ok == 1000, "1000 threads created and joined");
	printf("cthreads: %d threads created and joined\n", joined_ok);

	/* exec from a second thread: the exec'd program keeps the pid */
	self_path = argv[0];
	pid_t x = fork();
	if (x == 0) {
		pthread_t a, b2;
		exec_expect = getpid();
		pthread_create(&a, NULL, blocked_forever, NULL);
		pthread_create(&b2, NULL, exec_thread, NULL);
		for (;;)
			sleep(100);
	}
	int xst = 0;
	waitpid(x, &xst, 0);
	check(WIFEXITED(xst) && WEXITSTATUS(xst) == 7,
	      "exec from a second thread keeps the pid and ends the other threads");
	printf("cthreads: exec from a second thread: status %d\n", WIFEXITED(xst) ? WEXITSTATUS(xst) : -1);

	/* exit() in one thread ends the process, the others with it */
	pid_t g = fork();
	if (g == 0) {
		pthread_t a, b2;
		pthread_create(&a, NULL, blocked_forever, NULL);
		pthread_create(&b2, NULL, exiting_thread, NULL);
		for (;;)
			sleep(100);
	}
	int gst = 0;
	waitpid(g, &gst, 0);
	check(WIFEXITED(gst) && WEXITSTATUS(gst) == 7, "exit in a thread ends every thread with its status");
	printf("cthreads: exit in a thread of three: status %d\n", WIFEXITED(gst) ? WEXITSTATUS(gst) : -1);

	/* a fatal signal to one thread ends the process */
	pid_t k = fork();
	if (k == 0) {
		pthread_t a;
		pthread_create(&a, NULL, blocked_forever, NULL);
		for (;;)
			sleep(100);
	}
	usleep(20000);
	kill(k, SIGTERM);
	int kst = 0;
	waitpid(k, &kst, 0);
	check(WIFSIGNALED(kst) && WTERMSIG(kst) == SIGTERM, "SIGTERM ends a process of two threads");
	printf("cthreads: SIGTERM to a process of two threads: signal %d\n", WIFSIGNALED(kst) ? WTERMSIG(kst) : -1);

	printf("cthreads %s (%s): %s, %d cpus, %d failures\n", argc > 0 ? argv[0] : "?",
#ifdef __GLIBC__
	       "glibc",
#else
	       "musl",
#endif
	       failures ? "FAILED" : "ok", cpus, failures);
	return failures ? 1 : 0;
}

/* The reader of the munmap test: pinned to `arg`'s CPU, it reads the page
 * until told it is gone, then once more: that read must fault. */
void *reader_thread(void *arg)
{
	pin((int)(intptr_t)arg);
	long n = 0;
	atomic_store(&reader_started, 1);
	while (!atomic_load(&reader_go))
		n += watched[0];
	/* munmap has returned: this read must fault, ending the process. */
	n += watched[0];
	atomic_store(&reads_after_unmap, n);
	return NULL;
}
