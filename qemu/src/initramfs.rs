//! The guest's initramfs: `/init`, the test binaries under `/ember/bin`, the manifest
//! `/ember/manifest` that `/init` runs, `/dev/console`, and optionally a Debian root
//! holding `dbus-daemon` and its libraries.

use crate::cpio::Cpio;
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A test binary to run in the guest.
#[derive(Debug, Clone)]
pub struct TestBinary {
    /// Its name in the results (letters, digits, `-`, `_`).
    pub name: String,
    /// The binary on the host.
    pub host_path: PathBuf,
    /// Arguments (no tabs or newlines).
    pub args: Vec<String>,
}

/// What goes into the guest.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// The `/init` binary (`ember-init`, built for the board).
    pub init: PathBuf,
    /// The test binaries, run in this order.
    pub tests: Vec<TestBinary>,
    /// Other files for `/ember/bin` (peers the tests start), by name.
    pub helpers: Vec<(String, PathBuf)>,
    /// The environment of every test binary (beside `PATH`, `HOME`, `TMPDIR`, and
    /// `EMBER_ALLOW_SKIP=1`, which are always set).
    pub env: Vec<(String, String)>,
    /// A directory mirroring a Debian root (`usr/bin/dbus-daemon`, `lib/...`) to carry.
    pub debian_root: Option<PathBuf>,
}

struct Writer<W: Write> {
    cpio: Cpio<W>,
    dirs: BTreeSet<String>,
}

impl<W: Write> Writer<W> {
    fn parents(&mut self, path: &str) -> std::io::Result<()> {
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(p);
            if self.dirs.insert(at.clone()) {
                self.cpio.dir(&at)?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, path: &str) -> std::io::Result<()> {
        self.parents(&format!("{path}/x"))
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<(), String> {
        self.parents(path).map_err(|e| e.to_string())?;
        self.cpio.symlink(path, target).map_err(|e| e.to_string())
    }

    fn file_from(&mut self, path: &str, host: &Path) -> Result<(), String> {
        let data = std::fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
        self.parents(path).map_err(|e| e.to_string())?;
        self.cpio.file(path, 0o755, &data).map_err(|e| e.to_string())
    }
}

/// Writes the initramfs to `out`; returns its size in bytes.
pub fn write(contents: &Contents, out: &Path) -> Result<u64, String> {
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = Writer { cpio: Cpio::new(BufWriter::new(file)), dirs: BTreeSet::new() };
    let io = |e: std::io::Error| e.to_string();
    for d in ["dev", "proc", "sys", "tmp", "ember/bin"] {
        w.dir(d).map_err(io)?;
    }
    w.cpio.char_device("dev/console", 0o600, 5, 1).map_err(io)?;
    // Users for the programs that look themselves up (dbus-daemon does, at every
    // connection): root, and nobody for the tests that drop privileges.
    w.dir("etc").map_err(io)?;
    w.cpio
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .map_err(io)?;
    w.cpio.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n").map_err(io)?;
    w.file_from("init", &contents.init)?;
    let mut manifest = String::from("# name<TAB>path<TAB>arguments; env lines set the binaries' environment\n");
    for (k, v) in
        [("PATH", "/usr/bin:/bin:/ember/bin"), ("HOME", "/tmp"), ("TMPDIR", "/tmp"), ("EMBER_ALLOW_SKIP", "1")]
            .into_iter()
            .chain(contents.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        manifest.push_str(&format!("env {k}={v}\n"));
    }
    for (name, host) in &contents.helpers {
        w.file_from(&format!("ember/bin/{name}"), host)?;
    }
    for t in &contents.tests {
        if !crate::protocol::is_name(&t.name) {
            return Err(format!("test binary name `{}`: letters, digits, - and _ only", t.name));
        }
        if t.args.iter().any(|a| a.contains(['\t', '\n', ' '])) {
            return Err(format!("{}: arguments may not hold blanks", t.name));
        }
        let path = format!("ember/bin/{}", t.name);
        w.file_from(&path, &t.host_path)?;
        manifest.push_str(&format!("{}\t/{path}\t{}\n", t.name, t.args.join(" ")));
    }
    w.cpio.file("ember/manifest", 0o644, manifest.as_bytes()).map_err(io)?;
    if let Some(root) = &contents.debian_root {
        add_debian_root(&mut w, root)?;
    }
    let out = w.cpio.finish().map_err(io)?;
    let file = out.into_inner().map_err(|e| e.to_string())?;
    file.metadata().map(|m| m.len()).map_err(|e| e.to_string())
}

/// The runner of a bundle on a real board (POSIX sh, busybox's included).
const RUN_SH: &str = r#"#!/bin/sh
# Runs Ember's tests on this board, as the emulated board's /init does: every binary of
# ./manifest, one at a time, stdin closed. Exit status: 0 if all passed.
cd "$(dirname "$0")" || exit 2
PATH="$PWD/bin:$PATH"; export PATH
EMBER_WIRE_PEER="$PWD/bin/wire_peer"; export EMBER_WIRE_PEER
failed=0
while IFS="$(printf '	')" read -r name path args; do
    case "$name" in ''|'#'*) continue ;; esac
    case "$name" in env\ *) ;; *)
        echo "== $name"
        # shellcheck disable=SC2086
        if ! "./bin/$name" $args </dev/null; then failed=$((failed + 1)); echo "!! $name FAILED"; fi
    ;; esac
done < manifest
echo "binaries failed: $failed"
[ "$failed" -eq 0 ]
"#;

/// Writes the test binaries, the helpers, the manifest and `run.sh` into `dir`, for
/// copying to a real board (`scp -r dir board:` and `./run.sh` there).
pub fn write_bundle(contents: &Contents, dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut manifest = String::from("# name<TAB>path<TAB>arguments, as in the emulated board's /ember/manifest\n");
    for (name, host) in &contents.helpers {
        std::fs::copy(host, bin.join(name)).map_err(|e| format!("{}: {e}", host.display()))?;
    }
    for t in &contents.tests {
        std::fs::copy(&t.host_path, bin.join(&t.name)).map_err(|e| format!("{}: {e}", t.host_path.display()))?;
        manifest.push_str(&format!("{}\tbin/{}\t{}\n", t.name, t.name, t.args.join(" ")));
    }
    std::fs::write(dir.join("manifest"), manifest).map_err(|e| e.to_string())?;
    let run = dir.join("run.sh");
    std::fs::write(&run, RUN_SH).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// `usr/bin/dbus-daemon` and every shared library of the unpacked packages (not their
/// documentation, locales, scripts or gconv modules).
fn add_debian_root<W: Write>(w: &mut Writer<W>, root: &Path) -> Result<(), String> {
    w.file_from("usr/bin/dbus-daemon", &root.join("usr/bin/dbus-daemon"))?;
    // Merged-/usr suites (trixie) ship libraries in usr/lib only, and base-files makes
    // /lib a link to it; the loader's path in every binary starts with /lib.
    if !root.join("lib").exists() {
        w.symlink("lib", "usr/lib")?;
    }
    let mut stack = vec![root.join("lib"), root.join("usr/lib")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).map_err(|e| e.to_string())?.to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).map_err(|e| e.to_string())?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if meta.is_dir() {
                if name != "gconv" && name != "dbus-1.0" {
                    stack.push(p);
                }
            } else if name.contains(".so") || name.starts_with("ld-linux") {
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&p).map_err(|e| e.to_string())?;
                    w.symlink(&rel, &target.to_string_lossy())?;
                } else {
                    w.file_from(&rel, &p)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("ember-initramfs-{}-{tag}", std::process::id()))
    }

    /// The bundle's run.sh runs every binary with its arguments and fails if one fails.
    #[test]
    fn bundle_runs_on_a_board_with_sh() {
        let dir = scratch("bundle");
        let tests = |second: &str| Contents {
            init: "/bin/true".into(),
            tests: vec![
                TestBinary {
                    name: "echoes".into(),
                    host_path: "/bin/echo".into(),
                    args: vec!["test".into(), "x".into()],
                },
                TestBinary { name: "second".into(), host_path: second.into(), args: Vec::new() },
            ],
            helpers: vec![("wire_peer".into(), "/bin/true".into())],
            ..Contents::default()
        };
        write_bundle(&tests("/bin/true"), &dir).unwrap();
        let out = std::process::Command::new(dir.join("run.sh")).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("== echoes\ntest x\n== second\nbinaries failed: 0"), "{text}");
        write_bundle(&tests("/bin/false"), &dir).unwrap();
        let out = std::process::Command::new(dir.join("run.sh")).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("!! second FAILED") && text.contains("binaries failed: 1"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The archive holds /init, the binaries, the manifest with its environment, and the
    /// users; names that would break the manifest are refused.
    #[test]
    fn initramfs_holds_the_manifest() {
        let dir = scratch("cpio");
        std::fs::create_dir_all(&dir).unwrap();
        let c = Contents {
            init: "/bin/true".into(),
            tests: vec![TestBinary {
                name: "t1".into(),
                host_path: "/bin/true".into(),
                args: vec!["--skip".into(), "x".into()],
            }],
            env: vec![("EMBER_WIRE_PEER".into(), "/ember/bin/wire_peer".into())],
            ..Contents::default()
        };
        let archive = dir.join("i.cpio");
        write(&c, &archive).unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-i", "--quiet", "--to-stdout", "-F"])
            .arg(&archive)
            .arg("ember/manifest")
            .output()
            .expect("cpio (installed by cargo xtask test)");
        let manifest = String::from_utf8_lossy(&out.stdout);
        assert!(manifest.contains("env EMBER_ALLOW_SKIP=1\n"), "{manifest}");
        assert!(manifest.contains("env EMBER_WIRE_PEER=/ember/bin/wire_peer\n"), "{manifest}");
        assert!(manifest.contains("t1\t/ember/bin/t1\t--skip x\n"), "{manifest}");
        let bad = Contents {
            tests: vec![TestBinary { name: "a b".into(), host_path: "/bin/true".into(), args: Vec::new() }],
            ..c.clone()
        };
        assert!(write(&bad, &archive).unwrap_err().contains("letters, digits"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
