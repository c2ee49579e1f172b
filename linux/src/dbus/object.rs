//! Serving objects: a static table of object paths, interfaces, methods, properties and
//! signals, and a [`Service`] that answers the calls. `org.freedesktop.DBus.Peer`,
//! `org.freedesktop.DBus.Introspectable` (XML generated from the table) and
//! `org.freedesktop.DBus.Properties` (`Get`, `GetAll`, `Set`) are built in; a call to an
//! unknown object, interface, method or property, or with arguments of the wrong signature,
//! gets the standard error.

use ember_core::dbus::value::Values;
use ember_core::dbus::{Signature, Value, Writer};

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
/// message (at most 96 bytes; longer is cut at a character boundary).
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodError {
    /// The error name.
    pub name: &'static str,
    message: heapless::String<96>,
}

impl core::fmt::Display for MethodError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl core::error::Error for MethodError {}

impl MethodError {
    /// An error named `name` with `message`.
    pub fn new(name: &'static str, message: &str) -> MethodError {
        let mut m = heapless::String::new();
        for c in message.chars() {
            if m.push(c).is_err() {
                break;
            }
        }
        MethodError { name, message: m }
    }

    /// `org.freedesktop.DBus.Error.Failed` with `message`.
    pub fn failed(message: &str) -> MethodError {
        MethodError::new(names::FAILED, message)
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
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
}

/// The interfaces every object has.
pub const PEER: &str = "org.freedesktop.DBus.Peer";
/// `Introspect`.
pub const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
/// `Get`, `GetAll`, `Set`, `PropertiesChanged`.
pub const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// What a method call is about (the message's header).
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The object's path.
    pub path: &'a str,
    /// The interface.
    pub interface: &'a str,
    /// The method.
    pub member: &'a str,
    /// The caller's unique name.
    pub sender: Option<&'a str>,
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

/// Finds the object at `path`.
pub(crate) fn find<'t>(objects: &'t [Object<'t>], path: &str) -> Option<&'t Object<'t>> {
    objects.iter().find(|o| o.path == path)
}

/// Whether `path` is a parent of a registered object (it introspects, listing children).
pub(crate) fn is_parent(objects: &[Object<'_>], path: &str) -> bool {
    objects.iter().any(|o| child_of(path, o.path).is_some())
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
pub(crate) fn introspect(objects: &[Object<'_>], path: &str, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
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
    if let Some(o) = find(objects, path) {
        out.write_str(
            " <interface name=\"org.freedesktop.DBus.Properties\">\n  <method name=\"Get\">\n   <arg type=\"s\" name=\"interface_name\" direction=\"in\"/>\n   <arg type=\"s\" name=\"property_name\" direction=\"in\"/>\n   <arg type=\"v\" name=\"value\" direction=\"out\"/>\n  </method>\n  <method name=\"GetAll\">\n   <arg type=\"s\" name=\"interface_name\" direction=\"in\"/>\n   <arg type=\"a{sv}\" name=\"properties\" direction=\"out\"/>\n  </method>\n  <method name=\"Set\">\n   <arg type=\"s\" name=\"interface_name\" direction=\"in\"/>\n   <arg type=\"s\" name=\"property_name\" direction=\"in\"/>\n   <arg type=\"v\" name=\"value\" direction=\"in\"/>\n  </method>\n  <signal name=\"PropertiesChanged\">\n   <arg type=\"s\" name=\"interface_name\"/>\n   <arg type=\"a{sv}\" name=\"changed_properties\"/>\n   <arg type=\"as\" name=\"invalidated_properties\"/>\n  </signal>\n </interface>\n",
        )?;
        for i in o.interfaces {
            writeln!(out, " <interface name=\"{}\">", i.name)?;
            for m in i.methods {
                writeln!(out, "  <method name=\"{}\">", m.name)?;
                for t in Signature::new(m.args).map_err(|_| core::fmt::Error)?.types() {
                    writeln!(out, "   <arg type=\"{t}\" direction=\"in\"/>")?;
                }
                for t in Signature::new(m.results).map_err(|_| core::fmt::Error)?.types() {
                    writeln!(out, "   <arg type=\"{t}\" direction=\"out\"/>")?;
                }
                out.write_str("  </method>\n")?;
            }
            for p in i.properties {
                let access = if p.writable { "readwrite" } else { "read" };
                writeln!(out, "  <property name=\"{}\" type=\"{}\" access=\"{access}\"/>", p.name, p.signature)?;
            }
            for s in i.signals {
                writeln!(out, "  <signal name=\"{}\">", s.name)?;
                for t in Signature::new(s.args).map_err(|_| core::fmt::Error)?.types() {
                    writeln!(out, "   <arg type=\"{t}\"/>")?;
                }
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
