//! Address-space identifiers with generation rollover, for several CPUs:
//! the scheme of Linux's arm64 ASID allocator (`arch/arm64/mm/context.c`).
//!
//! Each address space remembers the [`AsidTag`] it last ran with. On
//! every switch, [`AsidAllocator::activate`] keeps that ASID if its
//! generation is current; otherwise it hands out a number not in use in
//! this generation: the space's old number if it is free, else the next
//! free one. When the numbers run out, the generation advances and every
//! older tag becomes stale at once, without stopping the other CPUs:
//! - each CPU's *active* ASID (the one it runs now, or ran last) is
//!   carried into the new generation as *reserved*, so its space keeps
//!   its number and that CPU runs on untouched;
//! - every CPU owes a flush of its whole TLB, done at its next switch,
//!   before it runs anything numbered in the new generation.
//!
//! So no number is in use by two spaces in one generation, and no CPU runs
//! a number under which its TLB could still hold another space's entries.
//! ASID 0 is never handed out: it is the "no user space" tag (the
//! kernel's idle and boot context).

use alloc::vec;
use alloc::vec::Vec;

use crate::tlb::Asid;

/// What an address space last ran with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsidTag {
    generation: u64,
    asid: u16,
}

impl AsidTag {
    /// The number, if the tag is set.
    pub fn asid(&self) -> Option<Asid> {
        (self.asid != 0).then_some(Asid(self.asid))
    }
}

/// Hands out ASIDs of `bits` width (8 or 16 on arm64, 12 for x86 PCIDs)
/// to the spaces that run on `cpus` CPUs.
#[derive(Debug)]
pub struct AsidAllocator {
    max: u16,
    generation: u64,
    /// Where the search for a free number starts.
    next: u16,
    /// Numbers in use in this generation, one bit each.
    used: Vec<u64>,
    /// Per CPU: the tag it runs now (or ran last).
    active: Vec<AsidTag>,
    /// Per CPU: the tag it was running at the last rollover, kept.
    reserved: Vec<AsidTag>,
    /// Per CPU: it owes a full local TLB flush (a rollover happened).
    flush_pending: Vec<bool>,
}

/// What [`AsidAllocator::activate`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activation {
    /// The ASID to run with.
    pub asid: Asid,
    /// This CPU must flush its whole TLB (every ASID) before running
    /// with `asid`: a rollover happened since it last switched.
    pub flush_all: bool,
    /// The space's tag changed (a new number, or its number carried into
    /// a new generation): entries left in this CPU's TLB under this
    /// number belong to an older owner unless a flush since the rollover
    /// removed them (`flush_all`, here or earlier).
    pub fresh: bool,
}

impl AsidAllocator {
    /// An allocator for `bits`-wide ASIDs (2..=16) on `cpus` CPUs, fewer
    /// than the numbers (0 excluded): a rollover keeps one per CPU and
    /// must have one left to hand out.
    pub fn new(bits: u32, cpus: usize) -> Self {
        let numbers = 1usize << bits.clamp(2, 16);
        assert!(
            (2..=16).contains(&bits) && cpus >= 1 && cpus < numbers - 1,
            "{cpus} CPUs need more than {bits}-bit ASIDs"
        );
        AsidAllocator {
            max: (numbers - 1) as u16,
            generation: 1,
            next: 1,
            used: vec![0; numbers.div_ceil(64)],
            active: vec![AsidTag::default(); cpus],
            reserved: vec![AsidTag::default(); cpus],
            flush_pending: vec![false; cpus],
        }
    }

    /// The current generation (starts at 1; tags of generation 0 are unset).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn is_used(&self, n: u16) -> bool {
        self.used[n as usize / 64] & 1 << (n % 64) != 0
    }

    fn set_used(&mut self, n: u16) {
        self.used[n as usize / 64] |= 1 << (n % 64);
    }

    /// The ASID for the space whose tag is `tag`, about to run on CPU
    /// `cpu`, updating the tag and the CPU's active ASID.
    pub fn activate(&mut self, cpu: usize, tag: &mut AsidTag) -> Activation {
        assert!(
            cpu < self.active.len(),
            "CPU {cpu} of {}",
            self.active.len()
        );
        let mut fresh = false;
        if tag.generation != self.generation || tag.asid == 0 {
            *tag = self.new_tag(*tag);
            fresh = true;
        }
        let flush_all = core::mem::replace(&mut self.flush_pending[cpu], false);
        self.active[cpu] = *tag;
        Activation {
            asid: Asid(tag.asid),
            flush_all,
            fresh,
        }
    }

    /// Records that CPU `cpu` runs `asid` again, installed without
    /// [`Self::activate`] by a caller that knows the number is still its
    /// space's (it saw no rollover since it had it), so a rollover keeps
    /// it. True if the CPU must first flush its whole TLB, as for
    /// [`Activation::flush_all`] (it owes a flush from a rollover: the
    /// space may have had its number, or run, on another CPU).
    #[must_use]
    pub fn reinstalled(&mut self, cpu: usize, asid: Asid) -> bool {
        self.active[cpu] = AsidTag {
            generation: self.generation,
            asid: asid.0,
        };
        core::mem::replace(&mut self.flush_pending[cpu], false)
    }

    /// A tag of the current generation for a space whose old tag is `old`.
    fn new_tag(&mut self, old: AsidTag) -> AsidTag {
        if old.asid != 0 {
            // Running on some CPU at the rollover: it keeps its number
            // (and every reservation of it moves to this generation).
            let new = AsidTag {
                generation: self.generation,
                asid: old.asid,
            };
            let mut kept = false;
            for r in self.reserved.iter_mut().filter(|r| **r == old) {
                *r = new;
                kept = true;
            }
            if kept {
                return new;
            }
            // Its old number, if nobody took it in this generation.
            if !self.is_used(old.asid) {
                self.set_used(old.asid);
                return new;
            }
        }
        let asid = match self.find_free() {
            Some(n) => n,
            None => {
                self.rollover();
                self.find_free()
                    .expect("a rollover frees all but one number per CPU")
            }
        };
        self.set_used(asid);
        self.next = asid.wrapping_add(1);
        AsidTag {
            generation: self.generation,
            asid,
        }
    }

    /// The first free number from `next` on (wrapping, 0 excluded).
    fn find_free(&self) -> Option<u16> {
        let start = self.next.clamp(1, self.max);
        (start..=self.max)
            .chain(1..start)
            .find(|&n| !self.is_used(n))
    }

    /// A new generation: only each CPU's active (else reserved) number
    /// stays in use, and every CPU owes a TLB flush.
    fn rollover(&mut self) {
        self.generation += 1;
        self.used.fill(0);
        for cpu in 0..self.active.len() {
            let mut a = core::mem::take(&mut self.active[cpu]);
            if a.asid == 0 {
                a = self.reserved[cpu];
            }
            if a.asid != 0 {
                self.set_used(a.asid);
            }
            self.reserved[cpu] = a;
            self.flush_pending[cpu] = true;
        }
        self.next = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keeps_an_asid_until_the_generation_rolls() {
        let mut a = AsidAllocator::new(2, 1); // ASIDs 1..=3
        let mut tags = [AsidTag::default(); 5];
        let first: Vec<_> = tags[..3].iter_mut().map(|t| a.activate(0, t)).collect();
        assert!(first.iter().all(|x| x.fresh && !x.flush_all));
        let ids: HashSet<_> = first.iter().map(|x| x.asid).collect();
        assert_eq!(ids.len(), 3, "distinct within a generation");
        assert!(!ids.contains(&Asid(0)));
        // Re-activating keeps the same number.
        assert_eq!(a.activate(0, &mut tags[0]).asid, first[0].asid);
        assert!(!a.activate(0, &mut tags[1]).fresh);
        // A fourth space rolls the generation over and must flush all.
        let r = a.activate(0, &mut tags[3]);
        assert!(r.flush_all && r.fresh);
        assert_eq!(a.generation(), 2);
        // Old tags are now stale and get new numbers, distinct from tag 3's.
        let r0 = a.activate(0, &mut tags[0]);
        assert!(r0.fresh && !r0.flush_all);
        assert_ne!(r0.asid, r.asid);
    }

    #[test]
    fn numbers_are_unique_in_every_generation() {
        let mut a = AsidAllocator::new(4, 1);
        let mut tags = vec![AsidTag::default(); 40];
        let mut live: std::collections::HashMap<u64, HashSet<u16>> = Default::default();
        for round in 0..5 {
            for (i, t) in tags.iter_mut().enumerate() {
                if (i + round) % 3 == 0 {
                    continue;
                }
                let act = a.activate(0, t);
                if act.flush_all {
                    live.clear();
                }
                if act.fresh {
                    assert!(
                        live.entry(a.generation()).or_default().insert(act.asid.0),
                        "ASID {} handed out twice in generation {}",
                        act.asid.0,
                        a.generation()
                    );
                }
            }
        }
    }

    /// One step of the multi-CPU model: a CPU switches to a space, goes
    /// idle (the empty user half, its allocator state untouched), or
    /// installs a space again without the allocator, as the kernel's
    /// preemption points do when no rollover came since the space had its
    /// number (another space may have run on that CPU meanwhile); or a
    /// space that runs nowhere ends (its successor is a new space).
    #[derive(Clone, Debug)]
    enum Step {
        Switch { cpu: usize, space: usize },
        Idle { cpu: usize },
        Reinstall { cpu: usize, space: usize },
        Exit { space: usize },
    }

    fn step(cpus: usize, spaces: usize) -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0..cpus, 0..spaces).prop_map(|(cpu, space)| Step::Switch { cpu, space }),
            1 => (0..cpus).prop_map(|cpu| Step::Idle { cpu }),
            2 => (0..cpus, 0..spaces).prop_map(|(cpu, space)| Step::Reinstall { cpu, space }),
            1 => (0..spaces).prop_map(|space| Step::Exit { space }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: if cfg!(miri) { 2 } else { 256 },
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Against a model of every CPU's TLB (which number caches which
        /// space's entries): a CPU never runs a space under a number its
        /// TLB holds another space's entries for, and two CPUs never run
        /// different spaces under one number.
        #[test]
        fn no_cpu_ever_sees_another_spaces_entries(
            (bits, cpus, steps) in proptest::strategy::Strategy::prop_flat_map(2u32..=4, |b| {
                // Fewer CPUs than numbers (1 .. 2^bits - 1), at most 4.
                let most = ((1usize << b) - 2).min(4);
                proptest::strategy::Strategy::prop_flat_map(1usize..=most, move |c| {
                    (
                        proptest::strategy::Just(b),
                        proptest::strategy::Just(c),
                        proptest::collection::vec(step(c, 12), 1..400),
                    )
                })
            }),
        ) {
            use std::collections::HashMap;
            let mut a = AsidAllocator::new(bits, cpus);
            let mut tags = [AsidTag::default(); 12];
            // Which incarnation each slot holds (a new space after an exit).
            let mut who: Vec<u64> = (0..12).collect();
            let mut next_who = 12;
            let mut tlb: Vec<HashMap<u16, u64>> = vec![HashMap::new(); cpus];
            let mut running: Vec<Option<(u64, u16)>> = vec![None; cpus];
            let (mut rollovers, mut flushes) = (a.generation(), 0);
            for st in steps {
                match st {
                    Step::Idle { cpu } => running[cpu] = None,
                    Step::Reinstall { cpu, space } => {
                        let t = tags[space];
                        if running[cpu].is_some() || t.asid == 0 || t.generation != a.generation() {
                            continue; // the kernel installs it through `activate` then
                        }
                        let (w, n) = (who[space], t.asid);
                        if a.reinstalled(cpu, Asid(n)) {
                            tlb[cpu].clear();
                            flushes += 1;
                        }
                        if let Some(&other) = tlb[cpu].get(&n) {
                            proptest::prop_assert_eq!(other, w, "reinstall over another's entries");
                        }
                        tlb[cpu].insert(n, w);
                        running[cpu] = Some((w, n));
                        for (c, r) in running.iter().enumerate() {
                            if let Some((w2, m)) = *r {
                                proptest::prop_assert!(
                                    m != n || w2 == w,
                                    "CPUs {} and {} run spaces {} and {} as ASID {}",
                                    c, cpu, w2, w, n
                                );
                            }
                        }
                    }
                    Step::Exit { space } => {
                        if running.iter().all(|r| r.is_none_or(|(w, _)| w != who[space])) {
                            tags[space] = AsidTag::default();
                            who[space] = next_who;
                            next_who += 1;
                        }
                    }
                    Step::Switch { cpu, space } => {
                        let act = a.activate(cpu, &mut tags[space]);
                        let n = act.asid.0;
                        proptest::prop_assert!(n != 0 && (n as u32) < (1 << bits));
                        proptest::prop_assert_eq!(tags[space].asid(), Some(act.asid));
                        if act.flush_all {
                            tlb[cpu].clear();
                            flushes += 1;
                        }
                        if let Some(&other) = tlb[cpu].get(&n) {
                            proptest::prop_assert_eq!(
                                other, who[space],
                                "CPU {} runs space {} as ASID {} over space {}'s entries",
                                cpu, who[space], n, other
                            );
                        }
                        tlb[cpu].insert(n, who[space]);
                        running[cpu] = Some((who[space], n));
                        for (c, r) in running.iter().enumerate() {
                            if let Some((w, m)) = *r {
                                proptest::prop_assert!(
                                    m != n || w == who[space],
                                    "CPUs {} and {} run spaces {} and {} as ASID {}",
                                    c, cpu, w, who[space], n
                                );
                            }
                        }
                    }
                }
            }
            // Every rollover costs each CPU that switched since at most
            // one flush.
            rollovers = a.generation() - rollovers;
            proptest::prop_assert!(flushes <= rollovers * cpus as u64);
        }
    }

    #[test]
    fn a_rollover_keeps_the_numbers_other_cpus_run() {
        let mut a = AsidAllocator::new(2, 2); // ASIDs 1..=3
        let mut t = [AsidTag::default(); 5];
        // CPU 1 runs space 0 (ASID 1); CPU 0 goes through 1, 2, 3.
        let on1 = a.activate(1, &mut t[0]).asid;
        for tag in &mut t[1..3] {
            a.activate(0, tag);
        }
        let r = a.activate(0, &mut t[3]);
        assert!(r.flush_all, "CPU 0 rolled over and flushes");
        assert_ne!(r.asid, on1, "CPU 1's number stays its space's");
        // CPU 1 keeps running space 0 under its number, and flushes at its
        // next switch, even back to that same space.
        let again = a.activate(1, &mut t[0]);
        assert_eq!((again.asid, again.flush_all), (on1, true));
        assert!(
            !a.activate(1, &mut t[0]).flush_all,
            "one flush per rollover"
        );
    }
}
