//! Ember next to iceoryx2 in the same run, between the same two pinned processes.
//!
//! ```text
//! cargo xtask bench-peers [--quick] [--sizes 64,4096,...] [--only pubsub,loan,rpc,event]
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- [same options]
//! ```
//!
//! Each row starts one peer process (this program again, `peer ...`), pinned to CPU 1; the
//! measuring process is pinned to CPU 0. Both sides set up Ember's endpoints *and*
//! iceoryx2's for the row, then the measuring side runs the two systems in alternating
//! chunks (Ember first in even chunks, iceoryx2 first in odd ones) over the same two
//! processes, so both see the same machine: a control line on the peer's stdin says which
//! system echoes the next chunk, the peer answers `ok` before the first message. The first
//! chunk of each system is a warm-up and is not recorded.
//!
//! | row | Ember | iceoryx2 |
//! |---|---|---|
//! | `pubsub` (per size) | `SpscSender::try_send` / `SpscReceiver::recv_spin`, a ring each way | `publish_subscribe::<[u8]>`, `loan_slice_uninit` + `write_from_slice` + `send`, `receive` polled, a service each way |
//! | `loan` (per size) | the payload built in place (`SpscSender::try_grant`, `SendGrant::put` from the sender's buffer, `commit`) and read in place (`SpscReceiver::peek_spin`, its first and last 8 bytes with `RecvPeek::read`, `release`) | `loan_slice_uninit` + `write_from_slice` + `send`; the sample's first and last 8 bytes read in place |
//! | `rpc` | `rpc::Client::call` / `rpc::Server::serve_one` over a `ShmLink` (a `u64` request, its `+ 1` back), the rings busy-polled | `request_response::<u64, u64>`, `Client::send_copy`, `PendingResponse::receive` polled, `ActiveRequest::send_copy` |
//! | `event` | a ring each way, an 8-byte record, the receiver asleep on the futex (`recv`, no spinning) | `event()`, `Notifier::notify`, `Listener::blocking_wait` |
//!
//! Ember's rings are sized for `--ring-records` records of the row's size (default 2, the
//! least a ring allows: a record takes at most half of it), rounded up to a power of two,
//! at least 64 KiB; iceoryx2's subscribers buffer 2 samples, no history. The size matters
//! from 256 KiB on, where the rings' working set meets the caches (docs/benchmarks.md).
//!
//! In `pubsub` both systems copy the payload in and out on both sides: the message is copied
//! from the sender's buffer into shared memory and from shared memory into the receiver's
//! buffer, as a receiver that keeps data must. Latency rows time every round trip and
//! report half of it (one-way); `rpc` reports the round trip. p50 and p99 per iteration,
//! and the ratio Ember ÷ iceoryx2 of the p50s (below 1: Ember is faster).
//!
//! Nothing here asserts a time; `cargo xtask test` builds it with clippy, does not run it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use ember_linux::rpc::{Client, Failure, Server, ShmLink};
use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use iceoryx2::prelude::*;

/// The rings' fingerprint (both sides agree on it).
const FP: u64 = 0xBE7C_9EE5_0000_0001;
/// Any wait longer than this is a failure (a dead peer), never a silent hang.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The rpc row's request kind.
const ADD_ONE: u32 = 1;
/// The rpc row's largest frame (and its rings' largest record: a server's receive buffer
/// holds the largest record its ring can carry).
const FRAME: usize = 4096;
/// Polls before an rpc ring's receiver would sleep: high enough that it never does between
/// two calls (iceoryx2's request-response is polled too).
const RPC_SPIN: u32 = 10_000_000;
/// The default payload sizes of the `pubsub` row.
const SIZES: [usize; 7] = [64, 1024, 4096, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024];

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    // Best effort: a machine with one CPU runs unpinned (and says so in the header).
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A ring's capacity for `row`: the power of two that holds `records` records of its size
/// (a record takes at most half a ring, so 2 is the least), at least 64 KiB; the rpc row:
/// 8 KiB, so that its largest record fits the server's [`FRAME`] buffer. Both sides compute
/// it from the same arguments.
fn ring_capacity(row: Row, records: usize) -> usize {
    match row {
        Row::Rpc => 8 * 1024,
        r => (records.max(2) * (r.size() + 64)).next_power_of_two().max(64 * 1024),
    }
}

/// The object names of one row: unique per process and row.
fn names(tag: &str, pid: u32) -> (String, String) {
    (format!("/ember-peers-{pid}-{tag}-a2b"), format!("/ember-peers-{pid}-{tag}-b2a"))
}

fn service_name(name: &str) -> Result<ServiceName, String> {
    ServiceName::new(name.trim_start_matches('/')).map_err(err)
}

/// A row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    PubSub(usize),
    /// Publish-subscribe with the payload written in place and read in place.
    Loan(usize),
    Rpc,
    Event,
}

impl Row {
    fn tag(self) -> String {
        match self {
            Row::PubSub(size) => format!("pubsub-{size}"),
            Row::Loan(size) => format!("loan-{size}"),
            Row::Rpc => "rpc".into(),
            Row::Event => "event".into(),
        }
    }

    fn parse(tag: &str) -> Result<Row, String> {
        match tag {
            "rpc" => Ok(Row::Rpc),
            "event" => Ok(Row::Event),
            t => {
                let size = |prefix: &str| t.strip_prefix(prefix).and_then(|s| s.parse::<usize>().ok());
                size("pubsub-").map(Row::PubSub).or(size("loan-").map(Row::Loan)).ok_or(format!("unknown row {t}"))
            }
        }
    }

    /// The payload size each message carries.
    fn size(self) -> usize {
        match self {
            Row::PubSub(size) | Row::Loan(size) => size,
            Row::Rpc | Row::Event => 8,
        }
    }
}

/// Which system a chunk runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Ember,
    Iceoryx2,
}

/// One side's endpoints of a row, both systems.
struct Side {
    row: Row,
    ember: EmberSide,
    iox: IoxSide,
}

// One per row, never moved in a loop: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum EmberSide {
    /// `in_place`: records built with a grant and read with a peek (the loan row).
    Rings {
        tx: SpscSender,
        rx: SpscReceiver,
        spin: bool,
        in_place: bool,
    },
    RpcClient(Box<Client<ShmLink, 1, 64, FRAME>>),
    RpcServer(Box<Server<ShmLink, FRAME, FRAME>>),
}

#[allow(clippy::large_enum_variant)]
enum IoxSide {
    PubSub {
        publisher: iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>,
        subscriber: iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8], ()>,
        /// The loan row: the payload is read in place, not copied out.
        in_place: bool,
    },
    Client(iceoryx2::port::client::Client<ipc::Service, u64, (), u64, ()>),
    Server(iceoryx2::port::server::Server<ipc::Service, u64, (), u64, ()>),
    Event {
        notifier: iceoryx2::port::notifier::Notifier<ipc::Service>,
        listener: iceoryx2::port::listener::Listener<ipc::Service>,
    },
}

/// The iceoryx2 services of a row (kept alive as long as the ports).
#[allow(dead_code)]
enum IoxServices {
    PubSub(
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>,
    ),
    Rpc(iceoryx2::service::port_factory::request_response::PortFactory<ipc::Service, u64, (), u64, ()>),
    Event(
        iceoryx2::service::port_factory::event::PortFactory<ipc::Service>,
        iceoryx2::service::port_factory::event::PortFactory<ipc::Service>,
    ),
}

/// Opens (or creates) the iceoryx2 services of `row` and this side's ports. `first` is
/// the measuring side: it publishes on a2b and subscribes to b2a (the peer the other way),
/// and is the rpc client.
fn iox_side(
    node: &Node<ipc::Service>,
    row: Row,
    a2b: &str,
    b2a: &str,
    first: bool,
) -> Result<(IoxServices, IoxSide), String> {
    let (mine, theirs) = if first { (a2b, b2a) } else { (b2a, a2b) };
    match row {
        Row::PubSub(size) | Row::Loan(size) => {
            let open = |name: &str| {
                node.service_builder(&service_name(name)?)
                    .publish_subscribe::<[u8]>()
                    .history_size(0)
                    .subscriber_max_buffer_size(2)
                    .max_publishers(1)
                    .max_subscribers(1)
                    .open_or_create()
                    .map_err(err)
            };
            let (out, inn) = (open(mine)?, open(theirs)?);
            let publisher = out.publisher_builder().initial_max_slice_len(size).create().map_err(err)?;
            let subscriber = inn.subscriber_builder().create().map_err(err)?;
            let in_place = matches!(row, Row::Loan(_));
            Ok((IoxServices::PubSub(out, inn), IoxSide::PubSub { publisher, subscriber, in_place }))
        }
        Row::Rpc => {
            let service = node
                .service_builder(&service_name(a2b)?)
                .request_response::<u64, u64>()
                .max_clients(1)
                .max_servers(1)
                .open_or_create()
                .map_err(err)?;
            let side = if first {
                IoxSide::Client(service.client_builder().create().map_err(err)?)
            } else {
                IoxSide::Server(service.server_builder().create().map_err(err)?)
            };
            Ok((IoxServices::Rpc(service), side))
        }
        Row::Event => {
            let open = |name: &str| {
                node.service_builder(&service_name(name)?)
                    .event()
                    .max_notifiers(1)
                    .max_listeners(1)
                    .open_or_create()
                    .map_err(err)
            };
            let (out, inn) = (open(mine)?, open(theirs)?);
            let notifier = out.notifier_builder().create().map_err(err)?;
            let listener = inn.listener_builder().create().map_err(err)?;
            Ok((IoxServices::Event(out, inn), IoxSide::Event { notifier, listener }))
        }
    }
}

/// The Ember side of `row` from the two rings.
fn ember_side(row: Row, tx: SpscSender, mut rx: SpscReceiver, first: bool) -> Result<EmberSide, String> {
    Ok(match row {
        Row::PubSub(_) => EmberSide::Rings { tx, rx, spin: true, in_place: false },
        Row::Loan(_) => EmberSide::Rings { tx, rx, spin: true, in_place: true },
        Row::Event => {
            rx.set_spin_before_sleep(0);
            EmberSide::Rings { tx, rx, spin: false, in_place: false }
        }
        Row::Rpc => {
            rx.set_spin_before_sleep(RPC_SPIN);
            let link = ShmLink { tx, rx };
            if first {
                EmberSide::RpcClient(Box::new(Client::new(link).map_err(err)?))
            } else {
                EmberSide::RpcServer(Box::new(Server::new(link).map_err(err)?))
            }
        }
    })
}

/// Polls `f` until it gives something, failing after [`TIMEOUT`].
fn poll<T>(mut f: impl FnMut() -> Result<Option<T>, String>) -> Result<T, String> {
    let start = Instant::now();
    let mut n = 0u32;
    loop {
        if let Some(t) = f()? {
            return Ok(t);
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(1 << 14) && start.elapsed() > TIMEOUT {
            return Err("no answer within 30 s (is the peer alive?)".into());
        }
        core::hint::spin_loop();
    }
}

impl Side {
    /// One exchange as the measuring side: send `msg`, take the answer into `out`. `i` is
    /// the iteration (the rpc request).
    fn ping(&mut self, sys: System, i: u64, msg: &[u8], out: &mut [u8]) -> Result<(), String> {
        match sys {
            System::Ember => match &mut self.ember {
                EmberSide::Rings { tx, rx, in_place: true, .. } => {
                    let mut g = tx.try_grant(msg.len()).map_err(err)?;
                    g.put(msg).map_err(err)?;
                    g.commit().map_err(err)?;
                    let n = read_in_place(rx.peek_spin(Some(TIMEOUT)).map_err(err)?, out)?;
                    check_len(n, msg.len())
                }
                EmberSide::Rings { tx, rx, spin, .. } => {
                    tx.try_send(msg).map_err(err)?;
                    let n = if *spin { rx.recv_spin(out, Some(TIMEOUT)) } else { rx.recv(out, Some(TIMEOUT)) }
                        .map_err(err)?;
                    check_len(n, msg.len())
                }
                EmberSide::RpcClient(c) => {
                    let r: u64 = c.call(ADD_ONE, &i, Some(TIMEOUT)).map_err(err)?;
                    check_rpc(r, i)
                }
                EmberSide::RpcServer(_) => Err("the server does not ping".into()),
            },
            System::Iceoryx2 => match &mut self.iox {
                IoxSide::PubSub { publisher, subscriber, in_place } => {
                    let sample = publisher.loan_slice_uninit(msg.len()).map_err(err)?;
                    sample.write_from_slice(msg).send().map_err(err)?;
                    poll(|| Ok(subscriber.receive().map_err(err)?.map(|s| take(s.payload(), out, *in_place))))
                        .and_then(|n| check_len(n, msg.len()))
                }
                IoxSide::Client(c) => {
                    let pending = c.send_copy(i).map_err(err)?;
                    let r = poll(|| Ok(pending.receive().map_err(err)?.map(|r| *r.payload())))?;
                    check_rpc(r, i)
                }
                IoxSide::Event { notifier, listener } => {
                    notifier.notify().map_err(err)?;
                    wait_event(listener)
                }
                IoxSide::Server(_) => Err("the server does not ping".into()),
            },
        }
    }

    /// One exchange as the peer: take a message, answer it.
    fn pong(&mut self, sys: System, buf: &mut [u8]) -> Result<(), String> {
        match sys {
            System::Ember => match &mut self.ember {
                EmberSide::Rings { tx, rx, in_place: true, .. } => {
                    let n = read_in_place(rx.peek_spin(Some(TIMEOUT)).map_err(err)?, buf)?;
                    let mut g = tx.try_grant(n).map_err(err)?;
                    g.put(&buf[..n]).map_err(err)?;
                    g.commit().map_err(err)
                }
                EmberSide::Rings { tx, rx, spin, .. } => {
                    let n = if *spin { rx.recv_spin(buf, Some(TIMEOUT)) } else { rx.recv(buf, Some(TIMEOUT)) }
                        .map_err(err)?;
                    tx.try_send(&buf[..n]).map_err(err)
                }
                EmberSide::RpcServer(s) => {
                    let mut handler = |kind: u32, payload: &[u8], r: &mut ember_linux::rpc::Responder<'_>| {
                        if kind != ADD_ONE {
                            return Err(Failure::new(Failure::UNKNOWN_KIND, "unknown kind"));
                        }
                        let i: u64 = ember_linux::rpc::decode(payload)?;
                        r.respond(&i.wrapping_add(1))
                    };
                    s.serve_one(Some(TIMEOUT), &mut handler).map(drop).map_err(err)
                }
                EmberSide::RpcClient(_) => Err("the client does not pong".into()),
            },
            System::Iceoryx2 => match &mut self.iox {
                IoxSide::PubSub { publisher, subscriber, in_place } => {
                    let n = poll(|| Ok(subscriber.receive().map_err(err)?.map(|s| take(s.payload(), buf, *in_place))))?;
                    let sample = publisher.loan_slice_uninit(n).map_err(err)?;
                    sample.write_from_slice(&buf[..n]).send().map(drop).map_err(err)
                }
                IoxSide::Server(s) => {
                    let request = poll(|| s.receive().map_err(err))?;
                    let i = *request.payload();
                    request.send_copy(i.wrapping_add(1)).map_err(err)
                }
                IoxSide::Event { notifier, listener } => {
                    wait_event(listener)?;
                    notifier.notify().map(drop).map_err(err)
                }
                IoxSide::Client(_) => Err("the client does not pong".into()),
            },
        }
    }
}

/// Takes a received payload into `out` (copied whole, or for the loan row its first and
/// last 8 bytes only, read in place); returns its length.
fn take(p: &[u8], out: &mut [u8], in_place: bool) -> usize {
    if in_place {
        let k = p.len().min(8);
        out[..k].copy_from_slice(&p[..k]);
        out[p.len() - k..p.len()].copy_from_slice(&p[p.len() - k..]);
    } else {
        out[..p.len()].copy_from_slice(p);
    }
    p.len()
}

/// The loan row's read of an Ember record: its first and last 8 bytes, in place, then the
/// record released; returns its length.
fn read_in_place(p: ember_linux::shm::RecvPeek<'_>, out: &mut [u8]) -> Result<usize, String> {
    let n = p.len();
    let k = n.min(8);
    p.read(0, &mut out[..k]).map_err(err)?;
    p.read(n - k, &mut out[n - k..n]).map_err(err)?;
    p.release();
    Ok(n)
}

fn wait_event(listener: &iceoryx2::port::listener::Listener<ipc::Service>) -> Result<(), String> {
    match listener.timed_wait(|_| {}, TIMEOUT).map_err(err)? {
        0 => Err("no event within 30 s (is the peer alive?)".into()),
        _ => Ok(()),
    }
}

fn check_len(n: usize, want: usize) -> Result<(), String> {
    if n == want { Ok(()) } else { Err(format!("{n} bytes came back for {want}")) }
}

fn check_rpc(r: u64, i: u64) -> Result<(), String> {
    if r == i.wrapping_add(1) { Ok(()) } else { Err(format!("rpc: {r} for {i} + 1")) }
}

/// The peer process: `peer <row> <parent pid> <ring records>`.
fn peer(args: &[String]) -> Result<(), String> {
    pin(1);
    set_log_level(LogLevel::Error);
    let row = Row::parse(args.first().ok_or("peer: no row")?)?;
    let pid: u32 = args.get(1).and_then(|p| p.parse().ok()).ok_or("peer: no pid")?;
    let records: usize = args.get(2).and_then(|p| p.parse().ok()).ok_or("peer: no ring size")?;
    let (a2b, b2a) = names(&row.tag(), pid);
    let rx = SpscReceiver::open(&a2b, FP).map_err(err)?;
    let tx = SpscSender::create(Backing::Named(&b2a), ring_capacity(row, records), FP).map_err(err)?;
    let node = NodeBuilder::new().create::<ipc::Service>().map_err(err)?;
    let (_services, iox) = iox_side(&node, row, &a2b, &b2a, false)?;
    let mut side = Side { row, ember: ember_side(row, tx, rx, false)?, iox };
    let mut stdout = std::io::stdout().lock();
    let say =
        |out: &mut std::io::StdoutLock<'_>, what: &str| writeln!(out, "{what}").and_then(|()| out.flush()).map_err(err);
    say(&mut stdout, "ready")?;
    let mut buf = vec![0u8; side.row.size().max(64)];
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(err)?;
        let mut words = line.split_whitespace();
        let sys = match words.next() {
            Some("e") => System::Ember,
            Some("i") => System::Iceoryx2,
            _ => break,
        };
        let n: usize = words.next().and_then(|w| w.parse().ok()).ok_or(format!("peer: bad line {line:?}"))?;
        say(&mut stdout, "ok")?;
        for _ in 0..n {
            side.pong(sys, &mut buf)?;
        }
    }
    Ok(())
}

/// The measuring side's handle on its peer.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(row: Row, records: usize) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(err)?;
        let mut child = Command::new(exe)
            .args(["peer", &row.tag(), &std::process::id().to_string(), &records.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(err)?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut peer = Peer { child, stdin, stdout };
        peer.expect("ready")?;
        Ok(peer)
    }

    fn expect(&mut self, what: &str) -> Result<(), String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(err)?;
        if line.trim() != what {
            return Err(format!("peer said {line:?}, not {what:?} (it failed: see above)"));
        }
        Ok(())
    }

    fn start(&mut self, sys: System, n: usize) -> Result<(), String> {
        let c = if sys == System::Ember { 'e' } else { 'i' };
        writeln!(self.stdin, "{c} {n}").and_then(|()| self.stdin.flush()).map_err(err)?;
        self.expect("ok")
    }

    fn finish(mut self) -> Result<(), String> {
        writeln!(self.stdin, "q").map_err(err)?;
        drop(self.stdin);
        let status = self.child.wait().map_err(err)?;
        if status.success() { Ok(()) } else { Err(format!("peer exited with {status}")) }
    }
}

/// p50 and p99 of `samples` (ns), sorted in place.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

/// One row's samples, Ember's and iceoryx2's.
struct Measured {
    ember: Vec<f64>,
    iox: Vec<f64>,
}

fn measure(row: Row, chunks: usize, per_chunk: usize, records: usize) -> Result<Measured, String> {
    let (a2b, b2a) = names(&row.tag(), std::process::id());
    let tx = SpscSender::create(Backing::Named(&a2b), ring_capacity(row, records), FP).map_err(err)?;
    let node = NodeBuilder::new().create::<ipc::Service>().map_err(err)?;
    let (_services, iox) = iox_side(&node, row, &a2b, &b2a, true)?;
    let mut peer = Peer::spawn(row, records)?;
    let rx = SpscReceiver::open(&b2a, FP).map_err(err)?;
    let mut side = Side { row, ember: ember_side(row, tx, rx, true)?, iox };
    let msg = vec![0x5Au8; row.size()];
    let mut out = vec![0u8; row.size().max(64)];
    let mut m = Measured { ember: Vec::new(), iox: Vec::new() };
    let half = if row == Row::Rpc { 1.0 } else { 2.0 };
    let mut i = 0u64;
    // Chunk 0 is the warm-up of both systems.
    for chunk in 0..=chunks {
        let order = if chunk % 2 == 0 { [System::Ember, System::Iceoryx2] } else { [System::Iceoryx2, System::Ember] };
        for sys in order {
            peer.start(sys, per_chunk)?;
            let samples = if sys == System::Ember { &mut m.ember } else { &mut m.iox };
            for _ in 0..per_chunk {
                let t = Instant::now();
                side.ping(sys, i, &msg, &mut out)?;
                let ns = t.elapsed().as_nanos() as f64 / half;
                i += 1;
                if chunk > 0 {
                    samples.push(ns);
                }
            }
        }
    }
    peer.finish()?;
    Ok(m)
}

fn usage() -> ! {
    eprintln!(
        "usage: ember-peers-bench [--quick] [--sizes 64,4096,...] [--only pubsub,loan,rpc,event] [--chunks N] [--ring-records N]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "peer") {
        if let Err(e) = peer(&args[1..]) {
            eprintln!("ember-peers-bench peer: {e}");
            std::process::exit(1);
        }
        return;
    }
    let (mut quick, mut sizes, mut only, mut chunks) = (false, SIZES.to_vec(), Vec::<String>::new(), 10usize);
    // Ember's rings hold this many records of the row's size (rounded up to a power of two).
    let mut records = 2usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--sizes" => {
                sizes = it
                    .next()
                    .unwrap_or_else(|| usage())
                    .split(',')
                    .map(|s| s.parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            "--only" => only = it.next().unwrap_or_else(|| usage()).split(',').map(str::to_string).collect(),
            "--ring-records" => {
                records = it.next().and_then(|c| c.parse().ok()).filter(|&c| c >= 2).unwrap_or_else(|| usage())
            }
            "--chunks" => chunks = it.next().and_then(|c| c.parse().ok()).filter(|&c| c > 0).unwrap_or_else(|| usage()),
            _ => usage(),
        }
    }
    let want = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    pin(0);
    set_log_level(LogLevel::Error);
    let mut rows: Vec<Row> = Vec::new();
    if want("pubsub") {
        rows.extend(sizes.iter().map(|&s| Row::PubSub(s)));
    }
    if want("loan") {
        rows.extend(sizes.iter().map(|&s| Row::Loan(s)));
    }
    if want("rpc") {
        rows.push(Row::Rpc);
    }
    if want("event") {
        rows.push(Row::Event);
    }
    println!(
        "Ember next to iceoryx2 (0.10), same run, measuring process on CPU 0, peer process on CPU 1{}; \
         {} alternating chunks per system after a warm-up chunk; Ember's rings sized for {records} records \
         (--ring-records); p50/p99 per iteration in µs",
        if cpus < 2 { " (ONE CPU: unpinned, figures meaningless)" } else { "" },
        if quick { 2 } else { chunks }
    );
    println!(
        "{:<22} {:>10} {:>10} {:>12} {:>12} {:>16}",
        "row", "Ember p50", "Ember p99", "iceoryx2 p50", "iceoryx2 p99", "Ember/iceoryx2"
    );
    let mut failed = false;
    for row in rows {
        let per_chunk = match row {
            Row::PubSub(s) | Row::Loan(s) if s > 64 * 1024 => 200,
            Row::Event => 500,
            _ => 2000,
        } / if quick { 10 } else { 1 };
        let label = match row {
            Row::PubSub(s) => format!("pubsub {}", human(s)),
            Row::Loan(s) => format!("loan {}", human(s)),
            Row::Rpc => "rpc round trip".into(),
            Row::Event => "event (blocking)".into(),
        };
        match measure(row, if quick { 2 } else { chunks }, per_chunk.max(10), records) {
            Ok(mut m) => {
                let (e50, e99) = percentiles(&mut m.ember);
                let (i50, i99) = percentiles(&mut m.iox);
                println!(
                    "{:<22} {:>10.2} {:>10.2} {:>12.2} {:>12.2} {:>15.2}×",
                    label,
                    e50 / 1e3,
                    e99 / 1e3,
                    i50 / 1e3,
                    i99 / 1e3,
                    e50 / i50
                );
            }
            Err(e) => {
                println!("{label:<22} failed: {e}");
                failed = true;
            }
        }
    }
    println!("(pubsub and event: one-way, half the round trip; rpc: the round trip)");
    if failed {
        std::process::exit(1);
    }
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}
