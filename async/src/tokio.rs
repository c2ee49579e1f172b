//! The Tokio adapters: Ember endpoints on `tokio::io::unix::AsyncFd`.
//!
//! [`Async<T>`] is [`crate::Async`] on Tokio's reactor; [`AsyncSpscReceiver`] the
//! shared-memory receiver. Both need a runtime with I/O enabled (`enable_io`, or
//! `enable_all`) when they are made; they work on the current-thread and the
//! multi-thread runtime.
//!
//! Readiness follows `AsyncFd`'s rule: the operation runs inside a readiness guard, and
//! the guard's readiness is cleared only when the operation answered
//! [`Error::WouldBlock`], so no wake-up is missed and no
//! message is consumed outside the step that returns it.

use core::fmt;
use core::task::{Context, Poll, ready};
use std::os::fd::{AsFd, OwnedFd};

use ember_linux::{Error, Result};
use tokio::io::unix::AsyncFd;

use crate::{Direction, Driver, io_error, sealed};

/// An Ember endpoint on Tokio (see [`crate::Async`]).
pub type Async<T> = crate::Async<T, Tokio<T>>;

/// An RPC client over a seqpacket socket on this runtime (see [`crate::AsyncRpcClient`]).
pub type AsyncRpcClient<const SLOTS: usize, const BUF: usize, const RX: usize> =
    crate::AsyncRpcClient<Tokio<crate::rpc::LinkFd>, SLOTS, BUF, RX>;

/// An RPC server over a seqpacket socket on this runtime (see [`crate::AsyncRpcServer`]).
pub type AsyncRpcServer<const RX: usize, const TX: usize> = crate::AsyncRpcServer<Tokio<crate::rpc::LinkFd>, RX, TX>;

/// A D-Bus connection over the buffers `B` on this runtime (see [`crate::AsyncDbus`]).
pub type AsyncDbus<B> = crate::AsyncDbus<B, Tokio<crate::dbus::BusFd>>;

/// A shared-memory SPSC receiver on Tokio (see [`crate::AsyncSpscReceiver`]).
pub type AsyncSpscReceiver = crate::AsyncSpscReceiver<Tokio<ember_linux::shm::Notifier>>;

/// Tokio's reactor watching an endpoint: an `AsyncFd` over a duplicate of its descriptor,
/// registered for reading and writing. The duplicate (one more descriptor per endpoint)
/// stays inside, so the registered descriptor can never be closed or swapped while Tokio
/// watches it (what `AsyncFd::register` asks), whatever the caller does with the endpoint
/// through [`crate::Async::get_mut`]. Both descriptors share one open file description,
/// so readiness is the same for both.
///
/// `Send` and `Sync` when `T` is.
pub struct Tokio<T> {
    io: T,
    fd: AsyncFd<OwnedFd>,
}

impl<T: fmt::Debug> fmt::Debug for Tokio<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokio").field("io", &self.io).field("fd", &self.fd).finish()
    }
}

impl<T> sealed::Sealed for Tokio<T> {}

impl<T: AsFd> Driver<T> for Tokio<T> {
    /// `fcntl(F_DUPFD_CLOEXEC)` of the endpoint's descriptor, registered with
    /// `AsyncFd::register` (Tokio panics outside a runtime with I/O enabled).
    fn register(io: T) -> Result<Self> {
        let dup = io.as_fd().try_clone_to_owned().map_err(io_error)?;
        // SAFETY: `dup` is an open descriptor owned by the `AsyncFd` from here on; this
        // module never hands the `AsyncFd` (or its contents) out, so it stays open and
        // `as_raw_fd` keeps answering the same number until the `AsyncFd` is dropped.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(dup) }.map_err(|e| io_error(e.into_parts().1))?;
        Ok(Tokio { io, fd })
    }

    fn get_ref(&self) -> &T {
        &self.io
    }

    fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    fn into_inner(self) -> T {
        // Dropping the `AsyncFd` deregisters and closes the duplicate.
        self.io
    }

    fn poll_io<R>(
        &mut self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut(&mut T) -> Result<R>,
    ) -> Poll<Result<R>> {
        loop {
            let ready = match dir {
                Direction::Read => self.fd.poll_read_ready(cx),
                Direction::Write => self.fd.poll_write_ready(cx),
            };
            let mut guard = ready!(ready).map_err(io_error)?;
            match op(&mut self.io) {
                Err(Error::WouldBlock) => guard.clear_ready(),
                r => return Poll::Ready(r),
            }
        }
    }
}
