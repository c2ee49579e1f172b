//! The route workers: one thread per route, moving frames between a local endpoint and
//! Zenoh.
//!
//! ```text
//!  outbound:  local endpoint --recv (100 ms slices)--> seal_outbound --> publisher.put
//!  inbound:   subscriber callback (Zenoh's task) --> check_inbound --> local send (in the callback)
//! ```
//!
//! - **Outbound** threads block on their endpoint in slices of [`SLICE`], so they see the
//!   stop flag within one slice. A `block` route reads nothing while no subscriber matches
//!   its key (Zenoh's matching status): frames wait in the local endpoint instead of being
//!   published to nobody. A source that is missing (the writer has not started) or
//!   whose writer closed it or died is reopened every slice: a restarted writer is picked
//!   up again. Records a lapped broadcast subscriber lost are counted `dropped`.
//! - **Inbound** routes receive in a Zenoh callback that counts `in` and `lost` (gaps in
//!   the sender's [`Attachment`]), checks each frame ([`check_inbound`]) and writes it into
//!   the local endpoint itself: no queue and no thread hop between Zenoh and the endpoint
//!   (an earlier version had both; writing from the callback took 64 B throughput from
//!   0.78× to 0.96× of plain Zenoh on a quiet machine). With `block` the callback waits
//!   for room in the endpoint, which holds Zenoh's receive task, so back-pressure reaches
//!   the publisher through Zenoh's own congestion control, end to end; with `drop` a full
//!   endpoint drops the frame, counted. The route's thread only waits for the stop and
//!   then undeclares the subscriber (a blocked write ends within a slice of the stop).
//!
//! Nothing on a route's per-frame path allocates in this crate: outbound frames are read
//! into and sealed in the route's two buffers, allocated once; inbound frames are written
//! from Zenoh's own buffer. Zenoh itself allocates per sample
//! (its buffers and tasks), which `docs/bridge.md` records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_core::shm::ShmError;
use ember_linux::mq::{Access as MqAccess, MessageQueue};
use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, CreateOptions, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
};
use ember_linux::socket::PacketSocket;
use ember_linux::uds::{self, UdsListener, UnixName};
use ember_linux::{Endpoint, Error as LinuxError, FrameSender, TimedReceiver};
use zenoh::Wait;
use zenoh::sample::Sample;

use crate::config::{self, Congestion, Direction, Local, Route};
use crate::counters::Counters;
use crate::frames::{Attachment, GapTracker, check_inbound, seal_outbound};
use crate::resume::Slot;

/// How long a worker blocks before it looks at the stop flag.
pub const SLICE: Duration = Duration::from_millis(100);

/// How often a `block` route without a subscriber looks again.
const MATCH_POLL: Duration = Duration::from_millis(5);

/// Depth of a POSIX queue an inbound route creates, unless the table says.
const DEFAULT_MQ_DEPTH: usize = 10;

/// Why a route could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The local endpoint could not be created or opened.
    Local {
        /// The route's channel.
        channel: String,
        /// The error.
        error: LinuxError,
    },
    /// Zenoh refused the publisher or subscriber.
    Zenoh {
        /// The route's channel.
        channel: String,
        /// Zenoh's reason.
        reason: String,
    },
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Local { channel, error } => write!(f, "route {channel:?}: local endpoint: {error}"),
            StartError::Zenoh { channel, reason } => write!(f, "route {channel:?}: zenoh: {reason}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running route: its counters and its thread.
#[derive(Debug)]
pub struct RunningRoute {
    /// The route's counters (shared with the status queryable).
    pub counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl RunningRoute {
    /// Waits for the route's thread to finish (after the stop flag was set).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            // A panicking route thread already printed its message; shutdown goes on.
            let _ = t.join();
        }
    }
}

/// A token bucket of `rate` frames per second, with a tenth of a second of burst.
#[derive(Debug)]
struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32) -> RateLimit {
        let burst = (f64::from(rate) / 10.0).max(1.0);
        RateLimit { rate: f64::from(rate), burst, tokens: burst, last: Instant::now() }
    }

    /// Takes a token if there is one; else how long until there is.
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Whether a frame may pass now: with `block`, waits for a token (while not stopped);
    /// with `drop`, answers at once.
    fn admit(limit: &mut Option<RateLimit>, congestion: Congestion, stop: &AtomicBool) -> bool {
        let Some(l) = limit else { return true };
        loop {
            match l.take() {
                Ok(()) => return true,
                Err(_) if congestion == Congestion::Drop => return false,
                Err(wait) if !stop.load(Ordering::Relaxed) => std::thread::sleep(wait.min(SLICE)),
                Err(_) => return false,
            }
        }
    }
}

/// Starts `route` on `session`. `epoch` is this bridge's attachment epoch; `resume` the
/// route's slot in the resume file (inbound routes: where a predecessor stopped, and where
/// each handled frame is recorded).
pub fn start(
    session: &zenoh::Session,
    board: &str,
    route: &Route,
    epoch: u64,
    resume: Option<Slot>,
    stop: Arc<AtomicBool>,
) -> Result<RunningRoute, StartError> {
    let counters = Arc::new(Counters::default());
    let key = route.key(board);
    let zerr = |e: zenoh::Error| StartError::Zenoh { channel: route.channel.clone(), reason: e.to_string() };
    let thread = match route.direction {
        Direction::Out => {
            let publisher = session
                .declare_publisher(key.clone())
                .congestion_control(match route.congestion {
                    Congestion::Block => zenoh::qos::CongestionControl::Block,
                    Congestion::Drop => zenoh::qos::CongestionControl::Drop,
                })
                .priority(priority(route.priority))
                .express(route.express)
                .reliability(match route.reliability {
                    config::Reliability::Reliable => zenoh::qos::Reliability::Reliable,
                    config::Reliability::BestEffort => zenoh::qos::Reliability::BestEffort,
                })
                .wait()
                .map_err(zerr)?;
            let flag = counters.clone();
            publisher
                .matching_listener()
                .callback(move |m| flag.set_matched(m.matching()))
                .background()
                .wait()
                .map_err(zerr)?;
            // The listener reports changes; the state before it was declared is asked once.
            counters.set_matched(publisher.matching_status().wait().map_err(zerr)?.matching());
            let w = Outbound {
                local: route.local.clone(),
                max: route.max_frame(),
                congestion: route.congestion,
                limit: route.rate_limit.map(RateLimit::new),
                counters: counters.clone(),
                stop,
                epoch,
            };
            std::thread::Builder::new()
                .name(format!("out:{}", route.channel))
                .spawn(move || w.run(publisher))
                .map_err(|e| StartError::Local { channel: route.channel.clone(), error: io_error(&e) })?
        }
        Direction::In => {
            let sink = Sink::open(&route.local, route.max_frame())
                .map_err(|error| StartError::Local { channel: route.channel.clone(), error })?;
            let cb = InboundCallback {
                writer: std::sync::Mutex::new(InboundWriter {
                    sink,
                    limit: route.rate_limit.map(RateLimit::new),
                    gaps: GapTracker::starting_at(resume.as_ref().and_then(Slot::last)),
                    resume,
                }),
                max: route.max_frame(),
                congestion: route.congestion,
                counters: counters.clone(),
                stop: stop.clone(),
            };
            let subscriber =
                session.declare_subscriber(key.clone()).callback(move |s| cb.on_sample(s)).wait().map_err(zerr)?;
            std::thread::Builder::new()
                .name(format!("in:{}", route.channel))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(SLICE);
                    }
                    // Undeclaring ends the callbacks (a blocked write ends within a slice of
                    // the stop), and drops the sink with the callback.
                    let _ = subscriber.undeclare().wait();
                })
                .map_err(|e| StartError::Local { channel: route.channel.clone(), error: io_error(&e) })?
        }
    };
    Ok(RunningRoute { counters, thread: Some(thread) })
}

fn io_error(e: &std::io::Error) -> LinuxError {
    LinuxError::Os(rustix::io::Errno::from_io_error(e).unwrap_or(rustix::io::Errno::AGAIN))
}

fn priority(p: config::Priority) -> zenoh::qos::Priority {
    use zenoh::qos::Priority as Z;
    match p {
        config::Priority::RealTime => Z::RealTime,
        config::Priority::InteractiveHigh => Z::InteractiveHigh,
        config::Priority::InteractiveLow => Z::InteractiveLow,
        config::Priority::DataHigh => Z::DataHigh,
        config::Priority::Data => Z::Data,
        config::Priority::DataLow => Z::DataLow,
        config::Priority::Background => Z::Background,
    }
}

/// An outbound route's source.
enum Source {
    Spsc(SpscReceiver),
    Broadcast(BroadcastReader),
    Mq(MessageQueue),
    Dgram(PacketSocket),
    /// Sampled every `period`; `last`: the sequence of the value published last.
    Seqlock {
        reader: SeqLockReader,
        period: Duration,
        next: Instant,
        last: Option<u32>,
    },
    /// The listening socket and the writer connected now.
    Seqpacket {
        listener: UdsListener,
        conn: Option<PacketSocket>,
        max: usize,
    },
}

/// One receive from a source.
enum Got {
    /// A record of this many bytes; `lost` records were lost before it.
    Record { len: usize, lost: u64 },
    /// A record that was not a valid frame and is gone (datagram and queue sources check).
    Bad,
    /// Nothing within the slice.
    Nothing,
    /// The source closed or its writer died: reopen it.
    Gone,
}

impl Source {
    fn open(local: &Local, max: usize) -> Result<Source, LinuxError> {
        Ok(match local {
            Local::Spsc { name, fingerprint, .. } => Source::Spsc(SpscReceiver::open(name, *fingerprint)?),
            Local::Broadcast { name, fingerprint, .. } => {
                Source::Broadcast(BroadcastReader::open(name, *fingerprint, false)?)
            }
            Local::Mq { name, .. } => Source::Mq(MessageQueue::open(name, MqAccess::Receive)?),
            Local::UnixDgram { path } => {
                let mut s = uds::bind_datagram(UnixName::Path(path))?;
                s.set_max_frame(max);
                Source::Dgram(s)
            }
            Local::UnixSeqpacket { path } => {
                // A file left by a bridge that died is in the way of the bind.
                let _ = std::fs::remove_file(path);
                Source::Seqpacket { listener: UdsListener::bind_seqpacket(UnixName::Path(path))?, conn: None, max }
            }
            Local::Seqlock { name, fingerprint, rate_hz, .. } => Source::Seqlock {
                reader: SeqLockReader::open(name, *fingerprint)?,
                period: Duration::from_secs(1) / rate_hz.unwrap_or(1).max(1),
                next: Instant::now(),
                last: None,
            },
        })
    }

    fn recv(&mut self, buf: &mut [u8]) -> Got {
        let r = match self {
            Source::Seqlock { reader, period, next, last } => {
                let now = Instant::now();
                if now < *next {
                    std::thread::sleep((*next - now).min(SLICE));
                    if Instant::now() < *next {
                        return Got::Nothing;
                    }
                }
                // The next sample one period on (not in the past: a late sample does not
                // make the following ones come faster).
                *next = (*next + *period).max(Instant::now());
                return match reader.read(buf) {
                    Ok(snap) if *last == Some(snap.seq) => Got::Nothing,
                    Ok(snap) => {
                        *last = Some(snap.seq);
                        Got::Record { len: snap.len, lost: 0 }
                    }
                    Err(LinuxError::Shm(ShmError::Empty | ShmError::WriterStalled | ShmError::Contended)) => {
                        Got::Nothing
                    }
                    Err(LinuxError::Shm(ShmError::BufferTooSmall { .. })) => Got::Bad,
                    Err(_) => Got::Gone,
                };
            }
            Source::Seqpacket { listener, conn, max } => {
                let Some(c) = conn.as_mut() else {
                    if let Ok((mut s, _)) = listener.accept_seqpacket_timeout(Some(SLICE), None) {
                        s.set_max_frame(*max);
                        *conn = Some(s);
                    }
                    return Got::Nothing;
                };
                return match c.recv_frame_timeout(buf, Some(SLICE)) {
                    Ok(len) => Got::Record { len, lost: 0 },
                    Err(LinuxError::TimedOut | LinuxError::WouldBlock | LinuxError::Os(rustix::io::Errno::INTR)) => {
                        Got::Nothing
                    }
                    Err(LinuxError::Codec(_) | LinuxError::TooLarge { .. }) => Got::Bad,
                    // The writer left: the next one may connect.
                    Err(_) => {
                        *conn = None;
                        Got::Nothing
                    }
                };
            }
            Source::Spsc(r) => r.recv(buf, Some(SLICE)).map(|len| (len, 0)),
            Source::Broadcast(r) => r.recv(buf, Some(SLICE)).map(|got| (got.len, got.lost)),
            Source::Mq(q) => q.recv_prio(buf, Some(SLICE)).map(|(len, _)| (len, 0)),
            Source::Dgram(s) => s.recv_frame_timeout(buf, Some(SLICE)).map(|len| (len, 0)),
        };
        match r {
            Ok((len, lost)) => Got::Record { len, lost },
            Err(LinuxError::Shm(ShmError::Timeout) | LinuxError::TimedOut | LinuxError::WouldBlock) => Got::Nothing,
            Err(LinuxError::Codec(_) | LinuxError::TooLarge { .. }) => Got::Bad,
            Err(LinuxError::Os(rustix::io::Errno::INTR)) => Got::Nothing,
            Err(_) => Got::Gone,
        }
    }
}

struct Outbound {
    local: Local,
    max: usize,
    congestion: Congestion,
    limit: Option<RateLimit>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    epoch: u64,
}

impl Outbound {
    fn run(mut self, publisher: zenoh::pubsub::Publisher<'static>) {
        let mut buf = vec![0u8; self.max];
        let mut scratch = vec![0u8; self.max];
        let mut seq = 0u64;
        let mut source: Option<Source> = None;
        while !self.stop.load(Ordering::Relaxed) {
            // `block`: with nobody subscribed a frame would go nowhere; leave it in the
            // local endpoint (its writer waits) until a subscriber appears.
            // The listener keeps `matched` current; while it is false, ask Zenoh itself (the
            // listener and the first answer may have crossed).
            if self.congestion == Congestion::Block && !self.counters.matched() {
                let now = publisher.matching_status().wait().is_ok_and(|m| m.matching());
                self.counters.set_matched(now);
                if !now {
                    std::thread::sleep(MATCH_POLL);
                    continue;
                }
            }
            let Some(src) = source.as_mut() else {
                match Source::open(&self.local, self.max) {
                    Ok(s) => source = Some(s),
                    Err(_) => std::thread::sleep(SLICE),
                }
                continue;
            };
            let len = match src.recv(&mut buf) {
                Got::Record { len, lost } => {
                    self.counters.add_dropped(lost);
                    len
                }
                Got::Bad => {
                    self.counters.add_in(1);
                    self.counters.add_bad(1);
                    continue;
                }
                Got::Nothing => continue,
                Got::Gone => {
                    // Reopened after a pause: a dead writer's segment may still be there.
                    source = None;
                    std::thread::sleep(SLICE);
                    continue;
                }
            };
            self.counters.add_in(1);
            let Ok(wire) = seal_outbound(&buf[..len], &mut scratch) else {
                self.counters.add_bad(1);
                continue;
            };
            if !RateLimit::admit(&mut self.limit, self.congestion, &self.stop) {
                self.counters.add_dropped(1);
                continue;
            }
            let att = Attachment { epoch: self.epoch, seq }.to_bytes();
            match publisher.put(wire).attachment(&att[..]).wait() {
                Ok(()) => {
                    seq += 1;
                    self.counters.add_out(1);
                }
                Err(_) => self.counters.add_dropped(1),
            }
        }
        let _ = publisher.undeclare().wait();
    }
}

/// An inbound route's destination.
enum Sink {
    Spsc(SpscSender),
    Broadcast(BroadcastWriter),
    Mq(MessageQueue),
    Dgram {
        socket: PacketSocket,
        to: rustix::net::SocketAddrUnix,
    },
    Seqlock(SeqLockWriter),
    /// Connected on demand (and again after the listener went away).
    Seqpacket {
        path: String,
        conn: Option<PacketSocket>,
        max: usize,
    },
}

impl Sink {
    fn open(local: &Local, max: usize) -> Result<Sink, LinuxError> {
        let opts = CreateOptions::new().replace_stale(true);
        Ok(match local {
            Local::Spsc { name, fingerprint, capacity } => Sink::Spsc(SpscSender::create_with(
                Backing::Named(name),
                capacity.unwrap_or(config::DEFAULT_RING_CAPACITY),
                *fingerprint,
                opts,
            )?),
            Local::Broadcast { name, fingerprint, capacity } => Sink::Broadcast(BroadcastWriter::create_with(
                Backing::Named(name),
                capacity.unwrap_or(config::DEFAULT_RING_CAPACITY),
                *fingerprint,
                opts,
            )?),
            Local::Mq { name, create: true, max_msgs } => Sink::Mq(MessageQueue::create_with(
                name,
                max_msgs.unwrap_or(DEFAULT_MQ_DEPTH),
                max,
                MqAccess::Send,
                opts,
            )?),
            Local::Mq { name, create: false, .. } => Sink::Mq(MessageQueue::open(name, MqAccess::Send)?),
            Local::UnixDgram { path } => {
                let socket = uds::unbound_datagram()?;
                socket.set_nonblocking(true)?;
                let to = rustix::net::SocketAddrUnix::new(path.as_str()).map_err(|_| LinuxError::InvalidName)?;
                Sink::Dgram { socket, to }
            }
            Local::UnixSeqpacket { path } => {
                // Checked now, connected when the first frame comes.
                rustix::net::SocketAddrUnix::new(path.as_str()).map_err(|_| LinuxError::InvalidName)?;
                Sink::Seqpacket { path: path.clone(), conn: None, max }
            }
            Local::Seqlock { name, fingerprint, capacity, .. } => Sink::Seqlock(SeqLockWriter::create_with(
                Backing::Named(name),
                capacity.unwrap_or(max.div_ceil(8) * 8),
                *fingerprint,
                opts,
            )?),
        })
    }

    /// One attempt to write `frame`: `Ok(true)` written, `Ok(false)` no room now.
    fn try_write(&mut self, frame: &[u8]) -> Result<bool, LinuxError> {
        let r = match self {
            // The receiver is woken by `flush`, after the resume record (`on_sample`).
            Sink::Spsc(s) => s.try_send_deferred(frame),
            Sink::Broadcast(w) => w.send(frame),
            Sink::Mq(q) => q.send_prio(frame, 0, Some(Duration::ZERO)),
            Sink::Dgram { socket, to } => socket.send_frame_to(frame, to),
            Sink::Seqlock(w) => w.write(frame),
            Sink::Seqpacket { path, conn, max } => {
                if conn.is_none() {
                    let Ok(mut c) = uds::connect_seqpacket(UnixName::Path(path)) else {
                        return Ok(false); // nobody listens now
                    };
                    c.set_max_frame(*max);
                    c.set_nonblocking(true)?;
                    *conn = Some(c);
                }
                let Some(c) = conn.as_mut() else { return Ok(false) };
                match c.send_frame(frame) {
                    Err(e @ (LinuxError::TooLarge { .. } | LinuxError::Codec(_))) => Err(e),
                    Err(LinuxError::WouldBlock | LinuxError::TimedOut | LinuxError::Os(rustix::io::Errno::AGAIN)) => {
                        Err(LinuxError::WouldBlock)
                    }
                    Err(_) => {
                        // The listener went away: connect again on the next attempt.
                        *conn = None;
                        Err(LinuxError::WouldBlock)
                    }
                    Ok(()) => Ok(()),
                }
            }
        };
        match r {
            Ok(()) => Ok(true),
            Err(LinuxError::Shm(ShmError::Full) | LinuxError::TimedOut | LinuxError::WouldBlock) => Ok(false),
            Err(LinuxError::Os(rustix::io::Errno::AGAIN)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wakes a reader asleep on the endpoint (an SPSC ring's; the others' writes wake
    /// their readers themselves).
    fn flush(&self) {
        if let Sink::Spsc(s) = self {
            s.flush();
        }
    }

    /// Writes `frame`, waiting for room in slices while `block` and not stopped.
    fn write(&mut self, frame: &[u8], block: bool, stop: &AtomicBool) -> Result<bool, LinuxError> {
        loop {
            if self.try_write(frame)? {
                return Ok(true);
            }
            if !block || stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            match self {
                Sink::Spsc(s) => match s.send(frame, Some(SLICE)) {
                    Ok(()) => return Ok(true),
                    Err(LinuxError::Shm(ShmError::Timeout)) => {}
                    Err(e) => return Err(e),
                },
                Sink::Mq(q) => match q.send_prio(frame, 0, Some(SLICE)) {
                    Ok(()) => return Ok(true),
                    Err(LinuxError::TimedOut) => {}
                    Err(e) => return Err(e),
                },
                _ => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

/// What an inbound route's callback writes with, behind one lock.
struct InboundWriter {
    sink: Sink,
    limit: Option<RateLimit>,
    gaps: GapTracker,
    resume: Option<Slot>,
}

/// The subscriber callback of an inbound route (runs on Zenoh's receive task): counts,
/// checks and writes each sample into the local endpoint itself, with no queue or thread
/// between (with `block` it waits for room there, which holds Zenoh's receive task and so
/// reaches the publisher through Zenoh's congestion control, end to end).
struct InboundCallback {
    writer: std::sync::Mutex<InboundWriter>,
    max: usize,
    congestion: Congestion,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl InboundCallback {
    fn on_sample(&self, sample: Sample) {
        self.counters.add_in(1);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let seq = sample.attachment().and_then(|z| Attachment::parse(&z.to_bytes()));
        if let Some(a) = seq {
            self.counters.add_lost(w.gaps.observe(a));
        }
        self.handle(&mut w, &sample);
        // Recorded once the frame's outcome is (a successor counts from the next one), and
        // before the reader's wake-up: a kill during that system call loses no record.
        if let (Some(a), Some(slot)) = (seq, &w.resume) {
            slot.record(a);
        }
        w.sink.flush();
    }

    /// Checks, admits and writes one sample, counting the outcome.
    fn handle(&self, w: &mut InboundWriter, sample: &Sample) {
        let bytes = sample.payload().to_bytes();
        if check_inbound(&bytes, self.max).is_err() {
            self.counters.add_bad(1);
            return;
        }
        if !RateLimit::admit(&mut w.limit, self.congestion, &self.stop) {
            self.counters.add_dropped(1);
            return;
        }
        match w.sink.write(&bytes, self.congestion == Congestion::Block, &self.stop) {
            Ok(true) => self.counters.add_out(1),
            Ok(false) | Err(_) => self.counters.add_dropped(1),
        }
    }
}
