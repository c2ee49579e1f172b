//! The generic transport conformance suite: the same tests over every transport, written
//! once against `FrameSender`/`FrameReceiver` and instantiated per transport by the test
//! binaries (`transports.rs`, `sockets.rs`).

// Shared by two test binaries, each of which uses a different subset.
#![allow(dead_code)]

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};

use ember_core::frame::{Flags, FrameRepr};
use ember_linux::pipe::{PIPE_BUF, StreamReader};
use ember_linux::socket::StreamSocket;
use ember_linux::{Endpoint, Error, FrameReceiver, FrameSender, Integrity};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `ember-test-<pid>-<tag>-<n>` (prefix it with
/// `/` for a queue, `/tmp/` for a path; use it as is for an abstract socket).
pub fn unique_name(tag: &str) -> String {
    format!("ember-test-{}-{tag}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A counter unique to this process's calls (for SysV keys and the like).
pub fn next_unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A unique path under `/tmp`.
pub fn unique_path(tag: &str) -> String {
    format!("/tmp/{}", unique_name(tag))
}

/// Removes a path when dropped.
pub struct Cleanup(pub String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How many times the `SIGUSR1` handler of [`InterruptingSigusr1`] ran.
pub static HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_usr1(_: i32) {
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Waits (up to 10 s) until thread `tid` of this process is asleep in a system call
/// (state `S` in `/proc/self/task/<tid>/stat`), so a signal sent now interrupts it.
pub fn wait_until_blocked(tid: i32) {
    let path = format!("/proc/self/task/{tid}/stat");
    let started = std::time::Instant::now();
    loop {
        let stat = std::fs::read_to_string(&path).unwrap();
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]);
        if state == Some(b'S') {
            return;
        }
        assert!(started.elapsed().as_secs() < 10, "thread {tid} never blocked: {stat}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Interrupts thread `tid`, blocked in a system call, `times` times with `SIGUSR1` (the
/// [`InterruptingSigusr1`] handler must be installed), checking each signal was handled.
pub fn interrupt(tid: i32, times: usize) {
    for _ in 0..times {
        wait_until_blocked(tid);
        let before = HANDLED.load(Ordering::Relaxed);
        ember_linux::signal::send_to_thread(tid, ember_linux::signal::SIGUSR1).unwrap();
        let started = std::time::Instant::now();
        while HANDLED.load(Ordering::Relaxed) == before {
            assert!(started.elapsed().as_secs() < 10, "SIGUSR1 never handled");
            std::thread::yield_now();
        }
    }
}

/// While alive, `SIGUSR1` runs a handler that does nothing, installed without
/// `SA_RESTART`, so it interrupts blocking calls with `EINTR`; the default comes back on
/// drop.
pub struct InterruptingSigusr1;

impl InterruptingSigusr1 {
    pub fn install() -> InterruptingSigusr1 {
        // SAFETY: the handler does nothing (async-signal-safe); no other code of the test
        // binary uses SIGUSR1 unblocked while it is installed.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr1 as extern "C" fn(i32) as libc::sighandler_t;
            sa.sa_flags = 0;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        InterruptingSigusr1
    }
}

impl Drop for InterruptingSigusr1 {
    fn drop(&mut self) {
        // SAFETY: back to the default disposition.
        unsafe {
            libc::signal(libc::SIGUSR1, libc::SIG_DFL);
        }
    }
}

/// Sends until the transport reports the peer gone (a TCP or UDP peer is known gone only
/// after its reset or port-unreachable answer comes back), for up to 5 s; returns the last
/// result.
pub fn send_until_gone(tx: &mut impl FrameSender) -> Result<(), Error> {
    let mut buf = [0u8; 64];
    let n = frame(3, 10, &mut buf);
    let started = std::time::Instant::now();
    loop {
        let result = tx.send_frame(&buf[..n]);
        if result.is_err() || started.elapsed().as_secs() >= 5 {
            return result;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Waits up to 10 s for `fd` to be readable (a peer's connection or message), so a peer
/// that died makes the test fail instead of hang.
pub fn wait_readable(fd: impl AsFd) {
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec { tv_sec: 10, tv_nsec: 0 };
    let n = rustix::event::poll(&mut fds, Some(&ts)).unwrap();
    assert_eq!(n, 1, "nothing arrived within 10 s (is the peer alive?)");
}

/// Stream receivers, which count the garbage bytes they skipped.
pub trait Dropped: FrameReceiver {
    /// Garbage bytes skipped so far.
    fn dropped(&self) -> u64;
}

impl<const N: usize> Dropped for StreamReader<N> {
    fn dropped(&self) -> u64 {
        self.dropped_bytes()
    }
}

impl<const N: usize> Dropped for StreamSocket<N> {
    fn dropped(&self) -> u64 {
        self.dropped_bytes()
    }
}

/// Frame `seq` of the test stream: payload length varies with `seq` up to `max_payload`.
pub fn frame(seq: u32, max_payload: usize, buf: &mut [u8]) -> usize {
    let len = (seq as usize * 37) % (max_payload + 1);
    let payload: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
    let repr = FrameRepr { flags: Flags::empty(), kind: 0x77, seq, payload_len: len };
    repr.emit_with_payload(&payload, buf).unwrap().len()
}

pub fn check_frame(seq: u32, bytes: &[u8], max_payload: usize) {
    let mut want = vec![0u8; max_payload + 64];
    let n = frame(seq, max_payload, &mut want);
    assert_eq!(bytes, &want[..n], "frame {seq} differs");
}

/// What a transport under test can do.
pub struct Caps {
    pub name: &'static str,
    /// Largest payload the suite sends (frame limit minus the header).
    pub max_payload: usize,
    /// The sender's default integrity on this medium.
    pub integrity: Integrity,
}

// ---- the generic suite ----------------------------------------------------------------

/// The checks every transport passes: order and sizes, typed messages, nonblocking empty
/// receive, bad frames refused, a too-small buffer refused without consuming.
pub fn core_suite(caps: &Caps, tx: &mut impl FrameSender, rx: &mut (impl FrameReceiver + Endpoint)) {
    order_and_sizes(caps, tx, rx);
    typed(tx, rx);
    nonblocking_empty(rx);
    rejects_bad_frames(caps, tx);
    small_buffer_consumes_nothing(caps, tx, rx);
    integrity_settings(caps, tx, rx);
}

/// Integrity by medium: the sender's default, both settings through the codec, a sender set
/// to `Checked` refusing a ready-made unchecked frame, and a receiver that requires checked
/// payloads refusing unchecked frames with a typed error and going on with the next.
pub fn integrity_settings(caps: &Caps, tx: &mut impl FrameSender, rx: &mut impl FrameReceiver) {
    let name = caps.name;
    assert_eq!(tx.integrity(), caps.integrity, "{name}: the medium's default");
    assert!(!rx.requires_checked(), "{name}: receivers accept both kinds by default");
    let mut scratch = [0u8; 256];
    let mut out = vec![0u8; rx.max_frame().max(PIPE_BUF)];
    let recv_seq = |rx: &mut dyn FnMut(&mut [u8]) -> Result<usize, Error>, out: &mut [u8]| {
        rx(out).map(|n| {
            let frame = ember_core::Frame::new_checked(&out[..n]).unwrap();
            (frame.seq(), frame.integrity())
        })
    };
    for (seq, integrity) in [(1, Integrity::Checked), (2, Integrity::Unchecked)] {
        tx.set_integrity(integrity);
        assert_eq!(tx.integrity(), integrity);
        tx.send_msg(5, seq, &("level", 7u32), &mut scratch).unwrap();
        let n = rx.recv_frame(&mut out).unwrap();
        assert_eq!(ember_core::Frame::new_checked(&out[..n]).unwrap().integrity(), integrity, "{name}");
        let (repr, v): (_, (&str, u32)) = ember_core::message::decode(&out[..n]).unwrap();
        assert_eq!((repr.seq, v), (seq, ("level", 7)), "{name}");
    }
    // Ready-made frames: an unchecked one is refused by a sender set to `Checked` (nothing
    // is sent); a checked one is valid on any link.
    let raw = |seq: u32, integrity: Integrity| {
        let mut b = vec![0u8; 64];
        let repr = FrameRepr { flags: integrity.flags(), kind: 0x79, seq, payload_len: 0 };
        let n = repr.emit_with_payload(b"raw", &mut b).unwrap().len();
        b.truncate(n);
        b
    };
    tx.set_integrity(Integrity::Checked);
    let refused = Error::Codec(ember_core::Error::UncheckedPayload);
    assert_eq!(tx.send_frame(&raw(3, Integrity::Unchecked)), Err(refused), "{name}");
    tx.set_integrity(Integrity::Unchecked);
    tx.send_frame(&raw(4, Integrity::Checked)).unwrap();
    // A receiver that requires checked payloads.
    rx.require_checked(true);
    assert!(rx.requires_checked());
    tx.send_frame(&raw(5, Integrity::Unchecked)).unwrap();
    tx.send_msg(5, 6, &("level", 8u32), &mut scratch).unwrap();
    tx.set_integrity(Integrity::Checked);
    tx.send_msg(5, 7, &("level", 9u32), &mut scratch).unwrap();
    let mut recv = |b: &mut [u8]| rx.recv_frame(b);
    assert_eq!(recv_seq(&mut recv, &mut out), Ok((4, Integrity::Checked)), "{name}");
    assert_eq!(recv_seq(&mut recv, &mut out), Err(refused), "{name}: a ready-made unchecked frame");
    assert_eq!(recv_seq(&mut recv, &mut out), Err(refused), "{name}: an unchecked message");
    assert_eq!(recv_seq(&mut recv, &mut out), Ok((7, Integrity::Checked)), "{name}: the next frame");
    rx.require_checked(false);
    tx.set_integrity(caps.integrity);
}

/// Frames arrive complete, in order, for every size up to the limit.
pub fn order_and_sizes(caps: &Caps, tx: &mut impl FrameSender, rx: &mut impl FrameReceiver) {
    let mut out = vec![0u8; rx.max_frame().max(PIPE_BUF)];
    let mut buf = vec![0u8; caps.max_payload + 64];
    for seq in 0..200 {
        let n = frame(seq, caps.max_payload, &mut buf);
        tx.send_frame(&buf[..n]).unwrap();
        let got = rx.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..got], caps.max_payload);
    }
    // A burst, then the reads.
    for seq in 200..210 {
        let n = frame(seq, caps.max_payload.min(300), &mut buf);
        tx.send_frame(&buf[..n]).unwrap();
    }
    for seq in 200..210 {
        let got = rx.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..got], caps.max_payload.min(300));
    }
}

/// Typed messages through the codec.
pub fn typed(tx: &mut impl FrameSender, rx: &mut impl FrameReceiver) {
    let mut scratch = [0u8; 256];
    tx.send_msg(5, 9, &("pump", 42u32, [1.5f32; 3]), &mut scratch).unwrap();
    let mut out = vec![0u8; rx.max_frame().max(PIPE_BUF)];
    let (repr, (name, v, f)): (_, (&str, u32, [f32; 3])) = rx.recv_msg(&mut out).unwrap();
    assert_eq!((repr.kind, repr.seq, name, v, f), (5, 9, "pump", 42, [1.5; 3]));

    // By Message::KIND: the type gives the kind on send and is checked on receive.
    #[derive(serde::Serialize, serde::Deserialize, ember_core::message::MaxSize, ember_core::message::Message)]
    #[ember(kind = 0x0301)]
    struct Level {
        tank: u8,
        millimetres: u32,
    }
    #[derive(serde::Serialize, serde::Deserialize, ember_core::message::Message)]
    #[ember(kind = 0x0302)]
    struct Other(u8);
    let mut scratch = [0u8; ember_core::max_frame_len::<Level>()];
    tx.send_message(7, &Level { tank: 2, millimetres: 1234 }, &mut scratch).unwrap();
    let (repr, level): (_, Level) = rx.recv_message(&mut out).unwrap();
    assert_eq!((repr.kind, repr.seq, level.tank, level.millimetres), (0x0301, 7, 2, 1234));
    // A frame of another kind is refused by a typed receive, and consumed.
    tx.send_message(8, &Other(1), &mut scratch).unwrap();
    tx.send_message(9, &Level { tank: 3, millimetres: 5 }, &mut scratch).unwrap();
    assert_eq!(
        rx.recv_message::<Level>(&mut out).err(),
        Some(Error::Codec(ember_core::Error::UnexpectedKind { expected: 0x0301, found: 0x0302 }))
    );
    let (repr, level): (_, Level) = rx.recv_message(&mut out).unwrap();
    assert_eq!((repr.seq, level.tank), (9, 3));
}

/// Nonblocking: an empty receiver says `WouldBlock` at once.
pub fn nonblocking_empty(rx: &mut (impl FrameReceiver + Endpoint)) {
    rx.set_nonblocking(true).unwrap();
    let mut out = vec![0u8; rx.max_frame().max(PIPE_BUF)];
    assert_eq!(rx.recv_frame(&mut out), Err(Error::WouldBlock));
    rx.set_nonblocking(false).unwrap();
}

/// Bad input: not a frame, and too large for the transport.
pub fn rejects_bad_frames(caps: &Caps, tx: &mut impl FrameSender) {
    assert!(matches!(tx.send_frame(b"not a frame at all, too short"), Err(Error::Codec(_))));
    let mut big = vec![0u8; tx.max_frame() + 64];
    let repr = FrameRepr { flags: Flags::empty(), kind: 1, seq: 1, payload_len: 0 };
    if tx.max_frame() < 1 << 20 {
        let n = repr.emit_with_payload(&vec![0u8; tx.max_frame()], &mut big).unwrap().len();
        assert_eq!(tx.send_frame(&big[..n]), Err(Error::TooLarge { len: n, max: tx.max_frame() }), "{}", caps.name);
    }
}

/// A receive buffer below the frame limit is refused before anything is consumed.
pub fn small_buffer_consumes_nothing(caps: &Caps, tx: &mut impl FrameSender, rx: &mut impl FrameReceiver) {
    let mut buf = [0u8; 128];
    let n = frame(1, 20, &mut buf);
    tx.send_frame(&buf[..n]).unwrap();
    let mut small = [0u8; 16];
    assert!(matches!(rx.recv_frame(&mut small), Err(Error::BufferTooSmall { .. })), "{}", caps.name);
    let mut out = vec![0u8; rx.max_frame().max(PIPE_BUF)];
    let got = rx.recv_frame(&mut out).unwrap();
    check_frame(1, &out[..got], 20);
}

/// Pipes, FIFOs and sockets: the frame limit caps what a receive takes, it is not a size
/// every buffer must have. A buffer that holds the frame takes it (64 bytes into 64 bytes);
/// one that does not is `BufferTooSmall` with the length needed, and the frame stays for
/// the next receive.
pub fn small_buffer_that_fits(caps: &Caps, tx: &mut impl FrameSender, rx: &mut impl FrameReceiver) {
    let emit = |seq: u32, len: usize| {
        let payload: Vec<u8> = (0..len).map(|i| (seq as usize * 7 + i) as u8).collect();
        let mut out = vec![0u8; len + 64];
        let n = FrameRepr { flags: Flags::empty(), kind: 0x78, seq, payload_len: len }
            .emit_with_payload(&payload, &mut out)
            .unwrap()
            .len();
        out.truncate(n);
        out
    };
    let small = emit(1, 40);
    let big = emit(2, 1000.min(caps.max_payload));
    tx.send_frame(&small).unwrap();
    let mut exact = vec![0u8; small.len()];
    assert_eq!(rx.recv_frame(&mut exact).map_err(|e| format!("{}: {e}", caps.name)), Ok(small.len()));
    assert_eq!(exact, small, "{}", caps.name);
    tx.send_frame(&big).unwrap();
    let mut short = [0u8; 128];
    assert_eq!(rx.recv_frame(&mut short), Err(Error::BufferTooSmall { needed: big.len() }), "{}", caps.name);
    let mut out = vec![0u8; big.len()];
    assert_eq!(rx.recv_frame(&mut out).map_err(|e| format!("{}: {e}", caps.name)), Ok(big.len()));
    assert_eq!(out, big, "{}: the frame refused for a short buffer was kept whole", caps.name);
}

/// Every receiver's blocking receive takes a timeout: nothing there is `TimedOut` after at
/// least the timeout (zero: at once), and a frame that is there is returned.
pub fn timed_receive(caps: &Caps, tx: &mut impl FrameSender, rx: &mut impl ember_linux::TimedReceiver) {
    let mut out = vec![0u8; rx.max_frame().max(PIPE_BUF)];
    let t = std::time::Duration::from_millis(60);
    let started = std::time::Instant::now();
    assert_eq!(rx.recv_frame_timeout(&mut out, Some(t)), Err(Error::TimedOut), "{}", caps.name);
    assert!(started.elapsed() >= t, "{}: returned after {:?}", caps.name, started.elapsed());
    assert_eq!(rx.recv_frame_timeout(&mut out, Some(std::time::Duration::ZERO)), Err(Error::TimedOut), "{}", caps.name);
    let mut buf = [0u8; 256];
    let n = frame(3, 100.min(caps.max_payload), &mut buf);
    tx.send_frame(&buf[..n]).unwrap();
    let got = rx.recv_frame_timeout(&mut out, Some(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!(&out[..got], &buf[..n], "{}", caps.name);
    tx.send_frame(&buf[..n]).unwrap();
    let got = rx.recv_frame_timeout(&mut out, None).unwrap();
    assert_eq!(&out[..got], &buf[..n], "{}", caps.name);
}

/// Stream transports: a timed receive that runs out with half a frame read keeps that half,
/// and the next receive returns the whole frame once the rest arrives.
pub fn timed_receive_keeps_a_partial_frame(raw: &impl AsFd, rx: &mut impl ember_linux::TimedReceiver) {
    let mut buf = [0u8; 256];
    let n = frame(5, 150, &mut buf);
    rustix::io::write(raw, &buf[..n / 2]).unwrap();
    let mut out = vec![0u8; rx.max_frame()];
    assert_eq!(rx.recv_frame_timeout(&mut out, Some(std::time::Duration::from_millis(30))), Err(Error::TimedOut));
    rustix::io::write(raw, &buf[n / 2..n]).unwrap();
    let got = rx.recv_frame_timeout(&mut out, Some(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!(&out[..got], &buf[..n], "the half read before the timeout was kept");
}

/// The receiver gone: the sender gets `PeerGone`, and is not killed by `SIGPIPE`.
pub fn peer_gone_on_send(tx: &mut impl FrameSender, rx: impl FrameReceiver) {
    drop(rx);
    let mut buf = [0u8; 64];
    let n = frame(3, 10, &mut buf);
    assert_eq!(tx.send_frame(&buf[..n]), Err(Error::PeerGone));
}

/// The sender gone: the receiver gets `PeerGone` after the frames already sent.
pub fn peer_gone_on_recv(mut tx: impl FrameSender, rx: &mut impl FrameReceiver) {
    let mut buf = [0u8; 64];
    let n = frame(4, 10, &mut buf);
    tx.send_frame(&buf[..n]).unwrap();
    drop(tx);
    let mut out = vec![0u8; rx.max_frame().max(PIPE_BUF)];
    assert!(rx.recv_frame(&mut out).is_ok());
    assert_eq!(rx.recv_frame(&mut out), Err(Error::PeerGone));
}

/// Stream transports: garbage between frames is skipped, the frames all arrive.
pub fn garbage_between_frames(raw: &impl AsFd, rx: &mut impl Dropped) {
    let mut buf = [0u8; 512];
    let mut out = vec![0u8; rx.max_frame()];
    let before = rx.dropped();
    for seq in 0..20u32 {
        rustix::io::write(raw, b"\x00garbage EM\xff").unwrap();
        let n = frame(seq, 100, &mut buf);
        rustix::io::write(raw, &buf[..n]).unwrap();
    }
    for seq in 0..20u32 {
        let got = rx.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..got], 100);
    }
    assert_eq!(rx.dropped() - before, 20 * 12);
}
