//! The connection: one stream socket (Unix or TCP) to the bus or a peer, two fixed buffers (receive and build),
//! a queue of received file descriptors, and the serial counter.

use core::time::Duration;

use ember_core::dbus::header::{self, MessageType};
use ember_core::dbus::typed::body_signature_of;
use ember_core::dbus::{Builder, DbusError, DecodeBody, EncodeBody, Message, Signature, Writer};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use super::address::Address;
use super::buffers::{Buffers, Inline};
use super::queue::{self, Queue};
use crate::error::{Error, Result};
use ember_core::dbus::MAX_MESSAGE_LEN;

/// What a handshake does: EXTERNAL and fd passing (a Unix socket) or negotiated
/// mechanisms (TCP); `Hello` (a bus) or not (a peer).
#[derive(Debug, Clone, Copy)]
struct Mode {
    unix: bool,
    bus: bool,
}

/// Names of the bus itself.
pub mod bus {
    /// The bus's name.
    pub const DESTINATION: &str = "org.freedesktop.DBus";
    /// The bus's object path.
    pub const PATH: &str = "/org/freedesktop/DBus";
    /// The bus's interface.
    pub const INTERFACE: &str = "org.freedesktop.DBus";
}

/// Most file descriptors held for messages not yet received.
const MAX_FDS: usize = 16;
/// Most calls in flight at once on one connection ([`ConnectionWith::start_call`]).
pub const MAX_CALLS_IN_FLIGHT: usize = 32;
/// Longest authentication line accepted from the server, and most lines.
const MAX_AUTH_LINE: usize = 512;
const MAX_AUTH_LINES: usize = 4;
/// Timeout of the connect-authenticate-`Hello` sequence of [`Connection::connect`] (the
/// `_timeout` variants take the caller's).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send may wait for room in the socket before failing.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `now + timeout`, saturating: `Duration::MAX` means no deadline.
fn deadline_after(timeout: Duration) -> Duration {
    crate::poll::now().saturating_add(timeout)
}

/// A method call that failed: locally (sending, receiving, timeout, a bad reply), or
/// remotely with a D-Bus error reply, whose name and message borrow the connection's
/// buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError<'a> {
    /// Ember's side: [`Error::TimedOut`], [`Error::PeerGone`], a malformed message, ...
    Local(Error),
    /// The peer answered with an error.
    Remote {
        /// The error's name, e.g. `org.freedesktop.DBus.Error.ServiceUnknown`.
        name: &'a str,
        /// Its message (the first string of the body; empty if none).
        message: &'a str,
    },
    /// A typed call ([`ConnectionWith::call_typed`]): the reply's signature is not the
    /// reply type's.
    SignatureMismatch {
        /// The reply type's signature.
        expected: &'static str,
        /// The reply's.
        found: &'a str,
    },
}

impl<'a> CallError<'a> {
    /// A reply as a call returns it: an error reply (type [`MessageType::Error`]) is
    /// [`CallError::Remote`], any other message is the reply. For replies taken by serial
    /// ([`ConnectionWith::poll_message`], [`ConnectionWith::wait_message`],
    /// [`ConnectionWith::received`]).
    pub fn check_reply(reply: Message<'a>) -> core::result::Result<Message<'a>, CallError<'a>> {
        if reply.message_type() == MessageType::Error {
            let message = reply.body().next_as::<&str>().unwrap_or("");
            return Err(CallError::Remote { name: reply.error_name().unwrap_or(""), message });
        }
        Ok(reply)
    }

    /// The error as an [`Error`]: a remote error becomes [`Error::Os`]`(EREMOTEIO)`, a
    /// signature mismatch [`Error::Dbus`]`(`[`DbusError::SignatureMismatch`]`)`.
    pub fn local(self) -> Error {
        match self {
            CallError::Local(e) => e,
            CallError::Remote { .. } => Error::Os(Errno::REMOTEIO),
            CallError::SignatureMismatch { .. } => Error::Dbus(DbusError::SignatureMismatch),
        }
    }
}

impl From<Error> for CallError<'_> {
    fn from(e: Error) -> Self {
        CallError::Local(e)
    }
}

impl From<DbusError> for CallError<'_> {
    fn from(e: DbusError) -> Self {
        CallError::Local(Error::Dbus(e))
    }
}

impl core::fmt::Display for CallError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CallError::Local(e) => write!(f, "{e}"),
            CallError::Remote { name, message } => write!(f, "{name}: {message}"),
            CallError::SignatureMismatch { expected, found } => {
                write!(f, "D-Bus: the reply is ({found}), the reply type is ({expected})")
            }
        }
    }
}

impl core::error::Error for CallError<'_> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            CallError::Local(e) => Some(e),
            CallError::Remote { .. } | CallError::SignatureMismatch { .. } => None,
        }
    }
}

impl CallError<'_> {
    /// The same error without the borrow of the connection's buffer: `'static`, `Send` and
    /// `Sync`, so `?` takes it into `Box<dyn Error>` or `anyhow::Error`. No heap: the name
    /// (at most 255 bytes, the specification's limit) is copied whole, the message up to
    /// [`RemoteError::MESSAGE_MAX`] bytes (cut at a character boundary;
    /// [`RemoteError::is_truncated`] says so).
    ///
    /// ```
    /// # use ember_linux::dbus::CallError;
    /// let e = CallError::Remote { name: "org.freedesktop.DBus.Error.ServiceUnknown", message: "no such name" };
    /// let owned = e.into_owned();
    /// let boxed: Box<dyn std::error::Error + Send + Sync> = owned.into();
    /// assert_eq!(boxed.to_string(), "org.freedesktop.DBus.Error.ServiceUnknown: no such name");
    /// ```
    pub fn into_owned(self) -> OwnedCallError {
        match self {
            CallError::Local(e) => OwnedCallError::Local(e),
            CallError::Remote { name, message } => OwnedCallError::Remote(RemoteError::new(name, message)),
            e @ CallError::SignatureMismatch { .. } => OwnedCallError::Local(e.local()),
        }
    }
}

/// A [`CallError`] that owns its text: what [`CallError::into_owned`] returns. About
/// 1.3 KiB (the text is inline, there is no heap): box it if it travels far.
#[derive(Debug, Clone, PartialEq, Eq)]
// Inline by design: Ember's error paths do not allocate either.
#[allow(clippy::large_enum_variant)]
pub enum OwnedCallError {
    /// Ember's side, as [`CallError::Local`].
    Local(Error),
    /// The peer answered with an error.
    Remote(RemoteError),
}

/// A D-Bus error reply's name and message, copied out of the connection's buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteError {
    name: [u8; 255],
    name_len: u8,
    message: [u8; RemoteError::MESSAGE_MAX],
    message_len: u16,
    truncated: bool,
}

impl RemoteError {
    /// The longest message kept; a longer one is cut at a character boundary.
    pub const MESSAGE_MAX: usize = 1024;

    /// Copies `name` (cut at 255 bytes, the longest valid name) and `message`.
    pub fn new(name: &str, message: &str) -> RemoteError {
        fn cut(s: &str, max: usize) -> usize {
            let mut end = s.len().min(max);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            end
        }
        let (n, m) = (cut(name, 255), cut(message, Self::MESSAGE_MAX));
        let mut e = RemoteError {
            name: [0; 255],
            name_len: n as u8,
            message: [0; Self::MESSAGE_MAX],
            message_len: m as u16,
            truncated: m < message.len(),
        };
        e.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        e.message[..m].copy_from_slice(&message.as_bytes()[..m]);
        e
    }

    /// The error's name, e.g. `org.freedesktop.DBus.Error.ServiceUnknown`.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("")
    }

    /// Its message (the first string of the reply's body; empty if none).
    pub fn message(&self) -> &str {
        core::str::from_utf8(&self.message[..self.message_len as usize]).unwrap_or("")
    }

    /// Whether the message was longer than [`RemoteError::MESSAGE_MAX`] and was cut.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl core::fmt::Debug for RemoteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RemoteError")
            .field("name", &self.name())
            .field("message", &self.message())
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl From<CallError<'_>> for OwnedCallError {
    fn from(e: CallError<'_>) -> Self {
        e.into_owned()
    }
}

impl From<Error> for OwnedCallError {
    fn from(e: Error) -> Self {
        OwnedCallError::Local(e)
    }
}

impl core::fmt::Display for OwnedCallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OwnedCallError::Local(e) => write!(f, "{e}"),
            OwnedCallError::Remote(r) => write!(f, "{}: {}", r.name(), r.message()),
        }
    }
}

impl core::error::Error for OwnedCallError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            OwnedCallError::Local(e) => Some(e),
            OwnedCallError::Remote(_) => None,
        }
    }
}

/// The header of the last message a connection refused (too large for its receive
/// buffer, or malformed in its body or fds but with a readable header): what it was and
/// whom it came from, so a waiting call fails at once and a method call gets an error
/// reply. See [`Connection::last_refused`].
///
/// `Send` and `Sync`: plain data.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    ty: MessageType,
    flags: u8,
    serial: u32,
    reply_serial: Option<u32>,
    len: usize,
    error: DbusError,
    sender: [u8; 255],
    sender_len: u8,
}

impl Refused {
    /// Its type.
    pub fn message_type(&self) -> MessageType {
        self.ty
    }
    /// Its header flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }
    /// Its serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }
    /// The serial it answers (replies and errors).
    pub fn reply_serial(&self) -> Option<u32> {
        self.reply_serial
    }
    /// Its whole length in bytes, as its header declares.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Always false: a message has at least a 16-byte header (for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Why it was refused: [`DbusError::TooLarge`] (its length and the buffer's), or
    /// what is wrong with it.
    pub fn error(&self) -> DbusError {
        self.error
    }
    /// Its sender (empty if the header has none).
    pub fn sender(&self) -> &str {
        core::str::from_utf8(&self.sender[..self.sender_len as usize]).unwrap_or("")
    }

    fn new(m: &Message<'_>, len: usize, error: DbusError) -> Refused {
        let s = m.sender().unwrap_or("").as_bytes();
        // A bus name is at most 255 bytes (checked by the parser).
        let n = s.len().min(255);
        let mut r = Refused {
            ty: m.message_type(),
            flags: m.flags(),
            serial: m.serial(),
            reply_serial: m.reply_serial(),
            len,
            error,
            sender: [0; 255],
            sender_len: n as u8,
        };
        r.sender[..n].copy_from_slice(&s[..n]);
        r
    }

    /// Whether it is the reply (or error reply) to the call with `serial`.
    fn answers(&self, serial: u32) -> bool {
        matches!(self.ty, MessageType::MethodReturn | MessageType::Error) && self.reply_serial == Some(serial)
    }
}

impl core::fmt::Debug for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Refused")
            .field("type", &self.ty)
            .field("serial", &self.serial)
            .field("reply_serial", &self.reply_serial)
            .field("len", &self.len)
            .field("error", &self.error)
            .field("sender", &self.sender())
            .finish()
    }
}

/// `RequestName`'s answer.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestNameReply {
    /// 1: we own the name now.
    PrimaryOwner,
    /// 2: someone else owns it; we are queued.
    InQueue,
    /// 3: someone else owns it and we asked not to queue.
    Exists,
    /// 4: we owned it already.
    AlreadyOwner,
}

/// `RequestName` flag: let another connection take the name over.
pub const NAME_FLAG_ALLOW_REPLACEMENT: u32 = 0x1;
/// `RequestName` flag: take the name over if its owner allows replacement.
pub const NAME_FLAG_REPLACE_EXISTING: u32 = 0x2;
/// `RequestName` flag: fail instead of queueing.
pub const NAME_FLAG_DO_NOT_QUEUE: u32 = 0x4;

/// A connection to a bus, with `N`-byte receive and build buffers held inline (the largest
/// message it sends or receives; default 64 KiB) and a `Q`-byte queue (default `N`) for
/// the messages that arrive while a call waits: `2 × N + Q` bytes, so box it, or keep it
/// in a static, on small stacks. [`ConnectionWith`] takes buffers of any size instead.
pub type Connection<const N: usize = 65536, const Q: usize = N> = ConnectionWith<Inline<N, Q>>;

/// A connection to a bus over the buffers `B` ([`Inline`], [`Borrowed`](super::Borrowed)
/// or [`Heap`](super::buffers::Heap): see [`super::buffers`]): the receive buffer's length
/// is the largest message it takes in, the build buffer's the largest it sends.
///
/// `Send` and `Sync`: it owns its socket and buffers, and every I/O method takes `&mut self`.
pub struct ConnectionWith<B: Buffers> {
    fd: OwnedFd,
    bufs: B,
    rstart: usize,
    rend: usize,
    /// Length of the message handed out last, dropped at the next receive.
    delivered: usize,
    /// Where the message handed out last is, until the next receive (see
    /// [`ConnectionWith::received`]).
    last: Option<At>,
    serial: u32,
    unique: [u8; 64],
    unique_len: usize,
    unix_fds: bool,
    /// A Unix socket (fds may come with the bytes); otherwise TCP, read with `read`
    /// (`recvmsg`'s `MSG_TRUNC` would discard TCP bytes).
    unix_socket: bool,
    /// Stream offset of the receive buffer's first byte (bytes received before it).
    base: u64,
    /// Received fds not yet given to a message, with the stream offset of the last byte of
    /// the read that brought them. A sender attaches a message's fds to the write of its
    /// first bytes, and the kernel ends a read with the write that carries fds (it may glue
    /// fd-less writes before it), so the fds belong to the message that contains the read's
    /// last byte.
    queued_fds: [Option<(u64, OwnedFd)>; MAX_FDS],
    /// A read whose fds were cut short (`MSG_CTRUNC`, or the queue was full): the message
    /// there is refused.
    fds_lost_at: Option<u64>,
    /// The fds of the message received last.
    message_fds: [Option<OwnedFd>; MAX_FDS],
    /// Bytes of an oversized message still to discard.
    skipping: u64,
    /// The stream could not be framed any more: every call fails.
    broken: bool,
    /// A duplicate of a canceler's eventfd ([`ConnectionWith::set_canceler`]): readable
    /// once it is cancelled, and then every wait for the bus ends with `Cancelled`.
    cancel_fd: Option<OwnedFd>,
    /// The header of the message refused last (see [`Refused`]).
    refused: Option<Refused>,
    /// Messages kept for later (see [`super::queue`]).
    queue: Queue,
    /// The fds of queued messages, with their message's sequence number, in arrival order.
    queued_msg_fds: [Option<(u32, OwnedFd)>; MAX_FDS],
    /// Serials of the calls in flight (0: a free slot): their replies are kept for them.
    calls: [u32; MAX_CALLS_IN_FLIGHT],
    /// Calls in flight whose reply came and was dropped: the queue was full
    /// ([`Error::QueueOverflow`]), or the reply was refused (too large, malformed).
    calls_lost: [Option<Error>; MAX_CALLS_IN_FLIGHT],
}

impl<B: Buffers> core::fmt::Debug for ConnectionWith<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd)
            .field("unique_name", &core::str::from_utf8(&self.unique[..self.unique_len]).unwrap_or("?"))
            .field("serial", &self.serial)
            .field("unix_fds", &self.unix_fds)
            .field("buffered", &(self.rend - self.rstart))
            .field("receive_capacity", &self.cap())
            .field("send_capacity", &self.bufs.tx().len())
            .field("broken", &self.broken)
            .field("queue_capacity", &self.bufs.queue().len())
            .field("queue_empty", &self.queue.is_empty())
            .field("overflows", &self.queue.dropped)
            .finish_non_exhaustive()
    }
}

impl<const N: usize, const Q: usize> ConnectionWith<Inline<N, Q>> {
    /// Connects to the session bus (`DBUS_SESSION_BUS_ADDRESS`).
    #[cfg(feature = "std")]
    pub fn session() -> Result<Connection<N, Q>> {
        Connection::session_timeout(CONNECT_TIMEOUT)
    }

    /// [`Connection::session`], the whole sequence within `timeout`.
    #[cfg(feature = "std")]
    pub fn session_timeout(timeout: Duration) -> Result<Connection<N, Q>> {
        let addr = std::env::var("DBUS_SESSION_BUS_ADDRESS").map_err(|_| Error::InvalidName)?;
        Connection::connect_timeout(&addr, timeout)
    }

    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, or the default path).
    #[cfg(feature = "std")]
    pub fn system() -> Result<Connection<N, Q>> {
        Connection::system_timeout(CONNECT_TIMEOUT)
    }

    /// [`Connection::system`], the whole sequence within `timeout`.
    #[cfg(feature = "std")]
    pub fn system_timeout(timeout: Duration) -> Result<Connection<N, Q>> {
        let addr =
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| super::address::SYSTEM_BUS_DEFAULT.into());
        Connection::connect_timeout(&addr, timeout)
    }

    /// Connects to the first address of `addresses` that accepts, authenticates with SASL
    /// `EXTERNAL` (the kernel vouches for our uid), asks for Unix fd passing, and says
    /// `Hello`. The authentication lines and `Hello` go out in one write, so the whole
    /// sequence takes one round trip to the server and back. Gives up after 10 s
    /// ([`Error::TimedOut`]); [`Connection::connect_timeout`] takes the caller's limit.
    pub fn connect(addresses: &str) -> Result<Connection<N, Q>> {
        Connection::connect_timeout(addresses, CONNECT_TIMEOUT)
    }

    /// [`Connection::connect`] with authentication and `Hello` done within `timeout`
    /// ([`Error::TimedOut`] after it; `Duration::MAX`: no limit).
    pub fn connect_timeout(addresses: &str, timeout: Duration) -> Result<Connection<N, Q>> {
        const { assert!(N >= 256, "a D-Bus connection needs buffers of at least 256 bytes") };
        ConnectionWith::connect_with(Inline::new(), addresses, timeout)
    }

    /// Authenticates on an already connected socket and says `Hello`, within 10 s.
    pub fn handshake(fd: OwnedFd) -> Result<Connection<N, Q>> {
        Connection::handshake_timeout(fd, CONNECT_TIMEOUT)
    }

    /// [`Connection::handshake`] within `timeout` ([`Error::TimedOut`] after it).
    pub fn handshake_timeout(fd: OwnedFd, timeout: Duration) -> Result<Connection<N, Q>> {
        const { assert!(N >= 256, "a D-Bus connection needs buffers of at least 256 bytes") };
        ConnectionWith::handshake_with(Inline::new(), fd, timeout)
    }

    /// Connects to a peer, not a bus (see [`ConnectionWith::connect_peer_with`]), within
    /// `timeout`.
    pub fn connect_peer(address: &str, timeout: Duration) -> Result<Connection<N, Q>> {
        const { assert!(N >= 256, "a D-Bus connection needs buffers of at least 256 bytes") };
        ConnectionWith::connect_peer_with(Inline::new(), address, timeout)
    }
}

impl<B: Buffers> ConnectionWith<B> {
    /// [`Connection::connect_timeout`] over the caller's buffers (see
    /// [`super::buffers`]), e.g. `Borrowed::new(&mut rx, &mut tx)`: fails with
    /// [`Error::BufferTooSmall`] if either is under 256 bytes.
    pub fn connect_with(bufs: B, addresses: &str, timeout: Duration) -> Result<ConnectionWith<B>> {
        Self::connect_mode(bufs, addresses, timeout, true, None)
    }

    /// [`ConnectionWith::connect_with`] that also ends with [`Error::Cancelled`] once
    /// `cancel` is cancelled: before connecting, while a TCP connect is under way, and
    /// during authentication and `Hello`. The connection keeps watching `cancel` afterwards,
    /// as after [`ConnectionWith::set_canceler`].
    pub fn connect_cancellable(
        bufs: B,
        addresses: &str,
        timeout: Duration,
        cancel: &crate::cancel::Canceler,
    ) -> Result<ConnectionWith<B>> {
        Self::connect_mode(bufs, addresses, timeout, true, Some(cancel))
    }

    /// [`ConnectionWith::connect_peer_with`], cancellable as
    /// [`ConnectionWith::connect_cancellable`] is.
    pub fn connect_peer_cancellable(
        bufs: B,
        addresses: &str,
        timeout: Duration,
        cancel: &crate::cancel::Canceler,
    ) -> Result<ConnectionWith<B>> {
        Self::connect_mode(bufs, addresses, timeout, false, Some(cancel))
    }

    /// Connects to the first of `addresses` that accepts, then authenticates (and says
    /// `Hello` if `bus`), watching `cancel` throughout if given.
    fn connect_mode(
        bufs: B,
        addresses: &str,
        timeout: Duration,
        bus: bool,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<ConnectionWith<B>> {
        Self::check(&bufs)?;
        let deadline = deadline_after(timeout);
        let mut last = Error::InvalidName;
        for addr in super::address::addresses(addresses) {
            crate::cancel::check(cancel)?;
            match addr {
                Ok(Address::Unix(a)) => match crate::uds::connect_stream::<64>(a.name()) {
                    Ok(sock) => {
                        let mode = Mode { unix: true, bus };
                        return ConnectionWith::handshake_cancellable(bufs, sock.into_fd(), deadline, mode, cancel);
                    }
                    Err(e) => last = e,
                },
                Ok(Address::Tcp(t)) => {
                    let mut addrs = [core::net::SocketAddr::from(([0, 0, 0, 0], 0)); 4];
                    let n = match t.socket_addrs(&mut addrs) {
                        Ok(n) => n,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    for a in &addrs[..n] {
                        let left = deadline.saturating_sub(crate::poll::now());
                        match crate::net::tcp_connect_with::<64>(*a, Some(left), cancel) {
                            Ok(sock) => {
                                let mode = Mode { unix: false, bus };
                                return ConnectionWith::handshake_cancellable(
                                    bufs,
                                    sock.into_fd(),
                                    deadline,
                                    mode,
                                    cancel,
                                );
                            }
                            Err(e @ Error::Cancelled) => return Err(e),
                            Err(e) => last = e,
                        }
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// [`Connection::handshake_timeout`] over the caller's buffers.
    pub fn handshake_with(bufs: B, fd: OwnedFd, timeout: Duration) -> Result<ConnectionWith<B>> {
        Self::check(&bufs)?;
        ConnectionWith::handshake_deadline(bufs, fd, deadline_after(timeout), Mode { unix: true, bus: true })
    }

    /// Connects to a peer rather than a bus (peer-to-peer: a [`super::Listener`], a GDBus
    /// server, sd-bus or zbus listening): the first address of `addresses` that accepts,
    /// authenticated as [`ConnectionWith::connect_with`] does, without `Hello`. There is no
    /// unique name, and messages need no destination.
    pub fn connect_peer_with(bufs: B, addresses: &str, timeout: Duration) -> Result<ConnectionWith<B>> {
        Self::connect_mode(bufs, addresses, timeout, false, None)
    }

    /// Refuses buffers too small for a D-Bus connection.
    fn check(bufs: &B) -> Result<()> {
        let least = bufs.rx().len().min(bufs.tx().len());
        if least < 256 {
            return Err(Error::BufferTooSmall { needed: 256 });
        }
        Ok(())
    }

    /// The receive buffer's size: the largest message this connection takes in now (at
    /// most 128 MiB, the specification's limit).
    pub fn receive_capacity(&self) -> usize {
        self.cap()
    }

    /// The build buffer's size: the largest message this connection sends.
    pub fn send_capacity(&self) -> usize {
        self.bufs.tx().len().min(MAX_MESSAGE_LEN)
    }

    fn cap(&self) -> usize {
        self.bufs.rx().len().min(MAX_MESSAGE_LEN)
    }

    /// A connection on `fd` before any authentication, with a send timeout.
    fn unauthenticated(bufs: B, fd: OwnedFd) -> Result<ConnectionWith<B>> {
        let c = ConnectionWith {
            fd,
            bufs,
            rstart: 0,
            rend: 0,
            delivered: 0,
            last: None,
            serial: 0,
            unique: [0; 64],
            unique_len: 0,
            unix_fds: false,
            unix_socket: true,
            base: 0,
            queued_fds: Default::default(),
            fds_lost_at: None,
            message_fds: Default::default(),
            skipping: 0,
            broken: false,
            cancel_fd: None,
            refused: None,
            queue: Queue::default(),
            queued_msg_fds: Default::default(),
            calls: [0; MAX_CALLS_IN_FLIGHT],
            calls_lost: [None; MAX_CALLS_IN_FLIGHT],
        };
        // A send that cannot proceed for this long fails instead of blocking forever.
        rustix::net::sockopt::set_socket_timeout(&c.fd, rustix::net::sockopt::Timeout::Send, Some(SEND_TIMEOUT))?;
        Ok(c)
    }

    fn handshake_deadline(bufs: B, fd: OwnedFd, deadline: Duration, mode: Mode) -> Result<ConnectionWith<B>> {
        Self::handshake_cancellable(bufs, fd, deadline, mode, None)
    }

    /// The handshake, its waits watching `cancel` (kept by the connection) if given.
    fn handshake_cancellable(
        bufs: B,
        fd: OwnedFd,
        deadline: Duration,
        mode: Mode,
        cancel: Option<&crate::cancel::Canceler>,
    ) -> Result<ConnectionWith<B>> {
        let mut c = ConnectionWith::unauthenticated(bufs, fd)?;
        c.set_canceler(cancel)?;
        c.unix_socket = mode.unix;
        if mode.unix {
            c.auth_external(mode.bus, deadline)?;
        } else {
            c.auth_negotiated(deadline)?;
            c.send_raw(b"BEGIN\r\n", &[])?;
            if mode.bus {
                c.send_hello()?;
            }
        }
        if !mode.bus {
            debug!("dbus: connected to a peer");
            return Ok(c);
        }
        // The Hello reply: our unique name.
        let unique = loop {
            let (start, len) = match c.next_message(deadline) {
                Ok(r) => r,
                // The reply itself refused (too large, malformed): no waiting for it.
                Err(e @ Error::Dbus(_)) if c.refused.is_some_and(|r| r.answers(1)) => return Err(e),
                Err(Error::Dbus(_)) if !c.broken => continue,
                Err(e) => return Err(e),
            };
            let m = Message::parse_again(&c.bufs.rx()[start..start + len], MAX_MESSAGE_LEN)?;
            if m.reply_serial() == Some(1) {
                if m.message_type() == MessageType::Error {
                    return Err(Error::AuthRejected);
                }
                let name: &str = m.body().next_as()?;
                break (start, name.len(), name.as_ptr() as usize - c.bufs.rx().as_ptr() as usize);
            }
        };
        let (_, len, off) = unique;
        if len > c.unique.len() {
            return Err(Error::Dbus(DbusError::BadBusName));
        }
        c.unique[..len].copy_from_slice(&c.bufs.rx()[off..off + len]);
        c.unique_len = len;
        debug!("dbus: connected");
        Ok(c)
    }

    /// The server's side of the handshake (see [`super::listener`]): the peer (of uid
    /// `peer_uid`, from the socket) must authenticate with `EXTERNAL` as our own uid.
    pub(crate) fn accept_deadline(
        bufs: B,
        fd: OwnedFd,
        peer_uid: u32,
        guid: &[u8; 32],
        deadline: Duration,
    ) -> Result<ConnectionWith<B>> {
        Self::check(&bufs)?;
        let mut c = ConnectionWith::unauthenticated(bufs, fd)?;
        let me = rustix::process::getuid().as_raw();
        let mut line = [0u8; MAX_AUTH_LINE];
        let mut ok = [0u8; 3 + 32 + 2];
        ok[..3].copy_from_slice(b"OK ");
        ok[3..35].copy_from_slice(guid);
        ok[35..].copy_from_slice(b"\r\n");
        // The uid the client claims (hex of its decimal digits), if it is the peer's and ours.
        let acceptable = |hex: &[u8]| {
            let mut digits = [0u8; 10];
            let claimed = super::auth::hex_decode(hex, &mut digits)
                .and_then(|d| core::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<u32>().ok());
            claimed.is_none_or(|u| u == peer_uid) && peer_uid == me
        };
        let (mut authenticated, mut first, mut waiting_data) = (false, true, false);
        for _ in 0..16 {
            let n = c.auth_line(deadline, &mut line)?;
            let mut text = &line[..n];
            if first {
                // The client's first byte is a NUL (credentials on some systems).
                text = text.strip_prefix(b"\0").ok_or(Error::AuthRejected)?;
                first = false;
            }
            let mut words = text.split(|&b| b == b' ');
            let (command, arg) = (words.next().unwrap_or_default(), words.next());
            let reply: &[u8] = match (command, arg) {
                (b"AUTH", Some(b"EXTERNAL")) if !authenticated => match words.next() {
                    Some(hex) if acceptable(hex) => {
                        authenticated = true;
                        &ok
                    }
                    Some(_) => b"REJECTED EXTERNAL\r\n",
                    // No initial response: ask for it (an empty one means "the uid you see").
                    None => {
                        waiting_data = true;
                        b"DATA\r\n"
                    }
                },
                (b"DATA", hex) if waiting_data => {
                    waiting_data = false;
                    if acceptable(hex.unwrap_or_default()) {
                        authenticated = true;
                        &ok
                    } else {
                        b"REJECTED EXTERNAL\r\n"
                    }
                }
                (b"AUTH", _) | (b"CANCEL", None) | (b"ERROR", _) if !authenticated => {
                    waiting_data = false;
                    b"REJECTED EXTERNAL\r\n"
                }
                (b"NEGOTIATE_UNIX_FD", None) if authenticated => {
                    c.unix_fds = true;
                    b"AGREE_UNIX_FD\r\n"
                }
                (b"BEGIN", None) if authenticated => {
                    debug!("dbus: a peer connected");
                    return Ok(c);
                }
                _ => b"ERROR\r\n",
            };
            c.send_raw(reply, &[])?;
        }
        warn!("dbus: a peer did not authenticate");
        Err(Error::AuthRejected)
    }

    /// Says `Hello` (serial 1).
    fn send_hello(&mut self) -> Result<()> {
        self.serial = 1;
        let hello = Builder::method_call(bus::PATH, "Hello").interface(bus::INTERFACE).destination(bus::DESTINATION);
        let len = hello.build(self.bufs.tx_mut(), 1, Signature::EMPTY, |_| Ok(()))?.len();
        self.send_wbuf(len, &[])
    }

    /// SASL `EXTERNAL` on a Unix socket, with `NEGOTIATE_UNIX_FD`, `BEGIN` and (on a bus)
    /// `Hello` in the same write: one round trip.
    fn auth_external(&mut self, hello: bool, deadline: Duration) -> Result<()> {
        // "\0AUTH EXTERNAL <uid in decimal, hex-encoded>\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n"
        let mut auth = [0u8; 96];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            auth[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        };
        put(b"\0AUTH EXTERNAL ");
        let mut digits = [0u8; 10];
        let mut hex = [0u8; 20];
        let uid = super::auth::decimal(rustix::process::getuid().as_raw(), &mut digits);
        put(super::auth::hex_encode(uid, &mut hex).unwrap_or_default());
        put(b"\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n");
        // The lines and Hello in one write (the build buffer holds at least 256 bytes).
        self.bufs.tx_mut()[..n].copy_from_slice(&auth[..n]);
        let mut len = n;
        if hello {
            self.serial = 1;
            let b = Builder::method_call(bus::PATH, "Hello").interface(bus::INTERFACE).destination(bus::DESTINATION);
            len += b.build(&mut self.bufs.tx_mut()[n..], 1, Signature::EMPTY, |_| Ok(()))?.len();
        }
        self.send_wbuf(len, &[])?;
        // The server's lines: OK <guid>, then AGREE_UNIX_FD or ERROR.
        let mut ok = false;
        for _ in 0..MAX_AUTH_LINES {
            let (start, end) = self.read_line(deadline)?;
            let text = &self.bufs.rx()[start..end];
            if text.starts_with(b"OK ") {
                ok = true;
            } else if text == b"AGREE_UNIX_FD" {
                self.unix_fds = true;
                break;
            } else if text.starts_with(b"ERROR") && ok {
                // No fd passing on this bus; BEGIN still stands.
                break;
            } else {
                warn!("dbus: authentication rejected");
                return Err(Error::AuthRejected);
            }
        }
        if !ok {
            return Err(Error::AuthRejected);
        }
        Ok(())
    }

    /// Reads one authentication line into `out`; returns its length.
    fn auth_line(&mut self, deadline: Duration, out: &mut [u8; MAX_AUTH_LINE]) -> Result<usize> {
        let (start, end) = self.read_line(deadline)?;
        let n = end - start;
        out[..n].copy_from_slice(&self.bufs.rx()[start..end]);
        Ok(n)
    }

    /// Authentication where the kernel cannot vouch for us (TCP): asks which mechanisms the
    /// server offers (`AUTH` alone), then `DBUS_COOKIE_SHA1` (a secret in our home
    /// directory, which a server of the same user reads too), else `ANONYMOUS`, one line
    /// at a time. No fd passing.
    fn auth_negotiated(&mut self, deadline: Duration) -> Result<()> {
        let mut line = [0u8; MAX_AUTH_LINE];
        self.send_raw(b"\0AUTH\r\n", &[])?;
        let n = self.auth_line(deadline, &mut line)?;
        let offered = line[..n].strip_prefix(b"REJECTED").ok_or(Error::AuthRejected)?;
        let has = |m: &[u8]| offered.split(|&c| c == b' ').any(|o| o == m);
        let (cookie, anonymous) = (has(b"DBUS_COOKIE_SHA1"), has(b"ANONYMOUS"));
        if cookie {
            match self.auth_cookie(deadline, &mut line) {
                Ok(()) => return Ok(()),
                Err(e) if !anonymous => return Err(e),
                Err(_) => {
                    // Give the mechanism up; the server answers REJECTED.
                    self.send_raw(b"CANCEL\r\n", &[])?;
                    let n = self.auth_line(deadline, &mut line)?;
                    if !line[..n].starts_with(b"REJECTED") {
                        return Err(Error::AuthRejected);
                    }
                }
            }
        }
        if anonymous {
            // The trace text is "ember", hex-encoded.
            self.send_raw(b"AUTH ANONYMOUS 656d626572\r\n", &[])?;
            let n = self.auth_line(deadline, &mut line)?;
            return if line[..n].starts_with(b"OK ") { Ok(()) } else { Err(Error::AuthRejected) };
        }
        warn!("dbus: the server offers no mechanism we can use here");
        Err(Error::AuthRejected)
    }

    /// `DBUS_COOKIE_SHA1` (see [`super::auth`]).
    fn auth_cookie(&mut self, deadline: Duration, line: &mut [u8; MAX_AUTH_LINE]) -> Result<()> {
        let uid = rustix::process::getuid().as_raw();
        let mut digits = [0u8; 10];
        let mut out = [0u8; 64];
        let mut n = 0;
        let mut hex = [0u8; 20];
        for part in [
            &b"AUTH DBUS_COOKIE_SHA1 "[..],
            super::auth::hex_encode(super::auth::decimal(uid, &mut digits), &mut hex).unwrap_or_default(),
            b"\r\n",
        ] {
            out[n..n + part.len()].copy_from_slice(part);
            n += part.len();
        }
        self.send_raw(&out[..n], &[])?;
        let n = self.auth_line(deadline, line)?;
        let challenge = line[..n].strip_prefix(b"DATA ").ok_or(Error::AuthRejected)?;
        let mut data = [0u8; MAX_AUTH_LINE / 2];
        let data = super::auth::hex_decode(challenge, &mut data).ok_or(Error::AuthRejected)?;
        let mut reply = [0u8; 5 + 146 + 2];
        reply[..5].copy_from_slice(b"DATA ");
        let len = super::auth::cookie_sha1_response(uid, data, &mut reply[5..5 + 146])?.len();
        reply[5 + len..7 + len].copy_from_slice(b"\r\n");
        self.send_raw(&reply[..7 + len], &[])?;
        let n = self.auth_line(deadline, line)?;
        if line[..n].starts_with(b"OK ") { Ok(()) } else { Err(Error::AuthRejected) }
    }

    /// Our unique name on the bus (`:1.42`), from `Hello`.
    pub fn unique_name(&self) -> &str {
        core::str::from_utf8(&self.unique[..self.unique_len]).unwrap_or("")
    }

    /// Whether the bus agreed to pass Unix fds.
    pub fn can_pass_fds(&self) -> bool {
        self.unix_fds
    }

    /// Reads one `\r\n`-terminated line into the buffer; returns its range (without the
    /// terminator). Bytes after it stay for the messages that follow.
    fn read_line(&mut self, deadline: Duration) -> Result<(usize, usize)> {
        loop {
            let avail = &self.bufs.rx()[self.rstart..self.rend];
            if let Some(i) = avail.windows(2).position(|w| w == b"\r\n") {
                let start = self.rstart;
                self.rstart += i + 2;
                return Ok((start, start + i));
            }
            if avail.len() > MAX_AUTH_LINE {
                return Err(Error::AuthRejected);
            }
            self.fill(deadline)?;
        }
    }

    /// Makes every wait of this connection for the bus (a call's reply, a receive, a
    /// `process`) also end with [`Error::Cancelled`] once `cancel` is cancelled (`None`:
    /// none, the default). The connection keeps a duplicate of the canceler's eventfd
    /// (`fcntl(F_DUPFD_CLOEXEC)`), so it needs no borrow of it. A cancelled call is given up
    /// as one that timed out (its reply is dropped when it comes). Sends are bounded by
    /// the socket's send timeout (10 s), not by the canceler.
    pub fn set_canceler(&mut self, cancel: Option<&crate::cancel::Canceler>) -> Result<()> {
        self.cancel_fd = match cancel {
            Some(c) => Some(rustix::io::fcntl_dupfd_cloexec(c, 0)?),
            None => None,
        };
        Ok(())
    }

    /// `poll` for input until `deadline`, and on the canceler's eventfd if one is set.
    fn wait_readable(&self, deadline: Duration) -> Result<()> {
        let cancel = self.cancel_fd.as_ref().map(AsFd::as_fd);
        crate::poll::wait_fd_or_cancel_fd(self.fd.as_fd(), rustix::event::PollFlags::IN, Some(deadline), cancel)
    }

    /// Reads more bytes (and any fds sent with them), waiting until `deadline`.
    fn fill(&mut self, deadline: Duration) -> Result<()> {
        if self.rstart > 0 {
            self.bufs.rx_mut().copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.base += self.rstart as u64;
            self.rstart = 0;
        }
        let cap = self.cap();
        if self.rend == cap {
            // Only an unframeable stream fills the buffer without a whole message in it.
            return Err(self.fail(DbusError::TooLarge { len: cap + 1, max: cap }));
        }
        self.wait_readable(deadline)?;
        if !self.unix_socket {
            let n = loop {
                match rustix::io::read(&self.fd, &mut self.bufs.rx_mut()[self.rend..cap]) {
                    Ok(n) => break n,
                    Err(Errno::INTR) => {}
                    Err(Errno::AGAIN) => self.wait_readable(deadline)?,
                    Err(e) => return Err(e.into()),
                }
            };
            if n == 0 {
                return Err(Error::PeerGone);
            }
            self.rend += n;
            return Ok(());
        }
        let mut control = [0u64; 24];
        let msg = loop {
            match crate::sys::recvmsg(self.fd.as_fd(), &mut self.bufs.rx_mut()[self.rend..cap], &mut control) {
                Ok(m) => break m,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => self.wait_readable(deadline)?,
                Err(e) => return Err(e.into()),
            }
        };
        // The offset of the last byte read (a zero-length read is end of stream, below).
        let last = (self.base + self.rend as u64 + msg.len.min(cap - self.rend) as u64).saturating_sub(1);
        if msg.flags & linux_raw_sys::net::MSG_CTRUNC != 0 {
            self.fds_lost_at = Some(last);
        }
        for m in crate::sys::ControlMessages::new(&control, msg.control_len) {
            if let crate::sys::ControlMessage::Fd(fd) = m {
                match self.queued_fds.iter_mut().find(|s| s.is_none()) {
                    Some(slot) => *slot = Some((last, fd)),
                    // Dropping it closes it; the message it came with is refused.
                    None => self.fds_lost_at = Some(last),
                }
            }
        }
        if msg.len == 0 {
            return Err(Error::PeerGone);
        }
        self.rend += msg.len.min(cap - self.rend);
        Ok(())
    }

    /// Notes the header of the refused message at `start` (if it can be read) and says why.
    fn refuse(&mut self, start: usize, len: usize, e: DbusError) -> Error {
        self.refused =
            Message::parse_head(&self.bufs.rx()[start..start + len]).ok().map(|(m, _)| Refused::new(&m, len, e));
        self.refused_reply_fails_its_call();
        Error::Dbus(e)
    }

    /// A refused reply to a call in flight fails that call (whoever is receiving now).
    fn refused_reply_fails_its_call(&mut self) {
        if let Some(r) = self.refused
            && matches!(r.ty, MessageType::MethodReturn | MessageType::Error)
        {
            self.fail_call(r.reply_serial.unwrap_or(0), Error::Dbus(r.error));
        }
    }

    /// The header of the message refused last: too large for the receive buffer
    /// ([`DbusError::TooLarge`]), or malformed in its body or fds, but with a header that
    /// could be read. A receive that returns [`Error::Dbus`] sets it (to `None` if even
    /// the header was unreadable). A call whose reply it is has failed at once with that
    /// error; [`Connection::process`] has answered a method call with an error reply.
    pub fn last_refused(&self) -> Option<Refused> {
        self.refused
    }

    /// Marks the connection unusable (its stream cannot be framed) and says why.
    fn fail(&mut self, e: DbusError) -> Error {
        self.broken = true;
        let _ = rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Both);
        warn!("dbus: the stream cannot be framed any more; connection closed");
        Error::Dbus(e)
    }

    /// Moves to the message at stream offsets `start..end` the fds that belong to it (see
    /// `queued_fds`), and closes fds that belonged to earlier messages nobody claimed.
    /// Fails if they are not exactly `want`, or some were lost.
    fn claim_fds(&mut self, start: u64, end: u64, want: usize) -> core::result::Result<(), DbusError> {
        let mut got = 0;
        let mut ok = true;
        for slot in &mut self.queued_fds {
            match slot {
                Some((last, _)) if *last < start => *slot = None,
                Some((last, _)) if *last < end => {
                    let (_, fd) = slot.take().expect("matched Some");
                    if got < want {
                        self.message_fds[got] = Some(fd);
                    } else {
                        ok = false;
                    }
                    got += 1;
                }
                _ => {}
            }
        }
        self.compact_fds();
        if self.fds_lost_at.is_some_and(|at| at < end) {
            self.fds_lost_at = None;
            ok = false;
        }
        if ok && got == want {
            Ok(())
        } else {
            for slot in &mut self.message_fds {
                *slot = None;
            }
            Err(DbusError::BadFdIndex)
        }
    }

    /// Moves the queued fds to the front, keeping their arrival order (new ones are added
    /// at the first empty slot).
    fn compact_fds(&mut self) {
        let mut w = 0;
        for r in 0..MAX_FDS {
            if self.queued_fds[r].is_some() {
                self.queued_fds.swap(w, r);
                w += 1;
            }
        }
    }

    /// Closes the fds of reads that ended at or before stream offset `end` (a message that
    /// was skipped or refused).
    fn drop_fds_before(&mut self, end: u64) {
        for slot in &mut self.queued_fds {
            if slot.as_ref().is_some_and(|(last, _)| *last < end) {
                *slot = None;
            }
        }
        self.compact_fds();
        if self.fds_lost_at.is_some_and(|at| at < end) {
            self.fds_lost_at = None;
        }
    }

    /// The next whole message in the buffer (its start and length), reading as needed, fully
    /// checked (`Message::parse`), so callers take further views of it with the cheaper
    /// `Message::parse_again`. The message handed out before is dropped first (with its
    /// fds not taken).
    ///
    /// A message larger than the receive buffer (which cannot grow to it) is skipped as it streams past (its fds closed) and
    /// reported as [`DbusError::TooLarge`]; a malformed one, or one whose fds do not match
    /// its `UNIX_FDS`, is skipped and reported. Nothing after either is lost, and a skip cut
    /// short by the deadline goes on at the next call. A stream that cannot be framed any
    /// more (a bad fixed header) closes the connection.
    fn next_message(&mut self, deadline: Duration) -> Result<(usize, usize)> {
        self.last = None;
        if self.broken {
            return Err(Error::PeerGone);
        }
        self.rstart += core::mem::take(&mut self.delivered);
        for slot in &mut self.message_fds {
            *slot = None;
        }
        while self.skipping > 0 {
            let here = ((self.rend - self.rstart) as u64).min(self.skipping);
            self.rstart += here as usize;
            self.skipping -= here;
            let end = self.base + self.rstart as u64;
            self.drop_fds_before(end);
            if self.skipping == 0 {
                break;
            }
            self.fill(deadline)?;
        }
        loop {
            let avail = self.rend - self.rstart;
            if avail >= header::FIXED_HEADER_LEN {
                let len = match header::message_len(&self.bufs.rx()[self.rstart..self.rend], usize::MAX) {
                    Ok(len) => len,
                    Err(e) => return Err(self.fail(e)),
                };
                let start_at = self.base + self.rstart as u64;
                if len > self.cap() && self.bufs.grow_rx(len) {
                    debug!("dbus: receive buffer grown for a larger message");
                }
                let cap = self.cap();
                if len > cap {
                    // Its header first, if the buffer holds it: whose reply or call it
                    // is, so that nobody waits for it in vain.
                    let head = header::header_len(&self.bufs.rx()[self.rstart..self.rend]).unwrap_or(usize::MAX);
                    if head <= cap && avail < head {
                        self.fill(deadline)?;
                        continue;
                    }
                    let error = DbusError::TooLarge { len, max: self.bufs.rx_limit().min(MAX_MESSAGE_LEN) };
                    self.refused = Message::parse_head(&self.bufs.rx()[self.rstart..self.rend])
                        .ok()
                        .map(|(m, _)| Refused::new(&m, len, error));
                    self.refused_reply_fails_its_call();
                    self.skipping = len as u64;
                    warn!("dbus: skipping an oversized message");
                    // Start skipping now; the rest goes on at the next call if need be.
                    let here = avail.min(len);
                    self.rstart += here;
                    self.skipping -= here as u64;
                    self.drop_fds_before(start_at + here as u64);
                    return Err(Error::Dbus(error));
                }
                if avail >= len {
                    let start = self.rstart;
                    self.delivered = len;
                    let fds = Message::parse(&self.bufs.rx()[start..start + len], MAX_MESSAGE_LEN)
                        .map(|m| m.unix_fds() as usize);
                    let end_at = start_at + len as u64;
                    let fds = match fds {
                        Ok(n) if n <= MAX_FDS => n,
                        Ok(_) => {
                            self.drop_fds_before(end_at);
                            return Err(self.refuse(start, len, DbusError::BadFdIndex));
                        }
                        Err(e) => {
                            self.drop_fds_before(end_at);
                            return Err(self.refuse(start, len, e));
                        }
                    };
                    if let Err(e) = self.claim_fds(start_at, end_at, fds) {
                        return Err(self.refuse(start, len, e));
                    }
                    return Ok((start, len));
                }
            }
            self.fill(deadline)?;
        }
    }

    /// Receives the next message, waiting up to `timeout` ([`Error::TimedOut`]); it stays
    /// valid until the next receive. Messages queued while a call waited come first, in
    /// arrival order; replies to calls in flight ([`ConnectionWith::start_call`]) are kept
    /// for them, never returned here. Where the queue overflowed, the messages queued
    /// before the loss come first, then one [`Error::QueueOverflow`].
    pub fn recv(&mut self, timeout: Duration) -> Result<Message<'_>> {
        let at = self.next_for_caller(deadline_after(timeout))?;
        Ok(Message::parse_again(self.bytes(at), MAX_MESSAGE_LEN)?)
    }

    /// The bytes of a message received.
    fn bytes(&self, at: At) -> &[u8] {
        match at {
            At::Rx(start, len) => &self.bufs.rx()[start..start + len],
            At::Queue(start, len) => &self.bufs.queue()[start..start + len],
        }
    }

    /// Whether a whole message beyond the one delivered last is in the receive buffer.
    fn whole_message_buffered(&self) -> bool {
        let from = self.rstart + self.delivered;
        let avail = &self.bufs.rx()[from.min(self.rend)..self.rend];
        header::message_len(avail, usize::MAX).is_ok_and(|len| len <= avail.len())
    }

    /// Whether `serial` is a call in flight.
    fn in_flight(calls: &[u32; MAX_CALLS_IN_FLIGHT], serial: u32) -> bool {
        serial != 0 && calls.contains(&serial)
    }

    /// The serial a reply answers (0 for other messages).
    fn answers(m: &Message<'_>) -> u32 {
        match m.message_type() {
            MessageType::MethodReturn | MessageType::Error => m.reply_serial().unwrap_or(0),
            _ => 0,
        }
    }

    /// The next message for `recv` and `process`: the first queued one that is not a reply
    /// to a call in flight (or the overflow, where it happened), else the next to arrive
    /// (replies to calls in flight that arrive meanwhile are queued for them).
    fn next_for_caller(&mut self, deadline: Duration) -> Result<At> {
        self.last = None;
        let at = self.next_for_caller_at(deadline)?;
        self.last = Some(at);
        Ok(at)
    }

    fn next_for_caller_at(&mut self, deadline: Duration) -> Result<At> {
        let calls = self.calls;
        let queued = self.queue.find(self.bufs.queue(), |e| !Self::in_flight(&calls, e.reply_serial));
        if let Some(lost) = self.queue.lost_at
            && queued.is_none_or(|e| !queue::before(e.seq, lost))
        {
            self.queue.lost_at = None;
            return Err(Error::QueueOverflow { dropped: self.queue.dropped });
        }
        if let Some(e) = queued {
            return Ok(self.take_queued(e));
        }
        loop {
            let (start, len) = self.next_message(deadline)?;
            let serial = Self::answers(&Message::parse_again(&self.bufs.rx()[start..start + len], MAX_MESSAGE_LEN)?);
            if !Self::in_flight(&self.calls, serial) {
                return Ok(At::Rx(start, len));
            }
            self.enqueue(start, len, serial);
        }
    }

    /// Moves the message just received (`start..start + len` of the receive buffer, its fds
    /// in `message_fds`) to the queue, or drops and counts it if it does not fit.
    fn enqueue(&mut self, start: usize, len: usize, reply_serial: u32) {
        let nfds = self.message_fds.iter().filter(|f| f.is_some()).count();
        if nfds > self.queued_msg_fds.iter().filter(|f| f.is_none()).count() {
            warn!("dbus: no room for a queued message's fds; message dropped");
            self.queue.drop_one();
            self.lose_reply(reply_serial);
            return;
        }
        let (rx, _, q) = self.bufs.split();
        let Some(seq) = self.queue.push(q, &rx[start..start + len], reply_serial) else {
            warn!("dbus: the queue is full; message dropped");
            self.lose_reply(reply_serial);
            return;
        };
        let mut free = self.queued_msg_fds.iter_mut().filter(|s| s.is_none());
        for fd in self.message_fds.iter_mut().filter_map(Option::take) {
            if let Some(slot) = free.next() {
                *slot = Some((seq, fd));
            }
        }
    }

    /// Notes that the reply to the call in flight `serial` (if it is one) was dropped for
    /// lack of room in the queue: the call fails with [`Error::QueueOverflow`] when polled
    /// or waited for.
    fn lose_reply(&mut self, serial: u32) {
        let e = Error::QueueOverflow { dropped: self.queue.dropped };
        self.fail_call(serial, e);
    }

    /// Makes the call in flight `serial` (if it is one) fail with `e` when polled or waited
    /// for: its reply came and was dropped.
    fn fail_call(&mut self, serial: u32, e: Error) {
        if serial == 0 {
            return;
        }
        for (s, lost) in self.calls.iter().zip(&mut self.calls_lost) {
            if *s == serial {
                *lost = Some(e);
            }
        }
    }

    /// Takes the queued message `e`: its fds become the received message's.
    fn take_queued(&mut self, e: queue::Entry) -> At {
        for slot in &mut self.message_fds {
            *slot = None;
        }
        let mut n = 0;
        for slot in &mut self.queued_msg_fds {
            if slot.as_ref().is_some_and(|(seq, _)| *seq == e.seq)
                && let Some((_, fd)) = slot.take()
            {
                self.message_fds[n] = Some(fd);
                n += 1;
            }
        }
        let (_, _, q) = self.bufs.split();
        self.queue.take(q, &e);
        At::Queue(e.start, e.len)
    }

    /// How many messages the queue has dropped since connecting, because they did not fit
    /// (it reports each loss once as [`Error::QueueOverflow`] from `recv` or `process`).
    pub fn overflows(&self) -> u64 {
        self.queue.dropped
    }

    /// The queue's size in bytes (see [`super::buffers`]).
    pub fn queue_capacity(&self) -> usize {
        self.bufs.queue().len()
    }

    /// The fds that came with the message received last (`UNIX_FDS` of them, in order);
    /// take them before the next receive, which closes those left.
    pub fn take_fd(&mut self, index: u32) -> Option<OwnedFd> {
        self.message_fds.get_mut(index as usize)?.take()
    }

    fn next_serial(&mut self) -> u32 {
        self.serial = self.serial.wrapping_add(1).max(1);
        self.serial
    }

    /// Builds a message with the next serial and sends it, with `fds` (at most 16, and only
    /// if the bus agreed to fd passing); returns its serial.
    pub fn send(
        &mut self,
        builder: Builder<'_>,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
        fds: &[BorrowedFd<'_>],
    ) -> Result<u32> {
        if !fds.is_empty() && !self.unix_fds {
            return Err(Error::Os(Errno::NOTSUP));
        }
        if fds.len() > MAX_FDS {
            return Err(Error::TooManyFds { max: MAX_FDS });
        }
        let serial = self.next_serial();
        let builder = builder.unix_fds(fds.len() as u32);
        let len = builder.build(self.bufs.tx_mut(), serial, sig, body)?.len();
        self.send_wbuf(len, fds)?;
        Ok(serial)
    }

    fn send_wbuf(&mut self, len: usize, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let (fd, buf) = (&self.fd, &self.bufs.tx()[..len]);
        send_all(fd, buf, fds)
    }

    fn send_raw(&mut self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        send_all(&self.fd, bytes, fds)
    }

    /// Calls `member` on `destination`'s object at `path` and waits up to `timeout` for the
    /// reply matched by serial. Messages that arrive meanwhile (signals, other calls) are
    /// handed to `on_other` and dropped. A D-Bus error reply is [`CallError::Remote`].
    #[allow(clippy::too_many_arguments)]
    pub fn call_with(
        &mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
        timeout: Duration,
        on_other: &mut dyn FnMut(&Message<'_>),
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        self.call_builder(method_call(destination, path, interface, member), sig, body, &[], timeout, Some(on_other))
    }

    /// Calls with fds attached (their `h` indices are their positions in `fds`); otherwise
    /// as [`Connection::call_with`].
    #[allow(clippy::too_many_arguments)]
    pub fn call_with_fds(
        &mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        self.call_builder(method_call(destination, path, interface, member), sig, body, fds, timeout, None)
    }

    /// Sends the call `b` and waits for its reply.
    fn call_builder(
        &mut self,
        b: Builder<'_>,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
        on_other: Option<&mut dyn FnMut(&Message<'_>)>,
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        let serial = self.send(b, sig, body, fds)?;
        let at = self.wait_at(serial, deadline_after(timeout), on_other)?;
        Self::reply_of(self.bytes(at))
    }

    /// Sends a method call and returns at once: the reply is kept for it (in the queue,
    /// whatever else arrives meanwhile) until [`ConnectionWith::poll_call`] or
    /// [`ConnectionWith::wait_call`] takes it. Up to [`MAX_CALLS_IN_FLIGHT`] at once
    /// ([`Error::TooManyCalls`] beyond); a call given up is ended with
    /// [`ConnectionWith::cancel_call`].
    #[allow(clippy::too_many_arguments)]
    pub fn start_call(
        &mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
    ) -> Result<PendingCall> {
        if !self.calls.contains(&0) {
            return Err(Error::TooManyCalls { max: MAX_CALLS_IN_FLIGHT });
        }
        let serial = self.send(method_call(destination, path, interface, member), sig, body, &[])?;
        self.expect_reply(serial)
    }

    /// Makes the method call just sent with `serial` (by [`ConnectionWith::send`], e.g. with
    /// fds or flags of the caller's) a call in flight, as [`ConnectionWith::start_call`]
    /// does. Call it before receiving anything else.
    pub fn expect_reply(&mut self, serial: u32) -> Result<PendingCall> {
        if serial == 0 {
            return Err(Error::InvalidName);
        }
        let slot = self.calls.iter().position(|&s| s == 0).ok_or(Error::TooManyCalls { max: MAX_CALLS_IN_FLIGHT })?;
        self.calls[slot] = serial;
        Ok(PendingCall { serial })
    }

    /// The reply to `call` if it is here, without waiting (what has arrived is read; other
    /// messages are queued for `recv`). `Ready` ends the call; `Pending` gives it back.
    pub fn poll_call(&mut self, call: PendingCall) -> core::result::Result<Poll<'_>, CallError<'_>> {
        match self.poll_at(call.serial)? {
            Some(at) => Ok(Poll::Ready(Self::reply_of(self.bytes(at))?)),
            None => Ok(Poll::Pending(call)),
        }
    }

    /// [`ConnectionWith::poll_call`] by serial, returning an error reply as the message it
    /// is (type [`MessageType::Error`]); `None`: not yet.
    pub fn poll_message(&mut self, serial: u32) -> Result<Option<Message<'_>>> {
        match self.poll_at(serial)? {
            Some(at) => Ok(Some(Message::parse_again(self.bytes(at), MAX_MESSAGE_LEN)?)),
            None => Ok(None),
        }
    }

    fn poll_at(&mut self, serial: u32) -> Result<Option<At>> {
        if !Self::in_flight(&self.calls, serial) {
            return Err(Error::InvalidName);
        }
        match self.wait_at(serial, crate::poll::now(), None) {
            Ok(at) => Ok(Some(at)),
            Err(Error::TimedOut) => Ok(None),
            Err(e) => {
                self.forget(serial);
                Err(e)
            }
        }
    }

    /// How many calls are in flight (started, not yet answered, waited for or cancelled).
    pub fn calls_in_flight(&self) -> usize {
        self.calls.iter().filter(|&&s| s != 0).count()
    }

    /// Whether the call with `serial` is in flight.
    pub fn is_call_in_flight(&self, serial: u32) -> bool {
        Self::in_flight(&self.calls, serial)
    }

    /// Waits up to `timeout` for the reply to `call` (other messages are queued for
    /// `recv`); a timeout ends the call too (a late reply goes to `recv`).
    pub fn wait_call(
        &mut self,
        call: PendingCall,
        timeout: Duration,
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        if !Self::in_flight(&self.calls, call.serial) {
            return Err(Error::InvalidName.into());
        }
        match self.wait_at(call.serial, deadline_after(timeout), None) {
            Ok(at) => Self::reply_of(self.bytes(at)),
            Err(e) => {
                self.forget(call.serial);
                Err(e.into())
            }
        }
    }

    /// Gives up on `call`: its reply, if it comes, goes to `recv` like any message.
    pub fn cancel_call(&mut self, call: PendingCall) {
        self.forget(call.serial);
    }

    /// Removes `serial` from the calls in flight.
    fn forget(&mut self, serial: u32) {
        for (s, lost) in self.calls.iter_mut().zip(&mut self.calls_lost) {
            if *s == serial {
                *s = 0;
                *lost = None;
            }
        }
    }

    /// A reply as the caller sees it: an error reply is [`CallError::Remote`].
    fn reply_of(bytes: &[u8]) -> core::result::Result<Message<'_>, CallError<'_>> {
        CallError::check_reply(Message::parse_again(bytes, MAX_MESSAGE_LEN)?)
    }

    /// The message the last receive handed out (by `recv`, `process`, a call's reply,
    /// `poll_call`, ...), while it is valid: until the next receive; `None` before the
    /// first, or once the next receive has begun. For code that must learn that a message
    /// came before it borrows it, such as a poll loop that goes on while the answer is
    /// "not yet" (async adapters: `poll_message(serial)` answers `Some`, then
    /// `received()` is the reply).
    pub fn received(&self) -> Option<Message<'_>> {
        Message::parse_again(self.bytes(self.last?), MAX_MESSAGE_LEN).ok()
    }

    /// Waits up to `timeout` for the reply to the call sent with `serial` (by
    /// [`Connection::send`]); messages that arrive meanwhile are handed to `on_other`
    /// (replies to calls in flight excepted: they are kept for them). A D-Bus error reply
    /// is [`CallError::Remote`]. A reply refused by the
    /// connection (larger than the receive buffer, or malformed) fails the call at once
    /// with its [`Error::Dbus`] error ([`DbusError::TooLarge`] says how large it was), and
    /// [`Connection::last_refused`] has its header; other bad messages meanwhile are
    /// skipped.
    pub fn wait_reply(
        &mut self,
        serial: u32,
        timeout: Duration,
        on_other: &mut dyn FnMut(&Message<'_>),
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        let at = self.wait_at(serial, deadline_after(timeout), Some(on_other))?;
        Self::reply_of(self.bytes(at))
    }

    /// Waits up to `timeout` for the reply to the call sent with `serial`, returning an
    /// error reply as the message it is (type [`MessageType::Error`]). Messages that arrive
    /// meanwhile go to `on_other` if given (replies to calls in flight excepted), else to
    /// the queue, for the next `recv` or `process`.
    pub fn wait_message(
        &mut self,
        serial: u32,
        timeout: Duration,
        on_other: Option<&mut dyn FnMut(&Message<'_>)>,
    ) -> Result<Message<'_>> {
        let at = self.wait_at(serial, deadline_after(timeout), on_other)?;
        Ok(Message::parse_again(self.bytes(at), MAX_MESSAGE_LEN)?)
    }

    /// Where the reply to `serial` is, once here: in the queue already, or the next to
    /// arrive before `deadline` (a zero wait still reads what the socket holds). Others
    /// go to `on_other`, or the queue.
    fn wait_at(
        &mut self,
        serial: u32,
        deadline: Duration,
        on_other: Option<&mut dyn FnMut(&Message<'_>)>,
    ) -> Result<At> {
        self.last = None;
        let at = self.wait_for(serial, deadline, on_other)?;
        self.last = Some(at);
        Ok(at)
    }

    fn wait_for(
        &mut self,
        serial: u32,
        deadline: Duration,
        mut on_other: Option<&mut dyn FnMut(&Message<'_>)>,
    ) -> Result<At> {
        if let Some(e) = self.queue.find(self.bufs.queue(), |e| e.reply_serial == serial) {
            self.forget(serial);
            return Ok(self.take_queued(e));
        }
        if let Some(e) = self.calls.iter().zip(&self.calls_lost).find_map(|(&s, &lost)| lost.filter(|_| s == serial)) {
            self.forget(serial);
            return Err(e);
        }
        loop {
            // A bad message meanwhile (oversized, malformed) is skipped: it does not end
            // the call, unless it is the reply.
            let (start, len) = match self.next_message(deadline) {
                Ok(r) => r,
                Err(e @ Error::Dbus(_)) if self.refused.is_some_and(|r| r.answers(serial)) => {
                    self.forget(serial);
                    return Err(e);
                }
                Err(Error::Dbus(_)) if !self.broken && crate::poll::now() < deadline => continue,
                Err(Error::Dbus(_)) if !self.broken => return Err(Error::TimedOut),
                Err(e) => return Err(e),
            };
            let m = Message::parse_again(&self.bufs.rx()[start..start + len], MAX_MESSAGE_LEN)?;
            let answers = Self::answers(&m);
            if answers == serial {
                self.forget(serial);
                return Ok(At::Rx(start, len));
            }
            match &mut on_other {
                Some(f) if !Self::in_flight(&self.calls, answers) => f(&m),
                _ => self.enqueue(start, len, answers),
            }
            // A flood of other messages cannot hold the call past its deadline (what was
            // read already is looked through: a zero wait finds a reply read with others).
            if crate::poll::now() >= deadline && !self.whole_message_buffered() {
                return Err(Error::TimedOut);
            }
        }
    }

    /// [`Connection::call_with`], dropping messages that arrive meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub fn call(
        &mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
        timeout: Duration,
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        self.call_builder(method_call(destination, path, interface, member), sig, body, &[], timeout, None)
    }

    /// Calls a method of the bus itself with one string argument.
    fn bus_call_str(
        &mut self,
        member: &str,
        arg: &str,
        timeout: Duration,
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        self.call(
            bus::DESTINATION,
            bus::PATH,
            Some(bus::INTERFACE),
            member,
            Signature::new("s")?,
            |w| w.str(arg),
            timeout,
        )
    }

    /// Asks the bus for `name` (`RequestName`) with `NAME_FLAG_*` flags.
    pub fn request_name(
        &mut self,
        name: &str,
        flags: u32,
        timeout: Duration,
    ) -> core::result::Result<RequestNameReply, CallError<'_>> {
        let m = self.call(
            bus::DESTINATION,
            bus::PATH,
            Some(bus::INTERFACE),
            "RequestName",
            Signature::new("su")?,
            |w| {
                w.str(name)?;
                w.u32(flags)
            },
            timeout,
        )?;
        match m.body().next_as::<u32>()? {
            1 => Ok(RequestNameReply::PrimaryOwner),
            2 => Ok(RequestNameReply::InQueue),
            3 => Ok(RequestNameReply::Exists),
            4 => Ok(RequestNameReply::AlreadyOwner),
            _ => Err(CallError::Local(Error::Dbus(DbusError::BodyMismatch))),
        }
    }

    /// Gives `name` back (`ReleaseName`): 1 released, 2 no such name, 3 not the owner.
    pub fn release_name(&mut self, name: &str, timeout: Duration) -> core::result::Result<u32, CallError<'_>> {
        let m = self.bus_call_str("ReleaseName", name, timeout)?;
        Ok(m.body().next_as::<u32>()?)
    }

    /// Subscribes to the messages matching `rule` (`AddMatch`), e.g.
    /// `type='signal',interface='org.example.Sensor'`.
    pub fn add_match(&mut self, rule: &str, timeout: Duration) -> core::result::Result<(), CallError<'_>> {
        self.bus_call_str("AddMatch", rule, timeout).map(|_| ())
    }

    /// Subscribes to the messages `rule` matches (`AddMatch` with the rule's text, built on
    /// the stack: [`rule::MAX_RULE_LEN`](super::rule::MAX_RULE_LEN) bytes at most). A bad
    /// field is [`Error::InvalidName`] before anything is sent.
    pub fn add_match_rule(
        &mut self,
        rule: &super::rule::MatchRule<'_>,
        timeout: Duration,
    ) -> core::result::Result<(), CallError<'_>> {
        let mut buf = [0u8; super::rule::MAX_RULE_LEN];
        let text = rule.write(&mut buf)?;
        self.bus_call_str("AddMatch", text, timeout).map(|_| ())
    }

    /// Drops a subscription made with [`ConnectionWith::add_match_rule`] (`RemoveMatch`).
    pub fn remove_match_rule(
        &mut self,
        rule: &super::rule::MatchRule<'_>,
        timeout: Duration,
    ) -> core::result::Result<(), CallError<'_>> {
        let mut buf = [0u8; super::rule::MAX_RULE_LEN];
        let text = rule.write(&mut buf)?;
        self.bus_call_str("RemoveMatch", text, timeout).map(|_| ())
    }

    /// Drops a subscription (`RemoveMatch`).
    pub fn remove_match(&mut self, rule: &str, timeout: Duration) -> core::result::Result<(), CallError<'_>> {
        self.bus_call_str("RemoveMatch", rule, timeout).map(|_| ())
    }

    /// Emits a signal; returns its serial.
    pub fn emit_signal(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
    ) -> Result<u32> {
        self.send(Builder::signal(path, interface, member), sig, body, &[])
    }
}

/// Typed calls and signals: the arguments and the reply are Rust types whose D-Bus
/// signatures are known at compile time (`ember_core::dbus::typed`). The reply is read
/// from the receive buffer, borrowing its strings and arrays from it; a reply of another
/// signature is [`CallError::SignatureMismatch`]. Nothing allocates.
impl<B: Buffers> ConnectionWith<B> {
    /// Calls `member` with the arguments `args` (a tuple: `&(2i32, 40i32)` is `ii`, `&()`
    /// none) and reads the reply as `R` (a tuple too: `(i32,)`), waiting up to `timeout`.
    /// Messages that arrive meanwhile go to the queue, as with [`ConnectionWith::call`].
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use core::time::Duration;
    /// use ember_linux::dbus::{Connection, bus};
    /// let mut c: Box<Connection> = Box::new(Connection::session()?);
    /// let (owner,): (&str,) = c
    ///     .call_typed(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "GetNameOwner", &("org.example.Sensor",), Duration::from_secs(1))
    ///     .map_err(|e| e.into_owned())?;
    /// println!("{owner}");
    /// # Ok(())
    /// # }
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn call_typed<'m, A: EncodeBody + ?Sized, R: DecodeBody<'m>>(
        &'m mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        args: &A,
        timeout: Duration,
    ) -> core::result::Result<R, CallError<'m>> {
        let sig = const { &A::SIGNATURE }.checked()?;
        let b = method_call(destination, path, interface, member);
        typed_reply(self.call_builder(b, sig, |w| args.encode_body(w), &[], timeout, None)?)
    }

    /// [`ConnectionWith::call_typed`] with fds attached: an [`Fd`](ember_core::dbus::Fd)
    /// argument `i` is `fds[i]`. An `Fd` in the reply is an index for
    /// [`ConnectionWith::take_fd`].
    #[allow(clippy::too_many_arguments)]
    pub fn call_typed_with_fds<'m, A: EncodeBody + ?Sized, R: DecodeBody<'m>>(
        &'m mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        args: &A,
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> core::result::Result<R, CallError<'m>> {
        let sig = const { &A::SIGNATURE }.checked()?;
        let b = method_call(destination, path, interface, member);
        typed_reply(self.call_builder(b, sig, |w| args.encode_body(w), fds, timeout, None)?)
    }

    /// [`ConnectionWith::start_call`] with typed arguments; take the reply with
    /// [`ConnectionWith::wait_call_typed`] (or `poll_call` and
    /// [`Message::body_as`](ember_core::dbus::Message::body_as)).
    pub fn start_call_typed<A: EncodeBody + ?Sized>(
        &mut self,
        destination: &str,
        path: &str,
        interface: Option<&str>,
        member: &str,
        args: &A,
    ) -> Result<PendingCall> {
        let sig = const { &A::SIGNATURE }.checked()?;
        self.start_call(destination, path, interface, member, sig, |w| args.encode_body(w))
    }

    /// [`ConnectionWith::wait_call`], reading the reply as `R`.
    pub fn wait_call_typed<'m, R: DecodeBody<'m>>(
        &'m mut self,
        call: PendingCall,
        timeout: Duration,
    ) -> core::result::Result<R, CallError<'m>> {
        typed_reply(self.wait_call(call, timeout)?)
    }

    /// Emits a signal with the typed body `args`; returns its serial. Read one with
    /// [`Message::body_as`](ember_core::dbus::Message::body_as).
    pub fn emit_signal_typed<A: EncodeBody + ?Sized>(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        args: &A,
    ) -> Result<u32> {
        let sig = const { &A::SIGNATURE }.checked()?;
        self.send(Builder::signal(path, interface, member), sig, |w| args.encode_body(w), &[])
    }
}

/// A reply read as `R`: [`CallError::SignatureMismatch`] if its signature is not `R`'s.
fn typed_reply<'m, R: DecodeBody<'m>>(m: Message<'m>) -> core::result::Result<R, CallError<'m>> {
    let expected = body_signature_of::<R>();
    if m.signature().as_str() != expected {
        return Err(CallError::SignatureMismatch { expected, found: m.signature().as_str() });
    }
    Ok(m.body_as()?)
}

impl<B: Buffers> AsFd for ConnectionWith<B> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A method call to `destination`'s object at `path`.
fn method_call<'a>(destination: &'a str, path: &'a str, interface: Option<&'a str>, member: &'a str) -> Builder<'a> {
    let b = Builder::method_call(path, member).destination(destination);
    match interface {
        Some(i) => b.interface(i),
        None => b,
    }
}

/// Sends all of `bytes` (`MSG_NOSIGNAL`), the fds attached to the first byte.
fn send_all(fd: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    let mut rest = bytes;
    if !fds.is_empty() {
        let mut space = [core::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(Error::TooManyFds { max: MAX_FDS });
        }
        let iov = [rustix::io::IoSlice::new(rest)];
        let n = loop {
            match rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL) {
                Ok(n) => break n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        rest = &rest[n..];
    }
    crate::stream::write_all(fd, rest, |b| rustix::net::send(fd, b, SendFlags::NOSIGNAL))
}

/// Where a message received is: in the receive buffer, or in the queue (start, length).
#[derive(Debug, Clone, Copy)]
enum At {
    Rx(usize, usize),
    Queue(usize, usize),
}

/// A method call in flight, from [`ConnectionWith::start_call`]: give it to
/// [`ConnectionWith::poll_call`] or [`ConnectionWith::wait_call`] for its reply, or to
/// [`ConnectionWith::cancel_call`]. Dropping it without either leaves its reply kept in
/// the queue (and its slot taken) for as long as the connection lives.
///
/// `Send` and `Sync`: a serial.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a call in flight is polled, waited for or cancelled"]
pub struct PendingCall {
    serial: u32,
}

impl PendingCall {
    /// The call's serial (what its reply's `REPLY_SERIAL` will be).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The handle of the call in flight with `serial` (for bindings that keep the serial
    /// instead of the handle): polling or waiting for a serial that is not a call in flight
    /// fails with [`Error::InvalidName`].
    pub fn from_serial(serial: u32) -> PendingCall {
        PendingCall { serial }
    }
}

/// What [`ConnectionWith::poll_call`] found.
///
/// `Send` and `Sync`: a view of the connection's buffer, or a serial.
#[derive(Debug)]
pub enum Poll<'m> {
    /// The reply (the call is over).
    Ready(Message<'m>),
    /// Not yet: the call, to poll again.
    Pending(PendingCall),
}

/// What [`Connection::process`] did with the message it received.
///
/// `Send` and `Sync`: a view of the connection's buffer.
#[derive(Debug)]
pub enum Processed<'m> {
    /// A method call to us: answered (a reply or an error, unless the caller asked for no
    /// reply), or deferred by its handler ([`Call::defer`](super::object::Call::defer)).
    Answered,
    /// Any other message (a signal, a reply nobody waited for), for the caller.
    Message(Message<'m>),
}

impl<B: Buffers> ConnectionWith<B> {
    /// Receives one message (waiting up to `timeout`) and, if it is a method call, answers
    /// it from `objects` and `service`: the built-in `Peer`, `Introspectable` and
    /// `Properties` interfaces, the table's methods (arguments checked against their
    /// signatures), or the standard error. Other messages are returned. Call it in a loop,
    /// or from the poller when the connection's fd is readable (with a zero timeout).
    ///
    /// A handler that called [`Call::defer`](super::object::Call::defer) is answered
    /// later through its token: nothing is sent now. A successful `Properties.Set` is
    /// followed by `PropertiesChanged` with the new value (every property's
    /// `EmitsChangedSignal` is the default `true` here; describe them otherwise in an
    /// [`ObjectTable`](super::object::ObjectTable) served with
    /// [`ConnectionWith::process_table`]).
    pub fn process(
        &mut self,
        objects: &[super::object::Object<'_>],
        service: &mut impl super::object::Service,
        timeout: Duration,
    ) -> Result<Processed<'_>> {
        self.process_view(super::object::View::of(objects), service, timeout)
    }

    /// [`ConnectionWith::process`] with the objects of a run-time
    /// [`ObjectTable`](super::object::ObjectTable) (objects added and removed between
    /// calls, fallback objects answering for the paths below them).
    pub fn process_table<const N: usize>(
        &mut self,
        table: &super::object::ObjectTable<'_, N>,
        service: &mut impl super::object::Service,
        timeout: Duration,
    ) -> Result<Processed<'_>> {
        self.process_view(table.view(), service, timeout)
    }

    /// [`ConnectionWith::process`] with the objects of a [`View`](super::object::View): a
    /// table kept outside an [`ObjectTable`](super::object::ObjectTable) (the C ABI's
    /// service keeps its own).
    pub fn process_view(
        &mut self,
        objects: super::object::View<'_, '_>,
        service: &mut impl super::object::Service,
        timeout: Duration,
    ) -> Result<Processed<'_>> {
        let deadline = deadline_after(timeout);
        let at = match self.next_for_caller(deadline) {
            Ok(r) => r,
            Err(Error::Dbus(e)) => {
                self.answer_refused()?;
                return Err(Error::Dbus(e));
            }
            Err(e) => return Err(e),
        };
        // `next_message` checked the whole message; these are views of it.
        let is_call = Message::parse_again(self.bytes(at), MAX_MESSAGE_LEN)?.message_type() == MessageType::MethodCall;
        if !is_call {
            return Ok(Processed::Message(Message::parse_again(self.bytes(at), MAX_MESSAGE_LEN)?));
        }
        let serial = self.next_serial();
        let (rx, tx, q) = self.bufs.split();
        let bytes = match at {
            At::Rx(start, len) => &rx[start..start + len],
            At::Queue(start, len) => &q[start..start + len],
        };
        let m = Message::parse_again(bytes, MAX_MESSAGE_LEN)?;
        let no_reply = m.flags() & header::FLAG_NO_REPLY_EXPECTED != 0;
        let mut changed = None;
        let out = super::serve::answer(objects, service, &m, tx, serial, &mut self.message_fds, &mut changed)?;
        // 0: the handler deferred its answer.
        if !no_reply && out > 0 {
            send_all(&self.fd, &tx[..out], &[])?;
        }
        // A property set: `PropertiesChanged` after the reply (its EmitsChangedSignal).
        if let Some(c) = changed {
            self.serial = self.serial.wrapping_add(1).max(1);
            let path = m.path().map_or("/", |p| p.as_str());
            let len = super::serve::properties_changed(tx, self.serial, path, c, service)?;
            send_all(&self.fd, &tx[..len], &[])?;
        }
        Ok(Processed::Answered)
    }

    /// Answers the method call refused last (too large for our buffer, or malformed but
    /// with a readable header) with an error reply, so that its caller is not left waiting:
    /// `org.freedesktop.DBus.Error.LimitsExceeded` or `InvalidArgs`.
    fn answer_refused(&mut self) -> Result<()> {
        let Some(r) = self.refused.take() else { return Ok(()) };
        if r.ty != MessageType::MethodCall || r.flags & header::FLAG_NO_REPLY_EXPECTED != 0 {
            self.refused = Some(r);
            return Ok(());
        }
        let serial = self.next_serial();
        let mut b = match r.error {
            DbusError::TooLarge { .. } => Builder::error(r.serial, super::object::names::LIMITS_EXCEEDED),
            _ => Builder::error(r.serial, super::object::names::INVALID_ARGS),
        };
        if r.sender_len > 0 {
            b = b.destination(r.sender());
        }
        let built = b.build(self.bufs.tx_mut(), serial, Signature::new("s")?, |w| {
            w.str_with(|o| match r.error {
                DbusError::TooLarge { len, max } => {
                    write!(o, "a message of {len} bytes is larger than this service's {max}-byte buffer")
                }
                e => write!(o, "the message was refused: {e}"),
            })
        });
        self.refused = Some(r);
        let len = built?.len();
        send_all(&self.fd, &self.bufs.tx()[..len], &[])
    }

    /// Answers the deferred call `token` (from [`Call::defer`](super::object::Call::defer))
    /// with results of the signature `sig` written by `body`. Results too large for the
    /// send buffer answer the caller with `org.freedesktop.DBus.Error.Failed` instead (and
    /// this returns the error). A caller that asked for no reply gets nothing.
    pub fn reply(
        &mut self,
        token: super::object::Token,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
    ) -> Result<()> {
        if token.no_reply() {
            return Ok(());
        }
        let serial = self.next_serial();
        let b = answer_to(Builder::method_return(token.serial()), &token);
        match b.build(self.bufs.tx_mut(), serial, sig, body) {
            Ok(m) => {
                let len = m.len();
                self.send_wbuf(len, &[])
            }
            Err(e) => {
                self.reply_error(token, super::object::names::FAILED, "the service could not write its reply")?;
                Err(e.into())
            }
        }
    }

    /// Answers the deferred call `token` with the typed results `results` (a tuple: `&(42i32,)`).
    pub fn reply_typed<R: EncodeBody + ?Sized>(&mut self, token: super::object::Token, results: &R) -> Result<()> {
        let sig = const { &R::SIGNATURE }.checked()?;
        self.reply(token, sig, |w| results.encode_body(w))
    }

    /// Answers the deferred call `token` with the D-Bus error `name` and `message` (cut to
    /// what the send buffer holds).
    pub fn reply_error(&mut self, token: super::object::Token, name: &str, message: &str) -> Result<()> {
        if token.no_reply() {
            return Ok(());
        }
        let serial = self.next_serial();
        let b = answer_to(Builder::error(token.serial(), name), &token);
        let len = b.build(self.bufs.tx_mut(), serial, Signature::new("s")?, |w| w.str(message))?.len();
        self.send_wbuf(len, &[])
    }

    /// Announces a change of `property` of `interface` made by the daemon itself (not
    /// through `Properties.Set`, which [`ConnectionWith::process_table`] announces by
    /// itself) at `path` of `table`, as its `EmitsChangedSignal` annotation says
    /// ([`Description::emits_changed`](super::object::Description::emits_changed)):
    /// `PropertiesChanged` with the value read through `service` (or the name invalidated,
    /// also when `service` cannot read it), or nothing for `const` and `false` (`None`).
    /// A path, interface or property not in the table is [`Error::InvalidName`].
    pub fn property_changed<const N: usize>(
        &mut self,
        table: &super::object::ObjectTable<'_, N>,
        path: &str,
        interface: &str,
        property: &str,
        service: &mut impl super::object::Service,
    ) -> Result<Option<u32>> {
        self.property_changed_view(table.view(), path, interface, property, service)
    }

    /// [`ConnectionWith::property_changed`] for the objects of a
    /// [`View`](super::object::View).
    pub fn property_changed_view(
        &mut self,
        view: super::object::View<'_, '_>,
        path: &str,
        interface: &str,
        property: &str,
        service: &mut impl super::object::Service,
    ) -> Result<Option<u32>> {
        let p = view
            .find(path)
            .and_then(|o| o.interfaces.iter().find(|i| i.name == interface))
            .and_then(|i| i.properties.iter().find(|p| p.name == property))
            .ok_or(Error::InvalidName)?;
        let invalidate = match view.description.emits_changed(interface, property) {
            super::object::EmitsChanged::True => false,
            super::object::EmitsChanged::Invalidates => true,
            _ => return Ok(None),
        };
        ember_core::dbus::ObjectPath::new(path)?;
        let c = super::serve::Changed { interface, property, signature: p.signature, invalidate };
        let serial = self.next_serial();
        let len = super::serve::properties_changed(self.bufs.tx_mut(), serial, path, c, service)?;
        self.send_wbuf(len, &[])?;
        Ok(Some(serial))
    }

    /// Emits `org.freedesktop.DBus.ObjectManager.InterfacesAdded` from the manager at
    /// `manager` for `object`: each of its interfaces with its properties read through
    /// `service` (a property `service` cannot read fails the emission with
    /// [`Error::Dbus`] and nothing is sent).
    pub fn emit_interfaces_added(
        &mut self,
        manager: &str,
        object: &super::object::Object<'_>,
        service: &mut impl super::object::Service,
    ) -> Result<u32> {
        let path = ember_core::dbus::ObjectPath::new(object.path)?;
        let mut failure = None;
        let sig = Signature::new("oa{sa{sv}}")?;
        self.emit_signal(manager, super::object::OBJECT_MANAGER, "InterfacesAdded", sig, |w| {
            w.object_path(path)?;
            super::serve::interfaces(w, object.path, object.interfaces, service, &mut failure)
        })
    }

    /// Emits `org.freedesktop.DBus.ObjectManager.InterfacesRemoved` from the manager at
    /// `manager`: the object at `path` lost `interfaces` (all of them when it is gone).
    pub fn emit_interfaces_removed(&mut self, manager: &str, path: &str, interfaces: &[&str]) -> Result<u32> {
        let path = ember_core::dbus::ObjectPath::new(path)?;
        let sig = Signature::new("oas")?;
        self.emit_signal(manager, super::object::OBJECT_MANAGER, "InterfacesRemoved", sig, |w| {
            w.object_path(path)?;
            w.array(b's', |w| interfaces.iter().try_for_each(|s| w.str(s)))
        })
    }

    /// Emits `org.freedesktop.DBus.Properties.PropertiesChanged` for `interface` at `path`:
    /// `changed` writes the dict entries (`{sv}`) of the new values, `invalidated` names
    /// properties changed without their value.
    pub fn emit_properties_changed(
        &mut self,
        path: &str,
        interface: &str,
        changed: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
        invalidated: &[&str],
    ) -> Result<u32> {
        let sig = Signature::new("sa{sv}as")?;
        self.emit_signal(path, super::object::PROPERTIES, "PropertiesChanged", sig, |w| {
            w.str(interface)?;
            w.array(b'{', changed)?;
            w.array(b's', |w| invalidated.iter().try_for_each(|s| w.str(s)))
        })
    }
}

/// Addresses the answer to a deferred call to its caller.
fn answer_to<'a>(b: Builder<'a>, token: &'a super::object::Token) -> Builder<'a> {
    match token.sender() {
        "" => b,
        s => b.destination(s),
    }
}
