//! The D-Bus services and helpers people expect, against a private `dbus-daemon` and the
//! `gdbus` command: deferred replies (a slow handler keeps its call's token and answers
//! later while other callers are served), `org.freedesktop.DBus.ObjectManager` read back by
//! `gdbus call ... GetManagedObjects` with its signals seen by `gdbus monitor`, and objects
//! added and removed at run time with fallback (subtree) objects.
//!
//! Its own `main` (`harness = false`); `cargo xtask test` installs `dbus-daemon` and
//! `libglib2.0-bin` when missing.

mod common;
use common::dbus_daemon::Daemon;
use ember_test_support as counting;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ember_core::dbus::value::Values;
use ember_core::dbus::{Signature, Value, Writer};
use ember_linux::Error;
use ember_linux::dbus::object::{
    self, Annotation, ArgNames, Call, Description, Interface, Member, Method, MethodError, OBJECT_MANAGER_INTERFACE,
    Object, ObjectTable, Property, SignalDesc, TableError, Token, annotations,
};
use ember_linux::dbus::{CallError, Connection, Poll, Processed, RequestNameReply};

const T: Duration = Duration::from_secs(5);
const NAME: &str = "org.ember.Services";

/// A child process killed (and reaped) on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect(d: &Daemon) -> Box<Connection> {
    Box::new(Connection::connect(&d.address).unwrap())
}

/// Runs `gdbus call` on `NAME`; returns (success, stdout or stderr).
fn gdbus_call(address: &str, path: &str, method: &str, args: &[&str]) -> (bool, String) {
    common::need_tool("gdbus");
    let out = Command::new("gdbus")
        .args(["call", "--address", address, "--dest", NAME, "--object-path", path, "--method", method, "--"])
        .args(args)
        .output()
        .expect("gdbus (installed by cargo xtask test)");
    let text = if out.status.success() { out.stdout } else { out.stderr };
    (out.status.success(), String::from_utf8_lossy(&text).trim().to_string())
}

// ---- Deferred replies --------------------------------------------------------------------

static SLOW_OBJECTS: &[Object<'static>] = &[Object {
    path: "/org/ember/Slow",
    interfaces: &[Interface {
        name: "org.ember.Slow",
        methods: &[
            Method::typed::<(u32, u32), (u32,)>("Slow"),
            Method::typed::<(u32,), (u32,)>("Fast"),
            Method::typed::<(), ()>("Refuse"),
            Method::typed::<(), (&[u8],)>("Huge"),
        ],
        properties: &[],
        signals: &[],
    }],
}];

/// The answers of `Refuse` and `Huge`.
const REFUSE: u32 = u32::MAX;
const HUGE: u32 = u32::MAX - 1;

/// A deferred call: its token, when to answer, and the answer.
type Pending = Option<(Token, Instant, u32)>;

/// `Slow(ms, x)` defers and answers `x * 2` after `ms` milliseconds; `Fast(x)` answers
/// `x + 1` at once; `Refuse()` defers and answers an error. Deferred calls wait in a fixed
/// table (no heap).
struct SlowService {
    pending: [Pending; 4],
}

impl object::Service for SlowService {
    fn call(
        &mut self,
        call: &Call<'_>,
        args: Values<'_>,
        _: &mut [Option<std::os::fd::OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        match call.member {
            "Fast" => object::handle(args, reply, |(x,): (u32,)| Ok((x + 1,))),
            "Slow" | "Refuse" | "Huge" => {
                let (ms, x): (u32, u32) = match call.member {
                    "Slow" => object::args(args)?,
                    "Refuse" => (0, REFUSE),
                    _ => (0, HUGE),
                };
                let slot = self.pending.iter_mut().find(|p| p.is_none()).ok_or(MethodError::failed("busy"))?;
                *slot = Some((call.defer()?, Instant::now() + Duration::from_millis(ms.into()), x));
                // One call, one token.
                assert!(call.defer().is_err());
                Ok(())
            }
            _ => Err(MethodError::failed("unexpected")),
        }
    }
    fn get(&mut self, _: &str, _: &str, _: &str, _: &mut Writer<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
    fn set(&mut self, _: &str, _: &str, _: &str, _: Value<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
}

/// Serves `SLOW_OBJECTS` as `NAME` until `stop`, answering deferred calls when due;
/// returns (calls processed, heap allocations of the loop).
fn serve_slow(address: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u32, usize)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut c: Box<Connection> = Box::new(Connection::connect(&address).unwrap());
        assert_eq!(c.request_name(NAME, 0, T), Ok(RequestNameReply::PrimaryOwner));
        ready_tx.send(()).unwrap();
        let mut svc = SlowService { pending: [None, None, None, None] };
        let mut processed = 0;
        let allocs = counting::allocations(|| {
            while !stop.load(Ordering::Relaxed) {
                match c.process(SLOW_OBJECTS, &mut svc, Duration::from_millis(10)) {
                    Ok(Processed::Answered) => processed += 1,
                    Ok(Processed::Message(_)) | Err(Error::TimedOut) => {}
                    Err(e) => panic!("{e}"),
                }
                let now = Instant::now();
                for slot in &mut svc.pending {
                    if slot.as_ref().is_some_and(|(_, due, _)| *due <= now) {
                        let (token, _, x) = slot.take().unwrap();
                        if x == REFUSE {
                            c.reply_error(token, "org.ember.Error.Refused", "refused later").unwrap();
                        } else if x == HUGE {
                            // Larger than the send buffer: the caller gets Failed instead.
                            let sig = Signature::new("ay").unwrap();
                            let big = [7u8; 70_000];
                            let r = c.reply(token, sig, |w| w.bytes(&big));
                            assert_eq!(r, Err(Error::Dbus(ember_core::dbus::DbusError::BufferTooSmall)));
                        } else {
                            c.reply_typed(token, &(x * 2,)).unwrap();
                        }
                    }
                }
            }
        });
        (processed, allocs)
    });
    ready_rx.recv_timeout(T).unwrap();
    h
}

/// A slow handler defers; a second caller (Ember) is answered while the first (`gdbus`, then
/// Ember) still waits; the first gets its answer later. A deferred error reaches its caller.
/// The serving loop, deferring and answering included, allocates nothing, nor do the
/// Ember callers.
fn slow_deferred_handler_does_not_delay_a_second_caller() {
    common::need_tool("gdbus");
    let d = Daemon::start();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_slow(d.address.clone(), stop.clone());
    let svc = (NAME, "/org/ember/Slow", Some("org.ember.Slow"));

    // gdbus is the slow caller.
    let started = Instant::now();
    let mut slow = KillOnDrop(
        Command::new("gdbus")
            .args(["call", "--address", &d.address, "--dest", NAME, "--object-path", svc.1])
            .args(["--method", "org.ember.Slow.Slow", "1500", "21"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut c = connect(&d);
    // Wait until gdbus's call has been deferred (its token is held), then call Fast.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (r,): (u32,) = c.call_typed(svc.0, svc.1, svc.2, "Fast", &(1u32,), T).unwrap();
    let fast = t.elapsed();
    assert_eq!(r, 2);
    assert!(slow.0.try_wait().unwrap().is_none(), "the slow call was answered before the fast one");
    assert!(fast < Duration::from_millis(500), "the fast call waited {fast:?}");
    let status = slow.0.wait().unwrap();
    let mut out = String::new();
    slow.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success());
    assert_eq!(out.trim(), "(uint32 42,)");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    println!(
        "    fast call answered in {fast:?} while a deferred call waited; the deferred one after {:?}",
        started.elapsed()
    );

    // Ember as both callers, counted: a slow call in flight, fast calls answered meanwhile.
    let n = counting::allocations(|| {
        for i in 0..5u32 {
            let pending = c.start_call_typed(svc.0, svc.1, svc.2, "Slow", &(200u32, i)).unwrap();
            let (r,): (u32,) = c.call_typed(svc.0, svc.1, svc.2, "Fast", &(i,), T).unwrap();
            assert_eq!(r, i + 1);
            let pending = match c.poll_call(pending) {
                Ok(Poll::Pending(p)) => p,
                other => panic!("the deferred call was answered before the fast one: {other:?}"),
            };
            let (r,): (u32,) = c.wait_call_typed(pending, T).unwrap();
            assert_eq!(r, i * 2);
        }
        match c.call_typed::<(), ()>(svc.0, svc.1, svc.2, "Refuse", &(), T) {
            Err(CallError::Remote { name, message }) => {
                assert_eq!((name, message), ("org.ember.Error.Refused", "refused later"));
            }
            other => panic!("{other:?}"),
        }
    });
    match c.call(svc.0, svc.1, svc.2, "Huge", Signature::EMPTY, |_| Ok(()), T) {
        Err(CallError::Remote { name, message }) => {
            assert_eq!((name, message), ("org.freedesktop.DBus.Error.Failed", "the service could not write its reply"));
        }
        other => panic!("{other:?}"),
    }
    let (out_ok, text) = gdbus_call(&d.address, svc.1, "org.ember.Slow.Refuse", &[]);
    assert!(!out_ok && text.contains("org.ember.Error.Refused") && text.contains("refused later"), "{text}");
    stop.store(true, Ordering::Relaxed);
    let (processed, served_allocs) = server.join().unwrap();
    // Each gdbus call introspects first.
    assert_eq!(processed, 2 + 1 + 5 * 2 + 1 + 1 + 2);
    assert_eq!(n, 0, "the Ember callers allocated");
    assert_eq!(served_allocs, 0, "the serving loop (deferring and answering) allocated");
}

// ---- ObjectManager, run-time objects and fallback ----------------------------------------

const MANAGER: &str = "/org/ember/Mgr";
static MANAGER_IFACES: &[Interface<'static>] = &[OBJECT_MANAGER_INTERFACE];
static LAMP: &[Interface<'static>] = &[Interface {
    name: "org.ember.Lamp",
    methods: &[],
    properties: &[
        Property { name: "Level", signature: "u", writable: true },
        Property { name: "Name", signature: "s", writable: false },
    ],
    signals: &[],
}];
static DYN: &[Interface<'static>] = &[Interface {
    name: "org.ember.Dyn",
    methods: &[Method::typed::<(), (&str,)>("Where")],
    properties: &[Property { name: "Path", signature: "s", writable: false }],
    signals: &[],
}];
const PROPS: &str = "/org/ember/Props";
static PROPS_IFACES: &[Interface<'static>] = &[Interface {
    name: "org.ember.Props",
    methods: &[Method::typed::<(u32,), (u32,)>("Dim"), Method::typed::<(), ()>("Old")],
    properties: &[
        Property { name: "Level", signature: "u", writable: true },
        Property { name: "Mode", signature: "s", writable: true },
        Property { name: "Quiet", signature: "u", writable: true },
        Property { name: "Serial", signature: "s", writable: false },
    ],
    signals: &[SignalDesc { name: "Dimmed", args: "uu" }],
}];
/// `Level` announces its value (the default), `Mode` invalidates, `Quiet` is not
/// announced, `Serial` is constant; argument names and a deprecated method.
static PROPS_DESC: Description<'static> = Description {
    annotations: &[
        Annotation {
            interface: "org.ember.Props",
            member: Member::Property("Mode"),
            name: annotations::EMITS_CHANGED_SIGNAL,
            value: "invalidates",
        },
        Annotation {
            interface: "org.ember.Props",
            member: Member::Property("Quiet"),
            name: annotations::EMITS_CHANGED_SIGNAL,
            value: "false",
        },
        Annotation {
            interface: "org.ember.Props",
            member: Member::Property("Serial"),
            name: annotations::EMITS_CHANGED_SIGNAL,
            value: "const",
        },
        Annotation {
            interface: "org.ember.Props",
            member: Member::Method("Old"),
            name: annotations::DEPRECATED,
            value: "true",
        },
        Annotation {
            interface: "org.ember.Props",
            member: Member::Signal("Dimmed"),
            name: "org.ember.Note",
            value: "a<b & \"c\"",
        },
    ],
    arg_names: &[
        ArgNames {
            interface: "org.ember.Props",
            member: Member::Method("Dim"),
            args: &["percent"],
            results: &["level"],
        },
        ArgNames {
            interface: "org.ember.Props",
            member: Member::Signal("Dimmed"),
            args: &["from", "to"],
            results: &[],
        },
    ],
};
const LAMPS: [&str; 4] =
    ["/org/ember/Mgr/lamp0", "/org/ember/Mgr/lamp1", "/org/ember/Mgr/lamp2", "/org/ember/Mgr/lamp3"];

/// Lamps (a level each, by the digit ending their path) and the fallback `org.ember.Dyn`
/// (its handlers answer with the path called). Nothing allocates.
struct Lamps {
    levels: [u32; 4],
    /// `org.ember.Props`: Level, Mode, Quiet.
    level: u32,
    mode: heapless::String<16>,
    quiet: u32,
}

fn lamp(path: &str) -> Result<usize, MethodError> {
    LAMPS.iter().position(|p| *p == path).ok_or(MethodError::failed("no such lamp"))
}

impl object::Service for Lamps {
    fn call(
        &mut self,
        call: &Call<'_>,
        args: Values<'_>,
        _: &mut [Option<std::os::fd::OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        match call.member {
            "Where" => object::handle(args, reply, |(): ()| Ok((call.path,))),
            "Dim" => object::handle(args, reply, |(p,): (u32,)| Ok((p,))),
            "Old" => Ok(()),
            _ => Err(MethodError::failed("unexpected")),
        }
    }
    fn get(&mut self, path: &str, _: &str, property: &str, value: &mut Writer<'_>) -> Result<(), MethodError> {
        let r = match property {
            "Level" if path != PROPS => value.u32(self.levels[lamp(path)?]),
            "Name" => value.str(path.rsplit('/').next().unwrap_or("")),
            "Path" => value.str(path),
            "Level" if path == PROPS => value.u32(self.level),
            "Mode" => value.str(&self.mode),
            "Quiet" => value.u32(self.quiet),
            "Serial" => value.str("E-1"),
            _ => return Err(MethodError::failed("no such property")),
        };
        r.map_err(|_| MethodError::failed("too large"))
    }
    fn set(&mut self, path: &str, _: &str, property: &str, value: Value<'_>) -> Result<(), MethodError> {
        match (property, value) {
            ("Level", Value::U32(v)) if path == PROPS => self.level = v,
            ("Mode", Value::Str(v)) => self.mode = v.try_into().map_err(|_| MethodError::failed("too long"))?,
            ("Quiet", Value::U32(v)) => self.quiet = v,
            ("Level", Value::U32(v)) => self.levels[lamp(path)?] = v,
            _ => return Err(MethodError::failed("not writable")),
        }
        Ok(())
    }
}

/// What the test asks the serving thread to do between two calls.
enum Cmd {
    Add(&'static str),
    Remove(&'static str),
    /// The daemon changes `org.ember.Props`'s property itself and announces it.
    Changed(&'static str, u32),
    /// How many heap allocations `process_table` made so far.
    Served,
    Stop,
}

/// What the serving thread answers to a command.
#[derive(Debug, PartialEq)]
enum Out {
    Table(Result<(), TableError>),
    /// `property_changed`: whether it emitted, or its error.
    Emitted(Result<bool, Error>),
    Served(usize),
}

/// Serves a run-time table as `NAME`: the manager, `lamp0`, and the fallback
/// `/org/ember/Dyn`; adds and removes lamps on command, emitting `InterfacesAdded` and
/// `InterfacesRemoved`; answers each command with the table's verdict and the heap
/// allocations of the change and its signal.
fn serve_table(address: String) -> Server {
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (res_tx, res_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut c: Box<Connection> = Box::new(Connection::connect(&address).unwrap());
        let mut table: ObjectTable<'static, 5> = ObjectTable::new();
        table.add(Object { path: MANAGER, interfaces: MANAGER_IFACES }).unwrap();
        table.add(Object { path: LAMPS[0], interfaces: LAMP }).unwrap();
        table.add_fallback(Object { path: "/org/ember/Dyn", interfaces: DYN }).unwrap();
        table.add(Object { path: PROPS, interfaces: PROPS_IFACES }).unwrap();
        table.describe(PROPS_DESC);
        let mut svc = Lamps { levels: [10, 11, 12, 13], level: 1, mode: "normal".try_into().unwrap(), quiet: 0 };
        assert_eq!(c.request_name(NAME, 0, T), Ok(RequestNameReply::PrimaryOwner));
        ready_tx.send(()).unwrap();
        let mut served = 0;
        loop {
            served += counting::allocations(|| match c.process_table(&table, &mut svc, Duration::from_millis(10)) {
                Ok(_) | Err(Error::TimedOut) => {}
                Err(e) => panic!("{e}"),
            });
            let Ok(cmd) = cmd_rx.try_recv() else { continue };
            let mut verdict = Out::Table(Ok(()));
            let allocs = counting::allocations(|| {
                verdict = match cmd {
                    Cmd::Add(path) => Out::Table(table.add(Object { path, interfaces: LAMP }).map(|()| {
                        c.emit_interfaces_added(MANAGER, table.get(path).unwrap(), &mut svc).unwrap();
                    })),
                    Cmd::Remove(path) => Out::Table(table.remove(path).map(|o| {
                        let mut names = [""; 4];
                        o.interfaces.iter().zip(&mut names).for_each(|(i, n)| *n = i.name);
                        c.emit_interfaces_removed(MANAGER, path, &names[..o.interfaces.len()]).unwrap();
                    })),
                    Cmd::Changed(property, v) => {
                        svc.level = v;
                        Out::Emitted(
                            c.property_changed(&table, PROPS, "org.ember.Props", property, &mut svc)
                                .map(|s| s.is_some()),
                        )
                    }
                    Cmd::Served => Out::Served(served),
                    Cmd::Stop => return,
                };
            });
            if matches!(cmd, Cmd::Stop) {
                return;
            }
            res_tx.send((verdict, allocs)).unwrap();
        }
    });
    ready_rx.recv_timeout(T).unwrap();
    Server { cmd: cmd_tx, res: res_rx, thread: Some(thread) }
}

/// The serving thread of [`serve_table`], stopped and joined on drop (before the bus).
struct Server {
    cmd: mpsc::Sender<Cmd>,
    res: mpsc::Receiver<(Out, usize)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Stop);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.unwrap();
            }
        }
    }
}

/// `gdbus monitor` on `NAME`: its lines, one by one.
fn monitor(address: &str) -> (KillOnDrop, mpsc::Receiver<String>) {
    common::need_tool("gdbus");
    let mut child = Command::new("gdbus")
        .args(["monitor", "--address", address, "--dest", NAME])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (KillOnDrop(child), rx)
}

/// Waits for a line of `lines` containing `what`.
fn expect_line(lines: &mpsc::Receiver<String>, what: &str) -> String {
    let end = Instant::now() + T;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(what) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no line with {what}");
}

/// The manager answers `gdbus call ... GetManagedObjects` with every object below it and
/// its properties read through the service; objects added and removed while serving are
/// announced by `InterfacesAdded` / `InterfacesRemoved`, seen by `gdbus monitor`, and show
/// in the next `GetManagedObjects` and in the introspection data. Adding and removing,
/// the signals included, allocate nothing.
fn object_manager_seen_by_gdbus() {
    let d = Daemon::start();
    let server = serve_table(d.address.clone());
    let (cmd, res) = (&server.cmd, &server.res);
    let (_monitor, lines) = monitor(&d.address);
    // gdbus monitor prints a line once it watches the name's owner.
    expect_line(&lines, "owned by");
    let get = || gdbus_call(&d.address, MANAGER, "org.freedesktop.DBus.ObjectManager.GetManagedObjects", &[]);
    let (ok, text) = get();
    assert!(ok, "{text}");
    assert_eq!(
        text,
        "({objectpath '/org/ember/Mgr/lamp0': {'org.ember.Lamp': {'Level': <uint32 10>, 'Name': <'lamp0'>}}},)"
    );

    cmd.send(Cmd::Add(LAMPS[1])).unwrap();
    assert_eq!(res.recv_timeout(T).unwrap(), (Out::Table(Ok(())), 0));
    let added = expect_line(&lines, "InterfacesAdded");
    assert!(
        added.contains(
            "/org/ember/Mgr: org.freedesktop.DBus.ObjectManager.InterfacesAdded (objectpath '/org/ember/Mgr/lamp1', {'org.ember.Lamp': {'Level': <uint32 11>, 'Name': <'lamp1'>}})"
        ),
        "{added}"
    );
    cmd.send(Cmd::Add(LAMPS[1])).unwrap();
    assert_eq!(res.recv_timeout(T).unwrap().0, Out::Table(Err(TableError::Duplicate)));
    cmd.send(Cmd::Add(LAMPS[2])).unwrap();
    assert_eq!(res.recv_timeout(T).unwrap().0, Out::Table(Err(TableError::Full)));

    cmd.send(Cmd::Remove(LAMPS[0])).unwrap();
    assert_eq!(res.recv_timeout(T).unwrap(), (Out::Table(Ok(())), 0));
    let removed = expect_line(&lines, "InterfacesRemoved");
    assert!(
        removed.contains(
            "/org/ember/Mgr: org.freedesktop.DBus.ObjectManager.InterfacesRemoved (objectpath '/org/ember/Mgr/lamp0', ['org.ember.Lamp'])"
        ),
        "{removed}"
    );
    cmd.send(Cmd::Remove(LAMPS[0])).unwrap();
    assert_eq!(res.recv_timeout(T).unwrap().0, Out::Table(Err(TableError::NotFound)));

    let (ok, text) = get();
    assert!(ok, "{text}");
    assert_eq!(
        text,
        "({objectpath '/org/ember/Mgr/lamp1': {'org.ember.Lamp': {'Level': <uint32 11>, 'Name': <'lamp1'>}}},)"
    );
    // The removed object is gone; the added one is served.
    let (ok, text) =
        gdbus_call(&d.address, LAMPS[0], "org.freedesktop.DBus.Properties.Get", &["org.ember.Lamp", "Level"]);
    assert!(!ok && text.contains("UnknownObject"), "{text}");
    let (ok, text) =
        gdbus_call(&d.address, LAMPS[1], "org.freedesktop.DBus.Properties.Get", &["org.ember.Lamp", "Level"]);
    assert_eq!((ok, text.as_str()), (true, "(<uint32 11>,)"));
    cmd.send(Cmd::Served).unwrap();
    assert_eq!(res.recv_timeout(T).unwrap().0, Out::Served(0), "process_table allocated");
    // Introspection: the manager's interface and its one child now.
    let out = Command::new("gdbus")
        .args(["introspect", "--address", &d.address, "--dest", NAME, "--object-path", MANAGER, "--xml"])
        .output()
        .unwrap();
    let xml = String::from_utf8_lossy(&out.stdout);
    assert!(xml.contains("<interface name=\"org.freedesktop.DBus.ObjectManager\">"), "{xml}");
    assert!(xml.contains("<signal name=\"InterfacesAdded\">"), "{xml}");
    assert!(xml.contains("<node name=\"lamp1\"/>") && !xml.contains("lamp0"), "{xml}");
}

/// Runs `busctl --address <address> args...`; returns (success, stdout or stderr).
fn busctl(address: &str, args: &[&str]) -> (bool, String) {
    common::need_tool("busctl");
    let out = Command::new("busctl")
        .arg(format!("--address={address}"))
        .args(args)
        .output()
        .expect("busctl (from Debian's systemd package, installed by cargo xtask test)");
    let text = if out.status.success() { &out.stdout } else { &out.stderr };
    (out.status.success(), String::from_utf8_lossy(text).trim().to_string())
}

/// The same services seen by sd-bus's `busctl`, a second independent peer: the manager's
/// `GetManagedObjects` (as busctl prints the marshalled reply), the object tree it builds
/// by introspecting from `/`, its view of an interface's introspection data, a property
/// read, and a property set read back.
fn object_manager_seen_by_busctl() {
    let d = Daemon::start();
    let _server = serve_table(d.address.clone());
    let (ok, text) =
        busctl(&d.address, &["call", NAME, MANAGER, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"]);
    assert!(ok, "{text}");
    assert_eq!(text, r#"a{oa{sa{sv}}} 1 "/org/ember/Mgr/lamp0" 1 "org.ember.Lamp" 2 "Level" u 10 "Name" s "lamp0""#);
    let (ok, text) = busctl(&d.address, &["tree", "--list", NAME]);
    assert!(ok, "{text}");
    for path in ["/org/ember/Mgr", "/org/ember/Mgr/lamp0", PROPS] {
        assert!(text.lines().any(|l| l.trim() == path), "{path} not in:\n{text}");
    }
    let (ok, text) = busctl(&d.address, &["get-property", NAME, LAMPS[0], "org.ember.Lamp", "Level"]);
    assert_eq!((ok, text.as_str()), (true, "u 10"));
    let (ok, text) = busctl(&d.address, &["introspect", NAME, PROPS, "org.ember.Props"]);
    assert!(ok, "{text}");
    assert!(text.lines().any(|l| l.starts_with(".Dim ") && l.contains("method") && l.contains(" u ")), "{text}");
    let (ok, text) = busctl(&d.address, &["set-property", NAME, PROPS, "org.ember.Props", "Level", "u", "7"]);
    assert!(ok, "{text}");
    let (ok, text) = busctl(&d.address, &["get-property", NAME, PROPS, "org.ember.Props", "Level"]);
    assert_eq!((ok, text.as_str()), (true, "u 7"));
}

/// A fallback object answers for every path below its own: the handler and the property
/// getter see the path called; introspection below it shows its interfaces; a path beside
/// it is still an unknown object.
fn fallback_object_answers_for_its_subtree() {
    let d = Daemon::start();
    let _server = serve_table(d.address.clone());
    for path in ["/org/ember/Dyn", "/org/ember/Dyn/a", "/org/ember/Dyn/a/b/c"] {
        let (ok, text) = gdbus_call(&d.address, path, "org.ember.Dyn.Where", &[]);
        assert_eq!((ok, text), (true, format!("('{path}',)")));
        let (ok, text) =
            gdbus_call(&d.address, path, "org.freedesktop.DBus.Properties.Get", &["org.ember.Dyn", "Path"]);
        assert_eq!((ok, text), (true, format!("(<'{path}'>,)")));
    }
    let out = Command::new("gdbus")
        .args(["introspect", "--address", &d.address, "--dest", NAME, "--object-path", "/org/ember/Dyn/x/y"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("interface org.ember.Dyn {") && text.contains("Where("), "{text}");
    let (ok, text) = gdbus_call(&d.address, "/org/ember/Dynamo", "org.ember.Dyn.Where", &[]);
    assert!(!ok && text.contains("UnknownObject"), "{text}");
    // The root lists the registered children once each.
    let mut c = connect(&d);
    let (xml,): (&str,) =
        c.call_typed(NAME, "/org/ember", Some("org.freedesktop.DBus.Introspectable"), "Introspect", &(), T).unwrap();
    assert!(xml.contains("<node name=\"Mgr\"/>") && xml.contains("<node name=\"Dyn\"/>"), "{xml}");
    assert!(xml.contains("<node name=\"Props\"/>"), "{xml}");
    assert_eq!(xml.matches("<node name=").count(), 3, "{xml}");
}

// ---- PropertiesChanged, argument names and annotations -----------------------------------

/// `Properties.Set` through `process_table` announces the change as the property's
/// `EmitsChangedSignal` says (the value; the name invalidated; nothing), and so does the
/// daemon-side helper (nothing for a `const` property, an error for an unknown one);
/// `gdbus monitor` sees the signals. The helper allocates nothing.
fn properties_changed_seen_by_gdbus() {
    let d = Daemon::start();
    let server = serve_table(d.address.clone());
    let (monitor, lines) = monitor(&d.address);
    expect_line(&lines, "owned by");
    let set = |p: &str, v: &str| {
        let (ok, text) =
            gdbus_call(&d.address, PROPS, "org.freedesktop.DBus.Properties.Set", &["org.ember.Props", p, v]);
        assert!(ok, "{text}");
    };
    let changed = |what: &str| {
        let line = expect_line(&lines, "PropertiesChanged");
        assert!(
            line.contains(&format!("/org/ember/Props: org.freedesktop.DBus.Properties.PropertiesChanged {what}")),
            "{line}"
        );
    };
    set("Level", "<uint32 5>");
    changed("('org.ember.Props', {'Level': <uint32 5>}, @as [])");
    set("Mode", "<'eco'>");
    changed("('org.ember.Props', @a{sv} {}, ['Mode'])");
    // Not announced: the next signal is the daemon's own change of Level.
    set("Quiet", "<uint32 1>");
    server.cmd.send(Cmd::Changed("Level", 9)).unwrap();
    assert_eq!(server.res.recv_timeout(T).unwrap(), (Out::Emitted(Ok(true)), 0));
    changed("('org.ember.Props', {'Level': <uint32 9>}, @as [])");
    server.cmd.send(Cmd::Changed("Serial", 9)).unwrap();
    assert_eq!(server.res.recv_timeout(T).unwrap().0, Out::Emitted(Ok(false)));
    server.cmd.send(Cmd::Changed("Nope", 9)).unwrap();
    assert_eq!(server.res.recv_timeout(T).unwrap().0, Out::Emitted(Err(Error::InvalidName)));
    // The values were set.
    let (_, text) = gdbus_call(&d.address, PROPS, "org.freedesktop.DBus.Properties.GetAll", &["org.ember.Props"]);
    assert_eq!(text, "({'Level': <uint32 9>, 'Mode': <'eco'>, 'Quiet': <uint32 1>, 'Serial': <'E-1'>},)");
    server.cmd.send(Cmd::Served).unwrap();
    assert_eq!(server.res.recv_timeout(T).unwrap().0, Out::Served(0), "Set with PropertiesChanged allocated");
    drop(monitor);
    // Quiet's change was never announced.
    while let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) {
        assert!(!l.contains("PropertiesChanged"), "{l}");
    }
}

/// Argument names and annotations (on methods, properties and signals, values escaped)
/// in the introspection XML, as `gdbus introspect` reads them.
fn names_and_annotations_in_introspection() {
    common::need_tool("gdbus");
    let d = Daemon::start();
    let _server = serve_table(d.address.clone());
    let out = Command::new("gdbus")
        .args(["introspect", "--address", &d.address, "--dest", NAME, "--object-path", PROPS])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let props = &text[text.find("interface org.ember.Props {").expect(&text)..];
    for want in [
        "Dim(in  u percent,\n          out u level);",
        "@org.freedesktop.DBus.Deprecated(\"true\")\n      Old();",
        "@org.ember.Note(\"a<b & \"c\"\")\n      Dimmed(u from,\n             u to);",
        "@org.freedesktop.DBus.Property.EmitsChangedSignal(\"invalidates\")\n      readwrite s Mode",
        "@org.freedesktop.DBus.Property.EmitsChangedSignal(\"const\")\n      readonly s Serial",
        "readwrite u Level",
    ] {
        assert!(props.contains(want), "{want} not in:\n{props}");
    }
    // The raw XML, escaped.
    let mut c = connect(&d);
    let (xml,): (&str,) =
        c.call_typed(NAME, PROPS, Some("org.freedesktop.DBus.Introspectable"), "Introspect", &(), T).unwrap();
    assert!(xml.contains("<arg type=\"u\" name=\"percent\" direction=\"in\"/>"), "{xml}");
    assert!(xml.contains("<annotation name=\"org.ember.Note\" value=\"a&lt;b &amp; &quot;c&quot;\"/>"), "{xml}");
}

// ---- Typed properties --------------------------------------------------------------------

/// `Property::typed`, `property_value` and `property_from`: a property's value written and
/// read back through the typed layer, and a value of another type refused as `InvalidArgs`.
fn typed_property_helpers() {
    use ember_core::dbus::Reader;
    const LEVEL: Property<'static> = Property::typed::<u32>("Level", true);
    const TAGS: Property<'static> = Property::typed::<[&str]>("Tags", false);
    assert_eq!((LEVEL.signature, LEVEL.writable), ("u", true));
    assert_eq!(TAGS.signature, "as");
    let mut buf = [0u8; 128];
    let mut w = Writer::new(&mut buf);
    object::property_value(&mut w, &42u32).unwrap();
    let at = w.position();
    object::property_value(&mut w, &["warm", "dim"][..]).unwrap();
    let (end, endian) = (w.position(), w.endian());
    let mut r = Reader::new(&buf[..end], endian);
    let level = r.value(Signature::new("u").unwrap()).unwrap();
    assert_eq!(r.position(), at);
    let tags = r.value(Signature::new("as").unwrap()).unwrap();
    assert_eq!(object::property_from::<u32>(level.clone()).unwrap(), 42);
    let e = object::property_from::<&str>(level).unwrap_err();
    assert_eq!(e.name, object::names::INVALID_ARGS);
    let a = object::property_from::<ember_core::dbus::value::Array<'_>>(tags.clone()).unwrap();
    let got: Vec<&str> = a.map(|v| <&str>::try_from(v.unwrap()).unwrap()).collect();
    assert_eq!(got, ["warm", "dim"]);
    assert_eq!(object::property_from::<u32>(tags).unwrap_err().name, object::names::INVALID_ARGS);
    // A writer too small: Failed, not a panic.
    let mut small = [0u8; 4];
    let mut w = Writer::new(&mut small);
    assert_eq!(object::property_value(&mut w, "longer than four").unwrap_err().name, object::names::FAILED);
}

fn main() {
    common::main(
        &[
            (
                "slow_deferred_handler_does_not_delay_a_second_caller",
                slow_deferred_handler_does_not_delay_a_second_caller,
            ),
            ("object_manager_seen_by_gdbus", object_manager_seen_by_gdbus),
            ("object_manager_seen_by_busctl", object_manager_seen_by_busctl),
            ("fallback_object_answers_for_its_subtree", fallback_object_answers_for_its_subtree),
            ("properties_changed_seen_by_gdbus", properties_changed_seen_by_gdbus),
            ("names_and_annotations_in_introspection", names_and_annotations_in_introspection),
            ("typed_property_helpers", typed_property_helpers),
        ],
        |_| {},
    );
}
