//! The small harness of the multi-process test binaries (`harness = false`): run with
//! `--peer <role> ...` the binary plays a peer process; otherwise it runs its tests, each
//! caught so one failure does not hide the others, filtered by any non-flag arguments.

// Each test binary uses a part of this module.
#![allow(dead_code)]

pub mod dbus_daemon;
pub mod peer;

use std::time::Instant;

/// A test: its name and body.
pub type Test = (&'static str, fn());

/// Dispatches to `peer` for `--peer` invocations, else runs `tests` and exits non-zero if
/// any failed.
pub fn main(tests: &[Test], peer: fn(&[String])) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--peer") {
        peer(&args[1..]);
        return;
    }
    // `--skip NAME` leaves out the tests whose names contain NAME, as libtest's does.
    let mut skips: Vec<&String> = Vec::new();
    let mut filters: Vec<&String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--skip" {
            skips.extend(it.next());
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        if skips.iter().any(|s| name.contains(s.as_str())) {
            continue;
        }
        let started = Instant::now();
        let result = std::panic::catch_unwind(test);
        let took = started.elapsed();
        match result {
            Ok(()) => {
                println!("test {name} ... ok ({took:.1?})");
                passed += 1;
            }
            Err(payload) => match payload.downcast::<Skip>() {
                Ok(skip) => {
                    println!("test {name} ... skipped: {}", skip.0);
                    skipped += 1;
                }
                Err(_) => {
                    println!("test {name} ... FAILED ({took:.1?})");
                    failed += 1;
                }
            },
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; {skipped} skipped",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

/// A command that runs this test binary again (as a peer process).
///
/// Under qemu-user (tier 1 of the boards), the binary is foreign to the host kernel, which
/// cannot exec it without binfmt_misc: the peer then runs under the emulator that
/// `EMBER_TEST_RUNNER` names (`qemu-aarch64-static`, or a template with `{arch}`, which
/// becomes this binary's architecture). `cargo xtask test --board` and
/// `targets/cross.toml` set it; on a real board it is unset and peers run natively.
pub fn me() -> std::process::Command {
    let argv = me_argv();
    let mut c = std::process::Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// The words that run this test binary again: its path, after the emulator's when there is
/// one (for commands such as `setpriv` that take a program to run).
pub fn me_argv() -> Vec<std::ffi::OsString> {
    let exe = std::env::current_exe().expect("current_exe").into_os_string();
    let mut argv: Vec<std::ffi::OsString> =
        runner().iter().flat_map(|r| r.split_whitespace()).map(Into::into).collect();
    argv.push(exe);
    argv
}

/// Whether this binary runs under qemu-user (tier 1 of the boards), whose emulation of a few
/// kernel interfaces differs from a kernel's; the parts of tests that meet them say so and
/// are covered by the booted boards (tier 2).
pub fn emulated() -> bool {
    runner().is_some()
}

/// The emulator that runs this binary's peers, if any.
fn runner() -> Option<String> {
    let r = std::env::var("EMBER_TEST_RUNNER").ok()?;
    let r = r.trim().replace("{arch}", std::env::consts::ARCH);
    (!r.is_empty()).then_some(r)
}

/// A test that cannot run here: the payload a test unwinds with through [`skip_unless`].
pub struct Skip(pub String);

/// Whether a test may be reported as skipped instead of failing: only where the runner
/// says so (`EMBER_ALLOW_SKIP=1`, set by the board harness inside a guest that lacks the
/// host tools), so that on a development machine or in CI a missing tool is a failure.
fn skips_allowed() -> bool {
    std::env::var("EMBER_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

/// Ends the calling test as skipped (with `why`) unless `ok`; where skips are not allowed,
/// a failure instead.
pub fn skip_unless(ok: bool, why: &str) {
    if ok {
        return;
    }
    if skips_allowed() {
        std::panic::resume_unwind(Box::new(Skip(why.to_string())));
    }
    panic!("{why} (skips are allowed only with EMBER_ALLOW_SKIP=1)");
}

/// Ends the calling test as skipped when this binary runs under a user-mode emulator (the
/// boards' tier 1, `EMBER_TEST_RUNNER`), which does not emulate what the test needs
/// (`what`: seccomp filters, say). The test still runs on the host and, on the boards' real
/// kernels, in tier 2; so this is no skip on a development machine or in CI's host step.
pub fn skip_under_emulator(what: &str) {
    if let Some(r) = runner() {
        std::panic::resume_unwind(Box::new(Skip(format!(
            "{r} does not emulate {what}; this test runs on the host and in tier 2"
        ))));
    }
}

/// Ends the calling test as skipped unless this binary has a wall clock of its own to step
/// (`EMBER_OWN_CLOCK=1`, set by the boards' tier 2: a guest kernel whose `CLOCK_REALTIME`
/// no other process reads). There is no namespace for `CLOCK_REALTIME` (time namespaces
/// offset only the monotonic and boot clocks), so on the host or in CI stepping it would
/// step every process on the machine; the test runs on each board's booted kernel instead.
pub fn skip_unless_own_clock(what: &str) {
    if std::env::var("EMBER_OWN_CLOCK").is_ok_and(|v| v == "1") {
        return;
    }
    std::panic::resume_unwind(Box::new(Skip(format!(
        "{what} steps CLOCK_REALTIME, which this machine shares with every process; it runs in tier 2 (EMBER_OWN_CLOCK=1)"
    ))));
}

/// Skips (see [`skip_unless`]) unless the program `tool` is on `PATH`.
pub fn need_tool(tool: &str) {
    let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    skip_unless(found, &format!("needs `{tool}`, which is not installed here"));
}
