//! Fuzzes the D-Bus message parser and value reader with one input.
//!
//! - The whole input as a message (either byte order, as its first byte says): `parse`
//!   must not panic; what it accepts must have the length `message_len` says, and walking
//!   its body again (every value, into every container and variant) must succeed, and read
//!   the same number of values whether the reading skips the checks `parse` made (the
//!   message's own body) or repeats them (a `parse_header` view).
//! - The whole input through `parse_again` (meant for bytes `parse` accepted, but safe on
//!   any): reading its body must not panic, whatever comes back.
//! - Typed reads (`Message::body_as`) of a few body types: on a message `parse` accepted
//!   whose signature is the type's, reading must succeed to the last element; on
//!   `parse_again`'s view of any bytes it must not panic.
//! - The input as `signature-length, signature, values`: when the signature is valid,
//!   reading its values in both byte orders must not panic.
#![no_main]

use ember_core::dbus::header::message_len;
use ember_core::dbus::value::{Reader, Value};
use ember_core::dbus::{ArrayView, DictView, Endian, Message, ObjectPath, Signature, Variant};
use libfuzzer_sys::fuzz_target;

/// Reads every value inside `v`, recursively; returns how many were read.
fn walk(v: Value<'_>) -> usize {
    match v {
        Value::Array(a) => 1 + a.map(|e| walk(e.expect("checked array element"))).sum::<usize>(),
        Value::Struct(f) | Value::DictEntry(f) => 1 + f.map(|e| walk(e.expect("checked field"))).sum::<usize>(),
        Value::Variant(var) => 1 + walk(var.value().expect("checked variant")),
        _ => 1,
    }
}

/// Reads every value inside `v` that can be read, stopping at errors.
fn walk_any(v: Value<'_>) -> usize {
    let each = |r: Result<Value<'_>, _>| r.map(walk_any).unwrap_or(0);
    match v {
        Value::Array(a) => 1 + a.map(each).sum::<usize>(),
        Value::Struct(f) | Value::DictEntry(f) => 1 + f.map(each).sum::<usize>(),
        Value::Variant(var) => 1 + var.value().map(walk_any).unwrap_or(0),
        _ => 1,
    }
}

/// Reads the body as a few typed bodies. `checked`: the message was `parse`d, so a body
/// whose signature is the type's must read, every element of it.
fn typed(m: &Message<'_>, checked: bool) {
    fn ok<T, E: core::fmt::Debug>(r: Result<T, E>, checked: bool, what: &str) -> Option<T> {
        match r {
            Ok(x) => Some(x),
            Err(e) if checked => panic!("{what}: {e:?}"),
            Err(_) => None,
        }
    }
    let sig = m.signature().as_str();
    let c = |s: &str| checked && sig == s;
    let _ = ok(m.body_as::<(&str,)>(), c("s"), "s");
    let _ = ok(m.body_as::<(u32,)>(), c("u"), "u");
    let _ = ok(m.body_as::<(&[u8],)>(), c("ay"), "ay");
    let _ = ok(m.body_as::<(ObjectPath<'_>, Signature<'_>)>(), c("og"), "og");
    if let Some((v,)) = ok(m.body_as::<(Variant<'_>,)>(), c("v"), "v") {
        let _ = ok(v.value(), c("v"), "v's value");
    }
    if let Some((d,)) = ok(m.body_as::<(DictView<'_, &str, Variant<'_>>,)>(), c("a{sv}"), "a{sv}") {
        for e in d {
            if let Some((_, v)) = ok(e, c("a{sv}"), "a{sv} entry") {
                let _ = ok(v.value(), c("a{sv}"), "a{sv} value");
            }
        }
    }
    if let Some((a,)) = ok(m.body_as::<(ArrayView<'_, (u8, Variant<'_>)>,)>(), c("a(yv)"), "a(yv)") {
        for e in a {
            let _ = ok(e, c("a(yv)"), "a(yv) element");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data, 1 << 20) {
        assert_eq!(message_len(data, 1 << 20), Ok(data.len()));
        let mut n = 0;
        for v in m.body() {
            n += walk(v.expect("a parsed message's body reads again"));
        }
        assert!(n >= m.signature().types().count());
        let checked_again = Message::parse_header(data, 1 << 20).expect("the header parses again");
        let again: usize = checked_again.body().map(|v| walk(v.expect("checked again"))).sum();
        assert_eq!(n, again, "trusted and checked readings disagree");
        typed(&m, true);
        typed(&checked_again, true);
    }
    if let Ok(m) = Message::parse_again(data, 1 << 20) {
        typed(&m, false);
        for v in m.body() {
            match v {
                Ok(v) => {
                    walk_any(v);
                }
                Err(_) => break,
            }
        }
    }
    if let Some((&len, rest)) = data.split_first() {
        let len = len as usize;
        if rest.len() >= len
            && let Ok(s) = core::str::from_utf8(&rest[..len])
            && let Ok(sig) = Signature::new(s)
        {
            for endian in [Endian::Little, Endian::Big] {
                for v in Reader::new(&rest[len..], endian).values(sig) {
                    match v {
                        Ok(v) => {
                            walk(v);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
});
