//! Fuzzes the shared-memory readers (SPSC consumer, broadcast reader, seqlock reader) over
//! a segment image a hostile peer scribbles on, between the operations of a correct writer.
//!
//! Input: `[kind][capacity][op...]`. `kind % 3` picks SPSC, broadcast or seqlock;
//! `6 + capacity % 7` is the log2 of the data area (64 bytes to 4 KiB). The image starts
//! zeroed (a fresh mapping: the 384 bytes of control lines, then the data area) and the ops
//! run in order, each a byte and its arguments:
//!
//! | op % 8 | arguments | what |
//! |---|---|---|
//! | 0 | size | the reader reads into a buffer of `size * 4` bytes (SPSC: `try_pop`) |
//! | 1 | len, fill | the correct writer writes a `len * 2`-byte record of `fill` bytes |
//! | 2 | at (2), value (4) | the peer stores a `u32` anywhere in the control lines or data |
//! | 3 | at (2), value (8) | the peer stores a `u64` anywhere (8-aligned) |
//! | 4 | at (2), n, n bytes | the peer stores `n` bytes anywhere |
//! | 5 | at, size | SPSC: peek, read `size` bytes at `at`, release; seqlock: a typed read; broadcast: as 0 |
//! | 6 | which | a new reader from the segment's counters (broadcast: `which` odd starts at the oldest record) |
//! | 7 | | the writer closes the channel (SPSC, broadcast; it writes no more after that) |
//!
//! Checked: nothing panics, loops end, whatever the bytes; every length returned fits the
//! caller's buffer and the ring's record limit; and while no byte has been scribbled, what
//! the reader gets is exactly what the correct writer wrote (SPSC: every record, in order;
//! broadcast: the record of the number it reports; seqlock: the last value).
#![no_main]

use std::collections::VecDeque;

use ember_core::shm::broadcast::{BroadcastControl, BroadcastReader, BroadcastRing};
use ember_core::shm::layout::CONTROL_OFFSET;
use ember_core::shm::primitive::Ordering;
use ember_core::shm::seqlock::{SeqLock, SeqLockControl};
use ember_core::shm::spsc::{SpscControl, SpscRing};
use ember_core::shm::{ShmError, WORD, Word};
use libfuzzer_sys::fuzz_target;

/// Bytes of the three control lines.
const CONTROL_LEN: usize = 384;

/// The segment image: header, control lines, data area, as atomic words.
struct Image {
    words: Vec<Word>,
    cap: usize,
}

impl Image {
    fn new(cap: usize) -> Image {
        let words = (CONTROL_OFFSET + CONTROL_LEN + cap) / WORD;
        Image { words: (0..words).map(|_| Word::new(0)).collect(), cap }
    }

    /// The control lines, viewed as `C`.
    fn control<C>(&self) -> &C {
        assert!(size_of::<C>() == CONTROL_LEN && align_of::<C>() <= align_of::<Word>());
        // SAFETY: `C` is one of the core crate's control-line structs: 384 bytes of atomics
        // and padding atomics (any bit pattern is valid), aligned to at most a word. They
        // start at a word-aligned offset of `words`, which holds 384 bytes there and
        // outlives the reference; every access through it, and through `words`, is atomic.
        unsafe { &*self.words[CONTROL_OFFSET / WORD..].as_ptr().cast::<C>() }
    }

    fn data(&self) -> &[Word] {
        &self.words[(CONTROL_OFFSET + CONTROL_LEN) / WORD..]
    }

    /// Stores `bytes` at byte offset `at` of the control lines and data (wrapping), word by
    /// word, as a peer process would.
    fn poke(&self, at: usize, bytes: &[u8]) {
        let span = CONTROL_LEN + self.cap;
        for (i, b) in bytes.iter().enumerate() {
            let off = CONTROL_OFFSET + (at + i) % span;
            let w = &self.words[off / WORD];
            let mut v = w.load(Ordering::Relaxed).to_ne_bytes();
            v[off % WORD] = *b;
            w.store(usize::from_ne_bytes(v), Ordering::Relaxed);
        }
    }
}

/// The input, consumed from the front.
struct Ops<'a>(&'a [u8]);

impl Ops<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.byte())
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// A scribble op (2, 3, 4); `true` if it was one.
fn scribble(op: u8, ops: &mut Ops<'_>, img: &Image) -> bool {
    match op {
        2 => {
            let at = u16::from_le_bytes(ops.bytes()) as usize & !3;
            img.poke(at, &ops.bytes::<4>());
        }
        3 => {
            let at = u16::from_le_bytes(ops.bytes()) as usize & !7;
            img.poke(at, &ops.bytes::<8>());
        }
        4 => {
            let at = u16::from_le_bytes(ops.bytes()) as usize;
            let n = ops.byte() as usize;
            let bytes = ops.take(n).to_vec();
            img.poke(at, &bytes);
        }
        _ => return false,
    }
    true
}

fn spsc(mut ops: Ops<'_>, img: &Image) {
    let ring = SpscRing::new(img.control::<SpscControl>(), img.data()).expect("a power-of-two area");
    let max = ring.max_record();
    let mut producer = ring.producer();
    let mut consumer = ring.consumer();
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut pristine = true;
    let mut closed = false;
    let mut out = vec![0u8; img.cap];
    while !ops.0.is_empty() {
        let op = ops.byte() % 8;
        if scribble(op, &mut ops, img) {
            pristine = false;
            continue;
        }
        match op {
            0 => {
                let size = (ops.byte() as usize * 4).min(out.len());
                let r = consumer.try_pop(&mut out[..size]);
                if let Ok(n) = r {
                    assert!(n <= size && n <= max, "popped {n} bytes into {size} (max {max})");
                }
                if pristine {
                    match (r, model.front()) {
                        (Ok(n), Some(want)) => {
                            assert_eq!(&out[..n], &want[..], "a record differs");
                            model.pop_front();
                        }
                        (Err(ShmError::BufferTooSmall { needed }), Some(want)) => assert_eq!(needed, want.len()),
                        (Err(ShmError::Empty), None) => assert!(!closed),
                        (Err(ShmError::Closed), None) => assert!(closed),
                        (r, want) => panic!("pop gave {r:?}, the writer wrote {want:?}"),
                    }
                }
            }
            1 => {
                let len = ops.byte() as usize * 2;
                let fill = ops.byte();
                let payload = vec![fill; len];
                if closed {
                    continue;
                }
                match producer.try_push(&payload) {
                    Ok(()) => model.push_back(payload),
                    // A correct ring refuses a record only when it is too large or full.
                    Err(e) if pristine => {
                        assert_eq!(e, if len > max { ShmError::TooLarge { len, max } } else { ShmError::Full })
                    }
                    Err(_) => {}
                }
            }
            5 => {
                let at = ops.byte() as usize;
                let size = ops.byte() as usize;
                if let Ok(p) = consumer.peek() {
                    let len = p.len();
                    assert!(len <= max);
                    let mut part = vec![0u8; size];
                    let read = p.read(at, &mut part);
                    assert_eq!(read.is_ok(), at + size <= len, "{read:?}");
                    if pristine && read.is_ok() {
                        assert_eq!(&part[..], &model.front().expect("a record the writer wrote")[at..at + size]);
                    }
                    p.release();
                    if pristine {
                        model.pop_front();
                    }
                }
            }
            6 => {
                let _ = ops.byte();
                consumer = ring.consumer();
            }
            7 => {
                producer.close();
                closed = true;
            }
            _ => unreachable!(),
        }
    }
}

fn broadcast(mut ops: Ops<'_>, img: &Image) {
    let ring = BroadcastRing::new(img.control::<BroadcastControl>(), img.data()).expect("a power-of-two area");
    let max = ring.max_record();
    let mut writer = ring.writer();
    let mut reader: BroadcastReader<'_> = ring.reader_at_end();
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut pristine = true;
    let mut closed = false;
    let mut out = vec![0u8; img.cap];
    while !ops.0.is_empty() {
        let op = ops.byte() % 8;
        if scribble(op, &mut ops, img) {
            pristine = false;
            continue;
        }
        match op {
            0 | 5 => {
                let size = (ops.byte() as usize * 4).min(out.len());
                let r = reader.try_recv(&mut out[..size]);
                if let Ok(got) = r {
                    assert!(got.len <= size && got.len <= max, "{got:?} into {size} (max {max})");
                    if pristine {
                        let want = written.get(got.seq as usize).expect("a record number the writer wrote");
                        assert_eq!(&out[..got.len], &want[..], "record {} differs", got.seq);
                    }
                } else if pristine {
                    match r {
                        Err(ShmError::Empty) => assert!(!closed && reader.next_seq() == written.len() as u64),
                        Err(ShmError::Closed) => assert!(closed && reader.next_seq() == written.len() as u64),
                        Err(ShmError::BufferTooSmall { .. }) => {}
                        other => panic!("a correct writer's ring gave {other:?}"),
                    }
                }
            }
            1 => {
                let len = ops.byte() as usize * 2;
                let fill = ops.byte();
                let payload = vec![fill; len];
                if closed {
                    continue;
                }
                match writer.push(&payload) {
                    Ok(()) => written.push(payload),
                    Err(e) => assert!(!pristine || (len > max && e == ShmError::TooLarge { len, max }), "{e:?}"),
                }
            }
            6 => {
                reader = if ops.byte() & 1 == 1 {
                    match ring.reader_at_oldest() {
                        Ok(r) => r,
                        Err(e) => {
                            assert!(!pristine, "{e:?}");
                            continue;
                        }
                    }
                } else {
                    ring.reader_at_end()
                };
            }
            7 => {
                writer.close();
                closed = true;
            }
            _ => unreachable!(),
        }
    }
}

fn seqlock(mut ops: Ops<'_>, img: &Image) {
    let lock = SeqLock::new(img.control::<SeqLockControl>(), img.data());
    let mut writer = lock.writer();
    let reader = lock.reader();
    let mut last: Option<Vec<u8>> = None;
    let mut pristine = true;
    let mut out = vec![0u8; img.cap];
    while !ops.0.is_empty() {
        let op = ops.byte() % 8;
        if scribble(op, &mut ops, img) {
            pristine = false;
            continue;
        }
        match op {
            0 => {
                let size = (ops.byte() as usize * 4).min(out.len());
                // A few spins: single-threaded, an odd sequence never turns even by itself.
                let r = reader.read_spinning(&mut out[..size], 16);
                if let Ok(s) = r {
                    assert!(s.len <= size && s.len <= lock.capacity() && s.seq & 1 == 0, "{s:?}");
                }
                if pristine {
                    match (r, &last) {
                        (Ok(s), Some(want)) => assert_eq!(&out[..s.len], &want[..]),
                        (Err(ShmError::BufferTooSmall { needed }), Some(want)) => assert_eq!(needed, want.len()),
                        (Err(ShmError::Empty), None) => {}
                        (r, want) => panic!("read gave {r:?}, the writer wrote {want:?}"),
                    }
                }
            }
            1 => {
                let len = ops.byte() as usize * 2;
                let fill = ops.byte();
                let value = vec![fill; len];
                match writer.write(&value) {
                    Ok(()) => last = Some(value),
                    Err(e) => assert!(!pristine || len > lock.capacity(), "{e:?}"),
                }
            }
            5 => {
                let _ = ops.bytes::<2>();
                let mut scratch = [0u8; 256];
                // Only when stable: `read` spins its full bound on an odd sequence.
                if reader.seq() & 1 == 0 {
                    let _ = reader.read_value::<(u32, &str, Option<u64>)>(&mut scratch);
                }
            }
            6 => {
                let _ = ops.byte();
                writer = lock.writer();
            }
            7 => {}
            _ => unreachable!(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops(data);
    let kind = ops.byte() % 3;
    let cap = 1usize << (6 + ops.byte() % 7);
    let img = Image::new(cap);
    match kind {
        0 => spsc(ops, &img),
        1 => broadcast(ops, &img),
        _ => seqlock(ops, &img),
    }
});
