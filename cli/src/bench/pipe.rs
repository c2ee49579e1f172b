//! Cross-process rows for pipes: Ember frames against a raw `read`/`write` loop moving the
//! same bytes through the same kind of pipe between the same two pinned processes.
//!
//! Latency: a ping-pong of one message (halved). Throughput: the peer streams messages, the
//! parent times every batch of 256. The raw loop moves exactly the bytes of the Ember frame
//! (24-byte header plus payload), so the ratio is the cost of Ember's framing, checks and
//! `SIGPIPE` guard, not of the bytes.

use std::process::Stdio;
use std::time::Instant;

use ember_core::frame::{Flags, FrameRepr};
use ember_linux::pipe::{self, PIPE_BUF, PacketReader, StreamReader, Writer};
use ember_linux::{FrameReceiver, FrameSender};
use rustix::fd::{AsFd, OwnedFd};

use super::shm::{Batches, Pool, now_ns, row, spawn_peer};
use super::{Options, Progress, Row};

/// The frame for a `payload`-byte message (what both the Ember and the raw rows move).
pub(super) fn make_frame(payload: usize) -> Vec<u8> {
    let repr = FrameRepr { flags: Flags::empty(), kind: 1, seq: 7, payload_len: payload };
    let mut buf = vec![0u8; payload + 64];
    let n = repr.emit_with_payload(&vec![0x5A; payload], &mut buf).expect("fits").len();
    buf.truncate(n);
    buf
}

/// What a raw read does at end of file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Eof {
    /// The peer is gone: an error.
    Fail,
    /// No writer yet (a FIFO whose peer opens its end after ours): wait for one.
    Wait,
}

/// `read(2)` until `buf` is full (the raw baseline's receive).
pub(super) fn read_exact(fd: impl AsFd, buf: &mut [u8], eof: Eof) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(&fd, &mut buf[got..]) {
            Ok(0) if eof == Eof::Wait => std::thread::yield_now(),
            Ok(0) => return Err("peer closed".into()),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// `write(2)` until all of `buf` is written (the raw baseline's send).
pub(super) fn write_all(fd: impl AsFd, mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match rustix::io::write(&fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Two pipes (packet mode or not): `(to_peer_write, to_peer_read, from_peer_read, from_peer_write)`.
fn pipes(packet: bool) -> Result<(OwnedFd, OwnedFd, OwnedFd, OwnedFd), String> {
    let flags = if packet {
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::DIRECT
    } else {
        rustix::pipe::PipeFlags::CLOEXEC
    };
    let (a_r, a_w) = rustix::pipe::pipe_with(flags).map_err(|e| e.to_string())?;
    let (b_r, b_w) = rustix::pipe::pipe_with(flags).map_err(|e| e.to_string())?;
    Ok((a_w, a_r, b_r, b_w))
}

/// One-way latency samples: `ember` frames or raw bytes of the same length.
fn latency(cpu: usize, iters: usize, packet: bool, ember: bool, payload: usize) -> Result<Vec<f64>, String> {
    let (to_w, to_r, from_r, from_w) = pipes(packet)?;
    let mode = if packet { "packet" } else { "stream" };
    let role = if ember { "frame-echo" } else { "raw-echo" };
    let mut child = spawn_peer(
        cpu,
        &[role, mode, &iters.to_string(), &payload.to_string()],
        Stdio::from(to_r),
        Stdio::from(from_w),
    )?;
    let frame = make_frame(payload);
    let mut samples = Vec::with_capacity(iters);
    if ember {
        let mut tx = if packet { Writer::packet(to_w) } else { Writer::stream(to_w) };
        let mut out = vec![0u8; pipe::DEFAULT_STREAM_BUF];
        let mut rx = Reader::new(from_r, packet);
        for _ in 0..iters {
            let t = Instant::now();
            tx.send_frame(&frame).map_err(|e| e.to_string())?;
            let n = rx.recv(&mut out)?;
            samples.push(now_ns(t) / 2.0);
            debug_assert_eq!(n, frame.len());
        }
    } else {
        let mut out = vec![0u8; frame.len()];
        for _ in 0..iters {
            let t = Instant::now();
            write_all(&to_w, &frame)?;
            read_exact(&from_r, &mut out, Eof::Fail)?;
            samples.push(now_ns(t) / 2.0);
        }
        drop(to_w);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("peer failed: {status}"));
    }
    Ok(samples)
}

/// Either kind of pipe reader.
enum Reader {
    Stream(Box<StreamReader>),
    Packet(PacketReader),
}

impl Reader {
    fn new(fd: OwnedFd, packet: bool) -> Reader {
        if packet {
            Reader::Packet(PacketReader::from_fd(fd))
        } else {
            Reader::Stream(Box::new(StreamReader::from_fd(fd)))
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        match self {
            Reader::Stream(r) => r.recv_frame(buf),
            Reader::Packet(r) => r.recv_frame(buf),
        }
        .map_err(|e| e.to_string())
    }
}

/// Per-message samples of a stream of `payload`-byte messages from the peer.
fn throughput(cpu: usize, count: usize, role: &str, payload: usize, copy: bool) -> Result<Vec<f64>, String> {
    let packet = role.contains("-packet");
    let flags = if packet {
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::DIRECT
    } else {
        rustix::pipe::PipeFlags::CLOEXEC
    };
    let (r, w) = rustix::pipe::pipe_with(flags).map_err(|e| e.to_string())?;
    let ember = !role.starts_with("raw-flood");
    let mut child = spawn_peer(cpu, &[role, &count.to_string(), &payload.to_string()], Stdio::null(), Stdio::from(w))?;
    let consumer = match (ember, copy) {
        (true, _) => Consumer::Ember,
        (false, false) => Consumer::Raw,
        (false, true) => Consumer::RawCopy,
    };
    let samples = drain(r, count, make_frame(payload).len(), packet, consumer, Eof::Fail)?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("peer failed: {status}"));
    }
    Ok(samples)
}

/// How a streaming row's receiver takes the messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Consumer {
    /// Ember's checked receive (`recv_frame` into the caller's buffer).
    Ember,
    /// Raw reads that count bytes and never touch them: the kernel's cost alone.
    Raw,
    /// Raw reads, then each whole message copied out of the read buffer (what any receiver
    /// that uses the bytes pays, Ember or not); byte streams only.
    RawCopy,
}

/// Receives `count` frames of `frame_len` bytes from `r` (a pipe or FIFO, packet mode or
/// not) as `consumer` says, and returns per-message samples over batches. `eof` says what
/// end of file before the first message means (a FIFO whose writer has not opened yet).
pub(super) fn drain(
    r: OwnedFd,
    count: usize,
    frame_len: usize,
    packet: bool,
    consumer: Consumer,
    eof: Eof,
) -> Result<Vec<f64>, String> {
    let ember = consumer == Consumer::Ember;
    let mut batches = Batches::new(count);
    let waiting = |done: usize| eof == Eof::Wait && done == 0;
    if packet {
        // One read per packet, raw or through Ember's checked receive.
        let mut rx = PacketReader::from_fd(r.try_clone().map_err(|e| e.to_string())?);
        let mut out = vec![0u8; PIPE_BUF];
        for _ in 0..count {
            if ember {
                rx.recv_frame(&mut out).map_err(|e| e.to_string())?;
            } else {
                let n = rustix::io::read(&r, &mut out).map_err(|e| e.to_string())?;
                if n != frame_len {
                    return Err(format!("packet of {n} bytes"));
                }
            }
            batches.count(1);
        }
    } else if ember {
        let mut rx: Box<StreamReader<{ 64 * 1024 }>> = Box::new(StreamReader::from_fd(r));
        let mut out = vec![0u8; 64 * 1024];
        let mut done = 0;
        while done < count {
            match rx.recv_frame(&mut out) {
                Ok(_) => done += 1,
                Err(ember_linux::Error::PeerGone) if waiting(done) => std::thread::yield_now(),
                Err(e) => return Err(e.to_string()),
            }
            batches.count(1);
        }
    } else {
        // Raw: read as much as the pipe has and count whole messages (the kernel's cost);
        // RawCopy also copies each whole message out, keeping a partial one for the next read.
        let copy = consumer == Consumer::RawCopy;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = vec![0u8; frame_len];
        let (mut have, mut done) = (0usize, 0usize);
        while done < count {
            let room = if copy { &mut buf[have..] } else { &mut buf[..] };
            let n = match rustix::io::read(&r, room) {
                Ok(0) if waiting(done) && have == 0 => {
                    std::thread::yield_now();
                    continue;
                }
                Ok(0) => return Err("peer closed early".into()),
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.to_string()),
            };
            have += n;
            let whole = have / frame_len;
            if copy {
                for m in buf[..whole * frame_len].chunks_exact(frame_len) {
                    out.copy_from_slice(m);
                    std::hint::black_box(&out);
                }
                buf.copy_within(whole * frame_len..have, 0);
            }
            have %= frame_len;
            done += whole;
            batches.count(whole);
        }
    }
    Ok(batches.samples)
}

/// The peer roles of this module (`emberctl __peer <cpu> <role> ...`, stdin/stdout set up by
/// the parent).
pub fn peer(role: &str, args: &[String]) -> Result<(), String> {
    let num = |i: usize| -> Result<usize, String> {
        args.get(i).ok_or(format!("{role}: missing argument {i}"))?.parse().map_err(|e| format!("{role}: {e}"))
    };
    let dup = |fd: rustix::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map_err(|e| e.to_string());
    let in_fd = dup(rustix::stdio::stdin())?;
    let out_fd = dup(rustix::stdio::stdout())?;
    match role {
        "frame-echo" => {
            let packet = args.first().map(String::as_str) == Some("packet");
            let iters = num(1)?;
            let mut tx = if packet { Writer::packet(out_fd) } else { Writer::stream(out_fd) };
            let mut buf = vec![0u8; pipe::DEFAULT_STREAM_BUF.max(PIPE_BUF)];
            let mut rx = Reader::new(in_fd, packet);
            for _ in 0..iters {
                let n = rx.recv(&mut buf)?;
                tx.send_frame(&buf[..n]).map_err(|e| e.to_string())?;
            }
        }
        "raw-echo" => {
            let (iters, payload) = (num(1)?, num(2)?);
            let mut buf = vec![0u8; make_frame(payload).len()];
            for _ in 0..iters {
                read_exact(&in_fd, &mut buf, Eof::Fail)?;
                write_all(&out_fd, &buf)?;
            }
        }
        "frame-flood" | "frame-flood-guard" | "frame-flood-packet" | "frame-flood-packet-guard" => {
            let (count, payload) = (num(0)?, num(1)?);
            let frame = make_frame(payload);
            let mut tx = if role.contains("-packet") { Writer::packet(out_fd) } else { Writer::stream(out_fd) };
            // This Rust program ignores SIGPIPE, so the writer starts without the guard;
            // the -guard rows force it on, as for a C program with SIGPIPE's default action.
            if role.ends_with("-guard") {
                tx.set_sigpipe_guard(true);
            }
            for _ in 0..count {
                tx.send_frame(&frame).map_err(|e| e.to_string())?;
            }
        }
        "raw-flood" | "raw-flood-packet" => {
            let (count, payload) = (num(0)?, num(1)?);
            let frame = make_frame(payload);
            for _ in 0..count {
                write_all(&out_fd, &frame)?;
            }
        }
        other => return super::queues::peer(other, args),
    }
    Ok(())
}

const NOTE_LAT: &str =
    "ping-pong between two processes, one-way = half; raw moves the same bytes with read/write; target ratio <= 1.10";
const NOTE_GUARD: &str = "as */ember with the SIGPIPE guard forced on (what a program that does not ignore SIGPIPE pays, e.g. C): two rt_sigprocmask per write";
const NOTE_COPY: &str = "raw reads, then each message copied out of the read buffer: what any receiver that uses the bytes pays, Ember or not (context for */ember; not a target)";
const NOTE_TPUT: &str = "the peer streams messages into a pipe, time per message over batches of 256; raw reads the same bytes; target ratio <= 1.10";

/// Runs the pipe rows on `cpus[0]` (this process) and `cpus[1]` (the peer).
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let lat = opts.selected("pipe/") || opts.selected("packet-pipe/");
    let tput = opts.selected("pipe-stream/") || opts.selected("packet-stream/");
    if !lat && !tput {
        return Ok(());
    }
    let b = *cpus.get(1).ok_or("the pipe rows need two CPUs (see --cpus); skipped")?;
    let rounds = opts.pick(5, 3, 1);
    let iters = opts.pick(5_000, 1_500, 20);
    let count = opts.pick(1 << 18, 1 << 16, 16 * super::shm::BATCH);
    let payload = opts.size.unwrap_or(64);
    let (mut pr, mut pe, mut kr, mut ke) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut t64r, mut t64e, mut t4r, mut t4e) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut t64g, mut t4g, mut t64c, mut t4c) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut kpr, mut kpe, mut kpg) = (Pool::default(), Pool::default(), Pool::default());
    for round in 1..=rounds {
        let step = |what: &str| progress.step(&format!("{what} (round {round}/{rounds})"));
        if lat {
            step("pipe ping-pong, raw");
            pr.add(latency(b, iters, false, false, payload))?;
            step("pipe ping-pong, Ember");
            pe.add(latency(b, iters, false, true, payload))?;
            if payload + 24 <= PIPE_BUF {
                step("packet pipe ping-pong, raw");
                kr.add(latency(b, iters, true, false, payload))?;
                step("packet pipe ping-pong, Ember");
                ke.add(latency(b, iters, true, true, payload))?;
            }
        }
        if tput {
            // 4 KiB messages: a quarter as many, so each round still gives 64 batches.
            let cases: [(&str, &str, usize, usize, bool, &mut Pool); 11] = [
                ("pipe stream 64 B, raw", "raw-flood", count, 64, false, &mut t64r),
                ("pipe stream 64 B, raw + copy", "raw-flood", count, 64, true, &mut t64c),
                ("pipe stream 64 B, Ember", "frame-flood", count, 64, false, &mut t64e),
                ("pipe stream 64 B, Ember, SIGPIPE guard on", "frame-flood-guard", count, 64, false, &mut t64g),
                ("pipe stream 4 KiB, raw", "raw-flood", count / 4, 4096, false, &mut t4r),
                ("pipe stream 4 KiB, raw + copy", "raw-flood", count / 4, 4096, true, &mut t4c),
                ("pipe stream 4 KiB, Ember", "frame-flood", count / 4, 4096, false, &mut t4e),
                ("pipe stream 4 KiB, Ember, SIGPIPE guard on", "frame-flood-guard", count / 4, 4096, false, &mut t4g),
                ("packet pipe stream 64 B, raw", "raw-flood-packet", count, 64, false, &mut kpr),
                ("packet pipe stream 64 B, Ember", "frame-flood-packet", count, 64, false, &mut kpe),
                (
                    "packet pipe stream 64 B, Ember, SIGPIPE guard on",
                    "frame-flood-packet-guard",
                    count,
                    64,
                    false,
                    &mut kpg,
                ),
            ];
            for (what, role, n, size, copy, pool) in cases {
                step(what);
                pool.add(throughput(b, n, role, size, copy))?;
            }
        }
    }
    if let (Some(r), Some(e)) = (pr.stats(), pe.stats()) {
        row(rows, "pipe/raw", payload + 24, r, None, NOTE_LAT);
        row(rows, "pipe/ember", payload + 24, e, Some(("pipe/raw", r)), NOTE_LAT);
    }
    if let (Some(r), Some(e)) = (kr.stats(), ke.stats()) {
        row(rows, "packet-pipe/raw", payload + 24, r, None, NOTE_LAT);
        row(rows, "packet-pipe/ember", payload + 24, e, Some(("packet-pipe/raw", r)), NOTE_LAT);
    }
    for (name, size, raw, copy, ember, guard) in [
        ("pipe-stream/", 88, &mut t64r, Some(&mut t64c), &mut t64e, &mut t64g),
        ("pipe-stream/", 4120, &mut t4r, Some(&mut t4c), &mut t4e, &mut t4g),
        ("packet-stream/", 88, &mut kpr, None, &mut kpe, &mut kpg),
    ] {
        if let (Some(r), Some(e), Some(g)) = (raw.stats(), ember.stats(), guard.stats()) {
            let raw_name = format!("{name}raw");
            row(rows, &raw_name, size, r, None, NOTE_TPUT);
            if let Some(c) = copy.and_then(|c| c.stats()) {
                row(rows, &format!("{name}raw-copy"), size, c, Some((raw_name.as_str(), r)), NOTE_COPY);
            }
            row(rows, &format!("{name}ember"), size, e, Some((raw_name.as_str(), r)), NOTE_TPUT);
            row(rows, &format!("{name}ember-guard"), size, g, Some((raw_name.as_str(), r)), NOTE_GUARD);
        }
    }
    Ok(())
}
