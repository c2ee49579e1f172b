//! The Tokio adapters on real descriptors: a round trip on every fd endpoint, futures
//! dropped at random points without a message lost or duplicated, timeouts around send
//! and receive, the shared-memory receiver, and the typed errors.

mod common;

use std::future::Future;
use std::os::fd::AsFd;
use std::time::Duration;

use common::{Rng, Rt, check, drop_storm, frame, limit};
use ember_async::AsyncEndpoint;
use ember_async::tokio::{Async, AsyncSpscReceiver, Tokio};
use ember_linux::core::shm::ShmError;
use ember_linux::shm::{Backing, Notifier, SpscReceiver, SpscSender};
use ember_linux::socket::{DEFAULT_PACKET_MAX, StreamSocket};
use ember_linux::{Error, pipe, uds};

struct TokioRt;

impl Rt for TokioRt {
    type D<T: AsFd + AsyncEndpoint> = Tokio<T>;
    fn block_on<F: Future>(make: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        common::big_stack(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(Box::pin(make()))
        })
    }
    fn turn() -> impl Future<Output = ()> {
        // A yielded task makes the current-thread scheduler poll the I/O driver.
        tokio::task::yield_now()
    }
}

fn unique(tag: &str) -> String {
    format!("/ember-async-{}-{tag}", std::process::id())
}

/// One frame each way over `a` and `b`.
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
fn every_fd_endpoint_round_trips() {
    TokioRt::block_on(move || async move {
        let (a, b) = uds::seqpacket_pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        ping(&mut a, &mut b, 1).await;
        ping(&mut b, &mut a, 2).await;

        let (a, b) = uds::datagram_pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        ping(&mut a, &mut b, 3).await;

        let (a, b) = uds::stream_pair::<16384>().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        ping(&mut a, &mut b, 4).await;
        ping(&mut b, &mut a, 5).await;

        let (r, w) = pipe::pipe().unwrap();
        let (mut w, mut r) = (Async::new(w).unwrap(), Async::new(r).unwrap());
        ping(&mut w, &mut r, 6).await;

        let (r, w) = pipe::packet_pipe().unwrap();
        let (mut w, mut r) = (Async::new(w).unwrap(), Async::new(r).unwrap());
        ping(&mut w, &mut r, 7).await;

        let fifo = format!("/tmp/ember-async-{}.fifo", std::process::id());
        ember_linux::fifo::create(&fifo).unwrap();
        let r = ember_linux::fifo::open_reader::<16384>(&fifo, true).unwrap();
        let w = ember_linux::fifo::open_writer(&fifo, true).unwrap();
        let (mut w, mut r) = (Async::new(w).unwrap(), Async::new(r).unwrap());
        ping(&mut w, &mut r, 12).await;
        std::fs::remove_file(&fifo).unwrap();

        let a = ember_linux::net::udp_bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = ember_linux::net::udp_bind("127.0.0.1:0".parse().unwrap()).unwrap();
        a.connect(&ember_linux::net::socket_local_addr(&b).unwrap()).unwrap();
        b.connect(&ember_linux::net::socket_local_addr(&a).unwrap()).unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        ping(&mut a, &mut b, 13).await;
        ping(&mut b, &mut a, 14).await;

        let name = unique("mq");
        let q = ember_linux::mq::MessageQueue::create(&name, 4, 4096, ember_linux::mq::Access::Both).unwrap();
        let mut q = Async::new(q).unwrap();
        let mut scratch = [0u8; 4096];
        let mut buf = [0u8; 4096];
        for seq in 0..10 {
            // More than the queue holds: the send waits for the receive below... in turn.
            let len = frame(seq, 1000, &mut scratch);
            q.send(&scratch[..len]).await.unwrap();
            let n = q.recv(&mut buf).await.unwrap();
            check(&buf[..n], seq, 1000);
        }

        // A Unix listener and a TCP listener: accept through read_with.
        let path = format!("/tmp/ember-async-{}.sock", std::process::id());
        let listener = uds::UdsListener::bind_seqpacket(uds::UnixName::Path(&path)).unwrap();
        let mut listener = Async::new(listener).unwrap();
        let client = uds::connect_seqpacket(uds::UnixName::Path(&path)).unwrap();
        let (server, _creds) = listener.read_with(|l| l.accept_seqpacket()).await.unwrap();
        let (mut c, mut s) = (Async::new(client).unwrap(), Async::new(server).unwrap());
        ping(&mut c, &mut s, 8).await;
        ping(&mut s, &mut c, 9).await;

        let tcp = ember_linux::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut tcp = Async::new(tcp).unwrap();
        let client = ember_linux::net::tcp_connect::<16384>(addr, Some(Duration::from_secs(5))).unwrap();
        let (server, _) = tcp.read_with(|l| l.accept::<16384>()).await.unwrap();
        let (mut c, mut s) = (Async::new(client).unwrap(), Async::new(server).unwrap());
        ping(&mut c, &mut s, 10).await;
        ping(&mut s, &mut c, 11).await;
    });
}

#[test]
fn dropped_futures_lose_nothing_on_a_stream_pipe() {
    TokioRt::block_on(move || async move {
        let (r, w) = pipe::pipe().unwrap();
        // One page: frames over PIPE_BUF (4096) are often written in pieces.
        pipe::set_capacity(&w, 4096).unwrap();
        let (mut w, mut r) = (Async::new(w).unwrap(), Async::new(r).unwrap());
        let storm = drop_storm::<TokioRt, _, _>(&mut w, &mut r, 3000, 8000, 0x5eed_0001).await;
        assert!(storm.committed_on_drop > 0, "no send was dropped halfway through a frame: {storm:?}");
        // Still usable afterwards.
        ping(&mut w, &mut r, 4242).await;
    });
}

#[test]
fn dropped_futures_lose_nothing_on_a_stream_socket() {
    TokioRt::block_on(move || async move {
        let (a, b) = uds::stream_pair::<16384>().unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        let storm = drop_storm::<TokioRt, _, _>(&mut a, &mut b, 3000, 6000, 0x5eed_0002).await;
        assert!(storm.committed_on_drop > 0, "no send was dropped halfway through a frame: {storm:?}");
        ping(&mut a, &mut b, 4242).await;
    });
}

#[test]
fn dropped_futures_lose_nothing_on_seqpacket_and_mq() {
    TokioRt::block_on(move || async move {
        let (a, b) = uds::seqpacket_pair().unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        let storm = drop_storm::<TokioRt, _, _>(&mut a, &mut b, 3000, 3000, 0x5eed_0003).await;
        assert_eq!(storm.committed_on_drop, 0, "a message transport sends whole frames or nothing");

        let name = unique("mq-storm");
        let q = ember_linux::mq::MessageQueue::create(&name, 4, 4096, ember_linux::mq::Access::Both).unwrap();
        let tx = ember_linux::mq::MessageQueue::open(&name, ember_linux::mq::Access::Send).unwrap();
        let (mut tx, mut q) = (Async::new(tx).unwrap(), Async::new(q).unwrap());
        drop_storm::<TokioRt, _, _>(&mut tx, &mut q, 2000, 2000, 0x5eed_0004).await;
    });
}

/// Real wake-ups: a sender and a receiver task, each operation under a random short
/// timeout (which drops the future when it fires), over a stream socket with a small
/// buffer.
#[test]
fn timeouts_around_send_and_recv_lose_nothing() {
    TokioRt::block_on(move || async move {
        let (a, b) = uds::stream_pair::<16384>().unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&a, 4096).unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        const N: u32 = 2000;
        let sender = async {
            let mut rng = Rng(7);
            let mut scratch = [0u8; 16 * 1024];
            let mut timeouts = 0u32;
            let mut seq = 0;
            while seq < N {
                let len = frame(seq, 8000, &mut scratch);
                let before = a.sent();
                let limit = limit(&mut rng, 200);
                match tokio::time::timeout(limit, a.send(&scratch[..len])).await {
                    Ok(r) => {
                        r.unwrap();
                        seq += 1;
                    }
                    Err(_) => {
                        timeouts += 1;
                        if a.sent() > before {
                            seq += 1;
                        }
                    }
                }
            }
            a.flush().await.unwrap();
            timeouts
        };
        let receiver = async {
            let mut rng = Rng(11);
            let mut buf = vec![0u8; 16384];
            let mut timeouts = 0u32;
            let mut seq = 0;
            while seq < N {
                let limit = limit(&mut rng, 200);
                match tokio::time::timeout(limit, b.recv(&mut buf)).await {
                    Ok(r) => {
                        let n = r.unwrap();
                        check(&buf[..n], seq, 8000);
                        seq += 1;
                    }
                    Err(_) => timeouts += 1,
                }
            }
            timeouts
        };
        let (st, rt) = tokio::join!(sender, receiver);
        eprintln!("timeouts: {st} sends, {rt} receives");
        assert!(st + rt > 0, "no operation timed out");
    });
}

#[test]
fn a_stream_frame_larger_than_the_rest_buffer_is_refused_before_any_byte() {
    TokioRt::block_on(move || async move {
        let (a, b) = uds::stream_pair::<1024>().unwrap();
        let (mut a, mut b) = (Async::<StreamSocket<1024>>::new(a).unwrap(), Async::new(b).unwrap());
        let mut scratch = [0u8; 4096];
        let len = frame(1, 2000, &mut scratch);
        let len = if len <= 1024 { frame(1999, 2000, &mut scratch) } else { len };
        assert!(len > 1024);
        assert_eq!(a.send(&scratch[..len]).await, Err(Error::TooLarge { len, max: 1024 }));
        assert_eq!(a.sent(), 0);
        // Not a frame at all: a typed error, nothing sent.
        assert!(matches!(a.send(b"garbage").await, Err(Error::Codec(_))));
        let len = frame(2, 500, &mut scratch);
        a.send(&scratch[..len]).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = b.recv(&mut buf).await.unwrap();
        check(&buf[..n], 2, 500);
    });
}

#[test]
fn a_peer_that_goes_away_is_peer_gone() {
    TokioRt::block_on(move || async move {
        let (a, b) = uds::seqpacket_pair().unwrap();
        let mut b = Async::new(b).unwrap();
        drop(a);
        let mut buf = vec![0u8; DEFAULT_PACKET_MAX];
        assert_eq!(b.recv(&mut buf).await, Err(Error::PeerGone));

        let (r, w) = pipe::pipe().unwrap();
        let mut w = Async::new(w).unwrap();
        drop(r);
        let mut scratch = [0u8; 64];
        let len = frame(1, 10, &mut scratch);
        assert_eq!(w.send(&scratch[..len]).await, Err(Error::PeerGone));
    });
}

fn spsc_pair(tag: &str) -> (SpscSender, SpscReceiver, Notifier) {
    let mut tx = SpscSender::create(Backing::Memfd(tag), 4096, 0xA5).unwrap();
    let fd = tx.segment().fd().expect("a memfd").try_clone_to_owned().unwrap();
    let rx = SpscReceiver::from_fd(fd, 0xA5).unwrap();
    let notifier = Notifier::new().unwrap();
    tx.set_notifier(Notifier::from_fd(notifier.as_fd().try_clone_to_owned().unwrap()));
    (tx, rx, notifier)
}

/// The shared-memory receiver, fed by a thread that sends with the blocking call
/// (sleeping on the futex when the ring is full), under random receive timeouts; then
/// the sender closes the ring.
#[test]
fn shm_receiver_wakes_through_the_eventfd_and_loses_nothing() {
    let (mut tx, rx, notifier) = spsc_pair("ember-async-spsc");
    const N: u32 = 5000;
    let feeder = std::thread::spawn(move || {
        let mut scratch = [0u8; 1024];
        for seq in 0..N {
            let len = frame(seq, 700, &mut scratch);
            tx.send(&scratch[..len], Some(Duration::from_secs(30))).unwrap();
            if seq % 64 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        // Dropping the sender closes the ring.
    });
    TokioRt::block_on(move || async move {
        let mut rx = AsyncSpscReceiver::new(rx, notifier).unwrap();
        let mut rng = Rng(3);
        let mut buf = [0u8; 4096];
        let (mut seq, mut timeouts) = (0u32, 0u32);
        loop {
            let limit = limit(&mut rng, 300);
            match tokio::time::timeout(limit, rx.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    check(&buf[..n], seq, 700);
                    seq += 1;
                }
                Ok(Err(Error::Shm(ShmError::Closed))) => break,
                Ok(Err(e)) => panic!("recv {seq}: {e:?}"),
                Err(_) => timeouts += 1,
            }
        }
        assert_eq!(seq, N);
        eprintln!("shm: {timeouts} receives timed out");
    });
    feeder.join().unwrap();
}

#[test]
fn shm_receiver_survives_a_drop_storm() {
    let (mut tx, rx, notifier) = spsc_pair("ember-async-spsc-storm");
    TokioRt::block_on(move || async move {
        let mut rx = AsyncSpscReceiver::new(rx, notifier).unwrap();
        let mut rng = Rng(5);
        let mut scratch = [0u8; 1024];
        let mut buf = [0u8; 4096];
        let (mut sent, mut got, mut dropped) = (0u32, 0u32, 0u32);
        while got < 3000 {
            if sent < 3000 && rng.below(2) == 0 {
                let len = frame(sent, 500, &mut scratch);
                match tx.try_send(&scratch[..len]) {
                    Ok(()) => sent += 1,
                    Err(Error::Shm(ShmError::Full)) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            match common::poll_then_drop(rx.recv(&mut buf), rng.below(3)) {
                Some(Ok(n)) => {
                    check(&buf[..n], got, 500);
                    got += 1;
                }
                Some(Err(e)) => panic!("{e:?}"),
                None => dropped += 1,
            }
            if rng.below(3) == 0 {
                TokioRt::turn().await;
            }
        }
        assert!(dropped > 0);
    });
}

/// The wrappers are `Send`: tasks on the multi-thread runtime, moved between its workers,
/// four conversations at once over stream sockets.
#[test]
fn tasks_on_the_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_io().build().unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..4u32 {
            let (a, b) = uds::stream_pair::<4096>().unwrap();
            tasks.push(tokio::spawn(async move {
                let mut b = Box::new(Async::new(b).unwrap());
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = b.recv(&mut buf).await {
                    b.send(&buf[..n]).await.unwrap();
                }
            }));
            tasks.push(tokio::spawn(async move {
                let mut a = Box::new(Async::new(a).unwrap());
                let mut scratch = vec![0u8; 4096];
                let mut buf = vec![0u8; 4096];
                for i in 0..500 {
                    let seq = c * 1000 + i;
                    let len = frame(seq, 2000, &mut scratch);
                    a.send(&scratch[..len]).await.unwrap();
                    let n = a.recv(&mut buf).await.unwrap();
                    check(&buf[..n], seq, 2000);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// RPC over a seqpacket pair: a server task answering (some after a pause, some with an
/// error), a client whose calls are cut by timeouts now and then. Every completed call
/// gets its own answer; more calls are given up than the client has slots, so a dropped
/// call frees its slot; late answers are counted as strays.
#[test]
fn rpc_calls_and_cancelled_calls() {
    use ember_async::tokio::{AsyncRpcClient, AsyncRpcServer};
    use ember_linux::rpc::{Failure, OwnedCallError};

    TokioRt::block_on(move || async move {
        let (a, b) = uds::seqpacket_pair().unwrap();
        let mut client = Box::new(AsyncRpcClient::<2, 256, { DEFAULT_PACKET_MAX }>::new(a).unwrap());
        let mut server = Box::new(AsyncRpcServer::<{ DEFAULT_PACKET_MAX }, 512>::new(b).unwrap());
        let server = tokio::spawn(async move {
            let mut served = 0u32;
            loop {
                let r = match server.recv_request().await {
                    Ok(r) => r,
                    Err(Error::PeerGone) => return served,
                    Err(e) => panic!("{e:?}"),
                };
                served += 1;
                let n: u32 = ember_linux::rpc::decode(server.payload(&r)).unwrap();
                if n.is_multiple_of(5) {
                    // Slow: the client's short timeout gives up on these.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let sent = if n.is_multiple_of(7) {
                    server.respond_error(r.kind, r.seq, &Failure::new(300, "seven")).await
                } else {
                    server.respond(r.kind, r.seq, &(n * 2)).await
                };
                match sent {
                    Ok(()) => {}
                    // The client gave up on the last call and hung up.
                    Err(Error::PeerGone) => return served,
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        let (mut answered, mut given_up, mut remote) = (0, 0, 0);
        for n in 1..=100u32 {
            let limit = if n.is_multiple_of(5) { Duration::from_millis(1) } else { Duration::from_secs(10) };
            match tokio::time::timeout(limit, client.call::<_, u32>(1, &n)).await {
                Ok(Ok(v)) => {
                    assert_eq!(v, n * 2);
                    answered += 1;
                }
                Ok(Err(OwnedCallError::Remote(f))) => {
                    assert_eq!((n % 7, f.code, f.message()), (0, 300, "seven"));
                    remote += 1;
                }
                Ok(Err(e)) => panic!("call {n}: {e}"),
                Err(_) => given_up += 1,
            }
        }
        assert_eq!(given_up, 20, "every fifth call is slow and given up");
        assert!(given_up > 2, "more calls given up than the client has slots");
        assert_eq!(answered + remote, 80);
        // The late answers arrived while later calls waited: dropped as strays.
        assert!(client.client().strays() > 0);
        drop(client);
        assert_eq!(server.await.unwrap(), 100);
    });
}
