//! The Folium kernel: boot glue, traps, the self-test runner and (later)
//! processes and syscalls. Memory management lives in `folium-mm`.
#![no_std]
#![no_main]

extern crate alloc;

#[macro_use]
mod console;
#[macro_use]
mod ktest;

mod arch;
mod cmdline;
mod heap;
mod memory;
mod platform;
mod proc;
mod rng;
mod sched;
mod selftests;
mod smp;
mod sync;
mod syscall;
mod time;
mod uaccess;

use folium_boot::BootInfo;

folium_boot::entry_point!(kmain);

/// What the kernel does after boot, chosen on the command line.
fn kmain(info: &'static BootInfo) -> ! {
    arch::init_exceptions();
    smp::init_boot_cpu();
    heap::init();
    let board = platform::init(info);
    print_banner(info, board);
    memory::init(info, board);
    // Kernel objects for processes live on the heap: 1/64 of RAM, between
    // 4 and 64 MiB, on top of the static arena.
    let grown = heap::grow_from_frames((board.ram.total() / 64).clamp(4 << 20, 64 << 20));
    // Beyond that it grows on demand, by up to 1/16 of RAM more, and
    // gives back what it no longer uses.
    heap::set_limit(board.ram.total() / 16);
    println!(
        "mm: kernel heap {} MiB ({} MiB from RAM)",
        heap::total() >> 20,
        grown >> 20
    );
    arch::clock::init();
    if let Some(secs) = platform::rtc_epoch_secs() {
        time::set_realtime(secs);
    }
    let args = cmdline::Args::parse(info.cmdline());
    let cpus = platform::cpus(info);
    for line in smp::start_secondaries(&cpus, args.maxcpus).lines {
        println!("{line}");
    }
    if let Some(on) = args.contpte {
        memory::set_contpte(on);
    }
    if let Some(r) = info.initrd {
        // SAFETY: the boot layer reserved the initrd's pages, so nothing
        // reuses them: the bytes stay valid and unchanged for the whole run,
        // in the linear map.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                memory::frames::linear().ptr::<u8>(r.start),
                r.size() as usize,
            )
        };
        println!(
            "  initrd   {:?} {} KiB, runs as {}",
            r,
            r.size() >> 10,
            args.initrd_name
        );
        proc::exec::set_initrd(args.initrd_name, bytes);
    }
    let ok = match args.action {
        cmdline::Action::Test { filter } => ktest::run(filter),
        cmdline::Action::BenchAlloc => memory::bench::alloc(board),
        cmdline::Action::Fatal => selftests::trigger_unexpected_fault(),
        cmdline::Action::StackOverflow => selftests::overflow_kernel_stack(),
        cmdline::Action::None => true,
    };
    if let Some((name, rest)) = args.init
        && ok
    {
        run_init(name, rest);
    }
    println!("folium: powering off");
    arch::exit_qemu(if ok {
        arch::Exit::Success
    } else {
        arch::Exit::Failure
    })
}

/// Starts `init` running `name` with `rest` as its arguments, then idles
/// until init exits (which powers the machine off).
fn run_init(name: &str, rest: &str) -> ! {
    let Some(init) = proc::exec::find(b"init") else {
        println!("folium: no init program embedded");
        arch::exit_qemu(arch::Exit::Failure);
    };
    let mut argv: alloc::vec::Vec<&[u8]> = alloc::vec![b"init".as_slice(), name.as_bytes()];
    argv.extend(rest.split_ascii_whitespace().map(str::as_bytes));
    arch::timer_init();
    match proc::spawn_init(&init, &argv) {
        Ok(pid) => println!("folium: started init (pid {pid}) to run {name}"),
        Err(e) => {
            println!("folium: cannot start init: {}", e.name());
            arch::exit_qemu(arch::Exit::Failure);
        }
    }
    proc::idle_loop()
}

fn print_banner(info: &BootInfo, board: &platform::Board) {
    println!();
    println!("Folium {} on {}", env!("CARGO_PKG_VERSION"), board.name);
    println!("  cpu      {}", arch::cpu_description());
    println!("  entry    {}", arch::entry_description(info.entry_level));
    println!("  firmware {:?} {}", info.firmware, info.model());
    let cpus = platform::cpus(info);
    let ids: alloc::vec::Vec<alloc::string::String> = cpus
        .as_slice()
        .iter()
        .map(|c| alloc::format!("{:#x} {:?}", c.hw_id, c.method))
        .collect();
    println!(
        "  cpus     {} described{}: {}",
        cpus.len(),
        cpus.psci
            .map_or(alloc::string::String::new(), |c| alloc::format!(
                " (PSCI {c:?})"
            )),
        ids.join(", ")
    );
    for r in board.ram.as_slice() {
        println!("  ram      {:?} {} MiB", r, r.size() >> 20);
    }
    println!(
        "  ram      total {} MiB (from {})",
        board.ram.total() >> 20,
        board.ram_source
    );
    for r in info.ranges().reserved.as_slice() {
        println!("  reserved {:?}", r);
    }
    for r in board.devices.as_slice() {
        println!("  mmio     {:?}", r);
    }
    let l = folium_boot::image_layout();
    println!(
        "  kernel   phys {:?} virt [{:#x}..{:#x}) text {} KiB",
        info.kernel_phys,
        l.start.as_u64(),
        l.end.as_u64(),
        (l.text_end - l.start) >> 10
    );
    println!("  cmdline  \"{}\"", info.cmdline());
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    arch::begin_fatal_report();
    println!("\nKERNEL PANIC: {}", info);
    arch::exit_qemu(arch::Exit::Failure)
}
