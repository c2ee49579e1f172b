//! Fuzzes `emberctl dbus decode`'s capture reader: the input is the file (pcap, pcapng or
//! raw D-Bus messages back to back), read as text and as JSON.
//!
//! Checked: nothing panics; the messages come in file order, each at an offset inside the
//! file; the damage, if any, is at an offset no further than the file's end; an empty
//! result always comes with the damage; text and JSON readings find the same messages and
//! the same damage.
#![no_main]

use ember_ipc_cli::fuzzing::decode_capture;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (messages, damage) = decode_capture(data, false);
    let mut last = None;
    for (offset, text) in &messages {
        assert!(*offset < data.len(), "message at {offset} of a {}-byte file", data.len());
        assert!(last.is_none_or(|l| l < *offset), "messages out of order");
        assert!(!text.is_empty());
        last = Some(*offset);
    }
    if let Some(d) = &damage {
        assert!(d.offset <= data.len(), "damage at {} of a {}-byte file", d.offset, data.len());
        assert!(!d.rule.is_empty());
    } else {
        assert!(!messages.is_empty(), "no message and no damage");
    }
    let (json, json_damage) = decode_capture(data, true);
    assert_eq!(
        json.iter().map(|m| m.0).collect::<Vec<_>>(),
        messages.iter().map(|m| m.0).collect::<Vec<_>>(),
        "text and JSON find different messages"
    );
    assert_eq!(json_damage.map(|d| d.offset), damage.map(|d| d.offset), "text and JSON find different damage");
});
