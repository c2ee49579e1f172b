//! The argument builder: values appended one by one, containers opened and closed, into a
//! fixed buffer allocated once; checked in full against their signature before they are
//! sent.

use core::ffi::{c_char, c_int};

use ember_core::dbus::{Endian, Reader, Signature};

use crate::error::*;

/// Deepest container nesting the builder follows (the specification's limit is 64).
const MAX_DEPTH: usize = 64;
/// Most fds one message carries.
pub(crate) const MAX_FDS: usize = 16;
/// Longest array body (the specification's limit).
const MAX_ARRAY_LEN: usize = 64 << 20;

#[derive(Debug, Clone, Copy, Default)]
struct Open {
    /// `a`, `(`, `{` or `v`.
    kind: u8,
    /// Where an array's length goes.
    len_at: usize,
    /// Where an array's elements start.
    start: usize,
    /// Whether values written at this level add their codes to the signature (top level
    /// and structs there; not inside arrays and variants, whose signatures are given).
    records: bool,
}

/// A message body being built (opaque): the arguments of a call or a signal, or the
/// results of a method. Made once with `ember_dbus_args_new`, reused with
/// `ember_dbus_args_clear`.
///
/// `Send` and `Sync`: it owns its buffer; every function takes it `*mut`.
pub struct ember_dbus_args {
    buf: Box<[u8]>,
    len: usize,
    sig: [u8; 255],
    sig_len: usize,
    open: [Open; MAX_DEPTH],
    depth: usize,
    pub(crate) fds: [c_int; MAX_FDS],
    pub(crate) nfds: usize,
    /// An error a method handler answers with (`ember_dbus_args_set_error`).
    pub(crate) error_name: [u8; 256],
    pub(crate) error_name_len: usize,
    /// The error's message is kept at the start of `buf` (the results are void then).
    pub(crate) error_message_len: usize,
}

impl core::fmt::Debug for ember_dbus_args {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ember_dbus_args")
            .field("len", &self.len)
            .field("capacity", &self.buf.len())
            .field("signature", &core::str::from_utf8(&self.sig[..self.sig_len]).unwrap_or("?"))
            .field("depth", &self.depth)
            .field("nfds", &self.nfds)
            .finish_non_exhaustive()
    }
}

/// Alignment of a value whose type starts with `code`.
fn alignment(code: u8) -> usize {
    match code {
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b'h' | b's' | b'o' | b'a' => 4,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 1,
    }
}

impl ember_dbus_args {
    pub(crate) fn new(capacity: usize) -> ember_dbus_args {
        ember_dbus_args {
            buf: vec![0u8; capacity].into_boxed_slice(),
            len: 0,
            sig: [0; 255],
            sig_len: 0,
            open: [Open::default(); MAX_DEPTH],
            depth: 0,
            fds: [-1; MAX_FDS],
            nfds: 0,
            error_name: [0; 256],
            error_name_len: 0,
            error_message_len: 0,
        }
    }

    /// The message of the error set by `ember_dbus_args_set_error` (empty if none).
    pub(crate) fn error_message(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.error_message_len]).unwrap_or("")
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.sig_len = 0;
        self.depth = 0;
        self.nfds = 0;
        self.error_name_len = 0;
        self.error_message_len = 0;
    }

    fn records(&self) -> bool {
        self.depth == 0 || self.open[self.depth - 1].records
    }

    fn push_sig(&mut self, code: &[u8]) -> Result<(), c_int> {
        if !self.records() {
            return Ok(());
        }
        let end = self.sig_len + code.len();
        if end > self.sig.len() {
            return Err(EMBER_ETOOBIG);
        }
        self.sig[self.sig_len..end].copy_from_slice(code);
        self.sig_len = end;
        Ok(())
    }

    fn pad(&mut self, align: usize) -> Result<(), c_int> {
        let end = self.len.next_multiple_of(align);
        self.buf.get_mut(self.len..end).ok_or(EMBER_ENOSPC)?.fill(0);
        self.len = end;
        Ok(())
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), c_int> {
        let end = self.len + bytes.len();
        self.buf.get_mut(self.len..end).ok_or(EMBER_ENOSPC)?.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// Runs `f`, undoing what it wrote if it fails (the builder is as before the call).
    fn atomically(&mut self, f: impl FnOnce(&mut Self) -> Result<(), c_int>) -> Result<c_int, c_int> {
        let (len, sig_len, depth, nfds) = (self.len, self.sig_len, self.depth, self.nfds);
        match f(self) {
            Ok(()) => Ok(EMBER_OK),
            Err(e) => {
                (self.len, self.sig_len, self.depth, self.nfds) = (len, sig_len, depth, nfds);
                Err(e)
            }
        }
    }

    /// A fixed-size value with type code `code`, `bytes` in native order.
    fn fixed(&mut self, code: u8, bytes: &[u8]) -> Result<c_int, c_int> {
        self.atomically(|a| {
            a.push_sig(&[code])?;
            a.pad(bytes.len())?;
            a.raw(bytes)
        })
    }

    fn string(&mut self, code: u8, s: &str) -> Result<c_int, c_int> {
        self.atomically(|a| {
            a.push_sig(&[code])?;
            let len = u32::try_from(s.len()).map_err(|_| EMBER_ETOOBIG)?;
            a.pad(4)?;
            a.raw(&len.to_ne_bytes())?;
            a.raw(s.as_bytes())?;
            a.raw(&[0])
        })
    }

    /// The signature of what was written (complete once every container is closed).
    pub(crate) fn signature(&self) -> &str {
        // Only valid type codes (ASCII) are ever written to it.
        core::str::from_utf8(&self.sig[..self.sig_len]).unwrap_or("")
    }

    /// The body's bytes.
    pub(crate) fn body(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Checks that every container is closed and the body is valid for its signature (as
    /// a receiver would check it), and returns the signature.
    pub(crate) fn checked(&self) -> Result<Signature<'_>, c_int> {
        if self.depth != 0 {
            return Err(EMBER_EINVAL);
        }
        let sig = Signature::new(self.signature()).map_err(|_| EMBER_EINVAL)?;
        let mut values = Reader::new(self.body(), Endian::NATIVE).with_fds(self.nfds as u32).values(sig);
        for v in values.by_ref() {
            v.map_err(|_| EMBER_EINVAL)?;
        }
        if !values.is_at_end() {
            return Err(EMBER_EINVAL);
        }
        Ok(sig)
    }
}

/// An argument builder whose values take up to `capacity` bytes (the largest body it
/// builds; 4096 is plenty for most calls). Returns `EMBER_OK`, or `EMBER_EINVAL` (`out`
/// NULL or misaligned, `capacity` 0 or over 128 MiB).
///
/// # Safety
///
/// `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_new(capacity: usize, out: *mut *mut ember_dbus_args) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        if capacity == 0 || capacity > 128 << 20 {
            return Err(EMBER_EINVAL);
        }
        out.set(Box::into_raw(Box::new(ember_dbus_args::new(capacity))));
        Ok(EMBER_OK)
    })
}

/// Empties the builder (to build the next message with it). Returns `EMBER_OK`, or
/// `EMBER_EINVAL` (a NULL or misaligned handle).
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_clear(a: *mut ember_dbus_args) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        unsafe { arg_mut(a)? }.clear();
        Ok(EMBER_OK)
    })
}

/// Frees the builder.
///
/// # Safety
///
/// `a` NULL or from `ember_dbus_args_new`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_free(a: *mut ember_dbus_args) {
    if !a.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(a) });
    }
}

/// Appends a byte (`y`).
///
/// Returns `EMBER_OK`; `EMBER_ENOSPC` when the builder is full; `EMBER_ETOOBIG` when the
/// signature would pass 255 bytes; `EMBER_EINVAL` for a NULL or misaligned handle. A
/// failed append leaves the builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_byte(a: *mut ember_dbus_args, v: u8) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b'y', &v.to_ne_bytes()))
}

/// Appends an `int16_t` (`n`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_int16(a: *mut ember_dbus_args, v: i16) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b'n', &v.to_ne_bytes()))
}

/// Appends a `uint16_t` (`q`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_uint16(a: *mut ember_dbus_args, v: u16) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b'q', &v.to_ne_bytes()))
}

/// Appends an `int32_t` (`i`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_int32(a: *mut ember_dbus_args, v: i32) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b'i', &v.to_ne_bytes()))
}

/// Appends a `uint32_t` (`u`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_uint32(a: *mut ember_dbus_args, v: u32) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b'u', &v.to_ne_bytes()))
}

/// Appends an `int64_t` (`x`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_int64(a: *mut ember_dbus_args, v: i64) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b'x', &v.to_ne_bytes()))
}

/// Appends a `uint64_t` (`t`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_uint64(a: *mut ember_dbus_args, v: u64) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b't', &v.to_ne_bytes()))
}

/// Appends a `double` (`d`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_double(a: *mut ember_dbus_args, v: f64) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| unsafe { arg_mut(a)? }.fixed(b'd', &v.to_ne_bytes()))
}

/// Appends a boolean (`b`): 0 is false, anything else true. Returns `EMBER_OK`;
/// `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_bool(a: *mut ember_dbus_args, v: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let a = unsafe { arg_mut(a)? };
        a.fixed(b'b', &((v != 0) as u32).to_ne_bytes())
    })
}

/// Appends a string (`s`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned
/// pointer, a string not UTF-8); `EMBER_ENOSPC` (the builder is full); `EMBER_ETOOBIG`
/// (the signature would pass 255 bytes). A failed append leaves the builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`; `s` a NUL-terminated string.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_string(a: *mut ember_dbus_args, s: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (a, s) = unsafe { (arg_mut(a)?, c_name(s)?) };
        a.string(b's', s)
    })
}

/// Appends an object path (`o`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned
/// pointer, `path` not a valid object path); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`; `path` a NUL-terminated string.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_object_path(a: *mut ember_dbus_args, path: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (a, p) = unsafe { (arg_mut(a)?, c_name(path)?) };
        if !ember_core::dbus::names::is_object_path(p.as_bytes()) {
            return Err(EMBER_EINVAL);
        }
        a.string(b'o', p)
    })
}

/// Appends a signature (`g`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned
/// pointer, `sig` not a valid signature); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (the signature would pass 255 bytes). A failed append leaves the
/// builder as it was.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`; `sig` a NUL-terminated string.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_signature(a: *mut ember_dbus_args, sig: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (a, s) = unsafe { (arg_mut(a)?, c_name(sig)?) };
        Signature::new(s).map_err(|_| EMBER_EINVAL)?;
        a.atomically(|a| {
            a.push_sig(b"g")?;
            a.raw(&[s.len() as u8])?;
            a.raw(s.as_bytes())?;
            a.raw(&[0])
        })
    })
}

/// Appends a Unix fd (`h`): `fd` is sent with the message (duplicated by the kernel; the
/// caller keeps it, and must keep it open until the message is sent). At most 16 per
/// message. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned handle, a negative
/// fd); `EMBER_ETOOBIG` (a 17th fd, or the signature would pass 255 bytes);
/// `EMBER_ENOSPC` (the builder is full).
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`; `fd` an open descriptor.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_add_unix_fd(a: *mut ember_dbus_args, fd: c_int) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let a = unsafe { arg_mut(a)? };
        if fd < 0 {
            return Err(EMBER_EINVAL);
        }
        if a.nfds == MAX_FDS {
            return Err(EMBER_ETOOBIG);
        }
        let index = a.nfds as u32;
        a.atomically(|a| {
            a.push_sig(b"h")?;
            a.pad(4)?;
            a.raw(&index.to_ne_bytes())?;
            a.fds[a.nfds] = fd;
            a.nfds += 1;
            Ok(())
        })
    })
}

/// Opens a container; `kind` is `a`, `(`, `{` or `v`.
fn open(a: &mut ember_dbus_args, kind: u8, inner: &str) -> Result<c_int, c_int> {
    if a.depth == MAX_DEPTH {
        return Err(EMBER_ETOOBIG);
    }
    match kind {
        // The array's whole type is checked (a dict entry is valid only there).
        b'a' => {
            let mut whole = [0u8; 256];
            if inner.is_empty() || inner.len() >= whole.len() {
                return Err(EMBER_EINVAL);
            }
            whole[0] = b'a';
            whole[1..=inner.len()].copy_from_slice(inner.as_bytes());
            let whole = core::str::from_utf8(&whole[..=inner.len()]).map_err(|_| EMBER_EINVAL)?;
            if !Signature::new(whole).is_ok_and(|s| s.is_single()) {
                return Err(EMBER_EINVAL);
            }
        }
        b'v' if !Signature::new(inner).is_ok_and(|s| s.is_single()) => return Err(EMBER_EINVAL),
        _ => {}
    }
    let records = a.records();
    a.atomically(|a| {
        let mut o = Open { kind, len_at: 0, start: 0, records: records && matches!(kind, b'(' | b'{') };
        match kind {
            b'a' => {
                a.push_sig(b"a")?;
                a.push_sig(inner.as_bytes())?;
                a.pad(4)?;
                o.len_at = a.len;
                a.raw(&[0; 4])?;
                a.pad(alignment(inner.as_bytes()[0]))?;
                o.start = a.len;
            }
            b'v' => {
                a.push_sig(b"v")?;
                a.raw(&[inner.len() as u8])?;
                a.raw(inner.as_bytes())?;
                a.raw(&[0])?;
            }
            _ => {
                a.push_sig(&[kind])?;
                a.pad(8)?;
            }
        }
        a.open[a.depth] = o;
        a.depth += 1;
        Ok(())
    })
}

/// Opens an array whose elements are of the complete type `element` (e.g. `"s"`, `"{sv}"`,
/// `"(ii)"`); append the elements, then `ember_dbus_args_close`. The elements' types are
/// checked when the message is sent. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or
/// misaligned handle, a bad signature); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (nested more than 64 deep, or the signature would pass 255 bytes).
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`; `element` a NUL-terminated string.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_open_array(a: *mut ember_dbus_args, element: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (a, e) = unsafe { (arg_mut(a)?, c_name(element)?) };
        open(a, b'a', e)
    })
}

/// Opens a struct (`(...)`); append its fields, then `ember_dbus_args_close`. Returns
/// `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned handle); `EMBER_ENOSPC` (the builder
/// is full); `EMBER_ETOOBIG` (nested more than 64 deep, or the signature would pass 255
/// bytes).
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_open_struct(a: *mut ember_dbus_args) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        open(unsafe { arg_mut(a)? }, b'(', "")
    })
}

/// Opens a dict entry (`{..}`, inside an array of them); append the key and the value,
/// then `ember_dbus_args_close`. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or
/// misaligned handle); `EMBER_ENOSPC` (the builder is full); `EMBER_ETOOBIG` (nested more
/// than 64 deep, or the signature would pass 255 bytes). Whether it is inside an array of
/// dict entries is checked when the message is sent.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_open_dict_entry(a: *mut ember_dbus_args) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        open(unsafe { arg_mut(a)? }, b'{', "")
    })
}

/// Opens a variant holding one value of the complete type `sig`; append it, then
/// `ember_dbus_args_close`. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned
/// pointer, `sig` not one complete type); `EMBER_ENOSPC` (the builder is full);
/// `EMBER_ETOOBIG` (nested more than 64 deep, or the signature would pass 255 bytes).
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`; `sig` a NUL-terminated string.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_open_variant(a: *mut ember_dbus_args, sig: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (a, s) = unsafe { (arg_mut(a)?, c_name(sig)?) };
        open(a, b'v', s)
    })
}

/// Closes the container opened last. Returns `EMBER_OK`, `EMBER_EINVAL` when none is open,
/// or `EMBER_ETOOBIG` for an array over 64 MiB.
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_close(a: *mut ember_dbus_args) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let a = unsafe { arg_mut(a)? };
        if a.depth == 0 {
            return Err(EMBER_EINVAL);
        }
        let o = a.open[a.depth - 1];
        match o.kind {
            b'a' => {
                let len = a.len - o.start;
                if len > MAX_ARRAY_LEN {
                    return Err(EMBER_ETOOBIG);
                }
                a.buf[o.len_at..o.len_at + 4].copy_from_slice(&(len as u32).to_ne_bytes());
                a.depth -= 1;
            }
            b'(' | b'{' => {
                a.depth -= 1;
                let close = if o.kind == b'(' { b')' } else { b'}' };
                if let Err(e) = a.push_sig(&[close]) {
                    a.depth += 1;
                    return Err(e);
                }
            }
            _ => a.depth -= 1,
        }
        Ok(EMBER_OK)
    })
}

/// The signature of what the builder holds, copied with its NUL into `buf` (`cap` bytes,
/// 256 always suffice). Returns `EMBER_OK`; `EMBER_ENOSPC` if it does not fit;
/// `EMBER_EINVAL` (a NULL or misaligned pointer).
///
/// # Safety
///
/// `a` from `ember_dbus_args_new`; `buf` `cap` writable bytes.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_signature(a: *const ember_dbus_args, buf: *mut c_char, cap: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (a, buf) = unsafe { (arg(a)?, bytes_mut(buf.cast(), cap)?) };
        copy_cstr(a.signature().as_bytes(), buf)
    })
}

/// Copies `s` and a NUL into `buf`, or `EMBER_ENOSPC`.
pub(crate) fn copy_cstr(s: &[u8], buf: &mut [u8]) -> Result<c_int, c_int> {
    if buf.len() <= s.len() {
        return Err(EMBER_ENOSPC);
    }
    buf[..s.len()].copy_from_slice(s);
    buf[s.len()] = 0;
    Ok(EMBER_OK)
}

/// Inside a method handler: answers the call with the D-Bus error `name` (e.g.
/// `org.example.Error.Busy`; a valid error name, else `EMBER_EINVAL`) and `message` (may
/// be NULL; sent whole, up to the builder's capacity, where it is cut at a character
/// boundary), instead of the results: the results built so far are dropped (the message is
/// kept in their place). The handler then returns nonzero.
/// Returns `EMBER_OK`, or `EMBER_EINVAL` (a NULL or misaligned pointer, a bad name, a
/// message not UTF-8).
///
/// # Safety
///
/// `reply` the builder a handler was given; `name` a NUL-terminated string; `message`
/// NULL or NUL-terminated.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_args_set_error(
    reply: *mut ember_dbus_args,
    name: *const c_char,
    message: *const c_char,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (a, n) = unsafe { (arg_mut(reply)?, c_name(name)?) };
        let m = if message.is_null() {
            ""
        } else {
            // SAFETY: the caller's contract, checked for NULL.
            unsafe { c_name(message)? }
        };
        if ember_core::dbus::ErrorName::new(n).is_err() || n.len() >= a.error_name.len() {
            return Err(EMBER_EINVAL);
        }
        a.error_name[..n.len()].copy_from_slice(n.as_bytes());
        a.error_name_len = n.len();
        let mut cut = m.len().min(a.buf.len());
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        // In the results' place: the reply is this error.
        a.clear();
        a.error_name_len = n.len();
        a.buf[..cut].copy_from_slice(&m.as_bytes()[..cut]);
        a.error_message_len = cut;
        Ok(EMBER_OK)
    })
}
