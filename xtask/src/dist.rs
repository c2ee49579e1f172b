//! `cargo xtask dist [--board <name>] [--prefix <dir>]`: the C library installed under a
//! prefix, as a C build system wants it:
//!
//! ```text
//! <prefix>/include/ember.h
//! <prefix>/lib/libember.a
//! <prefix>/lib/libember.so.0.1.0, libember.so.0 -> it, libember.so -> libember.so.0  (host only)
//! <prefix>/lib/pkgconfig/ember.pc
//! ```
//!
//! For the host by default, in `target/dist/host`; for a board of `targets/boards.toml`
//! (static only: the boards' Rust targets link `+crt-static`, which has no shared
//! libraries), in `target/dist/<board>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_qemu::host::run;

/// What Rust's standard library needs from libc, for static links.
const PRIVATE_LIBS: &str = "-lpthread -ldl -lm -lrt";

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to).map(drop).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))
}

fn symlink(target: &str, link: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("{}: {e}", link.display()))
}

/// Builds the release library and installs it under the prefix; returns the prefix.
pub fn dist(args: &[String]) -> Result<PathBuf, String> {
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut board = None;
    let mut prefix = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => board = Some(it.next().ok_or("--board needs a name")?.clone()),
            "--prefix" => prefix = Some(PathBuf::from(it.next().ok_or("--prefix needs a directory")?)),
            other => return Err(format!("dist: unknown argument `{other}`")),
        }
    }
    let (built, default_prefix, shared) = match &board {
        Some(name) => {
            let b = crate::boards::named(&["--board".to_string(), name.clone()])?;
            ember_qemu::build::ensure_tools(&b)?;
            run(ember_qemu::build::cargo(&root, &b, "build").args(["--release", "-p", "ember-ipc-c"]))?;
            (
                ember_qemu::build::target_dir(&root).join(&b.triple).join("release"),
                root.join("target/dist").join(name),
                false,
            )
        }
        None => {
            run(crate::cargo().args(["build", "--release", "-p", "ember-ipc-c"]))?;
            // Where cargo put it: $CARGO_TARGET_DIR when set (relative to the workspace
            // root, as cargo reads it), else target/.
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
            (target.join("release"), root.join("target/dist/host"), true)
        }
    };
    let prefix = prefix.unwrap_or(default_prefix);
    let prefix = if prefix.is_absolute() { prefix } else { root.join(prefix) };
    let (inc, lib, pc) = (prefix.join("include"), prefix.join("lib"), prefix.join("lib/pkgconfig"));
    for d in [&inc, &lib, &pc] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    copy(&root.join(crate::HEADER), &inc.join("ember.h"))?;
    copy(&built.join("libember.a"), &lib.join("libember.a"))?;
    let version = env!("CARGO_PKG_VERSION");
    if shared {
        let real = format!("libember.so.{version}");
        copy(&built.join("libember.so"), &lib.join(&real))?;
        symlink(&real, &lib.join("libember.so.0"))?;
        symlink("libember.so.0", &lib.join("libember.so"))?;
    }
    let pc_text = format!(
        "prefix={}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n\nName: ember\n\
         Description: Ember IPC middleware for embedded Linux (C ABI)\nVersion: {version}\n\
         Cflags: -I${{includedir}}\nLibs: -L${{libdir}} -lember\nLibs.private: {PRIVATE_LIBS}\n",
        prefix.display()
    );
    std::fs::write(pc.join("ember.pc"), pc_text).map_err(|e| e.to_string())?;
    // Check what was installed: pkg-config reads it back.
    if Command::new("pkg-config").arg("--version").output().is_ok() {
        let out = Command::new("pkg-config")
            .args(["--cflags", "--libs", "ember"])
            .env("PKG_CONFIG_PATH", &pc)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("pkg-config cannot read {}/ember.pc", pc.display()));
        }
    }
    Ok(prefix)
}
