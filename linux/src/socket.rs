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
use core::time::Duration;

use ember_core::frame::MAX_FRAME_LEN;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::{Errno, IoSlice};
use rustix::net::addr::SocketAddrArg;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrAny};

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
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    /// Process id; 0 when the kernel cannot name it (a peer in a pid namespace this
    /// process cannot see, or a message queued before credentials were asked for).
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl From<crate::sys::RawCreds> for Creds {
    fn from(c: crate::sys::RawCreds) -> Creds {
        Creds { pid: c.pid, uid: c.uid, gid: c.gid }
    }
}

/// The credentials of the peer of a connected Unix socket (`getsockopt(SO_PEERCRED)`), as
/// they were when it connected.
pub fn peer_credentials(fd: impl AsFd) -> Result<Creds> {
    Ok(crate::sys::peercred(fd.as_fd())?.into())
}

/// Words of the receive control buffer: room for [`MAX_RECV_FDS`] descriptors and one set
/// of credentials.
const CONTROL_WORDS: usize = (crate::sys::cmsg_space(4 * MAX_RECV_FDS) + crate::sys::cmsg_space(12)).div_ceil(8);

/// A connected byte-stream socket carrying frames back to back: a Unix stream socket or a
/// TCP connection. Holds two `N`-byte buffers (read buffer and accumulator); frames up to
/// `N` bytes are received, larger ones reported and skipped. Never allocates.
///
/// `Send` and `Sync`: an owned socket and inline buffers; I/O takes `&mut self`.
#[derive(Debug)]
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

    fn buffered(&self) -> bool {
        self.buf.has_input()
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
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `SOCK_DGRAM`: Unix datagram or UDP; a zero-length message is a (bad) message.
    Datagram,
    /// `SOCK_SEQPACKET`: connected; a zero-length read is end of stream.
    Seqpacket,
}

/// What [`PacketSocket::recv_frame_with_fds`] received besides the frame.
///
/// `Send` and `Sync`: plain data.
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
///
/// `Send` and `Sync`: an owned socket; I/O takes `&mut self`.
#[derive(Debug)]
pub struct PacketSocket {
    // Declared first, so dropped first: the socket file is removed while the socket is
    // still open, so no other process can take the path over in between (see `uds`).
    path: Option<crate::uds::BoundPath>,
    fd: OwnedFd,
    kind: PacketKind,
    max: usize,
    /// The `SO_RCVTIMEO` this handle set last, in whole milliseconds (0: none; `u64::MAX`:
    /// not set by this handle), so a receive with the same timeout makes no `setsockopt`.
    recv_timeout_ms: u64,
}

impl PacketSocket {
    /// Wraps a datagram or seqpacket socket whose frames are at most `max` bytes.
    pub fn from_fd(fd: OwnedFd, kind: PacketKind, max: usize) -> PacketSocket {
        PacketSocket { path: None, fd, kind, max, recv_timeout_ms: u64::MAX }
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
    /// `fds`, which are overwritten; `O_CLOEXEC`) and the sender's credentials if the socket
    /// passes them. `recvmsg(MSG_TRUNC | MSG_CMSG_CLOEXEC)`, with the control messages read
    /// here (so a pid of 0 is representable, see [`Creds::pid`]).
    ///
    /// A message with more descriptors than `fds` has slots (or than [`MAX_RECV_FDS`]) is
    /// refused whole: every descriptor it carried is closed, nothing is stored, and the
    /// result is [`Error::TooManyFds`]. A message that fails the frame checks has its
    /// descriptors closed too. Nothing leaks.
    pub fn recv_frame_with_fds(&mut self, buf: &mut [u8], fds: &mut [Option<OwnedFd>]) -> Result<Received> {
        self.check_buf(buf)?;
        let room = fds.len().min(MAX_RECV_FDS);
        let mut control = [0u64; CONTROL_WORDS];
        let msg = loop {
            match crate::sys::recvmsg(self.fd.as_fd(), &mut buf[..self.max], &mut control) {
                Ok(m) => break m,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let mut stored = 0;
        let mut over = msg.flags & linux_raw_sys::net::MSG_CTRUNC != 0;
        let mut creds = None;
        for m in crate::sys::ControlMessages::new(&control, msg.control_len) {
            match m {
                crate::sys::ControlMessage::Fd(fd) if stored < room => {
                    fds[stored] = Some(fd);
                    stored += 1;
                }
                // Dropping it closes it.
                crate::sys::ControlMessage::Fd(_) => over = true,
                crate::sys::ControlMessage::Creds(c) => creds = Some(Creds::from(c)),
            }
        }
        let result = if over {
            warn!("socket: a message carried more file descriptors than {}; refused", room);
            Err(Error::TooManyFds { max: room })
        } else {
            self.checked(buf, msg.len)
        };
        match result {
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
    /// On a seqpacket socket a zero-length read is end of stream (a zero-length message,
    /// which is never an Ember frame, reads the same).
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

impl PacketSocket {
    /// `send(MSG_NOSIGNAL | flags)` of one message: the whole frame or nothing.
    pub(crate) fn send_frame_flags(&mut self, frame: &[u8], flags: SendFlags) -> Result<()> {
        check_outgoing(frame, self.max)?;
        loop {
            return match rustix::net::send(&self.fd, frame, SendFlags::NOSIGNAL | flags) {
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

    /// One `recv(MSG_TRUNC | flags)` into `buf`, then the frame checks. A signal is
    /// `Error::Os(EINTR)`, for the caller to look at its deadline.
    pub(crate) fn recv_frame_flags(&mut self, buf: &mut [u8], flags: RecvFlags) -> Result<usize> {
        self.check_buf(buf)?;
        let (_, len) = rustix::net::recv(&self.fd, &mut buf[..self.max], RecvFlags::TRUNC | flags)?;
        self.checked(buf, len)
    }

    /// Sets `SO_RCVTIMEO` to `timeout` rounded up to a whole millisecond (`None`: no
    /// limit), unless this handle already set that value.
    pub(crate) fn set_recv_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let ms = match timeout {
            None => 0,
            Some(t) => (t.as_nanos().div_ceil(1_000_000)).clamp(1, u64::MAX as u128 - 1) as u64,
        };
        if ms != self.recv_timeout_ms {
            let value = (ms != 0).then(|| Duration::from_millis(ms));
            rustix::net::sockopt::set_socket_timeout(&self.fd, rustix::net::sockopt::Timeout::Recv, value)?;
            self.recv_timeout_ms = ms;
        }
        Ok(())
    }
}

impl FrameSender for PacketSocket {
    fn max_frame(&self) -> usize {
        self.max
    }

    /// `send(MSG_NOSIGNAL)` of one message: the whole frame or nothing.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.send_frame_flags(frame, SendFlags::empty())
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
