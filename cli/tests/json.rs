//! `--json` on `emberctl recv` and the `emberctl dbus` subcommands: every line the command
//! prints is parsed as JSON (serde_json), against real endpoints, a real private
//! `dbus-daemon` and a capture written by the real `dbus-monitor`.

#[path = "../../linux/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::dbus_daemon::Daemon;
use serde_json::{Value, json};

fn ember() -> Command {
    Command::new(env!("CARGO_BIN_EXE_emberctl"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs with a time limit of 60 s and expects exit status `code`.
fn expect(args: &[&str], code: i32) -> (String, String) {
    let mut child =
        ember().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("emberctl {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let o: Output = child.wait_with_output().unwrap();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "emberctl {args:?}\nstdout: {out}\nstderr: {err}");
    (out, err)
}

/// Each line of `out`, parsed.
fn lines(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn unique(tag: &str) -> String {
    format!("ember-json-{}-{tag}", std::process::id())
}

#[test]
fn recv_json_on_a_queue_and_a_pipe() {
    let q = format!("mq:/{}", unique("q"));
    expect(&["send", &q, "--create", "--kind", "7", "--prio", "3", "--count", "2", "hello \"board\""], 0);
    let (out, _) = expect(&["recv", &q, "--json", "--count", "2", "--unlink", "--timeout", "10"], 0);
    let v = lines(&out);
    assert_eq!(v.len(), 2, "{out}");
    for (i, f) in v.iter().enumerate() {
        let want = json!({"kind": 7, "seq": i, "len": 13, "prio": 3,
                          "hex": "68656c6c6f2022626f61726422", "text": "hello \"board\""});
        assert_eq!(f, &want, "{out}");
    }
    // Not UTF-8: text is null, hex has it all.
    let sent = ember().args(["send", "-", "--hex", "ff00fe"]).output().unwrap();
    assert!(sent.status.success());
    let mut child = ember()
        .args(["recv", "-", "--json", "--count", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &sent.stdout).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(lines(&text(&o.stdout)), [json!({"kind": 0, "seq": 0, "len": 3, "hex": "ff00fe", "text": null})]);
    // Garbage into a datagram socket: a line that says so, then the good frame; exit
    // status 2.
    let path = format!("/tmp/{}.sock", unique("garbage"));
    let uri = format!("uds-dgram:{path}");
    let receiver = ember()
        .args(["recv", &uri, "--json", "--count", "2", "--timeout", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    while sock.send_to(b"not a frame at all", &path).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "the receiver never bound {path}");
        std::thread::sleep(Duration::from_millis(10));
    }
    expect(&["send", &uri, "ok", "--seq", "4"], 0);
    let o = receiver.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let v = lines(&text(&o.stdout));
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(v[0]["damaged"], true);
    assert_eq!(v[0]["message"], 1);
    assert!(v[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{v:?}");
    assert_eq!(v[1], json!({"kind": 0, "seq": 4, "len": 2, "hex": "6f6b", "text": "ok"}));
    // --json and --print are two formats.
    let (_, err) = expect(&["recv", "-", "--json", "--print", "hex"], 2);
    assert!(err.contains("--json and --print"), "{err}");
}

#[test]
fn recv_json_of_a_broadcast_record() {
    let name = unique("bc");
    let uri = format!("shm-broadcast:{name}");
    expect(&["send", &uri, "--kind", "2", "x"], 0);
    let (out, _) = expect(&["recv", &uri, "--json", "--unlink", "--timeout", "10"], 0);
    let v = lines(&out);
    assert_eq!(v, [json!({"kind": 2, "seq": 0, "len": 1, "record": 0, "lost": 0, "hex": "78", "text": "x"})]);
}

#[test]
fn dbus_json_call_emit_monitor_and_decode() {
    common::need_tool("dbus-monitor");
    let d = Daemon::start();
    let addr = ["--address", d.address.as_str()];
    let mut call = vec!["dbus", "call", "--json", "--dest", "org.freedesktop.DBus", "--path", "/org/freedesktop/DBus"];
    call.extend(addr);
    let mut list = call.clone();
    list.extend(["--method", "org.freedesktop.DBus.ListNames"]);
    let (out, _) = expect(&list, 0);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["type"], "as");
    assert!(v["data"][0].as_array().unwrap().contains(&json!("org.freedesktop.DBus")), "{v}");
    // A monitor in JSON, a capture in binary for decode, and signals until both saw one.
    let rule = "type='signal',interface='org.ember.JsonTest'";
    let capture = format!("{}/capture.bin", d.dir);
    let mut dump = Command::new("dbus-monitor")
        .args(["--address", &d.address, "--binary", rule])
        .stdout(std::fs::File::create(&capture).unwrap())
        .spawn()
        .unwrap();
    let mut mon = vec!["dbus", "monitor", "--json", "--match", rule, "--count", "1", "--timeout", "30"];
    mon.extend(addr);
    let mut monitor =
        ember().args(&mon).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut emit = vec!["dbus", "emit", "--json", "--path", "/org/ember/J", "--signal", "org.ember.JsonTest.Changed"];
    emit.extend(addr);
    emit.extend(["uint32 5", "{'unit': <'C'>}", "(int64 -1, [true])"]);
    let start = Instant::now();
    let seen = loop {
        let (out, _) = expect(&emit, 0);
        let e: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(e["serial"].as_u64().is_some_and(|s| s > 0), "{e}");
        std::thread::sleep(Duration::from_millis(100));
        if monitor.try_wait().unwrap().is_some()
            && std::fs::read(&capture).unwrap().windows(8).any(|w| w == b"JsonTest")
        {
            break monitor.wait_with_output().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no signal seen");
    };
    dump.kill().unwrap();
    dump.wait().unwrap();
    assert!(seen.status.success(), "{}", text(&seen.stderr));
    let body = json!({"type": "ua{sv}(xab)", "data": [5, {"unit": {"type": "s", "data": "C"}}, [-1, [true]]]});
    let m = &lines(&text(&seen.stdout))[0];
    assert_eq!(m["type"], "signal");
    assert_eq!(m["path"], "/org/ember/J");
    assert_eq!(m["member"], "Changed");
    assert_eq!(m["signature"], "ua{sv}(xab)");
    assert_eq!(m["body"], body);
    let (out, _) = expect(&["dbus", "decode", "--json", &capture], 0);
    let all = lines(&out);
    let ours: Vec<&Value> = all.iter().filter(|m| m["interface"] == "org.ember.JsonTest").collect();
    assert!(!ours.is_empty(), "{out}");
    assert_eq!(ours[0]["body"], body);
    assert_eq!(ours[0]["byte_order"], "little-endian");
    // Offsets and lengths chain: each message starts where the last ended.
    let mut at = 0;
    for m in &all {
        assert_eq!(m["offset"], at, "{out}");
        at += m["length"].as_u64().unwrap();
    }
}
