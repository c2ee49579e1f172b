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
fn throughput(cpu: usize, count: usize, role: &str, payload: usize) -> Result<Vec<f64>, String> {
    let packet = role.ends_with("-packet");
    let flags = if packet {
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::DIRECT
    } else {
        rustix::pipe::PipeFlags::CLOEXEC
    };
    let (r, w) = rustix::pipe::pipe_with(flags).map_err(|e| e.to_string())?;
    let ember = !role.starts_with("raw-flood");
    let mut child = spawn_peer(cpu, &[role, &count.to_string(), &payload.to_string()], Stdio::null(), Stdio::from(w))?;
    let frame_len = make_frame(payload).len();
    let mut batches = Batches::new(count);
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
        let mut rx: StreamReader<{ 64 * 1024 }> = StreamReader::from_fd(r);
        let mut out = vec![0u8; 64 * 1024];
        for _ in 0..count {
            rx.recv_frame(&mut out).map_err(|e| e.to_string())?;
            batches.count(1);
        }
    } else {
        // Raw: read as much as the pipe has, count whole messages (the kernel's cost).
        let mut buf = vec![0u8; 64 * 1024];
        let (mut bytes, mut done) = (0usize, 0usize);
        while done < count {
            let n = match rustix::io::read(&r, &mut buf) {
                Ok(0) => return Err("peer closed early".into()),
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.to_string()),
            };
            bytes += n;
            let whole = bytes / frame_len;
            bytes %= frame_len;
            done += whole;
            batches.count(whole);
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("peer failed: {status}"));
    }
    Ok(batches.samples)
}

/// The peer roles of this module (`ember __peer <cpu> <role> ...`, stdin/stdout set up by
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
        "frame-flood" | "frame-flood-noguard" | "frame-flood-packet" => {
            let (count, payload) = (num(0)?, num(1)?);
            let frame = make_frame(payload);
            let mut tx = if role == "frame-flood-packet" { Writer::packet(out_fd) } else { Writer::stream(out_fd) };
            // Rust programs ignore SIGPIPE by default, so the guard may go.
            tx.set_sigpipe_guard(role != "frame-flood-noguard");
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
const NOTE_NOGUARD: &str = "as pipe-stream/ember with Writer::set_sigpipe_guard(false) (SIGPIPE ignored, as in Rust programs): no rt_sigprocmask per write";
const NOTE_TPUT: &str = "the peer streams messages into a pipe, time per message over batches of 256; raw reads the same bytes; target ratio <= 1.10";

/// Runs the pipe rows on `cpus[0]` (this process) and `cpus[1]` (the peer).
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let lat = opts.selected("pipe/") || opts.selected("packet-pipe/");
    let tput = opts.selected("pipe-stream/") || opts.selected("packet-stream/");
    if !lat && !tput {
        return Ok(());
    }
    let b = *cpus.get(1).ok_or("the pipe rows need two CPUs (see --cpus); skipped")?;
    let rounds = if opts.full { 5 } else { 3 };
    let iters = if opts.full { 5_000 } else { 1_500 };
    let count = if opts.full { 1 << 18 } else { 1 << 16 };
    let payload = opts.size.unwrap_or(64);
    let (mut pr, mut pe, mut kr, mut ke) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut t64r, mut t64e, mut t4r, mut t4e) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut t64n, mut t4n) = (Pool::default(), Pool::default());
    let (mut kpr, mut kpe) = (Pool::default(), Pool::default());
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
            step("pipe stream 64 B, raw");
            t64r.add(throughput(b, count, "raw-flood", 64))?;
            step("pipe stream 64 B, Ember");
            t64e.add(throughput(b, count, "frame-flood", 64))?;
            step("pipe stream 64 B, Ember without the SIGPIPE guard");
            t64n.add(throughput(b, count, "frame-flood-noguard", 64))?;
            step("pipe stream 4 KiB, raw");
            t4r.add(throughput(b, count / 16, "raw-flood", 4096))?;
            step("pipe stream 4 KiB, Ember");
            t4e.add(throughput(b, count / 16, "frame-flood", 4096))?;
            step("pipe stream 4 KiB, Ember without the SIGPIPE guard");
            t4n.add(throughput(b, count / 16, "frame-flood-noguard", 4096))?;
            step("packet pipe stream 64 B, raw");
            kpr.add(throughput(b, count, "raw-flood-packet", 64))?;
            step("packet pipe stream 64 B, Ember");
            kpe.add(throughput(b, count, "frame-flood-packet", 64))?;
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
    if let (Some(r), Some(e), Some(n), Some(r4), Some(e4), Some(n4)) =
        (t64r.stats(), t64e.stats(), t64n.stats(), t4r.stats(), t4e.stats(), t4n.stats())
    {
        row(rows, "pipe-stream/raw", 88, r, None, NOTE_TPUT);
        row(rows, "pipe-stream/ember", 88, e, Some(("pipe-stream/raw", r)), NOTE_TPUT);
        row(rows, "pipe-stream/ember-noguard", 88, n, Some(("pipe-stream/raw", r)), NOTE_NOGUARD);
        row(rows, "pipe-stream/raw", 4120, r4, None, NOTE_TPUT);
        row(rows, "pipe-stream/ember", 4120, e4, Some(("pipe-stream/raw", r4)), NOTE_TPUT);
        row(rows, "pipe-stream/ember-noguard", 4120, n4, Some(("pipe-stream/raw", r4)), NOTE_NOGUARD);
    }
    if let (Some(r), Some(e)) = (kpr.stats(), kpe.stats()) {
        row(rows, "packet-stream/raw", 88, r, None, NOTE_TPUT);
        row(rows, "packet-stream/ember", 88, e, Some(("packet-stream/raw", r)), NOTE_TPUT);
    }
    Ok(())
}
