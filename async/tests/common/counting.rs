//! A counting global allocator for the allocation tests (one binary each: the counts are
//! process-wide, and async-io's reactor thread, once started, allocates on its own).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use ember_linux::{FrameReceiver, FrameSender};

pub struct Counting;

/// Allocations made by the threads that called [`counted`] (the test's runtime thread and
/// its peers), so the test harness's own threads (which spawn and report other tests
/// meanwhile) are left out.
pub static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Allocations made by a thread while it polls a future under [`poll_counting`].
pub static ALLOCS_IN_POLL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static IN_POLL: Cell<bool> = const { Cell::new(false) };
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Counts this thread's allocations in [`ALLOCS`] from now on.
pub fn counted() {
    COUNTED.with(|c| c.set(true));
}

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
    if IN_POLL.with(Cell::get) {
        ALLOCS_IN_POLL.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
pub static GLOBAL: Counting = Counting;

/// The tests count a process-wide figure: one at a time.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Wakes the thread that polls.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` on this thread, parking while it is pending, counting the allocations made
/// while it is polled in [`ALLOCS_IN_POLL`].
pub fn poll_counting<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        IN_POLL.with(|c| c.set(true));
        let r = fut.as_mut().poll(&mut cx);
        IN_POLL.with(|c| c.set(false));
        match r {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

pub const WARM: u32 = 200;
pub const MEASURED: u32 = 2000;

/// A blocking echo peer on a seqpacket socket: answers `WARM + MEASURED` frames.
pub fn echo_seqpacket(mut s: ember_linux::socket::PacketSocket) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        counted();
        let mut buf = vec![0u8; ember_linux::socket::DEFAULT_PACKET_MAX];
        for _ in 0..WARM + MEASURED {
            let n = s.recv_frame(&mut buf).unwrap();
            s.send_frame(&buf[..n]).unwrap();
        }
    })
}

pub fn echo_stream(mut s: ember_linux::socket::StreamSocket<4096>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        counted();
        let mut buf = vec![0u8; 4096];
        for _ in 0..WARM + MEASURED {
            let n = s.recv_frame(&mut buf).unwrap();
            s.send_frame(&buf[..n]).unwrap();
        }
    })
}

pub fn frame(seq: u32, scratch: &mut [u8]) -> usize {
    ember_linux::core::message::encode(1, seq, &(seq, [7u8; 32]), scratch).unwrap().len()
}

/// Round trips of `WARM + MEASURED` frames through `$a` (send, then receive the echo):
/// `(allocations in the process, allocations while polling)` over the measured ones.
#[allow(unused_macros)]
macro_rules! round_trips {
    ($a:expr) => {{
        let a = &mut $a;
        let mut scratch = [0u8; 256];
        let mut buf = vec![0u8; ember_linux::socket::DEFAULT_PACKET_MAX];
        let (mut before, mut before_in_poll) = (0, 0);
        for seq in 0..counting::WARM + counting::MEASURED {
            if seq == counting::WARM {
                before = counting::ALLOCS.load(std::sync::atomic::Ordering::Relaxed);
                before_in_poll = counting::ALLOCS_IN_POLL.load(std::sync::atomic::Ordering::Relaxed);
            }
            let len = counting::frame(seq, &mut scratch);
            a.send(&scratch[..len]).await.unwrap();
            let n = a.recv(&mut buf).await.unwrap();
            assert_eq!(n, len);
        }
        (
            counting::ALLOCS.load(std::sync::atomic::Ordering::Relaxed) - before,
            counting::ALLOCS_IN_POLL.load(std::sync::atomic::Ordering::Relaxed) - before_in_poll,
        )
    }};
}
