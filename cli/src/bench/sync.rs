//! Rows for the shared-memory synchronisation primitives and for request/response:
//!
//! - `sync/mutex` (uncontended lock + unlock) next to a `pthread_mutex_t` with
//!   `PTHREAD_PROCESS_SHARED` in shared memory; `sync/sem` (post + wait) next to a POSIX
//!   `sem_t` shared between processes. In-process, alternating batch by batch.
//! - `sync/mutex-contended`: this process and a peer pinned on the other CPU both lock,
//!   add one, unlock, over and over; time per lock + unlock here, next to the same with the
//!   pthread mutex.
//! - `sync/mutex-handoff`: the peer sleeps on the mutex this process holds; the time from
//!   the unlock to the peer holding it, next to the same with the pthread mutex (the two
//!   alternate iteration by iteration). Two context rows run in the same rotation:
//!   `sync/futex-handoff`, a bare three-state futex lock (glibc's protocol) whose waiter
//!   sleeps without a timeout, and `sync/futex-handoff-timed`, the same with each sleep
//!   limited to 100 ms, as Ember's waiter must to notice a dead owner: their ratio is the
//!   price of the kernel timer alone.
//! - `rpc/uds-seqpacket` and `rpc/shm`: an `ADD` call's round trip to a peer serving with
//!   `rpc::Server`, next to a raw ping-pong of a frame of the same size on the same
//!   transport (seqpacket `send`/`recv`; two SPSC rings, `try_send`/`recv`).

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ember_linux::rpc::{Client, Failure, Server, ShmLink, decode};
use ember_linux::shm::{Backing, SpscReceiver, SpscSender, SyncSegment};
use ember_linux::socket::{PacketKind, PacketSocket};
use rustix::fd::{AsFd, OwnedFd};

use super::harness::{Batches, Peer, Pool, RawPage, now_ns, row, spawn_peer};
use super::{Options, Progress, Row, sample_pair};

const FP: u64 = 0xBE7C_0000_0000_0010;
const ADD: u32 = 1;
const FRAME: usize = 4096;
const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));
/// Where things live in the raw page: the pthread mutex, the semaphore, the stop flag.
const PTHREAD_AT: usize = 0;
const SEM_AT: usize = 256;
const STOP_AT: usize = 2048;
const COUNT_AT: usize = 2052;
/// The hand-off row's words: the iteration the holder has reached, the iteration the waiter
/// has finished, and when the waiter got the lock (the monotonic clock's low 32 bits, ns).
const GO_AT: usize = 2056;
const DONE_AT: usize = 2060;
const GOT_AT: usize = 2064;
/// The bare futex lock of the hand-off's context rows (0 free, 1 held, 2 held and contended).
const FUTEX_AT: usize = 2068;

/// The hand-off's four locks, taken in rotation; the discriminant is the index of the
/// lock's samples in what [`hand_off`] returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    Ember,
    Pthread,
    Futex,
    FutexTimed,
}

impl Lock {
    fn of(i: u32) -> Lock {
        [Lock::FutexTimed, Lock::Pthread, Lock::Ember, Lock::Futex][(i % 4) as usize]
    }
}

/// A bare futex lock (Drepper's "mutex 2", the protocol of glibc's normal mutex), shared
/// futexes; `timed` limits each sleep to [`ember_linux::shm::LIVENESS_SLICE`].
fn futex_lock(word: &std::sync::atomic::AtomicU32, timed: bool) {
    use rustix::thread::futex;
    let mut c = match word.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed) {
        Ok(_) => return,
        Err(c) => c,
    };
    if c != 2 {
        c = word.swap(2, Ordering::Acquire);
    }
    let slice = ember_linux::shm::LIVENESS_SLICE;
    let ts = futex::Timespec { tv_sec: slice.as_secs() as _, tv_nsec: slice.subsec_nanos() as _ };
    while c != 0 {
        let _ = futex::wait(word, futex::Flags::empty(), 2, if timed { Some(&ts) } else { None });
        c = word.swap(2, Ordering::Acquire);
    }
}

/// Unlocks [`futex_lock`]: wakes one sleeper if the word said contended.
fn futex_unlock(word: &std::sync::atomic::AtomicU32) {
    if word.swap(0, Ordering::Release) == 2 {
        let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), 1);
    }
}

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!("/ember-bench-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A pthread mutex and a POSIX semaphore, process-shared, in a shared page.
struct Posix {
    page: RawPage,
}

impl Posix {
    fn create(name: &str) -> Result<Posix, String> {
        let page = RawPage::create(name)?;
        let (m, s) =
            (page.ptr_at(PTHREAD_AT).cast::<libc::pthread_mutex_t>(), page.ptr_at(SEM_AT).cast::<libc::sem_t>());
        // SAFETY: `m` and `s` point into a live, zeroed, writable shared mapping, aligned
        // (offsets 0 and 256 of a page) and large enough (40 and 32 bytes); nothing else
        // uses them yet.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            if libc::pthread_mutex_init(m, &attr) != 0 || libc::sem_init(s, 1, 0) != 0 {
                return Err("pthread_mutex_init or sem_init failed".into());
            }
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        Ok(Posix { page })
    }

    fn open(name: &str) -> Result<Posix, String> {
        Ok(Posix { page: RawPage::open(name)? })
    }

    fn lock(&self) {
        // SAFETY: an initialised process-shared mutex in a live mapping.
        unsafe { libc::pthread_mutex_lock(self.page.ptr_at(PTHREAD_AT).cast()) };
    }

    fn unlock(&self) {
        // SAFETY: as `lock`; this thread holds it.
        unsafe { libc::pthread_mutex_unlock(self.page.ptr_at(PTHREAD_AT).cast()) };
    }

    fn post(&self) {
        // SAFETY: an initialised process-shared semaphore in a live mapping.
        unsafe { libc::sem_post(self.page.ptr_at(SEM_AT).cast()) };
    }

    fn wait(&self) {
        // SAFETY: as `post`.
        while unsafe { libc::sem_wait(self.page.ptr_at(SEM_AT).cast()) } != 0 {}
    }
}

const NOTE_MUTEX: &str = "lock + unlock, uncontended, in shared memory; baseline: pthread_mutex_t with PTHREAD_PROCESS_SHARED; target ratio <= 1.0";
const NOTE_SEM: &str =
    "post + wait, uncontended, in shared memory; baseline: a process-shared POSIX sem_t; target ratio <= 1.0";
const NOTE_CONTENDED: &str = "lock, add one, unlock while a peer on the other CPU does the same; time per lock + unlock here; baseline: the same with the pthread mutex; target ratio <= 1.0";
const NOTE_HANDOFF: &str = "a waiter in the other process sleeps on the held mutex; time from the holder's unlock to the waiter holding it; baseline: the same with the pthread mutex, alternating iteration by iteration; target ratio <= 1.0";
const NOTE_FUTEX: &str = "context, not a target: the same hand-off, in the same rotation, with a bare futex lock (glibc's three-state protocol); -timed: each sleep limited to 100 ms, as a waiter that must notice a dead owner sleeps; its ratio is the kernel timer's price";
const NOTE_RPC: &str = "an ADD call's round trip to a peer serving with rpc::Server; baseline: a raw ping-pong of a frame of the same size on the same transport; target ratio <= 1.1";

/// Runs the rows this module has (see the module docs).
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let local = opts.selected("sync/mutex") || opts.selected("sync/sem") || opts.selected("sync/p");
    let contended = opts.selected("sync/mutex-contended") || opts.selected("sync/pthread-mutex-contended");
    let handoff = opts.selected("sync/mutex-handoff") || opts.selected("sync/pthread-mutex-handoff");
    let rpc = opts.selected("rpc");
    if !local && !contended && !handoff && !rpc {
        return Ok(());
    }
    let name = unique("sync");
    let seg = SyncSegment::create(Backing::Named(&name), 64, FP).map_err(|e| e.to_string())?;
    let posix_name = unique("posix");
    let posix = Posix::create(&posix_name)?;
    if local {
        progress.step("sync: uncontended mutex and semaphore");
        let m = seg.mutex(0).map_err(|e| e.to_string())?;
        let (e, p) = sample_pair(
            opts.samples(),
            || drop(m.lock(None).expect("uncontended")),
            || {
                posix.lock();
                posix.unlock();
            },
        );
        let (ps, es) = (super::Stats::from_samples(&mut p.clone()), super::Stats::from_samples(&mut e.clone()));
        row(rows, "sync/pthread-mutex", 0, ps, None, NOTE_MUTEX);
        row(rows, "sync/mutex", 0, es, Some(("sync/pthread-mutex", ps)), NOTE_MUTEX);
        let s = seg.semaphore(8).map_err(|e| e.to_string())?;
        let (e, p) = sample_pair(
            opts.samples(),
            || {
                s.post().expect("post");
                s.wait(None).expect("wait");
            },
            || {
                posix.post();
                posix.wait();
            },
        );
        let (ps, es) = (super::Stats::from_samples(&mut p.clone()), super::Stats::from_samples(&mut e.clone()));
        row(rows, "sync/posix-sem", 0, ps, None, NOTE_SEM);
        row(rows, "sync/sem", 0, es, Some(("sync/posix-sem", ps)), NOTE_SEM);
    }
    let b = match cpus {
        [_, b, ..] => *b,
        _ => return Err("the cross-process sync and rpc rows need two CPUs (see --cpus); skipped".into()),
    };
    let rounds = opts.pick(5, 3, 1);
    let ops = opts.pick(200_000, 50_000, 1_000);
    let calls = opts.pick(20_000, 5_000, 50);
    let handoffs = opts.pick(2_000, 1_000, 20);
    let (mut ec, mut pc) = (Pool::default(), Pool::default());
    let (mut eh, mut ph, mut fh, mut th) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    let (mut rs, mut es, mut rm, mut em) = (Pool::default(), Pool::default(), Pool::default(), Pool::default());
    for round in 1..=rounds {
        let step = |what: &str| progress.step(&format!("{what} (round {round}/{rounds})"));
        if contended {
            step("sync: contended mutex, Ember");
            ec.add(contend(b, &name, &posix_name, &seg, &posix, true, ops))?;
            step("sync: contended mutex, pthread");
            pc.add(contend(b, &name, &posix_name, &seg, &posix, false, ops))?;
        }
        if handoff {
            step("sync: mutex hand-off to a sleeping waiter, Ember, pthread and futex in rotation");
            let [e, p, f, t] = hand_off(b, &name, &posix_name, &seg, &posix, handoffs)?;
            eh.add(Ok(e))?;
            ph.add(Ok(p))?;
            fh.add(Ok(f))?;
            th.add(Ok(t))?;
        }
        if rpc {
            step("rpc: seqpacket, raw ping-pong");
            rs.add(seqpacket_round_trips(b, false, calls))?;
            step("rpc: seqpacket, rpc::Client");
            es.add(seqpacket_round_trips(b, true, calls))?;
            step("rpc: shm rings, raw ping-pong");
            rm.add(shm_round_trips(b, false, calls))?;
            step("rpc: shm rings, rpc::Client");
            em.add(shm_round_trips(b, true, calls))?;
        }
    }
    if let (Some(e), Some(p)) = (ec.stats(), pc.stats()) {
        row(rows, "sync/pthread-mutex-contended", 0, p, None, NOTE_CONTENDED);
        row(rows, "sync/mutex-contended", 0, e, Some(("sync/pthread-mutex-contended", p)), NOTE_CONTENDED);
    }
    if let (Some(e), Some(p)) = (eh.stats(), ph.stats()) {
        row(rows, "sync/pthread-mutex-handoff", 0, p, None, NOTE_HANDOFF);
        row(rows, "sync/mutex-handoff", 0, e, Some(("sync/pthread-mutex-handoff", p)), NOTE_HANDOFF);
    }
    if let (Some(f), Some(t)) = (fh.stats(), th.stats()) {
        row(rows, "sync/futex-handoff", 0, f, None, NOTE_FUTEX);
        row(rows, "sync/futex-handoff-timed", 0, t, Some(("sync/futex-handoff", f)), NOTE_FUTEX);
    }
    let size = request_frame_len();
    if let (Some(r), Some(e)) = (rs.stats(), es.stats()) {
        row(rows, "rpc/raw-seqpacket", size, r, None, NOTE_RPC);
        row(rows, "rpc/uds-seqpacket", size, e, Some(("rpc/raw-seqpacket", r)), NOTE_RPC);
    }
    if let (Some(r), Some(e)) = (rm.stats(), em.stats()) {
        row(rows, "rpc/raw-shm", size, r, None, NOTE_RPC);
        row(rows, "rpc/shm", size, e, Some(("rpc/raw-shm", r)), NOTE_RPC);
    }
    Ok(())
}

/// The length of an `ADD` request frame (what the raw ping-pongs move).
fn request_frame_len() -> usize {
    let mut buf = [0u8; 64];
    ember_core::message::encode(ADD, 1, &(1u32, 1u32), &mut buf).map(|f| f.len()).unwrap_or(0)
}

/// Contended lock + unlock: the peer hammers the same mutex until told to stop.
fn contend(
    cpu: usize,
    seg_name: &str,
    posix_name: &str,
    seg: &SyncSegment,
    posix: &Posix,
    ember: bool,
    ops: usize,
) -> Result<Vec<f64>, String> {
    let stop = posix.page.word(STOP_AT);
    stop.store(0, Ordering::SeqCst);
    let which = if ember { "ember" } else { "pthread" };
    let peer = Peer::spawn(cpu, &["sync-contend", which, seg_name, posix_name])?;
    let m = seg.mutex(0).map_err(|e| e.to_string())?;
    let count = posix.page.word(COUNT_AT);
    let mut batches = Batches::new(ops);
    for _ in 0..ops {
        if ember {
            let g = m.lock(TIMEOUT).map_err(|e| e.to_string())?;
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            drop(g);
        } else {
            posix.lock();
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            posix.unlock();
        }
        batches.count(1);
    }
    stop.store(1, Ordering::SeqCst);
    peer.finish()?;
    Ok(batches.samples)
}

/// The monotonic clock's low 32 bits in nanoseconds: differences of up to 4 s are exact
/// with a wrapping subtraction, and both processes read the same clock.
fn clock_lo() -> u32 {
    ember_linux::poll::now().as_nanos() as u32
}

/// Waits (spinning) until `word` reaches `value`, for at most a few seconds.
fn spin_until(word: &std::sync::atomic::AtomicU32, value: u32, what: &str) -> Result<(), String> {
    let t = Instant::now();
    while word.load(Ordering::Acquire) != value {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!("hand-off: timed out waiting for {what}"));
        }
        std::hint::spin_loop();
    }
    Ok(())
}

/// Hand-offs to a sleeping waiter: this process holds the mutex; the peer, pinned on the
/// other CPU, blocks on it; once the lock word shows the peer queued (and 20 µs more, so
/// it is asleep in `futex`), this process unlocks. A sample is the time from just before
/// the unlock to the peer holding the lock. The locks of [`Lock`] take turns iteration by
/// iteration, so a change in the VM's state during the run touches all alike. Returns the
/// samples of Ember, pthread, the futex lock and the timed futex lock.
fn hand_off(
    cpu: usize,
    seg_name: &str,
    posix_name: &str,
    seg: &SyncSegment,
    posix: &Posix,
    iters: usize,
) -> Result<[Vec<f64>; 4], String> {
    let (go, done, got) = (posix.page.word(GO_AT), posix.page.word(DONE_AT), posix.page.word(GOT_AT));
    let futex_word = posix.page.word(FUTEX_AT);
    futex_word.store(0, Ordering::SeqCst);
    go.store(0, Ordering::SeqCst);
    done.store(0, Ordering::SeqCst);
    let peer = Peer::spawn(cpu, &["sync-handoff", seg_name, posix_name, &iters.to_string()])?;
    let m = seg.mutex(0).map_err(|e| e.to_string())?;
    // glibc's lock word, the first int of a pthread_mutex_t: 0 free, 1 held, 2 held and a
    // waiter queued (or about to sleep). A glibc detail, read only by this benchmark.
    let pthread_word = posix.page.word(PTHREAD_AT);
    let warm = iters / 10;
    let mut samples: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(iters));
    for i in 1..=4 * iters as u32 {
        let lock = Lock::of(i);
        let guard = match lock {
            Lock::Ember => Some(m.lock(TIMEOUT).map_err(|e| e.to_string())?),
            Lock::Pthread => {
                posix.lock();
                None
            }
            Lock::Futex | Lock::FutexTimed => {
                futex_lock(futex_word, false);
                None
            }
        };
        go.store(i, Ordering::Release);
        let t = Instant::now();
        loop {
            let queued = match lock {
                Lock::Ember => m.word() & ember_core::shm::sync::WAITERS != 0,
                Lock::Pthread => pthread_word.load(Ordering::Relaxed) == 2,
                Lock::Futex | Lock::FutexTimed => futex_word.load(Ordering::Relaxed) == 2,
            };
            if queued {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err("hand-off: the peer never queued on the lock".into());
            }
            std::hint::spin_loop();
        }
        let queued_at = Instant::now();
        while queued_at.elapsed() < Duration::from_micros(20) {
            std::hint::spin_loop();
        }
        let t0 = clock_lo();
        match (guard, lock) {
            (Some(g), _) => drop(g),
            (None, Lock::Pthread) => posix.unlock(),
            (None, _) => futex_unlock(futex_word),
        }
        spin_until(done, i, "the waiter")?;
        let dt = got.load(Ordering::Acquire).wrapping_sub(t0) as f64;
        if (i as usize).div_ceil(4) > warm {
            samples[lock as usize].push(dt);
        }
    }
    peer.finish()?;
    Ok(samples)
}

/// Round trips over a seqpacket socket pair: `rpc::Client` calls, or raw frames echoed.
fn seqpacket_round_trips(cpu: usize, ember: bool, calls: usize) -> Result<Vec<f64>, String> {
    let (mine, theirs) = ember_linux::uds::seqpacket_pair().map_err(|e| e.to_string())?;
    let role = if ember { "rpc-seqpacket" } else { "rpc-seqpacket-raw" };
    let theirs: OwnedFd = theirs.into_fd();
    let mut child = spawn_peer(cpu, &[role, &calls.to_string()], Stdio::from(theirs), Stdio::null())?;
    let mut samples = Vec::with_capacity(calls);
    let warm = calls / 10;
    if ember {
        let mut sock = mine;
        sock.set_max_frame(FRAME);
        let mut c: Box<Client<PacketSocket, 1, 64, FRAME>> = Box::new(Client::new(sock).map_err(|e| e.to_string())?);
        for i in 0..calls as u32 {
            let t = Instant::now();
            let r: u32 = c.call(ADD, &(i, 1u32), TIMEOUT).map_err(|e| e.to_string())?;
            if r != i.wrapping_add(1) {
                return Err(format!("rpc: {r} for {i} + 1"));
            }
            if i as usize >= warm {
                samples.push(now_ns(t));
            }
        }
    } else {
        let fd = mine.into_fd();
        let mut frame = [0u8; 64];
        let len = ember_core::message::encode(ADD, 1, &(1u32, 1u32), &mut frame).map_err(|e| e.to_string())?.len();
        let mut buf = [0u8; FRAME];
        for i in 0..calls {
            let t = Instant::now();
            rustix::net::send(&fd, &frame[..len], rustix::net::SendFlags::empty()).map_err(|e| e.to_string())?;
            let n = rustix::net::recv(&fd, &mut buf, rustix::net::RecvFlags::empty()).map_err(|e| e.to_string())?.0;
            if n != len {
                return Err(format!("raw echo: {n} bytes for {len}"));
            }
            if i >= warm {
                samples.push(now_ns(t));
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("rpc peer failed: {status}"));
    }
    Ok(samples)
}

/// Most requests in flight in the `inflight` sweep.
pub(super) const MAX_IN_FLIGHT: usize = 32;

/// Per-call samples of `calls` ADD calls over a seqpacket pair with `k` requests in flight
/// (start `k`, then wait for the oldest and start the next): time per call over batches.
pub(super) fn rpc_in_flight(cpu: usize, calls: usize, k: usize) -> Result<Vec<f64>, String> {
    let k = k.clamp(1, MAX_IN_FLIGHT);
    let (mine, theirs) = ember_linux::uds::seqpacket_pair().map_err(|e| e.to_string())?;
    let theirs: OwnedFd = theirs.into_fd();
    let mut child = spawn_peer(cpu, &["rpc-seqpacket", &calls.to_string()], Stdio::from(theirs), Stdio::null())?;
    let mut sock = mine;
    sock.set_max_frame(FRAME);
    let mut c: Box<Client<PacketSocket, MAX_IN_FLIGHT, 64, FRAME>> =
        Box::new(Client::new(sock).map_err(|e| e.to_string())?);
    let mut tickets = std::collections::VecDeque::with_capacity(k);
    let mut batches = Batches::new(calls);
    let mut started = 0u32;
    let check = |c: &mut Client<PacketSocket, MAX_IN_FLIGHT, 64, FRAME>, (t, i): (ember_linux::rpc::Ticket, u32)| {
        let r: u32 = c.wait(t, TIMEOUT).map_err(|e| e.to_string())?;
        if r != i.wrapping_add(1) {
            return Err(format!("rpc: {r} for {i} + 1"));
        }
        Ok::<(), String>(())
    };
    while (started as usize) < calls {
        while tickets.len() < k && (started as usize) < calls {
            tickets.push_back((c.start(ADD, &(started, 1u32), TIMEOUT).map_err(|e| e.to_string())?, started));
            started += 1;
        }
        if let Some(t) = tickets.pop_front() {
            check(&mut c, t)?;
            batches.count(1);
        }
    }
    while let Some(t) = tickets.pop_front() {
        check(&mut c, t)?;
        batches.count(1);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("rpc peer failed: {status}"));
    }
    Ok(batches.samples)
}

/// Round trips over two SPSC rings: `rpc::Client` over a `ShmLink`, or raw records echoed.
fn shm_round_trips(cpu: usize, ember: bool, calls: usize) -> Result<Vec<f64>, String> {
    let (req, resp) = (unique("req"), unique("resp"));
    let mut tx = SpscSender::create(Backing::Named(&req), 8 * 1024, FP).map_err(|e| e.to_string())?;
    let role = if ember { "rpc-shm" } else { "rpc-shm-raw" };
    let peer = Peer::spawn(cpu, &[role, &req, &resp, &calls.to_string()])?;
    let rx = SpscReceiver::open(&resp, FP).map_err(|e| e.to_string())?;
    let mut samples = Vec::with_capacity(calls);
    let warm = calls / 10;
    if ember {
        let mut c: Box<Client<ShmLink, 1, 64, FRAME>> =
            Box::new(Client::new(ShmLink { tx, rx }).map_err(|e| e.to_string())?);
        for i in 0..calls as u32 {
            let t = Instant::now();
            let r: u32 = c.call(ADD, &(i, 1u32), TIMEOUT).map_err(|e| e.to_string())?;
            if r != i.wrapping_add(1) {
                return Err(format!("rpc: {r} for {i} + 1"));
            }
            if i as usize >= warm {
                samples.push(now_ns(t));
            }
        }
    } else {
        let mut rx = rx;
        let mut frame = [0u8; 64];
        let len = ember_core::message::encode(ADD, 1, &(1u32, 1u32), &mut frame).map_err(|e| e.to_string())?.len();
        let mut buf = [0u8; FRAME];
        for i in 0..calls {
            let t = Instant::now();
            tx.try_send(&frame[..len]).map_err(|e| e.to_string())?;
            let n = rx.recv(&mut buf, TIMEOUT).map_err(|e| e.to_string())?;
            if n != len {
                return Err(format!("raw echo: {n} bytes for {len}"));
            }
            if i >= warm {
                samples.push(now_ns(t));
            }
        }
    }
    peer.finish()?;
    Ok(samples)
}

/// This module's peer roles, for [`super::harness::peer`]: `None` for a role that is not
/// one of them.
pub fn peer(role: &str, args: &[String]) -> Option<Result<(), String>> {
    (role.starts_with("sync-") || role.starts_with("rpc-")).then(|| play(role, args))
}

/// The peer roles of this module.
fn play(role: &str, args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("{role}: missing argument {i}"));
    let s = |e: ember_linux::Error| e.to_string();
    match role {
        "sync-contend" => {
            let ember = arg(0)? == "ember";
            let seg = SyncSegment::open(&arg(1)?, FP).map_err(s)?;
            let posix = Posix::open(&arg(2)?)?;
            let m = seg.mutex(0).map_err(s)?;
            let (stop, count) = (posix.page.word(STOP_AT), posix.page.word(COUNT_AT));
            println!("ready");
            while stop.load(Ordering::Relaxed) == 0 {
                if ember {
                    let g = m.lock(TIMEOUT).map_err(s)?;
                    count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    drop(g);
                } else {
                    posix.lock();
                    count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    posix.unlock();
                }
            }
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        "sync-handoff" => {
            let seg = SyncSegment::open(&arg(0)?, FP).map_err(s)?;
            let posix = Posix::open(&arg(1)?)?;
            let iters: u32 = arg(2)?.parse().map_err(|_| "iterations")?;
            let m = seg.mutex(0).map_err(s)?;
            let (go, done, got) = (posix.page.word(GO_AT), posix.page.word(DONE_AT), posix.page.word(GOT_AT));
            let futex_word = posix.page.word(FUTEX_AT);
            println!("ready");
            for i in 1..=4 * iters {
                spin_until(go, i, "the holder")?;
                match Lock::of(i) {
                    Lock::Ember => {
                        let g = m.lock(TIMEOUT).map_err(s)?;
                        got.store(clock_lo(), Ordering::Release);
                        drop(g);
                    }
                    Lock::Pthread => {
                        posix.lock();
                        got.store(clock_lo(), Ordering::Release);
                        posix.unlock();
                    }
                    lock => {
                        futex_lock(futex_word, lock == Lock::FutexTimed);
                        got.store(clock_lo(), Ordering::Release);
                        futex_unlock(futex_word);
                    }
                }
                done.store(i, Ordering::Release);
            }
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        "rpc-seqpacket" | "rpc-seqpacket-raw" => {
            let calls: usize = arg(0)?.parse().map_err(|_| "calls")?;
            let fd = std::io::stdin().as_fd().try_clone_to_owned().map_err(|e| e.to_string())?;
            let sock = PacketSocket::from_fd(fd, PacketKind::Seqpacket, FRAME);
            if role == "rpc-seqpacket" {
                serve(sock, calls)?;
            } else {
                let mut buf = [0u8; FRAME];
                let fd = sock.as_fd();
                for _ in 0..calls {
                    let n =
                        rustix::net::recv(fd, &mut buf, rustix::net::RecvFlags::empty()).map_err(|e| e.to_string())?.0;
                    rustix::net::send(fd, &buf[..n], rustix::net::SendFlags::empty()).map_err(|e| e.to_string())?;
                }
            }
        }
        "rpc-shm" | "rpc-shm-raw" => {
            let calls: usize = arg(2)?.parse().map_err(|_| "calls")?;
            let mut rx = SpscReceiver::open(&arg(0)?, FP).map_err(s)?;
            let mut tx = SpscSender::create(Backing::Named(&arg(1)?), 8 * 1024, FP).map_err(s)?;
            println!("ready");
            if role == "rpc-shm" {
                serve(ShmLink { tx, rx }, calls)?;
            } else {
                let mut buf = [0u8; FRAME];
                for _ in 0..calls {
                    let n = rx.recv(&mut buf, TIMEOUT).map_err(s)?;
                    tx.try_send(&buf[..n]).map_err(s)?;
                }
            }
            // Let the parent take the last record before the ring is unlinked.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
        other => return Err(format!("unknown peer role {other}")),
    }
    Ok(())
}

/// Serves `calls` ADD requests with `rpc::Server::serve_one`.
fn serve<L: ember_linux::rpc::Link + ember_linux::rpc::MaybeFd>(link: L, calls: usize) -> Result<(), String> {
    let mut server: Box<Server<L, FRAME, FRAME>> = Box::new(Server::new(link).map_err(|e| e.to_string())?);
    let mut handler = |kind: u32, p: &[u8], out: &mut ember_linux::rpc::Responder<'_>| -> Result<(), Failure> {
        match kind {
            ADD => {
                let (a, b): (u32, u32) = decode(p)?;
                out.respond(&a.wrapping_add(b))
            }
            _ => Err(Failure::new(Failure::UNKNOWN_KIND, "no such kind")),
        }
    };
    for _ in 0..calls {
        server.serve_one(TIMEOUT, &mut handler).map_err(|e| e.to_string())?;
    }
    Ok(())
}
