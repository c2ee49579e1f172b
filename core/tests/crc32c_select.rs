//! The process-wide choice of CRC-32C implementation (`ember_core::crc32c::select`), in its
//! own test binary because it changes what every CRC of the process runs: the first CRC
//! (which runs the detection) allocates nothing, `select` refuses what this build lacks,
//! and after `select(Portable)` the frames still carry the same checksums.

use ember_core::crc32c::{self, Implementation};
use ember_core::frame::{Flags, FrameRepr};
use ember_test_support::allocations;

fn frame_bytes() -> [u8; 64] {
    let payload: [u8; 40] = core::array::from_fn(|i| (i * 37 + 1) as u8);
    let mut buf = [0u8; 64];
    let repr = FrameRepr { flags: Flags::default(), kind: 7, seq: 9, payload_len: payload.len() };
    assert_eq!(repr.emit_with_payload(&payload, &mut buf).unwrap().len(), 64);
    buf
}

#[test]
fn choosing_allocates_nothing_and_select_switches_every_crc() {
    // The first CRC of the process runs the detection; with the counting allocator
    // installed, it and the CRCs after it allocate nothing.
    let data = [0x5Au8; 1000];
    let mut first = 0;
    assert_eq!(allocations(|| first = crc32c::crc32c(&data)), 0);
    let chosen = crc32c::selected();
    eprintln!("chosen at the first CRC: {chosen}");
    assert!(chosen.compiled());
    let before = frame_bytes();

    // Not compiled into this build: refused, nothing changes.
    for imp in Implementation::ALL.into_iter().filter(|i| !i.compiled()) {
        // SAFETY: refused without running anything (not compiled in).
        assert!(!unsafe { crc32c::select(imp) }, "{imp}");
        assert_eq!(crc32c::selected(), chosen);
    }

    // SAFETY: the portable loop runs on every CPU.
    let accepted = unsafe { crc32c::select(Implementation::Portable) };
    if accepted {
        assert_eq!(crc32c::selected(), Implementation::Portable);
        assert_eq!(crc32c::implementation(), Implementation::Portable.name());
    } else {
        // Refused only when an accelerated implementation is compiled in (target features).
        assert_ne!(chosen, Implementation::Portable);
        assert_eq!(crc32c::selected(), chosen);
    }
    assert_eq!(crc32c::crc32c(&data), first);
    assert_eq!(crc32c::crc32c(b"123456789"), crc32c::CHECK);
    assert_eq!(frame_bytes(), before, "the same frame, whatever computes its CRCs");
}
