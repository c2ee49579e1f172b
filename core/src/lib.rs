//! # ember-ipc-core
//!
//! The portable heart of Ember, the IPC middleware for embedded Linux: pure bytes and
//! atomics, no syscalls, no heap. It builds for any target with `core`, including bare-metal
//! `thumbv7em-none-eabihf`.
//!
//! - [`frame`]: the one wire format every Ember transport carries (a 24-byte header with
//!   kind, sequence number, length and CRC-32C, then a postcard payload), described in
//!   `docs/wire-format.md`.
//! - [`message`]: typed messages (serde + postcard) encoded into and decoded from caller
//!   buffers, borrowing where the type borrows.
//! - [`accumulator`]: reassembles frames from a byte stream in a fixed-size buffer,
//!   surviving partial reads, garbage and oversized or corrupt frames.
//! - [`crc32c`]: CRC-32C with the x86-64, AArch64 and RISC-V Zbc instructions where the CPU
//!   has them.
//! - [`dbus`]: D-Bus marshalling: names, signatures, values in either byte order, and
//!   messages built into and parsed from caller buffers, every limit of the specification
//!   checked; typed arguments ([`dbus::typed`]): Rust types whose D-Bus signatures are
//!   known at compile time, read back borrowed.
//! - [`shm`]: shared-memory layouts and their lock-free protocols (seqlock, SPSC ring,
//!   broadcast ring), safe against a hostile peer; `ember-ipc-linux` maps the segments.
//!
//! Later layers (`ember-ipc-linux`, `ember-ipc-c`) build every transport on these.
//!
//! ## Features
//!
//! - `std`: links `std` only for its run-time CPU feature detection, so [`crc32c`] uses the
//!   Arm CRC extension and RISC-V Zbc where the CPU has them without a `-C target-cpu`
//!   (`ember-ipc-linux` turns it on). Nothing else changes: no heap, no other syscall.
//! - `defmt`: derives `defmt::Format` on the public types, for logging on targets that use
//!   defmt. The crate never defines a global logger; the application provides one.
//!
//! ## Guarantees
//!
//! No function in this crate allocates (there is no `alloc` in it), and none panics on
//! untrusted input: parsers return [`Error`].
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

#[cfg(any(test, feature = "std"))]
extern crate std;

// The derives name `::ember_core::...`; this makes that path work inside the crate too.
extern crate self as ember_core;

pub mod accumulator;
pub mod crc32c;
pub mod dbus;
pub mod error;
pub mod frame;
pub mod message;
pub mod shm;

pub use accumulator::{FeedResult, FrameAccumulator};
pub use error::{Error, Result};
pub use frame::{Flags, Frame, FrameRepr, HEADER_LEN, Integrity};
pub use message::{Message, decode, encode, max_frame_len};
