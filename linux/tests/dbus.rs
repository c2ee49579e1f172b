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

use ember_core::dbus::MAX_MESSAGE_LEN;
use ember_core::dbus::value::Array;
use ember_core::dbus::{Builder, DbusError, MessageType, Signature, Value};
use ember_linux::Error;
use ember_linux::dbus::{self, Borrowed, CallError, Connection, ConnectionWith, Heap, RequestNameReply, bus};

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

/// A canceler set on the connection ends a receive and a call that would wait for ever;
/// the connection goes on working after the reset.
fn cancelled_waits() {
    let d = Daemon::start();
    let mut c = d.connect();
    // The bus's NameAcquired first.
    while c.recv(Duration::from_millis(200)).is_ok() {}
    let cancel = ember_linux::Canceler::new().unwrap();
    c.set_canceler(Some(&cancel)).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            cancel.cancel();
        });
        assert_eq!(c.recv(Duration::MAX).map(drop).err(), Some(ember_linux::Error::Cancelled));
    });
    assert_eq!(c.recv(Duration::MAX).map(drop).err(), Some(ember_linux::Error::Cancelled));
    cancel.reset();
    // Nobody answers a call to ourselves while we wait in it.
    let me = c.unique_name().to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            cancel.cancel();
        });
        let r = c.call(&me, "/", Some("org.ember.Nobody"), "Wait", Signature::EMPTY, |_| Ok(()), Duration::MAX);
        assert!(matches!(r, Err(CallError::Local(ember_linux::Error::Cancelled))), "{:?}", r.map(drop));
    });
    cancel.reset();
    c.set_canceler(None).unwrap();
    let m = c.recv(T).unwrap();
    assert_eq!(m.member(), Some("Wait"));
    assert_eq!(c.recv(Duration::from_millis(10)).map(drop).err(), Some(ember_linux::Error::TimedOut));

    // Connecting: a "bus" that accepts and never answers the authentication holds the
    // handshake until the canceler ends it, long before the 30 s limit; a canceler
    // cancelled before the connect refuses at once; the real bus still connects with a
    // canceler that is not cancelled, and the connection keeps watching it.
    let dir = std::env::temp_dir().join(format!("ember-dbus-mute-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let mute = std::os::unix::net::UnixListener::bind(&dir).unwrap();
    let mute_address = format!("unix:path={}", dir.display());
    let long = Duration::from_secs(30);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            cancel.cancel();
        });
        let t = Instant::now();
        let r = ConnectionWith::connect_cancellable(Heap::new(4096, 4096), &mute_address, long, &cancel);
        assert_eq!(r.map(drop).err(), Some(Error::Cancelled));
        assert!(t.elapsed() < Duration::from_secs(10), "cancelled after {:?}", t.elapsed());
    });
    let t = Instant::now();
    let r = ConnectionWith::connect_peer_cancellable(Heap::new(4096, 4096), &mute_address, long, &cancel);
    assert_eq!(r.map(drop).err(), Some(Error::Cancelled));
    assert!(t.elapsed() < Duration::from_secs(1));
    cancel.reset();
    let mut c2 = ConnectionWith::connect_cancellable(Heap::new(65536, 65536), &d.address, T, &cancel).unwrap();
    while c2.recv(Duration::from_millis(200)).is_ok() {}
    cancel.cancel();
    assert_eq!(c2.recv(Duration::MAX).map(drop).err(), Some(Error::Cancelled));
    drop(mute);
    let _ = std::fs::remove_file(&dir);
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
    // No server at all: refused (Unix and TCP); nothing Ember can connect to: invalid.
    assert_eq!(Connection::<4096>::connect("unix:path=/tmp/ember-no-such-bus").err(), Some(Error::Refused));
    assert_eq!(Connection::<4096>::connect("tcp:host=127.0.0.1,port=1").err(), Some(Error::Refused));
    assert_eq!(Connection::<4096>::connect("launchd:env=DBUS_LAUNCHD").err(), Some(Error::InvalidName));
    assert_eq!(Connection::<4096>::connect("tcp:host=localhost").err(), Some(Error::InvalidName));
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
            Method { name: "FailLong", args: "u", results: "" },
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
            // An error message of the length asked for: `0123456789` repeated, then `<end>`.
            "FailLong" => {
                let n: u32 = args.next_as().map_err(bad)?;
                let text: String = (0..n as usize).map(|i| char::from(b'0' + (i % 10) as u8)).collect();
                Err(MethodError::new("org.ember.Error.Long", &(text + "<end>")))
            }
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

/// A service on its own connection that answers every method call to `name` with a body
/// `ay` of the length the call's `u` argument asks for; stops when `stop` is set.
fn blob_service(
    address: String,
    name: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        // Replies up to 128 MiB, built in a buffer that is only touched as far as they go.
        let mut c = ConnectionWith::connect_with(Heap::new(65536, MAX_MESSAGE_LEN), &address, T).unwrap();
        let blob: Vec<u8> = (0..MAX_MESSAGE_LEN - 4096).map(|i| (i % 251) as u8).collect();
        assert_eq!(c.request_name(name, 0, T), Ok(RequestNameReply::PrimaryOwner));
        ready_tx.send(()).unwrap();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let (serial, sender, len) = match c.recv(Duration::from_millis(50)) {
                Ok(m) if m.message_type() == MessageType::MethodCall => {
                    (m.serial(), m.sender().unwrap().to_string(), m.body().next_as::<u32>().unwrap_or(0))
                }
                Ok(_) | Err(Error::TimedOut) => continue,
                Err(e) => panic!("{e}"),
            };
            let b = Builder::method_return(serial).destination(&sender);
            // An array holds at most 64 MiB: larger replies are several `ay` of 32 MiB.
            let chunks = (len as usize).div_ceil(32 << 20).max(1);
            let sig = "ay".repeat(chunks);
            let body = |w: &mut ember_core::dbus::Writer<'_>| {
                blob[..len as usize].chunks(32 << 20).try_for_each(|c| w.bytes(c))?;
                if len == 0 { w.bytes(&[]) } else { Ok(()) }
            };
            c.send(b, Signature::new(&sig).unwrap(), body, &[]).unwrap();
        }
    });
    ready_rx.recv_timeout(T).unwrap();
    h
}

/// A reply larger than the caller's buffer fails the call at once with `TooLarge` (its
/// size and the buffer's), well before the timeout; the connection goes on working.
fn reply_too_large_fails_at_once() {
    let d = Daemon::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = blob_service(d.address.clone(), "org.ember.Blob", stop.clone());
    let mut small: Box<Connection<4096>> = Box::new(Connection::connect(&d.address).unwrap());
    let long = Duration::from_secs(10);
    let sig = Signature::new("u").unwrap();
    let t = Instant::now();
    let r = small.call("org.ember.Blob", "/b", None, "Get", sig, |w| w.u32(20_000), long).map(|_| ());
    let took = t.elapsed();
    let Err(CallError::Local(Error::Dbus(DbusError::TooLarge { len, max: 4096 }))) = r else { panic!("{r:?}") };
    assert!(len > 20_000 && len < 20_200, "{len}");
    println!("  a {len}-byte reply refused by a 4096-byte buffer in {took:?} (timeout 10 s)");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let refused = small.last_refused().unwrap();
    assert_eq!((refused.message_type(), refused.len()), (MessageType::MethodReturn, len));
    // The next call, with a reply that fits, works.
    let m = small.call("org.ember.Blob", "/b", None, "Get", sig, |w| w.u32(100), T).unwrap();
    let expect: Vec<u8> = (0..100).map(|i| (i % 251) as u8).collect();
    assert_eq!(m.body().next_as::<Array>().unwrap().as_bytes(), Some(&expect[..]));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

/// A method call too large for an Ember service's buffer gets `LimitsExceeded` at once,
/// instead of leaving its caller waiting; the service goes on answering.
fn call_too_large_for_service_gets_error_reply() {
    let d = Daemon::start();
    let mut server: Box<Connection<4096>> = Box::new(Connection::connect(&d.address).unwrap());
    assert_eq!(server.request_name("org.ember.Test", 0, T), Ok(RequestNameReply::PrimaryOwner));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = std::thread::spawn(move || {
        let mut service = TestService { level: 1 };
        let mut refused = 0;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match server.process(OBJECTS, &mut service, Duration::from_millis(50)) {
                Err(Error::Dbus(DbusError::TooLarge { max: 4096, .. })) => refused += 1,
                Ok(_) | Err(Error::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
        refused
    });
    let mut c = d.connect();
    let sig = Signature::new("ay").unwrap();
    let t = Instant::now();
    let r = c.call("org.ember.Test", "/org/ember/Test", Some(IFACE), "Echo", sig, |w| w.bytes(&[1; 10_000]), T);
    let took = t.elapsed();
    match r {
        Err(CallError::Remote { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.LimitsExceeded");
            assert!(message.contains("4096"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    println!("  LimitsExceeded back in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let sig = Signature::new("ii").unwrap();
    let m = c
        .call("org.ember.Test", "/org/ember/Test", Some(IFACE), "Add", sig, |w| w.i32(40).and_then(|_| w.i32(2)), T)
        .unwrap();
    assert_eq!(m.body().next_as::<i32>(), Ok(42));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(h.join().unwrap(), 1);
}

/// A malformed method call with a readable header (a bad body) gets `InvalidArgs` from
/// `process`; a malformed reply fails the call waiting for it at once (`recv` on a fake
/// bus, as a real bus refuses malformed messages before they reach us).
fn malformed_call_gets_invalid_args() {
    let path = format!("/tmp/ember-fakebus-bad-{}", std::process::id());
    let _ = std::fs::remove_file(&path);
    let l = ember_linux::uds::UdsListener::bind_stream(ember_linux::uds::UnixName::Path(&path)).unwrap();
    let bus = std::thread::spawn(move || {
        let (s, _) = l.accept_stream::<64>().unwrap();
        let fd = s.into_fd();
        let mut buf = [0u8; 1024];
        let _ = rustix::io::read(&fd, &mut buf).unwrap();
        rustix::io::write(&fd, b"OK 0123456789abcdef0123456789abcdef\r\nAGREE_UNIX_FD\r\n").unwrap();
        let mut out = [0u8; 256];
        let hello = Builder::method_return(1)
            .destination(":1.9")
            .build(&mut out, 1, Signature::new("s").unwrap(), |w| w.str(":1.9"))
            .unwrap();
        rustix::io::write(&fd, hello).unwrap();
        // A call whose string argument is not UTF-8.
        let n = Builder::method_call("/org/ember/Test", "Echo")
            .sender(":1.3")
            .destination(":1.9")
            .build(&mut out, 5, Signature::new("s").unwrap(), |w| w.str("abc"))
            .unwrap()
            .len();
        let at = out[..n].iter().rposition(|&b| b == b'a').unwrap();
        out[at] = 0xff;
        rustix::io::write(&fd, &out[..n]).unwrap();
        // Our answer comes back: an error reply to serial 5 (the client's next call may
        // come in the same read).
        let mut got = vec![0u8; 4096];
        let mut have = 0;
        let mut next = || {
            loop {
                if let Ok(len) = ember_core::dbus::header::message_len(&got[..have], 4096)
                    && len <= have
                {
                    let m = got[..len].to_vec();
                    got.copy_within(len..have, 0);
                    have -= len;
                    return m;
                }
                have += rustix::io::read(&fd, &mut got[have..]).unwrap();
            }
        };
        let bytes = next();
        let m = ember_core::dbus::Message::parse(&bytes, 4096).unwrap();
        assert_eq!(m.message_type(), MessageType::Error);
        assert_eq!((m.reply_serial(), m.error_name()), (Some(5), Some("org.freedesktop.DBus.Error.InvalidArgs")));
        assert_eq!(m.destination(), Some(":1.3"));
        // Then the client calls; its reply is malformed the same way.
        let bytes = next();
        let call = ember_core::dbus::Message::parse(&bytes, 4096).unwrap();
        let n = Builder::method_return(call.serial())
            .destination(":1.9")
            .build(&mut out, 6, Signature::new("s").unwrap(), |w| w.str("abc"))
            .unwrap()
            .len();
        let at = out[..n].iter().rposition(|&b| b == b'a').unwrap();
        out[at] = 0xff;
        rustix::io::write(&fd, &out[..n]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    });
    let mut c: Box<Connection<4096>> = Box::new(Connection::connect(&format!("unix:path={path}")).unwrap());
    let mut service = TestService { level: 1 };
    let r = c.process(OBJECTS, &mut service, T).map(|_| ());
    assert_eq!(r, Err(Error::Dbus(DbusError::BadUtf8)));
    let t = Instant::now();
    let r = c.call(":1.3", "/x", None, "M", Signature::EMPTY, |_| Ok(()), Duration::from_secs(10)).map(|_| ());
    assert_eq!(r, Err(CallError::Local(Error::Dbus(DbusError::BadUtf8))));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    bus.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

/// Connecting honours the caller's timeout: a server that accepts and never answers
/// fails the connect after it, not after a fixed 10 s.
fn connect_honours_the_timeout() {
    let dir = format!("/tmp/ember-dbus-mute-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    let path = format!("{dir}/mute");
    let _ = std::fs::remove_file(&path);
    let listener = ember_linux::uds::UdsListener::bind_stream(ember_linux::uds::UnixName::Path(&path)).unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept_stream::<64>().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        drop(s);
    });
    let t = Instant::now();
    let r = Connection::<4096>::connect_timeout(&format!("unix:path={path}"), Duration::from_millis(200));
    let took = t.elapsed();
    assert_eq!(r.err(), Some(Error::TimedOut));
    assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(1000), "{took:?}");
    server.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replies of 1 MiB and 100 MiB (past dbus-daemon's default limit, up to the
/// specification's) read whole through a caller's large buffer, without a heap
/// allocation on the call.
fn large_replies_through_large_buffers() {
    let d = Daemon::start_large();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = blob_service(d.address.clone(), "org.ember.Blob", stop.clone());
    let (mut rx, mut tx) = (vec![0u8; 101 << 20], vec![0u8; 4096]);
    let mut c = ConnectionWith::connect_with(Borrowed::new(&mut rx, &mut tx), &d.address, T).unwrap();
    assert_eq!((c.receive_capacity(), c.send_capacity()), (101 << 20, 4096));
    let sig = Signature::new("u").unwrap();
    for size in [1usize << 20, 100 << 20] {
        let mut got = (0, true);
        let t = Instant::now();
        let n = counting::allocations(|| {
            let m = c.call("org.ember.Blob", "/b", None, "Get", sig, |w| w.u32(size as u32), Duration::from_secs(60));
            let m = m.unwrap();
            let mut at = 0;
            let mut ok = true;
            for v in m.body() {
                let Ok(Value::Array(a)) = v else { panic!("{v:?}") };
                let bytes = a.as_bytes().unwrap();
                ok &= bytes.iter().enumerate().all(|(i, &b)| b == ((at + i) % 251) as u8);
                at += bytes.len();
            }
            got = (at, ok);
        });
        println!("  a reply of {size} bytes in {:?}", t.elapsed());
        assert_eq!(got, (size, true));
        assert_eq!(n, 0, "the call of {size} bytes allocated");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

/// A `Heap` connection grows its receive buffer to a larger message, up to its limit;
/// past the limit the call fails at once with `TooLarge`.
fn heap_buffer_grows_to_the_limit() {
    let d = Daemon::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = blob_service(d.address.clone(), "org.ember.Blob", stop.clone());
    let mut c = ConnectionWith::connect_with(Heap::growing(4096, 1 << 20, 4096), &d.address, T).unwrap();
    let sig = Signature::new("u").unwrap();
    let m = c.call("org.ember.Blob", "/b", None, "Get", sig, |w| w.u32(500_000), T).unwrap();
    assert_eq!(m.body().next_as::<Array>().unwrap().as_bytes().map(<[u8]>::len), Some(500_000));
    assert!(c.receive_capacity() >= 500_000 && c.receive_capacity() < 501_000, "{}", c.receive_capacity());
    let r = c.call("org.ember.Blob", "/b", None, "Get", sig, |w| w.u32(2 << 20), T).map(|_| ());
    assert!(matches!(r, Err(CallError::Local(Error::Dbus(DbusError::TooLarge { max: 1048576, .. })))), "{r:?}");
    // Buffers too small for D-Bus are refused.
    let (mut rx, mut tx) = ([0u8; 100], [0u8; 4096]);
    let r = ConnectionWith::connect_with(Borrowed::new(&mut rx, &mut tx), &d.address, T);
    assert_eq!(r.err(), Some(Error::BufferTooSmall { needed: 256 }));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

/// A GDBus service (Python, `python3-gi`) whose `GetManagedObjects` answers as
/// NetworkManager's does on a big system: hundreds of KiB of `a{oa{sa{sv}}}`.
const GDBUS_OBJECT_MANAGER: &str = r#"
import sys
from gi.repository import Gio, GLib
address, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
xml = """<node><interface name="org.freedesktop.DBus.ObjectManager">
<method name="GetManagedObjects"><arg type="a{oa{sa{sv}}}" direction="out"/></method>
</interface></node>"""
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
def call(conn, sender, path, iface, method, params, invocation):
    objects = {}
    for i in range(count):
        objects["/org/freedesktop/NetworkManager/Devices/%d" % i] = {
            "org.freedesktop.NetworkManager.Device": {
                "Interface": GLib.Variant("s", "eth%d" % i),
                "Mtu": GLib.Variant("u", 1500),
                "Udi": GLib.Variant("s", "/sys/devices/pci0000:00/0000:00:1c.%d/net/eth%d" % (i % 8, i)),
            }
        }
    invocation.return_value(GLib.Variant("(a{oa{sa{sv}}})", (objects,)))
iface = Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0]
conn.register_object("/org/freedesktop/NetworkManager", iface, call, None, None)
Gio.bus_own_name_on_connection(conn, name, 0, lambda *a: print("ready", flush=True), None)
GLib.MainLoop().run()
"#;

/// A reply of hundreds of KiB built by a GDBus service (an object manager with 3,000
/// devices) is refused at once by a 64 KiB connection (`TooLarge`, not a timeout) and read
/// whole through a 1 MiB one.
fn gdbus_object_manager_reply() {
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python).args(["-c", "import gi"]).output().is_ok_and(|o| o.status.success());
    common::skip_unless(has_gi, "needs python3-gi (/usr/bin/python3 with gi)");
    let d = Daemon::start();
    let script = format!("{}/object_manager.py", d.dir);
    std::fs::write(&script, GDBUS_OBJECT_MANAGER).unwrap();
    let mut service = Command::new(python)
        .args([&script, &d.address, "org.ember.Gdbus", "3000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(service.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let path = "/org/freedesktop/NetworkManager";
    let iface = Some("org.freedesktop.DBus.ObjectManager");
    // The default 64 KiB connection: refused at once, with the reply's size.
    let mut small = d.connect();
    let t = Instant::now();
    let r =
        small.call("org.ember.Gdbus", path, iface, "GetManagedObjects", Signature::EMPTY, |_| Ok(()), T).map(|_| ());
    let Err(CallError::Local(Error::Dbus(DbusError::TooLarge { len, max: 65536 }))) = r else {
        panic!("the 64 KiB connection: {r:?}")
    };
    assert!(len > 300 << 10, "{len}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // A 1 MiB receive buffer takes it.
    let (mut rx, mut tx) = (vec![0u8; 1 << 20], vec![0u8; 4096]);
    let mut big = ConnectionWith::connect_with(Borrowed::new(&mut rx, &mut tx), &d.address, T).unwrap();
    let m = big.call("org.ember.Gdbus", path, iface, "GetManagedObjects", Signature::EMPTY, |_| Ok(()), T).unwrap();
    assert_eq!(m.as_bytes().len(), len);
    let objects: Array = m.body().next_as().unwrap();
    let mut n = 0;
    for entry in objects {
        let Value::DictEntry(mut kv) = entry.unwrap() else { panic!("not a dict entry") };
        let Value::Path(p) = kv.next().unwrap().unwrap() else { panic!("not a path") };
        assert!(p.as_str().starts_with("/org/freedesktop/NetworkManager/Devices/"), "{p:?}");
        n += 1;
    }
    assert_eq!(n, 3000);
    let _ = service.kill();
    let _ = service.wait();
}

/// A GDBus service (Python, `python3-gi`): `Emit(first u, count u)` emits the signals
/// `Tick(u)` numbered `first..first + count`, then answers with `count`.
const GDBUS_EMITTER: &str = r#"
import sys
from gi.repository import Gio, GLib
address, name = sys.argv[1], sys.argv[2]
xml = """<node><interface name="org.ember.Emitter">
<method name="Emit"><arg type="u" direction="in"/><arg type="u" direction="in"/><arg type="u" direction="out"/></method>
<signal name="Tick"><arg type="u"/></signal>
</interface></node>"""
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
def call(conn, sender, path, iface, method, params, invocation):
    first, count = params.unpack()
    for i in range(first, first + count):
        conn.emit_signal(None, "/org/ember/Emitter", "org.ember.Emitter", "Tick", GLib.Variant("(u)", (i,)))
    invocation.return_value(GLib.Variant("(u)", (count,)))
iface = Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0]
conn.register_object("/org/ember/Emitter", iface, call, None, None)
Gio.bus_own_name_on_connection(conn, name, 0, lambda *a: print("ready", flush=True), None)
GLib.MainLoop().run()
"#;

/// Starts the emitter on `d`; killed when the returned guard drops.
fn gdbus_emitter(d: &Daemon) -> Option<KillOnDrop> {
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python).args(["-c", "import gi"]).output().is_ok_and(|o| o.status.success());
    common::skip_unless(has_gi, "needs python3-gi (/usr/bin/python3 with gi)");
    let script = format!("{}/emitter.py", d.dir);
    std::fs::write(&script, GDBUS_EMITTER).unwrap();
    let mut child =
        Command::new(python).args([&script, &d.address, "org.ember.Emitter"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    Some(KillOnDrop(child))
}

/// A child process killed (and reaped) on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_emit<B: dbus::Buffers>(c: &mut ConnectionWith<B>, first: u32, count: u32) -> dbus::PendingCall {
    let sig = Signature::new("uu").unwrap();
    c.start_call("org.ember.Emitter", "/org/ember/Emitter", Some("org.ember.Emitter"), "Emit", sig, |w| {
        w.u32(first)?;
        w.u32(count)
    })
    .unwrap()
}

/// 10,000 signals emitted by a GDBus service while three calls are in flight on one
/// connection: the three replies are kept for their calls, and every signal is delivered
/// by `recv`, in order, none lost; no heap allocation on the calls, the replies or the
/// queueing (the queue is the caller's buffer).
fn signals_while_three_calls_in_flight() {
    let d = Daemon::start();
    let Some(_emitter) = gdbus_emitter(&d) else { return };
    let (mut rx, mut tx, mut q) = (vec![0u8; 65536], vec![0u8; 4096], vec![0u8; 4 << 20]);
    let mut c = ConnectionWith::connect_with(Borrowed::with_queue(&mut rx, &mut tx, &mut q), &d.address, T).unwrap();
    c.add_match("type='signal',interface='org.ember.Emitter',member='Tick'", T).unwrap();
    let mut ticks = Vec::with_capacity(10_000);
    let mut replies = Vec::with_capacity(3);
    let t = Instant::now();
    let n = counting::allocations(|| {
        let a = start_emit(&mut c, 0, 3334);
        let b = start_emit(&mut c, 3334, 3333);
        let last = start_emit(&mut c, 6667, 3333);
        assert_eq!(c.calls_in_flight(), 3);
        // Waiting for the last: the two other replies and every signal arrive meanwhile.
        let m = c.wait_call(last, Duration::from_secs(60)).unwrap();
        replies.push(m.body().next_as::<u32>().unwrap());
        for call in [a, b] {
            match c.poll_call(call).unwrap() {
                dbus::Poll::Ready(m) => replies.push(m.body().next_as::<u32>().unwrap()),
                dbus::Poll::Pending(p) => panic!("call {} not answered", p.serial()),
            }
        }
        while ticks.len() < 10_000 {
            let m = c.recv(T).unwrap();
            if m.member() == Some("Tick") {
                ticks.push(m.body().next_as::<u32>().unwrap());
            }
        }
    });
    println!("  10,000 signals and 3 replies in {:?}", t.elapsed());
    assert_eq!(replies, [3333, 3334, 3333]);
    assert!(ticks.iter().copied().eq(0..10_000), "signals lost or out of order");
    assert_eq!((c.overflows(), c.calls_in_flight()), (0, 0));
    assert_eq!(n, 0, "calls, replies and queueing allocated");
    // Nothing left over.
    assert_eq!(c.recv(Duration::from_millis(100)).err(), Some(Error::TimedOut));
}

/// A queue too small for the signals that arrive while a call waits: the call still gets
/// its reply, the signals queued before the loss come first and in order, then one
/// `QueueOverflow`, then the signals that arrived after; the counter says how many were
/// dropped, and delivered + dropped is every signal.
fn queue_overflow_is_counted_and_reported() {
    let d = Daemon::start();
    let Some(_emitter) = gdbus_emitter(&d) else { return };
    let (mut rx, mut tx, mut q) = (vec![0u8; 65536], vec![0u8; 4096], vec![0u8; 16 << 10]);
    let mut c = ConnectionWith::connect_with(Borrowed::with_queue(&mut rx, &mut tx, &mut q), &d.address, T).unwrap();
    c.add_match("type='signal',interface='org.ember.Emitter',member='Tick'", T).unwrap();
    let call = start_emit(&mut c, 0, 2000);
    let m = c.wait_call(call, Duration::from_secs(60)).unwrap();
    assert_eq!(m.body().next_as::<u32>(), Ok(2000));
    let dropped = c.overflows();
    assert!(dropped > 0 && dropped < 2000, "{dropped}");
    let mut got = Vec::new();
    let mut errors = Vec::new();
    loop {
        match c.recv(Duration::from_millis(300)) {
            Ok(m) if m.member() == Some("Tick") => got.push(m.body().next_as::<u32>().unwrap()),
            Ok(_) => {}
            Err(Error::TimedOut) => break,
            Err(e) => errors.push((got.len(), e)),
        }
    }
    assert_eq!(errors, [(errors[0].0, Error::QueueOverflow { dropped })]);
    let before = errors[0].0;
    assert!(before > 0, "nothing was queued before the loss");
    assert!(got[..before].iter().copied().eq(0..before as u32), "the signals before the loss, in order");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(got.len() as u64 + dropped, 2000);
    // A queue of none: every message meanwhile is dropped, and counted.
    let (mut rx, mut tx) = (vec![0u8; 65536], vec![0u8; 4096]);
    let mut none = ConnectionWith::connect_with(Borrowed::new(&mut rx, &mut tx), &d.address, T).unwrap();
    assert_eq!(none.queue_capacity(), 0);
    none.add_match("type='signal',interface='org.ember.Emitter',member='Tick'", T).unwrap();
    let call = start_emit(&mut none, 0, 10);
    none.wait_call(call, T).unwrap();
    assert!(none.overflows() >= 10);
    assert_eq!(none.recv(T).err(), Some(Error::QueueOverflow { dropped: none.overflows() }));
}

/// Calls in flight from a `Poller` loop: started together, their replies (and a signal)
/// picked up as the connection's fd becomes readable, with `poll_call`; a call cancelled;
/// too many in flight is a typed error.
fn calls_in_flight_from_the_poller() {
    let d = Daemon::start();
    let Some(_emitter) = gdbus_emitter(&d) else { return };
    let mut c = d.connect();
    c.add_match("type='signal',interface='org.ember.Emitter',member='Tick'", T).unwrap();
    let mut pending: Vec<Option<dbus::PendingCall>> = (0..3).map(|i| Some(start_emit(&mut c, i * 10, 1))).collect();
    let mut poller: ember_linux::poll::Poller<2> = ember_linux::poll::Poller::new().unwrap();
    poller.add(&*c, 1, ember_linux::poll::Interest::READ).unwrap();
    let mut answered = Vec::new();
    let start = Instant::now();
    while answered.len() < 3 {
        assert!(start.elapsed() < T, "replies missing: {answered:?}");
        poller.wait(Some(Duration::from_millis(100))).unwrap();
        for slot in &mut pending {
            let Some(call) = slot.take() else { continue };
            match c.poll_call(call).unwrap() {
                dbus::Poll::Ready(m) => answered.push(m.body().next_as::<u32>().unwrap()),
                dbus::Poll::Pending(call) => *slot = Some(call),
            }
        }
    }
    assert_eq!(answered, [1, 1, 1]);
    // The three signals came meanwhile, queued for recv, in order.
    let mut ticks = Vec::new();
    while ticks.len() < 3 {
        let m = c.recv(T).unwrap();
        if m.member() == Some("Tick") {
            ticks.push(m.body().next_as::<u32>().unwrap());
        }
    }
    assert_eq!(ticks, [0, 10, 20]);
    // A cancelled call's reply goes to recv as any message.
    let call = start_emit(&mut c, 99, 0);
    let serial = call.serial();
    c.cancel_call(call);
    let m = loop {
        let m = c.recv(T).unwrap();
        if m.reply_serial() == Some(serial) {
            break m;
        }
    };
    assert_eq!(m.message_type(), MessageType::MethodReturn);
    // At most MAX_CALLS_IN_FLIGHT at once.
    let many: Vec<_> = (0..dbus::MAX_CALLS_IN_FLIGHT).map(|_| start_emit(&mut c, 0, 0)).collect();
    let sig = Signature::new("uu").unwrap();
    let r =
        c.start_call("org.ember.Emitter", "/org/ember/Emitter", None, "Emit", sig, |w| w.u32(0).and_then(|_| w.u32(0)));
    assert_eq!(r.err(), Some(Error::TooManyCalls { max: dbus::MAX_CALLS_IN_FLIGHT }));
    for call in many {
        c.wait_call(call, T).unwrap();
    }
    // A handle for a serial that is not in flight.
    let r = c.wait_call(dbus::PendingCall::from_serial(serial), T).map(|_| ());
    assert_eq!(r, Err(CallError::Local(Error::InvalidName)));
}

/// A refused reply to a call in flight (too large) fails that call when it is polled,
/// even though it arrived while another call was being waited for.
fn refused_reply_fails_its_call_in_flight() {
    let d = Daemon::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = blob_service(d.address.clone(), "org.ember.Blob", stop.clone());
    let mut small: Box<Connection<4096>> = Box::new(Connection::connect(&d.address).unwrap());
    let sig = Signature::new("u").unwrap();
    let big = small.start_call("org.ember.Blob", "/b", None, "Get", sig, |w| w.u32(20_000)).unwrap();
    let fits = small.start_call("org.ember.Blob", "/b", None, "Get", sig, |w| w.u32(10)).unwrap();
    let m = small.wait_call(fits, T).unwrap();
    assert_eq!(m.body().next_as::<Array>().unwrap().as_bytes().map(<[u8]>::len), Some(10));
    let r = small.poll_call(big).map(|_| ());
    assert!(matches!(r, Err(CallError::Local(Error::Dbus(DbusError::TooLarge { max: 4096, .. })))), "{r:?}");
    assert_eq!(small.calls_in_flight(), 0);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

/// A message that arrives with an fd while a call waits is queued with its fd: `recv`
/// returns it and `take_fd` gives the fd.
fn queued_messages_keep_their_fds() {
    let d = Daemon::start();
    let (mut c, mut peer) = (d.connect(), d.connect());
    c.add_match("type='signal',interface='org.ember.Fds'", T).unwrap();
    let (r, w) = rustix::pipe::pipe().unwrap();
    let sig = Signature::new("h").unwrap();
    peer.send(Builder::signal("/f", "org.ember.Fds", "Here"), sig, |wr| wr.fd_index(0), &[w.as_fd()]).unwrap();
    drop(w);
    // A round trip of the peer's: the bus has routed its signal to `c` before `c` calls.
    peer.call(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "GetId", Signature::EMPTY, |_| Ok(()), T).unwrap();
    c.call(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "GetId", Signature::EMPTY, |_| Ok(()), T).unwrap();
    let fd = loop {
        let m = c.recv(T).unwrap();
        if m.member() == Some("Here") {
            assert_eq!(m.unix_fds(), 1);
            break c.take_fd(0).expect("the queued message's fd");
        }
    };
    rustix::io::write(&fd, b"through the queue").unwrap();
    drop(fd);
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"through the queue");
}

/// Runs a GDBus peer written in Python (`python3-gi`) on `d`'s bus: `script` gets the bus
/// address as its first argument and prints `ready` when it is; killed when the guard drops.
fn gi_peer(d: &Daemon, file: &str, script: &str, args: &[&str]) -> KillOnDrop {
    let mut all = vec![d.address.as_str()];
    all.extend(args);
    gi_script(&d.dir, file, script, &all)
}

/// Runs the Python (`python3-gi`) `script`, written to `dir/file`, with `args`; waits for
/// its `ready` line.
fn gi_script(dir: &str, file: &str, script: &str, args: &[&str]) -> KillOnDrop {
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python).args(["-c", "import gi"]).output().is_ok_and(|o| o.status.success());
    common::skip_unless(has_gi, "needs python3-gi (/usr/bin/python3 with gi)");
    let path = format!("{dir}/{file}");
    std::fs::write(&path, script).unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(&path).args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    KillOnDrop(child)
}

/// A GDBus peer that emits `Nested` with the value of the signature it is given (an empty
/// dict, then one entry nested all the way down) each time it reads a line.
const GDBUS_NESTED: &str = r#"
import sys
from gi.repository import Gio, GLib
address, depth = sys.argv[1], int(sys.argv[2])
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
sig = "a{s(" * depth + "y" + ")}" * depth
assert GLib.Variant.is_signature(sig)
value = 7
for i in range(depth):
    value = {"k%d" % (depth - 1 - i): (value,)}
print("ready", flush=True)
for line in sys.stdin:
    for v in ({}, value):
        conn.emit_signal(None, "/org/ember/Nested", "org.ember.Nested", "Nested", GLib.Variant("(" + sig + ")", (v,)))
    conn.flush_sync(None)
"#;

/// Dict entries count as arrays' elements, not as structs: `a{s(` ×17 `y` `)}` ×17 has 17
/// arrays, 17 structs and 17 dict entries, which GLib (the sender) and libdbus (the daemon
/// validates what it routes) accept, and so must Ember. With dict entries counted as
/// structs it had 34 and was refused.
fn dict_entries_are_not_structs() {
    let sig = "a{s(".repeat(17) + "y" + &")}".repeat(17);
    assert_eq!(Signature::new(&sig).map(|s| s.as_str().len()), Ok(103));
    // Still refused: 33 structs, 33 arrays (as libdbus refuses them).
    assert!(Signature::new(&("(".repeat(33) + "y" + &")".repeat(33))).is_err());
    assert!(Signature::new(&("a{sa".repeat(16) + "a{sy}" + &"}".repeat(16))).is_err());
    let d = Daemon::start();
    let mut c = d.connect();
    c.add_match("type='signal',interface='org.ember.Nested'", T).unwrap();
    let mut peer = gi_peer(&d, "nested.py", GDBUS_NESTED, &["17"]);
    use std::io::Write as _;
    writeln!(peer.0.stdin.as_mut().unwrap()).unwrap();
    // The empty dict, then the entry nested 17 times with 7 at the bottom.
    for empty in [true, false] {
        let m = loop {
            let m = c.recv(T).unwrap();
            if m.member() == Some("Nested") {
                break m;
            }
        };
        assert_eq!(m.signature().as_str(), sig);
        let mut v: Value = m.body().next().unwrap().unwrap();
        if empty {
            let Value::Array(a) = v else { panic!("{v:?}") };
            assert_eq!(a.count(), 0);
            continue;
        }
        for level in 0..17 {
            let Value::Array(mut a) = v else { panic!("{v:?}") };
            let Value::DictEntry(mut kv) = a.next().unwrap().unwrap() else { panic!("not a dict entry") };
            assert_eq!(<&str>::try_from(kv.next().unwrap().unwrap()).unwrap(), format!("k{level}"));
            let Value::Struct(mut f) = kv.next().unwrap().unwrap() else { panic!("not a struct") };
            v = f.next().unwrap().unwrap();
        }
        assert!(matches!(v, Value::Byte(7)), "{v:?}");
    }
}

/// The built-in interfaces answer as GDBus and libdbus services do: a known method with the
/// wrong signature is `InvalidArgs`, an unknown method of a known interface
/// `UnknownMethod` (both were `UnknownInterface`); `Properties.Get` with a wrong signature
/// is `InvalidArgs` (was `UnknownMethod`); `GetAll("")` gives every interface's properties.
fn builtin_interfaces_errors() {
    common::need_tool("gdbus");
    let d = Daemon::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let a = &d.address;
    let cases: &[(&str, &[&str], &str)] = &[
        ("org.freedesktop.DBus.Peer.Ping", &["1"], "InvalidArgs"),
        ("org.freedesktop.DBus.Peer.GetMachineId", &["'x'"], "InvalidArgs"),
        ("org.freedesktop.DBus.Peer.Nope", &[], "UnknownMethod"),
        ("org.freedesktop.DBus.Introspectable.Introspect", &["1"], "InvalidArgs"),
        ("org.freedesktop.DBus.Introspectable.Nope", &[], "UnknownMethod"),
        ("org.freedesktop.DBus.Properties.Get", &[IFACE], "InvalidArgs"),
        ("org.freedesktop.DBus.Properties.Get", &[IFACE, "Level", "1"], "InvalidArgs"),
        ("org.freedesktop.DBus.Properties.GetAll", &[IFACE, "x"], "InvalidArgs"),
        ("org.freedesktop.DBus.Properties.Set", &[IFACE, "Level"], "InvalidArgs"),
        ("org.freedesktop.DBus.Properties.Nope", &[], "UnknownMethod"),
    ];
    let mut wrong = Vec::new();
    for (method, args, want) in cases {
        let (ok, e) = gdbus_call(a, method, args);
        if ok || !e.contains(&format!("org.freedesktop.DBus.Error.{want}")) {
            wrong.push(format!("{method}{args:?}: wanted {want}, got {e}"));
        }
    }
    let all = gdbus_call(a, "org.freedesktop.DBus.Properties.GetAll", &["''"]);
    if all != (true, "({'Name': <'ember test'>, 'Level': <uint32 7>},)".into()) {
        wrong.push(format!("GetAll(''): {all:?}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// An error message from a service is sent whole (it was cut at 96 bytes): 300 and 10,000
/// bytes, read by gdbus and by an Ember client.
fn long_error_messages() {
    common::need_tool("gdbus");
    let d = Daemon::start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let want = |n: usize| (0..n).map(|i| char::from(b'0' + (i % 10) as u8)).collect::<String>() + "<end>";
    let (ok, e) = gdbus_call(&d.address, "org.ember.Test.FailLong", &["300"]);
    assert!(!ok && e.contains("org.ember.Error.Long") && e.contains(&want(300)), "{e}");
    let mut c = d.connect();
    let sig = Signature::new("u").unwrap();
    match c.call("org.ember.Test", "/org/ember/Test", Some(IFACE), "FailLong", sig, |w| w.u32(10_000), T) {
        Err(CallError::Remote { name, message }) => {
            assert_eq!(name, "org.ember.Error.Long");
            assert_eq!(message, want(10_000));
        }
        other => panic!("{other:?}"),
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

/// `tcp:` against a `dbus-daemon` listening on 127.0.0.1 (a configuration written here),
/// with each mechanism it may offer over TCP: `DBUS_COOKIE_SHA1` (the daemon writes the
/// cookie to `~/.dbus-keyrings/org_freedesktop_general`; Ember reads it and answers with
/// SHA-1), `ANONYMOUS` (`<allow_anonymous/>`), and both offered (the cookie first, as
/// libdbus prefers). `EXTERNAL` cannot work over TCP with dbus-daemon: offered alone it is
/// `AuthRejected`, at once.
fn tcp_with_each_mechanism() {
    common::need_tool("dbus-send");
    let cases: &[(&[&str], &str, &str)] = &[
        (&["DBUS_COOKIE_SHA1"], "", "cookie"),
        (&["ANONYMOUS"], "<allow_anonymous/>", "anonymous"),
        (&["DBUS_COOKIE_SHA1", "ANONYMOUS"], "<allow_anonymous/>", "both"),
        (&["EXTERNAL"], "", "external"),
    ];
    for (auth, extra, what) in cases {
        let d = Daemon::start_listening("tcp:host=127.0.0.1,port=0,family=ipv4", auth, extra);
        assert!(d.address.starts_with("tcp:host=127.0.0.1,port="), "{}", d.address);
        let started = Instant::now();
        let r = Connection::<4096>::connect_timeout(&d.address, T);
        let connect_took = started.elapsed();
        if *what == "external" {
            assert_eq!(r.err(), Some(Error::AuthRejected), "{what}");
            continue;
        }
        let mut c = match r {
            Ok(c) => Box::new(c),
            Err(e) => {
                let said = std::fs::read_to_string(format!("{}/daemon.log", d.dir)).unwrap_or_default();
                panic!("{what}: {e}; dbus-daemon said: {said}")
            }
        };
        assert!(c.unique_name().starts_with(":1."), "{what}: {}", c.unique_name());
        assert!(!c.can_pass_fds(), "no fds over TCP");
        let m = c
            .call(bus::DESTINATION, bus::PATH, Some(bus::INTERFACE), "ListNames", Signature::EMPTY, |_| Ok(()), T)
            .unwrap();
        let names = strings(m.body().next_as().unwrap());
        assert!(names.contains(&c.unique_name().to_string()), "{what}: {names:?}");
        // Calls over TCP allocate nothing.
        let started = Instant::now();
        let n = counting::allocations(|| {
            for _ in 0..20 {
                let ping = Some("org.freedesktop.DBus.Peer");
                let m = c.call(bus::DESTINATION, bus::PATH, ping, "Ping", Signature::EMPTY, |_| Ok(()), T).unwrap();
                assert_eq!(m.message_type(), MessageType::MethodReturn);
            }
        });
        assert_eq!(n, 0, "{what}: calls over TCP allocated");
        println!(
            "    {what}: connect + auth + Hello {connect_took:.1?}, Peer.Ping over TCP {:.1?} each (20 calls)",
            started.elapsed() / 20
        );
        // A libdbus peer on the same TCP bus sees us.
        let out = Command::new("dbus-send")
            .args([&format!("--bus={}", d.address), "--print-reply", "--dest=org.freedesktop.DBus"])
            .args([
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &format!("string:{}", c.unique_name()),
            ])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("boolean true"), "{what}: {out:?}");
        // The host as a name, and a list whose first entry nobody listens on.
        let port = d.address.split("port=").nth(1).unwrap().split(',').next().unwrap();
        let list = format!("unix:path={}/nobody;tcp:host=localhost,port={port},family=ipv4", d.dir);
        let c2 = Connection::<4096>::connect_timeout(&list, T).map(|_| ());
        assert_eq!(c2, Ok(()), "{what}");
    }
}

/// A directory for one test, removed on drop.
struct TempDir(String);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = format!("/tmp/ember-dbus-{tag}-{}-{n}", std::process::id());
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serves `OBJECTS` on each connection `listener` accepts, one at a time, until `stop`.
fn serve_peers(
    listener: dbus::Listener,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut answered = 0;
        let mut service = TestService { level: 7 };
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            // The timeout bounds the SASL handshake too: long enough for an emulated board
            // (a 50 ms one reset a GDBus client under qemu-riscv64 now and then).
            let mut c: Box<Connection> = match listener.accept(Duration::from_millis(1000)) {
                Ok(c) => Box::new(c),
                Err(Error::TimedOut) => continue,
                // A client that did not authenticate: the next one may.
                Err(Error::AuthRejected | Error::PeerGone) => continue,
                Err(e) => panic!("accept: {e}"),
            };
            loop {
                match c.process(OBJECTS, &mut service, Duration::from_millis(50)) {
                    Ok(dbus::Processed::Answered) => answered += 1,
                    Ok(dbus::Processed::Message(_)) => {}
                    Err(Error::TimedOut) if !stop.load(std::sync::atomic::Ordering::Relaxed) => {}
                    Err(_) => break,
                }
            }
        }
        answered
    })
}

/// Peer-to-peer, Ember to Ember: a `Listener` (no bus, no `Hello`), a client with
/// `connect_peer`: calls, errors, an fd passed, properties; a client of the wrong kind
/// (not speaking SASL) is refused without stopping the listener.
fn peer_to_peer_ember() {
    let dir = TempDir::new("p2p");
    let listener = dbus::Listener::bind(&format!("unix:path={}/peer", dir.0)).unwrap();
    let address = listener.address().to_string();
    assert!(address.starts_with(&format!("unix:path={}/peer,guid=", dir.0)), "{address}");
    assert_eq!(listener.guid().len(), 32);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = serve_peers(listener, stop.clone());
    // Someone who does not speak SASL: refused, the listener goes on.
    {
        let s = ember_linux::uds::connect_stream::<64>(ember_linux::uds::UnixName::Path(&format!("{}/peer", dir.0)))
            .unwrap();
        let fd = s.into_fd();
        rustix::io::write(&fd, b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        let _ = rustix::io::read(&fd, &mut buf);
    }
    let mut c: Box<Connection> = Box::new(Connection::connect_peer(&address, T).unwrap());
    assert_eq!(c.unique_name(), "");
    assert!(c.can_pass_fds());
    let sig = Signature::new("ii").unwrap();
    let m = c.call(
        "org.ember.Test",
        "/org/ember/Test",
        Some(IFACE),
        "Add",
        sig,
        |w| {
            w.i32(2)?;
            w.i32(40)
        },
        T,
    );
    assert_eq!(m.unwrap().body().next_as::<i32>(), Ok(42));
    // Peer-to-peer calls allocate nothing (on the client; the server is another thread).
    let sig = Signature::new("ii").unwrap();
    let n = counting::allocations(|| {
        for i in 0..20 {
            let m = c.call(
                "org.ember.Test",
                "/org/ember/Test",
                Some(IFACE),
                "Add",
                sig,
                |w| {
                    w.i32(i)?;
                    w.i32(1)
                },
                T,
            );
            assert_eq!(m.unwrap().body().next_as::<i32>(), Ok(i + 1));
        }
    });
    assert_eq!(n, 0, "peer-to-peer calls allocated");
    match c.call("org.ember.Test", "/org/ember/Test", Some(IFACE), "Fail", Signature::EMPTY, |_| Ok(()), T) {
        Err(CallError::Remote { name, .. }) => assert_eq!(name, "org.ember.Error.Refused"),
        other => panic!("{other:?}"),
    }
    let (r, w) = rustix::pipe::pipe().unwrap();
    let sig = Signature::new("hs").unwrap();
    let m = c
        .call_with_fds(
            "org.ember.Test",
            "/org/ember/Test",
            Some(IFACE),
            "Write",
            sig,
            |wr| {
                wr.fd_index(0)?;
                wr.str("peer to peer")
            },
            &[w.as_fd()],
            T,
        )
        .unwrap();
    assert_eq!(m.body().next_as::<u32>(), Ok(12));
    drop(w);
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"peer to peer");
    drop(c);
    // A second client after the first hung up.
    let mut c2: Box<Connection> = Box::new(Connection::connect_peer(&address, T).unwrap());
    let m = c2
        .call("x.y", "/org/ember/Test", Some("org.freedesktop.DBus.Peer"), "Ping", Signature::EMPTY, |_| Ok(()), T)
        .unwrap();
    assert_eq!(m.message_type(), MessageType::MethodReturn);
    drop(c2);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(server.join().unwrap(), 24);
}

/// Peer-to-peer with GDBus (python3-gi): a GDBus client connection (no bus:
/// `AUTHENTICATION_CLIENT` only) calls an Ember `Listener`'s objects, and an Ember client
/// calls a `GDBusServer`'s. (The `gdbus` command line always says `Hello`, as to a bus.)
fn peer_to_peer_gdbus() {
    let dir = TempDir::new("p2p-gdbus");
    let listener = dbus::Listener::bind(&format!("unix:path={}/ember", dir.0)).unwrap();
    let address = listener.address().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = serve_peers(listener, stop.clone());
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python).args(["-c", "import gi"]).output().is_ok_and(|o| o.status.success());
    common::skip_unless(has_gi, "needs python3-gi (/usr/bin/python3 with gi)");
    let script = format!("{}/client.py", dir.0);
    std::fs::write(&script, GDBUS_PEER_CLIENT).unwrap();
    let out = Command::new(python).args([&script, &address]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out,
        "(42,)\nGDBus.Error:org.ember.Error.Refused: asked to fail\n(<uint32 7>,)\n\
         ({'a': <1>}, (1, 2, ['p']), [byte 0x00, 0x01], <<'deep'>>)\n"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(server.join().unwrap(), 4);
    // A GDBusServer, and Ember calling it.
    let socket = format!("{}/gdbus", dir.0);
    let _peer = gi_script(&dir.0, "server.py", GDBUS_SERVER, &[&socket]);
    let mut c: Box<Connection> = Box::new(Connection::connect_peer(&format!("unix:path={socket}"), T).unwrap());
    let sig = Signature::new("ii").unwrap();
    let m = c.call(
        "org.ember.Peer",
        "/org/ember/Peer",
        Some("org.ember.Peer"),
        "Add",
        sig,
        |w| {
            w.i32(20)?;
            w.i32(22)
        },
        T,
    );
    assert_eq!(m.unwrap().body().next_as::<i32>(), Ok(42));
    match c.call("org.ember.Peer", "/org/ember/Peer", Some("org.ember.Peer"), "Fail", Signature::EMPTY, |_| Ok(()), T) {
        Err(CallError::Remote { name, message }) => {
            assert_eq!(name, "org.ember.Error.Peer");
            assert_eq!(message, "x".repeat(300));
        }
        other => panic!("{other:?}"),
    }
}

/// A GDBus peer client (python3-gi): connects to `argv[1]` without a bus and calls the
/// test object, printing each reply (or error).
const GDBUS_PEER_CLIENT: &str = r#"
import sys
from gi.repository import Gio, GLib
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT, None, None)
def call(iface, method, args):
    try:
        r = conn.call_sync(None, "/org/ember/Test", iface, method, args, None, 0, 5000, None)
        print(r.print_(True))
    except GLib.Error as e:
        print(e.message)
call("org.ember.Test", "Add", GLib.Variant("(ii)", (2, 40)))
call("org.ember.Test", "Fail", None)
call("org.freedesktop.DBus.Properties", "Get", GLib.Variant("(ss)", ("org.ember.Test", "Level")))
call("org.ember.Test", "Echo", GLib.Variant("(a{sv}(iias)ayv)", ({"a": GLib.Variant("i", 1)}, (1, 2, ["p"]), b"\x00\x01", GLib.Variant("v", GLib.Variant("s", "deep")))))
"#;

/// A `GDBusServer` (python3-gi) on `unix:path=<argv[1]>` exporting `org.ember.Peer` at
/// `/org/ember/Peer` on each connection: `Add(ii) -> i`, and `Fail`, a 300-byte error.
const GDBUS_SERVER: &str = r#"
import sys
from gi.repository import Gio, GLib
xml = """<node><interface name="org.ember.Peer">
<method name="Add"><arg type="i" direction="in"/><arg type="i" direction="in"/><arg type="i" direction="out"/></method>
<method name="Fail"/>
</interface></node>"""
info = Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0]
server = Gio.DBusServer.new_sync("unix:path=" + sys.argv[1], Gio.DBusServerFlags.NONE, Gio.dbus_generate_guid(), None, None)
connections = []
def call(conn, sender, path, iface, method, params, invocation):
    if method == "Add":
        a, b = params.unpack()
        invocation.return_value(GLib.Variant("(i)", (a + b,)))
    else:
        invocation.return_dbus_error("org.ember.Error.Peer", "x" * 300)
def on_new(server, conn):
    conn.register_object("/org/ember/Peer", info, call, None, None)
    connections.append(conn)
    return True
server.connect("new-connection", on_new)
server.start()
print("ready", flush=True)
GLib.MainLoop().run()
"#;

/// A `Listener` accepts only its own uid, as the socket's credentials say: a client of
/// another uid (`setpriv` to nobody) claiming ours (`AUTH EXTERNAL 30`, "0") is answered
/// `REJECTED EXTERNAL`, `BEGIN` after it is an `ERROR`, and `accept` fails; the listener
/// still accepts our own uid after that.
fn peer_of_another_uid_is_refused() {
    common::need_tool("setpriv");
    common::need_tool("socat");
    if !rustix::process::geteuid().is_root() {
        println!("    (not root: setpriv needs root; checked in CI, which runs as root)");
        return;
    }
    // Abstract: no file permissions in the way, only the credentials check.
    let name = format!("ember-p2p-uid-{}", std::process::id());
    let listener = dbus::Listener::bind(&format!("unix:abstract={name}")).unwrap();
    let liar = std::thread::spawn(move || {
        let mut child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "socat", "-t", "2", "-"])
            .arg(format!("ABSTRACT-CONNECT:{name}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("setpriv (util-linux) runs socat");
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"\0AUTH EXTERNAL 30\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(b"BEGIN\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(stdin);
        child.wait_with_output().unwrap()
    });
    let r = listener.accept::<4096, 4096>(T).map(|_| ());
    assert!(matches!(r, Err(Error::AuthRejected | Error::PeerGone)), "{r:?}");
    let out = liar.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "REJECTED EXTERNAL\r\nERROR\r\n");
    // Our own uid still gets in.
    let address = listener.address().to_string();
    let client = std::thread::spawn(move || Connection::<4096>::connect_peer(&address, T).map(|_| ()));
    let accepted = listener.accept::<4096, 4096>(T).map(|_| ());
    assert_eq!(accepted, Ok(()));
    assert_eq!(client.join().unwrap(), Ok(()));
}

fn main() {
    common::main(
        &[
            ("hello_and_list_names", hello_and_list_names),
            ("cancelled_waits", cancelled_waits),
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
            ("reply_too_large_fails_at_once", reply_too_large_fails_at_once),
            ("call_too_large_for_service_gets_error_reply", call_too_large_for_service_gets_error_reply),
            ("malformed_call_gets_invalid_args", malformed_call_gets_invalid_args),
            ("connect_honours_the_timeout", connect_honours_the_timeout),
            ("large_replies_through_large_buffers", large_replies_through_large_buffers),
            ("heap_buffer_grows_to_the_limit", heap_buffer_grows_to_the_limit),
            ("gdbus_object_manager_reply", gdbus_object_manager_reply),
            ("signals_while_three_calls_in_flight", signals_while_three_calls_in_flight),
            ("queue_overflow_is_counted_and_reported", queue_overflow_is_counted_and_reported),
            ("calls_in_flight_from_the_poller", calls_in_flight_from_the_poller),
            ("refused_reply_fails_its_call_in_flight", refused_reply_fails_its_call_in_flight),
            ("queued_messages_keep_their_fds", queued_messages_keep_their_fds),
            ("dict_entries_are_not_structs", dict_entries_are_not_structs),
            ("builtin_interfaces_errors", builtin_interfaces_errors),
            ("long_error_messages", long_error_messages),
            ("tcp_with_each_mechanism", tcp_with_each_mechanism),
            ("peer_to_peer_ember", peer_to_peer_ember),
            ("peer_to_peer_gdbus", peer_to_peer_gdbus),
            ("peer_of_another_uid_is_refused", peer_of_another_uid_is_refused),
        ],
        |_| {},
    );
}
