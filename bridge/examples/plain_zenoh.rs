//! Joining an Ember bridge from plain Zenoh: this program uses only the `zenoh` crate and
//! `ember-ipc-core` (no bridge, no Ember transport).
//!
//! ```text
//! plain_zenoh sub <endpoint> <key> <count>            decode <count> frames, print one line each
//! plain_zenoh pub <endpoint> <key> <count> [garbage]  publish <count> frames (kind 7, seq i,
//!                                                     payload i as u64 LE); with `garbage`,
//!                                                     publish <count> malformed samples instead
//! ```
//!
//! `<endpoint>` is a bridge's listen endpoint (`tcp/127.0.0.1:7447`); the session is a
//! peer with scouting off that listens on loopback only. `sub` prints `ready` once
//! subscribed, then `frame <kind> <seq> <payload hex>` per frame (`bad <reason>` for a
//! sample that is not a valid frame). `pub` waits until a subscriber matches the key,
//! publishes, and prints `done`.

use std::time::Duration;

use ember_core::frame::{Frame, FrameRepr, Integrity};
use zenoh::Wait;

fn session(endpoint: &str) -> zenoh::Session {
    let json = format!(
        r#"{{ mode: "peer", connect: {{ endpoints: ["{endpoint}"] }}, listen: {{ endpoints: ["tcp/127.0.0.1:0"] }},
             scouting: {{ multicast: {{ enabled: false }}, gossip: {{ enabled: false }} }} }}"#
    );
    let config = zenoh::Config::from_json5(&json).expect("a valid zenoh config");
    zenoh::open(config).wait().expect("zenoh session")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, endpoint, key, count, rest @ ..] = args.as_slice() else {
        eprintln!("usage: plain_zenoh sub|pub <endpoint> <key> <count> [garbage]");
        std::process::exit(2);
    };
    let count: u64 = count.parse().expect("count is a number");
    let s = session(endpoint);
    match mode.as_str() {
        "sub" => {
            let sub = s.declare_subscriber(key.as_str()).wait().expect("subscriber");
            println!("ready");
            for _ in 0..count {
                let Ok(sample) = sub.recv() else { break };
                let bytes = sample.payload().to_bytes();
                // Decoding is ember-core alone: a checked view, the checksum verified.
                match Frame::new_checked(&bytes[..]) {
                    Ok(f) if f.integrity() == Integrity::Checked && f.total_len() == bytes.len() => {
                        println!("frame {} {} {}", f.kind(), f.seq(), hex(f.payload()))
                    }
                    Ok(_) => println!("bad not-one-checked-frame"),
                    Err(e) => println!("bad {e}"),
                }
            }
        }
        "pub" => {
            let publisher = s
                .declare_publisher(key.as_str())
                .congestion_control(zenoh::qos::CongestionControl::Block)
                .wait()
                .expect("publisher");
            while !publisher.matching_status().wait().expect("matching status").matching() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let garbage = rest.first().is_some_and(|a| a == "garbage");
            let mut buf = [0u8; 64];
            for i in 0..count {
                if garbage {
                    // Three kinds of damage: not a frame, a bad checksum, an unchecked payload.
                    let repr =
                        FrameRepr { flags: Integrity::Unchecked.flags(), kind: 7, seq: i as u32, payload_len: 8 };
                    let mut f = repr.emit_with_payload(&i.to_le_bytes(), &mut buf).expect("fits").to_vec();
                    match i % 3 {
                        0 => f = b"not an ember frame".to_vec(),
                        1 => {
                            let checked = FrameRepr { flags: Integrity::Checked.flags(), ..repr };
                            let mut b2 = [0u8; 64];
                            f = checked.emit_with_payload(&i.to_le_bytes(), &mut b2).expect("fits").to_vec();
                            let last = f.len() - 1;
                            f[last] ^= 0xff;
                        }
                        _ => {}
                    }
                    publisher.put(f).wait().expect("put");
                } else {
                    let repr = FrameRepr { flags: Integrity::Checked.flags(), kind: 7, seq: i as u32, payload_len: 8 };
                    let f = repr.emit_with_payload(&i.to_le_bytes(), &mut buf).expect("fits");
                    publisher.put(&f[..]).wait().expect("put");
                }
            }
            // Let the last samples leave before the session closes.
            std::thread::sleep(Duration::from_millis(200));
            println!("done");
        }
        _ => {
            eprintln!("mode is sub or pub");
            std::process::exit(2);
        }
    }
    s.close().wait().expect("close");
}
