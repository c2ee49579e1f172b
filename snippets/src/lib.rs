//! Every ```rust snippet of the README and the docs, as doctests.
//!
//! `build.rs` collects them into one module per snippet; `cargo test -p ember-snippets
//! --doc` compiles each against Ember as a user's crate sees it (the dependencies of this
//! crate are `ember-ipc-core`, `ember-ipc-linux` and `serde`, nothing else) and runs those
//! not marked `no_run`.
#![forbid(unsafe_code)]

include!(concat!(env!("OUT_DIR"), "/snippets.rs"));

#[cfg(test)]
mod tests {
    /// The documentation keeps its examples: a README without Rust would make this crate
    /// test nothing.
    #[test]
    fn snippets_were_found() {
        assert!(super::COUNT >= 8, "only {} ```rust snippets found", super::COUNT);
    }
}
