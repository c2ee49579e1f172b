//! # ember-c
//!
//! The C ABI over `ember-linux`: `libember.a`, `libember.so` and the cbindgen-generated
//! `ember.h`, with opaque handles, `ember_<object>_new`/`_free` pairs and negative
//! `EMBER_E*` error codes. A C program on the board uses it to exchange frames with a Rust
//! Ember process byte for byte.
//!
//! The exports arrive with the C ABI issue, once the Rust API they wrap has settled.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![forbid(unsafe_code)]
