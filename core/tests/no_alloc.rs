//! Proves that encode, decode and the accumulator allocate nothing: a counting global
//! allocator wraps the system one, and each path runs with the count checked before and
//! after.

use ember_core::accumulator::{FeedResult, FrameAccumulator};
use ember_core::frame::{Frame, FrameRepr, Integrity};
use ember_core::message;
use ember_test_support::allocations;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sample<'a> {
    id: u32,
    label: &'a str,
    values: heapless::Vec<i32, 32>,
    raw: &'a [u8],
}

#[test]
fn the_counter_counts() {
    // The harness must be able to fail: a Vec allocation is seen.
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
}

#[test]
fn encode_and_decode_allocate_nothing() {
    let mut buf = [0u8; 512];
    let values = heapless::Vec::from_slice(&[1, -2, 300_000, i32::MIN]).unwrap();
    let msg = Sample { id: 7, label: "boiler", values, raw: &[9; 40] };
    let n = allocations(|| {
        let len = message::encode(3, 11, &msg, &mut buf).unwrap().len();
        let (repr, back): (FrameRepr, Sample<'_>) = message::decode(&buf[..len]).unwrap();
        assert_eq!(repr.seq, 11);
        assert_eq!(back, msg);
        let frame = Frame::new_checked(&buf[..len]).unwrap();
        assert_eq!(FrameRepr::parse(&frame).unwrap(), repr);
        // Without the payload checksum.
        let flags = Integrity::Unchecked.flags();
        let len = message::encode_with(flags, 3, 12, &msg, &mut buf).unwrap().len();
        let (repr, back): (FrameRepr, Sample<'_>) = message::decode(&buf[..len]).unwrap();
        assert_eq!((repr.integrity(), repr.seq), (Integrity::Unchecked, 12));
        assert_eq!(back, msg);
        // Error paths too.
        assert!(message::decode::<u8>(&buf[..len - 1]).is_err());
        assert!(message::encode(3, 11, &msg, &mut buf[..30]).is_err());
    });
    assert_eq!(n, 0, "encode/decode allocated");
}

#[test]
fn accumulator_allocates_nothing() {
    let mut stream = [0u8; 1024];
    let mut len = 0;
    stream[..5].copy_from_slice(b"junkE");
    len += 5;
    // Checked and unchecked frames; the accumulator requires checked ones for the second
    // pass, refusing the others.
    for seq in 0..4 {
        let flags = if seq % 2 == 1 { Integrity::Unchecked.flags() } else { Integrity::Checked.flags() };
        len += message::encode_with(flags, 1, seq, &[seq as u8; 100][..], &mut stream[len..]).unwrap().len();
    }
    let mut acc = Box::new(FrameAccumulator::<256>::new());
    let mut strict = Box::new(FrameAccumulator::<256>::new());
    strict.set_require_checked(true);
    let n = allocations(|| {
        let mut frames = 0;
        for piece in stream[..len].chunks(37) {
            let mut window = piece;
            loop {
                match acc.feed(window) {
                    FeedResult::Consumed => break,
                    FeedResult::Frame { frame, remaining } => {
                        let v: &[u8] = message::decode_frame(&frame).unwrap();
                        assert_eq!(v.len(), 100);
                        assert_eq!(v[0] as u32, frame.seq());
                        frames += 1;
                        window = remaining;
                    }
                    FeedResult::Error { error, .. } => panic!("{error}"),
                }
            }
        }
        assert_eq!(frames, 4);
        let (mut frames, mut refused) = (0, 0);
        let mut window = &stream[..len];
        loop {
            match strict.feed(window) {
                FeedResult::Consumed => break,
                FeedResult::Frame { remaining, .. } => {
                    frames += 1;
                    window = remaining;
                }
                FeedResult::Error { error, remaining } => {
                    assert_eq!(error, ember_core::Error::UncheckedPayload);
                    refused += 1;
                    window = remaining;
                }
            }
        }
        assert_eq!((frames, refused), (2, 2));
    });
    assert_eq!(n, 0, "accumulator allocated");
    assert_eq!(acc.dropped_bytes(), 5);
}

#[test]
fn dbus_build_and_parse_allocate_nothing() {
    use ember_core::dbus::{Builder, Message, Signature, Value};
    let mut buf = [0u8; 1024];
    let sig = Signature::new("a{sv}").unwrap();
    let n = allocations(|| {
        for serial in 1..50u32 {
            // A signal with a{sv} of 8 entries, then a full parse and walk.
            let m = Builder::signal("/org/example/Sensor", "org.example.Sensor", "Changed")
                .build(&mut buf, serial, sig, |w| {
                    w.array(b'{', |w| {
                        for i in 0..8u32 {
                            w.structure(|w| {
                                w.str("key")?;
                                w.variant(Signature::new("u")?, |w| w.u32(i))
                            })?;
                        }
                        Ok(())
                    })
                })
                .unwrap();
            let p = Message::parse(m, 1 << 20).unwrap();
            let mut total = 0;
            for entry in p.body().next_as::<ember_core::dbus::value::Array>().unwrap() {
                let Value::DictEntry(mut kv) = entry.unwrap() else { panic!() };
                let _: &str = kv.next_as().unwrap();
                let v: ember_core::dbus::value::Variant = kv.next_as().unwrap();
                total += u32::try_from(v.value().unwrap()).unwrap();
            }
            assert_eq!(total, 28);
        }
    });
    assert_eq!(n, 0, "D-Bus build/parse allocated");
}
