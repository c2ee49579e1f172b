//! FIFOs (named pipes): a byte stream between processes that share a path.
//!
//! - [`create`] makes the FIFO with mode `0600` (`mkfifoat`). If something already exists at
//!   the path it is accepted only when it is a FIFO owned by this user: a symlink is never
//!   followed ([`Error::NotAFifo`]), a regular file or directory is [`Error::NotAFifo`], a
//!   FIFO of another user is [`Error::NotOwner`].
//! - [`create_with`] and [`CreateOptions::replace_stale`]: after a crash, a FIFO nobody
//!   reads is replaced by a fresh one, one somebody reads is [`Error::InUse`].
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

use crate::error::{Error, ObjectKind, Result};
use crate::pipe::{StreamReader, Writer};
use crate::shm::CreateOptions;

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

/// [`create`] with options. With [`CreateOptions::replace_stale`], an existing FIFO (of this
/// user) is taken over only when nobody reads it, and [`Error::InUse`] otherwise: the rule
/// for a daemon that reads the FIFO it creates, so that a second instance does not share
/// its commands with the first.
///
/// A FIFO records no owner; what can be asked is whether a process has it open for
/// reading: `open(O_WRONLY | O_NONBLOCK)` fails with `ENXIO` when none has. With no reader
/// the FIFO is replaced by a fresh one (`mkfifo` under a temporary name in the same
/// directory, then `rename` over the old one), so a writer still blocked in `open` on the
/// old one does not connect to the new daemon. With a reader the probe's descriptor is
/// closed again at once, which a reader that had no writer sees as one more end of file.
/// Two creators probing at the same moment can both find no reader: the later `rename`
/// wins, and the other's FIFO loses its name; a daemon that must rule that out serialises
/// its start (systemd does).
pub fn create_with(path: &str, options: CreateOptions) -> Result<()> {
    if !options.replace_stale {
        return create(path);
    }
    match rustix::fs::mkfifoat(rustix::fs::CWD, path, Mode::RUSR | Mode::WUSR) {
        Ok(()) => return Ok(()),
        Err(Errno::EXIST) => check_fifo(&rustix::fs::lstat(path)?)?,
        Err(e) => return Err(e.into()),
    }
    match open(path, OFlags::WRONLY) {
        Ok(_probe) => return Err(Error::InUse { object: ObjectKind::Fifo, pid: 0 }),
        Err(Error::NoReader) => {}
        Err(e) => return Err(e),
    }
    // `<path>.ember-new-<pid>-<n>`, beside it (a rename stays in one file system).
    let mut tmp = heapless::String::<{ 4096 + 40 }>::new();
    {
        use core::fmt::Write;
        use core::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        write!(tmp, "{path}.ember-new-{pid}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
            .map_err(|_| Error::InvalidName)?;
    }
    rustix::fs::mkfifoat(rustix::fs::CWD, tmp.as_str(), Mode::RUSR | Mode::WUSR)?;
    if let Err(e) = rustix::fs::rename(tmp.as_str(), path) {
        let _ = rustix::fs::unlink(tmp.as_str());
        return Err(e.into());
    }
    Ok(())
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
