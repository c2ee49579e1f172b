//! Fuzzes `emberctl dbus`'s parser of D-Bus values in the GVariant text format (the
//! arguments of `call` and `emit`): the input, as UTF-8, is one value.
//!
//! Checked: nothing panics, however deep or long the text; an accepted value has a valid
//! D-Bus signature, marshals (when it fits 64 KiB), reads back with that signature, and
//! prints as text that parses to the same value (compared as debug text: NaN is not equal
//! to itself) and prints the same again.
#![no_main]

use ember_core::dbus::marshal::Writer;
use ember_core::dbus::value::Reader;
use ember_core::dbus::{DbusError, Endian, Signature};
use ember_ipc_cli::fuzzing::{parse_value, print_value};
use libfuzzer_sys::fuzz_target;

/// Marshals `text`'s value, reads it back and prints it.
fn round_trip(text: &str, buf: &mut [u8]) -> Option<String> {
    let v = parse_value(text, "input").ok()?;
    let sig = v.signature();
    let signature = Signature::new(&sig).expect("an accepted value has a valid signature");
    let mut w = Writer::new(buf);
    match v.write(&mut w) {
        Ok(()) => {}
        // Too long for the buffer; a D-Bus message could not carry more anyway.
        Err(DbusError::BufferTooSmall) => return None,
        Err(e) => panic!("{text:?} ({sig}) does not marshal: {e:?}"),
    }
    let n = w.position();
    let mut r = Reader::new(&buf[..n], Endian::NATIVE);
    let read = r.value(signature).unwrap_or_else(|e| panic!("{text:?} ({sig}) does not read back: {e:?}"));
    let mut out = String::new();
    print_value(&read, &mut out).unwrap_or_else(|e| panic!("{text:?} ({sig}) does not print: {e:?}"));
    let again = parse_value(&out, "printed").unwrap_or_else(|e| panic!("{text:?} printed as {out:?}: {e}"));
    assert_eq!(format!("{again:?}"), format!("{v:?}"), "{text:?} printed as {out:?}");
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut buf = vec![0u8; 1 << 16];
    if let Some(printed) = round_trip(text, &mut buf) {
        assert_eq!(round_trip(&printed, &mut buf).as_deref(), Some(printed.as_str()), "printing is not stable");
    }
});
