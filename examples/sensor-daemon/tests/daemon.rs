//! The sensor daemon end to end, as a separate process: readings in the seqlock, events on
//! the broadcast ring and on a private D-Bus, commands on its socket, SIGHUP reloads (and
//! a broken config file that changes nothing), SIGTERM ends it with exit status 0 and
//! nothing left behind.

#[path = "../../../linux/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dbus_daemon::Daemon;
use ember_core::dbus::MessageType;
use ember_core::message;
use ember_linux::dbus::Connection;
use ember_linux::shm::{BroadcastReader, SeqLockReader};
use ember_linux::signal::{SIGHUP, SIGTERM, send_with_value};
use ember_linux::uds::{self, UnixName};
use ember_linux::{FrameReceiver, FrameSender};
use ember_sensor_daemon::*;

const T: Duration = Duration::from_secs(10);

struct Sensor {
    child: Child,
    name: String,
    socket: String,
    config: String,
}

impl Sensor {
    fn start(bus: &str, config: &str) -> Sensor {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Sensor::start_named(&format!("sensor-test-{}-{n}", std::process::id()), bus, config)
    }

    fn start_named(name: &str, bus: &str, config: &str) -> Sensor {
        let name = name.to_string();
        let socket = format!("/tmp/{name}.sock");
        let config_path = format!("/tmp/{name}.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sensor-daemon"))
            .args(["--name", &name, "--socket", &socket, "--config", &config_path, "--bus", bus])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("sensor-daemon: ready:") && line.contains("D-Bus as :"), "{line}");
        Sensor { child, name, socket, config: config_path }
    }

    fn signal(&self, sig: u32) {
        send_with_value(self.child.id(), sig, 0).unwrap();
    }
}

impl Drop for Sensor {
    /// After a failed test: the daemon killed, and what it could not clean up removed.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.socket);
        for object in ["reading", "events"] {
            let _ = rustix::shm::unlink(format!("/{}-{object}", self.name).as_str());
        }
        let _ = ember_linux::mq::MessageQueue::unlink(&format!("/{}-commands", self.name));
    }
}

/// The next event on the ring, decoded: (code, value, text).
fn next_event(r: &mut BroadcastReader) -> (u16, i32, String) {
    let mut buf = [0u8; 512];
    let got = r.recv(&mut buf, Some(T)).unwrap();
    let (repr, ev): (_, Event<'_>) = message::decode(&buf[..got.len]).unwrap();
    assert_eq!(repr.kind, KIND_EVENT);
    (ev.code, ev.value, ev.text.to_string())
}

/// Waits for an event with `code`, skipping the threshold events of the simulated wave.
fn event_with_code(r: &mut BroadcastReader, code: u16) -> (u16, i32, String) {
    let start = Instant::now();
    loop {
        let e = next_event(r);
        if e.0 == code {
            return e;
        }
        assert!(start.elapsed() < T, "no event {code}");
    }
}

#[test]
fn the_daemon_end_to_end() {
    let bus = Daemon::start();
    let mut listener = Box::new(Connection::<16384>::connect(&bus.address).unwrap());
    listener.add_match("type='signal',interface='org.ember.Sensor'", T).unwrap();
    let s = Sensor::start(&bus.address, "interval_ms = 20\nthreshold_mc = 22000\n");
    let reading_name = format!("/{}-reading", s.name);
    let events_name = format!("/{}-events", s.name);

    // The seqlock holds a reading frame, and it changes.
    let mut seq = SeqLockReader::open(&reading_name, READING_FP).unwrap();
    let mut buf = [0u8; 128];
    let snap = seq.read(&mut buf).unwrap();
    let (repr, first): (_, Reading) = message::decode(&buf[..snap.len]).unwrap();
    assert_eq!((repr.kind, repr.seq), (KIND_READING, first.count));
    assert!((19_500..=22_500).contains(&first.millicelsius), "{first:?}");
    seq.wait_change(snap.seq, Some(T)).unwrap();
    let snap = seq.read(&mut buf).unwrap();
    let (_, later): (_, Reading) = message::decode(&buf[..snap.len]).unwrap();
    assert!(later.count > first.count);

    // The wave crosses the threshold: events on the ring, alternating.
    let mut events = BroadcastReader::open(&events_name, EVENTS_FP, true).unwrap();
    let a = next_event(&mut events);
    let b = next_event(&mut events);
    assert!([a.0, b.0] == [EVENT_ABOVE, EVENT_BELOW] || [a.0, b.0] == [EVENT_BELOW, EVENT_ABOVE], "{a:?} {b:?}");
    assert!(a.1 > 22_000 || b.1 > 22_000);

    // Commands on the socket, replies matched by sequence number.
    let mut sock = uds::connect_seqpacket(UnixName::Path(&s.socket)).unwrap();
    sock.set_max_frame(buf.len());
    let mut scratch = [0u8; 256];
    sock.send_msg(CMD_GET, 41, &(), &mut scratch).unwrap();
    let (r, got): (_, Reading) = sock.recv_msg(&mut buf).unwrap();
    assert_eq!((r.kind, r.seq), (KIND_READING, 41));
    assert!(got.count >= later.count);
    sock.send_msg(CMD_SET_INTERVAL, 42, &30u32, &mut scratch).unwrap();
    let (r, ms): (_, u32) = sock.recv_msg(&mut buf).unwrap();
    assert_eq!((r.kind, r.seq, ms), (KIND_ACK, 42, 30));
    sock.send_msg(CMD_SET_INTERVAL, 43, &0u32, &mut scratch).unwrap();
    let (r, why): (_, &str) = sock.recv_msg(&mut buf).unwrap();
    assert_eq!((r.kind, r.seq), (KIND_ERROR, 43));
    assert!(why.contains("interval"), "{why}");
    sock.send_msg(99, 44, &(), &mut scratch).unwrap();
    let (r, why): (_, &str) = sock.recv_msg(&mut buf).unwrap();
    assert_eq!((r.kind, r.seq, why), (KIND_ERROR, 44, "unknown command"));
    sock.send_msg(CMD_RAISE, 45, "door opened", &mut scratch).unwrap();
    let (r, _): (_, u32) = sock.recv_msg(&mut buf).unwrap();
    assert_eq!((r.kind, r.seq), (KIND_ACK, 45));
    assert_eq!(event_with_code(&mut events, EVENT_RAISED).2, "door opened");
    // A damaged frame is dropped; the connection still works.
    let garbage = b"EM not really a frame at all....";
    let sent = rustix::net::send(rustix::fd::AsFd::as_fd(&sock), garbage, rustix::net::SendFlags::empty()).unwrap();
    assert_eq!(sent, garbage.len());
    sock.send_msg(CMD_GET, 46, &(), &mut scratch).unwrap();
    let (r, _): (_, Reading) = sock.recv_msg(&mut buf).unwrap();
    assert_eq!(r.seq, 46);

    // The same event as a D-Bus signal.
    let start = Instant::now();
    loop {
        let m = listener.recv(T).unwrap();
        if m.message_type() == MessageType::Signal && m.member() == Some("Event") {
            let mut body = m.body();
            let code: u16 = body.next_as().unwrap();
            let _value: i32 = body.next_as().unwrap();
            let text: &str = body.next_as().unwrap();
            if code == EVENT_RAISED {
                assert_eq!(text, "door opened");
                assert_eq!(m.path().map(|p| p.as_str()), Some("/org/ember/Sensor"));
                break;
            }
        }
        assert!(start.elapsed() < T, "no D-Bus signal");
    }
    // And GetReading over D-Bus.
    let sig = ember_core::dbus::Signature::EMPTY;
    let m = listener
        .call("org.ember.Sensor", "/org/ember/Sensor", Some("org.ember.Sensor"), "GetReading", sig, |_| Ok(()), T)
        .unwrap();
    let mut body = m.body();
    let mc: i32 = body.next_as().unwrap();
    let count: u32 = body.next_as().unwrap();
    assert!((19_500..=22_500).contains(&mc) && count > 0);

    // SIGHUP: the config file again, with a new interval (files replaced whole, by rename,
    // as a config tool should: the daemon never reads half a file).
    let replace = |text: &str| {
        let tmp = format!("{}.new", s.config);
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &s.config).unwrap();
    };
    replace("interval_ms = 25\n");
    s.signal(SIGHUP);
    assert_eq!(event_with_code(&mut events, EVENT_RELOADED).1, 25);
    // A broken file changes nothing: the daemon goes on with interval 25, which a raise's
    // acknowledgement reports (two round trips: the SIGHUP was handled before the second).
    replace("interval_ms = soon\n");
    s.signal(SIGHUP);
    for seq in [47, 48] {
        sock.send_msg(CMD_RAISE, seq, "after a bad reload", &mut scratch).unwrap();
        let (r, ms): (_, u32) = sock.recv_msg(&mut buf).unwrap();
        assert_eq!((r.kind, r.seq, ms), (KIND_ACK, seq, 25));
    }
    replace("interval_ms = 35\n");
    s.signal(SIGHUP);
    assert_eq!(event_with_code(&mut events, EVENT_RELOADED).1, 35);

    // SIGTERM: exit status 0, the objects gone.
    let mut s = s;
    s.signal(SIGTERM);
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!std::path::Path::new(&format!("/dev/shm{reading_name}")).exists());
    assert!(!std::path::Path::new(&format!("/dev/shm{events_name}")).exists());
    assert!(!std::path::Path::new(&s.socket).exists());
    // Readers left open see the writer gone.
    assert!(!seq.writer_alive());
}

#[test]
fn a_killed_daemon_leaves_segments_the_next_one_replaces() {
    let bus = Daemon::start();
    let mut first = Sensor::start(&bus.address, "");
    let name = first.name.clone();
    let reading = format!("/dev/shm/{name}-reading");
    // SIGKILL: no clean-up; the segments stay.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(std::path::Path::new(&reading).exists());
    // The next daemon of that name sees the writer gone and takes the names over.
    let mut second = Sensor::start_named(&name, &bus.address, "");
    let mut r = SeqLockReader::open(&format!("/{name}-reading"), READING_FP).unwrap();
    assert!(r.writer_alive());
    assert_eq!(r.segment().header().creator_pid, second.child.id());
    // A third one, while the second lives, refuses to start.
    let third = Command::new(env!("CARGO_BIN_EXE_sensor-daemon"))
        .args(["--name", &name, "--socket", &format!("/tmp/{name}-3.sock"), "--no-bus"])
        .output()
        .unwrap();
    assert_eq!(third.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&third.stderr).contains("in use by pid"), "{third:?}");
    second.signal(SIGTERM);
    assert_eq!(second.child.wait().unwrap().code(), Some(0));
    drop(first);
}

/// A notify socket standing in for systemd's: the daemon's `NOTIFY_SOCKET`.
struct NotifyListener {
    sock: ember_linux::socket::PacketSocket,
    path: String,
}

impl NotifyListener {
    fn new(tag: &str) -> NotifyListener {
        let path = format!("/tmp/sensor-test-{}-{tag}.notify", std::process::id());
        let sock = uds::bind_datagram(UnixName::Path(&path)).unwrap();
        rustix::net::sockopt::set_socket_timeout(&sock, rustix::net::sockopt::Timeout::Recv, Some(T)).unwrap();
        NotifyListener { sock, path }
    }

    /// The next notification's text.
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let (n, _) = rustix::net::recv(&self.sock, &mut buf, rustix::net::RecvFlags::empty()).expect("no notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// The next notification other than a watchdog ping; how many pings came before it.
    fn next_not_ping(&self) -> (String, usize) {
        let mut pings = 0;
        loop {
            match self.next() {
                p if p == "WATCHDOG=1" => pings += 1,
                other => return (other, pings),
            }
        }
    }
}

#[test]
fn under_systemd_socket_activate() {
    common::need_tool("systemd-socket-activate");
    let notify = NotifyListener::new("activated");
    let name = format!("sensor-test-{}-activated", std::process::id());
    let socket = format!("/tmp/{name}.activated.sock");
    let config = format!("/tmp/{name}.conf");
    std::fs::write(&config, "interval_ms = 50\n").unwrap();
    // systemd-socket-activate binds the seqpacket socket, waits for a client, then execs the
    // daemon with it as descriptor 3 named `command` (its pid stays the tool's), passing
    // only the variables given with -E.
    let mut tool = Command::new("systemd-socket-activate")
        .args(["--seqpacket", "-l", &socket, "--fdname=command"])
        .args(["-E", &format!("NOTIFY_SOCKET={}", notify.path), "-E", "WATCHDOG_USEC=200000"])
        .arg(env!("CARGO_BIN_EXE_sensor-daemon"))
        .args(["--name", &name, "--config", &config, "--no-bus", "--socket", "/nonexistent/unused.sock"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(tool.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("Listening on"), "{line}");
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            eprintln!("  daemon: {l}");
        }
    });
    // After a failed test: the daemon killed, its files and segments removed.
    struct Cleanup(Child, String, Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            for p in &self.2 {
                let _ = std::fs::remove_file(p);
            }
            for object in ["reading", "events"] {
                let _ = rustix::shm::unlink(format!("/{}-{object}", self.1).as_str());
            }
        }
    }
    let pid = tool.id();
    let mut tool = Cleanup(tool, name.clone(), vec![socket.clone(), config.clone()]);

    // A client reaches the daemon through the activated socket (its connection is what
    // starts the daemon).
    let mut sock = uds::connect_seqpacket(UnixName::Path(&socket)).unwrap();
    let mut buf = [0u8; 4096];
    sock.set_max_frame(buf.len());
    let mut scratch = [0u8; 256];
    sock.send_msg(CMD_GET, 7, &(), &mut scratch).unwrap();
    let (r, reading): (_, Reading) = sock.recv_msg(&mut buf).unwrap();
    assert_eq!((r.kind, r.seq), (KIND_READING, 7));
    assert!(reading.count > 0);

    // READY=1 with a status once set up, then watchdog pings at half of 200 ms.
    let (ready, _) = notify.next_not_ping();
    assert_eq!(ready, "READY=1\nSTATUS=sampling every 50 ms; no D-Bus");
    assert_eq!(notify.next(), "WATCHDOG=1");
    assert_eq!(notify.next(), "WATCHDOG=1");

    // SIGHUP: RELOADING=1 (with the monotonic time), the new status, READY=1.
    std::fs::write(&config, "interval_ms = 40\n").unwrap();
    send_with_value(pid, SIGHUP, 0).unwrap();
    let (reloading, _) = notify.next_not_ping();
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    assert_eq!(notify.next_not_ping().0, "STATUS=reloaded: sampling every 40 ms");
    assert_eq!(notify.next_not_ping().0, "READY=1");

    // SIGTERM: STOPPING=1, exit 0; the socket file is systemd's (here the tool's): left.
    send_with_value(pid, SIGTERM, 0).unwrap();
    assert_eq!(notify.next_not_ping().0, "STOPPING=1\nSTATUS=shutting down");
    assert_eq!(tool.0.wait().unwrap().code(), Some(0));
    assert!(std::path::Path::new(&socket).exists());
    assert!(!std::path::Path::new(&format!("/dev/shm/{name}-reading")).exists());
}
