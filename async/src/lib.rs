//! # ember-ipc-async
//!
//! Async adapters for Ember's Linux endpoints, in a crate of their own so that
//! `ember-ipc-core` and `ember-ipc-linux` never compile a runtime. One generic wrapper,
//! [`Async<T, D>`], puts any Ember fd endpoint `T` (pipes, FIFOs, Unix and TCP stream
//! sockets, datagram and seqpacket sockets, POSIX message queues, listeners, signalfds)
//! on a runtime's reactor `D`; [`AsyncSpscReceiver`] does the same for the receiving side
//! of a shared-memory SPSC ring, through its eventfd [`Notifier`] and
//! [`SpscReceiver::prepare_poll`](ember_linux::shm::SpscReceiver::prepare_poll);
//! [`AsyncRpcClient`] and [`AsyncRpcServer`] make request/response calls
//! ([`ember_linux::rpc`]) over a seqpacket socket; [`AsyncDbus`] makes D-Bus calls (several
//! in flight), receives signals and serves objects ([`ember_linux::dbus`]).
//!
//! Features (both off by default, either or both on):
//! - `tokio`: [`tokio::Async`], on `tokio::io::unix::AsyncFd` (Tokio's `net` feature only).
//! - `async-io`: [`async_io::Async`], on `async_io::Async` (the reactor of smol).
//!
//! ## How an operation runs
//!
//! ```text
//!   recv(buf).await            send(frame).await
//!        |                          |
//!   try_recv (nonblocking) <--+  flush the rest of an earlier frame (if any)
//!        | WouldBlock         |     |
//!   wait for POLLIN ----------+  start_frame: check, one nonblocking write
//!        | a frame            |     | WouldBlock: wait for POLLOUT, again
//!   Ok(len), same step        |  commit: count it, keep the unwritten rest in the wrapper
//!                                   |
//!                               flush the rest (wait for POLLOUT as needed)
//! ```
//!
//! ## Cancellation
//!
//! Every future here may be dropped at any `.await` point (a `select!` branch that lost,
//! a timeout) without losing or duplicating a message and without leaving the endpoint
//! unusable:
//!
//! - **Receive** consumes a message only in the same synchronous step that returns it: a
//!   dropped `recv` future took nothing. Bytes a stream receiver had read but not yet
//!   assembled into a frame stay in the endpoint's accumulator for the next `recv`.
//! - **Send** over a message transport (packet pipe, datagram or seqpacket socket, message
//!   queue) writes the whole frame in one system call or nothing: a dropped `send` future
//!   sent nothing.
//! - **Send** over a byte stream (pipe, FIFO, stream socket) may write part of a frame when
//!   the kernel buffer fills. The unwritten rest is copied into the wrapper (not kept in
//!   the future), so the frame is *committed*: if the future is dropped then, the wrapper
//!   finishes that frame before anything else goes out (the next `send`, or `flush`), and
//!   the receiver never sees half a frame followed by another. [`Async::sent`] counts
//!   committed frames, so a caller that resends after a cancellation can tell whether the
//!   dropped send had already committed its frame. Dropping the wrapper itself makes one
//!   last nonblocking attempt to write a pending rest; call [`Async::flush`] first to be
//!   sure it went out. The rest is kept in a fixed buffer ([`StreamRest`]), so a stream
//!   frame larger than that buffer is refused ([`Error::TooLarge`]) before any byte is
//!   written.
//!
//! ## Allocation
//!
//! The wrappers allocate nothing of their own on the send and receive paths: the buffers
//! are the caller's or fixed-size fields. The runtimes' readiness registration is their
//! own business; `tests/no_alloc.rs` counts every allocation in steady-state round trips
//! on both runtimes.
//!
//! ## Panics
//!
//! Nothing here panics on any input. [`tokio::Async::new`] must be called from within a
//! Tokio runtime with I/O enabled, as every Tokio I/O type (Tokio panics otherwise).
//!
//! ## Example
//!
//! ```
//! # #[cfg(feature = "tokio")]
//! # {
//! use ember_async::tokio::Async;
//!
//! let rt = ::tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
//! rt.block_on(async {
//!     let (a, b) = ember_linux::uds::seqpacket_pair().unwrap();
//!     let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
//!     let mut scratch = [0u8; 64];
//!     a.send_msg(7, 1, &(21u32, true), &mut scratch).await.unwrap();
//!     let mut buf = [0u8; ember_linux::socket::DEFAULT_PACKET_MAX];
//!     let (repr, (n, flag)) = b.recv_msg::<(u32, bool)>(&mut buf).await.unwrap();
//!     assert_eq!((repr.kind, repr.seq, n, flag), (7, 1, 21, true));
//! });
//! # }
//! ```
// One `unsafe` call: registering a descriptor with Tokio (`tokio.rs`).
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use core::fmt;
use core::future::poll_fn;
use core::task::{Context, Poll};

use ember_core::FrameRepr;
use ember_core::message::Message;
use ember_linux::core as ember_core;
use ember_linux::mq::MessageQueue;
use ember_linux::net::TcpListener;
use ember_linux::pipe::{PacketReader, StreamReader, Writer};
use ember_linux::shm::Notifier;
use ember_linux::signal::SignalFd;
use ember_linux::socket::{PacketSocket, StreamSocket};
use ember_linux::uds::UdsListener;
use ember_linux::{Endpoint, Error, FrameReceiver, FrameSender, Result};
use rustix::fd::AsFd;
use serde::{Deserialize, Serialize};

#[cfg(feature = "async-io")]
pub mod async_io;
pub mod dbus;
pub mod rpc;
mod shm;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use dbus::AsyncDbus;
pub use rpc::{AsyncRpcClient, AsyncRpcServer};
pub use shm::AsyncSpscReceiver;

/// Which readiness an operation waits for.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `POLLIN`: something to receive (or accept, or read).
    Read,
    /// `POLLOUT`: room to send.
    Write,
}

mod sealed {
    pub trait Sealed {}
}

/// An Ember endpoint the adapters know: it has a file descriptor that `epoll` watches, and
/// says where the unwritten rest of a stream frame waits. Implemented for every Ember fd
/// endpoint; sealed.
pub trait AsyncEndpoint: AsFd + sealed::Sealed {
    /// The wrapper's store for the unwritten rest of a frame: [`StreamRest`] for byte
    /// streams, [`NoRest`] for the rest.
    type Rest: Rest;

    /// Whether frames travel as a byte stream (a send may write part of a frame).
    fn is_stream(&self) -> bool {
        false
    }

    /// One nonblocking write of more of a frame that [`AsyncSend::start_frame`] began
    /// (byte streams); the others never leave a rest and answer [`Error::WouldBlock`].
    fn continue_frame(&mut self, rest: &[u8]) -> Result<usize> {
        let _ = rest;
        Err(Error::WouldBlock)
    }
}

/// Endpoints that send frames.
pub trait AsyncSend: AsyncEndpoint {
    /// Checks `frame` and makes one nonblocking write: how many bytes went out. A message
    /// transport writes all of it or nothing ([`Error::WouldBlock`]); a byte stream may
    /// write a prefix, and [`AsyncEndpoint::continue_frame`] writes the rest.
    fn start_frame(&mut self, frame: &[u8]) -> Result<usize>;

    /// The endpoint's [`FrameSender::integrity`]: whether the frames
    /// [`Async::send_msg`] encodes have their payload checksummed, and whether
    /// [`AsyncSend::start_frame`] refuses an unchecked one.
    fn integrity(&self) -> ember_linux::Integrity;
}

/// Endpoints that receive frames.
pub trait AsyncRecv: AsyncEndpoint {
    /// One nonblocking receive of a whole, checked frame into `buf` (see
    /// [`FrameReceiver::recv_frame`]); [`Error::WouldBlock`] when none is there.
    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// Whether a frame may be ready without the fd being readable (bytes already read).
    fn buffered(&self) -> bool {
        false
    }
}

/// Where the wrapper keeps the unwritten rest of a committed frame. Sealed.
pub trait Rest: Default + fmt::Debug + sealed::Sealed {
    /// The largest rest it keeps (and so the largest stream frame the adapter sends).
    const CAPACITY: usize;
    /// The bytes still to write.
    fn pending(&self) -> &[u8];
    /// `n` more bytes went out.
    fn consume(&mut self, n: usize);
    /// Keeps `bytes` (at most [`Rest::CAPACITY`]) as the rest to write.
    fn store(&mut self, bytes: &[u8]);
    /// Forgets the rest (the stream failed).
    fn clear(&mut self);
}

/// No rest: message transports write a frame whole or not at all.
///
/// `Send` and `Sync`: empty.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRest;

impl sealed::Sealed for NoRest {}

impl Rest for NoRest {
    const CAPACITY: usize = 0;
    fn pending(&self) -> &[u8] {
        &[]
    }
    fn consume(&mut self, _: usize) {}
    fn store(&mut self, _: &[u8]) {}
    fn clear(&mut self) {}
}

/// The rest of a stream frame, up to `N` bytes, inline (no heap).
///
/// `Send` and `Sync`: an array and two indices.
pub struct StreamRest<const N: usize> {
    buf: [u8; N],
    pos: usize,
    len: usize,
}

impl<const N: usize> Default for StreamRest<N> {
    fn default() -> Self {
        StreamRest { buf: [0; N], pos: 0, len: 0 }
    }
}

impl<const N: usize> fmt::Debug for StreamRest<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRest").field("capacity", &N).field("pending", &(self.len - self.pos)).finish()
    }
}

impl<const N: usize> sealed::Sealed for StreamRest<N> {}

impl<const N: usize> Rest for StreamRest<N> {
    const CAPACITY: usize = N;
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..self.len]
    }
    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.len);
        if self.pos == self.len {
            self.clear();
        }
    }
    fn store(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(N);
        self.buf[..n].copy_from_slice(&bytes[..n]);
        self.pos = 0;
        self.len = n;
    }
    fn clear(&mut self) {
        self.pos = 0;
        self.len = 0;
    }
}

/// A runtime's reactor holding an endpoint: the part of [`Async`] that differs between
/// Tokio and async-io. Sealed; [`tokio::Tokio`] and [`async_io::AsyncIo`] implement it.
pub trait Driver<T>: Sized + sealed::Sealed {
    /// Registers `io` (already nonblocking) with the reactor.
    fn register(io: T) -> Result<Self>;
    /// The endpoint.
    fn get_ref(&self) -> &T;
    /// The endpoint, mutably.
    fn get_mut(&mut self) -> &mut T;
    /// Deregisters and gives the endpoint back.
    fn into_inner(self) -> T;
    /// Runs `op` until it gives anything but [`Error::WouldBlock`], waiting for `dir`
    /// readiness in between. `op` must make no progress when it returns `WouldBlock`.
    fn poll_io<R>(
        &mut self,
        cx: &mut Context<'_>,
        dir: Direction,
        op: impl FnMut(&mut T) -> Result<R>,
    ) -> Poll<Result<R>>;
}

/// An I/O error from a reactor, as an Ember error.
#[cfg(any(feature = "tokio", feature = "async-io"))]
pub(crate) fn io_error(e: std::io::Error) -> Error {
    use rustix::io::Errno;
    match Errno::from_io_error(&e) {
        Some(errno) => Error::from(errno),
        None if e.kind() == std::io::ErrorKind::WouldBlock => Error::WouldBlock,
        None => Error::Os(Errno::IO),
    }
}

/// An Ember endpoint on an async runtime: `send(..).await`, `recv(..).await`, and any
/// other nonblocking call of the endpoint through [`Async::read_with`] /
/// [`Async::write_with`]. See the [crate docs](crate) for the cancellation rules.
///
/// Use it as [`tokio::Async<T>`] or [`async_io::Async<T>`].
///
/// `Send` and `Sync` when the endpoint is (every Ember endpoint is): I/O takes `&mut self`.
pub struct Async<T: AsyncEndpoint, D: Driver<T>> {
    // `None` only inside `into_inner`, which consumes the wrapper.
    driver: Option<D>,
    rest: T::Rest,
    sent: u64,
}

impl<T: AsyncEndpoint + fmt::Debug, D: Driver<T>> fmt::Debug for Async<T, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async").field("io", self.get_ref()).field("rest", &self.rest).field("sent", &self.sent).finish()
    }
}

impl<T: AsyncEndpoint, D: Driver<T>> Async<T, D> {
    /// Switches `io` to nonblocking mode (`ioctl(FIONBIO)`, which its other descriptors
    /// share) and registers it with the runtime's reactor.
    pub fn new(io: T) -> Result<Self> {
        io.set_nonblocking(true)?;
        Ok(Async { driver: Some(D::register(io)?), rest: T::Rest::default(), sent: 0 })
    }

    fn d(&self) -> &D {
        match &self.driver {
            Some(d) => d,
            None => unreachable!("the driver is taken only by into_inner, which consumes the wrapper"),
        }
    }

    pub(crate) fn dm(&mut self) -> &mut D {
        match &mut self.driver {
            Some(d) => d,
            None => unreachable!("the driver is taken only by into_inner, which consumes the wrapper"),
        }
    }

    /// The endpoint.
    pub fn get_ref(&self) -> &T {
        self.d().get_ref()
    }

    /// The endpoint, mutably (keep it nonblocking, and do not replace it: the reactor
    /// watches its descriptor).
    pub fn get_mut(&mut self) -> &mut T {
        self.dm().get_mut()
    }

    /// Deregisters and gives the endpoint back (still nonblocking). The unwritten rest of a
    /// stream frame, if any, gets one last nonblocking write attempt; call
    /// [`Async::flush`] first to be sure.
    pub fn into_inner(mut self) -> T {
        self.last_flush();
        let driver = self.driver.take();
        // Our Drop sees `None` and does nothing more.
        match driver {
            Some(d) => d.into_inner(),
            None => unreachable!("the driver is taken only here"),
        }
    }

    /// Frames this wrapper committed so far: sent whole, or started with the rest kept for
    /// the next write (see the crate docs on cancellation).
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes of a committed stream frame still to write (0 for message transports).
    pub fn pending(&self) -> usize {
        self.rest.pending().len()
    }

    fn last_flush(&mut self) {
        let Async { driver: Some(d), rest, .. } = self else { return };
        while !rest.pending().is_empty() {
            match d.get_mut().continue_frame(rest.pending()) {
                Ok(n) if n > 0 => rest.consume(n),
                _ => break,
            }
        }
    }

    /// Runs a nonblocking call of the endpoint whenever the descriptor is readable, until
    /// it gives anything but [`Error::WouldBlock`]: accepting a connection, reading a
    /// signalfd, receiving a frame with file descriptors. Cancellation-safe when `op` makes
    /// no progress when it returns `WouldBlock` (every Ember call).
    pub async fn read_with<R>(&mut self, mut op: impl FnMut(&mut T) -> Result<R>) -> Result<R> {
        poll_fn(|cx| self.dm().poll_io(cx, Direction::Read, &mut op)).await
    }

    /// As [`Async::read_with`], waiting for the descriptor to be writable.
    pub async fn write_with<R>(&mut self, mut op: impl FnMut(&mut T) -> Result<R>) -> Result<R> {
        poll_fn(|cx| self.dm().poll_io(cx, Direction::Write, &mut op)).await
    }
}

impl<T: AsyncEndpoint + AsyncSend, D: Driver<T>> Async<T, D> {
    /// Polls the start of sending `frame`: `Ready(Ok)` once the frame is committed (written
    /// whole, or started with the rest kept in the wrapper); the rest goes out with
    /// [`Async::poll_flush`]. Nothing is committed while this returns `Pending` or an error.
    pub fn poll_send(&mut self, cx: &mut Context<'_>, frame: &[u8]) -> Poll<Result<()>> {
        match self.poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if self.d().get_ref().is_stream() && frame.len() > T::Rest::CAPACITY {
            return Poll::Ready(Err(Error::TooLarge { len: frame.len(), max: T::Rest::CAPACITY }));
        }
        match self.dm().poll_io(cx, Direction::Write, |io| io.start_frame(frame)) {
            Poll::Ready(Ok(n)) => {
                self.sent += 1;
                if n < frame.len() {
                    self.rest.store(&frame[n..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Polls writing the rest of a committed stream frame: `Ready(Ok)` when nothing is left.
    /// An error (the peer went away) forgets the rest.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while !self.rest.pending().is_empty() {
            let Async { driver: Some(d), rest, .. } = self else { break };
            match d.poll_io(cx, Direction::Write, |io| io.continue_frame(rest.pending())) {
                Poll::Ready(Ok(n)) => rest.consume(n),
                Poll::Ready(Err(e)) => {
                    rest.clear();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends one whole frame (as `ember_core::message::encode` makes it). Cancellation: a
    /// future dropped before it committed the frame sent nothing; one dropped after (a
    /// stream frame partly written) leaves the wrapper to finish the frame (see the crate
    /// docs and [`Async::sent`]).
    pub async fn send(&mut self, frame: &[u8]) -> Result<()> {
        poll_fn(|cx| self.poll_send(cx, frame)).await?;
        self.flush().await
    }

    /// Writes the rest of a committed stream frame, if any (a no-op otherwise).
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Encodes `msg` into `scratch` as a frame of `kind` and `seq`, and sends it
    /// (cancellation as [`Async::send`]; the encoding happens before the first await).
    pub async fn send_msg<M: Serialize + ?Sized>(
        &mut self,
        kind: u32,
        seq: u32,
        msg: &M,
        scratch: &mut [u8],
    ) -> Result<()> {
        let flags = AsyncSend::integrity(self.get_ref()).flags();
        let frame = ember_core::message::encode_with(flags, kind, seq, msg, scratch)?;
        self.send(frame).await
    }

    /// Sends `msg` as a frame of its type's kind ([`Message::KIND`]).
    pub async fn send_message<M: Message + ?Sized>(&mut self, seq: u32, msg: &M, scratch: &mut [u8]) -> Result<()> {
        self.send_msg(M::KIND, seq, msg, scratch).await
    }
}

impl<T: AsyncEndpoint + AsyncRecv, D: Driver<T>> Async<T, D> {
    /// Polls receiving one whole, checked frame into `buf`: `Ready(Ok(len))` consumed it,
    /// `Pending` consumed nothing.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize>> {
        if self.d().get_ref().buffered() {
            match self.dm().get_mut().try_recv(buf) {
                Err(Error::WouldBlock) => {}
                r => return Poll::Ready(r),
            }
        }
        self.dm().poll_io(cx, Direction::Read, |io| io.try_recv(buf))
    }

    /// Receives one whole, checked frame into `buf` (sized as the endpoint's
    /// [`FrameReceiver::max_frame`]) and returns its length. Cancellation-safe: a dropped
    /// future consumed nothing.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    /// Receives a frame and decodes its payload (borrowing from `buf`).
    pub async fn recv_msg<'b, M: Deserialize<'b>>(&mut self, buf: &'b mut [u8]) -> Result<(FrameRepr, M)> {
        let n = self.recv(buf).await?;
        Ok(ember_core::message::decode(&buf[..n])?)
    }

    /// Receives a frame and decodes it as an `M`, checking its kind first (a frame of
    /// another kind is consumed and reported, as [`FrameReceiver::recv_message`]).
    pub async fn recv_message<'b, M: Message + Deserialize<'b>>(
        &mut self,
        buf: &'b mut [u8],
    ) -> Result<(FrameRepr, M)> {
        let n = self.recv(buf).await?;
        Ok(ember_core::message::decode_message(&buf[..n])?)
    }
}

impl<T: AsyncEndpoint, D: Driver<T>> Drop for Async<T, D> {
    fn drop(&mut self) {
        if self.driver.is_some() {
            self.last_flush();
        }
    }
}

// ---- The endpoints ----

impl sealed::Sealed for Writer {}
impl AsyncEndpoint for Writer {
    type Rest = StreamRest<{ ember_linux::pipe::DEFAULT_STREAM_BUF }>;
    fn is_stream(&self) -> bool {
        !self.is_packet()
    }
    fn continue_frame(&mut self, rest: &[u8]) -> Result<usize> {
        self.write_bytes(rest)
    }
}

impl<const N: usize> sealed::Sealed for StreamSocket<N> {}
impl<const N: usize> AsyncEndpoint for StreamSocket<N> {
    type Rest = StreamRest<N>;
    fn is_stream(&self) -> bool {
        true
    }
    fn continue_frame(&mut self, rest: &[u8]) -> Result<usize> {
        self.write_bytes(rest)
    }
}

impl<const N: usize> sealed::Sealed for StreamReader<N> {}
impl<const N: usize> AsyncEndpoint for StreamReader<N> {
    type Rest = NoRest;
    fn is_stream(&self) -> bool {
        true
    }
}

macro_rules! endpoint {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl AsyncEndpoint for $t {
            type Rest = NoRest;
        }
    )*};
}
endpoint!(PacketReader, PacketSocket, MessageQueue, UdsListener, TcpListener, SignalFd, Notifier);

/// A whole-or-nothing send, as the message transports' `send_frame` is in nonblocking
/// mode.
fn send_whole(io: &mut impl FrameSender, frame: &[u8]) -> Result<usize> {
    io.send_frame(frame).map(|()| frame.len())
}

impl AsyncSend for Writer {
    fn start_frame(&mut self, frame: &[u8]) -> Result<usize> {
        if self.is_packet() {
            return send_whole(self, frame);
        }
        ember_linux::transport::check_outgoing(frame, FrameSender::max_frame(self))?;
        ember_linux::transport::check_sender_integrity(frame, FrameSender::integrity(self))?;
        self.write_bytes(frame)
    }

    fn integrity(&self) -> ember_linux::Integrity {
        FrameSender::integrity(self)
    }
}

impl<const N: usize> AsyncSend for StreamSocket<N> {
    fn start_frame(&mut self, frame: &[u8]) -> Result<usize> {
        ember_linux::transport::check_outgoing(frame, FrameSender::max_frame(self))?;
        ember_linux::transport::check_sender_integrity(frame, FrameSender::integrity(self))?;
        self.write_bytes(frame)
    }

    fn integrity(&self) -> ember_linux::Integrity {
        FrameSender::integrity(self)
    }
}

macro_rules! whole_sender {
    ($($t:ty),*) => {$(
        impl AsyncSend for $t {
            fn start_frame(&mut self, frame: &[u8]) -> Result<usize> {
                send_whole(self, frame)
            }

            fn integrity(&self) -> ember_linux::Integrity {
                FrameSender::integrity(self)
            }
        }
    )*};
}
whole_sender!(PacketSocket, MessageQueue);

macro_rules! frame_receiver {
    ($([$($g:tt)*] $t:ty, buffered = $b:expr);* $(;)?) => {$(
        impl<$($g)*> AsyncRecv for $t {
            fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize> {
                self.recv_frame(buf)
            }
            fn buffered(&self) -> bool {
                $b(self)
            }
        }
    )*};
}
frame_receiver!(
    [const N: usize] StreamReader<N>, buffered = |r: &StreamReader<N>| FrameReceiver::buffered(r);
    [] PacketReader, buffered = |_r: &PacketReader| false;
    [const N: usize] StreamSocket<N>, buffered = |s: &StreamSocket<N>| FrameReceiver::buffered(s);
    [] PacketSocket, buffered = |_s: &PacketSocket| false;
    [] MessageQueue, buffered = |_q: &MessageQueue| false;
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_rest_keeps_and_consumes() {
        let mut r = StreamRest::<8>::default();
        assert!(r.pending().is_empty());
        r.store(b"abcdef");
        r.consume(2);
        assert_eq!(r.pending(), b"cdef");
        r.consume(4);
        assert!(r.pending().is_empty());
    }

    #[test]
    #[cfg(any(feature = "tokio", feature = "async-io"))]
    fn io_errors_map_to_ember_errors() {
        assert_eq!(io_error(std::io::Error::from_raw_os_error(11)), Error::WouldBlock);
        assert_eq!(io_error(std::io::Error::from_raw_os_error(32)), Error::PeerGone);
        assert_eq!(io_error(std::io::Error::other("x")), Error::Os(rustix::io::Errno::IO));
    }
}
