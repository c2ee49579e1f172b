//! Futex waits on words inside a mapping, and the writer's liveness (a pidfd, or `kill` and
//! `/proc` without one, checked against the process's start time).

use core::sync::atomic::AtomicU32;
use core::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::futex;

use crate::error::Result;

/// The longest single futex sleep: a waiter re-checks the writer's liveness at least this
/// often, so a dead writer is noticed within one slice.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(100);

/// `FUTEX_WAIT` (shared, never `FUTEX_PRIVATE_FLAG`) while `*word == expected`, for at
/// most `timeout`, also watching `cancel` ([`crate::Error::Cancelled`]). Returns normally
/// on a wake-up, a value mismatch, a signal or the timeout; the caller re-checks its
/// condition.
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Duration,
    cancel: Option<&crate::cancel::Canceler>,
) -> Result<()> {
    crate::cancel::futex_wait(word, expected, timeout, cancel)
}

/// `FUTEX_WAKE` for all sleepers on `word` (shared).
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // A failure here (EFAULT on an unmapped word) cannot happen for a live mapping; a
    // missed wake only delays a sleeper by one liveness slice.
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// Whether a process is alive: through a pidfd where the kernel gives one, else through
/// `kill(pid, 0)` and `/proc/<pid>/stat`; either way checked against the process's start
/// time, so a later process that reused the pid is not taken for it.
///
/// - With a pidfd (`pidfd_open`, Linux 5.3+): `poll` on it, readable once the process
///   exited (a zombie counts as gone). The pidfd refers to the process that had the pid when
///   it was opened; the start time, compared once the pidfd is open, rules out a pid that
///   was reused *before* that.
/// - Without (`ENOSYS` on old kernels, valgrind; `EPERM` under a seccomp filter): gone when
///   `kill(pid, 0)` says `ESRCH`, when `/proc/<pid>/stat` shows a zombie, or when its field
///   22 (start time, clock ticks after boot) differs from the one recorded. With neither a
///   pidfd nor `/proc`, only `kill(pid, 0)` answers, and a reused pid looks alive.
///
/// `Send` and `Sync`: an owned pidfd; asking takes `&mut self`.
#[derive(Debug)]
pub struct Liveness {
    pid: u32,
    start: u64,
    pidfd: Option<OwnedFd>,
    gone: bool,
}

impl Liveness {
    /// Watches `pid`, whatever process has it now (no start time to check it against).
    pub fn new(pid: u32) -> Liveness {
        Liveness::with_start(pid, 0)
    }

    /// Watches the process `pid` that started at `start` (`/proc/<pid>/stat` field 22, as
    /// [`process_start`] reads it; 0: unknown, not checked). If it is already gone,
    /// [`Liveness::is_alive`] says so.
    pub fn with_start(pid: u32, start: u64) -> Liveness {
        let mut l = Liveness { pid, start, pidfd: None, gone: false };
        let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            // Pid 0 or a scribbled word: no such process.
            l.gone = true;
            return l;
        };
        match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
            Ok(fd) => l.pidfd = Some(fd),
            Err(Errno::SRCH) => l.gone = true,
            // ENOSYS, EPERM (seccomp), ENOMEM/EMFILE: ask `kill` and /proc on each check.
            Err(_) => {}
        }
        if !l.gone && start != 0 && process_stat(pid).is_some_and(|(_, s)| s != start) {
            l.gone = true;
        }
        l
    }

    /// The pid watched.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The start time checked against (0: none).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Whether the process is still running (a zombie counts as gone); once gone, always
    /// gone. One `poll` with a zero timeout on the pidfd, or, without one, `kill(pid, 0)`
    /// and a read of `/proc/<pid>/stat`. Allocates nothing.
    pub fn is_alive(&mut self) -> bool {
        if self.gone {
            return false;
        }
        if let Some(fd) = &self.pidfd {
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            let zero = futex::Timespec { tv_sec: 0, tv_nsec: 0 };
            if let Ok(n) = rustix::event::poll(&mut fds, Some(&zero))
                && n > 0
            {
                self.gone = true;
            }
            return !self.gone;
        }
        let Some(p) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else { return false };
        // EPERM (another user's process) still means it exists.
        if rustix::process::test_kill_process(p) == Err(Errno::SRCH) {
            self.gone = true;
        } else if let Some((state, start)) = process_stat(self.pid) {
            // `Z`ombie or `X` (dead): exited, not yet reaped; another start time: the pid
            // was reused.
            if matches!(state, b'Z' | b'X') || (self.start != 0 && start != self.start) {
                self.gone = true;
            }
        }
        !self.gone
    }
}

/// The start time of process `pid`: field 22 of `/proc/<pid>/stat`, in clock ticks after
/// boot (`None` without `/proc`, or if there is no such process). Recorded in a segment's
/// header by its creator ([`Liveness::with_start`]).
pub fn process_start(pid: u32) -> Option<u64> {
    process_stat(pid).map(|(_, start)| start)
}

/// The state letter (field 3) and start time (field 22) of `/proc/<pid>/stat`, read into
/// a stack buffer.
fn process_stat(pid: u32) -> Option<(u8, u64)> {
    use core::fmt::Write;
    // The main thread's own entry, which has the same state and start time as
    // `/proc/<pid>/stat`: a user-mode emulator (qemu-user) answers `/proc/self/stat` and
    // `/proc/<its own pid>/stat` itself with a start time of its own making, which a reader
    // in another process would not find; this path it leaves to the kernel.
    let mut path = heapless::String::<48>::new();
    write!(path, "/proc/{pid}/task/{pid}/stat").ok()?;
    let fd = rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    // `pid (comm) state ppid ...`: comm is at most 16 bytes (64 for kernel threads), the
    // 19 numbers up to field 22 at most 20 digits each.
    let mut buf = [0u8; 1024];
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    parse_stat(&buf[..len])
}

/// Fields 3 and 22 of a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses: the fields start after the *last* `)`.
fn parse_stat(line: &[u8]) -> Option<(u8, u64)> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut fields = line[close + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // Field 3 was taken: field 22 is 19 further on.
    let start = fields.nth(18)?;
    let start = core::str::from_utf8(start).ok()?.trim_end().parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let line = b"4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10\n";
        assert_eq!(parse_stat(line), Some((b'S', 987_654)));
        assert_eq!(parse_stat(b"1 (x) Z 0"), None);
        assert_eq!(parse_stat(b"garbage"), None);
        let me = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let start = process_start(me).expect("/proc is mounted where the tests run");
        assert!(start > 0);
        assert!(Liveness::with_start(me, start).is_alive());
        // Another start time: this pid belongs to a later process, the watched one is gone.
        assert!(!Liveness::with_start(me, start + 1).is_alive());
        assert!(!Liveness::new(0).is_alive());
    }
}
