//! The bridge's own per-frame work allocates nothing: sealing an outbound frame, checking
//! an inbound one, the sequence attachment, gap counting and the counters. (Zenoh's `put`
//! and its received samples allocate inside Zenoh; docs/bridge.md, "Allocation".)

use ember_bridge::counters::Counters;
use ember_bridge::frames::{Attachment, GapTracker, check_inbound, seal_outbound};
use ember_core::frame::{FrameRepr, Integrity};

#[test]
fn the_per_frame_path_allocates_nothing() {
    let counters = Counters::default();
    let mut gaps = GapTracker::default();
    let mut local = [0u8; 4096 + 24];
    let mut scratch = [0u8; 4096 + 24];
    let payload = [0x5au8; 4096];
    let n = ember_test_support::allocations(|| {
        for i in 0..10_000u32 {
            let len = [64usize, 4096][i as usize % 2] - 24;
            let integrity = if i % 3 == 0 { Integrity::Checked } else { Integrity::Unchecked };
            let repr = FrameRepr { flags: integrity.flags(), kind: 1, seq: i, payload_len: len };
            let record = repr.emit_with_payload(&payload[..len], &mut local).unwrap();
            counters.add_in(1);
            let wire = seal_outbound(record, &mut scratch).unwrap();
            let att = Attachment { epoch: 7, seq: u64::from(i) }.to_bytes();
            counters.add_out(1);
            // The receiving side.
            check_inbound(wire, 4096 + 24).unwrap();
            let a = Attachment::parse(&att).unwrap();
            counters.add_lost(gaps.observe(a));
            let _ = counters.snapshot();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10,000 frames");
    assert_eq!(counters.snapshot().lost, 0);
}
