//! Several CPUs: per-CPU data, and bringing the secondary CPUs up.
//!
//! Every CPU has a [`Cpu`] record, found through its index ([`id`]),
//! which the architecture keeps in a per-CPU register (`TPIDR_EL1`, or
//! the GS-based area on x86). CPU 0 is the one the firmware started; the
//! others are listed by the firmware (the DTB's `/cpus`, ACPI's MADT, or
//! the Pi's fixed four cores) and released one by one by
//! [`start_secondaries`]: PSCI `CPU_ON` on `virt`, the spin table on the
//! Pis, INIT-SIPI-SIPI on q35. Each comes up on a kernel stack of its own
//! ([`secondary_main`]), sets up its exception state, its interrupt
//! controller interface and its timer, says it is online and becomes that
//! CPU's idle thread. A CPU that does not answer within
//! [`START_TIMEOUT_NS`] is reported, and the others still start.
//!
//! Once the self-tests are done, every CPU runs processes (`crate::proc`):
//! each takes its own timer interrupts (counted in [`Cpu::ticks`]) and
//! inter-processor interrupts ([`send_ipi`]: an SGI on the GICs, a
//! mailbox on the Pi 3's local controller, a fixed LAPIC vector on x86),
//! which wake an idle CPU, run cross-CPU calls ([`call_on`]) and bring a
//! CPU to a stop for another ([`stop_others`]).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use alloc::string::String;
use alloc::vec::Vec;

pub use folium_boot::cpus::MAX_CPUS;
use folium_boot::cpus::{CpuDesc, CpuList};

use crate::arch;

/// How long the boot CPU waits for a released CPU to say it is online.
pub const START_TIMEOUT_NS: u64 = 1_000_000_000;

const _: () = assert!(MAX_CPUS.is_power_of_two());

/// One CPU's record.
pub struct Cpu {
    /// Firmware's id: the MPIDR affinity (arm64) or local APIC id (x86).
    hw_id: AtomicU64,
    /// Set by the CPU itself once it runs its idle loop (CPU 0: at boot).
    online: AtomicBool,
    /// Timer interrupts this CPU took.
    ticks: AtomicU64,
    /// [`crate::sync::IrqMutex`]es this CPU holds now.
    held: AtomicUsize,
    /// Inter-processor interrupts this CPU took.
    ipis: AtomicU64,
}

impl Cpu {
    const fn new() -> Self {
        Cpu {
            hw_id: AtomicU64::new(0),
            online: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            ipis: AtomicU64::new(0),
        }
    }

    /// Inter-processor interrupts taken by this CPU.
    pub fn ipis(&self) -> u64 {
        self.ipis.load(Ordering::Relaxed)
    }

    /// Timer interrupts taken by this CPU.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Its firmware id.
    pub fn hw_id(&self) -> u64 {
        self.hw_id.load(Ordering::Relaxed)
    }

    /// True once it is up.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }
}

static CPUS: [Cpu; MAX_CPUS] = [const { Cpu::new() }; MAX_CPUS];

/// Bit i: CPU index i's mailbox slot was handed to a released CPU (which
/// may still come up late): never reused.
static RELEASED: AtomicUsize = AtomicUsize::new(1);

/// The user-half root a CPU installs when it runs no process (see
/// `memory::uspace::idle_root`), for the secondaries.
static IDLE_ROOT: AtomicU64 = AtomicU64::new(0);

/// This CPU's index (0 for the boot CPU).
#[inline]
pub fn id() -> usize {
    arch::cpu_index() & (MAX_CPUS - 1)
}

/// This CPU's record.
#[inline]
pub fn this() -> &'static Cpu {
    &CPUS[id()]
}

/// The index of the online CPU whose firmware id is `hw_id`.
pub fn index_of(hw_id: u64) -> Option<usize> {
    online().find(|&i| CPUS[i].hw_id() == hw_id)
}

/// The indices of the CPUs that are online.
pub fn online() -> impl Iterator<Item = usize> {
    (0..MAX_CPUS).filter(|&i| CPUS[i].is_online())
}

/// How many CPUs are online.
pub fn online_count() -> usize {
    online().count()
}

/// Records that this CPU took an [`crate::sync::IrqMutex`].
#[inline]
pub fn lock_taken() {
    this().held.fetch_add(1, Ordering::Relaxed);
}

/// Records that this CPU released an [`crate::sync::IrqMutex`].
#[inline]
pub fn lock_released() {
    this().held.fetch_sub(1, Ordering::Relaxed);
}

/// [`crate::sync::IrqMutex`]es this CPU holds.
pub fn held() -> usize {
    this().held.load(Ordering::Relaxed)
}

/// Counts a timer interrupt on this CPU; true on the CPU whose ticks are
/// the scheduler's clock (CPU 0).
#[inline]
pub fn tick() -> bool {
    this().ticks.fetch_add(1, Ordering::Relaxed);
    // A call whose IPI was lost still runs, at the latest here.
    run_posted_calls();
    id() == 0
}

/// Counts an inter-processor interrupt on this CPU and runs the calls
/// posted to it (called by the architecture's interrupt handler,
/// interrupts masked).
pub fn ipi_received() {
    this().ipis.fetch_add(1, Ordering::Relaxed);
    run_posted_calls();
}

/// One CPU's call to another: `CALLS[target][sender]`. A sender has at
/// most one call to a target outstanding (it waits for it), so a slot has
/// one writer and one reader and needs no lock.
struct CallSlot {
    func: AtomicUsize,
    arg: AtomicU64,
    /// Calls posted (the sender bumps it after writing `func` and `arg`).
    posted: AtomicU64,
    /// Calls the target has started (so one that waits inside a call does
    /// not start the same one again).
    taken: AtomicU64,
    /// Calls run (the target sets it to `posted` once `func` returned).
    done: AtomicU64,
}

static CALLS: [[CallSlot; MAX_CPUS]; MAX_CPUS] = [const {
    [const {
        CallSlot {
            func: AtomicUsize::new(0),
            arg: AtomicU64::new(0),
            posted: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            done: AtomicU64::new(0),
        }
    }; MAX_CPUS]
}; MAX_CPUS];

/// Runs every call posted to this CPU and not yet run (from its IPI
/// handler, and by a CPU that waits with interrupts masked: for a call of
/// its own, or for a lock).
pub fn run_posted_calls() {
    let me = id();
    if IN_CALL[me].swap(true, Ordering::Relaxed) {
        return; // already running one: calls are leaves
    }
    for slot in &CALLS[me] {
        let posted = slot.posted.load(Ordering::Acquire);
        if slot.taken.load(Ordering::Relaxed) == posted {
            continue;
        }
        slot.taken.store(posted, Ordering::Relaxed);
        let f = slot.func.load(Ordering::Relaxed);
        // SAFETY: `call_on` stored a `fn(u64)` here before bumping
        // `posted` (Release), which the Acquire load above pairs with.
        let f: fn(u64) = unsafe { core::mem::transmute::<usize, fn(u64)>(f) };
        f(slot.arg.load(Ordering::Relaxed));
        slot.done.store(posted, Ordering::Release);
    }
    IN_CALL[me].store(false, Ordering::Relaxed);
}

/// Set while a CPU runs a posted call.
static IN_CALL: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Runs `f(arg)` on every online CPU whose bit is set in `targets` (this
/// one included, inline) and returns once all have run it (Linux's
/// `smp_call_function_many` with `wait`). Other CPUs run it in their IPI
/// handler, with interrupts masked: `f` must be a leaf: short, taking no
/// lock, making no cross-call of its own (checked: a sender has one call
/// outstanding per target, which a nested call would overwrite).
///
/// While it waits, this CPU runs the calls posted to it, with interrupts
/// still masked: two CPUs waiting on each other's calls (or one that waits
/// while holding a spin lock, which masks interrupts) both make progress,
/// so a cross-call never deadlocks against a CPU that waits with its
/// interrupts masked.
pub fn call_on(targets: usize, f: fn(u64), arg: u64) {
    let me = id();
    assert!(
        !IN_CALL[me].load(Ordering::Relaxed),
        "a cross-call made from inside one"
    );
    let mut waiting = 0usize;
    for t in online().filter(|&t| t != me && targets & 1 << t != 0) {
        let slot = &CALLS[t][me];
        slot.func.store(f as usize, Ordering::Relaxed);
        slot.arg.store(arg, Ordering::Relaxed);
        slot.posted.fetch_add(1, Ordering::Release);
        // Every online CPU enabled its IPI before it went online; were the
        // IPI lost, the target still runs the call at its next IPI or
        // timer tick.
        let _ = send_ipi(t);
        waiting |= 1 << t;
    }
    if targets & 1 << me != 0 {
        // A call like the others: a leaf (a nested `call_on` is refused).
        IN_CALL[me].store(true, Ordering::Relaxed);
        f(arg);
        IN_CALL[me].store(false, Ordering::Relaxed);
    }
    while waiting != 0 {
        run_posted_calls();
        for (t, row) in CALLS.iter().enumerate() {
            let slot = &row[me];
            if waiting & 1 << t != 0
                && slot.done.load(Ordering::Acquire) == slot.posted.load(Ordering::Relaxed)
            {
                waiting &= !(1 << t);
            }
        }
        core::hint::spin_loop();
    }
}

/// Work handed to an idle secondary CPU, run by its idle thread (not in
/// an interrupt handler): one job at a time per CPU.
static JOBS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static JOB_ARGS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// A job slot being filled (no function lives at address 1).
const JOB_CLAIMED: usize = 1;
/// Jobs each CPU has finished.
static JOBS_DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Hands `f(arg)` to the idle thread of secondary CPU `cpu`; false if it
/// is not online, is CPU 0 (whose idle thread runs processes), or still
/// has a job. [`jobs_done`] counts what it finished.
pub fn post_job(cpu: usize, f: fn(u64), arg: u64) -> bool {
    if cpu == 0 || !CPUS.get(cpu).is_some_and(Cpu::is_online) {
        return false;
    }
    // Claim the slot first, so a refused post never touches a pending
    // job's argument; publish the function last.
    if JOBS[cpu]
        .compare_exchange(0, JOB_CLAIMED, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    JOB_ARGS[cpu].store(arg, Ordering::Relaxed);
    JOBS[cpu].store(f as usize, Ordering::Release);
    let _ = send_ipi(cpu);
    true
}

/// Jobs CPU `cpu` has finished.
pub fn jobs_done(cpu: usize) -> u64 {
    JOBS_DONE.get(cpu).map_or(0, |d| d.load(Ordering::Acquire))
}

/// What [`run_test_on`]'s job returned.
static TEST_RESULT: crate::sync::IrqMutex<Option<crate::ktest::TestResult>> =
    crate::sync::IrqMutex::new(None);

/// Job: runs the self-test whose function is `arg`.
fn test_job(arg: u64) {
    // SAFETY: `run_test_on` passes a `fn() -> TestResult`.
    let f: fn() -> crate::ktest::TestResult =
        unsafe { core::mem::transmute::<usize, fn() -> crate::ktest::TestResult>(arg as usize) };
    let r = f();
    *TEST_RESULT.lock() = Some(r);
}

/// Runs self-test `f` on secondary CPU `cpu` (by its idle thread) and
/// returns its result (an error if the CPU is not there or takes more
/// than a second).
pub fn run_test_on(cpu: usize, f: fn() -> crate::ktest::TestResult) -> crate::ktest::TestResult {
    let done = jobs_done(cpu);
    *TEST_RESULT.lock() = None;
    if !post_job(cpu, test_job, f as usize as u64) {
        return Err(alloc::format!("CPU {cpu} takes no job"));
    }
    if !wait_jobs(cpu, done + 1) {
        return Err(alloc::format!("CPU {cpu} did not finish within a second"));
    }
    TEST_RESULT
        .lock()
        .take()
        .unwrap_or_else(|| Err("no result".into()))
}

/// True if a job was posted to this CPU and not run yet.
pub fn job_posted() -> bool {
    let f = JOBS[id()].load(Ordering::Acquire);
    f != 0 && f != JOB_CLAIMED
}

/// Runs this CPU's job, if one was posted.
fn run_job() {
    let me = id();
    let f = JOBS[me].load(Ordering::Acquire);
    if f == 0 || f == JOB_CLAIMED {
        return;
    }
    // SAFETY: `post_job` stored a `fn(u64)` (Release, paired with the
    // Acquire above).
    let f: fn(u64) = unsafe { core::mem::transmute::<usize, fn(u64)>(f) };
    f(JOB_ARGS[me].load(Ordering::Relaxed));
    JOBS[me].store(0, Ordering::Relaxed);
    JOBS_DONE[me].fetch_add(1, Ordering::Release);
}

/// The mask of every online CPU but this one.
pub fn others() -> usize {
    let me = id();
    online().filter(|&i| i != me).fold(0, |m, i| m | 1 << i)
}

/// Sends an inter-processor interrupt to online CPU `i`.
pub fn send_ipi(i: usize) -> Result<(), &'static str> {
    let c = CPUS
        .get(i)
        .filter(|c| c.is_online())
        .ok_or("no such CPU online")?;
    arch::smp::send_ipi(i, c.hw_id())
}

/// Marks the boot CPU online, with its firmware id. Runs once, first.
pub fn init_boot_cpu() {
    CPUS[0]
        .hw_id
        .store(arch::smp::this_hw_id(), Ordering::Relaxed);
    CPUS[0].online.store(true, Ordering::Release);
}

/// The outcome of [`start_secondaries`], for the banner and tests.
pub struct Report {
    /// Lines to print: one per CPU that failed, then the summary.
    pub lines: Vec<String>,
}

/// How many CPUs [`start_secondaries`] was asked to bring up at most
/// (`maxcpus=`; `MAX_CPUS` without it).
static WANTED: AtomicUsize = AtomicUsize::new(MAX_CPUS);

/// The CPUs that should be online: those the firmware lists, at most
/// `maxcpus=`.
pub fn wanted(cpus: &CpuList) -> usize {
    cpus.len().clamp(1, WANTED.load(Ordering::Relaxed))
}

/// Releases the secondary CPUs in `cpus` (the boot CPU, found by its
/// hardware id, is skipped), at most `maxcpus - 1` of them, and waits for
/// each to come online.
pub fn start_secondaries(cpus: &CpuList, maxcpus: Option<usize>) -> Report {
    let limit = maxcpus.unwrap_or(MAX_CPUS).clamp(1, MAX_CPUS);
    WANTED.store(limit, Ordering::Relaxed);
    let mut lines = Vec::new();
    let me = CPUS[0].hw_id();
    let idle_root = crate::memory::uspace::idle_root();
    IDLE_ROOT.store(idle_root.as_u64(), Ordering::Relaxed);
    // (A GICv2 with one CPU interface has no SGI targets at all.)
    if cpus.as_slice().iter().any(|d| d.hw_id != me)
        && let Err(e) = arch::smp::enable_ipi(0)
    {
        lines.push(alloc::format!("smp: cpu 0 takes no IPIs: {e}"));
    }
    let others = cpus.as_slice().iter().filter(|d| d.hw_id != me);
    // Index i for the i-th other CPU: 1.. up to MAX_CPUS - 1.
    for (i, desc) in (1..limit).zip(others) {
        if let Err(e) = start_one(i, desc, idle_root) {
            lines.push(alloc::format!(
                "smp: cpu {i} ({:#x}) did not come up: {e}",
                desc.hw_id
            ));
        }
    }
    if cpus.dropped > 0 {
        lines.push(alloc::format!(
            "smp: {} more CPUs described than the {MAX_CPUS} Folium runs",
            cpus.dropped
        ));
    }
    let ids: Vec<String> = online()
        .map(|i| alloc::format!("{i} ({:#x})", CPUS[i].hw_id()))
        .collect();
    if limit < cpus.len() {
        lines.push(alloc::format!(
            "smp: maxcpus={limit}: {} listed CPUs left off",
            cpus.len() - limit
        ));
    }
    lines.push(alloc::format!(
        "smp: {} of {} CPUs online: {}",
        online_count(),
        wanted(cpus),
        ids.join(" ")
    ));
    Report { lines }
}

/// Releases CPU `i` (described by `desc`) and waits for it.
fn start_one(i: usize, desc: &CpuDesc, idle_root: folium_mm::PhysAddr) -> Result<(), &'static str> {
    let stack = crate::memory::kstack::KernelStack::new().ok_or("no memory for its stack")?;
    let top = stack.top();
    // An error here means the CPU was not released: its stack is freed.
    arch::smp::start_cpu(i, desc, top, secondary_main, idle_root)?;
    // Released: the stack belongs to that CPU's idle thread for good (even
    // if it is late: it may still come up and use it), and so does its
    // mailbox slot.
    core::mem::forget(stack);
    RELEASED.fetch_or(1 << i, Ordering::Relaxed);
    CPUS[i].hw_id.store(desc.hw_id, Ordering::Relaxed);
    let deadline = crate::time::monotonic_ns() + START_TIMEOUT_NS;
    while !CPUS[i].is_online() {
        if crate::time::monotonic_ns() > deadline {
            return Err("no answer within a second");
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// A secondary CPU's first Rust code: on its own stack, interrupts
/// masked, the kernel's tables installed.
extern "C" fn secondary_main(index: u64) -> ! {
    let idle_root = folium_mm::PhysAddr::new(IDLE_ROOT.load(Ordering::Relaxed));
    arch::smp::init_this_cpu(index as usize, idle_root);
    if let Err(e) = arch::smp::enable_ipi(index as usize) {
        // Without IPIs it could miss a TLB shootdown: it stays out.
        println!("smp: cpu {index} takes no IPIs ({e}): it stays offline");
        arch::park();
    }
    arch::timer_init();
    CPUS[index as usize].online.store(true, Ordering::Release);
    loop {
        crate::proc::secondary_idle(run_job);
    }
}

/// The stop in force: `(sequence << 8) | (owner CPU + 1)`, the low byte 0
/// when none is (the sequence stays, so each stop has a value of its own).
static STOP: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the [`STOP`] value it is parked for (0: not parked).
static PARKED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Runs `f` while every other online CPU waits at a consistent point (a
/// small `stop_machine`): for code that reads other processes' page
/// tables, which only their own CPU changes, and which are whole only
/// where that CPU stops ([`park_if_asked`]: between two returns to user
/// mode, at a preemption point, in the idle loop). Parked CPUs still run
/// cross-CPU calls, so `f` may flush TLBs.
///
/// Context: a process's kernel thread or the boot thread, holding no lock
/// (a CPU spinning for one would never park), itself at a consistent
/// point: if another CPU stops the machine first, this one parks for it,
/// then takes its turn.
pub fn stop_others<R>(f: impl FnOnce() -> R) -> R {
    assert!(held() == 0, "stop_others with {} lock(s) held", held());
    let me = id();
    let mine = loop {
        let v = STOP.load(Ordering::Acquire);
        if v & 0xff == 0 {
            let new = ((v >> 8).wrapping_add(1) << 8) | (me as u64 + 1);
            if STOP
                .compare_exchange(v, new, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break new;
            }
        } else {
            park_if_asked();
        }
        core::hint::spin_loop();
    };
    let others = others();
    for cpu in (0..MAX_CPUS).filter(|c| others & 1 << c != 0) {
        let _ = send_ipi(cpu);
    }
    for cpu in (0..MAX_CPUS).filter(|c| others & 1 << c != 0) {
        while PARKED[cpu].load(Ordering::Acquire) != mine {
            run_posted_calls();
            core::hint::spin_loop();
        }
    }
    let r = f();
    STOP.store(mine & !0xff, Ordering::Release);
    r
}

/// Parks this CPU while another runs [`stop_others`]'s function. Called
/// where this CPU's process (or idle thread) is at a consistent point
/// and holds no lock.
#[inline]
pub fn park_if_asked() {
    let v = STOP.load(Ordering::Acquire);
    if v & 0xff == 0 || (v & 0xff) as usize == id() + 1 {
        return;
    }
    park(v);
}

#[cold]
fn park(v: u64) {
    let me = id();
    PARKED[me].store(v, Ordering::Release);
    while STOP.load(Ordering::Acquire) == v {
        run_posted_calls();
        core::hint::spin_loop();
    }
    PARKED[me].store(0, Ordering::Relaxed);
}

kernel_test!(
    fn every_cpu_the_firmware_lists_is_online_and_takes_its_timer() {
        let info = check_some!(folium_boot::info());
        let wanted = wanted(&crate::platform::cpus(info));
        check_eq!(id(), 0, "tests run on the boot CPU");
        check_eq!(
            online_count(),
            wanted,
            "CPUs online vs listed (and maxcpus=)"
        );
        let ids: Vec<u64> = online().map(|i| CPUS[i].hw_id()).collect();
        for (n, a) in ids.iter().enumerate() {
            check!(!ids[n + 1..].contains(a), "hardware id {a:#x} twice");
        }
        for i in online() {
            check_eq!(index_of(CPUS[i].hw_id()), Some(i), "index of CPU {i}'s id");
        }
        check_eq!(index_of(arch::smp::this_hw_id()), Some(0), "this CPU's id");
        // Each secondary's own timer interrupts keep coming while this CPU
        // waits with its interrupts masked (100 Hz: 3 ticks take 30 ms).
        let before: Vec<u64> = (0..MAX_CPUS).map(|i| CPUS[i].ticks()).collect();
        let deadline = crate::time::monotonic_ns() + 2_000_000_000;
        let behind = || {
            online()
                .filter(|&i| i != 0 && CPUS[i].ticks() < before[i] + 3)
                .count()
        };
        while behind() > 0 && crate::time::monotonic_ns() < deadline {
            core::hint::spin_loop();
        }
        check_eq!(
            behind(),
            0,
            "secondary CPUs whose timer did not tick 3 times in 2 s"
        );
        check_eq!(
            CPUS[0].ticks(),
            before[0],
            "CPU 0 took no tick with interrupts masked"
        );
        Ok(())
    }
);

kernel_test!(
    fn a_cpu_that_cannot_be_started_is_an_error_and_costs_nothing() {
        // A slot never handed to a CPU, a hardware id no CPU has.
        let released = RELEASED.load(Ordering::Relaxed);
        let Some(slot) = (1..MAX_CPUS).rev().find(|&i| released & 1 << i == 0) else {
            return Ok(()); // all eight were released: no slot to spare
        };
        let root = crate::memory::uspace::idle_root();
        let unknown = CpuDesc {
            hw_id: 0xfe,
            method: folium_boot::cpus::StartMethod::Unknown,
        };
        let e = start_one(slot, &unknown, root);
        check_eq!(e, Err("no start method Folium drives"));
        // PSCI refuses an MPIDR it does not know (virt).
        if check_some!(folium_boot::info()).cpus.psci.is_some() {
            let ghost = CpuDesc {
                hw_id: 0xfe00,
                method: folium_boot::cpus::StartMethod::Psci,
            };
            let e = start_one(slot, &ghost, root);
            check!(
                e.is_err_and(|m| m.starts_with("PSCI CPU_ON")),
                "CPU_ON of MPIDR 0xfe00: {e:?}"
            );
        }
        check!(!CPUS[slot].is_online() && CPUS[slot].hw_id() == 0);
        check_eq!(
            RELEASED.load(Ordering::Relaxed),
            released,
            "slots handed out"
        );
        Ok(())
    }
);

kernel_test!(
    fn every_online_cpu_takes_an_ipi_from_cpu_0() {
        let others: Vec<usize> = online().filter(|&i| i != 0).collect();
        let before: Vec<u64> = (0..MAX_CPUS).map(|i| CPUS[i].ipis()).collect();
        for &i in &others {
            check_eq!(send_ipi(i), Ok(()), "IPI to CPU {i}");
        }
        let deadline = crate::time::monotonic_ns() + 1_000_000_000;
        let waiting = || {
            others
                .iter()
                .filter(|&&i| CPUS[i].ipis() == before[i])
                .count()
        };
        while waiting() > 0 && crate::time::monotonic_ns() < deadline {
            core::hint::spin_loop();
        }
        check_eq!(waiting(), 0, "CPUs the IPI did not reach within a second");
        // Exactly one each: the handler neither misses nor repeats one.
        for &i in &others {
            check_eq!(CPUS[i].ipis(), before[i] + 1, "IPIs taken by CPU {i}");
        }
        check_eq!(CPUS[0].ipis(), before[0], "CPU 0 sent, it took none");
        check!(send_ipi(MAX_CPUS).is_err(), "an IPI to no CPU");
        if let Some(off) = (0..MAX_CPUS).find(|&i| !CPUS[i].is_online()) {
            check_eq!(send_ipi(off), Err("no such CPU online"));
        }
        Ok(())
    }
);

/// What the cross-call tests record: one counter per CPU.
static CALL_HITS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn count_call(_: u64) {
    CALL_HITS[id()].fetch_add(1, Ordering::Relaxed);
}

kernel_test!(
    fn cross_calls_run_on_every_cpu_exactly_once() {
        let before: Vec<u64> = CALL_HITS
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect();
        call_on(usize::MAX, count_call, 0);
        call_on(others(), count_call, 0);
        for i in online() {
            let hits = CALL_HITS[i].load(Ordering::Relaxed) - before[i];
            let want = if i == id() { 1 } else { 2 };
            check_eq!(hits, want, "calls CPU {i} ran");
        }
        Ok(())
    }
);

/// Job for the test below: calls CPU 0 (which is calling this CPU at the
/// same time, interrupts masked on both).
fn call_cpu0(_: u64) {
    call_on(1, count_call, 0);
}

/// The lock of the test below, and whether the job is about to take it.
static TEST_LOCK: crate::sync::IrqMutex<u64> = crate::sync::IrqMutex::new(0);
static SPINNING: AtomicBool = AtomicBool::new(false);

/// Job for the test below: takes the lock CPU 0 holds.
fn take_test_lock(_: u64) {
    SPINNING.store(true, Ordering::Release);
    *TEST_LOCK.lock() += 1;
}

/// Waits (up to a second) for CPU `cpu` to finish `n` jobs in all.
pub fn wait_jobs(cpu: usize, n: u64) -> bool {
    let deadline = crate::time::monotonic_ns() + 1_000_000_000;
    while jobs_done(cpu) < n && crate::time::monotonic_ns() < deadline {
        // A masked wait like any other: the job may be calling this CPU.
        run_posted_calls();
        core::hint::spin_loop();
    }
    jobs_done(cpu) >= n
}

kernel_test!(
    fn cpus_waiting_with_interrupts_masked_do_not_deadlock() {
        let Some(other) = online().find(|&i| i != 0) else {
            return Ok(()); // one CPU
        };
        let hits = |i: usize| CALL_HITS[i].load(Ordering::Relaxed);
        // Two CPUs call each other at once, both waiting masked.
        let (h0, h1, done) = (hits(0), hits(other), jobs_done(other));
        check!(post_job(other, call_cpu0, 0), "job for CPU {other}");
        call_on(1 << other, count_call, 0);
        check!(
            wait_jobs(other, done + 1),
            "CPU {other}'s call to CPU 0 finished"
        );
        check_eq!(
            (hits(0) - h0, hits(other) - h1),
            (1, 1),
            "each ran the other's call"
        );
        // CPU 0 holds a lock CPU `other` spins for, and calls it.
        let h1 = hits(other);
        let guard = TEST_LOCK.lock();
        let before = *guard;
        SPINNING.store(false, Ordering::Relaxed);
        check!(
            post_job(other, take_test_lock, 0),
            "second job for CPU {other}"
        );
        while !SPINNING.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        call_on(1 << other, count_call, 0);
        check_eq!(hits(other) - h1, 1, "the spinning CPU ran the call");
        drop(guard);
        check!(
            wait_jobs(other, done + 2),
            "CPU {other} got the lock once it was free"
        );
        check_eq!(*TEST_LOCK.lock(), before + 1);
        check!(!post_job(0, count_call, 0), "CPU 0 takes no jobs");
        Ok(())
    }
);

/// Per CPU: rounds of the test job below.
static ROUNDS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Tells the test job to stop.
static ROUNDS_STOP: AtomicBool = AtomicBool::new(false);

/// Job for the test below: counts rounds, with a consistent point (a
/// park) in each, until told to stop.
fn count_rounds(_: u64) {
    let me = id();
    while !ROUNDS_STOP.load(Ordering::Acquire) {
        ROUNDS[me].fetch_add(1, Ordering::Relaxed);
        park_if_asked();
        core::hint::spin_loop();
    }
}

kernel_test!(
    fn stop_others_holds_every_other_cpu_still() {
        let others: Vec<usize> = online().filter(|&i| i != 0).collect();
        if others.is_empty() {
            return Ok(()); // one CPU
        }
        /// Ends the jobs however the test ends.
        struct EndJobs;
        impl Drop for EndJobs {
            fn drop(&mut self) {
                ROUNDS_STOP.store(true, Ordering::Release);
            }
        }
        ROUNDS_STOP.store(false, Ordering::Relaxed);
        let end = EndJobs;
        let done: Vec<u64> = others.iter().map(|&c| jobs_done(c)).collect();
        for &c in &others {
            check!(post_job(c, count_rounds, 0), "job for CPU {c}");
        }
        let rounds = |c: usize| ROUNDS[c].load(Ordering::Relaxed);
        // True if CPU `c` counts on within a second.
        let counts_on = |c: usize| {
            let r0 = rounds(c);
            let deadline = crate::time::monotonic_ns() + 1_000_000_000;
            while rounds(c) == r0 && crate::time::monotonic_ns() < deadline {
                core::hint::spin_loop();
            }
            rounds(c) > r0
        };
        for &c in &others {
            check!(counts_on(c), "CPU {c} is not counting");
        }
        // While stopped, none counts on, for 5 ms; each called back runs
        // a cross-call all the same.
        let still = stop_others(|| {
            let before: Vec<u64> = others.iter().map(|&c| rounds(c)).collect();
            let until = crate::time::monotonic_ns() + 5_000_000;
            while crate::time::monotonic_ns() < until {
                core::hint::spin_loop();
            }
            let hits: Vec<u64> = others
                .iter()
                .map(|&c| CALL_HITS[c].load(Ordering::Relaxed))
                .collect();
            let mask = others.iter().fold(0, |m, &c| m | 1 << c);
            call_on(mask, count_call, 0);
            let called = others
                .iter()
                .zip(&hits)
                .all(|(&c, &h)| CALL_HITS[c].load(Ordering::Relaxed) == h + 1);
            let after: Vec<u64> = others.iter().map(|&c| rounds(c)).collect();
            (before == after, called)
        });
        check_eq!(still, (true, true), "(stopped, took the call)");
        // Released, they count on.
        for &c in &others {
            check!(counts_on(c), "CPU {c} stayed stopped");
        }
        drop(end);
        for (&c, &d) in others.iter().zip(&done) {
            check!(wait_jobs(c, d + 1), "CPU {c} ended its job");
        }
        Ok(())
    }
);
