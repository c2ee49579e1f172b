//! Frames: encode a payload of raw bytes with its kind, sequence number and flags; check
//! and decode a received frame (docs/wire-format.md).

use core::ffi::c_int;

use ember_core::frame::{Flags, Frame, FrameRepr};

use crate::error::*;

/// Bytes of a frame header.
pub const EMBER_HEADER_LEN: usize = 24;
/// The largest payload the format allows (16 MiB).
pub const EMBER_MAX_PAYLOAD_LEN: usize = 16777216;
// The header states the values as literals (cbindgen copies literals); they must match.
const _: () = assert!(EMBER_HEADER_LEN == ember_core::HEADER_LEN);
const _: () = assert!(EMBER_MAX_PAYLOAD_LEN == ember_core::frame::MAX_PAYLOAD_LEN);
const _: () = assert!(EMBER_FLAG_RESPONSE == Flags::RESPONSE.bits() && EMBER_FLAG_ERROR == Flags::ERROR.bits());
const _: () = assert!(EMBER_FLAG_UNCHECKED == Flags::UNCHECKED.bits());
/// Flag: the frame answers the request with the same sequence number.
pub const EMBER_FLAG_RESPONSE: u8 = 0x01;
/// Flag: the payload is an error response (with `EMBER_FLAG_RESPONSE`).
pub const EMBER_FLAG_ERROR: u8 = 0x02;
/// Flag: the payload is not covered by the frame checksum (the header still is); for media
/// that deliver bytes intact (pipes, queues, Unix sockets, shm). docs/wire-format.md §4.
pub const EMBER_FLAG_UNCHECKED: u8 = 0x04;
/// A sender's integrity setting: every frame it sends must have its payload checked
/// (frames with `EMBER_FLAG_UNCHECKED` are refused with `EMBER_EUNCHECKED`).
pub const EMBER_INTEGRITY_CHECKED: c_int = 1;
/// A sender's integrity setting: frames go out as they are, checked or not.
pub const EMBER_INTEGRITY_UNCHECKED: c_int = 0;

/// The integrity setting `v` (`EMBER_INTEGRITY_*`), else `EMBER_EINVAL`.
pub(crate) fn integrity(v: c_int) -> Result<ember_linux::Integrity, c_int> {
    match v {
        EMBER_INTEGRITY_CHECKED => Ok(ember_linux::Integrity::Checked),
        EMBER_INTEGRITY_UNCHECKED => Ok(ember_linux::Integrity::Unchecked),
        _ => Err(EMBER_EINVAL),
    }
}

/// The `EMBER_INTEGRITY_*` value of `i`.
pub(crate) fn integrity_code(i: ember_linux::Integrity) -> c_int {
    if i.is_checked() { EMBER_INTEGRITY_CHECKED } else { EMBER_INTEGRITY_UNCHECKED }
}

/// What `ember_frame_decode` found: the header's fields and where the payload is.
///
/// `Send` and `Sync`: plain data.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ember_frame_info {
    /// The message kind (the application's type id).
    pub kind: u32,
    /// The sequence number.
    pub seq: u32,
    /// The flags byte (`EMBER_FLAG_*`, and ignorable high bits; `EMBER_FLAG_UNCHECKED`
    /// when the payload was not covered by the checksum).
    pub flags: u8,
    /// Where the payload starts, from the start of the frame (always `EMBER_HEADER_LEN`).
    pub payload_offset: usize,
    /// Payload bytes.
    pub payload_len: usize,
    /// Bytes of the whole frame (header and payload).
    pub frame_len: usize,
}

/// Writes a frame of `kind`, `seq` and `flags` carrying `payload_len` bytes of `payload`
/// into `out` (`out_cap` bytes), and its length into `*out_len`. With
/// `EMBER_FLAG_UNCHECKED` in `flags` the checksum covers the header only (the payload is
/// not read twice): for pipes, queues, Unix sockets and shm; without it, the payload too.
///
/// Returns `EMBER_OK`; `EMBER_ENOSPC` if `out_cap` is below `EMBER_HEADER_LEN +
/// payload_len`; `EMBER_ETOOBIG` above `EMBER_MAX_PAYLOAD_LEN`; `EMBER_EINVAL` for a NULL
/// `out_len`, a NULL `payload` with a non-zero length, a NULL `out`, or flags with unknown
/// critical bits (`0x08`).
///
/// # Safety
///
/// `payload` must point to `payload_len` readable bytes (or be NULL if 0); `out` to
/// `out_cap` writable bytes not overlapping `payload`; `out_len` to a writable `size_t`.
///
/// Thread safety: any thread; no shared state.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_frame_encode(
    kind: u32,
    seq: u32,
    flags: u8,
    payload: *const u8,
    payload_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        let out_len = crate::error::out(out_len)?;
        if out.is_null() || Flags::from_bits_retain(flags).unknown_critical() != 0 {
            return Err(EMBER_EINVAL);
        }
        // Before making a slice of `payload_len` bytes: never a slice longer than the
        // caller's buffer could be.
        if payload_len > EMBER_MAX_PAYLOAD_LEN {
            return Err(EMBER_ETOOBIG);
        }
        // SAFETY: the caller's contract on each pointer, checked for NULL; `payload` and
        // `out` must not overlap (the contract says so).
        let (payload, out) = unsafe { (bytes(payload, payload_len)?, bytes_mut(out, out_cap)?) };
        let repr = FrameRepr { flags: Flags::from_bits_retain(flags), kind, seq, payload_len };
        let n = repr.emit_with_payload(payload, out).map_err(codec_code)?.len();
        out_len.set(n);
        Ok(EMBER_OK)
    })
}

/// Checks the frame in `frame` (`len` bytes: exactly one frame) and describes it in
/// `*info`; the payload is at `frame + info->payload_offset`.
///
/// Returns `EMBER_OK`; `EMBER_EBADMSG` for a malformed frame (bad magic, version, flags,
/// length or CRC, or bytes after it); `EMBER_EINVAL` for NULL pointers.
///
/// # Safety
///
/// `frame` must point to `len` readable bytes; `info` to a writable `ember_frame_info`.
///
/// Thread safety: any thread; no shared state.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_frame_decode(frame: *const u8, len: usize, info: *mut ember_frame_info) -> c_int {
    guard(|| {
        let info = crate::error::out(info)?;
        if frame.is_null() {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: the caller's contract, checked for NULL.
        let bytes = unsafe { bytes(frame, len)? };
        let f = Frame::new_checked(bytes).map_err(|_| EMBER_EBADMSG)?;
        if f.total_len() != len {
            return Err(EMBER_EBADMSG);
        }
        info.set(ember_frame_info {
            kind: f.kind(),
            seq: f.seq(),
            flags: f.flags().bits(),
            payload_offset: EMBER_HEADER_LEN,
            payload_len: f.payload().len(),
            frame_len: len,
        });
        Ok(EMBER_OK)
    })
}
