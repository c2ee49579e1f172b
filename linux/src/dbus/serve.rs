//! Answering one method call from the object table (see [`super::object`]).

use ember_core::dbus::{Builder, DbusError, Message, Signature, Value};

use super::object::{self, Call, EmitsChanged, Interface, MethodError, Object, Service, View, names};
use crate::error::Result;

/// Builds the answer to the method call `m` into `buf` with `serial`; returns its length,
/// or 0 when the handler deferred the answer (nothing to send now).
/// Whatever goes wrong while answering (a message text too long for the buffer, a bad
/// signature in the table), the caller still gets an error reply.
///
/// A successful `Properties.Set` of a property whose changes are announced leaves in
/// `changed` what to emit after the reply.
pub(crate) fn answer<'a>(
    objects: View<'_, 'a>,
    service: &mut impl Service,
    m: &Message<'_>,
    buf: &mut [u8],
    serial: u32,
    fds: &mut [Option<rustix::fd::OwnedFd>],
    changed: &mut Option<Changed<'a>>,
) -> Result<usize> {
    match answer_inner(objects, service, m, buf, serial, fds, changed) {
        Ok(n) => Ok(n),
        Err(_) => {
            let b = to(Builder::error(m.serial(), names::FAILED), m.sender());
            Ok(b.build(buf, serial, Signature::new("s")?, |w| w.str("the service could not answer"))?.len())
        }
    }
}

fn answer_inner<'a>(
    objects: View<'_, 'a>,
    service: &mut impl Service,
    m: &Message<'_>,
    buf: &mut [u8],
    serial: u32,
    fds: &mut [Option<rustix::fd::OwnedFd>],
    changed: &mut Option<Changed<'a>>,
) -> Result<usize> {
    let path = m.path().map(|p| p.as_str()).unwrap_or("/");
    let member = m.member().unwrap_or("");
    let iface = m.interface();
    let sender = m.sender();
    let ret = to(Builder::method_return(m.serial()), sender);
    // An error reply with a formatted message.
    let error = |buf: &mut [u8], name: &str, text: &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result| {
        to(Builder::error(m.serial(), name), sender)
            .build(buf, serial, Signature::new("s")?, |w| w.str_with(|o| text(o)))
            .map(|b| b.len())
    };
    let known = objects.find(path);
    let sig = m.signature().as_str();
    // The built-in interfaces (Peer and Introspectable on any path we serve or contain).
    let served = known.is_some() || objects.is_parent(path);
    match (iface, member) {
        // Peer is answered on any path, as the specification wants.
        (Some(object::PEER) | None, "Ping") if sig.is_empty() => {
            return Ok(ret.build(buf, serial, Signature::EMPTY, |_| Ok(()))?.len());
        }
        (Some(object::PEER) | None, "GetMachineId") if sig.is_empty() => {
            let mut id = [0u8; 64];
            return match machine_id(&mut id) {
                Some(id) => Ok(ret.build(buf, serial, Signature::new("s")?, |w| w.str(id))?.len()),
                None => Ok(error(buf, names::FAILED, &|o| o.write_str("no machine id on this system"))?),
            };
        }
        (Some(object::INTROSPECTABLE) | None, "Introspect") if served && sig.is_empty() => {
            let built =
                ret.build(buf, serial, Signature::new("s")?, |w| w.str_with(|o| object::introspect(objects, path, o)));
            return match built {
                Ok(b) => Ok(b.len()),
                Err(DbusError::BufferTooSmall) => {
                    Ok(error(buf, names::FAILED, &|o| o.write_str("introspection data too large"))?)
                }
                Err(e) => Err(e.into()),
            };
        }
        _ => {}
    }
    // A built-in interface named, but not one of its methods with its signature.
    let builtin: &[(&str, &str)] = match iface {
        Some(object::PEER) => &[("Ping", ""), ("GetMachineId", "")],
        Some(object::INTROSPECTABLE) if served => &[("Introspect", "")],
        _ => &[],
    };
    if let Some(n) = iface
        && !builtin.is_empty()
    {
        return Ok(match builtin.iter().find(|(name, _)| *name == member) {
            Some((_, args)) => {
                error(buf, names::INVALID_ARGS, &|o| write!(o, "{n}.{member} takes ({args}), not ({sig})"))?
            }
            None => error(buf, names::UNKNOWN_METHOD, &|o| write!(o, "no method {member} in {n}"))?,
        });
    }
    let Some(obj) = known else {
        return Ok(error(buf, names::UNKNOWN_OBJECT, &|o| write!(o, "no object at {path}"))?);
    };
    if iface == Some(object::PROPERTIES) {
        let mut set = None;
        let n = properties(obj, path, service, m, buf, serial, ret, &error, &mut set)?;
        if let Some((interface, property, signature)) = set {
            let emits = objects.description.emits_changed(interface, property);
            if matches!(emits, EmitsChanged::True | EmitsChanged::Invalidates) {
                *changed =
                    Some(Changed { interface, property, signature, invalidate: emits == EmitsChanged::Invalidates });
            }
        }
        return Ok(n);
    }
    let has = |name: &str| obj.interfaces.iter().any(|i| i.name == name);
    if member == "GetManagedObjects" && iface.is_none_or(|n| n == object::OBJECT_MANAGER) && has(object::OBJECT_MANAGER)
    {
        if !sig.is_empty() {
            return Ok(error(buf, names::INVALID_ARGS, &|o| write!(o, "GetManagedObjects takes (), not ({sig})"))?);
        }
        let mut failure: Option<MethodError> = None;
        let built = ret.build(buf, serial, Signature::new("a{oa{sa{sv}}}")?, |w| {
            w.array(b'{', |w| {
                for o in objects.objects.iter().filter(|o| object::below(path, o.path)) {
                    w.structure(|w| {
                        w.object_path(ember_core::dbus::ObjectPath::new(o.path)?)?;
                        interfaces(w, o.path, o.interfaces, service, &mut failure)
                    })?;
                }
                Ok(())
            })
        });
        return finish(built.map(|b| b.len()), failure, buf, &error);
    }
    // A method of the table: the interface given, or the first that has the member.
    let found = obj
        .interfaces
        .iter()
        .filter(|i| iface.is_none_or(|n| n == i.name))
        .find_map(|i| i.methods.iter().find(|x| x.name == member).map(|x| (i, x)));
    let Some((interface, method)) = found else {
        if let Some(n) = iface
            && !obj.interfaces.iter().any(|i| i.name == n)
        {
            return Ok(error(buf, names::UNKNOWN_INTERFACE, &|o| write!(o, "no interface {n} at {path}"))?);
        }
        return Ok(error(buf, names::UNKNOWN_METHOD, &|o| write!(o, "no method {member} at {path}"))?);
    };
    if sig != method.args {
        return Ok(error(buf, names::INVALID_ARGS, &|o| write!(o, "{member} takes ({}), not ({sig})", method.args))?);
    }
    let deferred = core::sync::atomic::AtomicBool::new(false);
    let no_reply = m.flags() & ember_core::dbus::header::FLAG_NO_REPLY_EXPECTED != 0;
    let call =
        Call { path, interface: interface.name, member, sender, serial: m.serial(), no_reply, deferred: &deferred };
    let mut failure: Option<MethodError> = None;
    let results = Signature::new(method.results)?;
    let built = ret.build(buf, serial, results, |w| {
        service.call(&call, m.body(), fds, w).map_err(|e| {
            failure = Some(e);
            DbusError::BodyMismatch
        })
    });
    if deferred.load(core::sync::atomic::Ordering::Relaxed) {
        // The token answers; what the handler returned is not sent.
        if failure.is_some() {
            warn!("dbus: a handler deferred its call and also returned an error (not sent)");
        }
        return Ok(0);
    }
    finish(built.map(|b| b.len()), failure, buf, &error)
}

/// Writes the `a{sa{sv}}` of an object's interfaces: each with its properties read through
/// `service.get` (the first failure is kept in `failure`).
pub(crate) fn interfaces(
    w: &mut ember_core::dbus::Writer<'_>,
    path: &str,
    ifaces: &[Interface<'_>],
    service: &mut impl Service,
    failure: &mut Option<MethodError>,
) -> core::result::Result<(), DbusError> {
    w.array(b'{', |w| {
        for i in ifaces {
            w.structure(|w| {
                w.str(i.name)?;
                w.array(b'{', |w| {
                    for p in i.properties {
                        w.structure(|w| {
                            w.str(p.name)?;
                            w.variant(Signature::new(p.signature)?, |w| {
                                service.get(path, i.name, p.name, w).map_err(|e| {
                                    *failure = Some(e);
                                    DbusError::BodyMismatch
                                })
                            })
                        })?;
                    }
                    Ok(())
                })
            })?;
        }
        Ok(())
    })
}

/// Builds an error reply (name, and a message written by the third argument) into a
/// buffer; returns its length.
type ErrorReply<'e> = dyn Fn(
        &mut [u8],
        &str,
        &dyn Fn(&mut dyn core::fmt::Write) -> core::fmt::Result,
    ) -> core::result::Result<usize, DbusError>
    + 'e;

/// Addresses a reply to the caller.
fn to<'a>(b: Builder<'a>, sender: Option<&'a str>) -> Builder<'a> {
    match sender {
        Some(s) => b.destination(s),
        None => b,
    }
}

/// A property set through `Properties.Set`, to announce with `PropertiesChanged`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Changed<'a> {
    pub(crate) interface: &'a str,
    pub(crate) property: &'a str,
    pub(crate) signature: &'a str,
    /// Named in `invalidated_properties` rather than sent with its value.
    pub(crate) invalidate: bool,
}

/// Builds `PropertiesChanged` for `c` at `path` into `buf`: the value read through
/// `service.get`, or the name invalidated (also when the value cannot be read). Returns
/// the message's length.
pub(crate) fn properties_changed(
    buf: &mut [u8],
    serial: u32,
    path: &str,
    c: Changed<'_>,
    service: &mut impl Service,
) -> Result<usize> {
    let sig = Signature::new("sa{sv}as")?;
    let signal = || Builder::signal(path, object::PROPERTIES, "PropertiesChanged");
    let invalidated = |w: &mut ember_core::dbus::Writer<'_>| {
        w.str(c.interface)?;
        w.array(b'{', |_| Ok(()))?;
        w.array(b's', |w| w.str(c.property))
    };
    if !c.invalidate {
        let psig = Signature::new(c.signature)?;
        let built = signal().build(buf, serial, sig, |w| {
            w.str(c.interface)?;
            w.array(b'{', |w| {
                w.structure(|w| {
                    w.str(c.property)?;
                    w.variant(psig, |w| {
                        service.get(path, c.interface, c.property, w).map_err(|_| DbusError::BodyMismatch)
                    })
                })
            })?;
            w.array(b's', |_| Ok(()))
        });
        if let Ok(b) = built {
            return Ok(b.len());
        }
    }
    Ok(signal().build(buf, serial, sig, invalidated)?.len())
}

/// The answer to a `Properties` call on the object `obj` answering at `path`; with the
/// interface, name and signature of the property a successful `Set` changed.
#[allow(clippy::too_many_arguments)]
fn properties<'a>(
    obj: &Object<'a>,
    path: &str,
    service: &mut impl Service,
    m: &Message<'_>,
    buf: &mut [u8],
    serial: u32,
    ret: Builder<'_>,
    error: &ErrorReply<'_>,
    set: &mut Option<(&'a str, &'a str, &'a str)>,
) -> Result<usize> {
    let member = m.member().unwrap_or("");
    let mut body = m.body();
    let interface = |name: &str| obj.interfaces.iter().find(|i| i.name == name);
    // The interface that has the property (any interface when `iname` is empty, as GDBus
    // and libdbus services allow).
    let property = |iname: &str, pname: &str| {
        obj.interfaces
            .iter()
            .filter(|i| iname.is_empty() || i.name == iname)
            .find_map(|i| i.properties.iter().find(|p| p.name == pname).map(|p| (i.name, p)))
    };
    let mut failure: Option<MethodError> = None;
    match (member, m.signature().as_str()) {
        ("Get", "ss") => {
            let (iname, pname): (&str, &str) = (body.next_as()?, body.next_as()?);
            if !iname.is_empty() && interface(iname).is_none() {
                return Ok(error(buf, names::UNKNOWN_INTERFACE, &|o| write!(o, "no interface {iname} at {path}"))?);
            }
            let Some((iname, p)) = property(iname, pname) else {
                return Ok(error(buf, names::UNKNOWN_PROPERTY, &|o| write!(o, "no property {iname}.{pname}"))?);
            };
            let psig = Signature::new(p.signature)?;
            let built = ret.build(buf, serial, Signature::new("v")?, |w| {
                w.variant(psig, |w| {
                    service.get(path, iname, pname, w).map_err(|e| {
                        failure = Some(e);
                        DbusError::BodyMismatch
                    })
                })
            });
            finish(built.map(|b| b.len()), failure, buf, error)
        }
        ("GetAll", "s") => {
            let iname: &str = body.next_as()?;
            if !iname.is_empty() && interface(iname).is_none() {
                return Ok(error(buf, names::UNKNOWN_INTERFACE, &|o| write!(o, "no interface {iname} at {path}"))?);
            }
            // An empty name: the properties of every interface.
            let built = ret.build(buf, serial, Signature::new("a{sv}")?, |w| {
                w.array(b'{', |w| {
                    for i in obj.interfaces.iter().filter(|i| iname.is_empty() || i.name == iname) {
                        for p in i.properties {
                            w.structure(|w| {
                                w.str(p.name)?;
                                w.variant(Signature::new(p.signature)?, |w| {
                                    service.get(path, i.name, p.name, w).map_err(|e| {
                                        failure = Some(e);
                                        DbusError::BodyMismatch
                                    })
                                })
                            })?;
                        }
                    }
                    Ok(())
                })
            });
            finish(built.map(|b| b.len()), failure, buf, error)
        }
        ("Set", "ssv") => {
            let (iname, pname): (&str, &str) = (body.next_as()?, body.next_as()?);
            let v: ember_core::dbus::value::Variant<'_> = body.next_as()?;
            if !iname.is_empty() && interface(iname).is_none() {
                return Ok(error(buf, names::UNKNOWN_INTERFACE, &|o| write!(o, "no interface {iname} at {path}"))?);
            }
            let Some((iname, p)) = property(iname, pname) else {
                return Ok(error(buf, names::UNKNOWN_PROPERTY, &|o| write!(o, "no property {iname}.{pname}"))?);
            };
            if !p.writable {
                return Ok(error(buf, names::PROPERTY_READ_ONLY, &|o| write!(o, "{iname}.{pname} is read-only"))?);
            }
            if v.signature().as_str() != p.signature {
                let (want, got) = (p.signature, v.signature());
                return Ok(error(buf, names::INVALID_ARGS, &|o| write!(o, "{pname} is {want}, not {got}"))?);
            }
            let value: Value<'_> = v.value()?;
            match service.set(path, iname, pname, value) {
                Ok(()) => {
                    *set = Some((iname, p.name, p.signature));
                    Ok(ret.build(buf, serial, Signature::EMPTY, |_| Ok(()))?.len())
                }
                Err(e) => Ok(error(buf, e.name, &|o| o.write_str(e.message()))?),
            }
        }
        (known @ ("Get" | "GetAll" | "Set"), sig) => {
            let args = match known {
                "Get" => "ss",
                "GetAll" => "s",
                _ => "ssv",
            };
            Ok(error(buf, names::INVALID_ARGS, &|o| write!(o, "Properties.{known} takes ({args}), not ({sig})"))?)
        }
        _ => Ok(error(buf, names::UNKNOWN_METHOD, &|o| write!(o, "no method {member} in {}", object::PROPERTIES))?),
    }
}

/// The reply built, or the service's error, or an error saying the service's answer did
/// not fit its own signature.
fn finish(
    built: core::result::Result<usize, DbusError>,
    failure: Option<MethodError>,
    buf: &mut [u8],
    error: &ErrorReply<'_>,
) -> Result<usize> {
    match (built, failure) {
        (_, Some(e)) => Ok(error(buf, e.name, &|o| o.write_str(e.message()))?),
        (Ok(n), None) => Ok(n),
        (Err(DbusError::BufferTooSmall), None) => Ok(error(buf, names::FAILED, &|o| o.write_str("reply too large"))?),
        (Err(e), None) => {
            warn!("dbus: a service's reply did not match its signature");
            Ok(error(buf, names::FAILED, &|o| write!(o, "the service's reply was malformed: {e}"))?)
        }
    }
}

/// Reads the machine id (`/etc/machine-id`, else `/var/lib/dbus/machine-id`).
fn machine_id(buf: &mut [u8; 64]) -> Option<&str> {
    let valid = |b: &[u8]| {
        let id = core::str::from_utf8(b).map(str::trim).unwrap_or("");
        id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit())
    };
    let mut found = None;
    for path in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC;
        let Ok(fd) = rustix::fs::open(path, flags, rustix::fs::Mode::empty()) else { continue };
        let Ok(n) = rustix::io::read(&fd, &mut buf[..]) else { continue };
        if valid(&buf[..n]) {
            found = Some(n);
            break;
        }
    }
    core::str::from_utf8(&buf[..found?]).ok().map(str::trim)
}
