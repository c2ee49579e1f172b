//! The boards: `cargo xtask build|test|qemu --board <name>`, and the board steps of
//! `cargo xtask test` (tier 1 under qemu-user, tier 2 booting each board's kernel).

use ember_qemu::board::{self, Board};
use ember_qemu::host::run;
use ember_qemu::initramfs::{Contents, TestBinary};
use ember_qemu::{boot, build, fetch, initramfs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The C tests, cross-compiled for tier 2 as they are compiled for the host.
const C_TESTS: &str = "bindings-c/tests/c";

/// The packages whose tests run on the boards: all but the host-only tools, and the
/// command's and the example daemon's tests, which run their binaries by their host build
/// paths (their code is the libraries', whose tests do run there).
const TEST_ARGS: [&str; 19] = [
    "--workspace",
    "--exclude",
    "xtask",
    "--exclude",
    "ember-qemu",
    "--exclude",
    "ember-ipc-cli",
    "--exclude",
    "ember-sensor-daemon",
    // The examples' tests start the example's binary as a host process (as a user would).
    "--exclude",
    "ember-async-daemon",
    // A proc-macro runs on the host only; the snippets are doctests, run on the host.
    "--exclude",
    "ember-ipc-derive",
    "--exclude",
    "ember-snippets",
    "--lib",
    "--bins",
    "--tests",
    "--no-fail-fast",
];

fn root() -> PathBuf {
    std::env::current_dir().expect("xtask runs in the workspace root")
}

/// Every board of the table.
pub fn all() -> Result<Vec<Board>, String> {
    board::load(&root())
}

/// The board `--board <name>` names in `args`.
pub fn named(args: &[String]) -> Result<Board, String> {
    let name = match args {
        [flag, name, ..] if flag == "--board" => name,
        _ => return Err("expected --board <name>".into()),
    };
    let boards = all()?;
    board::find(&boards, name).cloned()
}

/// `cargo xtask build --board <name>`: the `emberctl` command and libember.a for the board,
/// static, in release mode.
pub fn build_release(b: &Board) -> Result<Vec<PathBuf>, String> {
    build::ensure_tools(b)?;
    let root = root();
    run(build::cargo(&root, b, "build").args(["--release", "-p", "ember-ipc-cli", "-p", "ember-ipc-c"]))?;
    let dir = build::target_dir(&root).join(&b.triple).join("release");
    let out = vec![dir.join("emberctl"), dir.join("libember.a")];
    for f in &out {
        if !f.is_file() {
            return Err(format!("the build left no {}", f.display()));
        }
    }
    Ok(out)
}

/// The bridge's manifest (its own workspace).
const BRIDGE_MANIFEST: &str = "bridge/Cargo.toml";

/// `cargo xtask build --board <name> --bridge`: `ember-bridge` for the board, static,
/// release (into the boards' target directory), and a stripped copy next to it
/// (`ember-bridge.stripped`, the board's cross `strip`). Returns the stripped copy's path
/// and size.
pub fn build_bridge_release(b: &Board) -> Result<(PathBuf, u64), String> {
    build::ensure_tools(b)?;
    let root = root();
    run(build::cargo(&root, b, "build").args([
        "--release",
        "--manifest-path",
        BRIDGE_MANIFEST,
        "--bin",
        "ember-bridge",
    ]))?;
    let exe = build::target_dir(&root).join(&b.triple).join("release").join("ember-bridge");
    let stripped = exe.with_file_name("ember-bridge.stripped");
    let strip = b.linker.strip_suffix("gcc").map(|p| format!("{p}strip")).ok_or("the board's linker is not a gcc")?;
    run(Command::new(&strip).arg("-o").arg(&stripped).arg(&exe))?;
    let size = std::fs::metadata(&stripped).map_err(|e| format!("{}: {e}", stripped.display()))?.len();
    Ok((stripped, size))
}

/// The bridge on a board under qemu-user against the host's bridge: `ember-bridge` built
/// for the board as it ships (the release build of [`build_bridge_release`]), then the
/// bridge's test `a_board_bridge_against_the_host_bridge_both_ways` on the host with the
/// board's build under the board's emulator as one of the two bridges.
///
/// The release build, not a dev build: besides being what runs on a board, a dev build of
/// the bridge for armv7 (static glibc) dies with `SIGSEGV` before `main` under
/// qemu-arm-static (even `--help`), where the release build runs; the cause is not known.
pub fn bridge_tier1(b: &Board) -> Result<(), String> {
    let (_, size) = build_bridge_release(b)?;
    println!("ember-bridge for {}: {size} bytes stripped", b.name);
    let root = root();
    let exe = build::target_dir(&root).join(&b.triple).join("release").join("ember-bridge");
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["test", "--manifest-path", BRIDGE_MANIFEST, "--test", "bridge", "a_board_bridge", "--", "--nocapture"])
        .env("EMBER_BRIDGE_BOARD_EXE", &exe)
        .env("EMBER_BRIDGE_BOARD_RUNNER", &b.qemu_user))
}

/// Tier 1: the workspace's tests for the board, run under qemu-user, then the CRC-32C runs.
pub fn tier1(b: &Board) -> Result<(), String> {
    build::ensure_tools(b)?;
    let dir = build::board_dir(&root(), b);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tests = run_logged(build::cargo(&root(), b, "test").args(TEST_ARGS), &dir.join("tier1.log"));
    let crc = crc_runs(b);
    tests.and(crc)
}

/// Runs `cmd` as [`run`] does, streaming its output, and also writes that output to `log`.
/// A failure names the tests that failed (libtest's `---- name stdout ----` blocks and
/// cargo's "to rerun pass" lines), so the summary at the end of a long run says which test
/// failed without the scroll-back.
fn run_logged(cmd: &mut Command, log: &Path) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};

    let shown = format!("{cmd:?}").replace('"', "");
    println!("$ {shown} (output also in {})", log.display());
    let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{shown}` could not start: {e}"))?;
    let pump = |from: Box<dyn std::io::Read + Send>, to_stderr: bool| {
        let (file, failed) = (Arc::clone(&file), Arc::clone(&failed));
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                if to_stderr {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                let _ = writeln!(file.lock().unwrap_or_else(|e| e.into_inner()), "{line}");
                let name = line
                    .strip_prefix("---- ")
                    .and_then(|l| l.strip_suffix(" stdout ----"))
                    .or_else(|| line.strip_prefix("error: test failed, to rerun pass "));
                if let Some(name) = name {
                    failed.lock().unwrap_or_else(|e| e.into_inner()).push(name.trim_matches('`').to_string());
                }
            }
        })
    };
    let out = pump(Box::new(child.stdout.take().expect("piped")), false);
    let err = pump(Box::new(child.stderr.take().expect("piped")), true);
    let status = child.wait().map_err(|e| format!("`{shown}`: {e}"))?;
    let _ = (out.join(), err.join());
    if status.success() {
        return Ok(());
    }
    let failed = failed.lock().unwrap_or_else(|e| e.into_inner());
    let names = if failed.is_empty() { "none named".to_string() } else { failed.join(", ") };
    Err(format!("`{shown}` exited with {status}; failed: {names}; log: {}", log.display()))
}

/// The CRC-32C runs of tier 1: the core crate's `crc32c` tests and the Linux crate's `cpu`
/// tests, built as a default build is (the board's rustflags without `-C target-cpu`, so
/// the instructions are found at run time, not assumed), run under qemu-user with each
/// `-cpu` of the board's `qemu_cpu_crc`/`qemu_cpu_no_crc`. `EMBER_CRC_CPU_HAS` tells the
/// tests which kind of CPU they are on: with it they check the accelerated path against the
/// bitwise reference even where the kernel cannot report it (RISC-V Zbc under qemu-user
/// 7.2), and that the dispatch never picks what the CPU lacks.
pub fn crc_runs(b: &Board) -> Result<(), String> {
    let root = root();
    let flags = b.default_cpu_rustflags();
    let mut cmd = build::cargo(&root, b, "test");
    cmd.args([
        "-p",
        "ember-ipc-core",
        "-p",
        "ember-ipc-linux",
        "--lib",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if flags != b.rustflags {
        // Other flags than the board's: their own target dir, so the two builds do not
        // rebuild each other.
        let (key, _) =
            b.cargo_env().into_iter().find(|(k, _)| k.ends_with("RUSTFLAGS")).expect("cargo_env sets RUSTFLAGS");
        cmd.env(key, flags.join(" ")).env("CARGO_TARGET_DIR", build::target_dir(&root).join("default-cpu"));
    }
    println!("$ {cmd:?} (the crc tests, as a default build)");
    let out = cmd.output().map_err(|e| format!("cargo could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the crc tests failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let json = String::from_utf8_lossy(&out.stdout);
    let runs = [("ember_core", "crc32c"), ("ember_linux", "cpu::")];
    for (cpu, has) in b.crc_cpus() {
        for (lib, filter) in runs {
            let exe = test_executable(&json, lib)
                .ok_or_else(|| format!("cargo's messages name no test executable of {lib}"))?;
            run(Command::new(&b.qemu_user)
                .args(["-cpu", cpu])
                .arg(&exe)
                .args([filter, "--nocapture"])
                .env("EMBER_CRC_CPU_HAS", if has { "1" } else { "0" }))?;
        }
    }
    Ok(())
}

/// The test executable of the library target `lib` in cargo's `--message-format=json`
/// output.
fn test_executable(json: &str, lib: &str) -> Option<PathBuf> {
    let name = format!("\"name\":\"{lib}\"");
    json.lines().filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains(&name)).find_map(|l| {
        let at = l.find("\"executable\":\"")? + "\"executable\":\"".len();
        let end = l[at..].find('"')?;
        Some(PathBuf::from(&l[at..at + end]))
    })
}

/// The result of one board's tier 2.
pub struct Tier2 {
    /// The board.
    pub board: String,
    /// What the boot showed.
    pub report: boot::Report,
    /// Where the console log and results are.
    pub dir: PathBuf,
}

/// Tier 2: builds the test binaries, the C tests and `/init` for the board, fetches its
/// kernel, packs the initramfs and boots it.
pub fn tier2(b: &Board) -> Result<Tier2, String> {
    let root = root();
    build::ensure_tools(b)?;
    let dir = build::board_dir(&root, b);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut tests = test_binaries(&root, b)?;
    let init = build::init(&root, b)?;
    run(build::cargo(&root, b, "build").args(["-p", "ember-ipc-c", "--lib", "--example", "wire_peer"]))?;
    tests.extend(c_tests(&root, b, &dir)?);
    // A static C program linked with the board's libember.a also runs under qemu-user on
    // the host (`qemu-aarch64-static ./test_shm`), before the guest boots.
    run(Command::new(&b.qemu_user).arg(dir.join("c/test_shm")))?;
    let kernel = fetch::kernel(b, &dir)?;
    let debian_root = if b.dbus { Some(fetch::dbus_root(b, &dir)?) } else { None };
    let contents = Contents {
        init,
        helpers: vec![("wire_peer".into(), build::artifact(&root, b, "examples/wire_peer"))],
        env: vec![
            ("EMBER_WIRE_PEER".into(), "/ember/bin/wire_peer".into()),
            // One million records instead of ten across processes (a third of the boot's
            // time otherwise); the host and tier 1 move all ten million.
            ("EMBER_TEST_RECORDS".into(), "1000000".into()),
            // The guest's wall clock is its own: tests that step CLOCK_REALTIME run here.
            ("EMBER_OWN_CLOCK".into(), "1".into()),
        ],
        tests,
        debian_root,
    };
    initramfs::write_bundle(&contents, &dir.join("bundle"))?;
    let initrd = dir.join("initramfs.cpio");
    let size = initramfs::write(&contents, &initrd)?;
    println!(
        "{}: initramfs {} MiB, {} test binaries; booting {} ({} -M {} -cpu {}), console log {}",
        b.name,
        size >> 20,
        contents.tests.len(),
        kernel.display(),
        b.qemu_system,
        b.machine,
        b.cpu,
        dir.join("console.log").display()
    );
    let report = boot::boot(
        b,
        &kernel,
        &initrd,
        "",
        Duration::from_secs(b.boot_timeout_s),
        &dir.join("console.log"),
        contents.tests.len(),
    );
    let mut lines = String::new();
    for t in &report.tests {
        let note = if t.note.is_empty() { String::new() } else { format!(" -- {}", t.note) };
        lines.push_str(&format!("{} {} {}{note}\n", t.result, t.binary, t.name));
    }
    std::fs::write(dir.join("results.txt"), lines).map_err(|e| e.to_string())?;
    let mut report = report;
    // The guest carries dbus-daemon on these boards: a D-Bus test skipped for want of it
    // means the guest's daemon is broken, not absent by design.
    if b.dbus && report.outcome.is_ok() {
        let missing: Vec<String> = report
            .tests
            .iter()
            .filter(|t| t.result == "skipped" && t.note.contains("`dbus-daemon`"))
            .map(|t| format!("{}::{}", t.binary, t.name))
            .collect();
        if !missing.is_empty() {
            report.outcome =
                Err(format!("the guest carries dbus-daemon, yet these skipped for want of it: {missing:?}"));
        }
    }
    Ok(Tier2 { board: b.name.clone(), report, dir })
}

/// The workspace's test executables for the board (built here), named `<package>_<target>`.
fn test_binaries(root: &Path, b: &Board) -> Result<Vec<TestBinary>, String> {
    let out = build::cargo(root, b, "test")
        .args(TEST_ARGS)
        .args(["--no-run", "--message-format=json-render-diagnostics"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo test --no-run for {} failed", b.triple));
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else { continue };
        // "path+file:///…/core#ember-ipc-core@0.1.0" → ember-ipc-core
        let id = v["package_id"].as_str().unwrap_or("");
        let package = id.rsplit('#').next().and_then(|s| s.split('@').next()).unwrap_or("unknown");
        let target = v["target"]["name"].as_str().unwrap_or("unknown");
        let kind = v["target"]["kind"][0].as_str().unwrap_or("");
        let name = match kind {
            "lib" => format!("{package}_lib"),
            "bin" => format!("{package}_bin-{target}"),
            _ => format!("{package}_{target}"),
        };
        tests.push(TestBinary { name, host_path: exe.into(), args: Vec::new() });
    }
    if tests.is_empty() {
        return Err("cargo test --no-run listed no test executables".into());
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tests)
}

/// The C tests, linked statically with the board's libember.a by the board's gcc.
fn c_tests(root: &Path, b: &Board, dir: &Path) -> Result<Vec<TestBinary>, String> {
    let lib = build::artifact(root, b, "libember.a");
    let out = dir.join("c");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join(C_TESTS))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    let mut tests = Vec::new();
    for src in sources {
        let stem = src.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let exe = out.join(&stem);
        run(Command::new(&b.linker)
            .args(["-static", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"])
            .arg("-I")
            .arg(root.join("bindings-c/include"))
            .arg(&src)
            .arg(&lib)
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-o"])
            .arg(&exe))?;
        tests.push(TestBinary { name: format!("c_{stem}"), host_path: exe, args: Vec::new() });
    }
    Ok(tests)
}

/// Prints a tier 2 report: counts, what was skipped and why, what failed.
pub fn print_report(t: &Tier2) {
    let r = &t.report;
    let (passed, failed, skipped) = r.counts();
    println!(
        "{}: {} in {:.0}s: {passed} passed, {failed} failed, {skipped} skipped, in {} binaries (console: {}, results: {})",
        t.board,
        if r.outcome.is_ok() { "PASS" } else { "FAIL" },
        r.took.as_secs_f64(),
        r.binaries.len(),
        t.dir.join("console.log").display(),
        t.dir.join("results.txt").display()
    );
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for s in r.tests.iter().filter(|t| t.result == "skipped") {
        match reasons.iter_mut().find(|(n, _)| *n == s.note) {
            Some((_, c)) => *c += 1,
            None => reasons.push((s.note.clone(), 1)),
        }
    }
    for (why, n) in reasons {
        println!("    skipped {n}: {why} (these run on the host and under qemu-user)");
    }
    if let Err(e) = &r.outcome {
        println!("    {e}");
    }
}
