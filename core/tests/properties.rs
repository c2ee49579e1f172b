//! Property tests: encode/decode round trips and stream reassembly under random splits and
//! garbage.

use ember_core::accumulator::{FeedResult, FrameAccumulator};
use ember_core::frame::{self, Flags, Frame, FrameRepr, HEADER_LEN};
use ember_core::message;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Sizes of generated streams: smaller under Miri, where every byte costs thousands of
/// times more.
const MAX_FRAMES: usize = if cfg!(miri) { 3 } else { 12 };
const MAX_PAYLOAD: usize = if cfg!(miri) { 40 } else { 300 };
const MAX_RAW: usize = if cfg!(miri) { 300 } else { 4096 };

/// Fewer cases under Miri, where every case is thousands of times slower.
fn config() -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig { cases: 256, ..ProptestConfig::default() }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Command<'a> {
    Stop,
    Set { channel: u8, value: i64 },
    Name(&'a str),
    Blob(&'a [u8]),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Telemetry<'a> {
    sensor: u16,
    timestamp_us: u64,
    readings: heapless::Vec<f32, 16>,
    flags: Option<u32>,
    #[serde(borrow)]
    command: Command<'a>,
}

fn telemetry_strategy() -> impl Strategy<Value = (u16, u64, Vec<f32>, Option<u32>, u8, i64, u8)> {
    (
        any::<u16>(),
        any::<u64>(),
        prop::collection::vec(any::<f32>().prop_filter("nan", |f| !f.is_nan()), 0..16),
        any::<Option<u32>>(),
        0u8..4,
        any::<i64>(),
        any::<u8>(),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn typed_round_trip(
        (sensor, ts, readings, flags, which, value, channel) in telemetry_strategy(),
        text in "\\PC{0,40}",
        blob in prop::collection::vec(any::<u8>(), 0..300),
        kind in any::<u32>(),
        seq in any::<u32>(),
    ) {
        let command = match which {
            0 => Command::Stop,
            1 => Command::Set { channel, value },
            2 => Command::Name(&text),
            _ => Command::Blob(&blob),
        };
        let msg = Telemetry {
            sensor,
            timestamp_us: ts,
            readings: heapless::Vec::from_slice(&readings).unwrap(),
            flags,
            command,
        };
        let mut buf = [0u8; 1024];
        let n = message::encode(kind, seq, &msg, &mut buf).unwrap().len();
        let (repr, back): (FrameRepr, Telemetry<'_>) = message::decode(&buf[..n]).unwrap();
        prop_assert_eq!(repr.kind, kind);
        prop_assert_eq!(repr.seq, seq);
        prop_assert_eq!(repr.payload_len + HEADER_LEN, n);
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn raw_round_trip_all_sizes(
        len in 0usize..=MAX_RAW,
        fill in any::<u8>(),
        kind in any::<u32>(),
        seq in any::<u32>(),
        flags in prop::sample::select(vec![
            Flags::empty(),
            Flags::RESPONSE,
            Flags::RESPONSE | Flags::ERROR,
            Flags::from_bits_retain(0x70),
            Flags::UNCHECKED,
            Flags::RESPONSE | Flags::ERROR | Flags::UNCHECKED,
        ]),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
        let repr = FrameRepr { flags, kind, seq, payload_len: len };
        let mut buf = vec![0u8; HEADER_LEN + len];
        repr.emit_with_payload(&payload, &mut buf).unwrap();
        let frame = Frame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(FrameRepr::parse(&frame).unwrap(), repr);
        prop_assert_eq!(frame.payload(), &payload[..]);
    }

    #[test]
    fn single_bit_flips_are_detected(
        len in 0usize..200,
        bit in any::<prop::sample::Index>(),
        unchecked in any::<bool>(),
    ) {
        // Every flip of a checked frame; of an unchecked one, every flip of its header,
        // while a flip in its payload goes through (the payload is not covered).
        let payload = vec![0x5Au8; len];
        let flags = if unchecked { Flags::UNCHECKED } else { Flags::empty() };
        let repr = FrameRepr { flags, kind: 1, seq: 2, payload_len: len };
        let mut buf = vec![0u8; HEADER_LEN + len];
        repr.emit_with_payload(&payload, &mut buf).unwrap();
        let i = bit.index(buf.len() * 8);
        buf[i / 8] ^= 1 << (i % 8);
        if unchecked && i / 8 >= HEADER_LEN {
            prop_assert!(Frame::new_checked(&buf[..]).is_ok());
        } else {
            prop_assert!(Frame::new_checked(&buf[..]).is_err());
        }
    }

    /// `Frame::new_checked` takes a good frame in one fast pass and anything else the
    /// long way: both must agree with the checks one by one (`FrameRepr::parse`), error
    /// included, on frames with a header byte edited and the checksums resealed (so the
    /// edit reaches the magic, version, flags and length checks), truncated, or extended.
    #[test]
    fn fast_and_field_by_field_checks_agree(
        len in 0usize..100,
        unchecked in any::<bool>(),
        at in 0usize..20,
        value in any::<u8>(),
        reseal_crc in any::<bool>(),
        reseal_hcrc in any::<bool>(),
        cut in 0usize..130,
    ) {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let flags = if unchecked { Flags::UNCHECKED } else { Flags::empty() };
        let repr = FrameRepr { flags, kind: 9, seq: 3, payload_len: len };
        let mut buf = vec![0u8; HEADER_LEN + len + 8];
        repr.emit_with_payload(&payload, &mut buf).unwrap();
        buf[at] = value;
        if reseal_crc {
            let end = (HEADER_LEN + len).min(buf.len());
            let mut covered = buf[..16].to_vec();
            if buf[3] & 0x04 == 0 {
                covered.extend_from_slice(&buf[HEADER_LEN..end]);
            }
            let crc = ember_core::crc32c::crc32c(&covered);
            buf[16..20].copy_from_slice(&crc.to_le_bytes());
        }
        if reseal_hcrc {
            let hcrc = ember_core::crc32c::crc32c(&buf[..20]);
            buf[20..24].copy_from_slice(&hcrc.to_le_bytes());
        }
        let bytes = &buf[..cut.min(buf.len())];
        let fast = Frame::new_checked(bytes).map(|f| FrameRepr::parse(&f).unwrap());
        let slow = FrameRepr::parse(&Frame::new_unchecked(bytes));
        prop_assert_eq!(fast, slow);
    }

    #[test]
    fn accumulator_yields_exactly_the_frames_sent(
        frames in prop::collection::vec(
            (0usize..MAX_PAYLOAD, any::<u8>(), prop::collection::vec(any::<u8>(), 0..40), any::<bool>()),
            1..MAX_FRAMES,
        ),
        splits in prop::collection::vec(1usize..97, 1..40),
        byte_at_a_time in any::<bool>(),
    ) {
        // Build the stream: each frame preceded by random garbage.
        let mut stream = Vec::new();
        let mut sent = Vec::new();
        // Checked and unchecked frames mixed: the accumulator takes both.
        for (seq, (len, fill, garbage, unchecked)) in frames.iter().enumerate() {
            stream.extend_from_slice(garbage);
            let payload = vec![*fill; *len];
            let flags = if *unchecked { Flags::UNCHECKED } else { Flags::empty() };
            let repr = FrameRepr { flags, kind: 9, seq: seq as u32, payload_len: *len };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit_with_payload(&payload, &mut buf).unwrap();
            stream.extend_from_slice(&buf);
            sent.push((seq as u32, payload));
        }
        let mut acc = FrameAccumulator::<512>::new();
        let mut got = Vec::new();
        let mut errors = Vec::new();
        let mut pos = 0;
        let mut split = splits.iter().cycle();
        while pos < stream.len() {
            let step = if byte_at_a_time { 1 } else { *split.next().unwrap() };
            let end = (pos + step).min(stream.len());
            let mut window = &stream[pos..end];
            loop {
                match acc.feed(window) {
                    FeedResult::Consumed => break,
                    FeedResult::Frame { frame, remaining } => {
                        got.push((frame.seq(), frame.payload().to_vec()));
                        window = remaining;
                    }
                    FeedResult::Error { error, remaining } => {
                        errors.push(error);
                        window = remaining;
                    }
                }
            }
            pos = end;
        }
        // Garbage could, by a 2^-48 chance, form a header; it cannot hide a frame unless it
        // also forms a valid header, so the frames must all come through.
        prop_assert_eq!(errors, vec![]);
        prop_assert_eq!(got, sent);
        prop_assert_eq!(acc.buffered(), 0);
    }

    #[test]
    fn accumulator_survives_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..MAX_RAW),
        chunk in 1usize..300,
    ) {
        let mut acc = FrameAccumulator::<128>::new();
        let mut events = 0usize;
        for piece in bytes.chunks(chunk) {
            let mut window = piece;
            loop {
                match acc.feed(window) {
                    FeedResult::Consumed => break,
                    FeedResult::Frame { frame, remaining } => { prop_assert!(frame::Frame::new_checked(frame.as_bytes()).is_ok()); window = remaining; }
                    FeedResult::Error { remaining, .. } => window = remaining,
                }
                events += 1;
                prop_assert!(events <= bytes.len() + 1, "feed made no progress");
            }
        }
        prop_assert!(acc.buffered() <= 128);
    }
}
