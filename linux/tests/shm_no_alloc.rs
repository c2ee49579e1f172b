//! Zero heap allocations on the shared-memory send and receive paths, shown with a counting
//! global allocator (set-up may allocate; the measured paths may not).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to `System`; the counter is a const-initialised thread-local `Cell`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's guarantees, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

fn name(tag: &str) -> String {
    format!("/ember-noalloc-{}-{tag}", std::process::id())
}

#[test]
fn counter_counts() {
    assert!(allocations(|| drop(std::hint::black_box(vec![0u8; 8]))) > 0);
}

#[test]
fn spsc_push_pop_allocate_nothing() {
    let n = name("spsc");
    let mut tx = SpscSender::create(Backing::Named(&n), 4096, 1).unwrap();
    let mut rx = SpscReceiver::open(&n, 1).unwrap();
    let mut out = [0u8; 128];
    let mut scratch = [0u8; 128];
    let count = allocations(|| {
        for i in 0..1000u32 {
            tx.try_send(&i.to_le_bytes()).unwrap();
            assert_eq!(rx.recv(&mut out, Some(Duration::from_secs(1))).unwrap(), 4);
            tx.send_msg(3, i, &("reading", i), &mut scratch, None).unwrap();
            let (_, (s, v)): (_, (&str, u32)) = rx.recv_msg(&mut out, None).unwrap();
            assert_eq!((s, v), ("reading", i));
        }
        // Error paths too.
        assert!(rx.try_recv(&mut out).is_err());
        assert!(tx.try_send(&[0; 4000]).is_err());
    });
    assert_eq!(count, 0);
}

#[test]
fn seqlock_publish_read_allocate_nothing() {
    let n = name("seqlock");
    let mut w = SeqLockWriter::create(Backing::Named(&n), 256, 2).unwrap();
    let mut r = SeqLockReader::open(&n, 2).unwrap();
    let mut scratch = [0u8; 256];
    let mut out = [0u8; 256];
    let count = allocations(|| {
        for i in 0..1000u32 {
            w.publish(&(i, 20.5f32), &mut scratch).unwrap();
            let (_, (v, t)): (_, (u32, f32)) = r.read_value(&mut out).unwrap();
            assert_eq!((v, t), (i, 20.5));
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn broadcast_send_recv_allocate_nothing() {
    let n = name("bcast");
    let mut w = BroadcastWriter::create(Backing::Named(&n), 4096, 3).unwrap();
    let mut r = BroadcastReader::open(&n, 3, false).unwrap();
    let mut out = [0u8; 64];
    let count = allocations(|| {
        for i in 0..1000u64 {
            w.send(&i.to_le_bytes()).unwrap();
            let got = r.recv(&mut out, Some(Duration::from_secs(1))).unwrap();
            assert_eq!(got.seq, i);
        }
    });
    assert_eq!(count, 0);
}
