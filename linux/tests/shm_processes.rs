//! Shared memory between real, separate processes.
//!
//! This test binary has its own `main` (`harness = false`): run without arguments it runs
//! every test below; the tests spawn the same binary again with `--peer <role> ...` to play
//! the other processes (writers, readers, a scribbler), which talk to the test over their
//! stdin/stdout and over the segment.

mod common;
use common::peer::{Peer, ShmCleanup};

use std::io::{BufRead, Write};
use std::process::Command;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ember_core::crc32c::crc32c;
use ember_core::frame::Frame;
use ember_core::shm::ShmError;
use ember_core::shm::layout::{CONTROL_OFFSET, DATA_OFFSET, SegmentKind};
use ember_core::shm::spsc::STREAM_MIN;
use ember_linux::Error;
use ember_linux::shm::{
    Access, Backing, BroadcastReader, BroadcastWriter, Notifier, Segment, SeqLockReader, SeqLockWriter, SpscReceiver,
    SpscSender,
};

const FP: u64 = 0xE3BE_5EED_0000_0001;
const TEN_MILLION: u64 = 10_000_000;
const BROADCAST_RECORDS: u64 = 200_000;

/// A name unique to this process and call.
fn unique(tag: &str) -> String {
    common::peer::unique_shm("test", tag)
}

/// The record the SPSC tests send: `[seq: u64][len-dependent filler][crc32c of the rest: u32]`.
fn make_record(seq: u64, buf: &mut [u8; 64]) -> usize {
    let len = 16 + (seq % 41) as usize; // 16..=56 bytes
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..len - 4].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
    let crc = crc32c(&buf[..len - 4]);
    buf[len - 4..len].copy_from_slice(&crc.to_le_bytes());
    len
}

fn check_record(rec: &[u8]) -> u64 {
    assert!(rec.len() >= 16, "short record");
    let (body, crc) = rec.split_at(rec.len() - 4);
    assert_eq!(crc32c(body).to_le_bytes(), crc, "record CRC mismatch");
    u64::from_le_bytes(body[..8].try_into().unwrap())
}

/// The sizes of the large records of `streaming_records_*`: streamed ones (at least
/// `STREAM_MIN`, up to the 4 MiB ring's largest) between ordinary ones.
const STREAM_SIZES: [usize; 6] = [STREAM_MIN, 1 << 20, 100, 300_001, (2 << 20) - 8, 65_536 + 3];

/// Byte `i` of large record `seq`.
fn stream_byte(seq: u64, i: usize) -> u8 {
    (i as u64).wrapping_mul(31).wrapping_add(seq.wrapping_mul(7)).wrapping_add((i >> 12) as u64) as u8
}

/// Maps named segment `name` read-write for a peer that plays a broken or hostile writer.
fn map_raw(name: &str) -> (*mut u8, usize) {
    let fd = rustix::shm::open(name, rustix::shm::OFlags::RDWR, rustix::fs::Mode::empty()).unwrap();
    let len = rustix::fs::fstat(&fd).unwrap().st_size as usize;
    // SAFETY: a fresh shared mapping of the whole segment; the peer only touches it through
    // atomics and never unmaps it before exit.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            &fd,
            0,
        )
        .unwrap()
    };
    (ptr.cast::<u8>(), len)
}

// ---- the peers ----------------------------------------------------------------------

fn peer(args: &[String]) {
    let role = args[0].as_str();
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut line = String::new();
    match role {
        // spsc-writer NAME COUNT PAUSE_US: creates the ring, reports, sends COUNT records
        // (u64::MAX: forever), then closes it by dropping.
        "spsc-writer" => {
            let (name, count, pause): (&str, u64, u64) = (&args[1], args[2].parse().unwrap(), args[3].parse().unwrap());
            let mut tx = SpscSender::create(Backing::Named(name), 64 * 1024, FP).unwrap();
            tx.segment().persist(); // the test unlinks it
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let mut buf = [0u8; 64];
            let mut seq = 0;
            while seq < count {
                let n = make_record(seq, &mut buf);
                tx.send(&buf[..n], Some(Duration::from_secs(60))).unwrap();
                seq += 1;
                if pause > 0 {
                    std::thread::sleep(Duration::from_micros(pause));
                }
            }
        }
        // grant-writer NAME COUNT: creates the ring, reports, then builds COUNT records in
        // place (three pieces each: the sequence number, a body whose length varies with
        // it, the sequence number again), abandoning an extra grant before every tenth;
        // then waits for a line and closes the ring.
        "grant-writer" => {
            let (name, count): (&str, u64) = (&args[1], args[2].parse().unwrap());
            let mut tx = SpscSender::create(Backing::Named(name), 64 * 1024, FP).unwrap();
            tx.segment().persist(); // the test unlinks it
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let body = [0xA5u8; 4096];
            // Waits for room (the reader drains the ring as it goes).
            fn grant(tx: &mut SpscSender, n: usize) -> ember_linux::shm::SendGrant<'_> {
                while let Err(e) = tx.try_grant(n) {
                    assert_eq!(e, Error::Shm(ShmError::Full));
                    std::thread::yield_now();
                }
                tx.try_grant(n).unwrap()
            }
            for seq in 0..count {
                if seq.is_multiple_of(10) {
                    // Abandoned: never seen by the reader.
                    // Abandoned by going out of scope uncommitted.
                    grant(&mut tx, 64).put(&u64::MAX.to_le_bytes()).unwrap();
                }
                let len = grant_body_len(seq);
                let mut g = grant(&mut tx, 16 + len);
                g.put(&seq.to_le_bytes()).unwrap();
                g.put(&body[..len]).unwrap();
                g.put(&seq.to_le_bytes()).unwrap();
                // Past the room granted: refused, nothing appended.
                assert_eq!(g.put(&[0; 1]), Err(Error::Shm(ShmError::TooLarge { len: 17 + len, max: 16 + len })));
                g.commit().unwrap();
            }
            stdin.read_line(&mut line).unwrap();
        }
        // stream-writer NAME COUNT: creates a 4 MiB ring, sends COUNT large records (sizes
        // from STREAM_SIZES, bytes from stream_byte), then closes it by dropping.
        "stream-writer" => {
            let (name, count): (&str, u64) = (&args[1], args[2].parse().unwrap());
            let mut tx = SpscSender::create(Backing::Named(name), 4 << 20, FP).unwrap();
            tx.segment().persist(); // the test unlinks it
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let mut rec = vec![0u8; 2 << 20];
            for seq in 0..count {
                let len = STREAM_SIZES[seq as usize % STREAM_SIZES.len()];
                for (i, b) in rec[..len].iter_mut().enumerate() {
                    *b = stream_byte(seq, i);
                }
                tx.send(&rec[..len], Some(Duration::from_secs(60))).unwrap();
            }
        }
        // unfinished-writer NAME FILLED: creates a 1 MiB ring and, through a raw mapping of
        // it, publishes a streaming record of 100,000 bytes whose header counts FILLED of
        // them as written, as a writer stopped (or dead) mid-record leaves it (FILLED above
        // 100,000: a hostile one); then waits for its stdin to close.
        "unfinished-writer" => {
            let (name, filled): (&str, u32) = (&args[1], args[2].parse().unwrap());
            let mut tx = SpscSender::create(Backing::Named(name), 1 << 20, FP).unwrap();
            tx.segment().persist();
            let (base, len) = map_raw(name);
            assert!(len >= DATA_OFFSET + (1 << 20));
            const LEN: u32 = 100_000;
            // SAFETY: offsets inside the mapping (checked above), 8- and 4-byte aligned (the
            // mapping is page aligned); the words are only accessed atomically.
            let (header, head) = unsafe {
                (&*base.add(DATA_OFFSET).cast::<AtomicU64>(), &*base.add(CONTROL_OFFSET).cast::<AtomicU32>())
            };
            header.store(u64::from(LEN | 0x2000_0000) | (u64::from(filled) << 32), Ordering::Release);
            head.store(8 + LEN, Ordering::Release);
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let _ = stdin.read_line(&mut line);
            drop(tx);
        }
        // frame-writer NAME: sends Ember frames forever (for the scribbler test).
        "frame-writer" => {
            let mut tx = SpscSender::create(Backing::Named(&args[1]), 4096, FP).unwrap();
            tx.segment().persist();
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let mut scratch = [0u8; 256];
            for seq in 0u32.. {
                let msg = (seq, "telemetry", [seq as u8; 20]);
                match tx.send_msg(1, seq, &msg, &mut scratch, Some(Duration::from_millis(50))) {
                    Ok(()) | Err(Error::Shm(ShmError::Timeout)) => {}
                    // The scribbler may make the ring look impossible: keep going.
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
        // scribbler NAME SECONDS: maps the segment read-write and writes random words
        // anywhere in it.
        "scribbler" => {
            let fd = rustix::shm::open(args[1].as_str(), rustix::shm::OFlags::RDWR, rustix::fs::Mode::empty()).unwrap();
            let len = rustix::fs::fstat(&fd).unwrap().st_size as usize;
            // SAFETY: a fresh shared mapping only this peer's scribbling loop touches,
            // through volatile writes; it is never unmapped before exit.
            let ptr = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    len,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                    &fd,
                    0,
                )
                .unwrap()
            }
            .cast::<u32>();
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let until = Instant::now() + Duration::from_secs(args[2].parse().unwrap());
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
            while Instant::now() < until {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly the control lines and the data, sometimes the header.
                let word = (x as usize >> 8) % (len / 4);
                // SAFETY: `word < len / 4`, inside the mapping, 4-byte aligned.
                unsafe { ptr.add(word).write_volatile(x as u32) };
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        // broadcast-writer NAME COUNT: creates the ring, waits for "go", sends COUNT records.
        "broadcast-writer" => {
            let (name, count): (&str, u64) = (&args[1], args[2].parse().unwrap());
            let mut tx = BroadcastWriter::create(Backing::Named(name), 8 * 1024, FP).unwrap();
            tx.segment().persist();
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            stdin.read_line(&mut line).unwrap();
            let mut buf = [0u8; 64];
            for seq in 0..count {
                let n = make_record(seq, &mut buf);
                tx.send(&buf[..n]).unwrap();
                if seq % 1024 == 0 {
                    std::thread::yield_now();
                }
            }
            writeln!(stdout, "wrote {count}").unwrap();
        }
        // broadcast-reader NAME PAUSE_US: reads until closed, sleeping PAUSE_US per record;
        // reports "received R lost L".
        "broadcast-reader" => {
            let (name, pause): (&str, u64) = (&args[1], args[2].parse().unwrap());
            let mut rx = BroadcastReader::open(name, FP, true).unwrap();
            assert!(!rx.segment().writable(), "readers map read-only");
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let (mut received, mut lost, mut next) = (0u64, 0u64, 0u64);
            let mut out = [0u8; 64];
            loop {
                match rx.recv(&mut out, Some(Duration::from_secs(30))) {
                    Ok(got) => {
                        let seq = check_record(&out[..got.len]);
                        assert_eq!(seq, got.seq, "record number");
                        assert_eq!(got.seq, next + got.lost, "loss count does not match the gap");
                        next = got.seq + 1;
                        received += 1;
                        lost += got.lost;
                        if pause > 0 {
                            std::thread::sleep(Duration::from_micros(pause));
                        }
                    }
                    Err(Error::Shm(ShmError::Closed)) => break,
                    Err(e) => panic!("reader: {e}"),
                }
            }
            writeln!(stdout, "received {received} lost {lost}").unwrap();
        }
        // seqlock-writer NAME: writes values whose every byte is the same counter, forever.
        "seqlock-writer" => {
            let mut w = SeqLockWriter::create(Backing::Named(&args[1]), 256, FP).unwrap();
            w.segment().persist();
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            for i in 0u64.. {
                let b = (i % 251) as u8 + 1;
                w.write(&[b; 200]).unwrap();
                // A sensor-like rate, fast enough to collide with reads now and then.
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        // sysv-spsc-reader KEY COUNT: attaches the SysV ring by key, receives COUNT records.
        "sysv-spsc-reader" => {
            let key: i32 = args[1].parse().unwrap();
            let count: u64 = args[2].parse().unwrap();
            let seg = Segment::open_sysv(key, SegmentKind::Spsc, FP, Access::ReadWrite).unwrap();
            let mut rx = SpscReceiver::from_segment(seg).unwrap();
            writeln!(stdout, "ready").unwrap();
            stdout.flush().unwrap();
            let mut out = [0u8; 64];
            for expect in 0..count {
                let n = rx.recv(&mut out, Some(Duration::from_secs(10))).unwrap();
                assert_eq!(check_record(&out[..n]), expect);
            }
            writeln!(stdout, "got {count}").unwrap();
        }
        // notify-sender NAME: a ring with an eventfd notifier; reports the eventfd's number,
        // waits for "go", then sends 200 records 1 ms apart.
        "notify-sender" => {
            use std::os::fd::{AsFd, AsRawFd};
            let mut tx = SpscSender::create(Backing::Named(&args[1]), 4096, FP).unwrap();
            tx.segment().persist();
            let notifier = Notifier::new().unwrap();
            let raw = notifier.as_fd().as_raw_fd();
            tx.set_notifier(notifier);
            writeln!(stdout, "ready\n{raw}").unwrap();
            stdout.flush().unwrap();
            stdin.read_line(&mut line).unwrap();
            let mut buf = [0u8; 64];
            for seq in 0..200 {
                let n = make_record(seq, &mut buf);
                tx.send(&buf[..n], Some(Duration::from_secs(10))).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            stdin.read_line(&mut line).unwrap();
        }
        other => panic!("unknown peer role {other}"),
    }
}

// ---- the tests ----------------------------------------------------------------------

fn spsc_ten_million_records_nothing_lost_duplicated_or_reordered() {
    let name = unique("spsc10m");
    let _cleanup = ShmCleanup(name.clone());
    // Emulated boards (where the host's memory model shows through anyway) may ask for
    // fewer, and say so.
    let records = std::env::var("EMBER_TEST_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(TEN_MILLION);
    if records != TEN_MILLION {
        println!("    ({records} records, as EMBER_TEST_RECORDS asks, instead of {TEN_MILLION})");
    }
    let mut writer = Peer::spawn(&["spsc-writer", &name, &records.to_string(), "0"]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut out = [0u8; 64];
    let mut expect = 0u64;
    loop {
        match rx.recv(&mut out, Some(Duration::from_secs(60))) {
            Ok(n) => {
                let seq = check_record(&out[..n]);
                assert_eq!(seq, expect, "lost, duplicated or reordered");
                expect += 1;
            }
            Err(Error::Shm(ShmError::Closed)) => break,
            Err(e) => panic!("recv after {expect}: {e}"),
        }
    }
    assert_eq!(expect, records);
    writer.wait_ok();
}

/// The records of `spsc_ten_million_records`, received in batches (`recv_many`, up to 1 to 64
/// a call, the sender blocking on a full ring): nothing lost, duplicated or reordered, and a
/// sender asleep waiting for room is always woken.
fn spsc_batch_receive_nothing_lost_duplicated_or_reordered() {
    let name = unique("spscmany");
    let _cleanup = ShmCleanup(name.clone());
    let records = std::env::var("EMBER_TEST_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(TEN_MILLION) / 5;
    let mut writer = Peer::spawn(&["spsc-writer", &name, &records.to_string(), "0"]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut out = [0u8; 64];
    let mut expect = 0u64;
    let mut calls = 0u64;
    loop {
        let max = (calls % 64 + 1) as usize;
        calls += 1;
        let take = |r: &[u8]| {
            assert_eq!(check_record(r), expect, "lost, duplicated or reordered");
            expect += 1;
        };
        match rx.recv_many(&mut out, max, Some(Duration::from_secs(60)), take) {
            Ok(n) => assert!((1..=max).contains(&n)),
            Err(Error::Shm(ShmError::Closed)) => break,
            Err(e) => panic!("recv_many after {expect}: {e}"),
        }
    }
    assert_eq!(expect, records);
    writer.wait_ok();
}

fn broadcast_three_readers_slow_one_counts_exact_losses() {
    let name = unique("bcast");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["broadcast-writer", &name, &BROADCAST_RECORDS.to_string()]);
    assert_eq!(writer.line(), "ready");
    let mut readers: Vec<Peer> =
        ["0", "0", "200"].iter().map(|pause| Peer::spawn(&["broadcast-reader", &name, pause])).collect();
    for r in &mut readers {
        assert_eq!(r.line(), "ready");
    }
    writer.say("go");
    assert_eq!(writer.line(), format!("wrote {BROADCAST_RECORDS}"));
    writer.wait_ok();
    let mut slow_lost = 0;
    for (i, mut r) in readers.into_iter().enumerate() {
        let report = r.line();
        let parts: Vec<&str> = report.split_whitespace().collect();
        let (received, lost): (u64, u64) = (parts[1].parse().unwrap(), parts[3].parse().unwrap());
        assert_eq!(received + lost, BROADCAST_RECORDS, "reader {i}: {report}");
        if i == 2 {
            slow_lost = lost;
        }
        r.wait_ok();
    }
    assert!(slow_lost > 0, "the slow reader (200 µs per record) must have been lapped");
}

fn writer_killed_reader_gets_writer_gone() {
    let name = unique("kill-writer");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["spsc-writer", &name, &u64::MAX.to_string(), "1000"]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut out = [0u8; 64];
    for expect in 0..20 {
        let n = rx.recv(&mut out, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(check_record(&out[..n]), expect);
    }
    writer.kill9();
    let started = Instant::now();
    let err = loop {
        match rx.recv(&mut out, Some(Duration::from_secs(10))) {
            Ok(_) => continue, // records sent before the kill
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::Shm(ShmError::WriterGone));
    assert!(!rx.writer_alive());
    // Reported within the timeout (not after it): the liveness slice is 100 ms.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

/// Large records stream: each is copied out while the sender copies it in. Every byte of
/// every record arrives, in order, through each receive: busy-polling, blocking, and
/// non-blocking (which waits for a record to be whole).
fn streaming_records_arrive_whole_in_order_through_every_receive() {
    let name = unique("stream");
    let _cleanup = ShmCleanup(name.clone());
    const COUNT: u64 = 90;
    let mut writer = Peer::spawn(&["stream-writer", &name, &COUNT.to_string()]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut out = vec![0u8; 2 << 20];
    let mut expect = vec![0u8; 2 << 20];
    for seq in 0..COUNT {
        let timeout = Some(Duration::from_secs(30));
        let n = match seq % 3 {
            0 => rx.recv_spin(&mut out, timeout),
            1 => rx.recv(&mut out, timeout),
            _ => loop {
                match rx.try_recv(&mut out) {
                    Err(Error::Shm(ShmError::Empty)) => std::thread::yield_now(),
                    r => break r,
                }
            },
        }
        .unwrap_or_else(|e| panic!("record {seq}: {e}"));
        let len = STREAM_SIZES[seq as usize % STREAM_SIZES.len()];
        assert_eq!(n, len, "record {seq}");
        for (i, b) in expect[..len].iter_mut().enumerate() {
            *b = stream_byte(seq, i);
        }
        assert!(out[..n] == expect[..len], "record {seq} of {len} bytes damaged");
    }
    assert_eq!(rx.recv(&mut out, Some(Duration::from_secs(10))), Err(Error::Shm(ShmError::Closed)));
    writer.wait_ok();
}

/// A writer stopped mid-record: a receive waits for the record (the deadline ends it,
/// nothing half-copied is returned), and once the writer is gone every receive says so
/// promptly instead of waiting. A count beyond the record is refused as corrupt.
fn streaming_record_left_unfinished_by_a_dead_writer() {
    let name = unique("unfinished");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["unfinished-writer", &name, "16384"]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut out = vec![0u8; 100_000];
    assert_eq!(rx.try_recv(&mut out), Err(Error::Shm(ShmError::Empty)));
    assert!(rx.try_peek().is_err());
    for spin in [false, true] {
        let started = Instant::now();
        let timeout = Some(Duration::from_millis(300));
        let r = if spin { rx.recv_spin(&mut out, timeout) } else { rx.recv(&mut out, timeout) };
        assert_eq!(r, Err(Error::Shm(ShmError::Timeout)), "spin: {spin}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
    writer.kill9();
    for spin in [false, true] {
        let started = Instant::now();
        let timeout = Some(Duration::from_secs(20));
        let r = if spin { rx.recv_spin(&mut out, timeout) } else { rx.recv(&mut out, timeout) };
        assert_eq!(r, Err(Error::Shm(ShmError::WriterGone)), "spin: {spin}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
    drop(rx);

    // Hostile: the count says more bytes than the record has.
    let name = unique("overfilled");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["unfinished-writer", &name, "100008"]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    assert_eq!(rx.try_recv(&mut out), Err(Error::Shm(ShmError::Corrupt)));
    assert_eq!(rx.recv(&mut out, Some(Duration::from_secs(5))), Err(Error::Shm(ShmError::Corrupt)));
    assert_eq!(rx.recv_spin(&mut out, Some(Duration::from_secs(5))), Err(Error::Shm(ShmError::Corrupt)));
    writer.close_stdin();
    writer.wait_ok();
}

fn broadcast_writer_killed_readers_get_writer_gone() {
    let name = unique("kill-bwriter");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["broadcast-writer", &name, &u64::MAX.to_string()]);
    assert_eq!(writer.line(), "ready");
    let mut rx = BroadcastReader::open(&name, FP, false).unwrap();
    writer.say("go");
    let mut out = [0u8; 64];
    rx.recv(&mut out, Some(Duration::from_secs(10))).unwrap();
    writer.kill9();
    let err = loop {
        match rx.recv(&mut out, Some(Duration::from_secs(10))) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::Shm(ShmError::WriterGone));
}

fn reader_killed_writer_goes_on() {
    let name = unique("kill-reader");
    let mut tx = BroadcastWriter::create(Backing::Named(&name), 4096, FP).unwrap();
    let mut reader = Peer::spawn(&["broadcast-reader", &name, "1000"]);
    assert_eq!(reader.line(), "ready");
    let mut buf = [0u8; 64];
    for seq in 0..1000 {
        let n = make_record(seq, &mut buf);
        tx.send(&buf[..n]).unwrap();
    }
    reader.kill9();
    for seq in 1000..200_000 {
        let n = make_record(seq, &mut buf);
        tx.send(&buf[..n]).unwrap();
    }
    assert_eq!(tx.records(), 200_000);
}

fn seqlock_reader_never_sees_a_torn_value_across_processes() {
    let name = unique("seqlock");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["seqlock-writer", &name]);
    assert_eq!(writer.line(), "ready");
    let mut r = SeqLockReader::open(&name, FP).unwrap();
    assert!(!r.segment().writable());
    let mut out = [0u8; 256];
    let (mut good, mut busy) = (0u64, 0u64);
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match r.read_timeout(&mut out, Some(Duration::from_secs(5))) {
            Ok(s) => {
                assert_eq!(s.len, 200);
                assert!(out[..200].iter().all(|&b| b == out[0]), "torn value");
                good += 1;
            }
            Err(Error::Shm(ShmError::Empty)) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(good > 1000, "only {good} consistent reads ({busy} busy)");
    // Waiting for a change wakes up.
    let s = r.read(&mut out).unwrap();
    r.wait_change(s.seq, Some(Duration::from_secs(5))).unwrap();
    writer.kill9();
}

fn hostile_scribbler_reader_gets_only_typed_errors_or_valid_frames() {
    let name = unique("hostile");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["frame-writer", &name]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let mut out = [0u8; 4096];
    // Before the scribbler: the channel works.
    for _ in 0..100 {
        let n = rx.recv(&mut out, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(Frame::new_checked(&out[..n]).unwrap().kind(), 1);
    }
    let mut scribbler = Peer::spawn(&["scribbler", &name, "3"]);
    assert_eq!(scribbler.line(), "ready");
    let (mut valid, mut errors) = (0u64, 0u64);
    let until = Instant::now() + Duration::from_secs(3);
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        // Every other record is read in place (peek, read, release), as a large-record
        // reader would.
        let got = if i.is_multiple_of(2) {
            rx.recv(&mut out, Some(Duration::from_millis(200)))
        } else {
            match rx.peek(Some(Duration::from_millis(200))) {
                Ok(p) => {
                    let n = p.len().min(out.len());
                    let r = p.read(0, &mut out[..n]).map(|()| n);
                    p.release();
                    r
                }
                Err(e) => Err(e),
            }
        };
        match got {
            Ok(n) => match Frame::new_checked(&out[..n]) {
                Ok(f) => {
                    assert_eq!(f.kind(), 1);
                    valid += 1;
                }
                Err(_) => errors += 1, // scribbled payload: the frame CRC catches it
            },
            Err(Error::Shm(_)) => errors += 1,
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    // Once the scribbler has hit a counter the ring may stay `Corrupt`: what matters is
    // that every outcome was a valid frame or a typed error, and that nothing hung.
    assert!(valid + errors > 0, "the reader made no progress");
    println!("    hostile: {valid} valid frames, {errors} typed errors");
    scribbler.wait_ok();
    writer.kill9();
}

/// The body length of the grant writer's record `seq`: 0 to 4095 bytes, not a multiple
/// of 8 most of the time (the grant's partial words).
fn grant_body_len(seq: u64) -> usize {
    (seq.wrapping_mul(2_654_435_761) % 4096) as usize
}

fn records_built_in_place_are_read_in_place_across_processes() {
    const COUNT: u64 = 20_000;
    let name = unique("grant");
    let _cleanup = ShmCleanup(name.clone());
    let mut writer = Peer::spawn(&["grant-writer", &name, &COUNT.to_string()]);
    assert_eq!(writer.line(), "ready");
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    let t = Some(Duration::from_secs(10));
    let mut word = [0u8; 8];
    let mut body = vec![0u8; 4096];
    for seq in 0..COUNT {
        let len = grant_body_len(seq);
        if seq % 1000 == 0 {
            // A peek dropped without release leaves the record where it was.
            let p = rx.peek(t).unwrap();
            p.read(0, &mut word).unwrap();
            assert_eq!(u64::from_le_bytes(word), seq);
        }
        let p = rx.peek(t).unwrap();
        assert_eq!(p.len(), 16 + len, "record {seq}");
        p.read(0, &mut word).unwrap();
        assert_eq!(u64::from_le_bytes(word), seq, "abandoned grants are never seen");
        p.read(8 + len, &mut word).unwrap();
        assert_eq!(u64::from_le_bytes(word), seq);
        if seq % 7 == 0 {
            p.read(8, &mut body[..len]).unwrap();
            assert!(body[..len].iter().all(|&b| b == 0xA5));
        }
        // Past the end: refused.
        assert_eq!(p.read(9 + len, &mut word), Err(Error::Shm(ShmError::TooLarge { len: 17 + len, max: 16 + len })));
        p.release();
    }
    assert!(matches!(rx.try_peek(), Err(Error::Shm(ShmError::Empty))));
    writer.say("done");
    assert_eq!(rx.peek(t).map(|p| p.len()), Err(Error::Shm(ShmError::Closed)));
    writer.wait_ok();
}

fn memfd_segments_and_seals() {
    let mut tx = SpscSender::create(Backing::Memfd("ember-test"), 4096, FP).unwrap();
    let fd = rustix::io::dup(tx.segment().fd().unwrap()).unwrap();
    let mut rx = SpscReceiver::from_fd(fd, FP).unwrap();
    tx.try_send(b"over a memfd").unwrap();
    let mut out = [0u8; 32];
    let n = rx.recv(&mut out, Some(Duration::from_secs(1))).unwrap();
    assert_eq!(&out[..n], b"over a memfd");
    // A memfd without seals is refused.
    let raw = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&raw, 8192).unwrap();
    assert_eq!(SpscReceiver::from_fd(raw, FP).err(), Some(Error::NotSealed));
    // The seals hold: the file cannot be shrunk.
    assert_eq!(rustix::fs::ftruncate(tx.segment().fd().unwrap(), 0), Err(rustix::io::Errno::PERM));
}

fn sender_drop_wakes_a_sleeping_receiver_with_closed() {
    let name = unique("close");
    let tx = SpscSender::create(Backing::Named(&name), 4096, FP).unwrap();
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    rx.set_spin_before_sleep(0);
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        drop(tx);
    });
    let mut out = [0u8; 16];
    // Closed, not Timeout and not WriterGone (this process, the writer, is alive).
    assert_eq!(rx.recv(&mut out, Some(Duration::from_secs(5))), Err(Error::Shm(ShmError::Closed)));
    dropper.join().unwrap();
}

fn named_segment_rules() {
    let name = unique("rules");
    let tx = SpscSender::create(Backing::Named(&name), 4096, FP).unwrap();
    // O_EXCL: a second creator fails.
    assert_eq!(SpscSender::create(Backing::Named(&name), 4096, FP).err(), Some(Error::Os(rustix::io::Errno::EXIST)));
    // Mode 0600.
    let st = rustix::fs::stat(format!("/dev/shm{name}")).unwrap();
    assert_eq!(st.st_mode & 0o777, 0o600);
    // Wrong fingerprint, wrong kind.
    assert!(matches!(SpscReceiver::open(&name, FP + 1), Err(Error::Shm(ShmError::WrongFingerprint { .. }))));
    assert!(matches!(SeqLockReader::open(&name, FP), Err(Error::Shm(ShmError::WrongKind { .. }))));
    // The owner unlinks on drop.
    drop(tx);
    assert!(rustix::fs::stat(format!("/dev/shm{name}")).is_err());
    assert_eq!(SpscReceiver::open(&name, FP).err(), Some(Error::Os(rustix::io::Errno::NOENT)));
    assert_eq!(SpscReceiver::open("no-slash", FP).err(), Some(Error::InvalidName));
}

/// The `ipcs -m` line of a SysV key, if listed.
fn ipcs_line(key: i32) -> Option<String> {
    common::need_tool("ipcs");
    let out = Command::new("ipcs").arg("-m").output().expect("ipcs (util-linux) runs");
    assert!(out.status.success());
    let want = format!("0x{:08x}", key as u32);
    String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with(&want)).map(String::from)
}

fn sysv_segments_by_key() {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let key = 0x4500_0000
        | ((std::process::id() as i32 & 0xFFFF) << 4)
        | COUNTER.fetch_add(1, Ordering::Relaxed) as i32 & 0xF;
    let mut tx = SpscSender::create(Backing::SysV(key), 4096, FP).unwrap();
    let id = tx.segment().sysv_id().unwrap();
    // Visible to `ipcs -m`: key, id, mode 600, size (4096 + 512 bytes of header).
    let line = ipcs_line(key).expect("ipcs -m lists the segment");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], id.to_string(), "{line}");
    assert_eq!(fields[3], "600", "{line}");
    assert_eq!(fields[4], "4608", "{line}");
    // A second creator with the same key fails.
    assert_eq!(SpscSender::create(Backing::SysV(key), 4096, FP).err(), Some(Error::Os(rustix::io::Errno::EXIST)));
    // Another process attaches by key.
    let mut reader = Peer::spawn(&["sysv-spsc-reader", &key.to_string(), "100"]);
    assert_eq!(reader.line(), "ready");
    let mut buf = [0u8; 64];
    for seq in 0..100 {
        let n = make_record(seq, &mut buf);
        tx.send(&buf[..n], Some(Duration::from_secs(10))).unwrap();
    }
    assert_eq!(reader.line(), "got 100");
    reader.wait_ok();
    // Wrong kind and fingerprint are refused.
    assert!(matches!(
        Segment::open_sysv(key, SegmentKind::Broadcast, FP, Access::ReadOnly),
        Err(Error::Shm(ShmError::WrongKind { .. }))
    ));
    // The owner removes it: gone from ipcs once everyone detached.
    drop(tx);
    assert!(ipcs_line(key).is_none(), "segment still listed after the owner dropped it");

    // A broadcast ring over SysV, read by a read-only attachment that still sleeps on
    // the futex (its waiter line lives in a second, writable attachment).
    let bkey = key ^ 0x0100_0000;
    let mut w = BroadcastWriter::create(Backing::SysV(bkey), 4096, FP).unwrap();
    let seg = Segment::open_sysv(bkey, SegmentKind::Broadcast, FP, Access::ReadOnly).unwrap();
    assert!(!seg.writable());
    let mut r = BroadcastReader::from_segment(seg, false).unwrap();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.send(b"late").unwrap();
        w
    });
    let got = r.recv(&mut buf, Some(Duration::from_secs(5))).unwrap();
    assert_eq!(&buf[..got.len], b"late");
    drop(sender.join().unwrap());
}

fn eventfd_notifier_in_a_poll_loop() {
    let name = unique("notify");
    let _cleanup = ShmCleanup(name.clone());
    let mut sender = Peer::spawn(&["notify-sender", &name]);
    assert_eq!(sender.line(), "ready");
    let remote_fd: i32 = sender.line().parse().unwrap();
    let mut rx = SpscReceiver::open(&name, FP).unwrap();
    // The sender's eventfd, fetched from the child (pidfd_getfd works on descendants).
    let pid = rustix::process::Pid::from_raw(sender.pid() as i32).unwrap();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let fd = rustix::process::pidfd_getfd(&pidfd, remote_fd, rustix::process::PidfdGetfdFlags::empty()).unwrap();
    let notifier = Notifier::from_fd(fd);
    sender.say("go");
    let (mut got, mut wakeups) = (0u64, 0u32);
    let mut out = [0u8; 64];
    while got < 200 {
        while let Ok(n) = rx.try_recv(&mut out) {
            assert_eq!(check_record(&out[..n]), got);
            got += 1;
        }
        if got == 200 {
            break;
        }
        if rx.prepare_poll() {
            let mut fds = [rustix::event::PollFd::new(&notifier, rustix::event::PollFlags::IN)];
            let five = rustix::time::Timespec { tv_sec: 5, tv_nsec: 0 };
            let ready = rustix::event::poll(&mut fds, Some(&five)).unwrap();
            assert_eq!(ready, 1, "poll timed out: the notifier was not signalled");
            assert!(notifier.drain().unwrap() > 0);
            wakeups += 1;
        }
        rx.finish_poll();
    }
    assert!(wakeups > 10, "the receiver should have slept in poll between records ({wakeups} wake-ups)");
    sender.say("done");
    sender.wait_ok();
}

fn main() {
    common::main(
        &[
            ("named_segment_rules", named_segment_rules),
            ("sender_drop_wakes_receiver", sender_drop_wakes_a_sleeping_receiver_with_closed),
            ("memfd_segments_and_seals", memfd_segments_and_seals),
            ("sysv_segments_by_key", sysv_segments_by_key),
            ("eventfd_notifier_in_a_poll_loop", eventfd_notifier_in_a_poll_loop),
            ("spsc_ten_million_records", spsc_ten_million_records_nothing_lost_duplicated_or_reordered),
            ("spsc_batch_receive", spsc_batch_receive_nothing_lost_duplicated_or_reordered),
            ("broadcast_three_readers_slow_one", broadcast_three_readers_slow_one_counts_exact_losses),
            ("writer_killed_reader_gets_writer_gone", writer_killed_reader_gets_writer_gone),
            ("streaming_records", streaming_records_arrive_whole_in_order_through_every_receive),
            ("streaming_record_unfinished", streaming_record_left_unfinished_by_a_dead_writer),
            ("broadcast_writer_killed", broadcast_writer_killed_readers_get_writer_gone),
            ("reader_killed_writer_goes_on", reader_killed_writer_goes_on),
            ("seqlock_across_processes", seqlock_reader_never_sees_a_torn_value_across_processes),
            ("hostile_scribbler", hostile_scribbler_reader_gets_only_typed_errors_or_valid_frames),
            ("grant_and_peek_across_processes", records_built_in_place_are_read_in_place_across_processes),
        ],
        peer,
    );
}
