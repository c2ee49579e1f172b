//! The D-Bus client against the real thing: a private `dbus-daemon` started by each test
//! with its own configuration, listening on a Unix socket in a temporary directory (no
//! system or session bus is assumed), `dbus-send` and `dbus-monitor` as peers.
//!
//! Its own `main` (`harness = false`); `cargo xtask test` installs `dbus-daemon`,
//! `dbus-bin` and `libglib2.0-bin` when missing.

mod common;
use common::dbus_daemon::Daemon;
use ember_test_support as counting;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ember_core::dbus::value::Array;
use ember_core::dbus::{Builder, DbusError, MessageType, Signature, Value};
use ember_linux::Error;
use ember_linux::dbus::{self, CallError, Connection, RequestNameReply, bus};

const T: Duration = Duration::from_secs(5);

/// Connecting to the private daemon, with what it said when that fails.
trait Connect {
    fn connect(&self) -> Box<Connection>;
}

impl Connect for Daemon {
    fn connect(&self) -> Box<Connection> {
        match Connection::connect(&self.address) {
            Ok(c) => Box::new(c),
            Err(e) => {
                let said = std::fs::read_to_string(format!("{}/daemon.log", self.dir)).unwrap_or_default();
                panic!("cannot connect to {}: {e}; dbus-daemon said: {said}", self.address)
            }
        }
    }
}

fn strings(a: Array<'_>) -> Vec<String> {
    a.map(|v| <&str>::try_from(v.unwrap()).unwrap().to_string()).collect()
}

fn list_names(c: &mut Connection) -> Vec<String> {
    let m = c
        .call(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "ListNames", Signature::EMPTY, |_| Ok(()), T)
        .unwrap();
    strings(m.body().next_as().unwrap())
}

fn name_owner(c: &mut Connection, name: &str) -> Result<String, String> {
    let sig = Signature::new("s").unwrap();
    match c.call(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "GetNameOwner", sig, |w| w.str(name), T) {
        Ok(m) => Ok(m.body().next_as::<&str>().unwrap().to_string()),
        Err(CallError::Remote { name, .. }) => Err(name.to_string()),
        Err(e) => panic!("{e}"),
    }
}

fn hello_and_list_names() {
    let d = Daemon::start();
    let mut c = d.connect();
    let me = c.unique_name().to_string();
    assert!(me.starts_with(":1."), "{me}");
    assert!(c.can_pass_fds());
    let names = list_names(&mut c);
    assert!(names.contains(&"org.freedesktop.DBus".to_string()), "{names:?}");
    assert!(names.contains(&me), "{names:?}");
    // A second connection gets another unique name, and sees the first.
    let mut c2 = d.connect();
    assert_ne!(c2.unique_name(), me);
    assert!(list_names(&mut c2).contains(&me));
}

fn get_id_and_name_owner() {
    let d = Daemon::start();
    let mut c = d.connect();
    let m =
        c.call(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "GetId", Signature::EMPTY, |_| Ok(()), T).unwrap();
    let id: &str = m.body().next_as().unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let me = c.unique_name().to_string();
    assert_eq!(name_owner(&mut c, &me), Ok(me.clone()));
    assert_eq!(name_owner(&mut c, "org.ember.Nobody"), Err("org.freedesktop.DBus.Error.NameHasNoOwner".into()));
    // Peer.Ping to the daemon: an empty reply.
    let m = c
        .call(bus::DESTINATION, bus::PATH, Some("org.freedesktop.DBus.Peer"), "Ping", Signature::EMPTY, |_| Ok(()), T)
        .unwrap();
    assert_eq!(m.message_type(), MessageType::MethodReturn);
    assert!(m.signature().is_empty());
}

fn request_name_cases() {
    let d = Daemon::start();
    let (mut a, mut b, mut watcher) = (d.connect(), d.connect(), d.connect());
    watcher.add_match("type='signal',member='NameOwnerChanged',arg0='org.ember.Test'", T).unwrap();
    let name = "org.ember.Test";
    assert_eq!(a.request_name(name, 0, T), Ok(RequestNameReply::PrimaryOwner));
    assert_eq!(a.request_name(name, 0, T), Ok(RequestNameReply::AlreadyOwner));
    assert_eq!(b.request_name(name, dbus::NAME_FLAG_DO_NOT_QUEUE, T), Ok(RequestNameReply::Exists));
    assert_eq!(b.request_name(name, 0, T), Ok(RequestNameReply::InQueue));
    let (a_name, b_name) = (a.unique_name().to_string(), b.unique_name().to_string());
    assert_eq!(name_owner(&mut a, name), Ok(a_name.clone()));
    assert_eq!(a.release_name(name, T), Ok(1));
    assert_eq!(a.release_name(name, T), Ok(3), "not the owner any more");
    assert_eq!(name_owner(&mut a, name), Ok(b_name.clone()), "the queued connection owns it now");
    // The watcher saw both changes: "" -> a, then a -> b.
    let mut changes = Vec::new();
    while changes.len() < 2 {
        let m = watcher.recv(T).unwrap();
        if m.member() == Some("NameOwnerChanged") {
            let mut body = m.body();
            let (n, old, new): (&str, &str, &str) =
                (body.next_as().unwrap(), body.next_as().unwrap(), body.next_as().unwrap());
            assert_eq!(n, name);
            changes.push((old.to_string(), new.to_string()));
        }
    }
    assert_eq!(changes, [(String::new(), a_name.clone()), (a_name, b_name)]);
    // A malformed name: the bus refuses it with a typed error.
    match a.request_name("no", 0, T) {
        Err(CallError::Remote { name, .. }) => assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs"),
        other => panic!("{other:?}"),
    }
}

fn signal_from_dbus_send() {
    common::need_tool("dbus-send");
    let d = Daemon::start();
    let mut c = d.connect();
    c.add_match("type='signal',interface='org.ember.Test'", T).unwrap();
    let out = Command::new("dbus-send")
        .args([
            &format!("--bus={}", d.address),
            "--type=signal",
            "/org/ember/Test",
            "org.ember.Test.Ping",
            "string:hello",
            "int32:7",
            "array:byte:1,2,3",
        ])
        .output()
        .expect("dbus-send");
    assert!(out.status.success(), "{out:?}");
    let started = Instant::now();
    loop {
        let m = c.recv(T).unwrap();
        if m.member() == Some("Ping") {
            assert_eq!(m.message_type(), MessageType::Signal);
            assert_eq!((m.path().unwrap().as_str(), m.interface()), ("/org/ember/Test", Some("org.ember.Test")));
            assert_eq!(m.signature().as_str(), "siay");
            let mut body = m.body();
            assert_eq!(body.next_as::<&str>(), Ok("hello"));
            assert_eq!(body.next_as::<i32>(), Ok(7));
            assert_eq!(body.next_as::<Array>().unwrap().as_bytes(), Some(&[1u8, 2, 3][..]));
            break;
        }
        assert!(started.elapsed() < T, "no signal");
    }
}

fn errors_and_timeouts() {
    let d = Daemon::start();
    let mut a = d.connect();
    // Nobody owns the name: the bus answers with an error.
    match a.call("org.ember.Nobody", "/x", None, "M", Signature::EMPTY, |_| Ok(()), T) {
        Err(CallError::Remote { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.ServiceUnknown");
            assert!(!message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // A service that never answers: the call times out, and the connection is still usable.
    let mut silent = d.connect();
    assert_eq!(silent.request_name("org.ember.Silent", 0, T), Ok(RequestNameReply::PrimaryOwner));
    let t = Instant::now();
    let r = a.call("org.ember.Silent", "/x", None, "M", Signature::EMPTY, |_| Ok(()), Duration::from_millis(300));
    assert_eq!(r.err(), Some(CallError::Local(Error::TimedOut)));
    assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(list_names(&mut a).contains(&"org.ember.Silent".to_string()));
    // The silent service did receive the call; after it, a receive times out.
    let mut members = Vec::new();
    loop {
        match silent.recv(Duration::from_millis(100)) {
            Ok(m) => members.push(m.member().unwrap_or("").to_string()),
            Err(Error::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(members.contains(&"M".to_string()), "{members:?}");
}

/// A method call carrying a pipe's write end (`h`) goes to another connection, which
/// writes into it.
fn unix_fd_passing() {
    let d = Daemon::start();
    let (mut a, mut b) = (d.connect(), d.connect());
    assert_eq!(b.request_name("org.ember.Fds", 0, T), Ok(RequestNameReply::PrimaryOwner));
    let (r, w) = rustix::pipe::pipe().unwrap();
    let call = Builder::method_call("/org/ember/Fds", "Take")
        .destination("org.ember.Fds")
        .flags(ember_core::dbus::header::FLAG_NO_REPLY_EXPECTED);
    a.send(
        call,
        Signature::new("hs").unwrap(),
        |w| {
            w.fd_index(0)?;
            w.str("note")
        },
        &[w.as_fd()],
    )
    .unwrap();
    drop(w);
    let fd = loop {
        let m = b.recv(T).unwrap();
        if m.member() == Some("Take") {
            assert_eq!(m.unix_fds(), 1);
            let mut body = m.body();
            let Value::Fd(i) = body.next().unwrap().unwrap() else { panic!() };
            assert_eq!(body.next_as::<&str>(), Ok("note"));
            break b.take_fd(i).expect("the fd came with the message");
        }
    };
    rustix::io::write(&fd, b"via D-Bus").unwrap();
    drop(fd);
    let mut buf = [0u8; 32];
    let n = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"via D-Bus");
}

/// `dbus-monitor` sees the signal Ember emits.
fn dbus_monitor_sees_our_signal() {
    common::need_tool("dbus-monitor");
    let d = Daemon::start();
    let mut c = d.connect();
    let mut mon = Command::new("dbus-monitor")
        .args(["--address", &d.address, "type='signal',interface='org.ember.Sensor'"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-monitor");
    let out = mon.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Emit until the monitor has subscribed and printed ours.
    let sig = Signature::new("sd").unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    'outer: while started.elapsed() < Duration::from_secs(10) {
        c.emit_signal("/org/ember/Sensor", "org.ember.Sensor", "Reading", sig, |w| {
            w.str("temp")?;
            w.f64(21.5)
        })
        .unwrap();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            seen.push(line.clone());
            if line.contains("member=Reading") {
                // The body lines follow.
                let a = rx.recv_timeout(T).unwrap();
                let b = rx.recv_timeout(T).unwrap();
                assert_eq!((a.trim(), b.trim()), ("string \"temp\"", "double 21.5"));
                break 'outer;
            }
        }
    }
    let _ = mon.kill();
    let _ = mon.wait();
    assert!(seen.iter().any(|l| l.contains("member=Reading") && l.contains("interface=org.ember.Sensor")), "{seen:?}");
}

/// A message larger than the receiving connection's buffer is skipped and reported; the
/// next one arrives.
fn oversized_message_is_skipped() {
    let d = Daemon::start();
    let mut big = d.connect();
    let mut small: Box<Connection<4096>> = Box::new(Connection::connect(&d.address).unwrap());
    small.add_match("type='signal',interface='org.ember.Big'", T).unwrap();
    let sig = Signature::new("ay").unwrap();
    big.emit_signal("/b", "org.ember.Big", "Large", sig, |w| {
        w.array(b'y', |w| {
            for _ in 0..20_000 {
                w.u8(7)?;
            }
            Ok(())
        })
    })
    .unwrap();
    big.emit_signal("/b", "org.ember.Big", "Small", sig, |w| w.array(b'y', |w| w.u8(1))).unwrap();
    let mut results = Vec::new();
    while results.len() < 2 {
        match small.recv(T) {
            Ok(m) if m.interface() == Some("org.ember.Big") => results.push(Ok(m.member().unwrap().to_string())),
            Ok(_) => {}
            Err(e) => results.push(Err(e)),
        }
    }
    assert!(matches!(results[0], Err(Error::Dbus(DbusError::TooLarge { max: 4096, .. }))), "{results:?}");
    assert_eq!(results[1], Ok("Small".to_string()));
}

/// A server that rejects EXTERNAL, and one that talks nonsense: `AuthRejected`, no hang.
fn authentication_failures() {
    for reply in ["REJECTED DBUS_COOKIE_SHA1\r\n", "HELLO?\r\n", &"x".repeat(2000)] {
        let dir = format!("/tmp/ember-dbus-auth-{}", std::process::id());
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{dir}/fake");
        let _ = std::fs::remove_file(&path);
        let listener = ember_linux::uds::UdsListener::bind_stream(ember_linux::uds::UnixName::Path(&path)).unwrap();
        let reply = reply.to_string();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept_stream::<64>().unwrap();
            let fd = s.into_fd();
            let mut buf = [0u8; 512];
            let _ = rustix::io::read(&fd, &mut buf);
            let _ = rustix::net::send(&fd, reply.as_bytes(), rustix::net::SendFlags::NOSIGNAL);
            std::thread::sleep(Duration::from_millis(200));
        });
        let r = Connection::<4096>::connect(&format!("unix:path={path}"));
        assert_eq!(r.err(), Some(Error::AuthRejected));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
    // No server at all: refused; a bad address: invalid.
    assert_eq!(Connection::<4096>::connect("unix:path=/tmp/ember-no-such-bus").err(), Some(Error::Refused));
    assert_eq!(Connection::<4096>::connect("tcp:host=localhost,port=1").err(), Some(Error::InvalidName));
}

fn calls_allocate_nothing() {
    let d = Daemon::start();
    let mut c = d.connect();
    let mut peer = d.connect();
    peer.add_match("type='signal',interface='org.ember.Alloc'", T).unwrap();
    let sig = Signature::new("u").unwrap();
    let n = counting::allocations(|| {
        for i in 0..50u32 {
            let m = c
                .call(
                    bus::DESTINATION,
                    bus::PATH,
                    Some("org.freedesktop.DBus.Peer"),
                    "Ping",
                    Signature::EMPTY,
                    |_| Ok(()),
                    T,
                )
                .unwrap();
            assert_eq!(m.message_type(), MessageType::MethodReturn);
            c.emit_signal("/a", "org.ember.Alloc", "Tick", sig, |w| w.u32(i)).unwrap();
            loop {
                let m = peer.recv(T).unwrap();
                if m.member() == Some("Tick") {
                    assert_eq!(m.body().next_as::<u32>(), Ok(i));
                    break;
                }
            }
        }
    });
    assert_eq!(n, 0, "D-Bus calls, signals and receives allocated");
}

// ---- serving objects, called by gdbus ----------------------------------------------------

use ember_linux::dbus::object::{Call, Interface, Method, MethodError, Object, Property, Service, SignalDesc};

const IFACE: &str = "org.ember.Test";

static OBJECTS: &[Object<'static>] = &[Object {
    path: "/org/ember/Test",
    interfaces: &[Interface {
        name: IFACE,
        methods: &[
            Method { name: "Add", args: "ii", results: "i" },
            Method { name: "Echo", args: "a{sv}(iias)ayv", results: "a{sv}(iias)ayv" },
            Method { name: "Fail", args: "", results: "" },
            Method { name: "Lie", args: "", results: "u" },
            Method { name: "Write", args: "hs", results: "u" },
            Method { name: "WriteAll", args: "ahs", results: "u" },
        ],
        properties: &[
            Property { name: "Name", signature: "s", writable: false },
            Property { name: "Level", signature: "u", writable: true },
        ],
        signals: &[SignalDesc { name: "Changed", args: "u" }],
    }],
}];

/// The test service: adds, echoes any complex arguments back, fails on request, and keeps
/// a `Level` property.
struct TestService {
    level: u32,
}

/// Copies one value of `v` into `w` (for Echo).
fn copy_value<'b>(v: Value<'_>, w: &mut ember_core::dbus::Writer<'b>) -> Result<(), DbusError> {
    match v {
        Value::Byte(x) => w.u8(x),
        Value::Bool(x) => w.bool(x),
        Value::I16(x) => w.i16(x),
        Value::U16(x) => w.u16(x),
        Value::I32(x) => w.i32(x),
        Value::U32(x) => w.u32(x),
        Value::I64(x) => w.i64(x),
        Value::U64(x) => w.u64(x),
        Value::F64(x) => w.f64(x),
        Value::Str(x) => w.str(x),
        Value::Path(x) => w.object_path(x),
        Value::Sig(x) => w.signature(x),
        Value::Fd(x) => w.fd_index(x),
        Value::Array(a) => {
            let code = a.element().as_str().as_bytes()[0];
            w.array(code, |w| a.into_iter().try_for_each(|e| copy_value(e?, w)))
        }
        Value::Struct(f) | Value::DictEntry(f) => w.structure(|w| f.into_iter().try_for_each(|e| copy_value(e?, w))),
        Value::Variant(v) => w.variant(v.signature(), |w| copy_value(v.value()?, w)),
    }
}

impl Service for TestService {
    fn call(
        &mut self,
        call: &Call<'_>,
        mut args: ember_core::dbus::value::Values<'_>,
        fds: &mut [Option<std::os::fd::OwnedFd>],
        reply: &mut ember_core::dbus::Writer<'_>,
    ) -> Result<(), MethodError> {
        let bad = |e: DbusError| MethodError::failed(&e.to_string());
        match call.member {
            "Add" => {
                let (a, b): (i32, i32) = (args.next_as().map_err(bad)?, args.next_as().map_err(bad)?);
                reply.i32(a.wrapping_add(b)).map_err(bad)
            }
            "Echo" => args.try_for_each(|v| copy_value(v?, reply)).map_err(bad),
            "Fail" => Err(MethodError::new("org.ember.Error.Refused", "asked to fail")),
            // Claims `u` but writes nothing: Ember answers with an error, not a bad message.
            "Lie" => Ok(()),
            // Writes its string argument into the fd it was given; answers with the length.
            "Write" => {
                let Value::Fd(i) = args.next().ok_or(MethodError::failed("no fd"))?.map_err(bad)? else {
                    return Err(MethodError::failed("not an fd"));
                };
                let text: &str = args.next_as().map_err(bad)?;
                let fd = fds.get_mut(i as usize).and_then(Option::take).ok_or(MethodError::failed("fd missing"))?;
                let n = rustix::io::write(&fd, text.as_bytes()).map_err(|e| MethodError::failed(&e.to_string()))?;
                reply.u32(n as u32).map_err(bad)
            }
            // Writes its string argument into every fd of the `ah`; answers with the total.
            "WriteAll" => {
                let handles: Array = args.next_as().map_err(bad)?;
                let text: &str = args.next_as().map_err(bad)?;
                let mut total = 0;
                for h in handles {
                    let Value::Fd(i) = h.map_err(bad)? else { return Err(MethodError::failed("not an fd")) };
                    let fd = fds.get_mut(i as usize).and_then(Option::take).ok_or(MethodError::failed("fd missing"))?;
                    total +=
                        rustix::io::write(&fd, text.as_bytes()).map_err(|e| MethodError::failed(&e.to_string()))?;
                }
                reply.u32(total as u32).map_err(bad)
            }
            _ => Err(MethodError::failed("unexpected")),
        }
    }

    fn get(
        &mut self,
        _: &str,
        _: &str,
        property: &str,
        value: &mut ember_core::dbus::Writer<'_>,
    ) -> Result<(), MethodError> {
        let bad = |e: DbusError| MethodError::failed(&e.to_string());
        match property {
            "Name" => value.str("ember test").map_err(bad),
            "Level" => value.u32(self.level).map_err(bad),
            _ => Err(MethodError::failed("no such property")),
        }
    }

    fn set(&mut self, _: &str, _: &str, property: &str, value: Value<'_>) -> Result<(), MethodError> {
        match (property, value) {
            ("Level", Value::U32(v)) if v <= 100 => {
                self.level = v;
                Ok(())
            }
            ("Level", _) => Err(MethodError::new("org.ember.Error.OutOfRange", "Level is 0 to 100")),
            _ => Err(MethodError::failed("no such property")),
        }
    }
}

/// Serves `OBJECTS` as `org.ember.Test` until `stop` is set.
fn serve(address: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u32> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut c: Box<Connection> = Box::new(Connection::connect(&address).unwrap());
        assert_eq!(c.request_name("org.ember.Test", 0, T), Ok(RequestNameReply::PrimaryOwner));
        ready_tx.send(()).unwrap();
        let mut service = TestService { level: 7 };
        let mut answered = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match c.process(OBJECTS, &mut service, Duration::from_millis(50)) {
                Ok(dbus::Processed::Answered) => answered += 1,
                Ok(dbus::Processed::Message(_)) | Err(Error::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
        answered
    });
    ready_rx.recv_timeout(T).unwrap();
    h
}

/// Runs `gdbus call` on the test object; returns (success, stdout or stderr).
fn gdbus_call(address: &str, method: &str, args: &[&str]) -> (bool, String) {
    common::need_tool("gdbus");
    let out = Command::new("gdbus")
        .args([
            "call",
            "--address",
            address,
            "--dest",
            "org.ember.Test",
            "--object-path",
            "/org/ember/Test",
            "--method",
            method,
        ])
        .args(args)
        .output()
        .expect("gdbus (installed by cargo xtask test)");
    let text = if out.status.success() { out.stdout } else { out.stderr };
    (out.status.success(), String::from_utf8_lossy(&text).trim().to_string())
}

fn gdbus_calls_our_service() {
    common::need_tool("gdbus");
    let d = Daemon::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let a = &d.address;
    assert_eq!(gdbus_call(a, "org.ember.Test.Add", &["2", "40"]), (true, "(42,)".into()));
    // Complex arguments: a dict of variants, a struct with an array, bytes, nested variants.
    let (ok, echoed) = gdbus_call(
        a,
        "org.ember.Test.Echo",
        &[
            "{'a': <int32 1>, 'b': <'x'>, 'c': <[<uint64 5>]>}",
            "(1, 2, ['p', 'q'])",
            "[byte 0x01, 0x02]",
            "<<<'deep'>>>",
        ],
    );
    assert!(ok, "{echoed}");
    assert_eq!(
        echoed,
        "({'a': <1>, 'b': <'x'>, 'c': <[<uint64 5>]>}, (1, 2, ['p', 'q']), [byte 0x01, 0x02], <<<'deep'>>>)"
    );
    // Errors: the service's own, a wrong signature, unknown method, interface and object.
    let (ok, e) = gdbus_call(a, "org.ember.Test.Fail", &[]);
    assert!(!ok && e.contains("org.ember.Error.Refused") && e.contains("asked to fail"), "{e}");
    let (ok, e) = gdbus_call(a, "org.ember.Test.Add", &["1"]);
    assert!(!ok && e.contains("org.freedesktop.DBus.Error.InvalidArgs"), "{e}");
    let (ok, e) = gdbus_call(a, "org.ember.Test.Nope", &[]);
    assert!(!ok && e.contains("org.freedesktop.DBus.Error.UnknownMethod"), "{e}");
    let (ok, e) = gdbus_call(a, "org.ember.Other.Add", &["1", "2"]);
    assert!(!ok && e.contains("org.freedesktop.DBus.Error.UnknownInterface"), "{e}");
    let (ok, e) = gdbus_call(a, "org.ember.Test.Lie", &[]);
    assert!(!ok && e.contains("org.freedesktop.DBus.Error.Failed"), "{e}");
    let out = Command::new("gdbus")
        .args([
            "call",
            "--address",
            a,
            "--dest",
            "org.ember.Test",
            "--object-path",
            "/org/ember/Nowhere",
            "--method",
            "org.ember.Test.Add",
            "1",
            "2",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("org.freedesktop.DBus.Error.UnknownObject"), "{out:?}");
    // Peer and Properties.
    assert_eq!(gdbus_call(a, "org.freedesktop.DBus.Peer.Ping", &[]), (true, "()".into()));
    assert_eq!(gdbus_call(a, "org.freedesktop.DBus.Properties.Get", &[IFACE, "Level"]), (true, "(<uint32 7>,)".into()));
    assert_eq!(
        gdbus_call(a, "org.freedesktop.DBus.Properties.Set", &[IFACE, "Level", "<uint32 42>"]),
        (true, "()".into())
    );
    assert_eq!(
        gdbus_call(a, "org.freedesktop.DBus.Properties.GetAll", &[IFACE]),
        (true, "({'Name': <'ember test'>, 'Level': <uint32 42>},)".into())
    );
    let (ok, e) = gdbus_call(a, "org.freedesktop.DBus.Properties.Set", &[IFACE, "Level", "<uint32 101>"]);
    assert!(!ok && e.contains("org.ember.Error.OutOfRange"), "{e}");
    let (ok, e) = gdbus_call(a, "org.freedesktop.DBus.Properties.Set", &[IFACE, "Name", "<'new'>"]);
    assert!(!ok && e.contains("PropertyReadOnly"), "{e}");
    let (ok, e) = gdbus_call(a, "org.freedesktop.DBus.Properties.Set", &[IFACE, "Level", "<'text'>"]);
    assert!(!ok && e.contains("InvalidArgs"), "{e}");
    // Introspection, parsed by gdbus.
    let out = Command::new("gdbus")
        .args(["introspect", "--address", a, "--dest", "org.ember.Test", "--object-path", "/org/ember/Test"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for want in [
        "interface org.ember.Test {",
        "Add(in  i arg_0,",
        "out i arg_2);",
        "Echo(in  a{sv} arg_0,",
        "signals:",
        "Changed(u arg_0);",
        "readonly s Name = 'ember test';",
        "readwrite u Level = 42;",
        "interface org.freedesktop.DBus.Properties {",
    ] {
        assert!(text.contains(want), "introspection lacks {want:?}:\n{text}");
    }
    // The parent node lists the child.
    let out = Command::new("gdbus")
        .args(["introspect", "--address", a, "--dest", "org.ember.Test", "--object-path", "/org/ember"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("node Test"), "{out:?}");
    // An fd handed to a served method (`h`), from an Ember client.
    let mut client = d.connect();
    let (r, w) = rustix::pipe::pipe().unwrap();
    let sig = Signature::new("hs").unwrap();
    let m = client
        .call_with_fds(
            "org.ember.Test",
            "/org/ember/Test",
            Some(IFACE),
            "Write",
            sig,
            |wr| {
                wr.fd_index(0)?;
                wr.str("through the service")
            },
            &[w.as_fd()],
            T,
        )
        .unwrap();
    assert_eq!(m.body().next_as::<u32>(), Ok(19));
    drop(w);
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"through the service");
    // Ping on a path nobody serves is still answered (Peer is per connection).
    let m = client
        .call("org.ember.Test", "/nowhere", Some("org.freedesktop.DBus.Peer"), "Ping", Signature::EMPTY, |_| Ok(()), T)
        .unwrap();
    assert_eq!(m.message_type(), MessageType::MethodReturn);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = server.join().unwrap();
    assert!(answered >= 20, "answered {answered}");
}

/// `process` with a zero timeout (as from a poller) answers a call already waiting in the
/// socket, and returns `TimedOut` at once when there is nothing.
fn process_with_zero_timeout() {
    let d = Daemon::start();
    let (mut server, mut client) = (d.connect(), d.connect());
    assert_eq!(server.request_name("org.ember.Test", 0, T), Ok(RequestNameReply::PrimaryOwner));
    // Drain what the bus sent on connecting (NameAcquired).
    while server.recv(Duration::from_millis(50)).is_ok() {}
    let t = Instant::now();
    let mut service = TestService { level: 1 };
    assert!(matches!(server.process(OBJECTS, &mut service, Duration::ZERO), Err(Error::TimedOut)));
    assert!(t.elapsed() < Duration::from_millis(500));
    let call = Builder::method_call("/org/ember/Test", "Add").destination("org.ember.Test").interface(IFACE);
    let serial = client
        .send(
            call,
            Signature::new("ii").unwrap(),
            |w| {
                w.i32(1)?;
                w.i32(2)
            },
            &[],
        )
        .unwrap();
    let mut poller: ember_linux::poll::Poller<2> = ember_linux::poll::Poller::new().unwrap();
    poller.add(&*server, 1, ember_linux::poll::Interest::READ).unwrap();
    assert_eq!(poller.wait(Some(T)).unwrap().len(), 1);
    assert!(matches!(server.process(OBJECTS, &mut service, Duration::ZERO), Ok(dbus::Processed::Answered)));
    // The client's own NameAcquired may come first.
    loop {
        let m = client.recv(T).unwrap();
        if m.message_type() == MessageType::MethodReturn {
            assert_eq!((m.reply_serial(), m.body().next_as::<i32>()), (Some(serial), Ok(3)));
            break;
        }
    }
}

/// A fake bus that authenticates, answers Hello, then sends `script`: each entry a message
/// and the fds to send with it.
fn fake_bus(script: Vec<(Vec<u8>, usize)>) -> (String, std::thread::JoinHandle<()>) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path =
        format!("/tmp/ember-fakebus-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let _ = std::fs::remove_file(&path);
    let l = ember_linux::uds::UdsListener::bind_stream(ember_linux::uds::UnixName::Path(&path)).unwrap();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept_stream::<64>().unwrap();
        let fd = s.into_fd();
        // The auth lines and Hello arrive together; answer them.
        let mut buf = [0u8; 1024];
        let _ = rustix::io::read(&fd, &mut buf).unwrap();
        rustix::io::write(&fd, b"OK 0123456789abcdef0123456789abcdef\r\nAGREE_UNIX_FD\r\n").unwrap();
        let mut out = [0u8; 256];
        let hello = Builder::method_return(1)
            .destination(":1.9")
            .build(&mut out, 1, Signature::new("s").unwrap(), |w| w.str(":1.9"))
            .unwrap();
        rustix::io::write(&fd, hello).unwrap();
        let (pr, pw) = rustix::pipe::pipe().unwrap();
        for (msg, nfds) in script {
            let fds: Vec<_> = (0..nfds).map(|i| if i % 2 == 0 { pr.as_fd() } else { pw.as_fd() }).collect();
            let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(32))];
            let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
            if !fds.is_empty() {
                assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
            }
            rustix::net::sendmsg(&fd, &[std::io::IoSlice::new(&msg)], &mut control, rustix::net::SendFlags::empty())
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
    });
    (path, h)
}

fn signal_bytes(
    member: &str,
    sig: &str,
    unix_fds: u32,
    body: &dyn Fn(&mut ember_core::dbus::Writer<'_>) -> Result<(), DbusError>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let b = Builder::signal("/s", "org.ember.Fake", member).unix_fds(unix_fds);
    let n = b.build(&mut buf, 9, Signature::new(sig).unwrap(), |w| body(w)).unwrap().len();
    buf.truncate(n);
    buf
}

/// fds belong to the message they came with: a malformed message's fds, an extra fd and a
/// message declaring more fds than came are all refused and closed; the next message gets
/// exactly its own fd; nothing leaks.
fn fds_stay_with_their_message() {
    let before = std::fs::read_dir("/proc/self/fd").unwrap().count();
    let good_one = signal_bytes("One", "h", 1, &|w| w.fd_index(0));
    // Malformed: declares `h` with UNIX_FDS 1, but the fd index is out of range after
    // patching the body (index 5).
    let mut bad = good_one.clone();
    let n = bad.len();
    bad[n - 4..].copy_from_slice(&5u32.to_le_bytes());
    let too_few = signal_bytes("TooFew", "hh", 2, &|w| {
        w.fd_index(0)?;
        w.fd_index(1)
    });
    let plain = signal_bytes("Plain", "u", 0, &|w| w.u32(7));
    let (path, server) = fake_bus(vec![(bad, 1), (too_few, 1), (good_one.clone(), 2), (good_one, 1), (plain, 0)]);
    let mut c: Box<Connection<4096>> = Box::new(Connection::connect(&format!("unix:path={path}")).unwrap());
    let mut results = Vec::new();
    while results.len() < 5 {
        match c.recv(T) {
            Ok(m) => {
                let member = m.member().unwrap().to_string();
                let fd = c.take_fd(0);
                results.push(format!("{member} fd={}", fd.is_some()));
            }
            Err(Error::Dbus(e)) => results.push(format!("refused {e:?}")),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        results,
        ["refused BadFdIndex", "refused BadFdIndex", "refused BadFdIndex", "One fd=true", "Plain fd=false"]
    );
    drop(c);
    server.join().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(std::fs::read_dir("/proc/self/fd").unwrap().count(), before, "fds leaked");
}

// ---- cross-implementation decoding -------------------------------------------------------

/// Renders a value as text (for comparing decodes).
fn render(v: Value<'_>, out: &mut String) {
    use std::fmt::Write as _;
    match v {
        Value::Array(a) => {
            out.push('[');
            for e in a {
                render(e.unwrap(), out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Struct(f) | Value::DictEntry(f) => {
            out.push('(');
            for e in f {
                render(e.unwrap(), out);
                out.push(',');
            }
            out.push(')');
        }
        Value::Variant(v) => {
            let _ = write!(out, "<{}:", v.signature());
            render(v.value().unwrap(), out);
            out.push('>');
        }
        Value::Str(s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Path(p) => out.push_str(p.as_str()),
        Value::Sig(g) => {
            let _ = write!(out, "g{g}");
        }
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}

fn render_message(m: &ember_core::dbus::Message<'_>) -> String {
    let mut out = format!(
        "{:?} {} path={:?} iface={:?} member={:?} err={:?} reply={:?} dest={:?} sender={:?} sig={} body=",
        m.message_type(),
        m.serial(),
        m.path().map(|p| p.as_str()),
        m.interface(),
        m.member(),
        m.error_name(),
        m.reply_serial(),
        m.destination(),
        m.sender(),
        m.signature()
    );
    for v in m.body() {
        render(v.unwrap(), &mut out);
        out.push(' ');
    }
    out
}

/// The same message written big-endian by Ember (header fields and body copied value by
/// value).
fn to_big_endian(m: &ember_core::dbus::Message<'_>, buf: &mut [u8]) -> usize {
    let path = m.path().map(|p| p.as_str());
    let mut b = match m.message_type() {
        MessageType::MethodCall => Builder::method_call(path.unwrap(), m.member().unwrap()),
        MessageType::MethodReturn => Builder::method_return(m.reply_serial().unwrap()),
        MessageType::Error => Builder::error(m.reply_serial().unwrap(), m.error_name().unwrap()),
        MessageType::Signal => Builder::signal(path.unwrap(), m.interface().unwrap(), m.member().unwrap()),
    };
    if let (MessageType::MethodCall, Some(i)) = (m.message_type(), m.interface()) {
        b = b.interface(i);
    }
    if let Some(d) = m.destination() {
        b = b.destination(d);
    }
    if let Some(s) = m.sender() {
        b = b.sender(s);
    }
    let body = m.body();
    b.flags(m.flags())
        .unix_fds(m.unix_fds())
        .endian(ember_core::dbus::Endian::Big)
        .build(buf, m.serial(), m.signature(), |w| body.into_iter().try_for_each(|v| copy_value(v?, w)))
        .unwrap()
        .len()
}

/// Traffic written by libdbus (dbus-send, the daemon) and GLib (gdbus), captured by
/// `dbus-monitor --binary`, decodes with Ember's parser to the values that were sent; each
/// message re-encoded big-endian decodes to the same values.
fn captured_traffic_decodes_in_both_byte_orders() {
    common::need_tool("dbus-monitor");
    common::need_tool("dbus-send");
    common::need_tool("gdbus");
    let d = Daemon::start();
    let mut mon = Command::new("dbus-monitor")
        .args(["--address", &d.address, "--binary", "type='signal',interface='org.ember.Cap'"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-monitor");
    let mut out = mon.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut out, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut captured = Vec::new();
    let mut rendered: Vec<String> = Vec::new();
    let started = Instant::now();
    // Send until both senders' signals have been captured (the monitor needs a moment).
    while started.elapsed() < Duration::from_secs(10) {
        let send = Command::new("dbus-send")
            .args([
                &format!("--bus={}", d.address),
                "--type=signal",
                "/org/ember/Cap",
                "org.ember.Cap.FromLibdbus",
                "string:héllo",
                "int32:-7",
                "uint64:18446744073709551615",
                "double:1.5",
                "boolean:true",
                "byte:200",
                "objpath:/a/b",
                "array:string:x,y",
                "dict:string:int32:k,1",
                "variant:int16:-3",
            ])
            .output()
            .unwrap();
        assert!(send.status.success(), "{send:?}");
        let emit = Command::new("gdbus")
            .args([
                "emit",
                "--address",
                &d.address,
                "--object-path",
                "/org/ember/Cap",
                "--signal",
                "org.ember.Cap.FromGlib",
            ])
            .args(["{'a': <int32 1>, 'b': <['x', 'y']>}", "(1, 2, ['p'])", "[byte 0x01, 0x02]", "<<uint32 9>>"])
            .output()
            .unwrap();
        assert!(emit.status.success(), "{emit:?}");
        while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            captured.extend_from_slice(&chunk);
        }
        rendered.clear();
        let mut rest = &captured[..];
        while rest.len() >= 16 {
            let Ok(len) = ember_core::dbus::header::message_len(rest, 1 << 20) else { break };
            if rest.len() < len {
                break;
            }
            let m = ember_core::dbus::Message::parse(&rest[..len], 1 << 20).expect("captured message parses");
            let text = render_message(&m);
            // The same message big-endian.
            let mut be = vec![0u8; len + 64];
            let n = to_big_endian(&m, &mut be);
            assert_eq!(be[0], b'B');
            let mb = ember_core::dbus::Message::parse(&be[..n], 1 << 20).expect("big-endian re-encode parses");
            assert_eq!(render_message(&mb), text, "big-endian decode differs");
            rendered.push(text);
            rest = &rest[len..];
        }
        if rendered.iter().any(|r| r.contains("FromLibdbus")) && rendered.iter().any(|r| r.contains("FromGlib")) {
            break;
        }
    }
    let _ = mon.kill();
    let _ = mon.wait();
    let libdbus = rendered.iter().find(|r| r.contains("FromLibdbus")).expect("dbus-send's signal captured");
    assert!(
        libdbus.ends_with(
            "sig=sitdbyoasa{si}v body=\"héllo\" I32(-7) U64(18446744073709551615) F64(1.5) Bool(true) Byte(200) /a/b [\"x\",\"y\",] [(\"k\",I32(1),),] <n:I16(-3)> "
        ),
        "{libdbus}"
    );
    let glib = rendered.iter().find(|r| r.contains("FromGlib")).expect("gdbus's signal captured");
    assert!(
        glib.ends_with(
            "sig=a{sv}(iias)ayv body=[(\"a\",<i:I32(1)>,),(\"b\",<as:[\"x\",\"y\",]>,),] (I32(1),I32(2),[\"p\",],) [Byte(1),Byte(2),] <v:<u:U32(9)>> "
        ),
        "{glib}"
    );
}

/// Another implementation passes real fds: Python's binding of libdbus (`python3-dbus`,
/// installed by `cargo xtask test`) calls `WriteAll(ah, s)` with three pipe write ends and
/// `Write(h, s)` with one; Ember's service writes into each, and the caller reads back.
fn libdbus_passes_real_fds() {
    common::need_tool("python3");
    let d = Daemon::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let script = r#"
import dbus, os, sys
bus = dbus.bus.BusConnection(sys.argv[1])
obj = bus.get_object('org.ember.Test', '/org/ember/Test', introspect=False)
pipes = [os.pipe() for _ in range(3)]
n = obj.WriteAll([dbus.types.UnixFd(w) for _, w in pipes], 'fd!', dbus_interface='org.ember.Test')
for _, w in pipes:
    os.close(w)
print(int(n), ' '.join(os.read(r, 100).decode() for r, _ in pipes))
r, w = os.pipe()
n = obj.Write(dbus.types.UnixFd(w), 'through a real fd', dbus_interface='org.ember.Test')
os.close(w)
print(int(n), os.read(r, 100).decode())
"#;
    // Debian's interpreter, which has python3-dbus (not a pyenv one earlier in PATH).
    let out = Command::new("/usr/bin/python3").args(["-c", script, &d.address]).output().expect("/usr/bin/python3");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered = server.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "9 fd! fd! fd!\n17 through a real fd\n");
    assert_eq!(answered, 2);
}

fn main() {
    common::main(
        &[
            ("hello_and_list_names", hello_and_list_names),
            ("get_id_and_name_owner", get_id_and_name_owner),
            ("request_name_cases", request_name_cases),
            ("signal_from_dbus_send", signal_from_dbus_send),
            ("errors_and_timeouts", errors_and_timeouts),
            ("unix_fd_passing", unix_fd_passing),
            ("dbus_monitor_sees_our_signal", dbus_monitor_sees_our_signal),
            ("oversized_message_is_skipped", oversized_message_is_skipped),
            ("authentication_failures", authentication_failures),
            ("calls_allocate_nothing", calls_allocate_nothing),
            ("gdbus_calls_our_service", gdbus_calls_our_service),
            ("process_with_zero_timeout", process_with_zero_timeout),
            ("fds_stay_with_their_message", fds_stay_with_their_message),
            ("libdbus_passes_real_fds", libdbus_passes_real_fds),
            ("captured_traffic_decodes_in_both_byte_orders", captured_traffic_decodes_in_both_byte_orders),
        ],
        |_| {},
    );
}
