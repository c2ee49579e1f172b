//! Typed D-Bus calls, replies, signals and service handlers against the real thing: a
//! private `dbus-daemon` per test, a GDBus service written in Python (`python3-gi`), and
//! the `gdbus` command as a caller of Ember's typed service. Values are compared one by
//! one: echoed back by GDBus, printed by GLib (`GVariant.print`), and printed by `gdbus`.
//!
//! Its own `main` (`harness = false`); `cargo xtask test` installs `dbus-daemon` and
//! `libglib2.0-bin` when missing.

mod common;
use common::dbus_daemon::Daemon;
use ember_test_support as counting;

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ember_core::dbus::typed::{Dict, DictView, ToVariant};
use ember_core::dbus::value::Values;
use ember_core::dbus::{ArrayView, DbusStruct, Fd, ObjectPath, Signature, Value, Var, Variant, Writer};
use ember_linux::Error;
use ember_linux::dbus::object::{self, Call, Interface, Method, MethodError, Object, Service};
use ember_linux::dbus::{CallError, Connection, Processed, RequestNameReply};

const T: Duration = Duration::from_secs(5);

/// A D-Bus struct `(sd(ii))`, borrowing its name from the message.
#[derive(Debug, Clone, Copy, PartialEq, DbusStruct)]
struct Reading<'a> {
    sensor: &'a str,
    value: f64,
    at: Point,
}

/// `(ii)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DbusStruct)]
struct Point(i32, i32);

// ---- Ember calls a GDBus service ---------------------------------------------------------

/// A GDBus service: `Echo*` methods answer with their arguments, `Print(v)` with the GLib
/// text of the value inside the variant, `SwapFd(h)` writes into the fd it is given and
/// answers with the read end of a pipe it wrote into, `Emit()` emits the signal `Typed`
/// (`s(sd(ii))a{sv}`) before it answers.
const GDBUS_TYPED: &str = r#"
import os, sys
from gi.repository import Gio, GLib
address = sys.argv[1]
IFACE = "org.ember.Typed"
methods = {
    "EchoInts": ("ybnqiuxt", "ybnqiuxt"),
    "EchoMore": ("dsog", "dsog"),
    "EchoStruct": ("(sd(ii))a(sd(ii))", "(sd(ii))a(sd(ii))"),
    "EchoArrays": ("aiasayaaya(iy)", "aiasayaaya(iy)"),
    "EchoDicts": ("a{sv}a{ua{si}}", "a{sv}a{ua{si}}"),
    "EchoVariants": ("vvav", "vvav"),
    "Print": ("v", "s"),
    "SwapFd": ("h", "h"),
    "Emit": ("", ""),
}
def end(sig, i):
    if sig[i] == "a":
        return end(sig, i + 1)
    if sig[i] in "({":
        depth = 0
        while True:
            depth += {"(": 1, "{": 1, ")": -1, "}": -1}.get(sig[i], 0)
            i += 1
            if depth == 0:
                return i
    return i + 1
def args(sig, direction):
    out, i = "", 0
    while i < len(sig):
        j = end(sig, i)
        out += '<arg type="%s" direction="%s"/>' % (sig[i:j], direction)
        i = j
    return out
xml = '<node><interface name="%s">' % IFACE
for name, (i, o) in methods.items():
    xml += '<method name="%s">%s%s</method>' % (name, args(i, "in"), args(o, "out"))
xml += '<signal name="Typed"><arg type="s"/><arg type="(sd(ii))"/><arg type="a{sv}"/></signal></interface></node>'
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
def call(conn, sender, path, iface, method, params, inv):
    if method == "Print":
        inv.return_value(GLib.Variant("(s)", (params.get_child_value(0).get_variant().print_(True),)))
    elif method == "SwapFd":
        fd = inv.get_message().get_unix_fd_list().get(params.get_child_value(0).get_handle())
        os.write(fd, b"written by gdbus")
        os.close(fd)
        r, w = os.pipe()
        os.write(w, b"a pipe from gdbus")
        os.close(w)
        out = Gio.UnixFDList.new()
        i = out.append(r)
        os.close(r)
        inv.return_value_with_unix_fd_list(GLib.Variant("(h)", (i,)), out)
    elif method == "Emit":
        body = ("hello", ("probe", 2.5, (3, -4)), {"n": GLib.Variant("u", 7), "s": GLib.Variant("s", "x")})
        conn.emit_signal(None, "/org/ember/Typed", IFACE, "Typed", GLib.Variant("(s(sd(ii))a{sv})", body))
        inv.return_value(None)
    else:
        inv.return_value(params)
conn.register_object("/org/ember/Typed", Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0], call, None, None)
Gio.bus_own_name_on_connection(conn, "org.ember.Typed", 0, lambda *a: print("ready", flush=True), None)
GLib.MainLoop().run()
"#;

/// A child process killed (and reaped) on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the GDBus service on `d`'s bus.
fn gdbus_service(d: &Daemon) -> KillOnDrop {
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python).args(["-c", "import gi"]).output().is_ok_and(|o| o.status.success());
    common::skip_unless(has_gi, "needs python3-gi (/usr/bin/python3 with gi)");
    let path = format!("{}/typed.py", d.dir);
    std::fs::write(&path, GDBUS_TYPED).unwrap();
    let mut child = Command::new(python).args([&path, &d.address]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    KillOnDrop(child)
}

const DEST: &str = "org.ember.Typed";
const PATH: &str = "/org/ember/Typed";
const IFACE: Option<&str> = Some("org.ember.Typed");

fn connect(d: &Daemon) -> Box<Connection> {
    Box::new(Connection::connect(&d.address).unwrap())
}

/// Every basic type, structs, arrays, dicts and variants, sent by Ember's typed calls,
/// echoed by GDBus and read back typed, compared value by value (floats bit by bit).
fn typed_calls_echoed_by_gdbus() {
    let d = Daemon::start();
    let _service = gdbus_service(&d);
    let mut c = connect(&d);

    type Ints = (u8, bool, i16, u16, i32, u32, i64, u64);
    for ints in [
        (0u8, false, 0i16, 0u16, 0i32, 0u32, 0i64, 0u64),
        (u8::MAX, true, i16::MIN, u16::MAX, i32::MIN, u32::MAX, i64::MIN, u64::MAX),
        (7, true, i16::MAX, 1, i32::MAX, 1 << 31, i64::MAX, 1 << 63),
    ] {
        let back: Ints = c.call_typed(DEST, PATH, IFACE, "EchoInts", &ints, T).unwrap();
        assert_eq!(back, ints);
    }

    for (x, s, p, g) in [
        (-0.0f64, "", "/", ""),
        (f64::MAX, "ünïcödé ✓", "/org/ember/a_b/C9", "a{sv}(iias)"),
        (f64::NAN, "tab\tand newline\n", "/x", "ybnqiuxtdsoghv"),
        (f64::MIN_POSITIVE, "x", "/a", "aa{sa(ii)}"),
    ] {
        let args = (x, s, ObjectPath::new(p).unwrap(), Signature::new(g).unwrap());
        let (bx, bs, bp, bg): (f64, &str, ObjectPath<'_>, Signature<'_>) =
            c.call_typed(DEST, PATH, IFACE, "EchoMore", &args, T).unwrap();
        assert_eq!((bx.to_bits(), bs, bp.as_str(), bg.as_str()), (x.to_bits(), s, p, g));
    }

    let one = Reading { sensor: "cpu", value: 318.15, at: Point(1, -2) };
    let many = [one, Reading { sensor: "", value: -1.5, at: Point(i32::MAX, i32::MIN) }];
    for list in [&many[..], &[][..]] {
        let (r, back): (Reading<'_>, ArrayView<'_, Reading<'_>>) =
            c.call_typed(DEST, PATH, IFACE, "EchoStruct", &(one, list), T).unwrap();
        assert_eq!(r, one);
        assert_eq!(back.map(Result::unwrap).collect::<Vec<_>>(), list);
    }

    {
        // (heapless::Vec has a Drop: its borrow of the connection ends with this block.)
        let ints = [1, -2, i32::MAX];
        let strs = ["a", "", "ß"];
        let blobs: [&[u8]; 3] = [b"", b"\0\xff", &[7; 300]];
        let pairs = [(5, 0u8), (-5, 255)];
        type Arrays<'a> = (
            ArrayView<'a, i32>,
            heapless::Vec<&'a str, 4>,
            &'a [u8],
            ArrayView<'a, &'a [u8]>,
            ArrayView<'a, (i32, u8)>,
        );
        let (ai, astr, ay, aay, apairs): Arrays<'_> = c
            .call_typed(
                DEST,
                PATH,
                IFACE,
                "EchoArrays",
                &(&ints[..], &strs[..], &b"bytes"[..], &blobs[..], &pairs[..]),
                T,
            )
            .unwrap();
        assert_eq!(ai.map(Result::unwrap).collect::<Vec<_>>(), ints);
        assert_eq!(&astr[..], strs);
        assert_eq!(ay, b"bytes");
        assert_eq!(aay.map(Result::unwrap).collect::<Vec<_>>(), blobs);
        assert_eq!(apairs.map(Result::unwrap).collect::<Vec<_>>(), pairs);
    }

    let props: [(&str, &dyn ToVariant); 4] =
        [("name", &"probe"), ("level", &7u32), ("at", &Point(3, 4)), ("tags", &["a", "b"])];
    let inner_a = [("x", 1), ("y", 2)];
    let nested = [(1u32, Dict(&inner_a[..])), (2, Dict(&[][..]))];
    type Dicts<'a> = (DictView<'a, &'a str, Variant<'a>>, DictView<'a, u32, DictView<'a, &'a str, i32>>);
    let (back, nested_back): Dicts<'_> =
        c.call_typed(DEST, PATH, IFACE, "EchoDicts", &(Dict(&props[..]), Dict(&nested[..])), T).unwrap();
    let entries: Vec<(&str, Variant<'_>)> = back.clone().map(Result::unwrap).collect();
    assert_eq!(entries.iter().map(|e| e.0).collect::<Vec<_>>(), ["name", "level", "at", "tags"]);
    assert_eq!(back.get(&"name").unwrap().unwrap().get::<&str>(), Ok("probe"));
    assert_eq!(back.get(&"level").unwrap().unwrap().get::<u32>(), Ok(7));
    assert_eq!(back.get(&"at").unwrap().unwrap().get::<Point>(), Ok(Point(3, 4)));
    let tags = back.get(&"tags").unwrap().unwrap().get::<ArrayView<'_, &str>>().unwrap();
    assert_eq!(tags.map(Result::unwrap).collect::<Vec<_>>(), ["a", "b"]);
    assert!(back.get(&"level").unwrap().unwrap().get::<i32>().is_err(), "a u32 is not an i32");
    let nested_back: Vec<(u32, Vec<(&str, i32)>)> =
        nested_back.map(|e| e.map(|(k, v)| (k, v.map(Result::unwrap).collect())).unwrap()).collect();
    assert_eq!(nested_back, [(1, vec![("x", 1), ("y", 2)]), (2, vec![])]);

    let list: [&dyn ToVariant; 3] = [&1u8, &"two", &Var(3i64)];
    let (a, b, av): (Variant<'_>, Variant<'_>, ArrayView<'_, Variant<'_>>) =
        c.call_typed(DEST, PATH, IFACE, "EchoVariants", &(Var(one), Var(Var(-1i16)), &list[..]), T).unwrap();
    assert_eq!(a.get::<Reading<'_>>(), Ok(one));
    assert_eq!(b.get::<Variant<'_>>().unwrap().get::<i16>(), Ok(-1));
    let av: Vec<Variant<'_>> = av.map(Result::unwrap).collect();
    assert_eq!((av[0].get::<u8>(), av[1].get::<&str>()), (Ok(1), Ok("two")));
    assert_eq!(av[2].get::<Variant<'_>>().unwrap().get::<i64>(), Ok(3));

    // A reply of another type: a typed error naming both signatures, the connection fine.
    match c.call_typed::<_, (i32,)>(DEST, PATH, IFACE, "EchoInts", &(0u8, false, 0i16, 0u16, 0i32, 0u32, 0i64, 0u64), T)
    {
        Err(CallError::SignatureMismatch { expected: "i", found: "ybnqiuxt" }) => {}
        other => panic!("{other:?}"),
    }
    // A remote error stays a remote error.
    match c.call_typed::<_, ()>(DEST, PATH, IFACE, "EchoInts", &(1u8,), T) {
        Err(CallError::Remote { name, .. }) => assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs"),
        other => panic!("{other:?}"),
    }
}

/// What GLib reads from Ember's typed values: each value sent in a variant, printed by
/// `GVariant.print` and compared with the text GLib gives the same value.
fn glib_reads_typed_values() {
    let d = Daemon::start();
    let _service = gdbus_service(&d);
    let mut c = connect(&d);
    let props: [(&str, &dyn ToVariant); 2] = [("a", &1u32), ("b", &"x")];
    let empty: [u32; 0] = [];
    let cases: [(&dyn ToVariant, &str); 22] = [
        (&1u8, "byte 0x01"),
        (&true, "true"),
        (&-2i16, "int16 -2"),
        (&65535u16, "uint16 65535"),
        (&42i32, "42"),
        (&7u32, "uint32 7"),
        (&-5i64, "int64 -5"),
        (&5u64, "uint64 5"),
        (&1.5f64, "1.5"),
        (&"hi", "'hi'"),
        (&ObjectPath::new("/a/b").unwrap(), "objectpath '/a/b'"),
        (&Signature::new("a{sv}").unwrap(), "signature 'a{sv}'"),
        (&(1i32, "x"), "(1, 'x')"),
        (&Point(3, -4), "(3, -4)"),
        (&Reading { sensor: "s", value: 0.5, at: Point(1, 2) }, "('s', 0.5, (1, 2))"),
        (&[1i32, 2], "[1, 2]"),
        (&empty, "@au []"),
        (&&b"ab"[..], "[byte 0x61, 0x62]"),
        (&Dict(&props[..]), "{'a': <uint32 1>, 'b': <'x'>}"),
        (&Dict(&[(1u8, Point(1, 1))][..]), "{byte 0x01: (1, 1)}"),
        (&Var(1i32), "<1>"),
        (&[Var("a")], "[<'a'>]"),
    ];
    for (value, glib) in cases {
        let args: (&dyn ToVariant,) = (value,);
        let (text,): (&str,) = c.call_typed(DEST, PATH, IFACE, "Print", &args, T).unwrap();
        assert_eq!(text, glib, "{}", value.variant_signature());
    }
}

/// Fds both ways: Ember's typed call carries a pipe's write end (GDBus writes into it),
/// and GDBus's typed reply carries a pipe's read end (Ember reads from it).
fn typed_fds_both_ways() {
    let d = Daemon::start();
    let _service = gdbus_service(&d);
    let mut c = connect(&d);
    let (r, w) = rustix::pipe::pipe().unwrap();
    let (Fd(i),): (Fd,) = c.call_typed_with_fds(DEST, PATH, IFACE, "SwapFd", &(Fd(0),), &[w.as_fd()], T).unwrap();
    drop(w);
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"written by gdbus");
    let theirs = c.take_fd(i).expect("the reply's fd");
    let n = rustix::io::read(&theirs, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"a pipe from gdbus");
    // An fd index the message does not carry is refused before sending.
    assert_eq!(
        c.call_typed::<_, (Fd,)>(DEST, PATH, IFACE, "SwapFd", &(Fd(0),), T).err(),
        Some(CallError::Local(Error::Dbus(ember_core::dbus::DbusError::BadFdIndex)))
    );
}

/// A typed signal from GDBus, queued while a typed call waits for its reply, read typed.
fn typed_signal_from_gdbus() {
    let d = Daemon::start();
    let _service = gdbus_service(&d);
    let mut c = connect(&d);
    c.add_match("type='signal',interface='org.ember.Typed'", T).unwrap();
    let () = c.call_typed(DEST, PATH, IFACE, "Emit", &(), T).unwrap();
    let m = loop {
        let m = c.recv(T).unwrap();
        if m.member() == Some("Typed") {
            break m;
        }
    };
    let (s, r, props): (&str, Reading<'_>, DictView<'_, &str, Variant<'_>>) = m.body_as().unwrap();
    assert_eq!((s, r), ("hello", Reading { sensor: "probe", value: 2.5, at: Point(3, -4) }));
    assert_eq!(props.get(&"n").unwrap().unwrap().get::<u32>(), Ok(7));
    assert_eq!(props.get(&"s").unwrap().unwrap().get::<&str>(), Ok("x"));
    assert_eq!(m.body_as::<(&str,)>().err(), Some(ember_core::dbus::DbusError::SignatureMismatch));
}

// ---- GDBus (and Ember) call Ember's typed service ----------------------------------------

static OBJECTS: &[Object<'static>] = &[Object {
    path: "/org/ember/TypedService",
    interfaces: &[Interface {
        name: "org.ember.TypedService",
        methods: &[
            Method::typed::<(i32, i32), (i32,)>("Add"),
            Method::typed::<(u8, bool, i16, u16, i32, u32, i64, u64), (u8, bool, i16, u16, i32, u32, i64, u64)>(
                "EchoInts",
            ),
            Method::typed::<(f64, &str, ObjectPath<'static>, Signature<'static>), (heapless::String<128>,)>("Describe"),
            Method::typed::<(Reading<'static>,), (Dict<'static, &str, &dyn ToVariant>,)>("Explode"),
            Method::typed::<(DictView<'static, &str, i32>,), (i32,)>("Sum"),
            Method::typed::<(Variant<'static>,), (&str, Var<u64>)>("Kind"),
            Method::typed::<(ArrayView<'static, (i32, &str)>,), (heapless::Vec<(&str, i32), 8>,)>("Swap"),
            Method::typed::<(Fd, &str), (u32,)>("Write"),
        ],
        properties: &[],
        signals: &[],
    }],
}];

/// Ember's typed service: each handler takes typed arguments and returns typed results.
struct Typed;

impl Service for Typed {
    fn call(
        &mut self,
        call: &Call<'_>,
        args: Values<'_>,
        fds: &mut [Option<std::os::fd::OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        match call.member {
            "Add" => object::handle(args, reply, |(a, b): (i32, i32)| Ok((a.wrapping_add(b),))),
            "EchoInts" => object::handle(args, reply, |v: (u8, bool, i16, u16, i32, u32, i64, u64)| Ok(v)),
            "Describe" => object::handle(args, reply, |(x, s, p, g): (f64, &str, ObjectPath<'_>, Signature<'_>)| {
                let mut out = heapless::String::<128>::new();
                use std::fmt::Write as _;
                write!(out, "{x:?}|{s}|{p}|{g}").map_err(|_| MethodError::failed("too long"))?;
                Ok((out,))
            }),
            // Results that borrow the handler's locals: arguments and results apart.
            "Explode" => {
                let (r,): (Reading<'_>,) = object::args(args)?;
                let (x, y) = (r.at.0, r.at.1);
                let props: [(&str, &dyn ToVariant); 4] =
                    [("sensor", &r.sensor), ("value", &r.value), ("x", &x), ("y", &y)];
                object::results(reply, &(Dict(&props[..]),))
            }
            "Sum" => object::handle(args, reply, |(d,): (DictView<'_, &str, i32>,)| {
                let mut sum = 0i32;
                for e in d {
                    sum = sum.wrapping_add(e.map_err(|_| MethodError::failed("bad entry"))?.1);
                }
                Ok((sum,))
            }),
            "Kind" => object::handle(args, reply, |(v,): (Variant<'_>,)| {
                let n = if let Ok(x) = v.get::<u32>() {
                    x as u64
                } else if let Ok(s) = v.get::<&str>() {
                    s.len() as u64
                } else if let Ok(p) = v.get::<Point>() {
                    (p.0 + p.1) as u64
                } else {
                    return Err(MethodError::from_static("org.ember.Error.Kind", "not u, s or (ii)"));
                };
                Ok((
                    if v.is::<u32>() {
                        "u"
                    } else if v.is::<&str>() {
                        "s"
                    } else {
                        "(ii)"
                    },
                    Var(n),
                ))
            }),
            "Swap" => object::handle(args, reply, |(a,): (ArrayView<'_, (i32, &str)>,)| {
                let mut out = heapless::Vec::<(&str, i32), 8>::new();
                for e in a {
                    let (n, s) = e.map_err(|_| MethodError::failed("bad element"))?;
                    out.push((s, n)).map_err(|_| MethodError::failed("more than 8"))?;
                }
                Ok((out,))
            }),
            "Write" => object::handle(args, reply, |(Fd(i), text): (Fd, &str)| {
                let fd = fds.get_mut(i as usize).and_then(Option::take).ok_or(MethodError::failed("no fd"))?;
                let n = rustix::io::write(&fd, text.as_bytes()).map_err(|_| MethodError::failed("write"))?;
                Ok((n as u32,))
            }),
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

/// Serves `OBJECTS` as `org.ember.TypedService` until `stop` is set; returns how many
/// calls it answered and how many heap allocations its loop made.
fn serve(address: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u32, usize)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut c: Box<Connection> = Box::new(Connection::connect(&address).unwrap());
        assert_eq!(c.request_name("org.ember.TypedService", 0, T), Ok(RequestNameReply::PrimaryOwner));
        ready_tx.send(()).unwrap();
        let mut answered = 0;
        let allocs = counting::allocations(|| {
            while !stop.load(Ordering::Relaxed) {
                match c.process(OBJECTS, &mut Typed, Duration::from_millis(50)) {
                    Ok(Processed::Answered) => answered += 1,
                    Ok(Processed::Message(_)) | Err(Error::TimedOut) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
        (answered, allocs)
    });
    ready_rx.recv_timeout(T).unwrap();
    h
}

/// Runs `gdbus call` on the typed service; returns (success, stdout or stderr).
fn gdbus_call(address: &str, method: &str, args: &[&str]) -> (bool, String) {
    common::need_tool("gdbus");
    let out = Command::new("gdbus")
        .args(["call", "--address", address, "--dest", "org.ember.TypedService"])
        .args(["--object-path", "/org/ember/TypedService", "--method"])
        .arg(format!("org.ember.TypedService.{method}"))
        .arg("--")
        .args(args)
        .output()
        .expect("gdbus (installed by cargo xtask test)");
    let text = if out.status.success() { out.stdout } else { out.stderr };
    (out.status.success(), String::from_utf8_lossy(&text).trim().to_string())
}

/// `gdbus` calls Ember's typed handlers with every basic type, structs, arrays, dicts and
/// variants; what it prints of the replies is compared value by value.
fn gdbus_calls_typed_handlers() {
    let d = Daemon::start();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let a = &d.address;
    let ok = |s: &str| (true, s.to_string());
    assert_eq!(gdbus_call(a, "Add", &["2", "40"]), ok("(42,)"));
    assert_eq!(
        gdbus_call(
            a,
            "EchoInts",
            &[
                "byte 255",
                "true",
                "int16 -32768",
                "uint16 65535",
                "-2147483648",
                "uint32 4294967295",
                "int64 -9223372036854775808",
                "uint64 18446744073709551615"
            ]
        ),
        ok(
            "(byte 0xff, true, int16 -32768, uint16 65535, -2147483648, uint32 4294967295, int64 -9223372036854775808, uint64 18446744073709551615)"
        )
    );
    assert_eq!(
        gdbus_call(a, "Describe", &["-0.25", "'ünï'", "objectpath '/a/b'", "signature 'a{sv}'"]),
        ok("('-0.25|ünï|/a/b|a{sv}',)")
    );
    assert_eq!(
        gdbus_call(a, "Explode", &["('cpu', 1.5, (3, -4))"]),
        ok("({'sensor': <'cpu'>, 'value': <1.5>, 'x': <3>, 'y': <-4>},)")
    );
    assert_eq!(gdbus_call(a, "Sum", &["{'a': 1, 'b': 2, 'c': -10}"]), ok("(-7,)"));
    assert_eq!(gdbus_call(a, "Sum", &["@a{si} {}"]), ok("(0,)"));
    assert_eq!(gdbus_call(a, "Kind", &["<uint32 9>"]), ok("('u', <uint64 9>)"));
    assert_eq!(gdbus_call(a, "Kind", &["<'four'>"]), ok("('s', <uint64 4>)"));
    assert_eq!(gdbus_call(a, "Kind", &["<(5, 6)>"]), ok("('(ii)', <uint64 11>)"));
    let (success, text) = gdbus_call(a, "Kind", &["<int64 1>"]);
    assert!(!success && text.contains("org.ember.Error.Kind"), "{text}");
    assert_eq!(gdbus_call(a, "Swap", &["[(1, 'a'), (2, 'b')]"]), ok("([('a', 1), ('b', 2)],)"));
    let (success, text) = gdbus_call(
        a,
        "Swap",
        &["[(1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e'), (6, 'f'), (7, 'g'), (8, 'h'), (9, 'i')]"],
    );
    assert!(!success && text.contains("more than 8"), "{text}");
    // Arguments of another signature (gdbus checks them against the introspection data
    // first, so an Ember client sends them): the table answers InvalidArgs.
    let mut c = connect(&d);
    let svc = ("org.ember.TypedService", "/org/ember/TypedService", Some("org.ember.TypedService"));
    match c.call(svc.0, svc.1, svc.2, "Add", Signature::new("s").unwrap(), |w| w.str("two"), T) {
        Err(CallError::Remote { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.InvalidArgs");
            assert!(message.contains("(ii)"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    stop.store(true, Ordering::Relaxed);
    let (answered, _) = server.join().unwrap();
    assert!(answered >= 13, "{answered}");
}

/// An Ember client calls the typed `Write(h, s)` with a pipe: the handler gets the fd.
fn typed_handler_takes_an_fd() {
    let d = Daemon::start();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let mut c = connect(&d);
    let (r, w) = rustix::pipe::pipe().unwrap();
    let (n,): (u32,) = c
        .call_typed_with_fds(
            "org.ember.TypedService",
            "/org/ember/TypedService",
            Some("org.ember.TypedService"),
            "Write",
            &(Fd(0), "through the typed handler"),
            &[w.as_fd()],
            T,
        )
        .unwrap();
    drop(w);
    let mut buf = [0u8; 64];
    let got = rustix::io::read(&r, &mut buf).unwrap();
    assert_eq!((n as usize, &buf[..got]), (got, &b"through the typed handler"[..]));
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// A GDBus caller (Python, `python3-gi`) of the typed `Write(h, s)`: it sends a pipe's
/// write end and prints the result and what it then reads from the pipe.
const GDBUS_WRITE_CALLER: &str = r#"
import os, sys
from gi.repository import Gio, GLib
flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
r, w = os.pipe()
fds = Gio.UnixFDList.new()
i = fds.append(w)
os.close(w)
name = "org.ember.TypedService"
args = GLib.Variant("(hs)", (i, "from a GDBus caller"))
reply, _ = conn.call_with_unix_fd_list_sync(name, "/org/ember/TypedService", name, "Write", args,
    GLib.VariantType.new("(u)"), 0, 5000, fds, None)
print(reply.unpack()[0], os.read(r, 100).decode(), flush=True)
"#;

/// GDBus calls Ember's typed handler with an fd: the handler writes into it.
fn gdbus_passes_an_fd_to_a_typed_handler() {
    let python = "/usr/bin/python3";
    let has_gi = Command::new(python).args(["-c", "import gi"]).output().is_ok_and(|o| o.status.success());
    common::skip_unless(has_gi, "needs python3-gi (/usr/bin/python3 with gi)");
    let d = Daemon::start();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let path = format!("{}/write_caller.py", d.dir);
    std::fs::write(&path, GDBUS_WRITE_CALLER).unwrap();
    let out = Command::new(python).args([&path, &d.address]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "19 from a GDBus caller");
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// No heap allocation on typed calls and replies (Ember to Ember's typed service, whose
/// loop is counted too; and to GDBus), on typed signals emitted and received, and on a
/// signal queued while a typed call waits.
fn typed_paths_allocate_nothing() {
    let d = Daemon::start();
    let _service = gdbus_service(&d);
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(d.address.clone(), stop.clone());
    let (mut c, mut peer) = (connect(&d), connect(&d));
    c.add_match("type='signal',interface='org.ember.Typed'", T).unwrap();
    peer.add_match("type='signal',interface='org.ember.Alloc'", T).unwrap();
    let svc = ("org.ember.TypedService", "/org/ember/TypedService", Some("org.ember.TypedService"));
    let entries = [("a", 1), ("b", 2)];
    let n = counting::allocations(|| {
        for i in 0..20i32 {
            let (sum,): (i32,) = c.call_typed(svc.0, svc.1, svc.2, "Add", &(i, 1), T).unwrap();
            assert_eq!(sum, i + 1);
            let (sum,): (i32,) = c.call_typed(svc.0, svc.1, svc.2, "Sum", &(Dict(&entries[..]),), T).unwrap();
            assert_eq!(sum, 3);
            let (kind, n): (&str, Variant<'_>) =
                c.call_typed(svc.0, svc.1, svc.2, "Kind", &(Var(Point(i, 1)),), T).unwrap();
            assert_eq!((kind, n.get::<u64>()), ("(ii)", Ok((i + 1) as u64)));
            let r = Reading { sensor: "cpu", value: 1.0, at: Point(i, 0) };
            let (back, _): (Reading<'_>, ArrayView<'_, Reading<'_>>) =
                c.call_typed(DEST, PATH, IFACE, "EchoStruct", &(r, &[r][..]), T).unwrap();
            assert_eq!(back, r);
            // GDBus emits before it answers: the signal is queued while the call waits.
            let () = c.call_typed(DEST, PATH, IFACE, "Emit", &(), T).unwrap();
            let m = loop {
                let m = c.recv(T).unwrap();
                if m.member() == Some("Typed") {
                    break m;
                }
            };
            let (s, reading, _): (&str, Reading<'_>, DictView<'_, &str, Variant<'_>>) = m.body_as().unwrap();
            assert_eq!((s, reading.at), ("hello", Point(3, -4)));
            c.emit_signal_typed("/a", "org.ember.Alloc", "Tick", &(i, r)).unwrap();
            loop {
                let m = peer.recv(T).unwrap();
                if m.member() == Some("Tick") {
                    assert_eq!(m.body_as::<(i32, Reading<'_>)>(), Ok((i, r)));
                    break;
                }
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    let (answered, served_allocs) = server.join().unwrap();
    assert_eq!(answered, 60);
    assert_eq!(n, 0, "typed calls, replies, signals and queueing allocated");
    assert_eq!(served_allocs, 0, "the typed service allocated");
}

fn main() {
    common::main(
        &[
            ("typed_calls_echoed_by_gdbus", typed_calls_echoed_by_gdbus),
            ("glib_reads_typed_values", glib_reads_typed_values),
            ("typed_fds_both_ways", typed_fds_both_ways),
            ("typed_signal_from_gdbus", typed_signal_from_gdbus),
            ("gdbus_calls_typed_handlers", gdbus_calls_typed_handlers),
            ("typed_handler_takes_an_fd", typed_handler_takes_an_fd),
            ("gdbus_passes_an_fd_to_a_typed_handler", gdbus_passes_an_fd_to_a_typed_handler),
            ("typed_paths_allocate_nothing", typed_paths_allocate_nothing),
        ],
        |_| {},
    );
}
