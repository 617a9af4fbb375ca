//! Random bytes for `getrandom` and `AT_RANDOM`: a xoshiro256** generator
//! seeded from the hardware RNG where the CPU has one (RNDR / RDRAND) and
//! from counter jitter otherwise. Good enough for ASLR-free test programs;
//! not a cryptographic source.

use crate::sync::IrqMutex;

static STATE: IrqMutex<[u64; 4]> = IrqMutex::new([0; 4]);

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64 bits from the CPU's random-number instruction, if it has one.
fn hw_random() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0 {
        let mut v: u64 = 0;
        // SAFETY: RDRAND exists (CPUID.1:ECX.RDRAND); it only writes `v`.
        let ok = unsafe { core::arch::x86_64::_rdrand64_step(&mut v) };
        return (ok == 1).then_some(v);
    }
    None
}

fn seed() -> u64 {
    crate::arch::clock::ticks() ^ 0x666f_6c69_756d ^ hw_random().unwrap_or(0)
}

/// Fills `buf` with pseudo-random bytes.
pub fn fill(buf: &mut [u8]) {
    let mut st = STATE.lock();
    if st.iter().all(|&w| w == 0) {
        let mut x = seed();
        for w in st.iter_mut() {
            *w = splitmix(&mut x);
        }
    }
    for chunk in buf.chunks_mut(8) {
        let r = st[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = st[1] << 17;
        st[2] ^= st[0];
        st[3] ^= st[1];
        st[1] ^= st[2];
        st[0] ^= st[3];
        st[2] ^= t;
        st[3] = st[3].rotate_left(45);
        chunk.copy_from_slice(&r.to_le_bytes()[..chunk.len()]);
    }
}
