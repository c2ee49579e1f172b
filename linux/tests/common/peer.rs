//! The other process of a multi-process shared-memory test: this test binary run again with
//! `--peer <role> ...` (under the board's emulator where there is one), reporting one line
//! per step on its standard output and reading commands from its standard input; and the
//! names and clean-up of the segments those tests share.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long a peer may stay silent before it counts as hung: far above what any step takes,
/// even emulated (no test asserts how fast a peer answers).
const SILENT_FOR: Duration = Duration::from_secs(300);

/// A shm name unique to this process and call: `/ember-<prefix>-<pid>-<tag>-<n>`.
pub fn unique_shm(prefix: &str, tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("/ember-{prefix}-{}-{tag}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Removes a named segment when dropped (peers killed with -9 cannot).
pub struct ShmCleanup(pub String);

impl Drop for ShmCleanup {
    fn drop(&mut self) {
        let _ = rustix::shm::unlink(self.0.as_str());
    }
}

/// A peer process; killed (and reaped) when dropped.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts `--peer <args...>`.
    pub fn spawn(args: &[&str]) -> Peer {
        let mut child = super::me()
            .arg("--peer")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn peer");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim().to_string()).is_err() {
                    break;
                }
            }
        });
        Peer { child, stdin, lines }
    }

    /// The next line the peer prints (its report). Fails if it exits without one, or stays
    /// silent for [`SILENT_FOR`] (hung).
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(SILENT_FOR) {
            Ok(l) => l,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("peer {} silent for {SILENT_FOR:?}: hung", self.pid()),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("peer exited without reporting"),
        }
    }

    /// Writes a command line to the peer's standard input.
    pub fn say(&mut self, what: &str) {
        let stdin = self.stdin.as_mut().expect("the peer's stdin is open");
        writeln!(stdin, "{what}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the peer's standard input (a peer that waits for end of file then stops).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The peer's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the peer with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the peer and fails unless it exited with status 0.
    pub fn wait_ok(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "peer failed: {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
