//! The error type of `ember-linux`.

use core::fmt;

use ember_core::shm::ShmError;
use rustix::io::Errno;

/// Why an `ember-linux` operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    Os(Errno),
    /// A shared-memory protocol error (including [`ShmError::Timeout`] and
    /// [`ShmError::WriterGone`]).
    Shm(ShmError),
    /// A frame or payload codec error.
    Codec(ember_core::Error),
    /// An object name is not valid: shm and mq names are `/name`, 1 to 254 bytes after the
    /// slash, with no other slash and no NUL.
    InvalidName,
    /// A memfd handed over by a peer is not sealed against shrinking and growing, so the
    /// peer could truncate it and crash this process with `SIGBUS`.
    NotSealed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Os(e) => write!(f, "system call failed: {e}"),
            Error::Shm(e) => write!(f, "{e}"),
            Error::Codec(e) => write!(f, "{e}"),
            Error::InvalidName => f.write_str("invalid object name (want /name, no other slash, at most 255 bytes)"),
            Error::NotSealed => f.write_str("memfd is not sealed against resizing"),
        }
    }
}

impl core::error::Error for Error {}

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        Error::Os(e)
    }
}

impl From<ShmError> for Error {
    fn from(e: ShmError) -> Self {
        match e {
            ShmError::Codec(c) => Error::Codec(c),
            e => Error::Shm(e),
        }
    }
}

impl From<ember_core::Error> for Error {
    fn from(e: ember_core::Error) -> Self {
        Error::Codec(e)
    }
}

#[cfg(feature = "std")]
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Os(errno) => std::io::Error::from_raw_os_error(errno.raw_os_error()),
            Error::Shm(ShmError::Timeout) => std::io::Error::new(std::io::ErrorKind::TimedOut, e),
            Error::Shm(ShmError::Empty | ShmError::Full) => std::io::Error::new(std::io::ErrorKind::WouldBlock, e),
            other => std::io::Error::other(other),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
