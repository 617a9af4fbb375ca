//! `cargo xtask fuzz`: a long run of `userspace/fuzz` on one board, with
//! the console watched for the ways a run can fail: a kernel panic or
//! unexpected exception, the fuzzer's own `fuzz: FAILED` (a wait status
//! the plan does not allow, a failed mm audit, MemFree not back), a hang
//! (no console line for `--stall` seconds), or the whole run past
//! `--timeout`. Each failure is reported with its seed and round and the
//! command that replays that round alone.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::build;
use crate::qemu::{self, Spec};
use crate::{FuzzArgs, Result};

/// What the console showed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Verdict {
    /// The last round the fuzzer announced.
    round: Option<u64>,
    /// The `fuzz: ok ...` line.
    ok: Option<String>,
    /// Why the run failed.
    failure: Option<String>,
}

/// Reads `lines` (as printed, in order) into a verdict; `stalled` and
/// `timed_out` say how the watch ended.
fn verdict(lines: &[String], stalled: Option<u64>, timed_out: bool) -> Verdict {
    let mut v = Verdict::default();
    for (i, l) in lines.iter().enumerate() {
        if let Some(r) = l.strip_prefix("fuzz: round ") {
            v.round = r.trim().parse().ok();
        } else if l.starts_with("fuzz: ok ") {
            v.ok = Some(l.clone());
        } else if l.starts_with("fuzz: FAILED") && v.failure.is_none() {
            // The failure and the lines it prints after it (an audit).
            let more: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|m| !m.starts_with("fuzz: seed"))
                .map(String::as_str)
                .collect();
            v.failure = Some(
                std::iter::once(l.as_str())
                    .chain(more)
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        } else if (l.contains("KERNEL PANIC") || l.contains("UNEXPECTED EXCEPTION"))
            && v.failure.is_none()
        {
            v.failure = Some(format!("kernel: {l}"));
        } else if l.starts_with("init: mm audit after fuzz FAILED") && v.failure.is_none() {
            v.failure = Some("the mm audit after the fuzzer failed".into());
        }
    }
    if v.failure.is_none() && v.ok.is_none() {
        if let Some(s) = stalled {
            v.failure = Some(format!("hang: no console output for {s} s"));
        } else if timed_out {
            v.failure = Some("the run outlasted --timeout".into());
        } else {
            v.failure = Some("the fuzzer ended without a verdict".into());
        }
    }
    v
}

/// `cargo xtask fuzz`.
pub fn run(o: &FuzzArgs) -> Result<bool> {
    qemu::ensure_installed()?;
    let profile = if o.checked {
        build::Profile::Checked
    } else {
        build::Profile::Release
    };
    let kernel = build::kernel_with(o.board.arch(), profile)?;
    let cmdline = format!(
        "init=fuzz --seed {} --from {} --iters {} --trace",
        o.seed, o.from, o.iters
    );
    let mut spec = Spec::new(o.board, &cmdline);
    spec.mem = o.mem.clone();
    if let Some(n) = o.smp {
        o.board.check_smp(n)?;
        spec.smp = Some(n);
    }
    let mut cmd = spec.command(&kernel, false)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    qemu::print_command(&cmd);
    println!(
        "fuzz: {} seed {} rounds {}..{}",
        o.board.name(),
        o.seed,
        o.from,
        o.from + o.iters
    );
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(out).split(b'\n').map_while(|l| l.ok()) {
                let _ = tx.send(String::from_utf8_lossy(&l).replace('\r', ""));
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(|l| l.ok()) {
                let _ = tx.send(format!("qemu: {l}"));
            }
        }));
    }
    drop(tx);
    let stall = Duration::from_secs(o.stall);
    let deadline = start + Duration::from_secs(o.timeout);
    let mut lines = Vec::new();
    let (mut stalled, mut timed_out) = (None, false);
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        match rx.recv_timeout(stall.min(deadline - now)) {
            Ok(l) => {
                let progress = l.starts_with("fuzz: seed")
                    || l.starts_with("fuzz: ok")
                    || l.starts_with("fuzz: FAILED")
                    || l.contains("PANIC");
                if progress || o.echo {
                    println!("{l}");
                }
                lines.push(l);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() < deadline {
                    stalled = Some(o.stall);
                }
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if stalled.is_some() || timed_out {
        let _ = child.kill();
    }
    let _ = child.wait();
    for r in readers {
        let _ = r.join();
    }
    let v = verdict(&lines, stalled, timed_out);
    let secs = start.elapsed().as_secs_f64();
    match (&v.failure, &v.ok) {
        (None, Some(ok)) => {
            println!("fuzz: {} passed in {secs:.0} s: {ok}", o.board.name());
            Ok(true)
        }
        (failure, _) => {
            let round = v.round.unwrap_or(o.from);
            println!(
                "fuzz: {} FAILED, seed {} round {round}, after {secs:.0} s:\n{}",
                o.board.name(),
                o.seed,
                failure.as_deref().unwrap_or("?")
            );
            let tail = lines.len().saturating_sub(20);
            for l in &lines[tail..] {
                println!("  | {l}");
            }
            println!(
                "replay: cargo xtask fuzz --board {} --seed {} --from {round} --iters 1 --echo",
                o.board.name(),
                o.seed
            );
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_way_to_fail_is_named_with_its_round() {
        let ok = lines(&[
            "fuzz: round 0",
            "fuzz: round 1",
            "fuzz: ok seed 3 rounds 0..2",
        ]);
        let v = verdict(&ok, None, false);
        assert_eq!((v.round, v.failure), (Some(1), None));
        let panic = lines(&["fuzz: round 7", "KERNEL PANIC: boom"]);
        let v = verdict(&panic, None, false);
        assert_eq!(v.round, Some(7));
        assert!(v.failure.unwrap().contains("KERNEL PANIC: boom"));
        let failed = lines(&[
            "fuzz: round 4",
            "fuzz: FAILED seed 3 round 4: mm audit failed:",
            "audit: FAILED: 1 findings",
            "fuzz: seed 3 rounds 0..9 syscalls 9",
        ]);
        let f = verdict(&failed, None, false).failure.unwrap();
        assert!(f.contains("round 4") && f.contains("1 findings"), "{f}");
        let hang = lines(&["fuzz: round 2"]);
        let v = verdict(&hang, Some(60), false);
        assert_eq!(v.round, Some(2));
        assert!(v.failure.unwrap().starts_with("hang"));
        assert!(verdict(&hang, None, false).failure.is_some(), "no verdict");
        assert!(
            verdict(&ok, None, true).failure.is_none(),
            "ok before the deadline"
        );
    }
}
