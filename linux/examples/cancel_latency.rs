//! How long a cancel takes to end a blocked call, and what a canceler costs a receive that
//! is not cancelled: `cargo run --release -p ember-ipc-linux --example cancel_latency`.
//!
//! - Latency: a thread blocks in a receive with no timeout; the main thread cancels and
//!   the blocked thread notes when its call returned (`Error::Cancelled`). Median and
//!   99th percentile over the rounds, per kind of wait (`poll` on a pipe, `futex_waitv` on
//!   an SPSC ring, the 1 to 16 ms back-off sleeps of a SysV queue).
//! - Cost: a ping-pong between two threads over two pipes (and over two SPSC rings),
//!   receiving with a timeout, then with a timeout and a canceler; nanoseconds per round
//!   trip, both in the same run.

use std::time::{Duration, Instant};

use ember_linux::cancel::Canceler;
use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use ember_linux::{Error, FrameSender, TimedReceiver, pipe};

const ROUNDS: usize = 200;
const TRIPS: u32 = 20_000;
const LONG: Option<Duration> = Some(Duration::from_secs(10));

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

/// Cancels `blocked` (which blocks until cancelled) `ROUNDS` times: from `cancel()` to its
/// return.
fn latency(c: &Canceler, mut blocked: impl FnMut() -> Result<(), Error> + Send) -> (Duration, Duration) {
    let mut out = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        c.reset();
        let (returned, cancelled) = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = blocked();
                (Instant::now(), r)
            });
            std::thread::sleep(Duration::from_millis(5));
            let at = Instant::now();
            c.cancel();
            let (t, r) = h.join().unwrap();
            assert_eq!(r, Err(Error::Cancelled));
            (t, at)
        });
        out.push(returned.saturating_duration_since(cancelled));
    }
    c.reset();
    percentiles(out)
}

fn main() {
    let c = Canceler::new().unwrap();
    let name = format!("/ember-cancel-bench-{}", std::process::id());

    let (mut rx, _tx) = pipe::pipe().unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let (p50, p99) = latency(&c, || rx.recv_frame_cancellable(&mut buf, None, &c).map(drop));
    println!("cancel latency, pipe (poll):            median {p50:>10.1?}  p99 {p99:>10.1?}");

    let tx = SpscSender::create(Backing::Named(&name), 4096, 1).unwrap();
    let mut srx = SpscReceiver::open(&name, 1).unwrap();
    let mut out = [0u8; 64];
    let (p50, p99) = latency(&c, || srx.recv_cancellable(&mut out, None, &c).map(drop));
    println!("cancel latency, SPSC ring (futex_waitv): median {p50:>10.1?}  p99 {p99:>10.1?}");

    let mut q: ember_linux::sysvmq::SysvQueue<256> =
        ember_linux::sysvmq::SysvQueue::create(ember_linux::sys::IPC_PRIVATE).unwrap();
    let mut qbuf = [0u8; 256];
    let (p50, p99) = latency(&c, || q.recv_frame_cancellable(&mut qbuf, None, &c).map(drop));
    println!("cancel latency, SysV queue (back-off):  median {p50:>10.1?}  p99 {p99:>10.1?}");

    // Cost of watching a canceler on a receive that is not cancelled.
    for with in [false, true] {
        let (mut a_rx, mut a_tx) = pipe::pipe().unwrap();
        let (mut b_rx, mut b_tx) = pipe::pipe().unwrap();
        let started = std::thread::scope(|s| {
            let c = &c;
            s.spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                for _ in 0..TRIPS {
                    let n = if with {
                        a_rx.recv_frame_cancellable(&mut buf, LONG, c).unwrap()
                    } else {
                        a_rx.recv_frame_timeout(&mut buf, LONG).unwrap()
                    };
                    b_tx.send_frame(&buf[..n]).unwrap();
                }
            });
            let mut scratch = [0u8; 64];
            let frame = ember_core::message::encode(1, 1, &7u32, &mut scratch).unwrap().to_vec();
            let mut buf = [0u8; 16 * 1024];
            let t = Instant::now();
            for _ in 0..TRIPS {
                a_tx.send_frame(&frame).unwrap();
                if with {
                    b_rx.recv_frame_cancellable(&mut buf, LONG, c).unwrap();
                } else {
                    b_rx.recv_frame_timeout(&mut buf, LONG).unwrap();
                }
            }
            t.elapsed()
        });
        let what = if with { "timeout + canceler" } else { "timeout only     " };
        println!("pipe round trip, {what}: {:>8} ns", started.as_nanos() / u128::from(TRIPS));
    }
    drop((tx, srx));
    for with in [false, true] {
        let (na, nb) = (format!("{name}-a"), format!("{name}-b"));
        let mut a_tx = SpscSender::create(Backing::Named(&na), 4096, 2).unwrap();
        let mut a_rx = SpscReceiver::open(&na, 2).unwrap();
        let mut b_tx = SpscSender::create(Backing::Named(&nb), 4096, 3).unwrap();
        let mut b_rx = SpscReceiver::open(&nb, 3).unwrap();
        let took = std::thread::scope(|s| {
            let c = &c;
            s.spawn(move || {
                let mut buf = [0u8; 64];
                for _ in 0..TRIPS {
                    let n = if with {
                        a_rx.recv_cancellable(&mut buf, LONG, c).unwrap()
                    } else {
                        a_rx.recv(&mut buf, LONG).unwrap()
                    };
                    b_tx.send(&buf[..n], LONG).unwrap();
                }
            });
            let mut buf = [0u8; 64];
            let t = Instant::now();
            for i in 0..TRIPS {
                a_tx.send(&i.to_le_bytes(), LONG).unwrap();
                if with {
                    b_rx.recv_cancellable(&mut buf, LONG, c).unwrap();
                } else {
                    b_rx.recv(&mut buf, LONG).unwrap();
                }
            }
            t.elapsed()
        });
        let what = if with { "timeout + canceler" } else { "timeout only     " };
        println!("SPSC round trip, {what}: {:>8} ns", took.as_nanos() / u128::from(TRIPS));
    }
}
