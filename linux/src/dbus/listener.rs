//! Peer-to-peer D-Bus: a [`Listener`] on a Unix socket accepts connections without a bus
//! (the server's side of SASL `EXTERNAL`, fd passing agreed, no `Hello`), as sd-bus's and
//! zbus's servers and GDBus's `GDBusServer` do. Each accepted connection is a
//! [`ConnectionWith`] like any other: `process` serves objects on it, `call` calls the
//! peer. Clients connect with [`ConnectionWith::connect_peer_with`] (or
//! [`Connection::connect_peer`](super::Connection)), `gdbus call --address`, or any D-Bus
//! library's peer connection.
//!
//! ```text
//! client                                          Listener
//! \0AUTH EXTERNAL <hex of the uid in decimal>\r\n ->   uid == the socket's peer uid == ours?
//!                                                 <-   OK <guid>\r\n   (else REJECTED EXTERNAL)
//! NEGOTIATE_UNIX_FD\r\n                           ->
//!                                                 <-   AGREE_UNIX_FD\r\n
//! BEGIN\r\n                                       ->   (then D-Bus messages, both ways)
//! ```
//!
//! Only peers of the listener's own uid are accepted (GDBusServer's default).

use core::time::Duration;

use super::buffers::{Buffers, Inline};
use super::connection::{Connection, ConnectionWith};
use crate::error::{Error, Result};
use crate::uds::{UdsListener, UnixName};

/// A listening Unix socket for peer-to-peer D-Bus connections.
///
/// `Send` and `Sync`: an owned socket and plain data.
#[derive(Debug)]
pub struct Listener {
    listener: UdsListener,
    guid: [u8; 32],
    address: heapless::String<320>,
}

impl Listener {
    /// Listens at the first `unix:path=` or `unix:abstract=` of `address` (the socket file
    /// is removed on drop). Other entries are skipped; none is [`Error::InvalidName`].
    pub fn bind(address: &str) -> Result<Listener> {
        let a = super::address::unix_addresses(address).next().ok_or(Error::InvalidName)??;
        let listener = UdsListener::bind_stream(a.name())?;
        let mut bytes = [0u8; 16];
        super::auth::random(&mut bytes)?;
        let mut guid = [0u8; 32];
        super::auth::hex_encode(&bytes, &mut guid);
        let mut address = heapless::String::new();
        let (key, name) = match a.name() {
            UnixName::Path(p) => ("path", p.as_bytes()),
            UnixName::Abstract(n) => ("abstract", n),
        };
        let too_long = |_| Error::InvalidName;
        address.push_str("unix:").map_err(too_long)?;
        address.push_str(key).map_err(too_long)?;
        address.push('=').map_err(too_long)?;
        for &b in name {
            // Percent-encode all but the bytes the specification leaves as they are.
            if b.is_ascii_alphanumeric() || b"-_/.\\*".contains(&b) {
                address.push(b as char).map_err(too_long)?;
            } else {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for c in [b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]] {
                    address.push(c as char).map_err(too_long)?;
                }
            }
        }
        address.push_str(",guid=").map_err(too_long)?;
        address.push_str(core::str::from_utf8(&guid).unwrap_or("")).map_err(too_long)?;
        Ok(Listener { listener, guid, address })
    }

    /// The address clients connect to, with this server's GUID (`unix:path=...,guid=...`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The server's GUID (32 hex digits), sent to each client with `OK`.
    pub fn guid(&self) -> &str {
        core::str::from_utf8(&self.guid).unwrap_or("")
    }

    /// Waits up to `timeout` for a client, then authenticates it within what is left of
    /// `timeout`; the connection uses the caller's buffers. A client of another uid, or
    /// one that does not speak SASL, is [`Error::AuthRejected`] (and closed); no client
    /// in time is [`Error::TimedOut`].
    pub fn accept_with<B: Buffers>(&self, bufs: B, timeout: Duration) -> Result<ConnectionWith<B>> {
        let deadline = crate::poll::now().saturating_add(timeout);
        crate::poll::wait_fd(rustix::fd::AsFd::as_fd(&self.listener), rustix::event::PollFlags::IN, Some(deadline))?;
        let (sock, creds) = self.listener.accept_stream::<64>()?;
        ConnectionWith::accept_deadline(bufs, sock.into_fd(), creds.uid, &self.guid, deadline)
    }

    /// [`Listener::accept_with`] into a [`Connection`] with inline buffers.
    pub fn accept<const N: usize, const Q: usize>(&self, timeout: Duration) -> Result<Connection<N, Q>> {
        self.accept_with(Inline::<N, Q>::new(), timeout)
    }
}

/// The listening socket: poll it for readability, then [`Listener::accept_with`] (its wait
/// returns at once).
impl rustix::fd::AsFd for Listener {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.listener.as_fd()
    }
}
