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

/// The ordering the SPSC producer publishes `head` with: `Release`. Building with
/// `--cfg ember_loom_weak` weakens it to `Relaxed`, a deliberate bug the loom tests must
/// catch (`cargo xtask test` checks that they do).
pub(crate) const PUBLISH: Ordering = if cfg!(ember_loom_weak) { Ordering::Relaxed } else { Ordering::Release };

/// Padding words of a control line: none under loom, where they would only slow the model.
pub(crate) const fn pad(words: usize) -> usize {
    if cfg!(loom) { 0 } else { words }
}
