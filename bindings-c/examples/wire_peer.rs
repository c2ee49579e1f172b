//! The Rust side of the C ABI's wire test: reads Ember frames from stdin (through
//! `ember-linux`, not the C ABI), checks each (kind 7, payload `msg <seq>`), and answers on
//! stdout with kind 8, the same sequence number and payload `echo <seq>`. Exits 0 at the end
//! of its input after at least one frame, 1 on any mismatch.

use ember_core::frame::{Flags, Frame, FrameRepr};
use ember_linux::pipe::{StreamReader, Writer};
use ember_linux::{Error, FrameReceiver, FrameSender};
use std::os::fd::AsFd;

fn main() -> std::process::ExitCode {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().expect("dup");
    let mut rx: Box<StreamReader<16384>> = Box::new(StreamReader::from_fd(dup(std::io::stdin().as_fd())));
    let mut tx = Writer::stream(dup(std::io::stdout().as_fd()));
    let mut buf = vec![0u8; 16384];
    let mut out = vec![0u8; 256];
    let mut n = 0u32;
    loop {
        let len = match rx.recv_frame(&mut buf) {
            Ok(len) => len,
            Err(Error::PeerGone) if n > 0 => return std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wire_peer: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let f = Frame::new_checked(&buf[..len]).expect("checked by the reader");
        let want = format!("msg {}", f.seq());
        if f.kind() != 7 || f.payload() != want.as_bytes() {
            eprintln!("wire_peer: frame {n}: kind {} payload {:?}", f.kind(), f.payload());
            return std::process::ExitCode::FAILURE;
        }
        let reply = format!("echo {}", f.seq());
        let repr = FrameRepr { flags: Flags::RESPONSE, kind: 8, seq: f.seq(), payload_len: reply.len() };
        let frame = repr.emit_with_payload(reply.as_bytes(), &mut out).expect("fits");
        if let Err(e) = tx.send_frame(frame) {
            eprintln!("wire_peer: send: {e}");
            return std::process::ExitCode::FAILURE;
        }
        n += 1;
    }
}
