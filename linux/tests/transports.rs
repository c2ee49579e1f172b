//! The transport conformance suite: the same generic tests over every transport, in one
//! process and across real separate processes, plus each transport's own error cases and
//! real peers (`sh`, `cat`).
//!
//! Its own `main` (`harness = false`): run without arguments it runs every test; the tests
//! spawn this binary again with `--peer <role> ...` as the other process.

mod common;
use ember_test_support as counting;
#[path = "common/suite.rs"]
mod suite;

use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ember_core::frame::{Flags, FrameRepr};
use ember_linux::mq::{Access, MessageQueue};
use ember_linux::pipe::{self, PIPE_BUF, PacketReader, StreamReader, Writer};
use ember_linux::signal::{self, DaemonEvent, SigSet, SignalFd};
use ember_linux::sysvmq::SysvQueue;
use ember_linux::{Endpoint, Error, FrameReceiver, FrameSender, Integrity, fifo};
use suite::*;

fn unique_mq(tag: &str) -> String {
    format!("/{}", unique_name(tag))
}

fn suite_stream_pipe() {
    let caps = Caps { name: "pipe", max_payload: pipe::DEFAULT_STREAM_BUF - 64, integrity: Integrity::Unchecked };
    let (mut rx, mut tx) = pipe::pipe().unwrap();
    pipe::set_capacity(&tx, 1 << 20).unwrap_or(0);
    core_suite(&caps, &mut tx, &mut rx);
    small_buffer_that_fits(&caps, &mut tx, &mut rx);
    timed_receive(&caps, &mut tx, &mut rx);
    timed_receive_keeps_a_partial_frame(&tx, &mut rx);
    garbage_between_frames(&tx, &mut rx);
    peer_gone_on_send(&mut tx, rx);
    let (mut rx, tx) = pipe::pipe().unwrap();
    peer_gone_on_recv(tx, &mut rx);
}

fn suite_packet_pipe() {
    let caps = Caps { name: "packet pipe", max_payload: PIPE_BUF - 24, integrity: Integrity::Unchecked };
    let (mut rx, mut tx): (PacketReader, Writer) = pipe::packet_pipe().unwrap();
    assert!(tx.is_packet());
    core_suite(&caps, &mut tx, &mut rx);
    small_buffer_that_fits(&caps, &mut tx, &mut rx);
    timed_receive(&caps, &mut tx, &mut rx);
    peer_gone_on_send(&mut tx, rx);
    let (mut rx, tx) = pipe::packet_pipe().unwrap();
    peer_gone_on_recv(tx, &mut rx);
}

fn suite_fifo() {
    let path = unique_path("fifo");
    let _c = Cleanup(path.clone());
    fifo::create(&path).unwrap();
    fifo::create(&path).unwrap(); // an existing FIFO of ours is accepted
    let caps = Caps { name: "fifo", max_payload: pipe::DEFAULT_STREAM_BUF - 64, integrity: Integrity::Unchecked };
    // No reader yet: opening for writing does not block, it says so.
    assert_eq!(fifo::open_writer(&path, false).err(), Some(Error::NoReader));
    let mut rx: StreamReader = fifo::open_reader(&path, false).unwrap();
    let mut tx = fifo::open_writer(&path, false).unwrap();
    core_suite(&caps, &mut tx, &mut rx);
    small_buffer_that_fits(&caps, &mut tx, &mut rx);
    timed_receive(&caps, &mut tx, &mut rx);
    garbage_between_frames(&tx, &mut rx);
    peer_gone_on_send(&mut tx, rx);
    // A FIFO is one object: this writer must go, or the next reader never sees end of file.
    drop(tx);
    let mut rx: StreamReader = fifo::open_reader(&path, false).unwrap();
    let tx = fifo::open_writer(&path, false).unwrap();
    peer_gone_on_recv(tx, &mut rx);
}

fn suite_mq() {
    let name = unique_mq("mq");
    let mut q = MessageQueue::create(&name, 10, 4096, Access::Both).unwrap();
    let mut rx = MessageQueue::open(&name, Access::Receive).unwrap();
    let caps = Caps { name: "mq", max_payload: 4096 - 24, integrity: Integrity::Unchecked };
    core_suite(&caps, &mut q, &mut rx);
    timed_receive(&caps, &mut q, &mut rx);
    // To a descriptor and back: still the queue; the creator's descriptor keeps the name.
    let mut rx = MessageQueue::try_from(std::os::fd::OwnedFd::from(rx)).unwrap();
    let mut q = MessageQueue::try_from(std::os::fd::OwnedFd::from(q)).unwrap();
    let mut buf = [0u8; 128];
    let n = frame(9, 60, &mut buf);
    q.send_frame(&buf[..n]).unwrap();
    let mut out = vec![0u8; 4096];
    assert_eq!(rx.recv_frame(&mut out), Ok(n));
    drop((q, rx));
    MessageQueue::open(&name, Access::Both).expect("into_fd kept the name");
    MessageQueue::unlink(&name).unwrap();
    let (r, _w) = ember_linux::pipe::pipe().unwrap();
    assert!(matches!(MessageQueue::try_from(std::os::fd::OwnedFd::from(r)), Err(Error::WrongFdType { .. })));
}

/// Priorities, a full queue (nonblocking and timed), a timed receive, attributes, poll.
fn mq_priorities_full_and_timeouts() {
    let name = unique_mq("prio");
    let mut q = MessageQueue::create(&name, 4, 256, Access::Both).unwrap();
    let a = q.attributes().unwrap();
    assert_eq!((a.max_msgs, a.msg_size, a.cur_msgs, a.nonblocking), (4, 256, 0, false));
    let mut buf = [0u8; 256];
    for (seq, prio) in [(1u32, 1u32), (2, 5), (3, 3)] {
        let n = frame(seq, 50, &mut buf);
        q.send_prio(&buf[..n], prio, None).unwrap();
    }
    assert_eq!(q.attributes().unwrap().cur_msgs, 3);
    // POLLIN: a message is there.
    let mut fds = [rustix::event::PollFd::new(&q, rustix::event::PollFlags::IN)];
    assert_eq!(rustix::event::poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })).unwrap(), 1);
    let mut out = [0u8; 256];
    let order: Vec<(u32, u32)> = (0..3)
        .map(|_| {
            let (n, prio) = q.recv_prio(&mut out, None).unwrap();
            (ember_core::Frame::new_checked(&out[..n]).unwrap().seq(), prio)
        })
        .collect();
    assert_eq!(order, [(2, 5), (3, 3), (1, 1)], "highest priority first");
    // Fill it.
    for seq in 0..4 {
        let n = frame(seq, 50, &mut buf);
        q.send_frame(&buf[..n]).unwrap();
    }
    let n = frame(9, 50, &mut buf);
    let t = Instant::now();
    assert_eq!(q.send_prio(&buf[..n], 0, Some(std::time::Duration::from_millis(50))), Err(Error::TimedOut));
    assert!(t.elapsed() >= std::time::Duration::from_millis(40), "returned before the timeout");
    q.set_nonblocking(true).unwrap();
    assert!(q.attributes().unwrap().nonblocking);
    assert_eq!(q.send_frame(&buf[..n]), Err(Error::WouldBlock));
    q.set_nonblocking(false).unwrap();
    for _ in 0..4 {
        q.recv_frame(&mut out).unwrap();
    }
    assert_eq!(q.recv_prio(&mut out, Some(std::time::Duration::from_millis(30))), Err(Error::TimedOut));
    // Unlink: the name goes, the open descriptor still works.
    MessageQueue::unlink(&name).unwrap();
    assert_eq!(MessageQueue::open(&name, Access::Both).err(), Some(Error::Os(rustix::io::Errno::NOENT)));
    q.send_frame(&buf[..n]).unwrap();
    assert!(q.recv_frame(&mut out).is_ok());
    q.persist(); // already unlinked
    // O_EXCL and bad names.
    let name2 = unique_mq("excl");
    let _q2 = MessageQueue::create(&name2, 2, 64, Access::Both).unwrap();
    assert_eq!(MessageQueue::create(&name2, 2, 64, Access::Both).err(), Some(Error::Os(rustix::io::Errno::EXIST)));
    assert_eq!(MessageQueue::create("/a/b", 2, 64, Access::Both).err(), Some(Error::InvalidName));
}

/// Steps `CLOCK_REALTIME` by `by_s` seconds (forward when positive).
fn step_wall_clock(by_s: i64) {
    use rustix::time::{ClockId, clock_gettime, clock_settime};
    let mut t = clock_gettime(ClockId::Realtime);
    t.tv_sec += by_s;
    clock_settime(ClockId::Realtime, t).expect("clock_settime(CLOCK_REALTIME)");
}

/// A timed mq wait during which the wall clock is stepped by `step_s` lasts its timeout:
/// `op` is given the timeout and must end with `TimedOut`. Returns how long it took.
fn timed_wait_across_a_step(step_s: i64, op: impl FnOnce(Duration) -> Result<(), ember_linux::Error>) -> Duration {
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let stepper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        step_wall_clock(step_s);
    });
    let started = std::time::Instant::now();
    let r = op(TIMEOUT);
    let took = started.elapsed();
    stepper.join().unwrap();
    step_wall_clock(-step_s);
    assert_eq!(r, Err(ember_linux::Error::TimedOut), "step {step_s:+} s");
    assert!(took >= TIMEOUT, "a {step_s:+} s clock step cut a {TIMEOUT:?} wait to {took:?}");
    // Stretched by the step, it would last an hour; anything near the timeout is right.
    assert!(took < TIMEOUT * 10, "a {step_s:+} s clock step stretched a {TIMEOUT:?} wait to {took:?}");
    took
}

/// POSIX mq timed waits keep the caller's deadline on the monotonic clock: a wall-clock step
/// (NTP on a board without an RTC) neither cuts nor stretches them.
fn mq_timeouts_ignore_wall_clock_steps() {
    common::skip_unless_own_clock("mq_timeouts_ignore_wall_clock_steps");
    let name = unique_mq("clockstep");
    let mut q = MessageQueue::create(&name, 2, 64, Access::Both).unwrap();
    let mut buf = [0u8; 64];
    for step in [3600, -3600] {
        let took = timed_wait_across_a_step(step, |t| q.recv_prio(&mut buf, Some(t)).map(|_| ()));
        println!("    receive on an empty queue, clock stepped {step:+} s: {took:?}");
    }
    let n = frame(1, 8, &mut buf);
    let frame = buf[..n].to_vec();
    q.send_prio(&frame, 0, None).unwrap();
    q.send_prio(&frame, 0, None).unwrap();
    for step in [3600, -3600] {
        let took = timed_wait_across_a_step(step, |t| q.send_prio(&frame, 0, Some(t)));
        println!("    send to a full queue, clock stepped {step:+} s: {took:?}");
    }
}

/// Each kernel limit on queues and SysV objects, lowered in a private IPC namespace (and
/// `RLIMIT_MSGQUEUE` lowered) in a peer that then gives up root: the error names the
/// limit, its value and what was asked for, instead of a bare `EINVAL`/`EMFILE`/`ENOSPC`.
fn limits_are_named_with_their_values() {
    let out = common::me().args(["--peer", "limits"]).output().unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "limits peer: {}", String::from_utf8_lossy(&out.stderr));
}

/// The `limits` peer (see `limits_are_named_with_their_values`); one thread, as root.
fn limits_peer() {
    use ember_linux::limits::Limit;
    use ember_linux::shm::{Backing, SpscSender};
    let write = |path: &str, v: &str| std::fs::write(path, v).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: unshare(2) with a flag; the process is single-threaded (a fresh peer).
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWIPC) }, 0, "unshare(CLONE_NEWIPC)");
    write("/proc/sys/fs/mqueue/msg_max", "4");
    write("/proc/sys/fs/mqueue/msgsize_max", "1024");
    write("/proc/sys/fs/mqueue/queues_max", "2");
    write("/proc/sys/kernel/msgmni", "1");
    write("/proc/sys/kernel/msgmax", "100");
    write("/proc/sys/kernel/shmmax", "65536");
    // SysV shm first: as root (no capability lifts shmmax).
    let big = SpscSender::create(Backing::SysV(ember_linux::sys::IPC_PRIVATE), 1 << 20, 1).err();
    assert!(
        matches!(big, Some(Error::Limit { which: Limit::SysvShmmax, value: Some(65536), requested }) if requested > 1 << 20),
        "{big:?}"
    );
    println!("    {}", big.unwrap());
    // Give up root: msg_max and msgsize_max bind unprivileged processes only.
    // SAFETY: plain system calls.
    unsafe {
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    let pid = std::process::id();
    let deep = MessageQueue::create(&format!("/lim-deep-{pid}"), 10, 64, Access::Both).err();
    assert_eq!(deep, Some(Error::Limit { which: Limit::MqMsgMax, value: Some(4), requested: 10 }));
    println!("    {}", deep.unwrap());
    let wide = MessageQueue::create(&format!("/lim-wide-{pid}"), 2, 4096, Access::Both).err();
    assert_eq!(wide, Some(Error::Limit { which: Limit::MqMsgsizeMax, value: Some(1024), requested: 4096 }));
    println!("    {}", wide.unwrap());
    let _a = MessageQueue::create(&format!("/lim-a-{pid}"), 2, 64, Access::Both).unwrap();
    let _b = MessageQueue::create(&format!("/lim-b-{pid}"), 2, 64, Access::Both).unwrap();
    let third = MessageQueue::create(&format!("/lim-c-{pid}"), 2, 64, Access::Both).err();
    assert_eq!(third, Some(Error::Limit { which: Limit::MqQueuesMax, value: Some(2), requested: 0 }));
    println!("    {}", third.unwrap());
    drop((_a, _b));
    let lim = libc::rlimit { rlim_cur: 1000, rlim_max: 1000 };
    // SAFETY: a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MSGQUEUE, &lim) }, 0);
    let bytes = MessageQueue::create(&format!("/lim-bytes-{pid}"), 4, 1024, Access::Both).err();
    assert_eq!(bytes, Some(Error::Limit { which: Limit::RlimitMsgqueue, value: Some(1000), requested: 4096 }));
    println!("    {}", bytes.unwrap());
    // SysV queues: one per namespace here, messages of at most 100 bytes.
    let mut q: SysvQueue = SysvQueue::create(ember_linux::sys::IPC_PRIVATE).unwrap();
    let second = SysvQueue::<8192>::create(ember_linux::sys::IPC_PRIVATE).err();
    assert!(matches!(second, Some(Error::Limit { which: Limit::SysvMsgmni, value: Some(1), .. })), "{second:?}");
    println!("    {}", second.unwrap());
    let mut buf = [0u8; 256];
    let n = frame(4, 150, &mut buf); // 148 bytes of payload
    let long = q.send_frame(&buf[..n]).err();
    assert_eq!(long, Some(Error::Limit { which: Limit::SysvMsgmax, value: Some(100), requested: n as u64 }));
    println!("    {}", long.unwrap());
}

fn mq_across_processes() {
    let name = unique_mq("xproc");
    let mut rx = MessageQueue::create(&name, 8, 2048, Access::Receive).unwrap();
    let mut child = common::me().args(["--peer", "mq-sender", &name, "3000"]).spawn().unwrap();
    let mut out = vec![0u8; 2048];
    for seq in 0..3000 {
        let n = rx.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..n], 1000);
    }
    assert!(child.wait().unwrap().success());
}

fn mq_other_uid_refused() {
    common::need_tool("setpriv");
    if !rustix::process::geteuid().is_root() {
        println!("    (not root: setpriv needs root; checked in CI, which runs as root)");
        return;
    }
    let name = unique_mq("private");
    let _q = MessageQueue::create(&name, 2, 64, Access::Both).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(common::me_argv())
        .args(["--peer", "mq-open", &name])
        .output()
        .expect("setpriv (util-linux) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), "refused errno 13", "EACCES expected; stderr: {:?}", String::from_utf8_lossy(&out.stderr));
}

fn unique_key() -> i32 {
    0x4D00_0000 | ((std::process::id() as i32 & 0xFFF) << 8) | (next_unique() as i32 & 0xFF)
}

fn suite_sysv() {
    let key = unique_key();
    let mut q: SysvQueue = SysvQueue::create(key).unwrap();
    let mut rx: SysvQueue = SysvQueue::open(key).unwrap();
    let caps = Caps { name: "sysv mq", max_payload: 8192 - 24, integrity: Integrity::Unchecked };
    order_and_sizes(&caps, &mut q, &mut rx);
    typed(&mut q, &mut rx);
    rx.set_nonblocking(true);
    let mut out = vec![0u8; 8192];
    assert_eq!(rx.recv_frame(&mut out), Err(Error::WouldBlock));
    rx.set_nonblocking(false);
    rejects_bad_frames(&caps, &mut q);
    small_buffer_consumes_nothing(&caps, &mut q, &mut rx);
    integrity_settings(&caps, &mut q, &mut rx);
    timed_receive(&caps, &mut q, &mut rx);
}

/// `ipcs -q` line of a key.
fn ipcs_q(key: i32) -> Option<String> {
    common::need_tool("ipcs");
    let out = Command::new("ipcs").arg("-q").output().expect("ipcs (util-linux) runs");
    let want = format!("0x{:08x}", key as u32);
    String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with(&want)).map(String::from)
}

fn sysv_types_ipcs_and_ipcrm() {
    common::need_tool("ipcrm");
    let key = unique_key();
    let mut q: SysvQueue<1024> = SysvQueue::create(key).unwrap();
    let line = ipcs_q(key).expect("ipcs -q lists the queue");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((fields[1], fields[3]), (q.id().to_string().as_str(), "600"), "{line}");
    assert_eq!(SysvQueue::<1024>::create(key).err(), Some(Error::Os(rustix::io::Errno::EXIST)));
    let mut buf = [0u8; 256];
    for (seq, mtype) in [(1u32, 3i32), (2, 1), (3, 2), (4, 1)] {
        let n = frame(seq, 40, &mut buf);
        q.send_type(&buf[..n], mtype).unwrap();
    }
    assert_eq!(q.stat().unwrap().0, 4);
    let mut out = [0u8; 1024];
    let n = q.recv_type(&mut out, 2).unwrap();
    assert_eq!(ember_core::Frame::new_checked(&out[..n]).unwrap().seq(), 3, "only type 2");
    let order: Vec<(u32, i32)> = (0..3)
        .map(|_| {
            let (n, t) = q.recv_urgent(&mut out).unwrap();
            (ember_core::Frame::new_checked(&out[..n]).unwrap().seq(), t)
        })
        .collect();
    assert_eq!(order, [(2, 1), (4, 1), (1, 3)], "lowest type first, in order within a type");
    // ipcrm removes it under us: the next receive says the peer is gone.
    let id = q.id();
    let mut waiter: SysvQueue<1024> = SysvQueue::from_id(id);
    let st = Command::new("ipcrm").args(["-q", &id.to_string()]).status().unwrap();
    assert!(st.success());
    assert!(ipcs_q(key).is_none());
    assert_eq!(waiter.recv_frame(&mut out), Err(Error::PeerGone));
    q.persist(); // already gone
}

fn sysv_across_processes() {
    let key = unique_key();
    let mut rx: SysvQueue = SysvQueue::create(key).unwrap();
    let mut child = common::me().args(["--peer", "sysv-sender", &key.to_string(), "3000"]).spawn().unwrap();
    let mut out = vec![0u8; 8192];
    for seq in 0..3000 {
        let n = rx.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..n], 1000);
    }
    assert!(child.wait().unwrap().success());
}

/// A real second process sends SIGUSR1 with a value; the signalfd yields value and pid.
/// Then a signal through a pidfd (to ourselves). This binary runs its tests on one thread,
/// so blocking in it blocks for the process.
fn signals_with_values_and_pidfd() {
    let set = SigSet::of(&[signal::SIGUSR1, signal::SIGUSR2]);
    let old = signal::block(set).unwrap();
    let mut sfd = SignalFd::new(set, false).unwrap();
    let me = std::process::id();
    let mut child = common::me().args(["--peer", "sigqueue", &me.to_string(), "4242"]).spawn().unwrap();
    let info = sfd.recv().unwrap();
    assert_eq!(info.signal, signal::SIGUSR1);
    assert_eq!(info.code, -1, "SI_QUEUE");
    assert_eq!(info.pid, child.id());
    assert_eq!(info.uid, rustix::process::getuid().as_raw());
    assert_eq!(info.value, 4242);
    assert!(child.wait().unwrap().success());
    // Through a pidfd, to ourselves.
    let pidfd = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty()).unwrap();
    signal::send_pidfd(&pidfd, signal::SIGUSR2).unwrap();
    let info = sfd.recv().unwrap();
    assert_eq!((info.signal, info.code, info.pid), (signal::SIGUSR2, 0, me));
    // To one thread (this one): tgkill, code SI_TKILL (-6).
    signal::send_to_thread(rustix::thread::gettid().as_raw_nonzero().get(), signal::SIGUSR1).unwrap();
    let info = sfd.recv().unwrap();
    assert_eq!((info.signal, info.code, info.pid), (signal::SIGUSR1, -6, me));
    // Nonblocking: nothing pending.
    let mut nb = SignalFd::new(set, true).unwrap();
    assert_eq!(nb.recv(), Err(Error::WouldBlock));
    // A bounded wait: nothing pending is TimedOut after the timeout; a pending one is read.
    let t = Instant::now();
    assert_eq!(sfd.recv_timeout(Some(Duration::from_millis(40))).err(), Some(Error::TimedOut));
    assert!(t.elapsed() >= Duration::from_millis(40));
    signal::send_to_thread(rustix::thread::gettid().as_raw_nonzero().get(), signal::SIGUSR2).unwrap();
    assert_eq!(sfd.recv_timeout(Some(Duration::ZERO)).unwrap().signal, signal::SIGUSR2);
    signal::set_mask(old).unwrap();
}

/// A daemon process reloads on SIGHUP and shuts down on SIGTERM.
fn daemon_helper() {
    let mut child = common::me().args(["--peer", "daemon"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "reload");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), format!("shutdown {} from {}", signal::SIGTERM, std::process::id()));
    assert!(child.wait().unwrap().success(), "the daemon did not exit cleanly");
}

/// EINTR: a signal with a handler installed without `SA_RESTART` interrupts blocking reads
/// (a pipe, a POSIX queue, a SysV queue) again and again; every call resumes and no
/// message is lost.
fn eintr_never_loses_a_message() {
    let _handler = InterruptingSigusr1::install();
    let name = unique_mq("eintr");
    let mut q = MessageQueue::create(&name, 4, 256, Access::Both).unwrap();
    let mut qtx = MessageQueue::open(&name, Access::Send).unwrap();
    let key = unique_key();
    let mut sq: SysvQueue<1024> = SysvQueue::create(key).unwrap();
    let mut sqtx: SysvQueue<1024> = SysvQueue::open(key).unwrap();
    let (mut rx, mut tx) = pipe::pipe().unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
        let mut out = vec![0u8; pipe::DEFAULT_STREAM_BUF];
        let a = rx.recv_frame(&mut out).map(|n| ember_core::Frame::new_checked(&out[..n]).unwrap().seq());
        let b = q.recv_frame(&mut out).map(|n| ember_core::Frame::new_checked(&out[..n]).unwrap().seq());
        let c = sq.recv_frame(&mut out).map(|n| ember_core::Frame::new_checked(&out[..n]).unwrap().seq());
        (a, b, c)
    });
    let tid = tid_rx.recv().unwrap();
    let mut buf = [0u8; 128];
    for (seq, send) in [(11u32, 0), (22, 1), (33, 2)] {
        // Interrupt the blocked reader several times before the message comes.
        interrupt(tid, 5);
        let n = frame(seq, 40, &mut buf);
        match send {
            0 => tx.send_frame(&buf[..n]).unwrap(),
            1 => qtx.send_frame(&buf[..n]).unwrap(),
            _ => sqtx.send_frame(&buf[..n]).unwrap(),
        }
    }
    let (a, b, c) = reader.join().unwrap();
    assert_eq!((a, b, c), (Ok(11), Ok(22), Ok(33)));
}

fn fifo_refuses_what_is_not_ours() {
    // A regular file planted at the path.
    let file = unique_path("planted");
    let _c1 = Cleanup(file.clone());
    std::fs::write(&file, b"not a fifo").unwrap();
    assert_eq!(fifo::create(&file), Err(Error::NotAFifo));
    assert!(matches!(fifo::open_reader::<1024>(&file, false), Err(Error::NotAFifo)));
    // A symlink to a real FIFO of ours: never followed.
    let target = unique_path("target");
    let _c2 = Cleanup(target.clone());
    fifo::create(&target).unwrap();
    let link = unique_path("link");
    let _c3 = Cleanup(link.clone());
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(fifo::create(&link), Err(Error::NotAFifo));
    assert!(matches!(fifo::open_reader::<1024>(&link, false), Err(Error::NotAFifo)));
    assert_eq!(fifo::open_writer(&link, false).err(), Some(Error::NotAFifo));
    // A FIFO of another user (needs root to make one).
    if rustix::process::geteuid().is_root() {
        let theirs = unique_path("theirs");
        let _c4 = Cleanup(theirs.clone());
        fifo::create(&theirs).unwrap();
        rustix::fs::chown(theirs.as_str(), Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
        assert_eq!(fifo::create(&theirs), Err(Error::NotOwner));
        assert!(matches!(fifo::open_reader::<1024>(&theirs, false), Err(Error::NotOwner)));
    } else {
        println!("    (not root: the other-user FIFO case needs chown; checked in CI, which runs as root)");
    }
    // Mode 0600.
    let st = rustix::fs::stat(target.as_str()).unwrap();
    assert_eq!(st.st_mode & 0o777, 0o600);
}

/// Several writers, frames within PIPE_BUF: never interleaved.
fn pipe_buf_rule_with_two_writers() {
    let (mut rx, tx) = pipe::pipe().unwrap();
    let fd2 = tx.as_fd().try_clone_to_owned().unwrap();
    let writers: Vec<_> = [Some(tx), Some(Writer::stream(fd2))]
        .into_iter()
        .enumerate()
        .map(|(w, tx)| {
            let mut tx = tx.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; PIPE_BUF];
                for i in 0..500u32 {
                    let seq = (w as u32) << 16 | i;
                    let repr = FrameRepr { flags: Flags::empty(), kind: w as u32, seq, payload_len: 0 };
                    let n = repr.emit_with_payload(&[w as u8; 4000], &mut buf).unwrap().len();
                    assert_eq!(n, 4024 - 24 + 24);
                    tx.send_frame(&buf[..n]).unwrap();
                }
            })
        })
        .collect();
    let mut out = vec![0u8; pipe::DEFAULT_STREAM_BUF];
    let mut next = [0u32; 2];
    for _ in 0..1000 {
        let n = rx.recv_frame(&mut out).unwrap();
        let f = ember_core::Frame::new_checked(&out[..n]).unwrap();
        let w = f.kind() as usize;
        assert_eq!(f.seq() & 0xFFFF, next[w], "writer {w} out of order");
        assert!(f.payload().iter().all(|&b| b == w as u8), "interleaved bytes");
        next[w] += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(rx.dropped_bytes(), 0);
}

// ---- across processes -------------------------------------------------------------------

fn peer(args: &[String]) {
    match args[0].as_str() {
        // stdout-frames COUNT MAX_PAYLOAD: writes COUNT frames to stdout (a pipe).
        "stdout-frames" => {
            let (count, max): (u32, usize) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let mut tx = Writer::stream(std::io::stdout().as_fd().try_clone_to_owned().unwrap());
            let mut buf = vec![0u8; max + 64];
            for seq in 0..count {
                let n = frame(seq, max, &mut buf);
                tx.send_frame(&buf[..n]).unwrap();
            }
        }
        // fifo-writer PATH COUNT: opens the FIFO (retrying until a reader is there).
        "fifo-writer" => {
            let (path, count): (&str, u32) = (&args[1], args[2].parse().unwrap());
            let started = Instant::now();
            let mut tx = loop {
                match fifo::open_writer(path, false) {
                    Ok(tx) => break tx,
                    Err(Error::NoReader) if started.elapsed().as_secs() < 10 => std::thread::yield_now(),
                    Err(e) => panic!("open_writer: {e}"),
                }
            };
            let mut buf = vec![0u8; 2000];
            for seq in 0..count {
                let n = frame(seq, 1000, &mut buf);
                tx.send_frame(&buf[..n]).unwrap();
            }
        }
        // mq-sender NAME COUNT: opens the queue and sends COUNT frames (blocking when full).
        "mq-sender" => {
            let (name, count): (&str, u32) = (&args[1], args[2].parse().unwrap());
            let mut q = MessageQueue::open(name, Access::Send).unwrap();
            let mut buf = vec![0u8; 2048];
            for seq in 0..count {
                let n = frame(seq, 1000, &mut buf);
                q.send_frame(&buf[..n]).unwrap();
            }
        }
        // sysv-sender KEY COUNT: opens the SysV queue by key and sends COUNT frames.
        "sysv-sender" => {
            let (key, count): (i32, u32) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            let mut q: SysvQueue = SysvQueue::open(key).unwrap();
            let mut buf = vec![0u8; 2048];
            for seq in 0..count {
                let n = frame(seq, 1000, &mut buf);
                q.send_frame(&buf[..n]).unwrap();
            }
        }
        // stdout-packets COUNT: writes COUNT frames to stdout, a packet pipe, one per packet.
        "stdout-packets" => {
            let count: u32 = args[1].parse().unwrap();
            let mut tx = Writer::packet(std::io::stdout().as_fd().try_clone_to_owned().unwrap());
            let mut buf = vec![0u8; PIPE_BUF];
            for seq in 0..count {
                let n = frame(seq, PIPE_BUF - 24, &mut buf);
                tx.send_frame(&buf[..n]).unwrap();
            }
        }
        // rt-burst PID SIGNAL COUNT: queues COUNT real-time signals to PID, values 0..COUNT.
        "rt-burst" => {
            let (pid, sig, count): (u32, u32, i32) =
                (args[1].parse().unwrap(), args[2].parse().unwrap(), args[3].parse().unwrap());
            for value in 0..count {
                signal::send_with_value(pid, sig, value).unwrap();
            }
        }
        // sigqueue PID VALUE: sends SIGUSR1 with VALUE to PID.
        "sigqueue" => {
            let (pid, value): (u32, i32) = (args[1].parse().unwrap(), args[2].parse().unwrap());
            signal::send_with_value(pid, signal::SIGUSR1, value).unwrap();
        }
        // daemon: reports SIGHUP as "reload", exits on SIGTERM/SIGINT.
        "daemon" => {
            let mut d = signal::Daemon::new().unwrap();
            println!("ready");
            loop {
                match d.wait_event(std::time::Duration::from_secs(10)).unwrap() {
                    Some(DaemonEvent::Reload) => println!("reload"),
                    Some(DaemonEvent::Shutdown { signal, pid }) => {
                        println!("shutdown {signal} from {pid}");
                        return;
                    }
                    None => panic!("no signal within 10 s"),
                }
            }
        }
        // mq-open NAME: tries to open the queue and reports the outcome.
        "limits" => limits_peer(),
        "mq-open" => match MessageQueue::open(&args[1], Access::Both) {
            Ok(_) => println!("opened"),
            Err(Error::Os(e)) => println!("refused errno {}", e.raw_os_error()),
            Err(e) => println!("refused: {e}"),
        },
        // sigpipe-default[-noguard]: restores SIGPIPE's default action, then writes to a
        // pipe whose reader is gone (with the writer's own guard, or with it forced off).
        "sigpipe-default" | "sigpipe-default-noguard" => {
            // SAFETY: sets SIGPIPE back to its default action in this single-threaded peer.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            assert!(!ember_linux::sys::sigpipe_ignored().unwrap());
            let (rx, mut tx) = pipe::pipe().unwrap();
            println!("guard {}", if tx.sigpipe_guard() { "on" } else { "off" });
            if args[0] == "sigpipe-default-noguard" {
                tx.set_sigpipe_guard(false);
            }
            drop(rx);
            let mut buf = [0u8; 64];
            let n = frame(1, 10, &mut buf);
            for _ in 0..3 {
                assert_eq!(tx.send_frame(&buf[..n]), Err(Error::PeerGone));
            }
            println!("PeerGone x3");
        }
        other => panic!("unknown peer {other}"),
    }
}

fn pipe_across_processes() {
    // The child's stdout is our pipe: a real separate process writing frames.
    let mut child =
        common::me().args(["--peer", "stdout-frames", "5000", "3000"]).stdout(Stdio::piped()).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut rx: StreamReader = StreamReader::from_fd(out.into());
    let mut buf = vec![0u8; rx.max_frame()];
    for seq in 0..5000 {
        let n = rx.recv_frame(&mut buf).unwrap();
        check_frame(seq, &buf[..n], 3000);
    }
    assert_eq!(rx.recv_frame(&mut buf), Err(Error::PeerGone));
    assert!(child.wait().unwrap().success());
}

/// A packet pipe whose write end is a real child's stdout: every packet is one whole frame.
fn packet_pipe_across_processes() {
    let (mut rx, tx) = pipe::packet_pipe().unwrap();
    let mut child = common::me().args(["--peer", "stdout-packets", "3000"]).stdout(tx.into_stdio()).spawn().unwrap();
    let mut buf = vec![0u8; PIPE_BUF];
    for seq in 0..3000 {
        let n = rx.recv_frame(&mut buf).unwrap();
        check_frame(seq, &buf[..n], PIPE_BUF - 24);
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(rx.recv_frame(&mut buf), Err(Error::PeerGone));
}

/// Real-time signals queue where standard ones coalesce: a real second process queues 300
/// values; the signalfd yields all of them, in order, each with the sender's pid.
fn rt_signals_across_processes() {
    let sig = signal::FIRST_FREE_RT_SIGNAL + 1;
    let set = SigSet::of(&[sig]);
    let old = signal::block(set).unwrap();
    let mut sfd = SignalFd::new(set, false).unwrap();
    let mut child = common::me()
        .args(["--peer", "rt-burst", &std::process::id().to_string(), &sig.to_string(), "300"])
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success());
    for value in 0..300 {
        let info = sfd.recv().unwrap();
        assert_eq!((info.signal, info.code, info.pid, info.value), (sig, -1, child.id(), value));
    }
    let mut nb = SignalFd::new(set, true).unwrap();
    assert_eq!(nb.recv(), Err(Error::WouldBlock), "a signal more than was sent");
    signal::set_mask(old).unwrap();
}

/// Sending and receiving signals allocates nothing (`ember-test-support`'s counting
/// allocator is this binary's global allocator).
fn signals_allocate_nothing() {
    let sig = signal::FIRST_FREE_RT_SIGNAL + 2;
    let set = SigSet::of(&[sig, signal::SIGUSR2]);
    let old = signal::block(set).unwrap();
    let mut sfd = SignalFd::new(set, false).unwrap();
    let pidfd = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty()).unwrap();
    let (me, tid) = (std::process::id(), rustix::thread::gettid().as_raw_nonzero().get());
    let mut seen = 0;
    let count = counting::allocations(|| {
        for value in 0..100 {
            signal::send_with_value(me, sig, value).unwrap();
            seen += (sfd.recv().unwrap().value == value) as u32;
            signal::send_to_thread(tid, sig).unwrap();
            seen += (sfd.recv().unwrap().signal == sig) as u32;
            signal::send_pidfd(&pidfd, signal::SIGUSR2).unwrap();
            seen += (sfd.recv().unwrap().signal == signal::SIGUSR2) as u32;
        }
    });
    signal::set_mask(old).unwrap();
    assert_eq!(seen, 300);
    assert_eq!(count, 0, "allocations while sending and receiving signals");
}

fn fifo_across_processes() {
    let path = unique_path("xfifo");
    let _c = Cleanup(path.clone());
    fifo::create(&path).unwrap();
    let mut rx: StreamReader = fifo::open_reader(&path, false).unwrap();
    let mut child = common::me().args(["--peer", "fifo-writer", &path, "2000"]).spawn().unwrap();
    let mut buf = vec![0u8; rx.max_frame()];
    let mut seq = 0;
    while seq < 2000 {
        match rx.recv_frame(&mut buf) {
            Ok(n) => {
                check_frame(seq, &buf[..n], 1000);
                seq += 1;
            }
            // Before the writer opens, a blocking read on a writer-less FIFO is end of file.
            Err(Error::PeerGone) if seq == 0 => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => panic!("recv: {e}"),
        }
    }
    assert!(child.wait().unwrap().success());
}

/// Real peers: `cat` copies our frames out of a FIFO, and `sh` writes a file of frames into
/// one for us to read.
fn fifo_with_cat_and_sh() {
    common::need_tool("sh");
    let path = unique_path("catfifo");
    let copy = unique_path("copy");
    let _c = (Cleanup(path.clone()), Cleanup(copy.clone()));
    fifo::create(&path).unwrap();
    // cat reads the FIFO into a file.
    let mut cat = Command::new("sh").arg("-c").arg(format!("cat '{path}' > '{copy}'")).spawn().unwrap();
    let started = Instant::now();
    let mut tx = loop {
        match fifo::open_writer(&path, false) {
            Ok(tx) => break tx,
            Err(Error::NoReader) if started.elapsed().as_secs() < 10 => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    };
    let mut buf = vec![0u8; 600];
    for seq in 0..100 {
        let n = frame(seq, 500, &mut buf);
        tx.send_frame(&buf[..n]).unwrap();
    }
    drop(tx);
    assert!(cat.wait().unwrap().success());
    let bytes = std::fs::read(&copy).unwrap();
    let mut rest = &bytes[..];
    for seq in 0..100 {
        let (f, r) = ember_core::frame::split(rest).unwrap();
        check_frame(seq, f.as_bytes(), 500);
        rest = r;
    }
    assert!(rest.is_empty());
    // sh writes the same file back into the FIFO; we read the frames.
    let mut rx: StreamReader = fifo::open_reader(&path, false).unwrap();
    let mut sh = Command::new("sh").arg("-c").arg(format!("cat '{copy}' > '{path}'")).spawn().unwrap();
    let mut out = vec![0u8; rx.max_frame()];
    let mut seq = 0;
    while seq < 100 {
        match rx.recv_frame(&mut out) {
            Ok(n) => {
                check_frame(seq, &out[..n], 500);
                seq += 1;
            }
            Err(Error::PeerGone) if seq == 0 => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sh.wait().unwrap().success());
    // And `echo` of garbage: the reader skips it and reports nothing but end of file.
    let mut echo = Command::new("sh").arg("-c").arg(format!("echo 'hello, not a frame' > '{path}'")).spawn().unwrap();
    let before = rx.dropped_bytes();
    let mut got = Err(Error::WouldBlock);
    for _ in 0..1000 {
        got = rx.recv_frame(&mut out);
        if rx.dropped_bytes() > before {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(got, Err(Error::PeerGone));
    assert_eq!(rx.dropped_bytes() - before, 19);
    assert!(echo.wait().unwrap().success());
}

/// A 0600 FIFO cannot be opened by another user (`setpriv` to nobody).
fn other_uid_cannot_open() {
    common::need_tool("setpriv");
    common::need_tool("sh");
    if !rustix::process::geteuid().is_root() {
        println!("    (not root: setpriv needs root; checked in CI, which runs as root)");
        return;
    }
    let path = unique_path("private");
    let _c = Cleanup(path.clone());
    fifo::create(&path).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", &format!("exec 3<'{path}'")])
        .output()
        .expect("setpriv (util-linux) runs");
    assert!(!out.status.success(), "another uid opened a 0600 FIFO");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{:?}", out);
}

/// A reader of our own sees `PeerGone` for a write after the reader went away, and the
/// process survives (no SIGPIPE); with the guard forced on, the thread's signal mask is left
/// as it was and no `SIGPIPE` stays pending.
fn sigpipe_never_kills() {
    assert!(ember_linux::sys::sigpipe_ignored().unwrap(), "Rust test binaries ignore SIGPIPE");
    let before = ember_linux::sys::rt_sigprocmask(linux_raw_sys::general::SIG_BLOCK, 0).unwrap();
    let mut buf = [0u8; 64];
    let n = frame(1, 10, &mut buf);
    for guard in [false, true] {
        let (rx, mut tx) = pipe::pipe().unwrap();
        // SIGPIPE is ignored here, so a writer starts without the guard.
        assert!(!tx.sigpipe_guard());
        tx.set_sigpipe_guard(guard);
        drop(rx);
        for _ in 0..3 {
            assert_eq!(tx.send_frame(&buf[..n]), Err(Error::PeerGone));
        }
    }
    let after = ember_linux::sys::rt_sigprocmask(linux_raw_sys::general::SIG_BLOCK, 0).unwrap();
    assert_eq!(before, after, "the signal mask changed");
    let pending = ember_linux::sys::rt_sigpending().unwrap();
    assert_eq!(pending & ember_linux::sys::sig_bit(linux_raw_sys::general::SIGPIPE), 0, "a SIGPIPE was left pending");
    // A process with SIGPIPE's default action (a C program's): the writer turns its guard
    // on and the write returns PeerGone; with the guard forced off, SIGPIPE kills it.
    for (role, killed) in [("sigpipe-default", false), ("sigpipe-default-noguard", true)] {
        let out = common::me().args(["--peer", role]).output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        if killed {
            assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{role}: {out:?}");
        } else {
            assert!(out.status.success(), "{role}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "guard on\nPeerGone x3\n", "{role}");
        }
    }
}

/// The SPSC ring's typed helpers follow the integrity setting too: unchecked by default
/// (the ring bounds-checks its records), checked when set, and a receiver that requires
/// checked payloads refuses the others (consumed) with the typed error.
fn shm_ring_integrity() {
    use ember_core::frame::{Frame, Integrity};
    use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
    let n = format!("/{}", unique_name("ring-integrity"));
    let mut tx = SpscSender::create(Backing::Named(&n), 4096, 7).unwrap();
    let mut rx = SpscReceiver::open(&n, 7).unwrap();
    let t = Some(Duration::from_secs(5));
    let mut scratch = [0u8; 128];
    let mut out = [0u8; 128];
    assert_eq!(tx.integrity(), Integrity::Unchecked);
    assert_eq!(SpscSender::DEFAULT_INTEGRITY, Integrity::Unchecked);
    tx.send_msg(3, 1, &("one", 1u8), &mut scratch, t).unwrap();
    let len = rx.recv(&mut out, t).unwrap();
    assert_eq!(Frame::new_checked(&out[..len]).unwrap().integrity(), Integrity::Unchecked);
    tx.set_integrity(Integrity::Checked);
    tx.send_msg(3, 2, &("two", 2u8), &mut scratch, t).unwrap();
    let (repr, v): (_, (&str, u8)) = rx.recv_msg(&mut out, t).unwrap();
    assert_eq!((repr.integrity(), repr.seq, v), (Integrity::Checked, 2, ("two", 2)));
    rx.require_checked(true);
    assert!(rx.requires_checked());
    tx.set_integrity(Integrity::Unchecked);
    tx.send_msg(3, 3, &("three", 3u8), &mut scratch, t).unwrap();
    tx.set_integrity(Integrity::Checked);
    tx.send_msg(3, 4, &("four", 4u8), &mut scratch, t).unwrap();
    let refused = Error::Codec(ember_core::Error::UncheckedPayload);
    assert_eq!(rx.recv_msg::<(&str, u8)>(&mut out, t).err(), Some(refused));
    let (repr, v): (_, (&str, u8)) = rx.recv_msg(&mut out, t).unwrap();
    assert_eq!((repr.seq, v), (4, ("four", 4)));
    drop(rx);
    drop(tx);
    let _ = rustix::shm::unlink(n.as_str());
}

fn main() {
    common::main(
        &[
            ("conformance_stream_pipe", suite_stream_pipe),
            ("conformance_packet_pipe", suite_packet_pipe),
            ("conformance_fifo", suite_fifo),
            ("conformance_mq", suite_mq),
            ("mq_priorities_full_and_timeouts", mq_priorities_full_and_timeouts),
            ("mq_across_processes", mq_across_processes),
            ("mq_other_uid_refused", mq_other_uid_refused),
            ("mq_timeouts_ignore_wall_clock_steps", mq_timeouts_ignore_wall_clock_steps),
            ("limits_are_named_with_their_values", limits_are_named_with_their_values),
            ("conformance_sysv_mq", suite_sysv),
            ("shm_ring_integrity", shm_ring_integrity),
            ("sysv_types_ipcs_and_ipcrm", sysv_types_ipcs_and_ipcrm),
            ("sysv_across_processes", sysv_across_processes),
            ("fifo_refuses_what_is_not_ours", fifo_refuses_what_is_not_ours),
            ("pipe_buf_rule_with_two_writers", pipe_buf_rule_with_two_writers),
            ("pipe_across_processes", pipe_across_processes),
            ("packet_pipe_across_processes", packet_pipe_across_processes),
            ("rt_signals_across_processes", rt_signals_across_processes),
            ("signals_allocate_nothing", signals_allocate_nothing),
            ("fifo_across_processes", fifo_across_processes),
            ("fifo_with_cat_and_sh", fifo_with_cat_and_sh),
            ("other_uid_cannot_open", other_uid_cannot_open),
            ("sigpipe_never_kills", sigpipe_never_kills),
            ("signals_with_values_and_pidfd", signals_with_values_and_pidfd),
            ("daemon_helper", daemon_helper),
            ("eintr_never_loses_a_message", eintr_never_loses_a_message),
        ],
        peer,
    );
}
