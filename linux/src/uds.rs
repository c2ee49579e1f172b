//! Unix domain sockets: stream, datagram and seqpacket, on filesystem paths or in the
//! abstract namespace.
//!
//! - Stream sockets ([`connect_stream`], [`UdsListener::accept_stream`], [`stream_pair`])
//!   are [`StreamSocket`]s: frames back to back, reassembled.
//! - Seqpacket sockets ([`connect_seqpacket`], [`UdsListener::accept_seqpacket`],
//!   [`seqpacket_pair`]) and datagram sockets ([`bind_datagram`], [`unbound_datagram`],
//!   [`datagram_pair`]) are [`PacketSocket`]s: one frame per message, with file descriptors
//!   and credentials alongside.
//!
//! **Names**: [`UnixName::Path`] is a socket file (at most 107 bytes); [`UnixName::Abstract`]
//! lives in the abstract namespace (no file, gone with the last socket; scoped to the
//! network namespace, and open to any user who knows the name, so check the peer's uid).
//!
//! **Stale socket files**: a socket file left by a process that died makes `bind` fail with
//! `EADDRINUSE`. Ember's bind then tries to connect to it: only if that is refused (nobody
//! listens) is the file removed and the bind retried. A path that is not a socket is never
//! removed, and a socket someone still listens on is never replaced ([`Error::AddrInUse`]).
//! The owner removes its socket file on drop, if the file is still the one it bound.
//!
//! **Peers**: every accepted connection's credentials come from `SO_PEERCRED` (as they were
//! at `connect`), and [`UdsListener::allow_uids`] closes connections from other uids.

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use core::time::Duration;

use crate::cancel::Canceler;
use crate::error::{Error, Result};
use crate::socket::{Creds, DEFAULT_PACKET_MAX, PacketKind, PacketSocket, StreamSocket, peer_credentials};

/// The longest socket path: `sun_path` is 108 bytes with the terminating NUL.
pub const MAX_PATH: usize = 107;

/// Most uids in a listener's allow-list.
pub const MAX_ALLOWED_UIDS: usize = 8;

/// Where a Unix socket lives.
///
/// `Send` and `Sync`: a borrowed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixName<'a> {
    /// A socket file at this path.
    Path(&'a str),
    /// A name in the abstract namespace (no file; the leading NUL is added here).
    Abstract(&'a [u8]),
}

impl UnixName<'_> {
    fn addr(&self) -> Result<SocketAddrUnix> {
        match self {
            UnixName::Path(p) if p.is_empty() || p.len() > MAX_PATH || p.contains('\0') => Err(Error::InvalidName),
            UnixName::Path(p) => Ok(SocketAddrUnix::new(*p)?),
            // An empty abstract name would ask the kernel to pick one (autobind).
            UnixName::Abstract(n) if n.is_empty() || n.len() > MAX_PATH => Err(Error::InvalidName),
            UnixName::Abstract(n) => Ok(SocketAddrUnix::new_abstract_name(n)?),
        }
    }
}

/// A socket file this process bound: removed on drop if it is still the same file (same
/// device and inode), so a newer owner's socket is never removed.
pub(crate) struct BoundPath {
    path: [u8; MAX_PATH],
    len: usize,
    dev: u64,
    ino: u64,
    /// The process that bound it: only it removes the file (a forked child that drops an
    /// inherited listener closes its copy of the socket and leaves the parent's file).
    owner: u32,
}

impl core::fmt::Debug for BoundPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let path = core::str::from_utf8(&self.path[..self.len]).unwrap_or("?");
        f.debug_struct("BoundPath").field("path", &path).field("dev", &self.dev).field("ino", &self.ino).finish()
    }
}

impl BoundPath {
    fn new(path: &str) -> Result<BoundPath> {
        let st = rustix::fs::lstat(path)?;
        let mut buf = [0u8; MAX_PATH];
        buf[..path.len()].copy_from_slice(path.as_bytes());
        let owner = rustix::process::getpid().as_raw_nonzero().get() as u32;
        Ok(BoundPath { path: buf, len: path.len(), dev: st.st_dev, ino: st.st_ino, owner })
    }
}

impl Drop for BoundPath {
    fn drop(&mut self) {
        let Ok(path) = core::str::from_utf8(&self.path[..self.len]) else { return };
        if rustix::process::getpid().as_raw_nonzero().get() as u32 != self.owner {
            return;
        }
        if let Ok(st) = rustix::fs::lstat(path)
            && st.st_dev == self.dev
            && st.st_ino == self.ino
        {
            let _ = rustix::fs::unlink(path);
        }
    }
}

fn socket(kind: SocketType) -> Result<OwnedFd> {
    Ok(rustix::net::socket_with(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)?)
}

/// `bind(2)` with the stale-file rule of the module docs; returns the bound path to remove
/// on drop, if any.
fn bind(fd: &OwnedFd, name: UnixName<'_>, kind: SocketType) -> Result<Option<BoundPath>> {
    let addr = name.addr()?;
    let path = match name {
        UnixName::Abstract(_) => {
            rustix::net::bind(fd, &addr)?;
            return Ok(None);
        }
        UnixName::Path(p) => p,
    };
    match rustix::net::bind(fd, &addr) {
        Ok(()) => {}
        Err(Errno::ADDRINUSE) => {
            replace_if_stale(path, &addr, kind)?;
            rustix::net::bind(fd, &addr)?;
        }
        Err(e) => return Err(e.into()),
    }
    let bound = BoundPath::new(path).inspect_err(|_| {
        let _ = rustix::fs::unlink(path);
    })?;
    Ok(Some(bound))
}

/// Removes the socket file at `path` if nobody answers there; otherwise (or if it is not a
/// socket) [`Error::AddrInUse`].
fn replace_if_stale(path: &str, addr: &SocketAddrUnix, kind: SocketType) -> Result<()> {
    let st = match rustix::fs::lstat(path) {
        Ok(st) => st,
        // Gone since the bind failed: the caller's bind can go ahead.
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        return Err(Error::AddrInUse);
    }
    // A nonblocking probe: it never waits on a live listener whose backlog is full.
    let probe =
        rustix::net::socket_with(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK, None)?;
    loop {
        match rustix::net::connect(&probe, addr) {
            Err(Errno::INTR) => continue,
            // Nobody listens: a stale file (or a socket bound but not yet listening, which
            // looks the same from here). Remove it only if it is still the file we probed.
            Err(Errno::CONNREFUSED) => {
                let now = rustix::fs::lstat(path)?;
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(Error::AddrInUse);
                }
                info!("uds: removing a stale socket file");
                rustix::fs::unlink(path)?;
                return Ok(());
            }
            // Connected, connecting, a full backlog (EAGAIN), or a live socket of another
            // type (EPROTOTYPE): someone is there; leave it.
            Ok(()) | Err(Errno::AGAIN | Errno::INPROGRESS | Errno::PROTOTYPE) => return Err(Error::AddrInUse),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A nonblocking `connect`, retried while the listener's backlog is full (`EAGAIN`: a Unix
/// socket has no connect in progress to poll for) after sleeps of 1 ms doubling to 16 ms
/// that watch `cancel`, until `timeout`. The socket is left blocking, as [`connect`] leaves
/// it.
fn connect_with(
    name: UnixName<'_>,
    kind: SocketType,
    timeout: Option<Duration>,
    cancel: Option<&Canceler>,
) -> Result<OwnedFd> {
    let addr = name.addr()?;
    crate::cancel::check(cancel)?;
    let fd = socket(kind)?;
    rustix::io::ioctl_fionbio(&fd, true)?;
    let mut backoff = crate::cancel::Backoff::new(timeout);
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(Errno::INTR) => {}
            Err(Errno::NOENT) => return Err(Error::Refused),
            Err(Errno::AGAIN) => backoff.sleep(cancel)?,
            Err(e) => return Err(e.into()),
        }
    }
    rustix::io::ioctl_fionbio(&fd, false)?;
    Ok(fd)
}

/// [`connect_stream`] that gives up after `timeout` ([`Error::TimedOut`]) or when `cancel`
/// is cancelled ([`Error::Cancelled`]): a listener that is alive but not accepting (its
/// backlog full) cannot hang it.
pub fn connect_stream_timeout<const N: usize>(
    name: UnixName<'_>,
    timeout: Option<Duration>,
    cancel: Option<&Canceler>,
) -> Result<StreamSocket<N>> {
    Ok(StreamSocket::from_fd(connect_with(name, SocketType::STREAM, timeout, cancel)?))
}

/// [`connect_seqpacket`] bounded as [`connect_stream_timeout`].
pub fn connect_seqpacket_timeout(
    name: UnixName<'_>,
    timeout: Option<Duration>,
    cancel: Option<&Canceler>,
) -> Result<PacketSocket> {
    let fd = connect_with(name, SocketType::SEQPACKET, timeout, cancel)?;
    Ok(PacketSocket::from_fd(fd, PacketKind::Seqpacket, DEFAULT_PACKET_MAX))
}

fn connect(name: UnixName<'_>, kind: SocketType) -> Result<OwnedFd> {
    let addr = name.addr()?;
    let fd = socket(kind)?;
    loop {
        return match rustix::net::connect(&fd, &addr) {
            Ok(()) => Ok(fd),
            Err(Errno::INTR) => continue,
            // No socket file there: nobody listens.
            Err(Errno::NOENT) => Err(Error::Refused),
            Err(e) => Err(e.into()),
        };
    }
}

/// Connects a stream socket to `name` (`socket(AF_UNIX, SOCK_STREAM)` + `connect`).
/// Nobody listening is [`Error::Refused`]. A listener that is alive but not accepting
/// blocks this call once its backlog (128) is full; [`connect_stream_timeout`] bounds it.
pub fn connect_stream<const N: usize>(name: UnixName<'_>) -> Result<StreamSocket<N>> {
    Ok(StreamSocket::from_fd(connect(name, SocketType::STREAM)?))
}

/// Connects a seqpacket socket to `name`.
pub fn connect_seqpacket(name: UnixName<'_>) -> Result<PacketSocket> {
    Ok(PacketSocket::from_fd(connect(name, SocketType::SEQPACKET)?, PacketKind::Seqpacket, DEFAULT_PACKET_MAX))
}

/// A datagram socket bound to `name` (stale-file rule as for listeners); it receives from
/// anyone who sends there, and the socket file is removed on drop.
pub fn bind_datagram(name: UnixName<'_>) -> Result<PacketSocket> {
    let fd = socket(SocketType::DGRAM)?;
    let path = bind(&fd, name, SocketType::DGRAM)?;
    let sock = PacketSocket::from_fd(fd, PacketKind::Datagram, DEFAULT_PACKET_MAX);
    Ok(match path {
        Some(p) => sock.with_path(p),
        None => sock,
    })
}

/// A Unix datagram socket someone else made (socket activation, a parent process), checked
/// first: anything but an `AF_UNIX`/`SOCK_DGRAM` socket is [`Error::WrongFdType`] (and the
/// descriptor closed). Frames up to [`DEFAULT_PACKET_MAX`]; no socket file is removed on
/// drop (whoever bound it owns it).
pub fn datagram_from_fd(fd: OwnedFd) -> Result<PacketSocket> {
    crate::systemd::expect_kind(&fd, &[crate::systemd::FdKind::UnixDatagram])?;
    Ok(PacketSocket::from_fd(fd, PacketKind::Datagram, DEFAULT_PACKET_MAX))
}

/// An unbound datagram socket, for sending ([`PacketSocket::send_frame_to`], or
/// [`PacketSocket::connect`] then `send_frame`).
pub fn unbound_datagram() -> Result<PacketSocket> {
    Ok(PacketSocket::from_fd(socket(SocketType::DGRAM)?, PacketKind::Datagram, DEFAULT_PACKET_MAX))
}

/// A connected pair of stream sockets (`socketpair(2)`), e.g. to hand one to a child.
pub fn stream_pair<const N: usize>() -> Result<(StreamSocket<N>, StreamSocket<N>)> {
    let (a, b) = pair(SocketType::STREAM)?;
    Ok((StreamSocket::from_fd(a), StreamSocket::from_fd(b)))
}

/// A connected pair of seqpacket sockets.
pub fn seqpacket_pair() -> Result<(PacketSocket, PacketSocket)> {
    let (a, b) = pair(SocketType::SEQPACKET)?;
    Ok((
        PacketSocket::from_fd(a, PacketKind::Seqpacket, DEFAULT_PACKET_MAX),
        PacketSocket::from_fd(b, PacketKind::Seqpacket, DEFAULT_PACKET_MAX),
    ))
}

/// A connected pair of datagram sockets.
pub fn datagram_pair() -> Result<(PacketSocket, PacketSocket)> {
    let (a, b) = pair(SocketType::DGRAM)?;
    Ok((
        PacketSocket::from_fd(a, PacketKind::Datagram, DEFAULT_PACKET_MAX),
        PacketSocket::from_fd(b, PacketKind::Datagram, DEFAULT_PACKET_MAX),
    ))
}

fn pair(kind: SocketType) -> Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None)?)
}

/// A listening Unix stream or seqpacket socket.
///
/// `Send` and `Sync`: an owned socket; `accept_*` is safe from several threads at once.
pub struct UdsListener {
    // Declared first, so dropped first: the socket file is removed while we still listen,
    // so a rival's stale-file probe cannot see it refused and take the path in between.
    _path: Option<BoundPath>,
    fd: OwnedFd,
    kind: SocketType,
    allowed: [u32; MAX_ALLOWED_UIDS],
    n_allowed: usize,
}

impl core::fmt::Debug for UdsListener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UdsListener")
            .field("path", &self._path)
            .field("fd", &self.fd)
            .field("kind", &self.kind)
            .field("allowed", &&self.allowed[..self.n_allowed])
            .finish()
    }
}

impl UdsListener {
    /// Binds and listens for stream connections at `name` (`bind` + `listen(128)`).
    pub fn bind_stream(name: UnixName<'_>) -> Result<UdsListener> {
        UdsListener::bind(name, SocketType::STREAM)
    }

    /// Binds and listens for seqpacket connections at `name`.
    pub fn bind_seqpacket(name: UnixName<'_>) -> Result<UdsListener> {
        UdsListener::bind(name, SocketType::SEQPACKET)
    }

    /// A listening Unix stream or seqpacket socket someone else made (socket activation),
    /// checked first (`SO_DOMAIN`, `SO_TYPE`, `SO_ACCEPTCONN`): anything else is
    /// [`Error::WrongFdType`] (and the descriptor closed). No socket file is removed on drop
    /// (whoever bound it owns it).
    pub fn from_fd(fd: OwnedFd) -> Result<UdsListener> {
        use crate::systemd::FdKind;
        let kind = match crate::systemd::expect_kind(&fd, &[FdKind::UnixStreamListener, FdKind::UnixSeqpacketListener])?
        {
            FdKind::UnixSeqpacketListener => SocketType::SEQPACKET,
            _ => SocketType::STREAM,
        };
        Ok(UdsListener { _path: None, fd, kind, allowed: [0; MAX_ALLOWED_UIDS], n_allowed: 0 })
    }

    /// Whether this listener accepts seqpacket connections (else stream ones).
    pub fn is_seqpacket(&self) -> bool {
        self.kind == SocketType::SEQPACKET
    }

    /// Gives the listening socket back. The socket file this listener bound stays (whoever
    /// holds the descriptor now listens at that path), and the uid allow list is dropped.
    pub fn into_fd(self) -> OwnedFd {
        let UdsListener { _path: path, fd, .. } = self;
        // Only its drop removes the file; it owns no other resource.
        core::mem::forget(path);
        fd
    }

    fn bind(name: UnixName<'_>, kind: SocketType) -> Result<UdsListener> {
        let fd = socket(kind)?;
        let path = bind(&fd, name, kind)?;
        rustix::net::listen(&fd, 128)?;
        Ok(UdsListener { _path: path, fd, kind, allowed: [0; MAX_ALLOWED_UIDS], n_allowed: 0 })
    }

    /// Accepts only peers whose uid is in `uids` from now on (an empty list accepts
    /// anyone). At most [`MAX_ALLOWED_UIDS`].
    pub fn allow_uids(&mut self, uids: &[u32]) -> Result<()> {
        if uids.len() > MAX_ALLOWED_UIDS {
            return Err(Error::TooLarge { len: uids.len(), max: MAX_ALLOWED_UIDS });
        }
        self.allowed[..uids.len()].copy_from_slice(uids);
        self.n_allowed = uids.len();
        Ok(())
    }

    /// `accept4(SOCK_CLOEXEC)` and the peer's credentials; a peer outside the allow-list
    /// is closed and reported as [`Error::PeerNotAllowed`].
    fn accept_fd(&self, kind: SocketType) -> Result<(OwnedFd, Creds)> {
        self.accept_fd_with(kind, None, None)
    }

    /// `accept4`, after a `poll` on the listener (and the canceler) until `timeout` when
    /// either is given.
    fn accept_fd_with(
        &self,
        kind: SocketType,
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<(OwnedFd, Creds)> {
        if self.kind != kind {
            return Err(Error::Os(Errno::PROTOTYPE));
        }
        let polled = timeout.is_some() || cancel.is_some();
        let end = crate::transport::end_of(timeout);
        let fd = loop {
            if polled {
                crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, end, cancel)?;
            }
            match rustix::net::accept_with(&self.fd, SocketFlags::CLOEXEC) {
                Ok(fd) => break fd,
                Err(e) if crate::net::accept_should_retry(e) => {}
                // A nonblocking listener whose connection another accept took: wait again.
                Err(Errno::AGAIN) if polled => {}
                Err(e) => return Err(e.into()),
            }
        };
        let creds = peer_credentials(&fd)?;
        if self.n_allowed > 0 && !self.allowed[..self.n_allowed].contains(&creds.uid) {
            warn!("uds: refused a peer with uid {} (pid {})", creds.uid, creds.pid);
            return Err(Error::PeerNotAllowed { uid: creds.uid, pid: creds.pid });
        }
        Ok((fd, creds))
    }

    /// Accepts a stream connection.
    pub fn accept_stream<const N: usize>(&self) -> Result<(StreamSocket<N>, Creds)> {
        let (fd, creds) = self.accept_fd(SocketType::STREAM)?;
        Ok((StreamSocket::from_fd(fd), creds))
    }

    /// Accepts a seqpacket connection.
    pub fn accept_seqpacket(&self) -> Result<(PacketSocket, Creds)> {
        let (fd, creds) = self.accept_fd(SocketType::SEQPACKET)?;
        Ok((PacketSocket::from_fd(fd, PacketKind::Seqpacket, DEFAULT_PACKET_MAX), creds))
    }

    /// [`UdsListener::accept_stream`] waiting at most `timeout` ([`Error::TimedOut`]) and
    /// ending with [`Error::Cancelled`] when `cancel` is cancelled: `poll` on the listener
    /// and the canceler, then `accept4`.
    pub fn accept_stream_timeout<const N: usize>(
        &self,
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<(StreamSocket<N>, Creds)> {
        let (fd, creds) = self.accept_fd_with(SocketType::STREAM, timeout, cancel)?;
        Ok((StreamSocket::from_fd(fd), creds))
    }

    /// [`UdsListener::accept_seqpacket`] bounded as [`UdsListener::accept_stream_timeout`].
    pub fn accept_seqpacket_timeout(
        &self,
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<(PacketSocket, Creds)> {
        let (fd, creds) = self.accept_fd_with(SocketType::SEQPACKET, timeout, cancel)?;
        Ok((PacketSocket::from_fd(fd, PacketKind::Seqpacket, DEFAULT_PACKET_MAX), creds))
    }
}

impl AsFd for UdsListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// [`UdsListener::from_fd`]: a listening Unix stream or seqpacket socket, else
/// [`Error::WrongFdType`].
impl TryFrom<OwnedFd> for UdsListener {
    type Error = Error;
    fn try_from(fd: OwnedFd) -> Result<UdsListener> {
        UdsListener::from_fd(fd)
    }
}

/// [`UdsListener::into_fd`].
impl From<UdsListener> for OwnedFd {
    fn from(l: UdsListener) -> OwnedFd {
        l.into_fd()
    }
}
