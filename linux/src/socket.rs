//! The two socket endpoints every socket transport returns, with what they share:
//!
//! - [`StreamSocket`]: a connected byte stream (a Unix stream socket, a TCP connection);
//!   frames go back to back and a [`FrameAccumulator`](ember_core::FrameAccumulator)
//!   reassembles them, as for pipes.
//! - [`PacketSocket`]: one frame per message (a Unix datagram or seqpacket socket, a UDP
//!   socket); a receive returns exactly one frame, an oversized message is reported as
//!   [`Error::TooLarge`] and dropped.
//!
//! Every send passes `MSG_NOSIGNAL`, so a peer that went away is [`Error::PeerGone`] and
//! never a `SIGPIPE`. Unix sockets also carry file descriptors (`SCM_RIGHTS`, received
//! `O_CLOEXEC`) and credentials (`SCM_CREDENTIALS`) next to a frame:
//! [`PacketSocket::send_frame_with_fds`], [`PacketSocket::recv_frame_with_fds`].

use core::mem::MaybeUninit;

use ember_core::frame::MAX_FRAME_LEN;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::{Errno, IoSlice, IoSliceMut};
use rustix::net::addr::SocketAddrArg;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketAddrAny,
};

use crate::error::{Error, Result};
use crate::stream::StreamBuf;
use crate::transport::{FrameReceiver, FrameSender, check_outgoing};

/// Default frame limit (and buffer size) of a [`StreamSocket`].
pub const DEFAULT_STREAM_BUF: usize = 16 * 1024;

/// Default frame limit of a Unix datagram or seqpacket [`PacketSocket`] (set another with
/// [`PacketSocket::set_max_frame`]; the kernel's limit is the socket's send buffer).
pub const DEFAULT_PACKET_MAX: usize = 64 * 1024;

/// Most file descriptors one receive takes (more are closed, and the message refused).
pub const MAX_RECV_FDS: usize = 16;

/// Most file descriptors one send carries.
pub const MAX_SEND_FDS: usize = 64;

/// A peer's credentials: from `SO_PEERCRED` on a connected Unix socket, or from an
/// `SCM_CREDENTIALS` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl From<rustix::net::UCred> for Creds {
    fn from(c: rustix::net::UCred) -> Creds {
        Creds { pid: c.pid.as_raw_nonzero().get() as u32, uid: c.uid.as_raw(), gid: c.gid.as_raw() }
    }
}

/// The credentials of the peer of a connected Unix socket (`getsockopt(SO_PEERCRED)`), as
/// they were when it connected.
pub fn peer_credentials(fd: impl AsFd) -> Result<Creds> {
    Ok(rustix::net::sockopt::socket_peercred(fd)?.into())
}

/// A connected byte-stream socket carrying frames back to back: a Unix stream socket or a
/// TCP connection. Holds two `N`-byte buffers (read buffer and accumulator); frames up to
/// `N` bytes are received, larger ones reported and skipped. Never allocates.
pub struct StreamSocket<const N: usize = DEFAULT_STREAM_BUF> {
    fd: OwnedFd,
    buf: StreamBuf<N>,
}

impl<const N: usize> StreamSocket<N> {
    /// Wraps a connected stream socket.
    pub fn from_fd(fd: OwnedFd) -> StreamSocket<N> {
        StreamSocket { fd, buf: StreamBuf::new() }
    }

    /// Gives the socket back; bytes read but not yet returned as frames are dropped.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Garbage bytes skipped so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.buf.dropped_bytes()
    }

    /// Closes the sending direction (`shutdown(SHUT_WR)`): the peer reads end of stream
    /// ([`Error::PeerGone`]) after the frames already sent, and can still answer.
    pub fn shutdown_send(&self) -> Result<()> {
        Ok(rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Write)?)
    }
}

impl<const N: usize> FrameSender for StreamSocket<N> {
    fn max_frame(&self) -> usize {
        MAX_FRAME_LEN
    }

    /// `send(MSG_NOSIGNAL)` until the whole frame is written (see
    /// [`Writer`](crate::pipe::Writer) for the nonblocking rule: a started frame is finished).
    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        check_outgoing(frame, MAX_FRAME_LEN)?;
        let fd = &self.fd;
        crate::stream::write_all(fd, frame, |b| rustix::net::send(fd, b, SendFlags::NOSIGNAL))
    }
}

impl<const N: usize> FrameReceiver for StreamSocket<N> {
    fn max_frame(&self) -> usize {
        N
    }

    /// `recv(2)` into the socket's buffer as needed, then the accumulator. End of stream
    /// (the peer closed or shut down its sending side) is [`Error::PeerGone`].
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        let fd = &self.fd;
        self.buf.recv(buf, |b| rustix::net::recv(fd, b, RecvFlags::empty()).map(|(n, _)| n))
    }
}

impl<const N: usize> AsFd for StreamSocket<N> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What kind of message socket a [`PacketSocket`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `SOCK_DGRAM`: Unix datagram or UDP; a zero-length message is a (bad) message.
    Datagram,
    /// `SOCK_SEQPACKET`: connected; a zero-length read is end of stream.
    Seqpacket,
}

/// What [`PacketSocket::recv_frame_with_fds`] received besides the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The frame's length in the caller's buffer.
    pub len: usize,
    /// How many file descriptors were stored at the start of the caller's slots.
    pub fds: usize,
    /// The sender's credentials, when the socket passes them
    /// ([`PacketSocket::set_pass_credentials`]).
    pub creds: Option<Creds>,
}

/// A socket that carries one frame per message: a Unix datagram or seqpacket socket, or a
/// UDP socket. Never allocates.
pub struct PacketSocket {
    fd: OwnedFd,
    kind: PacketKind,
    max: usize,
    path: Option<crate::uds::BoundPath>,
}

impl PacketSocket {
    /// Wraps a datagram or seqpacket socket whose frames are at most `max` bytes.
    pub fn from_fd(fd: OwnedFd, kind: PacketKind, max: usize) -> PacketSocket {
        PacketSocket { fd, kind, max, path: None }
    }

    pub(crate) fn with_path(mut self, path: crate::uds::BoundPath) -> PacketSocket {
        self.path = Some(path);
        self
    }

    /// Gives the socket back; a socket file this socket bound is removed.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Datagram or seqpacket.
    pub fn kind(&self) -> PacketKind {
        self.kind
    }

    /// The largest frame sent or received (the same limit both ways).
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Sets the largest frame sent or received (receive buffers must hold this many
    /// bytes).
    pub fn set_max_frame(&mut self, max: usize) {
        self.max = max;
    }

    /// Connects a datagram socket to `addr` (`connect(2)`): `send_frame` then goes there
    /// and only its datagrams are received.
    pub fn connect(&self, addr: &impl SocketAddrArg) -> Result<()> {
        Ok(rustix::net::connect(&self.fd, addr)?)
    }

    /// The address this socket is bound to (`getsockname(2)`).
    pub fn local_addr(&self) -> Result<SocketAddrAny> {
        Ok(rustix::net::getsockname(&self.fd)?)
    }

    /// Sends one frame to `addr` (`sendto(MSG_NOSIGNAL)`), on an unconnected datagram
    /// socket.
    pub fn send_frame_to(&mut self, frame: &[u8], addr: &impl SocketAddrArg) -> Result<()> {
        check_outgoing(frame, self.max)?;
        loop {
            return match rustix::net::sendto(&self.fd, frame, SendFlags::NOSIGNAL, addr) {
                Ok(n) if n == frame.len() => Ok(()),
                Ok(_) => Err(Error::Os(Errno::IO)),
                Err(Errno::INTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Receives one frame and the address it came from (`recvfrom(MSG_TRUNC)`).
    pub fn recv_frame_from(&mut self, buf: &mut [u8]) -> Result<(usize, Option<SocketAddrAny>)> {
        self.check_buf(buf)?;
        loop {
            match rustix::net::recvfrom(&self.fd, &mut buf[..self.max], RecvFlags::TRUNC) {
                Ok((_, len, addr)) => return self.checked(buf, len).map(|n| (n, addr)),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Asks the kernel to attach the sender's credentials to every message received
    /// (`SO_PASSCRED`; Unix sockets): they come back in [`Received::creds`].
    pub fn set_pass_credentials(&self, on: bool) -> Result<()> {
        Ok(rustix::net::sockopt::set_socket_passcred(&self.fd, on)?)
    }

    /// Sends one frame with file descriptors attached (`sendmsg` with `SCM_RIGHTS`; Unix
    /// sockets). The receiver gets its own duplicates; ours stay open. At most
    /// [`MAX_SEND_FDS`].
    pub fn send_frame_with_fds(&mut self, frame: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        check_outgoing(frame, self.max)?;
        if fds.len() > MAX_SEND_FDS {
            return Err(Error::TooManyFds { max: MAX_SEND_FDS });
        }
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_SEND_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(Error::TooManyFds { max: MAX_SEND_FDS });
        }
        let iov = [IoSlice::new(frame)];
        loop {
            return match rustix::net::sendmsg(&self.fd, &iov, &mut control, SendFlags::NOSIGNAL) {
                Ok(n) if n == frame.len() => Ok(()),
                Ok(_) => Err(Error::Os(Errno::IO)),
                Err(Errno::INTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Receives one frame, the file descriptors sent with it (into the first slots of
    /// `fds`, `O_CLOEXEC`) and the sender's credentials if the socket passes them.
    ///
    /// A message with more descriptors than `fds` has slots (or than [`MAX_RECV_FDS`]) is
    /// refused whole: every descriptor it carried is closed, nothing is stored, and the
    /// result is [`Error::TooManyFds`]. Nothing leaks.
    pub fn recv_frame_with_fds(&mut self, buf: &mut [u8], fds: &mut [Option<OwnedFd>]) -> Result<Received> {
        self.check_buf(buf)?;
        let room = fds.len().min(MAX_RECV_FDS);
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_RECV_FDS), ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let max = self.max;
        let msg = loop {
            let mut iov = [IoSliceMut::new(&mut buf[..max])];
            match rustix::net::recvmsg(&self.fd, &mut iov, &mut control, RecvFlags::TRUNC | RecvFlags::CMSG_CLOEXEC) {
                Ok(m) => break m,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let mut stored = 0;
        let mut over = msg.flags.contains(ReturnFlags::CTRUNC);
        let mut creds = None;
        for m in control.drain() {
            match m {
                RecvAncillaryMessage::ScmRights(received) => {
                    for fd in received {
                        if stored < room {
                            fds[stored] = Some(fd);
                            stored += 1;
                        } else {
                            // Dropping it closes it.
                            over = true;
                        }
                    }
                }
                RecvAncillaryMessage::ScmCredentials(c) => creds = Some(Creds::from(c)),
                _ => {}
            }
        }
        if over {
            for slot in &mut fds[..stored] {
                *slot = None;
            }
            warn!("socket: a message carried more file descriptors than {}; refused", room);
            return Err(Error::TooManyFds { max: room });
        }
        match self.checked(buf, msg.bytes) {
            Ok(len) => Ok(Received { len, fds: stored, creds }),
            Err(e) => {
                for slot in &mut fds[..stored] {
                    *slot = None;
                }
                Err(e)
            }
        }
    }

    fn check_buf(&self, buf: &[u8]) -> Result<()> {
        if buf.len() < self.max { Err(Error::BufferTooSmall { needed: self.max }) } else { Ok(()) }
    }

    /// Checks a received message of `len` bytes (its length before truncation) in `buf`.
    fn checked(&self, buf: &[u8], len: usize) -> Result<usize> {
        if len == 0 && self.kind == PacketKind::Seqpacket {
            return Err(Error::PeerGone);
        }
        if len > self.max {
            return Err(Error::TooLarge { len, max: self.max });
        }
        let frame = ember_core::Frame::new_checked(&buf[..len])?;
        if frame.total_len() != len {
            return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: len - frame.total_len() }));
        }
        Ok(len)
    }
}

impl FrameSender for PacketSocket {
    fn max_frame(&self) -> usize {
        self.max
    }

    /// `send(MSG_NOSIGNAL)` of one message: the whole frame or nothing.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        check_outgoing(frame, self.max)?;
        loop {
            return match rustix::net::send(&self.fd, frame, SendFlags::NOSIGNAL) {
                Ok(n) if n == frame.len() => Ok(()),
                Ok(_) => Err(Error::Os(Errno::IO)),
                Err(Errno::INTR) => continue,
                // A connected datagram socket whose peer is gone (Unix: the peer closed;
                // UDP: an ICMP port unreachable came back).
                Err(Errno::CONNREFUSED) if self.kind == PacketKind::Datagram => Err(Error::PeerGone),
                Err(e) => Err(e.into()),
            };
        }
    }
}

impl FrameReceiver for PacketSocket {
    fn max_frame(&self) -> usize {
        self.max
    }

    /// `recv(MSG_TRUNC)` of one message straight into `buf` (at least
    /// [`max_frame`](FrameReceiver::max_frame) bytes), then the frame checks. A message
    /// larger than the limit is [`Error::TooLarge`] (and gone); on a seqpacket socket, end
    /// of stream is [`Error::PeerGone`].
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.check_buf(buf)?;
        loop {
            match rustix::net::recv(&self.fd, &mut buf[..self.max], RecvFlags::TRUNC) {
                Ok((_, len)) => return self.checked(buf, len),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
