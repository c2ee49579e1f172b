//! Cross-process rows for pipes: Ember frames against a raw `read`/`write` loop moving the
//! same bytes through the same kind of pipe between the same two pinned processes.
//!
//! Latency: a ping-pong of one message (halved). Throughput: the peer streams messages, the
//! parent times every batch of 256. The raw loop moves exactly the bytes of the Ember frame
//! (24-byte header plus payload), so the ratio is the cost of Ember's framing, checks and
//! `SIGPIPE` guard, not of the bytes.

use std::process::Stdio;
use std::time::Instant;

use ember_core::frame::{FrameRepr, Integrity};
use ember_linux::pipe::{self, PIPE_BUF, PacketReader, StreamReader, Writer};
use ember_linux::{FrameReceiver, FrameSender};
use rustix::fd::OwnedFd;

use super::fdio::{Consumer, Eof, drain, make_frame, read_exact, write_all};
use super::harness::{Pool, now_ns, row, spawn_peer};
use super::{Options, Progress, Row};

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
        let mut out = vec![0u8; frame.len().max(pipe::DEFAULT_STREAM_BUF)];
        let mut rx = Reader::new(from_r, packet, frame.len());
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

/// The largest frame the pipe ping-pong moves (`--size` up to 1 MiB, plus the header).
pub(super) const LARGEST_FRAME: usize = (1 << 20) + 64;

/// Either kind of pipe reader; frames larger than the default stream buffer go through a
/// reader sized for the largest (`--size` sweeps).
enum Reader {
    Stream(Box<StreamReader>),
    Large(Box<StreamReader<LARGEST_FRAME>>),
    Packet(PacketReader),
}

impl Reader {
    fn new(fd: OwnedFd, packet: bool, frame: usize) -> Reader {
        if packet {
            Reader::Packet(PacketReader::from_fd(fd))
        } else if frame <= pipe::DEFAULT_STREAM_BUF {
            Reader::Stream(Box::new(StreamReader::from_fd(fd)))
        } else {
            Reader::Large(Box::new(StreamReader::from_fd(fd)))
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        match self {
            Reader::Stream(r) => r.recv_frame(buf),
            Reader::Large(r) => r.recv_frame(buf),
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

/// This module's peer roles, for [`super::harness::peer`]: `None` for a role that is not
/// one of them.
pub fn peer(role: &str, args: &[String]) -> Option<Result<(), String>> {
    (role.starts_with("frame-") || role.starts_with("raw-")).then(|| play(role, args))
}

/// The peer roles of this module (`emberctl __peer <cpu> <role> ...`, stdin/stdout set up by
/// the parent).
fn play(role: &str, args: &[String]) -> Result<(), String> {
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
            let frame = make_frame(num(2)?).len();
            let mut buf = vec![0u8; frame.max(pipe::DEFAULT_STREAM_BUF).max(PIPE_BUF)];
            let mut rx = Reader::new(in_fd, packet, frame);
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
        "frame-flood-checked" => {
            // Each frame built as a sender builds it, with the payload checksum forced on:
            // the CRC of every payload on this side, its check on the reader's.
            let (count, payload) = (num(0)?, num(1)?);
            let data = vec![0x5A; payload];
            let mut buf = vec![0u8; payload + 64];
            let mut tx = Writer::stream(out_fd);
            for seq in 0..count {
                let repr =
                    FrameRepr { flags: Integrity::Checked.flags(), kind: 1, seq: seq as u32, payload_len: payload };
                let frame = repr.emit_with_payload(&data, &mut buf).map_err(|e| e.to_string())?;
                tx.send_frame(frame).map_err(|e| e.to_string())?;
            }
        }
        "raw-flood" | "raw-flood-packet" => {
            let (count, payload) = (num(0)?, num(1)?);
            let frame = make_frame(payload);
            for _ in 0..count {
                write_all(&out_fd, &frame)?;
            }
        }
        other => return Err(format!("unknown peer role {other}")),
    }
    Ok(())
}

const NOTE_LAT: &str =
    "ping-pong between two processes, one-way = half; raw moves the same bytes with read/write; target ratio <= 1.10";
const NOTE_GUARD: &str = "as */ember with the SIGPIPE guard forced on (what a program that does not ignore SIGPIPE pays, e.g. C): two rt_sigprocmask per write";
const NOTE_COPY: &str = "raw reads, then each message copied out of the read buffer: what any receiver that uses the bytes pays, Ember or not (context for */ember; not a target)";
const NOTE_CHECKED: &str = "as */ember with the payload checksum forced on (each frame built with its CRC by the sender, checked by the reader); baseline: raw-copy; target ratio <= 1.35 on x86-64 at 4 KiB";
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
    let count = opts.pick(1 << 18, 1 << 16, 16 * super::harness::BATCH);
    let payload = opts.size.unwrap_or(64);
    let (mut pr, mut pe, mut kr, mut ke) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut t64r, mut t64e, mut t4r, mut t4e) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut t64g, mut t4g, mut t64c, mut t4c) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut kpr, mut kpe, mut kpg) = (Pool::default(), Pool::default(), Pool::default());
    let (mut t64k, mut t4k) = (Pool::default(), Pool::default());
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
            let cases: [(&str, &str, usize, usize, bool, &mut Pool); 13] = [
                ("pipe stream 64 B, raw", "raw-flood", count, 64, false, &mut t64r),
                ("pipe stream 64 B, raw + copy", "raw-flood", count, 64, true, &mut t64c),
                ("pipe stream 64 B, Ember", "frame-flood", count, 64, false, &mut t64e),
                ("pipe stream 64 B, Ember, SIGPIPE guard on", "frame-flood-guard", count, 64, false, &mut t64g),
                ("pipe stream 64 B, Ember, payload checked", "frame-flood-checked", count, 64, false, &mut t64k),
                ("pipe stream 4 KiB, raw", "raw-flood", count / 4, 4096, false, &mut t4r),
                ("pipe stream 4 KiB, raw + copy", "raw-flood", count / 4, 4096, true, &mut t4c),
                ("pipe stream 4 KiB, Ember", "frame-flood", count / 4, 4096, false, &mut t4e),
                ("pipe stream 4 KiB, Ember, SIGPIPE guard on", "frame-flood-guard", count / 4, 4096, false, &mut t4g),
                ("pipe stream 4 KiB, Ember, payload checked", "frame-flood-checked", count / 4, 4096, false, &mut t4k),
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
    for (name, size, raw, copy, ember, guard, checked) in [
        ("pipe-stream/", 88, &mut t64r, Some(&mut t64c), &mut t64e, &mut t64g, Some(&mut t64k)),
        ("pipe-stream/", 4120, &mut t4r, Some(&mut t4c), &mut t4e, &mut t4g, Some(&mut t4k)),
        ("packet-stream/", 88, &mut kpr, None, &mut kpe, &mut kpg, None),
    ] {
        if let (Some(r), Some(e), Some(g)) = (raw.stats(), ember.stats(), guard.stats()) {
            let raw_name = format!("{name}raw");
            row(rows, &raw_name, size, r, None, NOTE_TPUT);
            let copy = copy.and_then(|c| c.stats());
            if let Some(c) = copy {
                row(rows, &format!("{name}raw-copy"), size, c, Some((raw_name.as_str(), r)), NOTE_COPY);
            }
            row(rows, &format!("{name}ember"), size, e, Some((raw_name.as_str(), r)), NOTE_TPUT);
            row(rows, &format!("{name}ember-guard"), size, g, Some((raw_name.as_str(), r)), NOTE_GUARD);
            if let (Some(k), Some(c)) = (checked.and_then(|k| k.stats()), copy) {
                let copy_name = format!("{name}raw-copy");
                row(rows, &format!("{name}ember-checked"), size, k, Some((copy_name.as_str(), c)), NOTE_CHECKED);
            }
        }
    }
    Ok(())
}
