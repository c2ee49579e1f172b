//! The stream accumulator: bytes in, whole checked frames out, resynchronising after
//! garbage (for a C program that reads a byte stream itself).

use core::ffi::c_int;

use ember_core::accumulator::{FeedResult, FrameAccumulator};

use crate::error::*;

/// The largest frame an accumulator reassembles (bigger ones are skipped as they pass).
pub const EMBER_ACCUMULATOR_MAX_FRAME: usize = 16384;

/// A stream accumulator (opaque).
///
/// `Send` and `Sync`: plain bytes and counters.
#[derive(Debug)]
pub struct ember_accumulator {
    acc: FrameAccumulator<EMBER_ACCUMULATOR_MAX_FRAME>,
}

/// Makes an accumulator into `*out`. Returns `EMBER_OK`, or `EMBER_EINVAL` for a NULL
/// `out`.
///
/// # Safety
///
/// `out` must point to a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_accumulator_new(out: *mut *mut ember_accumulator) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        out.set(Box::into_raw(Box::new(ember_accumulator { acc: FrameAccumulator::new() })));
        Ok(EMBER_OK)
    })
}

/// Frees an accumulator (NULL is ignored).
///
/// # Safety
///
/// `acc` must come from `ember_accumulator_new` and not be used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_accumulator_free(acc: *mut ember_accumulator) {
    if !acc.is_null() {
        // SAFETY: made by `Box::into_raw` in `ember_accumulator_new`, freed once.
        drop(unsafe { Box::from_raw(acc) });
    }
}

/// Feeds `len` bytes of `data`. Stops at the first whole frame: copies it into `out`
/// (`out_cap` bytes), sets `*frame_len`, and returns `EMBER_OK`; `*consumed` says how
/// many input bytes were used (feed the rest again). Returns `EMBER_EAGAIN` when all the
/// input was used without completing a frame (`*consumed == len`), `EMBER_EBADMSG` when a
/// frame was rejected and skipped (feed the rest again; `EMBER_EUNCHECKED` when it was
/// refused for `ember_accumulator_require_checked`), `EMBER_ENOSPC` if `out_cap` is below
/// `EMBER_ACCUMULATOR_MAX_FRAME` (nothing consumed), `EMBER_EINVAL` for a NULL or
/// misaligned pointer.
///
/// # Safety
///
/// `acc` from `ember_accumulator_new`; `data` `len` readable bytes (NULL if 0); `out`
/// `out_cap` writable bytes, not overlapping `data`; `consumed` and `frame_len` writable
/// `size_t`s.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_accumulator_feed(
    acc: *mut ember_accumulator,
    data: *const u8,
    len: usize,
    consumed: *mut usize,
    out: *mut u8,
    out_cap: usize,
    frame_len: *mut usize,
) -> c_int {
    guard(|| {
        let (consumed, frame_len) = (crate::error::out(consumed)?, crate::error::out(frame_len)?);
        consumed.set(0);
        frame_len.set(0);
        // SAFETY: the caller's contract, checked for NULL and alignment; `data` and `out`
        // must not overlap (the contract says so).
        let (acc, data, out) = unsafe { (arg_mut(acc)?, bytes(data, len)?, bytes_mut(out, out_cap)?) };
        if out.len() < EMBER_ACCUMULATOR_MAX_FRAME {
            return Err(EMBER_ENOSPC);
        }
        match acc.acc.feed(data) {
            FeedResult::Frame { frame, remaining } => {
                let b = frame.as_bytes();
                out[..b.len()].copy_from_slice(b);
                frame_len.set(b.len());
                consumed.set(len - remaining.len());
                Ok(EMBER_OK)
            }
            FeedResult::Error { error, remaining } => {
                consumed.set(len - remaining.len());
                Err(if error == ember_core::Error::UncheckedPayload { EMBER_EUNCHECKED } else { EMBER_EBADMSG })
            }
            FeedResult::Consumed => {
                consumed.set(len);
                Err(EMBER_EAGAIN)
            }
        }
    })
}

/// Makes the accumulator refuse (`on` != 0) or accept (`on` == 0, the default) frames whose
/// payload is not covered by the checksum (`EMBER_FLAG_UNCHECKED`): a refused frame is
/// skipped whole and `ember_accumulator_feed` returns `EMBER_EUNCHECKED` for it. Returns
/// `EMBER_OK`, or `EMBER_EINVAL` for a NULL handle.
///
/// # Safety
///
/// `acc` from `ember_accumulator_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_accumulator_require_checked(acc: *mut ember_accumulator, on: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let acc = unsafe { arg_mut(acc)? };
        acc.acc.set_require_checked(on != 0);
        Ok(EMBER_OK)
    })
}
