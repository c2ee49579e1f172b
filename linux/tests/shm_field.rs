//! Shared memory in the field: a full `/dev/shm`, a writer killed on a system without
//! pidfds, a pid reused after its writer died (issue 24; restarts: `restart.rs`).
//!
//! The faults are real: a small tmpfs mounted on `/dev/shm` inside a private mount (and
//! IPC) namespace (`unshare(2)` and `mount(2)` from the peer itself, as root: no programs,
//! so these run in the boards' guests too), a PID namespace whose `ns_last_pid` hands a
//! dead writer's pid to another process, a seccomp filter that makes `pidfd_open`
//! fail with `ENOSYS`, `kill -9`. Like `shm_processes`, this binary has its own `main`
//! (`harness = false`) and plays its peer processes itself (`--peer <role> ...`).

mod common;
#[path = "common/ns.rs"]
mod ns;
use common::peer::{Peer, ShmCleanup};

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ember_core::shm::ShmError;
use ember_core::shm::layout::DATA_OFFSET;
use ember_linux::Error;
use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, Liveness, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
    SyncSegment, process_start,
};

const FP: u64 = 0xF1E1_D000_0000_0024;
const KIB: usize = 1024;

/// A name unique to this process and call.
fn unique(tag: &str) -> String {
    common::peer::unique_shm("field", tag)
}

/// Bytes free for unprivileged use on the file system at `path`.
fn free_bytes(path: &str) -> u64 {
    let s = rustix::fs::statvfs(path).unwrap();
    s.f_bavail * s.f_frsize
}

/// The names in `/dev/shm`.
fn dev_shm() -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir("/dev/shm").unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Runs this binary as `--peer <args>` in a private mount and IPC namespace whose
/// `/dev/shm` is a fresh tmpfs of `size`, and whose `kernel.shmall` is `shmall` pages
/// ([`ns::private_ipc`], in the peer: no `unshare` program needed, so this runs in the
/// boards' guests too); returns its stdout, failing the test if it did not exit 0.
fn in_small_shm(size: &str, shmall: u32, args: &[&str]) -> String {
    let shmall = shmall.to_string();
    let out = common::me()
        .args(["--peer", "in-ns", size, &shmall])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("the peer runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "peer {args:?} failed ({}); it said:\n{stdout}", out.status);
    stdout
}

// ---- the peers ----------------------------------------------------------------------

/// In a 256 KiB `/dev/shm` and a 64-page `shmall`: every kind too large for the room is
/// `NoSpace` with its exact size, and leaves nothing behind.
fn peer_nospace(out: &mut impl Write) {
    let page = rustix::param::page_size();
    let free = free_bytes("/dev/shm");
    assert!(free <= 256 * KIB as u64 && free > 0, "the test's tmpfs: {free} bytes free");
    let cap = 512 * KIB;
    let cases: [(&str, Option<Error>, usize); 4] = [
        ("spsc", SpscSender::create(Backing::Named("/big-spsc"), cap, FP).err(), DATA_OFFSET + cap),
        ("seqlock", SeqLockWriter::create(Backing::Named("/big-seqlock"), cap, FP).err(), 2 * page + cap),
        ("broadcast", BroadcastWriter::create(Backing::Named("/big-broadcast"), cap, FP).err(), 2 * page + cap),
        ("sync", SyncSegment::create(Backing::Named("/big-sync"), cap, FP).err(), DATA_OFFSET + cap),
    ];
    for (kind, err, needed) in cases {
        assert_eq!(err, Some(Error::NoSpace { needed: needed as u64, available: free }), "{kind}");
        writeln!(out, "{kind}: {}", err.unwrap()).unwrap();
    }
    // A 1 MiB ring on 256 KiB.
    let err = SpscSender::create(Backing::Named("/mib"), 1 << 20, FP).err();
    assert_eq!(err, Some(Error::NoSpace { needed: (DATA_OFFSET + (1 << 20)) as u64, available: free }));
    assert_eq!(dev_shm(), Vec::<String>::new(), "a failed create left something in /dev/shm");
    assert_eq!(free_bytes("/dev/shm"), free, "a failed create kept pages");

    // SysV segments are not in /dev/shm: kernel.shmall (64 pages here) is their limit.
    let err = SpscSender::create(Backing::SysV(ember_linux::sys::IPC_PRIVATE), 1 << 20, FP).err();
    assert_eq!(err, Some(Error::NoSpace { needed: (DATA_OFFSET + (1 << 20)) as u64, available: 64 * page as u64 }));
    // A memfd is not in /dev/shm either: the same 512 KiB ring is fine there.
    SpscSender::create(Backing::Memfd("field"), cap, FP).unwrap();

    // A ring that fits reserves all its pages at create: fill the rest of /dev/shm, then
    // run records through the whole ring, four times round. Without the reservation the
    // first touch of an unreserved page raises SIGBUS.
    let mut tx = SpscSender::create(Backing::Named("/fits"), 64 * KIB, FP).unwrap();
    let st = rustix::fs::stat("/dev/shm/fits").unwrap();
    assert!(st.st_blocks as u64 * 512 >= (DATA_OFFSET + 64 * KIB) as u64, "pages not reserved: {st:?}");
    let mut fill = std::fs::File::create("/dev/shm/fill").unwrap();
    let chunk = [0xAAu8; 4096];
    while fill.write_all(&chunk).and_then(|()| fill.flush()).is_ok() {}
    drop(fill);
    assert!(free_bytes("/dev/shm") < 4096, "/dev/shm not full");
    let mut rx = SpscReceiver::open("/fits", FP).unwrap();
    let mut buf = [0u8; 1024];
    for i in 0..256u32 {
        let rec = [i as u8; 1000];
        tx.try_send(&rec).unwrap();
        let n = rx.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &rec[..]);
    }
    // A segment whose file is smaller than its header claims is refused, typed.
    drop(rx);
    tx.segment().persist();
    drop(tx);
    let fd = rustix::shm::open("/fits", rustix::shm::OFlags::RDWR, rustix::fs::Mode::empty()).unwrap();
    rustix::fs::ftruncate(&fd, 16 * KIB as u64).unwrap();
    assert_eq!(SpscReceiver::open("/fits", FP).err(), Some(Error::Shm(ShmError::BadSize)));
    rustix::shm::unlink("/fits").unwrap();
    std::fs::remove_file("/dev/shm/fill").unwrap();
    assert_eq!(dev_shm(), Vec::<String>::new());
    writeln!(out, "done").unwrap();
}

/// Makes `pidfd_open` fail with `ENOSYS` in this process (and its children), as on a kernel
/// before 5.3 or under a container runtime's seccomp profile: `PR_SET_NO_NEW_PRIVS`, then a
/// four-instruction classic BPF filter.
fn block_pidfd_open() {
    // <linux/bpf_common.h>: BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20); BPF_JMP (5) | BPF_JEQ
    // (0x10) | BPF_K (0); BPF_RET (6) | BPF_K. <linux/seccomp.h>: the return values.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    // `struct seccomp_data` starts with `int nr`. The architecture word (offset 4) is not
    // checked: this test binary makes only native system calls.
    let filter = [
        libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: BPF_JMP_JEQ_K, jt: 0, jf: 1, k: libc::SYS_pidfd_open as u32 },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | libc::ENOSYS as u32 },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW },
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: plain prctl and seccomp calls; `prog` points to `filter`, both alive across
    // the call, and the kernel copies the program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "PR_SET_NO_NEW_PRIVS");
        assert_eq!(
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
    let me = rustix::process::getpid();
    assert_eq!(
        rustix::process::pidfd_open(me, rustix::process::PidfdFlags::empty()).err(),
        Some(rustix::io::Errno::NOSYS),
        "the filter does not hold"
    );
}

/// A writer of `kind` that creates `name`, publishes once, reports `ready`, then idles
/// until killed.
fn peer_writer(kind: &str, name: &str, out: &mut impl Write) {
    let _keep: Box<dyn std::any::Any> = match kind {
        "spsc" => {
            let mut tx = SpscSender::create(Backing::Named(name), 4096, FP).unwrap();
            tx.segment().persist();
            tx.try_send(b"first").unwrap();
            Box::new(tx)
        }
        "broadcast" => {
            let mut w = BroadcastWriter::create(Backing::Named(name), 4096, FP).unwrap();
            w.segment().persist();
            w.send(b"first").unwrap();
            Box::new(w)
        }
        "seqlock" => {
            let mut w = SeqLockWriter::create(Backing::Named(name), 64, FP).unwrap();
            w.segment().persist();
            w.write(b"first").unwrap();
            Box::new(w)
        }
        other => panic!("writer kind {other}"),
    };
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A reader of `kind` on `name` without pidfds (when `nopidfd`): takes the first record,
/// reports `ready` and the writer's recorded pid and start time, then blocks in `call`
/// (with a 30 s timeout, or none when `timeout` is `none`) and reports how it ended and
/// after how long.
fn peer_reader(kind: &str, name: &str, call: &str, timeout: &str, nopidfd: bool, out: &mut impl Write) {
    if nopidfd {
        block_pidfd_open();
    }
    let timeout = (timeout != "none").then(|| Duration::from_secs(timeout.parse().unwrap()));
    let mut buf = [0u8; 64];
    let report = |out: &mut dyn Write, h: &ember_core::shm::layout::HeaderRepr| {
        writeln!(out, "ready {} {}", h.creator_pid, h.creator_start).unwrap();
        out.flush().unwrap();
    };
    let (r, started): (Result<(), Error>, Instant) = match kind {
        "spsc" => {
            let mut rx = SpscReceiver::open(name, FP).unwrap();
            assert_eq!(rx.recv(&mut buf, Some(Duration::from_secs(10))).unwrap(), 5);
            report(out, rx.segment().header());
            let started = Instant::now();
            let r = match call {
                "recv" => rx.recv(&mut buf, timeout),
                "recv_spin" => rx.recv_spin(&mut buf, timeout),
                other => panic!("spsc call {other}"),
            };
            (r.map(|_| ()), started)
        }
        "broadcast" => {
            let mut rx = BroadcastReader::open(name, FP, true).unwrap();
            assert_eq!(rx.recv(&mut buf, Some(Duration::from_secs(10))).unwrap().len, 5);
            report(out, rx.segment().header());
            let started = Instant::now();
            (rx.recv(&mut buf, timeout).map(|_| ()), started)
        }
        "seqlock" => {
            let mut rx = SeqLockReader::open(name, FP).unwrap();
            let snap = rx.read(&mut buf).unwrap();
            report(out, rx.segment().header());
            let started = Instant::now();
            (rx.wait_change(snap.seq, timeout), started)
        }
        other => panic!("reader kind {other}"),
    };
    writeln!(out, "{r:?} after {} ms", started.elapsed().as_millis()).unwrap();
}

fn peer(args: &[String]) {
    let mut stdout = std::io::stdout().lock();
    match args[0].as_str() {
        "nospace" => peer_nospace(&mut stdout),
        "writer" => peer_writer(&args[1], &args[2], &mut stdout),
        "reader" => peer_reader(&args[1], &args[2], &args[3], &args[4], args[5] == "nopidfd", &mut stdout),
        "pid-reuse" => {
            mount_own_proc();
            peer_pid_reuse(&mut stdout)
        }
        "pid-ns" => peer_pid_ns(),
        "idle" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        "in-ns" => {
            drop(stdout);
            ns::private_ipc(&args[1], Some(args[2].parse().unwrap()), false);
            peer(&args[3..]);
        }
        other => panic!("unknown peer role {other}"),
    }
}

// ---- the tests ----------------------------------------------------------------------

fn full_dev_shm_is_no_space_for_every_kind() {
    let out = in_small_shm("256k", 64, &["nospace"]);
    println!("{}", out.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"));
    assert!(out.ends_with("done\n"), "{out}");
}

/// The writer of `kind` is killed with -9 while a reader with no pidfds (seccomp) sleeps
/// in `call`: the reader gets `WriterGone`, within a few liveness slices, not at its
/// timeout (30 s) and not never (no timeout).
fn writer_gone_without_pidfd(kind: &str, call: &str, timeout: &str) {
    common::skip_under_emulator("seccomp filters");
    let name = unique(kind);
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["writer", kind, &name]);
    assert_eq!(writer.line(), "ready");
    let mut reader = Peer::spawn(&["reader", kind, &name, call, timeout, "nopidfd"]);
    let ready = reader.line();
    // The header records the writer's pid and start time (`/proc/<pid>/stat` field 22).
    let start = process_start(writer.pid()).unwrap();
    assert_eq!(ready, format!("ready {} {start}", writer.pid()));
    // Let the reader fall asleep on the futex, then kill the writer.
    std::thread::sleep(Duration::from_millis(150));
    writer.kill9();
    let report = reader.line();
    assert!(report.starts_with("Err(Shm(WriterGone)) after "), "{kind} {call} {timeout}: {report}");
    let ms: u64 = report.split_whitespace().nth(2).unwrap().parse().unwrap();
    println!("    {kind} {call} (timeout {timeout}), no pidfd: WriterGone after {ms} ms");
    // Not the timeout: a dead writer is noticed by its liveness checks, not by waiting.
    assert!(ms < 30_000, "{report}");
    reader.wait_ok();
}

fn spsc_recv_timeout_no_pidfd() {
    writer_gone_without_pidfd("spsc", "recv", "30");
}
fn spsc_recv_forever_no_pidfd() {
    writer_gone_without_pidfd("spsc", "recv", "none");
}
fn spsc_recv_spin_no_pidfd() {
    writer_gone_without_pidfd("spsc", "recv_spin", "30");
}
fn broadcast_recv_timeout_no_pidfd() {
    writer_gone_without_pidfd("broadcast", "recv", "30");
}
fn broadcast_recv_forever_no_pidfd() {
    writer_gone_without_pidfd("broadcast", "recv", "none");
}
fn seqlock_wait_change_timeout_no_pidfd() {
    writer_gone_without_pidfd("seqlock", "wait_change", "30");
}
fn seqlock_wait_change_forever_no_pidfd() {
    writer_gone_without_pidfd("seqlock", "wait_change", "none");
}

/// Pid reuse, for real: in a private PID namespace (pid 1 is this peer), a writer creates a
/// broadcast ring and is killed; `ns_last_pid` makes the next process (`sleep`) get the writer's pid.
/// A reader opening the ring then must see the writer gone, with a pidfd (which opens on
/// the `sleep`) and without one, where `kill(pid, 0)` alone says "alive".
fn peer_pid_reuse(out: &mut impl Write) {
    let name = unique("reuse");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["writer", "broadcast", &name]);
    assert_eq!(writer.line(), "ready");
    let pid = writer.pid();
    let start = process_start(pid).unwrap();
    writer.kill9();
    // Start times count clock ticks (10 ms at USER_HZ 100): a pid reused within the same
    // tick would look the same. Wrapping the pid space takes far longer than a tick;
    // `ns_last_pid` does not, so wait a few ticks.
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
    // This binary idling (`--peer idle`), not `sleep`, which the boards' guests lack.
    let mut imposter = common::me().args(["--peer", "idle"]).spawn().unwrap();
    assert_eq!(imposter.id(), pid, "ns_last_pid did not hand the pid over");
    let imposter_start = process_start(pid).unwrap();
    assert_ne!(imposter_start, start);
    // The pid alone says alive; with the start time, gone; the imposter's own start: alive.
    assert!(Liveness::new(pid).is_alive());
    assert!(!Liveness::with_start(pid, start).is_alive());
    assert!(Liveness::with_start(pid, imposter_start).is_alive());
    for mode in ["pidfd", "nopidfd"] {
        // Broadcast: each reader takes the first record from the oldest.
        let mut reader = Peer::spawn(&["reader", "broadcast", &name, "recv", "20", mode]);
        assert_eq!(reader.line(), format!("ready {pid} {start}"));
        let report = reader.line();
        assert!(report.starts_with("Err(Shm(WriterGone)) after "), "{mode}: {report}");
        writeln!(out, "{mode}: {report}").unwrap();
        reader.wait_ok();
    }
    let _ = imposter.kill();
    let _ = imposter.wait();
    writeln!(out, "done").unwrap();
}

fn pid_reused_by_another_process_is_not_the_writer() {
    common::skip_under_emulator("seccomp filters and a PID namespace's ns_last_pid");
    let out = common::me().args(["--peer", "pid-ns"]).stderr(Stdio::inherit()).output().expect("the peer runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pid-reuse peer failed ({}); it said:\n{stdout}", out.status);
    println!("{}", stdout.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"));
    assert!(stdout.ends_with("done\n"), "{stdout}");
}

/// `--peer pid-ns`: moves into new PID and mount namespaces (`unshare(2)`, no `unshare`
/// program: the boards' guests have none) and runs `--peer pid-reuse` as the new PID
/// namespace's pid 1, which mounts that namespace's `/proc` first.
fn peer_pid_ns() {
    // SAFETY: a plain system call; this peer has one thread.
    let r = unsafe { libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS) };
    assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
    let status = common::me().args(["--peer", "pid-reuse"]).status().expect("the pid 1 peer runs");
    std::process::exit(status.code().unwrap_or(1));
}

/// The first steps of `--peer pid-reuse`: this namespace's own `/proc`.
fn mount_own_proc() {
    use std::ffi::CString;
    let (root, proc_) = (CString::new("/").unwrap(), CString::new("proc").unwrap());
    let target = CString::new("/proc").unwrap();
    // SAFETY: plain system calls with NUL-terminated strings.
    unsafe {
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        assert_eq!(libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), flags, std::ptr::null()), 0);
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let r = libc::mount(proc_.as_ptr(), target.as_ptr(), proc_.as_ptr(), flags, std::ptr::null());
        assert_eq!(r, 0, "mount proc: {}", std::io::Error::last_os_error());
    }
}

fn main() {
    common::main(
        &[
            ("full_dev_shm_is_no_space_for_every_kind", full_dev_shm_is_no_space_for_every_kind),
            ("spsc_recv_timeout_no_pidfd", spsc_recv_timeout_no_pidfd),
            ("spsc_recv_forever_no_pidfd", spsc_recv_forever_no_pidfd),
            ("spsc_recv_spin_no_pidfd", spsc_recv_spin_no_pidfd),
            ("broadcast_recv_timeout_no_pidfd", broadcast_recv_timeout_no_pidfd),
            ("broadcast_recv_forever_no_pidfd", broadcast_recv_forever_no_pidfd),
            ("seqlock_wait_change_timeout_no_pidfd", seqlock_wait_change_timeout_no_pidfd),
            ("seqlock_wait_change_forever_no_pidfd", seqlock_wait_change_forever_no_pidfd),
            ("pid_reused_by_another_process_is_not_the_writer", pid_reused_by_another_process_is_not_the_writer),
        ],
        peer,
    );
}
