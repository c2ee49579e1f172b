//! SysV message queues (`msgget`, `msgsnd`, `msgrcv`, `msgctl`; `sysvipc(7)`), because much
//! existing embedded C code still speaks them. One frame per message.
//!
//! - Created by key (or `IPC_PRIVATE`) with mode `0600` and `IPC_EXCL`; visible in
//!   `ipcs -q`; removed by the owner on drop (or [`SysvQueue::persist`] to keep it) and by
//!   `ipcrm -q`, after which every call reports [`Error::PeerGone`].
//! - **Message types as priorities**: a frame is sent with a type from 1 (most urgent) to
//!   `i32::MAX`; [`SysvQueue::recv_frame`] takes the lowest type first (`msgrcv` with a
//!   negative type), [`SysvQueue::recv_type`] only one type.
//! - No file descriptor: a SysV queue cannot go into `poll`/`epoll`, and has no timed
//!   receive; [`SysvQueue::set_nonblocking`] selects `IPC_NOWAIT`.
//! - Limits: a message is at most `/proc/sys/kernel/msgmax` bytes (8192 by default) and a
//!   queue holds `msgmnb` bytes (16384); here also at most `N − 8` bytes per frame, `N` being
//!   the queue's buffer (a `struct msgbuf`: the type `long`, then the frame).

use core::time::Duration;

use rustix::io::Errno;

use crate::cancel::Canceler;
use crate::error::{Error, Result};
use crate::sys;
use crate::transport::{
    FrameReceiver, FrameSender, Integrity, TimedReceiver, TimedSender, check_outgoing, check_receiver_integrity,
    check_sender_integrity,
};

const LONG: usize = core::mem::size_of::<core::ffi::c_long>();

/// The message buffer, aligned for its leading `long`.
#[repr(C, align(8))]
struct MsgBuf<const N: usize>([u8; N]);

/// The default message buffer: the type (a C `long`: 8 bytes on 64-bit boards, 4 on
/// 32-bit ones) and a frame of `msgmax` = 8192 bytes.
pub const DEFAULT_BUF: usize = LONG + 8192;

/// A SysV message queue with an `N`-byte message buffer (default [`DEFAULT_BUF`]: the type
/// and a frame of `msgmax` = 8192 bytes, on every architecture).
///
/// `Send` and `Sync`: a queue id and an inline buffer; I/O takes `&mut self`.
pub struct SysvQueue<const N: usize = DEFAULT_BUF> {
    id: i32,
    owner: bool,
    nowait: bool,
    integrity: Integrity,
    require_checked: bool,
    buf: MsgBuf<N>,
}

impl<const N: usize> core::fmt::Debug for SysvQueue<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SysvQueue")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("nowait", &self.nowait)
            .field("integrity", &self.integrity)
            .field("require_checked", &self.require_checked)
            .field("capacity", &N)
            .finish_non_exhaustive()
    }
}

fn map(e: Errno) -> Error {
    match e {
        // The queue was removed (ipcrm, the owner): `EIDRM` for a waiter, `EINVAL` after.
        Errno::IDRM | Errno::INVAL => Error::PeerGone,
        Errno::NOMSG => Error::WouldBlock,
        e => e.into(),
    }
}

impl<const N: usize> SysvQueue<N> {
    /// The [`FrameSender::integrity`] a queue has when opened: the kernel copies messages
    /// intact, so payloads are not checked.
    pub const DEFAULT_INTEGRITY: Integrity = Integrity::Unchecked;

    fn new(id: i32, owner: bool) -> SysvQueue<N> {
        const { assert!(N > LONG + ember_core::HEADER_LEN, "SysvQueue buffer too small for a frame") };
        SysvQueue {
            id,
            owner,
            nowait: false,
            integrity: Self::DEFAULT_INTEGRITY,
            require_checked: false,
            buf: MsgBuf([0; N]),
        }
    }

    /// Creates a queue (`msgget(key, IPC_CREAT | IPC_EXCL | 0600)`; `key` may be
    /// [`sys::IPC_PRIVATE`]). The owner removes it on drop.
    pub fn create(key: i32) -> Result<SysvQueue<N>> {
        Ok(SysvQueue::new(sys::msgget_create(key, 0o600).map_err(crate::limits::msgget_create)?, true))
    }

    /// Opens the queue with `key` (`msgget(key, 0)`).
    pub fn open(key: i32) -> Result<SysvQueue<N>> {
        Ok(SysvQueue::new(sys::msgget_open(key)?, false))
    }

    /// Uses a queue by id (e.g. an `IPC_PRIVATE` one whose id was handed over).
    pub fn from_id(id: i32) -> SysvQueue<N> {
        SysvQueue::new(id, false)
    }

    /// The queue's id (as `ipcs -q` shows it).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Keeps the queue after this owner drops it.
    pub fn persist(&mut self) {
        self.owner = false;
    }

    /// Removes the queue now (`msgctl(IPC_RMID)`); waiting receivers get
    /// [`Error::PeerGone`].
    pub fn remove(&mut self) -> Result<()> {
        self.owner = false;
        sys::msg_remove(self.id).map_err(map)
    }

    /// `IPC_NOWAIT` on (nonblocking: [`Error::WouldBlock`]) or off.
    pub fn set_nonblocking(&mut self, on: bool) {
        self.nowait = on;
    }

    /// Messages queued now and the queue's byte limit (`msgctl(IPC_STAT)`).
    pub fn stat(&self) -> Result<(usize, usize)> {
        sys::msg_stat(self.id).map_err(map)
    }

    fn flags(&self) -> usize {
        if self.nowait { sys::IPC_NOWAIT } else { 0 }
    }

    /// Sends one frame as a message of type `mtype` (1 = most urgent).
    pub fn send_type(&mut self, frame: &[u8], mtype: i32) -> Result<()> {
        self.send_type_flags(frame, mtype, self.flags())
    }

    fn send_type_flags(&mut self, frame: &[u8], mtype: i32, flags: usize) -> Result<()> {
        check_outgoing(frame, N - LONG)?;
        check_sender_integrity(frame, self.integrity)?;
        if mtype < 1 {
            return Err(Error::Os(Errno::INVAL));
        }
        self.buf.0[..LONG].copy_from_slice(&(mtype as core::ffi::c_long).to_ne_bytes());
        self.buf.0[LONG..LONG + frame.len()].copy_from_slice(frame);
        loop {
            match sys::msgsnd(self.id, &self.buf.0, frame.len(), flags) {
                Ok(()) => return Ok(()),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Err(Error::WouldBlock),
                // `EINVAL` is also a message over `msgmax`, not only a removed queue.
                Err(Errno::INVAL) => {
                    return Err(crate::limits::sysv_message_too_long(frame.len()).unwrap_or(Error::PeerGone));
                }
                Err(e) => return Err(map(e)),
            }
        }
    }

    /// Receives a message: `msgtyp` as in `msgrcv(2)` (0: the oldest; > 0: the oldest of
    /// that type; < 0: the lowest type up to |msgtyp|). Returns `(frame length, type)`.
    fn recv_raw(&mut self, buf: &mut [u8], msgtyp: isize) -> Result<(usize, i32)> {
        self.recv_raw_flags(buf, msgtyp, self.flags())
    }

    fn recv_raw_flags(&mut self, buf: &mut [u8], msgtyp: isize, flags: usize) -> Result<(usize, i32)> {
        let n = loop {
            match sys::msgrcv(self.id, &mut self.buf.0, msgtyp, flags) {
                Ok(n) => break n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(map(e)),
            }
        };
        // `c_long` is i64 on 64-bit targets (the cast narrows) and i32 on 32-bit ones.
        #[allow(clippy::unnecessary_cast)]
        let mtype = core::ffi::c_long::from_ne_bytes(self.buf.0[..LONG].try_into().unwrap_or([0; LONG])) as i32;
        let bytes = &self.buf.0[LONG..LONG + n];
        let frame = ember_core::Frame::new_checked(bytes)?;
        if frame.total_len() != n {
            return Err(Error::Codec(ember_core::Error::TrailingBytes { extra: n - frame.total_len() }));
        }
        check_receiver_integrity(bytes, self.require_checked)?;
        let dst = buf.get_mut(..n).ok_or(Error::BufferTooSmall { needed: n })?;
        dst.copy_from_slice(bytes);
        Ok((n, mtype))
    }

    /// Receives the oldest message of type `mtype` only.
    pub fn recv_type(&mut self, buf: &mut [u8], mtype: i32) -> Result<usize> {
        self.recv_raw(buf, mtype.max(1) as isize).map(|(n, _)| n)
    }

    /// Receives the most urgent message (lowest type first): `(length, type)`.
    pub fn recv_urgent(&mut self, buf: &mut [u8]) -> Result<(usize, i32)> {
        self.recv_raw(buf, -(i32::MAX as isize))
    }
}

impl<const N: usize> FrameSender for SysvQueue<N> {
    fn max_frame(&self) -> usize {
        N - LONG
    }

    /// `msgsnd` as type 1.
    fn send_frame(&mut self, frame: &[u8]) -> Result<()> {
        self.send_type(frame, 1)
    }

    fn integrity(&self) -> Integrity {
        self.integrity
    }

    fn set_integrity(&mut self, integrity: Integrity) {
        self.integrity = integrity;
    }
}

impl<const N: usize> TimedReceiver for SysvQueue<N> {
    /// SysV queues have no descriptor to wait on: `msgrcv(IPC_NOWAIT)`, retried after sleeps
    /// of 1 ms doubling to 16 ms, until the deadline (so a message is seen at most 16 ms
    /// late; with neither a timeout nor a canceler, the blocking `msgrcv`). The sleeps are
    /// `poll`s on the canceler's eventfd, so a cancel ends them at once.
    fn recv_frame_with(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
        cancel: Option<&Canceler>,
    ) -> Result<usize> {
        if timeout.is_none() && cancel.is_none() {
            return self.recv_frame(buf);
        }
        let mut backoff = crate::cancel::Backoff::new(timeout);
        loop {
            crate::cancel::check(cancel)?;
            match self.recv_raw_flags(buf, 0, sys::IPC_NOWAIT) {
                Err(Error::WouldBlock) => {}
                r => return r.map(|(n, _)| n),
            }
            backoff.sleep(cancel)?;
        }
    }
}

impl<const N: usize> TimedSender for SysvQueue<N> {
    /// `msgsnd(IPC_NOWAIT)` as type 1, retried after sleeps as for the receive (a full SysV
    /// queue has nothing to wait on either).
    fn send_frame_with(&mut self, frame: &[u8], timeout: Option<Duration>, cancel: Option<&Canceler>) -> Result<()> {
        if timeout.is_none() && cancel.is_none() {
            return self.send_frame(frame);
        }
        let mut backoff = crate::cancel::Backoff::new(timeout);
        loop {
            crate::cancel::check(cancel)?;
            match self.send_type_flags(frame, 1, sys::IPC_NOWAIT) {
                Err(Error::WouldBlock) => {}
                r => return r,
            }
            backoff.sleep(cancel)?;
        }
    }
}

impl<const N: usize> FrameReceiver for SysvQueue<N> {
    fn max_frame(&self) -> usize {
        N - LONG
    }

    fn require_checked(&mut self, on: bool) {
        self.require_checked = on;
    }

    fn requires_checked(&self) -> bool {
        self.require_checked
    }

    /// `msgrcv`, lowest type first.
    fn recv_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < N - LONG {
            return Err(Error::BufferTooSmall { needed: N - LONG });
        }
        self.recv_urgent(buf).map(|(n, _)| n)
    }
}

impl<const N: usize> Drop for SysvQueue<N> {
    fn drop(&mut self) {
        if self.owner {
            let _ = sys::msg_remove(self.id);
        }
    }
}
