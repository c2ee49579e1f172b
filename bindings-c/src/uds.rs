//! Unix domain sockets carrying Ember frames: stream (reassembled), seqpacket and datagram
//! (one frame per message), at a path or in the abstract namespace (a name starting with
//! `@`), with the peer's credentials and file descriptors passed along with frames.

use core::ffi::{c_char, c_int};
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

use ember_linux::socket::{Creds, PacketSocket, StreamSocket};
use ember_linux::uds::{self, UdsListener, UnixName};
use ember_linux::{Endpoint, FrameReceiver, FrameSender};

use crate::error::*;

/// A stream socket (`SOCK_STREAM`): frames reassembled from the byte stream.
pub const EMBER_UDS_STREAM: c_int = 1;
/// A seqpacket socket (`SOCK_SEQPACKET`): connected, one frame per message.
pub const EMBER_UDS_SEQPACKET: c_int = 2;
/// A datagram socket (`SOCK_DGRAM`): one frame per message.
pub const EMBER_UDS_DGRAM: c_int = 3;
/// The largest frame a socket handle receives (and the smallest receive buffer).
pub const EMBER_SOCKET_MAX_FRAME: usize = 16384;
/// The most file descriptors one frame carries.
pub const EMBER_SOCKET_MAX_FDS: usize = 16;

/// A peer's credentials, as the kernel vouches for them.
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_creds {
    /// Process id (0 if the kernel cannot name it, e.g. from another pid namespace).
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl From<Creds> for ember_creds {
    fn from(c: Creds) -> ember_creds {
        ember_creds { pid: c.pid, uid: c.uid, gid: c.gid }
    }
}

// The handle is boxed whole: the stream's reassembly buffer lives in that one allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Sock {
    Stream(StreamSocket<EMBER_SOCKET_MAX_FRAME>),
    Packet(PacketSocket),
}

/// A connected (or bound datagram) Unix socket (opaque). Its fd is always `O_NONBLOCK`
/// inside; the mode the caller chose is `nonblocking`, and waits are `poll`s with the
/// caller's timeout, so a partial stream frame never blocks past it.
///
/// `Send` and `Sync`, like the socket it owns.
#[derive(Debug)]
pub struct ember_socket {
    s: Sock,
    nonblocking: bool,
}

/// A listening Unix socket (opaque); its socket file is removed by `ember_uds_listener_free`.
///
/// `Send` and `Sync`, like the listener it owns.
#[derive(Debug)]
pub struct ember_uds_listener {
    l: UdsListener,
    kind: c_int,
}

/// The moment `timeout_ms` from now on the monotonic clock (`None`: no limit).
fn deadline(timeout_ms: i64) -> Option<core::time::Duration> {
    timeout(timeout_ms).map(|d| ember_linux::poll::now().saturating_add(d))
}

/// Waits until `fd` is ready for `flags`, until `deadline` (`EMBER_ETIMEDOUT`) or the
/// installed canceler (`EMBER_ECANCELED`); a signal does not end it early.
fn wait_ready(
    fd: BorrowedFd<'_>,
    flags: rustix::event::PollFlags,
    deadline: Option<core::time::Duration>,
) -> Result<(), c_int> {
    ember_linux::poll::wait_fd_cancellable(fd, flags, deadline, crate::cancel::current()).map_err(|e| match e {
        ember_linux::Error::TimedOut => EMBER_ETIMEDOUT,
        e => code(e),
    })
}

impl ember_socket {
    fn fd(&self) -> BorrowedFd<'_> {
        match &self.s {
            Sock::Stream(s) => rustix::fd::AsFd::as_fd(s),
            Sock::Packet(s) => rustix::fd::AsFd::as_fd(s),
        }
    }

    /// A handle over `s`, its fd switched to `O_NONBLOCK`.
    fn new(s: Sock) -> Result<ember_socket, c_int> {
        let h = ember_socket { s, nonblocking: false };
        h.fd().set_nonblocking(true).map_err(code)?;
        Ok(h)
    }

    fn packet(mut p: PacketSocket) -> Result<ember_socket, c_int> {
        p.set_max_frame(EMBER_SOCKET_MAX_FRAME);
        ember_socket::new(Sock::Packet(p))
    }

    /// Runs `op` until it does not say `WouldBlock`, waiting for `flags` until `deadline`
    /// in between, or returns `EMBER_EAGAIN` at once in nonblocking mode.
    fn retry<T>(
        &mut self,
        flags: rustix::event::PollFlags,
        deadline: Option<core::time::Duration>,
        mut op: impl FnMut(&mut Sock) -> Result<T, ember_linux::Error>,
    ) -> Result<T, c_int> {
        if !self.nonblocking
            && let Some(c) = crate::cancel::current()
        {
            c.check().map_err(code)?;
        }
        loop {
            match op(&mut self.s) {
                Err(ember_linux::Error::WouldBlock) if self.nonblocking => return Err(EMBER_EAGAIN),
                Err(ember_linux::Error::WouldBlock) => wait_ready(self.fd(), flags, deadline)?,
                r => return r.map_err(code),
            }
        }
    }
}

impl ember_socket {
    /// One frame out, waiting for room until `deadline` (or the canceler) in blocking mode.
    fn send(&mut self, frame: &[u8], deadline: Option<core::time::Duration>) -> Result<(), c_int> {
        self.retry(rustix::event::PollFlags::OUT, deadline, |sock| match sock {
            Sock::Stream(st) => st.send_frame(frame),
            Sock::Packet(p) => p.send_frame(frame),
        })
    }
}

/// `name` as a Unix address: `@name` in the abstract namespace, else a path.
///
/// # Safety
///
/// `p` NULL or NUL-terminated.
unsafe fn address<'a>(p: *const c_char) -> Result<UnixName<'a>, c_int> {
    // SAFETY: the caller's contract, checked for NULL.
    let n = unsafe { c_name(p)? };
    Ok(match n.strip_prefix('@') {
        Some(a) => UnixName::Abstract(a.as_bytes()),
        None => UnixName::Path(n),
    })
}

/// Listens at `name` (a path, or `@name` in the abstract namespace) for `type`
/// (`EMBER_UDS_STREAM` or `EMBER_UDS_SEQPACKET`). A stale socket file at the path (nobody
/// listening) is replaced; a live one is `EMBER_EOS` (`EADDRINUSE`), and a file that is
/// not a socket is never removed. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or
/// misaligned pointer, a `name` empty, not UTF-8 or too long, an unknown `type`);
/// `EMBER_EOS` (`EADDRINUSE`; `EACCES`; `EMFILE`).
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_uds_listen(
    name: *const c_char,
    type_: c_int,
    out: *mut *mut ember_uds_listener,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract.
        let n = unsafe { address(name)? };
        let l = match type_ {
            EMBER_UDS_STREAM => UdsListener::bind_stream(n),
            EMBER_UDS_SEQPACKET => UdsListener::bind_seqpacket(n),
            _ => return Err(EMBER_EINVAL),
        }
        .map_err(code)?;
        // Accepts wait in poll, with the caller's timeout, never in accept().
        rustix::fd::AsFd::as_fd(&l).set_nonblocking(true).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_uds_listener { l, kind: type_ })));
        Ok(EMBER_OK)
    })
}

/// Accepts the next connection, waiting up to `timeout_ms`; the peer's credentials into
/// `*creds` unless NULL. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT` (none came in time; with
/// 0, none was waiting); `EMBER_EINVAL` (a NULL or misaligned pointer); `EMBER_EOS`
/// (`EMFILE`, `ENOMEM`, ...).
///
/// # Safety
///
/// `l` from `ember_uds_listen`; `out` a writable pointer; `creds` NULL or writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_uds_accept(
    l: *mut ember_uds_listener,
    timeout_ms: i64,
    out: *mut *mut ember_socket,
    creds: *mut ember_creds,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let creds = if creds.is_null() { None } else { Some(crate::error::out(creds)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let l = unsafe { arg(l)? };
        let end = deadline(timeout_ms);
        let (s, c) = loop {
            let r = if l.kind == EMBER_UDS_STREAM {
                l.l.accept_stream().map(|(s, c)| (Sock::Stream(s), c))
            } else {
                l.l.accept_seqpacket().map(|(s, c)| (Sock::Packet(s), c))
            };
            match r {
                // Nothing yet, or another process took it first: wait for the time left.
                Err(ember_linux::Error::WouldBlock) => {
                    wait_ready(rustix::fd::AsFd::as_fd(&l.l), rustix::event::PollFlags::IN, end)?
                }
                r => break r.map_err(code)?,
            }
        };
        let s = match s {
            Sock::Packet(p) => ember_socket::packet(p)?,
            s => ember_socket::new(s)?,
        };
        if let Some(out_creds) = creds {
            out_creds.set(c.into());
        }
        out.set(Box::into_raw(Box::new(s)));
        Ok(EMBER_OK)
    })
}

/// Connects to `name` (a path or `@abstract`) as `type`. `EMBER_EOS` with `ECONNREFUSED`
/// when nobody listens there (or there is no socket). A live listener whose backlog is
/// full makes this wait until it accepts (`ember_uds_connect_timeout` bounds the wait). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_EINVAL` (a NULL or
/// misaligned pointer, a `name` empty, not UTF-8 or too long, an unknown `type`);
/// `EMBER_EOS` (`ECONNREFUSED`, `EACCES`, `EMFILE`).
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_uds_connect(name: *const c_char, type_: c_int, out: *mut *mut ember_socket) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract.
        let n = unsafe { address(name)? };
        out.set(Box::into_raw(Box::new(connect(n, type_, None)?)));
        Ok(EMBER_OK)
    })
}

fn connect(n: UnixName<'_>, type_: c_int, timeout: Option<core::time::Duration>) -> Result<ember_socket, c_int> {
    let cancel = crate::cancel::current();
    match type_ {
        EMBER_UDS_STREAM => {
            ember_socket::new(Sock::Stream(uds::connect_stream_timeout(n, timeout, cancel).map_err(code)?))
        }
        EMBER_UDS_SEQPACKET => ember_socket::packet(uds::connect_seqpacket_timeout(n, timeout, cancel).map_err(code)?),
        _ => Err(EMBER_EINVAL),
    }
}

/// `ember_uds_connect` giving up after `timeout_ms` (`EMBER_FOREVER`: no limit; 0: only
/// if the listener takes it now): a listener that is alive but never accepts (its backlog
/// full) cannot block the caller for ever. The connect is retried after sleeps of 1 ms
/// doubling to 16 ms (a Unix socket has no connect in progress to wait on). Returns
/// `EMBER_OK`; `EMBER_ETIMEDOUT`; `EMBER_ECANCELED` (the installed canceler);
/// `EMBER_EINVAL` (a NULL or misaligned pointer, a `name` empty, not UTF-8 or too long, an
/// unknown `type`); `EMBER_EOS` (`ECONNREFUSED`, `EACCES`, `EMFILE`).
///
/// # Safety
///
/// `name` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_uds_connect_timeout(
    name: *const c_char,
    type_: c_int,
    timeout_ms: i64,
    out: *mut *mut ember_socket,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract.
        let n = unsafe { address(name)? };
        out.set(Box::into_raw(Box::new(connect(n, type_, timeout(timeout_ms))?)));
        Ok(EMBER_OK)
    })
}

/// A datagram socket bound at `name` (receives from anyone who sends there), or, with
/// `name` NULL, an unbound one for sending with `ember_socket_send_to`. Returns
/// `EMBER_OK`; `EMBER_EINVAL` (`out` NULL or misaligned, `name` empty, not UTF-8 or too
/// long for an address); `EMBER_EOS` (`EADDRINUSE`: a live socket or another file is at
/// the path; `EACCES`; `EMFILE`).
///
/// # Safety
///
/// `name` NULL or a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_uds_dgram(name: *const c_char, out: *mut *mut ember_socket) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let s = if name.is_null() {
            uds::unbound_datagram().map_err(code)?
        } else {
            // SAFETY: the caller's contract.
            uds::bind_datagram(unsafe { address(name)? }).map_err(code)?
        };
        out.set(Box::into_raw(Box::new(ember_socket::packet(s)?)));
        Ok(EMBER_OK)
    })
}

/// Sends one whole frame, waiting while the socket is full (`EMBER_EAGAIN` instead in
/// nonblocking mode). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_EINVAL` (a NULL or misaligned pointer);
/// `EMBER_EPEERGONE` if the peer closed; `EMBER_ETOOBIG` over the socket's message size;
/// `EMBER_EBADMSG` if `frame` is not exactly one frame; `EMBER_EOS` (another `send`
/// failure).
///
/// # Safety
///
/// `s` a socket handle; `frame` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_send(s: *mut ember_socket, frame: *const u8, len: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (s, frame) = unsafe { (arg_mut(s)?, bytes(frame, len)?) };
        s.send(frame, None)?;
        Ok(EMBER_OK)
    })
}

/// `ember_socket_send` waiting at most `timeout_ms` for room (`EMBER_FOREVER`: no limit;
/// 0: only if there is room now), so a peer that stopped reading cannot block the sender
/// for ever. A stream frame that started to go out is finished within 2 s (else cut short;
/// the receiver resynchronises). Returns `EMBER_OK`; `EMBER_ETIMEDOUT` (nothing sent);
/// `EMBER_ECANCELED` (the installed canceler, nothing sent); `EMBER_EAGAIN` in nonblocking
/// mode; `EMBER_EINVAL` (a NULL or misaligned pointer); `EMBER_EPEERGONE`;
/// `EMBER_ETOOBIG`; `EMBER_EBADMSG`; `EMBER_EUNCHECKED`; `EMBER_EOS`.
///
/// # Safety
///
/// `s` a socket handle; `frame` `len` readable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_send_timeout(
    s: *mut ember_socket,
    frame: *const u8,
    len: usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (s, frame) = unsafe { (arg_mut(s)?, bytes(frame, len)?) };
        s.send(frame, deadline(timeout_ms))?;
        Ok(EMBER_OK)
    })
}

/// Sends one frame to the datagram socket at `name` (path or `@abstract`), waiting while
/// its queue is full (`EMBER_EAGAIN` instead in nonblocking mode). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent);
/// `EMBER_EINVAL` (a NULL or misaligned pointer, a `name` empty, not UTF-8 or too long for
/// an address); `EMBER_ETOOBIG` over the socket's message size; `EMBER_EBADMSG` if `frame` is
/// not exactly one frame; `EMBER_EOS` (`ECONNREFUSED` or `ENOENT`: nobody there;
/// `EOPNOTSUPP` on a stream socket).
///
/// # Safety
///
/// `s` from `ember_uds_dgram`; `frame` `len` readable bytes; `name` NUL-terminated.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_send_to(
    s: *mut ember_socket,
    frame: *const u8,
    len: usize,
    name: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (s, frame, n) = unsafe { (arg_mut(s)?, bytes(frame, len)?, address(name)?) };
        let addr = match n {
            UnixName::Path(path) => rustix::net::SocketAddrUnix::new(path),
            UnixName::Abstract(a) => rustix::net::SocketAddrUnix::new_abstract_name(a),
        }
        .map_err(|_| EMBER_EINVAL)?;
        s.retry(rustix::event::PollFlags::OUT, None, |sock| match sock {
            Sock::Packet(p) => p.send_frame_to(frame, &addr),
            Sock::Stream(_) => Err(ember_linux::Error::Os(rustix::io::Errno::OPNOTSUPP)),
        })?;
        Ok(EMBER_OK)
    })
}

/// Receives one frame into `buf` (`cap` bytes, at least `EMBER_SOCKET_MAX_FRAME`), waiting
/// up to `timeout_ms`. Returns `EMBER_OK` with its length in `*len`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`;
/// `EMBER_EAGAIN` in nonblocking mode; `EMBER_EPEERGONE` when the peer closed;
/// `EMBER_EBADMSG` for a damaged frame (dropped; the next receive goes on);
/// `EMBER_ETOOBIG` for a frame over `EMBER_SOCKET_MAX_FRAME` (dropped);
/// `EMBER_ENOSPC` for a small buffer; `EMBER_EINVAL` (a NULL or misaligned pointer);
/// `EMBER_EOS`.
///
/// # Safety
///
/// `s` a socket handle; `buf` `cap` writable bytes; `len` a writable `size_t`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_recv(
    s: *mut ember_socket,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let len = crate::error::out(len)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (s, buf) = unsafe { (arg_mut(s)?, bytes_mut(buf, cap)?) };
        let n = s.retry(rustix::event::PollFlags::IN, deadline(timeout_ms), |sock| match sock {
            Sock::Stream(st) => st.recv_frame(buf),
            Sock::Packet(p) => p.recv_frame(buf),
        })?;
        len.set(n);
        Ok(EMBER_OK)
    })
}

/// Sends one frame with `nfds` file descriptors attached (seqpacket and datagram sockets;
/// at most `EMBER_SOCKET_MAX_FDS`). The receiver gets its own copies; ours stay open.
/// Waits while the socket is full (`EMBER_EAGAIN` instead in nonblocking mode). Returns
/// `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_EINVAL` (a NULL or misaligned pointer, more than
/// `EMBER_SOCKET_MAX_FDS` fds or a negative one, a stream socket); `EMBER_EPEERGONE` if the
/// peer closed; `EMBER_ETOOBIG` over the socket's message size; `EMBER_EBADMSG` if `frame`
/// is not exactly one frame; `EMBER_EOS` (another `sendmsg` failure).
///
/// # Safety
///
/// `s` a socket handle; `frame` `len` readable bytes; `fds` `nfds` readable `int`s, open.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_send_fds(
    s: *mut ember_socket,
    frame: *const u8,
    len: usize,
    fds: *const c_int,
    nfds: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (s, frame) = unsafe { (arg_mut(s)?, bytes(frame, len)?) };
        if nfds > EMBER_SOCKET_MAX_FDS || (nfds > 0 && (fds.is_null() || !fds.is_aligned())) {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: `nfds` readable ints (the caller's contract), checked non-NULL above.
        let raw = if nfds == 0 { &[][..] } else { unsafe { core::slice::from_raw_parts(fds, nfds) } };
        if raw.iter().any(|&fd| fd < 0) {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: open descriptors (the caller's contract), borrowed for this call only.
        let borrowed: heapless::Vec<BorrowedFd<'_>, EMBER_SOCKET_MAX_FDS> =
            raw.iter().map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) }).collect();
        if !matches!(s.s, Sock::Packet(_)) {
            return Err(EMBER_EINVAL);
        }
        s.retry(rustix::event::PollFlags::OUT, None, |sock| match sock {
            Sock::Packet(p) => p.send_frame_with_fds(frame, &borrowed),
            Sock::Stream(_) => Err(ember_linux::Error::Os(rustix::io::Errno::OPNOTSUPP)),
        })?;
        Ok(EMBER_OK)
    })
}

/// Receives one frame and the file descriptors that came with it, waiting up to
/// `timeout_ms`: up to `max_fds` (at most `EMBER_SOCKET_MAX_FDS` are taken) into `fds` (the
/// caller owns and closes them), their number into `*nfds`. A message with more
/// descriptors than that is refused whole (`EMBER_ETOOBIG`; its descriptors closed), so
/// nothing leaks. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled: nothing taken or sent); `EMBER_ETIMEDOUT`; `EMBER_EAGAIN` in nonblocking
/// mode; `EMBER_EPEERGONE` when the peer closed; `EMBER_EBADMSG` for a damaged frame
/// (dropped); `EMBER_ETOOBIG` (too many fds, or a frame over `EMBER_SOCKET_MAX_FRAME`);
/// `EMBER_ENOSPC` for a small buffer; `EMBER_EINVAL` (a NULL or misaligned pointer, a
/// stream socket); `EMBER_EOS`.
///
/// # Safety
///
/// `s` a socket handle; `buf` `cap` writable bytes; `len`, `nfds` writable `size_t`s;
/// `fds` `max_fds` writable `int`s.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_recv_fds(
    s: *mut ember_socket,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    fds: *mut c_int,
    max_fds: usize,
    nfds: *mut usize,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let (len, nfds) = (crate::error::out(len)?, crate::error::out(nfds)?);
        if max_fds > 0 && (fds.is_null() || !fds.is_aligned()) {
            return Err(EMBER_EINVAL);
        }
        let max_fds = max_fds.min(EMBER_SOCKET_MAX_FDS);
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (s, buf) = unsafe { (arg_mut(s)?, bytes_mut(buf, cap)?) };
        if !matches!(s.s, Sock::Packet(_)) {
            return Err(EMBER_EINVAL);
        }
        let mut slots: [Option<OwnedFd>; EMBER_SOCKET_MAX_FDS] = Default::default();
        let got = s.retry(rustix::event::PollFlags::IN, deadline(timeout_ms), |sock| match sock {
            Sock::Packet(p) => p.recv_frame_with_fds(buf, &mut slots[..max_fds]),
            Sock::Stream(_) => Err(ember_linux::Error::Os(rustix::io::Errno::OPNOTSUPP)),
        })?;
        for (i, fd) in slots.into_iter().take(got.fds).enumerate() {
            if let Some(fd) = fd {
                // SAFETY: `max_fds` writable ints (the caller's contract); i < got.fds <= max_fds.
                unsafe { fds.add(i).write(fd.into_raw_fd()) };
            }
        }
        len.set(got.len);
        nfds.set(got.fds);
        Ok(EMBER_OK)
    })
}

/// The credentials of the connected peer (`SO_PEERCRED`, as they were when it connected).
/// Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer); `EMBER_EOS`
/// (`getsockopt` failed).
///
/// # Safety
///
/// `s` a socket handle; `out` a writable `ember_creds`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_peer_creds(s: *const ember_socket, out: *mut ember_creds) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg(s)? };
        out.set(ember_linux::socket::peer_credentials(s.fd()).map_err(code)?.into());
        Ok(EMBER_OK)
    })
}

/// Switches nonblocking mode: receives and sends return `EMBER_EAGAIN` instead of waiting
/// (a stream frame already half sent is still finished). Returns `EMBER_OK`, or
/// `EMBER_EINVAL` (a NULL or misaligned handle).
///
/// # Safety
///
/// `s` a socket handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_set_nonblocking(s: *mut ember_socket, on: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        s.nonblocking = on != 0;
        Ok(EMBER_OK)
    })
}

/// The socket's fd, for `poll`/`epoll` (still owned by the handle; it is `O_NONBLOCK`). A
/// stream socket buffers what it reads: after `POLLIN`, in nonblocking mode, receive until
/// `EMBER_EAGAIN`. `EMBER_EINVAL` for a NULL or misaligned handle.
///
/// # Safety
///
/// `s` a socket handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_fd(s: *const ember_socket) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        Ok(unsafe { arg(s)? }.fd().as_raw_fd())
    })
}

/// Frees the handle but keeps its connection: its fd goes to `*fd`, now the caller's (in
/// blocking mode again), e.g. for `ember_rpc_server_from_socket` (a bound datagram socket's
/// file is removed). A stream socket's bytes
/// already read into the handle are dropped: hand a stream socket over before its first
/// receive. Returns `EMBER_OK` (the handle is gone), or `EMBER_EINVAL` (NULL pointers; the
/// handle is untouched).
///
/// # Safety
///
/// `s` a socket handle, not used after `EMBER_OK`; `fd` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_into_fd(s: *mut ember_socket, fd: *mut c_int) -> c_int {
    guard(|| {
        let fd = crate::error::out(fd)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        unsafe { arg(s)? };
        // SAFETY: made by `Box::into_raw` here; the caller gives it up.
        let b = unsafe { Box::from_raw(s) };
        let owned = match b.s {
            Sock::Stream(st) => st.into_fd(),
            Sock::Packet(p) => p.into_fd(),
        };
        let _ = rustix::io::ioctl_fionbio(&owned, false);
        fd.set(std::os::fd::IntoRawFd::into_raw_fd(owned));
        Ok(EMBER_OK)
    })
}

/// The listener's fd, for `poll`/`epoll`, or `EMBER_EINVAL` (a NULL or misaligned handle).
///
/// # Safety
///
/// `l` from `ember_uds_listen`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_uds_listener_fd(l: *const ember_uds_listener) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        Ok(rustix::fd::AsFd::as_fd(&unsafe { arg(l)? }.l).as_raw_fd())
    })
}

/// Closes the socket (NULL is ignored); a bound datagram socket's file is removed.
///
/// # Safety
///
/// `s` a socket handle, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_free(s: *mut ember_socket) {
    if !s.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// Closes the listener and removes its socket file (if it is still the one it made).
///
/// # Safety
///
/// `l` from `ember_uds_listen`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_uds_listener_free(l: *mut ember_uds_listener) {
    if !l.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(l) });
    }
}

/// Sets the socket's integrity: `EMBER_INTEGRITY_CHECKED` makes the sends refuse frames
/// with `EMBER_FLAG_UNCHECKED` (`EMBER_EUNCHECKED`, nothing sent); with
/// `EMBER_INTEGRITY_UNCHECKED` (the default on a Unix socket) either kind goes. Returns
/// `EMBER_OK`, or `EMBER_EINVAL` for a NULL handle or another value.
///
/// # Safety
///
/// `s` a socket handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_set_integrity(s: *mut ember_socket, integrity: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        let i = crate::frame::integrity(integrity)?;
        match &mut s.s {
            Sock::Stream(st) => st.set_integrity(i),
            Sock::Packet(p) => p.set_integrity(i),
        }
        Ok(EMBER_OK)
    })
}

/// The socket's integrity setting (`EMBER_INTEGRITY_*`), or `EMBER_EINVAL` for NULL.
///
/// # Safety
///
/// `s` a socket handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_integrity(s: *const ember_socket) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg(s)? };
        let i = match &s.s {
            Sock::Stream(st) => st.integrity(),
            Sock::Packet(p) => p.integrity(),
        };
        Ok(crate::frame::integrity_code(i))
    })
}

/// Makes the socket refuse (`on` != 0) or accept (`on` == 0, the default) received frames
/// whose payload is not covered by the checksum: `EMBER_EUNCHECKED`, the frame skipped.
/// Returns `EMBER_OK`, or `EMBER_EINVAL` for NULL.
///
/// # Safety
///
/// `s` a socket handle.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_socket_require_checked(s: *mut ember_socket, on: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        match &mut s.s {
            Sock::Stream(st) => st.require_checked(on != 0),
            Sock::Packet(p) => p.require_checked(on != 0),
        }
        Ok(EMBER_OK)
    })
}
