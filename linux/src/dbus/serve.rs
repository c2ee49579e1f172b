//! Answering one method call from the object table (see [`super::object`]).

use ember_core::dbus::{Builder, DbusError, Message, Signature, Value};

use super::object::{self, Call, MethodError, Object, Service, names};
use crate::error::Result;

/// Builds the answer to the method call `m` into `buf` with `serial`; returns its length.
/// Whatever goes wrong while answering (a message text too long for the buffer, a bad
/// signature in the table), the caller still gets an error reply.
pub(crate) fn answer(
    objects: &[Object<'_>],
    service: &mut impl Service,
    m: &Message<'_>,
    buf: &mut [u8],
    serial: u32,
    fds: &mut [Option<rustix::fd::OwnedFd>],
) -> Result<usize> {
    match answer_inner(objects, service, m, buf, serial, fds) {
        Ok(n) => Ok(n),
        Err(_) => {
            let b = to(Builder::error(m.serial(), names::FAILED), m.sender());
            Ok(b.build(buf, serial, Signature::new("s")?, |w| w.str("the service could not answer"))?.len())
        }
    }
}

fn answer_inner(
    objects: &[Object<'_>],
    service: &mut impl Service,
    m: &Message<'_>,
    buf: &mut [u8],
    serial: u32,
    fds: &mut [Option<rustix::fd::OwnedFd>],
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
    let known = object::find(objects, path);
    let sig = m.signature().as_str();
    // The built-in interfaces (Peer and Introspectable on any path we serve or contain).
    let served = known.is_some() || object::is_parent(objects, path);
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
    let Some(obj) = known else {
        return Ok(error(buf, names::UNKNOWN_OBJECT, &|o| write!(o, "no object at {path}"))?);
    };
    if iface == Some(object::PROPERTIES) {
        return properties(obj, service, m, buf, serial, ret, &error);
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
    let call = Call { path, interface: interface.name, member, sender };
    let mut failure: Option<MethodError> = None;
    let results = Signature::new(method.results)?;
    let built = ret.build(buf, serial, results, |w| {
        service.call(&call, m.body(), fds, w).map_err(|e| {
            failure = Some(e);
            DbusError::BodyMismatch
        })
    });
    finish(built.map(|b| b.len()), failure, buf, &error)
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

/// The answer to a `Properties` call.
fn properties(
    obj: &Object<'_>,
    service: &mut impl Service,
    m: &Message<'_>,
    buf: &mut [u8],
    serial: u32,
    ret: Builder<'_>,
    error: &ErrorReply<'_>,
) -> Result<usize> {
    let path = obj.path;
    let member = m.member().unwrap_or("");
    let mut body = m.body();
    let interface = |name: &str| obj.interfaces.iter().find(|i| i.name == name);
    let mut failure: Option<MethodError> = None;
    match (member, m.signature().as_str()) {
        ("Get", "ss") => {
            let (iname, pname): (&str, &str) = (body.next_as()?, body.next_as()?);
            let Some(i) = interface(iname) else {
                return Ok(error(buf, names::UNKNOWN_INTERFACE, &|o| write!(o, "no interface {iname} at {path}"))?);
            };
            let Some(p) = i.properties.iter().find(|p| p.name == pname) else {
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
            let Some(i) = interface(iname) else {
                return Ok(error(buf, names::UNKNOWN_INTERFACE, &|o| write!(o, "no interface {iname} at {path}"))?);
            };
            let built = ret.build(buf, serial, Signature::new("a{sv}")?, |w| {
                w.array(b'{', |w| {
                    for p in i.properties {
                        w.structure(|w| {
                            w.str(p.name)?;
                            w.variant(Signature::new(p.signature)?, |w| {
                                service.get(path, iname, p.name, w).map_err(|e| {
                                    failure = Some(e);
                                    DbusError::BodyMismatch
                                })
                            })
                        })?;
                    }
                    Ok(())
                })
            });
            finish(built.map(|b| b.len()), failure, buf, error)
        }
        ("Set", "ssv") => {
            let (iname, pname): (&str, &str) = (body.next_as()?, body.next_as()?);
            let v: ember_core::dbus::value::Variant<'_> = body.next_as()?;
            let Some(i) = interface(iname) else {
                return Ok(error(buf, names::UNKNOWN_INTERFACE, &|o| write!(o, "no interface {iname} at {path}"))?);
            };
            let Some(p) = i.properties.iter().find(|p| p.name == pname) else {
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
                Ok(()) => Ok(ret.build(buf, serial, Signature::EMPTY, |_| Ok(()))?.len()),
                Err(e) => Ok(error(buf, e.name, &|o| o.write_str(e.message()))?),
            }
        }
        _ => {
            Ok(error(buf, names::UNKNOWN_METHOD, &|o| write!(o, "no method Properties.{member} with these arguments"))?)
        }
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
