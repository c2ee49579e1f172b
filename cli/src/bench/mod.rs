//! `emberctl bench`: the runner, the statistics and the report.
//!
//! Every row is measured the same way: a warm-up, then many per-iteration samples (for
//! operations shorter than a microsecond, one sample times a small batch and is divided by
//! the batch size), then percentiles of the samples. A row is printed next to the baseline
//! measured in the same run, and the ratio of their medians is the figure that matters:
//! absolute times on a shared 2-vCPU VM move by tens of percent from run to run.

mod codec;
mod dbus;
mod fanout;
mod fdio;
mod harness;
mod pipe;
mod queues;
mod shm;
mod sockets;
mod sweep;
mod sync;

pub use harness::peer;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Samples per in-process row in quick mode.
const QUICK_SAMPLES: usize = 20_000;
/// ... and in full mode.
const FULL_SAMPLES: usize = 100_000;

/// Parsed `emberctl bench` options.
#[derive(Debug, Clone)]
pub struct Options {
    pub full: bool,
    pub json: bool,
    pub only: Option<String>,
    pub size: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    /// `--samples`: samples per row instead of the mode's (tests run tiny benches).
    pub samples: Option<usize>,
    /// `--sweep <name>`: how cost grows instead of the fixed rows ([`sweep::SWEEPS`], or
    /// `all`).
    pub sweep: Option<String>,
    /// `--csv <path>`: the rows as CSV too.
    pub csv: Option<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            full: false,
            json: false,
            only: None,
            size: None,
            cpus: None,
            samples: None,
            sweep: None,
            csv: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => o.full = false,
                "--full" => o.full = true,
                "--json" => o.json = true,
                "--only" => o.only = Some(value("--only")?),
                "--sweep" => {
                    let v = value("--sweep")?;
                    if v != "all" && !sweep::SWEEPS.contains(&v.as_str()) {
                        return Err(format!("--sweep: `{v}` is not one of {}, all", sweep::SWEEPS.join(", ")));
                    }
                    o.sweep = Some(v);
                }
                "--csv" => o.csv = Some(value("--csv")?),
                "--size" => {
                    let v = value("--size")?;
                    let n: usize = v.parse().map_err(|_| format!("--size: `{v}` is not a byte count"))?;
                    if n == 0 || n > ember_core::frame::MAX_PAYLOAD_LEN {
                        return Err(format!("--size: {n} is outside 1..={}", ember_core::frame::MAX_PAYLOAD_LEN));
                    }
                    o.size = Some(n);
                }
                "--samples" => {
                    let v = value("--samples")?;
                    match v.parse::<usize>() {
                        Ok(n) if n >= 10 => o.samples = Some(n),
                        _ => return Err(format!("--samples: `{v}` is not a count of at least 10")),
                    }
                }
                "--cpus" => {
                    let v = value("--cpus")?;
                    let cpus = v
                        .split(',')
                        .map(|c| c.trim().parse::<usize>().map_err(|_| format!("--cpus: `{c}` is not a CPU number")))
                        .collect::<Result<Vec<_>, _>>()?;
                    if cpus.is_empty() || cpus.len() > 2 {
                        return Err("--cpus takes one or two CPU numbers, e.g. 0,1".into());
                    }
                    o.cpus = Some(cpus);
                }
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(o)
    }

    /// Samples per row.
    pub fn samples(&self) -> usize {
        self.samples.unwrap_or(if self.full { FULL_SAMPLES } else { QUICK_SAMPLES })
    }

    /// A count for a row family: `full` in full mode, `quick` in quick mode, and with
    /// `--samples n` the quick count scaled by `n` over the quick mode's samples, at least
    /// `floor`.
    pub fn pick(&self, full: usize, quick: usize, floor: usize) -> usize {
        match (self.full, self.samples) {
            (true, None) => full,
            (false, None) => quick,
            (true, Some(n)) => (full * n / FULL_SAMPLES).max(floor),
            (false, Some(n)) => (quick * n / QUICK_SAMPLES).max(floor),
        }
    }

    /// Whether a row named `name` is selected by `--only`.
    pub fn selected(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|p| name.starts_with(p))
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured, e.g. `codec/frame`.
    pub mechanism: String,
    /// Payload bytes per message.
    pub size: usize,
    /// Nanoseconds per message (per operation), from the samples.
    pub stats: Stats,
    /// The row this one is compared with, if any.
    pub baseline: Option<String>,
    /// Median of this row over median of the baseline.
    pub ratio: Option<f64>,
    /// A note printed under the table (what the row includes).
    pub note: Option<&'static str>,
    /// The sweep this row is a point of (`--sweep`): its name and the point's x (payload
    /// bytes, readers, requests in flight).
    pub sweep: Option<(&'static str, usize)>,
    /// A figure other than time, e.g. `("lost_per_record", 0.02)`.
    pub extra: Option<(&'static str, f64)>,
}

/// Percentiles of per-operation samples, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub samples: usize,
}

impl Stats {
    /// Percentiles of `samples` (ns per operation); sorts them.
    pub fn from_samples(samples: &mut [f64]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        Stats { p50: at(0.50), p99: at(0.99), p999: at(0.999), samples: samples.len() }
    }

    /// Messages per second at the median.
    pub fn msgs_per_sec(&self) -> f64 {
        1e9 / self.p50
    }

    /// Payload megabytes (10^6) per second at the median.
    pub fn mb_per_sec(&self, size: usize) -> f64 {
        size as f64 * 1e3 / self.p50
    }
}

/// Calls `op` in batches and returns per-operation samples (ns) for two operations,
/// alternating between them batch by batch so both see the same machine noise.
///
/// The batch size is chosen so one batch takes about 2 µs, well above the clock's
/// resolution; `warmup` batches of each are discarded first.
pub fn sample_pair(samples: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    let batch = calibrate(&mut a).max(calibrate(&mut b));
    let warmup = samples / 10 + 10;
    let mut sa = Vec::with_capacity(samples);
    let mut sb = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let ta = time_batch(&mut a, batch);
        let tb = time_batch(&mut b, batch);
        if i >= warmup {
            sa.push(ta);
            sb.push(tb);
        }
    }
    (sa, sb)
}

fn time_batch(op: &mut impl FnMut(), batch: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        op();
    }
    t.elapsed().as_nanos() as f64 / batch as f64
}

/// Batch size so that one batch takes at least 2 µs.
///
/// The operation runs a few times first: a cold first call (page faults on a CRC table,
/// the CPU detection at a process's first CRC) once took over 2 µs on its own and left a
/// 30 ns operation timed one call at a time, at the clock's resolution.
fn calibrate(op: &mut impl FnMut()) -> usize {
    for _ in 0..4 {
        op();
    }
    let mut batch = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            op();
        }
        if t.elapsed() >= Duration::from_micros(2) || batch >= 1 << 20 {
            return batch;
        }
        batch *= 2;
    }
}

/// A progress line on stderr, overwritten in place; silent when stderr is not a terminal.
pub struct Progress {
    tty: bool,
    started: Instant,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress { tty: std::io::stderr().is_terminal(), started: Instant::now() }
    }

    pub fn step(&self, what: &str) {
        if self.tty {
            eprint!("\r\x1b[K[{:5.1}s] measuring {what} ...", self.started.elapsed().as_secs_f64());
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

/// Pins the calling thread to `cpu`.
pub(crate) fn pin(cpu: usize) -> Result<(), String> {
    let mut set = rustix::thread::CpuSet::new();
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return Err(format!("CPU {cpu} is out of range"));
    }
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
}

/// The CPUs the measurements run on: `--cpus`, else the first two this process may use.
fn choose_cpus(opts: &Options) -> Result<Vec<usize>, String> {
    if let Some(c) = &opts.cpus {
        return Ok(c.clone());
    }
    let allowed = rustix::thread::sched_getaffinity(None).map_err(|e| format!("sched_getaffinity: {e}"))?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).take(2).collect())
}

/// Runs every selected suite and prints the report.
pub fn run(opts: &Options) -> ExitCode {
    let cpus = match choose_cpus(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("emberctl bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // In-process suites run on the first CPU; cross-process suites use both.
    if let Some(&first) = cpus.first()
        && let Err(e) = pin(first)
    {
        eprintln!("emberctl bench: {e}");
        return ExitCode::FAILURE;
    }
    let progress = Progress::new();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    if opts.sweep.is_some() {
        sweep::run(opts, &cpus, &progress, &mut rows, &mut skipped);
    } else {
        run_rows(opts, &cpus, &progress, &mut rows, &mut skipped);
    }
    progress.done();
    for s in &skipped {
        eprintln!("emberctl bench: {s}");
    }
    if rows.is_empty() && skipped.is_empty() {
        eprintln!("emberctl bench: no mechanism matches --only {}", opts.only.as_deref().unwrap_or(""));
        return ExitCode::from(2);
    }
    if let Some(path) = &opts.csv
        && let Err(e) = std::fs::write(path, csv(&rows))
    {
        eprintln!("emberctl bench: --csv {path}: {e}");
        return ExitCode::FAILURE;
    }
    if opts.json {
        println!("{}", json(opts, &cpus, &rows, &skipped));
    } else {
        print!("{}", table(opts, &cpus, &rows));
    }
    ExitCode::SUCCESS
}

/// The fixed rows of every suite that `--only` selects.
fn run_rows(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>, skipped: &mut Vec<String>) {
    codec::run(opts, progress, rows);
    if let Err(e) = shm::run(opts, cpus, progress, rows) {
        skipped.push(format!("cross-process shm rows: {e}"));
    }
    if let Err(e) = fanout::run(opts, cpus, progress, rows) {
        skipped.push(format!("seqlock and broadcast rows: {e}"));
    }
    if let Err(e) = pipe::run(opts, cpus, progress, rows) {
        skipped.push(format!("pipe rows: {e}"));
    }
    if let Err(e) = queues::run(opts, cpus, progress, rows) {
        skipped.push(format!("queue, FIFO and signal rows: {e}"));
    }
    if let Err(e) = sockets::run(opts, cpus, progress, rows) {
        skipped.push(format!("socket rows: {e}"));
    }
    if let Err(e) = sync::run(opts, cpus, progress, rows) {
        skipped.push(format!("sync and rpc rows: {e}"));
    }
    if let Err(e) = dbus::run(opts, cpus, progress, rows) {
        skipped.push(format!("dbus rows: {e}"));
    }
}

fn table(opts: &Options, cpus: &[usize], rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "emberctl bench ({} mode, {} samples per in-process row, CPUs {:?}, crc32c: {})",
        if opts.full { "full" } else { "quick" },
        opts.samples(),
        cpus,
        ember_core::crc32c::implementation()
    );
    let _ = writeln!(
        s,
        "{:<26} {:>7} {:>10} {:>10} {:>10} {:>13} {:>10} {:>8}  {:<26} {:>7}",
        "mechanism", "size B", "p50 ns", "p99 ns", "p99.9 ns", "msgs/s", "MB/s", "samples", "baseline", "ratio"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<26} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>13.0} {:>10.1} {:>8}  {:<26} {:>7}",
            match r.sweep {
                Some((name, x)) => format!("{} [{name} {x}]", r.mechanism),
                None => r.mechanism.clone(),
            },
            r.size,
            r.stats.p50,
            r.stats.p99,
            r.stats.p999,
            r.stats.msgs_per_sec(),
            r.stats.mb_per_sec(r.size),
            r.stats.samples,
            r.baseline.as_deref().unwrap_or("-"),
            r.ratio.map_or("-".to_string(), |x| format!("{x:.2}x")),
        );
        if let Some((name, v)) = r.extra {
            s.pop();
            let _ = writeln!(s, "  {name} {v:.4}");
        }
    }
    let mut notes: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if let Some(n) = r.note
            && !notes.iter().any(|(_, m)| *m == n)
        {
            notes.push((r.mechanism.as_str(), n));
        }
    }
    for (m, n) in notes {
        let _ = writeln!(s, "  {m}: {n}");
    }
    for r in rows.iter().filter(|r| r.mechanism == "crc32c") {
        let _ = writeln!(
            s,
            "  crc32c over {} B: {:.2} GB/s at the median ({:.2} GB/s portable)",
            r.size,
            r.stats.mb_per_sec(r.size) / 1000.0,
            rows.iter()
                .find(|b| b.mechanism == "crc32c/portable" && b.size == r.size)
                .map_or(0.0, |b| b.stats.mb_per_sec(b.size) / 1000.0)
        );
    }
    s
}

pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json(opts: &Options, cpus: &[usize], rows: &[Row], skipped: &[String]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"mode\":{},\"samples_per_row\":{},\"cpus\":{:?},\"crc32c\":{},\"rows\":[",
        json_str(if opts.full { "full" } else { "quick" }),
        opts.samples(),
        cpus,
        json_str(ember_core::crc32c::implementation())
    );
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"mechanism\":{},\"size\":{},\"p50_ns\":{:.1},\"p99_ns\":{:.1},\"p999_ns\":{:.1},\"samples\":{},\"msgs_per_sec\":{:.0},\"mb_per_sec\":{:.2},\"baseline\":{},\"ratio\":{},\"sweep\":{},\"x\":{},\"extra\":{}}}",
            json_str(&r.mechanism),
            r.size,
            r.stats.p50,
            r.stats.p99,
            r.stats.p999,
            r.stats.samples,
            r.stats.msgs_per_sec(),
            r.stats.mb_per_sec(r.size),
            r.baseline.as_deref().map_or("null".to_string(), json_str),
            r.ratio.map_or("null".to_string(), |x| format!("{x:.3}")),
            r.sweep.map_or("null".to_string(), |(n, _)| json_str(n)),
            r.sweep.map_or("null".to_string(), |(_, x)| x.to_string()),
            r.extra.map_or("null".to_string(), |(n, v)| format!("{{{}:{v:.6}}}", json_str(n))),
        );
    }
    let skipped: Vec<String> = skipped.iter().map(|s| json_str(s)).collect();
    let _ = write!(s, "],\"skipped\":[{}]}}", skipped.join(","));
    s
}

/// The rows as CSV (a header line, then one line per row; fields that do not apply are
/// empty).
fn csv(rows: &[Row]) -> String {
    let mut s = String::from("sweep,x,mechanism,size,p50_ns,p99_ns,p999_ns,samples,baseline,ratio,extra,extra_value\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.1},{:.1},{:.1},{},{},{},{},{}",
            r.sweep.map_or("", |(n, _)| n),
            r.sweep.map_or(String::new(), |(_, x)| x.to_string()),
            r.mechanism,
            r.size,
            r.stats.p50,
            r.stats.p99,
            r.stats.p999,
            r.stats.samples,
            r.baseline.as_deref().unwrap_or(""),
            r.ratio.map_or(String::new(), |x| format!("{x:.3}")),
            r.extra.map_or("", |(n, _)| n),
            r.extra.map_or(String::new(), |(_, v)| format!("{v:.6}")),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o = Options::parse(&args("--full --json --only codec --size 100 --cpus 1,0")).unwrap();
        assert!(o.full && o.json);
        assert_eq!(o.only.as_deref(), Some("codec"));
        assert_eq!(o.size, Some(100));
        assert_eq!(o.cpus, Some(vec![1, 0]));
        assert!(o.selected("codec/frame"));
        assert!(!o.selected("crc32c"));
    }

    #[test]
    fn rejects_bad_options() {
        assert!(Options::parse(&args("--size")).unwrap_err().contains("needs a value"));
        assert!(Options::parse(&args("--size abc")).unwrap_err().contains("not a byte count"));
        assert!(Options::parse(&args("--size 0")).unwrap_err().contains("outside"));
        assert!(Options::parse(&args("--cpus 1,2,3")).is_err());
        assert!(Options::parse(&args("--frobnicate")).unwrap_err().contains("unknown option"));
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<f64> = (1..=1000).rev().map(f64::from).collect();
        let s = Stats::from_samples(&mut v);
        assert_eq!((s.p50, s.p99, s.p999, s.samples), (501.0, 990.0, 999.0, 1000));
        assert_eq!(s.msgs_per_sec().round(), (1e9f64 / 501.0).round());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
