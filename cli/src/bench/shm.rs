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

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use rustix::fd::AsFd;

use super::harness::{BATCH, Batches, Peer, Pool, floor, now_ns, row, unique};
use super::{Options, Progress, Row, Stats};

const LATENCY_SIZE: usize = 64;
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));
const FP: u64 = 0xBE7C_0000_0000_0001;

/// A ring's capacity for records of `size` bytes: at least `min`, and room for four.
fn ring_capacity(size: usize, min: usize) -> usize {
    (4 * (size + 16)).next_power_of_two().max(min)
}

/// One-way latency samples of `size`-byte records through two SPSC rings.
fn spsc_latency(cpu: usize, iters: usize, spin: bool, size: usize) -> Result<Vec<f64>, String> {
    let to_peer = unique("req");
    let to_me = unique("resp");
    let cap = ring_capacity(size, 64 * 1024);
    let mut tx = SpscSender::create(Backing::Named(&to_peer), cap, FP).map_err(|e| e.to_string())?;
    let mode = if spin { "spin" } else { "futex" };
    let peer = Peer::spawn(cpu, &["spsc-echo", &to_peer, &to_me, &iters.to_string(), mode, &size.to_string()])?;
    let mut rx = SpscReceiver::open(&to_me, FP).map_err(|e| e.to_string())?;
    rx.set_spin_before_sleep(0);
    let msg = vec![0x5Au8; size];
    let mut out = vec![0u8; size];
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
    let mut left = records;
    while left > 0 {
        // Up to 32 records a call, the ring's tail published once for them.
        let n = rx
            .recv_many_spin(&mut out, left.min(32), TIMEOUT, |r| {
                std::hint::black_box(r);
            })
            .map_err(|e| e.to_string())?;
        left -= n;
        batches.count(n);
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

/// The peer roles of this module (`emberctl __peer <cpu> <role> ...`, dispatched by
/// [`harness::peer`]); `None` for a role that is not one of them.
pub fn peer(role: &str, args: &[String]) -> Option<Result<(), String>> {
    const ROLES: [&str; 4] = ["spsc-echo", "pipe-echo", "eventfd-echo", "spsc-flood"];
    if !ROLES.contains(&role) {
        return None;
    }
    Some(peer_role(role, args))
}

fn peer_role(role: &str, args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("peer {role}: missing argument {i}"));
    let num = |i: usize| arg(i)?.parse::<usize>().map_err(|e| e.to_string());
    let mut stdout = std::io::stdout().lock();
    let ready = |out: &mut std::io::StdoutLock<'_>| -> Result<(), String> {
        writeln!(out, "ready").and_then(|_| out.flush()).map_err(|e| e.to_string())
    };
    match role {
        "spsc-echo" => {
            let mut rx = SpscReceiver::open(&arg(0)?, FP).map_err(|e| e.to_string())?;
            let (iters, spin, size) = (num(2)?, arg(3)? == "spin", num(4)?);
            let cap = ring_capacity(size, 64 * 1024);
            let mut tx = SpscSender::create(Backing::Named(&arg(1)?), cap, FP).map_err(|e| e.to_string())?;
            rx.set_spin_before_sleep(0);
            ready(&mut stdout)?;
            let mut buf = vec![0u8; size];
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
            let (records, size) = (num(1)?, num(2)?);
            let cap = ring_capacity(size, 256 * 1024);
            let mut tx = SpscSender::create(Backing::Named(&arg(0)?), cap, FP).map_err(|e| e.to_string())?;
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
        other => return Err(format!("peer: unknown role {other}")),
    }
    Ok(())
}

const NOTE_SPIN: &str =
    "64-byte records through two Ember SPSC rings, busy-polling; target ratio <= 3.0 (1.5x the floor's round trip)";
const NOTE_KERNEL: &str = "64-byte ping-pong through the kernel, the peer blocked in read()";
const NOTE_FUTEX: &str = "64-byte records through two rings, the receiver asleep on the futex; baseline: the faster of pipe and eventfd; target ratio <= 1.0";
const NOTE_STREAM: &str = "records streamed from the peer process (try_send_deferred, flush every 32; received with recv_many_spin, up to 32 a call), time per record over batches of 256; baseline: in-process rtrb moving [u8; N]; target ratio <= 1.5 at 64 B";

const NOTE_HOP: &str = "one record of --size bytes through two Ember SPSC rings, busy-polling, copied in and out (one-way = round trip / 2); baseline: two memcpys of the payload + the cache-line floor; target ratio <= 1.3 from 4 KiB";
const NOTE_IDEAL: &str = "no IPC machinery: two threads on the two CPUs echo the payload through two shared buffers, a memcpy in, a flag, a memcpy out each way (one-way = round trip / 2); the least a hop that copies in and out can cost, next to the in-core baseline";
const NOTE_HOP_STREAM: &str = "records of --size bytes streamed from the peer process, time per record; baseline: two memcpys of the payload (in and out)";

/// Samples of two `memcpy`s of `size` bytes (a payload copied in, then out), in process.
///
/// The three buffers are cut from one page-aligned block, each starting 2 KiB past a page
/// boundary relative to the one before: glibc's `memcpy` uses `rep movsb` from 2 KiB up,
/// and on AMD CPUs with FSRM that runs up to 20 times slower when the destination is 1 to
/// 63 bytes after the source modulo 4 KiB (`core/src/shm/fastcopy.rs`). Three separate
/// `Vec`s land exactly there (malloc's 16-byte headers: 4 KiB + 16 apart), which made this
/// baseline 2.7 µs for 4 KiB instead of 0.12 µs: a measure of the allocator's placement,
/// not of the copies.
fn memcpy_twice(samples: usize, size: usize) -> Vec<f64> {
    let stride = size.next_multiple_of(4096) + 2048;
    let mut block = vec![0x5Au8; 3 * stride + 4096];
    let start = block.as_ptr().align_offset(4096);
    let (a, rest) = block[start..].split_at_mut(stride);
    let (b, c) = rest.split_at_mut(stride);
    let (a, b, c) = (&mut a[..size], &mut b[..size], &mut c[..size]);
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        a[i % size] = i as u8;
        let t = Instant::now();
        b.copy_from_slice(std::hint::black_box(&*a));
        c.copy_from_slice(std::hint::black_box(&*b));
        out.push(now_ns(t));
        std::hint::black_box(&*c);
    }
    out
}

/// Samples of an ideal hop of `size` bytes between two cores, with no IPC machinery, timed
/// as the SPSC hop is (an echo, one-way = round trip / 2): on CPU `a` one thread copies the
/// payload from its buffer into a shared one (`memcpy`) and raises a flag; on CPU `b`
/// another copies it out into its own buffer, copies that into a second shared buffer and
/// raises its flag; the first copies it out. Per one-way hop: the same two copies as
/// `memcpy-x2`, the same flag as the floor, and in between what moving every line to the
/// other core costs, which the in-core baseline does not pay: the least a hop that copies
/// in and out can cost.
fn ideal_hop(cpus: (usize, usize), samples: usize, size: usize) -> Result<Vec<f64>, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    #[repr(align(128))]
    struct Line(AtomicU64);
    /// A shared buffer: each is written by one thread only before the flag that hands it
    /// over, and read by the other only after that flag and before its own flag back.
    struct Shared(*mut u8);
    // SAFETY: the flags' release/acquire pairs order every access to the buffers (above),
    // so the two threads never touch one at the same time.
    unsafe impl Sync for Shared {}
    // As in `memcpy_twice`: regions 2 KiB apart modulo 4 KiB.
    let stride = size.next_multiple_of(4096) + 2048;
    let mut block = vec![0x5Au8; 5 * stride + 4096];
    let start = block.as_ptr().align_offset(4096);
    let mut regions = block[start..].chunks_exact_mut(stride);
    let mut region = || regions.next().map(|r| &mut r[..size]).ok_or("ideal hop: no room".to_string());
    let (mine, there, theirs, back, returned) = (region()?, region()?, region()?, region()?, region()?);
    let (there, back) = (Shared(there.as_mut_ptr()), Shared(back.as_mut_ptr()));
    let (ping, pong) = (Line(AtomicU64::new(0)), Line(AtomicU64::new(0)));
    let rounds = samples as u64;
    std::thread::scope(|s| {
        let (there, back, ping, pong) = (&there, &back, &ping, &pong);
        let echo = s.spawn(move || -> Result<(), String> {
            super::pin(cpus.1)?;
            for i in 1..=rounds {
                while ping.0.load(Ordering::Acquire) != i {
                    std::hint::spin_loop();
                }
                // SAFETY: `ping` ordered the first thread's copy into `there` before this
                // read, and it reads `back` only after `pong`; `theirs` is ours alone.
                unsafe {
                    std::ptr::copy_nonoverlapping(there.0, theirs.as_mut_ptr(), size);
                    std::ptr::copy_nonoverlapping(std::hint::black_box(theirs.as_ptr()), back.0, size);
                }
                pong.0.store(i, Ordering::Release);
            }
            Ok(())
        });
        super::pin(cpus.0)?;
        let mut out = Vec::with_capacity(samples);
        for i in 1..=rounds {
            mine[i as usize % size] = i as u8;
            let t = Instant::now();
            // SAFETY: the echo's last `pong` (acquired below, or none yet) ended its use of
            // both buffers; `returned` is ours alone.
            unsafe { std::ptr::copy_nonoverlapping(std::hint::black_box(mine.as_ptr()), there.0, size) };
            ping.0.store(i, Ordering::Release);
            while pong.0.load(Ordering::Acquire) != i {
                std::hint::spin_loop();
            }
            // SAFETY: as above: `pong` ordered the echo's copy into `back` before this.
            unsafe { std::ptr::copy_nonoverlapping(back.0, returned.as_mut_ptr(), size) };
            std::hint::black_box(&*returned);
            out.push(now_ns(t) / 2.0);
        }
        echo.join().map_err(|_| "ideal-hop echo panicked".to_string())??;
        Ok(out)
    })
}

/// The rows of `--size N`: a one-way hop and a stream of N-byte records through the SPSC
/// ring, against two memcpys of N bytes (+ the floor for the hop).
fn sized(
    opts: &Options,
    size: usize,
    cpus: (usize, usize),
    progress: &Progress,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let (a, b) = cpus;
    let rounds = opts.pick(5, 3, 1);
    // Fewer iterations as records grow: about the same bytes per round.
    let scale = (size / 4096).max(1);
    let iters = (opts.pick(20_000, 5_000, 50) / scale).max(50);
    let records = (opts.pick(1 << 18, 1 << 16, 64 * BATCH) / scale).max(4 * BATCH);
    let (mut fl, mut hop, mut st, mut mc) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let mut ho = Pool::default();
    for round in 1..=rounds {
        let step = |what: &str| progress.step(&format!("{what} {size} B (round {round}/{rounds})"));
        step("cache-line floor");
        fl.add(floor(b, iters))?;
        step("shm SPSC hop");
        hop.add(spsc_latency(b, iters, true, size))?;
        step("shm SPSC stream");
        st.add(spsc_throughput(b, records, size))?;
        step("memcpy x2");
        let _ = super::pin(b);
        mc.0.extend(memcpy_twice(iters, size));
        step("ideal hop");
        ho.add(ideal_hop((a, b), iters, size))?;
        // Back to the measuring CPU: the next round's floor, hop and stream share no CPU
        // with their peer on `b` (they did, from round 2 on, and waited out the peer's
        // time slices: 4 ms "latencies").
        let _ = super::pin(a);
    }
    if let (Some(f), Some(h), Some(s), Some(m)) = (fl.stats(), hop.stats(), st.stats(), mc.stats()) {
        let base = Stats { p50: m.p50 + f.p50, p99: m.p99 + f.p99, ..m };
        row(rows, "memcpy-x2", size, m, None, NOTE_HOP_STREAM);
        row(rows, "memcpy-x2+floor", size, base, None, NOTE_HOP);
        row(rows, "shm/spsc-hop", size, h, Some(("memcpy-x2+floor", base)), NOTE_HOP);
        row(rows, "shm/spsc-stream", size, s, Some(("memcpy-x2", m)), NOTE_HOP_STREAM);
        if let Some(ho) = ho.stats() {
            row(rows, "ideal-hop", size, ho, Some(("memcpy-x2+floor", base)), NOTE_IDEAL);
        }
    }
    Ok(())
}

/// Runs the cross-process rows (all on `cpus[0]` and `cpus[1]`); with `--size`, the sized
/// SPSC rows instead of the fixed-size ones.
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    if let Some(size) = opts.size
        && (opts.selected("shm/spsc-hop") || opts.selected("shm/spsc-stream"))
    {
        let (&a, &b) = match cpus {
            [a, b, ..] => (a, b),
            _ => return Err("the cross-process rows need two CPUs (see --cpus); skipped".into()),
        };
        return sized(opts, size, (a, b), progress, rows);
    }
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
            sp.add(spsc_latency(b, spin_iters, true, LATENCY_SIZE))?;
            step("shm SPSC futex");
            fu.add(spsc_latency(b, block_iters, false, LATENCY_SIZE))?;
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
        row(rows, "shm/floor", 4, f, None, super::harness::NOTE_FLOOR);
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
