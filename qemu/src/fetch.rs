//! Fetching what a board's guest needs from Debian: its kernel and, for boards with
//! `dbus = true`, its `dbus-daemon` with the libraries it loads.
//!
//! apt does the fetching, with a private configuration under the cache directory (its own
//! sources list, lists, caches and an empty dpkg status), so the host's own apt set-up is
//! read for its mirror and signing keys only and is never changed. The mirror is the one
//! the host's apt sources name for Debian.

use crate::board::Board;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command; `Err` names it and carries its stderr.
fn run(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| format!("`{shown}` could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim_end()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian mirror the host's apt sources use (the first `deb` URI that is not a
/// security or updates archive), from the one-line and the deb822 formats.
pub fn host_mirror() -> Result<String, String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let name = f.to_string_lossy();
        if !(name.ends_with(".list") || name.ends_with(".sources")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        if let Some(uri) = mirror_in(&text) {
            return Ok(uri);
        }
    }
    Err("no Debian mirror found in /etc/apt/sources.list{,.d}".into())
}

/// The Debian mirror a sources file names, if any.
fn mirror_in(text: &str) -> Option<String> {
    let debian = |uri: &str| uri.trim_end_matches('/').ends_with("/debian");
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("deb ") {
            // `deb [options] uri suite components`
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
                None => rest,
            };
            if let Some(uri) = rest.split_whitespace().next().filter(|u| debian(u)) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
        if let Some(uri) = line.strip_prefix("URIs:").and_then(|u| u.split_whitespace().find(|u| debian(u))) {
            return Some(uri.trim_end_matches('/').to_string());
        }
    }
    None
}

/// A private apt for one Debian suite and architecture.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(cache: &Path, suite: &str, arch: &str) -> Result<Apt, String> {
        let dir = cache.join(format!("apt-{suite}-{arch}"));
        for sub in ["lists/partial", "archives/partial", "parts", "debs"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mirror = host_mirror()?;
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        std::fs::write(
            dir.join("sources.list"),
            format!("deb [arch={arch} signed-by={keyring}] {mirror} {suite} main\n"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("status"), "").map_err(|e| e.to_string())?;
        // Read first (APT_CONFIG), so that neither the host's apt.conf.d (with its update
        // hooks) nor its apt.conf or preferences are read at all.
        let d = dir.display();
        let conf = format!(
            "Dir::Etc::Parts \"{d}/parts\";\nDir::Etc::Main \"{d}/empty.conf\";\n\
             Dir::Etc::Preferences \"{d}/empty.conf\";\nDir::Etc::PreferencesParts \"{d}/parts\";\n\
             Dir::Etc::SourceList \"{d}/sources.list\";\nDir::Etc::SourceParts \"{d}/parts\";\n\
             Dir::State \"{d}\";\nDir::State::Lists \"{d}/lists\";\nDir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}\";\nDir::Cache::Archives \"{d}/archives\";\n\
             APT::Architecture \"{arch}\";\nAPT::Architectures \"{arch}\";\nDebug::NoLocking \"1\";\n"
        );
        std::fs::write(dir.join("apt.conf"), conf).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("empty.conf"), "").map_err(|e| e.to_string())?;
        let apt = Apt { dir };
        run(apt.cmd("apt-get").args(["update", "-q"]))?;
        Ok(apt)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.dir.join("apt.conf"));
        c
    }

    /// The package a metapackage depends on whose name starts with `prefix`.
    fn resolve(&self, meta: &str, prefix: &str) -> Result<String, String> {
        let out = run(self.cmd("apt-cache").args(["depends", meta]))?;
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .map(str::trim)
            .find(|p| p.starts_with(prefix) && *p != meta)
            .map(str::to_string)
            .ok_or_else(|| format!("{meta} depends on no {prefix}* package:\n{out}"))
    }

    /// Downloads packages into `debs/`; returns their files.
    fn download(&self, packages: &[String]) -> Result<Vec<PathBuf>, String> {
        let debs = self.dir.join("debs");
        // Leftovers of an interrupted run could match a package's name beside the new file.
        let _ = std::fs::remove_dir_all(&debs);
        std::fs::create_dir_all(&debs).map_err(|e| e.to_string())?;
        run(self.cmd("apt-get").arg("download").args(packages).current_dir(&debs))?;
        let mut files = Vec::new();
        for p in packages {
            let name = p.split(':').next().unwrap_or(p);
            let found = std::fs::read_dir(&debs)
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}_"))))
                .ok_or_else(|| format!("apt-get download left no {name}_*.deb"))?;
            files.push(found);
        }
        Ok(files)
    }
}

/// The board's kernel image, fetched once into `cache` (a directory of the board's) and
/// reused from there.
pub fn kernel(board: &Board, cache: &Path) -> Result<PathBuf, String> {
    let kdir = cache.join("kernel");
    if let Some(k) = find_kernel(&kdir, board) {
        return Ok(k);
    }
    let apt = Apt::new(cache, &board.kernel.suite, &board.deb_arch)?;
    let versioned = apt.resolve(&board.kernel.package, "linux-image-")?;
    let deb = apt.download(std::slice::from_ref(&versioned))?.remove(0);
    // Unpacked beside the cache and renamed into it whole, so that an interrupted run
    // leaves no truncated kernel to be reused.
    let partial = cache.join("kernel.partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| e.to_string())?;
    // Only the kernel (the package's modules are most of it, and none are needed).
    let pattern = format!("./{}", board.kernel.file);
    let tar = format!(
        "set -o pipefail; dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards '{pattern}'",
        deb.display(),
        partial.display()
    );
    run(Command::new("bash").args(["-c", &tar]))?;
    std::fs::remove_file(&deb).map_err(|e| e.to_string())?;
    find_kernel(&partial, board).ok_or_else(|| format!("{versioned} holds no {}", board.kernel.file))?;
    let _ = std::fs::remove_dir_all(&kdir);
    std::fs::rename(&partial, &kdir).map_err(|e| e.to_string())?;
    find_kernel(&kdir, board).ok_or_else(|| format!("{versioned} holds no {}", board.kernel.file))
}

fn find_kernel(kdir: &Path, board: &Board) -> Option<PathBuf> {
    let (dir, glob) = board.kernel.file.rsplit_once('/').unwrap_or(("", &board.kernel.file));
    let prefix = glob.trim_end_matches('*');
    let mut found: Vec<PathBuf> = std::fs::read_dir(kdir.join(dir))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    found.sort();
    found.pop()
}

/// The board's `dbus-daemon` and every library package it needs, unpacked into a
/// directory that mirrors the board's root (`usr/bin/dbus-daemon`, `lib/<arch>/...`),
/// fetched once into `cache`.
pub fn dbus_root(board: &Board, cache: &Path) -> Result<PathBuf, String> {
    let root = cache.join("dbus-root");
    if root.join("usr/bin/dbus-daemon").is_file() {
        return Ok(root);
    }
    let apt = Apt::new(cache, &board.kernel.suite, &board.deb_arch)?;
    let out = run(apt.cmd("apt-cache").args([
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        "dbus-daemon",
    ]))?;
    // The daemon and the shared libraries of its dependency closure (not the tools,
    // scripts and configuration the closure also holds: /init runs it with a config file
    // of its own).
    let mut packages: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(str::trim)
        .filter(|p| *p == "dbus-daemon" || p.starts_with("lib"))
        .map(str::to_string)
        .collect();
    packages.sort();
    packages.dedup();
    let debs = apt.download(&packages)?;
    let staging = cache.join("dbus-root.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| e.to_string())?;
    for deb in &debs {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&staging))?;
        std::fs::remove_file(deb).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&staging, &root).map_err(|e| e.to_string())?;
    if !root.join("usr/bin/dbus-daemon").is_file() {
        return Err(format!("no usr/bin/dbus-daemon in {}", root.display()));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_read_from_both_source_formats() {
        let one = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main\n";
        assert_eq!(mirror_in(one).as_deref(), Some("http://mirror.example/debian"));
        let deb822 = "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n\
                      Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n";
        assert_eq!(mirror_in(deb822).as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(mirror_in("deb http://elsewhere.example/ubuntu jammy main"), None);
    }
}
