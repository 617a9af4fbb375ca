//! The arm64 contiguous-PTE ("contpte") benchmarks: what folding each
//! 64 KiB block of 16 PTEs costs and gains, measured with Folium's
//! `contpte` switch off and on in the same boot.
//!
//! - `contpte-regress` (the published regression, reproduced and cured):
//!   `fork()` of `--size` MiB mapped by 64 KiB folios with contpte `off`,
//!   `on-per-pte-wp` (fork unfolds each block and write-protects PTE by
//!   PTE, Linux before 6.9) and `on` (the block write-protected as a whole
//!   and kept folded, Linux 6.9's batched `wrprotect_ptes`). Folding
//!   happens at fault, so every repetition maps and populates the region
//!   afresh after setting the switches, and times its first fork.
//! - `contpte-fault`, `contpte-fork`, `contpte-munmap`: populating, forking
//!   and unmapping the region at every mTHP size, contpte `off` and `on`
//!   (cases `64K/off`, `64K/on` ...), to show folding costs nothing there.
//! - `contpte-touch` (the benefit): a loop reading one word per 4 KiB page
//!   of the region, 64 KiB folios, in a fixed random order.
//!
//! Every row records the contpte counters of Folium's `stats`
//! (`contpte_fold`, `contpte_unfold`, `contpte_refold`, `contpte_tlbi`)
//! over its timed part, per repetition, so the run shows the mechanism at
//! work; its check fails if they contradict the mode (a fold with contpte
//! off, a block not folded at fault, no unfold per block in a per-PTE
//! fork, unfolds in a batched fork or in munmap). On Linux for arm64,
//! where contpte is always on and has no switch, the rows run in their
//! `on` form only (JSON `contpte: "native"`, counters `null`) to compare
//! with Folium's; on x86, or on a Folium without the switch, they are
//! reported as not applicable and skipped.
//!
//! Their JSON records add to the common fields (see [`crate::report`]):
//! `mode` (`batched`: Folium's fork and zap batching, kept on; `native`
//! on Linux), `contpte` (`off`, `on-per-pte-wp`, `on`, or `native`),
//! `contpte_blocks` (64 KiB blocks in the region), `contpte_fold`,
//! `contpte_unfold`, `contpte_refold` and `contpte_tlbi` (the counters'
//! growth per repetition over the timed part, `null` without counters),
//! `folios_expected`, `folios_got`, `folios_other_sizes`, `child` on fork
//! rows, and on every row with an `off` row beside it `contpte_vs_off`
//! (the median of its per-repetition ratios to off, each repetition
//! running the modes back to back), `contpte_vs_off_noise` (those ratios'
//! standard error) and `contpte_within_noise` (the ratio within twice its
//! noise of 1; `null` with one repetition).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use folium_programs::on_folium;
use folium_programs::thp;
use ulib::println;
use ulib::sys;

use crate::Progress;
use crate::anon;
use crate::knobs;
use crate::report::{self, Record};
use crate::stats::{Summary, sqrt};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// The bytes one contiguous block maps: 16 PTEs.
const BLOCK: u64 = 64 * 1024;

/// How the kernel offers contpte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Support {
    /// Folium's switches; `fork_per_pte`: it has the fork write-protect
    /// switch too.
    Switches { fork_per_pte: bool },
    /// Linux on arm64: always on, nothing to switch.
    Native,
}

/// What this kernel offers, or why the rows do not apply (the words
/// printed in their place).
pub fn support(may_set: bool) -> Result<Support, String> {
    match knobs::contpte() {
        Some(_) if may_set => Ok(Support::Switches {
            fork_per_pte: knobs::contpte_fork_per_pte().is_some(),
        }),
        Some(_) => Err(String::from(
            "n/a (not changing the contpte knob of a shared host)",
        )),
        None if on_folium() => Err(format!(
            "n/a (no contpte knob at {})",
            thp::CONTPTE.to_str().unwrap_or("?")
        )),
        None if cfg!(target_arch = "aarch64") => Ok(Support::Native),
        None => Err(String::from(
            "n/a (no contiguous PTEs on this architecture)",
        )),
    }
}

/// Folium's two switches as found, to put back.
pub struct Saved(Option<bool>, Option<bool>);

/// The switches' settings now.
pub fn save() -> Saved {
    Saved(knobs::contpte(), knobs::contpte_fork_per_pte())
}

/// Puts the switches back as [`save`] found them.
pub fn restore(s: &Saved) -> Result<(), String> {
    if let Some(p) = s.1 {
        knobs::set_contpte_fork_per_pte(p)?;
    }
    if let Some(on) = s.0 {
        knobs::set_contpte(on)?;
    }
    Ok(())
}

/// One way of running: the switches' settings, or Linux's own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// contpte off: nothing is folded.
    Off,
    /// contpte on, fork unfolds each block and write-protects PTE by PTE.
    OnPerPteWp,
    /// contpte on, fork write-protects a block as a whole.
    On,
    /// Linux's contpte, always on.
    Native,
}

impl Mode {
    /// The case's suffix, and the JSON `contpte` value.
    fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::OnPerPteWp => "on-per-pte-wp",
            Mode::On | Mode::Native => "on",
        }
    }

    fn json(self) -> &'static str {
        match self {
            Mode::Native => "native",
            m => m.name(),
        }
    }

    /// Sets the switches for this mode.
    fn set(self) -> Result<(), String> {
        let per_pte = match self {
            Mode::Native => return Ok(()),
            Mode::Off => return knobs::set_contpte(false),
            Mode::OnPerPteWp => true,
            Mode::On => false,
        };
        if knobs::contpte_fork_per_pte().is_some() || per_pte {
            knobs::set_contpte_fork_per_pte(per_pte)?;
        }
        knobs::set_contpte(true)
    }
}

/// The modes of the fork regression row, or of the others (`all` false).
fn modes(s: Support, all: bool) -> Vec<Mode> {
    match s {
        Support::Native => alloc::vec![Mode::Native],
        Support::Switches { fork_per_pte } if all && fork_per_pte => {
            alloc::vec![Mode::Off, Mode::OnPerPteWp, Mode::On]
        }
        Support::Switches { .. } => alloc::vec![Mode::Off, Mode::On],
    }
}

/// The contpte counters now (`None` where there are none: Linux).
fn counters() -> Option<[u64; 4]> {
    thp::contpte_stats()
}

/// One row being measured: its samples, the counters' growth over its
/// timed parts, and the folio counts its populations saw.
struct Row {
    bench: &'static str,
    case: String,
    mode: Mode,
    kb: u64,
    samples: Vec<u64>,
    /// The counters' growth, summed over the repetitions (`None` once a
    /// reading failed).
    grew: Option<[u64; 4]>,
    folios_got: u64,
    folios_other: u64,
    per: f64,
    per_unit: &'static str,
}

impl Row {
    fn new(bench: &'static str, kb: u64, mode: Mode, prefix: bool) -> Row {
        Row {
            bench,
            case: if prefix {
                format!("{kb}K/{}", mode.name())
            } else {
                String::from(mode.name())
            },
            mode,
            kb,
            samples: Vec::new(),
            grew: Some([0; 4]),
            folios_got: u64::MAX,
            folios_other: 0,
            per: 1.0,
            per_unit: "fork",
        }
    }

    /// Adds one repetition: its time and the counters before and after.
    fn add(&mut self, dt: u64, before: Option<[u64; 4]>, after: Option<[u64; 4]>) {
        self.samples.push(dt);
        self.grew = match (self.grew, before, after) {
            (Some(mut g), Some(b), Some(a)) => {
                for i in 0..4 {
                    g[i] += a[i].saturating_sub(b[i]);
                }
                Some(g)
            }
            _ => None,
        };
    }

    /// Adds the folios one population saw.
    fn folios(&mut self, got: u64, other: u64) {
        self.folios_got = self.folios_got.min(got);
        self.folios_other += other;
    }
}

/// The counters' growth per repetition: (fold, unfold, refold, tlbi).
fn per_rep(r: &Row) -> Option<[f64; 4]> {
    let n = r.samples.len().max(1) as f64;
    r.grew.map(|g| g.map(|x| x as f64 / n))
}

/// What the counters must say of a row over `blocks` 64 KiB blocks:
/// `None` if they agree with its mode (or there are none), else what
/// contradicts it: with contpte off, the region folded; on, a fault that
/// did not fold every block of a folio of 64 KiB or more, a per-PTE fork
/// that did not unfold every block, a batched fork or a munmap that
/// unfolded half of them.
fn counters_check(r: &Row, blocks: u64) -> Option<String> {
    let [fold, unfold, _, _] = per_rep(r)?;
    let blocks = blocks as f64;
    let foldable = r.kb >= 64;
    let bench = r.bench.trim_start_matches("contpte-");
    let fork = bench == "fork" || bench == "regress";
    // A few folds and unfolds are this program's own stacks' (faulted,
    // copied, written after a fork); a block's worth of the region is not.
    if r.mode == Mode::Off && fold * 2.0 >= blocks {
        return Some(format!(
            "MISMATCH: {fold} folds per repetition, contpte off"
        ));
    }
    if r.mode == Mode::Off || !foldable {
        return None;
    }
    if bench == "fault" && fold < blocks {
        return Some(format!(
            "MISMATCH: {fold} folds per repetition for {blocks} blocks"
        ));
    }
    if fork && r.mode == Mode::OnPerPteWp && unfold < blocks {
        return Some(format!(
            "MISMATCH: {unfold} unfolds per per-PTE fork for {blocks} blocks"
        ));
    }
    if (fork && r.mode == Mode::On || bench == "munmap") && unfold * 2.0 >= blocks {
        return Some(format!(
            "MISMATCH: {unfold} unfolds per repetition for {blocks} blocks"
        ));
    }
    None
}

/// What every contpte row shares.
pub struct Ctx<'a> {
    /// MiB mapped and populated per repetition.
    pub size_mib: u64,
    /// Repetitions.
    pub iters: u32,
    /// Sets the mTHP policy to folios of one size (true if it could).
    pub policy: &'a dyn Fn(u64) -> bool,
    /// The `mode` of the JSON records: `batched` (Folium's fork and zap
    /// batching, kept on here) or `native`.
    pub batching: &'a str,
}

/// The work units [`run`] reports to the progress line.
pub fn units(s: Support, iters: u32, sizes: usize) -> u64 {
    let n = u64::from(iters);
    let all = modes(s, true).len() as u64;
    let two = modes(s, false).len() as u64;
    (REGRESS_REPS * n + 1) * all + sizes as u64 * n * two + n * two
}

/// The modes' order in repetition `i`: rotated by one each time, so no
/// mode always runs first (right after the previous repetition's unmap)
/// or last, and order effects cancel in the paired ratios.
fn rotated(i: u32, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |j| (j + i as usize) % n)
}

/// Repetitions of the regression row per `--iters`: its goal (2%) is
/// finer than one fork's spread under emulation, and the paired ratio's
/// standard error falls with the square root of the pairs.
const REGRESS_REPS: u64 = 6;

/// Times one `fork()` from the parent (its child sleeps 5 ms, so its exit
/// is never inside the window) and reads the counters right after it
/// returns, before reaping the child.
fn fork_counted() -> Result<(u64, Option<[u64; 4]>), String> {
    fork_counted_then(|| {})
}

/// [`fork_counted`], running `then` as soon as fork returned (before
/// the counters are read and the child is reaped).
fn fork_counted_then(then: impl FnOnce()) -> Result<(u64, Option<[u64; 4]>), String> {
    let t0 = sys::now_ns();
    let pid = match sys::fork() {
        Ok(0) => {
            let _ = sys::nanosleep(5_000_000);
            sys::exit_group(0)
        }
        Ok(pid) => pid as i32,
        Err(e) => return Err(format!("fork: {}", e.name())),
    };
    let dt = sys::now_ns() - t0;
    then();
    let after = counters();
    let _ = sys::wait4(pid, 0);
    Ok((dt, after))
}

/// A region mapped and populated after the switches were set (so its
/// faults folded or not).
struct Populated {
    base: u64,
    /// The population's time.
    dt: u64,
    /// Folios of the size asked for, and of other sizes, it saw.
    got: u64,
    other: u64,
    /// The counters before and after it.
    before: Option<[u64; 4]>,
    after: Option<[u64; 4]>,
}

/// Maps `len` bytes and populates them with folios of `kb`.
fn populated(kb: u64, len: u64) -> Result<Populated, String> {
    let base = anon::map_aligned(len)?;
    let before = counters();
    let (dt, got, other) = anon::populate(kb, base, len);
    let after = counters();
    Ok(Populated {
        base,
        dt,
        got,
        other,
        before,
        after,
    })
}

fn unmap(base: u64, len: u64) -> Result<(), String> {
    sys::munmap(base, len)
        .map(|_| ())
        .map_err(|e| format!("munmap: {}", e.name()))
}

/// Row 12: fork of the region mapped by 64 KiB folios in each mode, a
/// fresh population per fork (an untimed round first); the rows, and
/// whether the mTHP policy could be set.
fn regression(ctx: &Ctx, s: Support, progress: &mut Progress) -> Result<(Vec<Row>, bool), String> {
    let len = ctx.size_mib * MIB;
    let policy = (ctx.policy)(64);
    let mut rows: Vec<Row> = modes(s, true)
        .into_iter()
        .map(|m| Row::new("contpte-regress", 64, m, false))
        .collect();
    let reps = ctx.iters * REGRESS_REPS as u32;
    for i in 0..=reps {
        for k in rotated(i, rows.len()) {
            let r = &mut rows[k];
            progress.step(&format!(
                "contpte-regress fork, contpte {}, repetition {i}/{reps}",
                r.mode.name(),
            ));
            r.mode.set()?;
            let Populated {
                base, got, other, ..
            } = populated(64, len)?;
            let c0 = counters();
            let timed = fork_counted();
            unmap(base, len)?;
            let (dt, c1) = timed?;
            if i > 0 {
                r.add(dt, c0, c1);
                r.folios(got, other);
            }
            progress.done(1);
        }
    }
    Ok((rows, policy))
}

/// Row 13 at one size: fault, fork and munmap of the region, each mode
/// in turn in every repetition; the rows in that order per mode, and
/// whether the mTHP policy could be set.
fn per_size(
    ctx: &Ctx,
    s: Support,
    kb: u64,
    progress: &mut Progress,
) -> Result<(Vec<Row>, bool), String> {
    let len = ctx.size_mib * MIB;
    let policy = (ctx.policy)(kb);
    let ms = modes(s, false);
    let mut rows: Vec<Row> = Vec::new();
    for m in &ms {
        for bench in ["contpte-fault", "contpte-fork", "contpte-munmap"] {
            let mut r = Row::new(bench, kb, *m, true);
            if bench != "contpte-fork" {
                r.per = (len / PAGE) as f64;
                r.per_unit = "4KiB";
            }
            rows.push(r);
        }
    }
    for i in 1..=ctx.iters {
        for k in rotated(i, ms.len()) {
            let m = &ms[k];
            progress.step(&format!(
                "contpte-{kb}K fault+fork+munmap, contpte {}, repetition {i}/{}",
                m.name(),
                ctx.iters
            ));
            m.set()?;
            let Populated {
                base,
                dt,
                got,
                other,
                before: c0,
                after: c1,
            } = populated(kb, len)?;
            rows[3 * k].add(dt, c0, c1);
            if kb == 2048 && !on_folium() {
                // Linux maps 2 MiB folios by PMDs: by PTEs, as Folium does
                // (on Folium the mprotects would unfold blocks).
                anon::map_by_ptes(base, len)?;
            }
            let c2 = counters();
            let forked = fork_counted();
            let c4 = counters();
            let t0 = sys::now_ns();
            unmap(base, len)?;
            let dt_unmap = sys::now_ns() - t0;
            let c5 = counters();
            let (dt_fork, c3) = forked?;
            rows[3 * k + 1].add(dt_fork, c2, c3);
            rows[3 * k + 2].add(dt_unmap, c4, c5);
            for r in &mut rows[3 * k..3 * k + 3] {
                r.folios(got, other);
            }
            progress.done(1);
        }
    }
    Ok((rows, policy))
}

/// A permutation of `0..n` from a fixed seed (Fisher-Yates over
/// splitmix64), the same on every run and kernel.
pub fn permutation(n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut x: u64 = 0x5EED_F011_0C0B_7E64;
    for i in (1..v.len()).rev() {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
    v
}

/// Reads one word of each page of `base` in `order`.
fn touch_pages(base: u64, order: &[u32]) {
    let mut sum = 0u64;
    for &p in order {
        // SAFETY: a populated private mapping this program made, of more
        // than `p` pages; volatile so every read happens.
        sum = sum
            .wrapping_add(unsafe { ((base + u64::from(p) * PAGE) as *const u64).read_volatile() });
    }
    core::hint::black_box(sum);
}

/// Row 14: a pass reading one word per page in random order over the
/// region populated with 64 KiB folios (after an untimed pass); the
/// rows, and whether the mTHP policy could be set.
fn touch(ctx: &Ctx, s: Support, progress: &mut Progress) -> Result<(Vec<Row>, bool), String> {
    let len = ctx.size_mib * MIB;
    let pages = len / PAGE;
    // Made before anything is measured: its heap pages are not counted.
    let order = permutation(pages as u32);
    let policy = (ctx.policy)(64);
    let mut rows: Vec<Row> = modes(s, false)
        .into_iter()
        .map(|m| {
            let mut r = Row::new("contpte-touch", 64, m, false);
            r.per = pages as f64;
            r.per_unit = "touch";
            r
        })
        .collect();
    for i in 1..=ctx.iters {
        for k in rotated(i, rows.len()) {
            let r = &mut rows[k];
            progress.step(&format!(
                "contpte-touch random, contpte {}, repetition {i}/{}",
                r.mode.name(),
                ctx.iters
            ));
            r.mode.set()?;
            let Populated {
                base, got, other, ..
            } = populated(64, len)?;
            touch_pages(base, &order);
            let c0 = counters();
            let t0 = sys::now_ns();
            touch_pages(base, &order);
            let dt = sys::now_ns() - t0;
            let c1 = counters();
            unmap(base, len)?;
            r.add(dt, c0, c1);
            r.folios(got, other);
            progress.done(1);
        }
    }
    Ok((rows, policy))
}

/// `on` over `off` (medians) and the noise of that ratio: the two rows'
/// relative standard deviations combined, in ratio units.
pub fn versus(on: &Summary, off: &Summary) -> (f64, f64) {
    let ratio = on.median / off.median.max(1.0);
    let rel = |s: &Summary| s.stddev / s.median.max(1.0);
    let noise = ratio * sqrt(rel(on) * rel(on) + rel(off) * rel(off));
    (ratio, noise)
}

/// A row against the off row measured beside it, repetition by
/// repetition (each repetition runs every mode in turn, so the pair
/// shares whatever the emulator and the host did at that moment): the
/// median of the per-repetition ratios, and their standard error (their
/// standard deviation over the square root of their number), which
/// shrinks with repetitions where the two rows' own spreads do not.
/// Falls back to [`versus`] if the rows have different lengths.
pub fn versus_paired(on: &[u64], off: &[u64]) -> (f64, f64) {
    if on.len() != off.len() || on.is_empty() {
        return versus(&Summary::of(on), &Summary::of(off));
    }
    let mut r: Vec<f64> = on
        .iter()
        .zip(off)
        .map(|(&a, &b)| a as f64 / (b.max(1)) as f64)
        .collect();
    r.sort_unstable_by(f64::total_cmp);
    let n = r.len();
    let median = if n % 2 == 1 {
        r[n / 2]
    } else {
        (r[n / 2 - 1] + r[n / 2]) / 2.0
    };
    if n < 2 {
        return (median, 0.0);
    }
    let mean = r.iter().sum::<f64>() / n as f64;
    let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    (median, sqrt(var / n as f64))
}

/// A per-repetition count as JSON: an integer when it is one.
fn count_json(x: f64) -> String {
    if x == (x as u64) as f64 {
        format!("{}", x as u64)
    } else {
        format!("{x:.2}")
    }
}

/// The records of `rows` (the off row of the same bench and size gives
/// each other row its `contpte_vs_off`).
fn records(ctx: &Ctx, rows: &[Row], policy: bool) -> Vec<Record> {
    let len = ctx.size_mib * MIB;
    let blocks = len / BLOCK;
    rows.iter()
        .map(|r| {
            let summary = Summary::of(&r.samples);
            let expected = if r.kb > 4 { len / (r.kb * 1024) } else { 0 };
            let got = if r.folios_got == u64::MAX {
                0
            } else {
                r.folios_got
            };
            let mut check = anon::folio_check(policy, expected, got, r.folios_other);
            if check == "ok"
                && let Some(c) = counters_check(r, blocks)
            {
                check = c;
            }
            let mut extra = alloc::vec![
                report::mode_json(ctx.batching),
                ("contpte", format!("\"{}\"", r.mode.json())),
                ("contpte_blocks", format!("{blocks}")),
            ];
            let counts = per_rep(r);
            for (i, name) in thp::CONTPTE_STATS.iter().enumerate() {
                extra.push((
                    name,
                    counts.map_or(String::from("null"), |c| count_json(c[i])),
                ));
            }
            extra.push(("folios_expected", format!("{expected}")));
            extra.push(("folios_got", format!("{got}")));
            extra.push(("folios_other_sizes", format!("{}", r.folios_other)));
            if r.per_unit == "fork" {
                extra.push(("child", String::from("\"sleep-5ms\"")));
            }
            let off = rows
                .iter()
                .find(|o| o.bench == r.bench && o.kb == r.kb && o.mode == Mode::Off);
            if let Some(off) = off.filter(|_| r.mode != Mode::Off) {
                let (ratio, noise) = versus_paired(&r.samples, &off.samples);
                extra.push(("contpte_vs_off", format!("{ratio:.4}")));
                extra.push(("contpte_vs_off_noise", format!("{noise:.4}")));
                let within = if r.samples.len() < 2 {
                    "null"
                } else if (ratio - 1.0).abs() <= 2.0 * noise {
                    "true"
                } else {
                    "false"
                };
                extra.push(("contpte_within_noise", String::from(within)));
            }
            Record {
                bench: r.bench,
                case: r.case.clone(),
                folio_kb: r.kb,
                size_mib: ctx.size_mib,
                iterations: ctx.iters,
                summary,
                per: r.per,
                per_unit: r.per_unit,
                check,
                extra,
            }
        })
        .collect()
}

fn field<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.extra
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

/// `+1.2% ±0.8%` (versus off), or `-` for the off row and on Linux.
fn vs_off_cell(r: &Record) -> (String, String) {
    let ratio = field(r, "contpte_vs_off").and_then(|v| v.parse::<f64>().ok());
    let noise = field(r, "contpte_vs_off_noise").and_then(|v| v.parse::<f64>().ok());
    // One repetition has no spread to tell the noise by.
    let one = field(r, "contpte_within_noise") == Some("null");
    match (ratio, noise) {
        (Some(x), Some(n)) => (
            format!("{:+.1}%", (x - 1.0) * 100.0),
            if one {
                String::from("-")
            } else {
                format!("±{:.1}%", n * 100.0)
            },
        ),
        _ => (String::from("-"), String::from("-")),
    }
}

/// The verdict of an on row: within noise, slower or faster than off.
fn verdict(r: &Record) -> &'static str {
    match (field(r, "contpte_within_noise"), field(r, "contpte_vs_off")) {
        (Some("true"), _) => "same",
        (Some("false"), Some(v)) if v.parse::<f64>().unwrap_or(1.0) > 1.0 => "slower",
        (Some("false"), _) => "faster",
        (Some(_), _) => "1 rep",
        _ => "-",
    }
}

/// A time in ms, or us below 1 ms.
fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} us", ns / 1e3)
    }
}

/// The counters per repetition as `fold/unfold/refold/tlbi`.
fn counts_cell(r: &Record) -> String {
    let parts: Vec<&str> = thp::CONTPTE_STATS
        .iter()
        .map(|n| field(r, n).unwrap_or("null"))
        .collect();
    if parts.contains(&"null") {
        String::from("-")
    } else {
        parts.join("/")
    }
}

/// Prints the rows of one table: case, median, per unit, stddev, versus
/// off with its noise, the verdict, the counters and the check.
fn table(title: &str, recs: &[&Record]) {
    println!("{title}");
    let Some(first) = recs.first() else {
        println!("  (nothing measured)");
        return;
    };
    println!(
        "  {:<15} {:<14} {:>11} {:>10} {:>11} {:>8} {:>7} {:>7}  {:<23}  check",
        "bench",
        "case",
        "median",
        format!("ns/{}", first.per_unit),
        "stddev",
        "vs off",
        "noise",
        "verdict",
        "fold/unfold/refold/tlbi"
    );
    for r in recs {
        let (vs, noise) = vs_off_cell(r);
        println!(
            "  {:<15} {:<14} {:>11} {:>10.1} {:>11} {:>8} {:>7} {:>7}  {:<23}  {}",
            r.bench,
            r.case,
            time(r.summary.median),
            r.per_unit_ns(),
            time(r.summary.stddev),
            vs,
            noise,
            verdict(r),
            counts_cell(r),
            r.check
        );
    }
}

/// Runs rows 12 to 14 (`sizes`: the mTHP sizes for row 13) and prints
/// their tables; the records, or the first error.
pub fn run(
    ctx: &Ctx,
    s: Support,
    sizes: &[u64],
    progress: &mut Progress,
) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    let mib = ctx.size_mib;

    let (rows, policy) = regression(ctx, s, progress)?;
    let recs = records(ctx, &rows, policy);
    table(
        &format!(
            "contpte-regress: fork() of {mib} MiB mapped by 64 KiB folios, contpte off and on \
             (the published regression)"
        ),
        &recs.iter().collect::<Vec<_>>(),
    );
    println!(
        "  goal: on (block write-protected whole) within 2% of off; on-per-pte-wp \
         (unfold, then PTE by PTE) as measured"
    );
    out.extend(recs);

    let mut by_size = Vec::new();
    for &kb in sizes.iter().filter(|&&kb| kb > 4) {
        let (rows, policy) = per_size(ctx, s, kb, progress)?;
        by_size.extend(records(ctx, &rows, policy));
    }
    for bench in ["contpte-fault", "contpte-fork", "contpte-munmap"] {
        let recs: Vec<&Record> = by_size.iter().filter(|r| r.bench == bench).collect();
        let what = match bench {
            "contpte-fault" => "populating",
            "contpte-fork" => "fork() of",
            _ => "munmap() of",
        };
        table(
            &format!("{bench}: {what} {mib} MiB per folio size, contpte off and on"),
            &recs,
        );
    }
    println!(
        "  goal: fault and munmap no slower on than off beyond the noise (2 standard errors) or 0.5%"
    );
    out.extend(by_size);

    let (rows, policy) = touch(ctx, s, progress)?;
    let recs = records(ctx, &rows, policy);
    table(
        &format!(
            "contpte-touch: one word per 4 KiB page of {mib} MiB of 64 KiB folios, random order"
        ),
        &recs.iter().collect::<Vec<_>>(),
    );
    out.extend(recs);
    report::how_to_read(
        "vs off: the median of the per-repetition ratios to contpte off (the modes run back \
         to back, in rotating order), noise: those ratios' standard error; same: within 2x \
         the noise; counts per repetition over the \
         timed part",
    );
    Ok(out)
}

/// The n/a line printed in place of the rows.
pub fn not_applicable(why: &str) {
    println!("contpte: {why}: its rows are skipped");
}

/// Repetitions of each `contpte-cpus` group per `--iters`.
const CPUS_REPS: u32 = 3;

/// `contpte-cpus`: the regression row (fork of the region mapped by
/// 64 KiB folios, each mode) with 1, 2, 4 ... processes forking at once,
/// one pinned to each CPU the caller may use, up to all of them: on one
/// CPU a fork's TLB maintenance is local, on several every
/// write-protection must reach the others (broadcast TLBI on arm64).
///
/// The processes move in lockstep, held by stop signals: each stops
/// before it populates (this process sets the mode meanwhile), populates
/// alone (the folio counters it checks are global) and stops again, and
/// all are continued together to time one fork each, stopping again as
/// soon as it returns. Each prints its own table and JSON records (they
/// cannot hand results back: Folium has no pipes or shared memory yet),
/// one process after another; its counters are left out, since the
/// kernel's are global and every process's folds add up there. This
/// process then prints the group's rows (`MODE/Ncpu/all`): from
/// continuing them all to the last one stopped after its fork. Under
/// `-icount` the vCPUs take turns on one instruction clock, so only
/// that row is free of how the forks happened to overlap.
pub fn on_cpus(ctx: &Ctx, s: Support, kernel: &str, progress: &mut Progress) -> Result<(), String> {
    use folium_programs::cpus;
    let mask = cpus::getaffinity(0).map_err(|e| format!("sched_getaffinity: {}", e.name()))?;
    let list = cpus::list(mask);
    let mut counts: Vec<usize> = (0..8).map(|k| 1 << k).filter(|&n| n < list.len()).collect();
    counts.push(list.len());
    if !(ctx.policy)(64) {
        println!("contpte-cpus: the mTHP policy could not be set: measured as it stands");
    }
    let mib = ctx.size_mib;
    for &n in &counts {
        progress.step(&format!("contpte-cpus: {n} forking at once"));
        group(ctx, s, &list[..n], kernel)?;
        progress.done(1);
    }
    println!(
        "  goal: on (block write-protected whole) within 2% of off with any number of CPUs forking \
         at once ({mib} MiB each); under TCG only as many CPUs as the host has cores give \
         timings"
    );
    Ok(())
}

/// Stops the caller until its parent continues it.
fn stop_self() {
    let _ = sys::kill(sys::getpid(), 19);
}

/// Waits until every process of `pids` has stopped; an error if one
/// exited instead.
fn all_stopped(pids: &[i32]) -> Result<(), String> {
    for &p in pids {
        match sys::wait4(p, 2) {
            Ok((_, st)) if st & 0xff == 0x7f => {}
            Ok((_, st)) => return Err(format!("worker {p} ended: status {st:#x}")),
            Err(e) => return Err(format!("wait4 for worker {p}: {}", e.name())),
        }
    }
    Ok(())
}

fn continue_all(pids: &[i32]) {
    for &p in pids {
        let _ = sys::kill(p, 18);
    }
}

/// One group: a process pinned to each CPU of `cpus`, forking together.
fn group(ctx: &Ctx, s: Support, cpus: &[u32], kernel: &str) -> Result<(), String> {
    let modes = modes(s, true);
    let reps = ctx.iters * CPUS_REPS;
    // Every step's mode, an untimed round first, rotated as in `regression`.
    let steps: Vec<usize> = (0..=reps).flat_map(|i| rotated(i, modes.len())).collect();
    let mut pids: Vec<i32> = Vec::new();
    for (w, &cpu) in cpus.iter().enumerate() {
        match sys::fork() {
            Ok(0) => sys::exit_group(worker(ctx, &modes, &steps, cpus.len(), w, cpu, kernel)),
            Ok(p) => pids.push(p as i32),
            Err(e) => {
                folium_programs::kill_and_reap(&pids);
                return Err(format!("fork of worker {w}: {}", e.name()));
            }
        }
    }
    // The group's rows: from continuing every worker to the last one
    // stopped after its fork (forks of the group, first start to last
    // end, plus a wake-up and a stop each, the same in every mode).
    let mut all: Vec<Row> = modes
        .iter()
        .map(|&m| {
            let mut r = Row::new("contpte-cpus", 64, m, false);
            r.case = format!("{}/{}cpu/all", m.name(), cpus.len());
            r
        })
        .collect();
    let mut run = || -> Result<(), String> {
        for (j, &k) in steps.iter().enumerate() {
            all_stopped(&pids)?;
            modes[k].set()?;
            // One populates at a time: the folio counters are global, and
            // each checks its own population.
            for p in &pids {
                continue_all(core::slice::from_ref(p));
                all_stopped(core::slice::from_ref(p))?;
            }
            let t0 = sys::now_ns();
            continue_all(&pids);
            all_stopped(&pids)?;
            let dt = sys::now_ns() - t0;
            if j >= modes.len() {
                all[k].add(dt, None, None);
            }
            continue_all(&pids);
        }
        // Measured: they print one after another; every one prints
        // before a failure is reported.
        all_stopped(&pids)?;
        let mut failed = Vec::new();
        for &p in &pids {
            let _ = sys::kill(p, 18);
            match sys::wait4(p, 0) {
                Ok((_, 0)) => {}
                Ok((_, st)) => failed.push(format!("worker {p}: status {st:#x}")),
                Err(e) => failed.push(format!("wait4 for worker {p}: {}", e.name())),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    };
    let r = run();
    if r.is_err() {
        folium_programs::kill_and_reap(&pids);
        return r;
    }
    let n = cpus.len();
    let mut recs = records(ctx, &all, true);
    for r in &mut recs {
        // The workers checked their own folios and counters (above).
        r.check = String::from("workers ok");
        r.extra.push(("cpus", format!("{n}")));
        r.extra.push(("worker", String::from("\"all\"")));
    }
    table(
        &format!(
            "contpte-cpus: fork() of {} MiB of 64 KiB folios, {n} processes forking at once; \
             the group: first fork's start to last fork's end",
            ctx.size_mib
        ),
        &recs.iter().collect::<Vec<_>>(),
    );
    for r in &recs {
        r.json(kernel);
    }
    Ok(())
}

/// A worker of [`group`]: pinned to `cpu`, runs `steps` in lockstep with
/// the others, then prints its rows. Its exit status: 0, or 1 if
/// something failed (said on the console).
fn worker(
    ctx: &Ctx,
    modes: &[Mode],
    steps: &[usize],
    n: usize,
    w: usize,
    cpu: u32,
    kernel: &str,
) -> i32 {
    use folium_programs::cpus;
    if let Err(e) = cpus::setaffinity(0, 1 << cpu) {
        println!("contpte-cpus: worker {w}: pin to CPU {cpu}: {}", e.name());
        return 1;
    }
    let len = ctx.size_mib * MIB;
    let mut rows: Vec<Row> = modes
        .iter()
        .map(|&m| {
            let mut r = Row::new("contpte-cpus", 64, m, false);
            r.case = format!("{}/{n}cpu/w{w}", m.name());
            r
        })
        .collect();
    for (j, &k) in steps.iter().enumerate() {
        stop_self();
        let p = match populated(64, len) {
            Ok(p) => p,
            Err(e) => {
                println!("contpte-cpus: worker {w}: {e}");
                return 1;
            }
        };
        stop_self();
        // Stopped again as soon as the fork returned, so the parent times
        // the group's forks, first start to last end.
        let timed = fork_counted_then(stop_self);
        if let Err(e) = unmap(p.base, len).and(timed.as_ref().map(|_| ()).map_err(Clone::clone)) {
            println!("contpte-cpus: worker {w}: {e}");
            return 1;
        }
        if j >= modes.len()
            && let Ok((dt, _)) = timed
        {
            rows[k].add(dt, None, None);
            rows[k].folios(p.got, p.other);
        }
    }
    stop_self();
    let here = cpus::getcpu().map_or(u32::MAX, |c| c);
    let mut recs = records(ctx, &rows, true);
    for r in &mut recs {
        r.extra.push(("cpus", format!("{n}")));
        r.extra.push(("worker", format!("{w}")));
        r.extra.push(("cpu", format!("{cpu}")));
    }
    table(
        &format!(
            "contpte-cpus: fork() of {} MiB of 64 KiB folios, {n} processes forking at once; \
             worker {w}, pinned to CPU {cpu} (ran on {here})",
            ctx.size_mib
        ),
        &recs.iter().collect::<Vec<_>>(),
    );
    for r in &recs {
        r.json(kernel);
    }
    if here != cpu || recs.iter().any(|r| r.check.starts_with("MISMATCH")) {
        1
    } else {
        0
    }
}
