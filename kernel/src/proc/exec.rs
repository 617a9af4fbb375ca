//! Loading a static ELF program into an address space: its segments, the
//! stack with Linux's initial layout, and the program break. The ELF
//! checks and the stack layout are `folium_abi`'s (host-tested); this file
//! maps and copies.

use alloc::vec::Vec;

use folium_abi::Errno;
use folium_abi::elf::{self, ElfError};
use folium_abi::stack::{self, StackError, StackSpec, Strings, at};
use folium_mm::aspace::Brk;
use folium_mm::vma::{Prot, Vma, VmaKind};
use folium_mm::{PAGE_SIZE, VirtAddr};

use crate::memory::uspace::{KernelEnv, USER_END, UserSpace};

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

/// `AT_HWCAP` for this CPU (aarch64: FP, ASIMD, and CPUID: the ID
/// registers may be read, `arch::emulate`; x86: CPUID.1:EDX).
fn hwcap() -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        // HWCAP_FP | HWCAP_ASIMD | HWCAP_CPUID
        0b11 | 1 << 11
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
        let lin = crate::memory::frames::linear();
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

/// `AT_EXECFN` for `program`: the path it is found by.
pub fn execfn(program: &Program) -> Vec<u8> {
    let mut p = Vec::from(&b"/"[..]);
    p.extend_from_slice(program.name.as_bytes());
    p
}

/// Loads `program` into the empty `space` with `argv` and `envp`.
/// Malformed files are refused with a printed reason (ENOEXEC).
pub fn load(
    space: &mut UserSpace,
    program: &Program,
    argv: Strings<'_>,
    envp: Strings<'_>,
) -> Result<Start, Errno> {
    let plan = elf::plan(program.bytes, MACHINE, STACK_TOP - STACK_SIZE).map_err(|e| {
        println!("exec: {}: {e}", program.name);
        elf_errno(e)
    })?;
    let env = &mut KernelEnv;
    // One area per segment, page-rounded. Segments never share bytes but
    // may share a boundary page: that page becomes an area of its own with
    // both segments' rights. At most a few ranges per segment, whatever
    // the segments' sizes.
    let mut segs: Vec<(u64, u64, Prot)> = plan
        .segments
        .iter()
        .map(|s| {
            let mut prot = Prot::NONE;
            for (on, p) in [
                (s.perms.read, Prot::READ),
                (s.perms.write, Prot::WRITE),
                (s.perms.exec, Prot::EXEC),
            ] {
                if on {
                    prot = prot.union(p);
                }
            }
            let start = s.vaddr & !(PAGE_SIZE - 1);
            let end = (s.end() + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
            (start, end, prot)
        })
        .filter(|r| r.0 < r.1)
        .collect();
    segs.sort_by_key(|r| r.0);
    let mut ranges: Vec<(u64, u64, Prot)> = Vec::with_capacity(segs.len() * 2);
    for (mut s, e, prot) in segs {
        if let Some(last) = ranges.last_mut()
            && s < last.1
        {
            // The shared page: [s, s + PAGE) with both rights.
            let shared = (s, s + PAGE_SIZE, last.2.union(prot));
            last.1 = s;
            let empty = last.0 >= last.1;
            if empty {
                ranges.pop();
            }
            ranges.push(shared);
            s += PAGE_SIZE;
        }
        if s < e {
            ranges.push((s, e, prot));
        }
    }
    for (s, e, prot) in ranges {
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
    let execfn = execfn(program);
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
    .map_err(|e| match e {
        StackError::TooBig => Errno::E2BIG,
        StackError::NoMemory => Errno::ENOMEM,
    })?;
    space
        .write_bytes(env, VirtAddr::new(st.sp), &st.bytes)
        .map_err(|_| Errno::ENOMEM)?;
    Ok(Start {
        entry: plan.entry,
        sp: st.sp,
    })
}
