//! `emberctl send` and `emberctl recv`: frames on any endpoint, from the shell.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use ember_core::frame::{self, Frame, FrameRepr, Integrity, MAX_FRAME_LEN};
use ember_core::shm::{SegmentKind, ShmError};
use ember_linux::error::Error;
use ember_linux::mq::{Access, MessageQueue};
use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
};
use ember_linux::transport::{Endpoint as _, FrameReceiver, FrameSender};
use ember_linux::uds::{self, UdsListener, UnixName};
use ember_linux::{fifo, pipe};
use rustix::fd::{AsFd, BorrowedFd};

use crate::cli::{Failure, Opts};
use crate::uri::Uri;

pub const SEND_USAGE: &str = "\
usage: emberctl send <uri> [payload words...] [options]

Sends Ember frames (docs/wire-format.md) to an endpoint. The payload is the words after the
URI joined by spaces, else --file, else --hex, else standard input.

endpoints: pipe: (standard output, or -), fifo:/path, mq:/name, uds:/path, uds-abstract:name,
  uds-seqpacket:/path, uds-dgram:/path, uds-dgram-abstract:name, shm-ring:name,
  shm-seqlock:name, shm-broadcast:name, tcp:host:port, udp:host:port
  Sockets, FIFOs and queues must have a receiver (or exist) unless --create. A shm-* send
  creates the segment (it has one writer) and leaves it in /dev/shm for the receiver.

options:
  --file <path>         payload from a file
  --hex <hex>           payload from hex digits, e.g. 0a1b2c
  --lines               one frame per line of standard input (no newline in the payload)
  --kind <n>            the frame's message kind (default 0)
  --seq <n>             the first frame's sequence number (default 0; +1 per frame)
  --count <n>           send the payload n times (default 1)
  --prio <n>            mq: message priority (default 0)
  --create              fifo/mq: create the FIFO or queue if missing (mode 0600)
  --capacity <bytes>    shm-*: data area size (default 65536)
  --checksum <on|off|auto>
                        whether the payload is covered by the frame checksum (the header
                        always is): auto (default) is the endpoint's default, on for tcp:
                        and udp:, off for pipes, FIFOs, queues, Unix sockets and shm
  --fingerprint <n>     shm-*: the type fingerprint written in the header (default 0)
  --max-msgs <n>        mq with --create: queue depth (default 10)
  --msg-size <bytes>    mq with --create: largest message (default 8192)
  --timeout <seconds>   give up waiting for a reader, a connection or room (default 5)
";

pub const RECV_USAGE: &str = "\
usage: emberctl recv <uri> [options]

Receives Ember frames from an endpoint and prints them, one line per frame.

endpoints: as `emberctl send`. A uds:, uds-abstract: or uds-seqpacket: receive listens at the
  address and takes one connection, as does tcp:; uds-dgram: and udp: bind the address; fifo: opens the FIFO
  (created with --create); mq: opens the queue (created with --create); shm-* open an
  existing segment, taking the type fingerprint from its header unless --fingerprint.

options:
  --count <n>           messages to receive (damaged ones included), 0 = until the sender
                        goes (default 1)
  --timeout <seconds>   give up after this long (default: wait as long as it takes)
  --print <how>         text (default): kind, seq, length and the payload as escaped text;
                        hex: the same with the payload in hex; header: no payload;
                        raw: the payload bytes alone, nothing else (for pipelines)
  --json                one JSON object per line and frame: {\"kind\":7,\"seq\":0,\"len\":5,
                        \"hex\":\"68656c6c6f\",\"text\":\"hello\"} (text is null unless UTF-8),
                        with prio, version, record and lost where the transport has them;
                        a damaged message is {\"damaged\":true,\"message\":n,\"error\":\"...\"}
  --create              fifo/mq: create the FIFO or queue if missing
  --unlink              remove the FIFO, queue or shm segment afterwards
  --require-checksum    refuse frames whose payload is not covered by the frame checksum
                        (sent unchecked, the default on local endpoints): each
                        is reported as damaged and skipped
  --fingerprint <n>     shm-*: refuse a segment with another fingerprint
  --max-msgs <n>        mq with --create: queue depth (default 10)
  --msg-size <bytes>    mq with --create: largest message (default 8192)

Exit status: 0 when every frame arrived, 1 on a timeout or an unreachable endpoint, 2 on a
bad URI or option, or when a frame arrived damaged (it is reported and skipped).
";

/// How long a send waits by default.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Waits until `fd` is readable, or until `deadline` ([`Error::TimedOut`]).
fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<(), Error> {
    wait_fd(fd, rustix::event::PollFlags::IN, deadline)
}

/// Retries `open` while it fails with `retry_on`, until `deadline`; then its last error.
fn retry<T>(
    deadline: Option<Instant>,
    retry_on: &[Error],
    mut open: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    loop {
        match open() {
            Err(e) if retry_on.contains(&e) && left(deadline) != Some(Duration::ZERO) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Out of time: the last reason, which says more than "timed out".
            r => return r,
        }
    }
}

/// No such file: a FIFO or socket the receiver has not created yet.
const NOENT: Error = Error::Os(rustix::io::Errno::NOENT);

fn is_missing(e: &Error) -> bool {
    matches!(e, Error::Os(rustix::io::Errno::NOENT))
}

/// A reason with the URI in front, as the user typed it.
fn at(uri: &Uri, what: &str, e: Error) -> Failure {
    let shm = matches!(uri, Uri::ShmRing(_) | Uri::ShmSeqlock(_) | Uri::ShmBroadcast(_));
    let hint = match e {
        Error::Os(rustix::io::Errno::NOENT) if shm => " (no such segment in /dev/shm)",
        Error::Os(rustix::io::Errno::NOENT) => " (it does not exist; --create makes FIFOs and queues)",
        Error::Os(rustix::io::Errno::EXIST) if shm => {
            " (a segment of that name exists, and a channel has one writer: read it with \
             `emberctl recv ... --unlink`, or remove it from /dev/shm)"
        }
        Error::NoReader => " (no process has the FIFO open for reading)",
        _ => "",
    };
    let message = format!("{uri}: {what}: {e}{hint}");
    // A name the kernel would refuse is the user's input, like a bad URI.
    if e == Error::InvalidName { Failure::usage(message) } else { Failure::runtime(message) }
}

// ---------------------------------------------------------------- send

/// Sends one frame, waiting for room until the deadline.
type SendFn = Box<dyn FnMut(&[u8], Option<Instant>) -> Result<(), Error>>;

struct Sink {
    send: SendFn,
    /// Whether the frames are sent with their payload checksummed.
    integrity: Integrity,
}

/// `--checksum`: `Some` when forced on or off, `None` for the endpoint's default.
fn checksum_option(o: &Opts) -> Result<Option<Integrity>, Failure> {
    match o.value("--checksum") {
        None | Some("auto") => Ok(None),
        Some("on") => Ok(Some(Integrity::Checked)),
        Some("off") => Ok(Some(Integrity::Unchecked)),
        Some(v) => Err(Failure::usage(format!("--checksum: `{v}` is not on, off or auto"))),
    }
}

fn kernel_sink(mut s: impl FrameSender + AsFd + 'static, forced: Option<Integrity>) -> Sink {
    if let Some(i) = forced {
        s.set_integrity(i);
    }
    let integrity = s.integrity();
    Sink {
        integrity,
        send: Box::new(move |f, deadline| {
            // Blocking sends, but never past the deadline for a full socket or pipe:
            // nonblocking writes, waiting for room with poll.
            loop {
                match s.send_frame(f) {
                    Err(Error::WouldBlock) => wait_writable(s.as_fd(), deadline)?,
                    r => return r,
                }
            }
        }),
    }
}

fn wait_writable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<(), Error> {
    wait_fd(fd, rustix::event::PollFlags::OUT, deadline)
}

/// `ember_linux::poll::wait_fd` with an `Instant` deadline.
fn wait_fd(fd: BorrowedFd<'_>, flags: rustix::event::PollFlags, deadline: Option<Instant>) -> Result<(), Error> {
    ember_linux::poll::wait_fd(fd, flags, left(deadline).map(|l| ember_linux::poll::now().saturating_add(l)))
}

fn open_sink(uri: &Uri, o: &Opts, deadline: Option<Instant>, first_len: usize) -> Result<Sink, Failure> {
    let fail = |what: &'static str| move |e| at(uri, what, e);
    let nonblocking = |e: &dyn AsFd| e.as_fd().set_nonblocking(true);
    let capacity = o.usize("--capacity")?.unwrap_or(65536);
    let fingerprint = o.u64("--fingerprint")?.unwrap_or(0);
    let forced = checksum_option(o)?;
    // The shared-memory channels carry what the ring protocol already bounds-checks.
    let shm = forced.unwrap_or(SpscSender::DEFAULT_INTEGRITY);
    Ok(match uri {
        Uri::Stdio => {
            let fd = rustix::io::dup(rustix::stdio::stdout()).map_err(|e| fail("dup")(Error::Os(e)))?;
            kernel_sink(pipe::Writer::stream(fd), forced)
        }
        Uri::Fifo(p) => {
            if o.flag("--create") {
                fifo::create(p).map_err(fail("create"))?;
            }
            // No reader yet, or no FIFO yet (the receiver creates it): wait for one.
            let w = retry(deadline, &[Error::NoReader, NOENT], || fifo::open_writer(p, true)).map_err(fail("open"))?;
            kernel_sink(w, forced)
        }
        Uri::Mq(name) => {
            let q = match MessageQueue::open(name, Access::Send) {
                Err(e) if is_missing(&e) && o.flag("--create") => {
                    let mut q = create_mq(name, o, Access::Send).map_err(fail("create"))?;
                    q.persist();
                    q
                }
                r => r.map_err(fail("open"))?,
            };
            let prio = o.u32("--prio")?.unwrap_or(0);
            let mut q = q;
            if let Some(i) = forced {
                q.set_integrity(i);
            }
            Sink {
                integrity: q.integrity(),
                send: Box::new(move |f, deadline| {
                    q.send_prio(f, prio, Some(left(deadline).unwrap_or(Duration::from_secs(u32::MAX as u64))))
                }),
            }
        }
        Uri::Uds(p) => {
            let s = retry(deadline, &[Error::Refused, NOENT], || uds::connect_stream::<65536>(UnixName::Path(p)));
            let s = s.map_err(fail("connect"))?;
            nonblocking(&s).map_err(fail("connect"))?;
            kernel_sink(s, forced)
        }
        Uri::UdsAbstract(n) => {
            let s =
                retry(deadline, &[Error::Refused], || uds::connect_stream::<65536>(UnixName::Abstract(n.as_bytes())));
            let s = s.map_err(fail("connect"))?;
            nonblocking(&s).map_err(fail("connect"))?;
            kernel_sink(s, forced)
        }
        Uri::UdsSeqpacket(p) => {
            let s = retry(deadline, &[Error::Refused, NOENT], || uds::connect_seqpacket(UnixName::Path(p)));
            let s = s.map_err(fail("connect"))?;
            nonblocking(&s).map_err(fail("connect"))?;
            kernel_sink(s, forced)
        }
        Uri::UdsDgram(_) | Uri::UdsDgramAbstract(_) => {
            let name = match uri {
                Uri::UdsDgram(p) => UnixName::Path(p),
                Uri::UdsDgramAbstract(n) => UnixName::Abstract(n.as_bytes()),
                _ => unreachable!("matched above"),
            };
            let s = uds::unbound_datagram().map_err(fail("socket"))?;
            let addr = match name {
                UnixName::Path(p) => rustix::net::SocketAddrUnix::new(p),
                UnixName::Abstract(n) => rustix::net::SocketAddrUnix::new_abstract_name(n),
            }
            .map_err(|e| fail("address")(Error::Os(e)))?;
            retry(deadline, &[Error::Refused, NOENT], || s.connect(&addr)).map_err(fail("connect"))?;
            nonblocking(&s).map_err(fail("connect"))?;
            kernel_sink(s, forced)
        }
        Uri::Tcp(addr) => {
            // The receiver may not listen yet: retry until the deadline.
            let s =
                retry(deadline, &[Error::Refused], || ember_linux::net::tcp_connect::<65536>(*addr, left(deadline)));
            let s = s.map_err(fail("connect"))?;
            nonblocking(&s).map_err(fail("connect"))?;
            kernel_sink(s, forced)
        }
        Uri::Udp(addr) => {
            let any: std::net::SocketAddr = if addr.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let s = ember_linux::net::udp_bind(any).map_err(fail("socket"))?;
            s.connect(addr).map_err(fail("connect"))?;
            nonblocking(&s).map_err(fail("connect"))?;
            kernel_sink(s, forced)
        }
        Uri::ShmRing(name) => {
            let mut tx = SpscSender::create(Backing::Named(name), capacity, fingerprint).map_err(fail("create"))?;
            tx.segment().persist();
            tx.set_integrity(shm);
            Sink { integrity: shm, send: Box::new(move |f, deadline| tx.send(f, left(deadline))) }
        }
        Uri::ShmSeqlock(name) => {
            let cap = capacity.max(first_len.next_multiple_of(8)).max(64);
            let mut w = SeqLockWriter::create(Backing::Named(name), cap, fingerprint).map_err(fail("create"))?;
            w.segment().persist();
            Sink { integrity: shm, send: Box::new(move |f, _| w.write(f)) }
        }
        Uri::ShmBroadcast(name) => {
            let mut w = BroadcastWriter::create(Backing::Named(name), capacity, fingerprint).map_err(fail("create"))?;
            w.segment().persist();
            Sink { integrity: shm, send: Box::new(move |f, _| w.send(f)) }
        }
    })
}

fn parse_hex(s: &str) -> Result<Vec<u8>, Failure> {
    let digit = |(i, c): (usize, char)| {
        c.to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| Failure::usage(format!("--hex: `{c}` at offset {i} is not a hex digit")))
    };
    let digits =
        s.char_indices().filter(|(_, c)| !c.is_ascii_whitespace()).map(digit).collect::<Result<Vec<u8>, _>>()?;
    if !digits.len().is_multiple_of(2) {
        return Err(Failure::usage(format!("--hex: odd number of digits ({})", digits.len())));
    }
    Ok(digits.chunks_exact(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// Creates the queue `name` for `--create`: `--max-msgs` and `--msg-size` as given (a value
/// over the board's limit is refused, naming the limit); left out, 10 messages of 8192
/// bytes, or less where the board's `msg_max`/`msgsize_max` allow less, said on stderr.
fn create_mq(name: &str, o: &Opts, access: Access) -> Result<MessageQueue, ember_linux::Error> {
    use ember_linux::limits::Limit;
    let (asked_n, asked_size) = (o.usize("--max-msgs").ok().flatten(), o.usize("--msg-size").ok().flatten());
    let fit = |asked: Option<usize>, default: usize, limit: Limit| match asked {
        Some(v) => (v, None),
        None => match limit.value() {
            Some(max) if (max as usize) < default => (max as usize, Some((limit, max))),
            _ => (default, None),
        },
    };
    let (n, n_cut) = fit(asked_n, 10, Limit::MqMsgMax);
    let (size, size_cut) = fit(asked_size, 8192, Limit::MqMsgsizeMax);
    let q = MessageQueue::create(name, n, size, access)?;
    for (limit, max) in [n_cut, size_cut].into_iter().flatten() {
        eprintln!("mq:{name}: created with {n} messages of {size} bytes ({} is {max})", limit.source());
    }
    Ok(q)
}

/// Refuses, before anything is created or opened, an option given for an endpoint it does
/// not apply to, and a malformed value of any endpoint option (so `mq:` never creates a
/// queue and then refuses `--prio abc`).
fn check_endpoint_options(uri: &Uri, o: &Opts) -> Result<(), Failure> {
    let mq = matches!(uri, Uri::Mq(_));
    let fifo = matches!(uri, Uri::Fifo(_));
    let shm = matches!(uri, Uri::ShmRing(_) | Uri::ShmSeqlock(_) | Uri::ShmBroadcast(_));
    let rules: [(&str, bool, &str); 6] = [
        ("--prio", mq, "mq:"),
        ("--max-msgs", mq, "mq:"),
        ("--msg-size", mq, "mq:"),
        ("--create", mq || fifo, "fifo: and mq:"),
        ("--capacity", shm, "shm-ring:, shm-seqlock: and shm-broadcast:"),
        ("--fingerprint", shm, "shm-ring:, shm-seqlock: and shm-broadcast:"),
    ];
    for (name, applies, to) in rules {
        if (o.flag(name) || o.value(name).is_some()) && !applies {
            return Err(Failure::usage(format!("{name} applies to {to} endpoints only, not to {uri}")));
        }
    }
    o.u32("--prio")?;
    o.usize("--max-msgs")?;
    o.usize("--msg-size")?;
    o.usize("--capacity")?;
    o.u64("--fingerprint")?;
    Ok(())
}

/// `emberctl send`.
pub fn send(args: &[String]) -> Result<(), Failure> {
    let o = Opts::parse_for(args, "send")?;
    let Some((uri, words)) = o.positional.split_first() else {
        return Err(Failure::usage("which endpoint? (e.g. emberctl send fifo:/tmp/f hello)".into()));
    };
    let uri = Uri::parse(uri).map_err(|e| Failure::usage(e.0))?;
    check_endpoint_options(&uri, &o)?;
    checksum_option(&o)?;
    let payloads: Vec<Vec<u8>> = if !words.is_empty() {
        vec![words.join(" ").into_bytes()]
    } else if let Some(f) = o.value("--file") {
        vec![std::fs::read(f).map_err(|e| Failure::runtime(format!("--file {f}: {e}")))?]
    } else if let Some(h) = o.value("--hex") {
        vec![parse_hex(h)?]
    } else {
        let mut all = Vec::new();
        std::io::stdin().read_to_end(&mut all).map_err(|e| Failure::runtime(format!("standard input: {e}")))?;
        if o.flag("--lines") {
            all.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
        } else {
            vec![all]
        }
    };
    let count = o.usize("--count")?.unwrap_or(1);
    if count == 0 {
        return Err(Failure::usage("--count: at least 1".into()));
    }
    if let Some(p) = payloads.iter().find(|p| p.len() > frame::MAX_PAYLOAD_LEN) {
        return Err(Failure::usage(format!("payload of {} bytes: at most {}", p.len(), frame::MAX_PAYLOAD_LEN)));
    }
    let kind = o.u32("--kind")?.unwrap_or(0);
    let mut seq = o.u32("--seq")?.unwrap_or(0);
    // The timeout bounds each wait (for a reader, a connection, room), not the transfer.
    let timeout = o.seconds("--timeout")?.unwrap_or(SEND_TIMEOUT);
    let first_len = payloads.first().map_or(0, |p| p.len() + frame::HEADER_LEN);
    let mut sink = open_sink(&uri, &o, deadline(Some(timeout)), first_len)?;
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    for _ in 0..count {
        for p in &payloads {
            let repr = FrameRepr { flags: sink.integrity.flags(), kind, seq, payload_len: p.len() };
            let f = repr.emit_with_payload(p, &mut buf).map_err(|e| Failure::usage(format!("frame: {e}")))?;
            (sink.send)(f, deadline(Some(timeout))).map_err(|e| at(&uri, "send", e))?;
            seq = seq.wrapping_add(1);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- recv

/// What one receive brought besides the bytes.
struct Got {
    len: usize,
    /// Transport details printed after the frame fields (priority, losses, ...), as
    /// `name=value` in text and `"name":value` in JSON.
    extra: Vec<(&'static str, u64)>,
}

type RecvFn = Box<dyn FnMut(&mut [u8], Option<Instant>) -> Result<Got, Error>>;

/// A receiver over a kernel fd, polled before each read. `nonblocking` switches the fd to
/// nonblocking reads, so a partial frame never blocks past the deadline; standard input
/// stays as it is (the flag would be shared with whoever else holds it).
fn kernel_source<R: FrameReceiver + AsFd + 'static>(mut r: R, nonblocking: bool) -> Result<RecvFn, Error> {
    if nonblocking {
        r.set_nonblocking(true)?;
    }
    Ok(Box::new(move |buf, deadline| {
        loop {
            if !r.buffered() {
                wait_readable(r.as_fd(), deadline)?;
            }
            match r.recv_frame(buf) {
                Err(Error::WouldBlock) => {}
                Ok(len) => return Ok(Got { len, extra: Vec::new() }),
                Err(e) => return Err(e),
            }
        }
    }))
}

/// Accepts one connection on `l` before `deadline`.
fn accept_one<T>(
    l: &UdsListener,
    deadline: Option<Instant>,
    accept: impl Fn(&UdsListener) -> Result<(T, ember_linux::socket::Creds), Error>,
) -> Result<T, Error> {
    wait_readable(l.as_fd(), deadline)?;
    Ok(accept(l)?.0)
}

/// The fingerprint to open a segment with: `--fingerprint`, else the header's.
fn shm_fingerprint(name: &str, kind: SegmentKind, o: &Opts) -> Result<u64, Failure> {
    if let Some(fp) = o.u64("--fingerprint")? {
        return Ok(fp);
    }
    let seg = crate::ls::read_segment(name).map_err(|e| Failure::runtime(format!("{name}: {e}")))?;
    let h = seg.header.map_err(|e| Failure::runtime(format!("shm {name}: {e}")))?;
    if h.kind != kind {
        return Err(Failure::runtime(format!("shm {name}: a {:?} segment, not a {:?}", h.kind, kind)));
    }
    Ok(h.fingerprint)
}

fn open_source(uri: &Uri, o: &Opts, deadline: Option<Instant>) -> Result<RecvFn, Failure> {
    let fail = |what: &'static str| move |e| at(uri, what, e);
    Ok(match uri {
        Uri::Stdio => {
            let fd = rustix::io::dup(rustix::stdio::stdin()).map_err(|e| fail("dup")(Error::Os(e)))?;
            kernel_source(pipe::StreamReader::<65536>::from_fd(fd), false).map_err(fail("open"))?
        }
        Uri::Fifo(p) => {
            if o.flag("--create") {
                fifo::create(p).map_err(fail("create"))?;
            }
            kernel_source(fifo::open_reader::<65536>(p, true).map_err(fail("open"))?, true).map_err(fail("open"))?
        }
        Uri::Mq(name) => {
            let mut q = match MessageQueue::open(name, Access::Receive) {
                Err(e) if is_missing(&e) && o.flag("--create") => {
                    let mut q = create_mq(name, o, Access::Receive).map_err(fail("create"))?;
                    q.persist();
                    q
                }
                r => r.map_err(fail("open"))?,
            };
            Box::new(move |buf, deadline| {
                // No deadline: a day at a time.
                let t = left(deadline).unwrap_or(Duration::from_secs(86_400));
                loop {
                    match q.recv_prio(buf, Some(t)) {
                        Err(Error::TimedOut) if deadline.is_none() => {}
                        Ok((len, prio)) => return Ok(Got { len, extra: vec![("prio", u64::from(prio))] }),
                        Err(e) => return Err(e),
                    }
                }
            })
        }
        Uri::Uds(_) | Uri::UdsAbstract(_) | Uri::UdsSeqpacket(_) => {
            let name = match uri {
                Uri::Uds(p) | Uri::UdsSeqpacket(p) => UnixName::Path(p),
                Uri::UdsAbstract(n) => UnixName::Abstract(n.as_bytes()),
                _ => unreachable!("matched above"),
            };
            if let Uri::UdsSeqpacket(_) = uri {
                let l = UdsListener::bind_seqpacket(name).map_err(fail("listen"))?;
                let s = accept_one(&l, deadline, UdsListener::accept_seqpacket).map_err(fail("accept"))?;
                kernel_source(s, true).map_err(fail("accept"))?
            } else {
                let l = UdsListener::bind_stream(name).map_err(fail("listen"))?;
                let s = accept_one(&l, deadline, UdsListener::accept_stream::<65536>).map_err(fail("accept"))?;
                kernel_source(s, true).map_err(fail("accept"))?
            }
        }
        Uri::UdsDgram(p) => {
            kernel_source(uds::bind_datagram(UnixName::Path(p)).map_err(fail("bind"))?, true).map_err(fail("bind"))?
        }
        Uri::UdsDgramAbstract(n) => {
            kernel_source(uds::bind_datagram(UnixName::Abstract(n.as_bytes())).map_err(fail("bind"))?, true)
                .map_err(fail("bind"))?
        }
        Uri::Tcp(addr) => {
            let l = ember_linux::net::TcpListener::bind(*addr).map_err(fail("listen"))?;
            wait_readable(l.as_fd(), deadline).map_err(fail("accept"))?;
            let (s, _peer) = l.accept::<65536>().map_err(fail("accept"))?;
            kernel_source(s, true).map_err(fail("accept"))?
        }
        Uri::Udp(addr) => {
            kernel_source(ember_linux::net::udp_bind(*addr).map_err(fail("bind"))?, true).map_err(fail("bind"))?
        }
        Uri::ShmRing(name) => {
            let fp = shm_fingerprint(name, SegmentKind::Spsc, o)?;
            let mut rx = SpscReceiver::open(name, fp).map_err(fail("open"))?;
            Box::new(move |buf, deadline| Ok(Got { len: rx.recv(buf, left(deadline))?, extra: Vec::new() }))
        }
        Uri::ShmSeqlock(name) => {
            let fp = shm_fingerprint(name, SegmentKind::SeqLock, o)?;
            let mut r = SeqLockReader::open(name, fp).map_err(fail("open"))?;
            let mut seen: Option<u32> = None;
            Box::new(move |buf, deadline| {
                // The current value first (once there is one), then each change.
                if let Some(s) = seen {
                    r.wait_change(s, left(deadline))?;
                }
                let snap = loop {
                    // A writer mid-write is waited out (read_timeout); nothing written yet
                    // is waited for.
                    match r.read_timeout(buf, left(deadline)) {
                        Err(Error::Shm(ShmError::Empty | ShmError::NotReady)) => r.wait_change(0, left(deadline))?,
                        other => break other?,
                    }
                };
                seen = Some(snap.seq);
                Ok(Got { len: snap.len, extra: vec![("version", u64::from(snap.seq / 2))] })
            })
        }
        Uri::ShmBroadcast(name) => {
            let fp = shm_fingerprint(name, SegmentKind::Broadcast, o)?;
            let mut r = BroadcastReader::open(name, fp, true).map_err(fail("open"))?;
            Box::new(move |buf, deadline| {
                let got = r.recv(buf, left(deadline))?;
                Ok(Got { len: got.len, extra: vec![("record", got.seq), ("lost", got.lost)] })
            })
        }
    })
}

/// The payload as text: printable ASCII as is, the rest escaped.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn remove(uri: &Uri) -> Result<(), Error> {
    match uri {
        Uri::Fifo(p) => fifo::remove(p),
        Uri::Mq(n) => MessageQueue::unlink(n),
        Uri::ShmRing(n) | Uri::ShmSeqlock(n) | Uri::ShmBroadcast(n) => {
            rustix::shm::unlink(n.as_str()).map_err(Error::Os)
        }
        _ => Ok(()),
    }
}

/// The transport's details as text: ` prio=3`, ` record=4 lost=0`.
fn extra_text(extra: &[(&str, u64)]) -> String {
    extra.iter().map(|(k, v)| format!(" {k}={v}")).collect()
}

/// One frame as a JSON object (a line of `recv --json`): the frame's fields, the
/// transport's details, the payload in hex, and as a string when it is UTF-8 (else null).
fn frame_json(f: &Frame<&[u8]>, extra: &[(&str, u64)]) -> String {
    let p = f.payload();
    let mut s = format!("{{\"kind\":{},\"seq\":{},\"len\":{}", f.kind(), f.seq(), p.len());
    for (k, v) in extra {
        s.push_str(&format!(",\"{k}\":{v}"));
    }
    let text = std::str::from_utf8(p).map_or_else(|_| "null".into(), crate::bench::json_str);
    s.push_str(&format!(",\"hex\":\"{}\",\"text\":{text}}}", hex(p)));
    s
}

/// A damaged message as a line of `recv --json`: `{"damaged":true,"message":n,"error":"..."}`.
fn json_damaged(out: &mut impl std::io::Write, message: usize, error: &str) -> Result<(), Failure> {
    let line = format!("{{\"damaged\":true,\"message\":{message},\"error\":{}}}", crate::bench::json_str(error));
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| Failure::runtime(format!("stdout: {e}")))
}

/// `emberctl recv`.
pub fn recv(args: &[String]) -> Result<(), Failure> {
    let o = Opts::parse_for(args, "recv")?;
    let [uri] = o.positional.as_slice() else {
        return Err(Failure::usage("takes one endpoint (e.g. emberctl recv mq:/sensor)".into()));
    };
    let uri = Uri::parse(uri).map_err(|e| Failure::usage(e.0))?;
    check_endpoint_options(&uri, &o)?;
    let print = o.value("--print").unwrap_or("text");
    if !["text", "hex", "header", "raw"].contains(&print) {
        return Err(Failure::usage(format!("--print: `{print}` is not text, hex, header or raw")));
    }
    if o.flag("--json") && o.value("--print").is_some() {
        return Err(Failure::usage("--json and --print are two output formats: give one".into()));
    }
    let print = if o.flag("--json") { "json" } else { print };
    let count = o.usize("--count")?.unwrap_or(1);
    let deadline = deadline(o.seconds("--timeout")?);
    let result = receive(&uri, &o, deadline, count, print);
    if o.flag("--unlink") {
        remove(&uri).map_err(|e| at(&uri, "unlink", e))?;
    }
    result
}

fn receive(uri: &Uri, o: &Opts, deadline: Option<Instant>, count: usize, print: &str) -> Result<(), Failure> {
    let mut source = open_source(uri, o, deadline)?;
    let require = o.flag("--require-checksum");
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let mut out = std::io::stdout().lock();
    let (mut got, mut damaged) = (0usize, 0usize);
    while count == 0 || got < count {
        let r = match source(&mut buf, deadline) {
            Ok(r) => r,
            Err(Error::PeerGone | Error::Shm(ShmError::WriterGone | ShmError::Closed)) if count == 0 => break,
            // A damaged frame (checked by the transport): say so, count it as one of the
            // messages asked for, go on with the next.
            Err(Error::Codec(e)) => {
                eprintln!("emberctl recv: {uri}: message {} is not an Ember frame, skipped: {e}", got + 1);
                got += 1;
                damaged += 1;
                if print == "json" {
                    json_damaged(&mut out, got, &e.to_string())?;
                }
                continue;
            }
            Err(e) => return Err(at(uri, &format!("after {got} frame(s)"), e)),
        };
        got += 1;
        let bytes = &buf[..r.len];
        let checked = Frame::new_checked(bytes).and_then(|f| {
            if require && f.integrity() == Integrity::Unchecked {
                Err(ember_core::Error::UncheckedPayload)
            } else {
                Ok(f)
            }
        });
        let f = match checked {
            Ok(f) => f,
            Err(e) => {
                if e == ember_core::Error::UncheckedPayload {
                    eprintln!("emberctl recv: {uri}: message {got} refused (--require-checksum): {e}");
                } else {
                    eprintln!("emberctl recv: {uri}: message {got} ({} bytes) is not an Ember frame: {e}", r.len);
                }
                damaged += 1;
                if print == "json" {
                    json_damaged(&mut out, got, &e.to_string())?;
                }
                continue;
            }
        };
        let p = f.payload();
        let line = match print {
            "raw" => {
                out.write_all(p).map_err(|e| Failure::runtime(format!("stdout: {e}")))?;
                continue;
            }
            "json" => frame_json(&f, &r.extra),
            "header" => format!("kind={} seq={} len={}{}", f.kind(), f.seq(), p.len(), extra_text(&r.extra)),
            "hex" => format!("kind={} seq={} len={}{} {}", f.kind(), f.seq(), p.len(), extra_text(&r.extra), hex(p)),
            _ => format!("kind={} seq={} len={}{} {}", f.kind(), f.seq(), p.len(), extra_text(&r.extra), escape(p)),
        };
        writeln!(out, "{line}").and_then(|()| out.flush()).map_err(|e| Failure::runtime(format!("stdout: {e}")))?;
    }
    if damaged > 0 {
        return Err(Failure::bad_input(format!("{uri}: {damaged} damaged frame(s)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_hex() {
        assert_eq!(escape(b"a b\n\x00\\\xff"), "a b\\n\\x00\\\\\\xff");
        assert_eq!(hex(b"\x01\xab"), "01ab");
        assert_eq!(parse_hex("01 ab").unwrap(), vec![1, 0xab]);
        assert!(parse_hex("0").is_err());
        assert!(parse_hex("zz").unwrap_err().message.contains("offset 0"));
        assert!(parse_hex("aé0").unwrap_err().message.contains("`é` at offset 1"));
        assert!(parse_hex("+f").is_err());
    }
}
