//! # ember-linux
//!
//! Every Linux system call Ember makes lives here, on top of `ember-core`'s frames and
//! shared-memory layouts: pipes, FIFOs, POSIX and SysV message queues, Unix domain sockets,
//! signals, shared memory with futex wake-ups, the poller and a minimal D-Bus client. All of
//! them carry Ember frames (`ember_core::frame`) and allocate nothing on send or receive.
//!
//! The crate is `no_std` unless its `std` feature (on by default) is enabled; without it,
//! every transport is still offered over rustix's `OwnedFd` and `Errno`.
//!
//! This release re-exports the core codec; the transports arrive with the kernel-transport,
//! shared-memory and D-Bus work (see the repository's issues).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![forbid(unsafe_code)]

pub use ember_core as core;
