//! The message interface every Ember transport implements.
//!
//! A transport moves whole Ember frames (`docs/wire-format.md`). Senders implement
//! [`FrameSender`], receivers [`FrameReceiver`]; both have typed helpers through the codec
//! (`send_msg`, `recv_msg`), and every endpoint that has a file descriptor gets
//! [`Endpoint::set_nonblocking`]. Generic code, and the conformance test suite in
//! `linux/tests/transports.rs`, run over any of them.
//!
//! - **Datagram-like** transports (packet-mode pipes, message queues, datagram and
//!   seqpacket sockets) carry one frame per message; a receive returns exactly one frame.
//! - **Stream** transports (pipes, FIFOs, stream sockets) carry frames back to back; the
//!   receiver reassembles them with [`ember_core::FrameAccumulator`], which skips garbage,
//!   rejects oversized frames without buffering them, and resynchronises after a bad CRC.
//!
//! Receivers check every frame (header, length, CRC) before returning it. Nothing on a
//! send or receive path allocates.

use core::time::Duration;

use ember_core::FrameRepr;
use ember_core::message::Message;
use rustix::fd::AsFd;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long a nonblocking stream sender (pipe, FIFO, stream socket) waits to finish a frame
/// it has partly written before giving up with [`Error::TimedOut`]. A frame is never left
/// half-written while the receiver is reading; one cut short by a receiver that stopped
/// reading is skipped by the receiver's resynchronisation.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends whole frames.
pub trait FrameSender {
    /// The largest frame one send carries.
    fn max_frame(&self) -> usize;

    /// Sends one complete frame (as produced by `ember_core::message::encode` or
    /// `FrameRepr::emit`). In nonblocking mode, [`Error::WouldBlock`] means nothing was
    /// sent.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()>;

    /// Encodes `msg` into `scratch` as a frame of `kind` and `seq`, and sends it.
    fn send_msg<T: Serialize + ?Sized>(&mut self, kind: u32, seq: u32, msg: &T, scratch: &mut [u8]) -> Result<()>
    where
        Self: Sized,
    {
        let frame = ember_core::message::encode(kind, seq, msg, scratch)?;
        self.send_frame(frame)
    }

    /// Sends `msg` as a frame of its type's kind ([`Message::KIND`]): a typed send cannot
    /// carry the wrong kind. `scratch` holds the encoded frame
    /// (`[0u8; max_frame_len::<T>()]` sizes it exactly).
    fn send_message<T: Message + ?Sized>(&mut self, seq: u32, msg: &T, scratch: &mut [u8]) -> Result<()>
    where
        Self: Sized,
    {
        self.send_msg(T::KIND, seq, msg, scratch)
    }
}

/// Receives whole, checked frames.
pub trait FrameReceiver {
    /// The largest frame this receiver accepts; `recv_frame` needs a buffer at least this
    /// large.
    fn max_frame(&self) -> usize;

    /// Receives one frame into `buf` and returns its length. The frame is checked (header,
    /// length, CRC). [`Error::WouldBlock`] in nonblocking mode when nothing is there,
    /// [`Error::PeerGone`] when every sender is gone, [`Error::Codec`] for a frame that was
    /// rejected (the next call goes on with the next one).
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// Whether the receiver holds bytes it already read from its fd: then a frame may be
    /// ready though `poll` says the fd is not readable (stream receivers; `false` for the
    /// others). A caller that polls before receiving checks this first.
    fn buffered(&self) -> bool {
        false
    }

    /// Receives a frame into `buf` and decodes its payload (borrowing from `buf`).
    fn recv_msg<'b, T: Deserialize<'b>>(&mut self, buf: &'b mut [u8]) -> Result<(FrameRepr, T)>
    where
        Self: Sized,
    {
        let n = self.recv_frame(buf)?;
        Ok(ember_core::message::decode(&buf[..n])?)
    }

    /// Receives a frame and decodes it as a `T`, checking its kind first: a frame of another
    /// kind is [`Error::Codec`]`(`[`UnexpectedKind`](ember_core::Error::UnexpectedKind)`)`
    /// and was consumed (the next call goes on with the next frame).
    fn recv_message<'b, T: Message + Deserialize<'b>>(&mut self, buf: &'b mut [u8]) -> Result<(FrameRepr, T)>
    where
        Self: Sized,
    {
        let n = self.recv_frame(buf)?;
        Ok(ember_core::message::decode_message(&buf[..n])?)
    }
}

/// Anything with a file descriptor: nonblocking mode and readiness through `poll`/`epoll`.
pub trait Endpoint: AsFd {
    /// Switches `O_NONBLOCK` on or off (`ioctl(FIONBIO)`).
    fn set_nonblocking(&self, on: bool) -> Result<()> {
        rustix::io::ioctl_fionbio(self.as_fd(), on).map_err(Error::from)
    }
}

impl<T: AsFd> Endpoint for T {}

/// Checks that `frame` is a whole frame by its header's length (no CRC pass: receivers
/// check), so a caller cannot send half a frame or two by mistake.
pub(crate) fn check_outgoing(frame: &[u8], max: usize) -> Result<()> {
    if frame.len() > max {
        return Err(Error::TooLarge { len: frame.len(), max });
    }
    let header = ember_core::Frame::new_unchecked(frame);
    if frame.len() < ember_core::HEADER_LEN
        || header.magic() != ember_core::frame::MAGIC
        || header.total_len() != frame.len()
    {
        return Err(Error::Codec(ember_core::Error::Truncated {
            needed: header_len_or(frame),
            available: frame.len(),
        }));
    }
    Ok(())
}

fn header_len_or(frame: &[u8]) -> usize {
    if frame.len() < ember_core::HEADER_LEN {
        ember_core::HEADER_LEN
    } else {
        ember_core::Frame::new_unchecked(frame).total_len()
    }
}
