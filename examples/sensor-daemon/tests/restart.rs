//! The example daemon killed with `kill -9` fifty times in a row and started again each
//! time (issue 24, item 2): every restart succeeds (its objects are created with
//! `replace_stale`), the clients reconnect (the seqlock, the event ring, the command socket
//! and the command queue all answer the new daemon), a client left on the dead daemon's
//! ring sees its writer gone, a second daemon beside a live one refuses to start, and at
//! the end `/dev/shm` and the mqueue file system hold only the live daemon's objects, then
//! nothing after its `SIGTERM`.
//!
//! The loop runs in a private mount and IPC namespace (this binary run again with
//! `--in-ns`, as root): a fresh tmpfs on `/dev/shm` and a fresh mqueue file system, so
//! that what is left can be listed exactly. `harness = false`: the namespace needs a
//! process with one thread.

#[path = "../../../linux/tests/common/ns.rs"]
mod ns;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ember_core::message;
use ember_linux::mq::{self, MessageQueue};
use ember_linux::shm::{BroadcastReader, SeqLockReader};
use ember_linux::signal::{SIGTERM, send_with_value};
use ember_linux::uds::{self, UnixName};
use ember_linux::{FrameReceiver, FrameSender};
use ember_sensor_daemon::*;

const RESTARTS: u32 = 50;
const T: Option<Duration> = Some(Duration::from_secs(20));

/// The daemon, killed if the test fails (it would outlive it, holding the test's output).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the daemon and waits for its ready line.
fn start(name: &str, socket: &str) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sensor-daemon"))
        .args(["--name", name, "--socket", socket, "--no-bus"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let d = Daemon(child);
    assert!(line.starts_with("sensor-daemon: ready:"), "restart: {line:?}");
    d
}

/// The next event with text `text`, skipping the threshold events.
fn event_with_text(r: &mut BroadcastReader, text: &str) {
    let mut buf = [0u8; 512];
    for _ in 0..1000 {
        let got = r.recv(&mut buf, T).unwrap();
        let (_, ev): (_, Event<'_>) = message::decode(&buf[..got.len]).unwrap();
        if ev.text == text {
            assert_eq!(ev.code, EVENT_RAISED);
            return;
        }
    }
    panic!("no event {text:?}");
}

fn in_ns() {
    let mqdir = ns::private_ipc("16m", None, true).unwrap();
    let name = format!("sensor-restart-{}", std::process::id());
    let socket = format!("/tmp/{name}.sock");
    let (reading, events, commands) =
        (format!("/{name}-reading"), format!("/{name}-events"), format!("/{name}-commands"));
    let mut old_events: Option<BroadcastReader> = None;
    let mut daemon = start(&name, &socket);
    for restart in 0..RESTARTS {
        // The clients reconnect: the reading, a command on the socket, a one-way command
        // on the queue that comes back as an event.
        let mut buf = [0u8; 512];
        let mut r = SeqLockReader::open(&reading, READING_FP).unwrap();
        assert_eq!(r.segment().header().creator_pid, daemon.0.id());
        let (_, first): (_, Reading) = {
            let snap = r.read(&mut buf).unwrap();
            message::decode(&buf[..snap.len]).unwrap()
        };
        assert!(first.count >= 1);
        let mut ev = BroadcastReader::open(&events, EVENTS_FP, false).unwrap();
        let mut sock = uds::connect_seqpacket(UnixName::Path(&socket)).unwrap();
        sock.set_max_frame(buf.len());
        let mut f = [0u8; 256];
        sock.send_frame(message::encode(CMD_GET, restart, &(), &mut f).unwrap()).unwrap();
        let n = sock.recv_frame(&mut buf).unwrap();
        let (repr, _): (_, Reading) = message::decode(&buf[..n]).unwrap();
        assert_eq!((repr.kind, repr.seq), (KIND_READING, restart));
        let mut q = MessageQueue::open(&commands, mq::Access::Send).unwrap();
        let text = format!("restart {restart}");
        q.send_frame(message::encode(CMD_RAISE, restart, text.as_str(), &mut f).unwrap()).unwrap();
        event_with_text(&mut ev, &text);
        // The client left on the previous daemon's ring: its writer is gone.
        if let Some(mut old) = old_events.take() {
            loop {
                match old.recv(&mut buf, T) {
                    Ok(_) => {}
                    Err(e) => {
                        assert_eq!(e, ember_linux::Error::Shm(ember_core::shm::ShmError::WriterGone));
                        break;
                    }
                }
            }
        }
        if restart % 10 == 5 {
            // Beside a live daemon a second one refuses to start.
            let second = Command::new(env!("CARGO_BIN_EXE_sensor-daemon"))
                .args(["--name", &name, "--socket", &format!("/tmp/{name}-2.sock"), "--no-bus"])
                .output()
                .unwrap();
            assert_eq!(second.status.code(), Some(1));
            let err = String::from_utf8_lossy(&second.stderr);
            assert!(err.contains(&format!("in use by pid {}", daemon.0.id())), "{err}");
        }
        if restart + 1 == RESTARTS {
            break;
        }
        old_events = Some(ev);
        daemon.0.kill().unwrap();
        daemon.0.wait().unwrap();
        daemon = start(&name, &socket);
    }
    let mut shm = vec![events[1..].to_string(), reading[1..].to_string()];
    shm.sort();
    assert_eq!(ns::names_in("/dev/shm"), shm, "/dev/shm while the last daemon runs");
    assert_eq!(ns::names_in(&mqdir), vec![commands[1..].to_string()], "{mqdir} while the last daemon runs");
    println!("{RESTARTS} starts, {} kill -9; /dev/shm {shm:?}, {mqdir} [{:?}]", RESTARTS - 1, &commands[1..]);
    send_with_value(daemon.0.id(), SIGTERM, 0).unwrap();
    assert_eq!(daemon.0.wait().unwrap().code(), Some(0));
    assert_eq!(ns::names_in("/dev/shm"), Vec::<String>::new(), "/dev/shm after SIGTERM");
    assert_eq!(ns::names_in(&mqdir), Vec::<String>::new(), "{mqdir} after SIGTERM");
    assert!(!std::path::Path::new(&socket).exists());
    ns::leave_mqueue(&mqdir);
    println!("done");
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--in-ns") {
        in_ns();
        return;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .arg("--in-ns")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    // What a failed run leaves (a clean one removed both): the socket and the directory
    // the mqueue file system was mounted on (gone with the namespace).
    let _ = std::fs::remove_file(format!("/tmp/sensor-restart-{pid}.sock"));
    let _ = std::fs::remove_dir(format!("/tmp/ember-mqueue-{pid}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(out.status.success() && stdout.ends_with("done\n"), "the restart loop failed ({})", out.status);
    println!("test daemon_killed_50_times_restarts_every_time ... ok\n\ntest result: ok. 1 passed; 0 failed");
}
