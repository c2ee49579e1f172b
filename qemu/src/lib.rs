//! # ember-qemu
//!
//! The harness that proves Ember on the boards before anything is flashed. It reads the
//! board table in `targets/boards.toml` ([`board`]), fetches each board's Debian kernel
//! (and, where the board carries it, `dbus-daemon`) ([`fetch`]), packs the static test
//! binaries into an initramfs ([`cpio`], [`initramfs`]) whose `/init` is `ember-init`,
//! boots it under `qemu-system-*` with a timeout and reads the verdict from the serial
//! console ([`boot`], [`protocol`]).
//!
//! `cargo xtask qemu --board <name>` drives it; `docs/boards.md` explains the tiers.
#![forbid(unsafe_code)]

pub mod protocol;

#[cfg(feature = "harness")]
pub mod board;
#[cfg(feature = "harness")]
pub mod boot;
#[cfg(feature = "harness")]
pub mod build;
#[cfg(feature = "harness")]
pub mod cpio;
#[cfg(feature = "harness")]
pub mod fetch;
#[cfg(feature = "harness")]
pub mod host;
#[cfg(feature = "harness")]
pub mod initramfs;
