//! Cross-process rows for message queues, FIFOs and signals: Ember against the raw system
//! calls moving the same bytes between the same two pinned processes.
//!
//! - POSIX mq and SysV mq: a ping-pong over two queues (latency) and a stream of messages
//!   (time per message over batches of 256); raw = `mq_timedsend`/`mq_timedreceive` and
//!   `msgsnd`/`msgrcv` called directly, Ember = `send_frame`/`recv_frame`.
//! - FIFO: a ping-pong over two FIFOs; raw = `read`/`write`.
//! - Signals: a ping-pong of `SIGUSR1`/`SIGUSR2` with a value; raw = `rt_sigqueueinfo` and a
//!   `read` of the signalfd, Ember = `signal::send_with_value` and `SignalFd::recv`.

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ember_linux::mq::{Access, MessageQueue};
use ember_linux::signal::{self, SigSet, SignalFd};
use ember_linux::sysvmq::SysvQueue;
use ember_linux::{FrameReceiver, FrameSender, fifo, sys};
use rustix::fd::AsFd;

use super::fdio::{Consumer, Eof, drain, make_frame, read_exact, write_all};
use super::harness::{Batches, Pool, now_ns, row, spawn_peer};
use super::{Options, Progress, Row};

const MQ_SIZE: usize = 8192;

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("/ember-bench-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn unique_key() -> i32 {
    static N: AtomicU32 = AtomicU32::new(0);
    0x4542_0000 | ((std::process::id() as i32 & 0xFF) << 8) | (N.fetch_add(1, Ordering::Relaxed) as i32 & 0xFF)
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Waits for the peer and reports its failure.
fn finish(mut child: std::process::Child) -> Result<(), String> {
    let status = child.wait().map_err(s)?;
    if status.success() { Ok(()) } else { Err(format!("peer failed: {status}")) }
}

fn mq_latency(cpu: usize, iters: usize, ember: bool, payload: usize) -> Result<Vec<f64>, String> {
    let (to, from) = (unique("mqa"), unique("mqb"));
    let mut tx = MessageQueue::create(&to, 8, MQ_SIZE, Access::Send).map_err(s)?;
    let mut rx = MessageQueue::create(&from, 8, MQ_SIZE, Access::Receive).map_err(s)?;
    let mode = if ember { "ember" } else { "raw" };
    let child = spawn_peer(cpu, &["mq-echo", mode, &to, &from, &iters.to_string()], Stdio::null(), Stdio::null())?;
    let frame = make_frame(payload);
    let mut out = vec![0u8; MQ_SIZE];
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        if ember {
            tx.send_frame(&frame).map_err(s)?;
            rx.recv_frame(&mut out).map_err(s)?;
        } else {
            sys::mq_timedsend(tx.as_fd(), &frame, 0, None).map_err(s)?;
            sys::mq_timedreceive(rx.as_fd(), &mut out, None).map_err(s)?;
        }
        samples.push(now_ns(t) / 2.0);
    }
    finish(child)?;
    Ok(samples)
}

fn mq_throughput(cpu: usize, count: usize, ember: bool, payload: usize) -> Result<Vec<f64>, String> {
    let name = unique("mqs");
    let mut rx = MessageQueue::create(&name, 10, MQ_SIZE, Access::Receive).map_err(s)?;
    let mode = if ember { "ember" } else { "raw" };
    let child = spawn_peer(
        cpu,
        &["mq-flood", mode, &name, &count.to_string(), &payload.to_string()],
        Stdio::null(),
        Stdio::null(),
    )?;
    let mut out = vec![0u8; MQ_SIZE];
    let mut batches = Batches::new(count);
    for _ in 0..count {
        if ember {
            rx.recv_frame(&mut out).map_err(s)?;
        } else {
            sys::mq_timedreceive(rx.as_fd(), &mut out, None).map_err(s)?;
        }
        batches.count(1);
    }
    finish(child)?;
    Ok(batches.samples)
}

fn sysv_throughput(cpu: usize, count: usize, ember: bool, payload: usize) -> Result<Vec<f64>, String> {
    let key = unique_key();
    let mut rx: SysvQueue = SysvQueue::create(key).map_err(s)?;
    let mode = if ember { "ember" } else { "raw" };
    let child = spawn_peer(
        cpu,
        &["sysv-flood", mode, &key.to_string(), &count.to_string(), &payload.to_string()],
        Stdio::null(),
        Stdio::null(),
    )?;
    let mut out = vec![0u8; 8 + MQ_SIZE];
    let mut batches = Batches::new(count);
    for _ in 0..count {
        if ember {
            rx.recv_frame(&mut out).map_err(s)?;
        } else {
            sys::msgrcv(rx.id(), &mut out, 0, 0).map_err(s)?;
        }
        batches.count(1);
    }
    finish(child)?;
    Ok(batches.samples)
}

fn sysv_latency(cpu: usize, iters: usize, ember: bool, payload: usize) -> Result<Vec<f64>, String> {
    let (ka, kb) = (unique_key(), unique_key());
    let mut tx: SysvQueue = SysvQueue::create(ka).map_err(s)?;
    let mut rx: SysvQueue = SysvQueue::create(kb).map_err(s)?;
    let mode = if ember { "ember" } else { "raw" };
    let child = spawn_peer(
        cpu,
        &["sysv-echo", mode, &ka.to_string(), &kb.to_string(), &iters.to_string()],
        Stdio::null(),
        Stdio::null(),
    )?;
    let frame = make_frame(payload);
    const LONG: usize = std::mem::size_of::<std::ffi::c_long>();
    let mut msg = vec![0u8; LONG + MQ_SIZE];
    msg[..LONG].copy_from_slice(&(1 as std::ffi::c_long).to_ne_bytes());
    msg[LONG..LONG + frame.len()].copy_from_slice(&frame);
    let mut out = vec![0u8; LONG + MQ_SIZE];
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        if ember {
            tx.send_frame(&frame).map_err(s)?;
            rx.recv_frame(&mut out).map_err(s)?;
        } else {
            sys::msgsnd(tx.id(), &msg, frame.len(), 0).map_err(s)?;
            sys::msgrcv(rx.id(), &mut out, 0, 0).map_err(s)?;
        }
        samples.push(now_ns(t) / 2.0);
    }
    finish(child)?;
    Ok(samples)
}

fn fifo_latency(cpu: usize, iters: usize, ember: bool, payload: usize) -> Result<Vec<f64>, String> {
    let dir = std::env::temp_dir();
    let (a, b) = (format!("{}{}", dir.display(), unique("fifoa")), format!("{}{}", dir.display(), unique("fifob")));
    fifo::create(&a).map_err(s)?;
    fifo::create(&b).map_err(s)?;
    let _cleanup = Remove(vec![a.clone(), b.clone()]);
    let mode = if ember { "ember" } else { "raw" };
    let child = spawn_peer(
        cpu,
        &["fifo-echo", mode, &a, &b, &iters.to_string(), &payload.to_string()],
        Stdio::null(),
        Stdio::null(),
    )?;
    let mut rx: ember_linux::pipe::StreamReader = fifo::open_reader(&b, false).map_err(s)?;
    let mut tx = loop {
        match fifo::open_writer(&a, false) {
            Ok(w) => break w,
            Err(ember_linux::Error::NoReader) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let frame = make_frame(payload);
    let mut out = vec![0u8; ember_linux::pipe::DEFAULT_STREAM_BUF];
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        if ember {
            tx.send_frame(&frame).map_err(s)?;
            loop {
                match rx.recv_frame(&mut out) {
                    Ok(_) => break,
                    // The peer's writer may not be open yet.
                    Err(ember_linux::Error::PeerGone) => std::thread::yield_now(),
                    Err(e) => return Err(e.to_string()),
                }
            }
        } else {
            write_all(tx.as_fd(), &frame)?;
            read_exact(rx.as_fd(), &mut out[..frame.len()], Eof::Wait)?;
        }
        samples.push(now_ns(t) / 2.0);
    }
    finish(child)?;
    Ok(samples)
}

/// Per-message samples of a stream of `payload`-byte messages the peer writes into a FIFO
/// (Ember frames through `fifo::open_writer`, or raw writes of the same bytes).
fn fifo_throughput(cpu: usize, count: usize, ember: bool, payload: usize) -> Result<Vec<f64>, String> {
    let path = format!("{}{}", std::env::temp_dir().display(), unique("fifos"));
    fifo::create(&path).map_err(s)?;
    let _cleanup = Remove(vec![path.clone()]);
    // Open our end first (a reader never waits); the peer's writer retries until it is there.
    let rx: ember_linux::pipe::StreamReader<64> = fifo::open_reader(&path, false).map_err(s)?;
    let fd = rx.into_fd();
    let mode = if ember { "ember" } else { "raw" };
    let child = spawn_peer(
        cpu,
        &["fifo-flood", mode, &path, &count.to_string(), &payload.to_string()],
        Stdio::null(),
        Stdio::null(),
    )?;
    let consumer = if ember { Consumer::Ember } else { Consumer::Raw };
    let samples = drain(fd, count, make_frame(payload).len(), false, consumer, Eof::Wait)?;
    finish(child)?;
    Ok(samples)
}

struct Remove(Vec<String>);
impl Drop for Remove {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn signal_latency(cpu: usize, iters: usize, ember: bool) -> Result<Vec<f64>, String> {
    // This process's signals must be blocked in every thread: the bench runs them on the
    // main thread only, after the in-process rows' threads have finished.
    let set = SigSet::of(&[signal::SIGUSR1, signal::SIGUSR2]);
    let old = signal::block(set).map_err(s)?;
    let result = (|| {
        let mut sfd = SignalFd::new(set, false).map_err(s)?;
        let mode = if ember { "ember" } else { "raw" };
        let me = std::process::id().to_string();
        let mut child =
            spawn_peer(cpu, &["signal-echo", mode, &me, &iters.to_string()], Stdio::null(), Stdio::piped())?;
        // The peer reports ready (its signals blocked) on stdout.
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?), &mut line)
            .map_err(s)?;
        let peer = child.id();
        let mut samples = Vec::with_capacity(iters);
        let mut buf = [0u8; 128];
        for i in 0..iters {
            let t = Instant::now();
            if ember {
                signal::send_with_value(peer, signal::SIGUSR1, i as i32).map_err(s)?;
                sfd.recv().map_err(s)?;
            } else {
                sys::rt_sigqueueinfo(peer as i32, signal::SIGUSR1, i as i32).map_err(s)?;
                rustix::io::read(&sfd, &mut buf).map_err(s)?;
            }
            samples.push(now_ns(t) / 2.0);
        }
        finish(child)?;
        Ok(samples)
    })();
    signal::set_mask(old).map_err(s)?;
    result
}

/// This module's peer roles, for [`super::harness::peer`]: `None` for a role that is not
/// one of them.
pub fn peer(role: &str, args: &[String]) -> Option<Result<(), String>> {
    matches!(role, "mq-echo" | "mq-flood" | "sysv-echo" | "sysv-flood" | "fifo-echo" | "fifo-flood" | "signal-echo")
        .then(|| play(role, args))
}

/// The peer roles of this module.
fn play(role: &str, args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("{role}: missing argument {i}"));
    let num = |i: usize| -> Result<usize, String> { arg(i)?.parse().map_err(s) };
    let ember = arg(0)? == "ember";
    match role {
        "mq-echo" => {
            let mut rx = MessageQueue::open(&arg(1)?, Access::Receive).map_err(s)?;
            let mut tx = MessageQueue::open(&arg(2)?, Access::Send).map_err(s)?;
            let mut buf = vec![0u8; MQ_SIZE];
            for _ in 0..num(3)? {
                if ember {
                    let n = rx.recv_frame(&mut buf).map_err(s)?;
                    tx.send_frame(&buf[..n]).map_err(s)?;
                } else {
                    let (n, _) = sys::mq_timedreceive(rx.as_fd(), &mut buf, None).map_err(s)?;
                    sys::mq_timedsend(tx.as_fd(), &buf[..n], 0, None).map_err(s)?;
                }
            }
        }
        "mq-flood" => {
            let mut tx = MessageQueue::open(&arg(1)?, Access::Send).map_err(s)?;
            let frame = make_frame(num(3)?);
            for _ in 0..num(2)? {
                if ember {
                    tx.send_frame(&frame).map_err(s)?;
                } else {
                    sys::mq_timedsend(tx.as_fd(), &frame, 0, None).map_err(s)?;
                }
            }
        }
        "sysv-echo" => {
            let (ka, kb): (i32, i32) = (arg(1)?.parse().map_err(s)?, arg(2)?.parse().map_err(s)?);
            let mut rx: SysvQueue = SysvQueue::open(ka).map_err(s)?;
            let mut tx: SysvQueue = SysvQueue::open(kb).map_err(s)?;
            let mut buf = vec![0u8; 8 + MQ_SIZE];
            for _ in 0..num(3)? {
                if ember {
                    let n = rx.recv_frame(&mut buf).map_err(s)?;
                    tx.send_frame(&buf[..n]).map_err(s)?;
                } else {
                    let n = sys::msgrcv(rx.id(), &mut buf, 0, 0).map_err(s)?;
                    sys::msgsnd(tx.id(), &buf, n, 0).map_err(s)?;
                }
            }
        }
        "sysv-flood" => {
            let key: i32 = arg(1)?.parse().map_err(s)?;
            let mut tx: SysvQueue = SysvQueue::open(key).map_err(s)?;
            let frame = make_frame(num(3)?);
            const LONG: usize = std::mem::size_of::<std::ffi::c_long>();
            let mut msg = vec![0u8; LONG + frame.len()];
            msg[..LONG].copy_from_slice(&(1 as std::ffi::c_long).to_ne_bytes());
            msg[LONG..].copy_from_slice(&frame);
            for _ in 0..num(2)? {
                if ember {
                    tx.send_frame(&frame).map_err(s)?;
                } else {
                    sys::msgsnd(tx.id(), &msg, frame.len(), 0).map_err(s)?;
                }
            }
        }
        "fifo-echo" => {
            let (a, b) = (arg(1)?, arg(2)?);
            let (iters, payload) = (num(3)?, num(4)?);
            let mut rx: ember_linux::pipe::StreamReader = fifo::open_reader(&a, false).map_err(s)?;
            let mut tx = loop {
                match fifo::open_writer(&b, false) {
                    Ok(w) => break w,
                    Err(ember_linux::Error::NoReader) => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) => return Err(e.to_string()),
                }
            };
            let len = make_frame(payload).len();
            let mut buf = vec![0u8; ember_linux::pipe::DEFAULT_STREAM_BUF];
            for _ in 0..iters {
                if ember {
                    let n = loop {
                        match rx.recv_frame(&mut buf) {
                            Ok(n) => break n,
                            Err(ember_linux::Error::PeerGone) => std::thread::yield_now(),
                            Err(e) => return Err(e.to_string()),
                        }
                    };
                    tx.send_frame(&buf[..n]).map_err(s)?;
                } else {
                    read_exact(rx.as_fd(), &mut buf[..len], Eof::Wait)?;
                    write_all(tx.as_fd(), &buf[..len])?;
                }
            }
        }
        "fifo-flood" => {
            let mut tx = loop {
                match fifo::open_writer(&arg(1)?, false) {
                    Ok(w) => break w,
                    Err(ember_linux::Error::NoReader) => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) => return Err(e.to_string()),
                }
            };
            let frame = make_frame(num(3)?);
            for _ in 0..num(2)? {
                if ember {
                    tx.send_frame(&frame).map_err(s)?;
                } else {
                    write_all(tx.as_fd(), &frame)?;
                }
            }
        }
        "signal-echo" => {
            let parent: u32 = arg(1)?.parse().map_err(s)?;
            let set = SigSet::of(&[signal::SIGUSR1]);
            signal::block(set).map_err(s)?;
            let mut sfd = SignalFd::new(set, false).map_err(s)?;
            println!("ready");
            let mut buf = [0u8; 128];
            for _ in 0..num(2)? {
                if ember {
                    let info = sfd.recv().map_err(s)?;
                    signal::send_with_value(parent, signal::SIGUSR2, info.value).map_err(s)?;
                } else {
                    rustix::io::read(&sfd, &mut buf).map_err(s)?;
                    sys::rt_sigqueueinfo(parent as i32, signal::SIGUSR2, 0).map_err(s)?;
                }
            }
        }
        other => return Err(format!("unknown peer role {other}")),
    }
    Ok(())
}

const NOTE: &str = "ping-pong between two processes (one-way = half) or a stream (per message over batches of 256); raw = the same system calls on the same bytes; target ratio <= 1.10";

/// Runs the queue, FIFO and signal rows on `cpus[1]` (the peer) and this process.
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let names = [
        "mq/",
        "sysv-mq/",
        "fifo/",
        "signal/",
        "mq-stream/",
        "mq-stream-4k/",
        "sysv-stream/",
        "sysv-stream-4k/",
        "fifo-stream/",
        "fifo-stream-4k/",
    ];
    if !names.iter().any(|n| opts.selected(n)) {
        return Ok(());
    }
    let b = *cpus.get(1).ok_or("the queue rows need two CPUs (see --cpus); skipped")?;
    let rounds = opts.pick(5, 3, 1);
    let iters = opts.pick(5_000, 1_500, 20);
    let count = opts.pick(1 << 16, 1 << 14, 16 * super::harness::BATCH);
    let payload = opts.size.unwrap_or(64).min(MQ_SIZE - 24);
    let mut pools: Vec<(&str, bool, Pool)> = Vec::new();
    for name in names {
        for ember in [false, true] {
            pools.push((name, ember, Pool::default()));
        }
    }
    for round in 1..=rounds {
        for (name, ember, pool) in pools.iter_mut() {
            if !opts.selected(name) {
                continue;
            }
            progress.step(&format!("{name}{} (round {round}/{rounds})", if *ember { "ember" } else { "raw" }));
            let r = match *name {
                "mq/" => mq_latency(b, iters, *ember, payload),
                "sysv-mq/" => sysv_latency(b, iters, *ember, payload),
                "fifo/" => fifo_latency(b, iters, *ember, payload),
                "signal/" => signal_latency(b, iters, *ember),
                "mq-stream/" => mq_throughput(b, count, *ember, payload),
                "mq-stream-4k/" => mq_throughput(b, count / 4, *ember, 4096),
                "sysv-stream/" => sysv_throughput(b, count, *ember, payload),
                "sysv-stream-4k/" => sysv_throughput(b, count / 4, *ember, 4096),
                "fifo-stream/" => fifo_throughput(b, count, *ember, payload),
                _ => fifo_throughput(b, count / 4, *ember, 4096),
            };
            pool.add(r)?;
        }
    }
    let frame = payload + 24;
    for pair in pools.chunks_mut(2) {
        let [(name, _, raw), (_, _, ember)] = pair else { continue };
        if let (Some(r), Some(e)) = (raw.stats(), ember.stats()) {
            let size = match *name {
                "signal/" => 4,
                n if n.ends_with("-4k/") => 4096 + 24,
                _ => frame,
            };
            let raw_name = format!("{name}raw");
            row(rows, &raw_name, size, r, None, NOTE);
            row(rows, &format!("{name}ember"), size, e, Some((raw_name.as_str(), r)), NOTE);
        }
    }
    Ok(())
}
