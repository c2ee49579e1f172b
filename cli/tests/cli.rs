//! The `emberctl` command as a user runs it: real processes on real endpoints, a real private
//! `dbus-daemon`, `dbus-send` and `dbus-monitor` (installed by `cargo xtask test`).

#[path = "../../linux/tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::dbus_daemon::Daemon;

fn ember() -> Command {
    Command::new(env!("CARGO_BIN_EXE_emberctl"))
}

/// A name no other test (or test run) uses.
fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("ember-cli-{}-{tag}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Waits for `child` (at most 60 s, then kills it and fails) and returns its output.
fn finish(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("an ember command hung: {:?}", child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait_with_output().unwrap()
}

fn spawn(args: &[&str]) -> Child {
    ember().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn run(args: &[&str]) -> Output {
    finish(spawn(args))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and expects exit status `code`; returns stdout and stderr.
fn expect(args: &[&str], code: i32) -> (String, String) {
    let o = run(args);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "ember {args:?}\nstdout: {out}\nstderr: {err}");
    (out, err)
}

/// Checks that `out` holds frames `seq..seq+n` of kind 7 carrying `hello world`.
fn check_frames(uri: &str, out: &str, first_seq: u32, n: usize) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), n, "{uri}: {out}");
    for (i, l) in lines.iter().enumerate() {
        let head = format!("kind=7 seq={} len=11", first_seq + i as u32);
        assert!(l.starts_with(&head) && l.ends_with(" hello world"), "{uri}: line {i}: {l}");
    }
}

#[test]
fn send_then_recv_on_every_endpoint() {
    let dir = format!("/tmp/{}", unique("dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let send = ["hello", "world", "--kind", "7", "--seq", "5", "--count", "2"];
    // Receivers that must be there first: they listen, bind or create.
    for (uri, extra) in [
        (format!("fifo:{dir}/fifo"), vec!["--create", "--unlink"]),
        (format!("uds:{dir}/stream.sock"), vec![]),
        (format!("uds-abstract:{}", unique("abs")), vec![]),
        (format!("uds-seqpacket:{dir}/seqpacket.sock"), vec![]),
        (format!("uds-dgram:{dir}/dgram.sock"), vec![]),
        (format!("uds-dgram-abstract:{}", unique("dgram")), vec![]),
    ] {
        let mut args = vec!["recv", uri.as_str(), "--count", "2", "--timeout", "20"];
        args.extend(extra);
        let receiver = spawn(&args);
        let mut s = vec!["send", uri.as_str()];
        s.extend(send);
        s.extend(["--timeout", "20"]);
        expect(&s, 0);
        let o = finish(receiver);
        assert!(o.status.success(), "{uri}: {}", text(&o.stderr));
        check_frames(&uri, &text(&o.stdout), 5, 2);
    }
    // Senders that create what the receiver opens afterwards. A ring's writer closed it
    // when it exited: `--count 0` reads what is there and ends with exit status 0.
    for (uri, create, count) in [
        (format!("mq:/{}", unique("mq")), true, "2"),
        (format!("shm-ring:{}", unique("ring")), false, "0"),
        (format!("shm-broadcast:{}", unique("bcast")), false, "0"),
    ] {
        let mut s = vec!["send", uri.as_str()];
        s.extend(send);
        if create {
            s.push("--create");
        }
        expect(&s, 0);
        let (out, _) = expect(&["recv", &uri, "--count", count, "--timeout", "5", "--unlink"], 0);
        check_frames(&uri, &out, 5, 2);
    }
    // The broadcast ring numbers its records; the queue gives priorities.
    let uri = format!("mq:/{}", unique("prio"));
    expect(&["send", &uri, "--create", "--prio", "3", "--hex", "00ff41"], 0);
    let (out, _) = expect(&["recv", &uri, "--print", "hex", "--unlink", "--timeout", "5"], 0);
    assert_eq!(out.trim(), "kind=0 seq=0 len=3 prio=3 00ff41");
    // A seqlock holds the latest value only.
    let uri = format!("shm-seqlock:{}", unique("seqlock"));
    let mut s = vec!["send", uri.as_str()];
    s.extend(send);
    expect(&s, 0);
    let (out, _) = expect(&["recv", &uri, "--timeout", "5", "--unlink"], 0);
    assert!(out.starts_with("kind=7 seq=6 len=11 version=2 hello world"), "{out}");
    // A shell pipeline: standard output into standard input.
    let mut tx = ember().args(["send", "-"]).args(send).stdout(Stdio::piped()).spawn().unwrap();
    let rx = ember()
        .args(["recv", "pipe:", "--count", "0"])
        .stdin(tx.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(tx.wait().unwrap().success());
    let o = finish(rx);
    assert!(o.status.success(), "{}", text(&o.stderr));
    check_frames("pipe:", &text(&o.stdout), 5, 2);
    // Raw payloads for scripts.
    let uri = format!("mq:/{}", unique("raw"));
    expect(&["send", &uri, "--create", "abc"], 0);
    let (out, _) = expect(&["recv", &uri, "--print", "raw", "--unlink", "--timeout", "5"], 0);
    assert_eq!(out, "abc");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_uris_unreachable_endpoints_and_damaged_frames_are_clear_errors() {
    let (_, err) = expect(&["send", "tcp-ish:1.2.3.4", "x"], 2);
    assert!(err.contains("unknown scheme `tcp-ish:`"), "{err}");
    let (_, err) = expect(&["recv", "mq:/a/b"], 2);
    assert!(err.contains("no slash after the first"), "{err}");
    let (_, err) = expect(&["send"], 2);
    assert!(err.contains("which endpoint"), "{err}");
    // The command's name once, not twice.
    assert!(err.starts_with("emberctl send: which endpoint") && err.matches("emberctl send:").count() == 1, "{err}");
    // Options that do not apply to the endpoint are refused, before anything is created.
    let (_, err) = expect(&["send", "pipe:", "x", "--prio", "3"], 2);
    assert!(err.contains("--prio applies to mq: endpoints only"), "{err}");
    let (_, err) = expect(&["send", "fifo:/tmp/never", "x", "--capacity", "4096"], 2);
    assert!(err.contains("--capacity applies to shm-ring:"), "{err}");
    let bad_q = unique("badprio");
    let (_, err) = expect(&["send", &format!("mq:/{bad_q}"), "x", "--create", "--prio", "abc"], 2);
    assert!(err.contains("--prio"), "{err}");
    // No queue was created (ls of a missing object exits 1).
    expect(&["ls", &format!("mq:/{bad_q}")], 1);
    let (_, err) = expect(&["recv", "fifo:/tmp/x", "--print", "pretty"], 2);
    assert!(err.contains("--print"), "{err}");
    let path = format!("/tmp/{}.sock", unique("nobody"));
    let (_, err) = expect(&["send", &format!("uds:{path}"), "x", "--timeout", "0.2"], 1);
    assert!(err.contains(&path) && err.contains("nobody listens"), "{err}");
    let q = format!("mq:/{}", unique("missing"));
    let (_, err) = expect(&["send", &q, "x"], 1);
    assert!(err.contains("--create"), "{err}");
    // A second writer for a segment name is refused with the way out.
    let seg = format!("shm-seqlock:{}", unique("twice"));
    expect(&["send", &seg, "one"], 0);
    let (_, err) = expect(&["send", &seg, "two"], 1);
    assert!(err.contains("one writer") && err.contains("--unlink"), "{err}");
    expect(&["recv", &seg, "--unlink", "--timeout", "5"], 0);
    // Objects named to `ls` that are not there: exit status 1.
    let (out, _) = expect(&["ls", &format!("mq:/{}", unique("absent"))], 1);
    assert!(out.contains("No such file"), "{out}");
    // An empty queue and a timeout.
    expect(&["send", &q, "--create", "x"], 0);
    expect(&["recv", &q, "--timeout", "5"], 0);
    let (_, err) = expect(&["recv", &q, "--timeout", "0.1", "--unlink"], 1);
    assert!(err.contains("after 0 frame(s)") && err.contains("timed out"), "{err}");
    // Garbage into a datagram socket: reported, skipped, exit status 2; the good frame
    // after it still arrives.
    let path = format!("/tmp/{}.sock", unique("garbage"));
    let uri = format!("uds-dgram:{path}");
    let receiver = spawn(&["recv", &uri, "--count", "2", "--timeout", "20"]);
    let start = Instant::now();
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    while sock.send_to(b"not a frame at all, just bytes", &path).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the receiver never bound {path}");
        std::thread::sleep(Duration::from_millis(10));
    }
    expect(&["send", &uri, "hello", "world", "--kind", "7", "--seq", "1"], 0);
    let o = finish(receiver);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("is not an Ember frame"), "{}", text(&o.stderr));
    check_frames(&uri, &text(&o.stdout), 1, 1);
}

/// A full `/dev/shm` (a 256 KiB tmpfs in a private mount namespace, as root): `send` to a
/// new ring is a clear error with exit status 1 and leaves nothing behind, where it used to
/// die of `SIGBUS` (exit status 135) on the first page it touched.
/// On a board whose queue limits are below emberctl's defaults (10 messages of 8192 bytes),
/// an unprivileged `send mq:... --create` makes the queue the board allows and says so; an
/// explicit size over the limit is refused naming the limit and its value (it was "create:
/// system call failed: Invalid argument"). The limits are lowered in a private IPC
/// namespace, and the command runs as nobody (root is not bound by them).
#[test]
fn mq_create_fits_the_boards_limits() {
    common::need_tool("unshare");
    common::need_tool("setpriv");
    let script = "echo 4 > /proc/sys/fs/mqueue/msg_max && echo 1024 > /proc/sys/fs/mqueue/msgsize_max || exit 99
        as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\"; }
        as_nobody \"$0\" send mq:/fits hi --create; echo \"default=$?\"
        as_nobody \"$0\" send mq:/wide hi --create --msg-size 4096; echo \"wide=$?\"";
    let o = Command::new("unshare")
        .args(["--ipc", "sh", "-c", script, env!("CARGO_BIN_EXE_emberctl")])
        .output()
        .expect("unshare (util-linux) runs");
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["default=0", "wide=1"], "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].contains("created with 4 messages of 1024 bytes (/proc/sys/fs/mqueue/msg_max is 4)"), "{err}");
    assert!(lines[1].contains("(/proc/sys/fs/mqueue/msgsize_max is 1024)"), "{err}");
    assert!(
        lines[2].contains("limit reached: /proc/sys/fs/mqueue/msgsize_max (bytes per message) is 1024, 4096 asked for"),
        "{err}"
    );
}

#[test]
fn full_dev_shm_is_a_clear_error_not_sigbus() {
    common::need_tool("unshare");
    let script = "mount -t tmpfs -o size=256k tmpfs /dev/shm || exit 99
        \"$0\" send shm-ring:x hi --capacity 1048576; echo \"big=$?\"
        dd if=/dev/zero of=/dev/shm/fill bs=4k 2>/dev/null
        \"$0\" send shm-ring:x hi; echo \"full=$?\"
        ls /dev/shm";
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c", script, env!("CARGO_BIN_EXE_emberctl")])
        .output()
        .expect("unshare (util-linux) runs");
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["big=1", "full=1", "fill"], "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("no space for the shared-memory segment: 1049088 bytes needed, 262144 available"),
        "{err}"
    );
    assert!(lines[1].contains("66048 bytes needed, 0 available"), "{err}");
}

fn ls_json(uri: &str) -> serde_json::Value {
    let (out, _) = expect(&["ls", "--json", uri], 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["objects"][0].clone()
}

#[test]
fn ls_shows_a_status_seqlock_document() {
    use ember_linux::core::shm::inspect::STATUS_JSON_FINGERPRINT;
    use ember_linux::shm::{Backing, SeqLockWriter};
    let name = unique("status");
    // What `ember-bridge` publishes (docs/bridge.md, "Counters and status").
    let doc = r#"{"board":"a","pid":4242,"routes":[
        {"channel":"imu","direction":"out","key":"ember/a/imu","local":"spsc","matched":true,
         "counters":{"in":1200,"out":1198,"dropped":2,"bad":0,"lost":0}},
        {"channel":"calc","direction":"serve","key":"ember/a/rpc/calc","local":"seqpacket","matched":null,
         "counters":{"in":7,"out":6,"dropped":1,"bad":0,"lost":0}}]}"#;
    let mut w = SeqLockWriter::create(Backing::Named(&format!("/{name}")), 4096, STATUS_JSON_FINGERPRINT).unwrap();
    w.write(doc.as_bytes()).unwrap();
    let uri = format!("shm-seqlock:{name}");
    let seg = ls_json(&uri);
    assert_eq!(seg["kind"], "seqlock");
    assert_eq!(seg["status"]["board"], "a");
    assert_eq!(seg["status"]["routes"][1]["counters"]["dropped"], 1);
    let (out, _) = expect(&["ls", &uri], 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[1].starts_with(&format!("/{name} ")) && lines[1].ends_with("status of a (pid 4242): 2 route(s)"),
        "{out}"
    );
    assert!(lines[2].starts_with("  imu ") && lines[2].contains("ember/a/imu"), "{out}");
    assert!(lines[2].ends_with("in=1200 out=1198 dropped=2 bad=0 lost=0"), "{out}");
    assert!(lines[3].starts_with("  calc ") && lines[3].contains(" serve ") && lines[3].contains("seqpacket"), "{out}");
    // The listing of everything shows it too, once.
    let (all, _) = expect(&["ls"], 0);
    assert_eq!(all.matches("status of a (pid 4242)").count(), 1, "{all}");
    // Not JSON: an ordinary seqlock line, no status.
    w.write(b"not json").unwrap();
    let seg = ls_json(&uri);
    assert!(seg.get("status").is_none(), "{seg}");
}

#[test]
fn ls_shows_a_segment_then_its_dead_writer() {
    let name = unique("ls");
    let uri = format!("shm-ring:{name}");
    // A writer that fills its ring and then blocks for room: alive until killed.
    let mut writer = spawn(&["send", &uri, "x", "--count", "1000", "--capacity", "1024", "--fingerprint", "0xabc"]);
    let start = Instant::now();
    let seg = loop {
        let o = run(&["ls", "--json", &uri]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let seg = v["objects"][0].clone();
        if seg["counters"]["producer_waiting"] == true {
            break seg;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the writer never filled its ring: {v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(seg["name"], format!("/{name}"));
    assert_eq!(seg["kind"], "spsc-ring");
    assert_eq!(seg["capacity"], 1024);
    assert_eq!(seg["fingerprint"], 0xabc);
    assert_eq!(seg["writer_pid"], writer.id());
    assert_eq!(seg["writer_alive"], true);
    assert_eq!(seg["mode"], "0600");
    // Every 25-byte frame takes a 40-byte record: the ring holds what fits in 1024 bytes.
    let pending = seg["counters"]["pending_bytes"].as_u64().unwrap();
    assert!(pending > 900 && pending <= 1024, "{seg}");
    // The table says the same.
    let (out, _) = expect(&["ls"], 0);
    let line = out.lines().find(|l| l.starts_with(&format!("/{name} "))).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("spsc-ring") && line.contains(&format!("{} alive", writer.id())), "{line}");
    writer.kill().unwrap();
    writer.wait().unwrap();
    let seg = ls_json(&uri);
    assert_eq!(seg["writer_alive"], false, "{seg}");
    let (out, _) = expect(&["ls", &uri], 0);
    assert!(out.contains(&format!("{} dead", seg["writer_pid"])), "{out}");
    // What the dead writer left can still be read, then removed.
    let (out, _) = expect(&["recv", &uri, "--count", "3", "--timeout", "5", "--unlink"], 0);
    assert_eq!(out.lines().count(), 3);
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}")).exists());
    // A queue with its attributes, named explicitly (/dev/mqueue may not be mounted).
    let q = format!("mq:/{}", unique("lsq"));
    expect(&["send", &q, "--create", "--max-msgs", "4", "--msg-size", "256", "one"], 0);
    let v = ls_json(&q);
    assert_eq!((v["type"].as_str(), v["max_msgs"].as_u64(), v["msg_size"].as_u64()), (Some("mq"), Some(4), Some(256)));
    assert_eq!(v["queued"], 1);
    expect(&["recv", &q, "--unlink", "--timeout", "5"], 0);
    // A planted file is not mistaken for a FIFO.
    let f = format!("/tmp/{}", unique("plain"));
    std::fs::write(&f, b"x").unwrap();
    let v = ls_json(&format!("fifo:{f}"));
    assert!(v["state"].as_str().unwrap().contains("not a fifo"), "{v}");
    std::fs::remove_file(&f).unwrap();
    // A socket: listening while its listener lives, then a stale file (no probe connection
    // is made: the listener has nothing to accept).
    let path = format!("/tmp/{}.sock", unique("lsock"));
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let v = ls_json(&format!("uds:{path}"));
    assert!(v["state"].as_str().unwrap().ends_with("stream listening"), "{v}");
    l.set_nonblocking(true).unwrap();
    assert!(l.accept().is_err(), "ls connected to the socket");
    drop(l);
    let v = ls_json(&format!("uds:{path}"));
    assert!(v["state"].as_str().unwrap().contains("stale"), "{v}");
    std::fs::remove_file(&path).unwrap();
}

fn address_args(d: &Daemon) -> Vec<String> {
    vec!["--address".into(), d.address.clone()]
}

#[test]
fn dbus_call_emit_and_monitor_on_a_private_daemon() {
    let d = Daemon::start();
    // A name on the bus, owned by this process, for ListNames to show.
    let mut me = Box::new(ember_linux::dbus::Connection::<4096>::connect(&d.address).unwrap());
    me.request_name("org.ember.CliTest", 0, Duration::from_secs(5)).unwrap();
    let bus = ["--dest", "org.freedesktop.DBus", "--path", "/org/freedesktop/DBus"];
    let mut call = vec!["dbus", "call"];
    let addr = address_args(&d);
    call.extend(addr.iter().map(String::as_str));
    call.extend(bus);
    let mut list = call.clone();
    list.extend(["--method", "org.freedesktop.DBus.ListNames"]);
    let (out, _) = expect(&list, 0);
    assert!(out.starts_with("([") && out.trim_end().ends_with("],)"), "{out}");
    assert!(out.contains("'org.freedesktop.DBus'") && out.contains("'org.ember.CliTest'"), "{out}");
    // Typed arguments, and the remote error as exit status 1.
    let mut owner = call.clone();
    owner.extend(["--method", "org.freedesktop.DBus.GetNameOwner", "'org.ember.CliTest'"]);
    let (out, _) = expect(&owner, 0);
    assert_eq!(out.trim(), format!("('{}',)", me.unique_name()));
    let mut missing = call.clone();
    missing.extend(["--method", "org.freedesktop.DBus.GetNameOwner", "'org.ember.Nobody'"]);
    let (_, err) = expect(&missing, 1);
    assert!(err.contains("org.freedesktop.DBus.Error.NameHasNoOwner"), "{err}");
    let mut bad = call.clone();
    bad.extend(["--method", "org.freedesktop.DBus.GetNameOwner", "unquoted"]);
    let (_, err) = expect(&bad, 2);
    assert!(err.contains("argument 1") && err.contains("strings are quoted"), "{err}");
    // A monitor, and signals emitted until it has seen one.
    let rule = "type='signal',interface='org.ember.CliTest'";
    let mut mon = vec!["dbus", "monitor", "--match", rule, "--count", "1", "--timeout", "30"];
    mon.extend(addr.iter().map(String::as_str));
    let monitor = spawn(&mon);
    let mut emit = vec!["dbus", "emit", "--path", "/org/ember/Test", "--signal", "org.ember.CliTest.Changed"];
    emit.extend(addr.iter().map(String::as_str));
    emit.extend(["uint32 5", "{'unit': <'C'>}", "@as []"]);
    let start = Instant::now();
    let mut monitor = Some(monitor);
    while let Some(mut m) = monitor.take() {
        if m.try_wait().unwrap().is_some() {
            let o = m.wait_with_output().unwrap();
            let out = text(&o.stdout);
            assert!(o.status.success(), "{}", text(&o.stderr));
            assert!(out.starts_with("signal serial="), "{out}");
            assert!(out.contains("path=/org/ember/Test interface=org.ember.CliTest member=Changed"), "{out}");
            assert!(out.contains("signature='ua{sv}as'"), "{out}");
            assert!(out.contains("(uint32 5, {'unit': <'C'>}, @as [])"), "{out}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the monitor saw nothing");
        expect(&emit, 0);
        std::thread::sleep(Duration::from_millis(100));
        monitor = Some(m);
    }
}

/// `dbus monitor` sees what `dbus-monitor` sees: it becomes a monitor (`BecomeMonitor`), so
/// method calls to other connections (here to the bus itself) and their replies show, not
/// only the signals match rules deliver; with no `--match`, everything.
#[test]
fn dbus_monitor_sees_calls_and_replies() {
    common::need_tool("dbus-send");
    let d = Daemon::start();
    let addr = address_args(&d);
    let get_id = |d: &Daemon| {
        let s = Command::new("dbus-send")
            .args([&format!("--bus={}", d.address), "--print-reply", "--dest=org.freedesktop.DBus"])
            .args(["/org/freedesktop/DBus", "org.freedesktop.DBus.GetId"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(s.success());
    };
    // Calls dbus-send until `monitor` exits; returns its output.
    let watch = |args: &[&str]| {
        let mut mon = vec!["dbus", "monitor"];
        mon.extend(args);
        mon.extend(addr.iter().map(String::as_str));
        let mut m = spawn(&mon);
        let start = Instant::now();
        while m.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(30) {
                let _ = m.kill();
                panic!("the monitor saw too little: {:?}", m.wait_with_output().unwrap());
            }
            get_id(&d);
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = m.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    let out = watch(&["--match", "type='method_call',member='GetId'", "--count", "1", "--timeout", "30"]);
    assert!(out.starts_with("method_call serial="), "{out}");
    assert!(out.contains("destination=org.freedesktop.DBus") && out.contains("member=GetId"), "{out}");
    // Everything: the call, the bus's reply, the signals.
    let out = watch(&["--count", "40", "--timeout", "30"]);
    for want in ["method_call serial=", "member=GetId", "method_return serial=", "signal serial=", "NameOwnerChanged"] {
        assert!(out.contains(want), "no {want:?} in\n{out}");
    }
}

#[test]
fn dbus_decode_of_a_capture_and_of_damaged_copies() {
    common::need_tool("dbus-monitor");
    common::need_tool("dbus-send");
    let d = Daemon::start();
    let file = format!("{}/capture.bin", d.dir);
    let rule = "type='signal',interface='org.ember.Capture'";
    let mut monitor = Command::new("dbus-monitor")
        .args(["--address", &d.address, "--binary", rule])
        .stdout(std::fs::File::create(&file).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read(&file).unwrap().windows(7).any(|w| w == b"Capture") {
        assert!(start.elapsed() < Duration::from_secs(20), "dbus-monitor captured nothing");
        let s = Command::new("dbus-send")
            .args([&format!("--bus={}", d.address), "--type=signal", "/org/ember/Cap", "org.ember.Capture.Reading"])
            .args(["string:hi", "array:uint32:1,2", "dict:string:int32:a,1"])
            .status()
            .unwrap();
        assert!(s.success());
        std::thread::sleep(Duration::from_millis(100));
    }
    monitor.kill().unwrap();
    monitor.wait().unwrap();
    let (out, _) = expect(&["dbus", "decode", &file], 0);
    let line = out.lines().position(|l| l.contains("member=Reading")).unwrap_or_else(|| panic!("{out}"));
    let reading: Vec<&str> = out.lines().skip(line).take(2).collect();
    assert!(reading[0].contains("little-endian: signal serial="), "{out}");
    assert!(reading[0].contains("path=/org/ember/Cap interface=org.ember.Capture"), "{out}");
    assert!(reading[0].contains("signature='saua{si}'"), "{out}");
    assert_eq!(reading[1].trim(), "('hi', [uint32 1, 2], {'a': 1})");
    // Truncated copies: exit status 2, an offset, never a panic.
    let data = std::fs::read(&file).unwrap();
    let damaged = format!("{}/damaged.bin", d.dir);
    let step = (data.len() / 30).max(1);
    for n in (1..data.len()).step_by(step) {
        std::fs::write(&damaged, &data[..n]).unwrap();
        let (_, err) = expect(&["dbus", "decode", &damaged], 2);
        assert!(err.contains("offset") && err.contains("truncated"), "cut at {n}: {err}");
    }
    // Named corruptions of the first message.
    for (at, byte, offset, rule) in [
        (0, b'x', "offset 0 ", "byte order"),
        (1, 9, "offset 1 ", "message type"),
        (3, 2, "offset 3 ", "protocol version"),
    ] {
        let mut c = data.clone();
        c[at] = byte;
        std::fs::write(&damaged, &c).unwrap();
        let (_, err) = expect(&["dbus", "decode", &damaged], 2);
        assert!(err.contains(offset) && err.contains(rule), "{err}");
    }
    // Flipped bytes anywhere: decoded or refused, never a crash.
    for i in (0..data.len()).step_by(step) {
        let mut c = data.clone();
        c[i] ^= 0x5a;
        std::fs::write(&damaged, &c).unwrap();
        let o = run(&["dbus", "decode", &damaged]);
        assert!(matches!(o.status.code(), Some(0 | 2)), "flip at {i}: {o:?}");
    }
}

/// `dbus decode` reads what `busctl capture` writes (pcapng: a section header, an
/// interface of link type 231, enhanced packet blocks), and prints every good message
/// before a damaged one, then says where the damage starts (it printed nothing then).
#[test]
fn dbus_decode_of_busctl_pcapng_and_a_damaged_tail() {
    common::need_tool("busctl");
    common::need_tool("dbus-send");
    let d = Daemon::start();
    let file = format!("{}/capture.pcapng", d.dir);
    let mut capture = Command::new("busctl")
        .args([&format!("--address={}", d.address), "capture"])
        .stdout(std::fs::File::create(&file).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read(&file).unwrap().windows(7).any(|w| w == b"Capture") {
        assert!(start.elapsed() < Duration::from_secs(20), "busctl captured nothing");
        let s = Command::new("dbus-send")
            .args([&format!("--bus={}", d.address), "--type=signal", "/org/ember/Cap", "org.ember.Capture.Reading"])
            .args(["string:pcapng", "uint32:7"])
            .status()
            .unwrap();
        assert!(s.success());
        std::thread::sleep(Duration::from_millis(100));
    }
    capture.kill().unwrap();
    capture.wait().unwrap();
    let data = std::fs::read(&file).unwrap();
    assert_eq!(&data[..4], b"\x0a\x0d\x0d\x0a", "busctl writes pcapng");
    let (out, err) = expect(&["dbus", "decode", &file], 0);
    let line = out.lines().position(|l| l.contains("member=Reading")).unwrap_or_else(|| panic!("{out}\n{err}"));
    let reading: Vec<&str> = out.lines().skip(line).take(2).collect();
    assert!(reading[0].contains("path=/org/ember/Cap interface=org.ember.Capture"), "{out}");
    assert_eq!(reading[1].trim(), "('pcapng', uint32 7)");
    let good = out.lines().filter(|l| l.starts_with("message ")).count();
    assert!(good >= 2, "{out}");
    // Cut inside the last block: the messages before it, then where the damage starts.
    let damaged = format!("{}/damaged.pcapng", d.dir);
    std::fs::write(&damaged, &data[..data.len() - 10]).unwrap();
    let (out, err) = expect(&["dbus", "decode", &damaged], 2);
    assert_eq!(out.lines().filter(|l| l.starts_with("message ")).count(), good - 1, "{out}");
    assert!(
        err.contains("offset") && err.contains("truncated") && err.contains(&format!("{} good", good - 1)),
        "{err}"
    );
    // Raw messages (dbus-monitor --binary style) with a damaged third one.
    let (mut raw, mut lens) = (Vec::new(), Vec::new());
    for l in out.lines().filter(|l| l.starts_with("message ")) {
        // "message N at offset O: LEN bytes, ..."
        let offset: usize = l.split("offset ").nth(1).unwrap().split(':').next().unwrap().parse().unwrap();
        let len: usize = l.split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        raw.extend_from_slice(&data[offset..offset + len]);
        lens.push(len);
    }
    let third = lens[0] + lens[1];
    if lens.len() >= 3 {
        raw[third + 3] = 9; // protocol version 9
        let rawfile = format!("{}/raw.bin", d.dir);
        std::fs::write(&rawfile, &raw).unwrap();
        let (out, err) = expect(&["dbus", "decode", &rawfile], 2);
        assert_eq!(out.lines().filter(|l| l.starts_with("message ")).count(), 2, "{out}");
        assert!(err.contains(&format!("offset {} ", third + 3)) && err.contains("protocol version"), "{err}");
    }
    // Not D-Bus at all: pcapng of another link type is named plainly.
    let mut other = data.clone();
    let idb = find_block(&other, 1).expect("an interface description block");
    other[idb + 8..idb + 10].copy_from_slice(&1u16.to_le_bytes());
    std::fs::write(&damaged, &other).unwrap();
    let (_, err) = expect(&["dbus", "decode", &damaged], 2);
    assert!(err.contains("pcapng") && err.contains("link type 1"), "{err}");
}

/// The offset of the first pcapng block of `kind` (little-endian file).
fn find_block(data: &[u8], kind: u32) -> Option<usize> {
    let mut pos = 0;
    while pos + 12 <= data.len() {
        let t = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap());
        let len = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if t == kind {
            return Some(pos);
        }
        pos += len.max(12);
    }
    None
}

/// A GDBus (python3-gi) service on `argv[1]` owning `org.ember.Echo`: `Echo(v) -> v`.
const GDBUS_ECHO: &str = r#"
import sys
from gi.repository import Gio, GLib
xml = """<node><interface name="org.ember.Echo">
<method name="Echo"><arg type="v" direction="in"/><arg type="v" direction="out"/></method>
</interface></node>"""
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
def call(conn, sender, path, iface, method, params, invocation):
    invocation.return_value(params)
conn.register_object("/org/ember/Echo", Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0], call, None, None)
Gio.bus_own_name_on_connection(conn, "org.ember.Echo", 0, lambda *a: print("ready", flush=True), None)
GLib.MainLoop().run()
"#;

/// The CLI's value text is GVariant's text format, both ways: each value goes through
/// `gdbus call` (GLib parses and prints it) and through `emberctl dbus call` (Ember parses
/// and prints it) to a GDBus echo service; both print the same text. Then what Ember
/// printed goes through both again and comes back unchanged.
#[test]
fn dbus_value_text_is_gvariant_text() {
    common::need_tool("gdbus");
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python).args(["-c", "import gi"]).output().is_ok_and(|o| o.status.success());
    common::skip_unless(has_gi, "needs python3-gi (/usr/bin/python3 with gi)");
    let d = Daemon::start();
    let script = format!("{}/echo.py", d.dir);
    std::fs::write(&script, GDBUS_ECHO).unwrap();
    let mut service = Command::new(python).args([&script, &d.address]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(service.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let target = ["--dest", "org.ember.Echo", "--object-path", "/org/ember/Echo", "--method", "org.ember.Echo.Echo"];
    let gdbus = |arg: &str| {
        let o = Command::new("gdbus").args(["call", "--address", &d.address]).args(target).arg(arg).output().unwrap();
        (o.status.success(), text(if o.status.success() { &o.stdout } else { &o.stderr }).trim().to_string())
    };
    let ember = |arg: &str| {
        let mut args = vec!["dbus", "call", "--address", &d.address];
        args.extend(target);
        args.push(arg);
        let o = run(&args);
        (o.status.success(), text(if o.status.success() { &o.stdout } else { &o.stderr }).trim().to_string())
    };
    let cases = [
        "<'a\\u0007b'>",
        "<'tab\\there\\nand a \\\\'>",
        "<\"it's\">",
        "<'it\\'s \"so\"'>",
        "<'\\u00e9\\U0001F600 \\u200b \\u007f'>",
        "<'\\x07'>",
        "<'\\a\\b\\f\\v\\r'>",
        "<010>",
        "<-010>",
        "<0x10>",
        "<uint64 0777>",
        "<byte 010>",
        "<nan>",
        "<inf>",
        "<-inf>",
        "<0.1>",
        "<1e300>",
        "<3.0>",
        "<-0.0>",
        "<b'abc'>",
        "<b'a\\001\\n\\t\\\\'>",
        "<b\"it's\">",
        "<b'\\377\\200x'>",
        "<@ay [0x61, 0x00, 0x62]>",
        "<[byte 0x01, 0x02]>",
        "<@ay []>",
        "<{'k': <b'v'>, 'n': <nan>}>",
        "<objectpath '/a/b'>",
        "<signature 'a{sv}'>",
    ];
    let mut wrong = Vec::new();
    for case in cases {
        let (g_ok, g) = gdbus(case);
        let (e_ok, e) = ember(case);
        assert!(g_ok, "gdbus refused {case}: {g}");
        if !e_ok || e != g {
            wrong.push(format!("{case}: gdbus {g}, ember {e}"));
            continue;
        }
        // What was printed, read back by both: the same again.
        let printed = g.strip_prefix('(').and_then(|r| r.strip_suffix(",)")).unwrap();
        let (again_g, again_e) = (gdbus(printed), ember(printed));
        if again_g != (true, g.clone()) || again_e != (true, g.clone()) {
            wrong.push(format!("{case} printed {printed}: gdbus then {again_g:?}, ember then {again_e:?}"));
        }
    }
    let _ = service.kill();
    let _ = service.wait();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn bench_json_has_a_row_for_every_mechanism() {
    common::need_tool("dbus-daemon");
    let (out, err) = expect(&["bench", "--quick", "--json", "--samples", "200"], 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(v["skipped"], serde_json::json!([]), "{err}");
    let rows = v["rows"].as_array().unwrap();
    for name in [
        "codec/frame",
        "crc32c",
        "shm/floor",
        "shm/spsc-spin",
        "shm/spsc-futex",
        "shm/spsc-stream",
        "shm/seqlock",
        "shm/broadcast",
        "pipe/ember",
        "packet-pipe/ember",
        "fifo/ember",
        "mq/ember",
        "sysv-mq/ember",
        "signal/ember",
        "uds-stream/ember",
        "uds-seqpacket/ember",
        "uds-dgram/ember",
        "tcp/ember",
        "udp/ember",
        "sync/mutex",
        "sync/mutex-handoff",
        "sync/futex-handoff",
        "sync/futex-handoff-timed",
        "rpc/uds-seqpacket",
        "rpc/shm",
        "dbus/ping",
    ] {
        let r = rows.iter().find(|r| r["mechanism"] == name).unwrap_or_else(|| panic!("no {name} row: {out}"));
        for f in ["p50_ns", "p99_ns", "p999_ns", "samples", "msgs_per_sec"] {
            assert!(r[f].as_f64().is_some_and(|x| x > 0.0), "{name}.{f}: {r}");
        }
        if r["baseline"].is_string() {
            assert!(r["ratio"].as_f64().is_some_and(|x| x > 0.0), "{name}: {r}");
        }
    }
}

/// `--size` sizes the shared-memory rows: a 64 KiB hop and stream against two memcpys.
#[test]
fn bench_size_applies_to_the_shm_rows() {
    let (out, err) =
        expect(&["bench", "--quick", "--json", "--samples", "200", "--only", "shm/spsc", "--size", "65536"], 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let rows = v["rows"].as_array().unwrap();
    for (name, baseline) in [("shm/spsc-hop", "memcpy-x2+floor"), ("shm/spsc-stream", "memcpy-x2")] {
        let r = rows.iter().find(|r| r["mechanism"] == name).unwrap_or_else(|| panic!("no {name} row: {out}"));
        assert_eq!(r["size"], 65536, "{r}");
        assert_eq!(r["baseline"], baseline, "{r}");
        assert!(r["ratio"].as_f64().is_some_and(|x| x > 0.0), "{r}");
    }
}

/// `--sweep`: every point of the readers and in-flight sweeps, tagged in the JSON and the
/// CSV; the readers' loss counters add up (the sweep checks that received + lost equals
/// what was sent to every reader, or fails).
#[test]
fn bench_sweeps_write_json_and_csv() {
    let dir = std::env::temp_dir().join(format!("ember-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("sweep.csv");
    let csv_arg = csv.to_str().unwrap();
    for (sweep, mechanism, xs) in
        [("readers", "broadcast/writer", vec![1, 2, 4, 8, 16]), ("inflight", "rpc/in-flight", vec![1, 2, 4, 8, 16, 32])]
    {
        let (out, err) = expect(&["bench", "--json", "--samples", "200", "--sweep", sweep, "--csv", csv_arg], 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        assert_eq!(v["skipped"], serde_json::json!([]), "{err}");
        let rows = v["rows"].as_array().unwrap();
        let got: Vec<u64> =
            rows.iter().filter(|r| r["mechanism"] == mechanism).map(|r| r["x"].as_u64().unwrap()).collect();
        assert_eq!(got, xs, "{out}");
        assert!(rows.iter().all(|r| r["sweep"] == sweep && r["p50_ns"].as_f64().is_some_and(|p| p > 0.0)), "{out}");
        if sweep == "readers" {
            assert!(
                rows.iter().all(|r| r["extra"]["lost_per_record"].as_f64().is_some_and(|l| (0.0..1.0).contains(&l))),
                "{out}"
            );
        }
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("sweep,x,mechanism,size,p50_ns"), "{text}");
        assert_eq!(lines.filter(|l| l.starts_with(&format!("{sweep},"))).count(), xs.len(), "{text}");
    }
    let (_, err) = expect(&["bench", "--sweep", "sideways"], 2);
    assert!(err.contains("--sweep: `sideways` is not one of size, readers, inflight, all"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_for_every_command() {
    let (out, _) = expect(&["--help"], 0);
    for c in ["bench", "ls", "send", "recv", "dbus"] {
        assert!(out.contains(&format!("  {c} ")), "{out}");
        let (h, _) = expect(&[c, "--help"], 0);
        assert!(h.starts_with(&format!("usage: emberctl {c}")), "{h}");
        let (h2, _) = expect(&["help", c], 0);
        assert_eq!(h, h2);
    }
    let (_, err) = expect(&["frobnicate"], 2);
    assert!(err.contains("unknown command"), "{err}");
    let mut c = ember().args(["send", "-", "--lines"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
    assert!(c.wait().unwrap().success());
}

/// A loopback port nobody listens on now (TCP and UDP).
fn free_port() -> u16 {
    let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = t.local_addr().unwrap().port();
    drop(t);
    port
}

#[test]
fn tcp_and_udp_endpoints_on_loopback() {
    // TCP: the receiver listens and takes one connection; the sender retries until it is up.
    let uri = format!("tcp:127.0.0.1:{}", free_port());
    let receiver = spawn(&["recv", &uri, "--count", "3", "--timeout", "30"]);
    expect(&["send", &uri, "hello", "world", "--kind", "7", "--seq", "4", "--count", "3", "--timeout", "30"], 0);
    let o = finish(receiver);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    check_frames(&uri, &text(&o.stdout), 4, 3);

    // UDP: datagrams sent before the receiver binds are lost, so send until one arrives.
    let uri = format!("udp:127.0.0.1:{}", free_port());
    let mut receiver = spawn(&["recv", &uri, "--count", "1", "--timeout", "30"]);
    let start = Instant::now();
    while receiver.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "the UDP receiver never got a frame");
        let _ = run(&["send", &uri, "hello", "world", "--kind", "7", "--seq", "9"]);
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = finish(receiver);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    check_frames(&uri, &text(&o.stdout), 9, 1);

    // Bad addresses are usage errors.
    let (_, err) = expect(&["send", "tcp:127.0.0.1", "x"], 2);
    assert!(err.contains("host:port"), "{err}");
    let (_, err) = expect(&["recv", "udp:127.0.0.1:99999"], 2);
    assert!(err.contains("host:port"), "{err}");
}

/// `dbus call` grows its receive buffer to a reply larger than 64 KiB; with a smaller
/// `--max-message` the call fails at once, naming the reply's size and the option; a bus
/// that never answers fails the connect after `--timeout`.
#[test]
fn dbus_call_large_replies_and_limits() {
    use ember_core::dbus::{Builder, MessageType, Signature};
    let d = Daemon::start();
    let bufs = ember_linux::dbus::Heap::new(65536, 512 << 10);
    let mut svc = ember_linux::dbus::ConnectionWith::connect_with(bufs, &d.address, Duration::from_secs(5)).unwrap();
    svc.request_name("org.ember.CliBlob", 0, Duration::from_secs(5)).unwrap();
    let server = std::thread::spawn(move || {
        let blob = vec![9u8; 300_000];
        for _ in 0..2 {
            let (serial, sender) = loop {
                let m = svc.recv(Duration::from_secs(20)).unwrap();
                if m.message_type() == MessageType::MethodCall {
                    break (m.serial(), m.sender().unwrap().to_string());
                }
            };
            let b = Builder::method_return(serial).destination(&sender);
            svc.send(b, Signature::new("ay").unwrap(), |w| w.bytes(&blob), &[]).unwrap();
        }
    });
    let addr = address_args(&d);
    let mut call = vec!["dbus", "call", "--dest", "org.ember.CliBlob", "--path", "/b", "--method", "org.ember.B.Get"];
    call.extend(addr.iter().map(String::as_str));
    // (Its output is larger than a pipe holds: read as it comes.)
    let o = ember().args(&call).stdin(Stdio::null()).output().unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.starts_with("([byte 0x09, 0x09") && out.len() > 200_000, "{}", &out[..out.len().min(200)]);
    call.extend(["--max-message", "65536", "--timeout", "20"]);
    let t = Instant::now();
    let (_, err) = expect(&call, 1);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(err.contains("the reply is 300") && err.contains("--max-message 300"), "{err}");
    server.join().unwrap();
    // A socket that accepts and never answers: the connect gives up after --timeout.
    let path = format!("{}/mute", d.dir);
    let l = ember_linux::uds::UdsListener::bind_stream(ember_linux::uds::UnixName::Path(&path)).unwrap();
    let address = format!("unix:path={path}");
    let t = Instant::now();
    let (_, err) = expect(
        &[
            "dbus",
            "call",
            "--address",
            &address,
            "--dest",
            "a.b",
            "--path",
            "/",
            "--method",
            "a.b.C",
            "--timeout",
            "0.3",
        ],
        1,
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(err.contains("cannot connect"), "{err}");
    drop(l);
}

/// `send --checksum`: the endpoint's default (payload unchecked on local endpoints, checked
/// on TCP), forced on or off; `recv --require-checksum` refuses unchecked frames as damaged.
#[test]
fn checksum_by_endpoint_and_required_by_the_receiver() {
    // A queue: unchecked by default (flags byte 04 in the raw frame), checked when forced.
    let q = format!("mq:/{}", unique("sum"));
    expect(&["send", &q, "--create", "one"], 0);
    expect(&["send", &q, "--checksum", "on", "two"], 0);
    expect(&["send", &q, "--checksum", "off", "three"], 0);
    expect(&["send", &q, "--checksum", "auto", "four"], 0);
    let (out, err) = expect(&["recv", &q, "--count", "4", "--timeout", "5", "--require-checksum", "--unlink"], 2);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("kind=0 seq=0 len=3 prio=0 two"), "{out}");
    assert_eq!(err.matches("refused (--require-checksum)").count(), 3, "{err}");
    assert!(err.contains("3 damaged frame(s)"), "{err}");
    // Without the requirement every kind is received.
    let q = format!("mq:/{}", unique("sum2"));
    expect(&["send", &q, "--create", "a"], 0);
    expect(&["send", &q, "--checksum", "on", "b"], 0);
    let (out, _) = expect(&["recv", &q, "--count", "2", "--timeout", "5", "--unlink"], 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    // The frame bytes on a pipe: the flag and the checksum over the header alone.
    let o = finish(
        ember().args(["send", "pipe:", "hi!", "--kind", "258", "--seq", "7"]).stdout(Stdio::piped()).spawn().unwrap(),
    );
    assert_eq!(o.stdout[3], 0x04, "{:02x?}", o.stdout);
    assert_eq!(o.stdout[16..20], [0x8b, 0x1c, 0xab, 0x8d], "docs/wire-format.md 10.3");
    let o = finish(
        ember()
            .args(["send", "pipe:", "hi!", "--kind", "258", "--seq", "7", "--checksum", "on"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(o.stdout[3], 0x00, "{:02x?}", o.stdout);
    assert_eq!(o.stdout[16..20], [0x8d, 0xfd, 0x2d, 0xea], "docs/wire-format.md 10.1");
    // TCP checks by default: accepted by a receiver that requires it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let uri = format!("tcp:127.0.0.1:{port}");
    let rx = spawn(&["recv", &uri, "--timeout", "20", "--require-checksum"]);
    expect(&["send", &uri, "over tcp", "--timeout", "20"], 0);
    let o = finish(rx);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("over tcp"));
    // A bad value.
    let (_, err) = expect(&["send", "pipe:", "x", "--checksum", "maybe"], 2);
    assert!(err.contains("--checksum: `maybe` is not on, off or auto"), "{err}");
    // `ls` says what a sender on a local object does by default.
    let q = format!("mq:/{}", unique("sumls"));
    expect(&["send", &q, "--create", "x"], 0);
    assert_eq!(ls_json(&q)["payload_checksum"], "off");
    expect(&["recv", &q, "--timeout", "5", "--unlink"], 0);
}
