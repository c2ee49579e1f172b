//! # ember-ipc-linux
//!
//! Every Linux system call Ember makes lives here, on top of `ember-ipc-core`'s frames and
//! shared-memory layouts: pipes, FIFOs, POSIX and SysV message queues, Unix domain sockets,
//! signals, shared memory with futex wake-ups, the poller and a minimal D-Bus client. All of
//! them carry Ember frames (`ember_core::frame`) and allocate nothing on send or receive.
//!
//! The crate is `no_std` unless its `std` feature (on by default) is enabled; without it,
//! every transport is still offered over rustix's `OwnedFd` and `Errno`.
//!
//! Features: `std` (default: `std::io::Error` conversions, `Stdio` hand-off of pipe ends),
//! `log` or `defmt` (the crate logs rare events, such as a dead writer or a rejected frame,
//! through one of them; with neither it logs nothing).
//!
//! Available now: the message interface ([`transport`]: [`FrameSender`],
//! [`FrameReceiver`]); [`pipe`]s (stream and packet mode) and [`fifo`]s; POSIX ([`mq`]) and
//! SysV ([`sysvmq`]) message queues; [`signal`]s; Unix domain sockets ([`uds`]), TCP and
//! UDP ([`net`]), over the two socket endpoints of [`socket`]; the [`poll`]er and its
//! timers; [`shm`], shared-memory channels (SPSC ring, seqlock, broadcast ring) with futex
//! wake-ups and pidfd liveness; a [`dbus`] client; [`systemd`] integration without
//! libsystemd (readiness and watchdog notification, socket activation, the journal);
//! [`sys`], the raw system calls rustix lacks; [`cpu`], the CRC instructions the kernel
//! reports, for `no_std` programs; [`cancel`], the [`Canceler`] that ends blocking calls
//! (from a signal handler or another thread).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]
// `unsafe` is allowed only where a module says so: the shm view over a mapping.
#![deny(unsafe_code)]

pub use ember_core as core;

#[macro_use]
mod fmt;

pub mod cancel;
pub mod cpu;
pub mod dbus;
pub mod error;
pub mod fifo;
pub mod limits;
pub mod mq;
pub mod net;
pub mod pipe;
pub mod poll;
pub mod rpc;
pub mod shm;
pub mod signal;
pub mod socket;
mod stream;
pub mod sys;
pub mod systemd;
pub mod sysvmq;
pub mod transport;
pub mod uds;

pub use cancel::Canceler;
pub use error::{Error, Result};
pub use transport::{Endpoint, FrameReceiver, FrameSender, Integrity, TimedReceiver, TimedSender};
