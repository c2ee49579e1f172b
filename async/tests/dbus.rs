//! The async D-Bus connection on Tokio against a real private `dbus-daemon`: calls
//! answered by an Ember service on the same runtime and by `gdbus` calling it, three calls
//! in flight while 10,000 signals arrive (every one delivered, in order), a call future
//! dropped by a timeout (the call ends; the late reply reaches `recv`), and the bus's own
//! methods.
//!
//! Its own `main` (`harness = false`), sharing the Linux crate's test harness and daemon
//! helper; `cargo xtask test` installs `dbus-daemon` and `gdbus` when missing.

#[path = "../../linux/tests/common/mod.rs"]
mod common;
#[path = "common/counting.rs"]
mod counting;
#[path = "common/mod.rs"]
mod storm;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::dbus_daemon::Daemon;
use ember_async::tokio::AsyncDbus;
use ember_linux::Error;
use ember_linux::core::dbus::value::Values;
use ember_linux::core::dbus::{Builder, MessageType, Signature, Value, Writer};
use ember_linux::dbus::object::{Call, Interface, Method, MethodError, Object, Service};
use ember_linux::dbus::{CallError, ConnectionWith, Heap, Processed, RequestNameReply};

const T: Duration = Duration::from_secs(10);
const NAME: &str = "org.ember.AsyncTest";
const IFACE: &str = "org.ember.AsyncTest";
const SIGNALS: u32 = 10_000;

const OBJECTS: &[Object<'static>] = &[Object {
    path: "/t",
    interfaces: &[Interface {
        name: IFACE,
        methods: &[Method { name: "Add", args: "ii", results: "i" }],
        properties: &[],
        signals: &[],
    }],
}];

struct Adder;

impl Service for Adder {
    fn call(
        &mut self,
        _: &Call<'_>,
        mut args: Values<'_>,
        _: &mut [Option<std::os::fd::OwnedFd>],
        reply: &mut Writer<'_>,
    ) -> Result<(), MethodError> {
        let bad = |e: ember_linux::core::dbus::DbusError| MethodError::failed(&e.to_string());
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

/// A connection with 64 KiB buffers and a queue of `queue` bytes.
fn connect(bus: &Daemon, queue: usize) -> ConnectionWith<Heap> {
    match ConnectionWith::connect_with(Heap::new(65536, 65536).with_queue(queue), &bus.address, T) {
        Ok(c) => c,
        Err(e) => {
            let said = std::fs::read_to_string(format!("{}/daemon.log", bus.dir)).unwrap_or_default();
            panic!("cannot connect to {}: {e}; dbus-daemon said: {said}", bus.address)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn add_args(a: i32, b: i32) -> impl for<'b> FnOnce(&mut Writer<'b>) -> Result<(), ember_linux::core::dbus::DbusError> {
    move |w| {
        w.i32(a)?;
        w.i32(b)
    }
}

/// Serves `OBJECTS` as `NAME` on the runtime until `stop`; returns how many calls it answered.
async fn serve(mut svc: AsyncDbus<Heap>, stop: Arc<AtomicBool>) -> u32 {
    let mut answered = 0;
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(20), svc.process(OBJECTS, &mut Adder)).await {
            Ok(Ok(Processed::Answered)) => answered += 1,
            Ok(Ok(Processed::Message(_))) | Err(_) => {}
            Ok(Err(e)) => panic!("service: {e}"),
        }
    }
    answered
}

/// Calls answered by an async service on the same runtime and by the bus; `gdbus` calls
/// the async service from another process.
fn calls_and_a_service() {
    common::need_tool("gdbus");
    let bus = Daemon::start();
    let rt = runtime();
    rt.block_on(async {
        let mut svc = connect(&bus, 65536);
        assert_eq!(svc.request_name(NAME, 0, T), Ok(RequestNameReply::PrimaryOwner));
        let svc = AsyncDbus::new(svc).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = tokio::spawn(serve(svc, stop.clone()));

        let mut c = AsyncDbus::new(connect(&bus, 65536)).unwrap();
        let sig = Signature::new("ii").unwrap();
        for i in 0..200 {
            let r = c.call(NAME, "/t", Some(IFACE), "Add", sig, add_args(i, 1000)).await.unwrap();
            assert_eq!(r.body().next_as::<i32>().unwrap(), i + 1000);
        }
        // The bus's own method, and an error reply as `CallError::Remote`.
        let id = c
            .call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "GetId",
                Signature::new("").unwrap(),
                |_| Ok(()),
            )
            .await
            .unwrap();
        assert_eq!(id.body().next_as::<&str>().unwrap().len(), 32);
        match c.call(NAME, "/t", Some(IFACE), "Nope", Signature::new("").unwrap(), |_| Ok(())).await {
            Err(CallError::Remote { name, .. }) => assert_eq!(name, "org.freedesktop.DBus.Error.UnknownMethod"),
            other => panic!("{other:?}"),
        }
        // Another process calls the service while this task waits.
        let address = bus.address.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("gdbus")
                .args(["call", "--address", &address, "--dest", NAME, "--object-path", "/t", "--method"])
                .arg(format!("{IFACE}.Add"))
                .args(["2", "40"])
                .output()
                .expect("gdbus")
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "(42,)");
        stop.store(true, Ordering::Relaxed);
        // 200 Add, the unknown method, and gdbus's Introspect (it learns the argument types
        // before it calls) and Add.
        assert_eq!(served.await.unwrap(), 200 + 1 + 2);
        assert_eq!(c.get_ref().calls_in_flight(), 0);
    });
}

/// Three calls in flight at a time, waited for in reverse order, while another connection
/// emits 10,000 numbered signals: every signal comes out of `recv` afterwards, in order,
/// none lost, and the replies all match.
fn signals_while_calls_are_in_flight() {
    let bus = Daemon::start_large();
    let rt = runtime();
    rt.block_on(async {
        let mut svc = connect(&bus, 65536);
        assert_eq!(svc.request_name(NAME, 0, T), Ok(RequestNameReply::PrimaryOwner));
        let stop = Arc::new(AtomicBool::new(false));
        let served = tokio::spawn(serve(AsyncDbus::new(svc).unwrap(), stop.clone()));

        // Room for every signal (about 120 bytes each on the wire).
        let mut c = connect(&bus, 4 << 20);
        c.add_match(&format!("type='signal',interface='{IFACE}',member='Tick'"), T).unwrap();
        let mut c = AsyncDbus::new(c).unwrap();

        let mut emitter = connect(&bus, 65536);
        let go = Arc::new(AtomicBool::new(false));
        let emitting = {
            let go = go.clone();
            std::thread::spawn(move || {
                while !go.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let sig = Signature::new("u").unwrap();
                for n in 0..SIGNALS {
                    emitter.emit_signal("/t", IFACE, "Tick", sig, |w| w.u32(n)).unwrap();
                }
            })
        };
        go.store(true, Ordering::Relaxed);
        let sig = Signature::new("ii").unwrap();
        let mut rounds = 0;
        while !emitting.is_finished() || rounds < 20 {
            let calls: Vec<_> = (0..3)
                .map(|k| c.get_mut().start_call(NAME, "/t", Some(IFACE), "Add", sig, add_args(rounds, k)).unwrap())
                .collect();
            assert_eq!(c.get_ref().calls_in_flight(), 3);
            for (k, call) in calls.into_iter().enumerate().rev() {
                let r = c.wait_call(call).await.unwrap();
                assert_eq!(r.body().next_as::<i32>().unwrap(), rounds + k as i32);
            }
            rounds += 1;
        }
        emitting.join().unwrap();
        let mut next = 0;
        while next < SIGNALS {
            let m = tokio::time::timeout(T, c.recv()).await.expect("a signal within 10 s").unwrap();
            if m.message_type() != MessageType::Signal || m.member() != Some("Tick") {
                continue;
            }
            assert_eq!(m.body().next_as::<u32>().unwrap(), next, "signals in order, none lost");
            next += 1;
        }
        assert_eq!(c.get_ref().overflows(), 0);
        println!("    {SIGNALS} signals in order while {rounds} rounds of 3 calls were in flight");
        stop.store(true, Ordering::Relaxed);
        served.await.unwrap();
    });
}

/// A call whose future a timeout drops ends: its slot is free, and the reply that comes
/// later reaches `recv` as an ordinary message.
fn dropped_call_future_ends_the_call() {
    let bus = Daemon::start();
    let rt = runtime();
    rt.block_on(async {
        // A service that answers only when told to.
        let mut svc = connect(&bus, 65536);
        assert_eq!(svc.request_name(NAME, 0, T), Ok(RequestNameReply::PrimaryOwner));
        let answer = Arc::new(AtomicBool::new(false));
        let late = {
            let answer = answer.clone();
            std::thread::spawn(move || {
                // The bus's `NameAcquired` comes first.
                let m = loop {
                    let m = svc.recv(T).unwrap();
                    if m.message_type() == MessageType::MethodCall {
                        break m;
                    }
                };
                assert_eq!(m.member(), Some("Add"));
                let (serial, sender) = (m.serial(), m.sender().expect("a sender").to_string());
                while !answer.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                svc.send(
                    Builder::method_return(serial).destination(&sender),
                    Signature::new("i").unwrap(),
                    |w| w.i32(7),
                    &[],
                )
                .unwrap();
                serial
            })
        };
        let mut c = AsyncDbus::new(connect(&bus, 65536)).unwrap();
        let sig = Signature::new("ii").unwrap();
        let waited = tokio::time::timeout(
            Duration::from_millis(200),
            c.call(NAME, "/t", Some(IFACE), "Add", sig, add_args(3, 4)),
        )
        .await;
        assert!(waited.is_err(), "the service has not answered yet");
        assert_eq!(c.get_ref().calls_in_flight(), 0, "the dropped future ended its call");
        answer.store(true, Ordering::Relaxed);
        let serial = late.join().unwrap();
        // The bus's `NameAcquired` for the client's unique name may come first.
        let mut m = tokio::time::timeout(T, c.recv()).await.expect("the late reply").unwrap();
        if m.message_type() == MessageType::Signal {
            m = tokio::time::timeout(T, c.recv()).await.expect("the late reply").unwrap();
        }
        assert_eq!(m.message_type(), MessageType::MethodReturn);
        assert_eq!(m.reply_serial(), Some(serial));
        assert_eq!(m.body().next_as::<i32>().unwrap(), 7);
        // Nothing else came.
        let waited = tokio::time::timeout(Duration::from_millis(50), c.recv()).await;
        assert!(waited.is_err());
        match c.get_mut().recv(Duration::ZERO) {
            Err(Error::TimedOut) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// No allocation on the runtime's thread in steady-state calls (answered by the bus) and
/// signal receives (another thread emits them), under `tokio::task::unconstrained` (see
/// `no_alloc.rs` for Tokio's cooperative budget, which allocates on its own).
fn calls_and_signals_allocate_nothing() {
    let bus = Daemon::start();
    let mut c = connect(&bus, 1 << 20);
    c.add_match(&format!("type='signal',interface='{IFACE}',member='Tick'"), T).unwrap();
    let mut emitter = connect(&bus, 65536);
    counting::counted();
    let rt = runtime();
    let allocs = rt.block_on(tokio::task::unconstrained(async {
        let mut c = AsyncDbus::new(c).unwrap();
        let none = Signature::new("").unwrap();
        let (dest, path, iface) = ("org.freedesktop.DBus", "/org/freedesktop/DBus", Some("org.freedesktop.DBus"));
        let emitting = std::thread::spawn(move || {
            for n in 0..2 * counting::MEASURED {
                emitter.emit_signal("/t", IFACE, "Tick", Signature::new("u").unwrap(), |w| w.u32(n)).unwrap();
            }
        });
        let round = async |c: &mut AsyncDbus<Heap>| {
            let id = c.call(dest, path, iface, "GetId", none, |_| Ok(())).await.unwrap();
            assert_eq!(id.body().next_as::<&str>().unwrap().len(), 32);
            let m = c.recv().await.unwrap();
            assert!(matches!(m.message_type(), MessageType::Signal));
        };
        for _ in 0..counting::WARM {
            round(&mut c).await;
        }
        let before = counting::ALLOCS.load(Ordering::Relaxed);
        for _ in 0..counting::MEASURED {
            round(&mut c).await;
        }
        let allocs = counting::ALLOCS.load(Ordering::Relaxed) - before;
        emitting.join().unwrap();
        allocs
    }));
    println!("    {allocs} allocations in {} calls and signal receives", counting::MEASURED);
    assert_eq!(allocs, 0);
}

/// Call and receive futures dropped at random points (after 0 to 3 polls) while another
/// connection emits numbered signals and an async service answers: every signal comes out
/// of `recv` once, in order; every call polled at least once sent its request, and those
/// dropped before their reply end (no call stays in flight) with their late reply delivered
/// to `recv` exactly once; the connection stays usable throughout.
fn dropped_futures_lose_nothing() {
    const TICKS: u32 = 2000;
    const CALLS: i32 = 600;
    let bus = Daemon::start_large();
    let rt = runtime();
    rt.block_on(async {
        let mut svc = connect(&bus, 65536);
        assert_eq!(svc.request_name(NAME, 0, T), Ok(RequestNameReply::PrimaryOwner));
        let stop = Arc::new(AtomicBool::new(false));
        let served = tokio::spawn(serve(AsyncDbus::new(svc).unwrap(), stop.clone()));
        let mut c = connect(&bus, 4 << 20);
        c.add_match(&format!("type='signal',interface='{IFACE}',member='Tick'"), T).unwrap();
        let mut c = AsyncDbus::new(c).unwrap();
        let mut emitter = connect(&bus, 65536);
        let emitting = std::thread::spawn(move || {
            for n in 0..TICKS {
                emitter.emit_signal("/t", IFACE, "Tick", Signature::new("u").unwrap(), |w| w.u32(n)).unwrap();
                if n % 64 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let mut rng = storm::Rng(0x5EED_DB05);
        let sig = Signature::new("ii").unwrap();
        let (mut next_tick, mut completed, mut abandoned, mut late) = (0u32, 0u32, 0u32, 0u32);
        let mut late_values = Vec::new();
        // What a received message was, taken out of the borrow before the next step.
        let mut seen = |m: ember_linux::core::dbus::Message<'_>, next_tick: &mut u32, late: &mut u32| {
            match (m.message_type(), m.member()) {
                (MessageType::Signal, Some("Tick")) => {
                    assert_eq!(m.body().next_as::<u32>().unwrap(), *next_tick, "signals in order, none lost");
                    *next_tick += 1;
                }
                (MessageType::MethodReturn, _) => {
                    *late += 1;
                    late_values.push(m.body().next_as::<i32>().unwrap());
                }
                _ => {}
            }
        };
        let mut i = 0;
        let mut steps = 0;
        while i < CALLS || next_tick < TICKS || late < abandoned {
            steps += 1;
            assert!(steps < 2_000_000, "no progress: tick {next_tick}, call {i}, late {late} of {abandoned}");
            if i < CALLS {
                // One call in eight runs to its end; the others are dropped after 0 to 3 polls.
                let polls = if rng.below(8) == 0 { u64::MAX } else { rng.below(4) };
                let call = c.call(NAME, "/t", Some(IFACE), "Add", sig, add_args(i, 1_000_000));
                let done = if polls == u64::MAX { Some(call.await) } else { storm::poll_then_drop(call, polls) };
                match done {
                    Some(r) => {
                        assert_eq!(r.unwrap().body().next_as::<i32>().unwrap(), i + 1_000_000);
                        completed += 1;
                    }
                    // Polled once at least: the request went out; its reply comes to `recv`.
                    None if polls > 0 => abandoned += 1,
                    None => {}
                }
                assert_eq!(c.get_ref().calls_in_flight(), 0, "a dropped call future ends its call");
                i += 1;
            }
            if let Some(r) = storm::poll_then_drop(c.recv(), rng.below(4)) {
                seen(r.unwrap(), &mut next_tick, &mut late);
            }
            tokio::task::yield_now().await;
        }
        emitting.join().unwrap();
        // Nothing more: no duplicate late reply, no extra signal.
        while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await {
            seen(m, &mut next_tick, &mut late);
        }
        assert_eq!((next_tick, late), (TICKS, abandoned));
        late_values.sort_unstable();
        late_values.dedup();
        assert_eq!(late_values.len() as u32, abandoned, "each abandoned call's reply once");
        assert_eq!(c.get_ref().overflows(), 0);
        println!("    {completed} calls completed, {abandoned} abandoned after sending (late replies all seen), {TICKS} signals in order");
        stop.store(true, Ordering::Relaxed);
        served.await.unwrap();
    });
}

/// The same wrapper on async-io's reactor: the bus's methods, several calls in flight.
#[cfg(feature = "async-io")]
fn on_async_io() {
    let bus = Daemon::start();
    let mut c = ember_async::async_io::AsyncDbus::new(connect(&bus, 65536)).unwrap();
    futures_lite::future::block_on(async {
        let none = Signature::new("").unwrap();
        let (path, iface) = ("/org/freedesktop/DBus", Some("org.freedesktop.DBus"));
        let calls: Vec<_> = (0..4)
            .map(|_| c.get_mut().start_call("org.freedesktop.DBus", path, iface, "GetId", none, |_| Ok(())).unwrap())
            .collect();
        let mut ids = Vec::new();
        for call in calls.into_iter().rev() {
            ids.push(c.wait_call(call).await.unwrap().body().next_as::<&str>().unwrap().to_string());
        }
        assert!(ids.iter().all(|id| id.len() == 32 && *id == ids[0]), "{ids:?}");
        let names = c.call("org.freedesktop.DBus", path, iface, "ListNames", none, |_| Ok(())).await.unwrap();
        assert_eq!(names.signature().as_str(), "as");
    });
}

fn main() {
    common::main(
        &[
            #[cfg(feature = "async-io")]
            ("on_async_io", on_async_io),
            ("calls_and_a_service", calls_and_a_service),
            ("dropped_futures_lose_nothing", dropped_futures_lose_nothing),
            ("calls_and_signals_allocate_nothing", calls_and_signals_allocate_nothing),
            ("signals_while_calls_are_in_flight", signals_while_calls_are_in_flight),
            ("dropped_call_future_ends_the_call", dropped_call_future_ends_the_call),
        ],
        |_| {},
    );
}
