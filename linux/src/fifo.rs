//! FIFOs (named pipes): a byte stream between processes that share a path.
//!
//! - [`create`] makes the FIFO with mode `0600` (`mkfifoat`). If something already exists at
//!   the path it is accepted only when it is a FIFO owned by this user: a symlink is never
//!   followed ([`Error::NotAFifo`]), a regular file or directory is [`Error::NotAFifo`], a
//!   FIFO of another user is [`Error::NotOwner`].
//! - [`open_reader`] never blocks (it opens with `O_NONBLOCK`, then switches blocking reads
//!   back on unless asked not to). A read with no writer left is [`Error::PeerGone`].
//! - [`open_writer`] never blocks either: with no reader, `open(O_WRONLY | O_NONBLOCK)`
//!   fails with `ENXIO`, reported as [`Error::NoReader`].
//!
//! Both opens use `O_NOFOLLOW | O_CLOEXEC` and check the opened file with `fstat` (a FIFO,
//! owned by this user), so a FIFO swapped for something else between the checks is caught.
//! Frames travel as on a pipe: see [`crate::pipe`] for the `PIPE_BUF` rule with several
//! writers and for `SIGPIPE`.

use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::pipe::{StreamReader, Writer};

fn check_fifo(st: &rustix::fs::Stat) -> Result<()> {
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
        return Err(Error::NotAFifo);
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(Error::NotOwner);
    }
    Ok(())
}

/// Creates a FIFO at `path` with mode `0600` (`mkfifoat(AT_FDCWD, path, 0600)`), or accepts
/// an existing FIFO owned by this user (checked with `lstat`, which does not follow
/// symlinks).
pub fn create(path: &str) -> Result<()> {
    match rustix::fs::mkfifoat(rustix::fs::CWD, path, Mode::RUSR | Mode::WUSR) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => check_fifo(&rustix::fs::lstat(path)?),
        Err(e) => Err(e.into()),
    }
}

fn open(path: &str, flags: OFlags) -> Result<OwnedFd> {
    let fd = match rustix::fs::open(path, flags | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
    {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(Error::NotAFifo),
        Err(Errno::NXIO) => return Err(Error::NoReader),
        Err(e) => return Err(e.into()),
    };
    check_fifo(&rustix::fs::fstat(&fd)?)?;
    Ok(fd)
}

/// Opens the FIFO at `path` for reading (`open(O_RDONLY | O_NONBLOCK | O_NOFOLLOW)`, never
/// blocking even with no writer), reads blocking unless `nonblocking`.
pub fn open_reader<const N: usize>(path: &str, nonblocking: bool) -> Result<StreamReader<N>> {
    let fd = open(path, OFlags::RDONLY)?;
    if !nonblocking {
        rustix::io::ioctl_fionbio(&fd, false)?;
    }
    Ok(StreamReader::from_fd(fd))
}

/// Opens the FIFO at `path` for writing (`open(O_WRONLY | O_NONBLOCK | O_NOFOLLOW)`):
/// [`Error::NoReader`] when no process has it open for reading. Writes block unless
/// `nonblocking`.
pub fn open_writer(path: &str, nonblocking: bool) -> Result<Writer> {
    let fd = open(path, OFlags::WRONLY)?;
    if !nonblocking {
        rustix::io::ioctl_fionbio(&fd, false)?;
    }
    Ok(Writer::stream(fd))
}

/// A FIFO opened by someone else (systemd's `ListenFIFO=`, which opens it read-write), as
/// a reader: anything but a FIFO (or pipe) is [`Error::WrongFdType`] (and the descriptor
/// closed). Its owner is not checked (the service manager made it). Reads block unless the
/// descriptor is nonblocking.
pub fn reader_from_fd<const N: usize>(fd: OwnedFd) -> Result<StreamReader<N>> {
    crate::systemd::expect_kind(&fd, &[crate::systemd::FdKind::Fifo])?;
    Ok(StreamReader::from_fd(fd))
}

/// Removes the FIFO at `path` (`unlink`) after checking with `lstat` that it is a FIFO
/// owned by this user ([`Error::NotAFifo`] for anything else, a symlink included, which is
/// left alone; [`Error::NotOwner`] for another user's). The check and the unlink are two
/// calls: keep FIFOs in a directory only their owner can write.
pub fn remove(path: &str) -> Result<()> {
    check_fifo(&rustix::fs::lstat(path)?)?;
    Ok(rustix::fs::unlink(path)?)
}
