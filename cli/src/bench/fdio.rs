//! Frames and raw bytes over descriptors, for the rows of the kernel transports (pipes,
//! FIFOs, message queues, sockets): the frame a row moves, the raw `read`/`write` loops of
//! the baselines, and the receiving end of a streaming row.

use rustix::fd::{AsFd, OwnedFd};

use ember_core::frame::FrameRepr;
use ember_linux::FrameReceiver;
use ember_linux::pipe::{PIPE_BUF, PacketReader, StreamReader, Writer};

use super::harness::Batches;

/// The frame for a `payload`-byte message (what both the Ember and the raw rows move), with
/// the payload checksum of a local medium's default (pipes, FIFOs and queues: unchecked,
/// docs/wire-format.md §4.4), as an application's sender writes it.
pub(super) fn make_frame(payload: usize) -> Vec<u8> {
    make_frame_with(payload, Writer::DEFAULT_INTEGRITY)
}

/// [`make_frame`] with the payload checksum `integrity` says (a socket's default).
pub(super) fn make_frame_with(payload: usize, integrity: ember_core::frame::Integrity) -> Vec<u8> {
    let repr = FrameRepr { flags: integrity.flags(), kind: 1, seq: 7, payload_len: payload };
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
