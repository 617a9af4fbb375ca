//! The errno suite (`userspace/c/errno.c`): hostile arguments to the calls
//! a fuzzing program tried, one `errno: CASE RESULT` line per case, run on
//! Folium and on Linux in the same QEMU and compared case by case.
//!
//! Two committed lists drive the comparison:
//! - `userspace/c/errno-linux.txt`: Linux 6.12's answers, `ARCH CASE
//!   RESULT` per line, as measured in the guest (a Linux run that answers
//!   otherwise fails, and its lines are written to `out/errno/` to be
//!   reviewed and committed);
//! - the table in `docs/errno.md`: each case where Folium still answers
//!   differently, with Folium's answer and the reason. Folium must match
//!   Linux on every other case, and give exactly the recorded answer on
//!   these (a difference that went away must leave the table).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Result;
use crate::build::{self, Arch};

/// The program's name among the embedded programs.
pub const PROGRAM: &str = "errno";

/// The kernel command line of the errno boot on Folium.
pub const CMDLINE: &str = "init=errno";

/// `arch` as the lists spell it.
pub fn arch_word(arch: Arch) -> &'static str {
    match arch {
        Arch::Aarch64 => "aarch64",
        Arch::X86_64 => "x86_64",
    }
}

/// The cases one run printed, in order, or why the output is unusable.
pub fn parse_run(lines: &[String]) -> std::result::Result<Vec<(String, String)>, String> {
    let mut cases = Vec::new();
    let mut done = None;
    for l in lines {
        let Some(rest) = l.trim_end().strip_prefix("errno: ") else {
            continue;
        };
        if rest == "start" {
            continue;
        }
        if let Some(n) = rest
            .strip_prefix("done ")
            .and_then(|r| r.strip_suffix(" cases"))
        {
            done = n.parse::<usize>().ok();
            continue;
        }
        let (case, result) = rest.split_once(' ').unwrap_or((rest, ""));
        cases.push((case.to_string(), result.to_string()));
    }
    match done {
        None => Err("the suite did not finish (no `errno: done` line)".into()),
        Some(n) if n > cases.len() => Err(format!(
            "the suite counted {n} cases but printed {}",
            cases.len()
        )),
        Some(_) => Ok(cases),
    }
}

/// `ARCH CASE RESULT` lines (blank lines and `#` comments skipped): the
/// cases of `arch`, in order.
pub fn parse_reference(text: &str, arch: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.splitn(3, ' ');
            let (a, case, result) = (w.next()?, w.next()?, w.next().unwrap_or(""));
            (a == arch).then(|| (case.to_string(), result.to_string()))
        })
        .collect()
}

/// One recorded difference: Linux's answer, Folium's, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub linux: String,
    pub folium: String,
    pub reason: String,
}

/// The rows of the differences table in `doc`: `| arch | case | Linux |
/// Folium | reason |` where arch is `aarch64`, `x86_64` or `both`;
/// results in backticks. Keyed by (arch, case), `both` expanded.
pub fn parse_differences(doc: &str) -> BTreeMap<(String, String), Difference> {
    let mut out = BTreeMap::new();
    for l in doc.lines() {
        let cells: Vec<&str> = l.trim().split('|').map(str::trim).collect();
        // A row `| a | b | c | d | e |` splits into 7 cells, the outer two empty.
        if cells.len() != 7 || !cells[0].is_empty() || !cells[6].is_empty() {
            continue;
        }
        let arches: &[&str] = match cells[1] {
            "both" => &["aarch64", "x86_64"],
            "aarch64" => &["aarch64"],
            "x86_64" => &["x86_64"],
            _ => continue,
        };
        let unquote = |s: &str| s.trim_matches('`').to_string();
        for a in arches {
            out.insert(
                (a.to_string(), unquote(cells[2])),
                Difference {
                    linux: unquote(cells[3]),
                    folium: unquote(cells[4]),
                    reason: cells[5].to_string(),
                },
            );
        }
    }
    out
}

/// Folium's answer in the table for a case it does not print.
const NONE: &str = "(none)";

/// What is wrong with Folium's `run` on `arch` against Linux's answers
/// `reference` and the recorded `diffs`; empty when it all holds.
pub fn folium_problems(
    arch: &str,
    run: &[(String, String)],
    reference: &[(String, String)],
    diffs: &BTreeMap<(String, String), Difference>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let got: BTreeMap<&str, &str> = run.iter().map(|(c, r)| (c.as_str(), r.as_str())).collect();
    for (case, linux) in reference {
        let key = (arch.to_string(), case.clone());
        // A case Folium does not print at all is recorded as `(none)`.
        let folium = got.get(case.as_str()).copied().unwrap_or(NONE);
        match diffs.get(&key) {
            Some(d) if d.linux != *linux => problems.push(format!(
                "{case}: the table says Linux answers `{}`, the reference `{linux}`",
                d.linux
            )),
            Some(_) if folium == linux => problems.push(format!(
                "{case}: Folium now answers as Linux (`{linux}`): remove its row from docs/errno.md"
            )),
            Some(d) if folium != d.folium => problems.push(format!(
                "{case}: Folium `{folium}`, the table records `{}` (Linux `{linux}`)",
                d.folium
            )),
            Some(_) => {}
            None if folium == NONE => {
                problems.push(format!("{case}: not reported (Linux: `{linux}`)"))
            }
            None if folium != linux => {
                problems.push(format!("{case}: Folium `{folium}`, Linux `{linux}`"))
            }
            None => {}
        }
    }
    for (case, r) in run {
        if !reference.iter().any(|(c, _)| c == case) {
            problems.push(format!("{case}: `{r}` has no Linux answer recorded"));
        }
    }
    for (a, case) in diffs.keys() {
        if a == arch && !reference.iter().any(|(c, _)| c == case) {
            problems.push(format!(
                "{case}: a row in docs/errno.md for a case Linux never printed"
            ));
        }
    }
    problems
}

/// What differs between a Linux `run` and the recorded `reference`.
pub fn linux_problems(run: &[(String, String)], reference: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let n = run.len().max(reference.len());
    for i in 0..n {
        match (run.get(i), reference.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => problems.push(format!(
                "line {}: Linux printed {}, the reference has {}",
                i + 1,
                a.map_or("nothing".into(), |(c, r)| format!("`{c} {r}`")),
                b.map_or("nothing".into(), |(c, r)| format!("`{c} {r}`"))
            )),
        }
    }
    problems
}

/// The committed Linux answers.
pub fn reference_text() -> Result<String> {
    let p = build::root().join("userspace/c/errno-linux.txt");
    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// The committed differences table.
pub fn differences_text() -> Result<String> {
    let p = build::root().join("docs/errno.md");
    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Writes a Linux run's cases as reference lines for `arch` to
/// `out/errno/linux-ARCH.txt`; returns the path.
pub fn save_linux_run(arch: &str, run: &[(String, String)]) -> Result<PathBuf> {
    let dir = build::root().join("out/errno");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let p = dir.join(format!("linux-{arch}.txt"));
    let text: String = run
        .iter()
        .map(|(c, r)| format!("{arch} {c} {r}\n"))
        .collect();
    std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn runs_parse_and_must_finish() {
        let run = lines(&[
            "errno: start",
            "traps: errno[3] trap divide error",
            "errno: mmap_len_0 -EINVAL",
            "errno: ud2 signal 4",
            "errno: done 2 cases",
        ]);
        let cases = parse_run(&run).unwrap();
        assert_eq!(
            cases,
            vec![
                ("mmap_len_0".to_string(), "-EINVAL".to_string()),
                ("ud2".to_string(), "signal 4".to_string())
            ]
        );
        assert!(parse_run(&run[..4]).is_err());
        assert!(parse_run(&lines(&["errno: a 1", "errno: done 2 cases"])).is_err());
    }

    #[test]
    fn differences_come_from_the_table_rows() {
        let doc = "| arch | case | Linux 6.12 | Folium | reason |\n\
                   |---|---|---|---|---|\n\
                   | both | `mremap_shrink` | `same` | `-ENOSYS` | not yet |\n\
                   | aarch64 | `mrs_midr_el1` | `exit 0` | `signal 4` | no emulation |\n\
                   | mips | `x` | `1` | `2` | ignored |\n";
        let d = parse_differences(doc);
        assert_eq!(d.len(), 3);
        let k = ("x86_64".to_string(), "mremap_shrink".to_string());
        assert_eq!(d[&k].folium, "-ENOSYS");
        assert_eq!(d[&k].linux, "same");
        assert!(d.contains_key(&("aarch64".to_string(), "mrs_midr_el1".to_string())));
    }

    #[test]
    fn folium_must_match_linux_or_the_recorded_difference() {
        let reference = parse_reference(
            "# comment\nx86_64 a 0\nx86_64 b -EINVAL\naarch64 c 1\nx86_64 d signal 8\n",
            "x86_64",
        );
        assert_eq!(reference.len(), 3);
        let diffs = parse_differences(
            "| x86_64 | `b` | `-EINVAL` | `-ENOSYS` | not implemented |\n\
             | x86_64 | `d` | `signal 8` | (none) | not printed |\n",
        );
        let run = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let good = run(&[("a", "0"), ("b", "-ENOSYS")]);
        assert!(folium_problems("x86_64", &good, &reference, &diffs).is_empty());
        // A wrong answer, a missing case, an extra case.
        let bad = run(&[("a", "1"), ("e", "0")]);
        assert_eq!(folium_problems("x86_64", &bad, &reference, &diffs).len(), 3);
        // A difference that went away must leave the table.
        let fixed = run(&[("a", "0"), ("b", "-EINVAL")]);
        assert_eq!(
            folium_problems("x86_64", &fixed, &reference, &diffs).len(),
            1
        );
        // Another answer than the recorded one.
        let other = run(&[("a", "0"), ("b", "-EFAULT")]);
        assert_eq!(
            folium_problems("x86_64", &other, &reference, &diffs).len(),
            1
        );
    }

    #[test]
    fn linux_runs_must_equal_the_reference() {
        let r = parse_reference("x86_64 a 0\nx86_64 b 1\n", "x86_64");
        assert!(linux_problems(&r, &r).is_empty());
        assert_eq!(linux_problems(&r[..1], &r).len(), 1);
    }
}
