//! Zero heap allocations on the send and receive paths (shared memory, pipes, FIFOs), shown
//! with a counting global allocator (set-up may allocate; the measured paths may not).

use std::time::Duration;

use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, SeqLockReader, SeqLockWriter, SpscReceiver, SpscSender,
};

use ember_test_support::allocations;

fn name(tag: &str) -> String {
    format!("/ember-noalloc-{}-{tag}", std::process::id())
}

#[test]
fn counter_counts() {
    assert!(allocations(|| drop(std::hint::black_box(vec![0u8; 8]))) > 0);
}

#[test]
fn spsc_push_pop_allocate_nothing() {
    let n = name("spsc");
    let mut tx = SpscSender::create(Backing::Named(&n), 4096, 1).unwrap();
    let mut rx = SpscReceiver::open(&n, 1).unwrap();
    let mut out = [0u8; 128];
    let mut scratch = [0u8; 128];
    let count = allocations(|| {
        for i in 0..1000u32 {
            tx.try_send(&i.to_le_bytes()).unwrap();
            assert_eq!(rx.recv(&mut out, Some(Duration::from_secs(1))).unwrap(), 4);
            tx.send_msg(3, i, &("reading", i), &mut scratch, None).unwrap();
            let (_, (s, v)): (_, (&str, u32)) = rx.recv_msg(&mut out, None).unwrap();
            assert_eq!((s, v), ("reading", i));
        }
        // Error paths too.
        assert!(rx.try_recv(&mut out).is_err());
        assert!(tx.try_send(&[0; 4000]).is_err());
    });
    assert_eq!(count, 0);
}

#[test]
fn spsc_streaming_records_allocate_nothing() {
    let n = name("spsc-stream");
    let mut tx = SpscSender::create(Backing::Named(&n), 1 << 20, 1).unwrap();
    let mut rx = SpscReceiver::open(&n, 1).unwrap();
    // Allocated before counting: a streamed record (at least STREAM_MIN bytes).
    let record = vec![7u8; ember_core::shm::spsc::STREAM_MIN + 1000];
    let mut out = vec![0u8; record.len()];
    let count = allocations(|| {
        for i in 0..100 {
            tx.try_send(&record).unwrap();
            let n = if i % 2 == 0 {
                rx.recv_spin(&mut out, Some(Duration::from_secs(1))).unwrap()
            } else {
                rx.recv(&mut out, Some(Duration::from_secs(1))).unwrap()
            };
            assert_eq!(n, record.len());
        }
        assert!(rx.try_recv(&mut out).is_err());
    });
    assert_eq!(count, 0);
    assert_eq!(out, record);
}

#[test]
fn spsc_batch_receive_allocates_nothing() {
    let n = name("spsc-many");
    let mut tx = SpscSender::create(Backing::Named(&n), 4096, 1).unwrap();
    let mut rx = SpscReceiver::open(&n, 1).unwrap();
    let mut out = [0u8; 128];
    let count = allocations(|| {
        let mut next = 0u32;
        for i in 0..1000u32 {
            for j in 0..i % 7 + 1 {
                tx.try_send_deferred(&(i * 8 + j).to_le_bytes()).unwrap();
            }
            tx.flush();
            let mut got = 0;
            while got < i % 7 + 1 {
                let take = |r: &[u8]| {
                    assert_eq!(r, (i * 8 + next % 8).to_le_bytes());
                    next += 1;
                };
                got += match got % 3 {
                    0 => rx.try_recv_many(&mut out, 4, take),
                    1 => rx.recv_many_spin(&mut out, 4, Some(Duration::from_secs(1)), take),
                    _ => rx.recv_many(&mut out, 4, Some(Duration::from_secs(1)), take),
                }
                .unwrap() as u32;
            }
            next = 0;
        }
        // Error paths too.
        assert!(rx.try_recv_many(&mut out, 4, |_| {}).is_err());
        tx.try_send(&[0; 200]).unwrap();
        assert!(rx.try_recv_many(&mut out, 4, |_| {}).is_err(), "too large for out");
    });
    assert_eq!(count, 0);
}

#[test]
fn spsc_grant_peek_allocate_nothing() {
    let n = name("spsc-grant");
    let mut tx = SpscSender::create(Backing::Named(&n), 4096, 1).unwrap();
    let mut rx = SpscReceiver::open(&n, 1).unwrap();
    let mut word = [0u8; 4];
    let count = allocations(|| {
        for i in 0..1000u32 {
            let mut g = tx.try_grant(64).unwrap();
            g.put(&i.to_le_bytes()).unwrap();
            g.put(b"abc").unwrap();
            g.commit().unwrap();
            let p = rx.peek(Some(Duration::from_secs(1))).unwrap();
            assert_eq!(p.len(), 7);
            p.read(0, &mut word).unwrap();
            assert_eq!(u32::from_le_bytes(word), i);
            p.release();
        }
        // Error paths too.
        assert!(rx.try_peek().is_err());
        assert!(tx.try_grant(4000).is_err());
        let mut g = tx.try_grant(2).unwrap();
        assert!(g.put(b"abc").is_err());
    });
    assert_eq!(count, 0);
}

#[test]
fn seqlock_publish_read_allocate_nothing() {
    let n = name("seqlock");
    let mut w = SeqLockWriter::create(Backing::Named(&n), 256, 2).unwrap();
    let mut r = SeqLockReader::open(&n, 2).unwrap();
    let mut scratch = [0u8; 256];
    let mut out = [0u8; 256];
    let count = allocations(|| {
        for i in 0..1000u32 {
            w.publish(&(i, 20.5f32), &mut scratch).unwrap();
            let (_, (v, t)): (_, (u32, f32)) = r.read_value(&mut out).unwrap();
            assert_eq!((v, t), (i, 20.5));
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn broadcast_send_recv_allocate_nothing() {
    let n = name("bcast");
    let mut w = BroadcastWriter::create(Backing::Named(&n), 4096, 3).unwrap();
    let mut r = BroadcastReader::open(&n, 3, false).unwrap();
    let mut out = [0u8; 64];
    let count = allocations(|| {
        for i in 0..1000u64 {
            w.send(&i.to_le_bytes()).unwrap();
            let got = r.recv(&mut out, Some(Duration::from_secs(1))).unwrap();
            assert_eq!(got.seq, i);
        }
    });
    assert_eq!(count, 0);
}

#[test]
fn pipe_and_fifo_send_recv_allocate_nothing() {
    use ember_linux::pipe::{self, PIPE_BUF, StreamReader};
    use ember_linux::{Endpoint, FrameReceiver, FrameSender, fifo};
    let (mut rx, mut tx) = pipe::pipe().unwrap();
    let (mut prx, mut ptx) = pipe::packet_pipe().unwrap();
    let path = format!("/tmp/ember-noalloc-{}-fifo", std::process::id());
    fifo::create(&path).unwrap();
    let mut frx: StreamReader<4096> = fifo::open_reader(&path, false).unwrap();
    let mut ftx = fifo::open_writer(&path, false).unwrap();
    let mut scratch = [0u8; 256];
    let mut out = vec![0u8; pipe::DEFAULT_STREAM_BUF.max(PIPE_BUF)];
    let count = allocations(|| {
        for i in 0..200u32 {
            tx.send_msg(1, i, &("stream", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = rx.recv_msg(&mut out).unwrap();
            assert_eq!(v, i);
            ptx.send_msg(2, i, &("packet", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = prx.recv_msg(&mut out).unwrap();
            assert_eq!(v, i);
            ftx.send_msg(3, i, &("fifo", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = frx.recv_msg(&mut out[..4096]).unwrap();
            assert_eq!(v, i);
        }
        // Error paths: nothing to read, reader gone.
        rx.set_nonblocking(true).unwrap();
        assert!(rx.recv_frame(&mut out).is_err());
    });
    drop(prx);
    assert!(ptx.send_msg(2, 0, &0u8, &mut scratch).is_err());
    let _ = std::fs::remove_file(&path);
    assert_eq!(count, 0);
}

#[test]
fn mq_send_recv_allocate_nothing() {
    use ember_linux::mq::{Access, MessageQueue};
    use ember_linux::{FrameReceiver, FrameSender};
    let name = format!("/ember-noalloc-{}-mq", std::process::id());
    let mut q = MessageQueue::create(&name, 4, 512, Access::Both).unwrap();
    let mut scratch = [0u8; 128];
    let mut out = [0u8; 512];
    // Set-up: the first clock read initialises rustix's vDSO lookup, once per process
    // (whichever thread comes first; under qemu-user, where the tests run slower, it is this one).
    let _ = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let count = allocations(|| {
        for i in 0..200u32 {
            q.send_msg(4, i, &("queue", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = q.recv_msg(&mut out).unwrap();
            assert_eq!(v, i);
            let n = ember_core::message::encode(4, i, &i, &mut scratch).unwrap().len();
            q.send_prio(&scratch[..n], 7, Some(Duration::from_secs(1))).unwrap();
            assert_eq!(q.recv_prio(&mut out, Some(Duration::from_secs(1))).unwrap().1, 7);
        }
        assert!(q.recv_prio(&mut out, Some(Duration::from_millis(1))).is_err());
    });
    assert_eq!(count, 0);
}

#[test]
fn sysv_mq_send_recv_allocate_nothing() {
    use ember_linux::sysvmq::SysvQueue;
    use ember_linux::{FrameReceiver, FrameSender};
    let mut q: Box<SysvQueue<1024>> = Box::new(SysvQueue::create(ember_linux::sys::IPC_PRIVATE).unwrap());
    let mut scratch = [0u8; 128];
    let mut out = [0u8; 1024];
    let count = allocations(|| {
        for i in 0..200u32 {
            q.send_msg(5, i, &("sysv", i), &mut scratch).unwrap();
            let (_, (_, v)): (_, (&str, u32)) = q.recv_msg(&mut out).unwrap();
            assert_eq!(v, i);
        }
        q.set_nonblocking(true);
        assert!(q.recv_frame(&mut out).is_err());
    });
    assert_eq!(count, 0);
}
