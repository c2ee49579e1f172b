//! Every ```rust snippet of the README and the docs, as doctests.
//!
//! `build.rs` collects them into one module per snippet; `cargo test -p ember-snippets
//! --doc` compiles each against Ember as a user's crate sees it (the dependencies of this
//! crate are `ember-ipc-core`, `ember-ipc-linux` with its `log` feature, `serde` and `log`,
//! nothing else) and runs those
//! not marked `no_run`.
#![forbid(unsafe_code)]

include!(concat!(env!("OUT_DIR"), "/snippets.rs"));

// The documentation keeps its examples: a README without Rust would make this crate test
// nothing, so fewer snippets than today is a build error.
const _: () = assert!(COUNT >= 7, "the docs lost their ```rust snippets");
