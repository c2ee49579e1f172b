//! Fuzzes the checks a segment's opener makes on its first bytes: the input is the
//! segment (from offset 0; its length is the mapping's).
//!
//! - `layout::validate` (what `open` runs, for each kind, with the fingerprint the input's
//!   header carries or another), `layout::peek` (`emberctl ls`), `layout::creator` (a
//!   creator deciding whether a segment left under its name is stale), and
//!   `inspect::counters` over the same bytes.
//! - The live header: the input's first 128 bytes as the atomic words of a `SegmentHeader`
//!   (a mapping's), snapshot and `open`ed, must give what `validate` gives on the bytes.
//!
//! Each input is checked as it is, then again with its header CRC made right, so that
//! mutations of a valid header reach the checks behind the CRC.
//!
//! Checked: nothing panics; an accepted header's sizes fit the mapping and its kind's
//! layout (data area inside the segment, waiter line before the data, the capacity a power
//! of two for the rings); it re-encodes to the same bytes (`HeaderRepr::to_bytes`) with the
//! same creator; `validate` accepts exactly what `peek` accepts with the expected kind and
//! fingerprint.
#![no_main]

use ember_core::crc32c::{crc32c, crc32c_append};
use ember_core::shm::ShmError;
use ember_core::shm::inspect::counters;
use ember_core::shm::layout::{self, Expect, HEADER_SIZE, SegmentHeader, SegmentKind};
use ember_core::shm::primitive::AtomicU32;
use libfuzzer_sys::fuzz_target;

const KINDS: [SegmentKind; 4] = [SegmentKind::SeqLock, SegmentKind::Spsc, SegmentKind::Broadcast, SegmentKind::Sync];

fn check(data: &[u8]) {
    let peeked = layout::peek(data, data.len());
    let creator = layout::creator(data);
    if let Ok(h) = peeked {
        let (total, wait, off, cap) =
            (h.total_size as usize, h.wait_offset as usize, h.data_offset as usize, h.capacity as usize);
        assert!(total <= data.len() && off + cap == total, "{h:?}");
        assert!(wait + 128 <= off && off % 128 == 0 && wait % 128 == 0 && wait >= 384, "{h:?}");
        assert!(cap >= 64 && cap % 8 == 0, "{h:?}");
        if matches!(h.kind, SegmentKind::Spsc | SegmentKind::Broadcast) {
            assert!(cap.is_power_of_two(), "{h:?}");
        }
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..60], &data[..60], "re-encoding differs");
        assert_eq!(layout::peek(&bytes, data.len()), Ok(h));
        assert_eq!(creator, Some((h.creator_pid, h.creator_start)));
        // The counters of whatever the copy holds: an error if it is too short, never a panic.
        let c = counters(&h, data);
        assert!(c.is_ok() || data.len() < off, "{c:?}");
    } else {
        // A header `peek` refuses: counters over any header it could have meant still do not panic.
        for kind in KINDS {
            let h = layout::HeaderRepr {
                kind,
                total_size: 0,
                wait_offset: data.first().map_or(0, |&b| u32::from(b) << 8),
                data_offset: 0,
                capacity: 0,
                creator_pid: 0,
                creator_start: 0,
                fingerprint: 0,
            };
            let _ = counters(&h, data);
        }
    }
    let words: Option<[AtomicU32; HEADER_SIZE / 4]> = data.get(..HEADER_SIZE).map(|h| {
        core::array::from_fn(|i| {
            AtomicU32::new(u32::from_ne_bytes([h[4 * i], h[4 * i + 1], h[4 * i + 2], h[4 * i + 3]]))
        })
    });
    // SAFETY: `SegmentHeader` is `repr(C)` with one field, an array of 32 `AtomicU32`: the
    // same layout as `words`, which outlives the reference.
    let live: Option<&SegmentHeader> =
        words.as_ref().map(|w| unsafe { &*(w as *const [AtomicU32; HEADER_SIZE / 4]).cast::<SegmentHeader>() });
    if let Some(live) = live {
        assert_eq!(&live.snapshot()[..], &data[..HEADER_SIZE]);
    }
    for kind in KINDS {
        let fingerprint = peeked.map_or(0, |h| h.fingerprint);
        for fp in [fingerprint, fingerprint ^ 1] {
            let expect = Expect { kind, fingerprint: fp, mapped_len: data.len() };
            let v = layout::validate(data, &expect);
            match peeked {
                Ok(h) if h.kind == kind && fp == h.fingerprint => assert_eq!(v, Ok(h)),
                Ok(h) if h.kind == kind => {
                    assert_eq!(v, Err(ShmError::WrongFingerprint { expected: fp, found: h.fingerprint }))
                }
                Ok(h) => assert_eq!(v, Err(ShmError::WrongKind { expected: kind as u32, found: h.kind as u32 })),
                Err(_) => assert!(v.is_err()),
            }
            // The live header: the same bytes in a mapping give the same answer.
            if let Some(live) = &live {
                assert_eq!(live.open(&expect), v);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with the header's CRC made right: a mutation of a valid header then
    // reaches the size checks behind the CRC, which a fuzzer cannot often get past itself.
    if data.len() >= HEADER_SIZE {
        let mut sealed = data.to_vec();
        let crc = crc32c_append(crc32c(&sealed[..48]), &sealed[52..60]);
        sealed[48..52].copy_from_slice(&crc.to_ne_bytes());
        if sealed != data {
            check(&sealed);
        }
    }
});
