//! loom model checks of the shared-memory protocols: every interleaving (up to loom's
//! preemption bound) of a writer and a reader thread over small segments.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p ember-core --release --test loom`
//! (`cargo xtask test` does). Under `--cfg loom` the protocols use loom's atomics through
//! `ember_core::shm::primitive`, and spinning readers yield to loom.
#![cfg(loom)]

use ember_core::shm::broadcast::{BroadcastControl, BroadcastRing};
use ember_core::shm::seqlock::{SeqLock, SeqLockControl};
use ember_core::shm::spsc::{SpscControl, SpscRing};
use ember_core::shm::{ShmError, WORD, Word};
use loom::sync::Arc;
use loom::thread;

fn words(bytes: usize) -> Vec<Word> {
    (0..bytes / WORD).map(|_| Word::new(0)).collect()
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

#[test]
fn seqlock_reader_never_sees_a_torn_value() {
    model(|| {
        let mem = Arc::new((SeqLockControl::zeroed(), words(16)));
        let writer_mem = mem.clone();
        let writer = thread::spawn(move || {
            let lock = SeqLock::new(&writer_mem.0, &writer_mem.1);
            let mut w = lock.writer();
            w.write(&[1; 16]).unwrap();
            w.write(&[2; 16]).unwrap();
        });
        let lock = SeqLock::new(&mem.0, &mem.1);
        let r = lock.reader();
        let mut out = [0u8; 16];
        match r.read(&mut out) {
            Ok(snap) => {
                assert_eq!(snap.len, 16);
                let first = out[0];
                assert!(first == 1 || first == 2);
                assert!(out.iter().all(|&b| b == first), "torn read: {out:?}");
                assert_eq!(snap.seq, u32::from(first) * 2);
            }
            Err(ShmError::Empty | ShmError::WriterStalled | ShmError::Contended) => {}
            Err(e) => panic!("unexpected {e}"),
        }
        writer.join().unwrap();
    });
}

#[test]
fn spsc_delivers_every_record_intact_and_in_order() {
    model(|| {
        let mem = Arc::new((SpscControl::zeroed(), words(64)));
        let producer_mem = mem.clone();
        let producer = thread::spawn(move || {
            let ring = SpscRing::new(&producer_mem.0, &producer_mem.1).unwrap();
            let mut p = ring.producer();
            // 3 records of 24-byte slots in a 64-byte ring: the third waits for room and
            // goes after a pad at the wrap.
            for i in 1..=3u8 {
                loop {
                    match p.try_push(&[i; 16]) {
                        Ok(()) => break,
                        Err(ShmError::Full) => thread::yield_now(),
                        Err(e) => panic!("push: {e}"),
                    }
                }
            }
        });
        let ring = SpscRing::new(&mem.0, &mem.1).unwrap();
        let mut c = ring.consumer();
        let mut out = [0u8; 32];
        let mut expect = 1u8;
        while expect <= 3 {
            match c.try_pop(&mut out) {
                Ok(n) => {
                    assert_eq!(n, 16);
                    assert_eq!(out[..16], [expect; 16], "record {expect} damaged");
                    expect += 1;
                }
                Err(ShmError::Empty) => thread::yield_now(),
                Err(e) => panic!("pop: {e}"),
            }
        }
        producer.join().unwrap();
    });
}

#[test]
fn broadcast_reader_gets_intact_records_and_exact_losses() {
    model(|| {
        let mem = Arc::new((BroadcastControl::zeroed(), words(64)));
        let writer_mem = mem.clone();
        let writer = thread::spawn(move || {
            let ring = BroadcastRing::new(&writer_mem.0, &writer_mem.1).unwrap();
            let mut w = ring.writer();
            // 24-byte slots in 64 bytes: the third push evicts the first.
            for i in 0..3u8 {
                w.push(&[i; 16]).unwrap();
            }
        });
        let ring = BroadcastRing::new(&mem.0, &mem.1).unwrap();
        let mut r = ring.reader_at_oldest().unwrap();
        let mut out = [0u8; 32];
        let mut next = 0u64;
        for _ in 0..4 {
            match r.try_recv(&mut out) {
                Ok(got) => {
                    assert_eq!(got.seq, next + got.lost, "loss count");
                    assert_eq!(out[..16], [got.seq as u8; 16], "torn record");
                    next = got.seq + 1;
                }
                Err(ShmError::Empty) => thread::yield_now(),
                Err(ShmError::Contended | ShmError::WriterStalled) => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        writer.join().unwrap();
    });
}

#[test]
fn broadcast_close_after_the_last_record_loses_nothing() {
    // The writer pushes two records and closes; a reader that reads until `Closed` must
    // account for both (received or lost), whatever the interleaving. A reader that loaded
    // `head` before the last push and `closed` after the close used to stop early.
    model(|| {
        let mem = Arc::new((BroadcastControl::zeroed(), words(64)));
        let writer_mem = mem.clone();
        let writer = thread::spawn(move || {
            let ring = BroadcastRing::new(&writer_mem.0, &writer_mem.1).unwrap();
            let mut w = ring.writer();
            w.push(&[1; 8]).unwrap();
            w.push(&[2; 8]).unwrap();
            w.close();
        });
        let ring = BroadcastRing::new(&mem.0, &mem.1).unwrap();
        let mut r = ring.reader_at_oldest().unwrap();
        let mut out = [0u8; 16];
        let mut accounted = 0;
        loop {
            match r.try_recv(&mut out) {
                Ok(got) => accounted += 1 + got.lost,
                Err(ShmError::Closed) => break,
                Err(ShmError::Empty | ShmError::Contended | ShmError::WriterStalled) => thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(accounted, 2, "records missed before Closed");
        writer.join().unwrap();
    });
}

#[test]
fn spsc_close_after_the_last_record_loses_nothing() {
    // As for the broadcast ring: the consumer reads until `Closed` and must get both records.
    model(|| {
        let mem = Arc::new((SpscControl::zeroed(), words(64)));
        let producer_mem = mem.clone();
        let producer = thread::spawn(move || {
            let ring = SpscRing::new(&producer_mem.0, &producer_mem.1).unwrap();
            let mut p = ring.producer();
            p.try_push(&[1; 8]).unwrap();
            p.try_push(&[2; 8]).unwrap();
            p.close();
        });
        let ring = SpscRing::new(&mem.0, &mem.1).unwrap();
        let mut c = ring.consumer();
        let mut out = [0u8; 16];
        let mut got = 0;
        loop {
            match c.try_pop(&mut out) {
                Ok(_) => got += 1,
                Err(ShmError::Closed) => break,
                Err(ShmError::Empty) => thread::yield_now(),
                Err(e) => panic!("pop: {e}"),
            }
        }
        assert_eq!(got, 2, "records missed before Closed");
        producer.join().unwrap();
    });
}

#[test]
fn spsc_wake_up_is_never_lost() {
    // The lost wake-up would be: the consumer announces itself, sees no record and goes to
    // sleep, while the producer publishes and sees no sleeper, so it makes no wake call.
    model(|| {
        let mem = Arc::new((SpscControl::zeroed(), words(64)));
        let producer_mem = mem.clone();
        let producer = thread::spawn(move || {
            let ring = SpscRing::new(&producer_mem.0, &producer_mem.1).unwrap();
            let mut p = ring.producer();
            p.try_push(&[7; 8]).unwrap();
            p.consumer_waiting()
        });
        let ring = SpscRing::new(&mem.0, &mem.1).unwrap();
        let mut c = ring.consumer();
        let sleeps = c.prepare_wait().is_some();
        let woken = producer.join().unwrap();
        assert!(!(sleeps && !woken), "lost wake-up: consumer sleeps and nobody wakes it");
    });
}
