//! The sensor daemon's protocol, shared by the daemon, its clients and its tests: the
//! object names, the fingerprints, the message kinds and their payloads (postcard, as every
//! Ember payload; `examples/sensor-client` decodes them in C).
//!
//! | Where | What |
//! |---|---|
//! | seqlock `/<name>-reading` | the latest [`Reading`], as a frame of kind [`KIND_READING`] |
//! | broadcast ring `/<name>-events` | every [`Event`], frames of kind [`KIND_EVENT`] |
//! | Unix seqpacket socket | commands ([`CMD_GET`], [`CMD_SET_INTERVAL`], [`CMD_RAISE`]) and replies |
//! | POSIX message queue `/<name>-commands` | one-way commands ([`CMD_SET_INTERVAL`], [`CMD_RAISE`]): no reply |
//! | D-Bus (when a bus is there) | signal `org.ember.Sensor.Event(qis)` at `/org/ember/Sensor`, method `GetReading() -> (iu)` |

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// Type fingerprint of the reading seqlock.
pub const READING_FP: u64 = 0x5E45_0000_0000_0001;
/// Type fingerprint of the event ring.
pub const EVENTS_FP: u64 = 0x5E45_0000_0000_0002;
/// Bytes of the seqlock's value area (a frame of a [`Reading`] is about 35).
pub const READING_CAPACITY: usize = 64;
/// Bytes of the event ring.
pub const EVENTS_CAPACITY: usize = 64 * 1024;
/// Messages the command queue holds (at most `/proc/sys/fs/mqueue/msg_max`, 10 by default).
pub const COMMANDS_DEPTH: usize = 8;
/// Largest command frame on the queue.
pub const COMMANDS_MSG_SIZE: usize = 256;

/// A reading (frame kind [`KIND_READING`], sequence = [`Reading::count`]).
pub const KIND_READING: u32 = 0x10;
/// An event (frame kind [`KIND_EVENT`], sequence = event number).
pub const KIND_EVENT: u32 = 0x11;
/// Command: reply with the latest reading (empty payload).
pub const CMD_GET: u32 = 1;
/// Command: set the sampling interval (payload: `u32` milliseconds); replied with
/// [`KIND_ACK`].
pub const CMD_SET_INTERVAL: u32 = 2;
/// Command: raise an event with this text (payload: `&str`); replied with [`KIND_ACK`].
pub const CMD_RAISE: u32 = 3;
/// Reply: done (payload: the interval in milliseconds, `u32`).
pub const KIND_ACK: u32 = 0x20;
/// Reply: refused (payload: the reason, `&str`).
pub const KIND_ERROR: u32 = 0x21;

/// Event: the reading went above the threshold.
pub const EVENT_ABOVE: u16 = 1;
/// Event: the reading went back below the threshold.
pub const EVENT_BELOW: u16 = 2;
/// Event: the configuration was reloaded (`SIGHUP`).
pub const EVENT_RELOADED: u16 = 3;
/// Event: raised by a client's [`CMD_RAISE`].
pub const EVENT_RAISED: u16 = 4;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// Temperature in thousandths of a degree Celsius.
    pub millicelsius: i32,
    /// Readings taken since the daemon started (1 for the first).
    pub count: u32,
}

/// Something that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event<'a> {
    /// `EVENT_*`.
    pub code: u16,
    /// The reading at the time (millicelsius), or the new interval.
    pub value: i32,
    /// A few words for humans.
    pub text: &'a str,
}

/// The daemon's settings: defaults, the config file (`key = value` lines), then SIGHUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Sampling interval.
    pub interval_ms: u32,
    /// Events fire when the reading crosses this.
    pub threshold_mc: i32,
    /// Centre of the simulated signal (when no `--source` file is read).
    pub base_mc: i32,
}

impl Default for Config {
    fn default() -> Config {
        Config { interval_ms: 100, threshold_mc: 22_000, base_mc: 21_000 }
    }
}

impl Config {
    /// This configuration with the settings of `text` applied: `interval_ms`,
    /// `threshold_mc`, `base_mc`; `#` starts a comment. An error names the line and leaves
    /// nothing applied.
    pub fn apply(&self, text: &str) -> Result<Config, String> {
        let mut c = *self;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: not `key = value`", i + 1))?;
            let (k, v) = (k.trim(), v.trim());
            let bad = |what: &str| format!("line {}: {k}: `{v}` is not {what}", i + 1);
            match k {
                "interval_ms" => match v.parse::<u32>() {
                    Ok(ms) if (1..=3_600_000).contains(&ms) => c.interval_ms = ms,
                    _ => return Err(bad("1 to 3600000 milliseconds")),
                },
                "threshold_mc" => c.threshold_mc = v.parse().map_err(|_| bad("a whole number of millicelsius"))?,
                "base_mc" => c.base_mc = v.parse().map_err(|_| bad("a whole number of millicelsius"))?,
                _ => return Err(format!("line {}: unknown setting `{k}`", i + 1)),
            }
        }
        Ok(c)
    }
}

/// The simulated sensor: `base` plus a triangle wave of +/- 1.5 degrees over 20 samples.
pub fn simulated(base_mc: i32, count: u32) -> i32 {
    let phase = (count % 20) as i32;
    let tri = if phase < 10 { phase } else { 20 - phase };
    base_mc - 1_500 + tri * 300
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lines() {
        let c = Config::default().apply("# comment\ninterval_ms = 50\n\nthreshold_mc=-5000 # cold\n").unwrap();
        assert_eq!(c, Config { interval_ms: 50, threshold_mc: -5000, base_mc: 21_000 });
        assert_eq!(
            Config::default().apply("interval_ms = 0").unwrap_err(),
            "line 1: interval_ms: `0` is not 1 to 3600000 milliseconds"
        );
        assert!(Config::default().apply("colour = blue").unwrap_err().contains("unknown setting"));
        assert!(Config::default().apply("just words").unwrap_err().contains("key = value"));
    }

    #[test]
    fn the_wave_crosses_the_default_threshold() {
        let v: Vec<i32> = (0..20).map(|n| simulated(21_000, n)).collect();
        assert_eq!(v.iter().copied().min(), Some(19_500));
        assert_eq!(v.iter().copied().max(), Some(22_500));
    }
}
