//! The transparent-hugepage policy as Linux exposes it: the top-level
//! `enabled` knob, one `enabled` knob per anonymous folio size
//! (`hugepages-<N>kB`), the per-size fault counters, and the text those
//! files read and accept, so the same program configures Linux and Folium.
//!
//! | file (under `/sys/kernel/mm/transparent_hugepage/`) | reads                          | accepts                             |
//! |------------------------------------------------------|--------------------------------|-------------------------------------|
//! | `enabled`                                            | `always [madvise] never`       | `always`, `madvise`, `never`        |
//! | `hugepages-<N>kB/enabled`                            | `always inherit madvise [never]` | `always`, `inherit`, `madvise`, `never` |
//! | `hugepages-<N>kB/stats/anon_fault_alloc`             | a count                        | nothing (EACCES)                    |
//! | `hugepages-<N>kB/stats/anon_fault_fallback`          | a count                        | nothing (EACCES)                    |
//! | `hpage_pmd_size` (served by the kernel's file table) | `2097152`: the PMD size in bytes | nothing (EACCES)                  |
//!
//! Sizes are 16 kB (order 2) to 2048 kB (order 9): Linux never uses order-1
//! anonymous folios. Defaults follow Linux: the PMD size (2048 kB) is
//! `inherit`, every other size `never`, and the top level `madvise`
//! (Debian's default).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

/// Smallest and largest anonymous folio orders the knobs cover.
pub const MIN_ORDER: u8 = 2;
/// The PMD order (2 MiB with 4 KiB pages).
pub const MAX_ORDER: u8 = 9;
const SIZES: usize = (MAX_ORDER - MIN_ORDER + 1) as usize;

/// A knob's setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Large folios everywhere.
    Always,
    /// Follow the top-level knob (per-size knobs only).
    Inherit,
    /// Only in areas marked `MADV_HUGEPAGE`.
    Madvise,
    /// Never.
    Never,
}

impl Setting {
    const ALL: [Setting; 4] = [
        Setting::Always,
        Setting::Inherit,
        Setting::Madvise,
        Setting::Never,
    ];

    /// The word the knob file spells the setting with.
    pub fn word(self) -> &'static str {
        match self {
            Setting::Always => "always",
            Setting::Inherit => "inherit",
            Setting::Madvise => "madvise",
            Setting::Never => "never",
        }
    }

    fn from_u8(v: u8) -> Setting {
        Setting::ALL[usize::from(v).min(3)]
    }
}

/// Why a write to a knob was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnobError {
    /// Not one of the words the knob accepts (Linux: EINVAL).
    Invalid,
}

/// Parses a knob write the way sysfs does (`sysfs_streq`: one trailing
/// newline is ignored, nothing else is).
fn parse(buf: &[u8], allow_inherit: bool) -> Result<Setting, KnobError> {
    let word = buf.strip_suffix(b"\n").unwrap_or(buf);
    Setting::ALL
        .into_iter()
        .filter(|s| allow_inherit || *s != Setting::Inherit)
        .find(|s| s.word().as_bytes() == word)
        .ok_or(KnobError::Invalid)
}

/// Writes `choices` with `current` in brackets, as Linux prints a knob.
fn format(out: &mut impl core::fmt::Write, choices: &[Setting], current: Setting) {
    for (i, s) in choices.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let _ = if *s == current {
            write!(out, "{sep}[{}]", s.word())
        } else {
            write!(out, "{sep}{}", s.word())
        };
    }
    let _ = writeln!(out);
}

/// The policy: every knob and counter, lock-free.
pub struct ThpPolicy {
    top: AtomicU8,
    per_size: [AtomicU8; SIZES],
    fault_alloc: [AtomicU64; SIZES],
    fault_fallback: [AtomicU64; SIZES],
    /// `split`, `split_failed`, `split_deferred`.
    split: [[AtomicU64; SIZES]; 3],
}

impl Default for ThpPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ThpPolicy {
    /// Linux's defaults: top level `madvise`, 2048 kB `inherit`, the rest
    /// `never`; counters at zero.
    pub const fn new() -> ThpPolicy {
        let mut per_size = [const { AtomicU8::new(Setting::Never as u8) }; SIZES];
        per_size[SIZES - 1] = AtomicU8::new(Setting::Inherit as u8);
        ThpPolicy {
            top: AtomicU8::new(Setting::Madvise as u8),
            per_size,
            fault_alloc: [const { AtomicU64::new(0) }; SIZES],
            fault_fallback: [const { AtomicU64::new(0) }; SIZES],
            split: [const { [const { AtomicU64::new(0) }; SIZES] }; 3],
        }
    }

    fn slot(order: u8) -> Option<usize> {
        (MIN_ORDER..=MAX_ORDER)
            .contains(&order)
            .then(|| usize::from(order - MIN_ORDER))
    }

    /// The top-level setting.
    pub fn top(&self) -> Setting {
        Setting::from_u8(self.top.load(Relaxed))
    }

    /// The setting for folios of `order` (None outside 2..=9).
    pub fn size(&self, order: u8) -> Option<Setting> {
        Self::slot(order).map(|i| Setting::from_u8(self.per_size[i].load(Relaxed)))
    }

    /// Sets the top-level knob from a write (`inherit` is refused there).
    pub fn write_top(&self, buf: &[u8]) -> Result<(), KnobError> {
        let s = parse(buf, false)?;
        self.top.store(s as u8, Relaxed);
        Ok(())
    }

    /// Sets the knob of `order` from a write.
    pub fn write_size(&self, order: u8, buf: &[u8]) -> Result<(), KnobError> {
        let i = Self::slot(order).ok_or(KnobError::Invalid)?;
        let s = parse(buf, true)?;
        self.per_size[i].store(s as u8, Relaxed);
        Ok(())
    }

    /// The top-level file's contents.
    pub fn read_top(&self, out: &mut impl core::fmt::Write) {
        let choices = [Setting::Always, Setting::Madvise, Setting::Never];
        format(out, &choices, self.top());
    }

    /// The contents of `hugepages-<N>kB/enabled` for `order`.
    pub fn read_size(&self, order: u8, out: &mut impl core::fmt::Write) {
        if let Some(s) = self.size(order) {
            format(out, &Setting::ALL, s);
        }
    }

    /// Orders (bit `k` for order `k`) a fault may try in an area, given
    /// whether the area is marked `MADV_HUGEPAGE` / `MADV_NOHUGEPAGE`;
    /// order 0 is always allowed (Linux `thp_vma_allowable_orders`).
    pub fn allowed_orders(&self, hugepage: bool, nohugepage: bool) -> u16 {
        let mut orders = 1;
        if nohugepage {
            return orders;
        }
        for order in MIN_ORDER..=MAX_ORDER {
            let s = match self.size(order) {
                Some(Setting::Inherit) => self.top(),
                Some(s) => s,
                None => Setting::Never,
            };
            if s == Setting::Always || (s == Setting::Madvise && hugepage) {
                orders |= 1 << order;
            }
        }
        orders
    }

    /// Counts a fault that got a folio of `order` (`anon_fault_alloc`).
    pub fn count_alloc(&self, order: u8) {
        if let Some(i) = Self::slot(order) {
            self.fault_alloc[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a fault that could not get `order` and fell back
    /// (`anon_fault_fallback`).
    pub fn count_fallback(&self, order: u8) {
        if let Some(i) = Self::slot(order) {
            self.fault_fallback[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a split of a folio of `order` (`split`), or one that could
    /// not be done (`split_failed`).
    pub fn count_split(&self, order: u8, done: bool) {
        if let Some(i) = Self::slot(order) {
            self.split[usize::from(!done)][i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a folio of `order` queued for deferred split
    /// (`split_deferred`).
    pub fn count_split_deferred(&self, order: u8) {
        if let Some(i) = Self::slot(order) {
            self.split[2][i].fetch_add(1, Relaxed);
        }
    }

    /// The (`split`, `split_failed`, `split_deferred`) counters of `order`.
    pub fn split_counters(&self, order: u8) -> Option<(u64, u64, u64)> {
        Self::slot(order).map(|i| {
            let [a, b, c] = &self.split;
            (a[i].load(Relaxed), b[i].load(Relaxed), c[i].load(Relaxed))
        })
    }

    /// The (`anon_fault_alloc`, `anon_fault_fallback`) counters of `order`.
    pub fn counters(&self, order: u8) -> Option<(u64, u64)> {
        Self::slot(order).map(|i| {
            (
                self.fault_alloc[i].load(Relaxed),
                self.fault_fallback[i].load(Relaxed),
            )
        })
    }
}

/// The order whose folios are `kb` kilobytes (4 KiB pages), if a knob
/// exists for it.
pub fn order_of_kb(kb: u64) -> Option<u8> {
    (MIN_ORDER..=MAX_ORDER).find(|&o| 4u64 << o == kb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }

    #[test]
    fn defaults_and_formats_match_linux() {
        let p = ThpPolicy::new();
        assert_eq!(text(|s| p.read_top(s)), "always [madvise] never\n");
        assert_eq!(
            text(|s| p.read_size(9, s)),
            "always [inherit] madvise never\n"
        );
        assert_eq!(
            text(|s| p.read_size(4, s)),
            "always inherit madvise [never]\n"
        );
        assert_eq!(order_of_kb(64), Some(4));
        assert_eq!(order_of_kb(2048), Some(9));
        assert_eq!(order_of_kb(8), None, "no order-1 knob");
    }

    #[test]
    fn writes_parse_like_sysfs() {
        let p = ThpPolicy::new();
        assert_eq!(p.write_top(b"always\n"), Ok(()));
        assert_eq!(p.top(), Setting::Always);
        assert_eq!(p.write_top(b"inherit"), Err(KnobError::Invalid));
        assert_eq!(p.write_top(b"always "), Err(KnobError::Invalid));
        assert_eq!(p.write_top(b""), Err(KnobError::Invalid));
        assert_eq!(p.write_size(4, b"madvise"), Ok(()));
        assert_eq!(p.size(4), Some(Setting::Madvise));
        assert_eq!(p.write_size(1, b"always"), Err(KnobError::Invalid));
        assert_eq!(p.write_size(5, b"bogus\n"), Err(KnobError::Invalid));
        assert_eq!(
            p.size(5),
            Some(Setting::Never),
            "a refused write changes nothing"
        );
    }

    #[test]
    fn allowed_orders_follow_the_knobs() {
        let p = ThpPolicy::new();
        // Defaults: only 2 MiB via inherit -> madvise.
        assert_eq!(p.allowed_orders(false, false), 1);
        assert_eq!(p.allowed_orders(true, false), 1 | 1 << 9);
        p.write_size(4, b"always").unwrap();
        assert_eq!(p.allowed_orders(false, false), 1 | 1 << 4);
        assert_eq!(p.allowed_orders(true, true), 1, "MADV_NOHUGEPAGE wins");
        p.write_top(b"always").unwrap();
        assert_eq!(p.allowed_orders(false, false), 1 | 1 << 4 | 1 << 9);
        p.write_top(b"never").unwrap();
        assert_eq!(p.allowed_orders(true, false), 1 | 1 << 4);
    }

    #[test]
    fn counters_count_per_order() {
        let p = ThpPolicy::new();
        p.count_alloc(4);
        p.count_alloc(4);
        p.count_fallback(9);
        p.count_alloc(0);
        assert_eq!(p.counters(4), Some((2, 0)));
        assert_eq!(p.counters(9), Some((0, 1)));
        assert_eq!(p.counters(0), None);
    }
}
