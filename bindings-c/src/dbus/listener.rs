//! Peer-to-peer D-Bus, without a bus: a listening socket that does the server's side of
//! the SASL handshake for each client (`ember_dbus_listen`, `ember_dbus_listener_accept`),
//! and a client connection to any such peer (`ember_dbus_connect_peer`: a listener, a
//! `GDBusServer`, sd-bus or zbus listening). A peer connection has no unique name and no
//! bus methods (`RequestName`, `AddMatch` are for buses); calls, replies, signals, fds and
//! `ember_dbus_process` work as on a bus connection.

use core::ffi::{c_char, c_int};
use std::os::fd::{AsFd, AsRawFd};

use ember_linux::dbus::{ConnectionWith, Heap, Listener};

use super::{EMBER_DBUS_MIN_BUFFER, EMBER_DBUS_SPEC_MAX_MESSAGE, code, ember_dbus, ms};
use crate::error::*;

/// A listening peer-to-peer D-Bus socket (opaque).
///
/// `Send` and `Sync`: a socket and its address.
#[derive(Debug)]
pub struct ember_dbus_listener {
    l: Listener,
}

/// The buffers of a connection of `rx_size`/`tx_size`/`queue_size` bytes, checked as
/// `ember_dbus_connect_sized` checks them.
fn sized(rx_size: usize, tx_size: usize, queue_size: usize) -> Result<Heap, c_int> {
    let range = EMBER_DBUS_MIN_BUFFER..=EMBER_DBUS_SPEC_MAX_MESSAGE;
    if !range.contains(&rx_size) || !range.contains(&tx_size) || queue_size > EMBER_DBUS_SPEC_MAX_MESSAGE {
        return Err(EMBER_EINVAL);
    }
    Ok(Heap::new(rx_size, tx_size).with_queue(queue_size))
}

/// A handle for `c`.
fn handle(c: ConnectionWith<Heap>) -> *mut ember_dbus {
    Box::into_raw(Box::new(ember_dbus { busy: core::cell::Cell::new(false), cancel_src: core::cell::Cell::new(0), c }))
}

/// Listens at the first `unix:path=` or `unix:abstract=` entry of `address` (other entries
/// are skipped; the socket file is removed by `ember_dbus_listener_free`). Returns
/// `EMBER_OK`; `EMBER_EINVAL` (a NULL pointer, or no Unix entry in `address`); `EMBER_EOS`
/// (the path exists: `EADDRINUSE`; no such directory: `ENOENT`; ...).
///
/// # Safety
///
/// `address` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_listen(address: *const c_char, out: *mut *mut ember_dbus_listener) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract.
        let address = unsafe { c_name(address)? };
        let l = Listener::bind(address).map_err(code)?;
        out.set(Box::into_raw(Box::new(ember_dbus_listener { l })));
        Ok(EMBER_OK)
    })
}

/// The address clients connect to, with the server's GUID
/// (`unix:path=/run/x,guid=0123...`), copied with its NUL into `buf` (`cap` bytes; 400
/// suffice). Returns `EMBER_OK`; `EMBER_ENOSPC` if it does not fit; `EMBER_EINVAL` (a NULL
/// or misaligned pointer).
///
/// # Safety
///
/// `l` from `ember_dbus_listen`; `buf` `cap` writable bytes.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_listener_address(
    l: *const ember_dbus_listener,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (l, buf) = unsafe { (arg(l)?, bytes_mut(buf.cast(), cap)?) };
        super::args::copy_cstr(l.l.address().as_bytes(), buf)
    })
}

/// The listening socket (poll it for readability, then accept), or `EMBER_EINVAL`.
///
/// # Safety
///
/// `l` NULL or from `ember_dbus_listen`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_listener_fd(l: *const ember_dbus_listener) -> c_int {
    // SAFETY: the caller's contract, checked for NULL and alignment.
    guard(|| Ok(unsafe { arg(l)? }.l.as_fd().as_raw_fd()))
}

/// Waits up to `timeout_ms` (negative: no limit) for a client, authenticates it
/// (`EXTERNAL` from a process of our own uid, checked against the socket's credentials;
/// fd passing agreed when asked) within what is left of the time, and gives a connection
/// with the caller's buffer sizes (as `ember_dbus_connect_sized`) to `*out`. Returns
/// `EMBER_OK`; `EMBER_ETIMEDOUT` (no client, or a client that did not finish the handshake
/// in time); `EMBER_EOS` (a client of another uid, or one that does not speak SASL: it is
/// closed; `EACCES`); `EMBER_EINVAL` (sizes out of range, a NULL pointer).
///
/// # Safety
///
/// `l` from `ember_dbus_listen`; `out` a writable pointer.
///
/// Thread safety: any thread (one accept at a time per listener).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_listener_accept(
    l: *const ember_dbus_listener,
    rx_size: usize,
    tx_size: usize,
    queue_size: usize,
    timeout_ms: i64,
    out: *mut *mut ember_dbus,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let l = unsafe { arg(l)? };
        let c = l.l.accept_with(sized(rx_size, tx_size, queue_size)?, ms(timeout_ms)).map_err(code)?;
        out.set(handle(c));
        Ok(EMBER_OK)
    })
}

/// Stops listening and removes the socket file (a `unix:path=` listener). Only the
/// process that made the listener removes the file; a forked child's free closes its
/// copy of the socket only.
///
/// # Safety
///
/// `l` NULL or from `ember_dbus_listen`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_listener_free(l: *mut ember_dbus_listener) {
    if !l.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(l) });
    }
}

/// Connects to a peer listening at `address` (no bus: no `Hello`, no unique name),
/// authenticating with `EXTERNAL`, within `timeout_ms` (negative: no limit), with the
/// caller's buffer sizes (as `ember_dbus_connect_sized`). Returns `EMBER_OK`;
/// `EMBER_EINVAL` (sizes out of range, a NULL pointer, a bad address); `EMBER_EOS` (nobody
/// listens there: `ENOENT`, `ECONNREFUSED`; authentication refused: `EACCES`);
/// `EMBER_ETIMEDOUT`; `EMBER_EPEERGONE` (the peer hung up during the handshake);
/// `EMBER_ECANCELED` (the canceler installed with `ember_set_canceler` was cancelled before
/// or during the connect and handshake).
///
/// # Safety
///
/// `address` a NUL-terminated string; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_dbus_connect_peer(
    address: *const c_char,
    rx_size: usize,
    tx_size: usize,
    queue_size: usize,
    timeout_ms: i64,
    out: *mut *mut ember_dbus,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        // SAFETY: the caller's contract.
        let address = unsafe { c_name(address)? };
        let bufs = sized(rx_size, tx_size, queue_size)?;
        let generation = crate::cancel::generation();
        let c = match crate::cancel::current() {
            Some(cancel) => ConnectionWith::connect_peer_cancellable(bufs, address, ms(timeout_ms), cancel),
            None => ConnectionWith::connect_peer_with(bufs, address, ms(timeout_ms)),
        }
        .map_err(code)?;
        let h = handle(c);
        // SAFETY: just made by `handle`, not shared yet.
        unsafe { (*h).cancel_src.set(generation) };
        out.set(h);
        Ok(EMBER_OK)
    })
}
