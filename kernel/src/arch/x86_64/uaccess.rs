//! Copies between kernel buffers and user memory: the range is checked
//! against the user half first, then `folium_copy_user` (`idt.S`) copies
//! with exception fixups (a fault ends the copy with the count left) and
//! `stac`/`clac` around it when SMAP is on.

use super::USER_TOP;

unsafe extern "C" {
    fn folium_copy_user(dst: *mut u8, src: *const u8, n: usize) -> usize;
}

/// True if `[addr, addr + n)` lies inside the user half.
fn user_range(addr: u64, n: usize) -> bool {
    addr.checked_add(n as u64)
        .is_some_and(|end| end <= USER_TOP)
}

/// Copies `dst.len()` bytes from user address `src`; returns the number of
/// bytes NOT copied (0: success; all of them if the range leaves the user
/// half).
pub fn copy_from_user(dst: &mut [u8], src: u64) -> usize {
    if dst.is_empty() {
        return 0;
    }
    if !user_range(src, dst.len()) {
        return dst.len();
    }
    // SAFETY: `dst` is a kernel buffer we may write; `src` lies in the user
    // half, where every access either succeeds or faults into the fixup
    // (no kernel memory is there to read).
    unsafe { folium_copy_user(dst.as_mut_ptr(), src as *const u8, dst.len()) }
}

/// Copies `src` to user address `dst`; returns the number of bytes NOT
/// copied.
pub fn copy_to_user(dst: u64, src: &[u8]) -> usize {
    if src.is_empty() {
        return 0;
    }
    if !user_range(dst, src.len()) {
        return src.len();
    }
    // SAFETY: as above, with the roles swapped: the stores go to the user
    // half only, the loads come from `src`.
    unsafe { folium_copy_user(dst as *mut u8, src.as_ptr(), src.len()) }
}
