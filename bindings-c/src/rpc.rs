//! Request/response (docs/rpc.md) for C: a client that calls with raw payload bytes and a
//! server that answers through a C callback, over a Unix stream or seqpacket socket or a
//! pipe pair. On the wire it is the same as the Rust `rpc` module's, so a C client can call
//! a Rust server and the other way round (with raw-byte payloads on both sides).

use core::ffi::{c_int, c_void};
use std::os::fd::AsRawFd;

use ember_linux::pipe::{StreamReader, Writer};
use ember_linux::rpc::{CallError, Client, Deadline, Duplex, Failure, Link, MaybeFd, Server};
use ember_linux::socket::{PacketKind, PacketSocket, StreamSocket};

use crate::error::*;

/// The largest request or response payload.
pub const EMBER_RPC_MAX_PAYLOAD: usize = 4072;
/// Requests in flight at once per client (`ember_rpc_call` uses one at a time).
const SLOTS: usize = 4;
/// Response slot: header and the largest payload.
const BUF: usize = 4096;
/// The receive buffer and the largest frame a link takes.
const RX: usize = 16384;
const _: () = assert!(EMBER_RPC_MAX_PAYLOAD + ember_core::HEADER_LEN == BUF);

/// Error code in an error response: the server has no handler for the kind.
pub const EMBER_RPC_UNKNOWN_KIND: u32 = 1;
/// Error code: the request's payload was not what the kind takes.
pub const EMBER_RPC_BAD_REQUEST: u32 = 2;
/// Error code: the handler did not respond (a negative return).
pub const EMBER_RPC_NO_RESPONSE: u32 = 3;
/// The first error code free for applications.
pub const EMBER_RPC_FIRST_APPLICATION_CODE: u32 = 256;
const _: () = assert!(
    EMBER_RPC_UNKNOWN_KIND == Failure::UNKNOWN_KIND
        && EMBER_RPC_BAD_REQUEST == Failure::BAD_REQUEST
        && EMBER_RPC_NO_RESPONSE == Failure::NO_RESPONSE
        && EMBER_RPC_FIRST_APPLICATION_CODE == Failure::FIRST_APPLICATION_CODE
);

/// The links C can make from fds.
#[derive(Debug)]
enum CLink {
    Stream(StreamSocket<RX>),
    Packet(PacketSocket),
    Pipes(Duplex<Writer, StreamReader<RX>>),
}

impl Link for CLink {
    fn send_frame_until(&mut self, frame: &[u8], d: &mut Deadline) -> ember_linux::Result<()> {
        match self {
            CLink::Stream(s) => s.send_frame_until(frame, d),
            CLink::Packet(s) => s.send_frame_until(frame, d),
            CLink::Pipes(p) => p.send_frame_until(frame, d),
        }
    }
    fn recv_frame_until(&mut self, buf: &mut [u8], d: &mut Deadline) -> ember_linux::Result<usize> {
        match self {
            CLink::Stream(s) => s.recv_frame_until(buf, d),
            CLink::Packet(s) => s.recv_frame_until(buf, d),
            CLink::Pipes(p) => p.recv_frame_until(buf, d),
        }
    }
    fn max_recv(&self) -> usize {
        match self {
            CLink::Stream(s) => s.max_recv(),
            CLink::Packet(s) => s.max_recv(),
            CLink::Pipes(d) => d.max_recv(),
        }
    }
    fn max_send(&self) -> usize {
        match self {
            CLink::Stream(s) => s.max_send(),
            CLink::Packet(s) => s.max_send(),
            CLink::Pipes(d) => d.max_send(),
        }
    }
}

impl MaybeFd for CLink {
    fn set_modes(&self) -> ember_linux::Result<()> {
        match self {
            CLink::Stream(s) => s.set_modes(),
            CLink::Packet(s) => s.set_modes(),
            CLink::Pipes(d) => d.set_modes(),
        }
    }
}

impl CLink {
    /// The fd a poller waits on for requests or responses.
    fn recv_fd(&self) -> c_int {
        match self {
            CLink::Stream(s) => rustix::fd::AsFd::as_fd(s).as_raw_fd(),
            CLink::Packet(s) => rustix::fd::AsFd::as_fd(s).as_raw_fd(),
            CLink::Pipes(d) => rustix::fd::AsFd::as_fd(&d.rx).as_raw_fd(),
        }
    }
}

fn socket_link(fd: c_int, seqpacket: c_int) -> Result<CLink, c_int> {
    let fd = owned(fd)?;
    Ok(if seqpacket != 0 {
        CLink::Packet(PacketSocket::from_fd(fd, PacketKind::Seqpacket, RX))
    } else {
        CLink::Stream(StreamSocket::from_fd(fd))
    })
}

fn pipes_link(read_fd: c_int, write_fd: c_int) -> Result<CLink, c_int> {
    // Every check before taking either fd: on EMBER_EINVAL both are still the caller's.
    if read_fd < 0 || write_fd < 0 || read_fd == write_fd {
        return Err(EMBER_EINVAL);
    }
    let (r, w) = (owned(read_fd)?, owned(write_fd)?);
    Ok(CLink::Pipes(Duplex::new(Writer::stream(w), StreamReader::from_fd(r)).map_err(code)?))
}

/// An rpc client (opaque).
///
/// `Send` and `Sync`: it owns its link and buffers.
#[derive(Debug)]
pub struct ember_rpc_client {
    c: Client<CLink, SLOTS, BUF, RX>,
}

/// An rpc server (opaque).
///
/// `Send` and `Sync`: it owns its link and buffers.
pub struct ember_rpc_server {
    s: Server<CLink, RX, BUF>,
    scratch: [u8; EMBER_RPC_MAX_PAYLOAD],
}

impl core::fmt::Debug for ember_rpc_server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ember_rpc_server").field("s", &self.s).finish_non_exhaustive()
    }
}

/// A request handler: reads `req_len` bytes of `req` (a request of `kind`), writes up to
/// `resp_cap` bytes of response into `resp` and their count into `*resp_len`, and returns
/// 0. A positive return is an error response with that code (`EMBER_RPC_*` or the
/// application's, from 256); a negative one is `EMBER_RPC_NO_RESPONSE`.
pub type ember_rpc_handler = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        kind: u32,
        req: *const u8,
        req_len: usize,
        resp: *mut u8,
        resp_cap: usize,
        resp_len: *mut usize,
    ) -> c_int,
>;

fn new_client(link: CLink, out: &Out<*mut ember_rpc_client>) -> Result<c_int, c_int> {
    let c = Client::new(link).map_err(code)?;
    out.set(Box::into_raw(Box::new(ember_rpc_client { c })));
    Ok(EMBER_OK)
}

fn new_server(link: CLink, out: &Out<*mut ember_rpc_server>) -> Result<c_int, c_int> {
    let s = Server::new(link).map_err(code)?;
    out.set(Box::into_raw(Box::new(ember_rpc_server { s, scratch: [0; EMBER_RPC_MAX_PAYLOAD] })));
    Ok(EMBER_OK)
}

/// A client over a connected Unix socket `fd` (seqpacket if `seqpacket` != 0, else
/// stream), which it now owns. Returns `EMBER_OK`; `EMBER_EINVAL` (a negative `fd`, `out`
/// NULL or misaligned); `EMBER_EOS` (the socket's modes could not be set: `EBADF`).
///
/// # Safety
///
/// `fd` an open socket the caller owns and no longer uses; `out` a writable pointer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_client_from_socket(
    fd: c_int,
    seqpacket: c_int,
    out: *mut *mut ember_rpc_client,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        new_client(socket_link(fd, seqpacket)?, &out)
    })
}

/// A client over two pipe ends: responses are read from `read_fd`, requests written to
/// `write_fd`; it owns both. Returns `EMBER_OK`; `EMBER_EINVAL` (a negative fd, the same
/// fd twice, `out` NULL or misaligned: both fds are still the caller's); `EMBER_EOS` (the
/// fds' modes could not be set: `EBADF`).
///
/// # Safety
///
/// Both fds open, owned by the caller and no longer used by it; `out` writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_client_from_pipes(
    read_fd: c_int,
    write_fd: c_int,
    out: *mut *mut ember_rpc_client,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        new_client(pipes_link(read_fd, write_fd)?, &out)
    })
}

/// Calls: sends a request of `kind` with `req_len` bytes of `req`, and waits up to
/// `timeout_ms` for its response, copied into `resp` (`resp_cap` bytes) with its length in
/// `*resp_len`. Returns `EMBER_OK`; `EMBER_ECANCELED` (the canceler installed with
/// `ember_set_canceler` was cancelled: the call is abandoned, its answer dropped if it
/// comes); `EMBER_EREMOTE` for an error response (its code in
/// `*remote_code`, its message NUL-terminated in `resp`, cut to fit); `EMBER_ETIMEDOUT`;
/// `EMBER_EPEERGONE`; `EMBER_ETOOBIG` for a request or response over
/// `EMBER_RPC_MAX_PAYLOAD`; `EMBER_ENOSPC` if the response does not fit `resp`;
/// `EMBER_EINVAL` (a NULL or misaligned pointer); `EMBER_EOS` (the link failed).
///
/// # Safety
///
/// `c` from `ember_rpc_client_from_*`; `req` `req_len` readable bytes; `resp` `resp_cap`
/// writable bytes; `resp_len` and `remote_code` writable.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_call(
    c: *mut ember_rpc_client,
    kind: u32,
    req: *const u8,
    req_len: usize,
    resp: *mut u8,
    resp_cap: usize,
    resp_len: *mut usize,
    remote_code: *mut u32,
    timeout_ms: i64,
) -> c_int {
    guard(|| {
        let (resp_len, remote_code) = (crate::error::out(resp_len)?, crate::error::out(remote_code)?);
        resp_len.set(0);
        remote_code.set(0);
        if req_len > EMBER_RPC_MAX_PAYLOAD {
            return Err(EMBER_ETOOBIG);
        }
        if resp.is_null() && resp_cap > 0 {
            return Err(EMBER_EINVAL);
        }
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let (c, req) = unsafe { (arg_mut(c)?, bytes(req, req_len)?) };
        // One deadline for sending and waiting.
        let mut deadline = Deadline::after(timeout(timeout_ms)).with_canceler(crate::cancel::current());
        let ticket = c.c.start_raw_until(kind, req, &mut deadline).map_err(code)?;
        // The request's bytes are sent: only now the response buffer (it may be the same).
        // SAFETY: the caller's contract, checked for NULL above.
        let resp = unsafe { bytes_mut(resp, resp_cap)? };
        let result = c.c.wait_raw_until(ticket, &mut deadline);
        if let Err(CallError::Local(e)) = result {
            // Never leave the slot taken (a zero timeout leaves the request in flight).
            c.c.cancel(ticket);
            return Err(code(e));
        }
        match result {
            Ok(payload) => {
                let dst = resp.get_mut(..payload.len()).ok_or(EMBER_ENOSPC)?;
                dst.copy_from_slice(payload);
                resp_len.set(payload.len());
                Ok(EMBER_OK)
            }
            Err(CallError::Remote { code: rc, message }) => {
                remote_code.set(rc);
                if let Some(room) = resp.len().checked_sub(1) {
                    let n = message.len().min(room);
                    resp[..n].copy_from_slice(&message.as_bytes()[..n]);
                    resp[n] = 0;
                    resp_len.set(n);
                }
                Ok(EMBER_EREMOTE)
            }
            Err(CallError::Local(e)) => Err(code(e)),
        }
    })
}

/// Frees a client and closes its fds (NULL is ignored).
///
/// # Safety
///
/// `c` from `ember_rpc_client_from_*`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_client_free(c: *mut ember_rpc_client) {
    if !c.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(c) });
    }
}

/// A server over a connected Unix socket `fd` (seqpacket if `seqpacket` != 0), which it
/// now owns. Returns `EMBER_OK`; `EMBER_EINVAL` (a negative `fd`, `out` NULL or
/// misaligned); `EMBER_EOS` (the socket's modes could not be set: `EBADF`).
///
/// # Safety
///
/// As `ember_rpc_client_from_socket`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_server_from_socket(
    fd: c_int,
    seqpacket: c_int,
    out: *mut *mut ember_rpc_server,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        new_server(socket_link(fd, seqpacket)?, &out)
    })
}

/// A server over two pipe ends: requests read from `read_fd`, responses written to
/// `write_fd`; it owns both. Returns `EMBER_OK`; `EMBER_EINVAL` (a negative fd, the same
/// fd twice, `out` NULL or misaligned: both fds are still the caller's); `EMBER_EOS` (the
/// fds' modes could not be set: `EBADF`).
///
/// # Safety
///
/// As `ember_rpc_client_from_pipes`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_server_from_pipes(
    read_fd: c_int,
    write_fd: c_int,
    out: *mut *mut ember_rpc_server,
) -> c_int {
    guard(|| {
        let out = crate::error::out(out)?;
        out.set(core::ptr::null_mut());
        new_server(pipes_link(read_fd, write_fd)?, &out)
    })
}

/// Receives one request, waiting up to `timeout_ms` (0: only what is there, for a poller
/// loop: call until `EMBER_ETIMEDOUT`), and answers it through `handler(user, ...)`.
/// Returns `EMBER_OK` when a request was answered; `EMBER_ETIMEDOUT`; `EMBER_ECANCELED`
/// (the canceler installed with `ember_set_canceler` was cancelled: no request taken); `EMBER_EPEERGONE`
/// when the client is gone; `EMBER_EINVAL` (a NULL or misaligned handle, a NULL
/// `handler`); `EMBER_EOS` (the link failed). Frames the link rejects are skipped.
///
/// # Safety
///
/// `s` from `ember_rpc_server_from_*`; `handler` a valid function that keeps to its
/// buffers' bounds (it gets `user` unchanged).
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_serve_one(
    s: *mut ember_rpc_server,
    timeout_ms: i64,
    handler: ember_rpc_handler,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        let handler = handler.ok_or(EMBER_EINVAL)?;
        let ember_rpc_server { s: server, scratch } = s;
        server
            .serve_one_until(
                &mut Deadline::after(timeout(timeout_ms)).with_canceler(crate::cancel::current()),
                &mut |kind, req, out| {
                    let mut len = 0usize;
                    // SAFETY: the handler's contract: it reads `req` and writes at most
                    // `scratch.len()` bytes into `scratch`.
                    let r = unsafe {
                        handler(user, kind, req.as_ptr(), req.len(), scratch.as_mut_ptr(), scratch.len(), &mut len)
                    };
                    match r {
                        0 if len <= scratch.len() => out.respond_raw(&scratch[..len]),
                        0 => Err(Failure::new(Failure::NO_RESPONSE, "the handler claimed more than its buffer")),
                        r if r > 0 => Err(Failure::new(
                            r as u32,
                            match r as u32 {
                                EMBER_RPC_UNKNOWN_KIND => "unknown kind",
                                EMBER_RPC_BAD_REQUEST => "bad request",
                                EMBER_RPC_NO_RESPONSE => "no response",
                                _ => "",
                            },
                        )),
                        _ => Err(Failure::new(Failure::NO_RESPONSE, "the handler did not respond")),
                    }
                },
            )
            .map_err(code)?;
        Ok(EMBER_OK)
    })
}

/// The fd to poll for readability before `ember_rpc_serve_one` with a zero timeout, or
/// `EMBER_EINVAL` (a NULL or misaligned handle).
///
/// # Safety
///
/// `s` from `ember_rpc_server_from_*`.
///
/// Thread safety: not concurrently with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_server_fd(s: *mut ember_rpc_server) -> c_int {
    guard(|| {
        // SAFETY: the caller's contract, checked for NULL and alignment.
        let s = unsafe { arg_mut(s)? };
        Ok(s.s.link().recv_fd())
    })
}

/// Frees a server and closes its fds (NULL is ignored).
///
/// # Safety
///
/// `s` from `ember_rpc_server_from_*`, not used after.
///
/// Thread safety: not with other calls on the same handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_rpc_server_free(s: *mut ember_rpc_server) {
    if !s.is_null() {
        // SAFETY: made by `Box::into_raw` here, freed once.
        drop(unsafe { Box::from_raw(s) });
    }
}
