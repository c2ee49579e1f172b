//! Building for a board: cargo with the board's linker, flags and runner, into a target
//! directory of the boards' own (`target/boards`, so a board build never waits on, or
//! invalidates, the host's).

use crate::board::Board;
use crate::host;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The boards' cargo target directory under the workspace root.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join("target/boards")
}

/// Where a board's logs, kernel and initramfs are kept.
pub fn board_dir(root: &Path, board: &Board) -> PathBuf {
    target_dir(root).join(&board.name)
}

/// Installs what building for and emulating `board` needs (its Debian packages and
/// rustup target), if missing.
pub fn ensure_tools(board: &Board) -> Result<(), String> {
    let mut packages: Vec<&str> = board.host_packages.iter().map(String::as_str).collect();
    packages.push("cpio");
    host::ensure_apt(&packages)?;
    host::ensure_target("stable", &board.triple)
}

/// `cargo <sub> --target <triple>` for the board: its linker, rustflags and qemu-user
/// runner, static binaries without debug info (line numbers still show in panics).
pub fn cargo(root: &Path, board: &Board, sub: &str) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root).arg(sub).args(["--target", &board.triple]);
    c.envs(board.cargo_env())
        .env("CARGO_TARGET_DIR", target_dir(root))
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
        // Board builds are mostly from scratch (CI): incremental state would only cost.
        .env("CARGO_INCREMENTAL", "0")
        // The multi-process tests re-execute themselves under the same emulator.
        .env("EMBER_TEST_RUNNER", &board.qemu_user);
    c
}

/// Builds `ember-init` (the guest's `/init`) for the board; returns its path.
pub fn init(root: &Path, board: &Board) -> Result<PathBuf, String> {
    host::run(cargo(root, board, "build").args(["-p", "ember-qemu", "--bin", "ember-init", "--no-default-features"]))?;
    Ok(artifact(root, board, "ember-init"))
}

/// A binary of the board's dev build.
pub fn artifact(root: &Path, board: &Board, name: &str) -> PathBuf {
    target_dir(root).join(&board.triple).join("debug").join(name)
}
