//! Kernel thread switching: [`switch_to`] saves what AAPCS64 makes the
//! callee preserve (x19-x29, the return address x30, SP and d8-d15) and
//! resumes another thread where it saved its own. User FP/SIMD state and
//! TPIDR_EL0 live in the UserContext, so nothing else needs saving.

use core::mem::offset_of;

/// A suspended kernel thread.
#[repr(C)]
pub struct Context {
    /// x19..x28.
    x19_x28: [u64; 10],
    /// Frame pointer (x29).
    fp: u64,
    /// Where `switch_to` returns to (x30).
    lr: u64,
    sp: u64,
    /// d8..d15.
    d8_d15: [u64; 8],
}

const _: () = {
    assert!(offset_of!(Context, fp) == 80);
    assert!(offset_of!(Context, sp) == 96);
    assert!(offset_of!(Context, d8_d15) == 104);
};

core::arch::global_asm!(
    r#"
.section .text, "ax"
// x0 = prev, x1 = next (Context layout above).
.globl folium_switch_to
folium_switch_to:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]
    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x9, [x1, #96]
    mov     sp, x9
    ldp     d8, d9, [x1, #104]
    ldp     d10, d11, [x1, #120]
    ldp     d12, d13, [x1, #136]
    ldp     d14, d15, [x1, #152]
    ret

// First code of a thread made by Context::new: x19 = entry, x20 = arg.
.globl folium_thread_start
folium_thread_start:
    msr     daifset, #0xf
    mov     x0, x20
    blr     x19
    brk     #0xdead                   // entry returned: reported as fatal
"#
);

unsafe extern "C" {
    /// The switch routine itself (the tests call it from assembly).
    pub(super) fn folium_switch_to(prev: *mut Context, next: *const Context);
    fn folium_thread_start();
}

impl Context {
    /// A context that, when switched to, calls `entry(arg)` with interrupts
    /// masked on the stack whose (16-byte aligned) top is `stack_top`.
    pub fn new(stack_top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> Self {
        debug_assert!(stack_top.is_multiple_of(16));
        let mut x19_x28 = [0; 10];
        x19_x28[0] = entry as usize as u64;
        x19_x28[1] = arg;
        Context {
            x19_x28,
            fp: 0,
            lr: folium_thread_start as *const () as u64,
            sp: stack_top,
            d8_d15: [0; 8],
        }
    }

    /// An empty context to switch away from (filled by the switch).
    pub const fn empty() -> Self {
        Context {
            x19_x28: [0; 10],
            fp: 0,
            lr: 0,
            sp: 0,
            d8_d15: [0; 8],
        }
    }
}

/// Saves the running kernel thread in `*prev` and resumes `*next`; returns
/// when something switches back to `*prev`.
///
/// # Safety
///
/// Both must be valid for the switch; `next` was made by [`Context::new`]
/// (its stack mapped and unused) or saved by an earlier `switch_to` whose
/// thread has not run since. Interrupts must be masked (as everywhere in
/// the kernel).
pub unsafe fn switch_to(prev: *mut Context, next: *const Context) {
    // SAFETY: forwarded from the caller. The routine is an AAPCS64
    // function from both threads' point of view: it preserves the
    // callee-saved state of the thread that later returns from it.
    unsafe { folium_switch_to(prev, next) }
}
