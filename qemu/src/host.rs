//! Setting up the host: running commands, and installing what is missing (Debian packages,
//! rustup targets and components), skipping the work when it is already done. `cargo
//! xtask` and the harness's own tests share these.

use std::process::Command;

/// Runs a command, streaming its output; `Err` describes a failure.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}").replace('"', "");
    println!("$ {shown}");
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{shown}` exited with {s}")),
        Err(e) => Err(format!("`{shown}` could not start: {e}")),
    }
}

/// Runs a command quietly and returns its stdout if it succeeded.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Adds a rustup target to `toolchain` unless it is there.
pub fn ensure_target(toolchain: &str, target: &str) -> Result<(), String> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed", "--toolchain", toolchain]))
        .ok_or("rustup is not available")?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", "--toolchain", toolchain, target]))
}

/// Adds a rustup component to `toolchain` unless it is there.
pub fn ensure_component(toolchain: &str, component: &str) -> Result<(), String> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", toolchain]))
        .ok_or("rustup is not available")?;
    if installed.lines().any(|l| l.starts_with(component)) {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "--toolchain", toolchain, component]))
}

/// Installs Debian packages that are missing (`apt-get update` first).
///
/// Debian 12 machines may carry a backported `qemu-utils`, which breaks bookworm's
/// `qemu-system-*`; when one of those is wanted, `qemu-utils` comes from bookworm too.
pub fn ensure_apt(packages: &[&str]) -> Result<(), String> {
    let installed = |p: &str| {
        output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
            .is_some_and(|s| s.contains("install ok installed"))
    };
    let mut missing: Vec<String> = packages.iter().filter(|p| !installed(p)).map(|p| p.to_string()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "-q", "--no-install-recommends"]).env("DEBIAN_FRONTEND", "noninteractive");
    if missing.iter().any(|p| p.starts_with("qemu-system")) && backported_qemu_utils() {
        missing.push("qemu-utils/bookworm".into());
        install.arg("--allow-downgrades");
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(install.args(&missing))
}

/// Whether this is Debian 12 with `qemu-utils` from bookworm-backports installed (whose
/// `Breaks` keeps bookworm's qemu-system packages out).
fn backported_qemu_utils() -> bool {
    let bookworm = std::fs::read_to_string("/etc/os-release")
        .is_ok_and(|s| s.lines().any(|l| l.trim() == "VERSION_CODENAME=bookworm"));
    bookworm
        && output(Command::new("dpkg-query").args(["-W", "-f=${Version}", "qemu-utils"]))
            .is_some_and(|v| v.contains("~bpo12"))
}
