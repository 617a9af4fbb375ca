//! Loading a static ELF program into an address space: its segments, the
//! stack with Linux's initial layout, and the program break. The ELF
//! checks and the stack layout are `folium_abi`'s (host-tested); this file
//! maps and copies.

use alloc::vec::Vec;

use folium_abi::Errno;
use folium_abi::elf::{self, ElfError};
use folium_abi::stack::{self, StackSpec, at};
use folium_mm::aspace::Brk;
use folium_mm::vma::{Prot, Vma, VmaKind};
use folium_mm::{PAGE_SIZE, VirtAddr};

use crate::mm::uspace::{KernelEnv, USER_END, UserSpace};

/// A program the kernel can run: a name and its ELF file.
#[derive(Clone, Copy)]
pub struct Program {
    /// What `execve` finds it by (`/NAME`).
    pub name: &'static str,
    /// The ELF file.
    pub bytes: &'static [u8],
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/programs.rs"));
}

/// A program handed to the kernel as an initrd (`qemu-run --init PATH`).
static INITRD: spin::Once<Program> = spin::Once::new();

/// Registers the initrd's contents as the program `name`.
pub fn set_initrd(name: &'static str, bytes: &'static [u8]) {
    INITRD.call_once(|| Program { name, bytes });
}

/// Finds a program by path: `/NAME` or `NAME` for the embedded programs
/// and the initrd's program (which wins over an embedded one).
pub fn find(path: &[u8]) -> Option<Program> {
    let name = path.strip_prefix(b"/").unwrap_or(path);
    if let Some(p) = INITRD.get()
        && p.name.as_bytes() == name
    {
        return Some(*p);
    }
    embedded::PROGRAMS
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .map(|&(name, bytes)| Program { name, bytes })
}

/// Where a loaded program starts.
pub struct Start {
    /// First instruction.
    pub entry: u64,
    /// Initial stack pointer (argc).
    pub sp: u64,
}

/// Top of the main stack (one guard page below the end of user space).
pub const STACK_TOP: u64 = USER_END.as_u64() - PAGE_SIZE;
/// Size of the main stack area (Linux's default RLIMIT_STACK).
pub const STACK_SIZE: u64 = 8 << 20;

/// The machine programs must be built for.
pub const MACHINE: folium_abi::Machine = if cfg!(target_arch = "aarch64") {
    folium_abi::Machine::Aarch64
} else {
    folium_abi::Machine::X86_64
};

/// `AT_HWCAP` for this CPU (aarch64: FP and ASIMD; x86: CPUID.1:EDX).
fn hwcap() -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        0b11 // HWCAP_FP | HWCAP_ASIMD
    }
    #[cfg(target_arch = "x86_64")]
    {
        u64::from(core::arch::x86_64::__cpuid(1).edx)
    }
}

/// Makes code just written through the linear map visible to instruction
/// fetch (arm64 caches are not coherent for that; x86's are).
fn sync_code(space: &UserSpace, start: u64, len: u64) {
    #[cfg(target_arch = "aarch64")]
    {
        let lin = crate::mm::frames::linear();
        let mut va = start & !(PAGE_SIZE - 1);
        while va < start + len {
            if let Some((pfn, _)) = space.translate(VirtAddr::new(va)) {
                crate::arch::sync_icache(lin.ptr::<u8>(pfn.phys()) as u64, PAGE_SIZE as usize);
            }
            va += PAGE_SIZE;
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (space, start, len);
}

fn elf_errno(e: ElfError) -> Errno {
    match e {
        ElfError::TooLarge => Errno::ENOMEM,
        _ => Errno::ENOEXEC,
    }
}

/// Loads `program` into the empty `space` with `argv` and `envp`.
/// Malformed files are refused with a printed reason (ENOEXEC).
pub fn load(
    space: &mut UserSpace,
    program: &Program,
    argv: &[&[u8]],
    envp: &[&[u8]],
) -> Result<Start, Errno> {
    let plan = elf::plan(program.bytes, MACHINE, STACK_TOP - STACK_SIZE).map_err(|e| {
        println!("exec: {}: {e}", program.name);
        elf_errno(e)
    })?;
    let env = &mut KernelEnv;
    // Page ranges per segment; a page shared by two segments gets both
    // rights (the ELF checks refused overlapping bytes).
    let mut pages: Vec<(u64, u64, Prot)> = Vec::new();
    for s in &plan.segments {
        let mut prot = Prot::NONE;
        if s.perms.read {
            prot = prot.union(Prot::READ);
        }
        if s.perms.write {
            prot = prot.union(Prot::WRITE);
        }
        if s.perms.exec {
            prot = prot.union(Prot::EXEC);
        }
        let start = s.vaddr & !(PAGE_SIZE - 1);
        let end = (s.end() + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        let mut p = start;
        while p < end {
            match pages.iter_mut().find(|x| x.0 == p) {
                Some(x) => x.2 = x.2.union(prot),
                None => pages.push((p, p + PAGE_SIZE, prot)),
            }
            p += PAGE_SIZE;
        }
    }
    pages.sort_by_key(|x| x.0);
    for (s, e, prot) in pages {
        space
            .add_vma(Vma::new(
                VirtAddr::new(s),
                VirtAddr::new(e),
                prot,
                VmaKind::Image,
            ))
            .map_err(|_| Errno::ENOEXEC)?;
    }
    for s in &plan.segments {
        let bytes = &program.bytes[s.offset as usize..(s.offset + s.filesz) as usize];
        space
            .write_bytes(env, VirtAddr::new(s.vaddr), bytes)
            .map_err(|_| Errno::ENOMEM)?;
        if s.perms.exec {
            sync_code(space, s.vaddr, s.filesz);
        }
    }
    space.brk = Some(Brk {
        start: VirtAddr::new(plan.brk),
        cur: VirtAddr::new(plan.brk),
    });
    space
        .add_vma(Vma::new(
            VirtAddr::new(STACK_TOP - STACK_SIZE),
            VirtAddr::new(STACK_TOP),
            Prot::RW,
            VmaKind::Stack,
        ))
        .map_err(|_| Errno::ENOMEM)?;
    let mut random = [0u8; 16];
    crate::rng::fill(&mut random);
    let platform: &[u8] = if cfg!(target_arch = "aarch64") {
        b"aarch64"
    } else {
        b"x86_64"
    };
    let mut execfn = Vec::from(&b"/"[..]);
    execfn.extend_from_slice(program.name.as_bytes());
    let aux = [
        (at::PHDR, plan.phdr),
        (at::PHENT, elf::PHDR_SIZE),
        (at::PHNUM, plan.phnum),
        (at::PAGESZ, PAGE_SIZE),
        (at::BASE, 0),
        (at::FLAGS, 0),
        (at::ENTRY, plan.entry),
        (at::UID, 0),
        (at::EUID, 0),
        (at::GID, 0),
        (at::EGID, 0),
        (at::HWCAP, hwcap()),
        (at::HWCAP2, 0),
        (at::CLKTCK, 100),
        (at::SECURE, 0),
        (at::MINSIGSTKSZ, 2048),
    ];
    let st = stack::build(&StackSpec {
        top: STACK_TOP,
        argv,
        envp,
        execfn: &execfn,
        platform,
        random,
        aux: &aux,
    })
    .map_err(|_| Errno::E2BIG)?;
    space
        .write_bytes(env, VirtAddr::new(st.sp), &st.bytes)
        .map_err(|_| Errno::ENOMEM)?;
    Ok(Start {
        entry: plan.entry,
        sp: st.sp,
    })
}
