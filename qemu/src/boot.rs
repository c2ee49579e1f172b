//! Booting a board's kernel with an initramfs under qemu-system, with a time limit, the
//! console streamed to a log file, and the verdict read from the console lines.
//!
//! qemu's own exit status says nothing about the guest (a panicking `/init` still ends
//! with 0), so only the guest's verdict line counts; a guest that prints none, or that is
//! still running at the time limit, fails.

use crate::board::Board;
use crate::protocol::{self, Line};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A test case's result as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The test binary.
    pub binary: String,
    /// The test's name.
    pub name: String,
    /// `ok`, `FAILED`, `ignored` or `skipped`.
    pub result: String,
    /// Why it was skipped.
    pub note: String,
}

/// What one boot showed.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every test case reported.
    pub tests: Vec<TestResult>,
    /// Each binary's `(name, exit, seconds)`.
    pub binaries: Vec<(String, String, String)>,
    /// The verdict line's counts, if the guest printed one.
    pub verdict: Option<(bool, String)>,
    /// `Ok` only for a `PASS` verdict from a guest that ran every binary; else why not.
    pub outcome: Result<(), String>,
    /// How long the boot took, qemu start to exit.
    pub took: Duration,
}

impl Report {
    /// `(passed, failed, skipped)` test cases.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |r: &str| self.tests.iter().filter(|t| t.result == r).count();
        (n("ok"), n("FAILED"), n("skipped"))
    }
}

/// The qemu-system command line that boots `kernel` with `initrd` on `board`.
pub fn command(board: &Board, kernel: &Path, initrd: &Path, extra_cmdline: &str) -> Command {
    let mut c = Command::new(&board.qemu_system);
    // One test binary may take a third of the whole boot's limit; a hung one is then
    // reported by name, and the others still run.
    let append = format!(
        "console={} panic=-1 loglevel=4 rdinit=/init ember_binary_timeout={} {extra_cmdline}",
        board.console,
        (board.boot_timeout_s / 3).max(1)
    );
    c.args(["-M", &board.machine, "-cpu", &board.cpu, "-m", "1024", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append.trim_end()]);
    c
}

/// Boots, streams the console to `log`, and judges the run. `expected_binaries` is how
/// many test binaries the manifest holds (each must report).
pub fn boot(
    board: &Board,
    kernel: &Path,
    initrd: &Path,
    extra_cmdline: &str,
    timeout: Duration,
    log: &Path,
    expected_binaries: usize,
) -> Report {
    let started = Instant::now();
    let mut report =
        Report { tests: Vec::new(), binaries: Vec::new(), verdict: None, outcome: Ok(()), took: Duration::ZERO };
    let mut logfile = match std::fs::File::create(log) {
        Ok(f) => f,
        Err(e) => {
            report.outcome = Err(format!("cannot create {}: {e}", log.display()));
            return report;
        }
    };
    let mut cmd = command(board, kernel, initrd, extra_cmdline);
    let _ = writeln!(logfile, "$ {}", format!("{cmd:?}").replace('"', ""));
    let mut child = match cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => {
            report.outcome = Err(format!("{} could not start: {e}", board.qemu_system));
            return report;
        }
    };
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let stdout = child.stdout.take().expect("piped");
    let lines = std::thread::spawn(move || {
        let (mut kept, mut panics) = (Vec::new(), Vec::new());
        let mut last = std::collections::VecDeque::new();
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
            buf.clear();
            let _ = writeln!(logfile, "{line}");
            if let Some(l) = protocol::parse(&line) {
                kept.push(l);
            }
            if line.contains("Kernel panic") || line.contains("panicked at") {
                panics.push(line.clone());
            }
            last.push_back(line);
            if last.len() > 8 {
                last.pop_front();
            }
        }
        (kept, panics, last)
    });
    let timed_out = loop {
        match child.try_wait() {
            Ok(Some(_)) => break false,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break true;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => {
                // Cannot tell: stop it, so that the console readers end.
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    report.took = started.elapsed();
    let (kept, panics, last) = lines.join().unwrap_or_default();
    let qemu_errors = errors.join().unwrap_or_default();
    for l in kept {
        match l {
            Line::Test { binary, result, name, note } => report.tests.push(TestResult { binary, name, result, note }),
            Line::Binary { binary, exit, seconds } => report.binaries.push((binary, exit, seconds)),
            Line::Verdict { pass, counts } => report.verdict = Some((pass, counts)),
        }
    }
    let tail: Vec<String> = last.into_iter().collect();
    report.outcome = judge(&report, timed_out, timeout, expected_binaries, &panics, &tail, &qemu_errors);
    report
}

fn judge(
    r: &Report,
    timed_out: bool,
    timeout: Duration,
    expected: usize,
    panics: &[String],
    tail: &[String],
    qemu_errors: &str,
) -> Result<(), String> {
    let tail = tail.join("\n    ");
    if timed_out {
        let at = if r.verdict.is_some() {
            " after its verdict, without powering off".to_string()
        } else {
            format!(", {} of {expected} test binaries done", r.binaries.len())
        };
        return Err(format!(
            "timed out after {}s (the guest hung{at}); last console lines:\n    {tail}",
            timeout.as_secs()
        ));
    }
    let Some((pass, counts)) = &r.verdict else {
        let why = match panics.first() {
            Some(p) => format!(" ({p})"),
            None if !qemu_errors.trim().is_empty() => format!(" (qemu: {})", qemu_errors.trim()),
            None => String::new(),
        };
        return Err(format!("the guest ended without a verdict line{why}; last console lines:\n    {tail}"));
    };
    let failed: Vec<String> =
        r.tests.iter().filter(|t| t.result == "FAILED").map(|t| format!("{}::{}", t.binary, t.name)).collect();
    let bad: Vec<String> =
        r.binaries.iter().filter(|b| b.1 != "0").map(|(n, e, _)| format!("{n} (exit {e})")).collect();
    if !pass || !failed.is_empty() || !bad.is_empty() {
        return Err(format!(
            "verdict {} {counts}; failed tests: [{}]; failed binaries: [{}]",
            if *pass { "PASS" } else { "FAIL" },
            failed.join(", "),
            bad.join(", ")
        ));
    }
    if r.binaries.len() != expected {
        return Err(format!("{} of {expected} test binaries reported", r.binaries.len()));
    }
    Ok(())
}
