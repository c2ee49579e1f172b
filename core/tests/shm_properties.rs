//! Property tests of the shared-memory rings against a `VecDeque` model, and of every
//! protocol against a peer scribbling random bytes over the segment.
#![cfg(not(loom))]

use std::collections::VecDeque;

use ember_core::shm::broadcast::{BroadcastControl, BroadcastRing};
use ember_core::shm::seqlock::{SeqLock, SeqLockControl};
use ember_core::shm::spsc::{SpscControl, SpscRing};
use ember_core::shm::{ShmError, WORD, Word};
use proptest::prelude::*;
use std::sync::atomic::Ordering;

fn config() -> ProptestConfig {
    if cfg!(miri) {
        ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() }
    } else {
        ProptestConfig { cases: 256, ..ProptestConfig::default() }
    }
}

const OPS: usize = if cfg!(miri) { 40 } else { 400 };

fn words(bytes: usize) -> Vec<Word> {
    (0..bytes / WORD).map(|_| Word::new(0)).collect()
}

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    Pop,
    Grant(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..140).prop_map(Op::Push),
        Just(Op::Pop),
        (0usize..100, 1usize..4).prop_map(|(n, parts)| Op::Grant(n, parts)),
    ]
}

/// Every word of `ctl` (as raw `u32`s) and `data`, for scribbling.
fn scribble_spsc(ctl: &SpscControl, data: &[Word], at: usize, value: u64) {
    // The control lines are atomics laid out as 96 u32 words; reach them via the known
    // public futex words and the data area (the rest are padding or private).
    match at % 4 {
        0 => ctl.head_word().store(value as u32, Ordering::Relaxed),
        1 => ctl.tail_word().store(value as u32, Ordering::Relaxed),
        _ => data[(at / 4) % data.len()].store(value as usize, Ordering::Relaxed),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn spsc_matches_model(ops in prop::collection::vec(op(), 1..OPS)) {
        let ctl = SpscControl::zeroed();
        let data = words(512);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut model_bytes = 0usize;
        let mut counter = 0u8;
        let mut out = [0u8; 512];
        for op in ops {
            match op {
                Op::Push(n) | Op::Grant(n, _) if n > ring.max_record() => {
                    let too_large = matches!(p.try_push(&vec![0; n]), Err(ShmError::TooLarge { .. }));
                    prop_assert!(too_large);
                }
                Op::Push(n) => {
                    counter = counter.wrapping_add(1);
                    let rec: Vec<u8> = (0..n).map(|i| counter.wrapping_add(i as u8)).collect();
                    match p.try_push(&rec) {
                        Ok(()) => { model_bytes += 8 + n.div_ceil(8) * 8; model.push_back(rec); }
                        Err(ShmError::Full) => prop_assert!(model_bytes + 8 + n.div_ceil(8) * 8 > 512 / 2, "full while mostly empty"),
                        Err(e) => prop_assert!(false, "push: {e}"),
                    }
                }
                Op::Grant(n, parts) => {
                    counter = counter.wrapping_add(1);
                    let rec: Vec<u8> = (0..n).map(|i| counter.wrapping_mul(3).wrapping_add(i as u8)).collect();
                    match p.grant(n) {
                        Ok(mut g) => {
                            for chunk in rec.chunks(n.div_ceil(parts).max(1)) {
                                g.put(chunk).unwrap();
                            }
                            g.commit().unwrap();
                            model_bytes += 8 + n.div_ceil(8) * 8;
                            model.push_back(rec);
                        }
                        Err(ShmError::Full) => {}
                        Err(e) => prop_assert!(false, "grant: {e}"),
                    }
                }
                Op::Pop => match c.try_pop(&mut out) {
                    Ok(n) => {
                        let want = model.pop_front().expect("model has a record");
                        model_bytes -= 8 + want.len().div_ceil(8) * 8;
                        prop_assert_eq!(&out[..n], &want[..]);
                    }
                    Err(ShmError::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "pop: {e}"),
                },
            }
        }
        // Drain: exactly the model's records, in order.
        while let Some(want) = model.pop_front() {
            let n = c.try_pop(&mut out).unwrap();
            prop_assert_eq!(&out[..n], &want[..]);
        }
        prop_assert_eq!(c.try_pop(&mut out), Err(ShmError::Empty));
    }

    #[test]
    fn broadcast_matches_model(
        pushes in prop::collection::vec((0usize..100, 0usize..3), 1..OPS),
    ) {
        // The model: every record ever written; a reader may skip (lose) only a prefix of
        // what it has not read, and must count it.
        let ctl = BroadcastControl::zeroed();
        let data = words(512);
        let ring = BroadcastRing::new(&ctl, &data).unwrap();
        let mut w = ring.writer();
        let mut r = ring.reader_at_end();
        let mut written: Vec<Vec<u8>> = Vec::new();
        let mut next = 0u64;
        let mut out = [0u8; 512];
        for (i, (n, reads)) in pushes.into_iter().enumerate() {
            let rec: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
            w.push(&rec).unwrap();
            written.push(rec);
            for _ in 0..reads {
                match r.try_recv(&mut out) {
                    Ok(got) => {
                        prop_assert_eq!(got.seq, next + got.lost, "lost count is exact");
                        prop_assert_eq!(&out[..got.len], &written[got.seq as usize][..]);
                        next = got.seq + 1;
                    }
                    Err(ShmError::Empty) => prop_assert_eq!(next, written.len() as u64),
                    Err(e) => prop_assert!(false, "recv: {e}"),
                }
            }
        }
    }

    #[test]
    fn hostile_peer_gets_errors_never_panics(
        scribbles in prop::collection::vec((any::<usize>(), any::<u64>()), 1..60),
        interleave in prop::collection::vec(any::<bool>(), 60),
    ) {
        // SPSC: the producer keeps pushing, the consumer keeps popping, a third party
        // writes random words into the counters and the data.
        let ctl = SpscControl::zeroed();
        let data = words(256);
        let ring = SpscRing::new(&ctl, &data).unwrap();
        let (mut p, mut c) = (ring.producer(), ring.consumer());
        let mut out = [0u8; 256];
        for (i, (at, value)) in scribbles.iter().enumerate() {
            let _ = p.try_push(&[i as u8; 17]);
            if interleave[i] {
                scribble_spsc(&ctl, &data, *at, *value);
            }
            for _ in 0..3 {
                if let Ok(n) = c.try_pop(&mut out) {
                    prop_assert!(n <= ring.max_record());
                }
            }
            if let Ok(peek) = c.peek() {
                let mut b = [0u8; 4];
                let _ = peek.read(0, &mut b[..peek.len().min(4)]);
                peek.release();
            }
        }

        // Broadcast: the reader only ever sees typed errors or plausible records.
        let bctl = BroadcastControl::zeroed();
        let bdata = words(256);
        let bring = BroadcastRing::new(&bctl, &bdata).unwrap();
        let mut w = bring.writer();
        let mut r = bring.reader_at_end();
        for (i, (at, value)) in scribbles.iter().enumerate() {
            w.push(&[i as u8; 9]).unwrap();
            if interleave[i] {
                bdata[at % bdata.len()].store(*value as usize, Ordering::Relaxed);
            }
            if let Ok(got) = r.try_recv(&mut out) {
                prop_assert!(got.len <= bring.max_record());
            }
        }

        // Seqlock: random length and bytes.
        let sctl = SeqLockControl::zeroed();
        let sdata = words(64);
        let lock = SeqLock::new(&sctl, &sdata);
        let mut sw = lock.writer();
        let sr = lock.reader();
        for (i, (at, value)) in scribbles.iter().enumerate() {
            sw.write(&[i as u8; 20]).unwrap();
            if interleave[i] {
                sdata[at % sdata.len()].store(*value as usize, Ordering::Relaxed);
            }
            if let Ok(snap) = sr.read(&mut out) {
                prop_assert!(snap.len <= 64);
            }
        }
    }
}
