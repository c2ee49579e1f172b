//! TCP and UDP, for peers on another machine, through the same interface as the local
//! transports.
//!
//! - TCP ([`tcp_connect`], [`TcpListener`]): a [`StreamSocket`], frames back to back, with
//!   `TCP_NODELAY` always on (a frame goes out as soon as it is written) and an optional
//!   keepalive ([`set_keepalive`]) to notice a peer that vanished without closing.
//! - UDP ([`udp_bind`]): a [`PacketSocket`], one frame per datagram, at most
//!   [`UDP_MAX_V4`] or [`UDP_MAX_V6`] bytes (the largest UDP payload), checked before
//!   sending. UDP may lose, duplicate or reorder datagrams; every frame that arrives is
//!   still checked whole.

use core::net::SocketAddr;
use core::time::Duration;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::error::{Error, Result};
use crate::socket::{PacketKind, PacketSocket, StreamSocket};

/// The largest UDP payload over IPv4: 65535 minus the IPv4 and UDP headers.
pub const UDP_MAX_V4: usize = 65_507;
/// The largest UDP payload over IPv6 (without jumbograms): 65535 minus the UDP header.
pub const UDP_MAX_V6: usize = 65_527;

fn family(addr: &SocketAddr) -> AddressFamily {
    if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 }
}

fn socket(addr: &SocketAddr, kind: SocketType) -> Result<OwnedFd> {
    Ok(rustix::net::socket_with(family(addr), kind, SocketFlags::CLOEXEC, None)?)
}

/// Connects to `addr` over TCP, giving up after `timeout` ([`Error::TimedOut`]); nobody
/// listening is [`Error::Refused`]. `TCP_NODELAY` is set.
pub fn tcp_connect<const N: usize>(addr: SocketAddr, timeout: Option<Duration>) -> Result<StreamSocket<N>> {
    tcp_connect_with(addr, timeout, None)
}

/// [`tcp_connect`] that also gives up when `cancel` is cancelled ([`Error::Cancelled`]):
/// the connect is nonblocking and its wait a `poll` on the socket and the canceler.
pub fn tcp_connect_cancellable<const N: usize>(
    addr: SocketAddr,
    timeout: Option<Duration>,
    cancel: &crate::cancel::Canceler,
) -> Result<StreamSocket<N>> {
    tcp_connect_with(addr, timeout, Some(cancel))
}

pub(crate) fn tcp_connect_with<const N: usize>(
    addr: SocketAddr,
    timeout: Option<Duration>,
    cancel: Option<&crate::cancel::Canceler>,
) -> Result<StreamSocket<N>> {
    crate::cancel::check(cancel)?;
    let fd = socket(&addr, SocketType::STREAM)?;
    match timeout.or(cancel.map(|_| Duration::MAX)) {
        None => match rustix::net::connect(&fd, &addr) {
            Ok(()) => {}
            // Interrupted: the connection goes on in the background; wait for it.
            Err(Errno::INTR) => wait_connected(&fd, None, None)?,
            Err(e) => return Err(e.into()),
        },
        Some(t) => {
            rustix::io::ioctl_fionbio(&fd, true)?;
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => {}
                Err(Errno::INPROGRESS | Errno::INTR) => wait_connected(&fd, Some(t), cancel)?,
                Err(e) => return Err(e.into()),
            }
            rustix::io::ioctl_fionbio(&fd, false)?;
        }
    }
    rustix::net::sockopt::set_tcp_nodelay(&fd, true)?;
    Ok(StreamSocket::from_fd(fd))
}

/// Waits until a nonblocking connect finishes (or `cancel` is cancelled), then reports its
/// outcome (`SO_ERROR`).
fn wait_connected(fd: &OwnedFd, timeout: Option<Duration>, cancel: Option<&crate::cancel::Canceler>) -> Result<()> {
    // A timeout too far out to add to the clock is no timeout.
    let deadline = timeout.and_then(|t| crate::poll::now().checked_add(t));
    crate::poll::wait_fd_cancellable(fd, rustix::event::PollFlags::OUT, deadline, cancel)?;
    match rustix::net::sockopt::socket_error(fd)? {
        Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Turns TCP keepalive on (probes after `idle` without traffic) or off, so a peer that
/// vanished without closing (power loss, cable pulled) ends in [`Error::PeerGone`] or
/// `ETIMEDOUT` instead of silence.
///
/// `idle` must be 1 to 32767 seconds (the kernel's range); anything else is `EINVAL`,
/// with nothing changed.
pub fn set_keepalive(socket: impl AsFd, idle: Option<Duration>) -> Result<()> {
    let fd = socket.as_fd();
    if idle.is_some_and(|d| d.as_secs() < 1 || d.as_secs() > 32767) {
        return Err(Error::Os(Errno::INVAL));
    }
    rustix::net::sockopt::set_socket_keepalive(fd, idle.is_some())?;
    if let Some(idle) = idle {
        rustix::net::sockopt::set_tcp_keepidle(fd, idle)?;
        rustix::net::sockopt::set_tcp_keepintvl(fd, idle.min(Duration::from_secs(10)))?;
        rustix::net::sockopt::set_tcp_keepcnt(fd, 3)?;
    }
    Ok(())
}

/// A listening TCP socket.
///
/// `Send` and `Sync`: an owned socket; `accept` is safe from several threads at once.
#[derive(Debug)]
pub struct TcpListener {
    fd: OwnedFd,
}

impl TcpListener {
    /// Binds to `addr` (`SO_REUSEADDR`, so a restarted daemon can bind again while old
    /// connections linger in `TIME_WAIT`) and listens. Port 0 picks a free port
    /// ([`TcpListener::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
        let fd = socket(&addr, SocketType::STREAM)?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
        rustix::net::bind(&fd, &addr)?;
        rustix::net::listen(&fd, 128)?;
        Ok(TcpListener { fd })
    }

    /// A listening TCP socket someone else made (socket activation), checked first: anything
    /// else is [`Error::WrongFdType`] (and the descriptor closed).
    pub fn from_fd(fd: OwnedFd) -> Result<TcpListener> {
        crate::systemd::expect_kind(&fd, &[crate::systemd::FdKind::TcpListener])?;
        Ok(TcpListener { fd })
    }

    /// The address bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        socket_local_addr(&self.fd)
    }

    /// Gives the listening socket back.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Accepts a connection (`accept4(SOCK_CLOEXEC)`), with `TCP_NODELAY` set; returns it
    /// and the peer's address.
    pub fn accept<const N: usize>(&self) -> Result<(StreamSocket<N>, SocketAddr)> {
        self.accept_timeout(None, None)
    }

    /// [`TcpListener::accept`] waiting at most `timeout` ([`Error::TimedOut`]) and ending
    /// with [`Error::Cancelled`] when `cancel` is cancelled: `poll` on the listener and the
    /// canceler, then `accept4`.
    pub fn accept_timeout<const N: usize>(
        &self,
        timeout: Option<Duration>,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<(StreamSocket<N>, SocketAddr)> {
        let polled = timeout.is_some() || cancel.is_some();
        let end = crate::transport::end_of(timeout);
        loop {
            if polled {
                crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, end, cancel)?;
            }
            match rustix::net::acceptfrom_with(&self.fd, SocketFlags::CLOEXEC) {
                Ok((fd, addr)) => {
                    rustix::net::sockopt::set_tcp_nodelay(&fd, true)?;
                    let addr = addr.and_then(|a| SocketAddr::try_from(a).ok()).ok_or(Error::Os(Errno::AFNOSUPPORT))?;
                    return Ok((StreamSocket::from_fd(fd), addr));
                }
                Err(e) if accept_should_retry(e) => {}
                // A nonblocking listener whose connection another accept took: wait again.
                Err(Errno::AGAIN) if polled => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Whether `accept` failed only for this one connection or call, so the listener should
/// just accept again: `EINTR`, and the errors Linux passes on from a connection that
/// failed before it was accepted (`accept(2)`: treat them like `EAGAIN`).
pub(crate) fn accept_should_retry(e: Errno) -> bool {
    matches!(
        e,
        Errno::INTR
            | Errno::CONNABORTED
            | Errno::PROTO
            | Errno::NETDOWN
            | Errno::NOPROTOOPT
            | Errno::HOSTDOWN
            | Errno::NONET
            | Errno::HOSTUNREACH
            | Errno::OPNOTSUPP
            | Errno::NETUNREACH
    )
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A UDP socket bound to `addr` (port 0 picks one): frames of at most the largest UDP
/// payload for its family. Send with [`PacketSocket::send_frame_to`], or
/// [`PacketSocket::connect`] then `send_frame`.
pub fn udp_bind(addr: SocketAddr) -> Result<PacketSocket> {
    let fd = socket(&addr, SocketType::DGRAM)?;
    rustix::net::bind(&fd, &addr)?;
    let max = if addr.is_ipv4() { UDP_MAX_V4 } else { UDP_MAX_V6 };
    Ok(PacketSocket::from_fd(fd, PacketKind::Datagram, max))
}

/// A UDP socket someone else made (socket activation), checked first: anything else is
/// [`Error::WrongFdType`] (and the descriptor closed). Frames up to the largest UDP payload
/// of its family.
pub fn udp_from_fd(fd: OwnedFd) -> Result<PacketSocket> {
    crate::systemd::expect_kind(&fd, &[crate::systemd::FdKind::Udp])?;
    let max = if rustix::net::sockopt::socket_domain(&fd)? == AddressFamily::INET6 { UDP_MAX_V6 } else { UDP_MAX_V4 };
    Ok(PacketSocket::from_fd(fd, PacketKind::Datagram, max))
}

/// The local address of a UDP or TCP socket.
pub fn socket_local_addr(socket: impl AsFd) -> Result<SocketAddr> {
    SocketAddr::try_from(rustix::net::getsockname(socket)?).map_err(|_| Error::Os(Errno::AFNOSUPPORT))
}

/// [`TcpListener::from_fd`]: a listening TCP socket, else [`Error::WrongFdType`].
impl TryFrom<OwnedFd> for TcpListener {
    type Error = Error;
    fn try_from(fd: OwnedFd) -> Result<TcpListener> {
        TcpListener::from_fd(fd)
    }
}

/// [`TcpListener::into_fd`].
impl From<TcpListener> for OwnedFd {
    fn from(l: TcpListener) -> OwnedFd {
        l.into_fd()
    }
}
