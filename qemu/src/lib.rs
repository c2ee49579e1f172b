//! # ember-qemu
//!
//! The harness that proves Ember on the boards before anything is flashed: it reads the
//! board table in `targets/boards.toml`, builds static test binaries for the board's target,
//! packs them into an initramfs, boots the board's real Linux kernel under `qemu-system-*`
//! and reads the verdict line from the serial console.
//!
//! The harness itself arrives with the boards issue; this crate holds its place in the
//! workspace.
#![forbid(unsafe_code)]
