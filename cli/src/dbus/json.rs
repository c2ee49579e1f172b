//! The `--json` output of `emberctl dbus`: D-Bus values and messages as JSON.
//!
//! The mapping follows `busctl --json`, so that a script written for one reads the other:
//!
//! ```text
//! y n q i u x t d   a number (a non-finite double: null)
//! b                 true / false
//! s o g             a string
//! h                 the fd's index, a number
//! a...              an array; ay too (of numbers)
//! a{..}             an object; keys that are not strings are written as their text (1 -> "1")
//! (...)             an array of the fields
//! v                 {"type": "<signature>", "data": <value>}
//! a reply's body    {"type": "<signature>", "data": [<value>, ...]}
//! ```
//!
//! A message (`monitor`, `decode`) is one object: `type`, `serial`, the header fields it has
//! (`reply_serial`, `sender`, `destination`, `path`, `interface`, `member`, `error_name`),
//! `signature`, `flags`, `unix_fds` and `body` (the reply-body form above).
//!
//! Panic contract: none; a value that cannot be read is the reader's `DbusError`.

use std::fmt::Write as _;

use ember_core::dbus::{DbusError, Message, Signature, Value};

use crate::bench::json_str;

/// Appends `v` as JSON.
pub fn value(v: &Value<'_>, out: &mut String) -> Result<(), DbusError> {
    match v {
        Value::Byte(x) => write!(out, "{x}").ok(),
        Value::Bool(x) => write!(out, "{x}").ok(),
        Value::I16(x) => write!(out, "{x}").ok(),
        Value::U16(x) => write!(out, "{x}").ok(),
        Value::I32(x) => write!(out, "{x}").ok(),
        Value::U32(x) => write!(out, "{x}").ok(),
        Value::I64(x) => write!(out, "{x}").ok(),
        Value::U64(x) => write!(out, "{x}").ok(),
        Value::F64(x) if !x.is_finite() => write!(out, "null").ok(),
        Value::F64(x) => write!(out, "{x:?}").ok(),
        Value::Str(s) => write!(out, "{}", json_str(s)).ok(),
        Value::Path(p) => write!(out, "{}", json_str(p.as_str())).ok(),
        Value::Sig(s) => write!(out, "{}", json_str(s.as_str())).ok(),
        Value::Fd(i) => write!(out, "{i}").ok(),
        Value::Array(a) => {
            let dict = a.element().as_str().starts_with('{');
            out.push(if dict { '{' } else { '[' });
            for (i, item) in a.clone().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(&item?, out)?;
            }
            out.push(if dict { '}' } else { ']' });
            Some(())
        }
        Value::DictEntry(f) => {
            let mut f = f.clone();
            let key = f.next().ok_or(DbusError::BodyMismatch)??;
            match key {
                Value::Str(_) | Value::Path(_) | Value::Sig(_) => value(&key, out)?,
                other => {
                    let mut k = String::new();
                    value(&other, &mut k)?;
                    out.push_str(&json_str(&k));
                }
            }
            out.push(':');
            value(&f.next().ok_or(DbusError::BodyMismatch)??, out)?;
            Some(())
        }
        Value::Struct(f) => {
            out.push('[');
            for (i, field) in f.clone().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(&field?, out)?;
            }
            out.push(']');
            Some(())
        }
        Value::Variant(v) => {
            let _ = write!(out, "{{\"type\":{},\"data\":", json_str(v.signature().as_str()));
            value(&v.value()?, out)?;
            out.push('}');
            Some(())
        }
    };
    Ok(())
}

/// Appends a body, `{"type":"<signature>","data":[...]}`.
pub fn body<'a>(
    sig: Signature<'_>,
    values: impl Iterator<Item = Result<Value<'a>, DbusError>>,
    out: &mut String,
) -> Result<(), DbusError> {
    let _ = write!(out, "{{\"type\":{},\"data\":[", json_str(sig.as_str()));
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        value(&v?, out)?;
    }
    out.push_str("]}");
    Ok(())
}

/// `m` as one JSON object; `extra` is put first (`"offset":0,"length":169,` for `decode`).
pub fn message(m: &Message<'_>, extra: &str) -> Result<String, DbusError> {
    let mut s = format!("{{{extra}\"type\":\"{}\",\"serial\":{}", super::type_name(m.message_type()), m.serial());
    if let Some(r) = m.reply_serial() {
        let _ = write!(s, ",\"reply_serial\":{r}");
    }
    let mut field = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            let _ = write!(s, ",\"{k}\":{}", json_str(v));
        }
    };
    field("sender", m.sender());
    field("destination", m.destination());
    field("path", m.path().map(|p| p.as_str()));
    field("interface", m.interface());
    field("member", m.member());
    field("error_name", m.error_name());
    let _ = write!(
        s,
        ",\"signature\":{},\"flags\":{},\"unix_fds\":{},\"body\":",
        json_str(m.signature().as_str()),
        m.flags(),
        m.unix_fds()
    );
    body(m.signature(), m.body(), &mut s)?;
    s.push('}');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_core::dbus::Endian;
    use ember_core::dbus::value::Reader;

    /// Marshals the GVariant text `text` and writes it back as JSON.
    fn json_of(text: &str) -> String {
        let v = super::super::text::parse(text, "test").unwrap();
        let sig = v.signature();
        let mut buf = [0u8; 4096];
        let mut w = ember_core::dbus::marshal::Writer::new(&mut buf);
        v.write(&mut w).unwrap();
        let len = w.position();
        let sig = Signature::new(&sig).unwrap();
        let mut out = String::new();
        body(sig, Reader::new(&buf[..len], Endian::NATIVE).values(sig), &mut out).unwrap();
        out
    }

    #[test]
    fn values_map_as_busctl_does() {
        assert_eq!(json_of("'a\"b'"), r#"{"type":"s","data":["a\"b"]}"#);
        assert_eq!(json_of("uint64 18446744073709551615"), r#"{"type":"t","data":[18446744073709551615]}"#);
        assert_eq!(json_of("double inf"), r#"{"type":"d","data":[null]}"#);
        assert_eq!(json_of("(1, 'x')"), r#"{"type":"(is)","data":[[1,"x"]]}"#);
        assert_eq!(json_of("{'k': <uint32 5>}"), r#"{"type":"a{sv}","data":[{"k":{"type":"u","data":5}}]}"#);
        assert_eq!(json_of("{1: true}"), r#"{"type":"a{ib}","data":[{"1":true}]}"#);
        assert_eq!(json_of("@as []"), r#"{"type":"as","data":[[]]}"#);
        assert_eq!(json_of("objectpath '/a'"), r#"{"type":"o","data":["/a"]}"#);
    }
}
