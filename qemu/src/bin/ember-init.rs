//! `/init` of the board guests: mounts what the tests need, runs every test binary of
//! `/ember/manifest` as a separate process, prints one `@@ember` line per test and per
//! binary and a final verdict on the console (see `ember_qemu::protocol`), then powers the
//! board off.
//!
//! The manifest has one binary per line, `name<TAB>path<TAB>arguments`, and `env KEY=VALUE`
//! lines for the binaries' environment. The kernel passes `ember_scenario=panic|hang` from
//! its command line to exercise the harness's failure paths; `ember-init --fake-tests` plays
//! a test binary with one passing and one failing test (for the same purpose).

use ember_qemu::protocol::{self, MARK};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// How long one test binary may run before it is killed and reported as `timeout`.
const DEFAULT_BINARY_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--fake-tests") {
        println!("test fake_passes ... ok");
        println!("test fake_fails ... FAILED");
        return ExitCode::from(1);
    }
    if std::process::id() != 1 {
        eprintln!("ember-init is the board guest's /init (pid 1); the harness runs it, not you");
        return ExitCode::from(2);
    }
    let verdict = match setup() {
        Ok(()) => scenario_then_run(),
        Err(e) => {
            println!("ember-init: set-up failed: {e}");
            format!("{MARK}verdict FAIL binaries=0 passed=0 failed=0 skipped=0 setup-failed")
        }
    };
    println!("{verdict}");
    let _ = std::io::stdout().flush();
    rustix::fs::sync();
    // Powering off ends qemu; if it could not, the harness's timeout will.
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        println!("ember-init: reboot(POWER_OFF) failed: {e}");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The file systems the tests use.
fn setup() -> Result<(), String> {
    use rustix::mount::{MountFlags, mount};
    let mounts: [(&str, &str, &str); 6] = [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/dev/shm", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
        ("mqueue", "/dev/mqueue", "mqueue"),
    ];
    for (source, target, fstype) in mounts {
        std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
        mount(source, target, fstype, MountFlags::empty(), None)
            .map_err(|e| format!("mount {fstype} on {target}: {e}"))?;
    }
    loopback_up().map_err(|e| format!("bringing up lo: {e}"))
}

/// `struct ifreq` with the flags member of its union (padded to the union's size on
/// 64-bit targets; the kernel reads fewer bytes on 32-bit ones).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// The TCP and UDP tests use 127.0.0.1, which a fresh kernel has down: `ip link set lo up`.
fn loopback_up() -> rustix::io::Result<()> {
    use rustix::net::{AddressFamily, SocketType, socket};
    const SIOCSIFFLAGS: rustix::ioctl::Opcode = 0x8914;
    const IFF_UP: i16 = 0x1;
    let sock = socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let mut name = [0u8; 16];
    name[..2].copy_from_slice(b"lo");
    let req = IfReq { name, flags: IFF_UP, _pad: [0; 22] };
    // SAFETY: SIOCSIFFLAGS takes a pointer to a `struct ifreq`, which `IfReq` lays out (name,
    // then the flags of its union, padded to the union's largest member).
    let set = unsafe { rustix::ioctl::Setter::<SIOCSIFFLAGS, IfReq>::new(req) };
    // SAFETY: the opcode and argument match, as above; the socket is open.
    unsafe { rustix::ioctl::ioctl(&sock, set) }
}

fn scenario_then_run() -> String {
    match std::env::var("ember_scenario").as_deref() {
        Ok("panic") => panic!("ember-init: asked to panic (ember_scenario=panic)"),
        Ok("hang") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => run_manifest(),
    }
}

/// One binary of the manifest.
struct Binary {
    name: String,
    path: String,
    args: Vec<String>,
}

fn run_manifest() -> String {
    let text = match std::fs::read_to_string("/ember/manifest") {
        Ok(t) => t,
        Err(e) => return format!("{MARK}verdict FAIL binaries=0 passed=0 failed=0 skipped=0 no-manifest: {e}"),
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let mut binaries = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        if let Some(kv) = line.strip_prefix("env ") {
            if let Some((k, v)) = kv.split_once('=') {
                env.push((k.to_string(), v.to_string()));
            }
            continue;
        }
        let mut f = line.split('\t');
        let (Some(name), Some(path)) = (f.next(), f.next()) else { continue };
        let args = f.next().unwrap_or("").split_whitespace().map(str::to_string).collect();
        binaries.push(Binary { name: name.to_string(), path: path.to_string(), args });
    }
    let timeout = std::env::var("ember_binary_timeout")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_BINARY_TIMEOUT);
    let (mut passed, mut failed, mut skipped, mut bad_binaries) = (0u32, 0u32, 0u32, 0u32);
    for b in &binaries {
        let (p, f, s, ok) = run_binary(b, &env, timeout);
        passed += p;
        failed += f;
        skipped += s;
        bad_binaries += u32::from(!ok);
    }
    let pass = failed == 0 && bad_binaries == 0 && !binaries.is_empty();
    format!(
        "{MARK}verdict {} binaries={} passed={passed} failed={failed} skipped={skipped}",
        if pass { "PASS" } else { "FAIL" },
        binaries.len()
    )
}

/// Runs one binary, relaying its output; returns (passed, failed, skipped, exited 0).
fn run_binary(b: &Binary, env: &[(String, String)], timeout: Duration) -> (u32, u32, u32, bool) {
    println!("ember-init: running {} ({} {})", b.name, b.path, b.args.join(" "));
    let started = Instant::now();
    let mut cmd = Command::new(&b.path);
    cmd.args(&b.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).current_dir("/tmp");
    // A group of its own, so that what it leaves running can be stopped with it.
    cmd.process_group(0);
    cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            println!("ember-init: cannot start {}: {e}", b.path);
            println!("{MARK}binary {} spawn 0", b.name);
            return (0, 0, 0, false);
        }
    };
    let out = child.stdout.take().expect("piped");
    let name = b.name.clone();
    let relay = std::thread::spawn(move || {
        let (mut p, mut f, mut s) = (0, 0, 0);
        let mut r = BufReader::new(out);
        let mut buf = Vec::new();
        // Bytes, not UTF-8 lines: a stray byte must not end the relay (and the child's
        // next write with EPIPE).
        while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
            buf.clear();
            println!("{line}");
            if let Some((test, result, note)) = protocol::test_case(&line) {
                match result {
                    "ok" => p += 1,
                    "FAILED" => f += 1,
                    "skipped" => s += 1,
                    _ => {}
                }
                if note.is_empty() {
                    println!("{MARK}test {name} {result} {test}");
                } else {
                    println!("{MARK}test {name} {result} {test} -- {note}");
                }
            }
        }
        (p, f, s)
    });
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                break match (status.code(), status.signal()) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(sig)) => format!("signal:{sig}"),
                    _ => "unknown".to_string(),
                };
            }
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break "timeout".to_string();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break format!("wait-error:{}", e.raw_os_error().unwrap_or(0)),
        }
    };
    // Whatever of its group is still running (peers left behind, or all of it after a
    // timeout) goes now, and every orphan that came to pid 1 is reaped.
    let group = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    while let Ok(Some(_)) = rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {}
    // Peers the binary left behind may hold its stdout open: wait for the relay a while,
    // then go on without its counts (the binary's exit still decides).
    let waited = Instant::now();
    while !relay.is_finished() && waited.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (p, f, s) = if relay.is_finished() {
        relay.join().unwrap_or((0, 1, 0))
    } else {
        println!("ember-init: {}'s output stays open after it exited (a peer left running?)", b.name);
        (0, 0, 0)
    };
    println!("{MARK}binary {} {exit} {:.2}", b.name, started.elapsed().as_secs_f64());
    (p, f, s, exit == "0")
}
