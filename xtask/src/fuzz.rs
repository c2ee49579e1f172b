//! The fuzz targets (`fuzz/`, cargo-fuzz): `cargo xtask fuzz --minutes N [target...]`, a
//! campaign that runs each target in turn and prints what each did, and the smoke step of
//! `cargo xtask test`, which runs every target for a few seconds.
//!
//! Each run starts from the committed seeds (`fuzz/seeds/<target>`, valid inputs of its
//! kind) and grows `fuzz/corpus/<target>`, which stays untracked. A crash, a panic or a hang
//! (an input that runs for more than [`INPUT_TIMEOUT_S`] seconds) ends the target's run;
//! libFuzzer writes the input to `fuzz/artifacts/<target>/` and the run reports it.
//! `docs/fuzzing.md` has the targets, the campaign table and how to reproduce a crash.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Every fuzz target, in the order a campaign runs them.
pub(crate) const TARGETS: [&str; 8] =
    ["frame", "dbus_message", "shm_header", "shm_rings", "dbus_text", "endpoint_uri", "dbus_capture", "rpc"];

/// Seconds one input may run before libFuzzer calls it a hang.
pub(crate) const INPUT_TIMEOUT_S: u32 = 10;

/// What one run of one target did, from libFuzzer's output.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// The target.
    pub target: String,
    /// Inputs executed.
    pub runs: u64,
    /// Average executions per second.
    pub exec_per_s: u64,
    /// Coverage: edges (`cov:`) and features (`ft:`) of libFuzzer's last status line.
    pub cov: u64,
    /// Features.
    pub ft: u64,
    /// Inputs in the corpus directory afterwards, and their total bytes.
    pub corpus_files: usize,
    /// Bytes of the corpus directory.
    pub corpus_bytes: u64,
    /// The input files libFuzzer wrote for a crash, a panic, a leak or a hang.
    pub crashes: Vec<String>,
    /// Whether libFuzzer exited successfully (no finding).
    pub ok: bool,
    /// The last lines of its output, for a failure report.
    pub tail: Vec<String>,
}

/// The number after `key` in a libFuzzer status line (`cov: 123`).
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Files and bytes under `dir`.
fn dir_size(dir: &str) -> (usize, u64) {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .fold((0, 0), |(n, b), m| (n + 1, b + m.len()))
        })
        .unwrap_or((0, 0))
}

/// Builds every target (one cargo invocation), so the runs start at once.
pub(crate) fn build(cargo_nightly: impl Fn() -> Command) -> Result<(), String> {
    ember_qemu::host::run(cargo_nightly().current_dir("fuzz").args(["fuzz", "build"]))
}

/// Runs `target` for `seconds` from its seeds and corpus; `echo`: pass libFuzzer's output
/// through as it comes (a campaign), else keep it for a failure report (the smoke step).
pub(crate) fn run(cargo_nightly: impl Fn() -> Command, target: &str, seconds: u64, echo: bool) -> Result<Run, String> {
    let corpus = format!("corpus/{target}");
    // libFuzzer requires its corpus directory to exist; it is not committed.
    std::fs::create_dir_all(format!("fuzz/{corpus}")).map_err(|e| format!("cannot create fuzz/{corpus}: {e}"))?;
    let seeds = format!("seeds/{target}");
    // The kept corpus (committed): what earlier campaigns found that the seeds do not
    // reach, merged down to the inputs that add coverage (docs/fuzzing.md).
    let kept = format!("corpus-kept/{target}");
    let mut dirs = vec![corpus.as_str(), seeds.as_str()];
    if std::path::Path::new("fuzz").join(&kept).is_dir() {
        dirs.push(&kept);
    }
    let max_time = format!("-max_total_time={seconds}");
    let timeout = format!("-timeout={INPUT_TIMEOUT_S}");
    let mut cmd = cargo_nightly();
    cmd.current_dir("fuzz")
        .args(["fuzz", "run", target])
        .args(&dirs)
        .args(["--", &max_time, &timeout, "-print_final_stats=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    println!("$ {}", format!("{cmd:?}").replace('"', ""));
    let mut child = cmd.spawn().map_err(|e| format!("cargo fuzz could not start: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let mut r = Run { target: target.to_string(), ..Run::default() };
    let mut tail = VecDeque::new();
    let mut average = None;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if echo {
            eprintln!("{line}");
        }
        if line.starts_with('#') && line.contains("cov: ") {
            r.runs = field(&line, "#").unwrap_or(r.runs);
            r.cov = field(&line, "cov:").unwrap_or(r.cov);
            r.ft = field(&line, "ft:").unwrap_or(r.ft);
        } else if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            r.runs = n.trim().parse().unwrap_or(r.runs);
        } else if let Some(n) = line.strip_prefix("stat::average_exec_per_sec:") {
            average = n.trim().parse().ok();
        } else if let Some(at) = line.find("Test unit written to ") {
            r.crashes.push(line[at + "Test unit written to ".len()..].trim().to_string());
        }
        tail.push_back(line);
        if tail.len() > 60 {
            tail.pop_front();
        }
    }
    let status = child.wait().map_err(|e| format!("cargo fuzz: {e}"))?;
    r.ok = status.success();
    r.exec_per_s = average.unwrap_or(r.runs / seconds.max(1));
    (r.corpus_files, r.corpus_bytes) = dir_size(&format!("fuzz/{corpus}"));
    r.tail = tail.into();
    Ok(r)
}

/// Merges `target`'s grown corpus (and its seeds) into its kept corpus,
/// `fuzz/corpus-kept/<target>` (committed): libFuzzer's `-merge=1` copies only the inputs
/// that add coverage (features) to what the kept corpus already has. Returns the kept
/// corpus's files and bytes afterwards.
pub(crate) fn keep(cargo_nightly: impl Fn() -> Command, target: &str) -> Result<(usize, u64), String> {
    let kept = format!("corpus-kept/{target}");
    std::fs::create_dir_all(format!("fuzz/{kept}")).map_err(|e| format!("cannot create fuzz/{kept}: {e}"))?;
    let corpus = format!("corpus/{target}");
    std::fs::create_dir_all(format!("fuzz/{corpus}")).map_err(|e| format!("cannot create fuzz/{corpus}: {e}"))?;
    let seeds = format!("seeds/{target}");
    let mut cmd = cargo_nightly();
    cmd.current_dir("fuzz").args(["fuzz", "run", target, &kept, &seeds, &corpus, "--", "-merge=1"]);
    let out = cmd.output().map_err(|e| format!("cargo fuzz could not start: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        return Err(format!(
            "merging {target}'s corpus failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(dir_size(&format!("fuzz/{kept}")))
}

/// The table header of [`row`].
pub(crate) const HEADER: &str =
    "target          seconds        runs   exec/s    cov     ft  corpus (files, KiB)  result";

/// One line of the summary table.
pub(crate) fn row(r: &Run, seconds: u64) -> String {
    let result = if r.ok && r.crashes.is_empty() {
        "ok".to_string()
    } else if r.crashes.is_empty() {
        "FAILED (see its output)".to_string()
    } else {
        format!("FOUND: {}", r.crashes.join(", "))
    };
    format!(
        "{:<15} {:>7} {:>11} {:>8} {:>6} {:>6} {:>8} {:>10}  {}",
        r.target,
        seconds,
        r.runs,
        r.exec_per_s,
        r.cov,
        r.ft,
        r.corpus_files,
        r.corpus_bytes.div_ceil(1024),
        result
    )
}

/// `cargo xtask fuzz --minutes N [target...]`: parses the arguments; `Err` is a usage error.
pub(crate) fn parse_args(args: &[String]) -> Result<(f64, Vec<&'static str>), String> {
    let mut minutes = None;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => {
                let m = it.next().ok_or("--minutes takes a number")?;
                let m: f64 = m.parse().map_err(|_| format!("--minutes {m}: not a number"))?;
                if !(m > 0.0 && m.is_finite()) {
                    return Err(format!("--minutes {m}: must be positive"));
                }
                minutes = Some(m);
            }
            t => match TARGETS.iter().find(|&&k| k == t) {
                Some(k) => targets.push(*k),
                None => return Err(format!("no fuzz target `{t}`; the targets: {}", TARGETS.join(", "))),
            },
        }
    }
    let minutes = minutes.ok_or("--minutes N is required")?;
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    Ok((minutes, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_status_lines() {
        let line = "#1048576\tpulse  cov: 1234 ft: 5678 corp: 321/45Kb lim: 4096 exec/s: 34952 rss: 80Mb";
        assert_eq!(field(line, "#"), Some(1_048_576));
        assert_eq!(field(line, "cov:"), Some(1234));
        assert_eq!(field(line, "ft:"), Some(5678));
        assert_eq!(field(line, "exec/s:"), Some(34952));
        assert_eq!(field(line, "nothing:"), None);
    }

    #[test]
    fn parses_its_arguments() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(parse_args(&args("--minutes 3")).unwrap(), (3.0, TARGETS.to_vec()));
        assert_eq!(parse_args(&args("--minutes 0.5 rpc frame")).unwrap(), (0.5, vec!["rpc", "frame"]));
        assert!(parse_args(&args("rpc")).unwrap_err().contains("required"));
        assert!(parse_args(&args("--minutes -1")).unwrap_err().contains("positive"));
        assert!(parse_args(&args("--minutes 1 nope")).unwrap_err().contains("no fuzz target `nope`"));
    }
}
