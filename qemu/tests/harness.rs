//! The harness's own tests: real guests on the rpi4 board's real kernel under
//! qemu-system-aarch64, each failing in one way, each reported as a failure with the
//! reason. They install what they need (cross gcc, qemu, the rustup target) and fetch the
//! kernel through the harness itself, once, into `target/boards`.

use ember_qemu::board::{self, Board};
use ember_qemu::boot::{self, Report};
use ember_qemu::initramfs::{self, Contents, TestBinary};
use ember_qemu::{build, fetch};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

struct Setup {
    root: PathBuf,
    board: Board,
    kernel: PathBuf,
    init: PathBuf,
}

/// Tools, kernel and `ember-init`, once for all the tests of this binary.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let boards = board::load(&root).unwrap();
        let board = board::find(&boards, "rpi4").unwrap().clone();
        build::ensure_tools(&board).unwrap();
        let dir = build::board_dir(&root, &board);
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = fetch::kernel(&board, &dir).unwrap();
        let init = build::init(&root, &board).unwrap();
        Setup { root, board, kernel, init }
    })
}

/// Boots a guest whose only test binary is `ember-init --fake-tests` (one test passes,
/// one fails), with `cmdline` added to the kernel's command line.
fn boot_guest(name: &str, cmdline: &str, timeout: Duration) -> (Report, String) {
    let s = setup();
    let dir = s.root.join("target/boards/harness-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let contents = Contents {
        init: s.init.clone(),
        tests: vec![TestBinary { name: "fake".into(), host_path: s.init.clone(), args: vec!["--fake-tests".into()] }],
        ..Contents::default()
    };
    let initrd = dir.join(format!("{name}.cpio"));
    initramfs::write(&contents, &initrd).unwrap();
    let log = dir.join(format!("{name}.log"));
    let report = boot::boot(&s.board, &s.kernel, &initrd, cmdline, timeout, &log, 1);
    (report, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn a_guest_that_fails_one_test_fails_and_names_it() {
    let (r, log) = boot_guest("fails-one", "", Duration::from_secs(240));
    let err = r.outcome.clone().unwrap_err();
    assert!(err.contains("verdict FAIL"), "{err}\n{log}");
    assert!(err.contains("fake::fake_fails"), "{err}");
    assert!(err.contains("fake (exit 1)"), "{err}");
    assert_eq!(r.counts(), (1, 1, 0), "{:?}", r.tests);
    assert_eq!(r.verdict.as_ref().map(|v| v.0), Some(false));
    assert_eq!(r.binaries.len(), 1);
}

#[test]
fn an_init_that_panics_leaves_no_verdict() {
    let (r, log) = boot_guest("init-panics", "ember_scenario=panic", Duration::from_secs(240));
    let err = r.outcome.clone().unwrap_err();
    assert!(err.contains("without a verdict line"), "{err}\n{log}");
    assert!(err.contains("panicked at") || err.contains("Kernel panic"), "{err}");
    assert!(r.verdict.is_none());
    assert!(log.contains("asked to panic"), "{log}");
}

#[test]
fn a_guest_that_hangs_times_out() {
    // Long enough to boot (a few seconds), short of the other tests' limits.
    let (r, log) = boot_guest("hangs", "ember_scenario=hang", Duration::from_secs(25));
    let err = r.outcome.clone().unwrap_err();
    assert!(err.contains("timed out after 25s"), "{err}\n{log}");
    assert!(r.verdict.is_none());
    assert!(r.took >= Duration::from_secs(25));
}
