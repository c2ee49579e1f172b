//! Cancellation (`ember_linux::cancel`): a thread cancels a blocked receive (or send, or
//! connect) on every transport kind; the call returns `Error::Cancelled`, the canceler stays
//! cancelled until reset, and a frame sent afterwards is received intact (nothing was
//! half-consumed). Also: the bounded sends and connects give up at their timeout, and the
//! cancellable receive paths allocate nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ember_linux::cancel::Canceler;
use ember_linux::mq::{Access, MessageQueue};
use ember_linux::poll::{Interest, Poller};
use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
};
use ember_linux::sysvmq::SysvQueue;
use ember_linux::uds::{self, UdsListener, UnixName};
use ember_linux::{Error, FrameReceiver, FrameSender, TimedReceiver, TimedSender, fifo, net, pipe};

const LONG: Option<Duration> = Some(Duration::from_secs(30));

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ember-cancel-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Runs `blocked` (which must wait for ever on its own) while another thread cancels `c`
/// after 50 ms; `blocked` must return `Error::Cancelled`. Then checks that the canceler
/// stays cancelled (a call at once gives `Cancelled` again), and resets it.
fn cancel_during<T: std::fmt::Debug>(c: &Canceler, mut blocked: impl FnMut() -> Result<T, Error>) {
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            c.cancel();
        });
        assert_eq!(blocked().map(|_| ()).unwrap_err(), Error::Cancelled);
    });
    assert!(c.is_cancelled());
    assert_eq!(blocked().map(|_| ()).unwrap_err(), Error::Cancelled);
    c.reset();
    assert!(!c.is_cancelled());
}

/// The conformance check of one transport: a receive with no timeout (and one with a long
/// timeout) ends with `Cancelled`; a frame sent afterwards comes out intact.
fn receiver_cancels(rx: &mut impl TimedReceiver, tx: &mut impl FrameSender) {
    let c = Canceler::new().unwrap();
    let mut buf = vec![0u8; rx.max_frame()];
    cancel_during(&c, || rx.recv_frame_cancellable(&mut buf, None, &c));
    cancel_during(&c, || rx.recv_frame_cancellable(&mut buf, LONG, &c));
    tx.send_msg(7, 42, &("after the cancel", 1234u32), &mut [0u8; 256]).unwrap();
    let n = rx.recv_frame_cancellable(&mut buf, LONG, &c).unwrap();
    let (repr, (s, v)): (_, (&str, u32)) = ember_core::message::decode(&buf[..n]).unwrap();
    assert_eq!((repr.kind, repr.seq, s, v), (7, 42, "after the cancel", 1234));
    // Without a canceler the timeout still bounds it.
    assert_eq!(rx.recv_frame_timeout(&mut buf, Some(Duration::from_millis(20))), Err(Error::TimedOut));
}

#[test]
fn stream_pipe() {
    let (mut rx, mut tx) = pipe::pipe().unwrap();
    receiver_cancels(&mut rx, &mut tx);
}

#[test]
fn stream_pipe_keeps_a_half_arrived_frame() {
    let (mut rx, mut tx) = pipe::pipe().unwrap();
    let mut frame = [0u8; 128];
    let frame = ember_core::message::encode(9, 1, &"split across a cancel", &mut frame).unwrap();
    let (head, tail) = frame.split_at(frame.len() / 2);
    tx.write_bytes(head).unwrap();
    let c = Canceler::new().unwrap();
    let mut buf = vec![0u8; rx.max_frame()];
    cancel_during(&c, || rx.recv_frame_cancellable(&mut buf, None, &c));
    tx.write_bytes(tail).unwrap();
    let n = rx.recv_frame_cancellable(&mut buf, LONG, &c).unwrap();
    assert_eq!(&buf[..n], frame);
}

#[test]
fn packet_pipe() {
    let (mut rx, mut tx) = pipe::packet_pipe().unwrap();
    receiver_cancels(&mut rx, &mut tx);
}

#[test]
fn fifo() {
    let path = format!("/tmp/{}", unique("fifo"));
    fifo::create(&path).unwrap();
    let mut rx: pipe::StreamReader = fifo::open_reader(&path, false).unwrap();
    let mut tx = fifo::open_writer(&path, false).unwrap();
    receiver_cancels(&mut rx, &mut tx);
    fifo::remove(&path).unwrap();
}

#[test]
fn posix_mq() {
    let name = format!("/{}", unique("mq"));
    let mut q = MessageQueue::create(&name, 4, 512, Access::Both).unwrap();
    let mut tx = MessageQueue::open(&name, Access::Send).unwrap();
    receiver_cancels(&mut q, &mut tx);
    // A full queue: a send waits for room, and is cancelled.
    let frame = ember_core::message::encode(1, 1, &0u8, &mut [0u8; 64]).unwrap().to_vec();
    for _ in 0..4 {
        tx.send_frame(&frame).unwrap();
    }
    let c = Canceler::new().unwrap();
    cancel_during(&c, || tx.send_frame_cancellable(&frame, None, &c));
    assert_eq!(tx.send_frame_timeout(&frame, Some(Duration::from_millis(20))), Err(Error::TimedOut));
    MessageQueue::unlink(&name).unwrap();
}

#[test]
fn sysv_mq() {
    let mut rx: SysvQueue<1024> = SysvQueue::create(ember_linux::sys::IPC_PRIVATE).unwrap();
    let mut tx: SysvQueue<1024> = SysvQueue::from_id(rx.id());
    receiver_cancels(&mut rx, &mut tx);
}

#[test]
fn uds_stream() {
    let (mut a, mut b) = uds::stream_pair::<4096>().unwrap();
    receiver_cancels(&mut a, &mut b);
}

#[test]
fn uds_seqpacket() {
    let (mut a, mut b) = uds::seqpacket_pair().unwrap();
    receiver_cancels(&mut a, &mut b);
}

#[test]
fn uds_datagram() {
    let (mut a, mut b) = uds::datagram_pair().unwrap();
    receiver_cancels(&mut a, &mut b);
}

#[test]
fn tcp() {
    let l = net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut tx: ember_linux::socket::StreamSocket<4096> = net::tcp_connect(l.local_addr().unwrap(), LONG).unwrap();
    let (mut rx, _) = l.accept::<4096>().unwrap();
    receiver_cancels(&mut rx, &mut tx);
}

#[test]
fn udp() {
    let mut rx = net::udp_bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut tx = net::udp_bind("127.0.0.1:0".parse().unwrap()).unwrap();
    tx.connect(&rx.local_addr().unwrap()).unwrap();
    receiver_cancels(&mut rx, &mut tx);
}

#[test]
fn shm_spsc() {
    let n = format!("/{}", unique("spsc"));
    let mut tx = SpscSender::create(Backing::Named(&n), 4096, 1).unwrap();
    let mut rx = SpscReceiver::open(&n, 1).unwrap();
    let c = Canceler::new().unwrap();
    let mut out = [0u8; 256];
    cancel_during(&c, || rx.recv_cancellable(&mut out, None, &c));
    cancel_during(&c, || rx.recv_cancellable(&mut out, LONG, &c));
    tx.try_send(b"intact").unwrap();
    let n = rx.recv_cancellable(&mut out, LONG, &c).unwrap();
    assert_eq!(&out[..n], b"intact");
    // A full ring: the sender waits for room, and is cancelled.
    while tx.try_send(&[7u8; 200]).is_ok() {}
    cancel_during(&c, || tx.send_cancellable(&[7u8; 200], None, &c));
    assert_eq!(tx.send(&[7u8; 200], Some(Duration::from_millis(20))), Err(ember_core::shm::ShmError::Timeout.into()));
}

#[test]
fn shm_broadcast() {
    let n = format!("/{}", unique("bcast"));
    let mut tx = BroadcastWriter::create(Backing::Named(&n), 4096, 2).unwrap();
    let mut rx = BroadcastReader::open(&n, 2, false).unwrap();
    let c = Canceler::new().unwrap();
    let mut out = [0u8; 256];
    cancel_during(&c, || rx.recv_cancellable(&mut out, None, &c));
    cancel_during(&c, || rx.recv_cancellable(&mut out, LONG, &c));
    tx.send(b"intact").unwrap();
    let got = rx.recv_cancellable(&mut out, LONG, &c).unwrap();
    assert_eq!((&out[..got.len], got.lost), (&b"intact"[..], 0));
}

#[test]
fn shm_seqlock() {
    let n = format!("/{}", unique("seqlock"));
    let mut w = SeqLockWriter::create(Backing::Named(&n), 256, 3).unwrap();
    let mut r = SeqLockReader::open(&n, 3).unwrap();
    w.write(b"first").unwrap();
    let mut out = [0u8; 256];
    let seen = r.read(&mut out).unwrap().seq;
    let c = Canceler::new().unwrap();
    cancel_during(&c, || r.wait_change_cancellable(seen, None, &c));
    w.write(b"second").unwrap();
    r.wait_change_cancellable(seen, LONG, &c).unwrap();
    let snap = r.read(&mut out).unwrap();
    assert_eq!(&out[..snap.len], b"second");
}

#[test]
fn full_pipe_send() {
    let (_rx, mut tx) = pipe::pipe().unwrap();
    let frame = ember_core::message::encode(1, 1, &[0u8; 1000][..], &mut [0u8; 1100]).unwrap().to_vec();
    // Fill the pipe without blocking.
    tx.set_nonblocking_for_test();
    let c = Canceler::new().unwrap();
    cancel_during(&c, || tx.send_frame_cancellable(&frame, None, &c));
    assert_eq!(tx.send_frame_timeout(&frame, Some(Duration::from_millis(20))), Err(Error::TimedOut));
}

/// Fills a pipe writer's pipe through a nonblocking duplicate, leaving the writer blocking.
trait Fill {
    fn set_nonblocking_for_test(&mut self);
}

impl Fill for pipe::Writer {
    fn set_nonblocking_for_test(&mut self) {
        use std::os::fd::AsFd;
        let dup = self.as_fd().try_clone_to_owned().unwrap();
        let mut w = pipe::Writer::stream(dup);
        // O_NONBLOCK is on the open file description, shared with the duplicate: set it,
        // fill, then clear it.
        ember_linux::Endpoint::set_nonblocking(&w, true).unwrap();
        while w.write_bytes(&[0u8; 4096]).is_ok() {}
        ember_linux::Endpoint::set_nonblocking(&w, false).unwrap();
    }
}

#[test]
fn full_socket_sends() {
    let (_a, mut b) = uds::seqpacket_pair().unwrap();
    let frame = ember_core::message::encode(1, 1, &[0u8; 1000][..], &mut [0u8; 1100]).unwrap().to_vec();
    ember_linux::Endpoint::set_nonblocking(&b, true).unwrap();
    while b.send_frame(&frame).is_ok() {}
    ember_linux::Endpoint::set_nonblocking(&b, false).unwrap();
    let c = Canceler::new().unwrap();
    cancel_during(&c, || b.send_frame_cancellable(&frame, None, &c));
    assert_eq!(b.send_frame_timeout(&frame, Some(Duration::from_millis(20))), Err(Error::TimedOut));

    let (_s, mut t) = uds::stream_pair::<4096>().unwrap();
    ember_linux::Endpoint::set_nonblocking(&t, true).unwrap();
    while t.write_bytes(&[0u8; 4096]).is_ok() {}
    ember_linux::Endpoint::set_nonblocking(&t, false).unwrap();
    cancel_during(&c, || t.send_frame_cancellable(&frame, None, &c));
    assert_eq!(t.send_frame_timeout(&frame, Some(Duration::from_millis(20))), Err(Error::TimedOut));
}

#[test]
fn uds_connect_to_a_listener_that_never_accepts() {
    let name = unique("backlog");
    let _l = UdsListener::bind_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    // Fill the backlog: the kernel takes backlog + 1 connections before refusing more.
    let mut held = Vec::new();
    let c = Canceler::new().unwrap();
    loop {
        match uds::connect_stream_timeout::<64>(UnixName::Abstract(name.as_bytes()), Some(Duration::ZERO), None) {
            Ok(s) => held.push(s),
            Err(Error::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(held.len() < 100_000, "the backlog never filled");
    }
    let addr = UnixName::Abstract(name.as_bytes());
    assert_eq!(
        uds::connect_stream_timeout::<64>(addr, Some(Duration::from_millis(30)), None).err(),
        Some(Error::TimedOut)
    );
    cancel_during(&c, || uds::connect_stream_timeout::<64>(addr, None, Some(&c)));
    cancel_during(&c, || uds::connect_stream_timeout::<64>(addr, LONG, Some(&c)));
}

#[test]
fn poller_wait() {
    let (rx, _tx) = pipe::pipe().unwrap();
    let mut p: Poller<4> = Poller::new().unwrap();
    p.add(&rx, 1, Interest::READ).unwrap();
    let c = Canceler::new().unwrap();
    cancel_during(&c, || p.wait_cancellable(4, None, &c).map(|e| e.count()));
    assert_eq!(p.wait_cancellable(4, Some(Duration::from_millis(10)), &c).unwrap().count(), 0);
    // The canceler is an fd a poller can watch like any other.
    p.add(&c, 2, Interest::READ).unwrap();
    c.cancel();
    assert_eq!(p.wait(LONG).unwrap().map(|r| r.token).collect::<Vec<_>>(), [2]);
}

#[test]
fn cancel_from_a_signal_handler() {
    use std::sync::OnceLock;
    static CANCEL: OnceLock<Canceler> = OnceLock::new();
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(c) = CANCEL.get() {
            c.cancel();
        }
    }
    let c = CANCEL.get_or_init(|| Canceler::new().unwrap());
    // SIGUSR2, without SA_RESTART; nothing else in this binary uses it.
    // SAFETY: a zeroed sigaction (plain integers and a mask) is valid.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the handler only calls `Canceler::cancel`, which is
    // async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, &mut old), 0);
    }
    let (mut rx, _tx) = pipe::pipe().unwrap();
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let mut buf = vec![0u8; rx.max_frame()];
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            ember_linux::sys::tgkill(std::process::id() as i32, me, libc::SIGUSR2 as u32).unwrap();
        });
        assert_eq!(rx.recv_frame_cancellable(&mut buf, None, c), Err(Error::Cancelled));
    });
    // SAFETY: restores the disposition read above.
    unsafe { libc::sigaction(libc::SIGUSR2, &old, std::ptr::null_mut()) };
    c.reset();
}

#[test]
fn cancellable_receives_allocate_nothing() {
    let (mut rx, mut tx) = pipe::pipe().unwrap();
    let n = format!("/{}", unique("noalloc"));
    let mut stx = SpscSender::create(Backing::Named(&n), 4096, 4).unwrap();
    let mut srx = SpscReceiver::open(&n, 4).unwrap();
    let c = Canceler::new().unwrap();
    let mut buf = [0u8; 256];
    let mut scratch = [0u8; 256];
    let count = ember_test_support::allocations(|| {
        for i in 0..200u32 {
            tx.send_msg(1, i, &i, &mut scratch).unwrap();
            let n = rx.recv_frame_cancellable(&mut buf[..], LONG, &c).unwrap();
            assert_eq!(ember_core::message::decode::<u32>(&buf[..n]).unwrap().1, i);
            stx.try_send(&i.to_le_bytes()).unwrap();
            assert_eq!(srx.recv_cancellable(&mut buf, LONG, &c).unwrap(), 4);
        }
        c.cancel();
        assert_eq!(rx.recv_frame_cancellable(&mut buf[..], None, &c), Err(Error::Cancelled));
        assert_eq!(srx.recv_cancellable(&mut buf, None, &c), Err(Error::Cancelled));
        c.reset();
    });
    assert_eq!(count, 0);
}

#[test]
fn shm_mutex_semaphore_event() {
    use ember_linux::shm::sync::SyncSegment;
    let n = format!("/{}", unique("sync"));
    let seg = SyncSegment::create(Backing::Named(&n), 64, 5).unwrap();
    let (m, sem, ev) = (seg.mutex(0).unwrap(), seg.semaphore(8).unwrap(), seg.event(16).unwrap());
    let c = Canceler::new().unwrap();
    // A mutex another thread holds.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _g = m.lock(None).unwrap();
            locked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        locked_rx.recv().unwrap();
        cancel_during(&c, || m.lock_cancellable(None, &c).map(drop));
        cancel_during(&c, || m.lock_unguarded_with(LONG, Some(&c)));
        release_tx.send(()).unwrap();
    });
    drop(m.lock_cancellable(LONG, &c).unwrap());
    cancel_during(&c, || sem.wait_with(None, Some(&c)));
    sem.post().unwrap();
    sem.wait_with(LONG, Some(&c)).unwrap();
    let seen = ev.current();
    cancel_during(&c, || ev.wait_change_with(seen, None, Some(&c)));
    ev.notify_all();
    assert_ne!(ev.wait_change_with(seen, LONG, Some(&c)).unwrap(), seen);
}

#[test]
fn signalfd() {
    use ember_linux::signal::{self, SigSet, SignalFd};
    let set = SigSet::of(&[signal::SIGUSR1]);
    signal::block(set).unwrap();
    let mut fd = SignalFd::new(set, false).unwrap();
    let c = Canceler::new().unwrap();
    cancel_during(&c, || fd.recv_with(None, Some(&c)));
    cancel_during(&c, || fd.recv_with(LONG, Some(&c)));
    assert_eq!(fd.recv_timeout(Some(Duration::from_millis(20))).err(), Some(Error::TimedOut));
    signal::send_to_thread(rustix::thread::gettid().as_raw_nonzero().get(), signal::SIGUSR1).unwrap();
    assert_eq!(fd.recv_with(LONG, Some(&c)).unwrap().signal, signal::SIGUSR1);
}

#[test]
fn rpc_call_and_serve() {
    use ember_linux::poll::Deadline;
    use ember_linux::rpc::{CallError, Client, Server};
    let (mut a, mut b) = uds::seqpacket_pair().unwrap();
    a.set_max_frame(1024);
    b.set_max_frame(1024);
    let mut client: Box<Client<ember_linux::socket::PacketSocket, 4, 256, 1024>> = Box::new(Client::new(a).unwrap());
    let mut server: Box<Server<ember_linux::socket::PacketSocket, 1024, 1024>> = Box::new(Server::new(b).unwrap());
    let c = Canceler::new().unwrap();
    // Nobody serves: the wait for the response is cancelled.
    let t = client.start(1, &"ping", LONG).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            c.cancel();
        });
        match client.wait_raw_until(t, &mut Deadline::after(None).with_canceler(Some(&c))) {
            Err(CallError::Local(e)) => assert_eq!(e, Error::Cancelled),
            other => panic!("{:?}", other.map(|p| p.len())),
        }
    });
    client.cancel(t);
    c.reset();
    // A cancelled deadline sends nothing.
    c.cancel();
    assert_eq!(client.start(2, &"pong", LONG).map(drop), Ok(()));
    assert_eq!(
        client.start_until(3, &"never sent", &mut Deadline::after(LONG).with_canceler(Some(&c))).map(drop),
        Err(Error::Cancelled)
    );
    c.reset();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = server.recv_request(LONG).unwrap();
        seen.push(r.kind);
    }
    assert_eq!(seen, [1, 2]);
    assert_eq!(server.recv_request(Some(Duration::ZERO)).map(|r| r.kind).err(), Some(Error::TimedOut));
    // No request: serving is cancelled.
    cancel_during(&c, || {
        server.serve_one_until(&mut Deadline::after(None).with_canceler(Some(&c)), &mut |_, _, out| out.respond(&()))
    });
}

#[test]
fn accepts() {
    let c = Canceler::new().unwrap();
    let name = unique("accept");
    let l = UdsListener::bind_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    cancel_during(&c, || l.accept_stream_timeout::<64>(None, Some(&c)).map(drop));
    assert_eq!(l.accept_stream_timeout::<64>(Some(Duration::from_millis(10)), None).err(), Some(Error::TimedOut));
    let _peer = uds::connect_stream::<64>(UnixName::Abstract(name.as_bytes())).unwrap();
    l.accept_stream_timeout::<64>(LONG, Some(&c)).unwrap();

    let t = net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    cancel_during(&c, || t.accept_timeout::<64>(None, Some(&c)).map(drop));
    assert_eq!(t.accept_timeout::<64>(Some(Duration::from_millis(10)), None).err(), Some(Error::TimedOut));
    let _peer: ember_linux::socket::StreamSocket<64> = net::tcp_connect(t.local_addr().unwrap(), LONG).unwrap();
    t.accept_timeout::<64>(LONG, Some(&c)).unwrap();
    // A cancellable connect to a listener that answers.
    let _other: ember_linux::socket::StreamSocket<64> =
        net::tcp_connect_cancellable(t.local_addr().unwrap(), None, &c).unwrap();
}
