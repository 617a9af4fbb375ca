//! Kernel stack overflow detection for the fatal path: which kernel stack's
//! guard page a fault address (CR2) or an interrupted RSP lies in. The boot
//! stack is known here; later per-task kernel stacks (in a kernel virtual
//! region with guard pages) plug in through [`set_guard_lookup`].

use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicPtr, Ordering};

use folium_mm::PAGE_SIZE;

/// A kernel stack and the unmapped guard below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardedStack {
    /// What the stack is ("boot stack", "task kernel stack" ...).
    pub name: &'static str,
    /// Which one of its kind (a task id), if there are several.
    pub id: Option<u64>,
    /// The stack's bytes, lowest address first.
    pub stack: Range<u64>,
    /// The guard: unmapped, directly below `stack`.
    pub guard: Range<u64>,
}

impl fmt::Display for GuardedStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if let Some(id) = self.id {
            write!(f, " {id}")?;
        }
        write!(f, " [{:#x}..{:#x})", self.stack.start, self.stack.end)
    }
}

/// Finds the kernel stack whose guard holds `addr`, among stacks the boot
/// stack check does not know. Runs inside the fatal trap handler, maybe on
/// an IST stack after a double fault: it must not take locks, allocate or
/// fault.
pub type GuardLookup = fn(addr: u64) -> Option<GuardedStack>;

/// The installed [`GuardLookup`], as a raw pointer (null: none), so the
/// trap handler reads it without a lock.
static LOOKUP: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs (or with `None` removes) the lookup for kernel stacks beyond
/// the boot stack; returns the one it replaces.
pub fn set_guard_lookup(f: Option<GuardLookup>) -> Option<GuardLookup> {
    let new = f.map_or(core::ptr::null_mut(), |f| f as *mut ());
    decode(LOOKUP.swap(new, Ordering::SeqCst))
}

fn decode(p: *mut ()) -> Option<GuardLookup> {
    // SAFETY: LOOKUP only ever holds null or a `GuardLookup` cast to a raw
    // pointer by `set_guard_lookup`; function and data pointers have the
    // same size and representation on x86_64.
    (!p.is_null()).then(|| unsafe { core::mem::transmute::<*mut (), GuardLookup>(p) })
}

/// The boot stack (`boot/src/x86_64/entry.S`) and its guard page.
pub fn boot_stack() -> GuardedStack {
    let l = folium_boot::image_layout();
    let guard = l.stack_guard.as_u64();
    GuardedStack {
        name: "boot stack",
        id: None,
        stack: l.boot_stack.0.as_u64()..l.boot_stack.1.as_u64(),
        guard: guard..guard + PAGE_SIZE,
    }
}

/// The kernel stack whose guard holds `addr`, if any.
pub fn stack_guarded_at(addr: u64) -> Option<GuardedStack> {
    let boot = boot_stack();
    if boot.guard.contains(&addr) {
        return Some(boot);
    }
    decode(LOOKUP.load(Ordering::SeqCst)).and_then(|f| f(addr))
}

/// A kernel stack overflow, as the fatal path reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// The stack that ran into its guard.
    pub stack: GuardedStack,
    /// Which register showed it: "CR2" or "RSP".
    pub by: &'static str,
    /// That register's value, inside `stack.guard`.
    pub at: u64,
}

/// #DF, whose CR2 is that of the page fault the CPU could not deliver.
const VEC_DF: u64 = 8;
/// #PF, whose CR2 is its own fault address.
const VEC_PF: u64 = 14;

/// Decides whether the trap `vector`, with `cr2` and the interrupted `rsp`,
/// is a kernel stack overflow. CR2 counts only for #PF and #DF (for any
/// other vector it is a stale address from an earlier fault, which may have
/// been a deliberate probe of a guard); an RSP inside a guard counts for
/// every vector.
pub fn find(vector: u64, cr2: u64, rsp: u64) -> Option<Overflow> {
    if matches!(vector, VEC_DF | VEC_PF)
        && let Some(stack) = stack_guarded_at(cr2)
    {
        return Some(Overflow {
            stack,
            by: "CR2",
            at: cr2,
        });
    }
    stack_guarded_at(rsp).map(|stack| Overflow {
        stack,
        by: "RSP",
        at: rsp,
    })
}

kernel_test!(
    fn stack_overflow_is_recognised_by_cr2_or_rsp() {
        let boot = boot_stack();
        let g = boot.guard.start;
        // The running test is on the boot stack: the layout symbols agree
        // with the stack pointer the CPU uses.
        let rsp: u64;
        // SAFETY: reads RSP only.
        unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack)) };
        check!(boot.stack.contains(&rsp), "RSP {rsp:#x} outside {boot}");
        check_eq!(
            boot.guard.end,
            boot.stack.start,
            "the guard is not right below the stack"
        );
        // A second path: the guard really is unmapped, the stack's bottom mapped.
        check!(
            crate::arch::probe_read(g).is_err(),
            "guard {g:#x} is mapped"
        );
        check!(crate::arch::probe_read(boot.stack.start).is_ok());

        check_eq!(stack_guarded_at(g), Some(boot.clone()));
        check_eq!(stack_guarded_at(g + PAGE_SIZE - 8), Some(boot.clone()));
        check_eq!(stack_guarded_at(g - 8), None);
        check_eq!(stack_guarded_at(g + PAGE_SIZE), None);
        let inside = g + 0x10;
        let ok_rsp = boot.stack.end - 0x100;
        check_eq!(find(VEC_DF, inside, ok_rsp).map(|o| o.by), Some("CR2"));
        check_eq!(find(VEC_PF, inside, ok_rsp).map(|o| o.by), Some("CR2"));
        // A stale CR2 does not make a #GP an overflow; its RSP would.
        check_eq!(find(13, inside, ok_rsp), None);
        check_eq!(find(2, 0, inside).map(|o| o.by), Some("RSP"));
        check_eq!(find(VEC_DF, 0, ok_rsp), None);

        // The hook for later stacks: found while installed, gone after.
        fn fake(addr: u64) -> Option<GuardedStack> {
            const BASE: u64 = 0xffff_c100_0000_0000;
            (BASE..BASE + PAGE_SIZE)
                .contains(&addr)
                .then_some(GuardedStack {
                    name: "test stack",
                    id: Some(7),
                    stack: BASE + PAGE_SIZE..BASE + 5 * PAGE_SIZE,
                    guard: BASE..BASE + PAGE_SIZE,
                })
        }
        let probe = 0xffff_c100_0000_0ff8;
        check_eq!(find(VEC_DF, probe, ok_rsp), None);
        let previous = set_guard_lookup(Some(fake));
        let hit = find(VEC_DF, probe, ok_rsp);
        let gone = {
            set_guard_lookup(previous);
            find(VEC_DF, probe, ok_rsp)
        };
        let hit = check_some!(hit, "the installed lookup was not consulted");
        check_eq!(
            (hit.stack.name, hit.stack.id, hit.by),
            ("test stack", Some(7), "CR2")
        );
        check_eq!(gone, None, "the lookup outlived its removal");
        // The boot stack still wins over a hook.
        check_eq!(find(VEC_DF, inside, ok_rsp).map(|o| o.stack), Some(boot));
        Ok(())
    }
);
