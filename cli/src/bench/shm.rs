//! Cross-process rows: the shared-memory SPSC ring between two real processes pinned to
//! two CPUs, against baselines measured in the same run between the same two CPUs:
//!
//! - `floor`: a cache-line ping-pong (each side spins on a word the other writes): the
//!   physical floor of any shared-memory hand-off;
//! - `pipe` and `eventfd`: ping-pongs through the kernel, the usual blocking hand-offs;
//! - `rtrb`: the in-process lock-free SPSC ring moving the same fixed-size items, for
//!   throughput.
//!
//! Latency rows time every round trip and report half of it (one-way). Throughput rows
//! time every batch of 256 records and report time per record. Rows are measured in
//! several rounds, each round measuring every row once, and the samples are pooled.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use rustix::fd::{AsFd, OwnedFd};

use super::{Options, Progress, Row, Stats};

const LATENCY_SIZE: usize = 64;
/// Messages per sample of the streaming rows.
pub(super) const BATCH: usize = 256;
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));
const FP: u64 = 0xBE7C_0000_0000_0001;

pub(super) fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("/ember-bench-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A peer process: this binary run as `emberctl __peer <role> ...`.
pub(super) struct Peer {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: BufReader<ChildStdout>,
}

/// Spawns `emberctl __peer <cpu> <args>` with the given stdin and stdout.
pub(super) fn spawn_peer(cpu: usize, args: &[&str], stdin: Stdio, stdout: Stdio) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    Command::new(exe)
        .arg("__peer")
        .arg(cpu.to_string())
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .spawn()
        .map_err(|e| format!("cannot spawn peer: {e}"))
}

impl Peer {
    pub(super) fn spawn(cpu: usize, args: &[&str]) -> Result<Peer, String> {
        let mut child = spawn_peer(cpu, args, Stdio::piped(), Stdio::piped())?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut p = Peer { child, stdin, stdout };
        let line = p.line()?;
        if line != "ready" {
            return Err(format!("peer said {line:?}"));
        }
        Ok(p)
    }

    pub(super) fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        self.stdout.read_line(&mut s).map_err(|e| format!("peer: {e}"))?;
        if s.is_empty() {
            return Err("peer exited".into());
        }
        Ok(s.trim().to_string())
    }

    pub(super) fn finish(mut self) -> Result<(), String> {
        drop(self.stdin);
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() { Ok(()) } else { Err(format!("peer failed: {status}")) }
    }
}

/// A named shm page shared raw, for the cache-line floor (Ember's own segments are not
/// used, so the floor owes nothing to Ember's code).
pub(super) struct RawPage {
    ptr: *mut AtomicU32,
    _fd: OwnedFd,
    name: Option<String>,
}

impl RawPage {
    const LEN: usize = 4096;

    pub(super) fn create(name: &str) -> Result<RawPage, String> {
        use rustix::shm::OFlags;
        let fd = rustix::shm::open(
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .map_err(|e| format!("shm_open {name}: {e}"))?;
        rustix::fs::ftruncate(&fd, Self::LEN as u64).map_err(|e| e.to_string())?;
        let mut p = Self::map(fd)?;
        p.name = Some(name.to_string());
        Ok(p)
    }

    pub(super) fn open(name: &str) -> Result<RawPage, String> {
        let fd =
            rustix::shm::open(name, rustix::shm::OFlags::RDWR, rustix::fs::Mode::empty()).map_err(|e| e.to_string())?;
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> Result<RawPage, String> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh shared mapping of a 4 KiB object, at an address the kernel picks;
        // it is only accessed through `AtomicU32` and unmapped when `RawPage` drops.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        Ok(RawPage { ptr: ptr.cast(), _fd: fd, name: None })
    }

    /// A raw pointer to byte `offset` (below 4096), for objects C code manages there.
    pub(super) fn ptr_at(&self, offset: usize) -> *mut u8 {
        assert!(offset < Self::LEN);
        self.ptr.cast::<u8>().wrapping_add(offset)
    }

    /// The word at byte `offset` (a multiple of 4 below 4096).
    pub(super) fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset < Self::LEN);
        // SAFETY: in bounds and aligned (asserted), inside a live mapping that outlives
        // `&self`; `AtomicU32` tolerates the peer's concurrent writes.
        unsafe { &*self.ptr.add(offset / 4) }
    }
}

impl Drop for RawPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no reference into it outlives `&self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), Self::LEN) };
        if let Some(n) = &self.name {
            let _ = rustix::shm::unlink(n.as_str());
        }
    }
}

/// Per-message samples of a streaming row: one sample per [`BATCH`] messages, the batch's
/// time divided by its size.
pub(super) struct Batches {
    pub(super) samples: Vec<f64>,
    started: Instant,
    pending: usize,
}

impl Batches {
    /// Room for the samples of `messages` messages; the clock starts now.
    pub(super) fn new(messages: usize) -> Batches {
        Batches { samples: Vec::with_capacity(messages / BATCH + 1), started: Instant::now(), pending: 0 }
    }

    /// Counts `n` messages received; every full batch becomes a sample.
    pub(super) fn count(&mut self, n: usize) {
        self.pending += n;
        while self.pending >= BATCH {
            self.pending -= BATCH;
            self.samples.push(now_ns(self.started) / BATCH as f64);
            self.started = Instant::now();
        }
    }
}

pub(super) fn now_ns(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64
}

/// One-way latency samples of the cache-line ping-pong.
pub(super) fn floor(cpu: usize, iters: usize) -> Result<Vec<f64>, String> {
    let name = unique("floor");
    let page = RawPage::create(&name)?;
    let peer = Peer::spawn(cpu, &["floor", &name, &iters.to_string()])?;
    let (ping, pong) = (page.word(0), page.word(128));
    let mut samples = Vec::with_capacity(iters);
    for i in 1..=iters as u32 {
        let t = Instant::now();
        ping.store(i, Ordering::Release);
        while pong.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
        samples.push(now_ns(t) / 2.0);
    }
    peer.finish()?;
    Ok(samples)
}

/// One-way latency samples of 64-byte records through two SPSC rings.
fn spsc_latency(cpu: usize, iters: usize, spin: bool) -> Result<Vec<f64>, String> {
    let to_peer = unique("req");
    let to_me = unique("resp");
    let mut tx = SpscSender::create(Backing::Named(&to_peer), 64 * 1024, FP).map_err(|e| e.to_string())?;
    let mode = if spin { "spin" } else { "futex" };
    let peer = Peer::spawn(cpu, &["spsc-echo", &to_peer, &to_me, &iters.to_string(), mode])?;
    let mut rx = SpscReceiver::open(&to_me, FP).map_err(|e| e.to_string())?;
    rx.set_spin_before_sleep(0);
    let msg = [0x5Au8; LATENCY_SIZE];
    let mut out = [0u8; LATENCY_SIZE];
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        tx.try_send(&msg).map_err(|e| e.to_string())?;
        let r = if spin { rx.recv_spin(&mut out, TIMEOUT) } else { rx.recv(&mut out, TIMEOUT) };
        r.map_err(|e| e.to_string())?;
        samples.push(now_ns(t) / 2.0);
    }
    peer.finish()?;
    Ok(samples)
}

/// One-way latency samples of 64-byte messages through the peer's stdin/stdout pipes.
fn pipe_latency(cpu: usize, iters: usize) -> Result<Vec<f64>, String> {
    let mut peer = Peer::spawn(cpu, &["pipe-echo", &iters.to_string()])?;
    let msg = [0x5Au8; LATENCY_SIZE];
    let mut out = [0u8; LATENCY_SIZE];
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        peer.stdin.write_all(&msg).map_err(|e| e.to_string())?;
        peer.stdout.read_exact(&mut out).map_err(|e| e.to_string())?;
        samples.push(now_ns(t) / 2.0);
    }
    peer.finish()?;
    Ok(samples)
}

/// One-way latency samples of an eventfd ping-pong (the peer's two eventfds, fetched with
/// `pidfd_getfd`).
fn eventfd_latency(cpu: usize, iters: usize) -> Result<Vec<f64>, String> {
    let mut peer = Peer::spawn(cpu, &["eventfd-echo", &iters.to_string()])?;
    let fds = peer.line()?;
    let nums: Vec<i32> = fds.split_whitespace().filter_map(|s| s.parse().ok()).collect();
    if nums.len() != 2 {
        return Err(format!("peer sent {fds:?}"));
    }
    let pid = rustix::process::Pid::from_raw(peer.child.id() as i32).ok_or("bad pid")?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(|e| e.to_string())?;
    let get = |n: i32| {
        rustix::process::pidfd_getfd(&pidfd, n, rustix::process::PidfdGetfdFlags::empty())
            .map_err(|e| format!("pidfd_getfd: {e}"))
    };
    let (ping, pong) = (get(nums[0])?, get(nums[1])?);
    let mut samples = Vec::with_capacity(iters);
    let mut buf = [0u8; 8];
    for _ in 0..iters {
        let t = Instant::now();
        rustix::io::write(&ping, &1u64.to_ne_bytes()).map_err(|e| e.to_string())?;
        rustix::io::read(&pong, &mut buf).map_err(|e| e.to_string())?;
        samples.push(now_ns(t) / 2.0);
    }
    peer.finish()?;
    Ok(samples)
}

/// Per-record samples of a stream of `size`-byte records from the peer.
fn spsc_throughput(cpu: usize, records: usize, size: usize) -> Result<Vec<f64>, String> {
    let name = unique("flood");
    let mut peer = Peer::spawn(cpu, &["spsc-flood", &name, &records.to_string(), &size.to_string()])?;
    let mut rx = SpscReceiver::open(&name, FP).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; size];
    writeln!(peer.stdin, "go").map_err(|e| e.to_string())?;
    peer.stdin.flush().map_err(|e| e.to_string())?;
    let mut batches = Batches::new(records);
    for _ in 0..records {
        rx.recv_spin(&mut out, TIMEOUT).map_err(|e| e.to_string())?;
        batches.count(1);
    }
    peer.finish()?;
    Ok(batches.samples)
}

/// Per-item samples of the in-process rtrb ring moving `[u8; N]` items between two
/// threads pinned to the same two CPUs.
fn rtrb_throughput<const N: usize>(cpus: (usize, usize), records: usize) -> Vec<f64> {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<[u8; N]>::new(64 * 1024 / N.max(64));
    let pusher = std::thread::spawn(move || {
        let _ = super::pin(cpus.1);
        let item = [0x5Au8; N];
        for _ in 0..records {
            while producer.push(item).is_err() {
                std::hint::spin_loop();
            }
        }
    });
    let _ = super::pin(cpus.0);
    let mut batches = Batches::new(records);
    for _ in 0..records {
        loop {
            if let Ok(item) = consumer.pop() {
                std::hint::black_box(&item);
                break;
            }
            std::hint::spin_loop();
        }
        batches.count(1);
    }
    pusher.join().expect("rtrb producer");
    batches.samples
}

/// The peer side: `emberctl __peer <cpu> <role> ...`.
pub fn peer(args: &[String]) -> Result<(), String> {
    let cpu: usize = args.first().and_then(|c| c.parse().ok()).ok_or("peer: no cpu")?;
    let _ = super::pin(cpu);
    let role = args.get(1).map(String::as_str).ok_or("peer: no role")?;
    let arg = |i: usize| args.get(i + 2).cloned().ok_or(format!("peer {role}: missing argument {i}"));
    let num = |i: usize| arg(i)?.parse::<usize>().map_err(|e| e.to_string());
    let mut stdout = std::io::stdout().lock();
    let ready = |out: &mut std::io::StdoutLock<'_>| -> Result<(), String> {
        writeln!(out, "ready").and_then(|_| out.flush()).map_err(|e| e.to_string())
    };
    match role {
        "floor" => {
            let page = RawPage::open(&arg(0)?)?;
            let iters = num(1)?;
            ready(&mut stdout)?;
            let (ping, pong) = (page.word(0), page.word(128));
            for i in 1..=iters as u32 {
                while ping.load(Ordering::Acquire) != i {
                    std::hint::spin_loop();
                }
                pong.store(i, Ordering::Release);
            }
        }
        "spsc-echo" => {
            let mut rx = SpscReceiver::open(&arg(0)?, FP).map_err(|e| e.to_string())?;
            let mut tx = SpscSender::create(Backing::Named(&arg(1)?), 64 * 1024, FP).map_err(|e| e.to_string())?;
            let (iters, spin) = (num(2)?, arg(3)? == "spin");
            rx.set_spin_before_sleep(0);
            ready(&mut stdout)?;
            let mut buf = [0u8; LATENCY_SIZE];
            for _ in 0..iters {
                let n = if spin { rx.recv_spin(&mut buf, TIMEOUT) } else { rx.recv(&mut buf, TIMEOUT) }
                    .map_err(|e| e.to_string())?;
                tx.try_send(&buf[..n]).map_err(|e| e.to_string())?;
            }
            // Let the parent take the last record before the ring is unlinked.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        "pipe-echo" => {
            let iters = num(0)?;
            ready(&mut stdout)?;
            drop(stdout);
            let stdin = rustix::stdio::stdin();
            let out = rustix::stdio::stdout();
            let mut buf = [0u8; LATENCY_SIZE];
            for _ in 0..iters {
                let mut got = 0;
                while got < LATENCY_SIZE {
                    got += rustix::io::read(stdin, &mut buf[got..]).map_err(|e| e.to_string())?;
                }
                let mut put = 0;
                while put < LATENCY_SIZE {
                    put += rustix::io::write(out, &buf[put..]).map_err(|e| e.to_string())?;
                }
            }
        }
        "eventfd-echo" => {
            use rustix::event::{EventfdFlags, eventfd};
            let iters = num(0)?;
            let ping = eventfd(0, EventfdFlags::CLOEXEC).map_err(|e| e.to_string())?;
            let pong = eventfd(0, EventfdFlags::CLOEXEC).map_err(|e| e.to_string())?;
            ready(&mut stdout)?;
            use std::os::fd::AsRawFd;
            writeln!(stdout, "{} {}", ping.as_fd().as_raw_fd(), pong.as_fd().as_raw_fd())
                .and_then(|_| stdout.flush())
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 8];
            for _ in 0..iters {
                rustix::io::read(&ping, &mut buf).map_err(|e| e.to_string())?;
                rustix::io::write(&pong, &1u64.to_ne_bytes()).map_err(|e| e.to_string())?;
            }
        }
        "spsc-flood" => {
            let mut tx = SpscSender::create(Backing::Named(&arg(0)?), 256 * 1024, FP).map_err(|e| e.to_string())?;
            let (records, size) = (num(1)?, num(2)?);
            ready(&mut stdout)?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
            let record = vec![0x5Au8; size];
            for i in 0..records {
                // Bursts of 32 records, one wake-up check per burst.
                if i % 32 == 31 {
                    tx.flush();
                }
                loop {
                    match tx.try_send_deferred(&record) {
                        Ok(()) => break,
                        // Full: back off so that polling the consumer's counter does not
                        // steal its cache line on every record.
                        Err(ember_linux::Error::Shm(ember_core::shm::ShmError::Full)) => {
                            tx.flush();
                            for _ in 0..512 {
                                std::hint::spin_loop();
                            }
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            tx.flush();
            // Wait until the parent has everything before the segment goes away.
            let _ = std::io::stdin().read_line(&mut line);
        }
        "seqlock-echo" | "broadcast-echo" => return super::fanout::peer(role, &args[2..]),
        "dbus-serve" => return super::dbus::peer(&args[2..]),
        other => return super::pipe::peer(other, &args[2..]),
    }
    Ok(())
}

/// Tells the parent this peer is ready (its first line).
pub(super) fn say_ready() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").and_then(|_| out.flush()).map_err(|e| e.to_string())
}

/// Waits until the parent closes our stdin: it has taken what it needs from segments this
/// peer owns, which go away when the peer exits.
pub(super) fn wait_for_parent() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Pooled samples of one row over the rounds.
#[derive(Default)]
pub(super) struct Pool(pub(super) Vec<f64>);

impl Pool {
    pub(super) fn add(&mut self, r: Result<Vec<f64>, String>) -> Result<(), String> {
        self.0.extend(r?);
        Ok(())
    }

    pub(super) fn stats(&mut self) -> Option<Stats> {
        (!self.0.is_empty()).then(|| Stats::from_samples(&mut self.0))
    }
}

pub(super) fn row(
    rows: &mut Vec<Row>,
    name: &str,
    size: usize,
    s: Stats,
    base: Option<(&str, Stats)>,
    note: &'static str,
) {
    rows.push(Row {
        mechanism: name.into(),
        size,
        stats: s,
        baseline: base.map(|(n, _)| n.to_string()),
        ratio: base.map(|(_, b)| s.p50 / b.p50),
        note: Some(note),
    });
}

pub(super) const NOTE_FLOOR: &str = "each side spins on a word the other writes (one-way = round trip / 2): the floor";
const NOTE_SPIN: &str =
    "64-byte records through two Ember SPSC rings, busy-polling; target ratio <= 3.0 (1.5x the floor's round trip)";
const NOTE_KERNEL: &str = "64-byte ping-pong through the kernel, the peer blocked in read()";
const NOTE_FUTEX: &str = "64-byte records through two rings, the receiver asleep on the futex; baseline: the faster of pipe and eventfd; target ratio <= 1.0";
const NOTE_STREAM: &str = "records streamed from the peer process (try_send_deferred, flush every 32), time per record over batches of 256; baseline: in-process rtrb moving [u8; N]; target ratio <= 2.0 at 64 B";

/// Runs the cross-process rows (all on `cpus[0]` and `cpus[1]`).
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let latency = ["shm/floor", "shm/spsc-spin", "shm/spsc-futex", "pipe", "eventfd"].iter().any(|n| opts.selected(n));
    let stream = opts.selected("shm/spsc-stream") || opts.selected("rtrb");
    if !latency && !stream {
        return Ok(());
    }
    let (&a, &b) = match cpus {
        [a, b, ..] => (a, b),
        _ => return Err("the cross-process rows need two CPUs (see --cpus); skipped".into()),
    };
    let rounds = opts.pick(5, 3, 1);
    let (spin_iters, block_iters) = (opts.pick(20_000, 5_000, 50), opts.pick(5_000, 1_500, 20));
    let stream_records = opts.pick(1 << 20, 1 << 18, 64 * BATCH);
    let (mut fl, mut sp, mut fu, mut pi, mut ev) =
        (Pool::default(), Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut s64, mut s4k, mut r64, mut r4k) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    for round in 1..=rounds {
        let step = |what: &str| progress.step(&format!("{what} (round {round}/{rounds})"));
        if latency {
            step("cache-line floor");
            fl.add(floor(b, spin_iters))?;
            step("shm SPSC busy-poll");
            sp.add(spsc_latency(b, spin_iters, true))?;
            step("shm SPSC futex");
            fu.add(spsc_latency(b, block_iters, false))?;
            step("pipe ping-pong");
            pi.add(pipe_latency(b, block_iters))?;
            step("eventfd ping-pong");
            ev.add(eventfd_latency(b, block_iters))?;
        }
        if stream {
            step("shm SPSC stream 64 B");
            s64.add(spsc_throughput(b, stream_records, 64))?;
            step("rtrb 64 B");
            r64.0.extend(rtrb_throughput::<64>((a, b), stream_records));
            step("shm SPSC stream 4 KiB");
            s4k.add(spsc_throughput(b, stream_records / 16, 4096))?;
            step("rtrb 4 KiB");
            r4k.0.extend(rtrb_throughput::<4096>((a, b), stream_records / 16));
            let _ = super::pin(a);
        }
    }
    if let (Some(f), Some(s), Some(u), Some(p), Some(e)) = (fl.stats(), sp.stats(), fu.stats(), pi.stats(), ev.stats())
    {
        row(rows, "shm/floor", 4, f, None, NOTE_FLOOR);
        row(rows, "shm/spsc-spin", LATENCY_SIZE, s, Some(("shm/floor", f)), NOTE_SPIN);
        row(rows, "pipe", LATENCY_SIZE, p, None, NOTE_KERNEL);
        row(rows, "eventfd", 8, e, None, NOTE_KERNEL);
        let best = if p.p50 <= e.p50 { ("pipe", p) } else { ("eventfd", e) };
        row(rows, "shm/spsc-futex", LATENCY_SIZE, u, Some(best), NOTE_FUTEX);
    }
    if let (Some(s), Some(r), Some(s2), Some(r2)) = (s64.stats(), r64.stats(), s4k.stats(), r4k.stats()) {
        row(rows, "rtrb", 64, r, None, NOTE_STREAM);
        row(rows, "shm/spsc-stream", 64, s, Some(("rtrb", r)), NOTE_STREAM);
        row(rows, "rtrb", 4096, r2, None, NOTE_STREAM);
        row(rows, "shm/spsc-stream", 4096, s2, Some(("rtrb", r2)), NOTE_STREAM);
    }
    Ok(())
}
