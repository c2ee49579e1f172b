//! In-process rows: the frame codec against plain postcard, and CRC-32C.
//!
//! The structured message is what a sensor daemon sends: a few header fields and an array
//! of samples, `f32` (fixed 4 bytes each in postcard, nearly a memcpy) or `i32` ADC counts
//! (zigzag varints, 2 bytes each here, which postcard spends more time on). The byte message carries an opaque `&[u8]`, for which postcard is a
//! memcpy (encode) and a pointer (borrowing decode): there the frame's cost is all CRC,
//! shown on its own by the `crc32c` rows.

use std::hint::black_box;

use ember_core::frame::Integrity;
use ember_core::{crc32c, message};
use serde::{Deserialize, Serialize};

use super::{Options, Progress, Row, Stats, sample_pair};

/// A sensor record with room for `N` samples. The capacity is sized to the payload so
/// that decoding does not move a needlessly large value around.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Telemetry<S, const N: usize> {
    sensor: u16,
    seq: u32,
    timestamp_us: u64,
    status: u8,
    samples: heapless::Vec<S, N>,
}

/// A sample type and the row names it is reported under.
trait Sample: Serialize + for<'de> Deserialize<'de> + Copy + core::fmt::Debug {
    const ROWS: (&'static str, &'static str);
    /// The row of the same message in a frame without the payload checksum, if measured.
    const UNCHECKED_ROW: Option<&'static str> = None;
    fn nth(i: usize) -> Self;
}

impl Sample for f32 {
    const ROWS: (&'static str, &'static str) = ("codec/postcard", "codec/frame");
    const UNCHECKED_ROW: Option<&'static str> = Some("codec/unchecked");
    fn nth(i: usize) -> f32 {
        20.0 + i as f32 * 0.125
    }
}

impl Sample for i32 {
    const ROWS: (&'static str, &'static str) = ("codec/postcard-int", "codec/frame-int");
    fn nth(i: usize) -> i32 {
        // A 12-bit ADC swinging around mid-scale: 2-byte zigzag varints.
        ((i * 37) % 4096) as i32 - 2048
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Bytes<'a> {
    id: u32,
    bytes: &'a [u8],
}

/// A telemetry message whose postcard encoding is as close to `size` bytes as the
/// samples allow, and its actual encoded size.
fn telemetry<S: Sample, const N: usize>(size: usize) -> (Box<Telemetry<S, N>>, usize) {
    let mut t = Box::new(Telemetry {
        sensor: 513,
        seq: 1_000_000,
        timestamp_us: 1_764_000_000_000_000,
        status: 1,
        samples: heapless::Vec::new(),
    });
    let mut buf = vec![0u8; size + 64];
    loop {
        let len = postcard::to_slice(&*t, &mut buf).map(|b| b.len()).unwrap_or(usize::MAX);
        if len + 4 > size || t.samples.is_full() {
            return (t, len);
        }
        let i = t.samples.len();
        t.samples.push(S::nth(i)).expect("not full");
    }
}

pub fn run(opts: &Options, progress: &Progress, rows: &mut Vec<Row>) {
    let sizes: Vec<usize> = match opts.size {
        Some(s) => vec![s],
        None => vec![64, 1024],
    };
    let n = opts.samples();

    for &size in &sizes {
        if opts.selected("codec/frame") || opts.selected("codec/postcard") || opts.selected("codec/unchecked") {
            progress.step(&format!("codec, {size} B f32 sensor message"));
            structured_sized::<f32>(size, n, rows);
        }
        if opts.selected("codec/frame-int") || opts.selected("codec/postcard-int") {
            progress.step(&format!("codec, {size} B i32 sensor message"));
            structured_sized::<i32>(size, n, rows);
        }
        if opts.selected("codec/frame-bytes")
            || opts.selected("codec/postcard-bytes")
            || opts.selected("codec/unchecked-bytes")
        {
            progress.step(&format!("codec, {size} B byte message"));
            let data: Vec<u8> = (0..size.saturating_sub(6)).map(|i| i as u8).collect();
            let msg = Bytes { id: 42, bytes: &data };
            let len = postcard::to_slice(&msg, &mut vec![0u8; size + 64]).expect("fits").len();
            let mut pbuf = vec![0u8; len + 64];
            let mut fbuf = vec![0u8; len + 64];
            let (postcard_ns, frame_ns) = sample_pair(
                n,
                || {
                    let b = postcard::to_slice(black_box(&msg), &mut pbuf).expect("fits");
                    let back: Bytes<'_> = postcard::from_bytes(black_box(b)).expect("valid");
                    black_box(back.bytes.len());
                },
                || {
                    let b = message::encode(1, 2, black_box(&msg), &mut fbuf).expect("fits");
                    let (_, back): (_, Bytes<'_>) = message::decode(black_box(b)).expect("valid");
                    black_box(back.bytes.len());
                },
            );
            push_pair(rows, ("codec/postcard-bytes", postcard_ns), ("codec/frame-bytes", frame_ns), len, NOTE_BYTES);
            let (postcard_ns, frame_ns) = sample_pair(
                n,
                || {
                    let b = postcard::to_slice(black_box(&msg), &mut pbuf).expect("fits");
                    let back: Bytes<'_> = postcard::from_bytes(black_box(b)).expect("valid");
                    black_box(back.bytes.len());
                },
                || {
                    let flags = Integrity::Unchecked.flags();
                    let b = message::encode_with(flags, 1, 2, black_box(&msg), &mut fbuf).expect("fits");
                    let (_, back): (_, Bytes<'_>) = message::decode(black_box(b)).expect("valid");
                    black_box(back.bytes.len());
                },
            );
            push_subject(
                rows,
                ("codec/postcard-bytes", postcard_ns),
                ("codec/unchecked-bytes", frame_ns),
                len,
                NOTE_UNCHECKED,
            );
        }
    }

    let crc_sizes: Vec<usize> = match opts.size {
        Some(s) => vec![s],
        None => vec![1024, 64 * 1024],
    };
    for &size in &crc_sizes {
        if opts.selected("crc32c") {
            progress.step(&format!("crc32c over {size} B"));
            let data: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let (portable, best) = sample_pair(
                n,
                || {
                    black_box(crc32c::crc32c_portable(black_box(&data)));
                },
                || {
                    black_box(crc32c::crc32c(black_box(&data)));
                },
            );
            push_pair(rows, ("crc32c/portable", portable), ("crc32c", best), size, NOTE_CRC);
        }
    }
}

/// Runs [`structured`] with the smallest capacity that holds `size` bytes of samples
/// (at least 2 bytes each).
fn structured_sized<S: Sample>(size: usize, n: usize, rows: &mut Vec<Row>) {
    match size {
        0..=64 => structured::<S, 32>(size, n, rows),
        65..=1100 => structured::<S, 550>(size, n, rows),
        1101..=16400 => structured::<S, 8200>(size, n, rows),
        _ => structured::<S, 32768>(size, n, rows),
    }
}

fn structured<S: Sample, const N: usize>(size: usize, n: usize, rows: &mut Vec<Row>) {
    let (msg, len) = telemetry::<S, N>(size);
    let mut pbuf = vec![0u8; len + 64];
    let mut fbuf = vec![0u8; len + 64];
    let (postcard_ns, frame_ns) = sample_pair(
        n,
        || {
            let b = postcard::to_slice(black_box(&*msg), &mut pbuf).expect("fits");
            let back: Telemetry<S, N> = postcard::from_bytes(black_box(b)).expect("valid");
            black_box(back.samples.len());
        },
        || {
            let b = message::encode(1, 2, black_box(&*msg), &mut fbuf).expect("fits");
            let (_, back): (_, Telemetry<S, N>) = message::decode(black_box(b)).expect("valid");
            black_box(back.samples.len());
        },
    );
    push_pair(rows, (S::ROWS.0, postcard_ns), (S::ROWS.1, frame_ns), len, NOTE_CODEC);
    if let Some(unchecked) = S::UNCHECKED_ROW {
        let (postcard_ns, frame_ns) = sample_pair(
            n,
            || {
                let b = postcard::to_slice(black_box(&*msg), &mut pbuf).expect("fits");
                let back: Telemetry<S, N> = postcard::from_bytes(black_box(b)).expect("valid");
                black_box(back.samples.len());
            },
            || {
                let flags = Integrity::Unchecked.flags();
                let b = message::encode_with(flags, 1, 2, black_box(&*msg), &mut fbuf).expect("fits");
                let (_, back): (_, Telemetry<S, N>) = message::decode(black_box(b)).expect("valid");
                black_box(back.samples.len());
            },
        );
        push_subject(rows, (S::ROWS.0, postcard_ns), (unchecked, frame_ns), len, NOTE_UNCHECKED);
    }
}

const NOTE_CODEC: &str = "encode + decode of one message, into and out of caller buffers (frame adds the 24-byte header and two CRC-32C passes)";
const NOTE_UNCHECKED: &str = "the same in a frame without the payload checksum (a local medium's default): one CRC pass over the 20-byte header on each side";
const NOTE_BYTES: &str =
    "opaque &[u8] payload: postcard copies on encode and borrows on decode, so the frame's cost is its CRC";
const NOTE_CRC: &str =
    "crc32c is the dispatching function this CPU uses; the ratio is its time over the table-driven loop";

fn push_pair(rows: &mut Vec<Row>, base: (&str, Vec<f64>), subject: (&str, Vec<f64>), size: usize, note: &'static str) {
    let b = Stats::from_samples(&mut base.1.clone());
    rows.push(Row {
        mechanism: base.0.into(),
        size,
        stats: b,
        baseline: None,
        ratio: None,
        note: None,
        sweep: None,
        extra: None,
    });
    push_subject(rows, base, subject, size, note);
}

/// The subject row alone, its ratio over this run's samples of a baseline already listed
/// (a second subject measured against the same baseline, interleaved with it again).
fn push_subject(
    rows: &mut Vec<Row>,
    base: (&str, Vec<f64>),
    subject: (&str, Vec<f64>),
    size: usize,
    note: &'static str,
) {
    let (base_name, mut base_ns) = base;
    let (name, mut ns) = subject;
    let b = Stats::from_samples(&mut base_ns);
    let s = Stats::from_samples(&mut ns);
    rows.push(Row {
        mechanism: name.into(),
        size,
        stats: s,
        baseline: Some(base_name.into()),
        ratio: Some(s.p50 / b.p50),
        note: Some(note),
        sweep: None,
        extra: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_hits_requested_size() {
        for size in [64, 1024] {
            let (_, len) = telemetry::<f32, 550>(size);
            assert!(len <= size && len + 4 > size, "size {size} got {len}");
            let (_, len) = telemetry::<i32, 550>(size);
            assert!(len <= size && len + 4 > size, "size {size} got {len}");
        }
    }

    #[test]
    fn rows_come_with_baselines() {
        let opts = Options {
            full: false,
            json: false,
            only: Some("crc32c".into()),
            size: Some(256),
            cpus: None,
            samples: None,
            sweep: None,
            csv: None,
        };
        let mut rows = Vec::new();
        // A tiny sample count keeps the test quick; the numbers are not checked, the shape is.
        let progress = Progress { tty: false, started: std::time::Instant::now() };
        run(&opts, &progress, &mut rows);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].baseline.as_deref(), Some("crc32c/portable"));
        assert!(rows[1].ratio.unwrap() > 0.0);
        assert_eq!(rows[0].stats.samples, opts.samples());
    }
}
