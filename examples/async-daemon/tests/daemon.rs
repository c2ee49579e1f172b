//! The async daemon as a separate process: four clients at once, each with its own
//! connection, every reply matched to its request; then SIGTERM ends it with exit status
//! 0 and its socket file removed.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use ember_async_daemon::{MAX_FRAME, Reply, Request};
use ember_linux::signal::{SIGTERM, send_with_value};
use ember_linux::uds::{self, UnixName};
use ember_linux::{FrameReceiver, FrameSender};

#[test]
fn serves_clients_concurrently_and_stops_on_sigterm() {
    let path = format!("/tmp/ember-async-daemon-{}.sock", std::process::id());
    let mut child = Command::new(env!("CARGO_BIN_EXE_async-daemon"))
        .args(["--socket", &path])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("async-daemon: ready"), "{line:?}");

    const CLIENTS: i64 = 4;
    const EACH: i64 = 100;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut sock = uds::connect_seqpacket(UnixName::Path(&path)).unwrap();
                sock.set_max_frame(MAX_FRAME);
                let mut scratch = [0u8; MAX_FRAME];
                let mut buf = [0u8; MAX_FRAME];
                for i in 0..EACH {
                    let seq = (c * 1000 + i) as u32;
                    sock.send_message(seq, &Request::Add(c + 1), &mut scratch).unwrap();
                    let (repr, reply) = sock.recv_message::<Reply>(&mut buf).unwrap();
                    assert_eq!(repr.seq, seq, "a reply to another request");
                    assert!(reply.served >= 1 && reply.total > c);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let mut sock = uds::connect_seqpacket(UnixName::Path(&path)).unwrap();
    sock.set_max_frame(MAX_FRAME);
    let (mut scratch, mut buf) = ([0u8; MAX_FRAME], [0u8; MAX_FRAME]);
    sock.send_message(9, &Request::Get, &mut scratch).unwrap();
    let (_, reply) = sock.recv_message::<Reply>(&mut buf).unwrap();
    // 1 + 2 + 3 + 4, a hundred times each.
    assert_eq!(reply.total, EACH * (1..=CLIENTS).sum::<i64>());
    assert_eq!(reply.served as i64, CLIENTS * EACH + 1);

    send_with_value(child.id(), SIGTERM, 0).unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(rest.trim(), format!("async-daemon: stopping after {} requests", CLIENTS * EACH + 1));
    assert!(std::fs::symlink_metadata(&path).is_err(), "the socket file is left behind");
}
