//! `async-daemon`: a small Ember daemon on Tokio's current-thread runtime.
//!
//! - serves clients on a Unix seqpacket socket, each in its own task: a [`Request`] in,
//!   a [`Reply`] out (Ember frames, one per message), a total shared by all clients;
//! - stops on `SIGTERM`/`SIGINT` (read from a signalfd through the same reactor), prints
//!   how many requests it served, removes its socket file and exits with status 0.
//!
//! Every socket and the signalfd go through `ember_async::tokio::Async`: the same Ember
//! endpoints a blocking daemon uses, awaited instead of polled. See `README.md`.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ember_async::tokio::Async;
use ember_async_daemon::{MAX_FRAME, Reply, Request};
use ember_linux::signal::{self, SIGINT, SIGTERM, SigSet, SignalFd};
use ember_linux::socket::PacketSocket;
use ember_linux::uds::{UdsListener, UnixName};
use ember_linux::{Error, Result};

/// The total and the request count, shared by the client tasks.
#[derive(Debug, Default)]
struct State {
    total: AtomicI64,
    served: AtomicU64,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let path = match (args.next().as_deref(), args.next()) {
        (Some("--socket"), Some(p)) => p,
        _ => {
            eprintln!("usage: async-daemon --socket <path>");
            return ExitCode::from(2);
        }
    };
    // Blocked before the runtime starts, so no thread takes them with the default action:
    // they wait in the signalfd.
    if let Err(e) = signal::block(SigSet::of(&[SIGTERM, SIGINT])) {
        eprintln!("async-daemon: blocking signals: {e}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("async-daemon: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&path)) {
        Ok(served) => {
            println!("async-daemon: stopping after {served} requests");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("async-daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &str) -> Result<u64> {
    let mut listener = Async::new(UdsListener::bind_seqpacket(UnixName::Path(path))?)?;
    let mut signals = Async::new(SignalFd::new(SigSet::of(&[SIGTERM, SIGINT]), true)?)?;
    let state = Arc::new(State::default());
    println!("async-daemon: ready on {path}");
    let _ = std::io::stdout().flush();
    loop {
        tokio::select! {
            accepted = listener.read_with(|l| l.accept_seqpacket()) => match accepted {
                Ok((sock, creds)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(sock, &state).await {
                            eprintln!("async-daemon: client pid {}: {e}", creds.pid);
                        }
                    });
                }
                // A peer the allow-list refused, or one gone before we took it.
                Err(e) => eprintln!("async-daemon: accept: {e}"),
            },
            signal = signals.read_with(|s| s.recv()) => {
                let signal = signal?;
                eprintln!("async-daemon: signal {} from pid {}", signal.signal, signal.pid);
                // Dropping the runtime cancels the client tasks: their futures are
                // cancellation-safe, a request half-received is simply not answered.
                return Ok(state.served.load(Ordering::Relaxed));
            }
        }
    }
}

/// Answers one client until it hangs up.
async fn serve(mut sock: PacketSocket, state: &State) -> Result<()> {
    sock.set_max_frame(MAX_FRAME);
    let mut sock = Async::new(sock)?;
    let mut buf = [0u8; MAX_FRAME];
    let mut scratch = [0u8; MAX_FRAME];
    loop {
        let (repr, request) = match sock.recv_message::<Request>(&mut buf).await {
            Ok(r) => r,
            Err(Error::PeerGone) => return Ok(()),
            // A bad frame is consumed and reported; the connection goes on.
            Err(Error::Codec(e)) => {
                eprintln!("async-daemon: bad request: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let total = match request {
            Request::Add(n) => state.total.fetch_add(n, Ordering::Relaxed) + n,
            Request::Get => state.total.load(Ordering::Relaxed),
        };
        let served = state.served.fetch_add(1, Ordering::Relaxed) + 1;
        match sock.send_message(repr.seq, &Reply { total, served }, &mut scratch).await {
            Ok(()) => {}
            Err(Error::PeerGone) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
