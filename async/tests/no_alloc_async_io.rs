//! No heap allocation in the adapters' send and receive paths on async-io. async-io's
//! reactor allocates a little when it wakes a task (a vector of wakers per turn of its
//! event loop), so the test runs the adapters' futures on a minimal executor of its own
//! and counts the allocations made while they are polled (the adapter, and async-io's
//! readiness registration), with the reactor turning on async-io's own thread, and reports
//! the process-wide count beside it.

#[path = "common/counting.rs"]
#[macro_use]
mod counting;

use counting::{MEASURED, SERIAL, echo_seqpacket, echo_stream, poll_counting};
use ember_linux::uds;

#[test]
fn async_io_round_trips_do_not_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (seqpacket, stream) = poll_counting(async {
        let (a, b) = uds::seqpacket_pair().unwrap();
        let peer = echo_seqpacket(b);
        let mut a = ember_async::async_io::Async::new(a).unwrap();
        let seqpacket = round_trips!(a);
        peer.join().unwrap();

        let (a, b) = uds::stream_pair::<4096>().unwrap();
        let peer = echo_stream(b);
        let mut a = Box::new(ember_async::async_io::Async::new(a).unwrap());
        let stream = round_trips!(*a);
        peer.join().unwrap();
        (seqpacket, stream)
    });
    eprintln!(
        "async-io: {} allocations while polling in {MEASURED} seqpacket round trips ({} in the process, \
         the reactor's), {} while polling on a stream socket ({} in the process)",
        seqpacket.1, seqpacket.0, stream.1, stream.0
    );
    assert_eq!((seqpacket.1, stream.1), (0, 0));
}
