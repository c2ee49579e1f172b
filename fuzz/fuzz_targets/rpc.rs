//! Fuzzes the RPC layer's decoding of what a peer sends, over a real Unix seqpacket socket
//! pair: the fuzzer's frames are sent raw from one end, a `Client` or a `Server` reads the
//! other.
//!
//! Input: `[mode][len (2, little-endian), frame]...`. With bit 7 of `mode` set, each
//! frame's two CRCs are made right before it is sent, so that mutated headers (kind,
//! sequence number, flags, length) get past the link's checks. Even `mode`: a client with 4 slots of
//! 64 bytes starts `1 + mode / 2 % 4` raw requests of kind 7 (sequence numbers 1, 2, ...),
//! the frames arrive as responses, then it waits for each request with a zero timeout.
//! Odd `mode`: a server serves the frames as requests with a handler that decodes each
//! payload as `(u32, &str, Option<u64>)` (`rpc::decode`) and answers with it, or fails.
//!
//! Checked: nothing panics, nothing blocks; a client's response fits its slot and an error
//! response's message is at most `Failure::MESSAGE_MAX` bytes; a server answers every
//! request it reports, each answer a valid frame with the `RESPONSE` flag, the request's
//! kind and sequence number.
#![no_main]

use core::time::Duration;

use ember_core::crc32c::{crc32c, crc32c_append};
use ember_core::frame::{Flags, Frame, HEADER_LEN};
use ember_linux::rpc::{self, CallError, Client, Failure, Server};
use ember_linux::socket::DEFAULT_PACKET_MAX;
use ember_linux::uds::seqpacket_pair;
use libfuzzer_sys::fuzz_target;
use rustix::net::{RecvFlags, SendFlags};

const RX: usize = DEFAULT_PACKET_MAX;

/// The frames of the input after the mode byte; `seal`: with their CRCs made right.
fn frames(mut data: &[u8], seal: bool) -> impl Iterator<Item = Vec<u8>> {
    core::iter::from_fn(move || {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (frame, rest) = rest.split_at(len);
        data = rest;
        let mut frame = frame.to_vec();
        if seal && frame.len() >= HEADER_LEN {
            // The payload CRC covers the payload unless the frame says UNCHECKED (0x04).
            let head = crc32c(&frame[..16]);
            let crc = if frame[3] & 0x04 != 0 { head } else { crc32c_append(head, &frame[HEADER_LEN..]) };
            frame[16..20].copy_from_slice(&crc.to_le_bytes());
            let hcrc = crc32c(&frame[..20]);
            frame[20..24].copy_from_slice(&hcrc.to_le_bytes());
        }
        Some(frame)
    })
}

fn client(mode: u8, data: &[u8]) {
    let (link, peer) = seqpacket_pair().expect("a socket pair");
    let mut c = Box::new(Client::<_, 4, 64, RX>::new(link).expect("a client"));
    let tickets: Vec<_> = (0..1 + (mode / 2) % 4)
        .map(|i| c.start_raw(7, &[i; 3], Some(Duration::ZERO)).expect("room for the request"))
        .collect();
    let mut buf = vec![0u8; RX];
    // What the client sent: its requests, in order.
    for t in &tickets {
        let n = rustix::net::recv(&peer, &mut buf, RecvFlags::DONTWAIT).expect("the request").0;
        let f = Frame::new_checked(&buf[..n]).expect("a valid request");
        assert_eq!((f.kind(), f.seq()), (7, t.seq()));
    }
    for frame in frames(data, mode & 0x80 != 0) {
        if rustix::net::send(&peer, &frame, SendFlags::DONTWAIT).is_err() {
            break;
        }
    }
    for t in tickets {
        match c.wait_raw(t, Some(Duration::ZERO)) {
            Ok(payload) => assert!(payload.len() <= 64),
            Err(CallError::Remote { message, .. }) => assert!(message.len() <= 64),
            Err(CallError::Local(_)) => {}
        }
    }
}

fn server(mode: u8, data: &[u8]) {
    let (link, peer) = seqpacket_pair().expect("a socket pair");
    let mut s = Box::new(Server::<_, RX, 256>::new(link).expect("a server"));
    for frame in frames(data, mode & 0x80 != 0) {
        if rustix::net::send(&peer, &frame, SendFlags::DONTWAIT).is_err() {
            break;
        }
    }
    let mut served = Vec::new();
    let mut handler = |_kind: u32, payload: &[u8], r: &mut rpc::Responder<'_>| {
        let (n, s, o): (u32, &str, Option<u64>) = rpc::decode(payload)?;
        assert!(s.len() <= payload.len());
        r.respond(&(n.wrapping_add(1), s, o))
    };
    // Each call serves one request or ends with the link empty (zero timeout).
    while let Ok(req) = s.serve_one(Some(Duration::ZERO), &mut handler) {
        served.push(req);
    }
    let mut buf = vec![0u8; RX];
    for req in served {
        let n = rustix::net::recv(&peer, &mut buf, RecvFlags::DONTWAIT).expect("an answer to every request").0;
        let f = Frame::new_checked(&buf[..n]).expect("a valid answer");
        assert!(f.flags().contains(Flags::RESPONSE));
        assert_eq!((f.kind(), f.seq()), (req.kind, req.seq));
        if f.flags().contains(Flags::ERROR) {
            let (_code, message): (u32, &str) =
                ember_core::message::decode_payload(f.payload()).expect("an error answer decodes");
            assert!(message.len() <= Failure::MESSAGE_MAX);
        }
    }
    assert!(rustix::net::recv(&peer, &mut buf, RecvFlags::DONTWAIT).is_err(), "an answer to no request");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 { client(mode, rest) } else { server(mode, rest) }
});
