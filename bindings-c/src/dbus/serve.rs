//! Serving objects: a table of object paths, interfaces and methods with C callbacks,
//! copied once by `ember_dbus_service_new`; `ember_dbus_process` answers one message from
//! it. `org.freedesktop.DBus.Peer` and `Introspectable` (XML from the table) are built in;
//! unknown objects, interfaces and methods, and arguments of the wrong signature, get the
//! standard errors before any callback runs.

use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write as _;
use std::os::fd::{IntoRawFd, OwnedFd};

use ember_core::dbus::value::Values;
use ember_core::dbus::{Signature, Value, Writer};
use ember_linux::dbus::Processed;
use ember_linux::dbus::object::{Call, Interface, Method, MethodError, Object, Service, SignalDesc};

use super::args::ember_dbus_args;
use super::iter::{State, ember_dbus_iter};
use super::{ember_dbus, ember_dbus_message};
use crate::error::*;

/// A method's handler: read the arguments from `args`, append the results (of the
/// method's `results` signature) to `reply`, and return 0; or set an error with
/// `ember_dbus_args_set_error` (else `org.freedesktop.DBus.Error.Failed`) and return
/// nonzero. `call`, `args` and their strings are valid during the call only. A handler may
/// not use the connection or the service that runs it (`EMBER_EBUSY`; emit signals after
/// `ember_dbus_process` returns), and may not reply with fds (the caller gets an error).
pub type ember_dbus_method_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        call: *const ember_dbus_call_info,
        args: *mut ember_dbus_iter,
        reply: *mut ember_dbus_args,
    ) -> c_int,
>;

/// One method of an interface.
///
/// Neither `Send` nor `Sync`: it holds raw pointers to the caller's strings and context.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_dbus_method {
    /// Its name, e.g. `"Add"`.
    pub name: *const c_char,
    /// Its arguments' signature (`""` for none).
    pub args: *const c_char,
    /// Its results' signature (`""` for none).
    pub results: *const c_char,
    /// The handler.
    pub handler: ember_dbus_method_fn,
    /// Passed to the handler as it is.
    pub ctx: *mut c_void,
}

/// One signal an interface emits (for introspection).
///
/// Neither `Send` nor `Sync`: it holds raw pointers to the caller's strings.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_dbus_signal {
    /// Its name.
    pub name: *const c_char,
    /// Its arguments' signature.
    pub args: *const c_char,
}

/// An interface: its name, methods and signals.
///
/// Neither `Send` nor `Sync`: it holds raw pointers to the caller's strings and tables.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_dbus_interface {
    /// Its name, e.g. `"org.example.Calc"`.
    pub name: *const c_char,
    /// Its methods (`n_methods` of them).
    pub methods: *const ember_dbus_method,
    /// How many.
    pub n_methods: usize,
    /// Its signals (`n_signals`; may be NULL when 0).
    pub signals: *const ember_dbus_signal,
    /// How many.
    pub n_signals: usize,
}

/// An object: its path and interfaces.
///
/// Neither `Send` nor `Sync`: it holds raw pointers to the caller's strings and tables.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_dbus_object {
    /// Its path, e.g. `"/org/example/Calc"`.
    pub path: *const c_char,
    /// Its interfaces (`n_interfaces` of them).
    pub interfaces: *const ember_dbus_interface,
    /// How many.
    pub n_interfaces: usize,
}

/// What a handler is called for (valid during the call only).
///
/// Neither `Send` nor `Sync`: it holds raw pointers into the connection's buffer.
#[repr(C)]
#[derive(Debug)]
pub struct ember_dbus_call_info {
    /// The object's path.
    pub path: *const c_char,
    /// The interface.
    pub interface: *const c_char,
    /// The method.
    pub member: *const c_char,
    /// The caller's unique name (NULL if the message had none).
    pub sender: *const c_char,
    /// How many fds came with the call (take them with `ember_dbus_call_take_fd`).
    pub unix_fds: u32,
    /// Private.
    pub _fds: *mut c_void,
}

struct Handler {
    path: &'static str,
    interface: &'static str,
    member: &'static str,
    results: &'static str,
    f: unsafe extern "C" fn(
        *mut c_void,
        *const ember_dbus_call_info,
        *mut ember_dbus_iter,
        *mut ember_dbus_args,
    ) -> c_int,
    ctx: *mut c_void,
}

/// A table of objects to serve (opaque).
///
/// Neither `Send` nor `Sync`: it holds the caller's `void *` contexts.
pub struct ember_dbus_service {
    // Views into the boxes below, which never move: declared first, dropped first.
    objects: Vec<Object<'static>>,
    handlers: Vec<Handler>,
    interfaces: Vec<Box<[Interface<'static>]>>,
    methods: Vec<Box<[Method<'static>]>>,
    signals: Vec<Box<[SignalDesc<'static>]>>,
    /// The table's strings, each followed by a NUL.
    strings: Vec<Box<[u8]>>,
    reply: Box<ember_dbus_args>,
}

impl core::fmt::Debug for ember_dbus_service {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ember_dbus_service")
            .field("objects", &self.objects.len())
            .field("handlers", &self.handlers.len())
            .finish_non_exhaustive()
    }
}

impl ember_dbus_service {
    /// Copies the C string at `p` (checked with `valid`) and returns a view of it, which
    /// stays valid while `self` lives.
    ///
    /// # Safety
    ///
    /// `p` NULL or NUL-terminated.
    unsafe fn keep(&mut self, p: *const c_char, valid: impl Fn(&str) -> bool) -> Result<&'static str, c_int> {
        // SAFETY: the caller's contract.
        let s = unsafe { c_name(p)? };
        if !valid(s) {
            return Err(EMBER_EINVAL);
        }
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.strings.push(b.into_boxed_slice());
        let kept = self.strings.last().map_or(core::ptr::null(), |b| b.as_ptr());
        // SAFETY: UTF-8 (copied from a `str`), `s.len()` bytes of the box just pushed, whose
        // heap block never moves and lives as long as `self` (`strings` is dropped after
        // every view of it); taken after the push, so no move of the box follows the view.
        Ok(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(kept, s.len())) })
    }

    /// `n` elements at `p` (NULL only when `n` is 0).
    ///
    /// # Safety
    ///
    /// `p` NULL or `n` readable elements.
    unsafe fn table<'a, T>(p: *const T, n: usize) -> Result<&'a [T], c_int> {
        if n == 0 {
            return Ok(&[]);
        }
        if p.is_null() || !p.is_aligned() || n > isize::MAX as usize / core::mem::size_of::<T>().max(1) {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: the caller's contract.
        Ok(unsafe { core::slice::from_raw_parts(p, n) })
    }
}

/// The boxed slice just pushed, as a view that lives as long as the service.
fn extend<T>(b: Option<&[T]>) -> &'static [T] {
    match b {
        // SAFETY: a boxed slice's heap block never moves, and the service drops its views
        // (`objects`, `interfaces`) before the boxes (field order); the view is taken after
        // the box was pushed, so no move of the box follows it.
        Some(b) => unsafe { &*core::ptr::slice_from_raw_parts(b.as_ptr(), b.len()) },
        None => &[],
    }
}

fn is_sig(s: &str) -> bool {
    Signature::new(s).is_ok()
}

/// Makes a service from `n` objects at `objects` (copied: the table may be freed after).
/// Returns `EMBER_OK`, or `EMBER_EINVAL` for an invalid path, name or signature, a NULL
/// handler, two objects at one path, two interfaces of one name in an object, or two
/// methods of one name in an interface.
///
/// # Safety
///
/// `objects` `n` readable objects, whose arrays and strings are valid as their counts
/// say; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_new(
    objects: *const ember_dbus_object,
    n: usize,
    out: *mut *mut ember_dbus_service,
) -> c_int {
    use ember_core::dbus::names;
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        let mut s = ember_dbus_service {
            objects: Vec::new(),
            handlers: Vec::new(),
            interfaces: Vec::new(),
            methods: Vec::new(),
            signals: Vec::new(),
            strings: Vec::new(),
            reply: Box::new(ember_dbus_args::new(super::EMBER_DBUS_MAX_MESSAGE - 1024)),
        };
        // SAFETY: (the whole block) the table is readable as its counts say, by the caller's
        // contract; every pointer is checked for NULL and alignment.
        unsafe {
            for o in ember_dbus_service::table(objects, n)? {
                let path = s.keep(o.path, |p| names::is_object_path(p.as_bytes()))?;
                if s.objects.iter().any(|x| x.path == path) {
                    return Err(EMBER_EINVAL);
                }
                let mut ifaces = Vec::new();
                for i in ember_dbus_service::table(o.interfaces, o.n_interfaces)? {
                    let name = s.keep(i.name, |n| names::is_interface_name(n.as_bytes()))?;
                    let mut methods = Vec::new();
                    for m in ember_dbus_service::table(i.methods, i.n_methods)? {
                        let member = s.keep(m.name, |n| names::is_member_name(n.as_bytes()))?;
                        let (args, results) = (s.keep(m.args, is_sig)?, s.keep(m.results, is_sig)?);
                        let f = m.handler.ok_or(EMBER_EINVAL)?;
                        s.handlers.push(Handler { path, interface: name, member, results, f, ctx: m.ctx });
                        methods.push(Method { name: member, args, results });
                    }
                    let mut signals = Vec::new();
                    for g in ember_dbus_service::table(i.signals, i.n_signals)? {
                        let member = s.keep(g.name, |n| names::is_member_name(n.as_bytes()))?;
                        signals.push(SignalDesc { name: member, args: s.keep(g.args, is_sig)? });
                    }
                    if ifaces.iter().any(|x: &Interface<'_>| x.name == name)
                        || methods.iter().enumerate().any(|(k, m)| methods[..k].iter().any(|x| x.name == m.name))
                    {
                        return Err(EMBER_EINVAL);
                    }
                    s.methods.push(methods.into_boxed_slice());
                    s.signals.push(signals.into_boxed_slice());
                    let (mv, sv) = (extend(s.methods.last().map(|b| &**b)), extend(s.signals.last().map(|b| &**b)));
                    ifaces.push(Interface { name, methods: mv, properties: &[], signals: sv });
                }
                s.interfaces.push(ifaces.into_boxed_slice());
                s.objects.push(Object { path, interfaces: extend(s.interfaces.last().map(|b| &**b)) });
            }
        }
        out.set(Box::into_raw(Box::new(s)));
        Ok(EMBER_OK)
    })
}

/// Frees the service.
///
/// # Safety
///
/// `s` NULL or from `ember_dbus_service_new`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_free(s: *mut ember_dbus_service) {
    if !s.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// The service's side of `Service`: finds the handler and calls it.
struct Dispatch<'s> {
    handlers: &'s [Handler],
    reply: &'s mut ember_dbus_args,
}

/// A formatted `Failed` error.
fn failed(args: core::fmt::Arguments<'_>) -> MethodError {
    let mut m = heapless::String::<96>::new();
    let _ = m.write_fmt(args);
    MethodError::failed(&m)
}

impl Service for Dispatch<'_> {
    fn call(
        &mut self,
        call: &Call<'_>,
        args: Values<'_>,
        fds: &mut [Option<OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        let Some(h) = self
            .handlers
            .iter()
            .find(|h| h.path == call.path && h.interface == call.interface && h.member == call.member)
        else {
            return Err(failed(format_args!("no handler for {}", call.member)));
        };
        self.reply.clear();
        let mut it = core::mem::MaybeUninit::<ember_dbus_iter>::uninit();
        ember_dbus_iter::init(&Out::local(&mut it), State::Values(args));
        // SAFETY: initialised just above.
        let mut it = unsafe { it.assume_init() };
        // The path and member point into the message, the interface into the table: each
        // is followed by a NUL there.
        let info = ember_dbus_call_info {
            path: call.path.as_ptr().cast(),
            interface: h.interface.as_ptr().cast(),
            member: call.member.as_ptr().cast(),
            sender: call.sender.map_or(core::ptr::null(), |s| s.as_ptr().cast()),
            // The call's fds fill the first slots, in order.
            unix_fds: fds.iter().take_while(|f| f.is_some()).count() as u32,
            _fds: fds.as_mut_ptr().cast(),
        };
        // SAFETY: the C handler, called as its type says, with pointers valid for the call.
        let rc = unsafe { (h.f)(h.ctx, &info, &mut it, &mut *self.reply) };
        let r = &*self.reply;
        if rc != 0 {
            if r.error_name_len == 0 {
                return Err(failed(format_args!("the handler of {} failed ({rc})", call.member)));
            }
            // SAFETY: checked as an error name (ASCII) when set; the name lives in the
            // reply builder, untouched until the next call, and the error is consumed before
            // `ember_dbus_process` returns.
            let name: &'static str = unsafe {
                core::str::from_utf8_unchecked(core::slice::from_raw_parts(r.error_name.as_ptr(), r.error_name_len))
            };
            // SAFETY: as for the name: the message lives in the reply builder, untouched
            // until the next call, and the error is consumed before `ember_dbus_process`
            // returns; so it is sent whole, without a copy.
            let message: &'static str = unsafe {
                let m = r.error_message();
                core::str::from_utf8_unchecked(core::slice::from_raw_parts(m.as_ptr(), m.len()))
            };
            return Err(MethodError::from_static(name, message));
        }
        if r.nfds != 0 {
            return Err(failed(format_args!("the handler of {} replied with fds (not supported)", call.member)));
        }
        let sig = r.checked().map_err(|_| failed(format_args!("the handler of {} built a bad reply", call.member)))?;
        if sig.as_str() != h.results {
            return Err(failed(format_args!("{} returned ({}), not ({})", call.member, sig, h.results)));
        }
        reply.marshalled(r.body()).map_err(|_| failed(format_args!("the reply of {} does not fit", call.member)))
    }

    fn get(&mut self, _: &str, _: &str, property: &str, _: &mut Writer<'_>) -> Result<(), MethodError> {
        Err(failed(format_args!("no property {property}")))
    }

    fn set(&mut self, _: &str, _: &str, property: &str, _: Value<'_>) -> Result<(), MethodError> {
        Err(failed(format_args!("no property {property}")))
    }
}

/// Inside a handler: takes the call's fd number `index` (an `h` argument's value): `*fd`
/// is the caller's to close. Fds not taken are closed after the handler returns. Returns
/// `EMBER_OK`, or `EMBER_EINVAL` (no such fd, or taken already).
///
/// # Safety
///
/// `call` the info a handler was given, during the handler; `fd` writable.
///
/// Thread safety: the handler's thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_call_take_fd(
    call: *const ember_dbus_call_info,
    index: u32,
    fd: *mut c_int,
) -> c_int {
    guard(|| {
        let fd = crate::error::out(fd)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let call = unsafe { arg(call)? };
        if index >= call.unix_fds || call._fds.is_null() {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: `_fds` points to the call's `unix_fds` slots, valid during the handler.
        let slot = unsafe { &mut *call._fds.cast::<Option<OwnedFd>>().add(index as usize) };
        fd.set(slot.take().ok_or(EMBER_EINVAL)?.into_raw_fd());
        Ok(EMBER_OK)
    })
}

/// Receives one message (waiting up to `timeout_ms`) and, if it is a method call, answers
/// it from the service `s` (a handler's results or error, the built-in interfaces, or the
/// standard error): `*answered` becomes 1. Any other message (a signal, a reply nobody
/// waited for) goes to `*other` (may be NULL) and `*answered` becomes 0. Returns
/// `EMBER_OK`; `EMBER_ECANCELED` (the canceler
/// installed with `ember_set_canceler` was cancelled during the wait); `EMBER_ETIMEDOUT` when nothing came; `EMBER_EBADMSG`/`EMBER_ETOOBIG` for a
/// malformed or oversized message (skipped); `EMBER_EOVERFLOW` once where the queue
/// dropped messages (call again); `EMBER_EPEERGONE` (the bus is gone); `EMBER_EINVAL` (a NULL or misaligned pointer); `EMBER_EBUSY` (from a handler or
/// callback of this connection or service); `EMBER_EOS`.
///
/// In a poller loop: when the connection's fd is readable, call it with timeout 0 until
/// `EMBER_ETIMEDOUT` (one read may bring several messages).
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `s` from `ember_dbus_service_new`; `other`, `answered`
/// NULL or writable.
///
/// Thread safety: not with other calls on the same connection or service; handlers run
/// in the calling thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_process(
    d: *mut ember_dbus,
    s: *mut ember_dbus_service,
    timeout_ms: i64,
    other: *mut ember_dbus_message,
    answered: *mut c_int,
) -> c_int {
    guard(|| {
        let other = if other.is_null() { None } else { Some(crate::error::out(other)?) };
        let answered = if answered.is_null() { None } else { Some(crate::error::out(answered)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, s) = unsafe { (super::enter(d)?, arg_mut(s)?) };
        let mut dispatch = Dispatch { handlers: &s.handlers, reply: &mut s.reply };
        let r = d.c.process(&s.objects, &mut dispatch, super::ms(timeout_ms)).map_err(super::dbus_code)?;
        let was_call = match r {
            Processed::Answered => true,
            Processed::Message(m) => {
                if let Some(o) = &other {
                    super::describe(&m, o);
                }
                false
            }
        };
        if let Some(a) = answered {
            a.set(was_call as c_int);
        }
        Ok(EMBER_OK)
    })
}
