//! Serving objects: a static table of object paths, interfaces, methods, properties and
//! signals, and a [`Service`] that answers the calls. `org.freedesktop.DBus.Peer`,
//! `org.freedesktop.DBus.Introspectable` (XML generated from the table) and
//! `org.freedesktop.DBus.Properties` (`Get`, `GetAll`, `Set`) are built in; a call to an
//! unknown object, interface, method or property, or with arguments of the wrong signature,
//! gets the standard error.
//!
//! Typed handlers: [`Method::typed`] takes a method's signatures from its argument and
//! result types, and [`handle`] reads the arguments as those types, runs the handler and
//! writes its results, inside [`Service::call`]:
//!
//! ```
//! use ember_linux::dbus::object::{self, Call, Interface, Method, MethodError, Object, Service};
//! use ember_core::dbus::{Value, Writer, value::Values};
//!
//! static OBJECTS: &[Object<'static>] = &[Object {
//!     path: "/org/example/Calc",
//!     interfaces: &[Interface {
//!         name: "org.example.Calc",
//!         methods: &[Method::typed::<(i32, i32), (i32,)>("Add")],
//!         properties: &[],
//!         signals: &[],
//!     }],
//! }];
//! assert_eq!((OBJECTS[0].interfaces[0].methods[0].args, OBJECTS[0].interfaces[0].methods[0].results), ("ii", "i"));
//!
//! struct Calc;
//! impl Service for Calc {
//!     fn call(&mut self, call: &Call<'_>, args: Values<'_>, _: &mut [Option<std::os::fd::OwnedFd>], reply: &mut Writer<'_>) -> Result<(), MethodError> {
//!         match call.member {
//!             "Add" => object::handle(args, reply, |(a, b): (i32, i32)| Ok((a.wrapping_add(b),))),
//!             _ => Err(MethodError::failed("no such method")),
//!         }
//!     }
//!     fn get(&mut self, _: &str, _: &str, _: &str, _: &mut Writer<'_>) -> Result<(), MethodError> { Err(MethodError::failed("none")) }
//!     fn set(&mut self, _: &str, _: &str, _: &str, _: Value<'_>) -> Result<(), MethodError> { Err(MethodError::failed("none")) }
//! }
//! ```

use ember_core::dbus::typed::{Body, DbusType, DecodeBody, Encode, EncodeBody, body_signature_of, signature_of};
use ember_core::dbus::value::Values;
use ember_core::dbus::{DbusError, Signature, Value, Writer};

/// One method: its name and the signatures of its arguments and results.
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy)]
pub struct Method<'a> {
    /// The member name.
    pub name: &'a str,
    /// The arguments' signature.
    pub args: &'a str,
    /// The results' signature.
    pub results: &'a str,
}

impl<'a> Method<'a> {
    /// The method `name` whose arguments are the body `A` and results the body `R` (tuples
    /// of typed values, `()` for none): its signatures are theirs, fixed at compile time.
    pub const fn typed<A: Body + ?Sized, R: Body + ?Sized>(name: &'a str) -> Method<'a> {
        Method { name, args: body_signature_of::<A>(), results: body_signature_of::<R>() }
    }
}

/// Answers a call with the typed handler `f`: reads the arguments as `A`, calls `f`, and
/// writes its results `R` into `reply`. Arguments of another signature (possible only when
/// the table's `args` is not `A`'s: [`Method::typed`] makes them agree) are
/// `org.freedesktop.DBus.Error.InvalidArgs`; the handler's [`MethodError`] is the reply.
///
/// A handler whose results borrow its own locals (a `Dict` of values it computed) reads
/// with [`args`] and writes with [`results`] instead.
pub fn handle<'a, A: DecodeBody<'a>, R: EncodeBody>(
    args: Values<'a>,
    reply: &mut Writer<'_>,
    f: impl FnOnce(A) -> Result<R, MethodError>,
) -> Result<(), MethodError> {
    let a = self::args::<A>(args)?;
    results(reply, &f(a)?)
}

/// Reads a call's arguments as `A`: `org.freedesktop.DBus.Error.InvalidArgs` if they are
/// of another signature or cannot be read.
pub fn args<'a, A: DecodeBody<'a>>(args: Values<'a>) -> Result<A, MethodError> {
    args.decode::<A>().map_err(|e| match e {
        DbusError::SignatureMismatch => {
            MethodError::from_static(names::INVALID_ARGS, "the arguments are not of the handler's types")
        }
        e => MethodError::from_static(names::INVALID_ARGS, dbus_error_text(e)),
    })
}

/// Writes a call's results `r` into `reply` (`org.freedesktop.DBus.Error.Failed` if they
/// do not fit).
pub fn results<R: EncodeBody + ?Sized>(reply: &mut Writer<'_>, r: &R) -> Result<(), MethodError> {
    r.encode_body(reply).map_err(|e| match e {
        DbusError::BufferTooSmall => MethodError::from_static(names::FAILED, "reply too large"),
        e => MethodError::from_static(names::FAILED, dbus_error_text(e)),
    })
}

/// A short text for a [`DbusError`] (no formatting, no heap).
fn dbus_error_text(e: DbusError) -> &'static str {
    match e {
        DbusError::BadUtf8 => "a string is not UTF-8",
        DbusError::BadNul => "a string has a NUL",
        DbusError::BadFdIndex => "an fd index is out of range",
        DbusError::BadSignature => "a signature is malformed or nested too deep",
        DbusError::BadObjectPath => "an object path is malformed",
        DbusError::TooDeep => "values nested too deep",
        _ => "the arguments could not be read",
    }
}

/// One property.
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy)]
pub struct Property<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its type (one complete type).
    pub signature: &'a str,
    /// Whether `Set` may change it.
    pub writable: bool,
}

impl<'a> Property<'a> {
    /// The property `name` of the type `T`: its signature is `T`'s, fixed at compile time
    /// (read and write it with [`property_value`] and [`property_from`]).
    pub const fn typed<T: DbusType + ?Sized>(name: &'a str, writable: bool) -> Property<'a> {
        Property { name, signature: signature_of::<T>(), writable }
    }
}

/// Writes a property's value `v` in [`Service::get`] (the property's signature must be
/// `T`'s: [`Property::typed`] makes them agree). A value too large for the reply is
/// `org.freedesktop.DBus.Error.Failed`.
pub fn property_value<T: Encode + ?Sized>(value: &mut Writer<'_>, v: &T) -> Result<(), MethodError> {
    v.encode(value).map_err(|e| match e {
        DbusError::BufferTooSmall => MethodError::from_static(names::FAILED, "value too large"),
        e => MethodError::from_static(names::FAILED, dbus_error_text(e)),
    })
}

/// Reads the value [`Service::set`] was given as `T`: a basic type (`u32`, `&str`,
/// `ObjectPath`, ...), an [`Array`](ember_core::dbus::value::Array) (an array or a dict) or a
/// [`Variant`](ember_core::dbus::value::Variant). A value of another type is
/// `org.freedesktop.DBus.Error.InvalidArgs`. (`process` checks the value against the
/// table's signature before `set` runs, so with [`Property::typed`] this is the typed read,
/// and the check again.) Structs are read from the `Value` by hand.
pub fn property_from<'a, T>(value: Value<'a>) -> Result<T, MethodError>
where
    T: TryFrom<Value<'a>, Error = DbusError>,
{
    T::try_from(value).map_err(|e| match e {
        DbusError::WrongType => {
            MethodError::from_static(names::INVALID_ARGS, "the value is not of the property's type")
        }
        e => MethodError::from_static(names::INVALID_ARGS, dbus_error_text(e)),
    })
}

/// One signal an interface emits (for introspection).
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy)]
pub struct SignalDesc<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its arguments' signature.
    pub args: &'a str,
}

/// An interface: its methods, properties and signals.
///
/// `Send` and `Sync`: borrowed tables.
#[derive(Debug, Clone, Copy)]
pub struct Interface<'a> {
    /// Its name, e.g. `org.example.Sensor`.
    pub name: &'a str,
    /// Its methods.
    pub methods: &'a [Method<'a>],
    /// Its properties.
    pub properties: &'a [Property<'a>],
    /// Its signals.
    pub signals: &'a [SignalDesc<'a>],
}

/// An object: a path and the interfaces it implements.
///
/// `Send` and `Sync`: borrowed tables.
#[derive(Debug, Clone, Copy)]
pub struct Object<'a> {
    /// Its path, e.g. `/org/example/Sensor`.
    pub path: &'a str,
    /// Its interfaces.
    pub interfaces: &'a [Interface<'a>],
}

/// A D-Bus error to answer a call with: a name such as `org.example.Error.Busy` and a
/// message of any length, sent whole.
///
/// The message is kept without allocating when it is a `&'static str`
/// ([`MethodError::from_static`]) or at most [`MethodError::INLINE`] bytes
/// ([`MethodError::new`]). A longer message given to `new` is copied to the heap once with
/// the `std` feature (on a service's failure path, never on a send or receive path);
/// without `std` it is cut at the last character boundary within `INLINE` bytes.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodError {
    /// The error name.
    pub name: &'static str,
    message: Text,
}

/// Where a [`MethodError`]'s message is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Text {
    Static(&'static str),
    Inline(heapless::String<{ MethodError::INLINE }>),
    #[cfg(feature = "std")]
    Owned(std::string::String),
}

impl core::fmt::Display for MethodError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.name, self.message())
    }
}

impl core::error::Error for MethodError {}

impl MethodError {
    /// The longest message `new` keeps inside the error (longer ones: see the type).
    pub const INLINE: usize = 80;

    /// An error named `name` with `message`.
    pub fn new(name: &'static str, message: &str) -> MethodError {
        let text = match heapless::String::try_from(message) {
            Ok(m) => Text::Inline(m),
            #[cfg(feature = "std")]
            Err(_) => Text::Owned(message.into()),
            #[cfg(not(feature = "std"))]
            Err(_) => {
                let mut end = Self::INLINE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                Text::Inline(heapless::String::try_from(&message[..end]).unwrap_or_default())
            }
        };
        MethodError { name, message: text }
    }

    /// An error named `name` with a `'static` message of any length, never copied.
    pub const fn from_static(name: &'static str, message: &'static str) -> MethodError {
        MethodError { name, message: Text::Static(message) }
    }

    /// `org.freedesktop.DBus.Error.Failed` with `message`.
    pub fn failed(message: &str) -> MethodError {
        MethodError::new(names::FAILED, message)
    }

    /// The message.
    pub fn message(&self) -> &str {
        match &self.message {
            Text::Static(m) => m,
            Text::Inline(m) => m,
            #[cfg(feature = "std")]
            Text::Owned(m) => m,
        }
    }
}

/// The standard error names.
pub mod names {
    /// A generic failure.
    pub const FAILED: &str = "org.freedesktop.DBus.Error.Failed";
    /// No object at that path.
    pub const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
    /// The object has no such interface.
    pub const UNKNOWN_INTERFACE: &str = "org.freedesktop.DBus.Error.UnknownInterface";
    /// The interface has no such method.
    pub const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
    /// No such property.
    pub const UNKNOWN_PROPERTY: &str = "org.freedesktop.DBus.Error.UnknownProperty";
    /// The property is read-only.
    pub const PROPERTY_READ_ONLY: &str = "org.freedesktop.DBus.Error.PropertyReadOnly";
    /// The arguments do not match the method's signature.
    pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
    /// A message was larger than the service can take.
    pub const LIMITS_EXCEEDED: &str = "org.freedesktop.DBus.Error.LimitsExceeded";
}

/// The interfaces every object has.
pub const PEER: &str = "org.freedesktop.DBus.Peer";
/// `Introspect`.
pub const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
/// `Get`, `GetAll`, `Set`, `PropertiesChanged`.
pub const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// `org.freedesktop.DBus.ObjectManager`: `GetManagedObjects`, `InterfacesAdded`,
/// `InterfacesRemoved`.
pub const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";

/// The `org.freedesktop.DBus.ObjectManager` interface, for an object's `interfaces`: the
/// object becomes a manager. `process` answers its `GetManagedObjects` itself (every object
/// below it, each interface with its properties read through [`Service::get`]), and it is
/// introspected like any interface. The signals are emitted with
/// [`ConnectionWith::emit_interfaces_added`](super::ConnectionWith::emit_interfaces_added)
/// and [`emit_interfaces_removed`](super::ConnectionWith::emit_interfaces_removed).
pub const OBJECT_MANAGER_INTERFACE: Interface<'static> = Interface {
    name: OBJECT_MANAGER,
    methods: &[Method { name: "GetManagedObjects", args: "", results: "a{oa{sa{sv}}}" }],
    properties: &[],
    signals: &[
        SignalDesc { name: "InterfacesAdded", args: "oa{sa{sv}}" },
        SignalDesc { name: "InterfacesRemoved", args: "oas" },
    ],
};

/// What an [`Annotation`] or [`ArgNames`] is about, inside one interface.
///
/// `Send` and `Sync`: a borrowed string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member<'a> {
    /// The interface itself (an annotation on every member, e.g. `Deprecated`, or the
    /// interface-wide `EmitsChangedSignal`).
    Interface,
    /// A method.
    Method(&'a str),
    /// A property.
    Property(&'a str),
    /// A signal.
    Signal(&'a str),
}

/// An annotation in the introspection XML, such as `org.freedesktop.DBus.Deprecated` =
/// `true` on a method (names in [`annotations`]).
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy)]
pub struct Annotation<'a> {
    /// The interface.
    pub interface: &'a str,
    /// The member annotated (or the interface).
    pub member: Member<'a>,
    /// The annotation's name.
    pub name: &'a str,
    /// Its value.
    pub value: &'a str,
}

/// The names of a method's arguments and results, or of a signal's arguments, for the
/// introspection XML (`<arg name=...>`); missing names are left out.
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy)]
pub struct ArgNames<'a> {
    /// The interface.
    pub interface: &'a str,
    /// The method or signal.
    pub member: Member<'a>,
    /// The arguments' names, in order (a signal's arguments).
    pub args: &'a [&'a str],
    /// The results' names, in order (empty for a signal).
    pub results: &'a [&'a str],
}

/// What the introspection XML says beyond the signatures, and how properties announce
/// their changes: argument names and annotations, given to an [`ObjectTable`] with
/// [`ObjectTable::describe`].
///
/// ```
/// use ember_linux::dbus::object::{annotations, Annotation, ArgNames, Description, EmitsChanged, Member};
///
/// static DESC: Description<'static> = Description {
///     annotations: &[
///         Annotation { interface: "org.example.Lamp", member: Member::Method("Blink"), name: annotations::DEPRECATED, value: "true" },
///         Annotation { interface: "org.example.Lamp", member: Member::Property("Serial"), name: annotations::EMITS_CHANGED_SIGNAL, value: "const" },
///     ],
///     arg_names: &[ArgNames { interface: "org.example.Lamp", member: Member::Method("Dim"), args: &["percent"], results: &["level"] }],
/// };
/// assert_eq!(DESC.emits_changed("org.example.Lamp", "Serial"), EmitsChanged::Const);
/// assert_eq!(DESC.emits_changed("org.example.Lamp", "Level"), EmitsChanged::True);
/// ```
///
/// `Send` and `Sync`: borrowed tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Description<'a> {
    /// The annotations.
    pub annotations: &'a [Annotation<'a>],
    /// The argument names.
    pub arg_names: &'a [ArgNames<'a>],
}

/// Standard annotation names.
pub mod annotations {
    /// The member (or interface) is deprecated: value `true`.
    pub const DEPRECATED: &str = "org.freedesktop.DBus.Deprecated";
    /// Whether a property's changes are announced by `PropertiesChanged`: `true` (with its
    /// value, the default), `invalidates` (by name only), `const` (it never changes) or
    /// `false` (not announced). On an interface: the default of its properties.
    pub const EMITS_CHANGED_SIGNAL: &str = "org.freedesktop.DBus.Property.EmitsChangedSignal";
    /// A method's caller expects no reply: value `true`.
    pub const NO_REPLY: &str = "org.freedesktop.DBus.Method.NoReply";
}

/// How a property's changes are announced (its `EmitsChangedSignal` annotation).
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitsChanged {
    /// `PropertiesChanged` with the new value (the specification's default).
    True,
    /// `PropertiesChanged` naming the property in `invalidated_properties`.
    Invalidates,
    /// Never changes: nothing is emitted.
    Const,
    /// Changes are not announced.
    False,
}

impl Description<'_> {
    /// Nothing beyond the signatures.
    pub const EMPTY: Description<'static> = Description { annotations: &[], arg_names: &[] };

    /// The annotations on `member` of `interface`.
    pub fn annotations_of<'s>(
        &'s self,
        interface: &'s str,
        member: Member<'s>,
    ) -> impl Iterator<Item = &'s Annotation<'s>> + 's {
        self.annotations.iter().filter(move |a| a.interface == interface && a.member == member)
    }

    /// The names of `member`'s arguments, if given.
    pub fn arg_names_of(&self, interface: &str, member: Member<'_>) -> Option<&ArgNames<'_>> {
        self.arg_names.iter().find(|a| a.interface == interface && a.member == member)
    }

    /// How changes of `property` of `interface` are announced: its own
    /// `EmitsChangedSignal` annotation, else its interface's, else `true`. An unknown
    /// value counts as `true`.
    pub fn emits_changed(&self, interface: &str, property: &str) -> EmitsChanged {
        let find = |m: Member<'_>| {
            self.annotations
                .iter()
                .find(|a| a.interface == interface && a.member == m && a.name == annotations::EMITS_CHANGED_SIGNAL)
        };
        match find(Member::Property(property)).or_else(|| find(Member::Interface)).map(|a| a.value) {
            Some("invalidates") => EmitsChanged::Invalidates,
            Some("const") => EmitsChanged::Const,
            Some("false") => EmitsChanged::False,
            _ => EmitsChanged::True,
        }
    }
}

/// Why [`ObjectTable::add`] or [`ObjectTable::remove`] refused.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The table holds its `N` objects already.
    Full,
    /// An object is registered at that path already.
    Duplicate,
    /// No object at that path.
    NotFound,
    /// The path is not a valid object path.
    BadPath,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TableError::Full => "the object table is full",
            TableError::Duplicate => "an object is registered at that path already",
            TableError::NotFound => "no object at that path",
            TableError::BadPath => "not a valid object path",
        })
    }
}

impl core::error::Error for TableError {}

/// Objects added and removed while serving, at most `N`, kept inline (no heap): serve it
/// with [`ConnectionWith::process_table`](super::ConnectionWith::process_table). A
/// fallback object ([`ObjectTable::add_fallback`]) answers for every path below its own
/// that has no object of its own; its handlers see the path called in [`Call::path`] and
/// in [`Service::get`] / [`Service::set`].
///
/// ```
/// use ember_linux::dbus::object::{Interface, Object, ObjectTable, TableError};
///
/// static LAMP: &[Interface<'static>] =
///     &[Interface { name: "org.example.Lamp", methods: &[], properties: &[], signals: &[] }];
/// let mut table: ObjectTable<'static, 2> = ObjectTable::new();
/// table.add(Object { path: "/org/example/lamp0", interfaces: LAMP })?;
/// assert_eq!(table.add(Object { path: "/org/example/lamp0", interfaces: LAMP }), Err(TableError::Duplicate));
/// table.add_fallback(Object { path: "/org/example/dyn", interfaces: LAMP })?;
/// assert_eq!(table.add(Object { path: "/org/example/lamp1", interfaces: LAMP }), Err(TableError::Full));
/// table.remove("/org/example/lamp0")?;
/// assert_eq!(table.len(), 1);
/// # Ok::<(), TableError>(())
/// ```
///
/// `Send` and `Sync`: borrowed tables.
#[derive(Debug, Clone)]
pub struct ObjectTable<'a, const N: usize> {
    objects: heapless::Vec<Object<'a>, N>,
    fallback: heapless::Vec<bool, N>,
    description: Description<'a>,
}

impl<const N: usize> Default for ObjectTable<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, const N: usize> ObjectTable<'a, N> {
    /// An empty table.
    pub const fn new() -> Self {
        ObjectTable { objects: heapless::Vec::new(), fallback: heapless::Vec::new(), description: Description::EMPTY }
    }

    /// Gives the objects' argument names and annotations (the introspection XML) and
    /// their properties' `EmitsChangedSignal` behaviour (see [`Description`]).
    pub fn describe(&mut self, description: Description<'a>) {
        self.description = description;
    }

    /// The description given with [`ObjectTable::describe`].
    pub fn description(&self) -> &Description<'a> {
        &self.description
    }

    /// Registers `object` at its path.
    pub fn add(&mut self, object: Object<'a>) -> Result<(), TableError> {
        self.insert(object, false)
    }

    /// Registers `object` at its path as a fallback: it also answers for every path below.
    pub fn add_fallback(&mut self, object: Object<'a>) -> Result<(), TableError> {
        self.insert(object, true)
    }

    fn insert(&mut self, object: Object<'a>, fallback: bool) -> Result<(), TableError> {
        ember_core::dbus::ObjectPath::new(object.path).map_err(|_| TableError::BadPath)?;
        if self.objects.iter().any(|o| o.path == object.path) {
            return Err(TableError::Duplicate);
        }
        self.objects.push(object).map_err(|_| TableError::Full)?;
        // Same length as `objects`, so this has room.
        self.fallback.push(fallback).map_err(|_| TableError::Full)
    }

    /// Unregisters the object at `path`; returns it.
    pub fn remove(&mut self, path: &str) -> Result<Object<'a>, TableError> {
        let i = self.objects.iter().position(|o| o.path == path).ok_or(TableError::NotFound)?;
        self.fallback.remove(i);
        Ok(self.objects.remove(i))
    }

    /// The object registered at `path` (not one a fallback answers for).
    pub fn get(&self, path: &str) -> Option<&Object<'a>> {
        self.objects.iter().find(|o| o.path == path)
    }

    /// Whether the object at `path` is a fallback.
    pub fn is_fallback(&self, path: &str) -> bool {
        self.objects.iter().zip(&self.fallback).any(|(o, fb)| *fb && o.path == path)
    }

    /// The objects, in the order they were added.
    pub fn objects(&self) -> &[Object<'a>] {
        &self.objects
    }

    /// How many objects are registered.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The table as a [`View`] (what `process_table` serves).
    pub fn view(&self) -> View<'_, 'a> {
        View { objects: &self.objects, fallback: &self.fallback, description: &self.description }
    }
}

/// What a method call is about (the message's header).
///
/// A handler that cannot answer at once calls [`Call::defer`]: it keeps the [`Token`] and
/// answers later with [`ConnectionWith::reply`](super::ConnectionWith::reply) (or
/// `reply_typed`, `reply_error`); whatever it wrote into the reply is dropped and nothing is
/// sent now, so the connection goes on serving other callers.
///
/// `Send` and `Sync`: borrowed strings and a borrowed flag.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The object's path (for a fallback object, the path called, below the object's).
    pub path: &'a str,
    /// The interface.
    pub interface: &'a str,
    /// The method.
    pub member: &'a str,
    /// The caller's unique name.
    pub sender: Option<&'a str>,
    pub(crate) serial: u32,
    pub(crate) no_reply: bool,
    pub(crate) deferred: &'a core::sync::atomic::AtomicBool,
}

impl Call<'_> {
    /// Defers the answer: returns the token to answer this call with later (once; the
    /// token is consumed by the answer). The handler then returns `Ok(())`; nothing it
    /// wrote into the reply is sent, and what it returns is not sent either. A token never
    /// answered leaves the caller to its own timeout. A second `defer` of the same call is
    /// refused (`org.freedesktop.DBus.Error.Failed`): one call, one token.
    pub fn defer(&self) -> Result<Token, MethodError> {
        if self.deferred.swap(true, core::sync::atomic::Ordering::Relaxed) {
            return Err(MethodError::from_static(names::FAILED, "the call was deferred already"));
        }
        let mut sender = [0u8; Token::MAX_SENDER];
        // The header parser checked the sender is a bus name: at most 255 bytes.
        let name = self.sender.unwrap_or("").as_bytes();
        let len = name.len().min(Token::MAX_SENDER);
        sender[..len].copy_from_slice(&name[..len]);
        Ok(Token { serial: self.serial, sender, sender_len: len as u8, no_reply: self.no_reply })
    }
}

/// A deferred call (from [`Call::defer`]): the call's serial and its caller's unique name,
/// copied (no heap), to answer with [`ConnectionWith::reply`](super::ConnectionWith::reply),
/// [`reply_typed`](super::ConnectionWith::reply_typed) or
/// [`reply_error`](super::ConnectionWith::reply_error). Answering consumes it and it is
/// neither `Clone` nor `Copy`, so a call cannot be answered twice.
///
/// `Send` and `Sync`: plain data.
#[must_use = "a deferred call is answered with ConnectionWith::reply, or its caller times out"]
pub struct Token {
    serial: u32,
    sender: [u8; Token::MAX_SENDER],
    sender_len: u8,
    no_reply: bool,
}

impl Token {
    /// The longest bus name (the specification's limit).
    pub const MAX_SENDER: usize = 255;

    /// The call's serial (what the answer's `REPLY_SERIAL` is).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The caller's unique name (empty on a peer-to-peer connection).
    pub fn sender(&self) -> &str {
        core::str::from_utf8(&self.sender[..usize::from(self.sender_len)]).unwrap_or("")
    }

    /// Whether the caller asked for no reply (answering it then sends nothing).
    pub fn no_reply(&self) -> bool {
        self.no_reply
    }
}

impl core::fmt::Debug for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Token")
            .field("serial", &self.serial)
            .field("sender", &self.sender())
            .field("no_reply", &self.no_reply)
            .finish()
    }
}

/// The code behind the objects: answers calls and reads and writes properties.
pub trait Service {
    /// Answers a call of a method in the table whose arguments matched its signature:
    /// write the results (of the method's `results` signature) with `reply`, or return an
    /// error. `fds` are the fds that came with the call: an `h` argument `i` is `fds[i]`;
    /// take the ones to keep (the rest are closed after the call).
    fn call(
        &mut self,
        call: &Call<'_>,
        args: Values<'_>,
        fds: &mut [Option<rustix::fd::OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError>;

    /// Writes the value of a property in the table (of its signature).
    fn get(&mut self, path: &str, interface: &str, property: &str, value: &mut Writer<'_>) -> Result<(), MethodError>;

    /// Sets a writable property in the table; `value` has its signature.
    fn set(&mut self, path: &str, interface: &str, property: &str, value: Value<'_>) -> Result<(), MethodError>;
}

/// The objects served by one call of `process`: a static table (no fallback), an
/// [`ObjectTable`]'s objects and their fallback flags ([`ObjectTable::view`]), or a table kept
/// elsewhere (the C ABI's service: [`View::new`]), served with
/// [`ConnectionWith::process_view`](super::ConnectionWith::process_view).
///
/// `Send` and `Sync`: borrowed tables.
#[derive(Debug, Clone, Copy)]
pub struct View<'t, 'a> {
    pub(crate) objects: &'t [Object<'a>],
    /// `fallback[i]`: object `i` answers for every path below its own (empty: none does).
    pub(crate) fallback: &'t [bool],
    pub(crate) description: &'t Description<'a>,
}

impl<'t, 'a> View<'t, 'a> {
    /// `objects`, where `fallback[i]` says whether object `i` also answers for every path
    /// below its own (a shorter `fallback` leaves the rest ordinary objects), described by
    /// `description`. Paths are not checked here: give valid, distinct paths.
    pub fn new(objects: &'t [Object<'a>], fallback: &'t [bool], description: &'t Description<'a>) -> View<'t, 'a> {
        View { objects, fallback, description }
    }

    /// A static table.
    pub(crate) fn of(objects: &'t [Object<'a>]) -> View<'t, 'a> {
        View { objects, fallback: &[], description: &Description::EMPTY }
    }

    /// The object that answers at `path`: the one registered there, else the fallback
    /// object nearest above it.
    pub fn find(&self, path: &str) -> Option<&'t Object<'a>> {
        if let Some(o) = self.objects.iter().find(|o| o.path == path) {
            return Some(o);
        }
        self.objects
            .iter()
            .zip(self.fallback)
            .filter(|(o, fb)| **fb && below(o.path, path))
            .max_by_key(|(o, _)| o.path.len())
            .map(|(o, _)| o)
    }

    /// Whether `path` is a parent of a registered object (it introspects, listing children).
    pub(crate) fn is_parent(&self, path: &str) -> bool {
        self.objects.iter().any(|o| child_of(path, o.path).is_some())
    }
}

/// Whether `path` is strictly below `parent`.
pub(crate) fn below(parent: &str, path: &str) -> bool {
    child_of(parent, path).is_some()
}

/// The next element of `child` below `parent`, if `child` is below `parent`.
fn child_of<'c>(parent: &str, child: &'c str) -> Option<&'c str> {
    let rest = if parent == "/" { child.strip_prefix('/')? } else { child.strip_prefix(parent)?.strip_prefix('/')? };
    if rest.is_empty() {
        return None;
    }
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Writes the introspection XML of the object at `path` (possibly only a parent node).
pub(crate) fn introspect(view: View<'_, '_>, path: &str, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    let objects = view.objects;
    out.write_str(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n\
         \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n",
    )?;
    out.write_str(
        " <interface name=\"org.freedesktop.DBus.Peer\">\n  <method name=\"Ping\"/>\n  <method name=\"GetMachineId\">\n   <arg type=\"s\" name=\"machine_uuid\" direction=\"out\"/>\n  </method>\n </interface>\n",
    )?;
    out.write_str(
        " <interface name=\"org.freedesktop.DBus.Introspectable\">\n  <method name=\"Introspect\">\n   <arg type=\"s\" name=\"xml_data\" direction=\"out\"/>\n  </method>\n </interface>\n",
    )?;
    if let Some(o) = view.find(path) {
        out.write_str(
            " <interface name=\"org.freedesktop.DBus.Properties\">\n  <method name=\"Get\">\n   <arg type=\"s\" name=\"interface_name\" direction=\"in\"/>\n   <arg type=\"s\" name=\"property_name\" direction=\"in\"/>\n   <arg type=\"v\" name=\"value\" direction=\"out\"/>\n  </method>\n  <method name=\"GetAll\">\n   <arg type=\"s\" name=\"interface_name\" direction=\"in\"/>\n   <arg type=\"a{sv}\" name=\"properties\" direction=\"out\"/>\n  </method>\n  <method name=\"Set\">\n   <arg type=\"s\" name=\"interface_name\" direction=\"in\"/>\n   <arg type=\"s\" name=\"property_name\" direction=\"in\"/>\n   <arg type=\"v\" name=\"value\" direction=\"in\"/>\n  </method>\n  <signal name=\"PropertiesChanged\">\n   <arg type=\"s\" name=\"interface_name\"/>\n   <arg type=\"a{sv}\" name=\"changed_properties\"/>\n   <arg type=\"as\" name=\"invalidated_properties\"/>\n  </signal>\n </interface>\n",
        )?;
        let d = view.description;
        for i in o.interfaces {
            writeln!(out, " <interface name=\"{}\">", i.name)?;
            annotate(out, d, i.name, Member::Interface, "  ")?;
            for m in i.methods {
                writeln!(out, "  <method name=\"{}\">", m.name)?;
                let names = d.arg_names_of(i.name, Member::Method(m.name));
                let (ins, outs) = names.map_or((&[][..], &[][..]), |n| (n.args, n.results));
                xml_args(out, m.args, ins, " direction=\"in\"")?;
                xml_args(out, m.results, outs, " direction=\"out\"")?;
                annotate(out, d, i.name, Member::Method(m.name), "   ")?;
                out.write_str("  </method>\n")?;
            }
            for p in i.properties {
                let access = if p.writable { "readwrite" } else { "read" };
                write!(out, "  <property name=\"{}\" type=\"{}\" access=\"{access}\"", p.name, p.signature)?;
                if d.annotations_of(i.name, Member::Property(p.name)).next().is_some() {
                    out.write_str(">\n")?;
                    annotate(out, d, i.name, Member::Property(p.name), "   ")?;
                    out.write_str("  </property>\n")?;
                } else {
                    out.write_str("/>\n")?;
                }
            }
            for s in i.signals {
                writeln!(out, "  <signal name=\"{}\">", s.name)?;
                let names = d.arg_names_of(i.name, Member::Signal(s.name)).map_or(&[][..], |n| n.args);
                xml_args(out, s.args, names, "")?;
                annotate(out, d, i.name, Member::Signal(s.name), "   ")?;
                out.write_str("  </signal>\n")?;
            }
            out.write_str(" </interface>\n")?;
        }
    }
    // Child nodes, each once.
    for (i, o) in objects.iter().enumerate() {
        if let Some(child) = child_of(path, o.path)
            && !objects[..i].iter().any(|p| child_of(path, p.path) == Some(child))
        {
            writeln!(out, " <node name=\"{child}\"/>")?;
        }
    }
    out.write_str("</node>\n")
}

/// Writes one `<arg>` per complete type of `sig`, named from `names` where given.
fn xml_args(out: &mut dyn core::fmt::Write, sig: &str, names: &[&str], direction: &str) -> core::fmt::Result {
    for (k, t) in Signature::new(sig).map_err(|_| core::fmt::Error)?.types().enumerate() {
        write!(out, "   <arg type=\"{t}\"")?;
        if let Some(n) = names.get(k) {
            out.write_str(" name=\"")?;
            escaped(out, n)?;
            out.write_str("\"")?;
        }
        writeln!(out, "{direction}/>")?;
    }
    Ok(())
}

/// Writes the `<annotation>` elements of `member`.
fn annotate(
    out: &mut dyn core::fmt::Write,
    d: &Description<'_>,
    interface: &str,
    member: Member<'_>,
    indent: &str,
) -> core::fmt::Result {
    for a in d.annotations_of(interface, member) {
        write!(out, "{indent}<annotation name=\"")?;
        escaped(out, a.name)?;
        out.write_str("\" value=\"")?;
        escaped(out, a.value)?;
        out.write_str("\"/>\n")?;
    }
    Ok(())
}

/// Writes `text` as an XML attribute value.
fn escaped(out: &mut dyn core::fmt::Write, text: &str) -> core::fmt::Result {
    for c in text.chars() {
        match c {
            '&' => out.write_str("&amp;")?,
            '<' => out.write_str("&lt;")?,
            '>' => out.write_str("&gt;")?,
            '"' => out.write_str("&quot;")?,
            '\'' => out.write_str("&apos;")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}
