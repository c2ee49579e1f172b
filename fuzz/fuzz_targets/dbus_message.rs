//! Fuzzes the D-Bus message parser and value reader with one input.
//!
//! - The whole input as a message (either byte order, as its first byte says): `parse`
//!   must not panic; what it accepts must have the length `message_len` says, and walking
//!   its body again (every value, into every container and variant) must succeed.
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

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data, 1 << 20) {
        assert_eq!(message_len(data, 1 << 20), Ok(data.len()));
        let mut n = 0;
        for v in m.body() {
            n += walk(v.expect("a parsed message's body reads again"));
        }
        assert!(n >= m.signature().types().count());
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
