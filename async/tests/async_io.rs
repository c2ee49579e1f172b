//! The async-io (smol) adapters on real descriptors: a round trip on the main endpoint
//! kinds, drop storms on a stream pipe and a seqpacket socket, timeouts around send and
//! receive, and the shared-memory receiver.

mod common;

use std::future::Future;
use std::os::fd::AsFd;
use std::time::Duration;

use async_io::Timer;
use common::{Rng, Rt, check, drop_storm, frame, limit};
use ember_async::AsyncEndpoint;
use ember_async::async_io::{Async, AsyncIo, AsyncSpscReceiver};
use ember_linux::core::shm::ShmError;
use ember_linux::shm::{Backing, Notifier, SpscReceiver, SpscSender};
use ember_linux::socket::DEFAULT_PACKET_MAX;
use ember_linux::{Error, pipe, uds};
use futures_lite::future;

struct AsyncIoRt;

impl Rt for AsyncIoRt {
    type D<T: AsFd + AsyncEndpoint> = AsyncIo<T>;
    fn block_on<F: Future>(make: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        common::big_stack(|| async_io::block_on(Box::pin(make())))
    }
    async fn turn() {
        // A zero timer parks `block_on`, which lets it process the reactor's events.
        Timer::after(Duration::ZERO).await;
    }
}

/// `op` under a timeout of `limit`: `None` when the timeout fired (and `op` was dropped).
async fn timeout<T>(limit: Duration, op: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(op.await) }, async {
        Timer::after(limit).await;
        None
    })
    .await
}

async fn ping<S, Q>(a: &mut Async<S>, b: &mut Async<Q>, seq: u32)
where
    S: ember_async::AsyncSend,
    Q: ember_async::AsyncRecv,
{
    let mut scratch = [0u8; 16 * 1024];
    let mut buf = vec![0u8; DEFAULT_PACKET_MAX];
    let len = frame(seq, 3000, &mut scratch);
    a.send(&scratch[..len]).await.expect("send");
    let n = b.recv(&mut buf).await.expect("recv");
    check(&buf[..n], seq, 3000);
}

#[test]
fn fd_endpoints_round_trip() {
    AsyncIoRt::block_on(move || async move {
        let (a, b) = uds::seqpacket_pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        ping(&mut a, &mut b, 1).await;
        ping(&mut b, &mut a, 2).await;

        let (a, b) = uds::stream_pair::<16384>().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        ping(&mut a, &mut b, 3).await;

        let (r, w) = pipe::pipe().unwrap();
        let (mut w, mut r) = (Async::new(w).unwrap(), Async::new(r).unwrap());
        ping(&mut w, &mut r, 4).await;

        let path = format!("/tmp/ember-async-io-{}.sock", std::process::id());
        let listener = uds::UdsListener::bind_stream(uds::UnixName::Path(&path)).unwrap();
        let mut listener = Async::new(listener).unwrap();
        let client = uds::connect_stream::<16384>(uds::UnixName::Path(&path)).unwrap();
        let (server, _) = listener.read_with(|l| l.accept_stream::<16384>()).await.unwrap();
        let (mut c, mut s) = (Async::new(client).unwrap(), Async::new(server).unwrap());
        ping(&mut c, &mut s, 5).await;
        ping(&mut s, &mut c, 6).await;
    });
}

#[test]
fn dropped_futures_lose_nothing_on_a_stream_pipe() {
    AsyncIoRt::block_on(move || async move {
        let (r, w) = pipe::pipe().unwrap();
        pipe::set_capacity(&w, 4096).unwrap();
        let (mut w, mut r) = (Async::new(w).unwrap(), Async::new(r).unwrap());
        let storm = drop_storm::<AsyncIoRt, _, _>(&mut w, &mut r, 2000, 8000, 0x5eed_1001).await;
        assert!(storm.committed_on_drop > 0, "no send was dropped halfway through a frame: {storm:?}");
        ping(&mut w, &mut r, 4242).await;
    });
}

#[test]
fn dropped_futures_lose_nothing_on_seqpacket() {
    AsyncIoRt::block_on(move || async move {
        let (a, b) = uds::seqpacket_pair().unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        drop_storm::<AsyncIoRt, _, _>(&mut a, &mut b, 2000, 3000, 0x5eed_1002).await;
    });
}

#[test]
fn timeouts_around_send_and_recv_lose_nothing() {
    AsyncIoRt::block_on(move || async move {
        let (a, b) = uds::stream_pair::<16384>().unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        const N: u32 = 1000;
        let sender = async {
            let mut rng = Rng(17);
            let mut scratch = [0u8; 16 * 1024];
            let (mut seq, mut timeouts) = (0, 0u32);
            while seq < N {
                let len = frame(seq, 8000, &mut scratch);
                let before = a.sent();
                match timeout(limit(&mut rng, 200), a.send(&scratch[..len])).await {
                    Some(r) => {
                        r.unwrap();
                        seq += 1;
                    }
                    None if a.sent() > before => {
                        timeouts += 1;
                        seq += 1;
                    }
                    None => timeouts += 1,
                }
            }
            a.flush().await.unwrap();
            timeouts
        };
        let receiver = async {
            let mut rng = Rng(19);
            let mut buf = vec![0u8; 16384];
            let (mut seq, mut timeouts) = (0, 0u32);
            while seq < N {
                match timeout(limit(&mut rng, 200), b.recv(&mut buf)).await {
                    Some(r) => {
                        let n = r.unwrap();
                        check(&buf[..n], seq, 8000);
                        seq += 1;
                    }
                    None => timeouts += 1,
                }
            }
            timeouts
        };
        let (st, rt) = future::zip(sender, receiver).await;
        assert!(st + rt > 0, "no operation timed out");
    });
}

#[test]
fn shm_receiver_wakes_through_the_eventfd() {
    let mut tx = SpscSender::create(Backing::Memfd("ember-async-io-spsc"), 4096, 0xA6).unwrap();
    let fd = tx.segment().fd().expect("a memfd").try_clone_to_owned().unwrap();
    let rx = SpscReceiver::from_fd(fd, 0xA6).unwrap();
    let notifier = Notifier::new().unwrap();
    tx.set_notifier(Notifier::from_fd(notifier.as_fd().try_clone_to_owned().unwrap()));
    const N: u32 = 3000;
    let feeder = std::thread::spawn(move || {
        let mut scratch = [0u8; 1024];
        for seq in 0..N {
            let len = frame(seq, 700, &mut scratch);
            tx.send(&scratch[..len], Some(Duration::from_secs(30))).unwrap();
            if seq % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    AsyncIoRt::block_on(move || async move {
        let mut rx = AsyncSpscReceiver::new(rx, notifier).unwrap();
        let mut rng = Rng(23);
        let mut buf = [0u8; 4096];
        let mut seq = 0u32;
        loop {
            match timeout(limit(&mut rng, 300), rx.recv(&mut buf)).await {
                Some(Ok(n)) => {
                    check(&buf[..n], seq, 700);
                    seq += 1;
                }
                Some(Err(Error::Shm(ShmError::Closed))) => break,
                Some(Err(e)) => panic!("recv {seq}: {e:?}"),
                None => {}
            }
        }
        assert_eq!(seq, N);
    });
    feeder.join().unwrap();
}

/// The wrapped sender's integrity setting: `send_msg` encodes with it (unchecked on a pipe
/// by default, checked once set), a stream sender set to `Checked` refuses a ready-made
/// unchecked frame before writing any of it, and a receiver that requires checked payloads
/// skips the unchecked frame.
#[test]
fn integrity_settings_through_the_adapter() {
    use ember_linux::core::frame::{Frame, FrameRepr, Integrity};
    use ember_linux::{FrameReceiver, FrameSender};
    AsyncIoRt::block_on(move || async move {
        let (r, w) = pipe::pipe().unwrap();
        let (mut w, mut r) = (Async::new(w).unwrap(), Async::new(r).unwrap());
        let mut scratch = [0u8; 256];
        let mut buf = vec![0u8; 1024];
        w.send_msg(5, 1, &("a", 1u32), &mut scratch).await.unwrap();
        let n = r.recv(&mut buf).await.unwrap();
        assert_eq!(Frame::new_checked(&buf[..n]).unwrap().integrity(), Integrity::Unchecked);
        w.get_mut().set_integrity(Integrity::Checked);
        w.send_msg(5, 2, &("b", 2u32), &mut scratch).await.unwrap();
        let n = r.recv(&mut buf).await.unwrap();
        assert_eq!(Frame::new_checked(&buf[..n]).unwrap().integrity(), Integrity::Checked);
        let repr = FrameRepr { flags: Integrity::Unchecked.flags(), kind: 6, seq: 3, payload_len: 0 };
        let n = repr.emit_with_payload(b"raw", &mut scratch).unwrap().len();
        let refused = Error::Codec(ember_linux::core::Error::UncheckedPayload);
        assert_eq!(w.send(&scratch[..n]).await, Err(refused));
        w.get_mut().set_integrity(Integrity::Unchecked);
        r.get_mut().require_checked(true);
        w.send(&scratch[..n]).await.unwrap();
        w.send_msg(5, 4, &("c", 4u32), &mut scratch).await.unwrap_or_else(|e| panic!("{e}"));
        w.get_mut().set_integrity(Integrity::Checked);
        w.send_msg(5, 5, &("d", 5u32), &mut scratch).await.unwrap();
        assert_eq!(r.recv(&mut buf).await, Err(refused));
        assert_eq!(r.recv(&mut buf).await, Err(refused));
        let n = r.recv(&mut buf).await.unwrap();
        assert_eq!(Frame::new_checked(&buf[..n]).unwrap().seq(), 5);
    });
}
