//! The Rust side of the C ABI's wire tests: receives Ember frames through `ember-ipc-linux`
//! (not the C ABI), checks each (kind 7, payload `msg <seq>`), and answers with kind 8, the
//! same sequence number and payload `echo <seq>`. Exits 0 when done, 1 on any mismatch.
//!
//! ```text
//! wire_peer                                   stdin/stdout pipes, until end of input
//! wire_peer fifo <count> <to-peer> <from-peer>
//! wire_peer mq <count> <to-peer> <from-peer>
//! wire_peer uds-stream <count> <path>         connects to the C side's listener
//! wire_peer uds-seqpacket <count> <path>
//! wire_peer shm <count> <to-peer> <from-peer> opens the C side's SPSC ring, creates its own
//! ```

use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ember_core::frame::{Flags, Frame, FrameRepr};
use ember_linux::mq::{Access, MessageQueue};
use ember_linux::pipe::{StreamReader, Writer};
use ember_linux::shm::{Backing, SpscReceiver, SpscSender};
use ember_linux::uds::{self, UnixName};
use ember_linux::{Error, FrameReceiver, FrameSender, fifo};

const T: Option<Duration> = Some(Duration::from_secs(20));

type Recv = Box<dyn FnMut(&mut [u8]) -> Result<usize, Error>>;
type Send = Box<dyn FnMut(&[u8]) -> Result<(), Error>>;

/// A socket's receives give up after `T` (`SO_RCVTIMEO`): a C side that stops talking
/// fails the test instead of hanging it.
fn recv_timeout(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), String> {
    rustix::net::sockopt::set_socket_timeout(fd, rustix::net::sockopt::Timeout::Recv, T).map_err(|e| e.to_string())
}

fn endpoints(args: &[String]) -> Result<(Recv, Send, Option<u32>), String> {
    let e = |e: Error| e.to_string();
    let arg = |i: usize| args.get(i).cloned().ok_or(format!("missing argument {i}"));
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map_err(|e| e.to_string());
    let Some(mode) = args.first() else {
        let mut rx: Box<StreamReader<16384>> = Box::new(StreamReader::from_fd(dup(std::io::stdin().as_fd())?));
        let mut tx = Writer::stream(dup(std::io::stdout().as_fd())?);
        return Ok((Box::new(move |b| rx.recv_frame(b)), Box::new(move |f| tx.send_frame(f)), None));
    };
    let count: u32 = arg(1)?.parse().map_err(|_| "bad count")?;
    Ok(match mode.as_str() {
        "fifo" => {
            let mut rx: Box<StreamReader<16384>> = Box::new(fifo::open_reader(&arg(2)?, false).map_err(e)?);
            let mut tx = fifo::open_writer(&arg(3)?, false).map_err(e)?;
            // Before the C side opens its writer, a read finds no writer: wait for one.
            let start = Instant::now();
            let recv = move |b: &mut [u8]| loop {
                match rx.recv_frame(b) {
                    Err(Error::PeerGone) if start.elapsed() < Duration::from_secs(20) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    r => return r,
                }
            };
            (Box::new(recv), Box::new(move |f| tx.send_frame(f)), Some(count))
        }
        "mq" => {
            let mut rx = MessageQueue::open(&arg(2)?, Access::Receive).map_err(e)?;
            let mut tx = MessageQueue::open(&arg(3)?, Access::Send).map_err(e)?;
            (
                Box::new(move |b| rx.recv_prio(b, T).map(|(n, _)| n)),
                Box::new(move |f| tx.send_prio(f, 0, T)),
                Some(count),
            )
        }
        "uds-stream" => {
            let s = uds::connect_stream::<16384>(UnixName::Path(&arg(2)?)).map_err(e)?;
            recv_timeout(s.as_fd())?;
            let fd = dup(s.as_fd())?;
            let mut rx = Box::new(s);
            let mut w = Box::new(ember_linux::socket::StreamSocket::<16384>::from_fd(fd));
            (Box::new(move |b| rx.recv_frame(b)), Box::new(move |f| w.send_frame(f)), Some(count))
        }
        "uds-seqpacket" => {
            let mut s = uds::connect_seqpacket(UnixName::Path(&arg(2)?)).map_err(e)?;
            s.set_max_frame(16384);
            recv_timeout(s.as_fd())?;
            let mut w = ember_linux::socket::PacketSocket::from_fd(
                dup(s.as_fd())?,
                ember_linux::socket::PacketKind::Seqpacket,
                16384,
            );
            (Box::new(move |b| s.recv_frame(b)), Box::new(move |f| w.send_frame(f)), Some(count))
        }
        "shm" => {
            const FP: u64 = 0x57_1E00;
            let mut rx = SpscReceiver::open(&arg(2)?, FP).map_err(e)?;
            let mut tx = SpscSender::create(Backing::Named(&arg(3)?), 64 * 1024, FP).map_err(e)?;
            (Box::new(move |b| rx.recv(b, T)), Box::new(move |f| tx.send(f, T)), Some(count))
        }
        other => return Err(format!("unknown mode {other}")),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut recv, mut send, count) = match endpoints(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("wire_peer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut buf = vec![0u8; 16384];
    let mut out = vec![0u8; 256];
    let mut n = 0u32;
    while count.is_none_or(|c| n < c) {
        let len = match recv(&mut buf) {
            Ok(len) => len,
            Err(Error::PeerGone) if n > 0 && count.is_none() => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wire_peer: frame {n}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let Ok(f) = Frame::new_checked(&buf[..len]) else {
            eprintln!("wire_peer: frame {n} is damaged");
            return ExitCode::FAILURE;
        };
        let want = format!("msg {}", f.seq());
        if f.kind() != 7 || f.payload() != want.as_bytes() {
            eprintln!("wire_peer: frame {n}: kind {} payload {:?}", f.kind(), f.payload());
            return ExitCode::FAILURE;
        }
        let reply = format!("echo {}", f.seq());
        let repr = FrameRepr { flags: Flags::RESPONSE, kind: 8, seq: f.seq(), payload_len: reply.len() };
        let Ok(frame) = repr.emit_with_payload(reply.as_bytes(), &mut out) else {
            return ExitCode::FAILURE;
        };
        if let Err(e) = send(frame) {
            eprintln!("wire_peer: send: {e}");
            return ExitCode::FAILURE;
        }
        n += 1;
    }
    // The shm ring goes with this process: wait until the C side has read the last echo
    // (it closes our stdin then).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    ExitCode::SUCCESS
}
