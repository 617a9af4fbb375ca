//! What `qemu-run` makes of the guest's console: the lines pass through
//! as they come, except when the guest runs the benchmark, whose output
//! is reshaped to fit a screen ([`BenchView`]); and in every case the
//! exit status init reports is read ([`InitExit`]).

/// What to do with one console line.
#[derive(Debug, PartialEq)]
pub enum Out {
    /// Print it.
    Line(String),
    /// Show it as the progress line (rewritten in place on a terminal).
    Progress(String),
    /// A JSON record: to the JSON file, or printed with `--json`.
    Json(String),
}

/// The benchmark's console, reshaped: the boot banner condensed to one
/// line, the `bench: [k/n] ...` progress lines turned into one progress
/// line, the JSON records set apart, init's own lines left to xtask's
/// closing line; the tables and everything else as they come.
#[derive(Default)]
pub struct BenchView {
    /// The banner lines held until init starts (printed as they are if
    /// the boot ends before).
    banner: Vec<String>,
    started: bool,
}

impl BenchView {
    /// The outputs for one console line.
    pub fn feed(&mut self, line: &str) -> Vec<Out> {
        let t = line.trim_end();
        if !self.started {
            if t.starts_with("folium: started init") {
                self.started = true;
                let summary = self.summary();
                self.banner.clear();
                return summary.into_iter().map(Out::Line).collect();
            }
            if is_fatal(t) {
                // Something went wrong before the program ran: show all.
                self.started = true;
                let mut out: Vec<Out> = self.banner.drain(..).map(Out::Line).collect();
                out.push(Out::Line(t.to_string()));
                return out;
            }
            self.banner.push(t.to_string());
            return Vec::new();
        }
        if t.starts_with("bench: [") {
            vec![Out::Progress(t.to_string())]
        } else if t.starts_with('{') {
            vec![Out::Json(t.to_string())]
        } else if InitExit::is_init_line(t) || t.is_empty() {
            Vec::new()
        } else {
            vec![Out::Line(t.to_string())]
        }
    }

    /// What is still held when the console ends: the banner, if the
    /// program never started.
    pub fn finish(&mut self) -> Vec<Out> {
        self.banner.drain(..).map(Out::Line).collect()
    }

    /// `Folium 0.1.0 on virt: Arm Cortex-A72, 512 MiB RAM`, from the
    /// banner's first, `cpu` and `ram total` lines.
    fn summary(&self) -> Option<String> {
        let head = self.banner.iter().find(|l| l.starts_with("Folium "))?;
        // `  cpu      Arm Cortex-A72 (MIDR_EL1 ...)`, `  ram      total 512 MiB (...)`
        let field = |name: &str, prefix: &str| {
            self.banner.iter().find_map(|l| {
                let rest = l.trim_start().strip_prefix(name)?;
                let rest = rest.starts_with(' ').then_some(rest.trim_start())?;
                let value = rest.strip_prefix(prefix)?;
                Some(value.split(" (").next().unwrap_or("").to_string())
            })
        };
        let mut parts = Vec::new();
        parts.extend(field("cpu", ""));
        parts.extend(field("ram", "total ").map(|r| format!("{r} RAM")));
        Some(if parts.is_empty() {
            head.clone()
        } else {
            format!("{head}: {}", parts.join(", "))
        })
    }
}

/// A line that ends the boot badly.
fn is_fatal(line: &str) -> bool {
    [
        "KERNEL PANIC",
        "UNEXPECTED EXCEPTION",
        "KERNEL STACK OVERFLOW",
    ]
    .iter()
    .any(|w| line.contains(w))
}

/// The progress line's phase (`sys`, `fork`, `fault+munmap`): where plain
/// output (not a terminal) prints one progress line per phase.
pub fn phase(progress: &str) -> &str {
    progress
        .split_once("] ")
        .map_or("", |(_, what)| what)
        .split([' ', ':'])
        .next()
        .unwrap_or("")
}

/// How init's program ended, from init's console lines: `init: pid N
/// exited with status S` or `init: pid N killed by signal S` for each
/// process it reaped, then the kernel's `folium: init exited with status
/// C, powering off`, C being what a shell would report (128 + signal for
/// a signal).
#[derive(Debug, Default, PartialEq)]
pub struct InitExit {
    /// The last process init reported: pid, and `Ok(status)` or
    /// `Err(signal)`.
    last: Option<(u32, std::result::Result<u32, u32>)>,
    /// init's own exit code, which the kernel reported.
    pub code: Option<u32>,
    /// Each reaped process whose status matched: pid and how it ended.
    matched: Option<(u32, std::result::Result<u32, u32>)>,
}

impl InitExit {
    fn is_init_line(l: &str) -> bool {
        l.starts_with("init: pid ") || l.starts_with("folium: init exited with status ")
    }

    /// Reads one console line.
    pub fn feed(&mut self, line: &str) {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("init: pid ") {
            let mut w = rest.split_whitespace();
            let pid = w.next().and_then(|p| p.parse().ok());
            let words: Vec<&str> = w.collect();
            let n = words.last().and_then(|n| n.parse().ok());
            let how = match words.get(..words.len().saturating_sub(1)) {
                Some(["exited", "with", "status"]) => n.map(Ok),
                Some(["killed", "by", "signal"]) => n.map(Err),
                _ => None,
            };
            if let (Some(pid), Some(how)) = (pid, how) {
                self.last = Some((pid, how));
                let code = match how {
                    Ok(s) => s,
                    Err(sig) => 128 + sig,
                };
                // init exits with its first program's non-zero status;
                // the reaped process that gave it is the one to name.
                if code != 0 && self.matched.is_none() {
                    self.matched = Some((pid, how));
                }
            }
        } else if let Some(rest) = l.strip_prefix("folium: init exited with status ") {
            self.code = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok());
        }
    }

    /// One line saying how the program `name` ended, if init reported it.
    pub fn describe(&self, name: &str) -> Option<String> {
        let code = self.code?;
        let who = |pid: u32| format!("{name} (pid {pid})");
        Some(match (code, self.matched.or(self.last)) {
            (0, Some((pid, _))) => format!("{} exited with status 0", who(pid)),
            (c, Some((pid, Ok(s)))) if s == c => format!("{} exited with status {s}", who(pid)),
            (c, Some((pid, Err(sig)))) if 128 + sig == c => {
                format!(
                    "{} was killed by signal {sig} ({})",
                    who(pid),
                    signal_name(sig)
                )
            }
            (c, _) => format!("init exited with status {c}"),
        })
    }
}

/// The name of a Linux signal number (the common ones).
fn signal_name(sig: u32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "\
Folium 0.1.0 on virt
  cpu      Arm Cortex-A72 (MIDR_EL1 0x410fd083)
  entry    EL1 (entered at EL1)
  ram      [0x0040000000..0x0060000000) 512 MiB
  ram      total 512 MiB (from DTB /memory)
mm: kernel heap 12 MiB (8 MiB from RAM)
folium: started init (pid 1) to run bench
bench on 6.12.0-folium: 64 MiB, 3 repetitions (quick)
bench: [1/78] sys: null syscall (0 s elapsed, ? s left)
sys: ns per operation
  case                  median        ns/op
  null_syscall         3.80 ms       1900.7
  how to read: lower is better
{\"bench\":\"sys\",\"case\":\"null_syscall\"}
bench: done in 2.8 s
init: pid 2 exited with status 0
folium: init exited with status 0, powering off";

    #[test]
    fn bench_view_keeps_the_tables_and_sets_the_rest_apart() {
        let mut v = BenchView::default();
        let mut out: Vec<Out> = BOOT.lines().flat_map(|l| v.feed(l)).collect();
        out.extend(v.finish());
        let lines: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                Out::Line(l) => Some(l.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            lines,
            [
                "Folium 0.1.0 on virt: Arm Cortex-A72, 512 MiB RAM",
                "bench on 6.12.0-folium: 64 MiB, 3 repetitions (quick)",
                "sys: ns per operation",
                "  case                  median        ns/op",
                "  null_syscall         3.80 ms       1900.7",
                "  how to read: lower is better",
                "bench: done in 2.8 s",
            ]
        );
        assert!(out.contains(&Out::Progress(
            "bench: [1/78] sys: null syscall (0 s elapsed, ? s left)".into()
        )));
        assert_eq!(out.iter().filter(|o| matches!(o, Out::Json(_))).count(), 1);
    }

    #[test]
    fn a_boot_that_fails_early_shows_its_banner() {
        let mut v = BenchView::default();
        assert!(v.feed("Folium 0.1.0 on virt").is_empty());
        let out = v.feed("KERNEL PANIC: out of memory");
        assert_eq!(out.len(), 2);
        let mut v = BenchView::default();
        v.feed("Folium 0.1.0 on virt");
        assert_eq!(v.finish(), [Out::Line("Folium 0.1.0 on virt".into())]);
    }

    #[test]
    fn phases_name_the_benchmark() {
        assert_eq!(phase("bench: [1/78] sys: null syscall (0 s)"), "sys");
        assert_eq!(phase("bench: [5/78] fork order-0 batched, rep 1/3"), "fork");
        assert_eq!(
            phase("bench: [25/78] fault+munmap 4K batched"),
            "fault+munmap"
        );
    }

    fn exit_of(lines: &[&str]) -> InitExit {
        let mut e = InitExit::default();
        for l in lines {
            e.feed(l);
        }
        e
    }

    #[test]
    fn init_exit_names_the_status_or_the_signal() {
        let e = exit_of(&[
            "init: pid 2 exited with status 3",
            "folium: init exited with status 3, powering off",
        ]);
        assert_eq!(e.code, Some(3));
        assert_eq!(
            e.describe("prog").unwrap(),
            "prog (pid 2) exited with status 3"
        );
        let e = exit_of(&[
            "init: pid 3 exited with status 0",
            "init: pid 2 killed by signal 9",
            "folium: init exited with status 137, powering off",
        ]);
        assert_eq!(e.code, Some(137));
        assert_eq!(
            e.describe("prog").unwrap(),
            "prog (pid 2) was killed by signal 9 (SIGKILL)"
        );
        let e = exit_of(&[
            "init: pid 2 exited with status 0",
            "folium: init exited with status 0, powering off",
        ]);
        assert_eq!(
            e.describe("bench").unwrap(),
            "bench (pid 2) exited with status 0"
        );
        // No init (e.g. `-- test`): nothing to say.
        assert_eq!(exit_of(&["ktest: 3 passed, 0 failed"]).describe("x"), None);
    }
}
