//! The smallest user program: prints its arguments and exits 0.
#![no_std]
#![no_main]

use ulib::{println, sys};

ulib::entry!(main);

fn main(args: &ulib::Args) -> i32 {
    println!(
        "hello from pid {} (parent {})",
        sys::getpid(),
        sys::getppid()
    );
    for (i, a) in args.iter().enumerate() {
        println!("  argv[{i}] = {}", core::str::from_utf8(a).unwrap_or("?"));
    }
    0
}
