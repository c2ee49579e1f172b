//! A minimal D-Bus client without a heap: the connection to a bus over a Unix socket (SASL
//! `EXTERNAL`) or TCP (`DBUS_COOKIE_SHA1` or `ANONYMOUS`), `Hello`, method calls with
//! replies and timeouts, D-Bus errors, signals, match rules, name ownership, Unix fd
//! passing, and peer-to-peer connections without a bus ([`Listener`],
//! [`ConnectionWith::connect_peer_with`]). Messages are built into and
//! parsed from the connection's own fixed buffers with `ember_core::dbus`.
//!
//! ```no_run
//! # fn main() -> Result<(), ember_linux::Error> {
//! use core::time::Duration;
//! use ember_linux::dbus::{Connection, bus};
//! use ember_core::dbus::Signature;
//!
//! let mut bus: Box<Connection> = Box::new(Connection::session()?);
//! let reply = bus
//!     .call(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "ListNames", Signature::EMPTY, |_| Ok(()), Duration::from_secs(1))
//!     .map_err(|e| e.local())?;
//! # Ok(())
//! # }
//! ```

pub mod address;
mod auth;
pub mod buffers;
mod connection;
pub mod listener;
pub mod object;
mod queue;
pub mod rule;
mod serve;
pub mod watch;

#[cfg(feature = "std")]
pub use buffers::Heap;
pub use buffers::{Borrowed, Buffers, Inline};
pub use connection::{
    CallError, Connection, ConnectionWith, MAX_CALLS_IN_FLIGHT, NAME_FLAG_ALLOW_REPLACEMENT, NAME_FLAG_DO_NOT_QUEUE,
    NAME_FLAG_REPLACE_EXISTING, OwnedCallError, PendingCall, Poll, Processed, Refused, RemoteError, RequestNameReply,
    bus,
};
pub use listener::Listener;
pub use object::{ObjectTable, Token};
pub use rule::MatchRule;
pub use watch::NameWatcher;
