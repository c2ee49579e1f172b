//! Per-route counters, shared by a route's worker and the status queryable.
//!
//! Every frame a route touches is counted exactly once on each side:
//!
//! ```text
//!  outbound:  local endpoint --in--> [bad | dropped] --out--> Zenoh
//!             `dropped` also counts records the local ring lost before the bridge read
//!             them (a lapped broadcast subscriber)
//!  inbound:   Zenoh --in--> [bad | dropped] --out--> local endpoint
//!             `lost` counts frames the sending bridge published that never arrived
//!             (gaps in its per-route sequence number, carried as a Zenoh attachment;
//!             across a restart of this bridge too: `resume`)
//! ```
//!
//! So, for a route from board A to board B: what B's local reader misses is exactly
//! `A.dropped + A.bad + B.lost + B.dropped + B.bad`.
//!
//! The counters are relaxed atomics: a status reply is a consistent-enough snapshot of
//! each number, not of all at one instant. Nothing here allocates except
//! [`Counters::snapshot`]'s caller building JSON.
//!
//! # Example
//!
//! ```
//! use ember_bridge::counters::Counters;
//!
//! let c = Counters::default();
//! c.add_in(3);
//! c.add_out(2);
//! c.add_dropped(1);
//! let s = c.snapshot();
//! assert_eq!((s.frames_in, s.frames_out, s.dropped, s.bad, s.lost), (3, 2, 1, 0, 0));
//! ```

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// The live counters of one route.
#[derive(Debug, Default)]
pub struct Counters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    dropped: AtomicU64,
    bad: AtomicU64,
    lost: AtomicU64,
    matched: AtomicBool,
}

/// A copy of a route's counters, as published in the status JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Frames taken from the source (local endpoint or Zenoh).
    #[serde(rename = "in")]
    pub frames_in: u64,
    /// Frames delivered to the destination (Zenoh or local endpoint).
    #[serde(rename = "out")]
    pub frames_out: u64,
    /// Frames lost for lack of room or over the rate limit, counted where it happened.
    pub dropped: u64,
    /// Frames that failed the checks (not one whole frame, bad checksum, unchecked payload
    /// from off the machine, too large): never delivered.
    pub bad: u64,
    /// Inbound: frames the remote bridge published that never arrived.
    pub lost: u64,
}

impl Counters {
    /// Adds to `in`.
    pub fn add_in(&self, n: u64) {
        self.frames_in.fetch_add(n, Relaxed);
    }
    /// Adds to `out`.
    pub fn add_out(&self, n: u64) {
        self.frames_out.fetch_add(n, Relaxed);
    }
    /// Adds to `dropped`.
    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }
    /// Adds to `bad`.
    pub fn add_bad(&self, n: u64) {
        self.bad.fetch_add(n, Relaxed);
    }
    /// Adds to `lost`.
    pub fn add_lost(&self, n: u64) {
        self.lost.fetch_add(n, Relaxed);
    }
    /// Records whether an outbound route's key has a subscriber (Zenoh's matching status).
    pub fn set_matched(&self, on: bool) {
        self.matched.store(on, Relaxed);
    }
    /// Whether an outbound route's key has a subscriber now.
    pub fn matched(&self) -> bool {
        self.matched.load(Relaxed)
    }
    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            frames_in: self.frames_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            bad: self.bad.load(Relaxed),
            lost: self.lost.load(Relaxed),
        }
    }
}

/// One route in the status JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// The route's channel.
    pub channel: String,
    /// `out` or `in` (a route); `serve` or `call` (an rpc service, `channel` its name).
    pub direction: String,
    /// The route's key expression.
    pub key: String,
    /// The local endpoint's kind (`spsc`, `broadcast`, `mq`, `unix_dgram`; `seqpacket` for an
    /// rpc service).
    pub local: String,
    /// Outbound: whether some subscriber matches the key now (frames published with none
    /// go nowhere); inbound: `None`.
    pub matched: Option<bool>,
    /// The counters.
    pub counters: Snapshot,
}

/// The whole status document published on `ember/{board}/@status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The board.
    pub board: String,
    /// The bridge's pid.
    pub pid: u32,
    /// Every route, in table order.
    pub routes: Vec<RouteStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_round_trips() {
        let s = Status {
            board: "a".into(),
            pid: 42,
            routes: vec![RouteStatus {
                channel: "imu".into(),
                direction: "out".into(),
                key: "ember/a/imu".into(),
                local: "spsc".into(),
                matched: Some(true),
                counters: Snapshot { frames_in: 5, frames_out: 4, dropped: 1, bad: 0, lost: 0 },
            }],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"in\":5"), "{json}");
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }
}
