//! The receiving side of a shared-memory SPSC ring on an async runtime, woken through the
//! ring's eventfd [`Notifier`].
//!
//! ```text
//!   try_recv ── a record ──────────────────────────────> Ok(len)
//!      │ Empty
//!   prepare_poll ── false (a record arrived meanwhile) ─> try_recv again
//!      │ true: the sender now signals the eventfd
//!   await the eventfd readable, drain it, finish_poll ──> try_recv again
//! ```
//!
//! A record is consumed only by the `try_recv` that returns it, so a dropped `recv`
//! future took nothing; an announcement it left behind only costs the sender one extra
//! eventfd write. The sender must hold the same eventfd ([`SpscSender::set_notifier`]).
//!
//! A sender that closes the ring (or is dropped, which closes it) signals the eventfd:
//! the receiver drains what is left, then gets
//! [`ShmError::Closed`](ember_linux::core::shm::ShmError::Closed). A sender process that
//! dies without closing (killed) signals nothing: put a timeout around `recv` where that
//! matters and ask [`SpscReceiver::writer_alive`] when it fires.
//!
//! [`SpscSender::set_notifier`]: ember_linux::shm::SpscSender::set_notifier

use core::fmt;
use core::future::poll_fn;
use core::task::{Context, Poll};

use ember_linux::core::FrameRepr;
use ember_linux::core::shm::ShmError;
use ember_linux::shm::{Notifier, SpscReceiver};
use ember_linux::{Error, Result};
use serde::Deserialize;

use crate::{Async, Direction, Driver};

/// An [`SpscReceiver`] on an async runtime, woken by its eventfd [`Notifier`]. Use it as
/// [`crate::tokio::AsyncSpscReceiver`] or [`crate::async_io::AsyncSpscReceiver`].
///
/// `Send` and `Sync`: the receiver and the notifier are.
pub struct AsyncSpscReceiver<D: Driver<Notifier>> {
    rx: SpscReceiver,
    notifier: Async<Notifier, D>,
}

impl<D: Driver<Notifier>> fmt::Debug for AsyncSpscReceiver<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSpscReceiver").field("rx", &self.rx).field("notifier", self.notifier.get_ref()).finish()
    }
}

impl<D: Driver<Notifier>> AsyncSpscReceiver<D> {
    /// Puts `rx` on the runtime, woken through `notifier`, an eventfd the sender also holds
    /// ([`SpscSender::set_notifier`](ember_linux::shm::SpscSender::set_notifier)).
    pub fn new(rx: SpscReceiver, notifier: Notifier) -> Result<Self> {
        Ok(AsyncSpscReceiver { rx, notifier: Async::new(notifier)? })
    }

    /// The receiver.
    pub fn get_ref(&self) -> &SpscReceiver {
        &self.rx
    }

    /// The receiver, mutably (its nonblocking calls are fine; a blocking `recv` would block
    /// the runtime's thread).
    pub fn get_mut(&mut self) -> &mut SpscReceiver {
        &mut self.rx
    }

    /// Gives the receiver and the notifier back.
    pub fn into_inner(self) -> (SpscReceiver, Notifier) {
        (self.rx, self.notifier.into_inner())
    }

    /// Polls receiving the next record into `out`: `Ready(Ok(len))` consumed it, `Pending`
    /// consumed nothing.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<Result<usize>> {
        loop {
            match self.rx.try_recv(out) {
                Err(Error::Shm(ShmError::Empty)) => {}
                r => return Poll::Ready(r),
            }
            if !self.rx.prepare_poll() {
                continue;
            }
            // An eventfd read of 0 is "not signalled": wait for the reactor.
            let woke = self.notifier.dm().poll_io(cx, Direction::Read, |n| match n.drain()? {
                0 => Err(Error::WouldBlock),
                _ => Ok(()),
            });
            match woke {
                Poll::Ready(Ok(())) => self.rx.finish_poll(),
                Poll::Ready(Err(e)) => {
                    self.rx.finish_poll();
                    return Poll::Ready(Err(e));
                }
                // Still announced: the sender signals the eventfd on its next record.
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Receives the next record into `out` (at least [`SpscReceiver::max_record`] bytes):
    /// its length. [`ShmError::Closed`] once the sender closed the ring and it is drained.
    /// Cancellation-safe: a dropped future consumed nothing.
    pub async fn recv(&mut self, out: &mut [u8]) -> Result<usize> {
        poll_fn(|cx| self.poll_recv(cx, out)).await
    }

    /// Receives a record holding an Ember frame and decodes its payload.
    pub async fn recv_msg<'b, M: Deserialize<'b>>(&mut self, out: &'b mut [u8]) -> Result<(FrameRepr, M)> {
        let n = self.recv(out).await?;
        Ok(ember_linux::core::message::decode(&out[..n])?)
    }
}
