//! The fixtures both sides of the D-Bus comparison use: the same signal body written by
//! Ember and by zvariant, and walkers that read every value back (returning checksums, so
//! that nothing is optimised away and both sides are shown to read the same values).

use std::collections::HashMap;

use ember_core::dbus::value::Values;
use ember_core::dbus::{DbusError, ObjectPath, Signature, Value, Writer};

/// The signal's object path.
pub const PATH: &str = "/org/ember/Device/7";
/// The signal's interface.
pub const IFACE: &str = "org.ember.Device";

/// The signal body as zvariant sees it: `a{sv}` with 8 entries of mixed types.
pub fn zbus_body() -> HashMap<&'static str, zvariant::Value<'static>> {
    let mut m = HashMap::new();
    m.insert("Volume", zvariant::Value::U32(42));
    m.insert("Muted", zvariant::Value::Bool(false));
    m.insert("Name", zvariant::Value::from("Living room speaker"));
    m.insert("Temperature", zvariant::Value::F64(21.5));
    m.insert("Uptime", zvariant::Value::U64(123_456_789));
    m.insert("Path", zvariant::Value::ObjectPath(zvariant::ObjectPath::try_from(PATH).unwrap()));
    m.insert("Tags", zvariant::Value::from(vec!["kitchen", "wifi"]));
    m.insert("Level", zvariant::Value::U8(7));
    m
}

/// The same body written by Ember.
pub fn ember_body(w: &mut Writer<'_>) -> Result<(), DbusError> {
    let s = |t| Signature::new(t).unwrap();
    w.array(b'{', |w| {
        w.structure(|w| {
            w.str("Volume")?;
            w.variant(s("u"), |w| w.u32(42))
        })?;
        w.structure(|w| {
            w.str("Muted")?;
            w.variant(s("b"), |w| w.bool(false))
        })?;
        w.structure(|w| {
            w.str("Name")?;
            w.variant(s("s"), |w| w.str("Living room speaker"))
        })?;
        w.structure(|w| {
            w.str("Temperature")?;
            w.variant(s("d"), |w| w.f64(21.5))
        })?;
        w.structure(|w| {
            w.str("Uptime")?;
            w.variant(s("t"), |w| w.u64(123_456_789))
        })?;
        w.structure(|w| {
            w.str("Path")?;
            w.variant(s("o"), |w| w.object_path(ObjectPath::new(PATH)?))
        })?;
        w.structure(|w| {
            w.str("Tags")?;
            w.variant(s("as"), |w| {
                w.array(b's', |w| {
                    w.str("kitchen")?;
                    w.str("wifi")
                })
            })
        })?;
        w.structure(|w| {
            w.str("Level")?;
            w.variant(s("y"), |w| w.u8(7))
        })
    })
}

/// Visits every value of `values`, nested ones included; returns a checksum so that
/// nothing is optimised away.
pub fn walk(values: Values<'_>) -> u64 {
    values.map(|v| walk_value(v.expect("the message was validated"))).sum()
}

pub fn walk_value(v: Value<'_>) -> u64 {
    match v {
        Value::Byte(x) => x as u64,
        Value::Bool(x) => x as u64,
        Value::I16(x) => x as u64,
        Value::U16(x) => x as u64,
        Value::I32(x) => x as u64,
        Value::U32(x) | Value::Fd(x) => x as u64,
        Value::I64(x) => x as u64,
        Value::U64(x) => x,
        Value::F64(x) => x as u64,
        Value::Str(x) => x.len() as u64,
        Value::Path(x) => x.as_str().len() as u64,
        Value::Sig(x) => x.as_str().len() as u64,
        Value::Array(a) => a.map(|e| walk_value(e.unwrap())).sum(),
        Value::Struct(f) | Value::DictEntry(f) => f.map(|e| walk_value(e.unwrap())).sum(),
        Value::Variant(v) => walk_value(v.value().unwrap()),
    }
}

pub fn zvariant_checksum(m: &HashMap<&str, zvariant::Value<'_>>) -> u64 {
    m.iter()
        .map(|(k, v)| {
            k.len() as u64
                + match v {
                    zvariant::Value::U8(x) => *x as u64,
                    zvariant::Value::Bool(x) => *x as u64,
                    zvariant::Value::U32(x) => *x as u64,
                    zvariant::Value::U64(x) => *x,
                    zvariant::Value::F64(x) => *x as u64,
                    zvariant::Value::Str(x) => x.len() as u64,
                    zvariant::Value::ObjectPath(x) => x.len() as u64,
                    zvariant::Value::Array(a) => {
                        a.iter().map(|e| if let zvariant::Value::Str(s) = e { s.len() as u64 } else { 0 }).sum()
                    }
                    _ => 0,
                }
        })
        .sum()
}
