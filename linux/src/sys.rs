//! The system calls rustix does not wrap, as raw syscalls: SysV shared memory, signal
//! masks, POSIX message queues, and `riscv_hwprobe` (what a RISC-V CPU has).
//!
//! Numbers come from `linux-raw-sys`; the instruction sequences from the `syscalls` crate
//! (`syscalls::raw`, inline assembly for every Linux architecture, no libc). The SysV
//! structures are not in `linux-raw-sys`, so the one field read here (`shm_segsz`) is
//! located by the layout of the kernel's `struct shmid64_ds` (see [`SEGSZ_OFFSET`]).
#![allow(unsafe_code)]

use linux_raw_sys::general::{__NR_shmat, __NR_shmctl, __NR_shmdt, __NR_shmget};
use rustix::io::Errno;

/// `IPC_PRIVATE`: a key that always makes a new segment.
pub const IPC_PRIVATE: i32 = 0;
/// `IPC_CREAT` (uapi `ipc.h`, the same on every architecture).
const IPC_CREAT: usize = 0o1000;
/// `IPC_EXCL`.
const IPC_EXCL: usize = 0o2000;
/// `IPC_RMID`.
const IPC_RMID: usize = 0;
/// `IPC_STAT`.
const IPC_STAT: usize = 2;
/// `SHM_RDONLY`.
const SHM_RDONLY: usize = 0o10000;
/// `IPC_64`: 32-bit ARM needs it in `shmctl`'s command to get `struct shmid64_ds`;
/// 64-bit architectures always use the 64-bit layout and reject the flag.
#[cfg(target_arch = "arm")]
const IPC_64: usize = 0x100;
#[cfg(not(target_arch = "arm"))]
const IPC_64: usize = 0;

/// Byte offset of `shm_segsz` in `struct shmid64_ds`: after `struct ipc64_perm`, which is
/// six 32-bit ids and mode, two 16-bit fields, and two `__kernel_ulong_t`, so 48 bytes on
/// 64-bit architectures and 36 on 32-bit ARM.
pub const SEGSZ_OFFSET: usize = if cfg!(target_pointer_width = "64") { 48 } else { 36 };

fn ret(r: usize) -> Result<usize, Errno> {
    // The kernel returns -errno in the range -4095..=-1.
    if r > -4096isize as usize { Err(Errno::from_raw_os_error(-(r as isize) as i32)) } else { Ok(r) }
}

/// `shmget(key, size, IPC_CREAT | IPC_EXCL | mode)`: a new segment, failing with `EEXIST`
/// if the key is taken.
pub fn shmget_create(key: i32, size: usize, mode: u32) -> Result<i32, Errno> {
    // SAFETY: shmget takes only integers.
    let r = unsafe {
        syscalls::raw::syscall3(__NR_shmget as usize, key as usize, size, IPC_CREAT | IPC_EXCL | mode as usize)
    };
    ret(r).map(|id| id as i32)
}

/// `shmget(key, 0, 0)`: the id of an existing segment.
pub fn shmget_open(key: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes only integers.
    let r = unsafe { syscalls::raw::syscall3(__NR_shmget as usize, key as usize, 0, 0) };
    ret(r).map(|id| id as i32)
}

/// `shmat(id, NULL, readonly ? SHM_RDONLY : 0)`: attaches the whole segment at an address
/// the kernel chooses.
///
/// # Safety
///
/// The caller owns the returned attachment: it must detach it with [`shmdt`] exactly once
/// and access it only in ways valid for shared memory (atomics).
pub unsafe fn shmat(id: i32, readonly: bool) -> Result<*mut u8, Errno> {
    let flags = if readonly { SHM_RDONLY } else { 0 };
    // SAFETY: a null address lets the kernel choose a free range; no existing mapping of
    // this process is touched.
    let r = unsafe { syscalls::raw::syscall3(__NR_shmat as usize, id as usize, 0, flags) };
    ret(r).map(|p| p as *mut u8)
}

/// `shmdt(addr)`.
///
/// # Safety
///
/// `addr` must come from [`shmat`] and no reference into the attachment may outlive it.
pub unsafe fn shmdt(addr: *mut u8) -> Result<(), Errno> {
    // SAFETY: the caller's guarantee.
    let r = unsafe { syscalls::raw::syscall1(__NR_shmdt as usize, addr as usize) };
    ret(r).map(|_| ())
}

/// `shmctl(id, IPC_RMID, NULL)`: the segment goes away after the last detach.
pub fn shm_remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer argument, which is null.
    let r = unsafe { syscalls::raw::syscall3(__NR_shmctl as usize, id as usize, IPC_RMID | IPC_64, 0) };
    ret(r).map(|_| ())
}

/// `SHM_INFO`.
const SHM_INFO: usize = 14;

/// `shmctl(0, SHM_INFO)`: pages of SysV shared memory allocated in this IPC namespace
/// (`struct shm_info`'s `shm_tot`, the count `kernel.shmall` limits).
pub fn shm_total_pages() -> Result<usize, Errno> {
    // `struct shm_info` is an `int` then five `unsigned long`s: at most 48 bytes.
    let mut buf = [0usize; 8];
    // SAFETY: the kernel writes one `struct shm_info` into `buf`, which is larger.
    let r = unsafe { syscalls::raw::syscall3(__NR_shmctl as usize, 0, SHM_INFO, buf.as_mut_ptr() as usize) };
    ret(r)?;
    // `shm_tot` follows the `int`, aligned as an `unsigned long`: the second word.
    Ok(buf[1])
}

/// `shmctl(id, IPC_STAT)`: the segment's size in bytes.
pub fn shm_size(id: i32) -> Result<usize, Errno> {
    // `struct shmid64_ds` is at most 120 bytes; 256 leaves room, 8-aligned.
    let mut buf = [0u64; 32];
    // SAFETY: the kernel writes one `struct shmid64_ds` into `buf`, which is larger.
    let r = unsafe {
        syscalls::raw::syscall3(__NR_shmctl as usize, id as usize, IPC_STAT | IPC_64, buf.as_mut_ptr() as usize)
    };
    ret(r)?;
    let mut raw = [0u8; 256];
    for (chunk, w) in raw.chunks_exact_mut(8).zip(buf) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    let size = if cfg!(target_pointer_width = "64") {
        u64::from_ne_bytes(raw[SEGSZ_OFFSET..SEGSZ_OFFSET + 8].try_into().unwrap_or([0; 8])) as usize
    } else {
        u32::from_ne_bytes(raw[SEGSZ_OFFSET..SEGSZ_OFFSET + 4].try_into().unwrap_or([0; 4])) as usize
    };
    Ok(size)
}

/// The kernel's `sigset_t`: 64 signals, one bit each (`_NSIG / 8` = 8 bytes on every
/// architecture Ember targets).
pub type KernelSigset = u64;

/// The bit of signal `sig` in a [`KernelSigset`].
pub const fn sig_bit(sig: u32) -> KernelSigset {
    1u64 << (sig - 1)
}

/// `rt_sigprocmask(how, set, old, 8)` for the calling thread; returns the old mask.
pub fn rt_sigprocmask(how: u32, set: KernelSigset) -> Result<KernelSigset, Errno> {
    let mut old: KernelSigset = 0;
    // SAFETY: both pointers are to live 8-byte sigsets; the size argument matches.
    let r = unsafe {
        syscalls::raw::syscall4(
            linux_raw_sys::general::__NR_rt_sigprocmask as usize,
            how as usize,
            &set as *const KernelSigset as usize,
            &mut old as *mut KernelSigset as usize,
            core::mem::size_of::<KernelSigset>(),
        )
    };
    ret(r).map(|_| old)
}

/// `rt_sigpending(set, 8)`: signals pending for the calling thread or the process.
pub fn rt_sigpending() -> Result<KernelSigset, Errno> {
    let mut set: KernelSigset = 0;
    // SAFETY: a pointer to a live 8-byte sigset and its size.
    let r = unsafe {
        syscalls::raw::syscall2(
            linux_raw_sys::general::__NR_rt_sigpending as usize,
            &mut set as *mut KernelSigset as usize,
            core::mem::size_of::<KernelSigset>(),
        )
    };
    ret(r).map(|_| set)
}

/// `rt_sigtimedwait(set, NULL, {0, 0}, 8)`: takes one pending signal of `set` without
/// waiting; `Ok(None)` when none is pending (`EAGAIN`).
pub fn rt_sigtimedwait_now(set: KernelSigset) -> Result<Option<u32>, Errno> {
    // A zero timeout: two zero words are a valid `struct timespec` in both the 32-bit and
    // the 64-bit layouts, so the plain call serves 32-bit ARM too.
    let zero = [0u64; 2];
    // SAFETY: pointers to a live sigset and a zeroed timespec; siginfo is not requested.
    let r = unsafe {
        syscalls::raw::syscall4(
            linux_raw_sys::general::__NR_rt_sigtimedwait as usize,
            &set as *const KernelSigset as usize,
            0,
            zero.as_ptr() as usize,
            core::mem::size_of::<KernelSigset>(),
        )
    };
    match ret(r) {
        Ok(sig) => Ok(Some(sig as u32)),
        Err(Errno::AGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `write` with `SIGPIPE` blocked in the calling thread, and if it failed with
/// `EPIPE`, consumes the `SIGPIPE` it raised, then restores the thread's mask. The process-wide disposition is never touched, so a write
/// to a pipe whose reader is gone reports `EPIPE` instead of killing the process.
///
/// Costs two `rt_sigprocmask` calls, or none when the thread already blocks `SIGPIPE`
/// (see [`block_sigpipe_in_this_thread`]).
pub fn without_sigpipe<T>(write: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    const SIGPIPE: u32 = linux_raw_sys::general::SIGPIPE;
    const SIG_BLOCK: u32 = linux_raw_sys::general::SIG_BLOCK;
    const SIG_SETMASK: u32 = linux_raw_sys::general::SIG_SETMASK;
    let pipe = sig_bit(SIGPIPE);
    let old = rt_sigprocmask(SIG_BLOCK, pipe)?;
    if old & pipe != 0 {
        // Already blocked by the caller: nothing to undo; a SIGPIPE stays pending for them.
        return write();
    }
    // SIGPIPE was not blocked in this thread until now, so none can be pending for it (it
    // would have been delivered): the one pending after an `EPIPE` is the write's own.
    let r = write();
    if r.as_ref().err() == Some(&Errno::PIPE) {
        let _ = rt_sigtimedwait_now(pipe);
    }
    let _ = rt_sigprocmask(SIG_SETMASK, old);
    r
}

/// `SIG_IGN` as the kernel stores it in `sa_handler`.
const SIG_IGN: usize = 1;

/// Whether `SIGPIPE` is ignored process-wide (`rt_sigaction(SIGPIPE, NULL, &old, 8)` reads
/// the disposition and changes nothing). When it is, a write to a pipe whose reader is gone
/// just fails with `EPIPE`, and [`without_sigpipe`] is not needed. Rust's runtime ignores
/// `SIGPIPE` before `main`; C programs usually leave the default (terminate).
pub fn sigpipe_ignored() -> Result<bool, Errno> {
    // `struct sigaction` of the kernel starts with `sa_handler` on every architecture Ember
    // targets (x86-64, AArch64, 32-bit ARM, RISC-V) and is at most 32 bytes; 64 leave room.
    let mut old = [0usize; 64 / core::mem::size_of::<usize>()];
    // SAFETY: a null new action only reads; the kernel writes one `struct sigaction` into
    // `old`, which is larger and pointer-aligned; the sigset size is the kernel's.
    let r = unsafe {
        syscalls::raw::syscall4(
            linux_raw_sys::general::__NR_rt_sigaction as usize,
            linux_raw_sys::general::SIGPIPE as usize,
            0,
            old.as_mut_ptr() as usize,
            core::mem::size_of::<KernelSigset>(),
        )
    };
    ret(r).map(|_| old[0] == SIG_IGN)
}

/// Blocks `SIGPIPE` in the calling thread for good, so Ember's pipe and FIFO writes skip
/// the two `rt_sigprocmask` calls of [`without_sigpipe`]. An explicit choice of the
/// application (it affects every write of this thread); returns whether it was blocked
/// before.
pub fn block_sigpipe_in_this_thread() -> Result<bool, Errno> {
    let pipe = sig_bit(linux_raw_sys::general::SIGPIPE);
    rt_sigprocmask(linux_raw_sys::general::SIG_BLOCK, pipe).map(|old| old & pipe != 0)
}

/// `struct mq_attr` (uapi `mqueue.h`): four `long`s and four reserved `long`s.
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqAttr {
    /// `O_NONBLOCK` or 0.
    pub mq_flags: core::ffi::c_long,
    /// Most messages the queue holds.
    pub mq_maxmsg: core::ffi::c_long,
    /// Largest message, in bytes.
    pub mq_msgsize: core::ffi::c_long,
    /// Messages in the queue now.
    pub mq_curmsgs: core::ffi::c_long,
    reserved: [core::ffi::c_long; 4],
}

const _: () = assert!(core::mem::size_of::<MqAttr>() == 8 * core::mem::size_of::<core::ffi::c_long>());
const _: () = assert!(core::mem::offset_of!(MqAttr, mq_msgsize) == 2 * core::mem::size_of::<core::ffi::c_long>());

impl MqAttr {
    /// Attributes for `mq_open(O_CREAT)`.
    pub fn new(max_msgs: usize, msg_size: usize) -> MqAttr {
        MqAttr {
            mq_maxmsg: max_msgs as core::ffi::c_long,
            mq_msgsize: msg_size as core::ffi::c_long,
            ..MqAttr::default()
        }
    }
}

/// `struct __kernel_timespec`: 64-bit seconds and nanoseconds on every architecture (the
/// layout of the `_time64` calls on 32-bit ARM, and of the plain calls on 64-bit targets).
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelTimespec {
    /// Seconds.
    pub tv_sec: i64,
    /// Nanoseconds.
    pub tv_nsec: i64,
}

const _: () = assert!(core::mem::size_of::<KernelTimespec>() == 16);

#[cfg(target_pointer_width = "32")]
const NR_MQ_TIMEDSEND: u32 = linux_raw_sys::general::__NR_mq_timedsend_time64;
#[cfg(target_pointer_width = "32")]
const NR_MQ_TIMEDRECEIVE: u32 = linux_raw_sys::general::__NR_mq_timedreceive_time64;
#[cfg(target_pointer_width = "64")]
const NR_MQ_TIMEDSEND: u32 = linux_raw_sys::general::__NR_mq_timedsend;
#[cfg(target_pointer_width = "64")]
const NR_MQ_TIMEDRECEIVE: u32 = linux_raw_sys::general::__NR_mq_timedreceive;

/// `mq_open(name, oflag, mode, attr)`. `name` must be NUL-terminated and start with `/`:
/// like glibc, the pointer passed to the kernel is one past the slash.
pub fn mq_open(name: &[u8], oflag: u32, mode: u32, attr: Option<&MqAttr>) -> Result<OwnedFdRaw, Errno> {
    debug_assert!(name.first() == Some(&b'/') && name.last() == Some(&0));
    let attr_ptr = attr.map_or(0, |a| a as *const MqAttr as usize);
    // SAFETY: `name` is a live NUL-terminated buffer (the kernel reads up to the NUL past
    // the slash); `attr` is null or a live `mq_attr`.
    let r = unsafe {
        syscalls::raw::syscall4(
            linux_raw_sys::general::__NR_mq_open as usize,
            name.as_ptr() as usize + 1,
            oflag as usize,
            mode as usize,
            attr_ptr,
        )
    };
    ret(r).map(|fd| OwnedFdRaw(fd as i32))
}

/// A file descriptor number fresh from a raw syscall, not yet owned.
///
/// `Send` and `Sync`: a descriptor number, closed by whichever thread drops it.
#[derive(Debug)]
pub struct OwnedFdRaw(pub i32);

impl OwnedFdRaw {
    /// Takes ownership of the descriptor.
    pub fn into_owned(self) -> rustix::fd::OwnedFd {
        use rustix::fd::FromRawFd;
        // SAFETY: the descriptor was just returned by the kernel to this process and
        // nothing else owns it.
        unsafe { rustix::fd::OwnedFd::from_raw_fd(self.0) }
    }
}

/// Sets `FD_CLOEXEC` on descriptor number `fd` (`fcntl(F_SETFD)` after `F_GETFD`), which
/// this process may not own yet (systemd's socket-activated descriptors): a number that is
/// not open is `EBADF`, and nothing else happens. Taking integers only, the call cannot
/// touch memory; it is how [`crate::systemd`] checks a descriptor is open before owning it.
pub fn set_cloexec_raw(fd: i32) -> Result<(), Errno> {
    use linux_raw_sys::general::{__NR_fcntl, F_GETFD, F_SETFD, FD_CLOEXEC};
    if fd < 0 {
        return Err(Errno::BADF);
    }
    // SAFETY: fcntl(F_GETFD) takes only integers and reads no memory.
    let flags = ret(unsafe { syscalls::raw::syscall2(__NR_fcntl as usize, fd as usize, F_GETFD as usize) })?;
    if flags & FD_CLOEXEC as usize != 0 {
        return Ok(());
    }
    // SAFETY: fcntl(F_SETFD) takes only integers and reads no memory.
    let r = unsafe {
        syscalls::raw::syscall3(__NR_fcntl as usize, fd as usize, F_SETFD as usize, flags | FD_CLOEXEC as usize)
    };
    ret(r).map(|_| ())
}

/// `mq_unlink(name)` (`name` NUL-terminated, starting with `/`).
pub fn mq_unlink(name: &[u8]) -> Result<(), Errno> {
    debug_assert!(name.first() == Some(&b'/') && name.last() == Some(&0));
    // SAFETY: a live NUL-terminated buffer, read by the kernel past the slash.
    let r =
        unsafe { syscalls::raw::syscall1(linux_raw_sys::general::__NR_mq_unlink as usize, name.as_ptr() as usize + 1) };
    ret(r).map(|_| ())
}

/// `mq_timedsend(fd, msg, prio, abs_timeout)` (`mq_timedsend_time64` on 32-bit ARM); a
/// `None` timeout blocks (or fails with `EAGAIN` in nonblocking mode).
pub fn mq_timedsend(
    fd: rustix::fd::BorrowedFd<'_>,
    msg: &[u8],
    prio: u32,
    abs: Option<&KernelTimespec>,
) -> Result<(), Errno> {
    use rustix::fd::AsRawFd;
    // SAFETY: `msg` is a live buffer of `msg.len()` bytes; `abs` is null or a live
    // `__kernel_timespec`.
    let r = unsafe {
        syscalls::raw::syscall5(
            NR_MQ_TIMEDSEND as usize,
            fd.as_raw_fd() as usize,
            msg.as_ptr() as usize,
            msg.len(),
            prio as usize,
            abs.map_or(0, |t| t as *const KernelTimespec as usize),
        )
    };
    ret(r).map(|_| ())
}

/// `mq_timedreceive(fd, buf, &prio, abs_timeout)` (`_time64` on 32-bit ARM): the message's
/// length and priority.
pub fn mq_timedreceive(
    fd: rustix::fd::BorrowedFd<'_>,
    buf: &mut [u8],
    abs: Option<&KernelTimespec>,
) -> Result<(usize, u32), Errno> {
    use rustix::fd::AsRawFd;
    let mut prio: core::ffi::c_uint = 0;
    // SAFETY: `buf` is a live writable buffer of `buf.len()` bytes, `prio` a live
    // `unsigned int`, `abs` null or a live `__kernel_timespec`.
    let r = unsafe {
        syscalls::raw::syscall5(
            NR_MQ_TIMEDRECEIVE as usize,
            fd.as_raw_fd() as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            &mut prio as *mut core::ffi::c_uint as usize,
            abs.map_or(0, |t| t as *const KernelTimespec as usize),
        )
    };
    ret(r).map(|n| (n, prio))
}

/// `mq_getsetattr(fd, NULL, &attr)`: the queue's attributes.
pub fn mq_getattr(fd: rustix::fd::BorrowedFd<'_>) -> Result<MqAttr, Errno> {
    use rustix::fd::AsRawFd;
    let mut attr = MqAttr::default();
    // SAFETY: the new-attributes pointer is null (no change); `attr` is a live `mq_attr`.
    let r = unsafe {
        syscalls::raw::syscall3(
            linux_raw_sys::general::__NR_mq_getsetattr as usize,
            fd.as_raw_fd() as usize,
            0,
            &mut attr as *mut MqAttr as usize,
        )
    };
    ret(r).map(|_| attr)
}

/// `IPC_NOWAIT` (uapi `ipc.h`).
pub const IPC_NOWAIT: usize = 0o4000;

/// `msgget(key, IPC_CREAT | IPC_EXCL | mode)`: a new SysV message queue.
pub fn msgget_create(key: i32, mode: u32) -> Result<i32, Errno> {
    // SAFETY: msgget takes only integers.
    let r = unsafe {
        syscalls::raw::syscall2(
            linux_raw_sys::general::__NR_msgget as usize,
            key as usize,
            IPC_CREAT | IPC_EXCL | mode as usize,
        )
    };
    ret(r).map(|id| id as i32)
}

/// `msgget(key, 0)`: the id of an existing queue.
pub fn msgget_open(key: i32) -> Result<i32, Errno> {
    // SAFETY: msgget takes only integers.
    let r = unsafe { syscalls::raw::syscall2(linux_raw_sys::general::__NR_msgget as usize, key as usize, 0) };
    ret(r).map(|id| id as i32)
}

/// `msgsnd(id, msgp, text_len, flags)`: `msgp` is a `struct msgbuf` (a `long` type, then
/// `text_len` bytes).
pub fn msgsnd(id: i32, msgp: &[u8], text_len: usize, flags: usize) -> Result<(), Errno> {
    if msgp.len() < core::mem::size_of::<core::ffi::c_long>() + text_len {
        return Err(Errno::INVAL);
    }
    // SAFETY: `msgp` is a live buffer holding the type word and `text_len` bytes (checked).
    let r = unsafe {
        syscalls::raw::syscall4(
            linux_raw_sys::general::__NR_msgsnd as usize,
            id as usize,
            msgp.as_ptr() as usize,
            text_len,
            flags,
        )
    };
    ret(r).map(|_| ())
}

/// `msgrcv(id, msgp, max_text, msgtyp, flags)`: the text length; the type is in the first
/// `long` of `msgp`.
pub fn msgrcv(id: i32, msgp: &mut [u8], msgtyp: isize, flags: usize) -> Result<usize, Errno> {
    let max_text = msgp.len().checked_sub(core::mem::size_of::<core::ffi::c_long>()).ok_or(Errno::INVAL)?;
    // SAFETY: `msgp` is a live writable buffer of the type word plus `max_text` bytes.
    let r = unsafe {
        syscalls::raw::syscall5(
            linux_raw_sys::general::__NR_msgrcv as usize,
            id as usize,
            msgp.as_mut_ptr() as usize,
            max_text,
            msgtyp as usize,
            flags,
        )
    };
    ret(r)
}

/// `msgctl(id, IPC_RMID, NULL)`.
pub fn msg_remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer, which is null.
    let r = unsafe {
        syscalls::raw::syscall3(linux_raw_sys::general::__NR_msgctl as usize, id as usize, IPC_RMID | IPC_64, 0)
    };
    ret(r).map(|_| ())
}

/// Byte offsets of `msg_qnum` and `msg_qbytes` in `struct msqid64_ds`: after
/// `struct ipc64_perm` (48 bytes on 64-bit targets, 36 on 32-bit ARM), three times and
/// `msg_cbytes` (each time one `long` on 64-bit, two 32-bit words on 32-bit ARM).
pub const MSG_QNUM_OFFSET: usize = if cfg!(target_pointer_width = "64") { 80 } else { 64 };
/// See [`MSG_QNUM_OFFSET`].
pub const MSG_QBYTES_OFFSET: usize = if cfg!(target_pointer_width = "64") { 88 } else { 68 };

/// `msgctl(id, IPC_STAT)`: `(messages queued, byte limit)`.
pub fn msg_stat(id: i32) -> Result<(usize, usize), Errno> {
    let mut buf = [0u64; 32];
    // SAFETY: the kernel writes one `struct msqid64_ds` (at most 120 bytes) into `buf`.
    let r = unsafe {
        syscalls::raw::syscall3(
            linux_raw_sys::general::__NR_msgctl as usize,
            id as usize,
            IPC_STAT | IPC_64,
            buf.as_mut_ptr() as usize,
        )
    };
    ret(r)?;
    let mut raw = [0u8; 256];
    for (chunk, w) in raw.chunks_exact_mut(8).zip(buf) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    let word = |off: usize| -> usize {
        if cfg!(target_pointer_width = "64") {
            u64::from_ne_bytes(raw[off..off + 8].try_into().unwrap_or([0; 8])) as usize
        } else {
            u32::from_ne_bytes(raw[off..off + 4].try_into().unwrap_or([0; 4])) as usize
        }
    };
    Ok((word(MSG_QNUM_OFFSET), word(MSG_QBYTES_OFFSET)))
}

/// `struct signalfd_siginfo` (uapi `signalfd.h`): 128 bytes, the same on every
/// architecture.
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SignalfdSiginfo {
    /// Signal number.
    pub ssi_signo: u32,
    /// Error number (unused).
    pub ssi_errno: i32,
    /// Signal code (`SI_USER`, `SI_QUEUE`, ...).
    pub ssi_code: i32,
    /// Sender's pid.
    pub ssi_pid: u32,
    /// Sender's real uid.
    pub ssi_uid: u32,
    /// File descriptor (`SIGIO`).
    pub ssi_fd: i32,
    /// Kernel timer id.
    pub ssi_tid: u32,
    /// Band event (`SIGIO`).
    pub ssi_band: u32,
    /// Timer overrun count.
    pub ssi_overrun: u32,
    /// Trap number.
    pub ssi_trapno: u32,
    /// Exit status or signal (`SIGCHLD`).
    pub ssi_status: i32,
    /// The integer sent with `sigqueue`.
    pub ssi_int: i32,
    /// The pointer sent with `sigqueue`.
    pub ssi_ptr: u64,
    /// User CPU time (`SIGCHLD`).
    pub ssi_utime: u64,
    /// System CPU time (`SIGCHLD`).
    pub ssi_stime: u64,
    /// Faulting address.
    pub ssi_addr: u64,
    /// Address LSB.
    pub ssi_addr_lsb: u16,
    pad2: u16,
    /// System call number (`SIGSYS`).
    pub ssi_syscall: i32,
    /// System call address.
    pub ssi_call_addr: u64,
    /// Architecture.
    pub ssi_arch: u32,
    pad: [u8; 28],
}

const _: () = assert!(core::mem::size_of::<SignalfdSiginfo>() == 128);
const _: () = assert!(core::mem::offset_of!(SignalfdSiginfo, ssi_int) == 44);
const _: () = assert!(core::mem::offset_of!(SignalfdSiginfo, ssi_ptr) == 48);
const _: () = assert!(core::mem::offset_of!(SignalfdSiginfo, ssi_arch) == 96);

impl SignalfdSiginfo {
    /// From the 128 bytes `read(2)` returned.
    pub fn from_bytes(b: &[u8; 128]) -> SignalfdSiginfo {
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(w)
        };
        SignalfdSiginfo {
            ssi_signo: u32_at(0),
            ssi_errno: u32_at(4) as i32,
            ssi_code: u32_at(8) as i32,
            ssi_pid: u32_at(12),
            ssi_uid: u32_at(16),
            ssi_fd: u32_at(20) as i32,
            ssi_tid: u32_at(24),
            ssi_band: u32_at(28),
            ssi_overrun: u32_at(32),
            ssi_trapno: u32_at(36),
            ssi_status: u32_at(40) as i32,
            ssi_int: u32_at(44) as i32,
            ssi_ptr: u64_at(48),
            ssi_utime: u64_at(56),
            ssi_stime: u64_at(64),
            ssi_addr: u64_at(72),
            ssi_addr_lsb: u16::from_ne_bytes([b[80], b[81]]),
            pad2: 0,
            ssi_syscall: u32_at(84) as i32,
            ssi_call_addr: u64_at(88),
            ssi_arch: u32_at(96),
            pad: [0; 28],
        }
    }
}

/// `signalfd4(-1, &mask, 8, flags)`: a new signalfd for `mask`.
pub fn signalfd4(mask: KernelSigset, flags: u32) -> Result<OwnedFdRaw, Errno> {
    // SAFETY: a pointer to a live 8-byte sigset and its size.
    let r = unsafe {
        syscalls::raw::syscall4(
            linux_raw_sys::general::__NR_signalfd4 as usize,
            -1isize as usize,
            &mask as *const KernelSigset as usize,
            core::mem::size_of::<KernelSigset>(),
            flags as usize,
        )
    };
    ret(r).map(|fd| OwnedFdRaw(fd as i32))
}

/// Byte offsets of `si_pid`, `si_uid` and `si_value` in `siginfo_t` (the `_rt` member of
/// its union, which starts after three `int`s, aligned to 8 on 64-bit targets).
const SI_PID: usize = if cfg!(target_pointer_width = "64") { 16 } else { 12 };
const SI_UID: usize = SI_PID + 4;
const SI_VALUE: usize = if cfg!(target_pointer_width = "64") { 24 } else { 20 };

/// `rt_sigqueueinfo(pid, sig, &info)` with `si_code = SI_QUEUE`, this process's pid and
/// uid, and `value` as `si_value.sival_int`: what `sigqueue(3)` does.
pub fn rt_sigqueueinfo(pid: i32, sig: u32, value: i32) -> Result<(), Errno> {
    let mut info = [0u8; 128];
    info[0..4].copy_from_slice(&(sig as i32).to_ne_bytes());
    info[8..12].copy_from_slice(&linux_raw_sys::general::SI_QUEUE.to_ne_bytes());
    info[SI_PID..SI_PID + 4].copy_from_slice(&rustix::process::getpid().as_raw_nonzero().get().to_ne_bytes());
    info[SI_UID..SI_UID + 4].copy_from_slice(&rustix::process::getuid().as_raw().to_ne_bytes());
    info[SI_VALUE..SI_VALUE + 4].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: a pointer to a live 128-byte `siginfo_t`.
    let r = unsafe {
        syscalls::raw::syscall3(
            linux_raw_sys::general::__NR_rt_sigqueueinfo as usize,
            pid as usize,
            sig as usize,
            info.as_ptr() as usize,
        )
    };
    ret(r).map(|_| ())
}

/// `tgkill(tgid, tid, sig)`: a signal to one thread of a process.
pub fn tgkill(tgid: i32, tid: i32, sig: u32) -> Result<(), Errno> {
    // SAFETY: tgkill takes only integers.
    let r = unsafe {
        syscalls::raw::syscall3(linux_raw_sys::general::__NR_tgkill as usize, tgid as usize, tid as usize, sig as usize)
    };
    ret(r).map(|_| ())
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: any signal number, the real-time ones too
/// (rustix's `Signal` type takes only the named ones without `unsafe`).
pub fn pidfd_send_signal(pidfd: rustix::fd::BorrowedFd<'_>, sig: u32) -> Result<(), Errno> {
    use rustix::fd::AsRawFd;
    // SAFETY: an open fd (borrowed for the call), an integer and a NULL `siginfo_t`.
    let r = unsafe {
        syscalls::raw::syscall4(
            linux_raw_sys::general::__NR_pidfd_send_signal as usize,
            pidfd.as_raw_fd() as usize,
            sig as usize,
            0,
            0,
        )
    };
    ret(r).map(|_| ())
}

/// `CMSG_ALIGN`: control messages are aligned to the kernel's `size_t`.
const fn cmsg_align(len: usize) -> usize {
    let a = core::mem::size_of::<usize>();
    (len + a - 1) & !(a - 1)
}

/// `CMSG_SPACE(len)`: a control message header plus `len` bytes of data, aligned.
pub const fn cmsg_space(len: usize) -> usize {
    cmsg_align(core::mem::size_of::<linux_raw_sys::net::cmsghdr>()) + cmsg_align(len)
}

const _: () = assert!(core::mem::size_of::<linux_raw_sys::net::ucred>() == 12);

/// The credentials of `SO_PEERCRED` or `SCM_CREDENTIALS`, as the kernel gives them: a pid
/// of 0 means the kernel could not name the process (a peer in a pid namespace this one
/// cannot see, or a message queued before credentials were asked for). rustix's `UCred`
/// cannot hold a pid of 0, so these are read here.
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCreds {
    /// Process id, 0 if unknown.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`: the peer's credentials as of `connect`.
pub fn peercred(fd: rustix::fd::BorrowedFd<'_>) -> Result<RawCreds, Errno> {
    use rustix::fd::AsRawFd;
    let mut cred = linux_raw_sys::net::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = core::mem::size_of::<linux_raw_sys::net::ucred>() as u32;
    // SAFETY: the kernel writes at most `len` bytes into `cred` (a `struct ucred`) and the
    // new length into `len`; both live for the call.
    let r = unsafe {
        syscalls::raw::syscall5(
            linux_raw_sys::general::__NR_getsockopt as usize,
            fd.as_raw_fd() as usize,
            linux_raw_sys::net::SOL_SOCKET as usize,
            linux_raw_sys::net::SO_PEERCRED as usize,
            &mut cred as *mut linux_raw_sys::net::ucred as usize,
            &mut len as *mut u32 as usize,
        )
    };
    ret(r)?;
    Ok(RawCreds { pid: cred.pid, uid: cred.uid, gid: cred.gid })
}

/// One message from [`recvmsg`].
///
/// `Send` and `Sync`: plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMsg {
    /// The message's length before truncation (`MSG_TRUNC`): more than the buffer means
    /// the rest was discarded.
    pub len: usize,
    /// `msg_flags` (`MSG_TRUNC`, `MSG_CTRUNC`, ...).
    pub flags: u32,
    /// Bytes of `control` the kernel filled.
    pub control_len: usize,
}

/// `recvmsg(fd, {buf}, control, MSG_TRUNC | MSG_CMSG_CLOEXEC)`: one message into `buf`, its
/// control messages into `control` (read them with [`ControlMessages`]; received fds are
/// `O_CLOEXEC` and must be taken over, see [`ControlMessages`]).
pub fn recvmsg(fd: rustix::fd::BorrowedFd<'_>, buf: &mut [u8], control: &mut [u64]) -> Result<RecvMsg, Errno> {
    use linux_raw_sys::net::{MSG_CMSG_CLOEXEC, MSG_TRUNC, msghdr};
    use rustix::fd::AsRawFd;
    // `struct iovec` (uapi `uio.h`): a pointer and a `size_t` (linux-raw-sys's `net`
    // module declares it opaque).
    #[repr(C)]
    struct IoVec {
        base: *mut u8,
        len: usize,
    }
    let mut iov = IoVec { base: buf.as_mut_ptr(), len: buf.len() };
    let mut msg = msghdr {
        msg_name: core::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: (&mut iov as *mut IoVec).cast(),
        msg_iovlen: 1,
        msg_control: control.as_mut_ptr().cast(),
        msg_controllen: core::mem::size_of_val(control),
        msg_flags: 0,
    };
    // SAFETY: `msg` points at one iovec over `buf` and at `control`, both live and writable
    // for their stated lengths; no name is requested.
    let r = unsafe {
        syscalls::raw::syscall3(
            linux_raw_sys::general::__NR_recvmsg as usize,
            fd.as_raw_fd() as usize,
            &mut msg as *mut msghdr as usize,
            (MSG_TRUNC | MSG_CMSG_CLOEXEC) as usize,
        )
    };
    let len = ret(r)?;
    Ok(RecvMsg {
        len,
        flags: msg.msg_flags as u32,
        control_len: msg.msg_controllen.min(core::mem::size_of_val(control)),
    })
}

/// One control message: received fds (already owned: dropping them closes them) or
/// credentials.
///
/// `Send` and `Sync`: plain data or an owned fd.
#[derive(Debug)]
pub enum ControlMessage {
    /// `SCM_RIGHTS`: one received descriptor.
    Fd(rustix::fd::OwnedFd),
    /// `SCM_CREDENTIALS`.
    Creds(RawCreds),
}

/// The control messages of a [`recvmsg`], in order. Every received fd is turned into an
/// `OwnedFd` as it is read, so dropping the iterator part-way (or the items) closes the
/// rest: nothing leaks. Create it once per `recvmsg` (it takes ownership of the fds).
///
/// `Send` and `Sync`: borrowed bytes; the fds it owns are closed by whichever thread drops it.
pub struct ControlMessages<'a> {
    bytes: &'a [u8],
    off: usize,
    fds: &'a [u8],
}

impl core::fmt::Debug for ControlMessages<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ControlMessages")
            .field("len", &self.bytes.len())
            .field("off", &self.off)
            .field("pending_fds", &(self.fds.len() / 4))
            .finish()
    }
}

impl<'a> ControlMessages<'a> {
    /// Reads `control[..len]` as filled by [`recvmsg`] (crate-only: it takes ownership of
    /// the descriptor numbers it finds, which only a real `recvmsg` makes ours).
    pub(crate) fn new(control: &'a [u64], len: usize) -> ControlMessages<'a> {
        // SAFETY: any initialized `u64`s are valid bytes; the slice covers the same memory
        // and lifetime.
        let bytes =
            unsafe { core::slice::from_raw_parts(control.as_ptr().cast::<u8>(), core::mem::size_of_val(control)) };
        ControlMessages { bytes: &bytes[..len.min(bytes.len())], off: 0, fds: &[] }
    }
}

impl Iterator for ControlMessages<'_> {
    type Item = ControlMessage;

    fn next(&mut self) -> Option<ControlMessage> {
        use linux_raw_sys::net::{SCM_CREDENTIALS, SCM_RIGHTS, SOL_SOCKET};
        const W: usize = core::mem::size_of::<usize>();
        loop {
            if let Some((fd, rest)) = self.fds.split_first_chunk::<4>() {
                self.fds = rest;
                // SAFETY: the kernel installed this descriptor in our table for this
                // message (`SCM_RIGHTS`) and nothing else owns it; each is read once.
                let fd =
                    unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(i32::from_ne_bytes(*fd)) };
                return Some(ControlMessage::Fd(fd));
            }
            let hdr = cmsg_align(core::mem::size_of::<linux_raw_sys::net::cmsghdr>());
            let rest = self.bytes.get(self.off..)?;
            if rest.len() < hdr {
                return None;
            }
            let len = usize::from_ne_bytes(rest[..W].try_into().ok()?);
            let level = i32::from_ne_bytes(rest[W..W + 4].try_into().ok()?);
            let kind = i32::from_ne_bytes(rest[W + 4..W + 8].try_into().ok()?);
            if len < hdr || len > rest.len() {
                return None;
            }
            let data = &rest[hdr..len];
            self.off += cmsg_align(len);
            match (level as u32, kind as u32) {
                (SOL_SOCKET, SCM_RIGHTS) => self.fds = data,
                (SOL_SOCKET, SCM_CREDENTIALS) if data.len() >= 12 => {
                    let word = |i: usize| u32::from_ne_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
                    return Some(ControlMessage::Creds(RawCreds { pid: word(0), uid: word(4), gid: word(8) }));
                }
                _ => {}
            }
        }
    }
}

impl Drop for ControlMessages<'_> {
    fn drop(&mut self) {
        // Close every fd not handed out yet.
        for _ in self.by_ref() {}
    }
}

/// `riscv_hwprobe` key of the base-ISA extension bits (uapi `asm/hwprobe.h`).
#[cfg(target_arch = "riscv64")]
pub const RISCV_HWPROBE_KEY_IMA_EXT_0: i64 = 4;
/// `RISCV_HWPROBE_KEY_IMA_EXT_0` bit: the CPU has Zbc (reported by Linux 6.8 and later).
#[cfg(target_arch = "riscv64")]
pub const RISCV_HWPROBE_EXT_ZBC: u64 = 1 << 7;

/// `riscv_hwprobe(pairs, 1, 0, NULL, 0)` for one key: the value every CPU of the system
/// shares. `ENOSYS` before Linux 6.4 (and under qemu-user before 8.2); a key the kernel
/// does not know comes back as key `-1`, returned here as `Ok(None)`.
#[cfg(target_arch = "riscv64")]
pub fn riscv_hwprobe(key: i64) -> Result<Option<u64>, Errno> {
    use linux_raw_sys::general::__NR_riscv_hwprobe;
    // `struct riscv_hwprobe { __s64 key; __u64 value; }`.
    let mut pair = [key as u64, 0u64];
    // SAFETY: `pair` is one writable `struct riscv_hwprobe` (16 bytes, 8-aligned) that
    // outlives the call; a zero cpusetsize with a null cpus pointer means "all CPUs".
    ret(unsafe { syscalls::raw::syscall5(__NR_riscv_hwprobe as usize, pair.as_mut_ptr() as usize, 1, 0, 0, 0) })?;
    Ok(if pair[0] as i64 == -1 { None } else { Some(pair[1]) })
}
