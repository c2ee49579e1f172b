//! The bridge's bench: bridged one-way latency and throughput against plain Zenoh pub/sub
//! between two processes moving the same bytes, measured in the same run.
//!
//! ```text
//! cargo run --release --manifest-path bridge/Cargo.toml --example bench -- [--lat N] [--thr N] [--rounds N] [--spin]
//! ```
//!
//! For 64 B and 4 KiB frames (header included):
//!
//! - **plain Zenoh**: this process publishes Ember frames (checked) on a key; a child
//!   process (this program, `zsub` mode) subscribes over loopback TCP.
//! - **bridged**: this process writes the same frames (unchecked, as a local writer would)
//!   into an SPSC ring; `ember-bridge` A publishes it, `ember-bridge` B writes into a ring,
//!   and a child process (`ringsub` mode) reads that ring.
//!
//! Both paths are set up first and then run in alternating chunks (`--rounds`, default
//! 5: a chunk of plain, a chunk of bridged, and again), so that a change in the machine's
//! speed during the run falls on both alike. Latency: `--lat` frames in all (default
//! 2,000), one every 500 µs (the sender sleeps between them; `--spin` busy-waits, which on
//! a two-CPU machine leaves the rest of the path one CPU), each stamped with the sender's
//! `CLOCK_REALTIME`; the receiver computes one-way latency (same machine, same clock), p50
//! and p99 over every frame. Throughput: `--thr` frames in all (default 500,000 for 64 B,
//! a fifth of that for 4 KiB) back to back with `block` congestion control, timed at the
//! receiver from the first to the last frame of each chunk; the median chunk's rate.
//! Chunks of 100,000 frames (0.1 s) or more measure the steady rate: with 10,000 the
//! bridged path's start-up (four stages filling, their first wake-ups) weighed on it, and
//! its ratio read 0.66-0.82x at 64 B where the same commit measured 0.96-1.49x over
//! 100,000. Prints a table with the
//! ratios (targets: bridged latency at most 1.25x plain Zenoh's, throughput at least 0.8x).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ember_core::frame::{FrameRepr, Integrity};
use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use zenoh::Wait;

const KIND_LAT: u32 = 1;
/// One latency frame every this often.
const PACE: Duration = Duration::from_micros(500);
const KIND_THR: u32 = 2;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// A frame of `total` bytes: payload = timestamp, index, zero fill.
fn frame(kind: u32, index: u64, total: usize, integrity: Integrity, buf: &mut [u8]) -> usize {
    let len = total - ember_core::HEADER_LEN;
    let mut payload = [0u8; 8192];
    payload[..8].copy_from_slice(&now_ns().to_le_bytes());
    payload[8..16].copy_from_slice(&index.to_le_bytes());
    let repr = FrameRepr { flags: integrity.flags(), kind, seq: index as u32, payload_len: len };
    repr.emit_with_payload(&payload[..len], buf).expect("fits").len()
}

/// What a receiver measured.
#[derive(Debug, Default)]
struct Measured {
    lat: Vec<u64>,
    /// Frames per second of each throughput chunk.
    rates: Vec<f64>,
    /// The chunk being received: (chunk number, frames, first, last).
    chunk: Option<(u64, u64, u64, u64)>,
}

impl Measured {
    /// Takes one frame; true once the last throughput frame (`thr - 1`) came. Throughput
    /// frames come in chunks of `chunk` consecutive indices.
    fn take(&mut self, bytes: &[u8], thr: u64, chunk: u64) -> bool {
        let now = now_ns();
        let Ok(f) = ember_core::Frame::new_checked(bytes) else { return false };
        let p = f.payload();
        let ts = u64::from_le_bytes(p[..8].try_into().unwrap());
        let index = u64::from_le_bytes(p[8..16].try_into().unwrap());
        match f.kind() {
            KIND_LAT => self.lat.push(now.saturating_sub(ts)),
            KIND_THR => {
                let c = index / chunk.max(1);
                match &mut self.chunk {
                    Some((n, count, _, last)) if *n == c => {
                        *count += 1;
                        *last = now;
                    }
                    _ => {
                        self.end_chunk();
                        self.chunk = Some((c, 1, now, now));
                    }
                }
                if index + 1 == thr {
                    self.end_chunk();
                    return true;
                }
            }
            _ => {}
        }
        false
    }

    fn end_chunk(&mut self) {
        if let Some((_, count, first, last)) = self.chunk.take()
            && count > 1
            && last > first
        {
            self.rates.push((count - 1) as f64 / ((last - first) as f64 / 1e9));
        }
    }

    fn report(mut self) {
        self.lat.sort_unstable();
        let pct = |q: f64| self.lat.get(((self.lat.len() as f64 * q) as usize).min(self.lat.len().saturating_sub(1)));
        self.rates.sort_by(f64::total_cmp);
        let rate = self.rates.get(self.rates.len() / 2).copied().unwrap_or(0.0);
        println!(
            "result {} {} {} {} {:.0}",
            self.lat.len(),
            pct(0.5).copied().unwrap_or(0),
            pct(0.99).copied().unwrap_or(0),
            self.rates.len(),
            rate
        );
    }
}

fn zsession(listen: &str, connect: &[String]) -> zenoh::Session {
    let connect: Vec<String> = connect.iter().map(|e| format!("\"{e}\"")).collect();
    let json = format!(
        r#"{{ mode: "peer", connect: {{ endpoints: [{}] }}, listen: {{ endpoints: ["{listen}"] }},
             scouting: {{ multicast: {{ enabled: false }}, gossip: {{ enabled: false }} }} }}"#,
        connect.join(", ")
    );
    zenoh::open(zenoh::Config::from_json5(&json).expect("config")).wait().expect("session")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn_child(args: &[String]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the receiver");
    let out = c.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (c, rx)
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let l = rx.recv_timeout(Duration::from_secs(120)).expect("child line");
        if l.starts_with(prefix) {
            return l;
        }
    }
}

/// How a path takes one frame.
type SendFn = Box<dyn FnMut(&[u8])>;

/// One path under test: frames go in through `send`, a child process receives them.
struct Path {
    integrity: Integrity,
    send: SendFn,
    child: Child,
    rx: std::sync::mpsc::Receiver<String>,
    /// Ends the path's other processes and removes its files, after the child reported.
    cleanup: Box<dyn FnOnce()>,
}

impl Path {
    /// Paced latency frames with the indices `lat`: the sender sleeps between frames, as a
    /// sensor's writer does, or with `spin` keeps its CPU busy-waiting.
    fn latency(&mut self, size: usize, lat: std::ops::Range<u64>, spin: bool) {
        let mut buf = [0u8; 8192];
        for i in lat {
            let t = Instant::now();
            let n = frame(KIND_LAT, i, size, self.integrity, &mut buf);
            (self.send)(&buf[..n]);
            if spin {
                while t.elapsed() < PACE {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::sleep(PACE.saturating_sub(t.elapsed()));
            }
        }
    }

    /// Back-to-back throughput frames with the indices `thr`, then a pause for the path
    /// to drain before the other path's chunk.
    fn throughput(&mut self, size: usize, thr: std::ops::Range<u64>) {
        let mut buf = [0u8; 8192];
        for i in thr {
            let n = frame(KIND_THR, i, size, self.integrity, &mut buf);
            (self.send)(&buf[..n]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    fn finish(mut self) -> Row {
        let r = parse_result(&wait_line(&self.rx, "result"));
        self.child.wait().unwrap();
        (self.cleanup)();
        r
    }
}

/// (p50 ns, p99 ns, frames/s) of one path.
type Row = (u64, u64, f64);

fn parse_result(l: &str) -> Row {
    let v: Vec<&str> = l.split_whitespace().collect();
    (v[2].parse().unwrap(), v[3].parse().unwrap(), v[5].parse().unwrap())
}

fn plain(thr: u64, chunk: u64) -> Path {
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let s = zsession(&endpoint, &[]);
    let key = format!("bench/plain/{}", std::process::id());
    let publisher =
        s.declare_publisher(key.clone()).congestion_control(zenoh::qos::CongestionControl::Block).wait().unwrap();
    let (child, rx) = spawn_child(&["zsub".into(), endpoint, key, thr.to_string(), chunk.to_string()]);
    wait_line(&rx, "ready");
    while !publisher.matching_status().wait().unwrap().matching() {
        std::thread::sleep(Duration::from_millis(10));
    }
    Path {
        integrity: Integrity::Checked,
        send: Box::new(move |f| publisher.put(f).wait().unwrap()),
        child,
        rx,
        cleanup: Box::new(move || drop(s)),
    }
}

fn bridged(size: usize, thr: u64, chunk: u64) -> Path {
    let bridge = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("ember-bridge");
    let (pa, pb) = (free_port(), free_port());
    let pid = std::process::id();
    let (ring_a, ring_b) = (format!("/ember-bench-{pid}-{size}-a"), format!("/ember-bench-{pid}-{size}-b"));
    let mut writer = SpscSender::create(Backing::Named(&ring_a), 1 << 20, 0).unwrap();
    let dir = std::env::temp_dir();
    let table = |board: &str, listen: u16, connect: Option<u16>, route: String| {
        let path = dir.join(format!("ember-bench-{pid}-{board}.toml"));
        let connect = connect.map(|p| format!("\"tcp/127.0.0.1:{p}\"")).unwrap_or_default();
        std::fs::write(
            &path,
            format!(
                "board = \"{board}\"\nresume = \"/ember-bench-{pid}-{board}.resume\"\n[zenoh]\nmode = \"peer\"\nlisten = [\"tcp/127.0.0.1:{listen}\"]\nconnect = [{connect}]\nscouting = false\n{route}"
            ),
        )
        .unwrap();
        path
    };
    let ta = table(
        "a",
        pa,
        None,
        format!(
            "[[route]]\nchannel = \"bench\"\ndirection = \"out\"\nlocal = {{ kind = \"spsc\", name = \"{ring_a}\" }}\n"
        ),
    );
    let tb = table(
        "b",
        pb,
        Some(pa),
        format!(
            "[[route]]\nchannel = \"bench\"\ndirection = \"in\"\nfrom = \"a\"\nlocal = {{ kind = \"spsc\", name = \"{ring_b}\", capacity = 1048576 }}\n"
        ),
    );
    let start = |t: &std::path::Path| {
        let mut c = Command::new(&bridge).arg("--config").arg(t).stdout(Stdio::piped()).spawn().expect("ember-bridge");
        let mut l = String::new();
        BufReader::new(c.stdout.take().unwrap()).read_line(&mut l).unwrap();
        assert_eq!(l.trim(), "ready");
        c
    };
    let mut a = start(&ta);
    let mut b = start(&tb);
    let (child, rx) = spawn_child(&["ringsub".into(), ring_b.clone(), thr.to_string(), chunk.to_string()]);
    wait_line(&rx, "ready");
    // Wait until bridge A's route has a subscriber: its status says so.
    let obs = zsession("tcp/127.0.0.1:0", &[format!("tcp/127.0.0.1:{pa}")]);
    loop {
        let replies = obs.get(ember_bridge::status_key("a")).wait().unwrap();
        let matched = replies.recv().ok().and_then(|r| r.result().ok().map(|s| s.payload().to_bytes().into_owned()));
        if matched.is_some_and(|j| String::from_utf8_lossy(&j).contains("\"matched\":true")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Path {
        integrity: Integrity::Unchecked,
        send: Box::new(move |f| writer.send(f, Some(Duration::from_secs(60))).unwrap()),
        child,
        rx,
        cleanup: Box::new(move || {
            for c in [&mut a, &mut b] {
                rustix::process::kill_process(
                    rustix::process::Pid::from_raw(c.id() as i32).unwrap(),
                    rustix::process::Signal::TERM,
                )
                .unwrap();
                c.wait().unwrap();
            }
            let _ = std::fs::remove_file(ta);
            let _ = std::fs::remove_file(tb);
            for board in ["a", "b"] {
                let _ = ember_bridge::resume::ResumeFile::remove(&format!("/ember-bench-{pid}-{board}.resume"));
            }
            drop(obs);
        }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("zsub") => {
            let (endpoint, key) = (&args[1], &args[2]);
            let (thr, chunk) = (args[3].parse().unwrap(), args[4].parse().unwrap());
            let s = zsession("tcp/127.0.0.1:0", std::slice::from_ref(endpoint));
            let sub = s.declare_subscriber(key.as_str()).wait().unwrap();
            println!("ready");
            let mut m = Measured::default();
            while let Ok(Some(sample)) = sub.recv_timeout(Duration::from_secs(30)) {
                if m.take(&sample.payload().to_bytes(), thr, chunk) {
                    break;
                }
            }
            m.report();
            return;
        }
        Some("ringsub") => {
            let (ring, thr, chunk) = (&args[1], args[2].parse().unwrap(), args[3].parse().unwrap());
            let mut r = SpscReceiver::open(ring, 0).unwrap();
            println!("ready");
            let mut m = Measured::default();
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.recv(&mut buf, Some(Duration::from_secs(30))) {
                if m.take(&buf[..n], thr, chunk) {
                    break;
                }
            }
            m.report();
            return;
        }
        _ => {}
    }
    let opt = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(|v| v.parse::<u64>().unwrap())
    };
    let lat = opt("--lat").unwrap_or(2_000);
    let rounds = opt("--rounds").unwrap_or(5).max(1);
    let spin = args.iter().any(|a| a == "--spin");
    println!(
        "{:>6}  {:>24}  {:>24}  {:>9}  {:>12}  {:>12}  {:>9}",
        "frame", "plain p50/p99 (us)", "bridged p50/p99 (us)", "lat ratio", "plain fr/s", "bridged fr/s", "thr ratio"
    );
    for size in [64usize, 4096] {
        let thr = opt("--thr").unwrap_or(if size == 64 { 500_000 } else { 100_000 });
        let chunk = thr.div_ceil(rounds);
        let mut paths = [plain(thr, chunk), bridged(size, thr, chunk)];
        let lat_chunk = lat.div_ceil(rounds);
        for r in 0..rounds {
            for p in &mut paths {
                p.latency(size, (r * lat_chunk).min(lat)..((r + 1) * lat_chunk).min(lat), spin);
            }
        }
        for r in 0..rounds {
            for p in &mut paths {
                p.throughput(size, (r * chunk).min(thr)..((r + 1) * chunk).min(thr));
            }
        }
        let [p, b] = paths.map(Path::finish);
        println!(
            "{:>6}  {:>11.1} / {:>10.1}  {:>11.1} / {:>10.1}  {:>8.2}x  {:>12.0}  {:>12.0}  {:>8.2}x",
            size,
            p.0 as f64 / 1e3,
            p.1 as f64 / 1e3,
            b.0 as f64 / 1e3,
            b.1 as f64 / 1e3,
            b.0 as f64 / p.0.max(1) as f64,
            p.2,
            b.2,
            b.2 / p.2.max(1.0)
        );
    }
}
