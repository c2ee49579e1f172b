//! Serving objects: a table of object paths, interfaces, methods and properties with C
//! callbacks, copied by `ember_dbus_service_new`; objects added and removed at run time
//! (`ember_dbus_service_add_object`, `_add_fallback`, `_remove_object`) within the
//! capacity fixed at creation; `ember_dbus_process` answers one message from it.
//! `org.freedesktop.DBus.Peer`, `Introspectable` (XML from the table), `Properties`
//! (`Get`, `GetAll`, `Set` through the interface's getter and setter, `PropertiesChanged`
//! after a `Set`) and, on an object that lists it, `ObjectManager` (`GetManagedObjects`)
//! are built in; unknown objects, interfaces, methods and properties, and arguments of the
//! wrong signature, get the standard errors before any callback runs. A handler may defer
//! its answer (`ember_dbus_call_defer`) and answer later with `ember_dbus_reply` or
//! `ember_dbus_reply_error`.
//!
//! Heap: the service copies its table when it is made and an object's strings and tables
//! when one is added (freed when it is removed); processing, property reads and writes,
//! deferred replies and the emitted signals allocate nothing.

use core::cell::Cell;
use core::ffi::{c_char, c_int, c_void};
use core::fmt::Write as _;
use std::os::fd::{IntoRawFd, OwnedFd};

use ember_core::dbus::value::Values;
use ember_core::dbus::{Endian, Reader, Signature, Value, Writer};
use ember_linux::dbus::Processed;
use ember_linux::dbus::object::{
    self, Annotation, Call, Description, Interface, Member, Method, MethodError, Object, Property, Service, SignalDesc,
    Token, View,
};

use super::args::ember_dbus_args;
use super::iter::{State, ember_dbus_iter};
use super::{ember_dbus, ember_dbus_message};
use crate::error::*;

/// A method's handler: read the arguments from `args`, append the results (of the
/// method's `results` signature) to `reply`, and return 0; or set an error with
/// `ember_dbus_args_set_error` (else `org.freedesktop.DBus.Error.Failed`) and return
/// nonzero; or defer the answer with `ember_dbus_call_defer` (then what it returns and
/// writes is not sent). `call`, `args` and their strings are valid during the call only. A
/// handler may not use the connection or the service that runs it (`EMBER_EBUSY`; emit
/// signals and answer deferred calls after `ember_dbus_process` returns), and may not
/// reply with fds (the caller gets an error).
pub type ember_dbus_method_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        call: *const ember_dbus_call_info,
        args: *mut ember_dbus_iter,
        reply: *mut ember_dbus_args,
    ) -> c_int,
>;

/// An interface's property getter: append the value of `property->property` (one value
/// of `property->signature`) to `value` and return 0; or set an error with
/// `ember_dbus_args_set_error` on `value` (else `org.freedesktop.DBus.Error.Failed`) and
/// return nonzero. It runs for `Properties.Get`, `GetAll`, `GetManagedObjects`,
/// `PropertiesChanged` and `InterfacesAdded`; the same rules as a method handler hold (no
/// use of its connection or service, no fds).
pub type ember_dbus_get_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        property: *const ember_dbus_property_info,
        value: *mut ember_dbus_args,
    ) -> c_int,
>;

/// An interface's property setter: read the new value (of `property->signature`, checked
/// before the call) from `value`, store it, and return 0; or set an error with
/// `ember_dbus_args_set_error` on `error` (else `org.freedesktop.DBus.Error.Failed`) and
/// return nonzero. After a 0, `PropertiesChanged` follows the reply as the property's
/// `emits_changed` says. The same rules as a method handler hold.
pub type ember_dbus_set_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        property: *const ember_dbus_property_info,
        value: *mut ember_dbus_iter,
        error: *mut ember_dbus_args,
    ) -> c_int,
>;

/// `ember_dbus_property.access`: `Get` only.
pub const EMBER_DBUS_PROPERTY_READ: c_int = 1;
/// `ember_dbus_property.access`: `Set` only (not supported: `ember_dbus_service_new`
/// refuses it with `EMBER_EINVAL`; defined for completeness).
pub const EMBER_DBUS_PROPERTY_WRITE: c_int = 2;
/// `ember_dbus_property.access`: `Get` and `Set`.
pub const EMBER_DBUS_PROPERTY_READWRITE: c_int = 3;

/// `ember_dbus_property.emits_changed` (0, the default): a change is announced by
/// `PropertiesChanged` with the new value.
pub const EMBER_DBUS_EMITS_CHANGED_TRUE: c_int = 0;
/// `ember_dbus_property.emits_changed`: a change is announced by name only
/// (`invalidated_properties`).
pub const EMBER_DBUS_EMITS_CHANGED_INVALIDATES: c_int = 1;
/// `ember_dbus_property.emits_changed`: the value never changes (nothing is emitted).
pub const EMBER_DBUS_EMITS_CHANGED_CONST: c_int = 2;
/// `ember_dbus_property.emits_changed`: changes are not announced.
pub const EMBER_DBUS_EMITS_CHANGED_FALSE: c_int = 3;

/// How many objects `ember_dbus_service_new` leaves room for (or the number it is given,
/// if larger); `ember_dbus_service_new_sized` takes any other count.
pub const EMBER_DBUS_SERVICE_CAPACITY: usize = 32;

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

/// One property of an interface, read and written through the interface's `get_property`
/// and `set_property`.
///
/// Neither `Send` nor `Sync`: it holds raw pointers to the caller's strings.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_dbus_property {
    /// Its name, e.g. `"Level"`.
    pub name: *const c_char,
    /// Its type: one complete type, e.g. `"u"` or `"a{sv}"`.
    pub signature: *const c_char,
    /// `EMBER_DBUS_PROPERTY_READ` or `EMBER_DBUS_PROPERTY_READWRITE`.
    pub access: c_int,
    /// `EMBER_DBUS_EMITS_CHANGED_TRUE` (0), `_INVALIDATES`, `_CONST` or `_FALSE`: how
    /// `PropertiesChanged` announces its changes (its `EmitsChangedSignal` annotation).
    pub emits_changed: c_int,
}

/// An interface: its name, methods, signals and properties.
///
/// An interface named `"org.freedesktop.DBus.ObjectManager"` (with no methods, signals or
/// properties of its own) makes its object a manager: `GetManagedObjects` is answered from
/// the table (every object below it, each interface with its properties read through the
/// getters).
///
/// Since 0.x (issue 20) it has the properties' fields: a C program built against an older
/// `ember.h` must be rebuilt (zero them for an interface without properties).
///
/// Neither `Send` nor `Sync`: it holds raw pointers to the caller's strings and tables.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ember_dbus_interface {
    /// Its name, e.g. `"org.example.Calc"`.
    pub name: *const c_char,
    /// Its methods (`n_methods` of them; may be NULL when 0).
    pub methods: *const ember_dbus_method,
    /// How many.
    pub n_methods: usize,
    /// Its signals (`n_signals`; may be NULL when 0).
    pub signals: *const ember_dbus_signal,
    /// How many.
    pub n_signals: usize,
    /// Its properties (`n_properties`; may be NULL when 0).
    pub properties: *const ember_dbus_property,
    /// How many.
    pub n_properties: usize,
    /// Reads any of its properties (required when it has properties).
    pub get_property: ember_dbus_get_fn,
    /// Writes any of its writable properties (required when one is writable).
    pub set_property: ember_dbus_set_fn,
    /// Passed to the getter and setter as it is.
    pub property_ctx: *mut c_void,
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
    /// The path called (for a fallback object, a path below the object's own).
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
    /// Private (what `ember_dbus_call_defer` needs).
    pub _call: *const c_void,
}

/// What a property getter or setter is called for (valid during the call only).
///
/// Neither `Send` nor `Sync`: it holds raw pointers into the connection's buffer and the
/// service's table.
#[repr(C)]
#[derive(Debug)]
pub struct ember_dbus_property_info {
    /// The object's path (for a fallback object, the path asked about, below its own).
    pub path: *const c_char,
    /// The interface.
    pub interface: *const c_char,
    /// The property's name.
    pub property: *const c_char,
    /// Its signature.
    pub signature: *const c_char,
}

/// Marks a token that holds a deferred call.
const TOKEN_MAGIC: u64 = 0x746f_6b65_6e64_6275;

/// A deferred call (`ember_dbus_call_defer`), kept in the caller's memory (no heap) until
/// `ember_dbus_reply` or `ember_dbus_reply_error` answers it, which empties it: a token is
/// answered once (copies of it are not answered again: answer the one you deferred
/// into). A token never answered leaves its caller to its own timeout.
///
/// `Send` and `Sync` as plain words: it may be answered from another thread that owns the
/// connection then.
#[repr(C)]
pub struct ember_dbus_token {
    /// Private.
    pub _magic: u64,
    /// Private (a Rust value with padding: uninitialised bytes are allowed here).
    pub _state: [core::mem::MaybeUninit<u64>; 34],
}

const _: () = assert!(core::mem::size_of::<Token>() <= 34 * 8);
const _: () = assert!(core::mem::align_of::<Token>() <= 8);

impl core::fmt::Debug for ember_dbus_token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ember_dbus_token").field("deferred", &(self._magic == TOKEN_MAGIC)).finish_non_exhaustive()
    }
}

type MethodFn =
    unsafe extern "C" fn(*mut c_void, *const ember_dbus_call_info, *mut ember_dbus_iter, *mut ember_dbus_args) -> c_int;
type GetFn = unsafe extern "C" fn(*mut c_void, *const ember_dbus_property_info, *mut ember_dbus_args) -> c_int;
type SetFn = unsafe extern "C" fn(
    *mut c_void,
    *const ember_dbus_property_info,
    *mut ember_dbus_iter,
    *mut ember_dbus_args,
) -> c_int;

struct Handler {
    interface: &'static str,
    member: &'static str,
    results: &'static str,
    f: MethodFn,
    ctx: *mut c_void,
}

struct Prop {
    interface: &'static str,
    name: &'static str,
    signature: &'static str,
    get: GetFn,
    set: Option<SetFn>,
    ctx: *mut c_void,
}

/// One object's callbacks and the storage its views (`Object`, the strings) point into.
/// The boxes' heap blocks never move, so an `Entry` may move (within `entries`) while
/// views of them are alive.
#[derive(Default)]
struct Entry {
    handlers: Vec<Handler>,
    props: Vec<Prop>,
    /// `EmitsChangedSignal` of its properties that are not the default.
    emits: Vec<(&'static str, &'static str, &'static str)>,
    interfaces: Option<Box<[Interface<'static>]>>,
    methods: Vec<Box<[Method<'static>]>>,
    properties: Vec<Box<[Property<'static>]>>,
    signals: Vec<Box<[SignalDesc<'static>]>>,
    /// The object's strings, each followed by a NUL.
    strings: Vec<Box<[u8]>>,
}

/// A table of objects to serve (opaque).
///
/// Neither `Send` nor `Sync`: it holds the caller's `void *` contexts.
pub struct ember_dbus_service {
    /// Set while an export uses the table (a callback that calls back into the service
    /// gets `EMBER_EBUSY`). Never covered by a `&mut`: exports borrow `t` only.
    busy: Cell<bool>,
    t: Table,
}

/// The service's objects and the storage behind them.
struct Table {
    // Views into the entries' boxes, which never move: declared first, dropped first.
    objects: Vec<Object<'static>>,
    annotations: Vec<Annotation<'static>>,
    fallback: Vec<bool>,
    /// `entries[i]` backs `objects[i]`.
    entries: Vec<Entry>,
    capacity: usize,
    reply: Box<ember_dbus_args>,
}

impl core::fmt::Debug for ember_dbus_service {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ember_dbus_service")
            .field("objects", &self.t.objects.len())
            .field("capacity", &self.t.capacity)
            .finish_non_exhaustive()
    }
}

impl Entry {
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
        // heap block never moves and lives as long as `self` (the service drops every view
        // of an entry before the entry); taken after the push, so no move of the box
        // follows the view.
        Ok(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(kept, s.len())) })
    }

    /// Copies the C object `o`: returns its view and the entry behind it.
    ///
    /// # Safety
    ///
    /// `o`'s arrays and strings valid as its counts say.
    unsafe fn build(o: &ember_dbus_object) -> Result<(Object<'static>, Entry), c_int> {
        use ember_core::dbus::names;
        let mut e = Entry::default();
        // SAFETY: (the whole block) the tables are readable as their counts say, by the
        // caller's contract; every pointer is checked for NULL and alignment.
        unsafe {
            let path = e.keep(o.path, |p| names::is_object_path(p.as_bytes()))?;
            let mut ifaces = Vec::new();
            for i in table(o.interfaces, o.n_interfaces)? {
                let name = e.keep(i.name, |n| names::is_interface_name(n.as_bytes()))?;
                if ifaces.iter().any(|x: &Interface<'_>| x.name == name) {
                    return Err(EMBER_EINVAL);
                }
                if name == object::OBJECT_MANAGER {
                    // The built-in interface: answered by `process`, nothing of the caller's.
                    if i.n_methods != 0 || i.n_signals != 0 || i.n_properties != 0 {
                        return Err(EMBER_EINVAL);
                    }
                    ifaces.push(object::OBJECT_MANAGER_INTERFACE);
                    continue;
                }
                let mut methods = Vec::new();
                for m in table(i.methods, i.n_methods)? {
                    let member = e.keep(m.name, |n| names::is_member_name(n.as_bytes()))?;
                    let (args, results) = (e.keep(m.args, is_sig)?, e.keep(m.results, is_sig)?);
                    let f = m.handler.ok_or(EMBER_EINVAL)?;
                    if methods.iter().any(|x: &Method<'_>| x.name == member) {
                        return Err(EMBER_EINVAL);
                    }
                    e.handlers.push(Handler { interface: name, member, results, f, ctx: m.ctx });
                    methods.push(Method { name: member, args, results });
                }
                let mut signals = Vec::new();
                for g in table(i.signals, i.n_signals)? {
                    let member = e.keep(g.name, |n| names::is_member_name(n.as_bytes()))?;
                    signals.push(SignalDesc { name: member, args: e.keep(g.args, is_sig)? });
                }
                let mut properties = Vec::new();
                for p in table(i.properties, i.n_properties)? {
                    let pname = e.keep(p.name, |n| names::is_member_name(n.as_bytes()))?;
                    let signature = e.keep(p.signature, |s| Signature::new(s).is_ok_and(|s| s.is_single()))?;
                    let writable = match p.access {
                        EMBER_DBUS_PROPERTY_READ => false,
                        EMBER_DBUS_PROPERTY_READWRITE => true,
                        _ => return Err(EMBER_EINVAL),
                    };
                    let emits = match p.emits_changed {
                        EMBER_DBUS_EMITS_CHANGED_TRUE => None,
                        EMBER_DBUS_EMITS_CHANGED_INVALIDATES => Some("invalidates"),
                        EMBER_DBUS_EMITS_CHANGED_CONST => Some("const"),
                        EMBER_DBUS_EMITS_CHANGED_FALSE => Some("false"),
                        _ => return Err(EMBER_EINVAL),
                    };
                    if properties.iter().any(|x: &Property<'_>| x.name == pname) {
                        return Err(EMBER_EINVAL);
                    }
                    let get = i.get_property.ok_or(EMBER_EINVAL)?;
                    let set = if writable { Some(i.set_property.ok_or(EMBER_EINVAL)?) } else { None };
                    e.props.push(Prop { interface: name, name: pname, signature, get, set, ctx: i.property_ctx });
                    if let Some(v) = emits {
                        e.emits.push((name, pname, v));
                    }
                    properties.push(Property { name: pname, signature, writable });
                }
                e.methods.push(methods.into_boxed_slice());
                e.signals.push(signals.into_boxed_slice());
                e.properties.push(properties.into_boxed_slice());
                ifaces.push(Interface {
                    name,
                    methods: extend(e.methods.last().map(|b| &**b)),
                    properties: extend(e.properties.last().map(|b| &**b)),
                    signals: extend(e.signals.last().map(|b| &**b)),
                });
            }
            e.interfaces = Some(ifaces.into_boxed_slice());
            let object = Object { path, interfaces: extend(e.interfaces.as_deref()) };
            Ok((object, e))
        }
    }
}

impl Table {
    /// Adds `o` (a fallback object if `fallback`).
    ///
    /// # Safety
    ///
    /// As `Entry::build`.
    unsafe fn add(&mut self, o: &ember_dbus_object, fallback: bool) -> Result<c_int, c_int> {
        if self.objects.len() >= self.capacity {
            return Err(EMBER_ENOSPC);
        }
        // SAFETY: the caller's contract.
        let (object, entry) = unsafe { Entry::build(o)? };
        if self.objects.iter().any(|x| x.path == object.path) {
            return Err(EMBER_EINVAL);
        }
        // Room was reserved at creation: these pushes do not reallocate.
        self.objects.push(object);
        self.fallback.push(fallback);
        self.entries.push(entry);
        self.describe();
        Ok(EMBER_OK)
    }

    /// Rebuilds the annotations (the properties' `EmitsChangedSignal`) from the entries.
    fn describe(&mut self) {
        self.annotations.clear();
        for (i, p, v) in self.entries.iter().flat_map(|e| &e.emits) {
            self.annotations.push(Annotation {
                interface: i,
                member: Member::Property(p),
                name: object::annotations::EMITS_CHANGED_SIGNAL,
                value: v,
            });
        }
    }
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

/// The boxed slice just pushed, as a view that lives as long as the entry that owns it.
fn extend<T>(b: Option<&[T]>) -> &'static [T] {
    match b {
        // SAFETY: a boxed slice's heap block never moves, and the service drops its views
        // of an entry (`objects`, `annotations`) before the entry (field order, and
        // `remove` takes the view out first); the view is taken after the box was pushed,
        // so no move of the box follows it.
        Some(b) => unsafe { &*core::ptr::slice_from_raw_parts(b.as_ptr(), b.len()) },
        None => &[],
    }
}

fn is_sig(s: &str) -> bool {
    Signature::new(s).is_ok()
}

/// The service's table, borrowed by one export; released on drop.
struct Entered<'a> {
    busy: &'a Cell<bool>,
    s: &'a mut Table,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.busy.set(false);
    }
}

/// Borrows the table of the service at `s`: `EMBER_EINVAL` for NULL or misaligned,
/// `EMBER_EBUSY` while another export uses it (a callback calling back into its own
/// service). Only the fields are borrowed, never the whole struct, so the check itself
/// aliases nothing.
///
/// # Safety
///
/// A non-NULL, aligned `s` from `ember_dbus_service_new`, not freed.
unsafe fn enter<'a>(s: *mut ember_dbus_service) -> Result<Entered<'a>, c_int> {
    if s.is_null() || !s.is_aligned() {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: a live service by the caller's contract; a shared borrow of the `Cell` field
    // only, which no `&mut` ever covers.
    let busy = unsafe { &*core::ptr::addr_of!((*s).busy) };
    if busy.replace(true) {
        return Err(EMBER_EBUSY);
    }
    // SAFETY: live by the caller's contract; the flag just taken guarantees no other
    // borrow of this field is alive (every export goes through `enter`).
    let t = unsafe { &mut *core::ptr::addr_of_mut!((*s).t) };
    Ok(Entered { busy, s: t })
}

/// Makes a service from `n` objects at `objects` (copied: the table may be freed after),
/// with room for `EMBER_DBUS_SERVICE_CAPACITY` objects (or `n`, if more) in all. Returns
/// `EMBER_OK`, or `EMBER_EINVAL` for an invalid path, name or signature, a NULL handler,
/// getter or setter where one is needed, a property that is not one complete type or whose
/// `access` or `emits_changed` is not one of the constants (`EMBER_DBUS_PROPERTY_WRITE`
/// alone is refused), an `org.freedesktop.DBus.ObjectManager` interface with members of
/// its own, two objects at one path, two interfaces of one name in an object, or two
/// methods or properties of one name in an interface.
///
/// # Safety
///
/// `objects` `n` readable objects, whose arrays and strings are valid as their counts
/// say; `out` a writable pointer. The contexts are kept as they are.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_new(
    objects: *const ember_dbus_object,
    n: usize,
    out: *mut *mut ember_dbus_service,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe { ember_dbus_service_new_sized(objects, n, n.max(EMBER_DBUS_SERVICE_CAPACITY), out) }
}

/// `ember_dbus_service_new` with room for `capacity` objects in all (those of the table
/// and those added later; reserved now). Returns `EMBER_OK`; `EMBER_EINVAL` as
/// `ember_dbus_service_new` says, or `capacity` below `n` or over 65536.
///
/// # Safety
///
/// As `ember_dbus_service_new`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_new_sized(
    objects: *const ember_dbus_object,
    n: usize,
    capacity: usize,
    out: *mut *mut ember_dbus_service,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        if capacity < n || capacity > 65536 {
            return Err(EMBER_EINVAL);
        }
        let mut s = Table {
            objects: Vec::with_capacity(capacity),
            annotations: Vec::new(),
            fallback: Vec::with_capacity(capacity),
            entries: Vec::with_capacity(capacity),
            capacity,
            reply: Box::new(ember_dbus_args::new(super::EMBER_DBUS_MAX_MESSAGE - 1024)),
        };
        // SAFETY: the table is readable as its counts say, by the caller's contract.
        for o in unsafe { table(objects, n)? } {
            // SAFETY: as above.
            unsafe { s.add(o, false)? };
        }
        out.set(Box::into_raw(Box::new(ember_dbus_service { busy: Cell::new(false), t: s })));
        Ok(EMBER_OK)
    })
}

/// Adds the object `o` (copied: strings and tables may be freed after) to the service:
/// `ember_dbus_process` answers for it from its next call. The object's strings are
/// copied to the heap now (freed when it is removed). Announce it to an ObjectManager's
/// watchers with `ember_dbus_emit_interfaces_added`. Returns `EMBER_OK`; `EMBER_EINVAL`
/// (a NULL pointer, an object `ember_dbus_service_new` would refuse, or an object at that
/// path already); `EMBER_ENOSPC` (the service holds its capacity of objects); `EMBER_EBUSY`
/// (from a callback of this service).
///
/// # Safety
///
/// `s` from `ember_dbus_service_new`; `o` NULL or an object valid as its counts say.
///
/// Thread safety: not with other calls on the same service.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_add_object(
    s: *mut ember_dbus_service,
    o: *const ember_dbus_object,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (e, o) = unsafe { (enter(s)?, arg(o)?) };
        // SAFETY: the caller's contract.
        unsafe { e.s.add(o, false) }
    })
}

/// Adds `o` as a fallback (subtree) object: it also answers for every path below its own
/// that has no object of its own (the nearest fallback above a path answers; handlers,
/// getters and setters see the path called). Returns `EMBER_OK`; `EMBER_EINVAL`,
/// `EMBER_ENOSPC` or `EMBER_EBUSY` as `ember_dbus_service_add_object` says.
///
/// # Safety
///
/// As `ember_dbus_service_add_object`.
///
/// Thread safety: not with other calls on the same service.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_add_fallback(
    s: *mut ember_dbus_service,
    o: *const ember_dbus_object,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (e, o) = unsafe { (enter(s)?, arg(o)?) };
        // SAFETY: the caller's contract.
        unsafe { e.s.add(o, true) }
    })
}

/// Removes the object registered at `path` (an ordinary or a fallback object) and frees
/// its copies. Announce it with `ember_dbus_emit_interfaces_removed`. Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL pointer, or no object registered at `path`); `EMBER_EBUSY` (from
/// a callback of this service).
///
/// # Safety
///
/// `s` from `ember_dbus_service_new`; `path` NUL-terminated.
///
/// Thread safety: not with other calls on the same service.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_remove_object(s: *mut ember_dbus_service, path: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (e, path) = unsafe { (enter(s)?, c_name(path)?) };
        let s = &mut *e.s;
        let i = s.objects.iter().position(|o| o.path == path).ok_or(EMBER_EINVAL)?;
        // The views first, then the storage they point into.
        s.objects.remove(i);
        s.fallback.remove(i);
        s.annotations.clear();
        drop(s.entries.remove(i));
        s.describe();
        Ok(EMBER_OK)
    })
}

/// Frees the service.
///
/// # Safety
///
/// `s` NULL or from `ember_dbus_service_new`, not used after (nor from a callback it runs).
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_service_free(s: *mut ember_dbus_service) {
    if !s.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// The service's side of `Service`: finds the callbacks and calls them.
struct Dispatch<'s> {
    view: View<'s, 's>,
    objects: &'s [Object<'s>],
    entries: &'s [Entry],
    reply: &'s mut ember_dbus_args,
}

/// A formatted `Failed` error.
fn failed(args: core::fmt::Arguments<'_>) -> MethodError {
    let mut m = heapless::String::<96>::new();
    let _ = m.write_fmt(args);
    MethodError::failed(&m)
}

/// What a handler's `_call` points to.
struct CallState<'c> {
    call: &'c Call<'c>,
    deferred: Cell<bool>,
}

impl<'s> Dispatch<'s> {
    /// The entry of the object answering at `path`.
    fn entry(&self, path: &str) -> Option<&'s Entry> {
        let o = self.view.find(path)?;
        let i = self.objects.iter().position(|x| core::ptr::eq(x, o))?;
        self.entries.get(i)
    }

    fn prop(&self, path: &str, interface: &str, property: &str) -> Result<&'s Prop, MethodError> {
        self.entry(path)
            .and_then(|e| e.props.iter().find(|p| p.interface == interface && p.name == property))
            .ok_or_else(|| failed(format_args!("no property {property}")))
    }

    /// The error a callback returned `rc` with (set with `ember_dbus_args_set_error`, or
    /// `Failed` naming `what`).
    fn error(&self, rc: c_int, what: &str) -> MethodError {
        let r = &*self.reply;
        if r.error_name_len == 0 {
            return failed(format_args!("the handler of {what} failed ({rc})"));
        }
        // SAFETY: checked as an error name (ASCII) when set; the name lives in the reply
        // builder, untouched until the next callback, and the error is consumed before
        // `ember_dbus_process` (or the emit that ran the callback) returns.
        let name: &'static str = unsafe {
            core::str::from_utf8_unchecked(core::slice::from_raw_parts(r.error_name.as_ptr(), r.error_name_len))
        };
        // SAFETY: as for the name: the message lives in the reply builder, untouched until
        // the next callback, and the error is consumed before the export returns; so it is
        // sent whole, without a copy.
        let message: &'static str = unsafe {
            let m = r.error_message();
            core::str::from_utf8_unchecked(core::slice::from_raw_parts(m.as_ptr(), m.len()))
        };
        MethodError::from_static(name, message)
    }
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
            .entry(call.path)
            .and_then(|e| e.handlers.iter().find(|h| h.interface == call.interface && h.member == call.member))
        else {
            return Err(failed(format_args!("no handler for {}", call.member)));
        };
        self.reply.clear();
        let mut it = core::mem::MaybeUninit::<ember_dbus_iter>::uninit();
        ember_dbus_iter::init(&Out::local(&mut it), State::Values(args));
        // SAFETY: initialised just above.
        let mut it = unsafe { it.assume_init() };
        let state = CallState { call, deferred: Cell::new(false) };
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
            _call: (&raw const state).cast(),
        };
        // SAFETY: the C handler, called as its type says, with pointers valid for the call.
        let rc = unsafe { (h.f)(h.ctx, &info, &mut it, &mut *self.reply) };
        if state.deferred.get() {
            // The token answers; nothing is sent now.
            return Ok(());
        }
        if rc != 0 {
            return Err(self.error(rc, call.member));
        }
        let r = &*self.reply;
        if r.nfds != 0 {
            return Err(failed(format_args!("the handler of {} replied with fds (not supported)", call.member)));
        }
        let sig = r.checked().map_err(|_| failed(format_args!("the handler of {} built a bad reply", call.member)))?;
        if sig.as_str() != h.results {
            return Err(failed(format_args!("{} returned ({}), not ({})", call.member, sig, h.results)));
        }
        reply.marshalled(r.body()).map_err(|_| failed(format_args!("the reply of {} does not fit", call.member)))
    }

    fn get(&mut self, path: &str, interface: &str, property: &str, value: &mut Writer<'_>) -> Result<(), MethodError> {
        let p = self.prop(path, interface, property)?;
        let (f, ctx, sig) = (p.get, p.ctx, p.signature);
        // The path points into the message or the table (or a C string), each followed by
        // a NUL; the names and signature into the table.
        let info = ember_dbus_property_info {
            path: path.as_ptr().cast(),
            interface: p.interface.as_ptr().cast(),
            property: p.name.as_ptr().cast(),
            signature: p.signature.as_ptr().cast(),
        };
        self.reply.clear();
        // SAFETY: the C getter, called as its type says, with pointers valid for the call.
        let rc = unsafe { f(ctx, &info, &mut *self.reply) };
        if rc != 0 {
            return Err(self.error(rc, property));
        }
        let r = &*self.reply;
        if r.nfds != 0 {
            return Err(failed(format_args!("the getter of {property} wrote an fd (not supported)")));
        }
        let got = r.checked().map_err(|_| failed(format_args!("the getter of {property} built a bad value")))?;
        if got.as_str() != sig {
            return Err(failed(format_args!("the getter of {property} wrote ({got}), not ({sig})")));
        }
        // Written again value by value: the variant's value need not start at a multiple
        // of 8 as the builder's did.
        let v = Reader::new(r.body(), Endian::NATIVE)
            .values(got)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| failed(format_args!("the getter of {property} built a bad value")))?;
        value.value(v).map_err(|_| failed(format_args!("the value of {property} does not fit")))
    }

    fn set(&mut self, path: &str, interface: &str, property: &str, value: Value<'_>) -> Result<(), MethodError> {
        let p = self.prop(path, interface, property)?;
        let Some(f) = p.set else {
            return Err(failed(format_args!("{property} is read-only")));
        };
        let ctx = p.ctx;
        // As in `get`: each string is followed by a NUL.
        let info = ember_dbus_property_info {
            path: path.as_ptr().cast(),
            interface: p.interface.as_ptr().cast(),
            property: p.name.as_ptr().cast(),
            signature: p.signature.as_ptr().cast(),
        };
        let mut it = core::mem::MaybeUninit::<ember_dbus_iter>::uninit();
        ember_dbus_iter::init(&Out::local(&mut it), State::Variant(Some(value)));
        // SAFETY: initialised just above.
        let mut it = unsafe { it.assume_init() };
        self.reply.clear();
        // SAFETY: the C setter, called as its type says, with pointers valid for the call.
        let rc = unsafe { f(ctx, &info, &mut it, &mut *self.reply) };
        if rc != 0 {
            return Err(self.error(rc, property));
        }
        Ok(())
    }
}

/// Runs `f` with the service's objects as a `View` and its `Dispatch`.
fn with_dispatch<R>(s: &mut Table, f: impl FnOnce(View<'_, '_>, &mut Dispatch<'_>) -> R) -> R {
    let description = Description { annotations: &s.annotations, arg_names: &[] };
    let view = View::new(&s.objects, &s.fallback, &description);
    let mut dispatch = Dispatch { view, objects: &s.objects, entries: &s.entries, reply: &mut s.reply };
    f(view, &mut dispatch)
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

/// Inside a handler: defers the answer to the call into `*token` (the caller's memory; no
/// heap): nothing is sent when the handler returns (what it returns and writes is
/// dropped), and `ember_dbus_process` goes on serving other callers. Answer later, once,
/// with `ember_dbus_reply` or `ember_dbus_reply_error` on the same connection. Returns
/// `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, or the call was deferred
/// already: one call, one token).
///
/// # Safety
///
/// `call` the info a handler was given, during the handler; `token` writable.
///
/// Thread safety: the handler's thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_call_defer(
    call: *const ember_dbus_call_info,
    token: *mut ember_dbus_token,
) -> c_int {
    guard(|| {
        let token = crate::error::out(token)?;
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let call = unsafe { arg(call)? };
        if call._call.is_null() {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: `_call` points to the handler's `CallState`, alive during the handler.
        let state = unsafe { &*call._call.cast::<CallState<'_>>() };
        let t = state.call.defer().map_err(|_| EMBER_EINVAL)?;
        state.deferred.set(true);
        let mut out = ember_dbus_token { _magic: TOKEN_MAGIC, _state: [core::mem::MaybeUninit::uninit(); 34] };
        // SAFETY: a `Token` fits in `_state` and needs no stricter alignment (asserted
        // above); it is plain data (no destructor), read back once by `take_token`.
        unsafe { core::ptr::write(out._state.as_mut_ptr().cast::<Token>(), t) };
        token.set(out);
        Ok(EMBER_OK)
    })
}

/// Takes the deferred call out of `token` (which is empty after).
fn take_token(token: &mut ember_dbus_token) -> Result<Token, c_int> {
    if token._magic != TOKEN_MAGIC {
        return Err(EMBER_EINVAL);
    }
    token._magic = 0;
    // SAFETY: written by `ember_dbus_call_defer` (the magic says so), read once (the magic
    // is cleared); a `Token` is plain data.
    Ok(unsafe { core::ptr::read(token._state.as_ptr().cast::<Token>()) })
}

/// Answers the deferred call in `token` with the results in `args` (NULL: none; of the
/// method's `results` signature, which is the caller's to keep: it is not checked here),
/// and empties the token. Results too large for the connection's build buffer answer the
/// caller with `org.freedesktop.DBus.Error.Failed` instead (and this returns
/// `EMBER_ETOOBIG`). A caller that asked for no reply gets nothing (`EMBER_OK`). Returns
/// `EMBER_OK`; `EMBER_EINVAL` (a NULL pointer, a token that holds no deferred call,
/// unclosed containers or fds in `args`: the token is kept then); `EMBER_ETOOBIG`;
/// `EMBER_EPEERGONE` (the bus is gone); `EMBER_EBUSY` (from a callback of this
/// connection; the token is kept); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect` (the connection the call came on); `token` filled by
/// `ember_dbus_call_defer`, or empty; `args` NULL or from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same connection or token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_reply(
    d: *mut ember_dbus,
    token: *mut ember_dbus_token,
    args: *const ember_dbus_args,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, token) = unsafe { (super::enter(d)?, arg_mut(token)?) };
        // SAFETY: as above.
        let args = if args.is_null() { None } else { Some(unsafe { arg(args)? }) };
        let (sig, body) = match args {
            None => (Signature::EMPTY, &[][..]),
            Some(a) if a.nfds != 0 => return Err(EMBER_EINVAL),
            Some(a) => (a.checked()?, a.body()),
        };
        let t = take_token(token)?;
        d.c.reply(t, sig, |w| w.marshalled(body)).map_err(super::send_code)?;
        Ok(EMBER_OK)
    })
}

/// Answers the deferred call in `token` with the D-Bus error `name` (e.g.
/// `"org.example.Error.Busy"`) and `message` (NULL: empty; cut to what the build buffer
/// holds), and empties the token. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL pointer, an
/// invalid error name, a message not UTF-8, or a token that holds no deferred call: the
/// token is kept then); `EMBER_EPEERGONE`; `EMBER_EBUSY` (from a callback of this
/// connection; the token is kept); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect` (the connection the call came on); `token` filled by
/// `ember_dbus_call_defer`, or empty; `name` NUL-terminated; `message` NULL or
/// NUL-terminated.
///
/// Thread safety: not with other calls on the same connection or token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_reply_error(
    d: *mut ember_dbus,
    token: *mut ember_dbus_token,
    name: *const c_char,
    message: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, token, name) = unsafe { (super::enter(d)?, arg_mut(token)?, c_name(name)?) };
        // SAFETY: as above.
        let message = if message.is_null() { "" } else { unsafe { c_name(message)? } };
        if ember_core::dbus::ErrorName::new(name).is_err() {
            return Err(EMBER_EINVAL);
        }
        let t = take_token(token)?;
        d.c.reply_error(t, name, message).map_err(super::send_code)?;
        Ok(EMBER_OK)
    })
}

/// Receives one message (waiting up to `timeout_ms`) and, if it is a method call, answers
/// it from the service `s` (a handler's results or error, the built-in interfaces, or the
/// standard error; nothing now if the handler deferred it): `*answered` becomes 1. A
/// successful `Properties.Set` is followed by `PropertiesChanged` as the property's
/// `emits_changed` says. Any other message (a signal, a reply nobody waited for) goes to
/// `*other` (may be NULL) and `*answered` becomes 0. Returns `EMBER_OK`; `EMBER_ECANCELED`
/// (the canceler installed with `ember_set_canceler` was cancelled during the wait);
/// `EMBER_ETIMEDOUT` when nothing came; `EMBER_EBADMSG`/`EMBER_ETOOBIG` for a malformed or
/// oversized message (skipped); `EMBER_EOVERFLOW` once where the queue dropped messages
/// (call again); `EMBER_EPEERGONE` (the bus is gone); `EMBER_EINVAL` (a NULL or misaligned
/// pointer); `EMBER_EBUSY` (from a handler or callback of this connection or service);
/// `EMBER_EOS`.
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
        let (d, e) = unsafe { (super::enter(d)?, enter(s)?) };
        let was_call = with_dispatch(&mut *e.s, |view, dispatch| {
            let r = d.c.process_view(view, dispatch, super::ms(timeout_ms)).map_err(super::dbus_code)?;
            Ok::<_, c_int>(match r {
                Processed::Answered => true,
                Processed::Message(m) => {
                    if let Some(o) = &other {
                        super::describe(&m, o);
                    }
                    false
                }
            })
        })?;
        if let Some(a) = answered {
            a.set(was_call as c_int);
        }
        Ok(EMBER_OK)
    })
}

/// Announces a change of `property` of `interface` of the object at `path` made by the
/// daemon itself (a `Properties.Set` is announced by `ember_dbus_process`), as the
/// property's `emits_changed` says: `PropertiesChanged` with the value read through the
/// getter (or the name invalidated, also when the getter fails), or nothing for
/// `EMBER_DBUS_EMITS_CHANGED_CONST` and `_FALSE` (`*serial` is 0 then). Its serial goes to
/// `*serial` (may be NULL). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL pointer, or no such
/// property at `path`, a fallback's paths included); `EMBER_ETOOBIG` (the signal does not
/// fit the build buffer); `EMBER_EPEERGONE`; `EMBER_EBUSY` (from a callback of this
/// connection or service); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `s` from `ember_dbus_service_new`; the strings
/// NUL-terminated; `serial` NULL or writable.
///
/// Thread safety: not with other calls on the same connection or service.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_emit_property_changed(
    d: *mut ember_dbus,
    s: *mut ember_dbus_service,
    path: *const c_char,
    interface: *const c_char,
    property: *const c_char,
    serial: *mut u32,
) -> c_int {
    guard(|| {
        let serial = if serial.is_null() { None } else { Some(crate::error::out(serial)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, e) = unsafe { (super::enter(d)?, enter(s)?) };
        // SAFETY: as above.
        let (path, iface, prop) = unsafe { (c_name(path)?, c_name(interface)?, c_name(property)?) };
        let r = with_dispatch(&mut *e.s, |view, dispatch| d.c.property_changed_view(view, path, iface, prop, dispatch));
        let sent = r.map_err(super::send_code)?;
        if let Some(o) = serial {
            o.set(sent.unwrap_or(0));
        }
        Ok(EMBER_OK)
    })
}

/// Emits `org.freedesktop.DBus.ObjectManager.InterfacesAdded` from the manager at
/// `manager` for the object registered at `path` in `s`: each of its interfaces with its
/// properties read through the getters (a getter that fails fails the emission: nothing
/// is sent). Its serial goes to `*serial` (may be NULL). Returns `EMBER_OK`; `EMBER_EINVAL`
/// (a NULL pointer, an invalid `manager`, no object registered at `path`, or a getter
/// failed); `EMBER_ETOOBIG`; `EMBER_EPEERGONE`; `EMBER_EBUSY` (from a callback of this
/// connection or service); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `s` from `ember_dbus_service_new`; the strings
/// NUL-terminated; `serial` NULL or writable.
///
/// Thread safety: not with other calls on the same connection or service.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_emit_interfaces_added(
    d: *mut ember_dbus,
    s: *mut ember_dbus_service,
    manager: *const c_char,
    path: *const c_char,
    serial: *mut u32,
) -> c_int {
    guard(|| {
        let serial = if serial.is_null() { None } else { Some(crate::error::out(serial)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, e) = unsafe { (super::enter(d)?, enter(s)?) };
        // SAFETY: as above.
        let (manager, path) = unsafe { (c_name(manager)?, c_name(path)?) };
        let Some(o) = e.s.objects.iter().find(|o| o.path == path).copied() else {
            return Err(EMBER_EINVAL);
        };
        let sent = with_dispatch(&mut *e.s, |_, dispatch| d.c.emit_interfaces_added(manager, &o, dispatch));
        let sent = sent.map_err(super::send_code)?;
        if let Some(out) = serial {
            out.set(sent);
        }
        Ok(EMBER_OK)
    })
}

/// Emits `org.freedesktop.DBus.ObjectManager.InterfacesRemoved` from the manager at
/// `manager`: the object at `path` lost the `n` interfaces named at `interfaces` (all of
/// them when it is gone). Its serial goes to `*serial` (may be NULL). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL pointer, an invalid path or interface name); `EMBER_ETOOBIG`;
/// `EMBER_EPEERGONE`; `EMBER_EBUSY` (from a callback of this connection); `EMBER_EOS`.
///
/// # Safety
///
/// `d` from `ember_dbus_connect`; `manager`, `path` NUL-terminated; `interfaces` NULL
/// (when `n` is 0) or `n` NUL-terminated strings; `serial` NULL or writable.
///
/// Thread safety: not with other calls on the same connection.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_emit_interfaces_removed(
    d: *mut ember_dbus,
    manager: *const c_char,
    path: *const c_char,
    interfaces: *const *const c_char,
    n: usize,
    serial: *mut u32,
) -> c_int {
    use ember_core::dbus::{ObjectPath, names};
    guard(|| {
        let serial = if serial.is_null() { None } else { Some(crate::error::out(serial)?) };
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (d, manager, path) = unsafe { (super::enter(d)?, c_name(manager)?, c_name(path)?) };
        // SAFETY: as above.
        let names_at = unsafe { table(interfaces, n)? };
        // Checked once before the signal is built (no copy: the strings are read again).
        for &p in names_at {
            // SAFETY: the caller's contract.
            if !names::is_interface_name(unsafe { c_name(p)? }.as_bytes()) {
                return Err(EMBER_EINVAL);
            }
        }
        let path = ObjectPath::new(path).map_err(|_| EMBER_EINVAL)?;
        let sig = Signature::new("oas").map_err(|_| EMBER_EINTERNAL)?;
        let sent =
            d.c.emit_signal(manager, object::OBJECT_MANAGER, "InterfacesRemoved", sig, |w| {
                w.object_path(path)?;
                w.array(b's', |w| {
                    names_at.iter().try_for_each(|&p| {
                        // SAFETY: checked above (NUL-terminated, UTF-8).
                        w.str(unsafe { c_name(p) }.unwrap_or(""))
                    })
                })
            })
            .map_err(super::send_code)?;
        if let Some(o) = serial {
            o.set(sent);
        }
        Ok(EMBER_OK)
    })
}
