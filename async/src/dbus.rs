//! The D-Bus connection ([`ember_linux::dbus`]) on an async runtime: method calls,
//! several in flight, a stream of signals and other messages, and a service loop, with the
//! connection's buffers and queue as the blocking crate has them (no allocation).
//!
//! [`AsyncDbus`] wraps a connected [`ConnectionWith`] and drives it with zero timeouts
//! (read what the socket holds, never wait inside the connection), waiting for the
//! socket's readiness on the reactor in between. The reactor watches a duplicate of the
//! socket's descriptor.
//!
//! ```text
//!   call(..).await                      recv().await / process(..).await
//!        |                                   |
//!   start_call (one send) ------+       recv(0) / process(0): the queue first, then
//!        |                      |       what the socket holds
//!   poll_message(serial) <---+  |            | TimedOut: wait for POLLIN, again
//!        | not yet           |  |            | a message
//!   wait for POLLIN ---------+  |       received(): the message, until the next receive
//!        | the reply            |
//!   received() -> reply / CallError::Remote
//! ```
//!
//! Messages that arrive while a call waits are queued in the connection (its queue,
//! [`ConnectionWith::overflows`]) and come out of the next [`AsyncDbus::recv`] or
//! [`AsyncDbus::process`], in order; replies to other calls in flight are kept for them.
//!
//! ## Cancellation
//!
//! - A dropped [`AsyncDbus::call`] or [`AsyncDbus::wait_call`] future ends its call
//!   ([`ConnectionWith::cancel_call`]): a late reply then goes to `recv` like any other
//!   message, and the call's slot is free again.
//! - A dropped `recv` or `process` future consumed nothing: a message is taken only in the
//!   step that returns it.
//!
//! ## Sends
//!
//! Sends are the connection's own: one `sendmsg` of the whole message on the blocking
//! socket (with the connection's send timeout, so a bus that stopped reading cannot hold
//! the task for ever). A message smaller than the socket's send buffer (a few hundred KiB
//! on Linux) never waits; a larger one may hold the runtime's thread while the bus reads
//! it. Replies written by `process` are sends too.

use core::fmt;
use core::future::poll_fn;
use core::time::Duration;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ember_linux::core::dbus::{DbusError, Message, Signature, Writer};
use ember_linux::dbus::{Buffers, CallError, ConnectionWith, PendingCall, Processed};
use ember_linux::{Error, Result};

use crate::{AsyncEndpoint, Direction, Driver, NoRest, sealed};

/// A duplicate of a D-Bus connection's descriptor, for the reactor to watch. Sealed.
///
/// `Send` and `Sync`: an owned descriptor.
#[derive(Debug)]
pub struct BusFd(OwnedFd);

impl AsFd for BusFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl sealed::Sealed for BusFd {}

impl AsyncEndpoint for BusFd {
    type Rest = NoRest;
}

/// Ends a call in flight if the future waiting for it is dropped.
struct CancelOnDrop<'c, B: Buffers> {
    conn: &'c mut ConnectionWith<B>,
    serial: Option<u32>,
}

impl<B: Buffers> Drop for CancelOnDrop<'_, B> {
    fn drop(&mut self) {
        if let Some(serial) = self.serial.take() {
            self.conn.cancel_call(PendingCall::from_serial(serial));
        }
    }
}

/// A D-Bus connection on an async runtime. Use it as [`crate::tokio::AsyncDbus`] or
/// [`crate::async_io::AsyncDbus`]; see the [module docs](self).
///
/// `Send` and `Sync`: the connection and the watch are.
pub struct AsyncDbus<B: Buffers, D: Driver<BusFd>> {
    conn: ConnectionWith<B>,
    watch: D,
}

impl<B: Buffers, D: Driver<BusFd>> fmt::Debug for AsyncDbus<B, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncDbus").field("conn", &self.conn).field("watch", self.watch.get_ref()).finish()
    }
}

/// `Ok(())` once `r` says a message is here, [`Error::WouldBlock`] for "not yet".
fn arrived<T>(r: Result<Option<T>>) -> Result<()> {
    match r {
        Ok(Some(_)) => Ok(()),
        Ok(None) | Err(Error::TimedOut) => Err(Error::WouldBlock),
        Err(e) => Err(e),
    }
}

impl<B: Buffers, D: Driver<BusFd>> AsyncDbus<B, D> {
    /// Puts a connected (authenticated, `Hello` answered) connection on the reactor.
    /// Connect with the blocking constructors (`ConnectionWith::connect_with`,
    /// `Connection::session`, ...), from a blocking thread or before the runtime's loop if
    /// the bus may be slow to answer. The reactor's rules apply (Tokio: inside a runtime
    /// with I/O enabled).
    pub fn new(conn: ConnectionWith<B>) -> Result<Self> {
        let dup = conn.as_fd().try_clone_to_owned().map_err(|e| match rustix::io::Errno::from_io_error(&e) {
            Some(errno) => Error::from(errno),
            None => Error::Os(rustix::io::Errno::IO),
        })?;
        Ok(AsyncDbus { conn, watch: D::register(BusFd(dup))? })
    }

    /// The connection: its zero-timeout calls, sends, `start_call`, `take_fd`, counters.
    /// Its blocking calls (a nonzero timeout) would hold the runtime's thread.
    pub fn get_mut(&mut self) -> &mut ConnectionWith<B> {
        &mut self.conn
    }

    /// The connection.
    pub fn get_ref(&self) -> &ConnectionWith<B> {
        &self.conn
    }

    /// Takes the connection off the reactor.
    pub fn into_inner(self) -> ConnectionWith<B> {
        self.conn
    }

    /// Calls `member` on `destination`'s object at `path` and waits for the reply, which
    /// borrows the connection's buffer until the next receive. A D-Bus error reply is
    /// [`CallError::Remote`]; a reply the connection refused (larger than its receive
    /// buffer, malformed) fails the call at once. No timeout of its own: put one around
    /// the future (`tokio::time::timeout`); dropping it ends the call.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        let call = self.conn.start_call(destination, path, interface, member, sig, body)?;
        self.wait_call(call).await
    }

    /// Waits for the reply to a call started with `get_mut().start_call(..)` (several may
    /// be in flight; wait for them in any order). Dropping the future ends the call.
    pub async fn wait_call(&mut self, call: PendingCall) -> core::result::Result<Message<'_>, CallError<'_>> {
        let serial = call.serial();
        let AsyncDbus { conn, watch } = self;
        let mut guard = CancelOnDrop { conn, serial: Some(serial) };
        let r = poll_fn(|cx| {
            let conn = &mut *guard.conn;
            // A reply already queued, or read with other messages, needs no readiness.
            match arrived(conn.poll_message(serial)) {
                Err(Error::WouldBlock) => watch.poll_io(cx, Direction::Read, |_| arrived(conn.poll_message(serial))),
                r => core::task::Poll::Ready(r),
            }
        })
        .await;
        // Answered or failed: `poll_message` ended the call either way.
        guard.serial = None;
        drop(guard);
        r?;
        match self.conn.received() {
            Some(m) => CallError::check_reply(m),
            None => Err(CallError::Local(Error::PeerGone)),
        }
    }

    /// Waits for the next message that is not a reply to a call in flight (signals,
    /// method calls, errors, replies nobody waits for): the queued ones first, in arrival
    /// order, then what arrives. Where the queue overflowed, the messages queued before the
    /// loss come first, then one [`Error::QueueOverflow`]. The message borrows the
    /// connection's buffer until the next receive.
    pub async fn recv(&mut self) -> Result<Message<'_>> {
        let AsyncDbus { conn, watch } = self;
        poll_fn(|cx| {
            let once = |c: &mut ConnectionWith<B>| arrived(c.recv(Duration::ZERO).map(|_| Some(())));
            match once(conn) {
                Err(Error::WouldBlock) => watch.poll_io(cx, Direction::Read, |_| once(conn)),
                r => core::task::Poll::Ready(r),
            }
        })
        .await?;
        self.conn.received().ok_or(Error::PeerGone)
    }

    /// Waits for the next message and, if it is a method call, answers it from `objects`
    /// and `service` ([`ConnectionWith::process`]); other messages are returned.
    pub async fn process(
        &mut self,
        objects: &[ember_linux::dbus::object::Object<'_>],
        service: &mut impl ember_linux::dbus::object::Service,
    ) -> Result<Processed<'_>> {
        let AsyncDbus { conn, watch } = self;
        let answered = poll_fn(|cx| {
            let mut once = |c: &mut ConnectionWith<B>| match c.process(objects, service, Duration::ZERO) {
                Ok(Processed::Answered) => Ok(true),
                Ok(Processed::Message(_)) => Ok(false),
                Err(Error::TimedOut) => Err(Error::WouldBlock),
                Err(e) => Err(e),
            };
            match once(conn) {
                Err(Error::WouldBlock) => watch.poll_io(cx, Direction::Read, |_| once(conn)),
                r => core::task::Poll::Ready(r),
            }
        })
        .await?;
        if answered {
            return Ok(Processed::Answered);
        }
        self.conn.received().map(Processed::Message).ok_or(Error::PeerGone)
    }
}
