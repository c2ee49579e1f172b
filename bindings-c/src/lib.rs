//! # ember-ipc-c
//!
//! The C ABI over `ember-ipc-linux`: `libember.a`, `libember.so` and the cbindgen-generated
//! `include/ember.h`.
//!
//! Conventions (docs/c-api.md):
//! - Every symbol and type starts with `ember_`, every constant with `EMBER_`.
//! - Objects are opaque handles made by `ember_<object>_new` (or `_from_fd`) and released
//!   by `ember_<object>_free` (which accepts NULL).
//! - Every function returns an `int`: `EMBER_OK` (0) or a negative `EMBER_E*` code;
//!   outputs go through pointers. `ember_strerror` names a code; after `EMBER_EOS`,
//!   `ember_last_os_error` gives the `errno`.
//! - A NULL or misaligned pointer argument is `EMBER_EINVAL`, in release builds too.
//! - No panic crosses the boundary: every export runs inside `catch_unwind`, and a panic
//!   (a bug in Ember) is `EMBER_EINTERNAL`.
//! - Thread safety is stated on each function. Handles are not internally locked: one
//!   thread at a time per handle, like a `FILE*` used without `flockfile`.
//! - No heap allocation on a send or receive path; `_new` functions allocate their handle.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]
// C names: `ember_pipe_writer`, not `EmberPipeWriter`.
#![allow(non_camel_case_types)]

pub mod accumulator;
pub mod cancel;
pub mod dbus;
pub mod error;
pub mod fifo;
pub mod frame;
pub mod mq;
pub mod pipe;
pub mod poll;
pub mod rpc;
pub mod shm;
pub mod signal;
pub mod sync;
pub mod systemd;
pub mod uds;
pub mod version;

pub use error::{ember_last_os_error, ember_status, ember_strerror};
