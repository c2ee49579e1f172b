//! Where Ember's marshal + parse time goes, one operation at a time (a development aid for
//! profiling: `ONLY=<name prefix>` runs one, `N=<iterations>` sets the count, so that
//! `valgrind --tool=callgrind` can count instructions per operation).
//!
//! ```sh
//! cargo run --release --example micro
//! ```

use std::hint::black_box;
use std::time::Instant;

use ember_core::dbus::{Builder, Message, Signature, Writer};
use ember_dbus_bench::{IFACE, PATH, ember_body, walk};

fn time(name: &str, mut f: impl FnMut()) {
    if let Ok(only) = std::env::var("ONLY")
        && !name.starts_with(&only)
    {
        return;
    }
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    println!("{name:<24} {:>8.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
}

fn main() {
    let mut buf = [0u8; 1024];
    let sig = Signature::new("a{sv}").unwrap();
    let len = Builder::signal(PATH, IFACE, "Changed").build(&mut buf, 1, sig, ember_body).unwrap().len();
    let bytes = buf[..len].to_vec();
    let mut wbuf = [0u8; 1024];
    time("body write only", || {
        let mut w = Writer::new(&mut wbuf);
        ember_body(&mut w).unwrap();
        black_box(w.position());
    });
    time("build (write + check)", || {
        black_box(Builder::signal(PATH, IFACE, "Changed").build(&mut wbuf, 1, sig, ember_body).unwrap().len());
    });
    time("parse_header", || {
        black_box(Message::parse_header(black_box(&bytes), 1 << 20).unwrap().serial());
    });
    time("parse", || {
        black_box(Message::parse(black_box(&bytes), 1 << 20).unwrap().serial());
    });
    let m = Message::parse(&bytes, 1 << 20).unwrap();
    time("walk parsed body", || {
        black_box(walk(m.body()));
    });
}
