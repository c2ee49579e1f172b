//! Where a connection's buffers live: the receive buffer (the largest message it can take
//! in, whole), the build buffer (the largest message it can send), and the queue (messages
//! that arrive while a call waits for its reply, and replies to calls in flight, kept for
//! the next receive). The caller chooses, and pays for, all three:
//!
//! ```text
//! Inline<N, Q>  N + N + Q bytes inside the connection (const generics, Q = N unless
//!               given; box it, or keep it in a static, on small stacks).
//!               Connection<N, Q> is ConnectionWith<Inline<N, Q>>.
//! Borrowed<'a>  the caller's &mut [u8] (a static array, a Vec made once, a mapping):
//!               any sizes from 256 bytes to the specification's 128 MiB; the queue is
//!               empty unless given (Borrowed::with_queue).
//! Heap          Vec<u8>s (feature std), made once at connect time (the queue as large as
//!               the receive buffer unless set); the receive one may grow, up to a limit
//!               the caller sets, when a larger message arrives (for tools such as
//!               emberctl, not for the no-heap paths).
//! ```
//!
//! A queued message takes its length rounded up to 8, plus 16 bytes.
//!
//! Only the receive buffer's size limits what can be received; the build buffer's
//! limits what can be sent. Sizes above 128 MiB are accepted and used up to 128 MiB (no
//! valid message is larger). A buffer below 256 bytes is refused at connect time
//! ([`crate::Error::BufferTooSmall`]).
//!
//! ```no_run
//! # fn main() -> Result<(), ember_linux::Error> {
//! use core::time::Duration;
//! use ember_linux::dbus::{Borrowed, ConnectionWith};
//!
//! let (mut rx, mut tx) = (vec![0u8; 1 << 20], vec![0u8; 16 << 10]);
//! let bus = ConnectionWith::connect_with(Borrowed::new(&mut rx, &mut tx), "unix:path=/run/dbus/system_bus_socket", Duration::from_secs(2))?;
//! assert_eq!(bus.receive_capacity(), 1 << 20);
//! # Ok(())
//! # }
//! ```

mod sealed {
    pub trait Sealed {}
}

/// A connection's receive and build buffers: [`Inline`], [`Borrowed`] or [`Heap`].
/// Sealed: the connection relies on the slices staying put between calls.
pub trait Buffers: sealed::Sealed {
    /// The receive buffer.
    fn rx(&self) -> &[u8];
    /// The receive buffer, to fill.
    fn rx_mut(&mut self) -> &mut [u8];
    /// The build buffer.
    fn tx(&self) -> &[u8];
    /// The build buffer, to build into.
    fn tx_mut(&mut self) -> &mut [u8];
    /// The queue.
    fn queue(&self) -> &[u8];
    /// All three at once: the receive buffer, the build buffer and the queue.
    fn split(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]);
    /// Makes the receive buffer at least `needed` bytes long, keeping its contents, if
    /// this kind of buffer can; returns whether it is now that long.
    fn grow_rx(&mut self, needed: usize) -> bool {
        self.rx().len() >= needed
    }
    /// The most the receive buffer can grow to (its size, if it cannot).
    fn rx_limit(&self) -> usize {
        self.rx().len()
    }
}

/// Two `N`-byte arrays and a `Q`-byte queue held inline (what
/// [`super::Connection`]`<N, Q>` uses).
///
/// `Send` and `Sync`: plain bytes.
pub struct Inline<const N: usize, const Q: usize = N> {
    rx: [u8; N],
    tx: [u8; N],
    queue: [u8; Q],
}

impl<const N: usize, const Q: usize> Inline<N, Q> {
    /// Zeroed arrays (`2 × N + Q` bytes, on the stack until moved).
    pub const fn new() -> Inline<N, Q> {
        Inline { rx: [0; N], tx: [0; N], queue: [0; Q] }
    }
}

impl<const N: usize, const Q: usize> Default for Inline<N, Q> {
    fn default() -> Self {
        Inline::new()
    }
}

impl<const N: usize, const Q: usize> core::fmt::Debug for Inline<N, Q> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inline").field("size", &N).field("queue", &Q).finish()
    }
}

impl<const N: usize, const Q: usize> sealed::Sealed for Inline<N, Q> {}
impl<const N: usize, const Q: usize> Buffers for Inline<N, Q> {
    fn rx(&self) -> &[u8] {
        &self.rx
    }
    fn rx_mut(&mut self) -> &mut [u8] {
        &mut self.rx
    }
    fn tx(&self) -> &[u8] {
        &self.tx
    }
    fn tx_mut(&mut self) -> &mut [u8] {
        &mut self.tx
    }
    fn queue(&self) -> &[u8] {
        &self.queue
    }
    fn split(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.rx, &mut self.tx, &mut self.queue)
    }
}

/// The caller's two buffers, borrowed for the connection's life.
///
/// `Send` and `Sync`: two exclusive borrows.
pub struct Borrowed<'a> {
    rx: &'a mut [u8],
    tx: &'a mut [u8],
    queue: &'a mut [u8],
}

impl<'a> Borrowed<'a> {
    /// `rx` receives (its length is the largest message received), `tx` builds (the
    /// largest message sent); no queue (a message that arrives while a call waits is
    /// dropped and counted: see [`super::ConnectionWith::overflows`]).
    pub fn new(rx: &'a mut [u8], tx: &'a mut [u8]) -> Borrowed<'a> {
        Borrowed { rx, tx, queue: &mut [] }
    }

    /// [`Borrowed::new`] with `queue` for the messages that arrive while a call waits.
    pub fn with_queue(rx: &'a mut [u8], tx: &'a mut [u8], queue: &'a mut [u8]) -> Borrowed<'a> {
        Borrowed { rx, tx, queue }
    }
}

impl core::fmt::Debug for Borrowed<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Borrowed")
            .field("rx", &self.rx.len())
            .field("tx", &self.tx.len())
            .field("queue", &self.queue.len())
            .finish()
    }
}

impl sealed::Sealed for Borrowed<'_> {}
impl Buffers for Borrowed<'_> {
    fn rx(&self) -> &[u8] {
        self.rx
    }
    fn rx_mut(&mut self) -> &mut [u8] {
        self.rx
    }
    fn tx(&self) -> &[u8] {
        self.tx
    }
    fn tx_mut(&mut self) -> &mut [u8] {
        self.tx
    }
    fn queue(&self) -> &[u8] {
        self.queue
    }
    fn split(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (self.rx, self.tx, self.queue)
    }
}

/// Two buffers on the heap, allocated once; the receive buffer grows (once per larger
/// message, never shrinking) up to `rx_max` bytes when a message needs it.
///
/// `Send` and `Sync`: owned bytes.
#[cfg(feature = "std")]
pub struct Heap {
    rx: std::vec::Vec<u8>,
    tx: std::vec::Vec<u8>,
    queue: std::vec::Vec<u8>,
    rx_max: usize,
}

#[cfg(feature = "std")]
impl Heap {
    /// `rx` bytes to receive into, `tx` to build in, a queue of `rx` bytes; no growth.
    pub fn new(rx: usize, tx: usize) -> Heap {
        Heap::growing(rx, rx, tx)
    }

    /// `rx` bytes to receive into, grown up to `rx_max` (at most 128 MiB is ever used) as
    /// messages need; `tx` to build in; a queue of `rx` bytes.
    pub fn growing(rx: usize, rx_max: usize, tx: usize) -> Heap {
        Heap { rx: std::vec![0; rx], tx: std::vec![0; tx], queue: std::vec![0; rx], rx_max: rx_max.max(rx) }
    }

    /// The same with a queue of `bytes` (0: none).
    pub fn with_queue(mut self, bytes: usize) -> Heap {
        self.queue = std::vec![0; bytes];
        self
    }
}

#[cfg(feature = "std")]
impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("rx", &self.rx.len())
            .field("rx_max", &self.rx_max)
            .field("tx", &self.tx.len())
            .field("queue", &self.queue.len())
            .finish()
    }
}

#[cfg(feature = "std")]
impl sealed::Sealed for Heap {}
#[cfg(feature = "std")]
impl Buffers for Heap {
    fn rx(&self) -> &[u8] {
        &self.rx
    }
    fn rx_mut(&mut self) -> &mut [u8] {
        &mut self.rx
    }
    fn tx(&self) -> &[u8] {
        &self.tx
    }
    fn tx_mut(&mut self) -> &mut [u8] {
        &mut self.tx
    }
    fn queue(&self) -> &[u8] {
        &self.queue
    }
    fn split(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        (&mut self.rx, &mut self.tx, &mut self.queue)
    }
    fn rx_limit(&self) -> usize {
        self.rx_max
    }
    fn grow_rx(&mut self, needed: usize) -> bool {
        if needed > self.rx_max {
            return false;
        }
        if needed > self.rx.len() {
            self.rx.resize(needed, 0);
        }
        true
    }
}
