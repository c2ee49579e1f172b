//! The async-io adapters: Ember endpoints on `async_io::Async`, the reactor of smol (and
//! of any executor: async-io runs its own reactor thread when nobody drives it).
//!
//! [`Async<T>`] is [`crate::Async`] on async-io; [`AsyncSpscReceiver`] the shared-memory
//! receiver. The reactor watches a duplicate of the endpoint's descriptor (`dup`, one more
//! descriptor per endpoint): async-io's own wrapper only lends its contents out through
//! `unsafe` calls, and with a duplicate the endpoint stays an ordinary owned value. Both
//! descriptors share one open file description, so readiness and `O_NONBLOCK` are the
//! same for both.

use core::fmt;
use core::task::{Context, Poll, ready};
use std::os::fd::{AsFd, OwnedFd};

use ember_linux::{Error, Result};

use crate::{Direction, Driver, io_error, sealed};

/// An Ember endpoint on async-io (see [`crate::Async`]).
pub type Async<T> = crate::Async<T, AsyncIo<T>>;

/// An RPC client over a seqpacket socket on this runtime (see [`crate::AsyncRpcClient`]).
pub type AsyncRpcClient<const SLOTS: usize, const BUF: usize, const RX: usize> =
    crate::AsyncRpcClient<AsyncIo<crate::rpc::LinkFd>, SLOTS, BUF, RX>;

/// An RPC server over a seqpacket socket on this runtime (see [`crate::AsyncRpcServer`]).
pub type AsyncRpcServer<const RX: usize, const TX: usize> = crate::AsyncRpcServer<AsyncIo<crate::rpc::LinkFd>, RX, TX>;

/// A D-Bus connection over the buffers `B` on this runtime (see [`crate::AsyncDbus`]).
pub type AsyncDbus<B> = crate::AsyncDbus<B, AsyncIo<crate::dbus::BusFd>>;

/// A shared-memory SPSC receiver on async-io (see [`crate::AsyncSpscReceiver`]).
pub type AsyncSpscReceiver = crate::AsyncSpscReceiver<AsyncIo<ember_linux::shm::Notifier>>;

/// async-io's reactor watching an endpoint (through a duplicate of its descriptor).
///
/// `Send` and `Sync` when `T` is.
pub struct AsyncIo<T> {
    io: T,
    source: async_io::Async<OwnedFd>,
}

impl<T: fmt::Debug> fmt::Debug for AsyncIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncIo").field("io", &self.io).field("source", &self.source).finish()
    }
}

impl<T> sealed::Sealed for AsyncIo<T> {}

impl<T: AsFd> Driver<T> for AsyncIo<T> {
    /// `fcntl(F_DUPFD_CLOEXEC)` of the endpoint's descriptor, registered with
    /// `async_io::Async::new`.
    fn register(io: T) -> Result<Self> {
        let dup = io.as_fd().try_clone_to_owned().map_err(io_error)?;
        let source = async_io::Async::new(dup).map_err(io_error)?;
        Ok(AsyncIo { io, source })
    }

    fn get_ref(&self) -> &T {
        &self.io
    }

    fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    fn into_inner(self) -> T {
        // Dropping the source deregisters and closes the duplicate.
        self.io
    }

    fn poll_io<R>(
        &mut self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut(&mut T) -> Result<R>,
    ) -> Poll<Result<R>> {
        loop {
            match op(&mut self.io) {
                Err(Error::WouldBlock) => {}
                r => return Poll::Ready(r),
            }
            // Ready once the reactor saw an event since this task last got `Pending`.
            let ready = match dir {
                Direction::Read => self.source.poll_readable(cx),
                Direction::Write => self.source.poll_writable(cx),
            };
            ready!(ready).map_err(io_error)?;
        }
    }
}
