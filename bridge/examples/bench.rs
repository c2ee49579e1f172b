//! The bridge's bench: bridged one-way latency and throughput against plain Zenoh pub/sub
//! between two processes moving the same bytes, measured in the same run.
//!
//! ```text
//! cargo run --release --manifest-path bridge/Cargo.toml --example bench -- [--lat N] [--thr N]
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
//! Latency: `--lat` frames (default 2,000), one every 500 µs, each stamped with the
//! sender's `CLOCK_REALTIME`; the receiver computes one-way latency (same machine, same
//! clock). Throughput: `--thr` frames (default 100,000 for 64 B, a quarter of that for
//! 4 KiB) back to back with `block` congestion control, timed at the receiver from the
//! first to the last. Prints a table with the ratios (targets: bridged latency at most
//! 1.25x plain Zenoh's, throughput at least 0.8x).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ember_core::frame::{FrameRepr, Integrity};
use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use zenoh::Wait;

const KIND_LAT: u32 = 1;
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
    thr_count: u64,
    thr_first: u64,
    thr_last: u64,
}

impl Measured {
    fn take(&mut self, bytes: &[u8], thr: u64) -> bool {
        let now = now_ns();
        let Ok(f) = ember_core::Frame::new_checked(bytes) else { return false };
        let p = f.payload();
        let ts = u64::from_le_bytes(p[..8].try_into().unwrap());
        let index = u64::from_le_bytes(p[8..16].try_into().unwrap());
        match f.kind() {
            KIND_LAT => self.lat.push(now.saturating_sub(ts)),
            KIND_THR => {
                if self.thr_count == 0 {
                    self.thr_first = now;
                }
                self.thr_count += 1;
                self.thr_last = now;
                return index + 1 == thr;
            }
            _ => {}
        }
        false
    }

    fn report(mut self) {
        self.lat.sort_unstable();
        let pct = |q: f64| self.lat.get(((self.lat.len() as f64 * q) as usize).min(self.lat.len().saturating_sub(1)));
        let rate = if self.thr_count > 1 {
            (self.thr_count - 1) as f64 / ((self.thr_last - self.thr_first) as f64 / 1e9)
        } else {
            0.0
        };
        println!(
            "result {} {} {} {} {:.0}",
            self.lat.len(),
            pct(0.5).copied().unwrap_or(0),
            pct(0.99).copied().unwrap_or(0),
            self.thr_count,
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

/// Paced latency frames, then back-to-back throughput frames, through `send`.
fn drive(size: usize, lat: u64, thr: u64, integrity: Integrity, mut send: impl FnMut(&[u8])) {
    let mut buf = [0u8; 8192];
    for i in 0..lat {
        let t = Instant::now();
        let n = frame(KIND_LAT, i, size, integrity, &mut buf);
        send(&buf[..n]);
        while t.elapsed() < Duration::from_micros(500) {
            std::hint::spin_loop();
        }
    }
    for i in 0..thr {
        let n = frame(KIND_THR, i, size, integrity, &mut buf);
        send(&buf[..n]);
    }
}

/// (p50 ns, p99 ns, frames/s) of one run.
type Row = (u64, u64, f64);

fn parse_result(l: &str) -> Row {
    let v: Vec<&str> = l.split_whitespace().collect();
    (v[2].parse().unwrap(), v[3].parse().unwrap(), v[5].parse().unwrap())
}

fn plain(size: usize, lat: u64, thr: u64) -> Row {
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let s = zsession(&endpoint, &[]);
    let key = format!("bench/plain/{}", std::process::id());
    let publisher =
        s.declare_publisher(key.clone()).congestion_control(zenoh::qos::CongestionControl::Block).wait().unwrap();
    let (mut child, rx) = spawn_child(&["zsub".into(), endpoint, key, thr.to_string()]);
    wait_line(&rx, "ready");
    while !publisher.matching_status().wait().unwrap().matching() {
        std::thread::sleep(Duration::from_millis(10));
    }
    drive(size, lat, thr, Integrity::Checked, |f| publisher.put(f).wait().unwrap());
    let r = parse_result(&wait_line(&rx, "result"));
    child.wait().unwrap();
    r
}

fn bridged(size: usize, lat: u64, thr: u64) -> Row {
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
    let (mut child, rx) = spawn_child(&["ringsub".into(), ring_b.clone(), thr.to_string()]);
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
    drive(size, lat, thr, Integrity::Unchecked, |f| writer.send(f, Some(Duration::from_secs(60))).unwrap());
    let r = parse_result(&wait_line(&rx, "result"));
    child.wait().unwrap();
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
    r
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("zsub") => {
            let (endpoint, key, thr) = (&args[1], &args[2], args[3].parse().unwrap());
            let s = zsession("tcp/127.0.0.1:0", std::slice::from_ref(endpoint));
            let sub = s.declare_subscriber(key.as_str()).wait().unwrap();
            println!("ready");
            let mut m = Measured::default();
            while let Ok(Some(sample)) = sub.recv_timeout(Duration::from_secs(30)) {
                if m.take(&sample.payload().to_bytes(), thr) {
                    break;
                }
            }
            m.report();
            return;
        }
        Some("ringsub") => {
            let (ring, thr) = (&args[1], args[2].parse().unwrap());
            let mut r = SpscReceiver::open(ring, 0).unwrap();
            println!("ready");
            let mut m = Measured::default();
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.recv(&mut buf, Some(Duration::from_secs(30))) {
                if m.take(&buf[..n], thr) {
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
    println!(
        "{:>6}  {:>24}  {:>24}  {:>9}  {:>12}  {:>12}  {:>9}",
        "frame", "plain p50/p99 (us)", "bridged p50/p99 (us)", "lat ratio", "plain fr/s", "bridged fr/s", "thr ratio"
    );
    for size in [64usize, 4096] {
        let thr = opt("--thr").unwrap_or(if size == 64 { 100_000 } else { 25_000 });
        let p = plain(size, lat, thr);
        let b = bridged(size, lat, thr);
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
