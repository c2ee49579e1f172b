//! What the Tokio and the async-io tests share: the runtime as a type ([`Rt`]), frames
//! with a sequence number and a checkable body, and the drop storm.
#![allow(dead_code)]

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use ember_async::{Async, AsyncEndpoint, AsyncRecv, AsyncSend, Driver};
use ember_linux::Error;

/// A runtime: its driver type, how to run a future to the end, and how to let its
/// reactor look at the descriptors.
pub trait Rt {
    type D<T: AsFd + AsyncEndpoint>: Driver<T>;
    /// Runs the future `make` makes, on a thread with a large stack (see [`big_stack`]).
    fn block_on<F: Future>(make: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send;
    fn turn() -> impl Future<Output = ()>;
}

/// Runs `f` on a thread with a 256 MiB stack: stream endpoints carry their buffers inline
/// (48 KiB for a stream socket with its rest), and an unoptimised test future holding a
/// dozen of them, moved a few times, overflows the test threads' 2 MiB.
pub fn big_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn_scoped(s, f)
            .expect("thread")
            .join()
            .expect("test thread")
    })
}

/// A small deterministic generator (xorshift), seeded per test.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random timeout: zero a quarter of the time (the future is polled once and dropped if
/// it is not ready), else up to `max_us` microseconds.
pub fn limit(rng: &mut Rng, max_us: u64) -> std::time::Duration {
    if rng.below(4) == 0 { std::time::Duration::ZERO } else { std::time::Duration::from_micros(rng.below(max_us)) }
}

/// The body length of frame `seq`: 1 to `max` bytes, varied.
pub fn body_len(seq: u32, max: usize) -> usize {
    1 + (seq as usize).wrapping_mul(7919) % max
}

/// Frame `seq`: kind 1, a body of `body_len(seq)` bytes all equal to `seq as u8`.
pub fn frame(seq: u32, max: usize, scratch: &mut [u8]) -> usize {
    let body = [seq as u8; 8192];
    let n = body_len(seq, max);
    ember_linux::core::message::encode(1, seq, &body[..n], scratch).expect("encode").len()
}

/// Checks a received frame: whole, of sequence `seq`, its body intact.
pub fn check(bytes: &[u8], seq: u32, max: usize) {
    let f = ember_linux::core::Frame::new_checked(bytes).expect("a checked frame");
    assert_eq!(f.seq(), seq, "frames lost, duplicated or reordered");
    let (_, body): (_, &[u8]) = ember_linux::core::message::decode(bytes).expect("decode");
    assert_eq!(body.len(), body_len(seq, max));
    assert!(body.iter().all(|&b| b == seq as u8), "body of frame {seq} damaged");
}

/// Polls `fut` at most `polls` times with a waker that does nothing, then drops it:
/// `Some(output)` if it finished.
pub fn poll_then_drop<F: Future>(fut: F, polls: u64) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..polls {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

/// Sends `n` frames from `tx` to `rx`, polling every send, flush and receive future a
/// random number of times (0 to 3) and then dropping it, and letting the reactor turn in
/// between. Every frame must arrive once, in order, intact; a send whose future was
/// dropped is retried unless it committed its frame ([`Async::sent`]).
pub async fn drop_storm<R: Rt, S, Q>(
    tx: &mut Async<S, R::D<S>>,
    rx: &mut Async<Q, R::D<Q>>,
    n: u32,
    max_body: usize,
    seed: u64,
) -> Storm
where
    S: AsFd + AsyncEndpoint + AsyncSend,
    Q: AsFd + AsyncEndpoint + AsyncRecv,
{
    let mut rng = Rng(seed);
    let mut scratch = vec![0u8; 16 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let (mut next_send, mut next_recv) = (0u32, 0u32);
    let (mut dropped_sends, mut dropped_recvs, mut committed_on_drop) = (0u64, 0u64, 0u64);
    let mut steps = 0u64;
    while next_recv < n {
        steps += 1;
        assert!(steps < 20_000_000, "no progress: sent {next_send}, received {next_recv}");
        if next_send < n {
            let len = frame(next_send, max_body, &mut scratch);
            let before = tx.sent();
            match poll_then_drop(tx.send(&scratch[..len]), rng.below(4)) {
                Some(Ok(())) => next_send += 1,
                Some(Err(e)) => panic!("send {next_send}: {e:?}"),
                None => {
                    dropped_sends += 1;
                    if tx.sent() > before {
                        // Committed: the wrapper finishes it; the next frame goes on.
                        committed_on_drop += 1;
                        next_send += 1;
                    }
                }
            }
        } else if tx.pending() > 0
            && let Some(Err(e)) = poll_then_drop(tx.flush(), rng.below(4))
        {
            panic!("flush: {e:?}");
        }
        match poll_then_drop(rx.recv(&mut buf), rng.below(4)) {
            Some(Ok(len)) => {
                check(&buf[..len], next_recv, max_body);
                next_recv += 1;
            }
            Some(Err(Error::WouldBlock)) => panic!("WouldBlock leaked out of recv"),
            Some(Err(e)) => panic!("recv {next_recv}: {e:?}"),
            None => dropped_recvs += 1,
        }
        if rng.below(4) == 0 {
            R::turn().await;
        }
    }
    assert!(dropped_sends > 0 && dropped_recvs > 0, "the storm dropped no future");
    eprintln!(
        "drop storm: {n} frames, {dropped_sends} send and {dropped_recvs} receive futures dropped, \
         {committed_on_drop} sends committed when dropped"
    );
    Storm { dropped_sends, dropped_recvs, committed_on_drop }
}

/// What a drop storm did.
#[derive(Debug)]
pub struct Storm {
    pub dropped_sends: u64,
    pub dropped_recvs: u64,
    /// Send futures dropped after they had committed their (stream) frame.
    pub committed_on_drop: u64,
}
