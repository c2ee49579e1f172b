//! systemd integration without libsystemd: readiness and status notification
//! (`sd_notify(3)`), the service watchdog, socket activation (`sd_listen_fds(3)`) and, with
//! the `log` feature, a journal logger speaking journald's native protocol.
//!
//! Each of these is a small, documented protocol of environment variables and one datagram
//! socket, so Ember speaks them itself (`docs/systemd.md` has the details and the unit
//! files):
//!
//! - **Notification**: systemd sets `NOTIFY_SOCKET` to a Unix datagram socket, a path
//!   (`/run/systemd/notify`) or an abstract name (`@...`). A message is one datagram of
//!   newline-separated `KEY=VALUE` assignments (`READY=1`, `STATUS=...`); [`notify`] builds
//!   it from typed [`State`]s in a stack buffer of [`NOTIFY_MAX`] bytes and sends it.
//!   `FDSTORE=1` passes a descriptor to the service manager with `SCM_RIGHTS`. With no
//!   `NOTIFY_SOCKET` (not started by systemd) nothing is sent:
//!   [`NotifyOutcome::NotUnderSystemd`].
//! - **Watchdog**: with `WatchdogSec=` in the unit, systemd sets `WATCHDOG_USEC` (and
//!   `WATCHDOG_PID`); [`watchdog_interval`] reads them. Send [`State::Watchdog`] at half the
//!   interval or more often: a service that misses the interval is killed (`SIGABRT`) and,
//!   per `Restart=`, restarted.
//! - **Socket activation**: systemd opens the sockets of a `.socket` unit, passes them as
//!   descriptors 3, 4, ... and sets `LISTEN_PID` (our pid), `LISTEN_FDS` (how many) and
//!   `LISTEN_FDNAMES` (their `FileDescriptorName=`s, colon-separated). [`listen_fds`] takes
//!   them, once per process, into a fixed-capacity [`ListenFds`], each classified
//!   ([`FdKind`]); [`ListenFds`] turns one into an Ember endpoint by name, checking its type
//!   first ([`Error::WrongFdType`] names what was expected and what was found).
//!
//! Nothing here allocates: messages are built on the stack, names are `heapless` strings.
//! Reading the environment needs the `std` feature ([`notify`], [`watchdog_interval`],
//! [`listen_fds`]); the parts that do not ([`notify_to`], [`parse_watchdog`],
//! [`parse_listen_env`], [`fd_kind`]) work without it.
//!
//! **Environment**: libsystemd's `unset_environment` flag removes the variables so that
//! children do not see them. Removing a variable is `unsafe` in Rust (another thread may
//! be reading the environment), so that is a separate `unsafe fn` here
//! ([`notify_and_unset`], [`listen_fds_and_unset`]), for a daemon's `main` before it starts
//! threads. Not unsetting is harmless for the descriptors: they are taken at most once per
//! process (a second [`listen_fds`] finds none), `LISTEN_PID` does not match a child, and
//! they are made `FD_CLOEXEC`.
//!
//! # Panics
//!
//! Nothing here panics: a message that does not fit is [`Error::TooLarge`], a bad name
//! [`Error::InvalidName`], a variable that does not parse [`Error::InvalidEnv`].
//!
//! # Example
//!
//! ```
//! use ember_linux::systemd::{self, NotifyOutcome, State};
//!
//! // Not under systemd (no NOTIFY_SOCKET in a doctest): nothing is sent.
//! # if std::env::var_os("NOTIFY_SOCKET").is_none() {
//! let outcome = systemd::notify(&[State::Ready, State::Status("serving")]).unwrap();
//! assert_eq!(outcome, NotifyOutcome::NotUnderSystemd);
//! # }
//!
//! // The same message, to a socket named explicitly (what `notify` does with $NOTIFY_SOCKET).
//! let path = format!("/tmp/ember-doc-notify-{}", std::process::id());
//! let mut rx = ember_linux::uds::bind_datagram(ember_linux::uds::UnixName::Path(&path)).unwrap();
//! systemd::notify_to(&path, &[State::Ready, State::Status("serving")]).unwrap();
//! let mut buf = [0u8; 64];
//! let (n, _) = rustix::net::recv(&rx, &mut buf, rustix::net::RecvFlags::empty()).unwrap();
//! assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
//! # drop(rx);
//! ```

use core::fmt::{self, Write as _};
#[cfg(feature = "std")]
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::{Errno, IoSlice};
use rustix::net::{AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType};

use crate::error::{Error, Result};

#[cfg(feature = "std")]
mod journal;
#[cfg(all(feature = "std", feature = "log"))]
pub use journal::JournalLogger;
#[cfg(feature = "std")]
pub use journal::{Delivery, JOURNAL_MAX, JOURNAL_SOCKET, Journal, Priority, field_name_is_valid};

/// The largest notification message [`notify`] builds (its stack buffer).
pub const NOTIFY_MAX: usize = 4096;

/// The longest `FDNAME` (and `FileDescriptorName=`) systemd accepts.
pub const FDNAME_MAX: usize = 255;

/// The first socket-activated descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// Default capacity of a [`ListenFds`].
pub const DEFAULT_LISTEN_FDS: usize = 8;

/// One assignment of a notification message (`sd_notify(3)`).
#[derive(Debug, Clone, Copy)]
pub enum State<'a> {
    /// `READY=1`: start-up is finished (a `Type=notify` unit is started when this arrives),
    /// or a reload is (after [`State::Reloading`]).
    Ready,
    /// `RELOADING=1` and `MONOTONIC_USEC=<now>` (`CLOCK_MONOTONIC`, µs), which a
    /// `Type=notify-reload` unit needs: the configuration is being reloaded; send
    /// [`State::Ready`] when done.
    Reloading,
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `STATUS=<text>`: a one-line status for `systemctl status`. No newline.
    Status(&'a str),
    /// `WATCHDOG=1`: the keep-alive ping (see [`watchdog_interval`]).
    Watchdog,
    /// `WATCHDOG=trigger`: asks systemd to act as if the watchdog had expired.
    WatchdogTrigger,
    /// `WATCHDOG_USEC=<µs>`: a new watchdog interval, from now on.
    WatchdogUsec(Duration),
    /// `EXTEND_TIMEOUT_USEC=<µs>`: asks for that much more time to start, reload or stop.
    ExtendTimeout(Duration),
    /// `MAINPID=<pid>`: the main process is another one.
    MainPid(u32),
    /// `ERRNO=<n>`: the service failed with this `errno`.
    Errno(i32),
    /// `FDSTORE=1` and `FDNAME=<name>`, with `fd` passed by `SCM_RIGHTS`: the service
    /// manager keeps a duplicate of it across restarts of the service (the unit needs
    /// `FileDescriptorStoreMax=`); it comes back through socket activation, by name. At
    /// most one `FdStore` or [`State::FdStoreRemove`] per message (it has one `FDNAME`).
    FdStore {
        /// The descriptor to store (ours stays open).
        fd: BorrowedFd<'a>,
        /// Its name: 1 to [`FDNAME_MAX`] printable ASCII characters, no `:`.
        name: &'a str,
    },
    /// `FDSTOREREMOVE=1` and `FDNAME=<name>`: the stored descriptors of that name are closed.
    FdStoreRemove {
        /// Their name.
        name: &'a str,
    },
}

/// What [`notify`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// The message went to the service manager.
    Sent,
    /// `NOTIFY_SOCKET` is not set: the process was not started by systemd as a notify
    /// service; nothing was sent.
    NotUnderSystemd,
}

/// Whether `name` is a valid `FDNAME` / `FileDescriptorName=`: 1 to [`FDNAME_MAX`]
/// characters of printable ASCII (space included), no `:` (the `LISTEN_FDNAMES`
/// separator).
pub fn fdname_is_valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= FDNAME_MAX && name.bytes().all(|b| (b' '..0x7f).contains(&b) && b != b':')
}

/// A fixed buffer that reports [`Error::TooLarge`] instead of overflowing.
struct Msg<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Msg<'_> {
    fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.len + bytes.len();
        if end > self.buf.len() {
            return Err(Error::TooLarge { len: end, max: self.buf.len() });
        }
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Starts a new assignment (a newline after the previous one).
    fn line(&mut self, text: &[u8]) -> Result<()> {
        if self.len > 0 {
            self.push(b"\n")?;
        }
        self.push(text)
    }

    fn number(&mut self, n: impl fmt::Display) -> Result<()> {
        let mut digits = heapless::String::<24>::new();
        // A u64 or i64 has at most 20 characters.
        write!(digits, "{n}").map_err(|_| Error::TooLarge { len: 24, max: 24 })?;
        self.push(digits.as_bytes())
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// Now on `CLOCK_MONOTONIC`, in microseconds (what `MONOTONIC_USEC=` carries).
fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).saturating_mul(1_000_000).saturating_add(t.tv_nsec as u64 / 1000)
}

/// Builds the message for `states` into `buf`: its length and the descriptor to pass, if
/// any. The text is what goes on the wire, for callers that want to see or log it.
pub fn build_message<'a>(states: &[State<'a>], buf: &mut [u8]) -> Result<(usize, Option<BorrowedFd<'a>>)> {
    let mut m = Msg { buf, len: 0 };
    let mut fd = None;
    let mut named = false;
    for s in states {
        match *s {
            State::Ready => m.line(b"READY=1")?,
            State::Reloading => {
                m.line(b"RELOADING=1\nMONOTONIC_USEC=")?;
                m.number(monotonic_usec())?;
            }
            State::Stopping => m.line(b"STOPPING=1")?,
            State::Status(text) => {
                if text.contains(['\n', '\0']) {
                    return Err(Error::InvalidName);
                }
                m.line(b"STATUS=")?;
                m.push(text.as_bytes())?;
            }
            State::Watchdog => m.line(b"WATCHDOG=1")?,
            State::WatchdogTrigger => m.line(b"WATCHDOG=trigger")?,
            State::WatchdogUsec(d) => {
                m.line(b"WATCHDOG_USEC=")?;
                m.number(micros(d))?;
            }
            State::ExtendTimeout(d) => {
                m.line(b"EXTEND_TIMEOUT_USEC=")?;
                m.number(micros(d))?;
            }
            State::MainPid(pid) => {
                m.line(b"MAINPID=")?;
                m.number(pid)?;
            }
            State::Errno(e) => {
                m.line(b"ERRNO=")?;
                m.number(e)?;
            }
            State::FdStore { name, .. } | State::FdStoreRemove { name } if !named => {
                if !fdname_is_valid(name) {
                    return Err(Error::InvalidName);
                }
                named = true;
                if let State::FdStore { fd: f, .. } = *s {
                    m.line(b"FDSTORE=1")?;
                    fd = Some(f);
                } else {
                    m.line(b"FDSTOREREMOVE=1")?;
                }
                m.line(b"FDNAME=")?;
                m.push(name.as_bytes())?;
            }
            // A second FDNAME in one message.
            State::FdStore { .. } | State::FdStoreRemove { .. } => return Err(Error::InvalidName),
        }
    }
    Ok((m.len, fd))
}

/// Where `NOTIFY_SOCKET` points: an absolute path, or `@name` in the abstract namespace.
/// Anything else (a relative path, `vsock:`, an empty value) is [`Error::InvalidEnv`].
pub fn notify_address(socket: &str) -> Result<SocketAddrUnix> {
    let addr = match socket.as_bytes() {
        [b'/', ..] if socket.len() <= crate::uds::MAX_PATH && !socket.contains('\0') => SocketAddrUnix::new(socket),
        [b'@', name @ ..] if !name.is_empty() && name.len() <= crate::uds::MAX_PATH => {
            SocketAddrUnix::new_abstract_name(name)
        }
        _ => return Err(Error::InvalidEnv),
    };
    addr.map_err(|_| Error::InvalidEnv)
}

/// Sends the message for `states` to `socket`, a `NOTIFY_SOCKET` value (see
/// [`notify_address`]), as one datagram from a fresh `AF_UNIX`/`SOCK_DGRAM` socket
/// (`sendmsg(MSG_NOSIGNAL)`, with `SCM_RIGHTS` for [`State::FdStore`]). Nobody listening
/// there is [`Error::Refused`].
pub fn notify_to(socket: &str, states: &[State<'_>]) -> Result<()> {
    let mut buf = [0u8; NOTIFY_MAX];
    let (len, fd) = build_message(states, &mut buf)?;
    send_to(socket, &buf[..len], fd)
}

/// Sends `text`, a message in the raw form (`"READY=1\nSTATUS=..."`, as `sd_notify(3)`
/// takes it), to `socket`. The text is not checked; it must not be empty.
pub fn notify_raw_to(socket: &str, text: &str) -> Result<()> {
    if text.is_empty() {
        return Err(Error::InvalidName);
    }
    send_to(socket, text.as_bytes(), None)
}

fn send_to(socket: &str, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<()> {
    let addr = notify_address(socket)?;
    let sock =
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, rustix::net::SocketFlags::CLOEXEC, None)?;
    let mut space = [core::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds;
    if let Some(fd) = fd {
        fds = [fd];
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(Error::TooManyFds { max: 1 });
        }
    }
    let iov = [IoSlice::new(msg)];
    loop {
        return match rustix::net::sendmsg_addr(&sock, &addr, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(_) => Err(Error::Os(Errno::IO)),
            Err(Errno::INTR) => continue,
            Err(Errno::NOENT) => Err(Error::Refused),
            Err(Errno::MSGSIZE) => Err(Error::TooLarge { len: msg.len(), max: msg.len() - 1 }),
            Err(e) => Err(e.into()),
        };
    }
}

/// Sends the message for `states` to `$NOTIFY_SOCKET` (`sd_notify(0, ...)`):
/// [`NotifyOutcome::NotUnderSystemd`] when the variable is unset (nothing happens),
/// [`NotifyOutcome::Sent`] when sent; an invalid variable is [`Error::InvalidEnv`], a
/// failed send the error of [`notify_to`].
///
/// Allocates nothing: the message is built in a [`NOTIFY_MAX`]-byte stack buffer.
#[cfg(feature = "std")]
pub fn notify(states: &[State<'_>]) -> Result<NotifyOutcome> {
    with_notify_socket(|s| notify_to(s, states))
}

/// [`notify`] with the raw text form (`"READY=1\nSTATUS=serving"`), as `sd_notify(3)` takes
/// it; the C ABI's `ember_sd_notify`.
#[cfg(feature = "std")]
pub fn notify_raw(text: &str) -> Result<NotifyOutcome> {
    with_notify_socket(|s| notify_raw_to(s, text))
}

#[cfg(feature = "std")]
fn with_notify_socket(send: impl FnOnce(&str) -> Result<()>) -> Result<NotifyOutcome> {
    let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(NotifyOutcome::NotUnderSystemd);
    };
    send(value.to_str().ok_or(Error::InvalidEnv)?)?;
    Ok(NotifyOutcome::Sent)
}

/// [`notify`], then removes `NOTIFY_SOCKET` from the environment (`sd_notify(1, ...)`), so
/// that children (and later calls) do not notify; it is removed whatever the outcome.
///
/// # Safety
///
/// No other thread may read or write the environment during the call
/// (`std::env::remove_var`'s contract; C's `getenv` counts): call it from `main` before
/// threads start, or when none touch the environment.
#[cfg(feature = "std")]
#[allow(unsafe_code)]
pub unsafe fn notify_and_unset(states: &[State<'_>]) -> Result<NotifyOutcome> {
    let r = notify(states);
    // SAFETY: the caller's contract (no concurrent environment access).
    unsafe { std::env::remove_var("NOTIFY_SOCKET") };
    r
}

/// The watchdog interval from the values of `WATCHDOG_USEC` and `WATCHDOG_PID`, for the
/// process `pid` (`sd_watchdog_enabled(3)`): `None` when the watchdog is off (no
/// `WATCHDOG_USEC`, or 0) or meant for another process (`WATCHDOG_PID` set and not `pid`).
/// A value that does not parse is [`Error::InvalidEnv`].
pub fn parse_watchdog(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Result<Option<Duration>> {
    let Some(usec) = usec else { return Ok(None) };
    let usec: u64 = usec.parse().map_err(|_| Error::InvalidEnv)?;
    if let Some(p) = watchdog_pid {
        let p: u32 = p.parse().map_err(|_| Error::InvalidEnv)?;
        if p == 0 {
            return Err(Error::InvalidEnv);
        }
        if p != pid {
            return Ok(None);
        }
    }
    Ok((usec > 0).then(|| Duration::from_micros(usec)))
}

/// This process's pid.
#[cfg(feature = "std")]
fn our_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The service watchdog's interval, when systemd watches this process (`WatchdogSec=` in
/// the unit: `WATCHDOG_USEC` set, and `WATCHDOG_PID` unset or this process): send
/// [`State::Watchdog`] at **half** this interval (or more often), from the loop whose
/// progress it vouches for. `None` when there is no watchdog, or its variables do not parse
/// (see [`parse_watchdog`] to tell those apart).
#[cfg(feature = "std")]
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_checked().ok().flatten()
}

/// [`watchdog_interval`], with a variable that does not parse reported as
/// [`Error::InvalidEnv`].
#[cfg(feature = "std")]
pub fn watchdog_interval_checked() -> Result<Option<Duration>> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), our_pid())
}

/// What a file descriptor is, as far as Ember's endpoints care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FdKind {
    /// A listening Unix stream socket (`ListenStream=/path`).
    UnixStreamListener,
    /// A listening Unix seqpacket socket (`ListenSequentialPacket=`).
    UnixSeqpacketListener,
    /// A Unix datagram socket (`ListenDatagram=/path`).
    UnixDatagram,
    /// A connected Unix stream socket (`Accept=yes`).
    UnixStream,
    /// A connected Unix seqpacket socket (`Accept=yes`).
    UnixSeqpacket,
    /// A listening TCP socket (`ListenStream=8080`).
    TcpListener,
    /// A connected TCP socket (`Accept=yes`).
    TcpStream,
    /// A UDP socket (`ListenDatagram=5000`).
    Udp,
    /// Another socket (netlink, a packet socket, a listening socket of another protocol).
    OtherSocket,
    /// A FIFO (`ListenFIFO=`) or a pipe.
    Fifo,
    /// A POSIX message queue (`ListenMessageQueue=`).
    MessageQueue,
    /// A regular file (`ListenSpecial=`).
    File,
    /// Something else (a character device, a directory, ...).
    Other,
}

impl fmt::Display for FdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FdKind::UnixStreamListener => "a listening Unix stream socket",
            FdKind::UnixSeqpacketListener => "a listening Unix seqpacket socket",
            FdKind::UnixDatagram => "a Unix datagram socket",
            FdKind::UnixStream => "a connected Unix stream socket",
            FdKind::UnixSeqpacket => "a connected Unix seqpacket socket",
            FdKind::TcpListener => "a listening TCP socket",
            FdKind::TcpStream => "a connected TCP socket",
            FdKind::Udp => "a UDP socket",
            FdKind::OtherSocket => "another kind of socket",
            FdKind::Fifo => "a FIFO",
            FdKind::MessageQueue => "a POSIX message queue",
            FdKind::File => "a regular file",
            FdKind::Other => "another kind of file",
        })
    }
}

/// `f_type` of the mqueue file system (`MQUEUE_MAGIC`, uapi `magic.h`).
const MQUEUE_MAGIC: u64 = 0x1980_0202;

/// What `fd` is: `fstat` (socket, FIFO, regular file), then for a socket `SO_DOMAIN`,
/// `SO_TYPE` and `SO_ACCEPTCONN`, for a regular file `fstatfs` (a message queue lives on
/// the mqueue file system).
pub fn fd_kind(fd: impl AsFd) -> Result<FdKind> {
    use rustix::fs::FileType;
    use rustix::net::sockopt;
    let fd = fd.as_fd();
    let st = rustix::fs::fstat(fd)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Socket => {
            let domain = sockopt::socket_domain(fd)?;
            let kind = sockopt::socket_type(fd)?;
            let listening = kind != SocketType::DGRAM && sockopt::socket_acceptconn(fd)?;
            match (domain, kind, listening) {
                (AddressFamily::UNIX, SocketType::STREAM, true) => FdKind::UnixStreamListener,
                (AddressFamily::UNIX, SocketType::STREAM, false) => FdKind::UnixStream,
                (AddressFamily::UNIX, SocketType::SEQPACKET, true) => FdKind::UnixSeqpacketListener,
                (AddressFamily::UNIX, SocketType::SEQPACKET, false) => FdKind::UnixSeqpacket,
                (AddressFamily::UNIX, SocketType::DGRAM, _) => FdKind::UnixDatagram,
                (AddressFamily::INET | AddressFamily::INET6, SocketType::STREAM, l) => {
                    match sockopt::socket_protocol(fd)? {
                        Some(p) if p != rustix::net::ipproto::TCP => FdKind::OtherSocket,
                        _ if l => FdKind::TcpListener,
                        _ => FdKind::TcpStream,
                    }
                }
                (AddressFamily::INET | AddressFamily::INET6, SocketType::DGRAM, _) => {
                    match sockopt::socket_protocol(fd)? {
                        Some(p) if p != rustix::net::ipproto::UDP => FdKind::OtherSocket,
                        _ => FdKind::Udp,
                    }
                }
                _ => FdKind::OtherSocket,
            }
        }
        FileType::Fifo => FdKind::Fifo,
        FileType::RegularFile => {
            if rustix::fs::fstatfs(fd)?.f_type as u64 == MQUEUE_MAGIC {
                FdKind::MessageQueue
            } else {
                FdKind::File
            }
        }
        _ => FdKind::Other,
    })
}

/// `fd` if it is `expected`, else [`Error::WrongFdType`] (and the descriptor closed).
pub(crate) fn expect_kind(fd: &OwnedFd, expected: &[FdKind]) -> Result<FdKind> {
    let found = fd_kind(fd)?;
    if expected.contains(&found) { Ok(found) } else { Err(Error::WrongFdType { expected: expected[0], found }) }
}

/// What `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` say, for the process `pid`
/// (`sd_listen_fds(3)`): how many descriptors, from [`LISTEN_FDS_START`], are ours (0 when
/// the variables are unset or `LISTEN_PID` is another process), and the names, which
/// [`ListenNames`] splits. Values that do not parse, or more names than descriptors, are
/// [`Error::InvalidEnv`].
pub fn parse_listen_env<'n>(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&'n str>,
    pid: u32,
) -> Result<(usize, ListenNames<'n>)> {
    let none = (0, ListenNames { rest: None, left: 0 });
    let (Some(p), Some(n)) = (listen_pid, listen_fds) else { return Ok(none) };
    let p: u32 = p.parse().map_err(|_| Error::InvalidEnv)?;
    if p != pid {
        return Ok(none);
    }
    let n: usize = n.parse().map_err(|_| Error::InvalidEnv)?;
    if n > (i32::MAX - LISTEN_FDS_START) as usize {
        return Err(Error::InvalidEnv);
    }
    if let Some(names) = names
        && names.split(':').count() > n
        && !(n == 0 && names.is_empty())
    {
        return Err(Error::InvalidEnv);
    }
    Ok((n, ListenNames { rest: names, left: n }))
}

/// The names of socket-activated descriptors, in order: those of `LISTEN_FDNAMES`, then
/// `"unknown"` for descriptors it does not name (what libsystemd reports).
#[derive(Debug, Clone)]
pub struct ListenNames<'n> {
    rest: Option<&'n str>,
    left: usize,
}

impl<'n> Iterator for ListenNames<'n> {
    type Item = &'n str;

    fn next(&mut self) -> Option<&'n str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(match self.rest.take() {
            Some(s) => match s.split_once(':') {
                Some((name, rest)) => {
                    self.rest = Some(rest);
                    name
                }
                None => s,
            },
            None => "unknown",
        })
    }
}

/// One socket-activated descriptor, its name and what it is.
#[derive(Debug)]
pub struct ListenFd {
    name: heapless::String<FDNAME_MAX>,
    kind: FdKind,
    fd: OwnedFd,
}

impl ListenFd {
    /// Its `FileDescriptorName=` (`"unknown"` when systemd did not name it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it is.
    pub fn kind(&self) -> FdKind {
        self.kind
    }

    /// The descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for ListenFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The descriptors systemd passed, at most `N`, taken by [`listen_fds`]. Endpoints come out
/// by name: [`ListenFds::uds_seqpacket_listener`] and the like check the type first, and
/// leave a descriptor of the wrong type where it was.
#[derive(Debug)]
pub struct ListenFds<const N: usize = DEFAULT_LISTEN_FDS> {
    fds: heapless::Vec<ListenFd, N>,
}

impl<const N: usize> Default for ListenFds<N> {
    fn default() -> Self {
        ListenFds { fds: heapless::Vec::new() }
    }
}

/// Set once a process's socket-activated descriptors are taken: they have one owner.
#[cfg(feature = "std")]
static TAKEN: AtomicBool = AtomicBool::new(false);

impl<const N: usize> ListenFds<N> {
    /// Takes descriptors `LISTEN_FDS_START ..` named by `names` (see [`parse_listen_env`]):
    /// each must be open (else `EBADF`); each is made `FD_CLOEXEC` and classified.
    ///
    /// Once per process: the claim is recorded before anything is owned, so a second call
    /// (or a concurrent one) returns an empty set; a failure before ownership releases it.
    #[cfg(feature = "std")]
    fn take_from(count: usize, names: ListenNames<'_>) -> Result<ListenFds<N>> {
        if count > N {
            return Err(Error::TooManyFds { max: N });
        }
        if count == 0 || TAKEN.swap(true, Ordering::AcqRel) {
            return Ok(ListenFds::default());
        }
        for i in 0..count {
            // Checks that it is open (EBADF otherwise) before it is owned.
            if let Err(e) = crate::sys::set_cloexec_raw(LISTEN_FDS_START + i as i32) {
                TAKEN.store(false, Ordering::Release);
                return Err(e.into());
            }
        }
        let mut out = ListenFds::default();
        for (i, name) in names.enumerate() {
            // Ours: systemd passed it to this pid (LISTEN_PID), it is open (checked above),
            // and TAKEN makes this the only place in the process that takes it.
            let fd = crate::sys::OwnedFdRaw(LISTEN_FDS_START + i as i32).into_owned();
            let kind = fd_kind(&fd).unwrap_or(FdKind::Other);
            let mut n = heapless::String::new();
            // A longer name than systemd allows is cut (it cannot come from systemd).
            let cut = name.char_indices().map(|(i, c)| i + c.len_utf8()).take_while(|&e| e <= FDNAME_MAX).last();
            let _ = n.push_str(&name[..cut.unwrap_or(0)]);
            // `count <= N`: always room.
            let _ = out.fds.push(ListenFd { name: n, kind, fd });
        }
        Ok(out)
    }

    /// How many descriptors are left.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether none are left (always, when not socket-activated).
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The descriptors left, in the order systemd passed them.
    pub fn iter(&self) -> core::slice::Iter<'_, ListenFd> {
        self.fds.iter()
    }

    /// The kind of the first descriptor named `name`.
    pub fn kind(&self, name: &str) -> Option<FdKind> {
        self.fds.iter().find(|f| f.name == name).map(|f| f.kind)
    }

    /// Takes the first descriptor named `name`, whatever it is ([`Error::NotActivated`] if
    /// there is none).
    pub fn take(&mut self, name: &str) -> Result<OwnedFd> {
        let i = self.fds.iter().position(|f| f.name == name).ok_or(Error::NotActivated)?;
        Ok(self.fds.remove(i).fd)
    }

    /// Takes the first descriptor named `name` if it is one of `kinds` (else
    /// [`Error::WrongFdType`], naming `kinds[0]`, and it stays here).
    fn take_kind(&mut self, name: &str, kinds: &[FdKind]) -> Result<OwnedFd> {
        let i = self.fds.iter().position(|f| f.name == name).ok_or(Error::NotActivated)?;
        let found = self.fds[i].kind;
        if !kinds.contains(&found) {
            return Err(Error::WrongFdType { expected: kinds[0], found });
        }
        Ok(self.fds.remove(i).fd)
    }

    /// The listening Unix stream socket named `name` (`ListenStream=/path`).
    pub fn uds_stream_listener(&mut self, name: &str) -> Result<crate::uds::UdsListener> {
        crate::uds::UdsListener::from_fd(self.take_kind(name, &[FdKind::UnixStreamListener])?)
    }

    /// The listening Unix seqpacket socket named `name` (`ListenSequentialPacket=`).
    pub fn uds_seqpacket_listener(&mut self, name: &str) -> Result<crate::uds::UdsListener> {
        crate::uds::UdsListener::from_fd(self.take_kind(name, &[FdKind::UnixSeqpacketListener])?)
    }

    /// The Unix datagram socket named `name` (`ListenDatagram=/path`).
    pub fn uds_datagram(&mut self, name: &str) -> Result<crate::socket::PacketSocket> {
        crate::uds::datagram_from_fd(self.take_kind(name, &[FdKind::UnixDatagram])?)
    }

    /// The listening TCP socket named `name` (`ListenStream=<port>`).
    pub fn tcp_listener(&mut self, name: &str) -> Result<crate::net::TcpListener> {
        crate::net::TcpListener::from_fd(self.take_kind(name, &[FdKind::TcpListener])?)
    }

    /// The UDP socket named `name` (`ListenDatagram=<port>`).
    pub fn udp(&mut self, name: &str) -> Result<crate::socket::PacketSocket> {
        crate::net::udp_from_fd(self.take_kind(name, &[FdKind::Udp])?)
    }

    /// The FIFO named `name` (`ListenFIFO=`; systemd opens it read-write), as a reader.
    pub fn fifo<const M: usize>(&mut self, name: &str) -> Result<crate::pipe::StreamReader<M>> {
        crate::fifo::reader_from_fd(self.take_kind(name, &[FdKind::Fifo])?)
    }

    /// The POSIX message queue named `name` (`ListenMessageQueue=`).
    pub fn message_queue(&mut self, name: &str) -> Result<crate::mq::MessageQueue> {
        crate::mq::MessageQueue::from_fd(self.take_kind(name, &[FdKind::MessageQueue])?)
    }
}

impl<'a, const N: usize> IntoIterator for &'a ListenFds<N> {
    type Item = &'a ListenFd;
    type IntoIter = core::slice::Iter<'a, ListenFd>;

    fn into_iter(self) -> Self::IntoIter {
        self.fds.iter()
    }
}

impl<const N: usize> IntoIterator for ListenFds<N> {
    type Item = ListenFd;
    type IntoIter = heapless::vec::IntoIter<ListenFd, N, usize>;

    fn into_iter(self) -> Self::IntoIter {
        self.fds.into_iter()
    }
}

/// Takes the descriptors systemd passed to this process (`sd_listen_fds_with_names(0, ...)`):
/// empty when not socket-activated (no `LISTEN_FDS`, or `LISTEN_PID` is another process),
/// and on every call after the first that found some (each descriptor has one owner). Each
/// is made `FD_CLOEXEC`. More than `N` is [`Error::TooManyFds`] (nothing taken: call again
/// with a larger `N`); variables that do not parse are [`Error::InvalidEnv`].
///
/// The variables stay set (see the module docs; [`listen_fds_and_unset`] removes them).
#[cfg(feature = "std")]
pub fn listen_fds<const N: usize>() -> Result<ListenFds<N>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let (count, names) = parse_listen_env(pid.as_deref(), fds.as_deref(), names.as_deref(), our_pid())?;
    ListenFds::take_from(count, names)
}

/// [`listen_fds`], then removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the
/// environment (`sd_listen_fds(1)`), whatever the outcome.
///
/// # Safety
///
/// No other thread may read or write the environment during the call
/// (`std::env::remove_var`'s contract): call it from `main` before threads start.
#[cfg(feature = "std")]
#[allow(unsafe_code)]
pub unsafe fn listen_fds_and_unset<const N: usize>() -> Result<ListenFds<N>> {
    let r = listen_fds();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the caller's contract (no concurrent environment access).
        unsafe { std::env::remove_var(var) };
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'b>(states: &[State<'_>], buf: &'b mut [u8]) -> Result<&'b str> {
        let (n, _) = build_message(states, buf)?;
        Ok(core::str::from_utf8(&buf[..n]).unwrap())
    }

    #[test]
    fn messages_are_newline_separated_assignments() {
        let mut buf = [0u8; 256];
        let t = text(
            &[
                State::Ready,
                State::Status("ok: 3 clients"),
                State::Stopping,
                State::Watchdog,
                State::WatchdogTrigger,
                State::WatchdogUsec(Duration::from_millis(1500)),
                State::ExtendTimeout(Duration::from_secs(2)),
                State::MainPid(42),
                State::Errno(-5),
                State::FdStoreRemove { name: "conn-1" },
            ],
            &mut buf,
        )
        .unwrap();
        assert_eq!(
            t,
            "READY=1\nSTATUS=ok: 3 clients\nSTOPPING=1\nWATCHDOG=1\nWATCHDOG=trigger\nWATCHDOG_USEC=1500000\n\
             EXTEND_TIMEOUT_USEC=2000000\nMAINPID=42\nERRNO=-5\nFDSTOREREMOVE=1\nFDNAME=conn-1"
        );
        let before = monotonic_usec();
        let t = text(&[State::Reloading], &mut buf).unwrap();
        let usec: u64 = t.strip_prefix("RELOADING=1\nMONOTONIC_USEC=").unwrap().parse().unwrap();
        assert!(usec >= before && usec <= monotonic_usec());
    }

    #[test]
    fn bad_values_and_overflow_are_errors() {
        let mut buf = [0u8; 16];
        assert_eq!(text(&[State::Status("a\nREADY=1")], &mut buf), Err(Error::InvalidName));
        assert_eq!(
            text(&[State::Status("much longer than sixteen")], &mut buf).err(),
            Some(Error::TooLarge { len: 31, max: 16 })
        );
        for bad in ["", "a:b", "tab\there", "é", &"x".repeat(256)] {
            assert!(!fdname_is_valid(bad), "{bad:?}");
            assert_eq!(text(&[State::FdStoreRemove { name: bad }], &mut [0u8; 512]), Err(Error::InvalidName));
        }
        assert!(fdname_is_valid("stored conn #1") && fdname_is_valid(&"x".repeat(255)));
        let two = [State::FdStoreRemove { name: "a" }, State::FdStoreRemove { name: "b" }];
        assert_eq!(text(&two, &mut [0u8; 64]), Err(Error::InvalidName));
    }

    #[test]
    fn notify_socket_values() {
        assert!(notify_address("/run/systemd/notify").is_ok());
        assert!(notify_address("@/org/freedesktop/systemd1/notify/1").is_ok());
        for bad in ["", "@", "relative/path", "vsock:2:1234", &format!("/{}", "x".repeat(107))] {
            assert_eq!(notify_address(bad).err(), Some(Error::InvalidEnv), "{bad:?}");
        }
    }

    #[test]
    fn watchdog_variables() {
        assert_eq!(parse_watchdog(None, None, 7), Ok(None));
        assert_eq!(parse_watchdog(Some("100000"), None, 7), Ok(Some(Duration::from_millis(100))));
        assert_eq!(parse_watchdog(Some("100000"), Some("7"), 7), Ok(Some(Duration::from_millis(100))));
        assert_eq!(parse_watchdog(Some("100000"), Some("8"), 7), Ok(None));
        assert_eq!(parse_watchdog(Some("0"), None, 7), Ok(None));
        assert_eq!(parse_watchdog(Some("soon"), None, 7), Err(Error::InvalidEnv));
        assert_eq!(parse_watchdog(Some("1"), Some("x"), 7), Err(Error::InvalidEnv));
    }

    #[test]
    fn listen_variables() {
        fn names(r: Result<(usize, ListenNames<'_>)>) -> (usize, heapless::Vec<&str, 8>) {
            let (n, it) = r.unwrap();
            (n, it.collect())
        }
        assert_eq!(names(parse_listen_env(None, None, None, 7)).0, 0);
        assert_eq!(names(parse_listen_env(Some("8"), Some("2"), Some("a:b"), 7)).0, 0);
        let (n, v) = names(parse_listen_env(Some("7"), Some("3"), Some("cmd:data"), 7));
        assert_eq!((n, v.as_slice()), (3, &["cmd", "data", "unknown"][..]));
        let (n, v) = names(parse_listen_env(Some("7"), Some("2"), None, 7));
        assert_eq!((n, v.as_slice()), (2, &["unknown", "unknown"][..]));
        let (n, v) = names(parse_listen_env(Some("7"), Some("2"), Some(":b"), 7));
        assert_eq!((n, v.as_slice()), (2, &["", "b"][..]));
        assert_eq!(parse_listen_env(Some("7"), Some("1"), Some("a:b"), 7).err(), Some(Error::InvalidEnv));
        assert_eq!(parse_listen_env(Some("x"), Some("1"), None, 7).err(), Some(Error::InvalidEnv));
        assert_eq!(parse_listen_env(Some("7"), Some("-1"), None, 7).err(), Some(Error::InvalidEnv));
    }
}
