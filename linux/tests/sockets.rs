//! Sockets and the poller: the conformance suite of `common/suite.rs` over every socket kind
//! (Unix stream, seqpacket and datagram; TCP and UDP on loopback), in one process and
//! across real separate processes; `socat` as client and as server; uid allow-lists against
//! a peer running as another user; fd passing to another process; every error path; the
//! poller over five kinds of fd; and zero allocations on every send/receive path.
//!
//! Its own `main` (`harness = false`): the tests spawn this binary again with
//! `--peer <role> ...` as the other process.

mod common;
use ember_test_support as counting;
#[path = "common/suite.rs"]
mod suite;

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ember_linux::net::{self, TcpListener};
use ember_linux::poll::{Interest, Poller, Timer};
use ember_linux::socket::{MAX_RECV_FDS, PacketKind, PacketSocket, StreamSocket};
use ember_linux::uds::{self, UdsListener, UnixName};
use ember_linux::{Endpoint, Error, FrameReceiver, FrameSender, Integrity};
use suite::*;

fn unique_abstract(tag: &str) -> String {
    unique_name(tag)
}

const LOOPBACK: &str = "127.0.0.1:0";

fn loopback() -> SocketAddr {
    LOOPBACK.parse().unwrap()
}

/// Retries `f` until it succeeds or 10 s pass (a peer that is still starting).
fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> T {
    let started = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("gave up after 10 s: {e}"),
        }
    }
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ---- the conformance suite, in one process ----------------------------------------------

/// What a socket sender checks by default: payloads on TCP and UDP, not on Unix sockets.
fn medium_default(name: &str) -> Integrity {
    if name == "tcp" || name == "udp" { Integrity::Checked } else { Integrity::Unchecked }
}

fn stream_suite<const N: usize>(name: &'static str, mut tx: StreamSocket<N>, mut rx: StreamSocket<N>) {
    let caps = Caps { name, max_payload: N - 64, integrity: medium_default(name) };
    core_suite(&caps, &mut tx, &mut rx);
    small_buffer_that_fits(&caps, &mut tx, &mut rx);
    timed_receive(&caps, &mut tx, &mut rx);
    timed_receive_keeps_a_partial_frame(&tx, &mut rx);
    garbage_between_frames(&tx, &mut rx);
    // The sender closes: the receiver gets the frames sent, then `PeerGone`.
    peer_gone_on_recv(tx, &mut rx);
}

/// `eof`: a seqpacket (the sender's close is end of stream); `gone_on_send`: a send to a
/// closed peer fails at once (not UDP, which learns it from an ICMP message later).
fn packet_suite(name: &'static str, mut tx: PacketSocket, mut rx: PacketSocket, eof: bool, gone_on_send: bool) {
    let caps = Caps { name, max_payload: 8000, integrity: medium_default(name) };
    core_suite(&caps, &mut tx, &mut rx);
    small_buffer_that_fits(&caps, &mut tx, &mut rx);
    timed_receive(&caps, &mut tx, &mut rx);
    if eof {
        // Seqpacket: the sender's close is end of stream.
        let (mut rx2, tx2) = uds::seqpacket_pair().unwrap();
        peer_gone_on_recv(tx2, &mut rx2);
    }
    if gone_on_send {
        peer_gone_on_send(&mut tx, rx);
    }
}

fn conformance_uds_stream() {
    let (a, b) = uds::stream_pair::<{ 16 * 1024 }>().unwrap();
    stream_suite("uds stream pair", a, b);
    // Through a listener on a path, and on an abstract name.
    let path = unique_path("stream");
    let listener = UdsListener::bind_stream(UnixName::Path(&path)).unwrap();
    let tx: StreamSocket = uds::connect_stream(UnixName::Path(&path)).unwrap();
    let (rx, creds) = listener.accept_stream().unwrap();
    assert_eq!((creds.pid, creds.uid), (std::process::id(), rustix::process::getuid().as_raw()));
    stream_suite("uds stream on a path", tx, rx);
    drop(listener);
    assert!(std::fs::symlink_metadata(&path).is_err(), "the owner removes its socket file");
    let name = unique_abstract("stream");
    let listener = UdsListener::bind_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    let tx: StreamSocket = uds::connect_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    let (rx, _) = listener.accept_stream().unwrap();
    stream_suite("uds stream, abstract", tx, rx);
    // Peer gone on send: EPIPE with MSG_NOSIGNAL, no SIGPIPE.
    let (mut tx, rx) = uds::stream_pair::<4096>().unwrap();
    peer_gone_on_send(&mut tx, rx);
}

fn conformance_uds_seqpacket() {
    let (a, b) = uds::seqpacket_pair().unwrap();
    assert_eq!(a.kind(), PacketKind::Seqpacket);
    packet_suite("seqpacket pair", a, b, true, true);
    let name = unique_abstract("seq");
    let listener = UdsListener::bind_seqpacket(UnixName::Abstract(name.as_bytes())).unwrap();
    let tx = uds::connect_seqpacket(UnixName::Abstract(name.as_bytes())).unwrap();
    let (rx, creds) = listener.accept_seqpacket().unwrap();
    assert_eq!(creds.pid, std::process::id());
    packet_suite("seqpacket, abstract listener", tx, rx, true, true);
    // A stream accept on a seqpacket listener is a type error, not a silent mix-up.
    assert!(listener.accept_stream::<4096>().is_err());
}

fn conformance_uds_datagram() {
    let (a, b) = uds::datagram_pair().unwrap();
    packet_suite("datagram pair", a, b, false, true);
    // Bound receiver, unbound sender connected to it.
    let path = unique_path("dgram");
    let rx = uds::bind_datagram(UnixName::Path(&path)).unwrap();
    let tx = uds::unbound_datagram().unwrap();
    tx.connect(&rustix::net::SocketAddrUnix::new(path.as_str()).unwrap()).unwrap();
    packet_suite("datagram, bound path", tx, rx, false, true);
    assert!(std::fs::symlink_metadata(&path).is_err(), "the owner removes its socket file");
    // send_frame_to / recv_frame_from, with the sender's address.
    let path_a = unique_path("dga");
    let path_b = unique_path("dgb");
    let mut a = uds::bind_datagram(UnixName::Path(&path_a)).unwrap();
    let mut b = uds::bind_datagram(UnixName::Path(&path_b)).unwrap();
    let mut buf = [0u8; 200];
    let mut out = vec![0u8; b.max_frame()];
    let n = frame(5, 100, &mut buf);
    a.send_frame_to(&buf[..n], &rustix::net::SocketAddrUnix::new(path_b.as_str()).unwrap()).unwrap();
    let (got, from) = b.recv_frame_from(&mut out).unwrap();
    check_frame(5, &out[..got], 100);
    let from = rustix::net::SocketAddrUnix::try_from(from.unwrap()).unwrap();
    assert_eq!(from.path().unwrap().to_str().unwrap(), path_a);
    // Reply to where it came from.
    b.send_frame_to(&out[..got], &from).unwrap();
    let mut out2 = vec![0u8; a.max_frame()];
    let got = a.recv_frame(&mut out2).unwrap();
    check_frame(5, &out2[..got], 100);
}

fn conformance_tcp() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let tx: StreamSocket = net::tcp_connect(addr, Some(Duration::from_secs(5))).unwrap();
    let (rx, peer) = listener.accept().unwrap();
    assert_eq!(peer, net::socket_local_addr(&tx).unwrap());
    assert!(rustix::net::sockopt::tcp_nodelay(&tx).unwrap(), "TCP_NODELAY");
    net::set_keepalive(&tx, Some(Duration::from_secs(30))).unwrap();
    assert!(rustix::net::sockopt::socket_keepalive(&tx).unwrap());
    stream_suite("tcp", tx, rx);
    // Peer gone on send: TCP may accept a first write after the peer closed (it answers
    // with a reset); a later one fails with EPIPE or ECONNRESET, without SIGPIPE.
    let mut tx: StreamSocket<4096> = net::tcp_connect(addr, None).unwrap();
    let (rx, _) = listener.accept::<4096>().unwrap();
    drop(rx);
    assert_eq!(send_until_gone(&mut tx), Err(Error::PeerGone));
}

fn conformance_udp() {
    let rx = net::udp_bind(loopback()).unwrap();
    let tx = net::udp_bind(loopback()).unwrap();
    assert_eq!(tx.max_frame(), net::UDP_MAX_V4);
    tx.connect(&net::socket_local_addr(&rx).unwrap()).unwrap();
    rx.connect(&net::socket_local_addr(&tx).unwrap()).unwrap();
    packet_suite("udp", tx, rx, false, false);
    // A connected UDP peer that is gone: the port-unreachable answer makes a later send
    // (or receive) fail, as PeerGone.
    let mut tx = net::udp_bind(loopback()).unwrap();
    let rx = net::udp_bind(loopback()).unwrap();
    tx.connect(&net::socket_local_addr(&rx).unwrap()).unwrap();
    drop(rx);
    assert_eq!(send_until_gone(&mut tx), Err(Error::PeerGone));
    // The largest UDP payload goes through; one byte more is refused before sending.
    let mut a = net::udp_bind(loopback()).unwrap();
    let mut b = net::udp_bind(loopback()).unwrap();
    a.connect(&net::socket_local_addr(&b).unwrap()).unwrap();
    let mut big = vec![0u8; net::UDP_MAX_V4 + 64];
    let repr = ember_core::frame::FrameRepr {
        flags: ember_core::frame::Flags::empty(),
        kind: 1,
        seq: 1,
        payload_len: net::UDP_MAX_V4 - 24,
    };
    let n = repr.emit_with_payload(&vec![7u8; net::UDP_MAX_V4 - 24], &mut big).unwrap().len();
    a.send_frame(&big[..n]).unwrap();
    let mut out = vec![0u8; b.max_frame()];
    assert_eq!(b.recv_frame(&mut out).unwrap(), net::UDP_MAX_V4);
    let repr = ember_core::frame::FrameRepr { payload_len: net::UDP_MAX_V4 - 23, ..repr };
    let n = repr.emit_with_payload(&vec![7u8; net::UDP_MAX_V4 - 23], &mut big).unwrap().len();
    assert_eq!(a.send_frame(&big[..n]), Err(Error::TooLarge { len: net::UDP_MAX_V4 + 1, max: net::UDP_MAX_V4 }));
}

// ---- across processes -------------------------------------------------------------------

const ECHO_COUNT: u32 = 500;
const ECHO_MAX: usize = 3000;

/// Sends `count` frames and checks each echo (failing, not hanging, if the peer dies).
fn echo_check(tx_rx: &mut (impl FrameSender + FrameReceiver + AsFd), count: u32, max: usize) {
    let mut buf = vec![0u8; max + 64];
    let mut out = vec![0u8; FrameReceiver::max_frame(tx_rx).max(max + 64)];
    for seq in 0..count {
        let n = frame(seq, max, &mut buf);
        tx_rx.send_frame(&buf[..n]).unwrap();
        wait_readable(&*tx_rx);
        let got = tx_rx.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..got], max);
    }
}

/// Echoes `count` frames back (the peer side).
fn echo(tx_rx: &mut (impl FrameSender + FrameReceiver), count: u32) {
    let mut out = vec![0u8; FrameReceiver::max_frame(tx_rx)];
    for _ in 0..count {
        let n = tx_rx.recv_frame(&mut out).unwrap();
        tx_rx.send_frame(&out[..n]).unwrap();
    }
}

fn spawn(args: &[&str]) -> std::process::Child {
    let mut all = vec!["--peer"];
    all.extend_from_slice(args);
    common::me().args(all).spawn().unwrap()
}

fn uds_stream_across_processes() {
    let path = unique_path("xstream");
    let listener = UdsListener::bind_stream(UnixName::Path(&path)).unwrap();
    let mut child = spawn(&["uds-stream-echo", &path, &ECHO_COUNT.to_string()]);
    wait_readable(&listener);
    let (mut s, creds): (StreamSocket, _) = listener.accept_stream().unwrap();
    assert_eq!(creds.pid, child.id(), "SO_PEERCRED names the child");
    echo_check(&mut s, ECHO_COUNT, ECHO_MAX);
    assert!(child.wait().unwrap().success());
}

fn uds_seqpacket_across_processes() {
    let name = unique_abstract("xseq");
    let listener = UdsListener::bind_seqpacket(UnixName::Abstract(name.as_bytes())).unwrap();
    let mut child = spawn(&["uds-seqpacket-echo", &name, &ECHO_COUNT.to_string()]);
    wait_readable(&listener);
    let (mut s, creds) = listener.accept_seqpacket().unwrap();
    assert_eq!(creds.pid, child.id());
    echo_check(&mut s, ECHO_COUNT, ECHO_MAX);
    assert!(child.wait().unwrap().success());
}

fn uds_datagram_across_processes() {
    let (ours, theirs) = (unique_path("xdga"), unique_path("xdgb"));
    let sock = uds::bind_datagram(UnixName::Path(&ours)).unwrap();
    let mut child = spawn(&["uds-dgram-echo", &theirs, &ECHO_COUNT.to_string()]);
    // Connect once the child has bound its socket.
    retry(|| sock.connect(&rustix::net::SocketAddrUnix::new(theirs.as_str()).unwrap()));
    let mut sock = sock;
    echo_check(&mut sock, ECHO_COUNT, ECHO_MAX);
    assert!(child.wait().unwrap().success());
}

fn tcp_across_processes() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut child = spawn(&["tcp-echo", &addr, &ECHO_COUNT.to_string()]);
    wait_readable(&listener);
    let (mut s, _): (StreamSocket, _) = listener.accept().unwrap();
    echo_check(&mut s, ECHO_COUNT, ECHO_MAX);
    assert!(child.wait().unwrap().success());
}

fn udp_across_processes() {
    let mut sock = net::udp_bind(loopback()).unwrap();
    let addr = net::socket_local_addr(&sock).unwrap().to_string();
    let mut child = spawn(&["udp-echo", &addr, &ECHO_COUNT.to_string()]);
    // The child says hello first, so we learn its address.
    wait_readable(&sock);
    let mut out = vec![0u8; sock.max_frame()];
    let (n, from) = sock.recv_frame_from(&mut out).unwrap();
    check_frame(0, &out[..n], 0);
    let from = SocketAddr::try_from(from.unwrap()).unwrap();
    sock.connect(&from).unwrap();
    echo_check(&mut sock, ECHO_COUNT, ECHO_MAX);
    assert!(child.wait().unwrap().success());
}

fn peer(args: &[String]) {
    let count = |i: usize| -> u32 { args[i].parse().unwrap() };
    match args[0].as_str() {
        "uds-stream-echo" => {
            let mut s: StreamSocket = uds::connect_stream(UnixName::Path(&args[1])).unwrap();
            echo(&mut s, count(2));
        }
        "uds-seqpacket-echo" => {
            let mut s = uds::connect_seqpacket(UnixName::Abstract(args[1].as_bytes())).unwrap();
            echo(&mut s, count(2));
        }
        "uds-dgram-echo" => {
            let mut s = uds::bind_datagram(UnixName::Path(&args[1])).unwrap();
            let mut out = vec![0u8; s.max_frame()];
            for _ in 0..count(2) {
                let (n, from) = s.recv_frame_from(&mut out).unwrap();
                let from = rustix::net::SocketAddrUnix::try_from(from.unwrap()).unwrap();
                s.send_frame_to(&out[..n], &from).unwrap();
            }
        }
        "tcp-echo" => {
            let mut s: StreamSocket = net::tcp_connect(args[1].parse().unwrap(), Some(Duration::from_secs(5))).unwrap();
            echo(&mut s, count(2));
        }
        "udp-echo" => {
            let mut s = net::udp_bind(loopback()).unwrap();
            s.connect(&args[1].parse::<SocketAddr>().unwrap()).unwrap();
            let mut buf = [0u8; 64];
            let n = frame(0, 0, &mut buf);
            s.send_frame(&buf[..n]).unwrap();
            echo(&mut s, count(2));
        }
        // fds-child: stdin is a seqpacket socket; receives a pipe end and a memfd, reads
        // the memfd, writes what it read into the pipe, then overwrites the memfd.
        "fds-child" => {
            let fd: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned().unwrap();
            let mut s = PacketSocket::from_fd(fd, PacketKind::Seqpacket, 4096);
            let mut out = vec![0u8; 4096];
            let mut fds: [Option<OwnedFd>; 4] = Default::default();
            let got = s.recv_frame_with_fds(&mut out, &mut fds).unwrap();
            assert_eq!(got.fds, 2);
            check_frame(9, &out[..got.len], 100);
            let pipe_w = fds[0].take().unwrap();
            let memfd = fds[1].take().unwrap();
            let flags = rustix::io::fcntl_getfd(&pipe_w).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "received fds are CLOEXEC");
            let mut content = [0u8; 64];
            let n = rustix::io::pread(&memfd, &mut content, 0).unwrap();
            let msg = format!("child read: {}", std::str::from_utf8(&content[..n]).unwrap());
            rustix::io::write(&pipe_w, msg.as_bytes()).unwrap();
            rustix::fs::ftruncate(&memfd, 0).unwrap();
            rustix::io::pwrite(&memfd, b"child wrote", 0).unwrap();
        }
        // sock-sigpipe-default: SIGPIPE's default action, then a send to a closed peer.
        "sock-sigpipe-default" => {
            // SAFETY: sets SIGPIPE back to its default action in this single-threaded peer.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let (mut tx, rx) = uds::stream_pair::<4096>().unwrap();
            drop(rx);
            let mut buf = [0u8; 64];
            let n = frame(1, 10, &mut buf);
            assert_eq!(tx.send_frame(&buf[..n]), Err(Error::PeerGone));
            let (mut tx, rx) = uds::seqpacket_pair().unwrap();
            drop(rx);
            assert_eq!(tx.send_frame(&buf[..n]), Err(Error::PeerGone));
            println!("survived");
        }
        other => panic!("unknown peer {other}"),
    }
}

// ---- socat as a real peer ---------------------------------------------------------------

/// A file of `count` frames back to back.
fn frames_file(count: u32, max: usize) -> (String, Cleanup) {
    let path = unique_path("frames");
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; max + 64];
    for seq in 0..count {
        let n = frame(seq, max, &mut buf);
        bytes.extend_from_slice(&buf[..n]);
    }
    std::fs::write(&path, bytes).unwrap();
    (path.clone(), Cleanup(path))
}

/// Checks that `path` holds exactly frames 0..count.
fn check_frames_file(path: &str, count: u32, max: usize) {
    let bytes = std::fs::read(path).unwrap();
    let mut rest = &bytes[..];
    for seq in 0..count {
        let (f, r) = ember_core::frame::split(rest).unwrap();
        check_frame(seq, f.as_bytes(), max);
        rest = r;
    }
    assert!(rest.is_empty(), "{} bytes after the frames", rest.len());
}

fn socat(args: &[&str]) -> std::process::Child {
    common::need_tool("socat");
    Command::new("socat").args(args).stderr(Stdio::piped()).spawn().expect("socat (installed by cargo xtask test)")
}

fn wait_ok(child: std::process::Child) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "socat failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Our listener, socat as the client, for a stream endpoint address `client`.
fn socat_client_to_stream<const N: usize>(
    listening: impl AsFd,
    accept: impl FnOnce() -> StreamSocket<N>,
    client: &str,
) {
    let (file, _c) = frames_file(200, 1000);
    let child = socat(&["-u", &format!("OPEN:{file}"), client]);
    wait_readable(listening);
    let mut s = accept();
    let mut out = vec![0u8; N];
    for seq in 0..200 {
        let n = s.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..n], 1000);
    }
    assert_eq!(s.recv_frame(&mut out), Err(Error::PeerGone));
    wait_ok(child);
}

/// socat as the server writing what it receives to a file; we connect with `connect` and
/// send frames.
fn socat_server_from_stream<const N: usize>(server: &str, connect: impl FnMut() -> Result<StreamSocket<N>, Error>) {
    let copy = unique_path("copy");
    let _c = Cleanup(copy.clone());
    let child = socat(&["-u", server, &format!("CREATE:{copy}")]);
    let mut s = retry(connect);
    let mut buf = vec![0u8; 1100];
    for seq in 0..200 {
        let n = frame(seq, 1000, &mut buf);
        s.send_frame(&buf[..n]).unwrap();
    }
    drop(s);
    wait_ok(child);
    check_frames_file(&copy, 200, 1000);
}

fn socat_uds_stream_and_abstract() {
    let path = unique_path("socat");
    let l = UdsListener::bind_stream(UnixName::Path(&path)).unwrap();
    socat_client_to_stream::<16384>(&l, || l.accept_stream().unwrap().0, &format!("UNIX-CONNECT:{path}"));
    drop(l);
    let name = unique_abstract("socat");
    let l = UdsListener::bind_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    socat_client_to_stream::<16384>(&l, || l.accept_stream().unwrap().0, &format!("ABSTRACT-CONNECT:{name}"));
    drop(l);
    let path = unique_path("socat-srv");
    let _c = Cleanup(path.clone());
    socat_server_from_stream::<4096>(&format!("UNIX-LISTEN:{path}"), || uds::connect_stream(UnixName::Path(&path)));
    let name = unique_abstract("socat-srv");
    socat_server_from_stream::<4096>(&format!("ABSTRACT-LISTEN:{name}"), || {
        uds::connect_stream(UnixName::Abstract(name.as_bytes()))
    });
}

fn socat_tcp() {
    let l = TcpListener::bind(loopback()).unwrap();
    let port = l.local_addr().unwrap().port();
    socat_client_to_stream::<16384>(&l, || l.accept().unwrap().0, &format!("TCP:127.0.0.1:{port}"));
    drop(l);
    // A free port for socat to listen on: bind port 0, note it, close it.
    let port = TcpListener::bind(loopback()).unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socat_server_from_stream::<4096>(&format!("TCP-LISTEN:{port},reuseaddr"), || net::tcp_connect(addr, None));
}

fn socat_datagrams() {
    // socat sends each of our frame files as one datagram to our bound socket...
    let path = unique_path("sdgram");
    let mut rx = uds::bind_datagram(UnixName::Path(&path)).unwrap();
    let udp = net::udp_bind(loopback()).unwrap();
    let port = net::socket_local_addr(&udp).unwrap().port();
    let mut udp = udp;
    let mut out = vec![0u8; udp.max_frame().max(rx.max_frame())];
    for seq in 0..5u32 {
        let file = unique_path("one");
        let _c = Cleanup(file.clone());
        let mut buf = vec![0u8; 600];
        let n = frame(seq, 500, &mut buf);
        std::fs::write(&file, &buf[..n]).unwrap();
        wait_ok(socat(&["-u", &format!("OPEN:{file}"), &format!("UNIX-SENDTO:{path}")]));
        wait_readable(&rx);
        let got = rx.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..got], 500);
        wait_ok(socat(&["-u", &format!("OPEN:{file}"), &format!("UDP-SENDTO:127.0.0.1:{port}")]));
        wait_readable(&udp);
        let got = udp.recv_frame(&mut out).unwrap();
        check_frame(seq, &out[..got], 500);
    }
    // ...and receives ours: socat writes the one datagram it receives to a file.
    let spath = unique_path("sdgram-srv");
    let copy = unique_path("dcopy");
    let _c = (Cleanup(spath.clone()), Cleanup(copy.clone()));
    let child = socat(&["-u", &format!("UNIX-RECV:{spath}"), &format!("CREATE:{copy}")]);
    let mut tx = uds::unbound_datagram().unwrap();
    let mut buf = vec![0u8; 600];
    let n = frame(7, 500, &mut buf);
    let dest = rustix::net::SocketAddrUnix::new(spath.as_str()).unwrap();
    retry(|| tx.send_frame_to(&buf[..n], &dest));
    // socat -u with a datagram source keeps listening; give it time to write, then stop it.
    let started = Instant::now();
    while std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0) < n as u64 && started.elapsed().as_secs() < 10 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    let bytes = std::fs::read(&copy).unwrap();
    check_frame(7, &bytes, 500);
    // UDP: socat receives one datagram on a port and writes it to a file.
    // A free port for socat: bind port 0, note it, close it.
    let port = net::socket_local_addr(net::udp_bind(loopback()).unwrap()).unwrap().port();
    let copy = unique_path("ucopy");
    let _c2 = Cleanup(copy.clone());
    let mut child = socat(&["-u", &format!("UDP-RECV:{port},bind=127.0.0.1"), &format!("CREATE:{copy}")]);
    let mut tx = net::udp_bind(loopback()).unwrap();
    let dest: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0) < n as u64 && started.elapsed().as_secs() < 10 {
        // UDP has no connection: resend until socat has bound and written it.
        tx.send_frame_to(&buf[..n], &dest).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let bytes = std::fs::read(&copy).unwrap();
    check_frame(7, &bytes[..n], 500);
}

// ---- credentials, allow-lists, fd passing -----------------------------------------------

/// A peer running as another uid (`setpriv` to nobody) is refused by the allow-list; our
/// own uid is accepted. Abstract sockets have no file permissions, so the allow-list is
/// what keeps other users out.
fn allow_list_refuses_other_uid() {
    common::need_tool("setpriv");
    common::need_tool("socat");
    if !rustix::process::geteuid().is_root() {
        println!("    (not root: setpriv needs root; checked in CI, which runs as root)");
        return;
    }
    let name = unique_abstract("allow");
    let mut l = UdsListener::bind_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    l.allow_uids(&[0]).unwrap();
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "socat", "-u", "OPEN:/dev/null"])
        .arg(format!("ABSTRACT-CONNECT:{name}"))
        .output();
    let out = child.expect("setpriv (util-linux) runs socat");
    assert!(out.status.success(), "{out:?}");
    wait_readable(&l);
    match l.accept_stream::<4096>() {
        Err(Error::PeerNotAllowed { uid, .. }) => assert_eq!(uid, 65534),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a peer of uid 65534 was accepted"),
    }
    // Our own uid (0) is accepted.
    let _c: StreamSocket<4096> = uds::connect_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    let (_, creds) = l.accept_stream::<4096>().unwrap();
    assert_eq!(creds.uid, 0);
    assert!(l.allow_uids(&[1; 9]).is_err(), "more uids than the list holds");
}

/// A pipe end and a memfd go to another process over a seqpacket socket; the child uses
/// both, and we see its writes.
fn fd_passing_to_another_process() {
    let (mut ours, theirs) = uds::seqpacket_pair().unwrap();
    let child = common::me().args(["--peer", "fds-child"]).stdin(Stdio::from(theirs.into_fd())).spawn().unwrap();
    let (r, w) = rustix::pipe::pipe().unwrap();
    let memfd = rustix::fs::memfd_create("ember-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::io::write(&memfd, b"from parent").unwrap();
    let mut buf = [0u8; 200];
    let n = frame(9, 100, &mut buf);
    ours.send_frame_with_fds(&buf[..n], &[w.as_fd(), memfd.as_fd()]).unwrap();
    drop(w);
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        match rustix::io::read(&r, &mut chunk).unwrap() {
            0 => break,
            k => got.extend_from_slice(&chunk[..k]),
        }
    }
    assert_eq!(String::from_utf8(got).unwrap(), "child read: from parent");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut content = [0u8; 64];
    let k = rustix::io::pread(&memfd, &mut content, 0).unwrap();
    assert_eq!(&content[..k], b"child wrote");
}

/// More fds than the receiver takes: the message is refused, every fd it carried is
/// closed (the count of open fds is back where it was), and the next message is fine.
fn too_many_fds_are_closed() {
    let (mut tx, mut rx) = uds::seqpacket_pair().unwrap();
    let mut out = vec![0u8; rx.max_frame()];
    let mut buf = [0u8; 200];
    let n = frame(1, 50, &mut buf);
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let before = open_fds();
    // More than the kernel buffer of the receive (MAX_RECV_FDS).
    let many: Vec<_> = (0..MAX_RECV_FDS + 4).map(|_| r.as_fd()).collect();
    tx.send_frame_with_fds(&buf[..n], &many).unwrap();
    let mut slots: [Option<OwnedFd>; MAX_RECV_FDS] = Default::default();
    assert_eq!(rx.recv_frame_with_fds(&mut out, &mut slots), Err(Error::TooManyFds { max: MAX_RECV_FDS }));
    assert!(slots.iter().all(Option::is_none));
    assert_eq!(open_fds(), before, "fds leaked");
    // More than the caller's slots.
    tx.send_frame_with_fds(&buf[..n], &[r.as_fd(), r.as_fd(), r.as_fd()]).unwrap();
    let mut two: [Option<OwnedFd>; 2] = Default::default();
    assert_eq!(rx.recv_frame_with_fds(&mut out, &mut two), Err(Error::TooManyFds { max: 2 }));
    assert_eq!(open_fds(), before, "fds leaked");
    // The next message comes through with its fd.
    tx.send_frame_with_fds(&buf[..n], &[r.as_fd()]).unwrap();
    let got = rx.recv_frame_with_fds(&mut out, &mut two).unwrap();
    assert_eq!(got.fds, 1);
    check_frame(1, &out[..got.len], 50);
    assert_eq!(open_fds(), before + 1);
    drop(two);
    assert_eq!(open_fds(), before);
    // So many that the kernel truncates the control data (MSG_CTRUNC; it closes what does
    // not fit), with credentials passed too.
    if common::emulated() {
        // qemu-user receives into a control buffer of its own and drops, without closing,
        // the fds that do not fit the guest's: the leak would be the emulator's.
        println!("    (qemu-user: MSG_CTRUNC part not run here; it runs on the booted boards, tier 2)");
    } else {
        rx.set_pass_credentials(true).unwrap();
        let most: Vec<_> = (0..ember_linux::socket::MAX_SEND_FDS).map(|_| r.as_fd()).collect();
        tx.send_frame_with_fds(&buf[..n], &most).unwrap();
        assert_eq!(rx.recv_frame_with_fds(&mut out, &mut slots), Err(Error::TooManyFds { max: MAX_RECV_FDS }));
        assert!(slots.iter().all(Option::is_none));
        assert_eq!(open_fds(), before, "fds leaked");
    }
    // The sender's own limit.
    let too_many: Vec<_> = (0..ember_linux::socket::MAX_SEND_FDS + 1).map(|_| r.as_fd()).collect();
    assert_eq!(
        tx.send_frame_with_fds(&buf[..n], &too_many),
        Err(Error::TooManyFds { max: ember_linux::socket::MAX_SEND_FDS })
    );
}

/// `SCM_CREDENTIALS`: with `set_pass_credentials`, each message says who sent it.
fn credentials_with_messages() {
    let (mut tx, mut rx) = uds::datagram_pair().unwrap();
    rx.set_pass_credentials(true).unwrap();
    let mut buf = [0u8; 200];
    let n = frame(2, 50, &mut buf);
    tx.send_frame(&buf[..n]).unwrap();
    let mut out = vec![0u8; rx.max_frame()];
    let got = rx.recv_frame_with_fds(&mut out, &mut []).unwrap();
    let creds = got.creds.expect("credentials");
    assert_eq!((creds.pid, creds.uid), (std::process::id(), rustix::process::getuid().as_raw()));
    assert_eq!(got.fds, 0);
}

// ---- error paths -------------------------------------------------------------------------

fn errors_refused_stale_and_in_use() {
    // Nobody there: refused (no file, and an abstract name nobody bound).
    let path = unique_path("nobody");
    assert_eq!(uds::connect_stream::<4096>(UnixName::Path(&path)).err(), Some(Error::Refused));
    assert_eq!(uds::connect_seqpacket(UnixName::Abstract(b"ember-nobody-here")).err(), Some(Error::Refused));
    // A port bound but not listening refuses connections (and cannot be taken meanwhile).
    let held = rustix::net::socket(rustix::net::AddressFamily::INET, rustix::net::SocketType::STREAM, None).unwrap();
    rustix::net::bind(&held, &loopback()).unwrap();
    let port = net::socket_local_addr(&held).unwrap();
    assert_eq!(net::tcp_connect::<4096>(port, Some(Duration::from_secs(2))).err(), Some(Error::Refused));
    assert_eq!(net::tcp_connect::<4096>(port, None).err(), Some(Error::Refused));
    // Bad names.
    assert_eq!(uds::connect_stream::<4096>(UnixName::Path("")).err(), Some(Error::InvalidName));
    let long = "/tmp/".to_string() + &"x".repeat(200);
    assert_eq!(UdsListener::bind_stream(UnixName::Path(&long)).err(), Some(Error::InvalidName));
    // A stale socket file (its process died without removing it) is replaced.
    let stale = unique_path("stale");
    let _c = Cleanup(stale.clone());
    {
        let fd = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::STREAM, None).unwrap();
        rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(stale.as_str()).unwrap()).unwrap();
        rustix::net::listen(&fd, 1).unwrap();
    }
    assert!(std::fs::symlink_metadata(&stale).is_ok(), "the stale file is there");
    assert_eq!(uds::connect_stream::<4096>(UnixName::Path(&stale)).err(), Some(Error::Refused));
    let l = UdsListener::bind_stream(UnixName::Path(&stale)).unwrap();
    let _s: StreamSocket<4096> = uds::connect_stream(UnixName::Path(&stale)).unwrap();
    assert!(l.accept_stream::<4096>().is_ok());
    // A socket someone still listens on is not replaced, and keeps working.
    assert_eq!(UdsListener::bind_stream(UnixName::Path(&stale)).err(), Some(Error::AddrInUse));
    assert_eq!(UdsListener::bind_seqpacket(UnixName::Path(&stale)).err(), Some(Error::AddrInUse));
    let _s2: StreamSocket<4096> = uds::connect_stream(UnixName::Path(&stale)).unwrap();
    assert!(l.accept_stream::<4096>().is_ok());
    // Not a socket: never removed.
    let file = unique_path("regular");
    let _c2 = Cleanup(file.clone());
    std::fs::write(&file, b"keep me").unwrap();
    assert_eq!(UdsListener::bind_stream(UnixName::Path(&file)).err(), Some(Error::AddrInUse));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    // The same abstract name twice.
    let name = unique_abstract("twice");
    let _a = UdsListener::bind_stream(UnixName::Abstract(name.as_bytes())).unwrap();
    assert_eq!(UdsListener::bind_stream(UnixName::Abstract(name.as_bytes())).err(), Some(Error::AddrInUse));
}

/// What is at a socket path is never removed unless it is a stale socket file: not a
/// symlink, not a directory, not a file that replaced ours after we bound, and not a live
/// listener even when its backlog is full (found out without waiting on it).
fn socket_files_are_never_taken_from_others() {
    // A symlink and a directory at the path.
    let link = unique_path("link");
    let _c = Cleanup(link.clone());
    std::os::unix::fs::symlink("/tmp/ember-nowhere", &link).unwrap();
    assert_eq!(UdsListener::bind_stream(UnixName::Path(&link)).err(), Some(Error::AddrInUse));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let dir = unique_path("dir");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(uds::bind_datagram(UnixName::Path(&dir)).err(), Some(Error::AddrInUse));
    assert!(std::fs::metadata(&dir).unwrap().is_dir());
    std::fs::remove_dir(&dir).unwrap();
    // A stale datagram socket file is replaced.
    let stale = unique_path("stale-dgram");
    {
        let fd = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::DGRAM, None).unwrap();
        rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(stale.as_str()).unwrap()).unwrap();
    }
    let d = uds::bind_datagram(UnixName::Path(&stale)).unwrap();
    drop(d);
    assert!(std::fs::symlink_metadata(&stale).is_err(), "the owner removes its socket file");
    // Our file replaced by someone else's after we bound: our drop leaves theirs.
    let path = unique_path("replaced");
    let _c2 = Cleanup(path.clone());
    let ours = UdsListener::bind_stream(UnixName::Path(&path)).unwrap();
    std::fs::remove_file(&path).unwrap();
    let theirs = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::STREAM, None).unwrap();
    rustix::net::bind(&theirs, &rustix::net::SocketAddrUnix::new(path.as_str()).unwrap()).unwrap();
    drop(ours);
    assert!(std::fs::symlink_metadata(&path).is_ok(), "our drop removed someone else's socket file");
    drop(theirs);
    std::fs::remove_file(&path).unwrap();
    // A live listener whose backlog is full: the probe does not wait, the path is in use.
    let live = rustix::net::socket(rustix::net::AddressFamily::UNIX, rustix::net::SocketType::STREAM, None).unwrap();
    rustix::net::bind(&live, &rustix::net::SocketAddrUnix::new(path.as_str()).unwrap()).unwrap();
    rustix::net::listen(&live, 0).unwrap();
    let mut pending = Vec::new();
    let addr = rustix::net::SocketAddrUnix::new(path.as_str()).unwrap();
    loop {
        let c = rustix::net::socket_with(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        match rustix::net::connect(&c, &addr) {
            Ok(()) => pending.push(c),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(pending.len() < 1000, "the backlog never filled");
    }
    let t = Instant::now();
    assert_eq!(UdsListener::bind_stream(UnixName::Path(&path)).err(), Some(Error::AddrInUse));
    assert!(t.elapsed() < Duration::from_secs(5), "the stale-file probe waited on a live listener");
    assert!(std::fs::symlink_metadata(&path).is_ok());
}

/// `SCM_CREDENTIALS` on a message queued before credentials were asked for: the kernel
/// gives pid 0 (no process), which Ember reports as 0 (rustix's `UCred` could not hold it).
fn credentials_of_an_early_message() {
    let (mut tx, mut rx) = uds::datagram_pair().unwrap();
    let mut buf = [0u8; 200];
    let n = frame(4, 50, &mut buf);
    tx.send_frame(&buf[..n]).unwrap();
    rx.set_pass_credentials(true).unwrap();
    tx.send_frame(&buf[..n]).unwrap();
    let mut out = vec![0u8; rx.max_frame()];
    let early = rx.recv_frame_with_fds(&mut out, &mut []).unwrap();
    let late = rx.recv_frame_with_fds(&mut out, &mut []).unwrap();
    let me = std::process::id();
    assert_eq!(late.creds.map(|c| c.pid), Some(me));
    // The early one has no credentials or a pid of 0 (Linux 6.x: pid 0 and the overflow
    // uid); never the sender's, which the kernel did not record.
    assert!(matches!(early.creds.map(|c| c.pid), None | Some(0)), "{:?}", early.creds);
    println!("    (early message credentials: {:?})", early.creds);
}

/// Nonblocking stream sends of frames larger than the socket buffer: each started frame is
/// finished while the reader reads, and with no reader the send gives up after
/// `FINISH_TIMEOUT` instead of hanging.
fn nonblocking_partial_frames() {
    let (mut tx, mut rx) = uds::stream_pair::<{ 128 * 1024 }>().unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&tx, 4096).unwrap();
    tx.set_nonblocking(true).unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = vec![0u8; 128 * 1024];
        for seq in 0..20 {
            let n = rx.recv_frame(&mut out).unwrap();
            check_frame(seq, &out[..n], 100_000);
        }
    });
    let mut buf = vec![0u8; 100_100];
    let mut sent = 0;
    while sent < 20 {
        let n = frame(sent, 100_000, &mut buf);
        match tx.send_frame(&buf[..n]) {
            Ok(()) => sent += 1,
            Err(Error::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    }
    reader.join().unwrap();
    // Nobody reads: a frame that does not fit is cut short after FINISH_TIMEOUT.
    let (mut tx, _rx) = uds::stream_pair::<4096>().unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&tx, 4096).unwrap();
    tx.set_nonblocking(true).unwrap();
    let mut big = vec![0u8; 1_000_100];
    let repr = ember_core::frame::FrameRepr {
        flags: ember_core::frame::Flags::empty(),
        kind: 1,
        seq: 1,
        payload_len: 1_000_000,
    };
    let n = repr.emit_with_payload(&vec![3u8; 1_000_000], &mut big).unwrap().len();
    let t = Instant::now();
    assert_eq!(tx.send_frame(&big[..n]), Err(Error::TimedOut));
    let took = t.elapsed();
    assert!(took >= ember_linux::transport::FINISH_TIMEOUT && took < Duration::from_secs(30), "{took:?}");
}

/// An oversized datagram is reported with its size and dropped; the next one arrives.
fn oversized_datagram() {
    let (mut tx, mut rx) = uds::datagram_pair().unwrap();
    tx.set_max_frame(200_000);
    rustix::net::sockopt::set_socket_send_buffer_size(&tx, 1 << 20).unwrap();
    let mut big = vec![0u8; 100_100];
    let repr = ember_core::frame::FrameRepr {
        flags: ember_core::frame::Flags::empty(),
        kind: 1,
        seq: 1,
        payload_len: 100_000,
    };
    let n = repr.emit_with_payload(&vec![1u8; 100_000], &mut big).unwrap().len();
    tx.send_frame(&big[..n]).unwrap();
    let mut small = [0u8; 200];
    let k = frame(2, 50, &mut small);
    tx.send_frame(&small[..k]).unwrap();
    let mut out = vec![0u8; rx.max_frame()];
    assert_eq!(rx.recv_frame(&mut out), Err(Error::TooLarge { len: n, max: rx.max_frame() }));
    let got = rx.recv_frame(&mut out).unwrap();
    check_frame(2, &out[..got], 50);
    // A datagram that is not a frame, and one with bytes after the frame.
    rustix::net::send(&tx, b"hello", rustix::net::SendFlags::empty()).unwrap();
    assert!(matches!(rx.recv_frame(&mut out), Err(Error::Codec(_))));
    let mut two = small[..k].to_vec();
    two.extend_from_slice(b"xx");
    rustix::net::send(&tx, &two, rustix::net::SendFlags::empty()).unwrap();
    assert!(matches!(rx.recv_frame(&mut out), Err(Error::Codec(ember_core::Error::TrailingBytes { extra: 2 }))));
}

/// With `SIGPIPE`'s default action (a C program's), a send to a closed socket returns
/// `PeerGone` and the process lives (`MSG_NOSIGNAL`).
fn sockets_never_raise_sigpipe() {
    let out = common::me().args(["--peer", "sock-sigpipe-default"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "survived\n");
}

/// EINTR: a handler without `SA_RESTART` interrupts blocking receives on a stream socket,
/// a seqpacket socket, and the poller's wait; each call resumes, nothing is lost, and the
/// wait still honours its timeout.
fn eintr_on_sockets_and_poller() {
    let _handler = InterruptingSigusr1::install();
    let (mut stx, mut srx) = uds::stream_pair::<4096>().unwrap();
    let (mut ptx, mut prx) = uds::seqpacket_pair().unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
        let mut poller: Poller<4> = Poller::new().unwrap();
        let t = Instant::now();
        let n = poller.wait(Some(Duration::from_millis(300))).unwrap().len();
        let waited = t.elapsed();
        let mut out = vec![0u8; 1 << 16];
        let a = srx.recv_frame(&mut out).map(|n| ember_core::Frame::new_checked(&out[..n]).unwrap().seq());
        let b = prx.recv_frame(&mut out).map(|n| ember_core::Frame::new_checked(&out[..n]).unwrap().seq());
        (n, waited, a, b)
    });
    let tid = tid_rx.recv().unwrap();
    // Interrupt the poller's wait, then each blocked receive, several times.
    interrupt(tid, 4);
    let mut buf = [0u8; 128];
    for (seq, stream) in [(11u32, true), (22, false)] {
        interrupt(tid, 5);
        let n = frame(seq, 40, &mut buf);
        if stream {
            stx.send_frame(&buf[..n]).unwrap();
        } else {
            ptx.send_frame(&buf[..n]).unwrap();
        }
    }
    let (n, waited, a, b) = reader.join().unwrap();
    assert_eq!(n, 0, "nothing was registered, the wait ends by its timeout");
    assert!(waited >= Duration::from_millis(300), "the wait ended early: {waited:?}");
    assert_eq!((a, b), (Ok(11), Ok(22)));
}

// ---- the poller --------------------------------------------------------------------------

/// One loop over a pipe, a POSIX queue, a Unix socket, a signalfd and a timer: every event
/// is delivered once, to the right token, and an idle wait returns at its timeout.
fn poller_over_five_kinds() {
    use ember_linux::mq::{Access, MessageQueue};
    use ember_linux::signal::{self, SigSet, SignalFd};
    let (mut prx, mut ptx) = ember_linux::pipe::pipe().unwrap();
    let qname = format!("/ember-sock-{}-poll", std::process::id());
    let mut q = MessageQueue::create(&qname, 4, 256, Access::Both).unwrap();
    let (mut utx, mut urx) = uds::seqpacket_pair().unwrap();
    let set = SigSet::of(&[signal::SIGUSR2]);
    let _mask = MaskGuard(signal::block(set).unwrap());
    let mut sfd = SignalFd::new(set, true).unwrap();
    let timer = Timer::new().unwrap();
    let mut poller: Poller<8> = Poller::new().unwrap();
    poller.add(&prx, 1, Interest::READ).unwrap();
    poller.add(&q, 2, Interest::READ).unwrap();
    poller.add(&urx, 3, Interest::READ).unwrap();
    poller.add(&sfd, 4, Interest::READ).unwrap();
    poller.add(&timer, 5, Interest::READ).unwrap();
    // Idle: only the timer fires, after about 30 ms.
    let t = Instant::now();
    timer.set(Duration::from_millis(30), Duration::from_millis(30)).unwrap();
    let got: Vec<u64> = poller.wait(Some(Duration::from_secs(5))).unwrap().map(|r| r.token).collect();
    assert_eq!(got, vec![5]);
    assert!(t.elapsed() >= Duration::from_millis(25), "{:?}", t.elapsed());
    assert!(timer.expirations().unwrap() >= 1);
    timer.disarm().unwrap();
    // One event on each of the other four.
    let mut buf = [0u8; 128];
    let n = frame(1, 40, &mut buf);
    ptx.send_frame(&buf[..n]).unwrap();
    q.send_frame(&buf[..n]).unwrap();
    utx.send_frame(&buf[..n]).unwrap();
    signal::send_to_thread(rustix::thread::gettid().as_raw_nonzero().get(), signal::SIGUSR2).unwrap();
    let mut seen = [0u32; 6];
    let mut out = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen[1..5].contains(&0) && Instant::now() < deadline {
        let tokens: Vec<u64> = poller.wait(Some(Duration::from_millis(500))).unwrap().map(|r| r.token).collect();
        for t in tokens {
            seen[t as usize] += 1;
            // Consume it, so level-triggered readiness ends.
            match t {
                1 => assert!(prx.recv_frame(&mut out).is_ok()),
                2 => assert!(q.recv_frame(&mut out[..256]).is_ok()),
                3 => assert!(urx.recv_frame(&mut out).is_ok()),
                4 => assert_eq!(sfd.recv().unwrap().signal, signal::SIGUSR2),
                _ => panic!("token {t}"),
            }
        }
    }
    assert_eq!(seen, [0, 1, 1, 1, 1, 0], "each event once");
    // Nothing more: the next wait times out empty, after its timeout.
    let t = Instant::now();
    assert_eq!(poller.wait(Some(Duration::from_millis(50))).unwrap().len(), 0);
    assert!(t.elapsed() >= Duration::from_millis(50));
    // A hang-up is reported: the socket's peer goes away.
    drop(utx);
    let ready: Vec<_> = poller.wait(Some(Duration::from_secs(1))).unwrap().collect();
    assert_eq!(ready.len(), 1);
    assert!(ready[0].token == 3 && ready[0].hangup);
    poller.remove(&urx).unwrap();
}

/// Restores the thread's signal mask when dropped (also when a test panics).
struct MaskGuard(ember_linux::signal::SigSet);
impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = ember_linux::signal::set_mask(self.0);
    }
}

// ---- zero allocations --------------------------------------------------------------------

fn sockets_and_poller_allocate_nothing() {
    let (mut stx, mut srx) = uds::stream_pair::<4096>().unwrap();
    let (mut ktx, mut krx) = uds::seqpacket_pair().unwrap();
    let (mut dtx, mut drx) = uds::datagram_pair().unwrap();
    drx.set_pass_credentials(true).unwrap();
    let listener = TcpListener::bind(loopback()).unwrap();
    let mut ttx: StreamSocket<4096> = net::tcp_connect(listener.local_addr().unwrap(), None).unwrap();
    let (mut trx, _) = listener.accept::<4096>().unwrap();
    let mut utx = net::udp_bind(loopback()).unwrap();
    let mut urx = net::udp_bind(loopback()).unwrap();
    let udest = net::socket_local_addr(&urx).unwrap();
    utx.connect(&udest).unwrap();
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let (pa, pb) = (unique_path("na-a"), unique_path("na-b"));
    let mut da = uds::bind_datagram(UnixName::Path(&pa)).unwrap();
    let mut db = uds::bind_datagram(UnixName::Path(&pb)).unwrap();
    let to_b = rustix::net::SocketAddrUnix::new(pb.as_str()).unwrap();
    let mut poller: Poller<8> = Poller::new().unwrap();
    poller.add(&krx, 1, Interest::READ).unwrap();
    let timer = Timer::new().unwrap();
    let mut scratch = [0u8; 256];
    let mut out = vec![0u8; 1 << 17];
    let mut slots: [Option<OwnedFd>; 2] = Default::default();
    let mut total = 0u32;
    // Unix senders write unchecked payloads, TCP and UDP checked ones (the defaults); the
    // TCP and UDP receivers also require checked payloads.
    trx.require_checked(true);
    urx.require_checked(true);
    let count = counting::allocations(|| {
        for i in 0..100u32 {
            stx.send_msg(1, i, &("stream", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = srx.recv_msg(&mut out[..4096]).unwrap();
            total += v;
            ktx.send_msg(2, i, &("seqpacket", i), &mut scratch).unwrap();
            assert_eq!(poller.wait(Some(Duration::from_secs(1))).unwrap().len(), 1);
            let (_, (_, v)): (_, (&str, u32)) = krx.recv_msg(&mut out).unwrap();
            total += v;
            let n = ember_core::message::encode(3, i, &i, &mut scratch).unwrap().len();
            ktx.send_frame_with_fds(&scratch[..n], &[r.as_fd()]).unwrap();
            let got = krx.recv_frame_with_fds(&mut out, &mut slots).unwrap();
            assert_eq!(got.fds, 1);
            slots[0] = None;
            dtx.send_msg(4, i, &("dgram", i), &mut scratch).unwrap();
            let got = drx.recv_frame_with_fds(&mut out, &mut slots).unwrap();
            assert!(got.creds.is_some());
            ttx.send_msg(5, i, &("tcp", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = trx.recv_msg(&mut out[..4096]).unwrap();
            total += v;
            utx.send_msg(6, i, &("udp", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = urx.recv_msg(&mut out).unwrap();
            total += v;
            let n = ember_core::message::encode(7, i, &i, &mut scratch).unwrap().len();
            da.send_frame_to(&scratch[..n], &to_b).unwrap();
            let (got, from) = db.recv_frame_from(&mut out).unwrap();
            assert!(got == n && from.is_some());
        }
        assert_eq!(poller.wait(Some(Duration::from_millis(1))).unwrap().len(), 0);
        timer.set(Duration::from_secs(1), Duration::ZERO).unwrap();
        assert!(matches!(timer.expirations(), Err(Error::WouldBlock)));
    });
    assert_eq!(total, 4 * (0..100).sum::<u32>());
    assert_eq!(count, 0, "allocations on socket send/receive or poller wait");
}

fn nonblocking_stream_socket_would_block() {
    let (mut tx, rx) = uds::stream_pair::<4096>().unwrap();
    tx.set_nonblocking(true).unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&tx, 4096).unwrap();
    let mut buf = [0u8; 1100];
    let n = frame(37, 1000, &mut buf);
    let mut sent = 0;
    loop {
        match tx.send_frame(&buf[..n]) {
            Ok(()) => sent += 1,
            Err(Error::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 100_000, "never filled");
    }
    assert!(sent > 0);
    drop(rx);
}

/// Every fd-backed endpoint, listeners included, goes to an `OwnedFd` and back
/// (`From`/`TryFrom`) and still works; a descriptor of the wrong kind is `WrongFdType`.
fn endpoints_to_and_from_descriptors() {
    use ember_linux::pipe::{self, PacketReader, StreamReader, Writer};
    let mut out = vec![0u8; 70_000];
    let mut buf = [0u8; 256];
    let n = frame(7, 100, &mut buf);
    // Pipes: the writer finds its mode from the descriptor.
    let (rx, tx) = pipe::pipe().unwrap();
    let (mut rx, mut tx) = (StreamReader::<4096>::from(OwnedFd::from(rx)), Writer::from(OwnedFd::from(tx)));
    tx.send_frame(&buf[..n]).unwrap();
    assert_eq!(rx.recv_frame(&mut out), Ok(n));
    let (rx, tx) = pipe::packet_pipe().unwrap();
    let (mut rx, mut tx) = (PacketReader::from(OwnedFd::from(rx)), Writer::from(OwnedFd::from(tx)));
    assert!(matches!(tx.send_frame(&vec![0u8; 5000]), Err(Error::TooLarge { .. })), "packet mode kept");
    tx.send_frame(&buf[..n]).unwrap();
    assert_eq!(rx.recv_frame(&mut out), Ok(n));
    // Sockets: a packet socket's kind comes from SO_TYPE.
    let (a, b) = uds::seqpacket_pair().unwrap();
    let mut a = PacketSocket::try_from(OwnedFd::from(a)).unwrap();
    let mut b = PacketSocket::try_from(OwnedFd::from(b)).unwrap();
    a.send_frame(&buf[..n]).unwrap();
    assert_eq!(b.recv_frame(&mut out), Ok(n));
    drop(a);
    assert_eq!(b.recv_frame(&mut out), Err(Error::PeerGone), "seqpacket: end of stream");
    let (r, _w) = pipe::pipe().unwrap();
    assert!(matches!(PacketSocket::try_from(OwnedFd::from(r)), Err(Error::WrongFdType { .. })));
    let (x, y) = uds::stream_pair::<4096>().unwrap();
    let (mut x, mut y) = (StreamSocket::<4096>::from(OwnedFd::from(x)), StreamSocket::<4096>::from(OwnedFd::from(y)));
    x.send_frame(&buf[..n]).unwrap();
    assert_eq!(y.recv_frame(&mut out), Ok(n));
    // Listeners: the socket file stays with the descriptor.
    let path = unique_path("fdconv");
    let l = UdsListener::bind_stream(UnixName::Path(&path)).unwrap();
    let l = UdsListener::try_from(OwnedFd::from(l)).unwrap();
    assert!(std::path::Path::new(&path).exists(), "into_fd keeps the socket file");
    let mut c: StreamSocket<4096> = uds::connect_stream(UnixName::Path(&path)).unwrap();
    let (mut s, _) = l.accept_stream::<4096>().unwrap();
    c.send_frame(&buf[..n]).unwrap();
    assert_eq!(s.recv_frame(&mut out), Ok(n));
    drop(l);
    std::fs::remove_file(&path).unwrap();
    let t = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = t.local_addr().unwrap();
    let t = TcpListener::try_from(OwnedFd::from(t)).unwrap();
    let mut c: StreamSocket<4096> = net::tcp_connect(addr, None).unwrap();
    let (mut s, _) = t.accept::<4096>().unwrap();
    c.send_frame(&buf[..n]).unwrap();
    assert_eq!(s.recv_frame(&mut out), Ok(n));
    let (r, _w) = pipe::pipe().unwrap();
    assert!(matches!(TcpListener::try_from(OwnedFd::from(r)), Err(Error::WrongFdType { .. })));
    let (r, _w) = pipe::pipe().unwrap();
    assert!(matches!(UdsListener::try_from(OwnedFd::from(r)), Err(Error::WrongFdType { .. })));
}

fn main() {
    common::main(
        &[
            ("conformance_uds_stream", conformance_uds_stream),
            ("conformance_uds_seqpacket", conformance_uds_seqpacket),
            ("conformance_uds_datagram", conformance_uds_datagram),
            ("conformance_tcp", conformance_tcp),
            ("conformance_udp", conformance_udp),
            ("uds_stream_across_processes", uds_stream_across_processes),
            ("uds_seqpacket_across_processes", uds_seqpacket_across_processes),
            ("uds_datagram_across_processes", uds_datagram_across_processes),
            ("tcp_across_processes", tcp_across_processes),
            ("udp_across_processes", udp_across_processes),
            ("socat_uds_stream_and_abstract", socat_uds_stream_and_abstract),
            ("socat_tcp", socat_tcp),
            ("socat_datagrams", socat_datagrams),
            ("allow_list_refuses_other_uid", allow_list_refuses_other_uid),
            ("fd_passing_to_another_process", fd_passing_to_another_process),
            ("too_many_fds_are_closed", too_many_fds_are_closed),
            ("endpoints_to_and_from_descriptors", endpoints_to_and_from_descriptors),
            ("credentials_with_messages", credentials_with_messages),
            ("errors_refused_stale_and_in_use", errors_refused_stale_and_in_use),
            ("oversized_datagram", oversized_datagram),
            ("socket_files_are_never_taken_from_others", socket_files_are_never_taken_from_others),
            ("credentials_of_an_early_message", credentials_of_an_early_message),
            ("nonblocking_partial_frames", nonblocking_partial_frames),
            ("sockets_never_raise_sigpipe", sockets_never_raise_sigpipe),
            ("nonblocking_stream_socket_would_block", nonblocking_stream_socket_would_block),
            ("eintr_on_sockets_and_poller", eintr_on_sockets_and_poller),
            ("poller_over_five_kinds", poller_over_five_kinds),
            ("sockets_and_poller_allocate_nothing", sockets_and_poller_allocate_nothing),
        ],
        peer,
    );
}
