//! The connection: one Unix stream socket to the bus, two fixed buffers (receive and build),
//! a queue of received file descriptors, and the serial counter.

use core::time::Duration;

use ember_core::dbus::header::{self, MessageType};
use ember_core::dbus::{Builder, DbusError, Message, Signature, Writer};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use super::address::unix_addresses;
use crate::error::{Error, Result};

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
/// Longest authentication line accepted from the server, and most lines.
const MAX_AUTH_LINE: usize = 512;
const MAX_AUTH_LINES: usize = 4;
/// Timeout of the connect-authenticate-`Hello` sequence.
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
}

impl CallError<'_> {
    /// The error as an [`Error`]: a remote error becomes [`Error::Os`]`(EREMOTEIO)`.
    pub fn local(self) -> Error {
        match self {
            CallError::Local(e) => e,
            CallError::Remote { .. } => Error::Os(Errno::REMOTEIO),
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
        }
    }
}

impl core::error::Error for CallError<'_> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            CallError::Local(e) => Some(e),
            CallError::Remote { .. } => None,
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

/// A connection to a bus, with `N`-byte receive and build buffers (the largest message it
/// sends or receives; default 64 KiB). Holds `2 × N` bytes inline: box it, or keep it in a
/// static, on small stacks.
///
/// `Send` and `Sync`: it owns its socket and buffers, and every I/O method takes `&mut self`.
pub struct Connection<const N: usize = 65536> {
    fd: OwnedFd,
    rbuf: [u8; N],
    rstart: usize,
    rend: usize,
    /// Length of the message handed out last, dropped at the next receive.
    delivered: usize,
    wbuf: [u8; N],
    serial: u32,
    unique: [u8; 64],
    unique_len: usize,
    unix_fds: bool,
    /// Stream offset of `rbuf[0]` (bytes received before it).
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
}

impl<const N: usize> core::fmt::Debug for Connection<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd)
            .field("unique_name", &core::str::from_utf8(&self.unique[..self.unique_len]).unwrap_or("?"))
            .field("serial", &self.serial)
            .field("unix_fds", &self.unix_fds)
            .field("buffered", &(self.rend - self.rstart))
            .field("capacity", &N)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> Connection<N> {
    /// Connects to the session bus (`DBUS_SESSION_BUS_ADDRESS`).
    #[cfg(feature = "std")]
    pub fn session() -> Result<Connection<N>> {
        let addr = std::env::var("DBUS_SESSION_BUS_ADDRESS").map_err(|_| Error::InvalidName)?;
        Connection::connect(&addr)
    }

    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, or the default path).
    #[cfg(feature = "std")]
    pub fn system() -> Result<Connection<N>> {
        let addr =
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|_| super::address::SYSTEM_BUS_DEFAULT.into());
        Connection::connect(&addr)
    }

    /// Connects to the first address of `addresses` that accepts, authenticates with SASL
    /// `EXTERNAL` (the kernel vouches for our uid), asks for Unix fd passing, and says
    /// `Hello`. The authentication lines and `Hello` go out in one write, so the whole
    /// sequence takes one round trip to the server and back.
    pub fn connect(addresses: &str) -> Result<Connection<N>> {
        const { assert!(N >= 256, "a D-Bus connection needs buffers of at least 256 bytes") };
        let mut last = Error::InvalidName;
        for addr in unix_addresses(addresses) {
            let addr = match addr {
                Ok(a) => a,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match crate::uds::connect_stream::<64>(addr.name()) {
                Ok(sock) => return Connection::handshake(sock.into_fd()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Authenticates on an already connected socket and says `Hello`.
    pub fn handshake(fd: OwnedFd) -> Result<Connection<N>> {
        let mut c = Connection {
            fd,
            rbuf: [0; N],
            rstart: 0,
            rend: 0,
            delivered: 0,
            wbuf: [0; N],
            serial: 0,
            unique: [0; 64],
            unique_len: 0,
            unix_fds: false,
            base: 0,
            queued_fds: Default::default(),
            fds_lost_at: None,
            message_fds: Default::default(),
            skipping: 0,
            broken: false,
        };
        // A send that cannot proceed for this long fails instead of blocking forever.
        rustix::net::sockopt::set_socket_timeout(&c.fd, rustix::net::sockopt::Timeout::Send, Some(SEND_TIMEOUT))?;
        let deadline = deadline_after(CONNECT_TIMEOUT);
        // "\0AUTH EXTERNAL <uid in decimal, hex-encoded>\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n"
        let mut auth = [0u8; 96];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            auth[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        };
        put(b"\0AUTH EXTERNAL ");
        let uid = rustix::process::getuid().as_raw();
        let mut digits = [0u8; 10];
        let mut d = digits.len();
        let mut v = uid;
        loop {
            d -= 1;
            digits[d] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for &digit in &digits[d..] {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            put(&[HEX[(digit >> 4) as usize], HEX[(digit & 15) as usize]]);
        }
        put(b"\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n");
        c.send_raw(&auth[..n], &[])?;
        c.serial = 1;
        let hello = Builder::method_call(bus::PATH, "Hello").interface(bus::INTERFACE).destination(bus::DESTINATION);
        let len = hello.build(&mut c.wbuf, 1, Signature::EMPTY, |_| Ok(()))?.len();
        c.send_wbuf(len, &[])?;
        // The server's lines: OK <guid>, then AGREE_UNIX_FD or ERROR.
        let mut ok = false;
        for _ in 0..MAX_AUTH_LINES {
            let line = c.read_line(deadline)?;
            let (start, end) = line;
            let text = &c.rbuf[start..end];
            if text.starts_with(b"OK ") {
                ok = true;
            } else if text == b"AGREE_UNIX_FD" {
                c.unix_fds = true;
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
        // The Hello reply: our unique name.
        let unique = loop {
            let (start, len) = match c.next_message(deadline) {
                Ok(r) => r,
                Err(Error::Dbus(_)) if !c.broken => continue,
                Err(e) => return Err(e),
            };
            let m = Message::parse_again(&c.rbuf[start..start + len], N)?;
            if m.reply_serial() == Some(1) {
                if m.message_type() == MessageType::Error {
                    return Err(Error::AuthRejected);
                }
                let name: &str = m.body().next_as()?;
                break (start, name.len(), name.as_ptr() as usize - c.rbuf.as_ptr() as usize);
            }
        };
        let (_, len, off) = unique;
        if len > c.unique.len() {
            return Err(Error::Dbus(DbusError::BadBusName));
        }
        c.unique[..len].copy_from_slice(&c.rbuf[off..off + len]);
        c.unique_len = len;
        debug!("dbus: connected");
        Ok(c)
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
            let avail = &self.rbuf[self.rstart..self.rend];
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

    /// Reads more bytes (and any fds sent with them), waiting until `deadline`.
    fn fill(&mut self, deadline: Duration) -> Result<()> {
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.base += self.rstart as u64;
            self.rstart = 0;
        }
        if self.rend == N {
            // Only an unframeable stream fills the buffer without a whole message in it.
            return Err(self.fail(DbusError::TooLarge { len: N + 1, max: N }));
        }
        crate::poll::wait_fd(self.fd.as_fd(), rustix::event::PollFlags::IN, Some(deadline))?;
        let mut control = [0u64; 24];
        let msg = loop {
            match crate::sys::recvmsg(self.fd.as_fd(), &mut self.rbuf[self.rend..], &mut control) {
                Ok(m) => break m,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    crate::poll::wait_fd(self.fd.as_fd(), rustix::event::PollFlags::IN, Some(deadline))?
                }
                Err(e) => return Err(e.into()),
            }
        };
        // The offset of the last byte read (a zero-length read is end of stream, below).
        let last = (self.base + self.rend as u64 + msg.len.min(N - self.rend) as u64).saturating_sub(1);
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
        self.rend += msg.len.min(N - self.rend);
        Ok(())
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
    /// A message larger than `N` is skipped as it streams past (its fds closed) and
    /// reported as [`DbusError::TooLarge`]; a malformed one, or one whose fds do not match
    /// its `UNIX_FDS`, is skipped and reported. Nothing after either is lost, and a skip cut
    /// short by the deadline goes on at the next call. A stream that cannot be framed any
    /// more (a bad fixed header) closes the connection.
    fn next_message(&mut self, deadline: Duration) -> Result<(usize, usize)> {
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
                let len = match header::message_len(&self.rbuf[self.rstart..self.rend], usize::MAX) {
                    Ok(len) => len,
                    Err(e) => return Err(self.fail(e)),
                };
                let start_at = self.base + self.rstart as u64;
                if len > N {
                    self.skipping = len as u64;
                    warn!("dbus: skipping an oversized message");
                    // Start skipping now; the rest goes on at the next call if need be.
                    let here = avail.min(len);
                    self.rstart += here;
                    self.skipping -= here as u64;
                    self.drop_fds_before(start_at + here as u64);
                    return Err(Error::Dbus(DbusError::TooLarge { len, max: N }));
                }
                if avail >= len {
                    let start = self.rstart;
                    self.delivered = len;
                    let fds = Message::parse(&self.rbuf[start..start + len], N).map(|m| m.unix_fds() as usize);
                    let end_at = start_at + len as u64;
                    let fds = match fds {
                        Ok(n) if n <= MAX_FDS => n,
                        Ok(_) => {
                            self.drop_fds_before(end_at);
                            return Err(Error::Dbus(DbusError::BadFdIndex));
                        }
                        Err(e) => {
                            self.drop_fds_before(end_at);
                            return Err(Error::Dbus(e));
                        }
                    };
                    self.claim_fds(start_at, end_at, fds)?;
                    return Ok((start, len));
                }
            }
            self.fill(deadline)?;
        }
    }

    /// Receives the next message, waiting up to `timeout` ([`Error::TimedOut`]); it stays
    /// valid until the next receive.
    pub fn recv(&mut self, timeout: Duration) -> Result<Message<'_>> {
        let deadline = deadline_after(timeout);
        let (start, len) = self.next_message(deadline)?;
        Ok(Message::parse_again(&self.rbuf[start..start + len], N)?)
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
        let len = builder.build(&mut self.wbuf, serial, sig, body)?.len();
        self.send_wbuf(len, fds)?;
        Ok(serial)
    }

    fn send_wbuf(&mut self, len: usize, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let (fd, buf) = (&self.fd, &self.wbuf[..len]);
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
        self.call_builder(method_call(destination, path, interface, member), sig, body, &[], timeout, on_other)
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
        self.call_builder(method_call(destination, path, interface, member), sig, body, fds, timeout, &mut |_| {})
    }

    /// Sends the call `b` and waits for its reply.
    fn call_builder(
        &mut self,
        b: Builder<'_>,
        sig: Signature<'_>,
        body: impl for<'b> FnOnce(&mut Writer<'b>) -> core::result::Result<(), DbusError>,
        fds: &[BorrowedFd<'_>],
        timeout: Duration,
        on_other: &mut dyn FnMut(&Message<'_>),
    ) -> core::result::Result<Message<'_>, CallError<'_>> {
        let serial = self.send(b, sig, body, fds)?;
        let deadline = deadline_after(timeout);
        let (start, len) = loop {
            // A bad message meanwhile (oversized, malformed) is skipped: it does not end
            // the call.
            let (start, len) = match self.next_message(deadline) {
                Ok(r) => r,
                Err(Error::Dbus(_)) if !self.broken && crate::poll::now() < deadline => continue,
                Err(Error::Dbus(_)) if !self.broken => return Err(Error::TimedOut.into()),
                Err(e) => return Err(e.into()),
            };
            let m = Message::parse_again(&self.rbuf[start..start + len], N)?;
            let is_reply = matches!(m.message_type(), MessageType::MethodReturn | MessageType::Error)
                && m.reply_serial() == Some(serial);
            if is_reply {
                break (start, len);
            }
            on_other(&m);
            // A flood of other messages cannot hold the call past its deadline.
            if crate::poll::now() >= deadline {
                return Err(Error::TimedOut.into());
            }
        };
        let m = Message::parse_again(&self.rbuf[start..start + len], N)?;
        if m.message_type() == MessageType::Error {
            let message = m.body().next_as::<&str>().unwrap_or("");
            return Err(CallError::Remote { name: m.error_name().unwrap_or(""), message });
        }
        Ok(m)
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
        self.call_with(destination, path, interface, member, sig, body, timeout, &mut |_| {})
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

impl<const N: usize> AsFd for Connection<N> {
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

/// What [`Connection::process`] did with the message it received.
///
/// `Send` and `Sync`: a view of the connection's buffer.
#[derive(Debug)]
pub enum Processed<'m> {
    /// A method call to us: answered (a reply or an error, unless the caller asked for no
    /// reply).
    Answered,
    /// Any other message (a signal, a reply nobody waited for), for the caller.
    Message(Message<'m>),
}

impl<const N: usize> Connection<N> {
    /// Receives one message (waiting up to `timeout`) and, if it is a method call, answers
    /// it from `objects` and `service`: the built-in `Peer`, `Introspectable` and
    /// `Properties` interfaces, the table's methods (arguments checked against their
    /// signatures), or the standard error. Other messages are returned. Call it in a loop,
    /// or from the poller when the connection's fd is readable (with a zero timeout).
    pub fn process(
        &mut self,
        objects: &[super::object::Object<'_>],
        service: &mut impl super::object::Service,
        timeout: Duration,
    ) -> Result<Processed<'_>> {
        let deadline = deadline_after(timeout);
        let (start, len) = self.next_message(deadline)?;
        // `next_message` checked the whole message; these are views of it.
        let is_call =
            Message::parse_again(&self.rbuf[start..start + len], N)?.message_type() == MessageType::MethodCall;
        if !is_call {
            return Ok(Processed::Message(Message::parse_again(&self.rbuf[start..start + len], N)?));
        }
        let serial = self.next_serial();
        let m = Message::parse_again(&self.rbuf[start..start + len], N)?;
        let no_reply = m.flags() & header::FLAG_NO_REPLY_EXPECTED != 0;
        let out = super::serve::answer(objects, service, &m, &mut self.wbuf, serial, &mut self.message_fds)?;
        if !no_reply {
            send_all(&self.fd, &self.wbuf[..out], &[])?;
        }
        Ok(Processed::Answered)
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
