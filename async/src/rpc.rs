//! Request/response ([`ember_linux::rpc`]) on an async runtime, over a seqpacket socket:
//! [`AsyncRpcClient::call`] and [`AsyncRpcServer::recv_request`] /
//! [`AsyncRpcServer::respond`].
//!
//! Both wrap the blocking crate's [`Client`] and [`Server`] and drive them with zero
//! timeouts (look at what the link holds, never wait), waiting for the socket's readiness
//! on the reactor in between. The reactor watches a duplicate of the socket's descriptor.
//!
//! Only a seqpacket (or connected datagram) [`PacketSocket`] link: it sends a frame whole
//! or not at all, so no wait is ever needed inside a send. (A stream link would have to
//! finish a partly written frame inside the blocking crate's send, and the shared-memory
//! link wakes through a futex that no reactor watches.)
//!
//! Cancellation: a dropped `call` future that had sent its request gives the request up
//! ([`Client::cancel`]): its slot is free again and a late response is dropped (counted in
//! [`Client::strays`]). One dropped before it sent sent nothing. A dropped
//! `recv_request` consumed nothing; a dropped `respond` sent nothing (the request can be
//! answered again).

use core::fmt;
use core::future::poll_fn;
use core::time::Duration;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ember_linux::core::Flags;
use ember_linux::poll::Deadline;
use ember_linux::rpc::{CallError, Client, Failure, OwnedCallError, Request, Server, Ticket};
use ember_linux::socket::PacketSocket;
use ember_linux::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{AsyncEndpoint, Direction, Driver, NoRest, sealed};

/// A duplicate of a link's descriptor, for the reactor to watch. Sealed.
///
/// `Send` and `Sync`: an owned descriptor.
#[derive(Debug)]
pub struct LinkFd(OwnedFd);

impl AsFd for LinkFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl sealed::Sealed for LinkFd {}

impl AsyncEndpoint for LinkFd {
    type Rest = NoRest;
}

fn now() -> Deadline<'static> {
    Deadline::after(Some(Duration::ZERO))
}

fn watch<D: Driver<LinkFd>>(link: &PacketSocket) -> Result<D> {
    let dup = link.as_fd().try_clone_to_owned().map_err(|e| match rustix::io::Errno::from_io_error(&e) {
        Some(errno) => Error::from(errno),
        None => Error::Os(rustix::io::Errno::IO),
    })?;
    D::register(LinkFd(dup))
}

/// Gives a request up if the future waiting for it is dropped.
struct CancelOnDrop<'c, const SLOTS: usize, const BUF: usize, const RX: usize> {
    client: &'c mut Client<PacketSocket, SLOTS, BUF, RX>,
    ticket: Option<Ticket>,
}

impl<const SLOTS: usize, const BUF: usize, const RX: usize> Drop for CancelOnDrop<'_, SLOTS, BUF, RX> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.client.cancel(t);
        }
    }
}

/// An RPC client on an async runtime: up to `SLOTS` requests in flight, responses of up
/// to `BUF` bytes, a receive buffer of `RX` bytes (see [`Client`]). Use it as
/// [`crate::tokio::AsyncRpcClient`] or [`crate::async_io::AsyncRpcClient`].
///
/// `Send` and `Sync`: the client and the watch are.
pub struct AsyncRpcClient<D: Driver<LinkFd>, const SLOTS: usize, const BUF: usize, const RX: usize> {
    client: Client<PacketSocket, SLOTS, BUF, RX>,
    watch: D,
}

impl<D: Driver<LinkFd>, const SLOTS: usize, const BUF: usize, const RX: usize> fmt::Debug
    for AsyncRpcClient<D, SLOTS, BUF, RX>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRpcClient").field("client", &self.client).field("watch", self.watch.get_ref()).finish()
    }
}

impl<D: Driver<LinkFd>, const SLOTS: usize, const BUF: usize, const RX: usize> AsyncRpcClient<D, SLOTS, BUF, RX> {
    /// A client over a connected seqpacket socket ([`Client::new`]'s checks).
    pub fn new(link: PacketSocket) -> Result<Self> {
        let watch = watch(&link)?;
        Ok(AsyncRpcClient { client: Client::new(link)?, watch })
    }

    /// The blocking client (its counters; its zero-timeout calls are fine from a task).
    pub fn client(&mut self) -> &mut Client<PacketSocket, SLOTS, BUF, RX> {
        &mut self.client
    }

    /// Sends a request of `kind` carrying `req` and waits for its response, decoded as a
    /// `U`. Cancellation: see the [module docs](self). A remote error is
    /// [`OwnedCallError::Remote`].
    pub async fn call<T: Serialize + ?Sized, U: DeserializeOwned>(
        &mut self,
        kind: u32,
        req: &T,
    ) -> core::result::Result<U, OwnedCallError> {
        let AsyncRpcClient { client, watch } = self;
        let ticket = poll_fn(|cx| {
            watch.poll_io(cx, Direction::Write, |_| match client.start_until(kind, req, &mut now()) {
                // The socket's send buffer is full: wait for room.
                Err(Error::TimedOut) => Err(Error::WouldBlock),
                // Every slot in flight (tickets started through `client()`).
                Err(Error::WouldBlock) => Ok(Err(Error::WouldBlock)),
                r => Ok(r),
            })
        })
        .await??;
        let mut guard = CancelOnDrop { client, ticket: Some(ticket) };
        let r = poll_fn(|cx| {
            let CancelOnDrop { client, .. } = &mut guard;
            watch.poll_io(cx, Direction::Read, |_| match client.wait_until::<U>(ticket, &mut now()) {
                Err(CallError::Local(Error::TimedOut)) => Err(Error::WouldBlock),
                r => Ok(r.map_err(CallError::into_owned)),
            })
        })
        .await;
        // Answered (or given up by the blocking client): nothing to cancel.
        guard.ticket = None;
        r?
    }
}

/// An RPC server on an async runtime, receiving requests of up to `RX` bytes and sending
/// responses of up to `TX` bytes (see [`Server`]). Use it as
/// [`crate::tokio::AsyncRpcServer`] or [`crate::async_io::AsyncRpcServer`].
///
/// `Send` and `Sync`: the server, its buffer and the watch are.
pub struct AsyncRpcServer<D: Driver<LinkFd>, const RX: usize, const TX: usize> {
    server: Server<PacketSocket, RX, TX>,
    watch: D,
    tx: [u8; TX],
}

impl<D: Driver<LinkFd>, const RX: usize, const TX: usize> fmt::Debug for AsyncRpcServer<D, RX, TX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncRpcServer").field("server", &self.server).field("watch", self.watch.get_ref()).finish()
    }
}

impl<D: Driver<LinkFd>, const RX: usize, const TX: usize> AsyncRpcServer<D, RX, TX> {
    /// A server over a connected seqpacket socket ([`Server::new`]'s checks).
    pub fn new(link: PacketSocket) -> Result<Self> {
        let watch = watch(&link)?;
        Ok(AsyncRpcServer { server: Server::new(link)?, watch, tx: [0; TX] })
    }

    /// The blocking server (its counters).
    pub fn server(&mut self) -> &mut Server<PacketSocket, RX, TX> {
        &mut self.server
    }

    /// Waits for the next request; its payload is [`AsyncRpcServer::payload`] until the
    /// next receive. End of stream (the client hung up) is [`Error::PeerGone`].
    pub async fn recv_request(&mut self) -> Result<Request> {
        let AsyncRpcServer { server, watch, .. } = self;
        poll_fn(|cx| {
            watch.poll_io(cx, Direction::Read, |_| match server.recv_request_until(&mut now()) {
                Err(Error::TimedOut) => Err(Error::WouldBlock),
                r => r,
            })
        })
        .await
    }

    /// The payload of the request received last.
    pub fn payload(&self, r: &Request) -> &[u8] {
        self.server.payload(r)
    }

    /// Sends the response `msg` to request `seq` of `kind`, waiting for room.
    pub async fn respond<T: Serialize + ?Sized>(&mut self, kind: u32, seq: u32, msg: &T) -> Result<()> {
        let n = ember_linux::core::message::encode_with(Flags::RESPONSE, kind, seq, msg, &mut self.tx)?.len();
        self.send(n).await
    }

    /// Sends an error response to request `seq` of `kind`.
    pub async fn respond_error(&mut self, kind: u32, seq: u32, failure: &Failure) -> Result<()> {
        let msg = (failure.code, failure.message());
        let flags = Flags::RESPONSE | Flags::ERROR;
        let n = ember_linux::core::message::encode_with(flags, kind, seq, &msg, &mut self.tx)?.len();
        self.send(n).await
    }

    async fn send(&mut self, n: usize) -> Result<()> {
        let AsyncRpcServer { server, watch, tx } = self;
        let frame = &tx[..n];
        poll_fn(|cx| {
            watch.poll_io(cx, Direction::Write, |_| {
                match ember_linux::rpc::Link::send_frame_until(server.link(), frame, &mut now()) {
                    Err(Error::TimedOut) => Err(Error::WouldBlock),
                    r => r,
                }
            })
        })
        .await
    }
}
