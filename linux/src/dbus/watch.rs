//! Watching who owns a bus name: the current owner at start (`GetNameOwner`), then every
//! change (`NameOwnerChanged` for that one name, subscribed with an `arg0` match rule), in
//! the order the bus made them.
//!
//! # Protocol
//!
//! ```text
//!   start:  AddMatch  type='signal',sender='org.freedesktop.DBus',
//!                     interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='<name>'
//!           GetNameOwner('<name>') -> ':1.42'   (or NameHasNoOwner: no owner)
//!   then:   every NameOwnerChanged('<name>', old, new) the connection receives goes to
//!           update(); '' is "no owner"
//! ```
//!
//! The subscription is made before the question, so no change is missed. Changes the bus
//! made before it answered can still arrive after the answer was read (they were queued
//! while the call waited): the bus numbers its messages in the order it sends them, so
//! [`NameWatcher::update`] ignores a `NameOwnerChanged` numbered before the answer; the
//! owner never steps back to an older state.
//!
//! # Panics
//!
//! Nothing here panics.

use core::time::Duration;

use super::Buffers;
use super::connection::{CallError, ConnectionWith, bus};
use super::rule::MatchRule;
use crate::core::dbus::names::is_bus_name;
use crate::core::dbus::{Message, MessageType, Signature};
use crate::{Error, Result};

/// The longest bus name (D-Bus specification).
const MAX_NAME: usize = 255;

/// The error a bus answers `GetNameOwner` with for a name nobody owns.
const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";

/// A change of owner seen by [`NameWatcher::update`].
///
/// `Send` and `Sync`: borrowed strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameChange<'m> {
    /// The owner before (`None`: the name had none).
    pub old: Option<&'m str>,
    /// The owner now (`None`: the name was released, or its owner left the bus).
    pub new: Option<&'m str>,
}

/// The owner of one bus name, kept current from the bus's `NameOwnerChanged` signals (see
/// the [module docs](self)). It holds no connection: hand it each message the connection
/// receives (`update` ignores the others), and [`NameWatcher::stop`] it with the connection
/// it started on.
///
/// `Send` and `Sync`: plain bytes.
#[derive(Clone)]
pub struct NameWatcher {
    name: [u8; MAX_NAME],
    name_len: usize,
    owner: [u8; MAX_NAME],
    owner_len: usize,
    /// The serial of the bus's answer to `GetNameOwner`: older signals are stale.
    since: u32,
}

impl core::fmt::Debug for NameWatcher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NameWatcher").field("name", &self.name()).field("owner", &self.owner()).finish()
    }
}

impl NameWatcher {
    /// Subscribes to `name`'s changes on `conn` and asks the bus for its owner now, each
    /// call waiting up to `timeout`. A name that is not a valid bus name is
    /// [`Error::InvalidName`].
    pub fn start<B: Buffers>(
        conn: &mut ConnectionWith<B>,
        name: &str,
        timeout: Duration,
    ) -> core::result::Result<NameWatcher, CallError<'static>> {
        if !is_bus_name(name.as_bytes()) || name.len() > MAX_NAME {
            return Err(Error::InvalidName.into());
        }
        let mut w =
            NameWatcher { name: [0; MAX_NAME], name_len: name.len(), owner: [0; MAX_NAME], owner_len: 0, since: 0 };
        w.name[..name.len()].copy_from_slice(name.as_bytes());
        conn.add_match_rule(&w.rule(), timeout).map_err(CallError::local)?;
        let sig = Signature::new("s").map_err(|e| CallError::Local(e.into()))?;
        let reply = conn.call(
            bus::DESTINATION,
            bus::PATH,
            Some(bus::INTERFACE),
            "GetNameOwner",
            sig,
            |wr| wr.str(name),
            timeout,
        );
        match reply {
            Ok(m) => {
                w.since = m.serial();
                let owner: &str = m.body().next_as().map_err(|e| CallError::Local(e.into()))?;
                w.set_owner(owner);
            }
            Err(CallError::Remote { name: NAME_HAS_NO_OWNER, .. }) => {
                // The error reply's serial orders it like any bus message.
                w.since = conn.received().map_or(0, |m| m.serial());
            }
            Err(e) => return Err(CallError::Local(e.local())),
        }
        Ok(w)
    }

    /// The name watched.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_len]).unwrap_or("")
    }

    /// Its owner's unique name, or `None` while nobody owns it.
    pub fn owner(&self) -> Option<&str> {
        (self.owner_len > 0).then(|| core::str::from_utf8(&self.owner[..self.owner_len]).unwrap_or(""))
    }

    /// The match rule the watcher subscribed with.
    pub fn rule(&self) -> MatchRule<'_> {
        MatchRule::signal()
            .sender(bus::DESTINATION)
            .interface(bus::INTERFACE)
            .member("NameOwnerChanged")
            .path(bus::PATH)
            .arg(0, self.name())
    }

    /// Applies `m` if it is the bus's `NameOwnerChanged` for this name, newer than what the
    /// watcher knows: the change, and [`NameWatcher::owner`] follows it. Any other message
    /// (or a malformed or stale one) is `None` and changes nothing.
    pub fn update<'m>(&mut self, m: &Message<'m>) -> Option<NameChange<'m>> {
        let from_bus = m.message_type() == MessageType::Signal
            && m.sender() == Some(bus::DESTINATION)
            && m.interface() == Some(bus::INTERFACE)
            && m.member() == Some("NameOwnerChanged");
        // Serials wrap: "newer" is within half the space ahead.
        if !from_bus || (m.serial().wrapping_sub(self.since) as i32) <= 0 {
            return None;
        }
        let mut body = m.body();
        let (name, old, new): (&str, &str, &str) = (body.next_as().ok()?, body.next_as().ok()?, body.next_as().ok()?);
        if name != self.name() || new.len() > MAX_NAME {
            return None;
        }
        self.since = m.serial();
        self.set_owner(new);
        let some = |s: &'m str| (!s.is_empty()).then_some(s);
        Some(NameChange { old: some(old), new: some(new) })
    }

    /// Drops the subscription (`RemoveMatch`) on the connection it was started on.
    pub fn stop<B: Buffers>(self, conn: &mut ConnectionWith<B>, timeout: Duration) -> Result<()> {
        conn.remove_match_rule(&self.rule(), timeout).map_err(CallError::local)
    }

    fn set_owner(&mut self, owner: &str) {
        let n = owner.len().min(MAX_NAME);
        self.owner[..n].copy_from_slice(&owner.as_bytes()[..n]);
        self.owner_len = n;
    }
}
