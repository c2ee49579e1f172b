//! `cargo xtask dist [--board <name>] [--prefix <dir>] [--destdir <dir>]`: Ember installed
//! under a prefix, as a C build system and a distribution want it:
//!
//! ```text
//! <prefix>/bin/emberctl
//! <prefix>/include/ember.h
//! <prefix>/lib/libember.a
//! <prefix>/lib/libember.so.0.1.0, libember.so.0 -> it, libember.so -> libember.so.0  (host only)
//! <prefix>/lib/pkgconfig/ember.pc                      (from bindings-c/ember.pc.in)
//! <prefix>/share/bash-completion/completions/emberctl  (cli/share/emberctl.bash)
//! <prefix>/share/zsh/site-functions/_emberctl          (cli/share/_emberctl)
//! <prefix>/share/fish/vendor_completions.d/emberctl.fish
//! <prefix>/share/man/man1/emberctl.1
//! ```
//!
//! For the host by default, in `target/dist/host`; for a board of `targets/boards.toml`
//! (static only: the boards' Rust targets link `+crt-static`, which has no shared
//! libraries), in `target/dist/<board>`. With `--destdir`, the files go to
//! `<destdir>/<prefix>` while `ember.pc` names `<prefix>`: a package's staging install
//! (`--prefix /usr --destdir <staging>`), as `make DESTDIR=` does.
//!
//! `packaging/dist-files.txt` is this layout, one path a line; the Yocto recipe and the
//! Buildroot package in `packaging/` install the same files, and `cargo xtask test` checks
//! all three against a staging install ([`crate::packaging`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_qemu::host::run;

/// The pkg-config template (`@PREFIX@`, `@LIBDIR@`, `@INCLUDEDIR@`, `@VERSION@`), which the
/// recipes fill in too (with their own library directory: `lib64` on some multilib
/// distributions).
pub const PC_TEMPLATE: &str = "bindings-c/ember.pc.in";

/// The generated shell completions and man page (`cargo xtask completions`), and where
/// each is installed under the prefix; `args` is the `emberctl` command that prints it.
pub const SHARE: [(&str, &str, &[&str]); 4] = [
    ("cli/share/emberctl.bash", "share/bash-completion/completions/emberctl", &["completions", "bash"]),
    ("cli/share/_emberctl", "share/zsh/site-functions/_emberctl", &["completions", "zsh"]),
    ("cli/share/emberctl.fish", "share/fish/vendor_completions.d/emberctl.fish", &["completions", "fish"]),
    ("cli/share/emberctl.1", "share/man/man1/emberctl.1", &["man"]),
];

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::copy(from, to).map(drop).map_err(|e| format!("{} -> {}: {e}", from.display(), to.display()))
}

fn symlink(target: &str, link: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link).map_err(|e| format!("{}: {e}", link.display()))
}

/// `ember.pc` for `prefix`.
pub fn pc_text(root: &Path, prefix: &str) -> Result<String, String> {
    let t = std::fs::read_to_string(root.join(PC_TEMPLATE)).map_err(|e| format!("{PC_TEMPLATE}: {e}"))?;
    Ok(t.replace("@PREFIX@", prefix)
        .replace("@LIBDIR@", "${prefix}/lib")
        .replace("@INCLUDEDIR@", "${prefix}/include")
        .replace("@VERSION@", env!("CARGO_PKG_VERSION")))
}

/// The host's cargo output directory: $CARGO_TARGET_DIR when set (relative to the
/// workspace root, as cargo reads it), else target/.
pub fn host_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d))
}

/// Builds the release library and `emberctl` and installs them under the prefix; returns
/// the directory the prefix landed in (`<destdir>/<prefix>`, or the prefix).
pub fn dist(args: &[String]) -> Result<PathBuf, String> {
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut board = None;
    let mut prefix = None;
    let mut destdir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => board = Some(it.next().ok_or("--board needs a name")?.clone()),
            "--prefix" => prefix = Some(PathBuf::from(it.next().ok_or("--prefix needs a directory")?)),
            "--destdir" => destdir = Some(PathBuf::from(it.next().ok_or("--destdir needs a directory")?)),
            other => return Err(format!("dist: unknown argument `{other}`")),
        }
    }
    let (built, default_prefix, shared) = match &board {
        Some(name) => {
            let b = crate::boards::named(&["--board".to_string(), name.clone()])?;
            crate::boards::build_release(&b)?;
            (
                ember_qemu::build::target_dir(&root).join(&b.triple).join("release"),
                root.join("target/dist").join(name),
                false,
            )
        }
        None => {
            run(crate::cargo().args(["build", "--release", "-p", "ember-ipc-c", "-p", "ember-ipc-cli"]))?;
            (host_target_dir(&root).join("release"), root.join("target/dist/host"), true)
        }
    };
    let prefix = prefix.unwrap_or(default_prefix);
    let prefix = if prefix.is_absolute() { prefix } else { root.join(prefix) };
    let dest = match &destdir {
        Some(d) => {
            let d = if d.is_absolute() { d.clone() } else { root.join(d) };
            d.join(prefix.strip_prefix("/").unwrap_or(&prefix))
        }
        None => prefix.clone(),
    };
    let (bin, inc, lib, pc) = (dest.join("bin"), dest.join("include"), dest.join("lib"), dest.join("lib/pkgconfig"));
    for d in [&bin, &inc, &lib, &pc] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    copy(&built.join("emberctl"), &bin.join("emberctl"))?;
    copy(&root.join(crate::HEADER), &inc.join("ember.h"))?;
    copy(&built.join("libember.a"), &lib.join("libember.a"))?;
    let version = env!("CARGO_PKG_VERSION");
    if shared {
        let real = format!("libember.so.{version}");
        copy(&built.join("libember.so"), &lib.join(&real))?;
        symlink(&real, &lib.join("libember.so.0"))?;
        symlink("libember.so.0", &lib.join("libember.so"))?;
    }
    for (from, to, args) in SHARE {
        // The host's emberctl prints what is committed, or the copy is stale.
        if shared {
            let printed = ember_qemu::host::output(Command::new(built.join("emberctl")).args(args));
            let committed = std::fs::read_to_string(root.join(from)).map_err(|e| format!("{from}: {e}"))?;
            if printed.as_deref() != Some(committed.as_str()) {
                return Err(format!(
                    "{from} is not what `emberctl {}` prints: run `cargo xtask completions`",
                    args.join(" ")
                ));
            }
        }
        copy(&root.join(from), &dest.join(to))?;
    }
    std::fs::write(pc.join("ember.pc"), pc_text(&root, &prefix.display().to_string())?).map_err(|e| e.to_string())?;
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
    Ok(dest)
}

/// `cargo xtask completions`: writes the completion scripts and the man page under
/// `cli/share/` from a freshly built `emberctl`.
pub fn completions() -> Result<(), String> {
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    run(crate::cargo().args(["build", "-p", "ember-ipc-cli"]))?;
    let exe = host_target_dir(&root).join("debug/emberctl");
    for (file, _, args) in SHARE {
        let text = ember_qemu::host::output(Command::new(&exe).args(args))
            .ok_or_else(|| format!("`emberctl {}` failed", args.join(" ")))?;
        std::fs::write(root.join(file), text).map_err(|e| format!("{file}: {e}"))?;
        println!("wrote {file}");
    }
    Ok(())
}
