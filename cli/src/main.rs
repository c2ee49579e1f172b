//! `emberctl`: the command-line face of Ember (the `ember-ipc-cli` library is its code).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ember_ipc_cli::run(&args)
}
