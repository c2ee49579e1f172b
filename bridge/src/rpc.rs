//! Request/response across the bridge: an Ember rpc server on one board answers Ember rpc
//! clients on another, through a Zenoh queryable.
//!
//! ```text
//!  board B                                                      board A
//!  rpc::Client --seqpacket--> [call]  ==Zenoh get==>  [serve] --seqpacket--> rpc::Server
//!  (any number)   path        ember/a/rpc/calc        queryable   path       (listening)
//! ```
//!
//! - **Frames cross verbatim**, one request frame per query payload and one response
//!   frame per reply, with the payload checksum on while they cross ([`crate::frames`]):
//!   kinds, sequence numbers, error responses ([`Failure`](ember_linux::rpc::Failure)) and
//!   the client's own timeouts are the rpc module's, end to end. A `call` bridge checks
//!   every request from a local client (one valid frame, not a response) and every reply
//!   (one valid, checked response frame); a `serve` bridge checks every query's payload.
//!   What fails a check is counted `bad` and goes no further.
//! - **Many calls in flight**: each request is its own query; replies come back in any
//!   order and go to the client whose request it was (its connection), which matches them
//!   by sequence number as over a direct link.
//! - **Sequence numbers on the serving side**: requests from many remote clients share
//!   the `serve` bridge's one connection to the local server, so the bridge gives each
//!   request a sequence number of its own on that connection and puts the client's back on
//!   the response (the header checksum recomputed).
//! - **A server that goes away**: the `serve` bridge answers every call it holds, and
//!   every call that arrives while it has no server, with a Zenoh error reply; the `call`
//!   bridge then closes that client's connection, so the client gets
//!   [`Error::PeerGone`](ember_linux::Error::PeerGone), as when a directly connected
//!   server dies (its other calls on that connection end the same way). The `serve`
//!   bridge connects again every [`SLICE`]. A bridge that does not
//!   answer at all (down, unreachable) leaves the client to its own timeout:
//!   [`Error::TimedOut`](ember_linux::Error::TimedOut).
//! - **Counters** (`ember/{board}/@status`, direction `serve` or `call`): `in` requests
//!   taken, `out` responses delivered, `dropped` calls that got no response (timed out,
//!   server gone, a client that left), `bad` frames refused.
//!
//! Zenoh allocates per query and per reply (its own buffers); so does this module (one
//! buffer per request and per response, and the pending-call table), unlike the routes.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ember_core::frame::{Flags, Frame};
use ember_linux::socket::{PacketKind, PacketSocket};
use ember_linux::uds::{self, UdsListener, UnixName};
use ember_linux::{Error as LinuxError, TimedReceiver, TimedSender};
use zenoh::Wait;
use zenoh::query::{ConsolidationMode, Query, QueryTarget, Reply};

use crate::config::{RpcRole, RpcRoute};
use crate::counters::Counters;
use crate::frames::{check_inbound, seal_outbound};
use crate::route::{SLICE, StartError};

/// How long the bridge waits to hand a response to a local client (or a request to the
/// local server) before it counts the call dropped: a peer that stopped reading must not
/// hold Zenoh's threads.
const LOCAL_SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// The text of the error reply a `serve` bridge sends when it has no local server.
pub const NO_SERVER: &str = "ember-bridge: the rpc server is not running";

/// A running rpc service: its threads, its queryable (`serve`) and its counters.
pub struct RunningRpc {
    /// The service's counters.
    pub counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
    queryable: Option<zenoh::query::Queryable<()>>,
}

impl core::fmt::Debug for RunningRpc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RunningRpc")
            .field("counters", &self.counters)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl RunningRpc {
    /// Waits for the service's threads (after the stop flag is set) and undeclares its
    /// queryable.
    pub fn join(mut self) {
        if let Some(q) = self.queryable.take() {
            let _ = q.undeclare().wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts the service `r` on `session`.
pub fn start(
    session: &zenoh::Session,
    board: &str,
    r: &RpcRoute,
    stop: Arc<AtomicBool>,
) -> Result<RunningRpc, StartError> {
    match r.role {
        RpcRole::Serve => serve(session, board, r, stop),
        RpcRole::Call => call(session, board, r, stop),
    }
}

fn local_error(r: &RpcRoute, error: LinuxError) -> StartError {
    StartError::Local { channel: r.service.clone(), error }
}

/// A thread that could not be started, as the error the kernel gave.
fn spawn_error(r: &RpcRoute, e: std::io::Error) -> StartError {
    local_error(r, rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::AGAIN).into())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data: go on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A second handle on a seqpacket socket (same open file), for sending from Zenoh's
/// threads while a worker receives on the first.
fn second_handle(s: &PacketSocket, max: usize) -> Result<PacketSocket, LinuxError> {
    let dup: OwnedFd = rustix::io::fcntl_dupfd_cloexec(s, 0)?;
    let mut h = PacketSocket::from_fd(dup, PacketKind::Seqpacket, max);
    h.set_max_frame(max);
    Ok(h)
}

// ---------------------------------------------------------------------------------------
// serve: a queryable in front of a local rpc server.

/// A call held by the `serve` bridge until the local server answers it.
struct Held {
    query: Query,
    /// The client's sequence number, put back on the response.
    seq: u32,
    since: Instant,
}

/// The `serve` side's state, shared by the queryable's callback and the worker.
struct ServeState {
    /// The sending handle on the connection to the local server (`None`: no server now).
    tx: Mutex<Option<PacketSocket>>,
    held: Mutex<HashMap<u32, Held>>,
    next_seq: AtomicU32,
    counters: Arc<Counters>,
    max: usize,
}

impl ServeState {
    /// A query arrived: check it, hold it, pass the request to the server.
    fn on_query(&self, query: Query) {
        self.counters.add_in(1);
        let Some(bytes) = query.payload().map(|p| p.to_bytes().into_owned()) else {
            self.counters.add_bad(1);
            let _ = query.reply_err("ember-bridge: a query without a request frame").wait();
            return;
        };
        let is_request = check_inbound(&bytes, self.max)
            .ok()
            .and_then(|()| Frame::new_checked(&bytes[..]).ok())
            .filter(|f| !f.flags().contains(Flags::RESPONSE));
        let Some(request) = is_request else {
            self.counters.add_bad(1);
            let _ = query.reply_err("ember-bridge: not one valid, checked request frame").wait();
            return;
        };
        let client_seq = request.seq();
        let mut frame = bytes;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut f = Frame::new_unchecked(&mut frame[..]);
            f.set_seq(seq);
            f.fill_checksums();
        }
        let mut tx = lock(&self.tx);
        let Some(sock) = tx.as_mut() else {
            drop(tx);
            self.counters.add_dropped(1);
            let _ = query.reply_err(NO_SERVER).wait();
            return;
        };
        // Held before it is sent: the response may come back before `send` returns.
        lock(&self.held).insert(seq, Held { query, seq: client_seq, since: Instant::now() });
        if sock.send_frame_with(&frame, Some(LOCAL_SEND_TIMEOUT), None).is_err() {
            drop(tx);
            if let Some(h) = lock(&self.held).remove(&seq) {
                self.counters.add_dropped(1);
                let _ = h.query.reply_err(NO_SERVER).wait();
            }
        }
    }

    /// The server answered: give the response its client's sequence number, seal it and
    /// reply to the held query.
    fn on_response(&self, frame: &mut [u8], scratch: &mut [u8]) {
        let Ok(f) = Frame::new_checked(&*frame) else {
            self.counters.add_bad(1);
            return;
        };
        if f.total_len() != frame.len() || !f.flags().contains(Flags::RESPONSE) {
            self.counters.add_bad(1);
            return;
        }
        let Some(held) = lock(&self.held).remove(&f.seq()) else {
            // A response to a call given up already (too late), or to nothing.
            self.counters.add_dropped(1);
            return;
        };
        {
            let mut f = Frame::new_unchecked(&mut *frame);
            f.set_seq(held.seq);
            f.fill_checksums();
        }
        match seal_outbound(frame, scratch) {
            Ok(sealed) => {
                let key = held.query.key_expr().clone();
                match held.query.reply(key, sealed.to_vec()).wait() {
                    Ok(()) => self.counters.add_out(1),
                    Err(_) => self.counters.add_dropped(1),
                }
            }
            Err(_) => self.counters.add_bad(1),
        }
    }

    /// Answers every held call with the error reply (the server went away).
    fn fail_all(&self) {
        let held: Vec<Held> = lock(&self.held).drain().map(|(_, h)| h).collect();
        for h in held {
            self.counters.add_dropped(1);
            let _ = h.query.reply_err(NO_SERVER).wait();
        }
    }

    /// Gives up the calls held longer than `timeout` (their queriers have timed out).
    fn expire(&self, timeout: Duration) {
        let now = Instant::now();
        let old: Vec<u32> =
            lock(&self.held).iter().filter(|(_, h)| now.duration_since(h.since) > timeout).map(|(s, _)| *s).collect();
        for s in old {
            if lock(&self.held).remove(&s).is_some() {
                self.counters.add_dropped(1);
            }
        }
    }
}

fn serve(session: &zenoh::Session, board: &str, r: &RpcRoute, stop: Arc<AtomicBool>) -> Result<RunningRpc, StartError> {
    let max = r.max_frame();
    let counters = Arc::new(Counters::default());
    let state = Arc::new(ServeState {
        tx: Mutex::new(None),
        held: Mutex::new(HashMap::new()),
        next_seq: AtomicU32::new(1),
        counters: counters.clone(),
        max,
    });
    let key = r.key(board);
    let cb = state.clone();
    let queryable = session
        .declare_queryable(&key)
        .callback(move |query| cb.on_query(query))
        .wait()
        .map_err(|e| StartError::Zenoh { channel: r.service.clone(), reason: e.to_string() })?;
    let (path, timeout) = (r.path.clone(), r.timeout());
    let worker = std::thread::Builder::new()
        .name(format!("rpc-serve-{}", r.service))
        .spawn(move || serve_worker(&state, &path, timeout, &stop))
        .map_err(|e| spawn_error(r, e))?;
    Ok(RunningRpc { counters, threads: vec![worker], queryable: Some(queryable) })
}

/// Connects to the local server (again, each slice, while there is none), receives its
/// responses, and gives up calls held too long.
fn serve_worker(state: &ServeState, path: &str, timeout: Duration, stop: &AtomicBool) {
    let mut rx: Option<PacketSocket> = None;
    let mut buf = vec![0u8; state.max];
    let mut scratch = vec![0u8; state.max];
    while !stop.load(Ordering::Relaxed) {
        let Some(sock) = rx.as_mut() else {
            match uds::connect_seqpacket(UnixName::Path(path)) {
                Ok(mut s) => {
                    s.set_max_frame(state.max);
                    match second_handle(&s, state.max) {
                        Ok(tx) => {
                            *lock(&state.tx) = Some(tx);
                            rx = Some(s);
                        }
                        Err(_) => std::thread::sleep(SLICE),
                    }
                }
                Err(_) => std::thread::sleep(SLICE),
            }
            continue;
        };
        match sock.recv_frame_with(&mut buf, Some(SLICE), None) {
            Ok(n) => state.on_response(&mut buf[..n], &mut scratch),
            Err(LinuxError::TimedOut) => state.expire(timeout),
            // A bad frame from the server: counted, the connection stays.
            Err(LinuxError::Codec(_) | LinuxError::TooLarge { .. }) => state.counters.add_bad(1),
            Err(_) => {
                // Gone (end of stream, reset): no server until the next connect.
                *lock(&state.tx) = None;
                rx = None;
                state.fail_all();
            }
        }
    }
    *lock(&state.tx) = None;
    state.fail_all();
}

// ---------------------------------------------------------------------------------------
// call: a seqpacket listener for local clients, each request a query.

fn call(session: &zenoh::Session, board: &str, r: &RpcRoute, stop: Arc<AtomicBool>) -> Result<RunningRpc, StartError> {
    let _ = std::fs::remove_file(&r.path);
    let listener = UdsListener::bind_seqpacket(UnixName::Path(&r.path)).map_err(|e| local_error(r, e))?;
    let counters = Arc::new(Counters::default());
    let key = zenoh::key_expr::KeyExpr::try_from(r.key(board))
        .map_err(|e| StartError::Zenoh { channel: r.service.clone(), reason: e.to_string() })?;
    let ctx = CallContext {
        session: session.clone(),
        key,
        timeout: r.timeout(),
        max: r.max_frame(),
        counters: counters.clone(),
    };
    let path = r.path.clone();
    let acceptor = std::thread::Builder::new()
        .name(format!("rpc-call-{}", r.service))
        .spawn(move || {
            let mut clients: Vec<JoinHandle<()>> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept_seqpacket_timeout(Some(SLICE), None) {
                    Ok((sock, _creds)) => {
                        let (ctx, stop) = (ctx.clone(), stop.clone());
                        if let Ok(t) =
                            std::thread::Builder::new().name("rpc-client".into()).spawn(move || ctx.client(sock, &stop))
                        {
                            clients.push(t);
                        }
                        clients.retain(|t| !t.is_finished());
                    }
                    Err(_) => clients.retain(|t| !t.is_finished()),
                }
            }
            for t in clients {
                let _ = t.join();
            }
            drop(listener);
            let _ = std::fs::remove_file(&path);
        })
        .map_err(|e| spawn_error(r, e))?;
    Ok(RunningRpc { counters, threads: vec![acceptor], queryable: None })
}

/// What each client connection's thread needs.
#[derive(Clone)]
struct CallContext {
    session: zenoh::Session,
    key: zenoh::key_expr::KeyExpr<'static>,
    timeout: Duration,
    max: usize,
    counters: Arc<Counters>,
}

/// One client connection: the sending handle (shared by the reply callbacks) and whether
/// it was closed because the remote server is gone.
struct ClientLink {
    tx: Mutex<PacketSocket>,
    closed: AtomicBool,
}

impl ClientLink {
    /// Ends the connection both ways: the client's receive sees the end (`PeerGone`), the
    /// connection's thread too.
    fn close(&self) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            let tx = lock(&self.tx);
            let _ = rustix::net::shutdown(tx.as_fd(), rustix::net::Shutdown::Both);
        }
    }
}

/// The fate of one query: answered, or (dropped with nothing) counted `dropped`.
struct Outcome {
    answered: AtomicBool,
    counters: Arc<Counters>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.answered.load(Ordering::Relaxed) {
            self.counters.add_dropped(1);
        }
    }
}

impl CallContext {
    /// Reads the client's requests until it leaves (or the bridge stops); each becomes a
    /// query whose reply goes back on this connection.
    fn client(&self, mut sock: PacketSocket, stop: &AtomicBool) {
        sock.set_max_frame(self.max);
        let Ok(tx) = second_handle(&sock, self.max) else { return };
        let link = Arc::new(ClientLink { tx: Mutex::new(tx), closed: AtomicBool::new(false) });
        let mut buf = vec![0u8; self.max];
        let mut scratch = vec![0u8; self.max];
        while !stop.load(Ordering::Relaxed) && !link.closed.load(Ordering::Relaxed) {
            match sock.recv_frame_with(&mut buf, Some(SLICE), None) {
                Ok(n) => self.request(&buf[..n], &mut scratch, &link),
                Err(LinuxError::TimedOut) => {}
                Err(LinuxError::Codec(_) | LinuxError::TooLarge { .. }) => self.counters.add_bad(1),
                Err(_) => break,
            }
        }
        link.close();
    }

    /// One request from the client: check, seal, query; the reply callback answers it.
    fn request(&self, frame: &[u8], scratch: &mut [u8], link: &Arc<ClientLink>) {
        self.counters.add_in(1);
        let is_request = Frame::new_checked(frame).ok().filter(|f| !f.flags().contains(Flags::RESPONSE));
        let Some(request) = is_request else {
            self.counters.add_bad(1);
            return;
        };
        let (kind, seq) = (request.kind(), request.seq());
        let Ok(sealed) = seal_outbound(frame, scratch) else {
            self.counters.add_bad(1);
            return;
        };
        let outcome = Outcome { answered: AtomicBool::new(false), counters: self.counters.clone() };
        let (link, counters, max) = (link.clone(), self.counters.clone(), self.max);
        // A query that never leaves (the session is closing) drops its callback unanswered:
        // its outcome counts it dropped.
        let _ = self
            .session
            .get(self.key.clone())
            .payload(sealed.to_vec())
            .target(QueryTarget::BestMatching)
            .consolidation(ConsolidationMode::None)
            .timeout(self.timeout)
            .callback(move |reply: Reply| {
                let outcome = &outcome;
                if outcome.answered.swap(true, Ordering::Relaxed) {
                    return; // one response per call: a second replier is ignored
                }
                match reply.result() {
                    Ok(sample) => {
                        let bytes = sample.payload().to_bytes();
                        let ok = check_inbound(&bytes, max).is_ok()
                            && Frame::new_checked(&bytes[..]).is_ok_and(|f| {
                                f.flags().contains(Flags::RESPONSE) && f.kind() == kind && f.seq() == seq
                            });
                        if !ok {
                            counters.add_bad(1);
                            return;
                        }
                        let r = lock(&link.tx).send_frame_with(&bytes, Some(LOCAL_SEND_TIMEOUT), None);
                        match r {
                            Ok(()) => counters.add_out(1),
                            Err(_) => counters.add_dropped(1),
                        }
                    }
                    Err(_) => {
                        // The serving bridge has no server: the client's link is gone.
                        counters.add_dropped(1);
                        link.close();
                    }
                }
            })
            .wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_counts_an_unanswered_call_dropped() {
        let c = Arc::new(Counters::default());
        drop(Outcome { answered: AtomicBool::new(false), counters: c.clone() });
        drop(Outcome { answered: AtomicBool::new(true), counters: c.clone() });
        assert_eq!(c.snapshot().dropped, 1);
    }
}
