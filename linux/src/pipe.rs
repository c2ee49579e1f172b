//! Pipes, and the stream and packet readers and the writer shared with FIFOs.
//!
//! - [`pipe`]: `pipe2(O_CLOEXEC)`, a byte stream; frames go back to back and the
//!   [`StreamReader`] reassembles them.
//! - [`packet_pipe`]: `pipe2(O_CLOEXEC | O_DIRECT)`, packet mode (Linux 3.4+): each write is
//!   one packet and each read returns one packet, so one frame is one message
//!   ([`PacketReader`]); a frame is at most `PIPE_BUF` (4096) bytes.
//!
//! **Several writers** (`PIPE_BUF` rule, `pipe(7)`): a write of at most `PIPE_BUF` bytes is
//! atomic, so frames of up to 4096 bytes from several writers never interleave. Larger
//! frames may be interleaved with other writers' bytes; the receiver then reports a bad
//! frame and resynchronises, but the frames involved are lost. Keep frames at or below
//! 4096 bytes when a pipe or FIFO has several writers, or give each writer its own pipe.
//!
//! **`SIGPIPE`**: a write to a pipe whose readers are all gone raises `SIGPIPE`, which kills
//! the process by default. Ember's writers never let it: the write returns
//! [`Error::PeerGone`], and the process-wide disposition is never changed.
//!
//! - If `SIGPIPE` is ignored when the writer is made (Rust programs ignore it before `main`;
//!   [`crate::sys::sigpipe_ignored`]), the write is a plain `write(2)`: the kernel already
//!   turns a broken pipe into `EPIPE`.
//! - Otherwise (a C program's default) each write blocks `SIGPIPE` in the calling thread and
//!   consumes the one it raised ([`crate::sys::without_sigpipe`]): two more system calls per
//!   write, or none when the thread already blocks `SIGPIPE`.
//!
//! A program that stops ignoring `SIGPIPE` after making a writer must turn the guard on
//! with [`Writer::set_sigpipe_guard`].
//!
//! **Handing an end to a child**: with the `std` feature, [`Writer::into_stdio`] and
//! [`StreamReader::into_stdio`] turn an end into a `std::process::Stdio`, for a child's
//! stdin or stdout; the child wraps its own stdin/stdout with `from_fd`.

use core::time::Duration;

use ember_core::frame::MAX_FRAME_LEN;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use crate::cancel::Canceler;
use crate::error::{Error, Result};
use crate::stream::StreamBuf;
use crate::transport::{
    FrameReceiver, FrameSender, Integrity, TimedReceiver, TimedSender, check_outgoing, check_receiver_integrity,
    check_sender_integrity, end_of, wait_readable,
};

/// `PIPE_BUF`: the atomic write size of a pipe, and the packet size of a packet pipe.
pub const PIPE_BUF: usize = 4096;

/// Default frame limit (and buffer size) of a [`StreamReader`].
pub const DEFAULT_STREAM_BUF: usize = 16 * 1024;

/// A new pipe (`pipe2(O_CLOEXEC)`): the reader and the writer.
pub fn pipe() -> Result<(StreamReader, Writer)> {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    Ok((StreamReader::from_fd(r), Writer::stream(w)))
}

/// A new packet-mode pipe (`pipe2(O_CLOEXEC | O_DIRECT)`): one frame per packet.
pub fn packet_pipe() -> Result<(PacketReader, Writer)> {
    let (r, w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::DIRECT)?;
    Ok((PacketReader::from_fd(r), Writer::packet(w)))
}

/// The capacity of the pipe behind `fd` (`fcntl(F_GETPIPE_SZ)`).
pub fn capacity(fd: impl AsFd) -> Result<usize> {
    Ok(rustix::pipe::fcntl_getpipe_size(fd)?)
}

/// Sets the capacity of the pipe behind `fd` (`fcntl(F_SETPIPE_SZ)`); the kernel rounds up
/// to a power-of-two number of pages, and unprivileged users are capped by
/// `/proc/sys/fs/pipe-max-size` (`EPERM`). Returns the capacity set.
pub fn set_capacity(fd: impl AsFd, bytes: usize) -> Result<usize> {
    Ok(rustix::pipe::fcntl_setpipe_size(fd, bytes)?)
}

/// The writing end of a pipe or FIFO: sends whole frames, never raises `SIGPIPE`.
///
/// `Send` and `Sync`: an owned fd; sending takes `&mut self`.
#[derive(Debug)]
pub struct Writer {
    fd: OwnedFd,
    packet: bool,
    guard: bool,
    integrity: Integrity,
}

impl Writer {
    /// The [`FrameSender::integrity`] a new writer has: the kernel copies pipe bytes intact,
    /// so payloads are not checked.
    pub const DEFAULT_INTEGRITY: Integrity = Integrity::Unchecked;

    /// Wraps the write end of a byte-stream pipe or FIFO (e.g. a child's stdout). The
    /// `SIGPIPE` guard is on unless `SIGPIPE` is ignored now (one `rt_sigaction` read).
    pub fn stream(fd: OwnedFd) -> Writer {
        Writer { fd, packet: false, guard: needs_guard(), integrity: Self::DEFAULT_INTEGRITY }
    }

    /// Wraps the write end of a packet-mode pipe; the guard as for [`Writer::stream`].
    pub fn packet(fd: OwnedFd) -> Writer {
        Writer { fd, packet: true, guard: needs_guard(), integrity: Self::DEFAULT_INTEGRITY }
    }

    /// Turns the per-write `SIGPIPE` guard (two `rt_sigprocmask` calls) on or off. It starts
    /// on unless `SIGPIPE` was ignored when the writer was made. Turn it on if the program
    /// stops ignoring `SIGPIPE` later; turn it off only when `SIGPIPE` is ignored or blocked
    /// in every thread that writes: otherwise a write to a pipe whose reader is gone kills
    /// the process.
    pub fn set_sigpipe_guard(&mut self, on: bool) {
        self.guard = on;
    }

    /// Whether each write blocks `SIGPIPE` around itself (see [`Writer::set_sigpipe_guard`]).
    pub fn sigpipe_guard(&self) -> bool {
        self.guard
    }

    fn write_once(&self, bytes: &[u8]) -> core::result::Result<usize, Errno> {
        if self.guard {
            crate::sys::without_sigpipe(|| rustix::io::write(&self.fd, bytes))
        } else {
            rustix::io::write(&self.fd, bytes)
        }
    }

    /// Wraps the write end of a pipe or FIFO, in packet mode when the descriptor is
    /// (`O_DIRECT`, one `fcntl(F_GETFL)`), else as a byte stream. The guard as for
    /// [`Writer::stream`].
    pub fn from_fd(fd: OwnedFd) -> Writer {
        let packet = rustix::fs::fcntl_getfl(&fd).is_ok_and(|f| f.contains(rustix::fs::OFlags::DIRECT));
        if packet { Writer::packet(fd) } else { Writer::stream(fd) }
    }

    /// Gives the file descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// One `write(2)` of a prefix of `bytes` (retried after `EINTR`), with the `SIGPIPE`
    /// guard: how many bytes went out. No frame check and no finishing: this is the
    /// building block of an event-loop sender (`ember-ipc-async`) that checks a frame once
    /// ([`crate::transport::check_outgoing`]) and keeps the unwritten rest
    /// itself until the pipe has room. Nonblocking with no room: [`Error::WouldBlock`];
    /// reader gone: [`Error::PeerGone`].
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<usize> {
        loop {
            match self.write_once(bytes) {
                Err(Errno::INTR) => {}
                r => return r.map_err(Error::from),
            }
        }
    }

    /// Whether this writer sends packets (one frame per write).
    pub fn is_packet(&self) -> bool {
        self.packet
    }

    /// Hands this end to a child process as its stdin or stdout.
    #[cfg(feature = "std")]
    pub fn into_stdio(self) -> std::process::Stdio {
        std::process::Stdio::from(self.fd)
    }
}

impl Writer {
    /// One `write(2)` of a whole packet.
    fn write_packet(&self, frame: &[u8]) -> Result<()> {
        loop {
            return match self.write_once(frame) {
                Ok(n) if n == frame.len() => Ok(()),
                // A packet write is all or nothing for at most PIPE_BUF bytes.
                Ok(_) => Err(Error::Os(Errno::IO)),
                Err(Errno::INTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }
}

impl TimedSender for Writer {
    /// `poll` for `POLLOUT` (and the canceler), then the write: one for a packet; for a
    /// stream frame, writes of at most `PIPE_BUF` bytes, each after `POLLOUT` (a pipe
    /// reported writable has a free page, so such a write never blocks, even on a blocking
    /// descriptor), the rest of a started frame within [`FINISH_TIMEOUT`](crate::transport::FINISH_TIMEOUT).
    /// Several writers on one pipe may still take the room between the `poll` and the write.
    fn send_frame_with(&mut self, frame: &[u8], timeout: Option<Duration>, cancel: Option<&Canceler>) -> Result<()> {
        if timeout.is_none() && cancel.is_none() {
            return self.send_frame(frame);
        }
        check_outgoing(frame, self.max_frame())?;
        check_sender_integrity(frame, self.integrity)?;
        let end = end_of(timeout);
        loop {
            crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::OUT, end, cancel)?;
            let r = if self.packet {
                self.write_packet(frame)
            } else {
                let mut finish = None;
                crate::stream::write_all(&self.fd, frame, |b| {
                    if let Some(f) = finish {
                        match crate::poll::wait_fd(&self.fd, rustix::event::PollFlags::OUT, Some(f)) {
                            Ok(()) => {}
                            Err(Error::Os(e)) => return Err(e),
                            Err(_) => return Err(Errno::TIMEDOUT),
                        }
                    }
                    let n = self.write_once(&b[..b.len().min(PIPE_BUF)])?;
                    finish.get_or_insert_with(|| crate::poll::now().saturating_add(crate::transport::FINISH_TIMEOUT));
                    Ok(n)
                })
            };
            match r {
                // Nothing went out (a nonblocking fd, or another writer took the room).
                Err(Error::WouldBlock) => {}
                r => return r,
            }
        }
    }
}

/// The guard is needed unless `SIGPIPE` is ignored; when the disposition cannot be read,
/// keep it (the safe side).
fn needs_guard() -> bool {
    !crate::sys::sigpipe_ignored().unwrap_or(false)
}

impl FrameSender for Writer {
    fn max_frame(&self) -> usize {
        if self.packet { PIPE_BUF } else { MAX_FRAME_LEN }
    }

    /// `write(2)`: one write for a packet, as many as needed for a stream frame.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        check_outgoing(frame, self.max_frame())?;
        check_sender_integrity(frame, self.integrity)?;
        if self.packet {
            return self.write_packet(frame);
        }
        crate::stream::write_all(&self.fd, frame, |b| self.write_once(b))
    }

    fn integrity(&self) -> Integrity {
        self.integrity
    }

    fn set_integrity(&mut self, integrity: Integrity) {
        self.integrity = integrity;
    }
}

impl AsFd for Writer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reads frames from a byte stream (a pipe, a FIFO) through a [`FrameAccumulator`](ember_core::FrameAccumulator) of `N`
/// bytes: frames up to `N` bytes are accepted, larger ones are reported and skipped.
/// Holds two `N`-byte buffers (read buffer and accumulator), and never allocates.
///
/// `Send` and `Sync`: an owned fd and inline buffers; receiving takes `&mut self`.
#[derive(Debug)]
pub struct StreamReader<const N: usize = DEFAULT_STREAM_BUF> {
    fd: OwnedFd,
    buf: StreamBuf<N>,
}

impl<const N: usize> StreamReader<N> {
    /// Wraps the read end of a byte-stream pipe or FIFO (e.g. a child's stdout).
    pub fn from_fd(fd: OwnedFd) -> StreamReader<N> {
        StreamReader { fd, buf: StreamBuf::new() }
    }

    /// Gives the file descriptor back; bytes already read but not yet returned as frames
    /// are dropped.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Garbage bytes skipped so far (see
    /// [`FrameAccumulator::dropped_bytes`](ember_core::FrameAccumulator::dropped_bytes)).
    pub fn dropped_bytes(&self) -> u64 {
        self.buf.dropped_bytes()
    }

    /// Hands this end to a child process as its stdin.
    #[cfg(feature = "std")]
    pub fn into_stdio(self) -> std::process::Stdio {
        std::process::Stdio::from(self.fd)
    }
}

impl<const N: usize> FrameReceiver for StreamReader<N> {
    fn max_frame(&self) -> usize {
        N
    }

    fn buffered(&self) -> bool {
        self.buf.has_input()
    }

    /// `read(2)` into the reader's buffer as needed, then the accumulator. End of file (no
    /// writer left) is [`Error::PeerGone`].
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        let fd = &self.fd;
        self.buf.recv(buf, |b| rustix::io::read(fd, b))
    }

    fn require_checked(&mut self, on: bool) {
        self.buf.require_checked(on);
    }

    fn requires_checked(&self) -> bool {
        self.buf.requires_checked()
    }
}

impl<const N: usize> AsFd for StreamReader<N> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reads one frame per packet from a packet-mode pipe.
///
/// `Send` and `Sync`: an owned fd; receiving takes `&mut self`.
#[derive(Debug)]
pub struct PacketReader {
    fd: OwnedFd,
    require_checked: bool,
}

impl PacketReader {
    /// Wraps the read end of a packet-mode pipe.
    pub fn from_fd(fd: OwnedFd) -> PacketReader {
        PacketReader { fd, require_checked: false }
    }

    /// Gives the file descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl PacketReader {
    /// `len` when the bytes waiting in the pipe fit a buffer of `len` bytes (so does the next
    /// packet), after waiting for some in blocking mode; see `recv_frame`.
    fn room(&self, len: usize) -> Result<usize> {
        let blocking = !rustix::fs::fcntl_getfl(&self.fd)?.contains(rustix::fs::OFlags::NONBLOCK);
        loop {
            let waiting = rustix::io::ioctl_fionread(&self.fd)? as usize;
            if waiting == 0 {
                if !blocking {
                    // Empty, or every writer gone: the read says which.
                    return Ok(len);
                }
                // Readable: a packet, or end of file.
                crate::poll::wait_fd(&self.fd, rustix::event::PollFlags::IN, None)?;
                if rustix::io::ioctl_fionread(&self.fd)? == 0 {
                    return Ok(len);
                }
                continue;
            }
            return if waiting <= len { Ok(len) } else { Err(Error::BufferTooSmall { needed: waiting.min(PIPE_BUF) }) };
        }
    }
}

impl FrameReceiver for PacketReader {
    fn max_frame(&self) -> usize {
        PIPE_BUF
    }

    fn require_checked(&mut self, on: bool) {
        self.require_checked = on;
    }

    fn requires_checked(&self) -> bool {
        self.require_checked
    }

    /// `read(2)` of one packet straight into `buf`, then the frame checks.
    ///
    /// A read shorter than the packet would discard the rest of it, and a pipe cannot be
    /// peeked, so a `buf` shorter than `PIPE_BUF` is used only when every byte waiting in the
    /// pipe (`FIONREAD`, after waiting for one with `poll` when the pipe is blocking) fits
    /// it; otherwise the result is [`Error::BufferTooSmall`] with the bytes waiting, capped
    /// at `PIPE_BUF` (the next packet is at most that long), and nothing is read.
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        let usable = if buf.len() >= PIPE_BUF { PIPE_BUF } else { self.room(buf.len())? };
        loop {
            match rustix::io::read(&self.fd, &mut buf[..usable]) {
                Ok(0) => return Err(Error::PeerGone),
                Ok(n) => {
                    let frame = ember_core::Frame::new_checked(&buf[..n])?;
                    if frame.total_len() != n {
                        // Bytes after the frame: not one frame per packet.
                        return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: n - frame.total_len() }));
                    }
                    check_receiver_integrity(&buf[..n], self.require_checked)?;
                    return Ok(n);
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<const N: usize> TimedReceiver for StreamReader<N> {
    /// `poll` (on the canceler too) before each `read`, until the deadline.
    fn recv_frame_with(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<usize> {
        crate::cancel::check(cancel)?;
        if timeout.is_none() && cancel.is_none() {
            return self.recv_frame(buf);
        }
        let end = end_of(timeout);
        let fd = &self.fd;
        self.buf.recv(buf, |b| {
            wait_readable(fd, end, cancel)?;
            rustix::io::read(fd, b)
        })
    }
}

impl TimedReceiver for PacketReader {
    /// `poll` (on the canceler too), then the receive (which no longer waits: a packet is
    /// there, or end of file).
    fn recv_frame_with(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<usize> {
        if timeout.is_some() || cancel.is_some() {
            crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, end_of(timeout), cancel)?;
        }
        self.recv_frame(buf)
    }
}

impl AsFd for PacketReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// [`Writer::from_fd`]: packet mode when the descriptor is `O_DIRECT`.
impl From<OwnedFd> for Writer {
    fn from(fd: OwnedFd) -> Writer {
        Writer::from_fd(fd)
    }
}

/// [`Writer::into_fd`].
impl From<Writer> for OwnedFd {
    fn from(w: Writer) -> OwnedFd {
        w.into_fd()
    }
}

/// [`StreamReader::from_fd`].
impl<const N: usize> From<OwnedFd> for StreamReader<N> {
    fn from(fd: OwnedFd) -> StreamReader<N> {
        StreamReader::from_fd(fd)
    }
}

/// [`StreamReader::into_fd`] (bytes already read and not yet returned as a frame are lost).
impl<const N: usize> From<StreamReader<N>> for OwnedFd {
    fn from(r: StreamReader<N>) -> OwnedFd {
        r.into_fd()
    }
}

/// [`PacketReader::from_fd`].
impl From<OwnedFd> for PacketReader {
    fn from(fd: OwnedFd) -> PacketReader {
        PacketReader::from_fd(fd)
    }
}

/// [`PacketReader::into_fd`].
impl From<PacketReader> for OwnedFd {
    fn from(r: PacketReader) -> OwnedFd {
        r.into_fd()
    }
}
