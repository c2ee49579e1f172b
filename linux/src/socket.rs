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

use crate::cancel::Canceler;
use crate::error::{Error, Result};
use crate::stream::StreamBuf;
use crate::transport::{
    FrameReceiver, FrameSender, Integrity, TimedReceiver, TimedSender, check_outgoing, check_receiver_integrity,
    check_sender_integrity, end_of, socket_integrity, wait_readable,
};

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
    integrity: Integrity,
}

impl<const N: usize> StreamSocket<N> {
    /// Wraps a connected stream socket. Its [`FrameSender::integrity`] is
    /// [`Integrity::Unchecked`] on a Unix socket and [`Integrity::Checked`] on any other
    /// (TCP), read with one `getsockopt(SO_DOMAIN)`.
    pub fn from_fd(fd: OwnedFd) -> StreamSocket<N> {
        let integrity = socket_integrity(&fd);
        StreamSocket { fd, buf: StreamBuf::new(), integrity }
    }

    /// Gives the socket back; bytes read but not yet returned as frames are dropped.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Garbage bytes skipped so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.buf.dropped_bytes()
    }

    /// One `send(MSG_NOSIGNAL)` of a prefix of `bytes` (retried after `EINTR`): how many
    /// bytes went out. No frame check and no finishing, as
    /// [`Writer::write_bytes`](crate::pipe::Writer::write_bytes): for an event-loop sender
    /// that keeps the unwritten rest of a frame itself.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<usize> {
        loop {
            match rustix::net::send(&self.fd, bytes, SendFlags::NOSIGNAL) {
                Err(Errno::INTR) => {}
                r => return r.map_err(Error::from),
            }
        }
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
        check_sender_integrity(frame, self.integrity)?;
        let fd = &self.fd;
        crate::stream::write_all(fd, frame, |b| rustix::net::send(fd, b, SendFlags::NOSIGNAL))
    }

    fn integrity(&self) -> Integrity {
        self.integrity
    }

    fn set_integrity(&mut self, integrity: Integrity) {
        self.integrity = integrity;
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

    fn require_checked(&mut self, on: bool) {
        self.buf.require_checked(on);
    }

    fn requires_checked(&self) -> bool {
        self.buf.requires_checked()
    }
}

impl<const N: usize> TimedReceiver for StreamSocket<N> {
    /// `poll` (on the canceler too) before each `recv(MSG_DONTWAIT)`, until the deadline.
    fn recv_frame_with(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<usize> {
        crate::cancel::check(cancel)?;
        if timeout.is_none() && cancel.is_none() {
            return self.recv_frame(buf);
        }
        let end = end_of(timeout);
        let fd = &self.fd;
        self.buf.recv(buf, |b| {
            loop {
                wait_readable(fd, end, cancel)?;
                match rustix::net::recv(fd, &mut *b, RecvFlags::DONTWAIT) {
                    // Readable, then taken by another reader of the socket: wait again.
                    Err(Errno::AGAIN) => {}
                    r => return r.map(|(n, _)| n),
                }
            }
        })
    }
}

impl<const N: usize> TimedSender for StreamSocket<N> {
    /// `poll` for `POLLOUT` (and the canceler), then `send(MSG_NOSIGNAL | MSG_DONTWAIT)`
    /// until the frame is out; a started frame is finished within
    /// [`FINISH_TIMEOUT`](crate::transport::FINISH_TIMEOUT).
    fn send_frame_with(&mut self, frame: &[u8], timeout: Option<Duration>, cancel: Option<&Canceler>) -> Result<()> {
        if timeout.is_none() && cancel.is_none() {
            return self.send_frame(frame);
        }
        check_outgoing(frame, MAX_FRAME_LEN)?;
        check_sender_integrity(frame, self.integrity)?;
        let end = end_of(timeout);
        let fd = &self.fd;
        loop {
            crate::poll::wait_fd_cancellable(fd, rustix::event::PollFlags::OUT, end, cancel)?;
            match crate::stream::write_all(fd, frame, |b| {
                rustix::net::send(fd, b, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
            }) {
                // Nothing went out: wait for room again.
                Err(Error::WouldBlock) => {}
                r => return r,
            }
        }
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
    integrity: Integrity,
    require_checked: bool,
}

impl PacketSocket {
    /// Wraps a datagram or seqpacket socket whose frames are at most `max` bytes. Its
    /// [`FrameSender::integrity`] is [`Integrity::Unchecked`] on a Unix socket and
    /// [`Integrity::Checked`] on any other (UDP), read with one `getsockopt(SO_DOMAIN)`.
    pub fn from_fd(fd: OwnedFd, kind: PacketKind, max: usize) -> PacketSocket {
        let integrity = socket_integrity(&fd);
        PacketSocket { path: None, fd, kind, max, recv_timeout_ms: u64::MAX, integrity, require_checked: false }
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

    /// Sets the largest frame sent or received (a receive buffer of this many bytes takes
    /// any message in one `recv`; a shorter one peeks first).
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
        check_sender_integrity(frame, self.integrity)?;
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
        loop {
            let usable = match self.room(buf, RecvFlags::empty()) {
                Ok(n) => n,
                Err(Error::Os(Errno::INTR)) => continue,
                Err(e) => return Err(e),
            };
            match rustix::net::recvfrom(&self.fd, &mut buf[..usable], RecvFlags::TRUNC) {
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
        check_sender_integrity(frame, self.integrity)?;
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
        let room = fds.len().min(MAX_RECV_FDS);
        let mut control = [0u64; CONTROL_WORDS];
        let msg = loop {
            let usable = match self.room(buf, RecvFlags::empty()) {
                Ok(n) => n,
                Err(Error::Os(Errno::INTR)) => continue,
                Err(e) => return Err(e),
            };
            match crate::sys::recvmsg(self.fd.as_fd(), &mut buf[..usable], &mut control) {
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

    /// How much of `buf` a receive may use: `max` when `buf` holds that much (one
    /// `recv`). A shorter `buf` works for every message that fits it: the next message's
    /// length is peeked first (`MSG_PEEK | MSG_TRUNC`, it stays queued), and one longer than
    /// `buf` is [`Error::BufferTooSmall`] with its length, still queued for a call with a
    /// buffer that holds it. A signal is `Error::Os(EINTR)`, for the caller to retry.
    fn room(&self, buf: &mut [u8], flags: RecvFlags) -> Result<usize> {
        if buf.len() >= self.max {
            return Ok(self.max);
        }
        let (_, len) = rustix::net::recv(&self.fd, &mut *buf, RecvFlags::PEEK | RecvFlags::TRUNC | flags)?;
        // Over the limit: the receive takes it and refuses it as `TooLarge`, whatever the
        // buffer.
        if len > buf.len() && len <= self.max { Err(Error::BufferTooSmall { needed: len }) } else { Ok(buf.len()) }
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
        // Longer than the buffer only when another reader of the socket took the message
        // that was peeked: this one was cut by the kernel, and is gone.
        let bytes = buf.get(..len).ok_or(Error::TooLarge { len, max: buf.len() })?;
        let frame = ember_core::Frame::new_checked(bytes)?;
        if frame.total_len() != len {
            return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: len - frame.total_len() }));
        }
        check_receiver_integrity(bytes, self.require_checked)?;
        Ok(len)
    }
}

impl PacketSocket {
    /// `send(MSG_NOSIGNAL | flags)` of one message: the whole frame or nothing.
    pub(crate) fn send_frame_flags(&mut self, frame: &[u8], flags: SendFlags) -> Result<()> {
        check_outgoing(frame, self.max)?;
        check_sender_integrity(frame, self.integrity)?;
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
        let usable = self.room(buf, flags)?;
        let (_, len) = rustix::net::recv(&self.fd, &mut buf[..usable], RecvFlags::TRUNC | flags)?;
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

    fn integrity(&self) -> Integrity {
        self.integrity
    }

    fn set_integrity(&mut self, integrity: Integrity) {
        self.integrity = integrity;
    }
}

impl FrameReceiver for PacketSocket {
    fn max_frame(&self) -> usize {
        self.max
    }

    fn require_checked(&mut self, on: bool) {
        self.require_checked = on;
    }

    fn requires_checked(&self) -> bool {
        self.require_checked
    }

    /// `recv(MSG_TRUNC)` of one message straight into `buf`, then the frame checks. A
    /// message larger than the limit is [`Error::TooLarge`] (and gone); on a seqpacket
    /// socket, end of stream is [`Error::PeerGone`]. A `buf` shorter than
    /// [`max_frame`](FrameReceiver::max_frame) costs a `MSG_PEEK` first: a message that does
    /// not fit is [`Error::BufferTooSmall`] with its length and stays queued.
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            let usable = match self.room(buf, RecvFlags::empty()) {
                Ok(n) => n,
                Err(Error::Os(Errno::INTR)) => continue,
                Err(e) => return Err(e),
            };
            match rustix::net::recv(&self.fd, &mut buf[..usable], RecvFlags::TRUNC) {
                Ok((_, len)) => return self.checked(buf, len),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl TimedReceiver for PacketSocket {
    /// Without a canceler, one blocking `recv` bounded by `SO_RCVTIMEO` (set only when the
    /// timeout changes); a zero timeout is one `recv(MSG_DONTWAIT)`. With one, `poll` on the
    /// socket and the canceler, then `recv(MSG_DONTWAIT)`.
    fn recv_frame_with(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<usize> {
        let Some(c) = cancel else { return crate::rpc::Link::recv_frame_timeout(self, buf, timeout) };
        let end = end_of(timeout);
        loop {
            crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::IN, end, Some(c))?;
            match self.recv_frame_flags(buf, RecvFlags::DONTWAIT) {
                // Taken by another reader, or a signal: wait again.
                Err(Error::WouldBlock | Error::Os(Errno::INTR)) => {}
                r => return r,
            }
        }
    }
}

impl TimedSender for PacketSocket {
    /// `poll` for `POLLOUT` (and the canceler), then `send(MSG_NOSIGNAL | MSG_DONTWAIT)`:
    /// the whole frame or nothing. (A Unix datagram socket whose receiver's queue is full
    /// reports `POLLOUT` only once it has room.)
    fn send_frame_with(&mut self, frame: &[u8], timeout: Option<Duration>, cancel: Option<&Canceler>) -> Result<()> {
        if timeout.is_none() && cancel.is_none() {
            return self.send_frame(frame);
        }
        check_outgoing(frame, self.max)?;
        check_sender_integrity(frame, self.integrity)?;
        let end = end_of(timeout);
        loop {
            crate::poll::wait_fd_cancellable(&self.fd, rustix::event::PollFlags::OUT, end, cancel)?;
            match self.send_frame_flags(frame, SendFlags::DONTWAIT) {
                Err(Error::WouldBlock) => {}
                r => return r,
            }
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// [`StreamSocket::from_fd`].
impl<const N: usize> From<OwnedFd> for StreamSocket<N> {
    fn from(fd: OwnedFd) -> StreamSocket<N> {
        StreamSocket::from_fd(fd)
    }
}

/// [`StreamSocket::into_fd`] (bytes already read and not yet returned as a frame are lost).
impl<const N: usize> From<StreamSocket<N>> for OwnedFd {
    fn from(s: StreamSocket<N>) -> OwnedFd {
        s.into_fd()
    }
}

/// A datagram or seqpacket socket (`SO_TYPE`), with frames up to [`DEFAULT_PACKET_MAX`];
/// any other descriptor is [`Error::WrongFdType`] (and closed).
impl TryFrom<OwnedFd> for PacketSocket {
    type Error = Error;
    fn try_from(fd: OwnedFd) -> Result<PacketSocket> {
        use crate::systemd::FdKind;
        let kind = match crate::systemd::expect_kind(&fd, &[FdKind::UnixDatagram, FdKind::Udp, FdKind::UnixSeqpacket])?
        {
            FdKind::UnixSeqpacket => PacketKind::Seqpacket,
            _ => PacketKind::Datagram,
        };
        Ok(PacketSocket::from_fd(fd, kind, DEFAULT_PACKET_MAX))
    }
}

/// [`PacketSocket::into_fd`].
impl From<PacketSocket> for OwnedFd {
    fn from(s: PacketSocket) -> OwnedFd {
        s.into_fd()
    }
}
