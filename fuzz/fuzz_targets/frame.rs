//! Fuzzes every parser of the frame format with one input: the checked view, typed decoding,
//! and the stream accumulator fed the input in the splits the input's first byte chooses.
//!
//! Invariants checked (a violation aborts the run):
//! - nothing panics, whatever the bytes;
//! - whatever `Frame::new_checked` accepts re-emits to the same bytes, and re-emits with the
//!   other integrity (payload checked or not) to a frame that is accepted with the same
//!   header fields and payload;
//! - an accepted unchecked frame stays accepted whatever its payload bytes become (its
//!   header does not cover them), and an accepted checked one does not survive a flipped
//!   payload byte;
//! - every frame the accumulator yields passes `Frame::new_checked` on its own bytes, and is
//!   checked when the accumulator requires it (the second byte's low bit says whether);
//! - the accumulator never buffers more than its capacity and always makes progress.
#![no_main]

use ember_core::accumulator::{FeedResult, FrameAccumulator};
use ember_core::frame::{Frame, FrameRepr, HEADER_LEN, Integrity};
use ember_core::message;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Sample<'a> {
    id: u32,
    name: &'a str,
    values: heapless::Vec<i64, 8>,
    tail: Option<&'a [u8]>,
}

fuzz_target!(|data: &[u8]| {
    // The checked view and a re-emit round trip.
    if let Ok(frame) = Frame::new_checked(data) {
        let repr = FrameRepr::parse(&frame).expect("checked frame parses");
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit_with_payload(frame.payload(), &mut out).expect("fits");
        assert_eq!(&out[..], frame.as_bytes(), "re-emit differs");
        // The same frame with the other integrity.
        let other = match frame.integrity() {
            Integrity::Checked => Integrity::Unchecked,
            Integrity::Unchecked => Integrity::Checked,
        };
        let flipped = repr.with_integrity(other);
        flipped.emit_with_payload(frame.payload(), &mut out).expect("fits");
        let g = Frame::new_checked(&out[..]).expect("re-emitted with the other integrity");
        assert_eq!(
            (g.integrity(), g.kind(), g.seq(), g.payload()),
            (other, frame.kind(), frame.seq(), frame.payload())
        );
        // What the payload check covers: flip the payload's first byte in a copy.
        if frame.payload_len() > 0 {
            let mut copy = frame.as_bytes().to_vec();
            copy[HEADER_LEN] ^= 0x5A;
            let accepted = Frame::new_checked(&copy[..]).is_ok();
            assert_eq!(accepted, frame.integrity() == Integrity::Unchecked, "payload coverage");
        }
    }
    // Typed decoding of whatever payload is there.
    let _ = message::decode::<Sample<'_>>(data);
    let _ = message::decode::<(u8, bool, char, f64)>(data);

    // The accumulator, in splits chosen by the first byte.
    let (chunk, stream) = match data.split_first() {
        Some((c, rest)) => ((*c as usize % 64) + 1, rest),
        None => return,
    };
    let mut acc = FrameAccumulator::<256>::new();
    let require = stream.first().is_some_and(|b| b & 1 == 1);
    acc.set_require_checked(require);
    let mut events = 0usize;
    for piece in stream.chunks(chunk) {
        let mut window = piece;
        loop {
            match acc.feed(window) {
                FeedResult::Consumed => break,
                FeedResult::Frame { frame, remaining } => {
                    assert!(Frame::new_checked(frame.as_bytes()).is_ok(), "accumulator yielded a bad frame");
                    assert!(!require || frame.integrity() == Integrity::Checked, "an unchecked frame when required");
                    let _ = message::decode_frame::<Sample<'_>>(&frame);
                    window = remaining;
                }
                FeedResult::Error { remaining, .. } => window = remaining,
            }
            events += 1;
            assert!(events <= stream.len() + 1, "accumulator made no progress");
        }
        assert!(acc.buffered() <= 256);
    }
});
