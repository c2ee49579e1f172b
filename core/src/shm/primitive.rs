//! The atomics the shared-memory protocols use, swapped for loom's under `--cfg loom` so the
//! same code is model-checked (crossbeam's and rtrb's approach).

#[cfg(all(not(loom), target_has_atomic = "64"))]
pub use core::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering, fence};

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// One step of a bounded spin: a CPU hint normally; under loom a yield, or loom explores a
/// single interleaving of a spinning consumer and misses bugs.
#[inline]
pub fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// A fresh `AtomicU32` (loom's atomics cannot be built in a `const`).
pub(crate) fn u32_zero() -> AtomicU32 {
    AtomicU32::new(0)
}
