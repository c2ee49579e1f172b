//! Round-trip latency of the async adapters against the blocking endpoints on the same
//! transport, and against Tokio's own `UnixStream` moving the same bytes.
//!
//! ```text
//! cargo run --release -p ember-ipc-async --features tokio,async-io --example bench [iterations]
//! ```
//!
//! Each row is a ping-pong of one frame (a 64-byte body; the frame length is printed) with an
//! echo peer on another thread that uses the blocking Ember endpoint (or a blocking
//! `std::os::unix::net::UnixStream` for the Tokio row), the client pinned to CPU 0 and the
//! peers to CPU 1. The rows are interleaved: each iteration makes one round trip of every
//! row in turn, so all rows see the same machine noise. Per-iteration samples after a
//! warm-up; p50 and p99 in microseconds, and the ratio of each p50 to the blocking row of
//! the same transport in the same phase. Phase 1 runs inside one `block_on` of Tokio's
//! current-thread runtime (the blocking rows simply block it; the async-io row there is
//! woken by async-io's reactor thread, as under any executor other than async-io's own).
//! Phase 2 runs inside one `async_io::block_on` (smol's `block_on`), where the waiting
//! thread drives the reactor itself, with its own blocking rows as the baseline.
use std::io::{Read, Write};
use std::time::Instant;

use ember_linux::socket::PacketSocket;
use ember_linux::{FrameReceiver, FrameSender, pipe, uds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Rows, in the order they are printed. Rows 0 to 5 run in phase 1 (Tokio's executor),
/// rows 6 to 9 in phase 2 (async-io's own executor).
const ROWS: [&str; 10] = [
    "seqpacket, blocking Ember",
    "seqpacket, ember-ipc-async on Tokio",
    "seqpacket, ember-ipc-async on async-io (reactor thread)",
    "pipe, blocking Ember",
    "pipe, ember-ipc-async on Tokio",
    "Unix stream, tokio::net::UnixStream (same bytes)",
    "seqpacket, blocking Ember (phase 2)",
    "seqpacket, ember-ipc-async on async-io, block_on",
    "pipe, blocking Ember (phase 2)",
    "pipe, ember-ipc-async on async-io, block_on",
];

/// For each row, the row whose p50 it is divided by: the blocking row of the same
/// transport in the same phase (the UnixStream row against blocking seqpacket).
const BASE: [usize; 10] = [0, 0, 0, 3, 3, 0, 6, 6, 8, 8];

const WARM: usize = 2000;

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    // Best effort: a machine with one CPU runs unpinned.
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn frame() -> Vec<u8> {
    let mut scratch = [0u8; 256];
    ember_linux::core::message::encode(1, 7, &[0x5au8; 64][..], &mut scratch).unwrap().to_vec()
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

fn seqpacket_echo(mut s: PacketSocket) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        pin(1);
        let mut buf = vec![0u8; ember_linux::socket::DEFAULT_PACKET_MAX];
        while let Ok(n) = s.recv_frame(&mut buf) {
            if s.send_frame(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

fn pipe_echo(mut r: pipe::StreamReader, mut w: pipe::Writer) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        pin(1);
        let mut buf = vec![0u8; pipe::DEFAULT_STREAM_BUF];
        while let Ok(n) = r.recv_frame(&mut buf) {
            if w.send_frame(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// A pipe pair to an echo peer: requests on one pipe, answers on the other.
fn pipe_pair() -> (pipe::Writer, pipe::StreamReader, std::thread::JoinHandle<()>) {
    let (r1, w1) = pipe::pipe().unwrap();
    let (r2, w2) = pipe::pipe().unwrap();
    (w1, r2, pipe_echo(r1, w2))
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    pin(0);
    let f = frame();
    let len = f.len();
    let mut samples: Vec<Vec<u64>> = (0..ROWS.len()).map(|_| Vec::with_capacity(n)).collect();
    let mut peers = Vec::new();
    let mut buf = vec![0u8; ember_linux::socket::DEFAULT_PACKET_MAX];

    // Phase 1: everything inside one `block_on` of Tokio's current-thread runtime. The
    // blocking rows simply block it; the async-io row is woken by async-io's reactor thread,
    // as under any executor other than async-io's own.
    let (mut seq_blocking, b) = uds::seqpacket_pair().unwrap();
    peers.push(seqpacket_echo(b));
    let (seq_tokio, b) = uds::seqpacket_pair().unwrap();
    peers.push(seqpacket_echo(b));
    let (seq_aio, b) = uds::seqpacket_pair().unwrap();
    peers.push(seqpacket_echo(b));
    let (mut pw_blocking, mut pr_blocking, p) = pipe_pair();
    peers.push(p);
    let (pw_tokio, pr_tokio, p) = pipe_pair();
    peers.push(p);
    let (us, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    peers.push(std::thread::spawn(move || {
        pin(1);
        let mut buf = vec![0u8; len];
        while b.read_exact(&mut buf).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    }));
    us.set_nonblocking(true).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    rt.block_on(async {
        let mut seq_tokio = ember_async::tokio::Async::new(seq_tokio).unwrap();
        let mut seq_aio = ember_async::async_io::Async::new(seq_aio).unwrap();
        let mut pw_tokio = Box::new(ember_async::tokio::Async::new(pw_tokio).unwrap());
        let mut pr_tokio = Box::new(ember_async::tokio::Async::new(pr_tokio).unwrap());
        let mut us = tokio::net::UnixStream::from_std(us).unwrap();
        for i in 0..WARM + n {
            let mut t = [0u64; 6];
            let start = Instant::now();
            seq_blocking.send_frame(&f).unwrap();
            seq_blocking.recv_frame(&mut buf).unwrap();
            t[0] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            seq_tokio.send(&f).await.unwrap();
            seq_tokio.recv(&mut buf).await.unwrap();
            t[1] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            seq_aio.send(&f).await.unwrap();
            seq_aio.recv(&mut buf).await.unwrap();
            t[2] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            pw_blocking.send_frame(&f).unwrap();
            pr_blocking.recv_frame(&mut buf).unwrap();
            t[3] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            pw_tokio.send(&f).await.unwrap();
            pr_tokio.recv(&mut buf).await.unwrap();
            t[4] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            us.write_all(&f).await.unwrap();
            us.read_exact(&mut buf[..len]).await.unwrap();
            t[5] = start.elapsed().as_nanos() as u64;

            if i >= WARM {
                for (s, t) in samples.iter_mut().zip(t) {
                    s.push(t);
                }
            }
        }
    });
    drop(rt);

    // Phase 2: everything inside one `async_io::block_on`, as a smol program runs (smol's
    // `block_on` is this one): the waiting thread runs the reactor itself, and async-io's
    // reactor thread backs off while a `block_on` is active.
    let (mut seq_blocking2, b) = uds::seqpacket_pair().unwrap();
    peers.push(seqpacket_echo(b));
    let (seq_aio2, b) = uds::seqpacket_pair().unwrap();
    peers.push(seqpacket_echo(b));
    let (mut pw_blocking2, mut pr_blocking2, p) = pipe_pair();
    peers.push(p);
    let (pw_aio, pr_aio, p) = pipe_pair();
    peers.push(p);
    async_io::block_on(async {
        let mut seq_aio2 = ember_async::async_io::Async::new(seq_aio2).unwrap();
        let mut pw_aio = Box::new(ember_async::async_io::Async::new(pw_aio).unwrap());
        let mut pr_aio = Box::new(ember_async::async_io::Async::new(pr_aio).unwrap());
        for i in 0..WARM + n {
            let mut t = [0u64; 4];
            let start = Instant::now();
            seq_blocking2.send_frame(&f).unwrap();
            seq_blocking2.recv_frame(&mut buf).unwrap();
            t[0] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            seq_aio2.send(&f).await.unwrap();
            seq_aio2.recv(&mut buf).await.unwrap();
            t[1] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            pw_blocking2.send_frame(&f).unwrap();
            pr_blocking2.recv_frame(&mut buf).unwrap();
            t[2] = start.elapsed().as_nanos() as u64;

            let start = Instant::now();
            pw_aio.send(&f).await.unwrap();
            pr_aio.recv(&mut buf).await.unwrap();
            t[3] = start.elapsed().as_nanos() as u64;

            if i >= WARM {
                for (s, t) in samples[6..].iter_mut().zip(t) {
                    s.push(t);
                }
            }
        }
    });
    // Closing the client ends make every peer see end of stream and exit.
    drop((seq_blocking, seq_blocking2));
    drop((pw_blocking, pr_blocking, pw_blocking2, pr_blocking2));
    for p in peers {
        p.join().unwrap();
    }

    println!(
        "{n} round trips of a {len}-byte frame per row (after {WARM} warm-up), rows interleaved \
         within each phase, client on CPU 0, echo peers on CPU 1"
    );
    println!("{:<56} {:>9} {:>9} {:>15}", "row", "p50 µs", "p99 µs", "p50 / blocking");
    let mut p50 = [0f64; ROWS.len()];
    let mut p99 = [0f64; ROWS.len()];
    for (i, s) in samples.iter_mut().enumerate() {
        s.sort_unstable();
        p50[i] = percentile(s, 0.50);
        p99[i] = percentile(s, 0.99);
    }
    for (i, name) in ROWS.iter().enumerate() {
        if i == 6 {
            println!("phase 2: inside async_io::block_on");
        }
        println!("{:<56} {:>9.2} {:>9.2} {:>14.2}×", name, p50[i], p99[i], p50[i] / p50[BASE[i]]);
    }
    println!("(the UnixStream row is compared with the blocking seqpacket row)");
}
