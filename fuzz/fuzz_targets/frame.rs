//! Fuzzes every parser of the frame format with one input: the checked view, typed decoding,
//! and the stream accumulator fed the input in the splits the input's first byte chooses.
//!
//! Invariants checked (a violation aborts the run):
//! - nothing panics, whatever the bytes;
//! - whatever `Frame::new_checked` accepts re-emits to the same bytes;
//! - every frame the accumulator yields passes `Frame::new_checked` on its own bytes;
//! - the accumulator never buffers more than its capacity and always makes progress.
#![no_main]

use ember_core::accumulator::{FeedResult, FrameAccumulator};
use ember_core::frame::{Frame, FrameRepr};
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
    let mut events = 0usize;
    for piece in stream.chunks(chunk) {
        let mut window = piece;
        loop {
            match acc.feed(window) {
                FeedResult::Consumed => break,
                FeedResult::Frame { frame, remaining } => {
                    assert!(Frame::new_checked(frame.as_bytes()).is_ok(), "accumulator yielded a bad frame");
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
