//! `cargo xtask size [--stable-only]`: how much Ember adds to a C program on a board, and
//! how big `libember.so` is (docs/benchmarks.md, "C ABI size").
//!
//! The target: a C program statically linked with `libember.a` that uses pipes, a shm ring
//! and one D-Bus call, for aarch64 with musl, at most 400 KiB stripped. The program is
//! `bindings-c/size/probe.c`. For each configuration below, `libember.a` is built for
//! `aarch64-unknown-linux-musl`, the probe is linked `-static -Wl,--gc-sections` against it
//! and musl (Debian's `musl-dev:arm64`) by the rpi4 board's cross gcc, stripped, and run
//! under qemu-aarch64 against a private `dbus-daemon` (so its D-Bus call really happens).
//! The table puts the stripped sizes next to an empty static musl program and the host's
//! stripped `libember.so`.
//!
//! Everything is built in `target/size`, a cargo target directory of its own, one build at
//! a time. `--stable-only` leaves out the nightly (`build-std`) configurations.

use ember_qemu::host::{ensure_apt, ensure_component, ensure_target, output, run};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The Rust target of the probe.
const TRIPLE: &str = "aarch64-unknown-linux-musl";
/// The cargo target directory of these builds.
const TARGET_DIR: &str = "target/size";
/// Where the probes, the kept libraries and the empty program go.
const OUT_DIR: &str = "target/size/probe";
/// The C program measured.
const PROBE: &str = "bindings-c/size/probe.c";
/// Debian's `musl-dev:arm64`: headers, start files and `libc.a`.
const MUSL_INCLUDE: &str = "/usr/include/aarch64-linux-musl";
const MUSL_LIB: &str = "/usr/lib/aarch64-linux-musl";
/// The rpi4 board's cross tools (targets/boards.toml) and emulator.
const GCC: &str = "aarch64-linux-gnu-gcc";
const STRIP: &str = "aarch64-linux-gnu-strip";
const QEMU: &str = "qemu-aarch64-static";
/// The rpi4 board's CPU, as its `rustflags` in targets/boards.toml (CRC-32C then uses
/// `crc32cx` instead of 16 KiB of tables).
const RUSTFLAGS: &str = "-C target-cpu=cortex-a72";
/// The target for the probe, stripped.
const LIMIT: u64 = 400 * 1024;
/// The C flags of every link (the probe is C11, warning-free).
const CFLAGS: [&str; 9] = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-Os",
    "-ffunction-sections",
    "-fdata-sections",
    "-static",
];

/// One way of building `libember.a`.
struct Config {
    /// File stem of its library and probe.
    name: &'static str,
    /// Its line in the table.
    what: &'static str,
    nightly: bool,
    /// The cargo profile (`min-size` is the workspace's: opt-level "z", fat LTO, one
    /// codegen unit, panic = "abort", stripped).
    profile: &'static str,
    /// `panic = "immediate-abort"` (nightly): no panic messages, no unwinder.
    immediate_abort: bool,
}

impl Config {
    /// Whether the library's std calls into an unwinder (linked from Rust's LLVM
    /// libunwind: gcc's libgcc_eh wants glibc's `_dl_find_object`).
    fn unwinds(&self) -> bool {
        !self.immediate_abort
    }
}

const CONFIGS: [Config; 4] = [
    Config {
        name: "stable-release",
        what: "stable, release profile (panic=unwind, opt-level 3)",
        nightly: false,
        profile: "release",
        immediate_abort: false,
    },
    Config {
        name: "stable-min-size",
        what: "stable, min-size profile (opt z, LTO, panic=abort)",
        nightly: false,
        profile: "min-size",
        immediate_abort: false,
    },
    Config {
        name: "nightly-build-std",
        what: "nightly, min-size + build-std, optimize_for_size",
        nightly: true,
        profile: "min-size",
        immediate_abort: false,
    },
    Config {
        name: "nightly-immediate-abort",
        what: "nightly, min-size + build-std, panic=immediate-abort",
        nightly: true,
        profile: "min-size",
        immediate_abort: true,
    },
];

/// A line of the table.
struct Row {
    what: String,
    bytes: u64,
    /// Whether the line is measured against the target.
    judged: bool,
}

/// Paths the links need, found once.
struct Tools {
    /// gcc's own headers (`stddef.h`, `stdarg.h`), beside musl's.
    gcc_include: String,
    libgcc: String,
    /// Rust's LLVM libunwind for musl (`self-contained` in the stable rust-std).
    libunwind: PathBuf,
}

pub fn size(args: &[String]) -> Result<(), String> {
    let mut stable_only = false;
    for a in args {
        match a.as_str() {
            "--stable-only" => stable_only = true,
            other => return Err(format!("unknown argument `{other}` (usage: cargo xtask size [--stable-only])")),
        }
    }
    install(stable_only)?;
    let tools = tools()?;
    let out = Path::new(OUT_DIR);
    std::fs::create_dir_all(out).map_err(|e| format!("{OUT_DIR}: {e}"))?;
    let bus = match Bus::start() {
        Ok(b) => Some(b),
        Err(e) => {
            println!("(no private dbus-daemon: {e}; the probes run without a bus and skip their call)");
            None
        }
    };
    let address = bus.as_ref().map(|b| b.address.clone());

    let mut rows = Vec::new();
    // The baseline: what musl and the start files cost alone.
    let empty_c = out.join("empty.c");
    std::fs::write(&empty_c, "int main(void) { return 0; }\n").map_err(|e| e.to_string())?;
    let empty = out.join("empty");
    link(&tools, &empty_c, None, &empty, &[])?;
    run(Command::new(QEMU).arg(&empty))?;
    rows.push(Row { what: "empty C program (musl, static)".into(), bytes: file_size(&empty)?, judged: false });
    // And what glibc costs alone, linked as the boards link their C tests.
    let empty_glibc = out.join("empty-glibc");
    let full = empty_glibc.with_extension("full");
    run(Command::new(GCC).args(["-static", "-Os", "-Wl,--gc-sections"]).arg(&empty_c).arg("-o").arg(&full))?;
    run(Command::new(STRIP).arg("-o").arg(&empty_glibc).arg(&full))?;
    run(Command::new(QEMU).arg(&empty_glibc))?;
    rows.push(Row { what: "empty C program (glibc, static)".into(), bytes: file_size(&empty_glibc)?, judged: false });

    for c in CONFIGS.iter().filter(|c| !(stable_only && c.nightly)) {
        println!("\n---- {}: {} ----", c.name, c.what);
        let lib = build_static(c)?;
        let unwind = c.unwinds().then_some(tools.libunwind.as_path());
        let exe = out.join(format!("probe-{}", c.name));
        link(&tools, Path::new(PROBE), Some((&lib, unwind)), &exe, &[])?;
        run_probe(&exe, address.as_deref())?;
        rows.push(Row { what: format!("probe: {}", c.what), bytes: file_size(&exe)?, judged: true });
        if c.immediate_abort {
            // The file is padded to aarch64's largest page size (64 KiB) between its
            // segments; a board whose kernel has 4 KiB pages can do without.
            let small = out.join(format!("probe-{}-4k", c.name));
            link(&tools, Path::new(PROBE), Some((&lib, unwind)), &small, &["-Wl,-z,max-page-size=4096"])?;
            run_probe(&small, address.as_deref())?;
            rows.push(Row {
                what: "probe: the same, -z max-page-size=4096".into(),
                bytes: file_size(&small)?,
                judged: true,
            });
        }
    }
    drop(bus);

    for profile in ["release", "min-size"] {
        println!("\n---- x86_64 libember.so, {profile} ----");
        let so = build_shared(profile)?;
        rows.push(Row {
            what: format!("x86_64 glibc libember.so, {profile} profile"),
            bytes: file_size(&so)?,
            judged: false,
        });
    }

    println!("\n==== stripped sizes: {TRIPLE} (static) unless said; target: probe <= 400 KiB ====");
    println!("{:<62} {:>9} {:>9}  <= 400 KiB", "what", "bytes", "KiB");
    for r in &rows {
        let verdict = match (r.judged, r.bytes <= LIMIT) {
            (false, _) => "",
            (true, true) => "met",
            (true, false) => "over",
        };
        println!("{:<62} {:>9} {:>9.1}  {verdict}", r.what, r.bytes, r.bytes as f64 / 1024.0);
    }
    println!(
        "(probes in {OUT_DIR}; each ran under {QEMU}{})",
        if address.is_some() { " and called GetId on a private dbus-daemon" } else { " without a bus" }
    );
    if rows.iter().any(|r| r.judged && r.bytes <= LIMIT) {
        Ok(())
    } else {
        Err("no configuration meets the 400 KiB target".into())
    }
}

/// The Debian packages, the rustup target and the nightly toolchain, if missing.
fn install(stable_only: bool) -> Result<(), String> {
    // musl-dev:arm64 comes from Debian's arm64 archive: the host must know the architecture.
    let foreign = output(Command::new("dpkg").arg("--print-foreign-architectures")).unwrap_or_default();
    if !foreign.lines().any(|a| a.trim() == "arm64") {
        run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    }
    ensure_apt(&[
        "gcc-aarch64-linux-gnu",
        "libc6-dev-arm64-cross",
        "binutils",
        "qemu-user-static",
        "musl-dev:arm64",
        "dbus-daemon",
    ])?;
    ensure_target("stable", TRIPLE)?;
    if !stable_only {
        let list = output(Command::new("rustup").args(["toolchain", "list"])).ok_or("rustup is not available")?;
        if !list.lines().any(|l| l.starts_with("nightly")) {
            run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
        }
        // build-std compiles std from source; the nightly needs no rust-std for the target.
        ensure_component("nightly", "rust-src")?;
    }
    Ok(())
}

fn tools() -> Result<Tools, String> {
    let ask = |args: &[&str]| {
        output(Command::new(GCC).args(args))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| format!("`{GCC} {}` failed", args.join(" ")))
    };
    let sysroot = output(Command::new("rustup").args(["run", "stable", "rustc", "--print", "sysroot"]))
        .ok_or("`rustc --print sysroot` failed")?;
    let libunwind = Path::new(sysroot.trim()).join(format!("lib/rustlib/{TRIPLE}/lib/self-contained/libunwind.a"));
    if !libunwind.is_file() {
        return Err(format!("no {}", libunwind.display()));
    }
    Ok(Tools {
        gcc_include: ask(&["-print-file-name=include"])?,
        libgcc: ask(&["-print-libgcc-file-name"])?,
        libunwind,
    })
}

/// A cargo command in `target/size`, with nothing inherited that would change the build.
fn cargo(nightly: bool) -> Command {
    let mut c = if nightly {
        // Through rustup's proxy, as `cargo_with` in main.rs: drop what the cargo running
        // us exported, or it would leak into the other toolchain.
        let mut c = Command::new("cargo");
        c.arg("+nightly");
        for var in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "CARGO_MANIFEST_DIR"] {
            c.env_remove(var);
        }
        c
    } else {
        crate::cargo()
    };
    c.env("CARGO_TARGET_DIR", TARGET_DIR).env("CARGO_INCREMENTAL", "0").env_remove("CARGO_ENCODED_RUSTFLAGS");
    c
}

/// Builds `libember.a` for the probe's target as `c` says; returns a copy of it under
/// `OUT_DIR` (the builds of one profile share the file cargo writes).
fn build_static(c: &Config) -> Result<PathBuf, String> {
    let mut cmd = cargo(c.nightly);
    cmd.args([
        "rustc",
        "-p",
        "ember-ipc-c",
        "--lib",
        "--crate-type",
        "staticlib",
        "--target",
        TRIPLE,
        "--profile",
        c.profile,
    ]);
    if c.nightly {
        cmd.args(["-Zbuild-std=std,panic_abort", "-Zbuild-std-features=optimize_for_size"]);
    }
    if c.immediate_abort {
        let var = format!("CARGO_PROFILE_{}_PANIC", c.profile.to_uppercase().replace('-', "_"));
        cmd.arg("-Zpanic-immediate-abort").env(var, "immediate-abort");
    }
    run(cmd.env("RUSTFLAGS", RUSTFLAGS))?;
    let built = Path::new(TARGET_DIR).join(TRIPLE).join(c.profile).join("libember.a");
    let kept = Path::new(OUT_DIR).join(format!("libember-{}.a", c.name));
    std::fs::copy(&built, &kept).map_err(|e| format!("{} -> {}: {e}", built.display(), kept.display()))?;
    Ok(kept)
}

/// Builds the host's `libember.so` with `profile`; returns its stripped copy.
fn build_shared(profile: &str) -> Result<PathBuf, String> {
    run(cargo(false)
        .args(["rustc", "-p", "ember-ipc-c", "--lib", "--crate-type", "cdylib", "--profile", profile])
        .env_remove("RUSTFLAGS"))?;
    let built = Path::new(TARGET_DIR).join(profile).join("libember.so");
    let stripped = Path::new(OUT_DIR).join(format!("libember-{profile}.so"));
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&built))?;
    Ok(stripped)
}

/// Links `src` statically against musl (and `lib`, with the unwinder if given) into
/// `exe.full`, and strips that into `exe`.
fn link(t: &Tools, src: &Path, lib: Option<(&Path, Option<&Path>)>, exe: &Path, extra: &[&str]) -> Result<(), String> {
    let musl = Path::new(MUSL_LIB);
    let full = exe.with_extension("full");
    let mut cmd = Command::new(GCC);
    cmd.args(CFLAGS)
        .args(["-nostdinc", "-isystem", MUSL_INCLUDE, "-isystem", &t.gcc_include, "-Ibindings-c/include"])
        .args(["-nostdlib", "-Wl,--gc-sections"])
        .args(extra)
        .arg(musl.join("crt1.o"))
        .arg(musl.join("crti.o"))
        .arg(src);
    if let Some((lib, unwind)) = lib {
        cmd.arg(lib);
        if let Some(u) = unwind {
            cmd.arg(u);
        }
    }
    cmd.arg(musl.join("libc.a")).arg(&t.libgcc).arg(musl.join("crtn.o")).arg("-o").arg(&full);
    run(&mut cmd)?;
    run(Command::new(STRIP).arg("-o").arg(exe).arg(&full))
}

/// Runs a probe under qemu-user: it must succeed, and make its call when there is a bus.
fn run_probe(exe: &Path, bus: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new(QEMU);
    cmd.arg(exe).args(bus);
    let out = cmd.output().map_err(|e| format!("{QEMU}: {e}"))?;
    let said = String::from_utf8_lossy(&out.stdout);
    for line in said.lines().chain(String::from_utf8_lossy(&out.stderr).lines()) {
        println!("    {line}");
    }
    if !out.status.success() {
        return Err(format!("{} under {QEMU}: {}", exe.display(), out.status));
    }
    if bus.is_some() && !said.contains("dbus: GetId = ") {
        return Err(format!("{} made no D-Bus call", exe.display()));
    }
    Ok(())
}

fn file_size(p: &Path) -> Result<u64, String> {
    std::fs::metadata(p).map(|m| m.len()).map_err(|e| format!("{}: {e}", p.display()))
}

/// A private session `dbus-daemon` on a socket in a directory of its own, stopped and
/// removed when dropped.
struct Bus {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl Bus {
    fn start() -> Result<Bus, String> {
        let dir = std::env::temp_dir().join(format!("ember-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:path={}", dir.join("bus").display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let mut address = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut address);
        }
        let bus = Bus { child, dir, address: address.trim().to_string() };
        if bus.address.is_empty() {
            return Err("dbus-daemon printed no address".into());
        }
        Ok(bus)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
