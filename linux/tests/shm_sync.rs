//! Mutexes, semaphores and events shared by real, separate processes.
//!
//! Its own `main` (`harness = false`): the tests spawn this binary again with
//! `--peer <role> <segment> ...` to play the other processes.

mod common;
use ember_test_support as counting;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ember_core::shm::sync::SyncError;
use ember_linux::Error;
use ember_linux::shm::{Backing, SyncSegment};

const FP: u64 = 0xE3BE_5EED_0000_0010;
/// The layout of the test segment's data area.
const MUTEX: usize = 0;
const SEM: usize = 8;
const EVENT: usize = 16;
const COUNTER: usize = 24;
const INSIDE: usize = 28;
const MAX_INSIDE: usize = 32;

static N: AtomicU32 = AtomicU32::new(0);

/// A named segment unique to this process and call, unlinked on drop.
struct Seg {
    name: String,
    seg: SyncSegment,
}

impl Seg {
    fn new() -> Seg {
        let name = format!("/ember-sync-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let seg = SyncSegment::create(Backing::Named(&name), 64, FP).unwrap();
        Seg { name, seg }
    }
}

impl Drop for Seg {
    fn drop(&mut self) {
        let _ = rustix::shm::unlink(self.name.as_str());
    }
}

struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let mut child = common::me().arg("--peer").args(args).stdout(Stdio::piped()).spawn().expect("spawn peer");
        let out = BufReader::new(child.stdout.take().unwrap());
        Peer { child, out }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn wait_ok(mut self) {
        assert!(self.child.wait().unwrap().success(), "a peer failed");
    }
}

/// 4 processes each add 1 to a shared counter 250,000 times under the mutex, with a load
/// and a separate store (not an atomic add), so any overlap loses increments.
fn counter_under_mutex_is_exact() {
    let s = Seg::new();
    let peers: Vec<Peer> = (0..4).map(|_| Peer::spawn(&["count", &s.name, "250000"])).collect();
    for p in peers {
        p.wait_ok();
    }
    assert_eq!(s.seg.u32_at(COUNTER).unwrap().load(Ordering::Relaxed), 1_000_000);
    assert_eq!(s.seg.mutex(MUTEX).unwrap().word(), 0, "unlocked, no waiter bit left");
}

/// A semaphore of 3 bounds a pool across 6 processes: never more than 3 inside, and 3 at
/// some point (so the bound was tested).
fn semaphore_bounds_a_pool() {
    let s = Seg::new();
    s.seg.semaphore(SEM).unwrap().init(3);
    let peers: Vec<Peer> = (0..6).map(|_| Peer::spawn(&["pool", &s.name, "500"])).collect();
    for p in peers {
        p.wait_ok();
    }
    assert_eq!(s.seg.u32_at(INSIDE).unwrap().load(Ordering::Relaxed), 0);
    assert_eq!(s.seg.u32_at(MAX_INSIDE).unwrap().load(Ordering::Relaxed), 3);
    assert_eq!(s.seg.semaphore(SEM).unwrap().count(), 3);
}

/// `kill -9` of the process holding the mutex: the next locker is told `owner_died` within
/// its timeout, repairs, marks it consistent, and later lockers get it clean.
fn dead_owner_is_detected_and_repaired() {
    let s = Seg::new();
    let mut holder = Peer::spawn(&["hold", &s.name]);
    assert_eq!(holder.line(), "locked");
    let m = s.seg.mutex(MUTEX).unwrap();
    assert!(matches!(m.try_lock(), Err(Error::WouldBlock)));
    holder.kill();
    let t = Instant::now();
    let mut g = m.lock(Some(Duration::from_secs(5))).unwrap();
    assert!(g.owner_died(), "the holder was killed");
    assert!(t.elapsed() < Duration::from_secs(1), "noticed within a liveness slice or so: {:?}", t.elapsed());
    s.seg.u32_at(COUNTER).unwrap().store(7, Ordering::Relaxed); // the repair
    g.mark_consistent().unwrap();
    drop(g);
    let g = m.lock(Some(Duration::from_secs(1))).unwrap();
    assert!(!g.owner_died());
    drop(g);
    // Another process locks it cleanly too.
    let mut other = Peer::spawn(&["lock-once", &s.name]);
    assert_eq!(other.line(), "clean");
    other.wait_ok();
}

/// A caller that retries with timeouts shorter than a liveness slice still takes the lock
/// from a dead owner (each timed-out attempt looks at the owner before giving up); and a
/// thread that locks twice is told, not deadlocked.
fn short_timeouts_still_take_over() {
    let s = Seg::new();
    let mut holder = Peer::spawn(&["hold", &s.name]);
    assert_eq!(holder.line(), "locked");
    holder.kill();
    let m = s.seg.mutex(MUTEX).unwrap();
    let mut attempts = 0;
    let g = loop {
        attempts += 1;
        assert!(attempts <= 50, "never took over with 20 ms attempts");
        match m.lock(Some(Duration::from_millis(20))) {
            Ok(g) => break g,
            Err(Error::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert!(g.owner_died());
    assert!(matches!(m.lock(Some(Duration::from_millis(20))), Err(Error::Sync(SyncError::Deadlock))));
    drop(g); // unrepaired: not recoverable, as documented
}

/// A holder that dies, then the process that took over from it dies too before repairing:
/// the next locker is told again. Unlocking without repairing makes it not recoverable.
fn holder_dying_twice() {
    let s = Seg::new();
    let mut first = Peer::spawn(&["hold", &s.name]);
    assert_eq!(first.line(), "locked");
    first.kill();
    let mut second = Peer::spawn(&["hold", &s.name]);
    assert_eq!(second.line(), "locked owner-died");
    second.kill();
    let m = s.seg.mutex(MUTEX).unwrap();
    let g = m.lock(Some(Duration::from_secs(5))).unwrap();
    assert!(g.owner_died(), "told again");
    drop(g); // not repaired
    assert!(matches!(m.lock(Some(Duration::from_millis(100))), Err(Error::Sync(SyncError::NotRecoverable))));
    let mut other = Peer::spawn(&["lock-once", &s.name]);
    assert_eq!(other.line(), "not-recoverable");
    other.wait_ok();
}

/// Waiters with a timeout return `TimedOut` while the holder (or the count, or the event)
/// does not change.
fn waiters_time_out() {
    let s = Seg::new();
    let mut holder = Peer::spawn(&["hold", &s.name]);
    assert_eq!(holder.line(), "locked");
    let m = s.seg.mutex(MUTEX).unwrap();
    let t = Instant::now();
    assert!(matches!(m.lock(Some(Duration::from_millis(300))), Err(Error::TimedOut)));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    holder.kill();
    let sem = s.seg.semaphore(SEM).unwrap();
    assert!(matches!(sem.wait(Some(Duration::from_millis(50))), Err(Error::TimedOut)));
    assert!(matches!(sem.try_wait(), Err(Error::WouldBlock)));
    let e = s.seg.event(EVENT).unwrap();
    assert!(matches!(e.wait_change(e.current(), Some(Duration::from_millis(50))), Err(Error::TimedOut)));
}

/// An event wakes a waiter in another process, which sees the data written before.
fn event_across_processes() {
    let s = Seg::new();
    let e = s.seg.event(EVENT).unwrap();
    let mut waiter = Peer::spawn(&["wait-event", &s.name]);
    assert_eq!(waiter.line(), "waiting");
    std::thread::sleep(Duration::from_millis(50));
    s.seg.u32_at(COUNTER).unwrap().store(42, Ordering::Relaxed);
    e.notify_all();
    assert_eq!(waiter.line(), "changed 1 42");
    waiter.wait_ok();
    // A semaphore post from here wakes a waiter there.
    let mut w = Peer::spawn(&["wait-sem", &s.name]);
    assert_eq!(w.line(), "waiting");
    std::thread::sleep(Duration::from_millis(50));
    s.seg.semaphore(SEM).unwrap().post().unwrap();
    assert_eq!(w.line(), "got");
    w.wait_ok();
}

/// Bad offsets are refused, not mapped.
fn offsets_are_checked() {
    let s = Seg::new();
    assert!(s.seg.mutex(2).is_err(), "misaligned");
    assert!(s.seg.mutex(60).is_err(), "past the end");
    assert!(s.seg.u64_at(4).is_err(), "misaligned u64");
    assert!(s.seg.semaphore(56).is_ok());
    assert!(SyncSegment::open(&s.name, FP + 1).is_err(), "wrong fingerprint");
}

/// Lock, unlock, post, wait, notify and wait_change allocate nothing.
fn sync_allocates_nothing() {
    let s = Seg::new();
    let m = s.seg.mutex(MUTEX).unwrap();
    let sem = s.seg.semaphore(SEM).unwrap();
    let e = s.seg.event(EVENT).unwrap();
    drop(m.lock(None).unwrap()); // first use in this thread: the id cache (no heap either)
    let n = counting::allocations(|| {
        for _ in 0..100 {
            drop(m.lock(Some(Duration::from_secs(1))).unwrap());
            drop(m.try_lock().unwrap());
            sem.post().unwrap();
            sem.wait(Some(Duration::from_secs(1))).unwrap();
            let seen = e.current();
            e.notify_one();
            e.wait_change(seen, Some(Duration::from_secs(1))).unwrap();
        }
    });
    assert_eq!(n, 0, "sync operations allocated");
}

fn peer(args: &[String]) {
    let seg = SyncSegment::open(&args[1], FP).unwrap();
    let m = seg.mutex(MUTEX).unwrap();
    match args[0].as_str() {
        "count" => {
            let n: u32 = args[2].parse().unwrap();
            let c = seg.u32_at(COUNTER).unwrap();
            for i in 0..n {
                let g = m.lock(Some(Duration::from_secs(30))).unwrap();
                assert!(!g.owner_died());
                let v = c.load(Ordering::Relaxed);
                if i % 1024 == 0 {
                    // Give up the CPU now and then while holding the lock: the others
                    // contend and sleep on it.
                    std::thread::yield_now();
                }
                c.store(v + 1, Ordering::Relaxed);
                drop(g);
            }
        }
        "pool" => {
            let n: u32 = args[2].parse().unwrap();
            let sem = seg.semaphore(SEM).unwrap();
            let (inside, max) = (seg.u32_at(INSIDE).unwrap(), seg.u32_at(MAX_INSIDE).unwrap());
            for _ in 0..n {
                sem.wait(Some(Duration::from_secs(30))).unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                // Stay inside a while (sleeping, so that on two cores a third process gets
                // in and a fourth has to wait).
                std::thread::sleep(Duration::from_micros(200));
                inside.fetch_sub(1, Ordering::SeqCst);
                sem.post().unwrap();
            }
        }
        "hold" => {
            let g = m.lock(Some(Duration::from_secs(10))).unwrap();
            println!("{}", if g.owner_died() { "locked owner-died" } else { "locked" });
            std::mem::forget(g);
            std::thread::sleep(Duration::from_secs(60));
        }
        "lock-once" => match m.lock(Some(Duration::from_secs(5))) {
            Ok(g) => println!("{}", if g.owner_died() { "owner-died" } else { "clean" }),
            Err(Error::Sync(SyncError::NotRecoverable)) => println!("not-recoverable"),
            Err(e) => println!("error {e}"),
        },
        "wait-event" => {
            let e = seg.event(EVENT).unwrap();
            let seen = e.current();
            println!("waiting");
            let now = e.wait_change(seen, Some(Duration::from_secs(10))).unwrap();
            println!("changed {now} {}", seg.u32_at(COUNTER).unwrap().load(Ordering::Relaxed));
        }
        "wait-sem" => {
            println!("waiting");
            seg.semaphore(SEM).unwrap().wait(Some(Duration::from_secs(10))).unwrap();
            println!("got");
        }
        other => panic!("unknown peer role {other}"),
    }
}

fn main() {
    common::main(
        &[
            ("counter_under_mutex_is_exact", counter_under_mutex_is_exact),
            ("semaphore_bounds_a_pool", semaphore_bounds_a_pool),
            ("dead_owner_is_detected_and_repaired", dead_owner_is_detected_and_repaired),
            ("holder_dying_twice", holder_dying_twice),
            ("short_timeouts_still_take_over", short_timeouts_still_take_over),
            ("waiters_time_out", waiters_time_out),
            ("event_across_processes", event_across_processes),
            ("offsets_are_checked", offsets_are_checked),
            ("sync_allocates_nothing", sync_allocates_nothing),
        ],
        peer,
    );
}
