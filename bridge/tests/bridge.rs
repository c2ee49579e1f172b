//! The bridge end to end: real `ember-bridge` processes, each with its own Zenoh session
//! over loopback TCP (explicit endpoints, scouting off), real shm rings, queues and sockets
//! on both sides, and the plain-Zenoh example program as a foreign peer; and two bridges in
//! two network namespaces joined by a veth pair (made by the test, as root), as two boards
//! on a link that goes down for a second.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ember_bridge::counters::{RouteStatus, Status};
use ember_core::frame::{Frame, FrameRepr, Integrity};
use ember_core::shm::ShmError;
use ember_linux::shm::{Backing, BroadcastWriter, SpscReceiver, SpscSender};
use zenoh::Wait;

const BRIDGE: &str = env!("CARGO_BIN_EXE_ember-bridge");

/// A port nobody listens on now (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A name unique to this process and test.
fn unique(tag: &str) -> String {
    format!("/ember-br-{}-{tag}", std::process::id())
}

/// Removes the named shm segments, POSIX queues and socket files when dropped, whatever
/// the test's outcome: a failing test (or a bridge killed with SIGKILL) must not leave them
/// in `/dev/shm`, `/dev/mqueue` or the temporary directory. Names already gone are fine.
struct Unlink(Vec<String>);

impl Drop for Unlink {
    fn drop(&mut self) {
        for n in &self.0 {
            if n.starts_with("/ember-br") {
                let _ = rustix::shm::unlink(n.as_str());
                let _ = ember_linux::mq::MessageQueue::unlink(n);
            } else {
                let _ = std::fs::remove_file(n);
            }
        }
    }
}

/// A running `ember-bridge`, terminated (SIGKILL) on drop if still running.
struct BridgeProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    config: PathBuf,
    /// The table's resume file: removed with the bridge, kept after [`BridgeProc::kill`]
    /// (a restarted bridge reads it).
    resume: Option<String>,
}

impl BridgeProc {
    fn start(tag: &str, toml: &str) -> BridgeProc {
        BridgeProc::start_with(tag, toml, BRIDGE, &[])
    }

    /// `exe` (another build of `ember-bridge`), under `runner` (qemu-user, or
    /// `ip netns exec <ns>`, which execs it: same pid) if not empty.
    fn start_with(tag: &str, toml: &str, exe: &str, runner: &[&str]) -> BridgeProc {
        let config = std::env::temp_dir().join(format!("ember-br-{}-{tag}.toml", std::process::id()));
        std::fs::write(&config, toml).unwrap();
        let mut cmd = match runner {
            [r, args @ ..] => {
                let mut c = Command::new(r);
                c.args(args).arg(exe);
                c
            }
            [] => Command::new(exe),
        };
        let mut child = cmd.arg("--config").arg(&config).stdout(Stdio::piped()).spawn().expect("spawn ember-bridge");
        let lines = forward_lines(child.stdout.take().unwrap());
        let resume = ember_bridge::config::RouteTable::parse(toml).ok().and_then(|t| t.resume_name());
        let b = BridgeProc { child, lines, config, resume };
        b.expect_line("ready", Duration::from_secs(60));
        b
    }

    fn expect_line(&self, want: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l == want => return,
                Ok(_) => {}
                Err(e) => panic!("bridge never printed {want:?}: {e}"),
            }
        }
    }

    fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).unwrap()
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> ExitStatus {
        rustix::process::kill_process(self.pid(), rustix::process::Signal::TERM).unwrap();
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        let _ = std::fs::remove_file(&self.config);
        status
    }

    /// SIGKILL, as a crash: the resume file stays for a successor.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.resume = None;
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
        if let Some(r) = self.resume.take() {
            let _ = rustix::shm::unlink(r.as_str());
        }
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let end = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("process {} did not exit within {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn forward_lines(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The resume file of the test bridge on `board` listening on `listen`: unique to this
/// process and bridge (tests run side by side with the same board names), kept across a
/// restart of that bridge, removed by [`BridgeProc`].
fn resume_of(board: &str, listen: u16) -> String {
    format!("/ember-br-{}-{board}-{listen}.resume", std::process::id())
}

/// The route table header of a bridge on `board` listening on `listen`, connecting to
/// `connect`.
fn zenoh_table(board: &str, listen: u16, connect: &[u16]) -> String {
    let connect: Vec<String> = connect.iter().map(|p| format!("\"tcp/127.0.0.1:{p}\"")).collect();
    format!(
        "board = \"{board}\"\nresume = \"{}\"\n[zenoh]\nmode = \"peer\"\nlisten = [\"tcp/127.0.0.1:{listen}\"]\nconnect = [{}]\nscouting = false\n",
        resume_of(board, listen),
        connect.join(", ")
    )
}

/// The test's own Zenoh session, connected to the bridges on `ports`.
fn observer(ports: &[u16]) -> zenoh::Session {
    let connect: Vec<String> = ports.iter().map(|p| format!("\"tcp/127.0.0.1:{p}\"")).collect();
    let json = format!(
        r#"{{ mode: "peer", connect: {{ endpoints: [{}] }}, listen: {{ endpoints: ["tcp/127.0.0.1:0"] }},
             scouting: {{ multicast: {{ enabled: false }}, gossip: {{ enabled: false }} }} }}"#,
        connect.join(", ")
    );
    zenoh::open(zenoh::Config::from_json5(&json).unwrap()).wait().unwrap()
}

/// `ember/{board}/@status`, asked until a bridge answers.
fn status(session: &zenoh::Session, board: &str) -> Status {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let replies = session.get(ember_bridge::status_key(board)).timeout(Duration::from_secs(5)).wait().unwrap();
        if let Ok(reply) = replies.recv()
            && let Ok(sample) = reply.result()
        {
            let bytes = sample.payload().to_bytes();
            return serde_json::from_slice(&bytes).expect("status JSON");
        }
        assert!(Instant::now() < end, "no status from board {board}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn route<'s>(s: &'s Status, channel: &str) -> &'s RouteStatus {
    s.routes.iter().find(|r| r.channel == channel).expect("route in status")
}

/// Waits until `cond` holds on `board`'s status.
fn wait_status(session: &zenoh::Session, board: &str, what: &str, cond: impl Fn(&Status) -> bool) -> Status {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(session, board);
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < end, "board {board}: never {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Frame `i` of a test stream: kind 1, seq `i`, payload `i` (u64 LE) then `fill` bytes of
/// a pattern derived from `i`; local frames are unchecked (the bridge seals them).
fn test_frame(i: u64, fill: usize, buf: &mut [u8]) -> &[u8] {
    let mut payload = [0u8; 4096];
    payload[..8].copy_from_slice(&i.to_le_bytes());
    for (j, b) in payload[8..8 + fill].iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    let repr = FrameRepr { flags: Integrity::Unchecked.flags(), kind: 1, seq: i as u32, payload_len: 8 + fill };
    repr.emit_with_payload(&payload[..8 + fill], buf).unwrap()
}

/// Checks a received record is frame `i` of the stream, sealed; returns `i`.
fn check_frame(bytes: &[u8], fill: usize) -> u64 {
    let f = Frame::new_checked(bytes).expect("a valid frame");
    assert_eq!(f.integrity(), Integrity::Checked, "sealed by the bridge");
    assert_eq!(f.total_len(), bytes.len());
    let p = f.payload();
    let i = u64::from_le_bytes(p[..8].try_into().unwrap());
    let mut want = [0u8; 4096];
    let n = test_frame(i, fill, &mut want).len();
    let w = Frame::new_checked(&want[..n]).unwrap();
    assert_eq!((f.kind(), f.seq(), p), (w.kind(), w.seq(), w.payload()), "frame {i} intact");
    i
}

fn example(name: &str) -> PathBuf {
    // target/debug/deps/<test> -> target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(p.exists(), "{} is missing: `cargo test` builds the examples", p.display());
    p
}

#[test]
fn block_carries_100_000_frames_in_order() {
    const N: u64 = 100_000;
    const FILL: usize = 40;
    let (pa, pb) = (free_port(), free_port());
    let (ring_a, ring_b) = (unique("blk-a"), unique("blk-b"));
    let _unlink = Unlink(vec![ring_a.clone(), ring_b.clone()]);
    let mut writer = SpscSender::create(Backing::Named(&ring_a), 1 << 16, 0).unwrap();
    let a = BridgeProc::start(
        "blk-a",
        &format!(
            "{}[[route]]\nchannel = \"seq\"\ndirection = \"out\"\ncongestion = \"block\"\nlocal = {{ kind = \"spsc\", name = \"{ring_a}\" }}\n",
            zenoh_table("a", pa, &[])
        ),
    );
    let b = BridgeProc::start(
        "blk-b",
        &format!(
            "{}[[route]]\nchannel = \"seq\"\ndirection = \"in\"\nfrom = \"a\"\ncongestion = \"block\"\nlocal = {{ kind = \"spsc\", name = \"{ring_b}\", capacity = 65536 }}\n",
            zenoh_table("b", pb, &[pa])
        ),
    );
    let obs = observer(&[pa, pb]);
    wait_status(&obs, "a", "matched", |s| route(s, "seq").matched == Some(true));
    let mut reader = SpscReceiver::open(&ring_b, 0).unwrap();

    let w = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for i in 0..N {
            writer.send(test_frame(i, FILL, &mut buf), Some(Duration::from_secs(60))).unwrap();
        }
        writer
    });
    let mut buf = [0u8; 256];
    for i in 0..N {
        let n = reader.recv(&mut buf, Some(Duration::from_secs(60))).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert_eq!(check_frame(&buf[..n], FILL), i, "in order");
    }
    let _writer = w.join().unwrap();
    let sa = wait_status(&obs, "a", "all out", |s| route(s, "seq").counters.frames_out == N);
    let sb = wait_status(&obs, "b", "all out", |s| route(s, "seq").counters.frames_out == N);
    let (ca, cb) = (route(&sa, "seq").counters, route(&sb, "seq").counters);
    assert_eq!((ca.frames_in, ca.dropped, ca.bad), (N, 0, 0), "{ca:?}");
    assert_eq!((cb.frames_in, cb.dropped, cb.bad, cb.lost), (N, 0, 0, 0), "{cb:?}");
    assert_eq!(reader.try_recv(&mut buf).unwrap_err(), ember_linux::Error::Shm(ShmError::Empty));
    drop(obs);
    assert!(b.terminate().success());
    assert!(a.terminate().success());
    // B created its ring and removed it on the way out.
    assert!(!std::path::Path::new(&format!("/dev/shm{ring_b}")).exists());
}

#[test]
fn drop_counters_add_up_exactly_with_a_slow_reader() {
    const N: u64 = 20_000;
    const FILL: usize = 24;
    let (pa, pb) = (free_port(), free_port());
    let (ring_a, ring_b) = (unique("drp-a"), unique("drp-b"));
    let _unlink = Unlink(vec![ring_a.clone(), ring_b.clone()]);
    let mut writer = SpscSender::create(Backing::Named(&ring_a), 1 << 16, 0).unwrap();
    let a = BridgeProc::start(
        "drp-a",
        &format!(
            "{}[[route]]\nchannel = \"seq\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{ring_a}\" }}\n",
            zenoh_table("a", pa, &[])
        ),
    );
    // B drops what its small ring (and short queue) cannot take.
    let b = BridgeProc::start(
        "drp-b",
        &format!(
            "{}[[route]]\nchannel = \"seq\"\ndirection = \"in\"\nfrom = \"a\"\ncongestion = \"drop\"\nlocal = {{ kind = \"spsc\", name = \"{ring_b}\", capacity = 4096 }}\n",
            zenoh_table("b", pb, &[pa])
        ),
    );
    let obs = observer(&[pa, pb]);
    wait_status(&obs, "a", "matched", |s| route(s, "seq").matched == Some(true));
    let mut reader = SpscReceiver::open(&ring_b, 0).unwrap();
    let w = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for i in 0..N {
            writer.send(test_frame(i, FILL, &mut buf), Some(Duration::from_secs(60))).unwrap();
        }
        writer
    });
    // The slow reader: a nap every 16 frames.
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        match reader.recv(&mut buf, Some(Duration::from_millis(200))) {
            Ok(n) => {
                got.push(check_frame(&buf[..n], FILL));
                if got.len() % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(ember_linux::Error::Shm(ShmError::Timeout)) => {
                let s = status(&obs, "b");
                let c = route(&s, "seq").counters;
                if c.frames_in + c.lost == N && c.frames_out == got.len() as u64 {
                    break;
                }
                assert!(Instant::now() < end, "stalled: {} received, {c:?}", got.len());
            }
            Err(e) => panic!("{e}"),
        }
    }
    let _writer = w.join().unwrap();
    assert!(got.windows(2).all(|p| p[0] < p[1]), "in order, no duplicates");
    let missing = N - got.len() as u64;
    let ca = route(&status(&obs, "a"), "seq").counters;
    let cb = route(&status(&obs, "b"), "seq").counters;
    assert_eq!(ca.frames_in, N, "{ca:?}");
    assert_eq!(cb.frames_out, got.len() as u64, "{cb:?}");
    assert_eq!(ca.dropped + ca.bad + cb.lost + cb.dropped + cb.bad, missing, "A {ca:?}, B {cb:?}");
    assert!(cb.dropped > 0, "the slow reader made B drop: {cb:?}");
    drop(obs);
    assert!(b.terminate().success());
    assert!(a.terminate().success());
}

#[test]
fn malformed_frames_from_plain_zenoh_are_counted_bad_and_never_enter() {
    let pb = free_port();
    let ring = unique("bad");
    let _unlink = Unlink(vec![ring.clone()]);
    let b = BridgeProc::start(
        "bad",
        &format!(
            "{}[[route]]\nchannel = \"raw\"\ndirection = \"in\"\nfrom = \"x\"\nlocal = {{ kind = \"spsc\", name = \"{ring}\", capacity = 65536 }}\n",
            zenoh_table("b", pb, &[])
        ),
    );
    let mut reader = SpscReceiver::open(&ring, 0).unwrap();
    let endpoint = format!("tcp/127.0.0.1:{pb}");
    let run = |args: &[&str]| {
        let out = Command::new(example("plain_zenoh")).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["pub", &endpoint, "ember/x/raw", "30", "garbage"]);
    run(&["pub", &endpoint, "ember/x/raw", "5"]);
    let obs = observer(&[pb]);
    let s = wait_status(&obs, "b", "35 in", |s| route(s, "raw").counters.frames_in == 35);
    let c = route(&s, "raw").counters;
    assert_eq!((c.bad, c.frames_out, c.dropped, c.lost), (30, 5, 0, 0), "{c:?}");
    let mut buf = [0u8; 256];
    for i in 0..5u64 {
        let n = reader.recv(&mut buf, Some(Duration::from_secs(10))).unwrap();
        let f = Frame::new_checked(&buf[..n]).unwrap();
        assert_eq!((f.kind(), f.seq(), f.payload()), (7, i as u32, &i.to_le_bytes()[..]));
    }
    assert_eq!(reader.try_recv(&mut buf).unwrap_err(), ember_linux::Error::Shm(ShmError::Empty));
    drop(obs);
    assert!(b.terminate().success());
}

#[test]
fn plain_zenoh_decodes_a_bridged_broadcast_ring() {
    const N: u64 = 200;
    let pa = free_port();
    let ring = unique("bc");
    let _unlink = Unlink(vec![ring.clone()]);
    let mut writer = BroadcastWriter::create(Backing::Named(&ring), 1 << 16, 0).unwrap();
    let a = BridgeProc::start(
        "bc",
        &format!(
            "{}[[route]]\nchannel = \"bc\"\ndirection = \"out\"\nlocal = {{ kind = \"broadcast\", name = \"{ring}\" }}\n",
            zenoh_table("a", pa, &[])
        ),
    );
    let mut sub = Command::new(example("plain_zenoh"))
        .args(["sub", &format!("tcp/127.0.0.1:{pa}"), "ember/a/bc", &N.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = forward_lines(sub.stdout.take().unwrap());
    assert_eq!(lines.recv_timeout(Duration::from_secs(60)).unwrap(), "ready");
    let obs = observer(&[pa]);
    wait_status(&obs, "a", "matched", |s| route(s, "bc").matched == Some(true));
    let mut buf = [0u8; 256];
    for i in 0..N {
        writer.send(test_frame(i, 0, &mut buf)).unwrap();
        // Paced: a broadcast ring does not wait for its readers.
        std::thread::sleep(Duration::from_micros(200));
    }
    for i in 0..N {
        let line = lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        let hex: String = i.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(line, format!("frame 1 {i} {hex}"));
    }
    assert!(wait_exit(&mut sub, Duration::from_secs(30)).success());
    let c = route(&status(&obs, "a"), "bc").counters;
    assert_eq!((c.frames_in, c.frames_out, c.dropped, c.bad), (N, N, 0, 0), "{c:?}");
    drop(obs);
    assert!(a.terminate().success());
}

#[test]
fn a_bad_route_table_is_refused_with_a_message() {
    let path = std::env::temp_dir().join(format!("ember-br-{}-badtable.toml", std::process::id()));
    std::fs::write(&path, "board = \"a/b\"\n").unwrap();
    let out = Command::new(BRIDGE).arg("--check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be a key chunk"));
    std::fs::write(&path, "board = \"a\"\n").unwrap();
    let out = Command::new(BRIDGE).arg("--check").arg(&path).output().unwrap();
    assert!(out.status.success());
    let out = Command::new(BRIDGE).arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn b_killed_and_restarted_mid_stream() {
    const N: u64 = 30_000;
    const KILL_AT: usize = 10_000;
    const FILL: usize = 16;
    let (pa, pb) = (free_port(), free_port());
    let (ring_a, ring_b) = (unique("rst-a"), unique("rst-b"));
    let _unlink = Unlink(vec![ring_a.clone(), ring_b.clone(), resume_of("b", pb)]);
    let mut writer = SpscSender::create(Backing::Named(&ring_a), 1 << 16, 0).unwrap();
    let a = BridgeProc::start(
        "rst-a",
        &format!(
            "{}[[route]]\nchannel = \"seq\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{ring_a}\" }}\n",
            zenoh_table("a", pa, &[])
        ),
    );
    let table_b = format!(
        "{}[[route]]\nchannel = \"seq\"\ndirection = \"in\"\nfrom = \"a\"\nlocal = {{ kind = \"spsc\", name = \"{ring_b}\", capacity = 65536 }}\n",
        zenoh_table("b", pb, &[pa])
    );
    let b1 = BridgeProc::start("rst-b", &table_b);
    let obs_a = observer(&[pa]);
    wait_status(&obs_a, "a", "matched", |s| route(s, "seq").matched == Some(true));
    let w = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for i in 0..N {
            writer.send(test_frame(i, FILL, &mut buf), Some(Duration::from_secs(120))).unwrap();
        }
        writer
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let mut reader = SpscReceiver::open(&ring_b, 0).unwrap();
    while got.len() < KILL_AT {
        let n = reader.recv(&mut buf, Some(Duration::from_secs(60))).unwrap();
        got.push(check_frame(&buf[..n], FILL));
    }
    // Crash B: what it already wrote into its ring is still read, then the writer is gone.
    b1.kill();
    loop {
        match reader.recv(&mut buf, Some(Duration::from_secs(60))) {
            Ok(n) => got.push(check_frame(&buf[..n], FILL)),
            Err(ember_linux::Error::Shm(ShmError::WriterGone)) => break,
            Err(e) => panic!("old ring: {e}"),
        }
    }
    drop(reader);
    let before_restart = got.len();
    // A lives on, and holds frames back while nobody subscribes (block).
    let sa = wait_status(&obs_a, "a", "unmatched", |s| route(s, "seq").matched == Some(false));
    assert_eq!(route(&sa, "seq").counters.dropped, 0);
    let b2 = BridgeProc::start("rst-b", &table_b);
    let mut reader = SpscReceiver::open(&ring_b, 0).unwrap();
    while got.last() != Some(&(N - 1)) {
        let n = reader.recv(&mut buf, Some(Duration::from_secs(60))).unwrap_or_else(|e| panic!("after {got:?}: {e}"));
        got.push(check_frame(&buf[..n], FILL));
    }
    let _writer = w.join().unwrap();
    assert!(got.windows(2).all(|p| p[0] < p[1]), "in order, no duplicates");
    let after_restart = (got.len() - before_restart) as u64;
    // What went missing is one contiguous window: the frames in flight when B died.
    let gaps: Vec<_> = got.windows(2).filter(|p| p[1] != p[0] + 1).collect();
    assert!(gaps.len() <= 1, "one window lost at most: {gaps:?}");
    assert_eq!(got[0], 0);
    let obs_b = observer(&[pb]);
    let ca = route(&status(&obs_a, "a"), "seq").counters;
    let cb = route(&status(&obs_b, "b"), "seq").counters;
    assert_eq!((ca.frames_in, ca.frames_out, ca.dropped, ca.bad), (N, N, 0, 0), "{ca:?}");
    assert_eq!((cb.frames_out, cb.dropped, cb.bad), (after_restart, 0, 0), "{cb:?}");
    // The loss is what the counters say: the restarted B counts, from where its
    // predecessor's resume file says it stopped, every frame that never reached the ring
    // (one more when the kill fell between a frame's write and its record: docs/bridge.md).
    let missing = N - got.len() as u64;
    assert!(cb.lost == missing || cb.lost == missing + 1, "lost {} but {missing} missing: {gaps:?}", cb.lost);
    eprintln!(
        "restart: {missing} frames lost in B's crash (window {gaps:?}, B counted {}), {before_restart} before, {after_restart} after",
        cb.lost
    );
    drop((obs_a, obs_b));
    assert!(b2.terminate().success());
    assert!(a.terminate().success());
}

#[test]
fn unix_datagram_socket_to_message_queue() {
    use ember_linux::mq::{Access, MessageQueue};
    const N: u64 = 500;
    let (pa, pb) = (free_port(), free_port());
    let sock = std::env::temp_dir().join(format!("ember-br-{}-dg.sock", std::process::id()));
    let sock = sock.to_str().unwrap().to_owned();
    let queue = unique("mq");
    let _unlink = Unlink(vec![queue.clone()]);
    let a = BridgeProc::start(
        "dg-a",
        &format!(
            "{}[[route]]\nchannel = \"dg\"\ndirection = \"out\"\nmax_frame = 256\nlocal = {{ kind = \"unix_dgram\", path = \"{sock}\" }}\n",
            zenoh_table("a", pa, &[])
        ),
    );
    let b = BridgeProc::start(
        "dg-b",
        &format!(
            "{}[[route]]\nchannel = \"dg\"\ndirection = \"in\"\nfrom = \"a\"\nmax_frame = 256\nlocal = {{ kind = \"mq\", name = \"{queue}\", create = true, max_msgs = 8 }}\n",
            zenoh_table("b", pb, &[pa])
        ),
    );
    let obs = observer(&[pa, pb]);
    wait_status(&obs, "a", "matched", |s| route(s, "dg").matched == Some(true));
    let mut q = MessageQueue::open(&queue, Access::Receive).unwrap();
    let to = rustix::net::SocketAddrUnix::new(sock.as_str()).unwrap();
    let w = std::thread::spawn(move || {
        let mut s = ember_linux::uds::unbound_datagram().unwrap();
        let mut buf = [0u8; 256];
        for i in 0..N {
            s.send_frame_to(test_frame(i, 32, &mut buf), &to).unwrap();
        }
    });
    let mut buf = [0u8; 256];
    for i in 0..N {
        let (n, _) = q.recv_prio(&mut buf, Some(Duration::from_secs(60))).unwrap();
        assert_eq!(check_frame(&buf[..n], 32), i);
    }
    w.join().unwrap();
    let ca = route(&status(&obs, "a"), "dg").counters;
    let cb = wait_status(&obs, "b", "all out", |s| route(s, "dg").counters.frames_out == N);
    assert_eq!((ca.frames_in, ca.frames_out, ca.bad), (N, N, 0), "{ca:?}");
    assert_eq!(route(&cb, "dg").counters.frames_in, N);
    drop((obs, q));
    assert!(b.terminate().success());
    assert!(a.terminate().success());
    // Both bridges removed what they created.
    assert!(MessageQueue::open(&queue, Access::Receive).is_err());
    assert!(!std::path::Path::new(&sock).exists());
}

#[test]
fn a_rate_limit_with_drop_counts_every_frame_over_it() {
    const N: u64 = 2_000;
    let (pa, pb) = (free_port(), free_port());
    let (ring_a, ring_b) = (unique("rl-a"), unique("rl-b"));
    let _unlink = Unlink(vec![ring_a.clone(), ring_b.clone()]);
    let mut writer = SpscSender::create(Backing::Named(&ring_a), 1 << 18, 0).unwrap();
    let a = BridgeProc::start(
        "rl-a",
        &format!(
            "{}[[route]]\nchannel = \"rl\"\ndirection = \"out\"\ncongestion = \"drop\"\nrate_limit = 100\nlocal = {{ kind = \"spsc\", name = \"{ring_a}\" }}\n",
            zenoh_table("a", pa, &[])
        ),
    );
    let b = BridgeProc::start(
        "rl-b",
        &format!(
            "{}[[route]]\nchannel = \"rl\"\ndirection = \"in\"\nfrom = \"a\"\nlocal = {{ kind = \"spsc\", name = \"{ring_b}\", capacity = 262144 }}\n",
            zenoh_table("b", pb, &[pa])
        ),
    );
    let obs = observer(&[pa, pb]);
    wait_status(&obs, "a", "matched", |s| route(s, "rl").matched == Some(true));
    let mut reader = SpscReceiver::open(&ring_b, 0).unwrap();
    let mut buf = [0u8; 256];
    // All at once: far over 100 frames/s.
    for i in 0..N {
        writer.send(test_frame(i, 8, &mut buf), Some(Duration::from_secs(60))).unwrap();
    }
    let sa = wait_status(&obs, "a", "all in", |s| {
        let c = route(s, "rl").counters;
        c.frames_in == N && c.frames_out + c.dropped == N
    });
    let ca = route(&sa, "rl").counters;
    assert!(ca.dropped > 0, "{ca:?}");
    let sb = wait_status(&obs, "b", "all out", |s| route(s, "rl").counters.frames_out == ca.frames_out);
    let cb = route(&sb, "rl").counters;
    assert_eq!((cb.frames_in, cb.lost, cb.dropped, cb.bad), (ca.frames_out, 0, 0, 0), "{cb:?}");
    let mut got = Vec::new();
    while let Ok(n) = reader.try_recv(&mut buf) {
        got.push(check_frame(&buf[..n], 8));
    }
    assert_eq!(got.len() as u64, ca.frames_out);
    assert!(got.windows(2).all(|p| p[0] < p[1]));
    drop(obs);
    assert!(b.terminate().success());
    assert!(a.terminate().success());
}

// ---------------------------------------------------------------------------------------
// Request/response across the bridge.

const ADD: u32 = 1;

/// A local Ember rpc server on a seqpacket socket at `path` (ADD: `a + b`; any other kind:
/// `UNKNOWN_KIND`), one thread per connection, until `stop` is set (then every connection
/// and the listening socket are closed).
fn rpc_server(path: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    use ember_linux::rpc::{Failure, Server};
    let _ = std::fs::remove_file(path);
    let listener = ember_linux::uds::UdsListener::bind_seqpacket(ember_linux::uds::UnixName::Path(path)).unwrap();
    let path = path.to_string();
    std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok((sock, _)) = listener.accept_seqpacket_timeout(Some(Duration::from_millis(20)), None) else {
                continue;
            };
            let stop = stop.clone();
            conns.push(std::thread::spawn(move || {
                let mut sock = sock;
                sock.set_max_frame(4096);
                let mut server: Box<Server<ember_linux::socket::PacketSocket, 4096, 4096>> =
                    Box::new(Server::new(sock).unwrap());
                let mut handler = |kind: u32, payload: &[u8], r: &mut ember_linux::rpc::Responder<'_>| {
                    if kind != ADD {
                        return Err(Failure::new(Failure::UNKNOWN_KIND, "no such kind"));
                    }
                    let (a, b): (u32, u32) = ember_linux::rpc::decode(payload)?;
                    r.respond(&a.wrapping_add(b))
                };
                while !stop.load(Ordering::Relaxed) {
                    match server.serve_one(Some(Duration::from_millis(20)), &mut handler) {
                        Ok(_) | Err(ember_linux::Error::TimedOut) => {}
                        Err(_) => break,
                    }
                }
            }));
        }
        for c in conns {
            c.join().unwrap();
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
    })
}

type RpcClient = ember_linux::rpc::Client<ember_linux::socket::PacketSocket, 32, 64, 4096>;

fn rpc_client(path: &str) -> Box<RpcClient> {
    let mut sock = ember_linux::uds::connect_seqpacket(ember_linux::uds::UnixName::Path(path)).unwrap();
    sock.set_max_frame(4096);
    Box::new(RpcClient::new(sock).unwrap())
}

/// Calls ADD through a new client until one answers (Zenoh routes the bridges' queries
/// once their sessions have met), within a minute.
fn first_answer(path: &str) -> Box<RpcClient> {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = rpc_client(path);
        let r = c.call::<_, u32>(ADD, &(40u32, 2u32), Some(Duration::from_secs(2))).map_err(|e| e.into_owned());
        match r {
            Ok(v) => {
                assert_eq!(v, 42);
                return c;
            }
            Err(e) => assert!(Instant::now() < end, "no answer across the bridge: {e}"),
        }
    }
}

#[test]
fn rpc_across_the_bridge_many_in_flight_unknown_kind_and_a_dying_server() {
    use ember_linux::rpc::{CallError, Failure};
    let (pa, pb) = (free_port(), free_port());
    let dir = std::env::temp_dir();
    let server_path = dir.join(format!("ember-br-{}-rpc-server.sock", std::process::id())).display().to_string();
    let client_path = dir.join(format!("ember-br-{}-rpc-client.sock", std::process::id())).display().to_string();
    let _unlink = Unlink(vec![server_path.clone(), client_path.clone()]);
    let stop_server = Arc::new(AtomicBool::new(false));
    let server = rpc_server(&server_path, stop_server.clone());
    let a = BridgeProc::start(
        "rpc-a",
        &format!(
            "{}[[rpc]]\nservice = \"calc\"\nrole = \"serve\"\npath = \"{server_path}\"\ntimeout_ms = 5000\n",
            zenoh_table("a", pa, &[])
        ),
    );
    let b = BridgeProc::start(
        "rpc-b",
        &format!(
            "{}[[rpc]]\nservice = \"calc\"\nrole = \"call\"\nfrom = \"a\"\npath = \"{client_path}\"\ntimeout_ms = 5000\n",
            zenoh_table("b", pb, &[pa])
        ),
    );
    let t = Some(Duration::from_secs(10));
    let mut c = first_answer(&client_path);

    // A second client, concurrently: 300 calls one at a time.
    let other = {
        let path = client_path.clone();
        std::thread::spawn(move || {
            let mut c = rpc_client(&path);
            for i in 0..300u32 {
                let v: u32 = c.call(ADD, &(i, 1_000_000u32), t).map_err(|e| e.into_owned()).unwrap();
                assert_eq!(v, i + 1_000_000);
            }
        })
    };
    // 32 calls in flight at a time, 40 rounds: every answer reaches its own call.
    for round in 0..40u32 {
        let tickets: Vec<_> = (0..32u32).map(|i| (i, c.start(ADD, &(i, round * 1000), t).unwrap())).collect();
        for (i, ticket) in tickets.into_iter().rev() {
            let v: u32 = c.wait(ticket, t).map_err(|e| e.into_owned()).unwrap();
            assert_eq!(v, i + round * 1000);
        }
    }
    other.join().unwrap();

    // A kind the server does not know: its error response crosses as it is.
    match c.call::<_, u32>(99, &(1u32, 2u32), t) {
        Err(CallError::Remote { code, message }) => {
            assert_eq!((code, message), (Failure::UNKNOWN_KIND, "no such kind"));
        }
        other => panic!("unknown kind: {other:?}"),
    }

    let obs = observer(&[pa, pb]);
    let sa = wait_status(&obs, "a", "counted the calls", |s| route(s, "calc").counters.frames_out >= 1581);
    let sb = status(&obs, "b");
    let (ra, rb) = (route(&sa, "calc"), route(&sb, "calc"));
    assert_eq!((ra.direction.as_str(), rb.direction.as_str()), ("serve", "call"));
    assert_eq!((ra.key.as_str(), rb.key.as_str()), ("ember/a/rpc/calc", "ember/a/rpc/calc"));
    assert_eq!(ra.local, "seqpacket");
    // Everything the serving bridge took was answered (the warm-up calls that found no
    // route never reached it); nothing was refused on either side.
    assert_eq!(ra.counters.frames_in, ra.counters.frames_out + ra.counters.dropped);
    assert_eq!((ra.counters.bad, rb.counters.bad), (0, 0));
    assert!(rb.counters.frames_out >= 1582, "{rb:?}");

    // The server dies: the client's link ends (PeerGone), promptly, not at its timeout.
    stop_server.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let started = Instant::now();
    let e = c.call::<_, u32>(ADD, &(1u32, 1u32), Some(Duration::from_secs(30))).map_err(|e| e.into_owned());
    assert_eq!(e, Err(ember_linux::rpc::OwnedCallError::Local(ember_linux::Error::PeerGone)));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // A new client while there is no server: the same.
    let mut c2 = rpc_client(&client_path);
    let e = c2.call::<_, u32>(ADD, &(1u32, 1u32), Some(Duration::from_secs(30))).map_err(|e| e.into_owned());
    assert_eq!(e, Err(ember_linux::rpc::OwnedCallError::Local(ember_linux::Error::PeerGone)));

    // The server comes back: the serving bridge connects again and calls go through.
    let stop_server = Arc::new(AtomicBool::new(false));
    let server = rpc_server(&server_path, stop_server.clone());
    let mut c3 = first_answer(&client_path);
    let v: u32 = c3.call(ADD, &(7u32, 8u32), t).map_err(|e| e.into_owned()).unwrap();
    assert_eq!(v, 15);

    assert!(a.terminate().success());
    assert!(b.terminate().success());
    assert!(std::fs::metadata(&client_path).is_err(), "the call bridge removes its socket file");
    stop_server.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// A seqlock sampled at 50 Hz on board A reaches a seqpacket listener on board B (changed
/// values only); frames from a seqpacket writer on board A reach a seqlock board B creates.
#[test]
fn seqlock_sampled_to_seqpacket_and_seqpacket_to_seqlock() {
    use ember_linux::shm::{SeqLockReader, SeqLockWriter};
    use ember_linux::{FrameSender, TimedReceiver};
    let (pa, pb) = (free_port(), free_port());
    let (value_a, value_b) = (unique("sl-a"), unique("sl-b"));
    let dir = std::env::temp_dir();
    let listen_b = dir.join(format!("ember-br-{}-sp-b.sock", std::process::id())).display().to_string();
    let writer_a = dir.join(format!("ember-br-{}-sp-a.sock", std::process::id())).display().to_string();
    let _unlink = Unlink(vec![
        value_a.clone(),
        value_b.clone(),
        listen_b.clone(),
        writer_a.clone(),
        ember_bridge::local_status_name("sla"),
        ember_bridge::local_status_name("slb"),
    ]);

    // Board A's seqlock, written by "a sensor" (this test) before the bridge starts.
    let mut sensor = SeqLockWriter::create(Backing::Named(&value_a), 256, 0).unwrap();
    let mut buf = [0u8; 256];
    sensor.write(test_frame(0, 16, &mut buf)).unwrap();
    // Board B's local reader: a seqpacket listener the bridge connects to.
    let listener = ember_linux::uds::UdsListener::bind_seqpacket(ember_linux::uds::UnixName::Path(&listen_b)).unwrap();

    let a = BridgeProc::start(
        "sl-a",
        &format!(
            "{}[[route]]\nchannel = \"level\"\ndirection = \"out\"\nlocal = {{ kind = \"seqlock\", name = \"{value_a}\", rate_hz = 50 }}\n\
             [[route]]\nchannel = \"cmd\"\ndirection = \"out\"\nlocal = {{ kind = \"unix_seqpacket\", path = \"{writer_a}\" }}\n",
            zenoh_table("sla", pa, &[])
        ),
    );
    let b = BridgeProc::start(
        "sl-b",
        &format!(
            "{}[[route]]\nchannel = \"level\"\ndirection = \"in\"\nfrom = \"sla\"\nlocal = {{ kind = \"unix_seqpacket\", path = \"{listen_b}\" }}\n\
             [[route]]\nchannel = \"cmd\"\ndirection = \"in\"\nfrom = \"sla\"\nlocal = {{ kind = \"seqlock\", name = \"{value_b}\" }}\n",
            zenoh_table("slb", pb, &[pa])
        ),
    );

    // The sensor writes 1 kHz for 2 s; the bridge publishes at most 50 changed values a
    // second, each a whole frame, in order.
    let (mut conn, _) = listener.accept_seqpacket_timeout(Some(Duration::from_secs(60)), None).unwrap();
    let writer = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for i in 1..=2000u64 {
            sensor.write(test_frame(i, 16, &mut buf)).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        sensor
    });
    let mut got = Vec::new();
    let mut rx = [0u8; 4096];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        match conn.recv_frame_timeout(&mut rx, Some(Duration::from_millis(100))) {
            Ok(n) => got.push(check_frame(&rx[..n], 16)),
            Err(ember_linux::Error::TimedOut) => {}
            Err(e) => panic!("seqpacket reader: {e}"),
        }
    }
    let sensor = writer.join().unwrap();
    println!("seqlock sampled at 50 Hz: {} values in 4 s, the last {:?}", got.len(), got.last());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "values in order, none twice: {got:?}");
    assert!(got.len() >= 20, "only {} samples in 4 s", got.len());
    assert!(got.len() <= 4 * 50 + 10, "{} samples in 4 s at 50 Hz", got.len());
    assert!(got.iter().any(|&i| i > 1000), "the sensor's later values arrived: {got:?}");
    // Unchanged: nothing more is published.
    let quiet = Instant::now();
    let mut more = 0;
    while quiet.elapsed() < Duration::from_millis(600) {
        if conn.recv_frame_timeout(&mut rx, Some(Duration::from_millis(100))).is_ok() {
            more += 1;
        }
    }
    assert!(more <= 1, "{more} frames published for a value that did not change");
    drop(sensor);

    // Board A's seqpacket writer: 500 frames; board B's seqlock ends with the last one.
    let end = Instant::now() + Duration::from_secs(60);
    let mut cmd = loop {
        match ember_linux::uds::connect_seqpacket(ember_linux::uds::UnixName::Path(&writer_a)) {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < end, "bridge A never listened on {writer_a}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let obs = observer(&[pa, pb]);
    wait_status(&obs, "sla", "matched", |s| route(s, "cmd").matched == Some(true));
    for i in 0..500u64 {
        cmd.send_frame(test_frame(i, 32, &mut buf)).unwrap();
    }
    let mut latest = SeqLockReader::open(&value_b, 0).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = latest.read(&mut rx)
            && check_frame(&rx[..s.len], 32) == 499
        {
            break;
        }
        assert!(Instant::now() < end, "board B's seqlock never held frame 499");
        std::thread::sleep(Duration::from_millis(10));
    }
    let sb = wait_status(&obs, "slb", "wrote all 500", |s| route(s, "cmd").counters.frames_out == 500);
    assert_eq!(route(&sb, "cmd").local, "seqlock");
    assert_eq!(route(&sb, "cmd").counters.bad, 0);

    // The same status, locally, in the bridge's status seqlock (what `emberctl ls` shows).
    let mut local =
        SeqLockReader::open(&ember_bridge::local_status_name("slb"), ember_core::shm::inspect::STATUS_JSON_FINGERPRINT)
            .unwrap();
    let mut doc = vec![0u8; 64 * 1024];
    // Rewritten every 250 ms: within a few periods it says what the status key said.
    let end = Instant::now() + Duration::from_secs(10);
    let local = loop {
        let snap = local.read(&mut doc).unwrap();
        let now: Status = serde_json::from_slice(&doc[..snap.len]).unwrap();
        if route(&now, "cmd").counters.frames_out == 500 || Instant::now() > end {
            break now;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(local.board, "slb");
    assert_eq!(local.pid, b.child.id());
    assert_eq!(route(&local, "cmd").counters.frames_out, 500, "{local:?}");
    assert_eq!(route(&local, "level").local, "unix_seqpacket");

    assert!(a.terminate().success());
    assert!(b.terminate().success());
    for board in ["sla", "slb"] {
        let file = format!("/dev/shm{}", ember_bridge::local_status_name(board));
        assert!(std::fs::metadata(&file).is_err(), "{file} removed on exit");
    }
}

/// A board's `ember-bridge` against this host's over loopback, both ways: the board's
/// build (`EMBER_BRIDGE_BOARD_EXE`) under its emulator (`EMBER_BRIDGE_BOARD_RUNNER`,
/// qemu-user), which `cargo xtask test --only bridge-board` sets after cross-building it
/// (tier 1). Without them the host's own build plays the board. Rings are shared between
/// the two (qemu-user runs on the host's kernel), so the test writes and reads both ends.
#[test]
fn a_board_bridge_against_the_host_bridge_both_ways() {
    const N: u64 = 2_000;
    let exe = std::env::var("EMBER_BRIDGE_BOARD_EXE").unwrap_or_else(|_| BRIDGE.to_string());
    let runner = std::env::var("EMBER_BRIDGE_BOARD_RUNNER").ok();
    println!("board bridge: {exe} {}", runner.as_deref().map_or("(native)".into(), |r| format!("under {r}")));
    let runner: Vec<&str> = runner.as_deref().into_iter().collect();
    let (ph, pd) = (free_port(), free_port());
    let (up_h, up_d, down_d, down_h) = (unique("up-h"), unique("up-d"), unique("down-d"), unique("down-h"));
    let _unlink = Unlink(vec![
        up_h.clone(),
        up_d.clone(),
        down_d.clone(),
        down_h.clone(),
        ember_bridge::local_status_name("host"),
        ember_bridge::local_status_name("board"),
    ]);
    let mut to_board = SpscSender::create(Backing::Named(&up_h), 1 << 16, 0).unwrap();
    let mut from_board = SpscSender::create(Backing::Named(&down_d), 1 << 16, 0).unwrap();
    let host = BridgeProc::start(
        "host",
        &format!(
            "{}[[route]]\nchannel = \"up\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{up_h}\" }}\n\
             [[route]]\nchannel = \"down\"\ndirection = \"in\"\nfrom = \"board\"\nlocal = {{ kind = \"spsc\", name = \"{down_h}\", capacity = 65536 }}\n",
            zenoh_table("host", ph, &[])
        ),
    );
    let board = BridgeProc::start_with(
        "board",
        &format!(
            "{}[[route]]\nchannel = \"up\"\ndirection = \"in\"\nfrom = \"host\"\nlocal = {{ kind = \"spsc\", name = \"{up_d}\", capacity = 65536 }}\n\
             [[route]]\nchannel = \"down\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{down_d}\" }}\n",
            zenoh_table("board", pd, &[ph])
        ),
        &exe,
        &runner,
    );
    let obs = observer(&[ph, pd]);
    wait_status(&obs, "host", "matched", |s| route(s, "up").matched == Some(true));
    wait_status(&obs, "board", "matched", |s| route(s, "down").matched == Some(true));
    let (mut up_rx, mut down_rx) = (SpscReceiver::open(&up_d, 0).unwrap(), SpscReceiver::open(&down_h, 0).unwrap());
    let writers = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        for i in 0..N {
            to_board.send(test_frame(i, 24, &mut buf), Some(Duration::from_secs(60))).unwrap();
            from_board.send(test_frame(i, 56, &mut buf), Some(Duration::from_secs(60))).unwrap();
        }
        (to_board, from_board)
    });
    let mut buf = [0u8; 256];
    for i in 0..N {
        let n = up_rx.recv(&mut buf, Some(Duration::from_secs(60))).unwrap_or_else(|e| panic!("up {i}: {e}"));
        assert_eq!(check_frame(&buf[..n], 24), i, "host to board, in order");
        let n = down_rx.recv(&mut buf, Some(Duration::from_secs(60))).unwrap_or_else(|e| panic!("down {i}: {e}"));
        assert_eq!(check_frame(&buf[..n], 56), i, "board to host, in order");
    }
    let _writers = writers.join().unwrap();
    let sd = wait_status(&obs, "board", "all out", |s| {
        route(s, "up").counters.frames_out == N && route(s, "down").counters.frames_out == N
    });
    assert_eq!((route(&sd, "up").counters.bad, route(&sd, "up").counters.lost), (0, 0));
    drop(obs);
    assert!(board.terminate().success(), "the board's bridge stops cleanly on SIGTERM");
    assert!(host.terminate().success());
}

/// Two network namespaces joined by a veth pair, as two boards on a link: made by the test
/// (`ip netns`, root), removed on drop with their interfaces.
struct VethLink {
    ns: [String; 2],
    ifs: [String; 2],
}

impl VethLink {
    /// `10.{net}.0.1/24` in the first namespace, `.2` in the second, both up.
    fn new(tag: &str, net: u8) -> VethLink {
        let pid = std::process::id();
        let ns = [format!("ember-br-{pid}-{tag}-a"), format!("ember-br-{pid}-{tag}-b")];
        // Interface names have at most 15 bytes.
        let ifs = [format!("ebr{}{tag}a", pid % 100_000), format!("ebr{}{tag}b", pid % 100_000)];
        let link = VethLink { ns, ifs };
        for n in &link.ns {
            link.ip(&["netns", "add", n]);
        }
        let (a, b) = (&link.ifs[0], &link.ifs[1]);
        link.ip(&["link", "add", a, "netns", &link.ns[0], "type", "veth", "peer", "name", b, "netns", &link.ns[1]]);
        for (i, (n, dev)) in link.ns.iter().zip(&link.ifs).enumerate() {
            let addr = format!("10.{net}.0.{}/24", i + 1);
            link.ip(&["-n", n, "addr", "add", &addr, "dev", dev]);
            link.ip(&["-n", n, "link", "set", dev, "up"]);
            link.ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        link
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {args:?}: {e} (iproute2)"));
        assert!(
            out.status.success(),
            "ip {args:?}: {} (this test makes network namespaces: run it as root, as `cargo xtask test` does)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// `ip netns exec <ns>`: the runner of a bridge in namespace `i`.
    fn runner(&self, i: usize) -> [&str; 4] {
        ["ip", "netns", "exec", &self.ns[i]]
    }

    /// Takes the first namespace's end of the link down or up.
    fn set(&self, up: bool) {
        self.ip(&["-n", &self.ns[0], "link", "set", &self.ifs[0], if up { "up" } else { "down" }]);
    }
}

impl Drop for VethLink {
    fn drop(&mut self) {
        for n in &self.ns {
            // Deleting a namespace deletes its end of the veth pair, and so the pair.
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// The status a bridge keeps in its local seqlock (`emberctl ls`): readable from outside
/// its network namespace, where no Zenoh session reaches it.
fn local_status(board: &str, what: &str, cond: impl Fn(&Status) -> bool) -> Status {
    use ember_linux::shm::SeqLockReader;
    let end = Instant::now() + Duration::from_secs(30);
    let mut doc = vec![0u8; 64 * 1024];
    loop {
        let name = ember_bridge::local_status_name(board);
        if let Ok(mut r) = SeqLockReader::open(&name, ember_core::shm::inspect::STATUS_JSON_FINGERPRINT)
            && let Ok(snap) = r.read(&mut doc)
            && let Ok(s) = serde_json::from_slice::<Status>(&doc[..snap.len])
            && cond(&s)
        {
            return s;
        }
        assert!(Instant::now() < end, "board {board} never showed {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_boards_on_a_veth_link_and_a_link_that_goes_down_for_a_second() {
    const N: u64 = 20_000;
    const FILL: usize = 200;
    let pid = std::process::id();
    let link = VethLink::new("v", (pid % 200 + 20) as u8);
    let net = pid % 200 + 20;
    let (boards, tag) = ([format!("va{pid}"), format!("vb{pid}")], "veth");
    let (ring_a, ring_b, back_b, back_a) = (unique("veth-a"), unique("veth-b"), unique("veth-bb"), unique("veth-ba"));
    let _unlink = Unlink(vec![
        ring_a.clone(),
        ring_b.clone(),
        back_b.clone(),
        back_a.clone(),
        ember_bridge::local_status_name(&boards[0]),
        ember_bridge::local_status_name(&boards[1]),
    ]);
    let table = |i: usize, routes: String| {
        let listen = format!("tcp/10.{net}.0.{}:7447", i + 1);
        let connect = if i == 1 { format!("\"tcp/10.{net}.0.1:7447\"") } else { String::new() };
        format!(
            "board = \"{}\"\nresume = \"/ember-br-{pid}-{tag}-{i}.resume\"\n[zenoh]\nmode = \"peer\"\nlisten = [\"{listen}\"]\nconnect = [{connect}]\nscouting = false\n{routes}",
            boards[i]
        )
    };
    let mut up = SpscSender::create(Backing::Named(&ring_a), 1 << 16, 0).unwrap();
    let mut down = SpscSender::create(Backing::Named(&back_b), 1 << 16, 0).unwrap();
    let a = BridgeProc::start_with(
        "veth-a",
        &table(
            0,
            format!(
                "[[route]]\nchannel = \"up\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{ring_a}\" }}\n\
                 [[route]]\nchannel = \"down\"\ndirection = \"in\"\nfrom = \"{}\"\nlocal = {{ kind = \"spsc\", name = \"{back_a}\", capacity = 65536 }}\n",
                boards[1]
            ),
        ),
        BRIDGE,
        &link.runner(0),
    );
    let b = BridgeProc::start_with(
        "veth-b",
        &table(
            1,
            format!(
                "[[route]]\nchannel = \"up\"\ndirection = \"in\"\nfrom = \"{}\"\nlocal = {{ kind = \"spsc\", name = \"{ring_b}\", capacity = 65536 }}\n\
                 [[route]]\nchannel = \"down\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{back_b}\" }}\n",
                boards[0]
            ),
        ),
        BRIDGE,
        &link.runner(1),
    );
    local_status(&boards[0], "a subscriber", |s| route(s, "up").matched == Some(true));
    local_status(&boards[1], "a subscriber", |s| route(s, "down").matched == Some(true));
    let writer = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for i in 0..N {
            up.send(test_frame(i, FILL, &mut buf), Some(Duration::from_secs(60))).unwrap();
            if i % 4 == 0 {
                down.send(test_frame(i / 4, FILL, &mut buf), Some(Duration::from_secs(60))).unwrap();
            }
        }
        (up, down)
    });
    // One reader per direction, each checking order and content; `got[0]` counts up.
    let got = Arc::new([std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)]);
    let readers: Vec<_> = [(ring_b.clone(), N), (back_a.clone(), N / 4)]
        .into_iter()
        .enumerate()
        .map(|(d, (ring, count))| {
            let got = got.clone();
            std::thread::spawn(move || {
                let mut rx = SpscReceiver::open(&ring, 0).unwrap();
                let mut buf = [0u8; 512];
                for i in 0..count {
                    let n =
                        rx.recv(&mut buf, Some(Duration::from_secs(60))).unwrap_or_else(|e| panic!("{ring} {i}: {e}"));
                    assert_eq!(check_frame(&buf[..n], FILL), i, "{ring}: in order, none missing");
                    got[d].store(i + 1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(60);
    while got[0].load(Ordering::Relaxed) < N / 4 {
        assert!(Instant::now() < end, "board B never got a quarter of the frames");
        std::thread::sleep(Duration::from_millis(1));
    }
    // A quarter of the way in, with frames in flight both ways (the writer is held back by
    // the rings), the link goes down for a second (a cable pulled and put back): with
    // `block`, Zenoh's TCP link waits the outage out, inside its lease.
    link.set(false);
    let before = [got[0].load(Ordering::Relaxed), got[1].load(Ordering::Relaxed)];
    std::thread::sleep(Duration::from_secs(1));
    let during = [got[0].load(Ordering::Relaxed) - before[0], got[1].load(Ordering::Relaxed) - before[1]];
    link.set(true);
    let up_at = Instant::now();
    for r in readers {
        r.join().expect("a reader failed");
    }
    let _writers = writer.join().unwrap();
    eprintln!(
        "veth: {N} frames up, {} down; during the 1 s outage {during:?} more were read (already across); the rest took {:?}",
        N / 4,
        up_at.elapsed()
    );
    let sb = local_status(&boards[1], "all written", |s| route(s, "up").counters.frames_out == N);
    let c = route(&sb, "up").counters;
    assert_eq!((c.frames_in, c.dropped, c.bad, c.lost), (N, 0, 0, 0), "{c:?}");
    let sa = local_status(&boards[0], "all written", |s| route(s, "down").counters.frames_out == N / 4);
    let c = route(&sa, "down").counters;
    assert_eq!((c.frames_in, c.dropped, c.bad, c.lost), (N / 4, 0, 0, 0), "{c:?}");
    assert!(b.terminate().success());
    assert!(a.terminate().success());
    drop(link);
}

#[test]
fn a_link_down_longer_than_zenohs_lease_loses_only_what_lost_counts() {
    // Enough after the outage that frames still come once the session is back.
    const N: u64 = 40_000;
    const FILL: usize = 200;
    let pid = std::process::id();
    let link = VethLink::new("l", (pid % 200 + 20) as u8 + 1);
    let net = pid % 200 + 21;
    let boards = [format!("la{pid}"), format!("lb{pid}")];
    let (ring_a, ring_b) = (unique("lease-a"), unique("lease-b"));
    // A lease of one second (Zenoh's default is ten), so that a four-second outage ends the
    // session and the test stays short.
    let zconf = std::env::temp_dir().join(format!("ember-br-{pid}-lease.json5"));
    std::fs::write(&zconf, "{ transport: { link: { tx: { lease: 1000, keep_alive: 4 } } } }").unwrap();
    let _unlink = Unlink(vec![
        ring_a.clone(),
        ring_b.clone(),
        zconf.display().to_string(),
        ember_bridge::local_status_name(&boards[0]),
        ember_bridge::local_status_name(&boards[1]),
    ]);
    let table = |i: usize, route: String| {
        let listen = format!("tcp/10.{net}.0.{}:7447", i + 1);
        let connect = if i == 1 { format!("\"tcp/10.{net}.0.1:7447\"") } else { String::new() };
        format!(
            "board = \"{}\"\nresume = \"/ember-br-{pid}-lease-{i}.resume\"\n[zenoh]\nconfig_file = \"{}\"\nmode = \"peer\"\nlisten = [\"{listen}\"]\nconnect = [{connect}]\nscouting = false\n{route}",
            boards[i],
            zconf.display()
        )
    };
    let mut writer = SpscSender::create(Backing::Named(&ring_a), 1 << 16, 0).unwrap();
    let a = BridgeProc::start_with(
        "lease-a",
        &table(
            0,
            format!(
                "[[route]]\nchannel = \"up\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{ring_a}\" }}\n"
            ),
        ),
        BRIDGE,
        &link.runner(0),
    );
    let b = BridgeProc::start_with(
        "lease-b",
        &table(
            1,
            format!(
                "[[route]]\nchannel = \"up\"\ndirection = \"in\"\nfrom = \"{}\"\nlocal = {{ kind = \"spsc\", name = \"{ring_b}\", capacity = 65536 }}\n",
                boards[0]
            ),
        ),
        BRIDGE,
        &link.runner(1),
    );
    local_status(&boards[0], "a subscriber", |s| route(s, "up").matched == Some(true));
    let w = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for i in 0..N {
            writer.send(test_frame(i, FILL, &mut buf), Some(Duration::from_secs(120))).unwrap();
        }
        writer
    });
    let mut rx = SpscReceiver::open(&ring_b, 0).unwrap();
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    while got.last() != Some(&(N - 1)) {
        if got.len() == 5_000 {
            // Four seconds down: past the lease, the session ends on both sides; B
            // connects again when the link is back.
            link.set(false);
            std::thread::sleep(Duration::from_secs(4));
            link.set(true);
        }
        let n =
            rx.recv(&mut buf, Some(Duration::from_secs(60))).unwrap_or_else(|e| panic!("after {:?}: {e}", got.last()));
        got.push(check_frame(&buf[..n], FILL));
    }
    let _writer = w.join().unwrap();
    assert!(got.windows(2).all(|p| p[0] < p[1]), "in order, no duplicates");
    let gaps: Vec<_> = got.windows(2).filter(|p| p[1] != p[0] + 1).collect();
    let missing = N - got.len() as u64;
    let sa = local_status(&boards[0], "all published", |s| route(s, "up").counters.frames_out == N);
    let sb = local_status(&boards[1], "all written", |s| route(s, "up").counters.frames_out == got.len() as u64);
    let (ca, cb) = (route(&sa, "up").counters, route(&sb, "up").counters);
    eprintln!("lease: {missing} frames lost in the outage (window {gaps:?}); A {ca:?}; B {cb:?}");
    assert_eq!((ca.frames_in, ca.dropped, ca.bad), (N, 0, 0), "{ca:?}");
    assert!(missing > 0, "a session that ended lost nothing? (window {gaps:?})");
    assert!(gaps.len() <= 1, "one window lost at most: {gaps:?}");
    assert_eq!((cb.dropped, cb.bad, cb.lost), (0, 0, missing), "the loss is what B's counters say: {cb:?}");
    assert!(b.terminate().success());
    assert!(a.terminate().success());
    drop(link);
}
