//! A minimal D-Bus client without a heap: the connection to a bus over a Unix socket, SASL
//! `EXTERNAL` authentication, `Hello`, method calls with replies and timeouts, D-Bus errors,
//! signals, match rules, name ownership, and Unix fd passing. Messages are built into and
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
mod connection;
pub mod object;
mod serve;

pub use connection::{
    CallError, Connection, NAME_FLAG_ALLOW_REPLACEMENT, NAME_FLAG_DO_NOT_QUEUE, NAME_FLAG_REPLACE_EXISTING,
    OwnedCallError, Processed, RemoteError, RequestNameReply, bus,
};
