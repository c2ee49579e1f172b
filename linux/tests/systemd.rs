//! systemd integration over the real protocols: notification datagrams read from a socket
//! this test binds (path and abstract), with the descriptor of `FDSTORE=1`; the watchdog
//! seen pinging and then missing; socket activation by `systemd-socket-activate` (stream,
//! seqpacket, datagram, abstract, TCP, UDP), and by this test playing the service manager
//! for what that tool cannot open (a FIFO, a message queue); journal entries parsed from a
//! socket standing in for journald's, and the stderr fallback.
//!
//! The environment is per process: every test that needs `NOTIFY_SOCKET`, `WATCHDOG_USEC`
//! or `LISTEN_FDS` sets it for a child (this binary again, `--peer <role>`), never here.

#[path = "common/mod.rs"]
mod common;
#[path = "common/suite.rs"]
mod suite;

use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ember_core::frame::{Flags, FrameRepr};
use ember_linux::systemd::{self, Delivery, FdKind, Journal, NotifyOutcome, Priority, State};
use ember_linux::uds::{self, UnixName};
use ember_linux::{Error, FrameReceiver, FrameSender, mq, net};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use suite::{unique_name, unique_path};

const T: Duration = Duration::from_secs(10);

/// A datagram socket standing in for the service manager's notify socket (or journald's),
/// with a receive timeout so that a missing message fails the test instead of hanging it.
struct Listener {
    sock: ember_linux::socket::PacketSocket,
    /// The `NOTIFY_SOCKET` value: the path, or `@name`.
    env: String,
}

impl Listener {
    fn path() -> Listener {
        let path = unique_path("notify");
        let sock = uds::bind_datagram(UnixName::Path(&path)).unwrap();
        Listener { sock, env: path }
    }

    fn abstract_name() -> Listener {
        let name = unique_name("notify");
        let sock = uds::bind_datagram(UnixName::Abstract(name.as_bytes())).unwrap();
        Listener { sock, env: format!("@{name}") }
    }

    /// The next datagram within `timeout`, with the descriptors that came with it.
    fn recv_with_fds(&self, timeout: Duration) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
        let fd = self.sock.as_fd();
        rustix::net::sockopt::set_socket_timeout(fd, rustix::net::sockopt::Timeout::Recv, Some(timeout)).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = match rustix::net::recvmsg(fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(m) => m,
            Err(rustix::io::Errno::AGAIN) => return None,
            Err(e) => panic!("recvmsg: {e}"),
        };
        let mut fds = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(r) = m {
                fds.extend(r);
            }
        }
        buf.truncate(msg.bytes);
        Some((buf, fds))
    }

    /// The next message's text (no descriptors expected).
    fn text(&self) -> String {
        let (bytes, fds) = self.recv_with_fds(T).expect("no notification within 10 s");
        assert!(fds.is_empty());
        String::from_utf8(bytes).unwrap()
    }
}

/// This binary as a peer with `NOTIFY_SOCKET` (and `extra`) set, its stdout piped.
fn peer(role: &[&str], notify: Option<&str>, extra: &[(&str, &str)]) -> Child {
    let mut c = common::me();
    c.arg("--peer").args(role).stdout(Stdio::piped());
    c.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
    if let Some(n) = notify {
        c.env("NOTIFY_SOCKET", n);
    }
    c.envs(extra.iter().copied());
    c.spawn().unwrap()
}

/// Waits for a peer; its stdout, and a check that it exited with status 0.
fn finish(mut child: Child) -> String {
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "peer failed: {status:?}, stdout {out:?}");
    out
}

fn notify_over(l: Listener) {
    let child = peer(&["notify"], Some(&l.env), &[]);
    let pid = child.id();
    assert_eq!(l.text(), format!("READY=1\nSTATUS=hello from {pid}"));
    let reloading = l.text();
    let usec: u64 = reloading.strip_prefix("RELOADING=1\nMONOTONIC_USEC=").unwrap().parse().unwrap();
    // CLOCK_MONOTONIC is the same clock in every process: the peer's "now" is before ours.
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    assert!(usec > 0 && usec <= now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000, "{reloading}");
    assert_eq!(l.text(), "READY=1");
    assert_eq!(l.text(), "STOPPING=1\nERRNO=5");
    assert_eq!(
        l.text(),
        format!("MAINPID={pid}\nEXTEND_TIMEOUT_USEC=2500000\nWATCHDOG=trigger\nWATCHDOG_USEC=3000000")
    );
    assert_eq!(finish(child), "Sent Sent Sent Sent\n");
}

fn notify_to_a_socket_path() {
    notify_over(Listener::path());
}

fn notify_to_an_abstract_socket() {
    notify_over(Listener::abstract_name());
}

fn fdstore_passes_the_descriptor() {
    let l = Listener::path();
    let child = peer(&["fdstore"], Some(&l.env), &[]);
    let (bytes, fds) = l.recv_with_fds(T).unwrap();
    assert_eq!(bytes, b"FDSTORE=1\nFDNAME=pipe-1\nSTATUS=stored a pipe");
    assert_eq!(fds.len(), 1);
    assert_eq!(systemd::fd_kind(&fds[0]).unwrap(), FdKind::Fifo);
    let (bytes, fds2) = l.recv_with_fds(T).unwrap();
    assert_eq!((bytes.as_slice(), fds2.len()), (&b"FDSTOREREMOVE=1\nFDNAME=pipe-1"[..], 0));
    assert_eq!(finish(child), "ok\n");
    // The stored descriptor outlives the peer: what it wrote is there to read.
    let mut text = String::new();
    std::fs::File::from(fds.into_iter().next().unwrap()).read_to_string(&mut text).unwrap();
    assert_eq!(text, "kept by the manager");
}

fn unset_and_not_under_systemd() {
    let l = Listener::path();
    assert_eq!(finish(peer(&["notify-unset"], Some(&l.env), &[])), "Sent NotUnderSystemd\n");
    assert_eq!(l.text(), "READY=1");
    // Nothing after it: the second notify found no NOTIFY_SOCKET.
    assert!(l.recv_with_fds(Duration::from_millis(200)).is_none());
    assert_eq!(finish(peer(&["notify-none"], None, &[])), "NotUnderSystemd\n");
}

fn notify_errors() {
    let l = Listener::path();
    // Nobody at the path; a relative path; a message too large; a bad FDNAME.
    let gone = unique_path("nobody");
    assert_eq!(systemd::notify_to(&gone, &[State::Ready]), Err(Error::Refused));
    assert_eq!(systemd::notify_to("relative.sock", &[State::Ready]), Err(Error::InvalidEnv));
    let long = "x".repeat(systemd::NOTIFY_MAX);
    assert!(matches!(systemd::notify_to(&l.env, &[State::Status(&long)]), Err(Error::TooLarge { .. })));
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let bad = State::FdStore { fd: r.as_fd(), name: "a:b" };
    assert_eq!(systemd::notify_to(&l.env, &[bad]), Err(Error::InvalidName));
    assert!(l.recv_with_fds(Duration::from_millis(100)).is_none());
    // The invalid variable, in a child.
    assert_eq!(finish(peer(&["notify-invalid"], Some("vsock:2:999"), &[])), "InvalidEnv\n");
}

fn watchdog_pings_then_misses() {
    let l = Listener::path();
    let child = peer(&["watchdog", "8"], Some(&l.env), &[("WATCHDOG_USEC", "100000")]);
    assert_eq!(l.text(), "STATUS=watchdog every 100000 us, pinging every 50000 us");
    let mut pings = 0;
    loop {
        match l.text().as_str() {
            "WATCHDOG=1" => pings += 1,
            "STATUS=stalled" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pings, 8);
    // The stalled peer sends nothing for three intervals: the watchdog would fire.
    assert!(l.recv_with_fds(Duration::from_millis(300)).is_none(), "a ping after the stall");
    finish(child);
    // WATCHDOG_PID naming another process: no watchdog for this one; garbage is no watchdog.
    let c = peer(&["watchdog", "1"], Some(&l.env), &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")]);
    assert_eq!(l.text(), "STATUS=no watchdog (Ok(None))");
    finish(c);
    let c = peer(&["watchdog", "1"], Some(&l.env), &[("WATCHDOG_USEC", "soon")]);
    assert_eq!(l.text(), "STATUS=no watchdog (Err(InvalidEnv))");
    finish(c);
}

/// `systemd-socket-activate <flags> -- <this binary> --peer activated <scenario>`; it waits
/// for the first connection or datagram, then execs the peer with the sockets as 3, 4, ...
/// Returns once the tool says it listens on every `-l` address.
fn socket_activate(flags: &[&str], scenario: &str, notify: &str) -> Child {
    use std::io::BufRead as _;
    common::need_tool("systemd-socket-activate");
    let mut c = Command::new("systemd-socket-activate");
    c.args(flags).args(["-E", &format!("NOTIFY_SOCKET={notify}")]);
    if let Ok(r) = std::env::var("EMBER_TEST_RUNNER") {
        c.args(["-E", &format!("EMBER_TEST_RUNNER={r}")]);
    }
    c.args(common::me_argv()).args(["--peer", "activated", scenario]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut listening = 0;
    while listening < flags.iter().filter(|f| **f == "-l").count() {
        let line = lines.next().expect("systemd-socket-activate exited").unwrap();
        listening += usize::from(line.starts_with("Listening on"));
    }
    // The peer's messages (a panic) are echoed, so a failing peer explains; the tool's
    // routine ones are not.
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if !l.starts_with("Communication attempt") && !l.starts_with("Execing") {
                eprintln!("  activated: {l}");
            }
        }
    });
    child
}

/// Retries `f` until it stops failing with "nobody there yet" (the tool binds and listens
/// after it starts).
fn retry<T>(mut f: impl FnMut() -> ember_linux::Result<T>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(Error::Refused | Error::Os(rustix::io::Errno::NOENT)) if start.elapsed() < T => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn frame(kind: u32, seq: u32, payload: &[u8], buf: &mut [u8]) -> usize {
    let repr = FrameRepr { flags: Flags::empty(), kind, seq, payload_len: payload.len() };
    repr.emit_with_payload(payload, buf).unwrap().len()
}

fn activated_seqpacket_listener() {
    let l = Listener::path();
    let path = unique_path("sa-seqpacket");
    let child = socket_activate(&["--seqpacket", "-l", &path, "--fdname=cmd"], "seqpacket", &l.env);
    let mut sock = retry(|| uds::connect_seqpacket(UnixName::Path(&path)));
    let mut buf = [0u8; 256];
    let n = frame(1, 7, b"ping", &mut buf);
    sock.send_frame(&buf[..n]).unwrap();
    let mut got = [0u8; 65536];
    let n = sock.recv_frame(&mut got).unwrap();
    let f = ember_core::Frame::new_checked(&got[..n]).unwrap();
    assert_eq!((f.kind(), f.seq(), f.payload()), (2, 7, &b"ping"[..]));
    assert_eq!(l.text(), "READY=1\nSTATUS=serving cmd");
    assert_eq!(
        finish(child),
        "cmd:UnixSeqpacketListener wrong:expected a Unix datagram socket, found a listening Unix seqpacket socket\n"
    );
    let _ = std::fs::remove_file(&path);
}

fn activated_stream_listeners_by_name() {
    let l = Listener::path();
    let (a, b) = (unique_path("sa-first"), format!("@{}", unique_name("sa-second")));
    let child = socket_activate(&["-l", &a, "-l", &b, "--fdname=first:second"], "stream", &l.env);
    let name = b.strip_prefix('@').unwrap().as_bytes().to_vec();
    let mut sock: ember_linux::socket::StreamSocket = retry(|| uds::connect_stream(UnixName::Abstract(&name)));
    let mut buf = [0u8; 256];
    let n = frame(1, 9, b"by name", &mut buf);
    sock.send_frame(&buf[..n]).unwrap();
    let mut got = vec![0u8; FrameReceiver::max_frame(&sock)];
    let n = sock.recv_frame(&mut got).unwrap();
    let f = ember_core::Frame::new_checked(&got[..n]).unwrap();
    assert_eq!((f.seq(), f.payload()), (9, &b"by name"[..]));
    assert_eq!(l.text(), "READY=1\nSTATUS=serving second");
    assert_eq!(finish(child), "first:UnixStreamListener second:UnixStreamListener\n");
    let _ = std::fs::remove_file(&a);
}

fn activated_datagram_socket() {
    let l = Listener::path();
    let path = unique_path("sa-dgram");
    let child = socket_activate(&["--datagram", "-l", &path, "--fdname=data"], "datagram", &l.env);
    let reply_path = unique_path("sa-dgram-reply");
    let mut me = uds::bind_datagram(UnixName::Path(&reply_path)).unwrap();
    let to = rustix::net::SocketAddrUnix::new(path.as_str()).unwrap();
    let mut buf = [0u8; 256];
    let n = frame(1, 3, b"dgram", &mut buf);
    retry(|| me.send_frame_to(&buf[..n], &to));
    let mut got = vec![0u8; me.max_frame()];
    let n = me.recv_frame(&mut got).unwrap();
    let f = ember_core::Frame::new_checked(&got[..n]).unwrap();
    assert_eq!((f.kind(), f.seq(), f.payload()), (2, 3, &b"dgram"[..]));
    assert_eq!(l.text(), "READY=1\nSTATUS=serving data");
    assert_eq!(
        finish(child),
        "data:UnixDatagram wrong:expected a listening Unix stream socket, found a Unix datagram socket\n"
    );
    let _ = std::fs::remove_file(&path);
}

/// A port free a moment ago (the tool needs a number; port 0 would hide it from us).
fn free_port(udp: bool) -> u16 {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    if udp {
        net::socket_local_addr(net::udp_bind(any).unwrap()).unwrap().port()
    } else {
        net::TcpListener::bind(any).unwrap().local_addr().unwrap().port()
    }
}

fn activated_tcp_and_udp() {
    let l = Listener::path();
    let port = free_port(false);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = socket_activate(&["-l", &addr.to_string(), "--fdname=tcp"], "tcp", &l.env);
    let mut sock: ember_linux::socket::StreamSocket = retry(|| net::tcp_connect(addr, Some(T)));
    let mut buf = [0u8; 256];
    let n = frame(1, 5, b"tcp", &mut buf);
    sock.send_frame(&buf[..n]).unwrap();
    let mut got = vec![0u8; FrameReceiver::max_frame(&sock)];
    let n = sock.recv_frame(&mut got).unwrap();
    assert_eq!(ember_core::Frame::new_checked(&got[..n]).unwrap().payload(), b"tcp");
    assert_eq!(l.text(), "READY=1\nSTATUS=serving tcp");
    assert_eq!(finish(child), "tcp:TcpListener\n");

    let port = free_port(true);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = socket_activate(&["--datagram", "-l", &addr.to_string(), "--fdname=udp"], "udp", &l.env);
    let mut me = net::udp_bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let n = frame(1, 6, b"udp", &mut buf);
    me.send_frame_to(&buf[..n], &addr).unwrap();
    let mut got = vec![0u8; me.max_frame()];
    rustix::net::sockopt::set_socket_timeout(&me, rustix::net::sockopt::Timeout::Recv, Some(T)).unwrap();
    let n = me.recv_frame(&mut got).unwrap();
    assert_eq!(ember_core::Frame::new_checked(&got[..n]).unwrap().payload(), b"udp");
    assert_eq!(l.text(), "READY=1\nSTATUS=serving udp");
    assert_eq!(finish(child), "udp:Udp\n");
}

/// For `ListenFIFO=` and `ListenMessageQueue=`, which `systemd-socket-activate` cannot open,
/// this test is the service manager: it opens them, and the child gets them as 3 and 4 with
/// `LISTEN_FDS=2` and `LISTEN_FDNAMES` (the child sets `LISTEN_PID` to itself, which is
/// what the manager does between fork and exec).
fn activated_fifo_and_message_queue() {
    let fifo = unique_path("sa-fifo");
    ember_linux::fifo::create(&fifo).unwrap();
    let fifo_fd = rustix::fs::open(
        fifo.as_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let qname = format!("/{}", unique_name("sa-mq"));
    let mut q = mq::MessageQueue::create(&qname, 4, 256, mq::Access::Both).unwrap();
    let q_fd = rustix::io::dup(&q).unwrap();
    let (a, b) = (fifo_fd.as_raw_fd(), q_fd.as_raw_fd());
    let mut c = common::me();
    c.args(["--peer", "activated", "fifo-mq"]).stdout(Stdio::piped());
    c.env("LISTEN_FDS", "2").env("LISTEN_FDNAMES", "fifo:queue").env("EMBER_FAKE_LISTEN_PID", "1");
    // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
    // (dup3 without O_CLOEXEC onto 3 and 4, via a temporary above them so that neither
    // source is overwritten first), on descriptors open in the parent.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
            let ta = libc::fcntl(a, libc::F_DUPFD, 10);
            let tb = libc::fcntl(b, libc::F_DUPFD, 10);
            if ta < 0 || tb < 0 || libc::dup2(ta, 3) < 0 || libc::dup2(tb, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(ta);
            libc::close(tb);
            Ok(())
        });
    }
    let child = c.spawn().unwrap();
    // The child reads one frame from each.
    let mut buf = [0u8; 256];
    let n = frame(1, 1, b"through the fifo", &mut buf);
    let mut w = ember_linux::fifo::open_writer(&fifo, false).unwrap();
    w.send_frame(&buf[..n]).unwrap();
    let n = frame(1, 2, b"through the queue", &mut buf);
    q.send_frame(&buf[..n]).unwrap();
    assert_eq!(
        finish(child),
        "fifo:Fifo queue:MessageQueue through the fifo|through the queue wrong:expected a Unix datagram socket, found a POSIX message queue\n"
    );
    ember_linux::fifo::remove(&fifo).unwrap();
}

/// The classification and the checked constructors, on descriptors of every kind.
fn fd_kinds_and_wrong_types() {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let kind = |fd: &OwnedFd| systemd::fd_kind(fd).unwrap();
    let sock = |f, t| rustix::net::socket_with(f, t, SocketFlags::CLOEXEC, None).unwrap();
    assert_eq!(kind(&sock(AddressFamily::UNIX, SocketType::DGRAM)), FdKind::UnixDatagram);
    assert_eq!(kind(&sock(AddressFamily::UNIX, SocketType::STREAM)), FdKind::UnixStream);
    assert_eq!(kind(&sock(AddressFamily::UNIX, SocketType::SEQPACKET)), FdKind::UnixSeqpacket);
    assert_eq!(kind(&sock(AddressFamily::INET, SocketType::DGRAM)), FdKind::Udp);
    assert_eq!(kind(&sock(AddressFamily::INET6, SocketType::STREAM)), FdKind::TcpStream);
    let tcp = net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(systemd::fd_kind(&tcp).unwrap(), FdKind::TcpListener);
    let path = unique_path("kind");
    let l = uds::UdsListener::bind_seqpacket(UnixName::Path(&path)).unwrap();
    assert_eq!(systemd::fd_kind(&l).unwrap(), FdKind::UnixSeqpacketListener);
    let (r, _w) = rustix::pipe::pipe().unwrap();
    assert_eq!(kind(&r), FdKind::Fifo);
    let file = rustix::fs::open("/proc/self/status", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
    assert_eq!(kind(&file), FdKind::File);
    let null = rustix::fs::open("/dev/null", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
    assert_eq!(kind(&null), FdKind::Other);
    let qname = format!("/{}", unique_name("kind-mq"));
    let q = mq::MessageQueue::create(&qname, 2, 64, mq::Access::Both).unwrap();
    assert_eq!(systemd::fd_kind(&q).unwrap(), FdKind::MessageQueue);

    // The checked constructors take the right kind and name the wrong one.
    let udp = sock(AddressFamily::INET, SocketType::DGRAM);
    assert_eq!(
        uds::UdsListener::from_fd(udp).err(),
        Some(Error::WrongFdType { expected: FdKind::UnixStreamListener, found: FdKind::Udp })
    );
    let l2 = uds::UdsListener::from_fd(l.as_fd().try_clone_to_owned().unwrap()).unwrap();
    assert!(l2.is_seqpacket());
    assert_eq!(
        net::TcpListener::from_fd(r).err(),
        Some(Error::WrongFdType { expected: FdKind::TcpListener, found: FdKind::Fifo })
    );
    assert!(net::TcpListener::from_fd(tcp.as_fd().try_clone_to_owned().unwrap()).is_ok());
    assert_eq!(
        mq::MessageQueue::from_fd(file).err(),
        Some(Error::WrongFdType { expected: FdKind::MessageQueue, found: FdKind::File })
    );
    let q2 = mq::MessageQueue::from_fd(q.as_fd().try_clone_to_owned().unwrap()).unwrap();
    assert_eq!(q2.attributes().unwrap().msg_size, 64);
    assert_eq!(
        ember_linux::fifo::reader_from_fd::<64>(null).err(),
        Some(Error::WrongFdType { expected: FdKind::Fifo, found: FdKind::Other })
    );
    assert_eq!(
        Error::WrongFdType { expected: FdKind::TcpListener, found: FdKind::Fifo }.to_string(),
        "expected a listening TCP socket, found a FIFO"
    );
    // Not activated: nothing to take, here (this process has no LISTEN_FDS).
    let mut none = systemd::listen_fds::<4>().unwrap();
    assert!(none.is_empty());
    assert_eq!(none.take("cmd").err(), Some(Error::NotActivated));
}

/// Splits a native-protocol datagram into its fields (both forms).
fn parse_entry(mut d: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap();
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((String::from_utf8(line[..eq].to_vec()).unwrap(), line[eq + 1..].to_vec()));
            d = &d[nl + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).unwrap();
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = d[nl + 9..nl + 9 + len].to_vec();
            assert_eq!(d[nl + 9 + len], b'\n');
            out.push((name, value));
            d = &d[nl + 10 + len..];
        }
    }
    out
}

fn field<'e>(entry: &'e [(String, Vec<u8>)], name: &str) -> &'e str {
    let v = &entry.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name} in {entry:?}")).1;
    std::str::from_utf8(v).unwrap()
}

fn journal_entries() {
    let l = Listener::path();
    let j = Journal::with_socket("ember-test", &l.env).unwrap();
    let d = j.send(Priority::Warning, format_args!("disk {}% full", 91), &[("DEVICE", "/dev/sda1")]).unwrap();
    assert_eq!(d, Delivery::Journal);
    let (bytes, _) = l.recv_with_fds(T).unwrap();
    assert_eq!(bytes, b"PRIORITY=4\nSYSLOG_IDENTIFIER=ember-test\nDEVICE=/dev/sda1\nMESSAGE=disk 91% full\n");
    // A multi-line message and field: the binary form.
    j.send(Priority::Error, format_args!("first line\nsecond line"), &[("TRACE", "a\nb\n")]).unwrap();
    let (bytes, _) = l.recv_with_fds(T).unwrap();
    let e = parse_entry(&bytes);
    assert_eq!(field(&e, "MESSAGE"), "first line\nsecond line");
    assert_eq!(field(&e, "TRACE"), "a\nb\n");
    assert_eq!(field(&e, "PRIORITY"), "3");
    // An oversized message is cut to the buffer.
    let big = "y".repeat(3 * systemd::JOURNAL_MAX);
    j.send(Priority::Info, format_args!("{big}"), &[]).unwrap();
    let (bytes, _) = l.recv_with_fds(T).unwrap();
    assert!(bytes.len() <= systemd::JOURNAL_MAX && bytes.len() > systemd::JOURNAL_MAX - 64);
    let e = parse_entry(&bytes);
    assert!(field(&e, "MESSAGE").bytes().all(|b| b == b'y'));
    // Bad field names are refused before anything is sent.
    assert_eq!(j.send(Priority::Info, format_args!("x"), &[("_PID", "1")]), Err(Error::InvalidName));
    assert!(l.recv_with_fds(Duration::from_millis(100)).is_none());
    // No journal socket: stderr, with <N> on every line.
    let out = common::me().args(["--peer", "journal-stderr"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "<3>first\n<3>second\n<6>one line\n");
}

#[cfg(feature = "log")]
fn journal_logger_records() {
    use log::Log as _;
    let l = Listener::path();
    let logger = systemd::JournalLogger::with_socket("ember-log", &l.env).unwrap().with_level(log::LevelFilter::Debug);
    logger.log(
        &log::Record::builder()
            .args(format_args!("answer {}", 42))
            .level(log::Level::Warn)
            .target("ember::test")
            .module_path(Some("systemd::tests"))
            .file(Some("linux/tests/systemd.rs"))
            .line(Some(77))
            .build(),
    );
    let (bytes, _) = l.recv_with_fds(T).unwrap();
    let e = parse_entry(&bytes);
    assert_eq!(field(&e, "MESSAGE"), "answer 42");
    assert_eq!(field(&e, "PRIORITY"), "4");
    assert_eq!(field(&e, "CODE_FILE"), "linux/tests/systemd.rs");
    assert_eq!(field(&e, "CODE_LINE"), "77");
    assert_eq!(field(&e, "CODE_MODULE"), "systemd::tests");
    assert_eq!(field(&e, "TARGET"), "ember::test");
    assert_eq!(field(&e, "SYSLOG_IDENTIFIER"), "ember-log");
    // Below the level: nothing.
    logger.log(&log::Record::builder().args(format_args!("noise")).level(log::Level::Trace).build());
    assert!(l.recv_with_fds(Duration::from_millis(100)).is_none());
}

fn peer_main(args: &[String]) {
    let pid = std::process::id();
    let outcome = |o: ember_linux::Result<NotifyOutcome>| format!("{:?}", o.unwrap());
    match args[0].as_str() {
        "notify" => {
            let status = format!("hello from {pid}");
            let a = outcome(systemd::notify(&[State::Ready, State::Status(&status)]));
            let b = outcome(systemd::notify(&[State::Reloading]));
            let _ = systemd::notify(&[State::Ready]).unwrap();
            let c = outcome(systemd::notify_raw("STOPPING=1\nERRNO=5"));
            let d = outcome(systemd::notify(&[
                State::MainPid(pid),
                State::ExtendTimeout(Duration::from_millis(2500)),
                State::WatchdogTrigger,
                State::WatchdogUsec(Duration::from_secs(3)),
            ]));
            println!("{a} {b} {c} {d}");
        }
        "notify-unset" => {
            // SAFETY: this peer has one thread.
            let a = outcome(unsafe { systemd::notify_and_unset(&[State::Ready]) });
            assert!(std::env::var_os("NOTIFY_SOCKET").is_none());
            let b = outcome(systemd::notify(&[State::Stopping]));
            println!("{a} {b}");
        }
        "notify-none" => println!("{}", outcome(systemd::notify(&[State::Ready]))),
        "notify-invalid" => println!("{:?}", systemd::notify(&[State::Ready]).unwrap_err()),
        "fdstore" => {
            let (r, w) = rustix::pipe::pipe().unwrap();
            rustix::io::write(&w, b"kept by the manager").unwrap();
            drop(w);
            let store = State::FdStore { fd: r.as_fd(), name: "pipe-1" };
            systemd::notify(&[store, State::Status("stored a pipe")]).unwrap();
            systemd::notify(&[State::FdStoreRemove { name: "pipe-1" }]).unwrap();
            println!("ok");
        }
        "watchdog" => {
            let pings: u32 = args[1].parse().unwrap();
            let Some(interval) = systemd::watchdog_interval() else {
                let why = format!("no watchdog ({:?})", systemd::watchdog_interval_checked());
                systemd::notify(&[State::Status(&why)]).unwrap();
                return;
            };
            let half = interval / 2;
            let status = format!("watchdog every {} us, pinging every {} us", interval.as_micros(), half.as_micros());
            systemd::notify(&[State::Status(&status)]).unwrap();
            for _ in 0..pings {
                systemd::notify(&[State::Watchdog]).unwrap();
                std::thread::sleep(half);
            }
            systemd::notify(&[State::Status("stalled")]).unwrap();
            std::thread::sleep(interval * 5);
        }
        "activated" => activated_peer(&args[1]),
        "journal-stderr" => {
            let j = Journal::with_socket("ember-test", "/nonexistent/journal/socket").unwrap();
            assert_eq!(j.send(Priority::Error, format_args!("first\nsecond"), &[]), Ok(Delivery::Stderr));
            assert_eq!(j.send(Priority::Info, format_args!("one line"), &[]), Ok(Delivery::Stderr));
        }
        other => panic!("unknown peer role {other}"),
    }
}

/// The socket-activated side: takes its descriptors, reports their names and kinds on
/// stdout, serves one request on the one named in `scenario`, and says READY=1.
fn activated_peer(scenario: &str) {
    if std::env::var_os("EMBER_FAKE_LISTEN_PID").is_some() {
        // SAFETY: this peer has one thread; the manager sets LISTEN_PID like this.
        unsafe { std::env::set_var("LISTEN_PID", std::process::id().to_string()) };
    }
    let mut fds = systemd::listen_fds::<4>().unwrap();
    // Taken once: a second call finds nothing; the variables stay; FD_CLOEXEC is set.
    assert!(systemd::listen_fds::<4>().unwrap().is_empty());
    assert!(std::env::var_os("LISTEN_FDS").is_some());
    for f in &fds {
        assert!(rustix::io::fcntl_getfd(f).unwrap().contains(rustix::io::FdFlags::CLOEXEC));
    }
    let mut report: Vec<String> = fds.iter().map(|f| format!("{}:{:?}", f.name(), f.kind())).collect();
    let mut buf = vec![0u8; 65536];
    let reply = |buf: &mut [u8], n: usize, out: &mut [u8]| -> usize {
        let f = ember_core::Frame::new_checked(&buf[..n]).unwrap();
        frame(2, f.seq(), f.payload(), out)
    };
    let mut out = [0u8; 512];
    match scenario {
        "seqpacket" => {
            let wrong = fds.uds_datagram("cmd").err().unwrap();
            report.push(format!("wrong:{wrong}"));
            let l = fds.uds_seqpacket_listener("cmd").unwrap();
            let (mut s, _) = l.accept_seqpacket().unwrap();
            let n = s.recv_frame(&mut buf).unwrap();
            let m = reply(&mut buf, n, &mut out);
            systemd::notify(&[State::Ready, State::Status("serving cmd")]).unwrap();
            s.send_frame(&out[..m]).unwrap();
        }
        "stream" => {
            let l = fds.uds_stream_listener("second").unwrap();
            let (mut s, _) = l.accept_stream::<4096>().unwrap();
            let n = s.recv_frame(&mut buf).unwrap();
            let m = reply(&mut buf, n, &mut out);
            systemd::notify(&[State::Ready, State::Status("serving second")]).unwrap();
            s.send_frame(&out[..m]).unwrap();
        }
        "datagram" => {
            let wrong = fds.uds_stream_listener("data").err().unwrap();
            report.push(format!("wrong:{wrong}"));
            let mut s = fds.uds_datagram("data").unwrap();
            let (n, from) = s.recv_frame_from(&mut buf).unwrap();
            let from = rustix::net::SocketAddrUnix::try_from(from.unwrap()).unwrap();
            let m = reply(&mut buf, n, &mut out);
            systemd::notify(&[State::Ready, State::Status("serving data")]).unwrap();
            s.send_frame_to(&out[..m], &from).unwrap();
        }
        "tcp" => {
            let l = fds.tcp_listener("tcp").unwrap();
            let (mut s, _) = l.accept::<4096>().unwrap();
            let n = s.recv_frame(&mut buf).unwrap();
            let m = reply(&mut buf, n, &mut out);
            systemd::notify(&[State::Ready, State::Status("serving tcp")]).unwrap();
            s.send_frame(&out[..m]).unwrap();
        }
        "udp" => {
            let mut s = fds.udp("udp").unwrap();
            let (n, from) = s.recv_frame_from(&mut buf).unwrap();
            let from = std::net::SocketAddr::try_from(from.unwrap()).unwrap();
            let m = reply(&mut buf, n, &mut out);
            systemd::notify(&[State::Ready, State::Status("serving udp")]).unwrap();
            s.send_frame_to(&out[..m], &from).unwrap();
        }
        "fifo-mq" => {
            let mut fifo = fds.fifo::<4096>("fifo").unwrap();
            let wrong = fds.uds_datagram("queue").err().unwrap();
            let mut q = fds.message_queue("queue").unwrap();
            let n = fifo.recv_frame(&mut buf).unwrap();
            let a = String::from_utf8(ember_core::Frame::new_checked(&buf[..n]).unwrap().payload().to_vec()).unwrap();
            let n = q.recv_frame(&mut buf).unwrap();
            let b = String::from_utf8(ember_core::Frame::new_checked(&buf[..n]).unwrap().payload().to_vec()).unwrap();
            report.push(format!("{a}|{b}"));
            report.push(format!("wrong:{wrong}"));
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("{}", report.join(" "));
}

fn main() {
    common::main(
        &[
            ("notify_to_a_socket_path", notify_to_a_socket_path),
            ("notify_to_an_abstract_socket", notify_to_an_abstract_socket),
            ("fdstore_passes_the_descriptor", fdstore_passes_the_descriptor),
            ("unset_and_not_under_systemd", unset_and_not_under_systemd),
            ("notify_errors", notify_errors),
            ("watchdog_pings_then_misses", watchdog_pings_then_misses),
            ("activated_seqpacket_listener", activated_seqpacket_listener),
            ("activated_stream_listeners_by_name", activated_stream_listeners_by_name),
            ("activated_datagram_socket", activated_datagram_socket),
            ("activated_tcp_and_udp", activated_tcp_and_udp),
            ("activated_fifo_and_message_queue", activated_fifo_and_message_queue),
            ("fd_kinds_and_wrong_types", fd_kinds_and_wrong_types),
            ("journal_entries", journal_entries),
            #[cfg(feature = "log")]
            ("journal_logger_records", journal_logger_records),
        ],
        peer_main,
    );
}
