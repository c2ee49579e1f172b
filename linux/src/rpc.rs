//! Request/response over any bidirectional Ember transport, without a heap.
//!
//! A request is a frame of the application's `kind` with a fresh sequence number; its
//! response is a frame with the `RESPONSE` flag, the same `kind` and the same `seq` (the
//! wire format's convention, docs/wire-format.md). An error response also has the `ERROR`
//! flag and carries a [`Failure`] (a code and a short message).
//!
//! - A [`Link`] is the two directions: one object that sends and receives (a Unix stream or
//!   seqpacket socket), a [`Duplex`] of a sender and a receiver (a pipe pair, a pair of
//!   POSIX message queues), or a [`ShmLink`] (a pair of shared-memory SPSC rings).
//! - A [`Client`] has up to `SLOTS` requests in flight. Each has a slot of `BUF` bytes for
//!   its response, so responses may arrive in any order. A response larger than the slot is
//!   an error for that request only; the link stays usable.
//! - A [`Server`] receives requests and answers them, at once through a handler
//!   ([`Server::serve_one`]) or later, in any order ([`Server::recv_request`] then
//!   [`Server::respond`]). With a zero timeout it fits in a poller loop.
//!
//! docs/rpc.md has the rules, the error codes and what happens when a peer dies.

use core::time::Duration;

use ember_core::frame::{Flags, Frame, Integrity};
use rustix::event::PollFlags;
use rustix::fd::AsFd;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::poll::Deadline;
use crate::shm::{SpscReceiver, SpscSender};
use crate::socket::{PacketSocket, StreamSocket};
use crate::transport::{FrameReceiver, FrameSender};

/// The two directions of a conversation, with a deadline on every wait.
///
/// The `_until` methods share one [`Deadline`] between the waits of an operation (a call's
/// send and its receive), which starts counting at the first wait that blocks.
pub trait Link {
    /// Sends one whole frame, waiting until `deadline` for room.
    fn send_frame_until(&mut self, frame: &[u8], deadline: &mut Deadline) -> Result<()>;
    /// Receives one checked frame into `buf`, waiting until `deadline` (a zero timeout:
    /// only what is already there) ([`Error::TimedOut`]).
    fn recv_frame_until(&mut self, buf: &mut [u8], deadline: &mut Deadline) -> Result<usize>;
    /// The largest frame a receive accepts (the receive buffer must be this large).
    fn max_recv(&self) -> usize;
    /// The largest frame a send carries.
    fn max_send(&self) -> usize;

    /// Whether the requests and responses encoded for this link have their payload
    /// checksummed (docs/wire-format.md §4.4). The links of this crate answer their
    /// sender's [`FrameSender::integrity`]: unchecked on Unix sockets, pipes, queues and shm
    /// rings, checked on TCP. Checked, which every receiver accepts, unless a link says so.
    fn frame_integrity(&self) -> Integrity {
        Integrity::Checked
    }

    /// Sends one whole frame, waiting up to `timeout` for room (`None`: no limit).
    fn send_frame_timeout(&mut self, frame: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.send_frame_until(frame, &mut Deadline::after(timeout))
    }
    /// Receives one checked frame into `buf`, waiting up to `timeout` (`None`: for ever;
    /// zero: only what is already there) ([`Error::TimedOut`]).
    fn recv_frame_timeout(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        self.recv_frame_until(buf, &mut Deadline::after(timeout))
    }
}

/// Sends on a nonblocking sender, polling its fd for room until the deadline.
fn send_polling<S: FrameSender + AsFd>(s: &mut S, frame: &[u8], d: &mut Deadline) -> Result<()> {
    loop {
        match s.send_frame(frame) {
            Err(Error::WouldBlock) => {
                crate::poll::wait_fd_cancellable(s.as_fd(), PollFlags::OUT, d.end(), d.canceler())?
            }
            r => return r,
        }
    }
}

/// Receives on a nonblocking receiver: what it already buffered first, else after `poll`
/// says its fd is readable (one `poll` and one `recv`, not a `recv` that fails first).
fn recv_polling<R: FrameReceiver + AsFd>(r: &mut R, buf: &mut [u8], d: &mut Deadline) -> Result<usize> {
    loop {
        if !r.buffered() && !d.is_zero() {
            crate::poll::wait_fd_cancellable(r.as_fd(), PollFlags::IN, d.end(), d.canceler())?;
        }
        match r.recv_frame(buf) {
            // Readable, but not a whole frame yet (a stream), or a zero timeout.
            Err(Error::WouldBlock) if d.is_zero() => return Err(Error::TimedOut),
            Err(Error::WouldBlock) => {}
            r => return r,
        }
    }
}

/// A Unix stream socket, switched to nonblocking mode by [`Client::new`] and
/// [`Server::new`]: every wait is a `poll` with the deadline.
impl<const N: usize> Link for StreamSocket<N> {
    fn send_frame_until(&mut self, frame: &[u8], deadline: &mut Deadline) -> Result<()> {
        send_polling(self, frame, deadline)
    }
    fn recv_frame_until(&mut self, buf: &mut [u8], deadline: &mut Deadline) -> Result<usize> {
        recv_polling(self, buf, deadline)
    }
    fn max_recv(&self) -> usize {
        FrameReceiver::max_frame(self)
    }
    fn max_send(&self) -> usize {
        FrameSender::max_frame(self)
    }
    fn frame_integrity(&self) -> Integrity {
        FrameSender::integrity(self)
    }
}

/// A seqpacket (or connected datagram) socket, left in blocking mode by [`Client::new`]
/// and [`Server::new`]: a receive that has to wait is one blocking `recv` bounded by
/// `SO_RCVTIMEO` (set only when the timeout, rounded up to a millisecond, changes), not a
/// `poll` and then a `recv`; the waits that must not block (a zero timeout, a send) pass
/// `MSG_DONTWAIT`.
impl Link for PacketSocket {
    fn send_frame_until(&mut self, frame: &[u8], deadline: &mut Deadline) -> Result<()> {
        loop {
            match self.send_frame_flags(frame, rustix::net::SendFlags::DONTWAIT) {
                Err(Error::WouldBlock) => {
                    let end = deadline.end();
                    crate::poll::wait_fd_cancellable(self.as_fd(), PollFlags::OUT, end, deadline.canceler())?
                }
                r => return r,
            }
        }
    }
    fn recv_frame_until(&mut self, buf: &mut [u8], deadline: &mut Deadline) -> Result<usize> {
        if let Some(c) = deadline.canceler() {
            // With a canceler: `poll` on the socket and the canceler, then `recv(MSG_DONTWAIT)`.
            loop {
                let end = if deadline.is_zero() { Some(crate::poll::now()) } else { deadline.end() };
                match crate::poll::wait_fd_cancellable(self.as_fd(), PollFlags::IN, end, Some(c)) {
                    Ok(()) => {}
                    Err(Error::TimedOut) if deadline.is_zero() => {}
                    Err(e) => return Err(e),
                }
                match self.recv_frame_flags(buf, rustix::net::RecvFlags::DONTWAIT) {
                    Err(Error::WouldBlock | Error::Os(rustix::io::Errno::INTR)) if deadline.is_zero() => {
                        return Err(Error::TimedOut);
                    }
                    Err(Error::WouldBlock | Error::Os(rustix::io::Errno::INTR)) => {}
                    r => return r,
                }
            }
        }
        loop {
            // The clock is read once per wait: a signal or a timer rounded short then
            // waits only for what is left.
            let left = if deadline.is_zero() { Some(Duration::ZERO) } else { deadline.remaining() };
            if left == Some(Duration::ZERO) {
                return match self.recv_frame_flags(buf, rustix::net::RecvFlags::DONTWAIT) {
                    Err(Error::WouldBlock | Error::Os(rustix::io::Errno::INTR)) => Err(Error::TimedOut),
                    r => r,
                };
            }
            self.set_recv_timeout(left)?;
            match self.recv_frame_flags(buf, rustix::net::RecvFlags::empty()) {
                // SO_RCVTIMEO ran out, or a signal came: look at the time left.
                Err(Error::WouldBlock | Error::Os(rustix::io::Errno::INTR)) => {}
                r => return r,
            }
        }
    }
    fn max_recv(&self) -> usize {
        FrameReceiver::max_frame(self)
    }
    fn max_send(&self) -> usize {
        FrameSender::max_frame(self)
    }
    fn frame_integrity(&self) -> Integrity {
        FrameSender::integrity(self)
    }
}

/// A sender and a receiver on two fds: a pipe pair, a pair of message queues.
///
/// `Send` and `Sync` when both ends are.
#[derive(Debug)]
pub struct Duplex<S, R> {
    /// The sending end.
    pub tx: S,
    /// The receiving end.
    pub rx: R,
}

impl<S: FrameSender + AsFd, R: FrameReceiver + AsFd> Duplex<S, R> {
    /// Both ends, switched to nonblocking mode (the timeouts are the link's).
    pub fn new(tx: S, rx: R) -> Result<Duplex<S, R>> {
        rustix::io::ioctl_fionbio(tx.as_fd(), true)?;
        rustix::io::ioctl_fionbio(rx.as_fd(), true)?;
        Ok(Duplex { tx, rx })
    }
}

impl<S: FrameSender + AsFd, R: FrameReceiver + AsFd> Link for Duplex<S, R> {
    fn send_frame_until(&mut self, frame: &[u8], deadline: &mut Deadline) -> Result<()> {
        send_polling(&mut self.tx, frame, deadline)
    }
    fn recv_frame_until(&mut self, buf: &mut [u8], deadline: &mut Deadline) -> Result<usize> {
        recv_polling(&mut self.rx, buf, deadline)
    }
    fn max_recv(&self) -> usize {
        self.rx.max_frame()
    }
    fn max_send(&self) -> usize {
        self.tx.max_frame()
    }
    fn frame_integrity(&self) -> Integrity {
        self.tx.integrity()
    }
}

/// A pair of shared-memory SPSC rings, one each way; each record is one whole frame,
/// checked on receive like on every other transport (its header always; its payload when
/// the sender's ring is set to `Integrity::Checked`, which it is not by default).
///
/// `Send` and `Sync`, like its two ring endpoints.
#[derive(Debug)]
pub struct ShmLink {
    /// The ring this side produces into.
    pub tx: SpscSender,
    /// The ring this side consumes from.
    pub rx: SpscReceiver,
}

/// The rings' errors in the words of the other links: a dead peer is [`Error::PeerGone`],
/// a wait that ran out [`Error::TimedOut`].
fn shm_error(e: Error) -> Error {
    use ember_core::shm::ShmError;
    match e {
        Error::Shm(ShmError::WriterGone | ShmError::Closed) => Error::PeerGone,
        Error::Shm(ShmError::Timeout | ShmError::Empty | ShmError::Full) | Error::WouldBlock => Error::TimedOut,
        e => e,
    }
}

impl Link for ShmLink {
    fn send_frame_until(&mut self, frame: &[u8], deadline: &mut Deadline) -> Result<()> {
        crate::transport::check_outgoing(frame, self.tx.max_record())?;
        self.tx.send_until(frame, deadline).map_err(shm_error)
    }
    fn recv_frame_until(&mut self, buf: &mut [u8], deadline: &mut Deadline) -> Result<usize> {
        let n = if deadline.is_zero() { self.rx.try_recv(buf) } else { self.rx.recv_until(buf, deadline) }
            .map_err(shm_error)?;
        let total = Frame::new_checked(&buf[..n])?.total_len();
        if total != n {
            // One record is one frame, nothing after it (docs/wire-format.md).
            return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: n - total }));
        }
        Ok(n)
    }
    fn max_recv(&self) -> usize {
        self.rx.max_record()
    }
    fn max_send(&self) -> usize {
        self.tx.max_record()
    }
    fn frame_integrity(&self) -> Integrity {
        self.tx.integrity()
    }
}

/// An error response's payload: a code and a message of at most [`Failure::MESSAGE_MAX`]
/// bytes. Codes below 256 are Ember's ([`Failure::UNKNOWN_KIND`], [`Failure::BAD_REQUEST`],
/// [`Failure::NO_RESPONSE`]); the application's start at 256.
///
/// `Send` and `Sync`: plain data.
#[derive(Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error code.
    pub code: u32,
    len: u8,
    text: [u8; Failure::MESSAGE_MAX],
}

impl Failure {
    /// The longest message carried (longer ones are cut at a character boundary).
    pub const MESSAGE_MAX: usize = 96;
    /// The server has no handler for the request's kind.
    pub const UNKNOWN_KIND: u32 = 1;
    /// The request's payload did not decode as the kind's type.
    pub const BAD_REQUEST: u32 = 2;
    /// The handler returned without responding.
    pub const NO_RESPONSE: u32 = 3;
    /// The first code free for applications.
    pub const FIRST_APPLICATION_CODE: u32 = 256;

    /// A failure with `code` and `message`.
    pub fn new(code: u32, message: &str) -> Failure {
        let mut end = message.len().min(Self::MESSAGE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut text = [0u8; Self::MESSAGE_MAX];
        text[..end].copy_from_slice(&message.as_bytes()[..end]);
        Failure { code, len: end as u8, text }
    }

    /// The message.
    pub fn message(&self) -> &str {
        core::str::from_utf8(&self.text[..self.len as usize]).unwrap_or("")
    }
}

impl core::fmt::Debug for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Failure({}, {:?})", self.code, self.message())
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "error {}: {}", self.code, self.message())
    }
}

impl core::error::Error for Failure {}

/// What a call can fail with.
#[derive(Debug, PartialEq, Eq)]
pub enum CallError<'a> {
    /// Locally: the link failed ([`Error::PeerGone`]), the wait timed out
    /// ([`Error::TimedOut`]), no slot was free ([`Error::WouldBlock`]), the response did not
    /// fit the slot ([`Error::TooLarge`]), or it did not decode ([`Error::Codec`]).
    Local(Error),
    /// The server answered with an error response.
    Remote {
        /// Its code ([`Failure`]'s constants, or the application's).
        code: u32,
        /// Its message.
        message: &'a str,
    },
}

impl From<Error> for CallError<'_> {
    fn from(e: Error) -> Self {
        CallError::Local(e)
    }
}

impl core::fmt::Display for CallError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::Local(e) => write!(f, "{e}"),
            CallError::Remote { code, message } => write!(f, "remote error {code}: {message}"),
        }
    }
}

impl core::error::Error for CallError<'_> {}

impl CallError<'_> {
    /// The same error without the borrow of the response slot (the message, at most
    /// [`Failure::MESSAGE_MAX`] bytes, is copied into a [`Failure`]): `'static`, `Send` and
    /// `Sync`, so `?` takes it into `Box<dyn Error>` or `anyhow::Error`. No heap.
    ///
    /// ```
    /// # use ember_linux::rpc::{CallError, Failure, OwnedCallError};
    /// let e = CallError::Remote { code: 300, message: "pump stalled" }.into_owned();
    /// assert_eq!(e, OwnedCallError::Remote(Failure::new(300, "pump stalled")));
    /// let boxed: Box<dyn std::error::Error + Send + Sync> = e.into();
    /// assert_eq!(boxed.to_string(), "remote error 300: pump stalled");
    /// ```
    pub fn into_owned(self) -> OwnedCallError {
        match self {
            CallError::Local(e) => OwnedCallError::Local(e),
            CallError::Remote { code, message } => OwnedCallError::Remote(Failure::new(code, message)),
        }
    }
}

/// A [`CallError`] that owns its message: what [`CallError::into_owned`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedCallError {
    /// Locally, as [`CallError::Local`].
    Local(Error),
    /// The server answered with an error response: its code and message.
    Remote(Failure),
}

impl From<CallError<'_>> for OwnedCallError {
    fn from(e: CallError<'_>) -> Self {
        e.into_owned()
    }
}

impl From<Error> for OwnedCallError {
    fn from(e: Error) -> Self {
        OwnedCallError::Local(e)
    }
}

impl core::fmt::Display for OwnedCallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OwnedCallError::Local(e) => write!(f, "{e}"),
            OwnedCallError::Remote(failure) => write!(f, "remote error {}: {}", failure.code, failure.message()),
        }
    }
}

impl core::error::Error for OwnedCallError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            OwnedCallError::Local(e) => Some(e),
            OwnedCallError::Remote(_) => None,
        }
    }
}

/// A request in flight: pass it to [`Client::wait`].
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "wait for the response, or its slot stays taken until a response arrives"]
pub struct Ticket {
    slot: usize,
    seq: u32,
}

impl Ticket {
    /// The request's sequence number.
    pub fn seq(&self) -> u32 {
        self.seq
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    Waiting,
    /// A response: flags, payload length (the payload is at the start of the slot).
    Ready {
        error: bool,
        len: usize,
    },
    /// A response of `len` bytes that did not fit.
    TooLarge {
        len: usize,
    },
}

/// A client: up to `SLOTS` requests in flight, a response slot of `BUF` bytes each, and a
/// receive buffer of `RX` bytes (at least the link's [`Link::max_recv`]).
///
/// `Send` and `Sync` when the link is: inline buffers and counters, and every call takes
/// `&mut self`.
pub struct Client<L: Link, const SLOTS: usize, const BUF: usize, const RX: usize> {
    link: L,
    next_seq: u32,
    seqs: [u32; SLOTS],
    kinds: [u32; SLOTS],
    states: [SlotState; SLOTS],
    slots: [[u8; BUF]; SLOTS],
    rx: [u8; RX],
    strays: u64,
}

impl<L: Link + core::fmt::Debug, const SLOTS: usize, const BUF: usize, const RX: usize> core::fmt::Debug
    for Client<L, SLOTS, BUF, RX>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("link", &self.link)
            .field("next_seq", &self.next_seq)
            .field("in_flight", &self.states.iter().filter(|s| **s != SlotState::Free).count())
            .field("slots", &SLOTS)
            .field("slot_len", &BUF)
            .field("rx_len", &RX)
            .field("strays", &self.strays)
            .finish_non_exhaustive()
    }
}

impl<L: Link, const SLOTS: usize, const BUF: usize, const RX: usize> Client<L, SLOTS, BUF, RX> {
    /// A client over `link` ([`Error::BufferTooSmall`] if `RX` is below the link's
    /// receive limit). The link's fds are put in the mode its waits expect ([`MaybeFd`]).
    pub fn new(link: L) -> Result<Self>
    where
        L: MaybeFd,
    {
        if RX < link.max_recv() {
            return Err(Error::BufferTooSmall { needed: link.max_recv() });
        }
        link.set_modes()?;
        Ok(Client {
            link,
            next_seq: 1,
            seqs: [0; SLOTS],
            kinds: [0; SLOTS],
            states: [SlotState::Free; SLOTS],
            slots: [[0; BUF]; SLOTS],
            rx: [0; RX],
            strays: 0,
        })
    }

    /// The link.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// Responses dropped because no request waited for them (late, after a timeout, or
    /// not responses at all).
    pub fn strays(&self) -> u64 {
        self.strays
    }

    /// Sends a request of `kind` carrying `req`; [`Error::WouldBlock`] if `SLOTS` requests
    /// are already in flight. The request is encoded in its slot (at most `BUF` bytes).
    pub fn start<T: Serialize + ?Sized>(&mut self, kind: u32, req: &T, timeout: Option<Duration>) -> Result<Ticket> {
        self.start_until(kind, req, &mut Deadline::after(timeout))
    }

    /// [`Client::start`] until `deadline`, shared with the caller's other waits.
    pub fn start_until<T: Serialize + ?Sized>(
        &mut self,
        kind: u32,
        req: &T,
        deadline: &mut Deadline,
    ) -> Result<Ticket> {
        let flags = self.link.frame_integrity().flags();
        self.start_frame(kind, deadline, |seq, buf| {
            Ok(ember_core::message::encode_with(flags, kind, seq, req, buf)?.len())
        })
    }

    /// [`Client::start`] with the payload as raw bytes (no postcard), for peers that speak
    /// bytes (the C ABI).
    pub fn start_raw(&mut self, kind: u32, payload: &[u8], timeout: Option<Duration>) -> Result<Ticket> {
        self.start_raw_until(kind, payload, &mut Deadline::after(timeout))
    }

    /// [`Client::start_raw`] until `deadline`, shared with the caller's other waits.
    pub fn start_raw_until(&mut self, kind: u32, payload: &[u8], deadline: &mut Deadline) -> Result<Ticket> {
        let flags = self.link.frame_integrity().flags();
        self.start_frame(kind, deadline, |seq, buf| {
            let repr = ember_core::frame::FrameRepr { flags, kind, seq, payload_len: payload.len() };
            Ok(repr.emit_with_payload(payload, buf)?.len())
        })
    }

    fn start_frame(
        &mut self,
        kind: u32,
        deadline: &mut Deadline,
        encode: impl FnOnce(u32, &mut [u8]) -> Result<usize>,
    ) -> Result<Ticket> {
        // A cancelled deadline sends nothing.
        crate::cancel::check(deadline.canceler())?;
        let slot = self.states.iter().position(|s| *s == SlotState::Free).ok_or(Error::WouldBlock)?;
        // A fresh sequence number, never 0 and never one still in flight (after a wrap).
        let mut seq = self.next_seq;
        while (0..SLOTS).any(|i| self.states[i] != SlotState::Free && self.seqs[i] == seq) {
            seq = seq.wrapping_add(1).max(1);
        }
        self.next_seq = seq.wrapping_add(1).max(1);
        let n = encode(seq, &mut self.slots[slot])?;
        self.link.send_frame_until(&self.slots[slot][..n], deadline)?;
        self.seqs[slot] = seq;
        self.kinds[slot] = kind;
        self.states[slot] = SlotState::Waiting;
        Ok(Ticket { slot, seq })
    }

    /// Gives up a request: its slot is free again, and its response, if it comes, is
    /// dropped (counted in [`Client::strays`]). A ticket that is neither waited for nor
    /// cancelled keeps its slot.
    pub fn cancel(&mut self, t: Ticket) {
        if self.seqs.get(t.slot) == Some(&t.seq) {
            self.states[t.slot] = SlotState::Free;
        }
    }

    /// Waits up to `timeout` for the response to `t` and decodes it (borrowing from its
    /// slot). Responses to other requests that arrive meanwhile go to their slots. On a
    /// timeout the request is given up: a late response is dropped (counted in
    /// [`Client::strays`]). A zero timeout only looks at what the link holds: on
    /// [`Error::TimedOut`] the request stays in flight, to be waited for again (from a
    /// poller loop) or [`Client::cancel`]led.
    pub fn wait<'s, U: Deserialize<'s>>(
        &'s mut self,
        t: Ticket,
        timeout: Option<Duration>,
    ) -> core::result::Result<U, CallError<'s>> {
        self.wait_until(t, &mut Deadline::after(timeout))
    }

    /// [`Client::wait`] until `deadline`, shared with the caller's other waits.
    pub fn wait_until<'s, U: Deserialize<'s>>(
        &'s mut self,
        t: Ticket,
        deadline: &mut Deadline,
    ) -> core::result::Result<U, CallError<'s>> {
        let payload = self.wait_raw_until(t, deadline)?;
        ember_core::message::decode_payload(payload).map_err(|e| CallError::Local(e.into()))
    }

    /// [`Client::wait`] returning the response's payload as raw bytes (no postcard).
    pub fn wait_raw<'s>(
        &'s mut self,
        t: Ticket,
        timeout: Option<Duration>,
    ) -> core::result::Result<&'s [u8], CallError<'s>> {
        self.wait_raw_until(t, &mut Deadline::after(timeout))
    }

    /// [`Client::wait_raw`] until `deadline`, shared with the caller's other waits.
    pub fn wait_raw_until<'s>(
        &'s mut self,
        t: Ticket,
        deadline: &mut Deadline,
    ) -> core::result::Result<&'s [u8], CallError<'s>> {
        if self.seqs.get(t.slot) != Some(&t.seq) || self.states[t.slot] == SlotState::Free {
            return Err(CallError::Local(Error::Os(rustix::io::Errno::INVAL)));
        }
        while self.states[t.slot] == SlotState::Waiting {
            // A frame the link rejected (`Codec`, or too large for it) concerns that frame
            // only: the link goes on with the next one.
            if let Err(e) = self.receive_one(deadline)
                && !matches!(e, Error::Codec(_) | Error::TooLarge { .. } | Error::TooManyFds { .. })
            {
                // A zero timeout only looks: the request stays in flight (wait again when
                // the link is readable). Any other end gives it up.
                if !(deadline.is_zero() && e == Error::TimedOut) {
                    self.states[t.slot] = SlotState::Free;
                }
                return Err(CallError::Local(e));
            }
            if self.states[t.slot] != SlotState::Waiting {
                break;
            }
            // Another request's response, a stray or a rejected frame: wait again for the
            // time left. The count starts now if no wait has started it, so a flood of
            // frames that never makes the link wait cannot hold the call past its timeout.
            // A zero timeout goes on through what the link already holds (the link's own
            // TimedOut ends it).
            if !deadline.is_zero() && deadline.expired() {
                self.states[t.slot] = SlotState::Free;
                return Err(CallError::Local(Error::TimedOut));
            }
        }
        let state = self.states[t.slot];
        self.states[t.slot] = SlotState::Free;
        match state {
            SlotState::Ready { error: false, len } => Ok(&self.slots[t.slot][..len]),
            SlotState::Ready { error: true, len } => {
                let (code, message): (u32, &str) = ember_core::message::decode_payload(&self.slots[t.slot][..len])
                    .map_err(|e| CallError::Local(e.into()))?;
                Err(CallError::Remote { code, message })
            }
            SlotState::TooLarge { len } => Err(CallError::Local(Error::TooLarge { len, max: BUF })),
            SlotState::Free | SlotState::Waiting => Err(CallError::Local(Error::TimedOut)),
        }
    }

    /// [`Client::start`] then [`Client::wait`], with one timeout for both.
    pub fn call<'s, T: Serialize + ?Sized, U: Deserialize<'s>>(
        &'s mut self,
        kind: u32,
        req: &T,
        timeout: Option<Duration>,
    ) -> core::result::Result<U, CallError<'s>> {
        let mut deadline = Deadline::after(timeout);
        let t = self.start_until(kind, req, &mut deadline)?;
        self.wait_until(t, &mut deadline)
    }

    /// Receives one frame and files it in its slot.
    fn receive_one(&mut self, deadline: &mut Deadline) -> Result<()> {
        let n = self.link.recv_frame_until(&mut self.rx, deadline)?;
        if !(ember_core::HEADER_LEN..=RX).contains(&n) {
            // Not from a correct link; never sliced.
            return Err(Error::Codec(ember_core::Error::Truncated { needed: ember_core::HEADER_LEN, available: n }));
        }
        // The link checked the frame (header and CRC).
        let f = Frame::new_unchecked(&self.rx[..n]);
        let (flags, seq, kind) = (f.flags(), f.seq(), f.kind());
        let slot =
            (0..SLOTS).find(|&i| self.states[i] == SlotState::Waiting && self.seqs[i] == seq && self.kinds[i] == kind);
        let Some(slot) = slot.filter(|_| flags.contains(Flags::RESPONSE)) else {
            self.strays += 1;
            return Ok(());
        };
        let payload = &self.rx[ember_core::HEADER_LEN..n];
        self.states[slot] = if payload.len() > BUF {
            SlotState::TooLarge { len: payload.len() }
        } else {
            self.slots[slot][..payload.len()].copy_from_slice(payload);
            SlotState::Ready { error: flags.contains(Flags::ERROR), len: payload.len() }
        };
        Ok(())
    }
}

/// Links whose fds have a mode to set before use (the shared-memory link has none).
pub trait MaybeFd {
    /// Puts every fd of the link in the mode its waits expect: nonblocking for the links
    /// that `poll` (a stream socket, a [`Duplex`]), blocking for a seqpacket or datagram
    /// socket (see its [`Link`] implementation).
    fn set_modes(&self) -> Result<()>;
}

impl<const N: usize> MaybeFd for StreamSocket<N> {
    fn set_modes(&self) -> Result<()> {
        Ok(rustix::io::ioctl_fionbio(self.as_fd(), true)?)
    }
}

impl MaybeFd for PacketSocket {
    fn set_modes(&self) -> Result<()> {
        Ok(rustix::io::ioctl_fionbio(self.as_fd(), false)?)
    }
}

impl<S: FrameSender + AsFd, R: FrameReceiver + AsFd> MaybeFd for Duplex<S, R> {
    fn set_modes(&self) -> Result<()> {
        // Again, for a Duplex built from its public fields rather than `Duplex::new`.
        rustix::io::ioctl_fionbio(self.tx.as_fd(), true)?;
        Ok(rustix::io::ioctl_fionbio(self.rx.as_fd(), true)?)
    }
}

impl MaybeFd for ShmLink {
    fn set_modes(&self) -> Result<()> {
        Ok(())
    }
}

/// A request received by a [`Server`].
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Its kind.
    pub kind: u32,
    /// Its sequence number (answer with it).
    pub seq: u32,
    /// Where its payload ends in the server's receive buffer.
    len: usize,
}

/// Writes a handler's response.
///
/// `Send` and `Sync`: a `&mut [u8]` and plain values.
pub struct Responder<'a> {
    buf: &'a mut [u8],
    kind: u32,
    seq: u32,
    len: Option<usize>,
    /// `RESPONSE`, and `UNCHECKED` when the link's integrity says so.
    flags: Flags,
}

impl core::fmt::Debug for Responder<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Responder")
            .field("kind", &self.kind)
            .field("seq", &self.seq)
            .field("capacity", &self.buf.len())
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Responder<'_> {
    /// Sends `payload` as the response's raw bytes (no postcard), for handlers that speak
    /// bytes (the C ABI); [`Failure`] with code 0 if it does not fit.
    pub fn respond_raw(&mut self, payload: &[u8]) -> core::result::Result<(), Failure> {
        self.len = None;
        let repr = ember_core::frame::FrameRepr {
            flags: self.flags,
            kind: self.kind,
            seq: self.seq,
            payload_len: payload.len(),
        };
        let frame = repr
            .emit_with_payload(payload, self.buf)
            .map_err(|_| Failure::new(0, "response too large for the server's buffer or the link"))?;
        self.len = Some(frame.len());
        Ok(())
    }

    /// Encodes `msg` as the response ([`Failure`] with code 0 if it does not fit the
    /// server's buffer or the largest frame the link sends).
    pub fn respond<T: Serialize + ?Sized>(&mut self, msg: &T) -> core::result::Result<(), Failure> {
        // A failed encoding leaves no earlier response half overwritten behind.
        self.len = None;
        let frame = ember_core::message::encode_with(self.flags, self.kind, self.seq, msg, self.buf)
            .map_err(|_| Failure::new(0, "response too large for the server's buffer or the link"))?;
        self.len = Some(frame.len());
        Ok(())
    }
}

/// Decodes a request's payload as `T`, or fails with [`Failure::BAD_REQUEST`].
pub fn decode<'p, T: Deserialize<'p>>(payload: &'p [u8]) -> core::result::Result<T, Failure> {
    ember_core::message::decode_payload(payload).map_err(|_| Failure::new(Failure::BAD_REQUEST, "bad request payload"))
}

/// A server over one link: receives requests, sends responses. `RX` bytes receive (at
/// least the link's [`Link::max_recv`]), `TX` bytes encode a response.
///
/// `Send` and `Sync` when the link is: inline buffers and a counter, and serving takes
/// `&mut self`.
pub struct Server<L: Link, const RX: usize, const TX: usize> {
    link: L,
    rx: [u8; RX],
    tx: [u8; TX],
    rejected: u64,
}

impl<L: Link + core::fmt::Debug, const RX: usize, const TX: usize> core::fmt::Debug for Server<L, RX, TX> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("link", &self.link)
            .field("rx_len", &RX)
            .field("tx_len", &TX)
            .field("rejected", &self.rejected)
            .finish_non_exhaustive()
    }
}

impl<L: Link + MaybeFd, const RX: usize, const TX: usize> Server<L, RX, TX> {
    /// The smallest `TX`: an error response with the longest message.
    pub const MIN_TX: usize = ember_core::HEADER_LEN + 5 + 2 + Failure::MESSAGE_MAX;

    /// A server over `link` ([`Error::BufferTooSmall`] if `RX` is below the link's receive
    /// limit or `TX` below [`Server::MIN_TX`]).
    pub fn new(link: L) -> Result<Self> {
        if RX < link.max_recv() {
            return Err(Error::BufferTooSmall { needed: link.max_recv() });
        }
        if TX < Self::MIN_TX {
            return Err(Error::BufferTooSmall { needed: Self::MIN_TX });
        }
        link.set_modes()?;
        Ok(Server { link, rx: [0; RX], tx: [0; TX], rejected: 0 })
    }

    /// The link.
    pub fn link(&mut self) -> &mut L {
        &mut self.link
    }

    /// Receives the next request (responses and frames with unknown flags are skipped),
    /// waiting up to `timeout`; its payload is [`Server::payload`] until the next receive.
    pub fn recv_request(&mut self, timeout: Option<Duration>) -> Result<Request> {
        self.recv_request_until(&mut Deadline::after(timeout))
    }

    /// [`Server::recv_request`] until `deadline`, shared with the caller's other waits.
    pub fn recv_request_until(&mut self, deadline: &mut Deadline) -> Result<Request> {
        crate::cancel::check(deadline.canceler())?;
        loop {
            match self.link.recv_frame_until(&mut self.rx, deadline) {
                Ok(n) if (ember_core::HEADER_LEN..=RX).contains(&n) => {
                    // The link checked the frame (header and CRC).
                    let f = Frame::new_unchecked(&self.rx[..n]);
                    if !f.flags().contains(Flags::RESPONSE) {
                        return Ok(Request { kind: f.kind(), seq: f.seq(), len: n });
                    }
                }
                Ok(_) => {}
                // One bad or oversized frame from a client does not end the server: the
                // link goes on with the next one.
                Err(Error::Codec(_) | Error::TooLarge { .. } | Error::TooManyFds { .. }) => {
                    self.rejected += 1;
                }
                Err(e) => return Err(e),
            }
            // Skipped a frame: on with the time left (the count starts now if no wait has
            // started it, so a flood that never makes the link wait cannot hold the server
            // past its timeout). A zero timeout goes on through what the link already
            // holds (a stream may hold more frames than the fd shows: stopping early would
            // leave them unseen by a poller).
            if !deadline.is_zero() && deadline.expired() {
                return Err(Error::TimedOut);
            }
        }
    }

    /// Frames skipped because the link rejected them (bad CRC, unknown critical flags,
    /// too large).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The payload of the request received last.
    pub fn payload(&self, r: &Request) -> &[u8] {
        &self.rx[ember_core::HEADER_LEN..r.len.min(RX)]
    }

    /// Sends a response to request `seq` of `kind`.
    pub fn respond<T: Serialize + ?Sized>(&mut self, kind: u32, seq: u32, msg: &T) -> Result<()> {
        let flags = Flags::RESPONSE | self.link.frame_integrity().flags();
        let frame = ember_core::message::encode_with(flags, kind, seq, msg, &mut self.tx)?;
        self.link.send_frame_timeout(frame, Some(crate::transport::FINISH_TIMEOUT))
    }

    /// Sends an error response to request `seq` of `kind`.
    pub fn respond_error(&mut self, kind: u32, seq: u32, f: &Failure) -> Result<()> {
        let frame = ember_core::message::encode_with(
            Flags::RESPONSE | Flags::ERROR | self.link.frame_integrity().flags(),
            kind,
            seq,
            &(f.code, f.message()),
            &mut self.tx,
        )?;
        self.link.send_frame_timeout(frame, Some(crate::transport::FINISH_TIMEOUT))
    }

    /// Receives one request (waiting up to `timeout`) and answers it with `handler(kind,
    /// payload, responder)`: the response it wrote, or the [`Failure`] it returned, or
    /// [`Failure::NO_RESPONSE`]. Returns the request answered.
    pub fn serve_one(
        &mut self,
        timeout: Option<Duration>,
        handler: &mut impl FnMut(u32, &[u8], &mut Responder<'_>) -> core::result::Result<(), Failure>,
    ) -> Result<Request> {
        self.serve_one_until(&mut Deadline::after(timeout), handler)
    }

    /// [`Server::serve_one`] waiting for the request until `deadline` (and its canceler,
    /// [`Deadline::with_canceler`]: [`Error::Cancelled`], no request taken). The response
    /// is sent within [`FINISH_TIMEOUT`](crate::transport::FINISH_TIMEOUT), not cancelled.
    pub fn serve_one_until(
        &mut self,
        deadline: &mut Deadline,
        handler: &mut impl FnMut(u32, &[u8], &mut Responder<'_>) -> core::result::Result<(), Failure>,
    ) -> Result<Request> {
        let r = self.recv_request_until(deadline)?;
        let max = TX.min(self.link.max_send());
        let (rx, tx) = (&self.rx, &mut self.tx);
        let flags = Flags::RESPONSE | self.link.frame_integrity().flags();
        let mut responder = Responder { buf: &mut tx[..max], kind: r.kind, seq: r.seq, len: None, flags };
        let outcome = handler(r.kind, &rx[ember_core::HEADER_LEN..r.len], &mut responder);
        match (outcome, responder.len) {
            (Ok(()), Some(len)) => {
                self.link.send_frame_timeout(&self.tx[..len], Some(crate::transport::FINISH_TIMEOUT))?
            }
            (Ok(()), None) => {
                self.respond_error(r.kind, r.seq, &Failure::new(Failure::NO_RESPONSE, "the handler did not respond"))?
            }
            (Err(f), _) => self.respond_error(r.kind, r.seq, &f)?,
        }
        Ok(r)
    }
}
