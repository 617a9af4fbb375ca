//! The CPU calls, as thin wrappers: `sched_getaffinity`,
//! `sched_setaffinity` and `getcpu` (for the first 64 CPUs).

use folium_abi::{Errno, Sysno};
use ulib::sys::call_int;

/// `sched_getaffinity` of `pid` (0: the caller): the first 64 CPUs' bits.
pub fn getaffinity(pid: i32) -> Result<u64, Errno> {
    let mut mask = [0u64; 16];
    let n = call_int(
        Sysno::SchedGetaffinity,
        [pid as u64, 128, mask.as_mut_ptr() as u64, 0, 0, 0],
    )?;
    if n < 8 || n % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(mask[0])
}

/// `sched_setaffinity` of `pid` (0: the caller) to the CPUs in `mask`.
pub fn setaffinity(pid: i32, mask: u64) -> Result<u64, Errno> {
    call_int(
        Sysno::SchedSetaffinity,
        [pid as u64, 8, &raw const mask as u64, 0, 0, 0],
    )
}

/// The CPU the caller runs on (`getcpu`).
pub fn getcpu() -> Result<u32, Errno> {
    let mut cpu = u32::MAX;
    call_int(Sysno::Getcpu, [&raw mut cpu as u64, 0, 0, 0, 0, 0])?;
    Ok(cpu)
}

/// The CPUs of `mask`, lowest first.
pub fn list(mask: u64) -> alloc::vec::Vec<u32> {
    (0..64).filter(|c| mask & 1 << c != 0).collect()
}
