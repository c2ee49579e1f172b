//! Cross-process rows of the one-to-many shared-memory channels: the seqlock (latest value)
//! and the broadcast ring (lossy, any number of readers), each as a ping-pong between two
//! processes pinned to two CPUs (one-way = half the round trip, every round trip timed),
//! next to the cache-line floor measured in the same run.

use std::time::{Duration, Instant};

use ember_linux::shm::{Backing, BroadcastReader, BroadcastWriter, SeqLockReader, SeqLockWriter};

use super::harness::{self, Peer, Pool, floor, now_ns, row, unique};
use super::{Options, Progress, Row};

const SIZE: usize = 64;
const FP: u64 = 0xBE7C_0000_0000_0002;
/// A ping-pong that stops answering for this long is an error, not a hang.
const STUCK: Duration = Duration::from_secs(30);

/// The value of round trip `i`: the counter in the first 8 bytes.
fn value(i: u64) -> [u8; SIZE] {
    let mut v = [0x5Au8; SIZE];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn counter(v: &[u8]) -> u64 {
    v.get(..8).and_then(|b| b.try_into().ok()).map_or(u64::MAX, u64::from_le_bytes)
}

/// Spins until `poll` returns `Some`, for at most [`STUCK`].
fn spin_until<T>(mut poll: impl FnMut() -> Option<T>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        for _ in 0..1024 {
            if let Some(t) = poll() {
                return Ok(t);
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > STUCK {
            return Err("the peer stopped answering".into());
        }
    }
}

/// Waits until the seqlock holds the value of round `i`.
fn seqlock_wait(r: &mut SeqLockReader, i: u64, buf: &mut [u8; SIZE]) -> Result<(), String> {
    spin_until(|| match r.read(buf) {
        Ok(s) if s.len == SIZE && counter(buf) == i => Some(()),
        _ => None,
    })
}

/// Waits for the next broadcast record, which must be round `i`'s.
fn broadcast_wait(r: &mut BroadcastReader, i: u64, buf: &mut [u8; SIZE]) -> Result<(), String> {
    let got = spin_until(|| r.try_recv(buf).ok())?;
    if got.lost != 0 || counter(&buf[..got.len]) != i {
        return Err(format!("broadcast: record {} lost {} (expected round {i})", got.seq, got.lost));
    }
    Ok(())
}

fn seqlock_latency(cpu: usize, iters: usize) -> Result<Vec<f64>, String> {
    let (mine, theirs) = (unique("seq-a"), unique("seq-b"));
    let mut w = SeqLockWriter::create(Backing::Named(&mine), SIZE, FP).map_err(|e| e.to_string())?;
    let peer = Peer::spawn(cpu, &["seqlock-echo", &mine, &theirs, &iters.to_string()])?;
    let mut r = SeqLockReader::open(&theirs, FP).map_err(|e| e.to_string())?;
    let mut buf = [0u8; SIZE];
    let mut samples = Vec::with_capacity(iters);
    for i in 1..=iters as u64 {
        let t = Instant::now();
        w.write(&value(i)).map_err(|e| e.to_string())?;
        seqlock_wait(&mut r, i, &mut buf)?;
        samples.push(now_ns(t) / 2.0);
    }
    peer.finish()?;
    Ok(samples)
}

fn broadcast_latency(cpu: usize, iters: usize) -> Result<Vec<f64>, String> {
    let (mine, theirs) = (unique("bc-a"), unique("bc-b"));
    let mut w = BroadcastWriter::create(Backing::Named(&mine), 64 * 1024, FP).map_err(|e| e.to_string())?;
    let peer = Peer::spawn(cpu, &["broadcast-echo", &mine, &theirs, &iters.to_string()])?;
    let mut r = BroadcastReader::open(&theirs, FP, true).map_err(|e| e.to_string())?;
    let mut buf = [0u8; SIZE];
    let mut samples = Vec::with_capacity(iters);
    for i in 1..=iters as u64 {
        let t = Instant::now();
        w.send(&value(i)).map_err(|e| e.to_string())?;
        broadcast_wait(&mut r, i, &mut buf)?;
        samples.push(now_ns(t) / 2.0);
    }
    peer.finish()?;
    Ok(samples)
}

/// This module's peer roles, for [`super::harness::peer`]: `None` for a role that is not
/// one of them.
pub fn peer(role: &str, args: &[String]) -> Option<Result<(), String>> {
    match role {
        "seqlock-echo" | "broadcast-echo" => Some(play(role, args)),
        "broadcast-drain" => Some(drain(args)),
        _ => None,
    }
}

/// The peer roles of this module: `seqlock-echo` and `broadcast-echo` (mine, theirs,
/// iterations).
fn play(role: &str, args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("peer {role}: missing argument {i}"));
    let (theirs, mine) = (arg(0)?, arg(1)?);
    let iters: u64 = arg(2)?.parse().map_err(|_| "peer: bad count")?;
    let mut buf = [0u8; SIZE];
    match role {
        "seqlock-echo" => {
            let mut r = SeqLockReader::open(&theirs, FP).map_err(|e| e.to_string())?;
            let mut w = SeqLockWriter::create(Backing::Named(&mine), SIZE, FP).map_err(|e| e.to_string())?;
            harness::say_ready()?;
            for i in 1..=iters {
                seqlock_wait(&mut r, i, &mut buf)?;
                w.write(&buf).map_err(|e| e.to_string())?;
            }
            harness::wait_for_parent();
        }
        "broadcast-echo" => {
            let mut r = BroadcastReader::open(&theirs, FP, true).map_err(|e| e.to_string())?;
            let mut w = BroadcastWriter::create(Backing::Named(&mine), 64 * 1024, FP).map_err(|e| e.to_string())?;
            harness::say_ready()?;
            for i in 1..=iters {
                broadcast_wait(&mut r, i, &mut buf)?;
                w.send(&buf).map_err(|e| e.to_string())?;
            }
            harness::wait_for_parent();
        }
        other => return Err(format!("unknown peer role {other}")),
    }
    Ok(())
}

/// The `readers` sweep's peer: reads the broadcast ring `args[0]` (waiting on its futex)
/// until the record numbered `args[1]` (the last), then prints `received lost`.
fn drain(args: &[String]) -> Result<(), String> {
    let name = args.first().ok_or("broadcast-drain: no ring")?;
    let last: u64 = args.get(1).and_then(|n| n.parse().ok()).ok_or("broadcast-drain: no count")?;
    let mut r = BroadcastReader::open(name, FP, false).map_err(|e| e.to_string())?;
    harness::say_ready()?;
    let mut buf = [0u8; SIZE];
    let (mut received, mut lost) = (0u64, 0u64);
    loop {
        let got = r.recv(&mut buf, Some(STUCK)).map_err(|e| format!("broadcast-drain: {e}"))?;
        received += 1;
        lost += got.lost;
        if counter(&buf[..got.len]) >= last {
            break;
        }
    }
    println!("{received} {lost}");
    harness::wait_for_parent();
    Ok(())
}

/// What one run of the `readers` sweep saw: the writer's per-record samples, and the
/// records the readers received and lost in all.
pub(super) struct Fanout {
    pub(super) samples: Vec<f64>,
    pub(super) received: u64,
    pub(super) lost: u64,
}

/// The writer publishes `records` 64-byte records as fast as it can on `cpus.0` while
/// `readers` reader processes (on `cpus.1`, asleep on the ring's futex between records)
/// take them: the writer's cost per record over batches, and what the readers got.
pub(super) fn broadcast_readers(cpus: (usize, usize), readers: usize, records: usize) -> Result<Fanout, String> {
    let name = unique("bc-fan");
    let mut w = BroadcastWriter::create(Backing::Named(&name), 64 * 1024, FP).map_err(|e| e.to_string())?;
    let last = records as u64;
    let mut peers = (0..readers)
        .map(|_| Peer::spawn(cpus.1, &["broadcast-drain", &name, &last.to_string()]))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = super::pin(cpus.0);
    let mut batches = super::harness::Batches::new(records);
    for i in 1..=last {
        w.send(&value(i)).map_err(|e| e.to_string())?;
        batches.count(1);
    }
    let (mut received, mut lost) = (0, 0);
    for p in &mut peers {
        let line = p.line()?;
        let mut it = line.split_whitespace().map(|n| n.parse::<u64>());
        match (it.next(), it.next()) {
            (Some(Ok(r)), Some(Ok(l))) => {
                received += r;
                lost += l;
            }
            _ => return Err(format!("broadcast-drain said {line:?}")),
        }
    }
    for p in peers {
        p.finish()?;
    }
    Ok(Fanout { samples: batches.samples, received, lost })
}

const NOTE: &str = "64-byte values ping-ponged between two processes through two segments, the reader spinning (one-way = round trip / 2); baseline: the cache-line floor; target ratio <= 3.0";

/// The seqlock and broadcast rows.
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    let (seq, bc) = (opts.selected("shm/seqlock"), opts.selected("shm/broadcast"));
    if !seq && !bc {
        return Ok(());
    }
    let b = *cpus.get(1).ok_or("the cross-process rows need two CPUs (see --cpus); skipped")?;
    let rounds = opts.pick(5, 3, 1);
    let iters = opts.pick(20_000, 5_000, 50);
    // The floor of this run, unless the SPSC rows measured it already.
    let mut fl = Pool::default();
    let existing = rows.iter().find(|r| r.mechanism == "shm/floor").map(|r| r.stats);
    let (mut s, mut br) = (Pool::default(), Pool::default());
    for round in 1..=rounds {
        let step = |what: &str| progress.step(&format!("{what} (round {round}/{rounds})"));
        if existing.is_none() {
            step("cache-line floor");
            fl.add(floor(b, iters))?;
        }
        if seq {
            step("shm seqlock ping-pong");
            s.add(seqlock_latency(b, iters))?;
        }
        if bc {
            step("shm broadcast ping-pong");
            br.add(broadcast_latency(b, iters))?;
        }
    }
    let floor = match existing {
        Some(f) => f,
        None => {
            let f = fl.stats().ok_or("no floor samples")?;
            row(rows, "shm/floor", 4, f, None, harness::NOTE_FLOOR);
            f
        }
    };
    if let Some(st) = s.stats() {
        row(rows, "shm/seqlock", SIZE, st, Some(("shm/floor", floor)), NOTE);
    }
    if let Some(st) = br.stats() {
        row(rows, "shm/broadcast", SIZE, st, Some(("shm/floor", floor)), NOTE);
    }
    Ok(())
}
