//! The byte-stream machinery shared by pipes, FIFOs, Unix stream sockets and TCP: sending a
//! whole frame with as many writes as it takes, and reassembling frames from reads.

use ember_core::accumulator::{FeedResult, FrameAccumulator};
use rustix::fd::AsFd;
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Writes all of `bytes` with `write` (repeated after a partial write or `EINTR`).
///
/// In nonblocking mode, a frame that could not be started is [`Error::WouldBlock`] (nothing
/// sent); one that was partly written is finished, waiting for room with `poll` on `fd`,
/// because a half-written frame would corrupt the stream for the receiver. That wait is
/// bounded by [`FINISH_TIMEOUT`](crate::transport::FINISH_TIMEOUT): a receiver that stopped
/// reading cannot hang a nonblocking sender; the frame is then cut short
/// ([`Error::TimedOut`]) and the receiver resynchronises on the next frame.
pub(crate) fn write_all(
    fd: impl AsFd,
    mut bytes: &[u8],
    mut write: impl FnMut(&[u8]) -> core::result::Result<usize, Errno>,
) -> Result<()> {
    let mut started = false;
    let mut deadline = None;
    while !bytes.is_empty() {
        match write(bytes) {
            Ok(n) => {
                started = true;
                bytes = &bytes[n..];
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if started => {
                let now = crate::poll::now();
                let end = *deadline.get_or_insert(now + crate::transport::FINISH_TIMEOUT);
                let left = end.checked_sub(now).filter(|d| !d.is_zero()).ok_or(Error::TimedOut)?;
                let ts = crate::poll::timespec(left);
                let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::OUT)];
                match rustix::event::poll(&mut fds, Some(&ts)) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A read buffer of `N` bytes and a [`FrameAccumulator`] of `N` bytes: frames up to `N`
/// bytes are returned, larger ones are reported and skipped, garbage is skipped.
pub(crate) struct StreamBuf<const N: usize> {
    acc: FrameAccumulator<N>,
    rbuf: [u8; N],
    rpos: usize,
    rlen: usize,
}

impl<const N: usize> core::fmt::Debug for StreamBuf<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamBuf")
            .field("acc", &self.acc)
            .field("unparsed", &(self.rlen - self.rpos))
            .finish_non_exhaustive()
    }
}

impl<const N: usize> StreamBuf<N> {
    pub(crate) fn new() -> StreamBuf<N> {
        StreamBuf { acc: FrameAccumulator::new(), rbuf: [0; N], rpos: 0, rlen: 0 }
    }

    /// Whether bytes read from the fd wait in the buffer (a frame may be ready without
    /// the fd being readable).
    pub(crate) fn has_input(&self) -> bool {
        self.rpos < self.rlen
    }

    pub(crate) fn dropped_bytes(&self) -> u64 {
        self.acc.dropped_bytes()
    }

    pub(crate) fn require_checked(&mut self, on: bool) {
        self.acc.set_require_checked(on);
    }

    pub(crate) fn requires_checked(&self) -> bool {
        self.acc.requires_checked()
    }

    /// Returns the next whole, checked frame, copied into `buf`, calling `read` for more
    /// bytes as needed. End of stream is [`Error::PeerGone`]. A frame longer than `buf` is
    /// [`Error::BufferTooSmall`] with its length, and stays: the next call with a buffer
    /// that holds it returns it.
    pub(crate) fn recv(
        &mut self,
        buf: &mut [u8],
        mut read: impl FnMut(&mut [u8]) -> core::result::Result<usize, Errno>,
    ) -> Result<usize> {
        loop {
            let input = &self.rbuf[self.rpos..self.rlen];
            let input_at = input.as_ptr() as usize;
            match self.acc.feed(input) {
                FeedResult::Frame { frame, remaining } => {
                    let bytes = frame.as_bytes();
                    let (len, starts_at, rest) = (bytes.len(), bytes.as_ptr() as usize, remaining.len());
                    if let Some(dst) = buf.get_mut(..len) {
                        dst.copy_from_slice(bytes);
                        self.rpos = self.rlen - rest;
                        return Ok(len);
                    }
                    // Too long for the caller's buffer: keep it for the next call.
                    if self.acc.unget_frame() {
                        self.rpos = self.rlen - rest;
                    } else {
                        self.rpos += starts_at - input_at;
                    }
                    return Err(Error::BufferTooSmall { needed: len });
                }
                FeedResult::Error { error, remaining } => {
                    self.rpos = self.rlen - remaining.len();
                    debug!("stream: frame rejected ({} dropped bytes so far)", self.acc.dropped_bytes());
                    return Err(Error::Codec(error));
                }
                FeedResult::Consumed => {
                    self.rpos = 0;
                    self.rlen = 0;
                    match read(&mut self.rbuf) {
                        Ok(0) => return Err(Error::PeerGone),
                        Ok(n) => self.rlen = n,
                        Err(Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
}
