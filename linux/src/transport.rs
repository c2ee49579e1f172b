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
//!
//! # Integrity by medium
//!
//! Every frame's header is checked; whether its payload is covered by the checksum is the
//! sender's choice ([`Integrity`], docs/wire-format.md section 4). Each sender has a setting,
//! [`FrameSender::integrity`], used by the frames it encodes (`send_msg`, `send_message`):
//!
//! | Sender | Default |
//! |---|---|
//! | pipes, FIFOs ([`crate::pipe::Writer`]), POSIX and SysV message queues, Unix stream, seqpacket and datagram sockets, shm rings | [`Integrity::Unchecked`]: the kernel (or the ring protocol) delivers the bytes intact |
//! | TCP and UDP sockets (any socket that is not `AF_UNIX`) | [`Integrity::Checked`]: the bytes leave the machine or may |
//!
//! [`FrameSender::set_integrity`] forces either on a link; a sender set to
//! [`Integrity::Checked`] also refuses a ready-made unchecked frame in `send_frame`
//! ([`Error::Codec`]`(`[`UncheckedPayload`](ember_core::Error::UncheckedPayload)`)`), so
//! everything on that link is covered. A receiver accepts both kinds unless
//! [`FrameReceiver::require_checked`] is on: then an unchecked frame is refused with that
//! same error and skipped (the next receive goes on with the next frame).

use core::time::Duration;

use ember_core::FrameRepr;
pub use ember_core::frame::Integrity;
use ember_core::message::Message;
use rustix::fd::AsFd;
use serde::{Deserialize, Serialize};

use crate::cancel::Canceler;
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
    ///
    /// A sender whose [`integrity`](FrameSender::integrity) is [`Integrity::Checked`] refuses
    /// a frame whose payload is not covered: [`Error::Codec`]`(`[`UncheckedPayload`](ember_core::Error::UncheckedPayload)`)`,
    /// nothing sent.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()>;

    /// Whether the frames this sender encodes have their payload covered by the checksum.
    /// The default depends on the medium (see the [module docs](self)).
    fn integrity(&self) -> Integrity;

    /// Sets [`integrity`](FrameSender::integrity) for this link, e.g. [`Integrity::Checked`]
    /// on a ring shared with code that is not trusted to stay in bounds.
    fn set_integrity(&mut self, integrity: Integrity);

    /// Encodes `msg` into `scratch` as a frame of `kind` and `seq` (with this sender's
    /// [`integrity`](FrameSender::integrity)), and sends it.
    fn send_msg<T: Serialize + ?Sized>(&mut self, kind: u32, seq: u32, msg: &T, scratch: &mut [u8]) -> Result<()>
    where
        Self: Sized,
    {
        let frame = ember_core::message::encode_with(self.integrity().flags(), kind, seq, msg, scratch)?;
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
    /// rejected (the next call goes on with the next one), among them
    /// [`UncheckedPayload`](ember_core::Error::UncheckedPayload) when
    /// [`require_checked`](FrameReceiver::require_checked) is on.
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// Whether frames whose payload is not covered by the checksum are refused (`true`) or
    /// accepted (`false`, the default on every receiver).
    fn require_checked(&mut self, on: bool);

    /// Whether [`require_checked`](FrameReceiver::require_checked) is on.
    fn requires_checked(&self) -> bool;

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

/// A receiver whose blocking receive takes a timeout and a [`Canceler`]: every
/// [`FrameReceiver`] of this crate, so a daemon never needs the poller just to bound one
/// wait, and a signal handler or another thread can end it.
///
/// | Receiver | How the wait is bounded |
/// |---|---|
/// | pipes, FIFOs ([`crate::pipe::StreamReader`], [`crate::pipe::PacketReader`]) | `poll` before each `read` |
/// | [`crate::socket::StreamSocket`] | `poll`, then `recv(MSG_DONTWAIT)` |
/// | [`crate::socket::PacketSocket`] | one blocking `recv` under `SO_RCVTIMEO`; with a canceler `poll`, then `recv(MSG_DONTWAIT)` |
/// | [`crate::mq::MessageQueue`] | [`MessageQueue::recv_prio`](crate::mq::MessageQueue::recv_prio) (`poll`, monotonic) |
/// | [`crate::sysvmq::SysvQueue`] | `msgrcv(IPC_NOWAIT)` retried with sleeps of 1 ms doubling to 16 ms (SysV queues have no fd to wait on); the sleeps watch the canceler |
///
/// Every deadline is on the monotonic clock; a signal does not end the wait early (a
/// canceler does: [`crate::cancel`]).
pub trait TimedReceiver: FrameReceiver {
    /// Receives one frame into `buf` as [`FrameReceiver::recv_frame`] does, waiting at most
    /// `timeout` for it (`None`: no limit; zero: only what is already there):
    /// [`Error::TimedOut`] when it passes; and, with a `cancel`er, [`Error::Cancelled`] when
    /// it is cancelled (before the call or during the wait). A frame that has started to
    /// arrive on a stream is kept for the next receive, not lost.
    fn recv_frame_with(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<usize>;

    /// [`TimedReceiver::recv_frame_with`] without a canceler.
    fn recv_frame_timeout(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        self.recv_frame_with(buf, timeout, None)
    }

    /// [`TimedReceiver::recv_frame_with`] with a canceler: [`Error::Cancelled`] once
    /// `cancel` is cancelled, nothing consumed.
    fn recv_frame_cancellable(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: &Canceler,
    ) -> Result<usize> {
        self.recv_frame_with(buf, timeout, Some(cancel))
    }
}

/// A sender whose blocking send takes a timeout and a [`Canceler`]: every [`FrameSender`]
/// of this crate. A full pipe, socket or queue (a stalled receiver) then bounds the send.
///
/// The wait for room is a `poll` for `POLLOUT` (on the canceler's eventfd too), then the
/// write: `send(MSG_DONTWAIT)` on sockets, `mq_timedsend` with a passed deadline on POSIX
/// queues, `msgsnd(IPC_NOWAIT)` retried after cancellable sleeps on SysV queues, and on
/// pipes and FIFOs writes of at most `PIPE_BUF` bytes (which a pipe reported writable
/// takes without blocking). A stream frame whose first bytes went out is finished, not
/// abandoned at the deadline or a cancel: the rest waits at most
/// [`FINISH_TIMEOUT`] ([`Error::TimedOut`], the receiver resynchronises).
pub trait TimedSender: FrameSender {
    /// Sends one frame as [`FrameSender::send_frame`] does, waiting at most `timeout` for
    /// room (`None`: no limit; zero: only if there is room now): [`Error::TimedOut`] when it
    /// passes, [`Error::Cancelled`] when `cancel` is cancelled before the frame started to
    /// go out; nothing was sent in either case.
    fn send_frame_with(&mut self, frame: &[u8], timeout: Option<Duration>, cancel: Option<&Canceler>) -> Result<()>;

    /// [`TimedSender::send_frame_with`] without a canceler.
    fn send_frame_timeout(&mut self, frame: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.send_frame_with(frame, timeout, None)
    }

    /// [`TimedSender::send_frame_with`] with a canceler.
    fn send_frame_cancellable(&mut self, frame: &[u8], timeout: Option<Duration>, cancel: &Canceler) -> Result<()> {
        self.send_frame_with(frame, timeout, Some(cancel))
    }
}

/// `poll` for input on `fd` until `end` (monotonic, `None`: no limit) or `cancel`, as an
/// `Errno` for the stream machinery's read closures (`ETIMEDOUT` when it passes,
/// `ECANCELED` when cancelled: both map back to [`Error`]s).
pub(crate) fn wait_readable(
    fd: impl AsFd,
    end: Option<Duration>,
    cancel: Option<&Canceler>,
) -> core::result::Result<(), rustix::io::Errno> {
    match crate::poll::wait_fd_cancellable(fd, rustix::event::PollFlags::IN, end, cancel) {
        Ok(()) => Ok(()),
        Err(Error::TimedOut) => Err(rustix::io::Errno::TIMEDOUT),
        Err(Error::Cancelled) => Err(rustix::io::Errno::CANCELED),
        Err(Error::Os(e)) => Err(e),
        Err(_) => Err(rustix::io::Errno::IO),
    }
}

/// The monotonic end of `timeout` from now (`None`: none).
pub(crate) fn end_of(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| crate::poll::now().saturating_add(t))
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
/// check), so a caller cannot send half a frame or two by mistake: [`Error::TooLarge`] past
/// `max`, else [`Error::Codec`] for anything that is not exactly one frame. Every
/// `send_frame` runs it; an adapter that writes a frame piecewise (`write_bytes`) runs it
/// once before the first piece.
pub fn check_outgoing(frame: &[u8], max: usize) -> Result<()> {
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

/// For a sender set to `integrity`: refuses an unchecked `frame` when it must be checked,
/// with [`Error::Codec`]`(`[`UncheckedPayload`](ember_core::Error::UncheckedPayload)`)`.
/// Every `send_frame` runs it after [`check_outgoing`] (which refuses what is not a whole
/// frame; this one only reads the flags byte, and passes bytes too short to have one); an
/// adapter that writes a frame piecewise runs both before the first piece.
pub fn check_sender_integrity(frame: &[u8], integrity: Integrity) -> Result<()> {
    if integrity.is_checked() && unchecked(frame) {
        return Err(Error::Codec(ember_core::Error::UncheckedPayload));
    }
    Ok(())
}

/// For a receiver: refuses a checked `frame` whose payload is not covered when `require`
/// is on.
pub(crate) fn check_receiver_integrity(frame: &[u8], require: bool) -> Result<()> {
    if require && unchecked(frame) {
        return Err(Error::Codec(ember_core::Error::UncheckedPayload));
    }
    Ok(())
}

/// Whether `frame`'s flags byte sets `UNCHECKED` (`false` for bytes without one).
fn unchecked(frame: &[u8]) -> bool {
    frame.get(3).is_some_and(|&f| ember_core::Flags::from_bits_retain(f).contains(ember_core::Flags::UNCHECKED))
}

/// The default [`Integrity`] of a socket sender: unchecked on `AF_UNIX` (the kernel copies
/// the bytes), checked on anything else (TCP, UDP, whatever may leave the machine), checked
/// too when the family cannot be read.
pub(crate) fn socket_integrity(fd: impl AsFd) -> Integrity {
    match rustix::net::sockopt::socket_domain(fd) {
        Ok(rustix::net::AddressFamily::UNIX) => Integrity::Unchecked,
        _ => Integrity::Checked,
    }
}

fn header_len_or(frame: &[u8]) -> usize {
    if frame.len() < ember_core::HEADER_LEN {
        ember_core::HEADER_LEN
    } else {
        ember_core::Frame::new_unchecked(frame).total_len()
    }
}
