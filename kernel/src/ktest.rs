//! In-guest self-tests: registered by name with `kernel_test!` (each lands
//! in the `.kernel_tests` linker section), run when the command line says
//! `test` or `test=<filter>`. One line per test, then `N passed, N failed`.

use alloc::string::String;

/// Why a test failed: where, and a message.
pub type TestResult = Result<(), String>;

/// One registered self-test.
#[repr(C)]
pub struct KernelTest {
    /// Full name (`module::function`).
    pub name: &'static str,
    /// The test body.
    pub func: fn() -> TestResult,
}

unsafe extern "C" {
    static __kernel_tests_start: u8;
    static __kernel_tests_end: u8;
}

/// Every registered test, in link order.
pub fn all() -> &'static [KernelTest] {
    // SAFETY: the linker script brackets the `.kernel_tests` section, which
    // holds only `KernelTest` statics placed by `kernel_test!` (8-aligned,
    // `repr(C)`, no padding between them).
    unsafe {
        let start = &raw const __kernel_tests_start;
        let end = &raw const __kernel_tests_end;
        let n = (end as usize - start as usize) / size_of::<KernelTest>();
        core::slice::from_raw_parts(start.cast::<KernelTest>(), n)
    }
}

/// Strips the crate name from a `module_path!()`-based test name.
fn short(name: &str) -> &str {
    name.strip_prefix("folium::").unwrap_or(name)
}

/// Runs every test whose name contains `filter`; true if all passed.
pub fn run(filter: &str) -> bool {
    let tests = all();
    let selected = tests.iter().filter(|t| short(t.name).contains(filter));
    println!(
        "ktest: running {} of {} tests (filter \"{}\")",
        selected.clone().count(),
        tests.len(),
        filter
    );
    let (mut passed, mut failed) = (0, 0);
    for t in selected {
        let pages_before = crate::memory::frames::stats().free_pages;
        let heap_before = crate::heap::used();
        let mut result = (t.func)();
        // Measure both before formatting a message (formatting allocates).
        let pages_after = crate::memory::frames::stats().free_pages;
        let heap_after = crate::heap::used();
        if result.is_ok() && pages_after != pages_before {
            result = Err(alloc::format!(
                "free pages {pages_before} before, {pages_after} after"
            ));
        }
        if result.is_ok() && heap_after > heap_before {
            result = Err(alloc::format!(
                "heap grew by {} bytes",
                heap_after - heap_before
            ));
        }
        // The books balance after every test (no process exists yet).
        if result.is_ok() {
            match crate::memory::audit::run(&[]) {
                Ok(r) if r.ok() => {}
                Ok(r) => {
                    let mut text = String::new();
                    let _ = r.write(&mut text);
                    result = Err(alloc::format!("mm audit after the test: {text}"));
                }
                Err(e) => result = Err(alloc::format!("mm audit not run: {e:?}")),
            }
        }
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {} ... ok", short(t.name));
            }
            Err(why) => {
                failed += 1;
                println!("test {} ... FAILED: {}", short(t.name), why);
            }
        }
    }
    println!("ktest: {} passed, {} failed", passed, failed);
    failed == 0
}

/// Registers a self-test: `kernel_test!(fn name() { ...; Ok(()) });`
macro_rules! kernel_test {
    (fn $name:ident() $body:block) => {
        fn $name() -> $crate::ktest::TestResult $body
        const _: () = {
            #[used]
            #[unsafe(link_section = ".kernel_tests")]
            static TEST: $crate::ktest::KernelTest = $crate::ktest::KernelTest {
                name: concat!(module_path!(), "::", stringify!($name)),
                func: $name,
            };
        };
    };
}

/// Fails the enclosing test (returns `Err`) unless the condition holds.
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            return Err(alloc::format!("{}:{}: check failed: {}", file!(), line!(), stringify!($cond)));
        }
    };
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(alloc::format!("{}:{}: {}: {}", file!(), line!(), stringify!($cond), format_args!($($msg)+)));
        }
    };
}

/// Evaluates to the `Some` value, or fails the enclosing test.
macro_rules! check_some {
    ($opt:expr) => {
        check_some!($opt, "")
    };
    ($opt:expr, $($msg:tt)+) => {
        match $opt {
            Some(v) => v,
            None => {
                return Err(alloc::format!(
                    "{}:{}: {} is None {}",
                    file!(), line!(), stringify!($opt), format_args!($($msg)+)
                ))
            }
        }
    };
}

/// Fails the enclosing test unless the two values are equal.
macro_rules! check_eq {
    ($a:expr, $b:expr) => {
        check_eq!($a, $b, "")
    };
    ($a:expr, $b:expr, $($msg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(alloc::format!(
                "{}:{}: {} == {} failed: {:?} != {:?} {}",
                file!(), line!(), stringify!($a), stringify!($b), a, b, format_args!($($msg)+)
            ));
        }
    }};
}
