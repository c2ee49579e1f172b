//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask test`: every check CI runs, in order, each under a heading, then a
//!   summary table; exits non-zero if any step failed. It installs what it needs (rustup
//!   targets and components, cargo-fuzz, Debian packages) itself, and skips that work when
//!   it is already done. `--only miri,bridge` runs the steps whose names contain one of
//!   the words.
//! - `cargo xtask bench [args]`: the benchmarks (`emberctl bench --full [args]`), then the
//!   D-Bus comparison with zbus and the Zenoh bridge's bench (without `args` only).
//! - `cargo xtask bench-bridge [--lat N] [--thr N] [--rounds N] [--spin]`: the bridge's bench alone: bridged
//!   latency and throughput against plain Zenoh between two processes, same run.
//! - `cargo xtask header`: writes `bindings-c/include/ember.h` with cbindgen.
//! - `cargo xtask bridge`: the Zenoh bridge step of `test` alone (`bridge/`, its own
//!   workspace: fmt, clippy, its tests with two real bridge processes).
//! - `cargo xtask c-abi`: the C ABI step of `test` alone (header, C++, C tests under
//!   ASan+UBSan and valgrind).
//! - `cargo xtask dist [--board <name>] [--prefix <dir>] [--destdir <dir>]`: `bin/emberctl`,
//!   `include/ember.h`, `lib/libember.a`, `lib/libember.so*` (host), `lib/pkgconfig/ember.pc`,
//!   the shell completions and the man page under a prefix (`packaging/dist-files.txt`).
//! - `cargo xtask completions`: writes `cli/share/` (completions, man page) from `emberctl`.
//! - `cargo xtask packaging [--check]`: writes the Yocto recipe's crate list from `Cargo.lock`;
//!   with `--check`, the packaging step of `test` alone.
//! - `cargo xtask size [--stable-only]`: stripped sizes of a static aarch64-musl C program
//!   using libember.a (target ≤ 400 KiB) and of the host's libember.so (docs/benchmarks.md).
//! - `cargo xtask examples`: the examples step of `test` alone (the sensor daemon and its C
//!   client, end to end).
//! - `cargo xtask fuzz --minutes N [target...]`: a fuzzing campaign: every target (or the
//!   named ones) N minutes each, one after another, then a table per target of runs, exec/s,
//!   coverage (libFuzzer's `cov` and `ft`), corpus size and any crash file
//!   (docs/fuzzing.md). It starts from the seeds, the grown corpus (`fuzz/corpus`,
//!   untracked) and the kept corpus (`fuzz/corpus-kept`, committed).
//! - `cargo xtask fuzz-keep [target...]`: after a campaign, merges each target's grown
//!   corpus into its kept corpus (only the inputs that add coverage).
//! - `cargo xtask bench-dbus [--quick]`: Ember's D-Bus client next to zbus in the same run
//!   (`benches/dbus`, its own workspace so that zbus stays out of the workspace's build).
//! - `cargo xtask bench-peers [--quick] [options]`: Ember next to iceoryx2 in the same run,
//!   between the same two pinned processes (`benches/peers`, its own workspace so that
//!   iceoryx2 stays out of the workspace's build): publish-subscribe one-way by payload
//!   size, request-response, event notification.
//! - `cargo xtask build --board <name>`: the `emberctl` command and `libember.a` for a board of
//!   `targets/boards.toml`, static, in release mode; with `--bridge`, `ember-bridge` instead
//!   (and a stripped copy, its size printed).
//! - `cargo xtask bridge-board --board <name>`: `ember-bridge` built for the board and run
//!   under qemu-user against the host's bridge over loopback (the test step does it for
//!   rpi4).
//! - `cargo xtask size --bridge`: `ember-bridge` for every board, stripped, in a table.
//! - `cargo xtask test --board <name>`: tier 1, the workspace's tests for the board under
//!   qemu-user, then its CRC-32C runs.
//! - `cargo xtask crc --board <name>`: the CRC-32C runs of tier 1 alone: the core crate's
//!   crc tests as a default build, under qemu-user on a CPU with the architecture's CRC
//!   instructions and on one without (`qemu_cpu_crc`, `qemu_cpu_no_crc` in the board table),
//!   and the Linux crate's `cpu` tests (the kernel's answer) on the same CPUs.
//! - `cargo xtask qemu --board <name>`: tier 2, the board's kernel booted under qemu-system
//!   with the tests (Rust and C) as `/init`'s work.

mod boards;
mod dist;
mod fuzz;
mod packaging;
mod plot;
mod size;

use ember_qemu::host::{ensure_apt, ensure_component, ensure_target, output, run};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask <test [--board <name> | --only <step,...>] | crc --board <name> | qemu --board <name> | build --board <name> [--bridge] | bridge-board --board <name> | header | c-abi | bridge | dist [--board <name>] [--prefix <dir>] [--destdir <dir>] | completions | packaging [--check] | examples | bench [emberctl bench options] | bench --sweep [size|readers|inflight|all] [--quick] [--out <dir>] | bench-dbus [--quick] | bench-peers [--quick] [--sizes a,b,..] [--only pubsub,loan,rpc,event] | bench-bridge [--lat N] [--thr N] [--rounds N] [--spin] | size [--stable-only | --bridge] | fuzz --minutes N [target...] | fuzz-keep [target...]>";
/// The committed C header, and cbindgen's configuration for it.
pub(crate) const HEADER: &str = "bindings-c/include/ember.h";
const CBINDGEN_TOML: &str = "bindings-c/cbindgen.toml";
/// The D-Bus comparison crate's manifest (not a workspace member).
const DBUS_BENCH: &str = "benches/dbus/Cargo.toml";
/// The iceoryx2 comparison crate's manifest (not a workspace member).
const PEERS_BENCH: &str = "benches/peers/Cargo.toml";
/// The Zenoh bridge: its own workspace, so zenoh stays out of the workspace's build.
const BRIDGE: &str = "bridge/Cargo.toml";

/// Target the no_std proof builds for.
const NO_STD_TARGET: &str = "thumbv7em-none-eabihf";
/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SMOKE_S: u64 = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask: cannot enter {root}: {e}");
        return ExitCode::FAILURE;
    }
    match args.first().map(String::as_str) {
        Some("test") if args.get(1).map(String::as_str) == Some("--only") => match args.get(2) {
            Some(only) => test(&only.split(',').map(str::trim).collect::<Vec<_>>()),
            None => {
                eprintln!("xtask: --only needs a comma-separated list of step names (or parts of them)\n{USAGE}");
                ExitCode::FAILURE
            }
        },
        Some("test") if args.len() > 1 => board_command(&args[1..], boards::tier1),
        Some("crc") => board_command(&args[1..], boards::crc_runs),
        Some("test") => test(&[]),
        Some("qemu") => board_command(&args[1..], |b| {
            let t = boards::tier2(b)?;
            boards::print_report(&t);
            t.report.outcome.clone()
        }),
        Some("build") => board_command(&args[1..], |b| {
            if args.iter().any(|a| a == "--bridge") {
                let (f, size) = boards::build_bridge_release(b)?;
                println!("built {} ({size} bytes stripped)", f.display());
                return Ok(());
            }
            for f in boards::build_release(b)? {
                println!("built {}", f.display());
            }
            Ok(())
        }),
        Some("bridge-board") => board_command(&args[1..], boards::bridge_tier1),
        Some("bench") => bench(&args[1..]),
        Some("bench-dbus") => bench_dbus(&args[1..]),
        Some("bench-peers") => bench_peers(&args[1..]),
        Some("bench-bridge") => bench_bridge(&args[1..]),
        Some("bridge") => {
            if let Outcome::Fail(e) = step_bridge() {
                eprintln!("xtask bridge: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Some("fuzz") => fuzz_campaign(&args[1..]),
        Some("fuzz-keep") => fuzz_keep(&args[1..]),
        Some("c-abi") => {
            if let Outcome::Fail(e) = step_c_abi() {
                eprintln!("xtask c-abi: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Some("dist") => match dist::dist(&args[1..]) {
            Ok(prefix) => {
                println!("installed under {}", prefix.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask dist: {e}");
                ExitCode::FAILURE
            }
        },
        Some("completions") => match dist::completions() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask completions: {e}");
                ExitCode::FAILURE
            }
        },
        Some("packaging") => {
            match if args.get(1).is_some_and(|a| a == "--check") { packaging::check() } else { packaging::write() } {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("xtask packaging: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("size") if args.iter().any(|a| a == "--bridge") => match bridge_sizes() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask size --bridge: {e}");
                ExitCode::FAILURE
            }
        },
        Some("size") => match size::size(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask size: {e}");
                ExitCode::FAILURE
            }
        },
        Some("examples") => {
            if let Outcome::Fail(e) = step_examples() {
                eprintln!("xtask examples: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Some("header") => match generate_header().and_then(|h| std::fs::write(HEADER, h).map_err(|e| e.to_string())) {
            Ok(()) => {
                println!("wrote {HEADER}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask header: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Runs `f` on the board that `--board <name>` names.
fn board_command(args: &[String], f: impl FnOnce(&ember_qemu::board::Board) -> Result<(), String>) -> ExitCode {
    match boards::named(args).and_then(|b| f(&b)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "xtask: {e}
{USAGE}"
            );
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> String {
    let manifest = env!("CARGO_MANIFEST_DIR");
    std::path::Path::new(manifest).parent().expect("xtask lives in the workspace").display().to_string()
}

/// How a step ended.
enum Outcome {
    Pass,
    Fail(String),
    Skipped(String),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo +<toolchain> ...`, through rustup's proxy so the toolchain override works even
/// when xtask itself runs under stable cargo.
fn cargo_with(toolchain: &str) -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{toolchain}"));
    // Drop what the cargo running us exported, or it would leak into the other toolchain.
    for var in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "CARGO_MANIFEST_DIR"] {
        c.env_remove(var);
    }
    c
}

fn cargo_nightly() -> Command {
    cargo_with("nightly")
}

fn has_nightly() -> Result<(), String> {
    let list = output(Command::new("rustup").args(["toolchain", "list"])).ok_or("rustup is not available")?;
    if list.lines().any(|l| l.starts_with("nightly")) {
        return Ok(());
    }
    run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    if output(cargo_nightly().args(["fuzz", "--version"])).is_some() {
        return Ok(());
    }
    run(cargo().args(["install", "cargo-fuzz", "--locked"]))
}

fn step_fmt() -> Outcome {
    outcome(run(cargo().args(["fmt", "--all", "--check"])))
}

fn step_clippy() -> Outcome {
    outcome(run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])))
}

/// Where `cargo package` builds the packages (emptied before each run).
const PACKAGE_TARGET_DIR: &str = "target/package-check";

/// The crates published to crates.io, in dependency order.
const PUBLISHED: [&str; 6] =
    ["ember-ipc-derive", "ember-ipc-core", "ember-ipc-linux", "ember-ipc-async", "ember-ipc-c", "ember-ipc-cli"];

/// The API documentation builds with every rustdoc warning (broken or redundant links,
/// bad code blocks) an error, as docs.rs would show it.
fn step_docs() -> Outcome {
    outcome(run(cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings")))
}

/// Every published crate packages as `cargo publish` would upload it, and the packaged
/// sources build on their own (cargo resolves their Ember dependencies from the packages
/// just made, as crates.io would): a file missing from a package, a path-only dependency
/// or a broken manifest fails here, not at release time.
fn step_package() -> Outcome {
    if let Err(e) = forget_unpacked_packages() {
        return Outcome::Fail(e);
    }
    // And what it built from them, in a target directory of its own that starts empty:
    // registry crates are immutable to cargo, so an earlier build of the same name and
    // version would be reused.
    let built = std::path::Path::new(PACKAGE_TARGET_DIR);
    if built.exists()
        && let Err(e) = std::fs::remove_dir_all(built)
    {
        return Outcome::Fail(format!("{}: {e}", built.display()));
    }
    let mut c = cargo();
    c.arg("package").args(PUBLISHED.iter().flat_map(|p| ["-p", p]));
    // A checkout with local edits is still checked (CI's clone is clean).
    c.arg("--allow-dirty").env("CARGO_TARGET_DIR", PACKAGE_TARGET_DIR);
    outcome(run(&mut c))
}

/// Removes the sources cargo unpacked from the local registry of an earlier `cargo package`:
/// cargo keeps them by name and version under `$CARGO_HOME/registry/src/-<hash>/` and does
/// not unpack a changed package of the same version again, so the next verification would
/// build today's crate against yesterday's dependency (the step also empties
/// its target directory, where yesterday's dependency was compiled).
fn forget_unpacked_packages() -> Result<(), String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else { return Ok(()) };
    let Ok(registries) = std::fs::read_dir(&src) else { return Ok(()) };
    for registry in registries.flatten() {
        // Real registries are named after their host; the local one starts with '-'.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for e in std::fs::read_dir(registry.path()).map_err(|e| e.to_string())?.flatten() {
            if PUBLISHED.iter().any(|p| e.file_name().to_string_lossy().starts_with(&format!("{p}-"))) {
                std::fs::remove_dir_all(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?;
            }
        }
    }
    Ok(())
}

fn step_test() -> Outcome {
    // The tests' real peers: socat (sockets), setpriv from util-linux (another uid), and
    // the D-Bus reference daemon with dbus-send, dbus-monitor and gdbus, and libdbus's Python
    // binding (which passes fds), GLib's Python binding (GDBus services), and systemd-socket-activate (socket activation); the
    // shells, groff and man that check emberctl's completions and man page.
    let peers = [
        "socat",
        "util-linux",
        "dbus-daemon",
        "dbus-bin",
        "libglib2.0-bin",
        "python3-dbus",
        "python3-gi",
        "gir1.2-glib-2.0",
        "cpio",
        "systemd",
        "bash",
        "zsh",
        "fish",
        "groff-base",
        "man-db",
    ];
    if let Err(e) = ensure_apt(&peers) {
        return Outcome::Fail(format!("cannot install the tests' peers ({}): {e}", peers.join(", ")));
    }
    outcome(run(cargo().args(["test", "--workspace"])))
}

/// The comparison crates (outside the workspace: zbus, iceoryx2) still build against the
/// current API and are clippy-clean; they are run by `cargo xtask bench-dbus` and
/// `cargo xtask bench-peers`, not here.
fn step_bench_crate() -> Outcome {
    let check = |manifest: &str| {
        run(cargo().args(["fmt", "--manifest-path", manifest, "--check"])).and_then(|()| {
            run(cargo().args(["clippy", "--manifest-path", manifest, "--all-targets", "--", "-D", "warnings"]))
        })
    };
    outcome(check(DBUS_BENCH).and_then(|()| check(PEERS_BENCH)))
}

/// The Zenoh bridge (`bridge/`, its own workspace): formatted, clippy-clean and its tests
/// green (two real bridge processes over loopback TCP, the plain-Zenoh example both ways).
///
/// One build serves both clippy and the tests: zenoh's 330 crates take minutes to compile
/// on 2 cores, and `cargo clippy` then `cargo test` would compile them twice (a check build
/// and a real one). Instead the tests are built with clippy as the workspace's compiler
/// wrapper (what `cargo clippy` itself does: `RUSTC_WORKSPACE_WRAPPER=clippy-driver`, the
/// lints in `CLIPPY_ARGS`): the bridge's own targets are linted with `-D warnings` while
/// they are compiled, the dependencies are compiled once by plain rustc.
fn step_bridge() -> Outcome {
    // `ip` makes the network namespaces and the veth pair of the two-boards test.
    if let Err(e) = ensure_apt(&["iproute2"]) {
        return Outcome::Fail(format!("no iproute2 for the veth test: {e}"));
    }
    let driver = match output(Command::new("rustup").args(["which", "clippy-driver"])) {
        Some(p) => p.trim().to_string(),
        None => return Outcome::Fail("no clippy-driver (rustup component add clippy)".into()),
    };
    let clippy = |args: &[&str]| {
        let mut c = cargo();
        c.args(args)
            .args(["--manifest-path", BRIDGE])
            .env("RUSTC_WORKSPACE_WRAPPER", &driver)
            .env("CLIPPY_ARGS", "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__");
        c
    };
    outcome(run(cargo().args(["fmt", "--manifest-path", BRIDGE, "--check"])).and_then(|()| {
        // Cargo's default targets, linted as they build: the library, the program and the
        // tests, the doctests, and the examples as programs (the tests run `plain_zenoh`;
        // `--all-targets` would build them only as test harnesses). The bridge has no
        // benches.
        run(&mut clippy(&["test"]))
    }))
}

/// ember.h as cbindgen writes it now.
fn generate_header() -> Result<String, String> {
    let config = cbindgen::Config::from_file(CBINDGEN_TOML).map_err(|e| format!("{CBINDGEN_TOML}: {e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_crate("bindings-c")
        .with_config(config)
        .generate()
        .map_err(|e| format!("cbindgen: {e}"))?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// The C ABI: the committed header is fresh, compiles as C++ too, and the C tests pass
/// under AddressSanitizer + UBSan and under valgrind, talking to a Rust peer.
fn step_c_abi() -> Outcome {
    outcome((|| {
        // test_dbus.c starts its own dbus-daemon and has gdbus call its C service.
        ensure_apt(&["gcc", "g++", "valgrind", "dbus-daemon", "libglib2.0-bin"])?;
        let fresh = generate_header()?;
        let committed = std::fs::read_to_string(HEADER).map_err(|e| format!("{HEADER}: {e}"))?;
        if fresh != committed {
            return Err(format!("{HEADER} is stale: run `cargo xtask header` and commit it"));
        }
        uncalled_exports(&committed)?;
        let silent = functions_without_codes(&committed)?;
        if !silent.is_empty() {
            return Err(format!(
                "{HEADER}: these functions return `int` but name no result code (`EMBER_OK`, `EMBER_E*`) in their \
                 doc comment: {}",
                silent.join(", ")
            ));
        }
        run(cargo().args(["build", "-p", "ember-ipc-c", "--example", "wire_peer"]))?;
        run(cargo().args(["build", "-p", "ember-ipc-c"]))?;
        let out = "target/c-tests";
        std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
        // The header as C++ (and with the strictest C flags below).
        let cpp = format!("{out}/header.cpp");
        std::fs::write(&cpp, "#include \"ember.h\"\nint main() { return ember_strerror(EMBER_OK) == nullptr; }\n")
            .map_err(|e| e.to_string())?;
        let lib = "target/debug/libember.a";
        let libs = ["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"];
        let cpp_exe = format!("{out}/header-cpp");
        run(Command::new("g++")
            .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Ibindings-c/include", &cpp, lib, "-o", &cpp_exe])
            .args(libs))?;
        run(&mut Command::new(&cpp_exe))?;
        // And as C99 with every pedantic warning an error (C89 is out: the header uses
        // `<stdint.h>`, `<stdbool.h>` and `//` comments).
        let c99 = format!("{out}/header-c99.c");
        std::fs::write(&c99, "#include \"ember.h\"\nint main(void) { return ember_strerror(EMBER_OK) == 0; }\n")
            .map_err(|e| e.to_string())?;
        run(Command::new("gcc")
            .args(["-std=c99", "-Wall", "-Wextra", "-pedantic-errors", "-Werror", "-Ibindings-c/include", "-c", &c99])
            .args(["-o", &format!("{out}/header-c99.o")]))?;
        // The static library in a fully static program on the host (the boards' tier 2 runs
        // every C test linked -static by each board's cross gcc).
        let static_exe = format!("{out}/test_frames_pipes-static");
        run(Command::new("gcc")
            .args(["-static", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Ibindings-c/include"])
            .args(["bindings-c/tests/c/test_frames_pipes.c", lib, "-o", &static_exe])
            .args(["-lpthread", "-ldl", "-lm", "-lrt"]))?;
        run(Command::new(&static_exe).env("EMBER_WIRE_PEER", "target/debug/examples/wire_peer"))?;
        let tests = std::fs::read_dir("bindings-c/tests/c").map_err(|e| e.to_string())?;
        let mut sources: Vec<String> = tests
            .filter_map(|e| e.ok().map(|e| e.path().to_string_lossy().into_owned()))
            .filter(|p| p.ends_with(".c"))
            .collect();
        sources.sort();
        for src in &sources {
            let name =
                std::path::Path::new(src).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let common = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-Ibindings-c/include"];
            let asan = format!("{out}/{name}-asan");
            run(Command::new("gcc")
                .args(common)
                .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"])
                .args([src.as_str(), lib, "-o", &asan])
                .args(libs))?;
            run(Command::new(&asan)
                .env("EMBER_WIRE_PEER", "target/debug/examples/wire_peer")
                .env("EMBER_GDBUS", "gdbus")
                .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1"))?;
            let plain = format!("{out}/{name}");
            run(Command::new("gcc").args(common).args([src.as_str(), lib, "-o", &plain]).args(libs))?;
            run(Command::new("valgrind")
                .args([
                    "--quiet",
                    "--error-exitcode=1",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite,indirect",
                ])
                .arg(&plain)
                .env("EMBER_WIRE_PEER", "target/debug/examples/wire_peer")
                .env("EMBER_GDBUS", "gdbus"))?;
        }
        Ok(())
    })())
}

/// Fails naming every function of the header that no C test calls (the C tests must call
/// every export, error paths included: docs/c-api.md).
fn uncalled_exports(header: &str) -> Result<(), String> {
    let mut tests = String::new();
    for e in std::fs::read_dir("bindings-c/tests/c").map_err(|e| e.to_string())?.flatten() {
        if e.path().extension().is_some_and(|x| x == "c") {
            tests.push_str(&std::fs::read_to_string(e.path()).map_err(|e| e.to_string())?);
        }
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut missing = Vec::new();
    // A declaration starts at the line's start (`int ember_x(`); comments are indented.
    for line in header.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()) && !l.starts_with("typedef"))
    {
        let Some(at) = line.find("ember_") else { continue };
        let name: String = line[at..].chars().take_while(|&c| is_name(c)).collect();
        if !line[at + name.len()..].starts_with('(') {
            continue;
        }
        let called = tests.match_indices(&name).any(|(i, _)| {
            let before = tests[..i].chars().next_back().is_none_or(|c| !is_name(c));
            let after = tests[i + name.len()..].chars().next().is_none_or(|c| !is_name(c));
            before && after
        });
        if !called {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("no C test in bindings-c/tests/c calls {}", missing.join(", ")))
    }
}

/// The result codes of a header: the enumerators of `enum ember_status`.
fn result_codes(header: &str) -> Vec<&str> {
    let Some(start) = header.find("enum ember_status {") else { return Vec::new() };
    let body = &header[start..];
    let body = &body[..body.find('}').unwrap_or(body.len())];
    body.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("EMBER_") && l.contains('='))
        .filter_map(|l| l.split([' ', '=']).next())
        .collect()
}

/// The functions of a cbindgen header that return `int` (a result code) but whose doc
/// comment (the `/* ... */` block just above the declaration) names none of the result
/// codes (docs/c-api.md: every function lists the codes it returns). `Err` if the header
/// has no `enum ember_status` to take the codes from.
fn functions_without_codes(header: &str) -> Result<Vec<String>, String> {
    let codes = result_codes(header);
    if codes.is_empty() {
        return Err("the header has no `enum ember_status`: no result codes to look for".into());
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let names_code = |comment: &str| {
        codes.iter().any(|code| {
            comment.match_indices(code).any(|(i, _)| {
                let before = comment[..i].chars().next_back().is_none_or(|c| !is_name(c));
                let after = comment[i + code.len()..].chars().next().is_none_or(|c| !is_name(c));
                before && after
            })
        })
    };
    let mut silent = Vec::new();
    // cbindgen writes each top-level doc comment as `/*` ... `*/` at the line's start, the
    // declaration right after it, also at the line's start (`int ember_x(`).
    let mut comment = String::new();
    let mut in_comment = false;
    for line in header.lines() {
        if in_comment {
            comment.push_str(line);
            comment.push('\n');
            in_comment = !line.contains("*/");
            continue;
        }
        if line.starts_with("/*") {
            comment.clear();
            comment.push_str(line);
            comment.push('\n');
            in_comment = !line.contains("*/");
            continue;
        }
        if !line.starts_with(|c: char| c.is_ascii_alphabetic()) || line.starts_with("typedef") {
            if !line.starts_with(' ') {
                comment.clear();
            }
            continue;
        }
        let doc = core::mem::take(&mut comment);
        let Some(at) = line.find("ember_") else { continue };
        let name: String = line[at..].chars().take_while(|&c| is_name(c)).collect();
        if !line[at + name.len()..].starts_with('(') {
            continue;
        }
        if line[..at].trim() == "int" && !names_code(&doc) {
            silent.push(name);
        }
    }
    Ok(silent)
}

/// The examples end to end: `sensor-daemon` publishes, the C `sensor-client` (built by its
/// own Makefile against libember.a) reads a reading and two events, and `SIGTERM` stops the
/// daemon with exit status 0 and its segments gone; then the C daemon and client of
/// `examples/c` (`examples/c/run-test.sh`).
fn step_examples() -> Outcome {
    outcome((|| {
        ensure_apt(&["gcc", "make", "pkg-config"])?;
        run(cargo().args(["build", "-p", "ember-sensor-daemon"]))?;
        let root = std::env::current_dir().map_err(|e| e.to_string())?;
        let lib = root.join("target/debug");
        // The client as a user builds it: `cargo xtask dist`, then its Makefile through
        // pkg-config, linked against libember.so.
        let prefix = dist::dist(&["--prefix".into(), "target/dist/examples".into()])?;
        let pkgconfig = prefix.join("lib/pkgconfig");
        run(Command::new("make")
            .args(["-C", "examples/sensor-client", "--always-make", "CC=gcc"])
            .env("PKG_CONFIG_PATH", &pkgconfig))?;
        let dir = root.join("target/examples");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let name = format!("xtask-sensor-{}", std::process::id());
        let config = dir.join("sensor.conf");
        std::fs::write(&config, "interval_ms = 20\n").map_err(|e| e.to_string())?;
        let socket = dir.join("sensor.sock");
        let mut daemon = Command::new(lib.join("sensor-daemon"))
            .args(["--name", &name, "--no-bus", "--config"])
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("sensor-daemon: {e}"))?;
        let result = (|| {
            let mut line = String::new();
            let out = daemon.stdout.take().ok_or("no stdout")?;
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).map_err(|e| e.to_string())?;
            if !line.starts_with("sensor-daemon: ready") {
                return Err(format!("sensor-daemon said {line:?}"));
            }
            let out = Command::new("examples/sensor-client/sensor-client")
                .args([&name, "2"])
                .env("LD_LIBRARY_PATH", prefix.join("lib"))
                .output()
                .map_err(|e| format!("sensor-client: {e}"))?;
            let client = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                return Err(format!("sensor-client: {}: {client}{}", out.status, String::from_utf8_lossy(&out.stderr)));
            }
            println!("{client}");
            let lines: Vec<&str> = client.lines().collect();
            let ok = lines.len() == 3
                && lines[0].starts_with("reading ")
                && lines[0].ends_with(" C")
                && lines[1..].iter().all(|l| l.starts_with("event ") && l.contains("threshold"));
            if !ok {
                return Err(format!("sensor-client printed {client:?}"));
            }
            run(Command::new("kill").args(["-TERM", &daemon.id().to_string()]))?;
            let status = daemon.wait().map_err(|e| e.to_string())?;
            if status.code() != Some(0) {
                return Err(format!("sensor-daemon ended with {status} after SIGTERM"));
            }
            if std::path::Path::new(&format!("/dev/shm/{name}-reading")).exists() {
                return Err("sensor-daemon left its seqlock in /dev/shm".into());
            }
            Ok(())
        })();
        let _ = daemon.kill();
        let _ = daemon.wait();
        result?;
        // The C daemon and client of examples/c, built through pkg-config against the same
        // prefix; the script checks every answer, SIGHUP and SIGTERM.
        run(Command::new("sh").arg("examples/c/run-test.sh").arg(&prefix))
    })())
}

fn step_no_std() -> Outcome {
    outcome((|| {
        ensure_target("stable", NO_STD_TARGET)?;
        run(cargo().args(["build", "-p", "ember-ipc-core", "--target", NO_STD_TARGET]))?;
        // Every feature a microcontroller can have: all but `std` (the CRC detection, which
        // asks a kernel).
        run(cargo().args(["build", "-p", "ember-ipc-core", "--target", NO_STD_TARGET, "--features", "defmt"]))?;
        run(cargo().args(["build", "-p", "ember-ipc-core", "--all-features"]))?;
        // ember-ipc-linux without std, and with each logging back end.
        run(cargo().args(["check", "-p", "ember-ipc-linux", "--no-default-features"]))?;
        run(cargo().args(["check", "-p", "ember-ipc-linux", "--features", "log"]))?;
        run(cargo().args(["check", "-p", "ember-ipc-linux", "--no-default-features", "--features", "defmt"]))?;
        // No `alloc` may creep in.
        let found = output(Command::new("grep").args(["-rn", "extern crate alloc", "core/src"]));
        match found {
            Some(lines) => Err(format!("ember-ipc-core mentions alloc:\n{lines}")),
            None => Ok(()),
        }
    })())
}

/// The `rust-version` the workspace declares.
fn msrv() -> Result<String, String> {
    let manifest = std::fs::read_to_string("Cargo.toml").map_err(|e| format!("Cargo.toml: {e}"))?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| "no rust-version in Cargo.toml".to_string())
}

fn step_msrv() -> Outcome {
    outcome((|| {
        let version = msrv()?;
        let list = output(Command::new("rustup").args(["toolchain", "list"])).ok_or("rustup is not available")?;
        if !list.lines().any(|l| l.starts_with(&format!("{version}-"))) {
            run(Command::new("rustup").args(["toolchain", "install", &version, "--profile", "minimal"]))?;
        }
        // Libraries and binaries; tests may use newer dev-dependencies.
        run(cargo_with(&version)
            .args(["check", "--workspace", "--lib", "--bins"])
            .env("CARGO_TARGET_DIR", "target/msrv"))
    })())
}

fn step_loom() -> Outcome {
    outcome((|| {
        // Separate target directory: --cfg loom rebuilds everything.
        let loom = |flags: &str| {
            let mut c = cargo();
            c.args(["test", "-p", "ember-ipc-core", "--release", "--test", "loom"])
                .env("RUSTFLAGS", flags)
                .env("CARGO_TARGET_DIR", "target/loom");
            c
        };
        run(&mut loom("--cfg loom"))?;
        // The same models with the SPSC head published Relaxed instead of Release: they
        // must fail, or they prove nothing.
        println!("(a deliberately weakened ordering follows: this run must FAIL)");
        match run(&mut loom("--cfg loom --cfg ember_loom_weak")) {
            Err(_) => Ok(()),
            Ok(()) => Err("the loom models passed with a weakened ordering: they cannot catch it".into()),
        }
    })())
}

fn step_miri() -> Outcome {
    outcome((|| {
        has_nightly()?;
        ensure_component("nightly", "miri")?;
        ensure_component("nightly", "rust-src")?;
        // With SSE4.2 and PCLMUL enabled at compile time, so the CRC's hardware path runs
        // under Miri (which cannot run `cpuid` to find it at run time); the CRC tests check
        // the portable path explicitly in the same run.
        run(cargo_nightly()
            .args(["miri", "test", "-p", "ember-ipc-core"])
            .env("RUSTFLAGS", "-C target-feature=+sse4.2,+pclmulqdq")
            // The doctests too, or they call the library's hardware path from code built
            // without the features (Miri refuses that).
            .env("RUSTDOCFLAGS", "-C target-feature=+sse4.2,+pclmulqdq")
            .env("CARGO_TARGET_DIR", "target/miri-hw"))
    })())
}

/// What the fuzz commands need: nightly, a C++ compiler for libFuzzer, cargo-fuzz.
fn fuzz_tools() -> Result<(), String> {
    has_nightly().map_err(|e| format!("no nightly toolchain: {e}"))?;
    ensure_apt(&["g++"]).map_err(|e| format!("no C++ compiler for libFuzzer: {e}"))?;
    ensure_cargo_fuzz().map_err(|e| format!("cargo-fuzz is not available and could not be installed: {e}"))
}

fn step_fuzz() -> Outcome {
    if let Err(e) = fuzz_tools() {
        return Outcome::Skipped(e);
    }
    if let Err(e) = fuzz::build(cargo_nightly) {
        return Outcome::Fail(format!("fuzz targets do not build: {e}"));
    }
    // One short run per parser, each starting from its committed seeds (valid inputs of its
    // kind); the corpus libFuzzer grows stays in fuzz/corpus, untracked.
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for target in fuzz::TARGETS {
        match fuzz::run(cargo_nightly, target, FUZZ_SMOKE_S, false) {
            Ok(r) => {
                if !r.ok || !r.crashes.is_empty() {
                    for line in &r.tail {
                        eprintln!("  {line}");
                    }
                    failures.push(format!(
                        "{target}: {}",
                        if r.crashes.is_empty() { "failed".into() } else { r.crashes.join(", ") }
                    ));
                }
                rows.push(r);
            }
            Err(e) => failures.push(format!("{target}: {e}")),
        }
    }
    println!("{}", fuzz::HEADER);
    for r in &rows {
        println!("{}", fuzz::row(r, FUZZ_SMOKE_S));
    }
    if failures.is_empty() { Outcome::Pass } else { Outcome::Fail(failures.join("; ")) }
}

/// `cargo xtask fuzz --minutes N [target...]`.
fn fuzz_campaign(args: &[String]) -> ExitCode {
    let (minutes, targets) = match fuzz::parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask fuzz: {e}\nusage: cargo xtask fuzz --minutes N [target...]");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = fuzz_tools().and_then(|()| fuzz::build(cargo_nightly)) {
        eprintln!("xtask fuzz: {e}");
        return ExitCode::FAILURE;
    }
    let seconds = (minutes * 60.0).round().max(1.0) as u64;
    let mut rows = Vec::new();
    for target in targets {
        println!("\n==== fuzz {target}: {seconds} s ====");
        match fuzz::run(cargo_nightly, target, seconds, true) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("xtask fuzz: {target}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("\n==== fuzz campaign: {seconds} s per target ====");
    println!("{}", fuzz::HEADER);
    for r in &rows {
        println!("{}", fuzz::row(r, seconds));
    }
    if rows.iter().all(|r| r.ok && r.crashes.is_empty()) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `cargo xtask fuzz-keep [target...]`: each target's grown corpus merged into its kept
/// corpus (`fuzz/corpus-kept/<target>`, committed), after a campaign.
fn fuzz_keep(args: &[String]) -> ExitCode {
    let mut targets = Vec::new();
    for a in args {
        match fuzz::TARGETS.iter().find(|&&k| k == a) {
            Some(k) => targets.push(*k),
            None => {
                eprintln!("xtask fuzz-keep: no fuzz target `{a}`; the targets: {}", fuzz::TARGETS.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if targets.is_empty() {
        targets = fuzz::TARGETS.to_vec();
    }
    if let Err(e) = fuzz_tools().and_then(|()| fuzz::build(cargo_nightly)) {
        eprintln!("xtask fuzz-keep: {e}");
        return ExitCode::FAILURE;
    }
    for t in targets {
        match fuzz::keep(cargo_nightly, t) {
            Ok((files, bytes)) => println!("{t:<14} kept: {files} files, {} KiB", bytes / 1024),
            Err(e) => {
                eprintln!("xtask fuzz-keep: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The per-board lines printed after the summary table.
static BOARD_SUMMARY: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn note_board(line: String) {
    BOARD_SUMMARY.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

/// Runs one tier on every board of the table, each under a heading; `run` gives the
/// board's result and the detail for its line after the summary table.
fn each_board(tier: u8, run: impl Fn(&ember_qemu::board::Board) -> (Result<(), String>, String)) -> Outcome {
    let boards = match boards::all() {
        Ok(b) => b,
        Err(e) => return Outcome::Fail(e),
    };
    let mut failed = Vec::new();
    for b in &boards {
        println!("\n---- tier {tier}: {} ({}) ----", b.name, b.triple);
        let started = Instant::now();
        let (r, detail) = run(b);
        note_board(format!(
            "tier {tier} {:<12} {:<7} {:>6.1}s  {detail}",
            b.name,
            if r.is_ok() { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        ));
        if let Err(e) = r {
            failed.push(format!("{}: {e}", b.name));
        }
    }
    if failed.is_empty() { Outcome::Pass } else { Outcome::Fail(failed.join("; ")) }
}

/// The board whose `ember-bridge` build `cargo xtask test` runs under qemu-user against
/// the host's (one board: a release cross build of Zenoh takes about 4 minutes;
/// `cargo xtask bridge-board --board <name>` runs any other).
const BRIDGE_TEST_BOARD: &str = "rpi4";

/// The bridge cross-built for [`BRIDGE_TEST_BOARD`] and run under qemu-user against the
/// host's bridge over loopback, both ways.
fn step_bridge_board() -> Outcome {
    let args = ["--board".to_string(), BRIDGE_TEST_BOARD.to_string()];
    outcome(boards::named(&args).and_then(|b| boards::bridge_tier1(&b)))
}

/// `cargo xtask size --bridge`: `ember-bridge` built for every board (static, release),
/// stripped, and its size in a table.
fn bridge_sizes() -> Result<(), String> {
    let mut rows = Vec::new();
    for b in boards::all()? {
        let (path, size) = boards::build_bridge_release(&b)?;
        rows.push((b.name.clone(), b.triple.clone(), size, path));
    }
    println!("\n{:<12} {:<32} {:>14}", "board", "target", "ember-bridge");
    for (name, triple, size, path) in rows {
        println!("{name:<12} {triple:<32} {:>10.1} MiB  ({})", size as f64 / (1024.0 * 1024.0), path.display());
    }
    Ok(())
}

/// Tier 1 on every board: the workspace's tests under qemu-user.
fn step_tier1() -> Outcome {
    each_board(1, |b| (boards::tier1(b), format!("workspace tests under {}", b.qemu_user)))
}

/// Tier 2 on every board: its kernel booted with the tests as `/init`'s work.
fn step_tier2() -> Outcome {
    each_board(2, |b| match boards::tier2(b) {
        Ok(t) => {
            boards::print_report(&t);
            let (p, f, s) = t.report.counts();
            let detail = format!(
                "{} -M {} -cpu {}, boot {:.0}s: {p} passed, {f} failed, {s} skipped in {} binaries; {}",
                b.qemu_system,
                b.machine,
                b.cpu,
                t.report.took.as_secs_f64(),
                t.report.binaries.len(),
                t.dir.join("results.txt").display()
            );
            (t.report.outcome, detail)
        }
        Err(e) => (Err(e.clone()), e),
    })
}

/// The board builds' packaging: a staging install by `cargo xtask dist` against
/// `packaging/dist-files.txt`, and the Yocto recipe and Buildroot package linted and
/// compared with it (xtask/src/packaging.rs).
fn step_packaging() -> Outcome {
    outcome(ensure_apt(&["pkg-config", "coreutils"]).and_then(|()| packaging::check()))
}

fn outcome(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

/// Runs every step of the test command, or (`only` not empty) the steps whose names
/// contain one of `only`'s words.
fn test(only: &[&str]) -> ExitCode {
    type StepFn = fn() -> Outcome;
    let steps: [(&'static str, StepFn); 18] = [
        ("cargo fmt --check", step_fmt),
        ("cargo clippy -D warnings", step_clippy),
        ("cargo doc -D warnings", step_docs),
        ("cargo package (published)", step_package),
        ("benches/dbus and benches/peers build (clippy)", step_bench_crate),
        ("bridge (zenoh)", step_bridge),
        ("cargo test --workspace", step_test),
        ("C ABI (header, gcc, ASan, valgrind)", step_c_abi),
        ("examples (daemon + C client)", step_examples),
        ("packaging (dist, Yocto, Buildroot)", step_packaging),
        ("boards: tier 1 (qemu-user)", step_tier1),
        ("bridge on a board (qemu-user)", step_bridge_board),
        ("boards: tier 2 (qemu-system)", step_tier2),
        ("no_std and feature builds", step_no_std),
        ("MSRV check (rust-version)", step_msrv),
        ("loom models (shm)", step_loom),
        ("miri (ember-ipc-core)", step_miri),
        ("fuzz smoke (8 targets, 10 s each)", step_fuzz),
    ];
    let steps: Vec<_> =
        steps.into_iter().filter(|(name, _)| only.is_empty() || only.iter().any(|w| name.contains(w))).collect();
    if steps.is_empty() {
        eprintln!("xtask: no step's name contains any of {only:?}");
        return ExitCode::FAILURE;
    }
    let total = steps.len();
    let mut done = Vec::new();
    for (i, (name, f)) in steps.into_iter().enumerate() {
        println!("\n==== [{}/{}] {} ====", i + 1, total, name);
        let t = Instant::now();
        let outcome = f();
        match &outcome {
            Outcome::Pass => println!("---- {name}: ok"),
            Outcome::Fail(e) => println!("---- {name}: FAILED: {e}"),
            Outcome::Skipped(why) => println!("---- {name}: SKIPPED: {why}"),
        }
        done.push(Step { name, outcome, took: t.elapsed() });
    }
    println!("\n==== summary ====");
    println!("{:<28} {:<8} {:>8}  note", "step", "result", "time");
    let mut failed = false;
    for s in &done {
        let (result, note) = match &s.outcome {
            Outcome::Pass => ("ok", String::new()),
            Outcome::Fail(e) => {
                failed = true;
                ("FAILED", e.clone())
            }
            Outcome::Skipped(why) => ("skipped", why.clone()),
        };
        println!("{:<28} {:<8} {:>7.1}s  {}", s.name, result, s.took.as_secs_f64(), note);
    }
    let boards = BOARD_SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
    if !boards.is_empty() {
        println!("\n==== boards ====");
        for line in boards.iter() {
            println!("{line}");
        }
    }
    if failed {
        println!("\ncargo xtask test: FAILED");
        ExitCode::FAILURE
    } else {
        println!("\ncargo xtask test: all steps passed");
        ExitCode::SUCCESS
    }
}

fn bench(args: &[String]) -> ExitCode {
    if args.first().is_some_and(|a| a == "--sweep") {
        return match plot::sweep(&args[1..]) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask bench --sweep: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "ember-ipc-cli", "--", "bench", "--full"]).args(args);
    if let Err(e) = run(&mut cmd) {
        eprintln!("xtask bench: {e}");
        return ExitCode::FAILURE;
    }
    if !args.is_empty() {
        return ExitCode::SUCCESS;
    }
    for next in [bench_dbus, bench_peers, bench_bridge] {
        if next(&[]) != ExitCode::SUCCESS {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Ember next to iceoryx2 (`benches/peers`): two pinned processes, the systems in
/// alternating chunks, p50/p99 per iteration and the ratio.
fn bench_peers(args: &[String]) -> ExitCode {
    match run(cargo().args(["run", "--release", "--manifest-path", PEERS_BENCH, "--"]).args(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench-peers: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The bridge's bench (`bridge/examples/bench.rs`): bridged latency and throughput next to
/// plain Zenoh in the same run; it starts the release `ember-bridge` twice.
fn bench_bridge(args: &[String]) -> ExitCode {
    let r = run(cargo().args(["build", "--release", "--manifest-path", BRIDGE, "--bins"])).and_then(|()| {
        run(cargo().args(["run", "--release", "--manifest-path", BRIDGE, "--example", "bench", "--"]).args(args))
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench_dbus(args: &[String]) -> ExitCode {
    let r = ensure_apt(&["dbus-daemon"]).and_then(|()| {
        run(cargo()
            .args(["run", "--release", "--manifest-path", DBUS_BENCH, "--bin", "ember-dbus-bench", "--"])
            .args(args))
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench-dbus: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header the way cbindgen writes it: the codes' enum, then functions.
    const SNIPPET: &str = "\
typedef enum ember_status {
  /*
   Success.
   */
  EMBER_OK = 0,
  /*
   An argument is invalid.
   */
  EMBER_EINVAL = -1,
  EMBER_ENOSPC = -2,
} ember_status;

/*
 Copies the name into `buf`. Returns `EMBER_OK`; `EMBER_EINVAL` (a NULL pointer);
 `EMBER_ENOSPC` (it does not fit).
 */
int ember_good(struct ember_x *x,
               char *buf,
               size_t cap);

/*
 Copies the name into `buf`. As `ember_good`.
 */
int ember_bad(struct ember_x *x, char *buf, size_t cap);

/*
 Frees `x` (NULL is fine).
 */
void ember_x_free(struct ember_x *x);

/*
 A static string. Returns no result code (it cannot fail).
 */
const char *ember_name(void);

int ember_undocumented(void);

/*
 Mentions `EMBER_EINVALID` and `XEMBER_OK`, which are not codes.
 */
int ember_lookalike(void);

typedef int (*ember_callback)(void *ctx);
";

    #[test]
    fn result_codes_come_from_the_enum() {
        assert_eq!(result_codes(SNIPPET), ["EMBER_OK", "EMBER_EINVAL", "EMBER_ENOSPC"]);
    }

    #[test]
    fn int_functions_without_a_code_in_their_comment_are_named() {
        assert_eq!(functions_without_codes(SNIPPET).unwrap(), ["ember_bad", "ember_undocumented", "ember_lookalike"]);
    }

    #[test]
    fn a_header_without_the_codes_enum_is_an_error() {
        assert!(functions_without_codes("int ember_x(void);\n").is_err());
    }

    #[test]
    fn the_committed_header_names_a_code_for_every_int_function() {
        let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../", "bindings-c/include/ember.h"))
            .expect("the committed header");
        assert_eq!(functions_without_codes(&header).unwrap(), Vec::<String>::new());
    }
}
