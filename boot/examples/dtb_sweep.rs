//! Parses every `.dtb` under the given directories with Folium's reader
//! and prints what the boot layer would take from each, then totals:
//! `cargo run -p folium-boot --example dtb_sweep -- DIR...` (for example
//! the `usr/lib/linux-image-*` tree of Debian's arm64 kernel package).
//! Exits non-zero if a blob panics the reader or yields insane ranges.

use std::path::{Path, PathBuf};

use folium_boot::cpus::StartMethod;
use folium_boot::fdt::Fdt;
use folium_boot::memplan::{self, usable_ram};
use folium_boot::{Machine, RangeList};

fn dtbs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            dtbs(&p, out);
        } else if p.extension().is_some_and(|x| x == "dtb") {
            out.push(p);
        }
    }
}

fn main() {
    let mut files = Vec::new();
    for d in std::env::args().skip(1) {
        dtbs(Path::new(&d), &mut files);
    }
    files.sort();
    let (mut parsed, mut with_ram, mut with_console, mut bad) = (0, 0, 0, 0);
    let (mut max_banks, mut max_res, mut overlapping) = (0, 0, 0);
    let (mut pis, mut planned) = (0, 0);
    // DTBs by how their CPUs start: all PSCI, all spin table, mixed or
    // unknown methods, none listed.
    let (mut psci, mut spin, mut other_start, mut no_cpus, mut most_cpus) = (0, 0, 0, 0, 0);
    for f in &files {
        let blob = std::fs::read(f).expect("read");
        let result = std::panic::catch_unwind(|| {
            let fdt = Fdt::new(&blob).ok()?;
            let f = fdt.facts();
            Some((f.console_uart, f.machine, fdt.ranges(), f.cpus))
        });
        let Ok(Some((console, machine, ranges, cpus))) = result else {
            println!("{}: not parsed ({:?})", f.display(), result.is_err());
            bad += 1;
            continue;
        };
        parsed += 1;
        most_cpus = most_cpus.max(cpus.len() + cpus.dropped);
        let all = |m: fn(&StartMethod) -> bool| cpus.as_slice().iter().all(|c| m(&c.method));
        if cpus.is_empty() {
            no_cpus += 1;
        } else if all(|m| *m == StartMethod::Psci) && cpus.psci.is_some() {
            psci += 1;
        } else if all(|m| matches!(m, StartMethod::SpinTable(_))) {
            spin += 1;
        } else {
            other_start += 1;
            let methods: Vec<_> = cpus.as_slice().iter().map(|c| c.method).collect();
            println!(
                "{}: CPUs start by {:?} (PSCI {:?})",
                f.display(),
                methods,
                cpus.psci
            );
        }
        let ram = &ranges.ram;
        max_banks = max_banks.max(ram.as_slice().len());
        max_res = max_res.max(ranges.reserved.as_slice().len());
        let mut merged = ram.clone();
        merged.normalize();
        if merged.total() != ram.total() {
            overlapping += 1;
            println!("{}: overlapping RAM {:?}", f.display(), ram);
        }
        if !ram.is_empty() {
            with_ram += 1;
            let usable = usable_ram(ram.as_slice());
            let mut res: RangeList = ranges.reserved.clone();
            res.normalize();
            match memplan::plan(usable.as_slice(), res.as_slice(), Some) {
                Ok(p) if p.unused.is_empty() => planned += 1,
                other => println!("{}: plan {:?}", f.display(), other.map(|p| p.unused)),
            }
        }
        if console.is_some() {
            with_console += 1;
        }
        if machine != Machine::Virt {
            pis += 1;
            let clipped = machine.clip_ram(&merged);
            println!(
                "{}: {:?} ram {:?} -> {:?} console {:?}",
                f.display(),
                machine,
                merged,
                clipped,
                console
            );
        }
    }
    println!(
        "{} DTBs: {} parsed, {} rejected; {} with RAM ({} planned with every bank), {} with a console found; \
         at most {} RAM banks and {} reservations in one; {} with overlapping RAM; {} Raspberry Pi 3/4",
        files.len(),
        parsed,
        bad,
        with_ram,
        planned,
        with_console,
        max_banks,
        max_res,
        overlapping,
        pis
    );
    println!(
        "CPUs: {psci} DTBs start theirs by PSCI, {spin} by spin table, {other_start} otherwise \
         (a method Folium does not drive, or PSCI without /psci), {no_cpus} list none; \
         at most {most_cpus} CPUs in one"
    );
    if bad > 0 {
        std::process::exit(1);
    }
}
