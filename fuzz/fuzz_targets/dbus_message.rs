//! Fuzzes the D-Bus message parser and value reader with one input.
//!
//! - The whole input as a message (either byte order, as its first byte says): `parse`
//!   must not panic; what it accepts must have the length `message_len` says, and walking
//!   its body again (every value, into every container and variant) must succeed, and read
//!   the same number of values whether the reading skips the checks `parse` made (the
//!   message's own body) or repeats them (a `parse_header` view).
//! - The whole input through `parse_again` (meant for bytes `parse` accepted, but safe on
//!   any): reading its body must not panic, whatever comes back.
//! - The input as `signature-length, signature, values`: when the signature is valid,
//!   reading its values in both byte orders must not panic.
#![no_main]

use ember_core::dbus::header::message_len;
use ember_core::dbus::value::{Reader, Value};
use ember_core::dbus::{Endian, Message, Signature};
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
    }
    if let Ok(m) = Message::parse_again(data, 1 << 20) {
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
