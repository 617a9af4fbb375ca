//! Address-space identifiers with generation rollover (the scheme of
//! Linux's arm64 `asid_new_context`, for one CPU).
//!
//! Each address space remembers the [`AsidTag`] it last ran with. On
//! every switch, [`AsidAllocator::activate`] keeps that ASID if its
//! generation is current; otherwise it hands out the next free number.
//! When the numbers run out, the generation advances, every older tag
//! becomes stale at once, and the caller must flush the whole TLB before
//! running anything with the new numbering. ASID 0 is never handed out:
//! it is the "no user space" tag (the kernel's idle and boot context).
//!
//! Single CPU: the space that was running when the numbers ran out is no
//! longer running when its stale tag is noticed, so no number is ever in
//! use twice in one generation.

use crate::tlb::Asid;

/// What an address space last ran with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsidTag {
    generation: u64,
    asid: u16,
}

/// Hands out ASIDs of `bits` width (8 or 16 on arm64, 12 for x86 PCIDs).
#[derive(Debug)]
pub struct AsidAllocator {
    max: u16,
    generation: u64,
    next: u16,
}

/// What [`AsidAllocator::activate`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activation {
    /// The ASID to run with.
    pub asid: Asid,
    /// The generation rolled over: flush every ASID's entries first.
    pub flush_all: bool,
    /// The ASID is newly assigned to this space: entries left in the TLB
    /// under this number belong to an older owner (already flushed by the
    /// rollover that freed the number, so this is informational).
    pub fresh: bool,
}

impl AsidAllocator {
    /// An allocator for `bits`-wide ASIDs (2..=16).
    pub const fn new(bits: u32) -> Self {
        assert!(bits >= 2 && bits <= 16);
        AsidAllocator {
            max: ((1u32 << bits) - 1) as u16,
            generation: 1,
            next: 1,
        }
    }

    /// The current generation (starts at 1; tags of generation 0 are unset).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The ASID for the space whose tag is `tag`, updating the tag.
    pub fn activate(&mut self, tag: &mut AsidTag) -> Activation {
        if tag.generation == self.generation && tag.asid != 0 {
            return Activation {
                asid: Asid(tag.asid),
                flush_all: false,
                fresh: false,
            };
        }
        let mut flush_all = false;
        if self.next > self.max || self.next == 0 {
            self.generation += 1;
            self.next = 1;
            flush_all = true;
        }
        *tag = AsidTag {
            generation: self.generation,
            asid: self.next,
        };
        self.next = self.next.wrapping_add(1);
        Activation {
            asid: Asid(tag.asid),
            flush_all,
            fresh: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keeps_an_asid_until_the_generation_rolls() {
        let mut a = AsidAllocator::new(2); // ASIDs 1..=3
        let mut tags = [AsidTag::default(); 5];
        let first: Vec<_> = tags[..3].iter_mut().map(|t| a.activate(t)).collect();
        assert!(first.iter().all(|x| x.fresh && !x.flush_all));
        let ids: HashSet<_> = first.iter().map(|x| x.asid).collect();
        assert_eq!(ids.len(), 3, "distinct within a generation");
        assert!(!ids.contains(&Asid(0)));
        // Re-activating keeps the same number.
        assert_eq!(a.activate(&mut tags[0]).asid, first[0].asid);
        assert!(!a.activate(&mut tags[1]).fresh);
        // A fourth space rolls the generation over and must flush all.
        let r = a.activate(&mut tags[3]);
        assert!(r.flush_all && r.fresh);
        assert_eq!(a.generation(), 2);
        // Old tags are now stale and get new numbers, distinct from tag 3's.
        let r0 = a.activate(&mut tags[0]);
        assert!(r0.fresh && !r0.flush_all);
        assert_ne!(r0.asid, r.asid);
    }

    #[test]
    fn numbers_are_unique_in_every_generation() {
        let mut a = AsidAllocator::new(4);
        let mut tags = vec![AsidTag::default(); 40];
        let mut live: std::collections::HashMap<u64, HashSet<u16>> = Default::default();
        for round in 0..5 {
            for (i, t) in tags.iter_mut().enumerate() {
                if (i + round) % 3 == 0 {
                    continue;
                }
                let act = a.activate(t);
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
}
