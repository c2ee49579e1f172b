//! Cross-process rows for sockets: Unix stream, seqpacket and datagram sockets, TCP and UDP
//! on loopback. Ember (`send_frame`/`recv_frame`) against raw `send`/`recv` of the same
//! bytes on the same kind of socket between the same two pinned processes.
//!
//! Latency: a ping-pong of one message (halved). Throughput: the peer streams messages, the
//! parent times every batch of 256. UDP has no flow control (a receiver that falls behind
//! loses datagrams), so its stream is windowed: the peer waits for a one-byte ack after
//! every few datagrams ([`udp_window`]), in the raw and the Ember runs alike.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Instant;

use ember_linux::net::{self, TcpListener};
use ember_linux::socket::{PacketKind, PacketSocket, StreamSocket};
use ember_linux::{FrameReceiver, FrameSender};
use rustix::fd::{AsFd, OwnedFd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::fdio::{Eof, make_frame_with, read_exact};
use super::harness::{Batches, Pool, now_ns, row, spawn_peer};
use super::{Options, Progress, Row};

/// Datagrams the UDP stream sends before waiting for the receiver's ack: what fits in a
/// default receive buffer (`net.core.rmem_default`, 208 KiB, counted with the kernel's
/// per-packet overhead).
fn udp_window(payload: usize) -> usize {
    if payload > 1024 { 8 } else { 32 }
}

/// A lost UDP datagram must end the run with an error, not hang it.
fn udp_timeout(fd: impl AsFd) -> Result<(), String> {
    rustix::net::sockopt::set_socket_timeout(
        fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(5)),
    )
    .map_err(s)
}

/// Largest message of these rows (a 4 KiB payload's frame fits).
const MAX: usize = 8192;

/// The socket kinds measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    UdsStream,
    UdsSeqpacket,
    UdsDgram,
    Tcp,
    Udp,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::UdsStream, Kind::UdsSeqpacket, Kind::UdsDgram, Kind::Tcp, Kind::Udp];

    fn name(self) -> &'static str {
        match self {
            Kind::UdsStream => "uds-stream",
            Kind::UdsSeqpacket => "uds-seqpacket",
            Kind::UdsDgram => "uds-dgram",
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
        }
    }

    /// The frame for a `payload`-byte message, with the payload checksum a sender of this
    /// kind writes by default: on TCP and UDP, not on Unix sockets.
    fn frame(self, payload: usize) -> Vec<u8> {
        let integrity = match self {
            Kind::Tcp | Kind::Udp => ember_core::frame::Integrity::Checked,
            Kind::UdsStream | Kind::UdsSeqpacket | Kind::UdsDgram => ember_core::frame::Integrity::Unchecked,
        };
        make_frame_with(payload, integrity)
    }

    fn parse(s: &str) -> Result<Kind, String> {
        Kind::ALL.into_iter().find(|k| k.name() == s).ok_or(format!("unknown socket kind {s}"))
    }

    fn stream(self) -> bool {
        matches!(self, Kind::UdsStream | Kind::Tcp)
    }
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The parent's end of a connection to a peer being spawned: for Unix sockets a
/// socketpair (the peer's end is its stdin); for TCP a listener, for UDP a bound socket
/// (the peer gets the address).
enum Setup {
    Pair(OwnedFd, OwnedFd),
    Tcp(TcpListener),
    Udp(PacketSocket),
}

impl Setup {
    fn new(kind: Kind) -> Result<Setup, String> {
        let pair = |t| {
            rustix::net::socketpair(AddressFamily::UNIX, t, SocketFlags::CLOEXEC, None)
                .map(|(a, b)| Setup::Pair(a, b))
                .map_err(s)
        };
        let lo: SocketAddr = "127.0.0.1:0".parse().map_err(s)?;
        match kind {
            Kind::UdsStream => pair(SocketType::STREAM),
            Kind::UdsSeqpacket => pair(SocketType::SEQPACKET),
            Kind::UdsDgram => pair(SocketType::DGRAM),
            Kind::Tcp => Ok(Setup::Tcp(TcpListener::bind(lo).map_err(s)?)),
            Kind::Udp => Ok(Setup::Udp(net::udp_bind(lo).map_err(s)?)),
        }
    }

    /// The address argument and stdin for the peer.
    fn peer_side(&mut self) -> Result<(String, Stdio), String> {
        match self {
            Setup::Pair(_, theirs) => Ok(("-".into(), Stdio::from(theirs.try_clone().map_err(s)?))),
            Setup::Tcp(l) => Ok((l.local_addr().map_err(s)?.to_string(), Stdio::null())),
            Setup::Udp(u) => Ok((net::socket_local_addr(&*u).map_err(s)?.to_string(), Stdio::null())),
        }
    }

    /// The parent's connected socket, once the peer is up.
    fn connect(self) -> Result<OwnedFd, String> {
        match self {
            Setup::Pair(ours, _) => Ok(ours),
            Setup::Tcp(l) => Ok(l.accept::<64>().map_err(s)?.0.into_fd()),
            Setup::Udp(mut u) => {
                // The peer says hello first; connect to where it came from.
                let mut buf = vec![0u8; u.max_frame()];
                let (_, from) = u.recv_frame_from(&mut buf).map_err(s)?;
                let from = SocketAddr::try_from(from.ok_or("hello without an address")?).map_err(s)?;
                u.connect(&from).map_err(s)?;
                udp_timeout(&u)?;
                Ok(u.into_fd())
            }
        }
    }
}

/// The peer's connected socket: its stdin for Unix sockets, or a connection to `addr`.
fn peer_connect(kind: Kind, addr: &str) -> Result<OwnedFd, String> {
    match kind {
        Kind::UdsStream | Kind::UdsSeqpacket | Kind::UdsDgram => rustix::stdio::stdin().try_clone_to_owned().map_err(s),
        Kind::Tcp => {
            let sock: StreamSocket<64> = net::tcp_connect(addr.parse().map_err(s)?, None).map_err(s)?;
            Ok(sock.into_fd())
        }
        Kind::Udp => {
            let mut u = net::udp_bind("127.0.0.1:0".parse().map_err(s)?).map_err(s)?;
            u.connect(&addr.parse::<SocketAddr>().map_err(s)?).map_err(s)?;
            u.send_frame(&Kind::Udp.frame(0)).map_err(s)?;
            udp_timeout(&u)?;
            Ok(u.into_fd())
        }
    }
}

/// An Ember endpoint over a connected socket of `kind`.
enum Ember {
    Stream(Box<StreamSocket<{ 64 * 1024 }>>),
    Packet(PacketSocket),
}

impl Ember {
    fn new(kind: Kind, fd: OwnedFd) -> Ember {
        match kind {
            k if k.stream() => Ember::Stream(Box::new(StreamSocket::from_fd(fd))),
            Kind::UdsSeqpacket => Ember::Packet(PacketSocket::from_fd(fd, PacketKind::Seqpacket, MAX)),
            _ => Ember::Packet(PacketSocket::from_fd(fd, PacketKind::Datagram, MAX)),
        }
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        match self {
            Ember::Stream(x) => x.send_frame(frame),
            Ember::Packet(x) => x.send_frame(frame),
        }
        .map_err(s)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, String> {
        match self {
            Ember::Stream(x) => x.recv_frame(buf),
            Ember::Packet(x) => x.recv_frame(buf),
        }
        .map_err(s)
    }

    fn fd(&self) -> rustix::fd::BorrowedFd<'_> {
        match self {
            Ember::Stream(x) => x.as_fd(),
            Ember::Packet(x) => x.as_fd(),
        }
    }
}

/// Raw `send(MSG_NOSIGNAL)` of all of `buf` (one message on a packet socket).
fn raw_send(fd: impl AsFd, mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match rustix::net::send(&fd, buf, SendFlags::NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// Raw receive of one message of `buf.len()` bytes: `read_exact` on a stream, one `recv`
/// on a packet socket.
fn raw_recv(kind: Kind, fd: impl AsFd, buf: &mut [u8]) -> Result<(), String> {
    if kind.stream() {
        return read_exact(fd, buf, Eof::Fail);
    }
    loop {
        match rustix::net::recv(&fd, &mut *buf, RecvFlags::empty()) {
            Ok((n, _)) if n == buf.len() => return Ok(()),
            Ok((n, _)) => return Err(format!("message of {n} bytes")),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn spawn(
    cpu: usize,
    role: &str,
    kind: Kind,
    ember: bool,
    n: usize,
    payload: usize,
) -> Result<(std::process::Child, Setup), String> {
    let mut setup = Setup::new(kind)?;
    let (addr, stdin) = setup.peer_side()?;
    let mode = if ember { "ember" } else { "raw" };
    let child =
        spawn_peer(cpu, &[role, kind.name(), mode, &n.to_string(), &payload.to_string(), &addr], stdin, Stdio::null())?;
    Ok((child, setup))
}

fn finish(mut child: std::process::Child) -> Result<(), String> {
    let status = child.wait().map_err(s)?;
    if status.success() { Ok(()) } else { Err(format!("peer failed: {status}")) }
}

/// One-way latency samples (ping-pong, halved).
fn latency(cpu: usize, kind: Kind, ember: bool, iters: usize, payload: usize) -> Result<Vec<f64>, String> {
    let (child, setup) = spawn(cpu, "sock-echo", kind, ember, iters, payload)?;
    let fd = setup.connect()?;
    let frame = kind.frame(payload);
    let mut out = vec![0u8; 64 * 1024];
    let mut samples = Vec::with_capacity(iters);
    if ember {
        let mut ep = Ember::new(kind, fd);
        for _ in 0..iters {
            let t = Instant::now();
            ep.send(&frame)?;
            ep.recv(&mut out)?;
            samples.push(now_ns(t) / 2.0);
        }
    } else {
        for _ in 0..iters {
            let t = Instant::now();
            raw_send(&fd, &frame)?;
            raw_recv(kind, &fd, &mut out[..frame.len()])?;
            samples.push(now_ns(t) / 2.0);
        }
    }
    finish(child)?;
    Ok(samples)
}

/// Per-message samples of a stream of `count` messages from the peer.
fn throughput(cpu: usize, kind: Kind, ember: bool, count: usize, payload: usize) -> Result<Vec<f64>, String> {
    let (child, setup) = spawn(cpu, "sock-flood", kind, ember, count, payload)?;
    let fd = setup.connect()?;
    let len = kind.frame(payload).len();
    let mut batches = Batches::new(count);
    let mut out = vec![0u8; 64 * 1024];
    let ack = |fd: rustix::fd::BorrowedFd<'_>, done: usize| -> Result<(), String> {
        if kind == Kind::Udp && done.is_multiple_of(udp_window(payload)) { raw_send(fd, b"k") } else { Ok(()) }
    };
    if ember {
        let mut ep = Ember::new(kind, fd);
        for done in 1..=count {
            ep.recv(&mut out)?;
            batches.count(1);
            ack(ep.fd(), done)?;
        }
    } else if kind.stream() {
        // Read what the socket has; count whole messages (the kernel's cost).
        let (mut bytes, mut done) = (0usize, 0usize);
        while done < count {
            let n = match rustix::net::recv(&fd, &mut out[..], RecvFlags::empty()) {
                Ok((0, _)) => return Err("peer closed early".into()),
                Ok((n, _)) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.to_string()),
            };
            bytes += n;
            done += bytes / len;
            batches.count(bytes / len);
            bytes %= len;
        }
    } else {
        for done in 1..=count {
            raw_recv(kind, &fd, &mut out[..len])?;
            batches.count(1);
            ack(fd.as_fd(), done)?;
        }
    }
    finish(child)?;
    Ok(batches.samples)
}

/// This module's peer roles, for [`super::harness::peer`]: `None` for a role that is not
/// one of them.
pub fn peer(role: &str, args: &[String]) -> Option<Result<(), String>> {
    matches!(role, "sock-echo" | "sock-flood").then(|| play(role, args))
}

/// The peer roles of this module: `sock-echo` and `sock-flood`, each
/// `KIND MODE N PAYLOAD ADDR`.
fn play(role: &str, args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("{role}: missing argument {i}"));
    let kind = Kind::parse(&arg(0)?)?;
    let ember = arg(1)? == "ember";
    let n: usize = arg(2)?.parse().map_err(s)?;
    let payload: usize = arg(3)?.parse().map_err(s)?;
    let fd = peer_connect(kind, &arg(4)?)?;
    let frame = kind.frame(payload);
    let mut buf = vec![0u8; 64 * 1024];
    match role {
        "sock-echo" => {
            if ember {
                let mut ep = Ember::new(kind, fd);
                for _ in 0..n {
                    let got = ep.recv(&mut buf)?;
                    ep.send(&buf[..got])?;
                }
            } else {
                for _ in 0..n {
                    raw_recv(kind, &fd, &mut buf[..frame.len()])?;
                    raw_send(&fd, &buf[..frame.len()])?;
                }
            }
        }
        "sock-flood" => {
            let mut ep = if ember { Some(Ember::new(kind, fd.try_clone().map_err(s)?)) } else { None };
            for sent in 1..=n {
                match &mut ep {
                    Some(ep) => ep.send(&frame)?,
                    None => raw_send(&fd, &frame)?,
                }
                if kind == Kind::Udp && sent.is_multiple_of(udp_window(payload)) {
                    raw_recv(kind, &fd, &mut buf[..1])?;
                }
            }
        }
        other => return Err(format!("unknown peer role {other}")),
    }
    Ok(())
}

const NOTE: &str = "ping-pong between two processes (one-way = half) or a stream (per message over batches of 256; UDP windowed by 32 (8 at 4 KiB) with an ack); raw = send/recv of the same bytes; target ratio <= 1.10";

/// Runs the socket rows on `cpus[1]` (the peer) and this process.
pub fn run(opts: &Options, cpus: &[usize], progress: &Progress, rows: &mut Vec<Row>) -> Result<(), String> {
    // Row families: "<kind>/" (latency), "<kind>-flood/" (64 B stream), "<kind>-flood-4k/".
    let mut cases: Vec<(String, Kind, bool, usize, Pool, Pool)> = Vec::new();
    for kind in Kind::ALL {
        let payload = opts.size.unwrap_or(64).min(4096);
        cases.push((format!("{}/", kind.name()), kind, false, payload, Pool::default(), Pool::default()));
        cases.push((format!("{}-flood/", kind.name()), kind, true, 64, Pool::default(), Pool::default()));
        cases.push((format!("{}-flood-4k/", kind.name()), kind, true, 4096, Pool::default(), Pool::default()));
    }
    cases.retain(|c| opts.selected(&c.0));
    if cases.is_empty() {
        return Ok(());
    }
    let b = *cpus.get(1).ok_or("the socket rows need two CPUs (see --cpus); skipped")?;
    let rounds = opts.pick(5, 3, 1);
    let iters = opts.pick(5_000, 1_500, 20);
    let count = opts.pick(1 << 16, 1 << 14, 16 * super::harness::BATCH);
    for round in 1..=rounds {
        for (name, kind, flood, payload, raw, ember) in cases.iter_mut() {
            for (is_ember, pool) in [(false, &mut *raw), (true, &mut *ember)] {
                let who = if is_ember { "ember" } else { "raw" };
                progress.step(&format!("{name}{who} (round {round}/{rounds})"));
                let n = if *payload >= 4096 { count / 4 } else { count };
                pool.add(if *flood {
                    throughput(b, *kind, is_ember, n, *payload)
                } else {
                    latency(b, *kind, is_ember, iters, *payload)
                })?;
            }
        }
    }
    for (name, _, _, payload, raw, ember) in cases.iter_mut() {
        if let (Some(r), Some(e)) = (raw.stats(), ember.stats()) {
            let raw_name = format!("{name}raw");
            row(rows, &raw_name, *payload + 24, r, None, NOTE);
            row(rows, &format!("{name}ember"), *payload + 24, e, Some((raw_name.as_str(), r)), NOTE);
        }
    }
    Ok(())
}
