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

use ember_core::frame::MAX_FRAME_LEN;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;

use crate::error::{Error, Result};
use crate::stream::StreamBuf;
use crate::transport::{FrameReceiver, FrameSender, check_outgoing};

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
pub struct Writer {
    fd: OwnedFd,
    packet: bool,
    guard: bool,
}

impl Writer {
    /// Wraps the write end of a byte-stream pipe or FIFO (e.g. a child's stdout). The
    /// `SIGPIPE` guard is on unless `SIGPIPE` is ignored now (one `rt_sigaction` read).
    pub fn stream(fd: OwnedFd) -> Writer {
        Writer { fd, packet: false, guard: needs_guard() }
    }

    /// Wraps the write end of a packet-mode pipe; the guard as for [`Writer::stream`].
    pub fn packet(fd: OwnedFd) -> Writer {
        Writer { fd, packet: true, guard: needs_guard() }
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

    /// Gives the file descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
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
        if self.packet {
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
        crate::stream::write_all(&self.fd, frame, |b| self.write_once(b))
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
}

impl<const N: usize> AsFd for StreamReader<N> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reads one frame per packet from a packet-mode pipe.
pub struct PacketReader {
    fd: OwnedFd,
}

impl PacketReader {
    /// Wraps the read end of a packet-mode pipe.
    pub fn from_fd(fd: OwnedFd) -> PacketReader {
        PacketReader { fd }
    }

    /// Gives the file descriptor back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl FrameReceiver for PacketReader {
    fn max_frame(&self) -> usize {
        PIPE_BUF
    }

    /// `read(2)` of one packet straight into `buf` (which must hold `PIPE_BUF` bytes: a
    /// shorter read would discard the rest of the packet), then the frame checks.
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < PIPE_BUF {
            return Err(Error::BufferTooSmall { needed: PIPE_BUF });
        }
        loop {
            match rustix::io::read(&self.fd, &mut buf[..PIPE_BUF]) {
                Ok(0) => return Err(Error::PeerGone),
                Ok(n) => {
                    let frame = ember_core::Frame::new_checked(&buf[..n])?;
                    if frame.total_len() != n {
                        // Bytes after the frame: not one frame per packet.
                        return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: n - frame.total_len() }));
                    }
                    return Ok(n);
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for PacketReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
