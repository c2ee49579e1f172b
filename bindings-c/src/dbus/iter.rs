//! The parser iterator: a message's values read one by one, containers entered with
//! `ember_dbus_iter_recurse`. It lives in the caller's memory (an `ember_dbus_iter` on the
//! stack) and borrows the message it came from: it is valid until the next receive or call
//! on that connection, like the strings it hands out.

use core::ffi::{c_char, c_int};

use ember_core::dbus::value::{Array, Fields, Values};
use ember_core::dbus::{DbusError, Value};

use crate::error::*;

/// Marks an initialised iterator.
const MAGIC: u64 = 0x6974_6572_6462_7573;

/// A position in a message's values (its fields are private: initialise it with
/// `ember_dbus_recv`, `ember_dbus_call`, a handler's arguments or `ember_dbus_iter_recurse`).
///
/// `Send` and `Sync` as plain words, but it borrows its message: use it only while that is valid.
#[repr(C)]
pub struct ember_dbus_iter {
    /// Private.
    pub _magic: u64,
    /// Private (a Rust value with padding: uninitialised bytes are allowed here).
    pub _state: [core::mem::MaybeUninit<u64>; 15],
}

impl core::fmt::Debug for ember_dbus_iter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ember_dbus_iter").field("_magic", &self._magic).finish_non_exhaustive()
    }
}

/// What the iterator walks.
#[derive(Clone)]
pub(crate) enum State<'a> {
    /// A body or a struct's values.
    Values(Values<'a>),
    /// A struct's or dict entry's fields.
    Fields(Fields<'a>),
    /// An array's elements.
    Array(Array<'a>),
    /// A variant's one value.
    Variant(Option<Value<'a>>),
}

impl State<'_> {
    fn next(&mut self) -> Option<Result<Value<'_>, DbusError>> {
        match self {
            State::Values(v) => v.next(),
            State::Fields(f) => f.next(),
            State::Array(a) => a.next(),
            State::Variant(v) => v.take().map(Ok),
        }
    }
}

const _: () = assert!(core::mem::size_of::<State<'static>>() <= 15 * 8);
const _: () = assert!(core::mem::align_of::<State<'static>>() <= 8);

impl ember_dbus_iter {
    /// An iterator over `state` (its borrow is the caller's to keep valid: see the module).
    pub(crate) fn init(out: &crate::error::Out<ember_dbus_iter>, state: State<'_>) {
        let mut it = ember_dbus_iter { _magic: MAGIC, _state: [core::mem::MaybeUninit::uninit(); 15] };
        // SAFETY: `State` fits in `_state` and needs no stricter alignment (asserted above);
        // it holds only borrows, so it may be copied out and dropped without running code.
        unsafe { core::ptr::write(it._state.as_mut_ptr().cast::<State<'static>>(), erase(state)) };
        out.set(it);
    }

    fn state(&mut self) -> Result<&mut State<'static>, c_int> {
        if self._magic != MAGIC {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: initialised by `init` (the magic says so, unless the caller forged it,
        // which the contract forbids); the borrow is valid by the caller's contract.
        Ok(unsafe { &mut *self._state.as_mut_ptr().cast::<State<'static>>() })
    }
}

/// Erases the borrow's lifetime: the C caller keeps the message alive (documented on every
/// function that hands out an iterator).
fn erase(s: State<'_>) -> State<'static> {
    // SAFETY: same type but for the lifetime; see above.
    unsafe { core::mem::transmute::<State<'_>, State<'static>>(s) }
}

/// The type code of a value.
fn code(v: &Value<'_>) -> c_int {
    (match v {
        Value::Byte(_) => b'y',
        Value::Bool(_) => b'b',
        Value::I16(_) => b'n',
        Value::U16(_) => b'q',
        Value::I32(_) => b'i',
        Value::U32(_) => b'u',
        Value::I64(_) => b'x',
        Value::U64(_) => b't',
        Value::F64(_) => b'd',
        Value::Str(_) => b's',
        Value::Path(_) => b'o',
        Value::Sig(_) => b'g',
        Value::Fd(_) => b'h',
        Value::Array(_) => b'a',
        Value::Struct(_) => b'(',
        Value::DictEntry(_) => b'{',
        Value::Variant(_) => b'v',
    }) as c_int
}

/// Takes the next value if `take` accepts it (else the iterator stays where it was and the
/// result is `EMBER_EINVAL`: another type is next).
fn next_if<T>(it: *mut ember_dbus_iter, take: impl FnOnce(Value<'static>) -> Option<T>) -> Result<T, c_int> {
    // SAFETY: each export's contract, checked for NULL and alignment.
    let st = unsafe { arg_mut(it)? }.state()?;
    let mut ahead = st.clone();
    let v = match ahead.next() {
        None => return Err(EMBER_EINVAL),
        Some(Err(_)) => return Err(EMBER_EBADMSG),
        // SAFETY: the value borrows the message, not `ahead` (see `erase`).
        Some(Ok(v)) => unsafe { core::mem::transmute::<Value<'_>, Value<'static>>(v) },
    };
    let t = take(v).ok_or(EMBER_EINVAL)?;
    *st = ahead;
    Ok(t)
}

/// The type code of the next value (`'s'`, `'i'`, `'a'`, `'('`, `'{'`, `'v'`, ...), 0 at
/// the end, or a negative code: `EMBER_EBADMSG` (it cannot be read), `EMBER_EINVAL`.
///
/// # Safety
///
/// `it` initialised (see the type) and its message still valid.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_type(it: *mut ember_dbus_iter) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let mut ahead = unsafe { arg_mut(it)? }.state()?.clone();
        match ahead.next() {
            None => Ok(0),
            Some(Ok(v)) => Ok(code(&v)),
            Some(Err(_)) => Err(EMBER_EBADMSG),
        }
    })
}

/// The element type code of the array that is next (`'i'`, `'s'`, `'('`, `'{'`, `'a'`, ...,
/// the codes of `ember_dbus_iter_type`), known even when the array is empty. The iterator
/// does not move. `EMBER_EINVAL` if the next value is not an array or there is none;
/// `EMBER_EBADMSG` if it cannot be read.
///
/// # Safety
///
/// `it` initialised (see the type) and its message still valid.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_element_type(it: *mut ember_dbus_iter) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let mut ahead = unsafe { arg_mut(it)? }.state()?.clone();
        match ahead.next() {
            // A parsed signature never ends after an `a`: the element type is there.
            Some(Ok(Value::Array(a))) => a.element().as_str().bytes().next().map(c_int::from).ok_or(EMBER_EBADMSG),
            Some(Ok(_)) | None => Err(EMBER_EINVAL),
            Some(Err(_)) => Err(EMBER_EBADMSG),
        }
    })
}

/// Reads a byte (`y`).
///
/// Returns `EMBER_OK`; `EMBER_EINVAL` if the next value has another type, or there is none
/// (the iterator does not move); `EMBER_EBADMSG` if it cannot be read.
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_byte(it: *mut ember_dbus_iter, out: *mut u8) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::Byte(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads an `int16_t` (`n`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_int16(it: *mut ember_dbus_iter, out: *mut i16) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::I16(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads a `uint16_t` (`q`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_uint16(it: *mut ember_dbus_iter, out: *mut u16) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::U16(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads an `int32_t` (`i`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_int32(it: *mut ember_dbus_iter, out: *mut i32) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::I32(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads a `uint32_t` (`u`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_uint32(it: *mut ember_dbus_iter, out: *mut u32) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::U32(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads an `int64_t` (`x`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_int64(it: *mut ember_dbus_iter, out: *mut i64) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::I64(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads a `uint64_t` (`t`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_uint64(it: *mut ember_dbus_iter, out: *mut u64) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::U64(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads a `double` (`d`). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_double(it: *mut ember_dbus_iter, out: *mut f64) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::F64(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads a Unix fd's index (`h`): take the fd itself with `ember_dbus_take_fd` (or
/// `ember_dbus_call_take_fd` in a handler). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_unix_fd(it: *mut ember_dbus_iter, out: *mut u32) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::Fd(x) => Some(x),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads a boolean (`b`) as 0 or 1. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_bool(it: *mut ember_dbus_iter, out: *mut c_int) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(next_if(it, |v| match v {
            Value::Bool(b) => Some(b as c_int),
            _ => None,
        })?);
        Ok(EMBER_OK)
    })
}

/// Reads a string (`s`) or an object path (`o`): `*out` points into the message (UTF-8,
/// NUL-terminated; valid as long as the iterator), `*len` (may be NULL) is its length.
/// Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `out` writable; `len` NULL or writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_string(
    it: *mut ember_dbus_iter,
    out: *mut *const c_char,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        let len = if len.is_null() { None } else { Some(crate::error::out(len)?) };
        // A string in a message is followed by its NUL there: the pointer is a C string.
        let s = next_if(it, |v| match v {
            Value::Str(s) => Some(s),
            Value::Path(p) => Some(p.as_str()),
            _ => None,
        })?;
        out.set(s.as_ptr().cast());
        if let Some(l) = len {
            l.set(s.len());
        }
        Ok(EMBER_OK)
    })
}

/// Reads a signature (`g`), copied with its NUL into `buf` (`cap` bytes; 256 always
/// suffice). Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read). `EMBER_ENOSPC` (the
/// iterator does not move) if it does not fit.
///
/// # Safety
///
/// `it` initialised and its message still valid; `buf` `cap` writable bytes.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_signature(it: *mut ember_dbus_iter, buf: *mut c_char, cap: usize) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract.
        let buf = unsafe { bytes_mut(buf.cast(), cap)? };
        let fits = |n: usize| n < buf.len();
        let s = next_if(it, |v| match v {
            Value::Sig(s) if fits(s.as_str().len()) => Some(s),
            _ => None,
        });
        let s = match s {
            Ok(s) => s,
            // Distinguish "too small" from "another type".
            // SAFETY: the caller's contract.
            Err(EMBER_EINVAL) if unsafe { ember_dbus_iter_type(it) } == b'g' as c_int => return Err(EMBER_ENOSPC),
            Err(e) => return Err(e),
        };
        super::args::copy_cstr(s.as_str().as_bytes(), buf)
    })
}

/// Reads an array of bytes (`ay`) at once: `*data` points to its `*len` bytes in the
/// message. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL or misaligned pointer, an
/// iterator not initialised, or the next value has another type or there is none: the
/// iterator does not move); `EMBER_EBADMSG` (it cannot be read). Another array is
/// `EMBER_EINVAL` too.
///
/// # Safety
///
/// `it` initialised and its message still valid; `data`, `len` writable.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_bytes(
    it: *mut ember_dbus_iter,
    data: *mut *const u8,
    len: *mut usize,
) -> c_int {
    guard(|| {
        let (data, len) = (crate::error::out(data)?, crate::error::out(len)?);
        let b = next_if(it, |v| match v {
            Value::Array(a) => a.as_bytes(),
            _ => None,
        })?;
        data.set(b.as_ptr());
        len.set(b.len());
        Ok(EMBER_OK)
    })
}

/// Enters the container that is next (an array, a struct, a dict entry or a variant):
/// `*child` iterates its elements, fields, or one value; `it` moves past it. What kind of
/// container it is, `ember_dbus_iter_type` says first; the types inside, the child's
/// `ember_dbus_iter_type`, or for an array, even an empty one,
/// `ember_dbus_iter_element_type` before entering it. Returns `EMBER_OK`; `EMBER_EINVAL`
/// (a NULL or misaligned pointer, `child` equal to `it`, an iterator not initialised, or
/// the next value is no container or there is none: the iterator does not move);
/// `EMBER_EBADMSG` (it cannot be read).
///
/// # Safety
///
/// `it` initialised and its message still valid; `child` writable (may not be `it`).
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_recurse(it: *mut ember_dbus_iter, child: *mut ember_dbus_iter) -> c_int {
    guard(|| {
        let child_out = crate::error::out(child)?;
        if core::ptr::eq(it, child) {
            return Err(EMBER_EINVAL);
        }
        let state = next_if(it, |v| match v {
            Value::Array(a) => Some(Ok(State::Array(a))),
            Value::Struct(f) | Value::DictEntry(f) => Some(Ok(State::Fields(f))),
            Value::Variant(v) => Some(v.value().map(|x| State::Variant(Some(x)))),
            _ => None,
        })?
        .map_err(|_| EMBER_EBADMSG)?;
        ember_dbus_iter::init(&child_out, state);
        Ok(EMBER_OK)
    })
}

/// Moves past the next value, whatever its type. Returns `EMBER_OK`, `EMBER_EINVAL` at the
/// end, or `EMBER_EBADMSG`.
///
/// # Safety
///
/// `it` initialised and its message still valid.
///
/// Thread safety: not with other calls on the same iterator.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_iter_skip(it: *mut ember_dbus_iter) -> c_int {
    guard(|| {
        next_if(it, Some)?;
        Ok(EMBER_OK)
    })
}
