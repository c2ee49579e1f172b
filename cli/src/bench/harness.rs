//! What every row module shares: peer processes (this binary run as `emberctl __peer`),
//! a raw shared page for baselines that owe nothing to Ember, per-batch samples of
//! streaming rows, sample pools over rounds, report rows, and the cache-line floor every
//! shared-memory row is measured against.
//!
//! Row modules import this module and `super` (options, statistics), never each other;
//! [`peer`] hands a peer's role to the module that plays it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rustix::fd::OwnedFd;

use super::{Row, Stats};

/// Messages per sample of the streaming rows.
pub(super) const BATCH: usize = 256;
/// A unique name for a bench object (shm segment, queue, socket path).
pub(super) fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("/ember-bench-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A peer process: this binary run as `emberctl __peer <role> ...`.
pub(super) struct Peer {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: BufReader<ChildStdout>,
}

/// Spawns `emberctl __peer <cpu> <args>` with the given stdin and stdout.
pub(super) fn spawn_peer(cpu: usize, args: &[&str], stdin: Stdio, stdout: Stdio) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    Command::new(exe)
        .arg("__peer")
        .arg(cpu.to_string())
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .spawn()
        .map_err(|e| format!("cannot spawn peer: {e}"))
}

impl Peer {
    pub(super) fn spawn(cpu: usize, args: &[&str]) -> Result<Peer, String> {
        let mut child = spawn_peer(cpu, args, Stdio::piped(), Stdio::piped())?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut p = Peer { child, stdin, stdout };
        let line = p.line()?;
        if line != "ready" {
            return Err(format!("peer said {line:?}"));
        }
        Ok(p)
    }

    pub(super) fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        self.stdout.read_line(&mut s).map_err(|e| format!("peer: {e}"))?;
        if s.is_empty() {
            return Err("peer exited".into());
        }
        Ok(s.trim().to_string())
    }

    pub(super) fn finish(mut self) -> Result<(), String> {
        drop(self.stdin);
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() { Ok(()) } else { Err(format!("peer failed: {status}")) }
    }
}

/// A named shm page shared raw, for the cache-line floor (Ember's own segments are not
/// used, so the floor owes nothing to Ember's code).
pub(super) struct RawPage {
    ptr: *mut AtomicU32,
    _fd: OwnedFd,
    name: Option<String>,
}

impl RawPage {
    const LEN: usize = 4096;

    pub(super) fn create(name: &str) -> Result<RawPage, String> {
        use rustix::shm::OFlags;
        let fd = rustix::shm::open(
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .map_err(|e| format!("shm_open {name}: {e}"))?;
        rustix::fs::ftruncate(&fd, Self::LEN as u64).map_err(|e| e.to_string())?;
        let mut p = Self::map(fd)?;
        p.name = Some(name.to_string());
        Ok(p)
    }

    pub(super) fn open(name: &str) -> Result<RawPage, String> {
        let fd =
            rustix::shm::open(name, rustix::shm::OFlags::RDWR, rustix::fs::Mode::empty()).map_err(|e| e.to_string())?;
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> Result<RawPage, String> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh shared mapping of a 4 KiB object, at an address the kernel picks;
        // it is only accessed through `AtomicU32` and unmapped when `RawPage` drops.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        Ok(RawPage { ptr: ptr.cast(), _fd: fd, name: None })
    }

    /// A raw pointer to byte `offset` (below 4096), for objects C code manages there.
    pub(super) fn ptr_at(&self, offset: usize) -> *mut u8 {
        assert!(offset < Self::LEN);
        self.ptr.cast::<u8>().wrapping_add(offset)
    }

    /// The word at byte `offset` (a multiple of 4 below 4096).
    pub(super) fn word(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset < Self::LEN);
        // SAFETY: in bounds and aligned (asserted), inside a live mapping that outlives
        // `&self`; `AtomicU32` tolerates the peer's concurrent writes.
        unsafe { &*self.ptr.add(offset / 4) }
    }
}

impl Drop for RawPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping; no reference into it outlives `&self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), Self::LEN) };
        if let Some(n) = &self.name {
            let _ = rustix::shm::unlink(n.as_str());
        }
    }
}

/// Per-message samples of a streaming row: one sample per [`BATCH`] messages, the batch's
/// time divided by its size.
pub(super) struct Batches {
    pub(super) samples: Vec<f64>,
    started: Instant,
    pending: usize,
}

impl Batches {
    /// Room for the samples of `messages` messages; the clock starts now.
    pub(super) fn new(messages: usize) -> Batches {
        Batches { samples: Vec::with_capacity(messages / BATCH + 1), started: Instant::now(), pending: 0 }
    }

    /// Counts `n` messages received; every full batch becomes a sample.
    pub(super) fn count(&mut self, n: usize) {
        self.pending += n;
        while self.pending >= BATCH {
            self.pending -= BATCH;
            self.samples.push(now_ns(self.started) / BATCH as f64);
            self.started = Instant::now();
        }
    }
}

pub(super) fn now_ns(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64
}

/// One-way latency samples of the cache-line ping-pong.
pub(super) fn floor(cpu: usize, iters: usize) -> Result<Vec<f64>, String> {
    let name = unique("floor");
    let page = RawPage::create(&name)?;
    let peer = Peer::spawn(cpu, &["floor", &name, &iters.to_string()])?;
    let (ping, pong) = (page.word(0), page.word(128));
    let mut samples = Vec::with_capacity(iters);
    for i in 1..=iters as u32 {
        let t = Instant::now();
        ping.store(i, Ordering::Release);
        while pong.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
        samples.push(now_ns(t) / 2.0);
    }
    peer.finish()?;
    Ok(samples)
}

/// Tells the parent this peer is ready (its first line).
pub(super) fn say_ready() -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").and_then(|_| out.flush()).map_err(|e| e.to_string())
}

/// Waits until the parent closes our stdin: it has taken what it needs from segments this
/// peer owns, which go away when the peer exits.
pub(super) fn wait_for_parent() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Pooled samples of one row over the rounds.
#[derive(Default)]
pub(super) struct Pool(pub(super) Vec<f64>);

impl Pool {
    pub(super) fn add(&mut self, r: Result<Vec<f64>, String>) -> Result<(), String> {
        self.0.extend(r?);
        Ok(())
    }

    pub(super) fn stats(&mut self) -> Option<Stats> {
        (!self.0.is_empty()).then(|| Stats::from_samples(&mut self.0))
    }
}

pub(super) fn row(
    rows: &mut Vec<Row>,
    name: &str,
    size: usize,
    s: Stats,
    base: Option<(&str, Stats)>,
    note: &'static str,
) {
    rows.push(Row {
        mechanism: name.into(),
        size,
        stats: s,
        baseline: base.map(|(n, _)| n.to_string()),
        ratio: base.map(|(_, b)| s.p50 / b.p50),
        note: Some(note),
        sweep: None,
        extra: None,
    });
}

pub(super) const NOTE_FLOOR: &str = "each side spins on a word the other writes (one-way = round trip / 2): the floor";

/// A row module's peer: plays `role` if the module owns it (`None` otherwise).
type PeerRoles = fn(&str, &[String]) -> Option<Result<(), String>>;

/// The peer side, `emberctl __peer <cpu> <role> ...`: pins to `cpu`, then plays `role`,
/// which one row module owns (the floor's is here).
pub fn peer(args: &[String]) -> Result<(), String> {
    let cpu: usize = args.first().and_then(|c| c.parse().ok()).ok_or("peer: no cpu")?;
    let _ = super::pin(cpu);
    let role = args.get(1).map(String::as_str).ok_or("peer: no role")?;
    let rest = &args[2..];
    if role == "floor" {
        return floor_peer(rest);
    }
    let modules: [PeerRoles; 7] = [
        super::shm::peer,
        super::fanout::peer,
        super::dbus::peer,
        super::pipe::peer,
        super::queues::peer,
        super::sockets::peer,
        super::sync::peer,
    ];
    modules.iter().find_map(|m| m(role, rest)).unwrap_or_else(|| Err(format!("peer: unknown role {role}")))
}

/// The floor's peer: answers each ping on the raw page.
fn floor_peer(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("peer floor: missing argument {i}"));
    let num = |i: usize| arg(i)?.parse::<usize>().map_err(|e| e.to_string());
    let mut stdout = std::io::stdout().lock();
    let ready = |out: &mut std::io::StdoutLock<'_>| -> Result<(), String> {
        writeln!(out, "ready").and_then(|_| out.flush()).map_err(|e| e.to_string())
    };
    let page = RawPage::open(&arg(0)?)?;
    let iters = num(1)?;
    ready(&mut stdout)?;
    let (ping, pong) = (page.word(0), page.word(128));
    for i in 1..=iters as u32 {
        while ping.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
        pong.store(i, Ordering::Release);
    }
    Ok(())
}
