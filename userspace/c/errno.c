/* errno: hostile arguments to the calls a fuzzing program tried, one line
 * per case: `errno: CASE RESULT`. RESULT is the return value (or a word for
 * values that differ between runs, such as addresses), `-ENAME` for an
 * error, or what wait4 saw of a child (`exit N`, `signal N`, `stopped N`,
 * `continued`, `running`). The same binary runs on Folium and on Linux in
 * the same QEMU; xtask compares the lines with the answers recorded from
 * Linux 6.12 (userspace/c/errno-linux.txt).
 *
 * Raw syscalls throughout, so libc's wrappers change nothing. Output goes
 * straight to write(2): children print too, and a stdio buffer would be
 * copied by fork. As pid 1 (its use here) it powers the machine off at the
 * end, as Linux's init must. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif

/* An address in the kernel half on both architectures. */
#define KPTR 0xffff880000001000UL

static int cases;

static void out(const char *fmt, ...)
{
	char b[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b, sizeof b - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof b - 2)
		n = sizeof b - 2;
	b[n++] = '\n';
	write(1, b, n);
}

static const char *ename(long e)
{
	static const char *names[] = {
		[EPERM] = "EPERM",	 [ENOENT] = "ENOENT",	[ESRCH] = "ESRCH",
		[EINTR] = "EINTR",	 [EIO] = "EIO",		[E2BIG] = "E2BIG",
		[ENOEXEC] = "ENOEXEC",	 [EBADF] = "EBADF",	[ECHILD] = "ECHILD",
		[EAGAIN] = "EAGAIN",	 [ENOMEM] = "ENOMEM",	[EACCES] = "EACCES",
		[EFAULT] = "EFAULT",	 [EBUSY] = "EBUSY",	[EEXIST] = "EEXIST",
		[ENODEV] = "ENODEV",	 [ENOTDIR] = "ENOTDIR", [EISDIR] = "EISDIR",
		[EINVAL] = "EINVAL",	 [ENOTTY] = "ENOTTY",	[ESPIPE] = "ESPIPE",
		[EROFS] = "EROFS",	 [ERANGE] = "ERANGE",	[ENAMETOOLONG] = "ENAMETOOLONG",
		[ENOSYS] = "ENOSYS",	 [EOVERFLOW] = "EOVERFLOW",
		[EOPNOTSUPP] = "EOPNOTSUPP",
	};
	if (e > 0 && e < (long)(sizeof names / sizeof names[0]) && names[e])
		return names[e];
	return NULL;
}

/* A raw syscall's return: the value, or -ENAME. */
static void res(const char *name, long r)
{
	cases++;
	if (r < 0 && r > -4096) {
		const char *n = ename(-r);
		if (n)
			out("errno: %s -%s", name, n);
		else
			out("errno: %s -%ld", name, -r);
	} else {
		out("errno: %s %ld", name, r);
	}
}

/* A result reduced to a word (for addresses and such). */
static void word(const char *name, long r, const char *ok)
{
	if (r < 0 && r > -4096)
		res(name, r);
	else {
		cases++;
		out("errno: %s %s", name, ok);
	}
}

static long sc(long n, long a, long b, long c, long d, long e, long f)
{
	long r = syscall(n, a, b, c, d, e, f);
	return r == -1 ? -errno : r;
}

static void status(const char *name, int st)
{
	cases++;
	if (WIFEXITED(st))
		out("errno: %s exit %d", name, WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		out("errno: %s signal %d%s", name, WTERMSIG(st), WCOREDUMP(st) ? " core" : "");
	else if (WIFSTOPPED(st))
		out("errno: %s stopped %d", name, WSTOPSIG(st));
	else if (WIFCONTINUED(st))
		out("errno: %s continued", name);
	else
		out("errno: %s status %#x", name, st);
}

static void sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };
	syscall(SYS_nanosleep, &t, NULL);
}

/* Waits for `pid` with `opts | WNOHANG` for up to `ms` milliseconds:
 * the pid (status in *st), 0 if nothing came, or -errno. */
static long wait_for(pid_t pid, int *st, int opts, long ms)
{
	for (long waited = 0;; waited += 5) {
		long r = sc(SYS_wait4, pid, (long)st, opts | WNOHANG, 0, 0, 0);
		if (r != 0 || waited >= ms)
			return r;
		sleep_ms(5);
	}
}

/* Runs `fn` in a child and reports how the child ended (killed after
 * 5 s if it has not). */
static void in_child(const char *name, void (*fn)(void))
{
	pid_t c = fork();
	if (c == 0) {
		fn();
		_exit(0);
	}
	int st = 0;
	long r = wait_for(c, &st, 0, 5000);
	if (r == 0) {
		kill(c, SIGKILL);
		wait_for(c, &st, 0, 5000);
		cases++;
		out("errno: %s hung", name);
		return;
	}
	status(name, st);
}

static void *map(size_t len, int prot)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---- time ---- */

static void sleep_forever(void)
{
	struct timespec t = { INT64_MAX, 0 };
	long r = sc(SYS_nanosleep, (long)&t, 0, 0, 0, 0, 0);
	/* Returned at once: report how, as an exit status. */
	_exit(r == -EINVAL ? 22 : 1);
}

static void time_cases(void)
{
	struct timespec t = { 0, 1000000000 };
	res("nanosleep_nsec_1e9", sc(SYS_nanosleep, (long)&t, 0, 0, 0, 0, 0));
	struct timespec neg = { -1, 0 };
	res("nanosleep_negative", sc(SYS_nanosleep, (long)&neg, 0, 0, 0, 0, 0));
	res("nanosleep_kernel_ptr", sc(SYS_nanosleep, KPTR, 0, 0, 0, 0, 0));

	/* LONG_MAX seconds: the child sleeps until killed. */
	pid_t c = fork();
	if (c == 0)
		sleep_forever();
	int st = 0;
	long r = wait_for(c, &st, 0, 100);
	if (r == 0) {
		cases++;
		out("errno: nanosleep_long_max running");
		kill(c, SIGKILL);
		wait_for(c, &st, 0, 5000);
	}
	status("nanosleep_long_max_end", st);
}

/* ---- copies that run into an inaccessible page ---- */

static void copy_cases(void)
{
	char *p = map(2 * 4096, PROT_READ | PROT_WRITE);
	if (!p)
		return;
	mprotect(p + 4096, 4096, PROT_NONE);
	char *tail = p + 4096 - 100;
	int fd = sc(SYS_openat, AT_FDCWD, (long)"/proc/meminfo", O_RDONLY, 0, 0, 0);
	res("read_meminfo_open", fd < 0 ? fd : 3);
	if (fd >= 0) {
		res("read_into_prot_none_tail", sc(SYS_read, fd, (long)tail, 4096, 0, 0, 0));
		res("read_into_prot_none_only", sc(SYS_read, fd, (long)(p + 4096), 4096, 0, 0, 0));
		res("read_to_kernel_ptr", sc(SYS_read, fd, KPTR, 16, 0, 0, 0));
		close(fd);
	}
	memset(tail, 'x', 99);
	tail[99] = '\n';
	res("write_from_prot_none_tail", sc(SYS_write, 1, (long)tail, 4096, 0, 0, 0));
	res("write_from_kernel_ptr", sc(SYS_write, 1, KPTR, 16, 0, 0, 0));
	munmap(p, 2 * 4096);
}

/* ---- stop and continue ---- */

static void spin(void)
{
	for (;;)
		sleep_ms(10);
}

static void stop_cases(void)
{
	pid_t c = fork();
	if (c == 0)
		spin();
	int st = 0;
	res("kill_sigstop", sc(SYS_kill, c, SIGSTOP, 0, 0, 0, 0));
	long r = wait_for(c, &st, WUNTRACED, 1000);
	if (r > 0)
		status("wait_untraced_after_sigstop", st);
	else
		res("wait_untraced_after_sigstop", r);
	res("kill_sigcont", sc(SYS_kill, c, SIGCONT, 0, 0, 0, 0));
	r = wait_for(c, &st, WCONTINUED, 1000);
	if (r > 0)
		status("wait_continued_after_sigcont", st);
	else
		res("wait_continued_after_sigcont", r);
	/* Running again: no further report without a change. */
	res("wait_nohang_while_running", sc(SYS_wait4, c, (long)&st, WNOHANG | WUNTRACED, 0, 0, 0));
	kill(c, SIGKILL);
	wait_for(c, &st, 0, 5000);
	status("sigkill_after_continue", st);

	/* A stop reaches a process in a long sleep at once, and the sleep
	 * goes on after SIGCONT: the child reports stopped within a second
	 * though it sleeps for 5 s, and has not exited 100 ms after being
	 * continued. */
	c = fork();
	if (c == 0) {
		sleep_ms(5000);
		_exit(3);
	}
	sleep_ms(50);
	kill(c, SIGSTOP);
	r = wait_for(c, &st, WUNTRACED, 1000);
	if (r > 0)
		status("sigstop_during_long_sleep", st);
	else
		res("sigstop_during_long_sleep", r);
	kill(c, SIGCONT);
	r = wait_for(c, &st, 0, 100);
	word("long_sleep_goes_on_after_sigcont", r, r == 0 ? "sleeping" : "ended");
	kill(c, SIGKILL);
	wait_for(c, &st, 0, 5000);
}

/* ---- instructions ---- */

/* Syscall numbers are taken as 32-bit, as Linux does: each arch's
 * insn_cases ends with these, raw_nr being its own raw syscall. */
static long raw_nr(uint64_t nr);
static void syscall_nr_cases(void)
{
	long pid = getpid();
	word("syscall_nr_upper_bits_getpid", raw_nr((1UL << 32) | SYS_getpid),
	     raw_nr((1UL << 32) | SYS_getpid) == pid ? "getpid" : "other");
	res("syscall_nr_minus_one", raw_nr(~0UL));
	res("syscall_nr_huge", raw_nr(100000));
}

#if defined(__aarch64__)
static void read_cntvct(void)
{
	uint64_t a, b;
	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(a));
	__asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(b));
	_exit(b >= a ? 0 : 1);
}
static void read_cntfrq(void)
{
	uint64_t f;
	__asm__ volatile("mrs %0, cntfrq_el0" : "=r"(f));
	_exit(f != 0 ? 0 : 1);
}
/* Linux emulates EL0 reads of the ID registers: the child prints what
 * it read as `mrs_NAME_value`, reading the register spelled `enc` (a name,
 * or s3_0_cCRn_cCRm_op2 so the assembler needs no feature flags), or
 * dies of SIGILL where Linux does not emulate it. */
#define ID_READER_AS(fn, name, enc)                                         \
	static void fn(void)                                                \
	{                                                                   \
		uint64_t v;                                                 \
		__asm__ volatile("mrs %0, " #enc : "=r"(v));                \
		out("errno: mrs_" #name "_value %#lx", (unsigned long)v);   \
		_exit(0);                                                   \
	}
#define ID_READER(fn, reg) ID_READER_AS(fn, reg, reg)
/* MIDR_EL1 names the CPU model, which differs between boards (and from
 * the CPU Linux's answers were recorded on): print the implementer and
 * architecture fields only, the same on every Arm core QEMU models. */
static void read_midr(void)
{
	uint64_t v;
	__asm__ volatile("mrs %0, midr_el1" : "=r"(v));
	out("errno: mrs_midr_el1_value %#lx", (unsigned long)(v & 0xff0f0000));
	_exit(0);
}
ID_READER(read_mpidr, mpidr_el1)
ID_READER(read_pfr0, id_aa64pfr0_el1)
ID_READER(read_isar0, id_aa64isar0_el1)
ID_READER(read_mmfr0, id_aa64mmfr0_el1)
ID_READER_AS(read_pfr1, id_aa64pfr1_el1, s3_0_c0_c4_1)
ID_READER_AS(read_zfr0, id_aa64zfr0_el1, s3_0_c0_c4_4)
ID_READER_AS(read_aa64_reserved, id_aa64_c4_3_reserved, s3_0_c0_c4_3)
ID_READER_AS(read_dfr0, id_aa64dfr0_el1, s3_0_c0_c5_0)
ID_READER_AS(read_isar1, id_aa64isar1_el1, s3_0_c0_c6_1)
ID_READER_AS(read_isar2, id_aa64isar2_el1, s3_0_c0_c6_2)
ID_READER_AS(read_mmfr1, id_aa64mmfr1_el1, s3_0_c0_c7_1)
ID_READER_AS(read_mmfr2, id_aa64mmfr2_el1, s3_0_c0_c7_2)
ID_READER_AS(read_isar5_32, id_isar5_el1, s3_0_c0_c2_5)
ID_READER_AS(read_mvfr1_32, mvfr1_el1, s3_0_c0_c3_1)
ID_READER_AS(read_pfr0_32, id_pfr0_el1, s3_0_c0_c1_0)
ID_READER_AS(read_midr_alias, id_c0_op2_1, s3_0_c0_c0_1)
static void unaligned_ldxr(void)
{
	static uint64_t words[2];
	uint64_t v, a = (uint64_t)words + 1;
	__asm__ volatile("ldxr %0, [%1]" : "=r"(v) : "r"(a) : "memory");
	_exit(0);
}
static void unaligned_ldr(void)
{
	static uint64_t words[2];
	volatile uint64_t *q = (volatile uint64_t *)((char *)words + 1);
	_exit((int)(*q & 1));
}
static void undefined_insn(void)
{
	__asm__ volatile(".inst 0x00000000");
	_exit(0);
}

static long raw_nr(uint64_t nr)
{
	register uint64_t x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = 0;
	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x8) : "memory");
	return x0;
}

static void insn_cases(void)
{
	in_child("read_cntvct_el0", read_cntvct);
	in_child("read_cntfrq_el0", read_cntfrq);
	in_child("mrs_midr_el1", read_midr);
	in_child("mrs_mpidr_el1", read_mpidr);
	in_child("mrs_id_aa64pfr0_el1", read_pfr0);
	in_child("mrs_id_aa64isar0_el1", read_isar0);
	in_child("mrs_id_aa64mmfr0_el1", read_mmfr0);
	in_child("mrs_id_aa64pfr1_el1", read_pfr1);
	in_child("mrs_id_aa64zfr0_el1", read_zfr0);
	in_child("mrs_id_aa64_c4_3_reserved", read_aa64_reserved);
	in_child("mrs_id_aa64dfr0_el1", read_dfr0);
	in_child("mrs_id_aa64isar1_el1", read_isar1);
	in_child("mrs_id_aa64isar2_el1", read_isar2);
	in_child("mrs_id_aa64mmfr1_el1", read_mmfr1);
	in_child("mrs_id_aa64mmfr2_el1", read_mmfr2);
	in_child("mrs_id_isar5_el1", read_isar5_32);
	in_child("mrs_mvfr1_el1", read_mvfr1_32);
	in_child("mrs_id_pfr0_el1", read_pfr0_32);
	in_child("mrs_id_c0_op2_1", read_midr_alias);
	/* HWCAP_CPUID: the kernel says the reads above are emulated. */
	res("auxv_hwcap_cpuid", (long)((getauxval(AT_HWCAP) >> 11) & 1));
	in_child("ldxr_unaligned", unaligned_ldxr);
	in_child("ldr_unaligned", unaligned_ldr);
	in_child("udf", undefined_insn);
	syscall_nr_cases();
}
#elif defined(__x86_64__)
static void sse_div_zero(void)
{
	unsigned m;
	__asm__ volatile("stmxcsr %0" : "=m"(m));
	m &= ~(1u << 9); /* unmask divide-by-zero */
	__asm__ volatile("ldmxcsr %0" : : "m"(m));
	volatile float a = 1.0f, b = 0.0f;
	volatile float c = a / b;
	(void)c;
	_exit(0);
}
static void x87_div_zero(void)
{
	unsigned short cw;
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	cw &= ~(1u << 2); /* unmask zero-divide */
	__asm__ volatile("fldcw %0" : : "m"(cw));
	volatile long double a = 1.0L, b = 0.0L;
	volatile long double c = a / b;
	__asm__ volatile("fwait");
	(void)c;
	_exit(0);
}
static void int_div_zero(void)
{
	volatile int a = 1, b = 0;
	_exit(a / b);
}
static void undefined_insn(void)
{
	__asm__ volatile("ud2");
	_exit(0);
}
static void rdtsc_child(void)
{
	unsigned lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	_exit(0);
}

static long raw_nr(uint64_t nr)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(nr) : "rcx", "r11", "memory");
	return r;
}

static void insn_cases(void)
{
	in_child("sse_divide_by_zero_unmasked", sse_div_zero);
	in_child("x87_divide_by_zero_unmasked", x87_div_zero);
	in_child("int_divide_by_zero", int_div_zero);
	in_child("ud2", undefined_insn);
	in_child("rdtsc", rdtsc_child);
	syscall_nr_cases();
}
#endif

/* ---- execve ---- */

static const char *self;

static void exec_cases(void)
{
	char *bad_argv = (char *)1;
	res("execve_missing_path_bad_argv",
	    sc(SYS_execve, (long)"/no/such/program", (long)bad_argv, 0, 0, 0, 0));
	res("execve_kernel_path", sc(SYS_execve, KPTR, 0, 0, 0, 0, 0));
	res("execve_self_bad_argv", sc(SYS_execve, (long)self, (long)bad_argv, 0, 0, 0, 0));
	char *kargv[] = { (char *)KPTR, NULL };
	res("execve_self_kernel_argv_string", sc(SYS_execve, (long)self, (long)kargv, 0, 0, 0, 0));

	/* Many arguments, one huge string, and too many bytes in all. */
	static const struct {
		const char *name;
		long count, len;
	} runs[] = {
		/* count: argv[0..2] (self, exec-child, count), then strings */
		{ "execve_5000_args", 5000, 1 },
		{ "execve_arg_of_65535_bytes", 4, 65535 },
		{ "execve_arg_of_131071_bytes", 4, 131071 },
		{ "execve_arg_of_131072_bytes", 4, 131072 },
		{ "execve_15_args_of_128k", 18, 131071 },
		{ "execve_17_args_of_128k", 20, 131071 },
	};
	for (unsigned k = 0; k < sizeof runs / sizeof runs[0]; k++) {
		long n = runs[k].count;
		char **argv = calloc(n + 1, sizeof *argv);
		char *s = malloc(runs[k].len + 1);
		char count[24];
		if (!argv || !s)
			return;
		memset(s, 'a', runs[k].len);
		s[runs[k].len] = 0;
		snprintf(count, sizeof count, "%ld", n);
		argv[0] = (char *)self;
		argv[1] = "exec-child";
		argv[2] = count;
		for (long i = 3; i < n; i++)
			argv[i] = s;
		pid_t c = fork();
		if (c == 0) {
			long r = sc(SYS_execve, (long)self, (long)argv, 0, 0, 0, 0);
			_exit(r == -E2BIG ? 7 : r == -EFAULT ? 14 : r == -ENOMEM ? 12 : 99);
		}
		int st = 0;
		wait_for(c, &st, 0, 20000);
		status(runs[k].name, st);
		free(argv);
		free(s);
	}
}

/* ---- paths and pointers ---- */

static void path_cases(void)
{
	char buf[64];
	res("readlinkat_kernel_path", sc(SYS_readlinkat, AT_FDCWD, KPTR, (long)buf, 64, 0, 0));
	res("readlinkat_missing", sc(SYS_readlinkat, AT_FDCWD, (long)"/no/such", (long)buf, 64, 0, 0));
	res("readlinkat_zero_size", sc(SYS_readlinkat, AT_FDCWD, (long)"/no/such", (long)buf, 0, 0, 0));
	res("readlinkat_not_a_link",
	    sc(SYS_readlinkat, AT_FDCWD, (long)"/proc/meminfo", (long)buf, 64, 0, 0));
	res("openat_kernel_path", sc(SYS_openat, AT_FDCWD, KPTR, O_RDONLY, 0, 0, 0));
	res("ioctl_bad_fd", sc(SYS_ioctl, 99, 0x5401, KPTR, 0, 0, 0));
	int fd = sc(SYS_openat, AT_FDCWD, (long)"/proc/meminfo", O_RDONLY, 0, 0, 0);
	res("ioctl_file_tcgets_kernel_ptr", sc(SYS_ioctl, fd, 0x5401 /* TCGETS */, KPTR, 0, 0, 0));
	res("ioctl_file_fionread_kernel_ptr", sc(SYS_ioctl, fd, 0x541b /* FIONREAD */, KPTR, 0, 0, 0));
	int n = -1;
	res("ioctl_file_fionread", sc(SYS_ioctl, fd, 0x541b, (long)&n, 0, 0, 0));
	close(fd);

	res("faccessat_read", sc(SYS_faccessat, AT_FDCWD, (long)"/proc/meminfo", R_OK, 0, 0, 0));
	res("faccessat_write_as_root",
	    sc(SYS_faccessat, AT_FDCWD, (long)"/proc/meminfo", W_OK, 0, 0, 0));
	res("faccessat_exec", sc(SYS_faccessat, AT_FDCWD, (long)"/proc/meminfo", X_OK, 0, 0, 0));
	res("faccessat_missing", sc(SYS_faccessat, AT_FDCWD, (long)"/no/such", F_OK, 0, 0, 0));
	res("faccessat_kernel_path", sc(SYS_faccessat, AT_FDCWD, KPTR, F_OK, 0, 0, 0));
	res("faccessat_bad_mode", sc(SYS_faccessat, AT_FDCWD, (long)"/proc/meminfo", 8, 0, 0, 0));
	res("faccessat2_read", sc(SYS_faccessat2, AT_FDCWD, (long)"/proc/meminfo", R_OK, 0, 0, 0));
	res("faccessat2_bad_flags",
	    sc(SYS_faccessat2, AT_FDCWD, (long)"/proc/meminfo", R_OK, 1, 0, 0));
	res("faccessat2_eaccess",
	    sc(SYS_faccessat2, AT_FDCWD, (long)"/proc/meminfo", R_OK, 0x200 /* AT_EACCESS */, 0,
	       0));
	res("faccessat_relative_bad_dirfd", sc(SYS_faccessat, 99, (long)"meminfo", R_OK, 0, 0, 0));
}

/* ---- memory ---- */

#if defined(__x86_64__)
#define USER_TOP 0x800000000000UL
#else
#define USER_TOP 0x1000000000000UL
#endif

static void mem_cases(void)
{
	const long rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;
	long r;

	res("mmap_anon_offset_1", sc(SYS_mmap, 0, 4096, rw, pa, -1, 1));
	r = sc(SYS_mmap, 0, 4096, rw, pa, -1, 4096);
	word("mmap_anon_offset_4096", r, "addr");
	if (r > 0)
		munmap((void *)r, 4096);
	res("mmap_len_0", sc(SYS_mmap, 0, 0, rw, pa, -1, 0));
	res("mmap_len_huge", sc(SYS_mmap, 0, -4096L, rw, pa, -1, 0));

	r = sc(SYS_mmap, USER_TOP - 4096, 4096, rw, pa | MAP_FIXED, -1, 0);
	word("mmap_fixed_last_user_page", r, "addr");
	if (r > 0)
		munmap((void *)r, 4096);
	res("mmap_fixed_at_user_top", sc(SYS_mmap, USER_TOP, 4096, rw, pa | MAP_FIXED, -1, 0));
	res("mmap_fixed_across_user_top",
	    sc(SYS_mmap, USER_TOP - 4096, 8192, rw, pa | MAP_FIXED, -1, 0));
	res("mmap_fixed_at_zero", sc(SYS_mmap, 0, 4096, rw, pa | MAP_FIXED, -1, 0));
	r = sc(SYS_mmap, 0x1000, 4096, rw, pa | MAP_FIXED, -1, 0);
	word("mmap_fixed_at_4k", r, "addr");
	if (r > 0)
		munmap((void *)r, 4096);
	r = sc(SYS_mmap, 0xf000, 4096, rw, pa | MAP_FIXED, -1, 0);
	word("mmap_fixed_at_60k", r, "addr");
	if (r > 0)
		munmap((void *)r, 4096);
	r = sc(SYS_mmap, 0x10000, 4096, rw, pa | MAP_FIXED, -1, 0);
	word("mmap_fixed_at_64k", r, "addr");
	if (r > 0)
		munmap((void *)r, 4096);
	r = sc(SYS_mmap, 0x1000, 4096, rw, pa, -1, 0);
	word("mmap_hint_at_4k", r, r == 0x1000 ? "at-hint" : "elsewhere");
	if (r > 0)
		munmap((void *)r, 4096);

	/* Overcommit: 64 GiB writable is more than RAM + swap. */
	r = sc(SYS_mmap, 0, 64L << 30, rw, pa, -1, 0);
	word("mmap_64g_writable", r, "addr");
	if (r > 0)
		munmap((void *)r, 64L << 30);
	r = sc(SYS_mmap, 0, 64L << 30, rw, pa | MAP_NORESERVE, -1, 0);
	word("mmap_64g_noreserve", r, "addr");
	if (r > 0)
		munmap((void *)r, 64L << 30);
	r = sc(SYS_mmap, 0, 64L << 30, PROT_READ, pa, -1, 0);
	word("mmap_64g_read_only", r, "addr");
	if (r > 0)
		munmap((void *)r, 64L << 30);

	long cur = sc(SYS_brk, 0, 0, 0, 0, 0, 0);
	r = sc(SYS_brk, cur + (32L << 40), 0, 0, 0, 0, 0);
	word("brk_grow_32t", r, r == cur ? "unchanged" : "moved");
	if (r != cur)
		sc(SYS_brk, cur, 0, 0, 0, 0, 0);

	char *p = map(4 * 4096, rw);
	if (!p)
		return;
	res("mprotect_prot_sem", sc(SYS_mprotect, (long)p, 4096, PROT_READ | 8, 0, 0, 0));
	res("mprotect_prot_bad_bit", sc(SYS_mprotect, (long)p, 4096, PROT_READ | 0x100, 0, 0, 0));
	mprotect(p, 4 * 4096, rw);

	static const struct {
		const char *name;
		int advice;
	} advice[] = {
		{ "madvise_dontfork", MADV_DONTFORK },
		{ "madvise_dofork", MADV_DOFORK },
		{ "madvise_mergeable", MADV_MERGEABLE },
		{ "madvise_unmergeable", MADV_UNMERGEABLE },
		{ "madvise_dontdump", MADV_DONTDUMP },
		{ "madvise_dodump", MADV_DODUMP },
		{ "madvise_wipeonfork", MADV_WIPEONFORK },
		{ "madvise_keeponfork", MADV_KEEPONFORK },
		{ "madvise_cold", MADV_COLD },
		{ "madvise_pageout", MADV_PAGEOUT },
		{ "madvise_remove", MADV_REMOVE },
		{ "madvise_unknown_99", 99 },
	};
	for (unsigned k = 0; k < sizeof advice / sizeof advice[0]; k++)
		res(advice[k].name, sc(SYS_madvise, (long)p, 4096, advice[k].advice, 0, 0, 0));

	/* WIPEONFORK: the child sees zeros, the parent keeps its data. */
	memset(p, 0x5a, 4 * 4096);
	sc(SYS_madvise, (long)p, 4096, MADV_WIPEONFORK, 0, 0, 0);
	pid_t c = fork();
	if (c == 0)
		_exit(p[0] == 0 && p[4095] == 0 && p[4096] == 0x5a ? 0 : 1);
	int st = 0;
	wait_for(c, &st, 0, 5000);
	status("wipeonfork_child_sees_zeros", st);
	res("wipeonfork_parent_keeps", p[0] == 0x5a && p[4095] == 0x5a);
	sc(SYS_madvise, (long)p, 4096, MADV_KEEPONFORK, 0, 0, 0);

	/* DONTFORK: the child has no mapping there. */
	sc(SYS_madvise, (long)(p + 4096), 4096, MADV_DONTFORK, 0, 0, 0);
	c = fork();
	if (c == 0)
		_exit(p[4096] == 0x5a ? 0 : 1);
	wait_for(c, &st, 0, 5000);
	status("dontfork_child_touches", st);
	sc(SYS_madvise, (long)(p + 4096), 4096, MADV_DOFORK, 0, 0, 0);
	munmap(p, 4 * 4096);

	/* mremap of private anonymous memory. */
	p = map(8 * 4096, rw);
	if (!p)
		return;
	memset(p, 0x33, 8 * 4096);
	munmap(p + 4 * 4096, 4 * 4096);
	r = sc(SYS_mremap, (long)p, 4 * 4096, 2 * 4096, 0, 0, 0);
	word("mremap_shrink", r, r == (long)p ? "same" : "moved");
	r = sc(SYS_mremap, (long)p, 2 * 4096, 6 * 4096, 0, 0, 0);
	word("mremap_grow_in_place", r, r == (long)p ? "same" : "moved");
	res("mremap_grown_keeps_data", r == (long)p && p[4095] == 0x33 && p[5 * 4096] == 0);
	res("mremap_unaligned", sc(SYS_mremap, (long)p + 1, 4096, 4096, 0, 0, 0));
	res("mremap_zero_new_len", sc(SYS_mremap, (long)p, 4096, 0, 0, 0, 0));
	res("mremap_bad_flags", sc(SYS_mremap, (long)p, 4096, 4096, 0x80, 0, 0));
	res("mremap_fixed_without_maymove",
	    sc(SYS_mremap, (long)p, 4096, 4096, 2 /* MREMAP_FIXED */, 0x200000000L, 0));
	/* Something in the way: growing needs MAYMOVE. */
	char *q = (char *)sc(SYS_mmap, (long)p + 6 * 4096, 4096, rw, pa | MAP_FIXED, -1, 0);
	res("mremap_grow_blocked", sc(SYS_mremap, (long)p, 6 * 4096, 8 * 4096, 0, 0, 0));
	r = sc(SYS_mremap, (long)p, 6 * 4096, 8 * 4096, 1 /* MREMAP_MAYMOVE */, 0, 0);
	word("mremap_maymove", r, r == (long)p ? "same" : "moved");
	if (r > 0 && r != (long)p) {
		char *m = (char *)r;
		res("mremap_moved_keeps_data", m[0] == 0x33 && m[4095] == 0x33);
		p = m;
	}
	res("mremap_unmapped", sc(SYS_mremap, 0x10000, 4096, 8192, 1, 0, 0));

	/* MREMAP_FIXED: to a chosen address, replacing what was there. */
	char *t = map(4 * 4096, rw);
	if (t) {
		memset(t, 0x44, 4 * 4096);
		p[0] = 0x33;
		r = sc(SYS_mremap, (long)p, 4096, 4096, 3 /* MAYMOVE | FIXED */, (long)(t + 4096), 0);
		word("mremap_fixed", r, r == (long)(t + 4096) ? "at-target" : "elsewhere");
		res("mremap_fixed_keeps_data", r == (long)(t + 4096) && t[4096] == 0x33 && t[0] == 0x44);
		res("mremap_fixed_overlap",
		    sc(SYS_mremap, (long)t, 2 * 4096, 2 * 4096, 3, (long)(t + 4096), 0));
		res("mremap_fixed_unaligned_target",
		    sc(SYS_mremap, (long)t, 4096, 4096, 3, (long)t + 12, 0));
		r = sc(SYS_mremap, (long)(t + 2 * 4096), 4096, 4096, 1 | 4 /* DONTUNMAP */, 0, 0);
		word("mremap_dontunmap", r, r != (long)(t + 2 * 4096) ? "moved" : "same");
		res("mremap_dontunmap_old_reads_zero", r > 0 && t[2 * 4096] == 0 && t[3 * 4096] == 0x44);
		res("mremap_dontunmap_new_keeps_data", r > 0 && ((char *)r)[0] == 0x44);
		if (r > 0)
			munmap((void *)r, 4096);
		munmap(t, 4 * 4096);
	}
	munmap(p, 8 * 4096);
	munmap(q, 4096);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "exec-child") == 0)
		_exit(atol(argv[2]) == argc ? 42 : 43);
	self = argv[0];
	out("errno: start");
	/* Linux's init finds /proc empty until it mounts it; Folium's is
	 * always there. */
	long probe = sc(SYS_openat, AT_FDCWD, (long)"/proc/meminfo", O_RDONLY, 0, 0, 0);
	if (probe == -ENOENT)
		syscall(SYS_mount, "proc", "/proc", "proc", 0, NULL);
	else if (probe >= 0)
		close(probe);
	time_cases();
	copy_cases();
	stop_cases();
	insn_cases();
	exec_cases();
	path_cases();
	mem_cases();
	out("errno: done %d cases", cases);
	if (getpid() == 1) {
		syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc /* POWER_OFF */, 0);
	}
	return 0;
}
