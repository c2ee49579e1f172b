//! An eventfd notifier, so a shared-memory channel can sit in a `poll`/`epoll` loop with
//! other file descriptors.

use rustix::event::{EventfdFlags, eventfd};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;

use crate::error::Result;

/// An eventfd (`EFD_CLOEXEC | EFD_NONBLOCK`) that the sender of a channel writes when the
/// receiver announced it waits ([`super::SpscReceiver::prepare_poll`]). The receiver polls
/// it for `POLLIN` along with its other fds, then drains it and receives.
///
/// Both processes need the same eventfd: pass it over a Unix socket (`SCM_RIGHTS`), let a
/// child inherit it, or fetch a child's with `pidfd_getfd`.
///
/// `Send` and `Sync`: an owned eventfd; the kernel serialises its operations.
#[derive(Debug)]
pub struct Notifier {
    fd: OwnedFd,
}

impl Notifier {
    /// A new eventfd (`eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`).
    pub fn new() -> Result<Notifier> {
        Ok(Notifier { fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)? })
    }

    /// Wraps an eventfd received from the peer.
    pub fn from_fd(fd: OwnedFd) -> Notifier {
        Notifier { fd }
    }

    /// Adds one to the counter (`write(2)` of 8 bytes), making the fd readable.
    pub fn notify(&self) -> Result<()> {
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            // The counter is at its maximum: the fd is readable anyway.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Resets the counter and returns it (0 when nothing was notified).
    pub fn drain(&self) -> Result<u64> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(_) => Ok(u64::from_ne_bytes(buf)),
            Err(Errno::AGAIN) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Notifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// [`Notifier::from_fd`].
impl From<OwnedFd> for Notifier {
    fn from(fd: OwnedFd) -> Notifier {
        Notifier::from_fd(fd)
    }
}

/// The eventfd.
impl From<Notifier> for OwnedFd {
    fn from(n: Notifier) -> OwnedFd {
        n.fd
    }
}
