//! No heap allocation on the adapters' send and receive paths on Tokio: a counting global
//! allocator around steady-state round trips with a blocking echo peer on another thread
//! (so every receive really waits on the reactor), after a warm-up. Counted: every
//! allocation made by the runtime's thread and the peer's during the measured round
//! trips, calls and receives (none); the test harness's own threads, which start and
//! report other tests meanwhile, are left out.
//!
//! The measured loops run under `tokio::task::unconstrained`. Tokio's cooperative budget,
//! when a task has made 128 ready operations in one poll, forces a yield and keeps the
//! task's waker in a per-runtime list that grows on demand (kept for reuse): seen as a few
//! allocations of 64 bytes and up in some runs, at a point no warm-up reaches for sure.
//! That is Tokio's, not the adapters'; `unconstrained` leaves it out of the count.
//! async-io has its own binary (`no_alloc_async_io.rs`): its reactor thread, once
//! started, allocates on its own and would be counted here.

#[path = "common/counting.rs"]
#[macro_use]
mod counting;

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use counting::{ALLOCS, MEASURED, SERIAL, WARM, counted, echo_seqpacket, echo_stream};
use ember_linux::shm::{Backing, Notifier, SpscReceiver, SpscSender};
use ember_linux::uds;

#[test]
fn tokio_round_trips_do_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    counted();
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let (seqpacket, stream) = rt.block_on(tokio::task::unconstrained(async {
        let (a, b) = uds::seqpacket_pair().unwrap();
        let peer = echo_seqpacket(b);
        let mut a = ember_async::tokio::Async::new(a).unwrap();
        let (seqpacket, _) = round_trips!(a);
        peer.join().unwrap();

        let (a, b) = uds::stream_pair::<4096>().unwrap();
        let peer = echo_stream(b);
        let mut a = Box::new(ember_async::tokio::Async::new(a).unwrap());
        let (stream, _) = round_trips!(*a);
        peer.join().unwrap();
        (seqpacket, stream)
    }));
    eprintln!("tokio: {seqpacket} allocations in {MEASURED} seqpacket round trips, {stream} on a stream socket");
    assert_eq!((seqpacket, stream), (0, 0));
}

/// The shared-memory receiver, woken through its eventfd by a sender thread.
#[test]
fn shm_receiver_does_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    counted();
    let mut tx = SpscSender::create(Backing::Memfd("ember-async-noalloc"), 4096, 0xA7).unwrap();
    let fd = tx.segment().fd().unwrap().try_clone_to_owned().unwrap();
    let rx = SpscReceiver::from_fd(fd, 0xA7).unwrap();
    let notifier = Notifier::new().unwrap();
    tx.set_notifier(Notifier::from_fd(notifier.as_fd().try_clone_to_owned().unwrap()));
    let feeder = std::thread::spawn(move || {
        counted();
        for seq in 0..WARM + MEASURED {
            tx.send(&seq.to_le_bytes(), Some(Duration::from_secs(30))).unwrap();
            // Often let the receiver find the ring empty and wait on the eventfd.
            if seq % 4 == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let allocs = rt.block_on(tokio::task::unconstrained(async {
        let mut rx = ember_async::tokio::AsyncSpscReceiver::new(rx, notifier).unwrap();
        let mut buf = [0u8; 64];
        let mut before = 0;
        for seq in 0..WARM + MEASURED {
            if seq == WARM {
                before = ALLOCS.load(Ordering::Relaxed);
            }
            let n = rx.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], &seq.to_le_bytes());
        }
        ALLOCS.load(Ordering::Relaxed) - before
    }));
    feeder.join().unwrap();
    eprintln!("shm on tokio: {allocs} allocations in {MEASURED} receives");
    assert_eq!(allocs, 0);
}

/// An async RPC call against a blocking server on another thread.
#[test]
fn rpc_calls_do_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    counted();
    let (a, b) = uds::seqpacket_pair().unwrap();
    let server = std::thread::spawn(move || {
        counted();
        let mut server = Box::new(ember_linux::rpc::Server::<_, 65536, 512>::new(b).unwrap());
        for _ in 0..WARM + MEASURED {
            server
                .serve_one(None, &mut |_kind, payload, r| {
                    let n: u32 = ember_linux::rpc::decode(payload)?;
                    r.respond(&(n + 1))
                })
                .unwrap();
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let allocs = rt.block_on(tokio::task::unconstrained(async {
        let mut client = Box::new(ember_async::tokio::AsyncRpcClient::<2, 64, 65536>::new(a).unwrap());
        let mut before = 0;
        for n in 0..WARM + MEASURED {
            if n == WARM {
                before = ALLOCS.load(Ordering::Relaxed);
            }
            let v: u32 = client.call(1, &n).await.unwrap();
            assert_eq!(v, n + 1);
        }
        ALLOCS.load(Ordering::Relaxed) - before
    }));
    server.join().unwrap();
    eprintln!("rpc on tokio: {allocs} allocations in {MEASURED} calls");
    assert_eq!(allocs, 0);
}
