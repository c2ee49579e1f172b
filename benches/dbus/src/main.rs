//! Ember's D-Bus client next to zbus (5.x, blocking API) in the same run.
//!
//! - marshal + parse of a typical signal (`a{sv}` with 8 entries) next to zvariant/zbus;
//! - `Peer.Ping` round trips to a private `dbus-daemon`, and `Add(ii)` calls to a method
//!   served by a second Ember connection, each by an Ember client and a zbus client;
//! - `Add(ii)` through the typed API (`call_typed::<(i32, i32), (i32,)>`) against zbus's
//!   typed proxy call (`Proxy::call::<_, _, i32>`), and its cost next to Ember's hand-built
//!   call of the same run (the issue's target: typed ≤ 1.1× hand-built);
//! - 4 calls in flight at once (`start_call_typed` ×4, then the 4 replies) against 4
//!   concurrent calls on zbus's connection (4 futures polled together);
//! - a 1 MiB `ay` reply, read as a borrowed `&[u8]` by both, beside its floor (a plain
//!   socket that writes the call and reads the reply without a library);
//! - connect + authenticate + `Hello`.
//!
//! Every figure comes from per-sample timings (one call per sample for the round trips and
//! connects; batches of 64 for marshal + parse, which take about a microsecond), after a
//! warm-up; the table prints p50, p99, the sample count and the ratio of zbus's p50 to
//! Ember's (above 1 means Ember is faster).
//!
//! ```sh
//! cargo xtask bench-dbus            # or, from this directory:
//! cargo run --release -- [--quick]
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ember_core::dbus::value::Values;
use ember_core::dbus::{Builder, DbusError, Message, Signature, Value, Writer};
use ember_dbus_bench::{IFACE, PATH, ember_body, walk, zbus_body, zvariant_checksum};
use ember_linux::dbus::object::{self, Call, Interface, Method, MethodError, Object, Service};
use ember_linux::dbus::{Borrowed, Connection, ConnectionWith, RequestNameReply, bus};

const T: Duration = Duration::from_secs(5);

/// A private `dbus-daemon` in a temporary directory, stopped on drop.
struct Daemon {
    child: Child,
    dir: String,
    address: String,
}

impl Daemon {
    fn start() -> Result<Daemon, String> {
        let dir = format!("/tmp/ember-dbus-bench-{}", std::process::id());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
        let config = format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig><type>session</type><listen>unix:path={dir}/bus</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>\n"
        );
        std::fs::write(format!("{dir}/bus.conf"), config).map_err(|e| e.to_string())?;
        let mut child = Command::new("dbus-daemon")
            .args(["--nofork", "--print-address=1", &format!("--config-file={dir}/bus.conf")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dbus-daemon: {e} (apt-get install dbus-daemon)"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let address = line.trim().to_string();
        if !address.starts_with("unix:path=") {
            return Err(format!("dbus-daemon printed {address:?}"));
        }
        Ok(Daemon { child, dir, address })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Per-sample durations in nanoseconds, each the cost of one operation.
struct Samples(Vec<f64>);

impl Samples {
    fn percentile(&mut self, p: f64) -> f64 {
        self.0.sort_by(f64::total_cmp);
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i]
    }
}

/// Times each of `ops` in turn, `CHUNK` samples of one, then of the next, and so on, so that
/// drift in the machine's speed (a VM's neighbours, frequency changes) falls on all alike.
/// Each sample is the time of `batch` runs divided by `batch`; a tenth as many untimed
/// samples of each come first as warm-up.
fn interleaved<const K: usize>(n: usize, batch: usize, mut ops: [&mut dyn FnMut(); K]) -> [Samples; K] {
    const CHUNK: usize = 50;
    for op in ops.iter_mut() {
        for _ in 0..(n / 10).max(1) * batch {
            op();
        }
    }
    let mut out: [Samples; K] = std::array::from_fn(|_| Samples(Vec::with_capacity(n)));
    let mut done = 0;
    while done < n {
        let c = CHUNK.min(n - done);
        for (op, samples) in ops.iter_mut().zip(out.iter_mut()) {
            for _ in 0..c {
                let t = Instant::now();
                for _ in 0..batch {
                    op();
                }
                samples.0.push(t.elapsed().as_nanos() as f64 / batch as f64);
            }
        }
        done += c;
    }
    out
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// One comparison: Ember's samples and zbus's for the same operation.
fn row(name: &str, mut ember: Samples, mut zbus: Samples) {
    let (e50, e99) = (ember.percentile(0.5), ember.percentile(0.99));
    let (z50, z99) = (zbus.percentile(0.5), zbus.percentile(0.99));
    println!(
        "{name:<34} {:>10} {:>10} {:>11.0} | {:>10} {:>10} {:>11.0} | {:>7} | {:>5.2}×",
        fmt_ns(e50),
        fmt_ns(e99),
        1e9 / e50,
        fmt_ns(z50),
        fmt_ns(z99),
        1e9 / z50,
        ember.0.len(),
        z50 / e50
    );
}

fn bench_marshal(n: usize) {
    let mut buf = [0u8; 1024];
    let sig = Signature::new("a{sv}").unwrap();
    // Check once that both sides carry the same body.
    let len = Builder::signal(PATH, IFACE, "Changed").build(&mut buf, 1, sig, ember_body).unwrap().len();
    let ember_sum = walk(Message::parse(&buf[..len], 1 << 20).unwrap().body());
    let zmsg = zbus::message::Message::signal(PATH, IFACE, "Changed").unwrap().build(&zbus_body()).unwrap();
    println!(
        "message sizes: Ember {len} bytes, zbus {} bytes (same body, different header field order)",
        zmsg.data().len()
    );
    drop(zmsg);

    let body = zbus_body();
    let [marshal_ember, marshal_zbus] = interleaved(
        n,
        64,
        [
            &mut || {
                let m = Builder::signal(PATH, IFACE, "Changed").build(&mut buf, 1, sig, ember_body).unwrap();
                black_box(m.len());
            },
            &mut || {
                let m = zbus::message::Message::signal(PATH, IFACE, "Changed").unwrap().build(&body).unwrap();
                black_box(m.data().len());
            },
        ],
    );
    row("marshal signal a{sv}×8", marshal_ember, marshal_zbus);

    let len = Builder::signal(PATH, IFACE, "Changed").build(&mut buf, 1, sig, ember_body).unwrap().len();
    let bytes = &buf[..len];
    let zdata = zbus::message::Message::signal(PATH, IFACE, "Changed").unwrap().build(&body).unwrap().data().to_vec();
    // Borrowed bytes, so that zbus does not pay for a copy Ember does not make either.
    let zdata: &'static [u8] = Box::leak(zdata.into_boxed_slice());
    let ctxt = zvariant::serialized::Context::new_dbus(zvariant::LE, 0);
    // SAFETY: zbus's own encoding of a valid message, read back unchanged.
    let parse = || unsafe { zbus::message::Message::from_bytes(zvariant::serialized::Data::new(zdata, ctxt)) }.unwrap();
    let zsum = {
        let m = parse();
        let body = m.body();
        let b: HashMap<&str, zvariant::Value<'_>> = body.deserialize().unwrap();
        zvariant_checksum(&b)
    };
    assert_eq!(zsum, ember_sum, "both sides read the same values");
    let [parse_ember, parse_zbus] = interleaved(
        n,
        64,
        [
            &mut || {
                let m = Message::parse(black_box(bytes), 1 << 20).unwrap();
                assert_eq!(black_box(walk(m.body())), ember_sum);
            },
            &mut || {
                let m = parse();
                let body = m.body();
                let b: HashMap<&str, zvariant::Value<'_>> = body.deserialize().unwrap();
                assert_eq!(black_box(zvariant_checksum(&b)), zsum);
            },
        ],
    );
    row("parse + read every value", parse_ember, parse_zbus);
}

// ---- round trips ---------------------------------------------------------------------

static OBJECTS: &[Object<'static>] = &[Object {
    path: "/org/ember/Bench",
    interfaces: &[Interface {
        name: "org.ember.Bench",
        methods: &[Method { name: "Add", args: "ii", results: "i" }, Method::typed::<(u32,), (&[u8],)>("Blob")],
        properties: &[],
        signals: &[],
    }],
}];

struct Adder;

/// The 1 MiB reply of `Blob`.
static BLOB: [u8; 1 << 20] = [0x5a; 1 << 20];

impl Service for Adder {
    fn call(
        &mut self,
        call: &Call<'_>,
        mut args: Values<'_>,
        _: &mut [Option<std::os::fd::OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        if call.member == "Blob" {
            return object::handle(args, reply, |(n,): (u32,)| Ok((BLOB.get(..n as usize).unwrap_or(&BLOB[..]),)));
        }
        let bad = |e: DbusError| MethodError::failed(&e.to_string());
        let (a, b): (i32, i32) = (args.next_as().map_err(bad)?, args.next_as().map_err(bad)?);
        reply.i32(a.wrapping_add(b)).map_err(bad)
    }
    fn get(&mut self, _: &str, _: &str, _: &str, _: &mut Writer<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
    fn set(&mut self, _: &str, _: &str, _: &str, _: Value<'_>) -> Result<(), MethodError> {
        Err(MethodError::failed("no properties"))
    }
}

/// Serves `org.ember.Bench` on a second Ember connection until `stop` is set.
fn serve(address: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        // Room for the 1 MiB reply.
        let (mut srx, mut stx, mut sq) = (vec![0u8; 1 << 16], vec![0u8; 2 << 20], vec![0u8; 1 << 16]);
        let bufs = Borrowed::with_queue(&mut srx, &mut stx, &mut sq);
        let mut c = ConnectionWith::connect_with(bufs, &address, T).expect("serving connection");
        assert_eq!(c.request_name("org.ember.Bench", 0, T), Ok(RequestNameReply::PrimaryOwner));
        tx.send(()).unwrap();
        while !stop.load(Ordering::Relaxed) {
            match c.process(OBJECTS, &mut Adder, Duration::from_millis(50)) {
                Ok(_) | Err(ember_linux::Error::TimedOut) => {}
                Err(e) => panic!("serving: {e}"),
            }
        }
    });
    rx.recv_timeout(T).expect("the service did not start");
    h
}

fn bench_calls(address: &str, n: usize) {
    let mut ember: Box<Connection> = Box::new(Connection::connect(address).unwrap());
    let zbus = zbus::blocking::connection::Builder::address(address).unwrap().build().unwrap();

    let [ping_ember, ping_zbus] = interleaved(
        n,
        1,
        [
            &mut || {
                let r = ember.call(
                    bus::DESTINATION,
                    bus::PATH,
                    Some("org.freedesktop.DBus.Peer"),
                    "Ping",
                    Signature::EMPTY,
                    |_| Ok(()),
                    T,
                );
                assert!(r.is_ok());
            },
            &mut || {
                let r =
                    zbus.call_method(Some(bus::DESTINATION), bus::PATH, Some("org.freedesktop.DBus.Peer"), "Ping", &());
                assert!(r.is_ok());
            },
        ],
    );
    row("Peer.Ping to dbus-daemon", ping_ember, ping_zbus);

    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(address.to_string(), stop.clone());
    let ii = Signature::new("ii").unwrap();
    let (mut ie, mut iz) = (0i32, 0i32);
    let [add_ember, add_zbus] = interleaved(
        n,
        1,
        [
            &mut || {
                ie = ie.wrapping_add(1);
                let m = ember
                    .call(
                        "org.ember.Bench",
                        "/org/ember/Bench",
                        Some("org.ember.Bench"),
                        "Add",
                        ii,
                        |w| {
                            w.i32(ie)?;
                            w.i32(1)
                        },
                        T,
                    )
                    .unwrap();
                let r: i32 = m.body().next_as().unwrap();
                assert_eq!(r, ie.wrapping_add(1));
            },
            &mut || {
                iz = iz.wrapping_add(1);
                let m = zbus
                    .call_method(
                        Some("org.ember.Bench"),
                        "/org/ember/Bench",
                        Some("org.ember.Bench"),
                        "Add",
                        &(iz, 1i32),
                    )
                    .unwrap();
                let r: i32 = m.body().deserialize().unwrap();
                assert_eq!(r, iz.wrapping_add(1));
            },
        ],
    );
    row("Add(ii) served by Ember", add_ember, add_zbus);

    // The typed API against zbus's typed proxy, with Ember's hand-built call in the same
    // run as the baseline of the typed layer's cost.
    let proxy = zbus::blocking::Proxy::new(&zbus, "org.ember.Bench", "/org/ember/Bench", "org.ember.Bench").unwrap();
    let (mut ih, mut it, mut iz) = (0i32, 0i32, 0i32);
    // Both Ember closures call on the one connection (a RefCell's check costs both alike).
    let cell = std::cell::RefCell::new(&mut *ember);
    // The floor of the same call: its bytes written and the reply read on a plain socket,
    // no library and no parsing (the daemon's two hops and the serving connection's work,
    // which every client pays).
    let mut raw_add = RawCaller::connect(address);
    let mut ir = 0i32;
    let [mut hand, typed, proxy_z, mut add_floor] = interleaved(
        n,
        1,
        [
            &mut || {
                ih = ih.wrapping_add(1);
                let mut e = cell.borrow_mut();
                let m = e
                    .call(
                        "org.ember.Bench",
                        "/org/ember/Bench",
                        Some("org.ember.Bench"),
                        "Add",
                        ii,
                        |w| {
                            w.i32(ih)?;
                            w.i32(1)
                        },
                        T,
                    )
                    .unwrap();
                let r: i32 = m.body().next_as().unwrap();
                assert_eq!(r, ih.wrapping_add(1));
            },
            &mut || {
                it = it.wrapping_add(1);
                let mut e = cell.borrow_mut();
                let (r,): (i32,) = e
                    .call_typed("org.ember.Bench", "/org/ember/Bench", Some("org.ember.Bench"), "Add", &(it, 1i32), T)
                    .unwrap();
                assert_eq!(r, it.wrapping_add(1));
            },
            &mut || {
                iz = iz.wrapping_add(1);
                let r: i32 = proxy.call("Add", &(iz, 1i32)).unwrap();
                assert_eq!(r, iz.wrapping_add(1));
            },
            &mut || {
                ir = ir.wrapping_add(1);
                raw_add.add(ir, 1);
            },
        ],
    );
    let hand50 = hand.percentile(0.5);
    let mut proxy_z = proxy_z;
    let (floor50, zbus50) = (add_floor.percentile(0.5), proxy_z.percentile(0.5));
    let typed = typed_row("Add(ii) typed API vs zbus proxy", typed, proxy_z);
    println!(
        "{:<34} typed / hand-built p50 = {:.3}× (hand-built {})",
        "  typed layer's cost",
        typed / hand50,
        fmt_ns(hand50)
    );
    println!(
        "{:<34} {:>10} {:>10} {:>11.0}   (no library: the call's bytes written, the reply's read, not parsed)",
        "  Add(ii) floor",
        fmt_ns(floor50),
        fmt_ns(add_floor.percentile(0.99)),
        1e9 / floor50
    );
    let share = |p50: f64| {
        if p50 >= floor50 {
            format!("{} above the floor", fmt_ns(p50 - floor50))
        } else {
            format!("at the floor ({} under it)", fmt_ns(floor50 - p50))
        }
    };
    println!(
        "{:<34} Ember typed {}, zbus {}; a client that cost nothing would be {:.2}× zbus",
        "  each client's own share",
        share(typed),
        share(zbus50),
        zbus50 / floor50
    );

    // 4 calls in flight at once, against 4 concurrent calls on zbus's connection.
    let (mut fe, mut fz) = (0i32, 0i32);
    let zconn = zbus.inner().clone();
    let [four_ember, four_zbus] = interleaved(
        n / 4,
        1,
        [
            &mut || {
                let mut calls = [const { None }; 4];
                for (k, slot) in calls.iter_mut().enumerate() {
                    let args = (fe.wrapping_add(k as i32), 1i32);
                    *slot = Some(
                        ember
                            .start_call_typed(
                                "org.ember.Bench",
                                "/org/ember/Bench",
                                Some("org.ember.Bench"),
                                "Add",
                                &args,
                            )
                            .unwrap(),
                    );
                }
                for (k, call) in calls.into_iter().enumerate() {
                    let (r,): (i32,) = ember.wait_call_typed(call.unwrap(), T).unwrap();
                    assert_eq!(r, fe.wrapping_add(k as i32).wrapping_add(1));
                }
                fe = fe.wrapping_add(4);
            },
            &mut || {
                let call = |k: i32| {
                    let zconn = &zconn;
                    let a = fz.wrapping_add(k);
                    async move {
                        let m = zconn
                            .call_method(
                                Some("org.ember.Bench"),
                                "/org/ember/Bench",
                                Some("org.ember.Bench"),
                                "Add",
                                &(a, 1i32),
                            )
                            .await
                            .unwrap();
                        let r: i32 = m.body().deserialize().unwrap();
                        assert_eq!(r, a.wrapping_add(1));
                    }
                };
                join4(call(0), call(1), call(2), call(3));
                fz = fz.wrapping_add(4);
            },
        ],
    );
    row("4 calls in flight (time for 4)", four_ember, four_zbus);

    // A 1 MiB reply, read as a borrowed byte slice by both.
    let (mut rx, mut tx, mut q) = (vec![0u8; 2 << 20], vec![0u8; 4096], vec![0u8; 1 << 16]);
    let mut big = ConnectionWith::connect_with(Borrowed::with_queue(&mut rx, &mut tx, &mut q), address, T).unwrap();
    let mib = 1u32 << 20;
    let mut floor = RawCaller::connect(address);
    let [blob_ember, blob_zbus, mut raw_blob] = interleaved(
        (n / 20).max(50),
        1,
        [
            &mut || {
                let (b,): (&[u8],) = big
                    .call_typed("org.ember.Bench", "/org/ember/Bench", Some("org.ember.Bench"), "Blob", &(mib,), T)
                    .unwrap();
                assert_eq!((b.len(), b[b.len() - 1]), (1 << 20, 0x5a));
            },
            &mut || {
                let m = proxy.call_method("Blob", &(mib,)).unwrap();
                let body = m.body();
                let b: &[u8] = body.deserialize().unwrap();
                assert_eq!((b.len(), b[b.len() - 1]), (1 << 20, 0x5a));
            },
            &mut || floor.blob(mib),
        ],
    );
    row("1 MiB ay reply (typed)", blob_ember, blob_zbus);
    println!(
        "{:<34} {:>10} {:>10} {:>11.0}   (no library: the call's bytes written, the reply's read, not parsed)",
        "  1 MiB reply floor",
        fmt_ns(raw_blob.percentile(0.5)),
        fmt_ns(raw_blob.percentile(0.99)),
        1e9 / raw_blob.percentile(0.5)
    );

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// [`row`], returning Ember's p50.
fn typed_row(name: &str, mut ember: Samples, zbus: Samples) -> f64 {
    let p50 = ember.percentile(0.5);
    row(name, ember, zbus);
    p50
}

/// Polls four futures together on this thread until all are done (zbus's concurrent calls
/// without another dependency).
fn join4(
    a: impl Future<Output = ()>,
    b: impl Future<Output = ()>,
    c: impl Future<Output = ()>,
    d: impl Future<Output = ()>,
) {
    let mut futs: [std::pin::Pin<Box<dyn Future<Output = ()> + '_>>; 4] =
        [Box::pin(a), Box::pin(b), Box::pin(c), Box::pin(d)];
    let mut done = [false; 4];
    zbus::block_on(std::future::poll_fn(|cx| {
        for (f, d) in futs.iter_mut().zip(&mut done) {
            if !*d && f.as_mut().poll(cx).is_ready() {
                *d = true;
            }
        }
        if done.iter().all(|&d| d) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    }));
}

/// The floor: the same handshake with hard-coded bytes over a plain socket, no library
/// (the AUTH EXTERNAL, NEGOTIATE_UNIX_FD and BEGIN lines in one write, Hello in a second, as
/// Ember sends them; then read to Hello's reply).
fn raw_connect(path: &str, hello: &[u8], buf: &mut [u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    let uid: String = rustix::process::getuid().as_raw().to_string().bytes().map(|b| format!("{b:02x}")).collect();
    s.write_all(format!("\0AUTH EXTERNAL {uid}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n").as_bytes()).unwrap();
    s.write_all(hello).unwrap();
    let mut have = 0;
    loop {
        have += s.read(&mut buf[have..]).unwrap();
        // Two lines (OK, AGREE_UNIX_FD), then the first message: Hello's reply.
        let text = &buf[..have];
        let Some(lines) = text.windows(2).enumerate().filter(|(_, w)| w == b"\r\n").nth(1).map(|(i, _)| i + 2) else {
            continue;
        };
        if let Ok(len) = ember_core::dbus::header::message_len(&text[lines..], 1 << 20)
            && have >= lines + len
        {
            let m = Message::parse(&text[lines..lines + len], 1 << 20).unwrap();
            return m.body().next_as::<&str>().unwrap().to_string();
        }
    }
}

/// The floor of a call: a plain `UnixStream`, authenticated and `Hello`ed with hard-coded
/// bytes, that writes a call built once per sample and reads until the reply is whole,
/// without parsing its body (other messages, e.g. `NameAcquired`, are skipped by length).
struct RawCaller {
    s: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
    have: usize,
    serial: u32,
}

impl RawCaller {
    fn connect(address: &str) -> RawCaller {
        use std::io::Write;
        let path = address.strip_prefix("unix:path=").and_then(|a| a.split(',').next()).unwrap();
        let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
        let uid: String = rustix::process::getuid().as_raw().to_string().bytes().map(|b| format!("{b:02x}")).collect();
        s.write_all(format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").as_bytes()).unwrap();
        let mut hello = [0u8; 256];
        let hello = Builder::method_call(bus::PATH, "Hello")
            .interface(bus::INTERFACE)
            .destination(bus::DESTINATION)
            .build(&mut hello, 1, Signature::EMPTY, |_| Ok(()))
            .unwrap();
        s.write_all(hello).unwrap();
        let mut c = RawCaller { s, buf: vec![0u8; 4 << 20], have: 0, serial: 1 };
        // The OK line, then the messages up to Hello's reply.
        while !c.buf[..c.have].windows(2).any(|w| w == b"\r\n") {
            c.read_more();
        }
        let line = c.buf[..c.have].windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        c.buf.copy_within(line..c.have, 0);
        c.have -= line;
        c.wait_reply(1);
        c
    }

    fn read_more(&mut self) {
        use std::io::Read;
        let n = self.s.read(&mut self.buf[self.have..]).unwrap();
        assert!(n > 0, "the bus hung up");
        self.have += n;
    }

    /// Reads messages until the reply to `serial`; returns its length (then dropped).
    fn wait_reply(&mut self, serial: u32) -> usize {
        loop {
            while self.have < 16 {
                self.read_more();
            }
            let len = ember_core::dbus::header::message_len(&self.buf[..self.have], 128 << 20).unwrap();
            while self.have < ember_core::dbus::header::header_len(&self.buf[..self.have]).unwrap() {
                self.read_more();
            }
            let head = ember_core::dbus::header::header_len(&self.buf[..self.have]).unwrap();
            let (m, _) = Message::parse_head(&self.buf[..head]).unwrap();
            let ours = m.reply_serial() == Some(serial);
            while self.have < len {
                self.read_more();
            }
            self.buf.copy_within(len..self.have, 0);
            self.have -= len;
            if ours {
                return len;
            }
        }
    }

    fn add(&mut self, a: i32, b: i32) {
        use std::io::Write;
        self.serial += 1;
        let mut call = [0u8; 256];
        let call = Builder::method_call("/org/ember/Bench", "Add")
            .interface("org.ember.Bench")
            .destination("org.ember.Bench")
            .build(&mut call, self.serial, Signature::new("ii").unwrap(), |w| {
                w.i32(a)?;
                w.i32(b)
            })
            .unwrap();
        self.s.write_all(call).unwrap();
        assert!(self.wait_reply(self.serial) > 0);
    }

    fn blob(&mut self, n: u32) {
        use std::io::Write;
        self.serial += 1;
        let mut call = [0u8; 256];
        let call = Builder::method_call("/org/ember/Bench", "Blob")
            .interface("org.ember.Bench")
            .destination("org.ember.Bench")
            .build(&mut call, self.serial, Signature::new("u").unwrap(), |w| w.u32(n))
            .unwrap();
        self.s.write_all(call).unwrap();
        assert!(self.wait_reply(self.serial) > n as usize);
    }
}

fn bench_connect(address: &str, n: usize) {
    let path = address.strip_prefix("unix:path=").and_then(|a| a.split(',').next()).unwrap();
    let mut hello = [0u8; 256];
    let hello = Builder::method_call(bus::PATH, "Hello")
        .interface(bus::INTERFACE)
        .destination(bus::DESTINATION)
        .build(&mut hello, 1, Signature::EMPTY, |_| Ok(()))
        .unwrap()
        .to_vec();
    let mut buf = vec![0u8; 4096];
    let [mut raw, connect_ember, connect_zbus] = interleaved(
        n,
        1,
        [
            &mut || assert!(raw_connect(path, &hello, &mut buf).starts_with(':')),
            &mut || {
                let c: Box<Connection<4096>> = Box::new(Connection::connect(address).unwrap());
                assert!(c.unique_name().starts_with(':'));
            },
            &mut || {
                let c = zbus::blocking::connection::Builder::address(address).unwrap().build().unwrap();
                assert!(c.unique_name().is_some());
            },
        ],
    );
    println!(
        "{:<34} {:>10} {:>10} {:>11.0}   (no library: hard-coded bytes on a socket, the floor)",
        "  connect floor",
        fmt_ns(raw.percentile(0.5)),
        fmt_ns(raw.percentile(0.99)),
        1e9 / raw.percentile(0.5)
    );
    row("connect + auth + Hello", connect_ember, connect_zbus);
}

fn main() -> std::process::ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_marshal, n_calls, n_connect) = if quick { (2_000, 2_000, 100) } else { (20_000, 20_000, 500) };
    let daemon = match Daemon::start() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot start a private dbus-daemon: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("Ember vs zbus 5 (blocking API), same run; ratio = zbus p50 / Ember p50");
    println!(
        "{:<34} {:>10} {:>10} {:>11} | {:>10} {:>10} {:>11} | {:>7} | ratio",
        "operation", "Ember p50", "p99", "ops/s", "zbus p50", "p99", "ops/s", "samples"
    );
    bench_marshal(n_marshal);
    bench_calls(&daemon.address, n_calls);
    bench_connect(&daemon.address, n_connect);
    std::process::ExitCode::SUCCESS
}
