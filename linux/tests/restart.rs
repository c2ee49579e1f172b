//! Restart after a crash (issue 24, item 2), and the SPSC receiver's claim and `fork`
//! (item 6), with real processes: a daemon played by this binary (`--peer daemon`) that
//! makes a seqlock, a broadcast ring, an SPSC ring, a message queue and a FIFO with
//! `replace_stale`, killed with `kill -9` fifty times in a row and started again each time,
//! its clients reconnecting; creators racing over a stale object; a receiver in another
//! process. The restart loop runs in a private mount and IPC namespace (a fresh tmpfs on
//! `/dev/shm`, a fresh mqueue file system), so that what is left at the end can be listed
//! exactly: only the live daemon's objects, then nothing once it stopped.
//!
//! Like `shm_field`, this binary has its own `main` (`harness = false`), plays its peers
//! itself, and runs on the boards' kernels (tier 2): it needs root, no other program.

mod common;
#[path = "common/ns.rs"]
mod ns;
use common::peer::{Peer, ShmCleanup, unique_shm};

use std::io::{BufRead, Write};
use std::time::Duration;

use ember_core::shm::ShmError;
use ember_linux::mq::{self, MessageQueue};
use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, CreateOptions, ObjectKind, SeqLockReader, SeqLockWriter, SpscReceiver,
    SpscSender,
};
use ember_linux::{Endpoint, Error, FrameReceiver, FrameSender, fifo};

const FP: u64 = 0x5E57_A127_0000_0024;
const RESTARTS: u32 = 50;
const WAIT: Option<Duration> = Some(Duration::from_secs(20));

fn replace() -> CreateOptions {
    CreateOptions::new().replace_stale(true)
}

/// The daemon's objects, from one tag.
struct Names {
    reading: String,
    events: String,
    ring: String,
    queue: String,
    fifo: String,
}

impl Names {
    fn new(tag: &str) -> Names {
        Names {
            reading: format!("/{tag}-reading"),
            events: format!("/{tag}-events"),
            ring: format!("/{tag}-ring"),
            queue: format!("/{tag}-queue"),
            fifo: format!("{}/{tag}.fifo", std::env::temp_dir().display()),
        }
    }
}

/// A frame of kind 1 carrying `n`.
fn frame(n: u32, buf: &mut [u8]) -> &[u8] {
    ember_core::message::encode(1, n, &n, buf).unwrap()
}

fn value_of(bytes: &[u8]) -> u32 {
    ember_core::message::decode::<u32>(bytes).unwrap().1
}

// ---- the peers ----------------------------------------------------------------------

/// The daemon: makes its five objects with `replace_stale` (an error is its one line, and
/// it exits), says `ready <generation>`, then every few milliseconds publishes
/// `generation` in the seqlock and the SPSC ring and forwards every frame from the queue
/// and the FIFO to the broadcast ring, until its standard input closes; then it drops
/// everything (which unlinks its objects), removes the FIFO and says `stopped`.
fn peer_daemon(tag: &str, generation: u32, out: &mut impl Write) {
    let n = Names::new(tag);
    let made = (|| -> Result<_, Error> {
        let reading = SeqLockWriter::create_with(Backing::Named(&n.reading), 64, FP, replace())?;
        let events = BroadcastWriter::create_with(Backing::Named(&n.events), 4096, FP, replace())?;
        let ring = SpscSender::create_with(Backing::Named(&n.ring), 4096, FP, replace())?;
        let queue = MessageQueue::create_with(&n.queue, 8, 128, mq::Access::Receive, replace())?;
        queue.set_nonblocking(true)?;
        fifo::create_with(&n.fifo, replace())?;
        let fifo_rx = fifo::open_reader::<256>(&n.fifo, true)?;
        Ok((reading, events, ring, queue, fifo_rx))
    })();
    let (mut reading, mut events, mut ring, mut queue, mut fifo_rx) = match made {
        Ok(m) => m,
        Err(e) => {
            writeln!(out, "{e:?}").unwrap();
            return;
        }
    };
    let mut buf = [0u8; 256];
    // A value before `ready`: a client never finds the seqlock empty.
    reading.write(frame(generation, &mut buf)).unwrap();
    writeln!(out, "ready {generation}").unwrap();
    out.flush().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lock().lines() {}
        s.store(true, std::sync::atomic::Ordering::Release);
    });
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let f = frame(generation, &mut buf).to_vec();
        reading.write(&f).unwrap();
        // The client takes the first record only: the ring fills, and stays full.
        let _ = ring.try_send(&f);
        loop {
            match queue.recv_frame(&mut buf) {
                Ok(len) => events.send(&buf[..len]).unwrap(),
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("queue: {e}"),
            }
        }
        loop {
            match fifo_rx.recv_frame(&mut buf) {
                Ok(len) => events.send(&buf[..len]).unwrap(),
                Err(Error::WouldBlock | Error::PeerGone) => break,
                Err(e) => panic!("fifo: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop((reading, events, ring, queue, fifo_rx));
    fifo::remove(&n.fifo).unwrap();
    writeln!(out, "stopped").unwrap();
}

/// One of several creators racing over a stale object: says `waiting`, creates `kind`
/// `name` with `replace_stale` on the line `go`, says `ok` or the error, then holds what
/// it made until its standard input closes.
fn peer_racer(kind: &str, name: &str, out: &mut impl Write) {
    writeln!(out, "waiting").unwrap();
    out.flush().unwrap();
    let mut lines = std::io::stdin().lock().lines();
    assert_eq!(lines.next().unwrap().unwrap(), "go");
    let made: Result<Box<dyn std::any::Any>, Error> = match kind {
        "seqlock" => SeqLockWriter::create_with(Backing::Named(name), 64, FP, replace()).map(|w| Box::new(w) as _),
        "mq" => MessageQueue::create_with(name, 4, 64, mq::Access::Both, replace()).map(|q| Box::new(q) as _),
        other => panic!("racer kind {other}"),
    };
    match &made {
        Ok(_) => writeln!(out, "ok").unwrap(),
        Err(e) => writeln!(out, "{e:?}").unwrap(),
    }
    out.flush().unwrap();
    for _ in lines {}
}

/// Makes `kind` `name` (kept after this process dies), says `ready` and idles until killed.
fn peer_maker(kind: &str, name: &str, out: &mut impl Write) {
    let _keep: Box<dyn std::any::Any> = match kind {
        "seqlock" => Box::new(SeqLockWriter::create(Backing::Named(name), 64, FP).unwrap()),
        "mq" => Box::new(MessageQueue::create(name, 4, 64, mq::Access::Both).unwrap()),
        "receiver" => Box::new(SpscReceiver::open(name, FP).unwrap()),
        other => panic!("maker kind {other}"),
    };
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The clients of one daemon generation, kept open across its death.
struct Clients {
    reading: SeqLockReader,
    seen: u32,
    events: BroadcastReader,
    ring: SpscReceiver,
}

/// Connects to daemon `generation` and checks every object: the seqlock and the ring carry
/// the generation, a frame sent on the queue and one written to the FIFO come back on the
/// broadcast ring.
fn connect(n: &Names, generation: u32) -> Clients {
    let mut buf = [0u8; 256];
    let mut reading = SeqLockReader::open(&n.reading, FP).unwrap();
    let snap = reading.read(&mut buf).unwrap();
    assert_eq!(value_of(&buf[..snap.len]), generation, "seqlock");
    let mut events = BroadcastReader::open(&n.events, FP, false).unwrap();
    let mut ring = SpscReceiver::open(&n.ring, FP).unwrap();
    let len = ring.recv(&mut buf, WAIT).unwrap();
    assert_eq!(value_of(&buf[..len]), generation, "spsc ring");
    let mut q = MessageQueue::open(&n.queue, mq::Access::Send).unwrap();
    let mut f = [0u8; 64];
    q.send_frame(frame(1_000_000 + generation, &mut f)).unwrap();
    let got = events.recv(&mut buf, WAIT).unwrap();
    assert_eq!(value_of(&buf[..got.len]), 1_000_000 + generation, "queue -> events");
    let mut w = fifo::open_writer(&n.fifo, false).unwrap();
    w.send_frame(frame(2_000_000 + generation, &mut f)).unwrap();
    let got = events.recv(&mut buf, WAIT).unwrap();
    assert_eq!(value_of(&buf[..got.len]), 2_000_000 + generation, "fifo -> events");
    Clients { reading, seen: snap.seq, events, ring }
}

/// The clients of a daemon that was killed: every blocking call ends in `WriterGone`.
fn check_gone(mut c: Clients) {
    let mut buf = [0u8; 256];
    // Values written after the client's read come first.
    let mut seen = c.seen;
    loop {
        // A change seen just before the kill can be followed by a read that already
        // finds the writer dead: that ends it too.
        match c.reading.wait_change(seen, WAIT).and_then(|()| c.reading.read(&mut buf)) {
            Ok(s) => seen = s.seq,
            Err(e) => {
                assert_eq!(e, Error::Shm(ShmError::WriterGone), "seqlock");
                break;
            }
        }
    }
    assert_eq!(c.events.recv(&mut buf, WAIT).err(), Some(Error::Shm(ShmError::WriterGone)), "broadcast");
    // The ring still holds the dead sender's records: they come first.
    loop {
        match c.ring.recv(&mut buf, WAIT) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e, Error::Shm(ShmError::WriterGone), "spsc");
                break;
            }
        }
    }
}

/// The restart loop, in a private mount and IPC namespace (see the module docs).
fn peer_restarts(out: &mut impl Write) {
    let mqdir = ns::private_ipc("16m", None, true).unwrap();
    let tag = format!("ember-restart-{}", std::process::id());
    let n = Names::new(&tag);
    let mut previous: Option<(Peer, Clients)> = None;
    let mut in_use = 0;
    let mut took: Vec<Duration> = Vec::new();
    for generation in 0..RESTARTS {
        if generation == 1 {
            // Without the option, a stale name is still EEXIST.
            assert_eq!(
                SeqLockWriter::create(Backing::Named(&n.reading), 64, FP).err(),
                Some(Error::Os(rustix::io::Errno::EXIST))
            );
        }
        let started = std::time::Instant::now();
        let mut daemon = Peer::spawn(&["daemon", &tag, &generation.to_string()]);
        assert_eq!(daemon.line(), format!("ready {generation}"), "restart {generation}");
        if generation > 0 {
            took.push(started.elapsed());
        }
        let clients = connect(&n, generation);
        if let Some((_, old)) = previous.take() {
            check_gone(old);
        }
        if generation % 10 == 5 {
            // A second daemon while this one lives: refused, nothing touched.
            let mut second = Peer::spawn(&["daemon", &tag, "999"]);
            let want = format!("InUse {{ object: Segment, pid: {} }}", daemon.pid());
            assert_eq!(second.line(), want);
            second.wait_ok();
            in_use += 1;
            let mut buf = [0u8; 64];
            let mut r = SeqLockReader::open(&n.reading, FP).unwrap();
            let snap = r.read(&mut buf).unwrap();
            assert_eq!(value_of(&buf[..snap.len]), generation, "the live daemon's seqlock is untouched");
        }
        if generation + 1 < RESTARTS {
            daemon.kill9();
        }
        previous = Some((daemon, clients));
    }
    let (mut daemon, clients) = previous.take().unwrap();
    let strip = |s: &str| s.trim_start_matches('/').to_string();
    let mut live_shm = vec![strip(&n.reading), strip(&n.events), strip(&n.ring)];
    live_shm.sort();
    assert_eq!(ns::names_in("/dev/shm"), live_shm, "/dev/shm while the last daemon runs");
    assert_eq!(ns::names_in(&mqdir), vec![strip(&n.queue)], "{mqdir} while the last daemon runs");
    took.sort();
    writeln!(
        out,
        "{RESTARTS} starts, {} kill -9, each restart took over (start to ready, five objects: median {:?}, \
         max {:?}); {in_use} second daemons refused (InUse); /dev/shm {live_shm:?}, {mqdir} [{:?}]",
        RESTARTS - 1,
        took[took.len() / 2],
        took[took.len() - 1],
        strip(&n.queue)
    )
    .unwrap();
    daemon.close_stdin();
    assert_eq!(daemon.line(), "stopped");
    daemon.wait_ok();
    drop(clients);
    assert_eq!(ns::names_in("/dev/shm"), Vec::<String>::new(), "/dev/shm after a clean stop");
    assert_eq!(ns::names_in(&mqdir), Vec::<String>::new(), "{mqdir} after a clean stop");
    assert!(!std::path::Path::new(&n.fifo).exists(), "the FIFO after a clean stop");
    ns::leave_mqueue(&mqdir);
    writeln!(out, "done").unwrap();
}

fn peer(args: &[String]) {
    let mut stdout = std::io::stdout().lock();
    match args[0].as_str() {
        "daemon" => peer_daemon(&args[1], args[2].parse().unwrap(), &mut stdout),
        "racer" => peer_racer(&args[1], &args[2], &mut stdout),
        "maker" => peer_maker(&args[1], &args[2], &mut stdout),
        "restarts" => peer_restarts(&mut stdout),
        other => panic!("unknown peer role {other}"),
    }
}

// ---- the tests ----------------------------------------------------------------------

/// The daemon killed with -9 fifty times in a row and started again each time.
fn daemon_killed_50_times_restarts_every_time() {
    let child = common::me()
        .args(["--peer", "restarts"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    // What a failed run leaves (a clean one removed both already): the peer's FIFO and the
    // directory its mqueue file system was mounted on (gone with its namespace).
    let _ = std::fs::remove_file(format!("{}/ember-restart-{pid}.fifo", std::env::temp_dir().display()));
    let _ = std::fs::remove_dir(format!("/tmp/ember-mqueue-{pid}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "restart loop failed ({}); it said:\n{stdout}", out.status);
    println!("{}", stdout.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"));
    assert!(stdout.ends_with("done\n"), "{stdout}");
}

/// Four creators start at once over a stale object: exactly one gets it, the others are
/// told the winner's pid.
fn racing_creators(kind: &str, name: &str) {
    let mut maker = Peer::spawn(&["maker", kind, name]);
    assert_eq!(maker.line(), "ready");
    maker.kill9();
    let mut racers: Vec<Peer> = (0..4).map(|_| Peer::spawn(&["racer", kind, name])).collect();
    for r in &mut racers {
        assert_eq!(r.line(), "waiting");
    }
    for r in &mut racers {
        r.say("go");
    }
    let lines: Vec<String> = racers.iter_mut().map(Peer::line).collect();
    let winners: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == "ok").collect();
    assert_eq!(winners.len(), 1, "{kind}: {lines:?}");
    let winner = racers[winners[0]].pid();
    let object = if kind == "mq" { "MessageQueue" } else { "Segment" };
    for (i, l) in lines.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(l, &format!("InUse {{ object: {object}, pid: {winner} }}"), "{kind}: {lines:?}");
        }
    }
    println!("    {kind}: {lines:?}");
    for mut r in racers {
        r.close_stdin();
        r.wait_ok();
    }
}

fn racing_creators_segment() {
    let name = unique_shm("restart", "race");
    let _c = ShmCleanup(name.clone());
    for _ in 0..5 {
        racing_creators("seqlock", &name);
    }
}

fn racing_creators_queue() {
    let name = unique_shm("restart", "raceq");
    for _ in 0..5 {
        racing_creators("mq", &name);
    }
    let _ = MessageQueue::unlink(&name);
}

/// A queue whose creator lives is `InUse` with its pid; once it is killed, replaced.
fn live_queue_in_use_dead_one_replaced() {
    let name = unique_shm("restart", "q");
    let mut maker = Peer::spawn(&["maker", "mq", &name]);
    assert_eq!(maker.line(), "ready");
    let r = MessageQueue::create_with(&name, 4, 64, mq::Access::Both, replace());
    assert_eq!(r.err(), Some(Error::InUse { object: ObjectKind::MessageQueue, pid: maker.pid() }));
    // A message the dead creator left is dropped with its queue.
    let mut f = [0u8; 64];
    MessageQueue::open(&name, mq::Access::Send).unwrap().send_frame(frame(7, &mut f)).unwrap();
    maker.kill9();
    assert_eq!(MessageQueue::create(&name, 4, 64, mq::Access::Both).err(), Some(Error::Os(rustix::io::Errno::EXIST)));
    let q = MessageQueue::create_with(&name, 4, 64, mq::Access::Both, replace()).unwrap();
    assert_eq!(q.attributes().unwrap().cur_msgs, 0);
}

/// A FIFO somebody reads is `InUse`; one nobody reads is replaced by a fresh one.
fn fifo_with_a_reader_in_use_without_replaced() {
    let path = format!("{}/ember-restart-{}.fifo", std::env::temp_dir().display(), std::process::id());
    fifo::create_with(&path, replace()).unwrap();
    let ino = |p: &str| rustix::fs::lstat(p).unwrap().st_ino;
    let first = ino(&path);
    let reader = fifo::open_reader::<64>(&path, true).unwrap();
    assert_eq!(fifo::create_with(&path, replace()), Err(Error::InUse { object: ObjectKind::Fifo, pid: 0 }));
    assert_eq!(ino(&path), first);
    drop(reader);
    fifo::create_with(&path, replace()).unwrap();
    assert_ne!(ino(&path), first, "a fresh FIFO");
    // Without the option an existing FIFO is accepted as before.
    fifo::create(&path).unwrap();
    // Not a FIFO: never replaced.
    fifo::remove(&path).unwrap();
    std::fs::write(&path, b"x").unwrap();
    assert_eq!(fifo::create_with(&path, replace()), Err(Error::NotAFifo));
    std::fs::remove_file(&path).unwrap();
}

/// A stale segment some process keeps locked (nothing in Ember holds the takeover lock for
/// long) is waited for about two seconds, then reported as `InUse` with pid 0, never
/// waited for without end.
fn takeover_lock_held_for_long_is_reported() {
    let name = unique_shm("restart", "locked");
    let _c = ShmCleanup(name.clone());
    let mut maker = Peer::spawn(&["maker", "seqlock", &name]);
    assert_eq!(maker.line(), "ready");
    maker.kill9();
    let fd = rustix::shm::open(name.as_str(), rustix::shm::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let r = SeqLockWriter::create_with(Backing::Named(&name), 64, FP, replace());
    assert_eq!(r.err(), Some(Error::InUse { object: ObjectKind::Segment, pid: 0 }));
    drop(fd);
    SeqLockWriter::create_with(Backing::Named(&name), 64, FP, replace()).unwrap();
}

/// Something under the name that is not an Ember segment is left alone.
fn foreign_file_is_not_taken_over() {
    let name = unique_shm("restart", "foreign");
    let _c = ShmCleanup(name.clone());
    std::fs::write(format!("/dev/shm{name}"), vec![0x55u8; 4096]).unwrap();
    let r = SeqLockWriter::create_with(Backing::Named(&name), 64, FP, replace());
    assert_eq!(r.err(), Some(Error::Os(rustix::io::Errno::EXIST)));
    assert_eq!(std::fs::read(format!("/dev/shm{name}")).unwrap(), vec![0x55u8; 4096]);
}

/// One receiver per SPSC ring: a second one in this process, or while another process's
/// lives, is `ReaderClaimed`; a dead receiver's claim is taken over.
fn second_spsc_receiver_refused() {
    let name = unique_shm("restart", "claim");
    let mut tx = SpscSender::create(Backing::Named(&name), 4096, FP).unwrap();
    let me = std::process::id();
    let rx = SpscReceiver::open(&name, FP).unwrap();
    assert_eq!(SpscReceiver::open(&name, FP).err(), Some(Error::Shm(ShmError::ReaderClaimed { pid: me })));
    drop(rx);
    let rx = SpscReceiver::open(&name, FP).unwrap();
    drop(rx);
    // Another process's receiver.
    let mut other = Peer::spawn(&["maker", "receiver", &name]);
    assert_eq!(other.line(), "ready");
    assert_eq!(SpscReceiver::open(&name, FP).err(), Some(Error::Shm(ShmError::ReaderClaimed { pid: other.pid() })));
    tx.try_send(b"after").unwrap();
    other.kill9();
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(rx.recv(&mut buf, WAIT).unwrap(), 5);
    assert_eq!(&buf[..5], b"after");
}

/// A segment of layout version 2 (an older build) is refused with a typed error, and a
/// stale one (its writer dead) is still taken over.
fn old_layout_version_refused_and_taken_over() {
    use ember_core::crc32c::{crc32c, crc32c_append};
    let name = unique_shm("restart", "v2");
    let _c = ShmCleanup(name.clone());
    let mut tx = SpscSender::create(Backing::Named(&name), 4096, FP).unwrap();
    tx.segment().persist();
    // Rewrite the header as version 2, with a writer that is gone (a reaped child's pid).
    let mut child = common::me().arg("--version-probe").spawn().unwrap();
    let dead_pid = child.id();
    let _ = child.wait();
    let path = format!("/dev/shm{name}");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_ne_bytes());
    bytes[36..40].copy_from_slice(&dead_pid.to_ne_bytes());
    bytes[52..60].copy_from_slice(&0u64.to_ne_bytes());
    let crc = crc32c_append(crc32c(&bytes[..48]), &bytes[52..60]);
    bytes[48..52].copy_from_slice(&crc.to_ne_bytes());
    {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&bytes[..128], 0).unwrap();
    }
    assert_eq!(SpscReceiver::open(&name, FP).err(), Some(Error::Shm(ShmError::UnsupportedVersion(2))));
    let mut w = SpscSender::create_with(Backing::Named(&name), 4096, FP, replace()).unwrap();
    w.try_send(b"v3").unwrap();
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(rx.recv(&mut buf, WAIT).unwrap(), 2);
    drop(tx);
}

/// After `fork`, a child that drops the handles it inherited leaves the parent's objects
/// alone: the segment keeps its name and is not closed, the queue keeps its name, the
/// receiver keeps its claim, a Unix listener keeps its socket file.
fn forked_child_drop_leaves_the_parents_objects() {
    let name = unique_shm("restart", "fork");
    let qname = unique_shm("restart", "forkq");
    let sock = format!("/tmp/ember-restart-{}-fork.sock", std::process::id());
    let _ = std::fs::remove_file(&sock);
    let listener = ember_linux::uds::UdsListener::bind_stream(ember_linux::uds::UnixName::Path(&sock)).unwrap();
    let mut tx = SpscSender::create(Backing::Named(&name), 4096, FP).unwrap();
    let q = MessageQueue::create(&qname, 4, 64, mq::Access::Both).unwrap();
    let rx = SpscReceiver::open(&name, FP).unwrap();
    // SAFETY: the child only drops the handles (system calls, no allocation, no locks) and
    // leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(rx);
        drop(q);
        drop(tx);
        drop(listener);
        // SAFETY: ends the child without running the parent's destructors again.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert!(std::path::Path::new(&format!("/dev/shm{name}")).exists(), "the segment keeps its name");
    assert!(MessageQueue::open(&qname, mq::Access::Send).is_ok(), "the queue keeps its name");
    assert_eq!(
        SpscReceiver::open(&name, FP).err(),
        Some(Error::Shm(ShmError::ReaderClaimed { pid: std::process::id() })),
        "the receiver keeps its claim"
    );
    assert!(std::path::Path::new(&sock).exists(), "the listener keeps its socket file");
    let client = ember_linux::uds::connect_stream::<64>(ember_linux::uds::UnixName::Path(&sock))
        .expect("the parent still listens");
    assert!(listener.accept_stream::<64>().is_ok());
    drop((client, listener));
    assert!(!std::path::Path::new(&sock).exists(), "the parent's drop removes the socket file");
    tx.try_send(b"still open").unwrap();
    let mut rx = rx;
    let mut buf = [0u8; 16];
    assert_eq!(rx.recv(&mut buf, WAIT).unwrap(), 10, "the ring was not closed");
    drop((tx, rx, q));
    assert!(!std::path::Path::new(&format!("/dev/shm{name}")).exists(), "the parent's drop unlinks");
    assert!(MessageQueue::open(&qname, mq::Access::Send).is_err(), "the parent's drop unlinks the queue");
}

/// A creator with `replace_stale` removes the temporaries of creators killed before they
/// published (`/.ember-new-<pid>-<n>`, the pid gone, untouched for a minute), and nothing
/// else: not a dead creator's fresh one, not a live creator's.
fn stale_temporaries_are_swept() {
    let mut child = common::me().arg("--version-probe").spawn().unwrap();
    let dead = child.id();
    let _ = child.wait();
    let me = std::process::id();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(120);
    let make = |name: &str, old: bool| {
        let f = std::fs::File::create(format!("/dev/shm/{name}")).unwrap();
        if old {
            f.set_modified(long_ago).unwrap();
        }
    };
    let (stale, fresh, live) =
        (format!(".ember-new-{dead}-9001"), format!(".ember-new-{dead}-9002"), format!(".ember-new-{me}-9003"));
    make(&stale, true);
    make(&fresh, false);
    make(&live, true);
    let name = unique_shm("restart", "sweep");
    let _c = ShmCleanup(name.clone());
    let w = SeqLockWriter::create_with(Backing::Named(&name), 64, FP, replace()).unwrap();
    let exists = |n: &str| std::path::Path::new(&format!("/dev/shm/{n}")).exists();
    let (s, f, l) = (exists(&stale), exists(&fresh), exists(&live));
    for n in [&stale, &fresh, &live] {
        let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
    }
    assert!(!s, "a dead creator's temporary, a minute old, is removed");
    assert!(f, "a dead creator's fresh temporary is left (another PID namespace's creator may be building it)");
    assert!(l, "a live creator's temporary is left");
    drop(w);
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version-probe") {
        return;
    }
    common::main(
        &[
            ("daemon_killed_50_times_restarts_every_time", daemon_killed_50_times_restarts_every_time),
            ("racing_creators_segment", racing_creators_segment),
            ("racing_creators_queue", racing_creators_queue),
            ("live_queue_in_use_dead_one_replaced", live_queue_in_use_dead_one_replaced),
            ("fifo_with_a_reader_in_use_without_replaced", fifo_with_a_reader_in_use_without_replaced),
            ("foreign_file_is_not_taken_over", foreign_file_is_not_taken_over),
            ("takeover_lock_held_for_long_is_reported", takeover_lock_held_for_long_is_reported),
            ("second_spsc_receiver_refused", second_spsc_receiver_refused),
            ("old_layout_version_refused_and_taken_over", old_layout_version_refused_and_taken_over),
            ("forked_child_drop_leaves_the_parents_objects", forked_child_drop_leaves_the_parents_objects),
            ("stale_temporaries_are_swept", stale_temporaries_are_swept),
        ],
        peer,
    );
}
