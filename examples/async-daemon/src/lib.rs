//! The protocol of `async-daemon`: requests and replies as Ember messages on a Unix
//! seqpacket socket, one frame per message.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// A request from a client (kind `0x4153_0001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ember_core::message::Message)]
#[ember(kind = 0x4153_0001)]
pub enum Request {
    /// Add to the shared total.
    Add(i64),
    /// Read the total.
    Get,
}

/// The daemon's answer to every request, with the request's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ember_core::message::Message)]
#[ember(kind = 0x4153_0002)]
pub struct Reply {
    /// The shared total after the request.
    pub total: i64,
    /// Requests served so far, by every client.
    pub served: u64,
}

/// The largest frame either side sends.
pub const MAX_FRAME: usize = 256;
