//! D-Bus rows: method calls through a private `dbus-daemon` started for the run (skipped,
//! with the reason, when `dbus-daemon` is not installed). The baseline is a call the daemon
//! answers itself (`Peer.Ping` to `org.freedesktop.DBus`); the row is the same call
//! answered by an Ember service in a second process, so the message crosses the daemon
//! twice each way (the ratio's floor is about 2).

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::DirBuilderExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember_core::dbus::value::Values;
use ember_core::dbus::{Signature, Value, Writer};
use ember_linux::dbus::object::{Call, MethodError, Service};
use ember_linux::dbus::{Connection, Processed};

use super::harness::{self, Peer, Pool, now_ns, row};
use super::{Options, Progress, Row};

const T: Duration = Duration::from_secs(10);
type Bus = Connection<16384>;

/// A private session bus, stopped and removed on drop.
struct Daemon {
    child: Child,
    dir: String,
    address: String,
}

impl Daemon {
    fn start() -> Result<Daemon, String> {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("dbus-daemon").is_file()));
        if !found {
            return Err("dbus-daemon is not installed (Debian: apt install dbus-daemon); skipped".into());
        }
        // A new directory of our own (create_dir fails on anything already there, a
        // planted symlink included), mode 0700.
        let dir = format!("/tmp/ember-bench-dbus-{}-{}", std::process::id(), nanos());
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("{dir}: {e}"))?;
        let cleanup = RemoveDir(dir.clone());
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>
</busconfig>
"#
        );
        std::fs::write(format!("{dir}/bus.conf"), config).map_err(|e| e.to_string())?;
        let child = Command::new("dbus-daemon")
            .args(["--nofork", "--print-address=1", &format!("--config-file={dir}/bus.conf")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start dbus-daemon: {e}"))?;
        // From here the guard stops the daemon and removes the directory, whatever happens.
        std::mem::forget(cleanup);
        let mut d = Daemon { child, dir, address: String::new() };
        let out = d.child.stdout.take().ok_or("dbus-daemon: no stdout")?;
        // Its address, or nothing within 10 s.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        d.address = rx.recv_timeout(T).map_err(|_| "dbus-daemon printed no address within 10 s")?.trim().to_string();
        if !d.address.starts_with("unix:") {
            return Err(format!("dbus-daemon printed {:?} for its address", d.address));
        }
        Ok(d)
    }
}

/// Removes a directory on drop (until the daemon's own guard takes over).
struct RemoveDir(String);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A service with no methods of its own: `Peer.Ping` is built in.
struct NoMethods;

impl Service for NoMethods {
    fn call(
        &mut self,
        _: &Call<'_>,
        _: Values<'_>,
        _: &mut [Option<rustix::fd::OwnedFd>],
        _: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        Err(MethodError::failed("no methods"))
    }
    fn get(&mut self, _: &str, _: &str, _: &str, _: &mut Writer<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
    fn set(&mut self, _: &str, _: &str, _: &str, _: Value<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
}

fn connect(address: &str) -> Result<Box<Bus>, String> {
    Bus::connect(address).map(Box::new).map_err(|e| format!("connect to {address}: {e}"))
}

/// Round-trip samples, halved, of `iters` `Peer.Ping` calls to `dest`.
fn pings(bus: &mut Bus, dest: &str, iters: usize) -> Result<Vec<f64>, String> {
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        bus.call(dest, "/", Some("org.freedesktop.DBus.Peer"), "Ping", Signature::EMPTY, |_| Ok(()), T)
            .map_err(|e| format!("Ping {dest}: {e:?}"))?;
        samples.push(now_ns(t) / 2.0);
    }
    Ok(samples)
}

/// This module's peer roles, for [`super::harness::peer`]: `None` for a role that is not
/// one of them.
pub fn peer(role: &str, args: &[String]) -> Option<Result<(), String>> {
    (role == "dbus-serve").then(|| play(role, args))
}

/// The peer: `dbus-serve <address> <calls>` answers that many calls, then waits for the
/// parent.
fn play(_role: &str, args: &[String]) -> Result<(), String> {
    let address = args.first().ok_or("dbus-serve: no address")?;
    let calls: usize = args.get(1).and_then(|n| n.parse().ok()).ok_or("dbus-serve: no count")?;
    let mut bus = connect(address)?;
    harness::say_ready()?;
    println!("{}", bus.unique_name());
    let mut answered = 0;
    while answered < calls {
        // The parent runs its baseline calls before this peer's: wait long enough for
        // those on a slow (emulated) board.
        match bus.process(&[], &mut NoMethods, Duration::from_secs(600)).map_err(|e| format!("serve: {e}"))? {
            Processed::Answered => answered += 1,
            Processed::Message(_) => {}
        }
    }
    harness::wait_for_parent();
    Ok(())
}

const NOTE: &str = "Peer.Ping method calls through a private dbus-daemon, one-way = round trip / 2; baseline: the daemon answering the call itself; the row: an Ember service in another process answering it (two daemon hops each way)";

/// The D-Bus rows.
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    if !opts.selected("dbus") {
        return Ok(());
    }
    let cpu = *cpus.get(1).or(cpus.first()).ok_or("no CPU")?;
    let daemon = Daemon::start()?;
    let rounds = opts.pick(5, 3, 1);
    let iters = opts.pick(5_000, 1_500, 20);
    let mut bus = connect(&daemon.address)?;
    let (mut base, mut served) = (Pool::default(), Pool::default());
    for round in 1..=rounds {
        progress.step(&format!("D-Bus calls (round {round}/{rounds})"));
        let mut peer = Peer::spawn(cpu, &["dbus-serve", &daemon.address, &iters.to_string()])?;
        let name = peer.line()?;
        base.add(pings(&mut bus, "org.freedesktop.DBus", iters))?;
        served.add(pings(&mut bus, &name, iters))?;
        peer.finish()?;
    }
    if let (Some(b), Some(s)) = (base.stats(), served.stats()) {
        row(rows, "dbus/daemon-ping", 0, b, None, NOTE);
        row(rows, "dbus/ping", 0, s, Some(("dbus/daemon-ping", b)), NOTE);
    }
    Ok(())
}
