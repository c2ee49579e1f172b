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
    assert_eq!(reading[1].trim(), "('hi', [uint32 1, uint32 2], {'a': 1})");
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
