//! Futex waits on words inside a mapping, and the writer's liveness through a pidfd.

use core::sync::atomic::AtomicU32;
use core::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::futex;

use crate::error::Result;

/// The longest single futex sleep: a waiter re-checks the writer's liveness at least this
/// often, so a dead writer is noticed within one slice.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(100);

fn timespec(d: Duration) -> futex::Timespec {
    futex::Timespec { tv_sec: d.as_secs() as _, tv_nsec: d.subsec_nanos() as _ }
}

/// `FUTEX_WAIT` (shared, never `FUTEX_PRIVATE_FLAG`) while `*word == expected`, for at
/// most `timeout`. Returns normally on a wake-up, a value mismatch, a signal or the
/// timeout; the caller re-checks its condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) -> Result<()> {
    match futex::wait(word, futex::Flags::empty(), expected, Some(&timespec(timeout))) {
        Ok(()) | Err(Errno::AGAIN | Errno::TIMEDOUT | Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `FUTEX_WAKE` for all sleepers on `word` (shared).
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // A failure here (EFAULT on an unmapped word) cannot happen for a live mapping; a
    // missed wake only delays a sleeper by one liveness slice.
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// Whether a process is alive, asked through a pidfd (immune to pid reuse: the pidfd
/// refers to the process that had the pid when it was opened).
///
/// `Send` and `Sync`: an owned pidfd; asking takes `&mut self`.
#[derive(Debug)]
pub struct Liveness {
    pid: u32,
    pidfd: Option<OwnedFd>,
    gone: bool,
}

impl Liveness {
    /// Opens a pidfd on `pid` (`pidfd_open`, Linux 5.3+). If the process is already gone,
    /// [`Liveness::is_alive`] says so.
    pub fn new(pid: u32) -> Liveness {
        let pidfd = Pid::from_raw(pid as i32).and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok());
        // No pidfd: the pid is invalid or already gone (ESRCH), or pidfds are unavailable
        // (ENOSYS, old kernels): then fall back to "alive" and rely on timeouts.
        let gone = pidfd.is_none()
            && Pid::from_raw(pid as i32).is_none_or(|p| rustix::process::test_kill_process(p) == Err(Errno::SRCH));
        Liveness { pid, pidfd, gone }
    }

    /// The pid watched.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is still running (a zombie counts as gone). `poll` on the pidfd
    /// with a zero timeout: readable means it exited.
    pub fn is_alive(&mut self) -> bool {
        if self.gone {
            return false;
        }
        let Some(fd) = &self.pidfd else { return true };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let zero = futex::Timespec { tv_sec: 0, tv_nsec: 0 };
        if let Ok(n) = rustix::event::poll(&mut fds, Some(&zero))
            && n > 0
        {
            self.gone = true;
        }
        !self.gone
    }
}
