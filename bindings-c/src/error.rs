//! Error codes, `ember_strerror`, `ember_last_os_error`, and the guard every export runs in.

use core::ffi::{CStr, c_char, c_int};
use core::time::Duration;
use std::cell::Cell;

use ember_linux::Error;

/// The result codes every function returns: `EMBER_OK` (0) or a negative error. An enum
/// in the header (its enumerators are plain `int` constants, safe in any expression); the
/// functions return `int`.
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ember_status {
    /// Success.
    EMBER_OK = 0,
    /// An argument is invalid: a NULL or misaligned pointer, a bad name or size.
    EMBER_EINVAL = -1,
    /// The caller's buffer is too small (nothing was consumed or written).
    EMBER_ENOSPC = -2,
    /// Nonblocking and nothing to do now: try again later.
    EMBER_EAGAIN = -3,
    /// A wait ended at its timeout.
    EMBER_ETIMEDOUT = -4,
    /// The peer is gone (every writer closed, the reader closed, the connection reset).
    EMBER_EPEERGONE = -5,
    /// A received frame was malformed (bad header, length or CRC) and was skipped.
    EMBER_EBADMSG = -6,
    /// A frame or message is larger than the limit in force.
    EMBER_ETOOBIG = -7,
    /// The operating system refused: `ember_last_os_error()` gives the `errno`.
    EMBER_EOS = -8,
    /// A bug in Ember (a caught panic); the handle should be freed.
    EMBER_EINTERNAL = -9,
    /// The mutex is now held by the caller, but its last owner died holding it: repair the
    /// data, then `ember_mutex_consistent`, then unlock.
    EMBER_EOWNERDEAD = -10,
    /// The mutex was taken from a dead owner and unlocked without being repaired: it can
    /// no longer be locked.
    EMBER_ENOTRECOVERABLE = -11,
    /// The calling thread already holds the mutex.
    EMBER_EDEADLK = -12,
    /// The calling thread does not hold the mutex.
    EMBER_ENOTOWNER = -13,
    /// A semaphore's count is at its maximum.
    EMBER_EOVERFLOW = -14,
    /// The server answered with an error response (its code and message are returned).
    EMBER_EREMOTE = -15,
    /// The handle is in use by the call that is running this callback (a D-Bus handler or
    /// `on_other` callback may not use its own connection).
    EMBER_EBUSY = -16,
    /// No room for a new shared-memory segment: `/dev/shm` (or the memory a memfd comes
    /// from, or SysV's `kernel.shmall`) cannot hold it. Nothing was left behind (the name
    /// was unlinked); `ember_last_no_space` gives the bytes needed and available. The pages
    /// of every segment are reserved when it is created, so a full `/dev/shm` is this
    /// error at create time and never a `SIGBUS` later.
    EMBER_ENOSHMSPACE = -17,
    /// The object is in use by a live process, so it was left alone: a create with
    /// `EMBER_REPLACE_STALE` found a segment whose writer lives, a queue a live creator
    /// holds or a FIFO somebody reads; or an SPSC ring already has its receiver in a live
    /// process. `ember_last_in_use_pid` gives that process's pid (0 when it cannot be
    /// known).
    EMBER_EINUSE = -18,
    /// The shared-memory segment has a layout version this library does not speak (made by
    /// an older or newer Ember): nothing was mapped. A stale one is replaced by a create
    /// with `EMBER_REPLACE_STALE`.
    EMBER_EVERSION = -19,
    /// A kernel limit refused the object (a queue deeper, or with larger messages, than
    /// unprivileged processes may create; one queue or segment too many; the user's queue
    /// bytes, `RLIMIT_MSGQUEUE`; no descriptor left...). Nothing was created.
    /// `ember_last_limit` says which limit, its value and what was asked for.
    EMBER_ELIMIT = -20,
    /// A frame's payload is not covered by its checksum (`EMBER_FLAG_UNCHECKED`) where it
    /// must be: a receiver that requires checked payloads skipped it, or a sender set to
    /// `EMBER_INTEGRITY_CHECKED` refused it (nothing sent).
    EMBER_EUNCHECKED = -21,
    /// The call was cancelled: the canceler installed with `ember_set_canceler` was
    /// triggered (`ember_canceler_cancel`, e.g. from a `SIGINT` handler) before or during
    /// its wait. Nothing was received or sent; every later blocking call returns this too
    /// until `ember_canceler_reset`.
    EMBER_ECANCELED = -22,
}

/// The kernel limits behind `EMBER_ELIMIT` (`ember_last_limit`); `ember_limit_source`
/// names where each is set. The `/proc/sys` ones are per IPC namespace.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ember_limit {
    /// No limit (no `EMBER_ELIMIT` yet in this thread).
    EMBER_LIMIT_NONE = 0,
    /// `/proc/sys/fs/mqueue/msg_max`: messages per POSIX queue (unprivileged creators).
    EMBER_LIMIT_MQ_MSG_MAX = 1,
    /// `/proc/sys/fs/mqueue/msgsize_max`: bytes per POSIX queue message (unprivileged).
    EMBER_LIMIT_MQ_MSGSIZE_MAX = 2,
    /// `/proc/sys/fs/mqueue/queues_max`: POSIX queues in the namespace.
    EMBER_LIMIT_MQ_QUEUES_MAX = 3,
    /// `RLIMIT_MSGQUEUE`: bytes the user's POSIX queues may hold.
    EMBER_LIMIT_RLIMIT_MSGQUEUE = 4,
    /// `RLIMIT_NOFILE`: open descriptors per process.
    EMBER_LIMIT_RLIMIT_NOFILE = 5,
    /// `/proc/sys/fs/file-max`: open files in the system.
    EMBER_LIMIT_FILE_MAX = 6,
    /// `/proc/sys/kernel/msgmni`: SysV message queues in the namespace.
    EMBER_LIMIT_SYSV_MSGMNI = 7,
    /// `/proc/sys/kernel/msgmax`: bytes per SysV message.
    EMBER_LIMIT_SYSV_MSGMAX = 8,
    /// `/proc/sys/kernel/shmmax`: bytes per SysV segment.
    EMBER_LIMIT_SYSV_SHMMAX = 9,
    /// `/proc/sys/kernel/shmmni`: SysV segments in the namespace.
    EMBER_LIMIT_SYSV_SHMMNI = 10,
}

impl ember_limit {
    fn of(l: ember_linux::limits::Limit) -> ember_limit {
        use ember_linux::limits::Limit;
        match l {
            Limit::MqMsgMax => ember_limit::EMBER_LIMIT_MQ_MSG_MAX,
            Limit::MqMsgsizeMax => ember_limit::EMBER_LIMIT_MQ_MSGSIZE_MAX,
            Limit::MqQueuesMax => ember_limit::EMBER_LIMIT_MQ_QUEUES_MAX,
            Limit::RlimitMsgqueue => ember_limit::EMBER_LIMIT_RLIMIT_MSGQUEUE,
            Limit::RlimitNofile => ember_limit::EMBER_LIMIT_RLIMIT_NOFILE,
            Limit::FileMax => ember_limit::EMBER_LIMIT_FILE_MAX,
            Limit::SysvMsgmni => ember_limit::EMBER_LIMIT_SYSV_MSGMNI,
            Limit::SysvMsgmax => ember_limit::EMBER_LIMIT_SYSV_MSGMAX,
            Limit::SysvShmmax => ember_limit::EMBER_LIMIT_SYSV_SHMMAX,
            Limit::SysvShmmni => ember_limit::EMBER_LIMIT_SYSV_SHMMNI,
            _ => ember_limit::EMBER_LIMIT_NONE,
        }
    }
}

pub(crate) const EMBER_OK: c_int = ember_status::EMBER_OK as c_int;
pub(crate) const EMBER_EINVAL: c_int = ember_status::EMBER_EINVAL as c_int;
pub(crate) const EMBER_ENOSPC: c_int = ember_status::EMBER_ENOSPC as c_int;
pub(crate) const EMBER_EAGAIN: c_int = ember_status::EMBER_EAGAIN as c_int;
pub(crate) const EMBER_ETIMEDOUT: c_int = ember_status::EMBER_ETIMEDOUT as c_int;
pub(crate) const EMBER_EPEERGONE: c_int = ember_status::EMBER_EPEERGONE as c_int;
pub(crate) const EMBER_EBADMSG: c_int = ember_status::EMBER_EBADMSG as c_int;
pub(crate) const EMBER_ETOOBIG: c_int = ember_status::EMBER_ETOOBIG as c_int;
pub(crate) const EMBER_EOS: c_int = ember_status::EMBER_EOS as c_int;
pub(crate) const EMBER_EINTERNAL: c_int = ember_status::EMBER_EINTERNAL as c_int;
pub(crate) const EMBER_EOWNERDEAD: c_int = ember_status::EMBER_EOWNERDEAD as c_int;
pub(crate) const EMBER_ENOTRECOVERABLE: c_int = ember_status::EMBER_ENOTRECOVERABLE as c_int;
pub(crate) const EMBER_EDEADLK: c_int = ember_status::EMBER_EDEADLK as c_int;
pub(crate) const EMBER_ENOTOWNER: c_int = ember_status::EMBER_ENOTOWNER as c_int;
pub(crate) const EMBER_EOVERFLOW: c_int = ember_status::EMBER_EOVERFLOW as c_int;
pub(crate) const EMBER_EREMOTE: c_int = ember_status::EMBER_EREMOTE as c_int;
pub(crate) const EMBER_EBUSY: c_int = ember_status::EMBER_EBUSY as c_int;
pub(crate) const EMBER_ENOSHMSPACE: c_int = ember_status::EMBER_ENOSHMSPACE as c_int;
pub(crate) const EMBER_EINUSE: c_int = ember_status::EMBER_EINUSE as c_int;
pub(crate) const EMBER_EVERSION: c_int = ember_status::EMBER_EVERSION as c_int;
pub(crate) const EMBER_ELIMIT: c_int = ember_status::EMBER_ELIMIT as c_int;
pub(crate) const EMBER_EUNCHECKED: c_int = ember_status::EMBER_EUNCHECKED as c_int;
pub(crate) const EMBER_ECANCELED: c_int = ember_status::EMBER_ECANCELED as c_int;

thread_local! {
    static LAST_OS_ERROR: Cell<c_int> = const { Cell::new(0) };
    static LAST_NO_SPACE: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    static LAST_IN_USE_PID: Cell<u32> = const { Cell::new(0) };
    /// (limit, its value or `u64::MAX` when unreadable, what was asked for).
    static LAST_LIMIT: Cell<(ember_limit, u64, u64)> = const { Cell::new((ember_limit::EMBER_LIMIT_NONE, 0, 0)) };
}

/// The code for an `ember_linux` error (recording the errno for `EMBER_EOS`).
pub(crate) fn code(e: Error) -> c_int {
    use ember_core::shm::ShmError;
    match e {
        Error::Os(errno) => {
            LAST_OS_ERROR.with(|c| c.set(errno.raw_os_error()));
            EMBER_EOS
        }
        Error::NoSpace { needed, available } => {
            LAST_NO_SPACE.with(|c| c.set((needed, available)));
            EMBER_ENOSHMSPACE
        }
        Error::InUse { pid, .. } | Error::Shm(ShmError::ReaderClaimed { pid }) => {
            LAST_IN_USE_PID.with(|c| c.set(pid));
            EMBER_EINUSE
        }
        Error::Shm(ShmError::UnsupportedVersion(_)) => EMBER_EVERSION,
        Error::Limit { which, value, requested } => {
            LAST_LIMIT.with(|c| c.set((ember_limit::of(which), value.unwrap_or(u64::MAX), requested)));
            EMBER_ELIMIT
        }
        Error::WouldBlock | Error::Shm(ShmError::Empty | ShmError::Full) => EMBER_EAGAIN,
        Error::TimedOut | Error::Shm(ShmError::Timeout) => EMBER_ETIMEDOUT,
        Error::Cancelled => EMBER_ECANCELED,
        Error::PeerGone | Error::NoReader | Error::Shm(ShmError::WriterGone | ShmError::Closed) => EMBER_EPEERGONE,
        Error::Codec(ember_core::Error::BufferTooSmall { .. }) | Error::BufferTooSmall { .. } => EMBER_ENOSPC,
        Error::Codec(ember_core::Error::TooLarge { .. }) | Error::TooLarge { .. } => EMBER_ETOOBIG,
        Error::Codec(ember_core::Error::UncheckedPayload) => EMBER_EUNCHECKED,
        Error::Codec(_) => EMBER_EBADMSG,
        Error::InvalidName => EMBER_EINVAL,
        Error::Sync(s) => {
            use ember_core::shm::sync::SyncError;
            match s {
                SyncError::NotRecoverable => EMBER_ENOTRECOVERABLE,
                SyncError::Deadlock => EMBER_EDEADLK,
                SyncError::NotOwner => EMBER_ENOTOWNER,
                SyncError::Overflow => EMBER_EOVERFLOW,
                SyncError::TimedOut => EMBER_ETIMEDOUT,
                SyncError::Cancelled => EMBER_ECANCELED,
                SyncError::WouldBlock => EMBER_EAGAIN,
            }
        }
        Error::Shm(ShmError::BadSize) => EMBER_EINVAL,
        Error::Shm(ShmError::NotReady | ShmError::Contended | ShmError::WriterStalled) => EMBER_EAGAIN,
        Error::Shm(ShmError::TooLarge { .. }) => EMBER_ETOOBIG,
        Error::Shm(ShmError::BufferTooSmall { .. }) => EMBER_ENOSPC,
        Error::Shm(_) => EMBER_EBADMSG,
        // The rest as the errno a C programmer knows, or the nearest code.
        Error::NotSealed | Error::Dbus(_) => EMBER_EBADMSG,
        // Something else is at the FIFO's path.
        Error::NotAFifo => code(Error::Os(rustix::io::Errno::EXIST)),
        Error::TooManyFds { .. } => EMBER_ETOOBIG,
        Error::QueueOverflow { .. } => EMBER_EOVERFLOW,
        Error::TooManyCalls { .. } => EMBER_EBUSY,
        Error::NotOwner => code(Error::Os(rustix::io::Errno::PERM)),
        Error::Refused => code(Error::Os(rustix::io::Errno::CONNREFUSED)),
        Error::AddrInUse => code(Error::Os(rustix::io::Errno::ADDRINUSE)),
        Error::PeerNotAllowed { .. } | Error::AuthRejected => code(Error::Os(rustix::io::Errno::ACCESS)),
        // systemd: a variable that does not parse; no descriptor of that name; the wrong kind.
        Error::InvalidEnv => EMBER_EINVAL,
        Error::NotActivated => code(Error::Os(rustix::io::Errno::BADF)),
        Error::WrongFdType { .. } => code(Error::Os(rustix::io::Errno::PROTOTYPE)),
        _ => EMBER_EINTERNAL,
    }
}

/// The code for a frame-codec error.
pub(crate) fn codec_code(e: ember_core::Error) -> c_int {
    code(Error::Codec(e))
}

/// Runs an export's body: its `Err` is the code returned; a panic is `EMBER_EINTERNAL`.
///
/// The closure is asserted unwind-safe: after a panic the handle it touched may be
/// inconsistent, and `EMBER_EINTERNAL` tells the caller to free it.
pub(crate) fn guard(f: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(c) | Err(c)) => c,
        Err(_) => EMBER_EINTERNAL,
    }
}

/// `p` as a reference, or `EMBER_EINVAL` if NULL or misaligned.
///
/// # Safety
///
/// A non-NULL, aligned `p` must point to a valid `T` for `'a`.
pub(crate) unsafe fn arg<'a, T>(p: *const T) -> Result<&'a T, c_int> {
    if p.is_null() || !p.is_aligned() {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: non-null and aligned (checked); valid by the caller's contract.
    Ok(unsafe { &*p })
}

/// `p` as a mutable reference, or `EMBER_EINVAL` if NULL or misaligned.
///
/// # Safety
///
/// A non-NULL, aligned `p` must point to a valid `T`, not aliased, for `'a`.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T) -> Result<&'a mut T, c_int> {
    if p.is_null() || !p.is_aligned() {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: non-null and aligned (checked); valid and unaliased by the caller's contract.
    Ok(unsafe { &mut *p })
}

/// `timeout_ms`: `EMBER_FOREVER` (negative) for none, else milliseconds (0: don't wait).
pub(crate) fn timeout(ms: i64) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// A name from C (a queue's, a segment's): valid UTF-8, else `EMBER_EINVAL`.
///
/// # Safety
///
/// A non-NULL `p` must point to a NUL-terminated string.
pub(crate) unsafe fn c_name<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    if p.is_null() {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| EMBER_EINVAL)
}

/// Takes ownership of `fd`, or `EMBER_EINVAL` if negative.
pub(crate) fn owned(fd: c_int) -> Result<std::os::fd::OwnedFd, c_int> {
    if fd < 0 {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: the caller hands over an open fd it owns (each `_from_*` function's contract).
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// An output argument, checked (not NULL, aligned) but not borrowed: it is written once,
/// at the end, so two outputs at one address, or an output inside a buffer argument, are
/// never two live references.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// An output into a local slot (initialised by `set`).
    pub(crate) fn local(slot: &mut core::mem::MaybeUninit<T>) -> Out<T> {
        Out(slot.as_mut_ptr())
    }

    /// Writes the output.
    pub(crate) fn set(&self, v: T) {
        // SAFETY: checked non-NULL and aligned by `out`; writable by the caller's contract;
        // no reference to it is alive (we hold none).
        unsafe { self.0.write(v) }
    }
}

/// `p` as an output argument, or `EMBER_EINVAL` if NULL or misaligned.
pub(crate) fn out<T>(p: *mut T) -> Result<Out<T>, c_int> {
    if p.is_null() || !p.is_aligned() {
        return Err(EMBER_EINVAL);
    }
    Ok(Out(p))
}

/// `len` bytes at `p` (`p` may be NULL when `len` is 0), or `EMBER_EINVAL`.
///
/// # Safety
///
/// A non-NULL `p` must point to `len` readable bytes for `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() || len > isize::MAX as usize {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: non-null; `len` readable bytes by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// `cap` writable bytes at `p` (`p` may be NULL when `cap` is 0), or `EMBER_EINVAL`.
///
/// # Safety
///
/// A non-NULL `p` must point to `cap` writable bytes, not aliased, for `'a`.
pub(crate) unsafe fn bytes_mut<'a>(p: *mut u8, cap: usize) -> Result<&'a mut [u8], c_int> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if p.is_null() || cap > isize::MAX as usize {
        return Err(EMBER_EINVAL);
    }
    // SAFETY: non-null; `cap` writable, unaliased bytes by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, cap) })
}

/// A static, NUL-terminated description of `code` ("unknown error" for others).
///
/// Returns no result code (it cannot fail).
///
/// # Safety
///
/// Always safe to call. The string is static and must not be freed.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn ember_strerror(code: c_int) -> *const c_char {
    let s: &'static core::ffi::CStr = match code {
        EMBER_OK => c"success",
        EMBER_EINVAL => c"invalid argument (NULL or misaligned pointer, bad name or size)",
        EMBER_ENOSPC => c"buffer too small",
        EMBER_EAGAIN => c"would block: try again later",
        EMBER_ETIMEDOUT => c"timed out",
        EMBER_EPEERGONE => c"the peer is gone",
        EMBER_EBADMSG => c"malformed frame (skipped)",
        EMBER_ETOOBIG => c"frame or message too large",
        EMBER_EOS => c"operating system error (see ember_last_os_error)",
        EMBER_EINTERNAL => c"internal error in Ember (a bug)",
        EMBER_EOWNERDEAD => c"the mutex's owner died: repair the data, then ember_mutex_consistent",
        EMBER_ENOTRECOVERABLE => c"the mutex is not recoverable (its owner died and the data was never repaired)",
        EMBER_EDEADLK => c"the calling thread already holds the mutex",
        EMBER_ENOTOWNER => c"the calling thread does not hold the mutex",
        EMBER_EOVERFLOW => c"semaphore count overflow",
        EMBER_EREMOTE => c"the server answered with an error",
        EMBER_EBUSY => c"the handle is in use by the call running this callback",
        EMBER_ENOSHMSPACE => c"no space for the shared-memory segment (is /dev/shm full?)",
        EMBER_EUNCHECKED => c"frame payload not covered by its checksum where it must be",
        EMBER_EINUSE => c"in use by a live process (see ember_last_in_use_pid)",
        EMBER_EVERSION => c"shared-memory segment of another layout version",
        EMBER_ELIMIT => c"a kernel limit was reached (see ember_last_limit)",
        EMBER_ECANCELED => c"cancelled (see ember_set_canceler)",
        _ => c"unknown error",
    };
    s.as_ptr()
}

/// The `errno` of the last call in this thread that returned `EMBER_EOS` (0 if none).
///
/// Returns no result code (it cannot fail).
///
/// # Safety
///
/// Always safe to call.
///
/// Thread safety: per thread (each thread sees its own last error).
#[unsafe(no_mangle)]
pub extern "C" fn ember_last_os_error() -> c_int {
    LAST_OS_ERROR.with(Cell::get)
}

/// The pid behind the last `EMBER_EINUSE` in this thread: the live writer, queue creator
/// or SPSC receiver that holds the object (0 when it cannot be known, as for a FIFO's
/// reader, or if there was none).
///
/// Returns no result code (it cannot fail).
///
/// # Safety
///
/// Always safe to call.
///
/// Thread safety: per thread (each thread sees its own last error).
#[unsafe(no_mangle)]
pub extern "C" fn ember_last_in_use_pid() -> u32 {
    LAST_IN_USE_PID.with(Cell::get)
}

/// The limit behind the last `EMBER_ELIMIT` in this thread: which one (an `ember_limit`,
/// `EMBER_LIMIT_NONE` if there was none), its value when the error happened (`UINT64_MAX`
/// when it could not be read) and what was asked for in its unit (0 when one more object
/// was asked for). Any pointer may be NULL.
///
/// Returns `EMBER_OK`, or `EMBER_EINVAL` for a misaligned pointer.
///
/// # Safety
///
/// `which`, `value` and `requested` NULL or writable.
///
/// Thread safety: per thread (each thread sees its own last error).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_last_limit(which: *mut c_int, value: *mut u64, requested: *mut u64) -> c_int {
    guard(|| {
        let (l, v, r) = LAST_LIMIT.with(Cell::get);
        if !which.is_null() {
            out(which)?.set(l as c_int);
        }
        if !value.is_null() {
            out(value)?.set(v);
        }
        if !requested.is_null() {
            out(requested)?.set(r);
        }
        Ok(EMBER_OK)
    })
}

/// Where the limit `which` (an `ember_limit`) is set, e.g. `"/proc/sys/fs/mqueue/msg_max"`
/// or `"RLIMIT_MSGQUEUE"`: static, NUL-terminated ("unknown limit" for other values).
/// No result code.
///
/// # Safety
///
/// Always safe to call.
///
/// Thread safety: any thread, any time.
#[unsafe(no_mangle)]
pub extern "C" fn ember_limit_source(which: c_int) -> *const c_char {
    let s: &core::ffi::CStr = match which {
        1 => c"/proc/sys/fs/mqueue/msg_max",
        2 => c"/proc/sys/fs/mqueue/msgsize_max",
        3 => c"/proc/sys/fs/mqueue/queues_max",
        4 => c"RLIMIT_MSGQUEUE",
        5 => c"RLIMIT_NOFILE",
        6 => c"/proc/sys/fs/file-max",
        7 => c"/proc/sys/kernel/msgmni",
        8 => c"/proc/sys/kernel/msgmax",
        9 => c"/proc/sys/kernel/shmmax",
        10 => c"/proc/sys/kernel/shmmni",
        _ => c"unknown limit",
    };
    s.as_ptr()
}

/// The sizes behind the last `EMBER_ENOSHMSPACE` in this thread: the bytes the segment
/// needed and the bytes its file system had free (`fstatvfs`; for SysV, what
/// `kernel.shmall` left). Writes 0 and 0 if there was none. Either pointer may be NULL.
/// Returns `EMBER_OK`, or `EMBER_EINVAL` (a misaligned pointer).
///
/// # Safety
///
/// `needed` and `available` NULL or writable.
///
/// Thread safety: per thread (each thread sees its own last error).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_last_no_space(needed: *mut u64, available: *mut u64) -> c_int {
    guard(|| {
        let (n, a) = LAST_NO_SPACE.with(Cell::get);
        if !needed.is_null() {
            out(needed)?.set(n);
        }
        if !available.is_null() {
            out(available)?.set(a);
        }
        Ok(EMBER_OK)
    })
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use ember_linux::limits::Limit;

    #[test]
    fn every_limit_has_its_c_value_and_source() {
        let all = [
            Limit::MqMsgMax,
            Limit::MqMsgsizeMax,
            Limit::MqQueuesMax,
            Limit::RlimitMsgqueue,
            Limit::RlimitNofile,
            Limit::FileMax,
            Limit::SysvMsgmni,
            Limit::SysvMsgmax,
            Limit::SysvShmmax,
            Limit::SysvShmmni,
        ];
        for l in all {
            let c = ember_limit::of(l);
            assert_ne!(c, ember_limit::EMBER_LIMIT_NONE, "{l:?}");
            // SAFETY: a static NUL-terminated string.
            let s = unsafe { CStr::from_ptr(ember_limit_source(c as c_int)) };
            assert_eq!(s.to_str().unwrap(), l.source());
        }
    }
}
