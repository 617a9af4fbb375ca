//! Memory syscalls: `brk`, `mprotect`, and private anonymous `mmap` /
//! `munmap` (the rest of the family comes with the anonymous-memory work).

use folium_abi::Errno;
use folium_abi::errno::SysResult;
use folium_mm::aspace::{Access, FaultError};
use folium_mm::vma::{Prot, VmFlags, Vma, VmaError, VmaKind};
use folium_mm::{PAGE_SIZE, VirtAddr};

use crate::memory::uspace::{KernelEnv, UserSpace};
use crate::proc::Task;
use crate::proc::oom::Oom;

pub fn brk(task: &mut Task, want: u64) -> SysResult {
    let mut space = task.space().ok_or(Errno::ENOMEM)?;
    let cur = space.brk.map_or(0, |b| b.cur.as_u64());
    // Linux returns the old break when the request is refused (growing
    // may add an area: refused near the heap's end too).
    if want == 0 || space.vmas().len() >= MAX_MAP_COUNT || !crate::heap::can_grow() {
        return Ok(cur);
    }
    // The heap is charged like any private writable memory.
    if overcommits(want.saturating_sub(cur)) {
        return Ok(cur);
    }
    Ok(space.set_brk(&mut KernelEnv, VirtAddr::new(want)).as_u64())
}

pub fn mprotect(task: &mut Task, addr: u64, len: u64, prot: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    // PROT_SEM (atomics work here) is accepted and means nothing on
    // either architecture, as on Linux.
    let prot = Prot::from_bits(prot & !PROT_SEM).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Ok(0);
    }
    let end = addr
        .checked_add(len)
        .and_then(|e| e.checked_add(PAGE_SIZE - 1))
        .map(|e| e & !(PAGE_SIZE - 1))
        .ok_or(Errno::ENOMEM)?;
    let mut space = task.space().ok_or(Errno::ENOMEM)?;
    if end > space.user_end().as_u64() {
        return Err(Errno::ENOMEM);
    }
    let (s, e) = (VirtAddr::new(addr), VirtAddr::new(end));
    // Only a split allocates (one area); the rest of the call works in
    // bounded memory, so a full kernel heap refuses only that.
    let splits = space.vmas().splits_needed(s, e);
    if space.vmas().len() + splits > MAX_MAP_COUNT || (splits > 0 && !crate::heap::can_grow()) {
        return Err(Errno::ENOMEM);
    }
    match space.protect(
        &mut KernelEnv,
        VirtAddr::new(addr),
        VirtAddr::new(end),
        prot,
    ) {
        Ok(()) => Ok(0),
        Err(VmaError::Hole) => Err(Errno::ENOMEM),
        Err(_) => Err(Errno::EINVAL),
    }
}

const PROT_SEM: u64 = 0x8;
const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_TYPE: u64 = 0x0f;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_NORESERVE: u64 = 0x4000;
const MAP_POPULATE: u64 = 0x8000;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

/// Where top-down `mmap` placement starts: below the stack area with a
/// 1 MiB gap (Linux places it below the stack's rlimit gap, randomised).
const MMAP_BASE: u64 = crate::proc::exec::STACK_TOP - crate::proc::exec::STACK_SIZE - (1 << 20);
/// Most areas one address space may have (Linux's `vm.max_map_count`).
const MAX_MAP_COUNT: usize = 65_530;

/// Lowest address `mmap` hands out without MAP_FIXED (Linux's default
/// `vm.mmap_min_addr`).
const MMAP_MIN: u64 = 0x1_0000;

/// Where `mmap` must end, for a space whose user half ends at
/// `user_end`: x86-64 Linux keeps the last page below the canonical hole
/// unmappable (TASK_SIZE_MAX is 2^47 minus a page, because SYSRET to a
/// non-canonical address faults in the kernel); arm64 maps up to the end.
fn mmap_end(user_end: u64) -> u64 {
    if cfg!(target_arch = "x86_64") {
        user_end - PAGE_SIZE
    } else {
        user_end
    }
}

/// Linux's heuristic overcommit (vm.overcommit_memory 0): one request
/// for more pages than RAM and swap (none here) hold is refused.
fn overcommits(len: u64) -> bool {
    len / PAGE_SIZE > crate::memory::frames::stats().managed_pages
}

fn page_len(len: u64) -> Result<u64, Errno> {
    len.checked_add(PAGE_SIZE - 1)
        .map(|l| l & !(PAGE_SIZE - 1))
        .ok_or(Errno::ENOMEM)
}

/// `mmap` of private anonymous memory (the rest of the family, and its
/// full errno coverage, comes with the anonymous-memory work).
pub fn mmap(
    task: &mut Task,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: u64,
    off: u64,
) -> SysResult {
    // Both architectures' sys_mmap refuse an unaligned offset first, even
    // for anonymous memory, which ignores it otherwise.
    if !off.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_ANONYMOUS == 0 {
        // No file can be mapped: a bad fd is EBADF, a good one ENODEV.
        task.files.check(fd)?;
        return Err(Errno::ENODEV);
    }
    match flags & MAP_TYPE {
        MAP_PRIVATE => {}
        MAP_SHARED => return Err(Errno::ENOTSUP),
        _ => return Err(Errno::EINVAL),
    }
    // Linux's mmap ignores `prot` bits it does not know (only mprotect
    // refuses them).
    let prot = Prot::from_bits(prot & 7).ok_or(Errno::EINVAL)?;
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_len(len)?;
    // Linux's heuristic overcommit (vm.overcommit_memory 0): a private
    // writable mapping is charged unless MAP_NORESERVE, and one request
    // larger than all of RAM and swap (none here) is refused.
    if prot.write() && flags & MAP_NORESERVE == 0 && overcommits(len) {
        return Err(Errno::ENOMEM);
    }
    let mut space = task.space().ok_or(Errno::ENOMEM)?;
    // Linux's vm.max_map_count; and the kernel heap that holds the areas.
    if space.vmas().len() >= MAX_MAP_COUNT || !crate::heap::can_grow() {
        return Err(Errno::ENOMEM);
    }
    let user_end = mmap_end(space.user_end().as_u64());
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    let start = if fixed {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if end > user_end {
            return Err(Errno::ENOMEM);
        }
        // vm.mmap_min_addr: the pages a kernel NULL dereference would
        // reach stay unmapped. Linux lets a process with CAP_SYS_RAWIO
        // map them and refuses others with EPERM; Folium refuses every
        // process (docs/errno.md).
        if addr < MMAP_MIN {
            return Err(Errno::EPERM);
        }
        let (s, e) = (VirtAddr::new(addr), VirtAddr::new(end));
        if flags & MAP_FIXED_NOREPLACE != 0 && space.vmas().intersects(s, e) {
            return Err(Errno::EEXIST);
        }
        if space.vmas().splits_needed(s, e) + space.vmas().len() >= MAX_MAP_COUNT {
            return Err(Errno::ENOMEM);
        }
        space
            .unmap(&mut KernelEnv, s, e)
            .map_err(|_| Errno::EINVAL)?;
        addr
    } else {
        let hint = addr & !(PAGE_SIZE - 1);
        let fits = hint >= MMAP_MIN
            && hint.checked_add(len).is_some_and(|e| e <= user_end)
            && !space
                .vmas()
                .intersects(VirtAddr::new(hint), VirtAddr::new(hint + len));
        if fits {
            hint
        } else {
            space
                .vmas()
                .find_free(len, VirtAddr::new(MMAP_MIN), VirtAddr::new(MMAP_BASE))
                .ok_or(Errno::ENOMEM)?
                .as_u64()
        }
    };
    let vma = Vma::new(
        VirtAddr::new(start),
        VirtAddr::new(start + len),
        prot,
        VmaKind::Anon,
    );
    space.add_vma(vma).map_err(|_| Errno::ENOMEM)?;
    // Populating takes the lock a step at a time.
    drop(space);
    if flags & MAP_POPULATE != 0 && prot.read() {
        // Linux populates a writable private mapping for write (private
        // pages, large folios where the policy allows).
        let access = if prot.write() {
            Access::Write
        } else {
            Access::Read
        };
        let (s, e) = (VirtAddr::new(start), VirtAddr::new(start + len));
        if let Err(err) = populate(task, s, e, access) {
            // The mapping goes with the error: the caller never saw it.
            if let Some(mut space) = task.space() {
                let _ = space.unmap(&mut KernelEnv, s, e);
            }
            return Err(err);
        }
    }
    Ok(start)
}

/// Bytes `MAP_POPULATE` fills between checks for a fatal signal.
const POPULATE_STEP: u64 = 2 << 20;

/// Makes `[start, end)` present for `access`, a table's span at a time.
/// Out of memory, the deferred split and the OOM killer have their
/// chance first; if this process is the one to go, or is sent a fatal
/// signal meanwhile, it stops with ENOMEM (EINTR for the signal) rather
/// than filling memory on behalf of a process that is dying. Other errors
/// (a page the area's rights refuse) leave the rest to fault in later.
fn populate(task: &mut Task, start: VirtAddr, end: VirtAddr, access: Access) -> Result<(), Errno> {
    let mut at = start;
    while at < end {
        if crate::proc::oom::fatal_signal_pending(task.pid) {
            return Err(Errno::EINTR);
        }
        let step = (at + POPULATE_STEP).align_down(POPULATE_STEP).min(end);
        // The lock is let go before the OOM killer waits.
        let done = task
            .space()
            .ok_or(Errno::ENOMEM)?
            .populate(&mut KernelEnv, at, step, access);
        match done {
            Ok(()) => at = step,
            Err(FaultError::OutOfMemory) => match crate::proc::oom::out_of_memory(task) {
                Oom::Retry => {}
                Oom::Chosen => return Err(Errno::ENOMEM),
            },
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// `munmap`: removes every mapping in the range (nothing mapped is fine).
pub fn munmap(task: &mut Task, addr: u64, len: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = page_len(len).map_err(|_| Errno::EINVAL)?;
    let mut space = task.space().ok_or(Errno::EINVAL)?;
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    if end > space.user_end().as_u64() {
        return Err(Errno::EINVAL);
    }
    // Punching a hole in an area splits it in two (Linux: ENOMEM past
    // vm.max_map_count).
    let (s, e) = (VirtAddr::new(addr), VirtAddr::new(end));
    // As in mprotect: only a split needs heap.
    let splits = space.vmas().splits_needed(s, e);
    if space.vmas().len() + splits > MAX_MAP_COUNT || (splits > 0 && !crate::heap::can_grow()) {
        return Err(Errno::ENOMEM);
    }
    space
        .unmap(&mut KernelEnv, VirtAddr::new(addr), VirtAddr::new(end))
        .map_err(|_| Errno::EINVAL)?;
    Ok(0)
}

const MADV_NORMAL: u64 = 0;
const MADV_RANDOM: u64 = 1;
const MADV_SEQUENTIAL: u64 = 2;
const MADV_WILLNEED: u64 = 3;
const MADV_DONTNEED: u64 = 4;
const MADV_FREE: u64 = 8;
const MADV_DONTFORK: u64 = 10;
const MADV_DOFORK: u64 = 11;
const MADV_MERGEABLE: u64 = 12;
const MADV_UNMERGEABLE: u64 = 13;
const MADV_HUGEPAGE: u64 = 14;
const MADV_NOHUGEPAGE: u64 = 15;
const MADV_DONTDUMP: u64 = 16;
const MADV_DODUMP: u64 = 17;
const MADV_WIPEONFORK: u64 = 18;
const MADV_KEEPONFORK: u64 = 19;
const MADV_COLD: u64 = 20;
const MADV_PAGEOUT: u64 = 21;

/// `madvise` over private anonymous memory: DONTNEED (and FREE, which may
/// drop the pages at once) zap the range, HUGEPAGE/NOHUGEPAGE mark areas
/// for the fault policy, DONTFORK/WIPEONFORK (and their undoing) for
/// fork, the access-pattern hints are accepted and ignored. Linux's checks: unaligned start or overflowing length EINVAL,
/// an empty range 0, a hole ENOMEM.
pub fn madvise(task: &mut Task, addr: u64, len: u64, advice: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let known = matches!(
        advice,
        MADV_NORMAL
            | MADV_RANDOM
            | MADV_SEQUENTIAL
            | MADV_WILLNEED
            | MADV_DONTNEED
            | MADV_FREE
            | MADV_HUGEPAGE
            | MADV_NOHUGEPAGE
            | MADV_DONTFORK
            | MADV_DOFORK
            | MADV_WIPEONFORK
            | MADV_KEEPONFORK
            | MADV_MERGEABLE
            | MADV_UNMERGEABLE
            | MADV_DONTDUMP
            | MADV_DODUMP
            | MADV_COLD
            | MADV_PAGEOUT
    );
    if !known {
        return Err(Errno::EINVAL);
    }
    let rounded = page_len(len).map_err(|_| Errno::EINVAL)?;
    let end = addr.checked_add(rounded).ok_or(Errno::EINVAL)?;
    if end == addr {
        return Ok(0);
    }
    let mut space = task.space().ok_or(Errno::ENOMEM)?;
    if end > space.user_end().as_u64() {
        return Err(Errno::ENOMEM);
    }
    let (s, e) = (VirtAddr::new(addr), VirtAddr::new(end));
    let r = match advice {
        MADV_DONTNEED | MADV_FREE => space.dontneed(&mut KernelEnv, s, e),
        MADV_HUGEPAGE | MADV_NOHUGEPAGE | MADV_DONTFORK | MADV_DOFORK | MADV_WIPEONFORK
        | MADV_KEEPONFORK => {
            if space.vmas().len() + space.vmas().splits_needed(s, e) > MAX_MAP_COUNT
                || !crate::heap::can_grow()
            {
                return Err(Errno::ENOMEM);
            }
            let (set, clear) = match advice {
                MADV_HUGEPAGE => (VmFlags::HUGEPAGE, VmFlags::NOHUGEPAGE),
                MADV_NOHUGEPAGE => (VmFlags::NOHUGEPAGE, VmFlags::HUGEPAGE),
                MADV_DONTFORK => (VmFlags::DONTCOPY, VmFlags::EMPTY),
                MADV_DOFORK => (VmFlags::EMPTY, VmFlags::DONTCOPY),
                MADV_WIPEONFORK => (VmFlags::WIPEONFORK, VmFlags::EMPTY),
                _ => (VmFlags::EMPTY, VmFlags::WIPEONFORK),
            };
            space.advise_flags(s, e, set, clear)
        }
        // Hints about access patterns, and advice with nothing to act on
        // here: no same-page merging (MERGEABLE), no core dumps (DUMP),
        // no swap to age or page out to (COLD, PAGEOUT). Nothing to do,
        // but the range must be mapped.
        _ => {
            if covered(&space, s, e) {
                Ok(())
            } else {
                Err(VmaError::Hole)
            }
        }
    };
    match r {
        Ok(()) => Ok(0),
        Err(VmaError::Hole) => Err(Errno::ENOMEM),
        Err(_) => Err(Errno::EINVAL),
    }
}

/// True if areas cover all of `[s, e)` (whatever their rights).
fn covered(space: &UserSpace, s: VirtAddr, e: VirtAddr) -> bool {
    let mut at = s;
    for v in space.vmas().overlapping(s, e) {
        if v.start > at {
            return false;
        }
        at = v.end;
    }
    at >= e
}

const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const MREMAP_DONTUNMAP: u64 = 4;

/// `mremap` of private anonymous memory, in Linux's order of checks:
/// unknown flags, FIXED without MAYMOVE and DONTUNMAP without MAYMOVE or
/// with a new length EINVAL; an unaligned address or a zero new length
/// EINVAL. Shrinking unmaps the tail (whatever is mapped there); growing
/// needs the range to lie in one area (EFAULT otherwise) and extends it
/// in place when the pages after it are free, else (with MAYMOVE) moves
/// it: a new area elsewhere, the page-table entries moved into it
/// (`move_ptes`: no page copied, no folio split), the old range unmapped.
/// MREMAP_FIXED moves to `new_addr` (what was mapped there is unmapped);
/// MREMAP_DONTUNMAP moves and leaves the old range mapped, empty.
pub fn mremap(
    task: &mut Task,
    addr: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
) -> SysResult {
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
        || (flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0)
        || (flags & MREMAP_DONTUNMAP != 0 && (flags & MREMAP_MAYMOVE == 0 || old_len != new_len))
    {
        return Err(Errno::EINVAL);
    }
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let old_len = page_len(old_len).map_err(|_| Errno::EINVAL)?;
    let new_len = page_len(new_len).map_err(|_| Errno::EINVAL)?;
    if new_len == 0 {
        return Err(Errno::EINVAL);
    }
    let keep_old = flags & MREMAP_DONTUNMAP != 0;
    if flags & MREMAP_FIXED != 0 {
        return mremap_to(task, addr, old_len, new_len, new_addr, keep_old);
    }
    if old_len >= new_len && !keep_old {
        if old_len > new_len {
            munmap(task, addr + new_len, old_len - new_len)?;
        }
        return Ok(addr);
    }
    let mut space = task.space().ok_or(Errno::ENOMEM)?;
    let vma = source_area(&space, addr, old_len)?;
    let old_end = addr + old_len;
    let new_end = addr.checked_add(new_len).ok_or(Errno::ENOMEM)?;
    let grow = new_end - old_end;
    if vma.prot.write() && overcommits(grow) {
        return Err(Errno::ENOMEM);
    }
    let (s, e) = (VirtAddr::new(old_end), VirtAddr::new(new_end));
    let fits = !keep_old
        && old_end == vma.end.as_u64()
        && new_end <= mmap_end(space.user_end().as_u64())
        && !space.vmas().intersects(s, e);
    if fits && space.vmas().len() < MAX_MAP_COUNT && crate::heap::can_grow() {
        // The same rights, kind and advice: the new part merges with the
        // area.
        let mut more = Vma::new(s, e, vma.prot, vma.kind);
        more.flags = vma.flags;
        space.add_vma(more).map_err(|_| Errno::ENOMEM)?;
        return Ok(addr);
    }
    if flags & MREMAP_MAYMOVE == 0 {
        return Err(Errno::ENOMEM);
    }
    let to = space
        .vmas()
        .find_free(new_len, VirtAddr::new(MMAP_MIN), VirtAddr::new(MMAP_BASE))
        .ok_or(Errno::ENOMEM)?
        .as_u64();
    move_area(&mut space, &vma, addr, old_len, to, new_len, keep_old)
}

/// The area mremap's source `[addr, addr + old_len)` lies in: EFAULT if
/// no area holds `addr` or the range runs past its end, EINVAL for a
/// length of 0 (Linux's duplicate-a-shared-mapping form, refused for a
/// private mapping).
fn source_area(space: &UserSpace, addr: u64, old_len: u64) -> Result<Vma, Errno> {
    let vma = *space
        .vmas()
        .find(VirtAddr::new(addr))
        .ok_or(Errno::EFAULT)?;
    if old_len == 0 {
        return Err(Errno::EINVAL);
    }
    if addr.checked_add(old_len).ok_or(Errno::EFAULT)? > vma.end.as_u64() {
        return Err(Errno::EFAULT);
    }
    Ok(vma)
}

/// MREMAP_FIXED: `[addr, addr + old_len)` moves to `new_addr` with
/// `new_len` (Linux's `mremap_to` checks: an unaligned or out-of-range
/// target or one overlapping the source EINVAL, below mmap_min_addr
/// EPERM); whatever was mapped at the target is unmapped first, and a
/// shrinking source loses its tail.
fn mremap_to(
    task: &mut Task,
    addr: u64,
    old_len: u64,
    new_len: u64,
    new_addr: u64,
    keep_old: bool,
) -> SysResult {
    if !new_addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let top = mmap_end(task.space().ok_or(Errno::ENOMEM)?.user_end().as_u64());
    if new_len > top || new_addr > top - new_len {
        return Err(Errno::EINVAL);
    }
    if addr.saturating_add(old_len) > new_addr && new_addr + new_len > addr {
        return Err(Errno::EINVAL);
    }
    if new_addr < MMAP_MIN {
        return Err(Errno::EPERM);
    }
    munmap(task, new_addr, new_len)?;
    let mut old_len = old_len;
    if old_len > new_len {
        munmap(task, addr + new_len, old_len - new_len)?;
        old_len = new_len;
    }
    let mut space = task.space().ok_or(Errno::ENOMEM)?;
    let vma = source_area(&space, addr, old_len)?;
    if vma.prot.write() && overcommits(new_len - old_len) {
        return Err(Errno::ENOMEM);
    }
    move_area(&mut space, &vma, addr, old_len, new_addr, new_len, keep_old)
}

/// Moves `[addr, addr + old_len)` (inside `vma`) to a new area
/// `[to, to + new_len)` with `vma`'s rights and advice (`to` free): the
/// entries move, then the old range is unmapped (with `keep_old`,
/// MREMAP_DONTUNMAP, it stays mapped, empty: it reads zeros). ENOMEM,
/// with nothing moved, when the new area or its tables cannot be had.
fn move_area(
    space: &mut UserSpace,
    vma: &Vma,
    addr: u64,
    old_len: u64,
    to: u64,
    new_len: u64,
    keep_old: bool,
) -> SysResult {
    // The new area, and up to two splits of the old one.
    if space.vmas().len() + 3 > MAX_MAP_COUNT || !crate::heap::can_grow() {
        return Err(Errno::ENOMEM);
    }
    let (s, e) = (VirtAddr::new(to), VirtAddr::new(to + new_len));
    let mut area = Vma::new(s, e, vma.prot, vma.kind);
    area.flags = vma.flags;
    space.add_vma(area).map_err(|_| Errno::ENOMEM)?;
    if space
        .move_ptes(&mut KernelEnv, VirtAddr::new(addr), s, old_len)
        .is_err()
    {
        let _ = space.unmap(&mut KernelEnv, s, e);
        return Err(Errno::ENOMEM);
    }
    if !keep_old {
        let _ = space.unmap(
            &mut KernelEnv,
            VirtAddr::new(addr),
            VirtAddr::new(addr + old_len),
        );
    }
    Ok(to)
}
