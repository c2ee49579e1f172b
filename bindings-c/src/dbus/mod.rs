//! D-Bus: a connection to a bus, method calls with arguments built by `ember_dbus_args_*`
//! and replies read with `ember_dbus_iter_*`, signals (emit, match, receive), bus names,
//! and serving objects from a table of methods with C callbacks.
//!
//! A connection holds two buffers, allocated when it connects: 64 KiB each with
//! `ember_dbus_connect`, the caller's sizes (256 bytes to 128 MiB) with
//! `ember_dbus_connect_sized`; the receive buffer's size is the largest message it takes in,
//! the build buffer's the largest it sends. A received message, the strings it points to and the iterators over it borrow the
//! receive buffer: they are valid until the next receive, call or `ember_dbus_process` on
//! that connection. Nothing is allocated after `_new`.

pub mod args;
pub mod iter;
pub mod listener;
pub mod serve;

use core::ffi::{c_char, c_int, c_void};
use core::time::Duration;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd};

use ember_core::dbus::{Builder, Message, MessageType};
use ember_linux::dbus::{CallError, ConnectionWith, Heap, RequestNameReply};

pub use args::ember_dbus_args;
pub use iter::ember_dbus_iter;

use crate::error::*;

/// The size of each buffer of a connection made by `ember_dbus_connect`: the largest
/// message it sends or receives.
pub const EMBER_DBUS_MAX_MESSAGE: usize = 65536;
/// The specification's largest message (128 MiB): the largest buffer
/// `ember_dbus_connect_sized` takes.
pub const EMBER_DBUS_SPEC_MAX_MESSAGE: usize = 128 * 1024 * 1024;
/// The smallest buffer `ember_dbus_connect_sized` takes.
pub const EMBER_DBUS_MIN_BUFFER: usize = 256;

/// A method call.
pub const EMBER_DBUS_METHOD_CALL: c_int = 1;
/// A method's reply.
pub const EMBER_DBUS_METHOD_RETURN: c_int = 2;
/// An error reply.
pub const EMBER_DBUS_ERROR: c_int = 3;
/// A signal.
pub const EMBER_DBUS_SIGNAL: c_int = 4;

/// `ember_dbus_request_name` flag: let another connection take the name over.
pub const EMBER_DBUS_NAME_ALLOW_REPLACEMENT: u32 = 0x1;
/// `ember_dbus_request_name` flag: take the name over if its owner allows it.
pub const EMBER_DBUS_NAME_REPLACE_EXISTING: u32 = 0x2;
/// `ember_dbus_request_name` flag: fail instead of queueing.
pub const EMBER_DBUS_NAME_DO_NOT_QUEUE: u32 = 0x4;
/// `ember_dbus_request_name` reply: we own the name now.
pub const EMBER_DBUS_NAME_PRIMARY_OWNER: c_int = 1;
/// `ember_dbus_request_name` reply: someone else owns it; we are queued.
pub const EMBER_DBUS_NAME_IN_QUEUE: c_int = 2;
/// `ember_dbus_request_name` reply: someone else owns it (and we asked not to queue).
pub const EMBER_DBUS_NAME_EXISTS: c_int = 3;
/// `ember_dbus_request_name` reply: we owned it already.
pub const EMBER_DBUS_NAME_ALREADY_OWNER: c_int = 4;

/// A connection to a bus (opaque).
///
/// `Send`, not `Sync`: the busy flag is a `Cell`; one thread at a time.
#[derive(Debug)]
pub struct ember_dbus {
    /// Set while an export uses the connection: a callback it runs (a handler, `on_other`)
    /// that calls back into the same connection gets `EMBER_EBUSY` instead of a second
    /// `&mut` to it.
    busy: core::cell::Cell<bool>,
    /// The generation of the canceler installed (`ember_set_canceler`) when the connection
    /// last looked: when it changes, the connection takes the new one's eventfd.
    cancel_src: core::cell::Cell<usize>,
    c: ConnectionWith<Heap>,
}

/// The connection, borrowed by one export; released on drop.
pub(crate) struct Entered<'a> {
    busy: &'a core::cell::Cell<bool>,
    pub(crate) c: &'a mut ConnectionWith<Heap>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.busy.set(false);
    }
}

/// Borrows the connection at `d`: `EMBER_EINVAL` for NULL or misaligned, `EMBER_EBUSY`
/// while another export uses it (a callback calling back into its own connection). Only
/// the fields are borrowed, never the whole struct, so the check itself aliases nothing.
///
/// # Safety
///
/// A non-NULL, aligned `d` from `ember_dbus_connect`, not freed.
pub(crate) unsafe fn enter<'a>(d: *mut ember_dbus) -> Result<Entered<'a>, c_int> {
    if d.is_null() || !d.is_aligned() {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: a live connection by the caller's contract; a shared borrow of the `Cell`
    // field only, which no `&mut` ever covers (see below).
    let busy = unsafe { &*core::ptr::addr_of!((*d).busy) };
    if busy.replace(true) {
        return Err(EMBER_EBUSY);
    }
    // SAFETY: live by the caller's contract; the flag just taken guarantees no other
    // borrow of this field is alive (every export goes through `enter`).
    let c = unsafe { &mut *core::ptr::addr_of_mut!((*d).c) };
    let entered = Entered { busy, c };
    // SAFETY: as for `busy`: a shared borrow of a `Cell` field no `&mut` covers.
    let src = unsafe { &*core::ptr::addr_of!((*d).cancel_src) };
    let now = crate::cancel::generation();
    if src.get() != now {
        // The installed canceler changed: watch the new one (one `dup` per change).
        entered.c.set_canceler(crate::cancel::current()).map_err(code)?;
        src.set(now);
    }
    Ok(entered)
}

/// A received message: its header, and an iterator over its body. The strings point into
/// the connection's receive buffer (NUL-terminated; NULL when the header has no such
/// field) and, like `body`, are valid until the next receive, call or process on that
/// connection.
///
/// Neither `Send` nor `Sync`: its strings are raw pointers into the connection's buffer.
#[repr(C)]
pub struct ember_dbus_message {
    /// `EMBER_DBUS_METHOD_CALL`, `_METHOD_RETURN`, `_ERROR` or `_SIGNAL`.
    pub kind: c_int,
    /// The header's flags (`0x1`: no reply expected).
    pub flags: u32,
    /// Its serial.
    pub serial: u32,
    /// The serial it answers (0 if none).
    pub reply_serial: u32,
    /// How many fds came with it (take them with `ember_dbus_take_fd`).
    pub unix_fds: u32,
    /// The object path.
    pub path: *const c_char,
    /// The interface.
    pub interface: *const c_char,
    /// The member (method or signal name).
    pub member: *const c_char,
    /// The error name (error replies).
    pub error_name: *const c_char,
    /// The sender's unique name.
    pub sender: *const c_char,
    /// The destination.
    pub destination: *const c_char,
    /// The body's signature, NUL-terminated (a copy).
    pub signature: [c_char; 256],
    /// The body's values.
    pub body: ember_dbus_iter,
}

impl core::fmt::Debug for ember_dbus_message {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sig = self.signature.iter().take_while(|c| **c != 0).count();
        // SAFETY: `c_char` and `u8` have the same size and alignment; `sig` is in bounds.
        let sig = unsafe { core::slice::from_raw_parts(self.signature.as_ptr().cast::<u8>(), sig) };
        f.debug_struct("ember_dbus_message")
            .field("kind", &self.kind)
            .field("flags", &self.flags)
            .field("serial", &self.serial)
            .field("reply_serial", &self.reply_serial)
            .field("unix_fds", &self.unix_fds)
            .field("signature", &core::str::from_utf8(sig).unwrap_or("?"))
            .finish_non_exhaustive()
    }
}

/// Called by `ember_dbus_call` for each message that arrives while it waits for its reply
/// (signals, other calls); the message (and its `body` iterator, which the callback may
/// use) is valid during the callback only. The callback may not use the connection
/// (`EMBER_EBUSY`).
pub type ember_dbus_message_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, message: *mut ember_dbus_message)>;

/// Fills `out` from `m`.
pub(crate) fn describe(m: &Message<'_>, out: &Out<ember_dbus_message>) {
    fn ptr(s: Option<&str>) -> *const c_char {
        // A header string is followed by its NUL in the message: a C string.
        s.map_or(core::ptr::null(), |s| s.as_ptr().cast())
    }
    let mut signature = [0 as c_char; 256];
    for (d, s) in signature.iter_mut().zip(m.signature().as_str().bytes()) {
        *d = s as c_char;
    }
    let mut body = core::mem::MaybeUninit::<ember_dbus_iter>::uninit();
    iter::ember_dbus_iter::init(&Out::local(&mut body), iter::State::Values(m.body()));
    out.set(ember_dbus_message {
        kind: match m.message_type() {
            MessageType::MethodCall => EMBER_DBUS_METHOD_CALL,
            MessageType::MethodReturn => EMBER_DBUS_METHOD_RETURN,
            MessageType::Error => EMBER_DBUS_ERROR,
            MessageType::Signal => EMBER_DBUS_SIGNAL,
        },
        flags: m.flags() as u32,
        serial: m.serial(),
        reply_serial: m.reply_serial().unwrap_or(0),
        unix_fds: m.unix_fds(),
        path: ptr(m.path().map(|p| p.as_str())),
        interface: ptr(m.interface()),
        member: ptr(m.member()),
        error_name: ptr(m.error_name()),
        sender: ptr(m.sender()),
        destination: ptr(m.destination()),
        signature,
        // SAFETY: initialised by `init` just above.
        body: unsafe { body.assume_init() },
    });
}

fn ms(timeout_ms: i64) -> Duration {
    timeout(timeout_ms).unwrap_or(Duration::MAX)
}

/// A string argument that may be NULL.
///
/// # Safety
///
/// `p` NULL or NUL-terminated.
unsafe fn opt_name<'a>(p: *const c_char) -> Result<Option<&'a str>, c_int> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: the caller's contract.
        Ok(Some(unsafe { c_name(p)? }))
    }
}

/// The body of `args` (may be NULL: no arguments), checked, with its fds.
fn body_of(args: Option<&ember_dbus_args>) -> Result<(&str, &[u8], &[c_int]), c_int> {
    match args {
        None => Ok(("", &[], &[])),
        Some(a) => {
            let sig = a.checked()?.as_str();
            Ok((sig, a.body(), &a.fds[..a.nfds]))
        }
    }
}

/// Sends a message built by `b` with the body of `args`; returns its serial.
fn send(d: &mut Entered<'_>, b: Builder<'_>, args: Option<&ember_dbus_args>) -> Result<u32, c_int> {
    let (sig, body, raw) = body_of(args)?;
    let sig = ember_core::dbus::Signature::new(sig).map_err(|_| EMBER_EINVAL)?;
    let Some(&last) = raw.last() else {
        return d.c.send(b, sig, |w| w.marshalled(body), &[]).map_err(send_code);
    };
    // Slots past the fds given repeat the last one; only the first `raw.len()` are sent.
    let fds: [BorrowedFd<'_>; args::MAX_FDS] = core::array::from_fn(|i| {
        // SAFETY: open fds by `ember_dbus_args_add_unix_fd`'s contract, for this call.
        unsafe { BorrowedFd::borrow_raw(raw.get(i).copied().unwrap_or(last)) }
    });
    let fds = &fds[..raw.len()];
    d.c.send(b, sig, |w| w.marshalled(body), fds).map_err(send_code)
}

/// Connects to the bus at `address` (a D-Bus address such as
/// `unix:path=/run/dbus/system_bus_socket`; NULL: the session bus of
/// `DBUS_SESSION_BUS_ADDRESS`), authenticates (`EXTERNAL`) and says `Hello`, waiting at
/// most 10 s, with two 64 KiB buffers (`EMBER_DBUS_MAX_MESSAGE`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL `out`, a bad address, or no session bus address set);
/// `EMBER_EOS` (no bus there: `ENOENT`, `ECONNREFUSED`; authentication refused:
/// `EACCES`); `EMBER_ETIMEDOUT`; `EMBER_EPEERGONE` (the bus hung up during the
/// handshake); `EMBER_EBADMSG` (a malformed answer to `Hello`).
///
/// # Safety
///
/// `address` NULL or a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_connect(address: *const c_char, out: *mut *mut ember_dbus) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        ember_dbus_connect_sized(
            address,
            EMBER_DBUS_MAX_MESSAGE,
            EMBER_DBUS_MAX_MESSAGE,
            EMBER_DBUS_MAX_MESSAGE,
            10_000,
            out,
        )
    }
}

/// `ember_dbus_connect` with the caller's buffer sizes and time limit: `rx_size` bytes to
/// receive into (the largest message this connection takes in; a larger one is refused
/// with `EMBER_ETOOBIG`, see `ember_dbus_last_refused`), `tx_size` bytes to build in (the
/// largest message it sends), each from `EMBER_DBUS_MIN_BUFFER` (256) to
/// `EMBER_DBUS_SPEC_MAX_MESSAGE` (128 MiB), and a queue of `queue_size` bytes (0 to 128
/// MiB; each message takes its length rounded up to 8, plus 16) for the messages that
/// arrive while a call waits and the replies of calls in flight, all allocated here once;
/// connecting, authenticating and `Hello` within `timeout_ms` (negative: no limit).
/// `ember_dbus_connect`'s queue is 64 KiB. Returns `EMBER_OK`; `EMBER_EINVAL` (sizes out of
/// range, a NULL `out`, a bad address, or no session bus address set); `EMBER_EOS` (no bus
/// there: `ENOENT`, `ECONNREFUSED`; authentication refused: `EACCES`); `EMBER_ETIMEDOUT`;
/// `EMBER_EPEERGONE` (the bus hung up during the handshake); `EMBER_EBADMSG` (a malformed
/// answer to `Hello`); `EMBER_ECANCELED` (the canceler installed with
/// `ember_set_canceler` was cancelled before or during the connect and handshake).
///
/// # Safety
///
/// As `ember_dbus_connect`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_connect_sized(
    address: *const c_char,
    rx_size: usize,
    tx_size: usize,
    queue_size: usize,
    timeout_ms: i64,
    out: *mut *mut ember_dbus,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract.
        let address = unsafe { opt_name(address)? };
        let range = EMBER_DBUS_MIN_BUFFER..=EMBER_DBUS_SPEC_MAX_MESSAGE;
        if !range.contains(&rx_size) || !range.contains(&tx_size) || queue_size > EMBER_DBUS_SPEC_MAX_MESSAGE {
            return Err(EMBER_EINVAL);
        }
        let address = match address {
            Some(a) => std::borrow::Cow::Borrowed(a),
            None => std::env::var("DBUS_SESSION_BUS_ADDRESS").map_err(|_| EMBER_EINVAL)?.into(),
        };
        // The installed canceler (its generation first: a change during the connect is
        // noticed by the next call) ends the connect and the handshake too.
        let generation = crate::cancel::generation();
        let bufs = Heap::new(rx_size, tx_size).with_queue(queue_size);
        let c = match crate::cancel::current() {
            Some(cancel) => ConnectionWith::connect_cancellable(bufs, &address, ms(timeout_ms), cancel),
            None => ConnectionWith::connect_with(bufs, &address, ms(timeout_ms)),
        }
        .map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_dbus {
            busy: core::cell::Cell::new(false),
            cancel_src: core::cell::Cell::new(generation),
            c,
        })));
        Ok(EMBER_OK)
    })
}

/// Closes the connection (the bus releases its names and matches).
///
/// # Safety
///
/// `d` NULL or from `ember_dbus_connect`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_free(d: *mut ember_dbus) {
    if !d.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(d) });
    }
}

/// Our unique name on the bus (`:1.42`), copied with its NUL into `buf` (`cap` bytes; 65
/// suffice). Returns `EMBER_OK`; `EMBER_ENOSPC` if it does not fit; `EMBER_EBUSY` from a
/// callback of this connection; `EMBER_EINVAL` (a NULL or misaligned pointer).
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `buf` `cap` writable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_unique_name(d: *mut ember_dbus, buf: *mut c_char, cap: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, buf) = unsafe { (enter(d)?, bytes_mut(buf.cast(), cap)?) };
        args::copy_cstr(d.c.unique_name().as_bytes(), buf)
    })
}

/// The connection's socket (poll it for readability, then receive or process with a zero
/// timeout until `EMBER_ETIMEDOUT`: several messages may arrive in one read), or
/// `EMBER_EINVAL`, or `EMBER_EBUSY` from a callback of this connection.
///
/// # Safety
///
/// `d` NULL or from `ember_dbus_connect`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_fd(d: *mut ember_dbus) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| Ok(unsafe { enter(d)? }.c.as_fd().as_raw_fd()))
}

/// Calls `member` (of `interface`, may be NULL) on `destination`'s object at `path` with
/// `args` (NULL: none), and waits up to `timeout_ms` for the reply, which goes to `*reply`
/// (may be NULL). Messages that arrive meanwhile go to `on_other` (may be NULL: they are
/// queued for the next `ember_dbus_recv` or `ember_dbus_process`; replies to calls in
/// flight are kept for them either way).
///
/// Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); `EMBER_EREMOTE` when the peer answered with a D-Bus error
/// (`reply->error_name`, and its message as the body's first string); `EMBER_ETIMEDOUT`;
/// `EMBER_EINVAL` (a NULL or invalid name, unclosed containers in `args`, or values that do
/// not match their signature); `EMBER_ETOOBIG` (the call does not fit in the build buffer, or the reply not in the
/// receive buffer: `ember_dbus_last_refused` says how large it was);
/// `EMBER_EPEERGONE` (the bus is gone); `EMBER_EBUSY` (from a callback of this connection);
/// `EMBER_EOS` (`ENOTSUP`: fds in `args`, and the bus does not pass fds).
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; the strings NUL-terminated (`interface` may be NULL);
/// `args` NULL or from `ember_dbus_args_new`; `reply` NULL or writable; `ctx` is passed to
/// `on_other` as it is.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ember_dbus_call(
    d: *mut ember_dbus,
    destination: *const c_char,
    path: *const c_char,
    interface: *const c_char,
    member: *const c_char,
    args: *const ember_dbus_args,
    timeout_ms: i64,
    reply: *mut ember_dbus_message,
    on_other: ember_dbus_message_fn,
    ctx: *mut c_void,
) -> c_int {
    guard(|| {
        let reply = if reply.is_null() { None } else { Some(crate::error::out(reply)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (mut d, dest, path, iface, member) =
            unsafe { (enter(d)?, c_name(destination)?, c_name(path)?, opt_name(interface)?, c_name(member)?) };
        // SAFETY: as above.
        let args = if args.is_null() { None } else { Some(unsafe { arg(args)? }) };
        names_ok(Some(dest), path, iface, member)?;
        let mut b = Builder::method_call(path, member).destination(dest);
        if let Some(i) = iface {
            b = b.interface(i);
        }
        let serial = send(&mut d, b, args)?;
        let mut other = |m: &Message<'_>| {
            if let Some(f) = on_other {
                let mut slot = core::mem::MaybeUninit::<ember_dbus_message>::uninit();
                describe(m, &Out::local(&mut slot));
                // SAFETY: initialised by `describe` just above.
                let mut msg = unsafe { slot.assume_init() };
                // SAFETY: the caller's callback, given a message valid for the call.
                unsafe { f(ctx, &mut msg) };
            }
        };
        // Without a callback, messages meanwhile are queued for the next receive. The
        // reply refused (too large, malformed) fails at once: `EMBER_ETOOBIG` or
        // `EMBER_EBADMSG`, with its header in `ember_dbus_last_refused`.
        let other: Option<&mut dyn FnMut(&Message<'_>)> = if on_other.is_some() { Some(&mut other) } else { None };
        let m = d.c.wait_message(serial, ms(timeout_ms), other).map_err(dbus_code)?;
        reply_out(&m, reply.as_ref())
    })
}

/// Gives a reply to C: `EMBER_OK`, or `EMBER_EREMOTE` for an error reply; `*reply` (if
/// given) describes it either way.
fn reply_out(m: &Message<'_>, reply: Option<&Out<ember_dbus_message>>) -> Result<c_int, c_int> {
    if let Some(r) = reply {
        describe(m, r);
    }
    if m.message_type() == MessageType::Error { Err(EMBER_EREMOTE) } else { Ok(EMBER_OK) }
}

/// Starts a method call as `ember_dbus_call` does, and returns at once: its serial goes to
/// `*serial`, the handle for `ember_dbus_call_poll`, `ember_dbus_call_wait` and
/// `ember_dbus_call_cancel`. Its reply is kept for it, whatever else arrives meanwhile
/// (other messages are queued for `ember_dbus_recv` and `ember_dbus_process`). Up to 32
/// calls in flight per connection. Returns `EMBER_OK`; `EMBER_EBUSY` (32 calls in flight
/// already, or from a callback of this connection); `EMBER_EINVAL` (a NULL or invalid
/// name, a NULL `serial`, unclosed containers in `args`, or values that do not match their
/// signature); `EMBER_ETOOBIG` (the call does not fit in the build buffer);
/// `EMBER_EPEERGONE` (the bus is gone); `EMBER_EOS` (`ENOTSUP`: fds in `args`, and the bus
/// does not pass fds).
///
/// # Safety
///
/// As `ember_dbus_call`; `serial` writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_call_start(
    d: *mut ember_dbus,
    destination: *const c_char,
    path: *const c_char,
    interface: *const c_char,
    member: *const c_char,
    args: *const ember_dbus_args,
    serial: *mut u32,
) -> c_int {
    guard(|| {
        let serial = crate::error::out(serial)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (mut d, dest, path, iface, member) =
            unsafe { (enter(d)?, c_name(destination)?, c_name(path)?, opt_name(interface)?, c_name(member)?) };
        // SAFETY: as above.
        let args = if args.is_null() { None } else { Some(unsafe { arg(args)? }) };
        names_ok(Some(dest), path, iface, member)?;
        if d.c.calls_in_flight() == ember_linux::dbus::MAX_CALLS_IN_FLIGHT {
            return Err(EMBER_EBUSY);
        }
        let mut b = Builder::method_call(path, member).destination(dest);
        if let Some(i) = iface {
            b = b.interface(i);
        }
        let sent = send(&mut d, b, args)?;
        let call = d.c.expect_reply(sent).map_err(|_| EMBER_EBUSY)?;
        serial.set(call.serial());
        Ok(EMBER_OK)
    })
}

/// The reply to the call started with `serial`, if it is here, without waiting (what has
/// arrived is read; other messages are queued). Returns `EMBER_OK` or `EMBER_EREMOTE` with
/// `*reply` (may be NULL) filled, as `ember_dbus_call` (the call is over); `EMBER_EAGAIN`
/// when it has not come yet; `EMBER_EINVAL` for a NULL or misaligned pointer or a serial
/// that is no call in flight; `EMBER_ETOOBIG`, `EMBER_EBADMSG` (the reply refused: the
/// call is over); `EMBER_EPEERGONE`; `EMBER_EBUSY` (from a callback of this connection);
/// `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `reply` NULL or writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_call_poll(
    d: *mut ember_dbus,
    serial: u32,
    reply: *mut ember_dbus_message,
) -> c_int {
    guard(|| {
        let reply = if reply.is_null() { None } else { Some(crate::error::out(reply)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { enter(d)? };
        if !d.c.is_call_in_flight(serial) {
            return Err(EMBER_EINVAL);
        }
        match d.c.poll_message(serial) {
            Ok(Some(m)) => reply_out(&m, reply.as_ref()),
            Ok(None) => Err(EMBER_EAGAIN),
            Err(e) => Err(dbus_code(e)),
        }
    })
}

/// Waits up to `timeout_ms` (negative: no limit) for the reply to the call started with
/// `serial` (other messages are queued). Returns `EMBER_OK` or `EMBER_EREMOTE` with
/// `*reply` (may be NULL) filled, `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); as `ember_dbus_call`; `EMBER_ETIMEDOUT` (the call is then
/// over: a late reply goes to `ember_dbus_recv`); `EMBER_EINVAL` (a NULL or misaligned
/// pointer, a serial that is no call in flight); `EMBER_ETOOBIG`, `EMBER_EBADMSG` (the
/// reply refused: the call is over); `EMBER_EPEERGONE`; `EMBER_EBUSY` (from a callback of
/// this connection); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `reply` NULL or writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_call_wait(
    d: *mut ember_dbus,
    serial: u32,
    timeout_ms: i64,
    reply: *mut ember_dbus_message,
) -> c_int {
    guard(|| {
        let reply = if reply.is_null() { None } else { Some(crate::error::out(reply)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { enter(d)? };
        if !d.c.is_call_in_flight(serial) {
            return Err(EMBER_EINVAL);
        }
        let m = d.c.wait_message(serial, ms(timeout_ms), None);
        match m {
            Ok(m) => reply_out(&m, reply.as_ref()),
            Err(e) => {
                d.c.cancel_call(ember_linux::dbus::PendingCall::from_serial(serial));
                Err(dbus_code(e))
            }
        }
    })
}

/// Gives up on the call started with `serial`: its reply, if it comes, goes to
/// `ember_dbus_recv`. Returns `EMBER_OK`, `EMBER_EINVAL` (no such call in flight),
/// `EMBER_EBUSY`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_call_cancel(d: *mut ember_dbus, serial: u32) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { enter(d)? };
        if !d.c.is_call_in_flight(serial) {
            return Err(EMBER_EINVAL);
        }
        d.c.cancel_call(ember_linux::dbus::PendingCall::from_serial(serial));
        Ok(EMBER_OK)
    })
}

/// How many messages the connection's queue has dropped since it connected, because they
/// did not fit (each loss is reported once, where it happened, as `EMBER_EOVERFLOW` from
/// `ember_dbus_recv` or `ember_dbus_process`), into `*count`. Returns `EMBER_OK`,
/// `EMBER_EINVAL`, `EMBER_EBUSY`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `count` writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_queue_overflows(d: *mut ember_dbus, count: *mut u64) -> c_int {
    guard(|| {
        let count = crate::error::out(count)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { enter(d)? };
        count.set(d.c.overflows());
        Ok(EMBER_OK)
    })
}

/// The header of the message a connection refused last (see `ember_dbus_last_refused`).
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_dbus_refused {
    /// `EMBER_DBUS_METHOD_CALL`, `_METHOD_RETURN`, `_ERROR` or `_SIGNAL`.
    pub kind: c_int,
    /// Its serial.
    pub serial: u32,
    /// The serial it answers (0 if none).
    pub reply_serial: u32,
    /// Its length in bytes, as its header declares.
    pub needed: u64,
    /// The receive buffer's size when it was refused for its size; 0 when it was refused
    /// for being malformed.
    pub max: u64,
}

/// The header of the message `d` refused last: a reply or message larger than its receive
/// buffer (`needed` > `max`, what `ember_dbus_call`, `ember_dbus_recv` and
/// `ember_dbus_process` reported as `EMBER_ETOOBIG`), or a malformed one with a readable
/// header (`EMBER_EBADMSG`; `max` is 0). Returns `EMBER_OK`, `EMBER_EAGAIN` if nothing
/// was refused or the last refused message's header was unreadable, `EMBER_EINVAL`,
/// `EMBER_EBUSY`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `out` writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_last_refused(d: *mut ember_dbus, out: *mut ember_dbus_refused) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { enter(d)? };
        let r = d.c.last_refused().ok_or(EMBER_EAGAIN)?;
        let max = match r.error() {
            ember_core::dbus::DbusError::TooLarge { max, .. } => max as u64,
            _ => 0,
        };
        out.set(ember_dbus_refused {
            kind: r.message_type() as c_int,
            serial: r.serial(),
            reply_serial: r.reply_serial().unwrap_or(0),
            needed: r.len() as u64,
            max,
        });
        Ok(EMBER_OK)
    })
}

/// Checks the names of a call or signal.
fn names_ok(dest: Option<&str>, path: &str, iface: Option<&str>, member: &str) -> Result<(), c_int> {
    use ember_core::dbus::names;
    let ok = dest.is_none_or(|d| names::is_bus_name(d.as_bytes()))
        && names::is_object_path(path.as_bytes())
        && iface.is_none_or(|i| names::is_interface_name(i.as_bytes()))
        && names::is_member_name(member.as_bytes());
    if ok { Ok(()) } else { Err(EMBER_EINVAL) }
}

/// Emits the signal `interface.member` from the object at `path` with `args` (NULL: none);
/// its serial goes to `*serial` (may be NULL). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL
/// or invalid name, unclosed containers in `args`, or values that do not match their
/// signature); `EMBER_ETOOBIG` (the signal does not fit in the build buffer);
/// `EMBER_EPEERGONE` (the bus is gone); `EMBER_EBUSY` (from a callback of this
/// connection); `EMBER_EOS` (`ENOTSUP`: fds in `args`, and the bus does not pass fds).
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; the strings NUL-terminated; `args` NULL or from
/// `ember_dbus_args_new`; `serial` NULL or writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_emit_signal(
    d: *mut ember_dbus,
    path: *const c_char,
    interface: *const c_char,
    member: *const c_char,
    args: *const ember_dbus_args,
    serial: *mut u32,
) -> c_int {
    guard(|| {
        let serial = if serial.is_null() { None } else { Some(crate::error::out(serial)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (mut d, path, iface, member) = unsafe { (enter(d)?, c_name(path)?, c_name(interface)?, c_name(member)?) };
        // SAFETY: as above.
        let args = if args.is_null() { None } else { Some(unsafe { arg(args)? }) };
        names_ok(None, path, Some(iface), member)?;
        let s = send(&mut d, Builder::signal(path, iface, member), args)?;
        if let Some(o) = serial {
            o.set(s);
        }
        Ok(EMBER_OK)
    })
}

/// Receives the next message (waiting up to `timeout_ms`) into `*out`: first those queued
/// while a call waited, in arrival order (replies to calls in flight are kept for them).
/// Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); `EMBER_ETIMEDOUT`; `EMBER_EBADMSG` or `EMBER_ETOOBIG` for a
/// malformed or oversized message (skipped: receive again); `EMBER_EOVERFLOW` once where
/// the queue dropped messages (receive again; `ember_dbus_queue_overflows` counts them);
/// `EMBER_EPEERGONE` (the bus is gone); `EMBER_EINVAL` (a NULL or misaligned pointer);
/// `EMBER_EBUSY` (from a callback of this connection); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `out` writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_recv(d: *mut ember_dbus, timeout_ms: i64, out: *mut ember_dbus_message) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { enter(d)? };
        let m = d.c.recv(ms(timeout_ms)).map_err(dbus_code)?;
        describe(&m, &out);
        Ok(EMBER_OK)
    })
}

/// The code of a send error: a message too large for the buffer is `EMBER_ETOOBIG`, a
/// name the specification reserves `EMBER_EINVAL`.
fn send_code(e: ember_linux::Error) -> c_int {
    use ember_core::dbus::DbusError;
    match e {
        ember_linux::Error::Dbus(DbusError::BufferTooSmall | DbusError::TooLarge { .. }) => EMBER_ETOOBIG,
        ember_linux::Error::Dbus(_) => EMBER_EINVAL,
        e => code(e),
    }
}

/// The code of a receive error: an oversized message is `EMBER_ETOOBIG`.
fn dbus_code(e: ember_linux::Error) -> c_int {
    match e {
        ember_linux::Error::Dbus(ember_core::dbus::DbusError::TooLarge { .. }) => EMBER_ETOOBIG,
        e => code(e),
    }
}

/// Takes fd number `index` (an `h` value) of the message received last: `*fd` is now the
/// caller's to close. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, no
/// such fd, or taken already); `EMBER_EBUSY` (from a callback of this connection).
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `fd` writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_take_fd(d: *mut ember_dbus, index: u32, fd: *mut c_int) -> c_int {
    guard(|| {
        let fd = crate::error::out(fd)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let d = unsafe { enter(d)? };
        fd.set(d.c.take_fd(index).ok_or(EMBER_EINVAL)?.into_raw_fd());
        Ok(EMBER_OK)
    })
}

/// The code of a call to the bus.
fn call_code(e: CallError<'_>) -> c_int {
    match e {
        CallError::Local(e) => code(e),
        CallError::Remote { .. } => EMBER_EREMOTE,
        // Typed calls are Rust-only; the C ABI never makes one.
        e @ CallError::SignatureMismatch { .. } => code(e.local()),
    }
}

/// Asks the bus for `name` with `EMBER_DBUS_NAME_*` flags; the answer
/// (`EMBER_DBUS_NAME_PRIMARY_OWNER`, ...) goes to `*reply` (may be NULL). Returns
/// `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); `EMBER_EINVAL` (a NULL or misaligned pointer, a bad or unique name);
/// `EMBER_EBUSY` (from a callback of this connection); `EMBER_EREMOTE` (the bus refused:
/// e.g. its policy does not allow us the name); `EMBER_ETIMEDOUT`; `EMBER_EPEERGONE` (the
/// bus is gone); `EMBER_EBADMSG` (a malformed reply); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `name` NUL-terminated; `reply` NULL or writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_request_name(
    d: *mut ember_dbus,
    name: *const c_char,
    flags: u32,
    timeout_ms: i64,
    reply: *mut c_int,
) -> c_int {
    guard(|| {
        let reply = if reply.is_null() { None } else { Some(crate::error::out(reply)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, name) = unsafe { (enter(d)?, c_name(name)?) };
        if !ember_core::dbus::names::is_bus_name(name.as_bytes()) || name.starts_with(':') {
            return Err(EMBER_EINVAL);
        }
        let r = d.c.request_name(name, flags, ms(timeout_ms)).map_err(call_code)?;
        if let Some(o) = reply {
            o.set(match r {
                RequestNameReply::PrimaryOwner => EMBER_DBUS_NAME_PRIMARY_OWNER,
                RequestNameReply::InQueue => EMBER_DBUS_NAME_IN_QUEUE,
                RequestNameReply::Exists => EMBER_DBUS_NAME_EXISTS,
                RequestNameReply::AlreadyOwner => EMBER_DBUS_NAME_ALREADY_OWNER,
            });
        }
        Ok(EMBER_OK)
    })
}

/// Gives `name` back; the bus's answer (1 released, 2 no such name, 3 not the owner) goes
/// to `*reply` (may be NULL). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); `EMBER_EINVAL` (a NULL or misaligned
/// pointer, a bad name); `EMBER_EBUSY` (from a callback of this connection);
/// `EMBER_EREMOTE` (the bus refused); `EMBER_ETIMEDOUT`; `EMBER_EPEERGONE` (the bus is
/// gone); `EMBER_EBADMSG` (a malformed reply); `EMBER_EOS`.
///
/// # Safety
///
/// As `ember_dbus_request_name`.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_release_name(
    d: *mut ember_dbus,
    name: *const c_char,
    timeout_ms: i64,
    reply: *mut c_int,
) -> c_int {
    guard(|| {
        let reply = if reply.is_null() { None } else { Some(crate::error::out(reply)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, name) = unsafe { (enter(d)?, c_name(name)?) };
        if !ember_core::dbus::names::is_bus_name(name.as_bytes()) {
            return Err(EMBER_EINVAL);
        }
        let r = d.c.release_name(name, ms(timeout_ms)).map_err(call_code)?;
        if let Some(o) = reply {
            o.set(r as c_int);
        }
        Ok(EMBER_OK)
    })
}

/// Subscribes to the messages matching `rule` (`AddMatch`), e.g.
/// `type='signal',interface='org.example.Sensor'`. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); `EMBER_EINVAL` (a
/// NULL or misaligned pointer, a rule not UTF-8); `EMBER_EBUSY` (from a callback of this
/// connection); `EMBER_EREMOTE` (the bus refused the rule); `EMBER_ETIMEDOUT`;
/// `EMBER_EPEERGONE` (the bus is gone); `EMBER_EBADMSG` (a malformed reply, or a rule too
/// long for the build buffer); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `rule` NUL-terminated.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_add_match(d: *mut ember_dbus, rule: *const c_char, timeout_ms: i64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, rule) = unsafe { (enter(d)?, c_name(rule)?) };
        d.c.add_match(rule, ms(timeout_ms)).map_err(call_code)?;
        Ok(EMBER_OK)
    })
}

/// Drops a subscription (`RemoveMatch`). Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); `EMBER_EINVAL` (a NULL or
/// misaligned pointer, a rule not UTF-8); `EMBER_EBUSY` (from a callback of this
/// connection); `EMBER_EREMOTE` (the bus refused: e.g. no such match); `EMBER_ETIMEDOUT`;
/// `EMBER_EPEERGONE` (the bus is gone); `EMBER_EBADMSG` (a malformed reply, or a rule too
/// long for the build buffer); `EMBER_EOS`.
///
/// # Safety
///
/// As `ember_dbus_add_match`.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_remove_match(d: *mut ember_dbus, rule: *const c_char, timeout_ms: i64) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, rule) = unsafe { (enter(d)?, c_name(rule)?) };
        d.c.remove_match(rule, ms(timeout_ms)).map_err(call_code)?;
        Ok(EMBER_OK)
    })
}
