//! Request/response across real processes, over every bidirectional transport: Unix stream
//! and seqpacket sockets, a pipe pair, a POSIX message queue pair, a pair of shared-memory
//! SPSC rings.
//!
//! Its own `main` (`harness = false`): the server is this binary again, run with
//! `--peer <transport> ...`.

mod common;
use ember_test_support as counting;

use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ember_linux::Error;
use ember_linux::mq::{self, MessageQueue};
use ember_linux::pipe::{StreamReader, Writer};
use ember_linux::rpc::{CallError, Client, Duplex, Failure, Link, MaybeFd, Responder, Server, ShmLink, decode};
use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use ember_linux::socket::{PacketSocket, StreamSocket};
use ember_linux::uds::{self, UdsListener, UnixName};

/// Request kinds of the test protocol.
const ADD: u32 = 1;
const BIG: u32 = 2;
const SLOW: u32 = 3;
const DIE: u32 = 4;
const FAIL: u32 = 5;
const UNKNOWN: u32 = 99;

const FRAME: usize = 4096;
const FP: u64 = 0xE3BE_5EED_0000_0020;
const T: Duration = Duration::from_secs(5);

type TestClient<L> = Client<L, 4, 256, FRAME>;

static N: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!("ember-rpc-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The server's answers, shared by every transport. `SLOW` is answered after the next
/// request (out of order); `DIE` ends the process without answering.
fn serve<L: Link + MaybeFd>(link: L) {
    let mut server: Server<L, FRAME, FRAME> = Server::new(link).unwrap();
    static BYTES: [u8; 2048] = [0xA5; 2048];
    let mut slow: Option<u32> = None;
    loop {
        let r = match server.recv_request(Some(Duration::from_secs(20))) {
            Ok(r) => r,
            Err(Error::PeerGone) => return,
            Err(e) => panic!("server: {e}"),
        };
        let payload = server.payload(&r).to_vec();
        let sent = match r.kind {
            ADD => match decode::<(u32, u32)>(&payload) {
                Ok((a, b)) => server.respond(ADD, r.seq, &a.wrapping_add(b)),
                Err(f) => server.respond_error(ADD, r.seq, &f),
            },
            BIG => match decode::<u32>(&payload) {
                Ok(n) => server.respond(BIG, r.seq, &BYTES[..n as usize]),
                Err(f) => server.respond_error(BIG, r.seq, &f),
            },
            SLOW => {
                slow = Some(r.seq);
                continue;
            }
            FAIL => server.respond_error(FAIL, r.seq, &Failure::new(300, "asked to fail")),
            DIE => std::process::exit(0),
            kind => server.respond_error(kind, r.seq, &Failure::new(Failure::UNKNOWN_KIND, "no such kind")),
        };
        sent.unwrap();
        if let Some(seq) = slow.take() {
            server.respond(SLOW, seq, &"late").unwrap();
        }
    }
}

/// `serve_one` with a handler, driven by the poller with zero timeouts, in a thread; the
/// client in this one.
fn serve_one_in_a_poller_loop() {
    use ember_linux::poll::{Interest, Poller};
    let (a, b) = uds::stream_pair::<FRAME>().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        let mut server: Server<StreamSocket<FRAME>, FRAME, FRAME> = Server::new(b).unwrap();
        let mut poller: Poller<4> = Poller::new().unwrap();
        poller.add(server.link(), 1, Interest::READ).unwrap();
        let mut answered = 0u32;
        let mut handler = |kind: u32, p: &[u8], out: &mut Responder<'_>| -> Result<(), Failure> {
            match kind {
                ADD => {
                    let (x, y): (u32, u32) = decode(p)?;
                    out.respond(&x.wrapping_add(y))
                }
                // Returns without responding: the client gets NO_RESPONSE.
                SLOW => Ok(()),
                _ => Err(Failure::new(Failure::UNKNOWN_KIND, "no such kind")),
            }
        };
        while !stop2.load(Ordering::Relaxed) {
            let ready = poller.wait(Some(Duration::from_millis(20))).unwrap().count();
            if ready == 0 {
                continue;
            }
            loop {
                match server.serve_one(Some(Duration::ZERO), &mut handler) {
                    Ok(_) => answered += 1,
                    Err(Error::TimedOut) => break,
                    Err(Error::PeerGone) => return answered,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        answered
    });
    let mut c: Box<TestClient<StreamSocket<FRAME>>> = Box::new(Client::new(a).unwrap());
    let ts: Vec<_> = (0..4u32).map(|i| c.start(ADD, &(i, 1u32), Some(T)).unwrap()).collect();
    for (i, t) in ts.into_iter().enumerate() {
        assert_eq!(c.wait::<u32>(t, Some(T)), Ok(i as u32 + 1));
    }
    assert_eq!(
        c.call::<_, u32>(SLOW, &(), Some(T)),
        Err(CallError::Remote { code: Failure::NO_RESPONSE, message: "the handler did not respond" })
    );
    // A corrupt frame (bad CRC) sent to the server is skipped, not fatal: the next call works.
    {
        use std::os::fd::AsFd;
        let mut bad = [0u8; 64];
        let n = ember_core::message::encode(ADD, 999, &(1u32, 1u32), &mut bad).unwrap().len();
        bad[n - 1] ^= 0xFF;
        rustix::io::write(c.link().as_fd(), &bad[..n]).unwrap();
    }
    assert_eq!(c.call::<_, u32>(ADD, &(5u32, 6u32), Some(T)), Ok(11));
    // A cancelled request frees its slot; its late response is dropped as a stray.
    let strays = c.strays();
    let t = c.start(ADD, &(1u32, 2u32), Some(T)).unwrap();
    c.cancel(t);
    assert_eq!(c.call::<_, u32>(ADD, &(2u32, 2u32), Some(T)), Ok(4));
    assert_eq!(c.strays(), strays + 1);
    // A zero timeout with nothing there: TimedOut at once, and the request is given up.
    let t = c.start(UNKNOWN, &(), Some(T)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        c.wait::<u32>(t, Some(Duration::ZERO)).map_err(|e| e.to_string()),
        Err("remote error 1: no such kind".into())
    );
    stop.store(true, Ordering::Relaxed);
    assert_eq!(h.join().unwrap(), 9);
}

fn peer(args: &[String]) {
    match args[0].as_str() {
        "uds-stream" => {
            let s: StreamSocket<FRAME> = uds::connect_stream(UnixName::Path(&args[1])).unwrap();
            serve(s)
        }
        "uds-seqpacket" => {
            let mut s: PacketSocket = uds::connect_seqpacket(UnixName::Path(&args[1])).unwrap();
            s.set_max_frame(FRAME);
            serve(s)
        }
        "pipe" => {
            use std::os::fd::AsFd;
            let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().unwrap();
            let rx: StreamReader<FRAME> = StreamReader::from_fd(dup(std::io::stdin().as_fd()));
            let tx = Writer::stream(dup(std::io::stdout().as_fd()));
            serve(Duplex::new(tx, rx).unwrap())
        }
        "mq" => {
            let rx = MessageQueue::open(&args[1], mq::Access::Receive).unwrap();
            let tx = MessageQueue::open(&args[2], mq::Access::Send).unwrap();
            serve(Duplex::new(tx, rx).unwrap())
        }
        "shm" => {
            let tx = SpscSender::create(Backing::Named(&args[2]), 8 * 1024, FP).unwrap();
            println!("ready");
            let rx = SpscReceiver::open(&args[1], FP).unwrap();
            serve(ShmLink { tx, rx })
        }
        other => panic!("unknown peer {other}"),
    }
}

fn spawn(args: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    common::me().arg("--peer").args(args).stdin(stdin).stdout(stdout).spawn().unwrap()
}

/// Every behaviour, over one client link to a fresh server process.
fn exercise<L: Link + MaybeFd>(link: L, mut server: Child) {
    let mut c: Box<TestClient<L>> = Box::new(Client::new(link).unwrap());
    // A call.
    assert_eq!(c.call::<_, u32>(ADD, &(40u32, 2u32), Some(T)), Ok(42));
    // Many in flight, answered out of order: SLOW is answered after the next request.
    let slow = c.start(SLOW, &(), Some(T)).unwrap();
    let adds: Vec<_> = (0..3u32).map(|i| c.start(ADD, &(i, 100u32), Some(T)).unwrap()).collect();
    assert!(matches!(c.start(ADD, &(0u32, 0u32), Some(T)), Err(Error::WouldBlock)), "4 slots, 4 in flight");
    for (i, t) in adds.into_iter().enumerate().rev() {
        assert_eq!(c.wait::<u32>(t, Some(T)), Ok(i as u32 + 100));
    }
    assert_eq!(c.wait::<&str>(slow, Some(T)), Ok("late"));
    // Errors: the handler's, an unknown kind.
    assert_eq!(c.call::<_, u32>(FAIL, &(), Some(T)), Err(CallError::Remote { code: 300, message: "asked to fail" }));
    assert_eq!(
        c.call::<_, u32>(UNKNOWN, &(), Some(T)),
        Err(CallError::Remote { code: Failure::UNKNOWN_KIND, message: "no such kind" })
    );
    // A response larger than the slot (256 bytes): a typed error, and the link still works.
    assert!(matches!(c.call::<_, &[u8]>(BIG, &1000u32, Some(T)), Err(CallError::Local(Error::TooLarge { .. }))));
    assert_eq!(c.call::<_, &[u8]>(BIG, &100u32, Some(T)).map(|b| b.len()), Ok(100));
    assert_eq!(c.call::<_, u32>(ADD, &(1u32, 1u32), Some(T)), Ok(2));
    // Requests and responses allocate nothing.
    let n = counting::allocations(|| {
        for i in 0..50u32 {
            assert_eq!(c.call::<_, u32>(ADD, &(i, 1u32), Some(T)), Ok(i + 1));
        }
    });
    assert_eq!(n, 0, "calls allocated");
    // A response that does not come in time: TimedOut after the timeout, not before and not
    // much after (SLOW is answered only with the next request's response, then a stray).
    let t = Instant::now();
    let r = c.call::<_, &str>(SLOW, &(), Some(Duration::from_millis(300)));
    let waited = t.elapsed();
    assert_eq!(r, Err(CallError::Local(Error::TimedOut)));
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500), "{waited:?}");
    let strays = c.strays();
    assert_eq!(c.call::<_, u32>(ADD, &(2u32, 3u32), Some(T)), Ok(5));
    // It comes after that ADD's response: the next call drops it.
    assert_eq!(c.call::<_, u32>(ADD, &(3u32, 3u32), Some(T)), Ok(6));
    assert_eq!(c.strays(), strays + 1, "the late SLOW response is dropped");
    // The server dies mid-request: the call ends (PeerGone, or TimedOut where death cannot
    // be seen), it never hangs.
    let t = Instant::now();
    let r = c.call::<_, u32>(DIE, &(), Some(Duration::from_secs(2)));
    assert!(matches!(r, Err(CallError::Local(Error::PeerGone | Error::TimedOut))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(4));
    server.wait().unwrap();
}

fn over_uds_stream() {
    let path = format!("/tmp/{}.sock", unique("stream"));
    let l = UdsListener::bind_stream(UnixName::Path(&path)).unwrap();
    let server = spawn(&["uds-stream", &path], Stdio::null(), Stdio::inherit());
    let (s, _): (StreamSocket<FRAME>, _) = l.accept_stream().unwrap();
    exercise(s, server);
}

/// A peer that floods the client with frames that answer nothing: the call still ends at
/// its timeout (each stray would otherwise restart the wait). Over a seqpacket pair, whose
/// link waits in a blocking `recv` under `SO_RCVTIMEO`.
fn strays_do_not_hold_a_call_past_its_timeout() {
    use std::os::fd::AsFd;
    let (mut a, b) = uds::seqpacket_pair().unwrap();
    a.set_max_frame(FRAME);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        let mut frame = [0u8; 64];
        let n =
            ember_core::message::encode_with(ember_core::Flags::RESPONSE, ADD, 777, &0u32, &mut frame).unwrap().len();
        let mut sent = 0u32;
        while !stop2.load(Ordering::Relaxed) {
            if rustix::net::send(b.as_fd(), &frame[..n], rustix::net::SendFlags::DONTWAIT).is_ok() {
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, b)
    });
    let mut c: Box<TestClient<PacketSocket>> = Box::new(Client::new(a).unwrap());
    let t = Instant::now();
    let r = c.call::<_, u32>(ADD, &(1u32, 1u32), Some(Duration::from_millis(200)));
    let waited = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    // The peer's end stays open (returned by the thread) for the last check.
    let (sent, _peer) = h.join().unwrap();
    assert_eq!(r, Err(CallError::Local(Error::TimedOut)));
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_millis(1200), "{waited:?}");
    assert!(sent >= 10 && c.strays() >= 10, "{sent} sent, {} strays", c.strays());
    // The zero timeout of a poller loop never blocks, though the socket is in blocking mode.
    let ticket = c.start(ADD, &(1u32, 1u32), Some(T)).unwrap();
    let t = Instant::now();
    assert_eq!(c.wait::<u32>(ticket, Some(Duration::ZERO)), Err(CallError::Local(Error::TimedOut)));
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
}

fn over_uds_seqpacket() {
    let path = format!("/tmp/{}.sock", unique("seqpacket"));
    let l = UdsListener::bind_seqpacket(UnixName::Path(&path)).unwrap();
    let server = spawn(&["uds-seqpacket", &path], Stdio::null(), Stdio::inherit());
    let (mut s, _) = l.accept_seqpacket().unwrap();
    s.set_max_frame(FRAME);
    exercise(s, server);
}

fn over_a_pipe_pair() {
    let mut server = spawn(&["pipe"], Stdio::piped(), Stdio::piped());
    let tx = Writer::stream(OwnedFd::from(server.stdin.take().unwrap()));
    let rx: StreamReader<FRAME> = StreamReader::from_fd(OwnedFd::from(server.stdout.take().unwrap()));
    exercise(Duplex::new(tx, rx).unwrap(), server);
}

fn over_a_message_queue_pair() {
    let (to_server, to_client) = (format!("/{}", unique("req")), format!("/{}", unique("resp")));
    let tx = MessageQueue::create(&to_server, 8, FRAME, mq::Access::Send).unwrap();
    let rx = MessageQueue::create(&to_client, 8, FRAME, mq::Access::Receive).unwrap();
    let server = spawn(&["mq", &to_server, &to_client], Stdio::null(), Stdio::inherit());
    exercise(Duplex::new(tx, rx).unwrap(), server);
}

fn over_shared_memory_rings() {
    let (req, resp) = (format!("/{}", unique("req")), format!("/{}", unique("resp")));
    let tx = SpscSender::create(Backing::Named(&req), 8 * 1024, FP).unwrap();
    let mut server = spawn(&["shm", &req, &resp], Stdio::null(), Stdio::piped());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let rx = SpscReceiver::open(&resp, FP).unwrap();
    // The server creates the response ring and exits without dropping it: unlink it here.
    let _ = rustix::shm::unlink(resp.as_str());
    exercise(ShmLink { tx, rx }, server);
}

/// Requests and responses carry the link's integrity: unchecked on a Unix socket by
/// default, checked once the link's sender is set so (docs/wire-format.md §4.4); each side
/// reads the other's frames whatever they carry.
fn integrity_follows_the_link() {
    use ember_linux::FrameReceiver;
    use ember_linux::FrameSender;
    use ember_linux::core::frame::{Flags, Frame, Integrity};
    let integrity = |b: &[u8]| Frame::new_checked(b).unwrap().integrity();
    let mut buf = vec![0u8; FRAME];
    let mut scratch = [0u8; 64];
    // A client, and a raw peer in place of the server.
    let (mut a, mut b) = uds::seqpacket_pair().unwrap();
    a.set_max_frame(FRAME);
    let mut c: Box<TestClient<PacketSocket>> = Box::new(Client::new(a).unwrap());
    for want in [Integrity::Unchecked, Integrity::Checked] {
        if want == Integrity::Checked {
            c.link().set_integrity(Integrity::Checked);
        }
        assert_eq!(Link::frame_integrity(c.link()), want);
        let t = c.start(ADD, &(1u32, 2u32), Some(T)).unwrap();
        let n = b.recv_frame(&mut buf).unwrap();
        assert_eq!(integrity(&buf[..n]), want, "the request");
        let seq = Frame::new_checked(&buf[..n]).unwrap().seq();
        // A checked response to an unchecked request and the reverse: both are taken.
        let flags = Flags::RESPONSE | if want == Integrity::Checked { Flags::UNCHECKED } else { Flags::empty() };
        let r = ember_linux::core::message::encode_with(flags, ADD, seq, &3u32, &mut scratch).unwrap();
        b.send_frame(r).unwrap();
        assert_eq!(c.wait::<u32>(t, Some(T)), Ok(3));
    }
    // A server, and a raw peer in place of the client: `respond`, the `Responder` of
    // `serve_one` and an error response all carry the link's integrity.
    let (mut a, mut b) = uds::seqpacket_pair().unwrap();
    b.set_max_frame(FRAME);
    let mut s: Server<PacketSocket, FRAME, FRAME> = Server::new(b).unwrap();
    for want in [Integrity::Unchecked, Integrity::Checked] {
        s.link().set_integrity(want);
        let n = ember_linux::core::message::encode(ADD, 1, &(5u32, 6u32), &mut scratch).unwrap().len();
        a.send_frame(&scratch[..n]).unwrap();
        let r = s.recv_request(Some(T)).unwrap();
        s.respond(ADD, r.seq, &11u32).unwrap();
        let n = a.recv_frame(&mut buf).unwrap();
        assert_eq!(integrity(&buf[..n]), want, "respond");
        let n = ember_linux::core::message::encode(ADD, 2, &(5u32, 7u32), &mut scratch).unwrap().len();
        a.send_frame(&scratch[..n]).unwrap();
        s.serve_one(Some(T), &mut |_, p: &[u8], out: &mut Responder<'_>| {
            let (x, y): (u32, u32) = decode(p)?;
            out.respond(&(x + y))
        })
        .unwrap();
        let n = a.recv_frame(&mut buf).unwrap();
        assert_eq!(integrity(&buf[..n]), want, "the responder");
        let n = ember_linux::core::message::encode(UNKNOWN, 3, &(), &mut scratch).unwrap().len();
        a.send_frame(&scratch[..n]).unwrap();
        s.serve_one(Some(T), &mut |_, _: &[u8], _: &mut Responder<'_>| Err(Failure::new(300, "no"))).unwrap();
        let n = a.recv_frame(&mut buf).unwrap();
        let f = Frame::new_checked(&buf[..n]).unwrap();
        assert!(f.flags().contains(Flags::RESPONSE | Flags::ERROR));
        assert_eq!(f.integrity(), want, "an error response");
    }
}

fn main() {
    common::main(
        &[
            ("integrity_follows_the_link", integrity_follows_the_link),
            ("over_uds_stream", over_uds_stream),
            ("over_uds_seqpacket", over_uds_seqpacket),
            ("over_a_pipe_pair", over_a_pipe_pair),
            ("over_a_message_queue_pair", over_a_message_queue_pair),
            ("over_shared_memory_rings", over_shared_memory_rings),
            ("serve_one_in_a_poller_loop", serve_one_in_a_poller_loop),
            ("strays_do_not_hold_a_call_past_its_timeout", strays_do_not_hold_a_call_past_its_timeout),
        ],
        peer,
    );
}
